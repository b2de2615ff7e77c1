"""Per-token cost of the CPU sampler (docs/sampling.md steps 5-7) at large vocabularies, before and after.

    .venv/bin/python bench/sampler_bench.py [--quick] [--tokens 40] [--repeats 3] [--json out.json]

Every sampled (temperature > 0) decode step runs the sampler over the whole row in float64. Two
implementations are timed in the same run, calls alternating old, new, old, new, ...:

  old   the full-sort reading: softmax with fresh temporaries, then every probability sorted
        (``-np.sort(-probs)``) and the running sums taken over the whole row (kept here as the
        baseline: it is what webllm_py/runtime/sampler.py did before)
  new   runtime.sampler.sample_token: the in-place softmax, then only the largest values sorted,
        band by band, until the kept prefix is decided

Both must give the same id for every token (checked: the bench fails otherwise). Rows are
synthetic float32 logits of two shapes (seeded, see logits_row): `confident` (a few ids hold
most of the mass, the usual decode step) and `open` (a flat bulk holds a third of it: top_p 0.9
keeps 3450 ids at V = 49152, 17886 at 262144: the candidate-first path's hard case short of top_p 1). Temperature 1. Per row
and setting, `--tokens` draws (counters 0..tokens-1); the figure is the median per-token time,
the ratio old / new (> 1: new is faster). Timings are the machine's: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from webllm_py.runtime.sampler import _sample_sorted, sample_token, uniform  # noqa: E402

VOCABS = (49152, 151936, 262144)  # SmolLM2, Qwen2.5/3, Gemma 3
SETTINGS = (  # (label, top_p, top_k) as generation_configs give them
    ("top_p 0.9", 0.9, 0),
    ("top_k 64 + top_p 0.95", 0.95, 64),
    ("top_k 20 + top_p 0.8", 0.8, 20),
    ("top_p 1.0", 1.0, 0),
)
SHAPES = ("confident", "open")


def old_sample_token(x: np.ndarray, temperature: float, top_p: float, seed: int, counter: int,
                     top_k: int = 0, min_p: float = 0.0) -> int:
    """The full-sort reading (sampler.py before the candidate bands), the baseline: softmax with
    fresh temporaries, every probability sorted, then steps 6-7 over the whole row (the
    sampler's own full-sort path, which it keeps for rows that are no distribution)."""
    z = x / float(temperature)
    e = np.exp(z - np.max(z))
    probs = e / np.cumsum(e)[-1]
    return _sample_sorted(probs, -np.sort(-probs), top_p, uniform(seed, counter), top_k, min_p)


def logits_row(vocab: int, shape: str, seed: int = 0) -> np.ndarray:
    """A float32 logits row widened to float64 (what process_logits hands the sampler): a bulk
    N(0, 2^2) over every id (mass ~ V e^2) and 32 leading ids set relative to that mass, so
    a shape keeps its meaning at every V."""
    rng = np.random.default_rng([seed, vocab])
    x = rng.standard_normal(vocab) * 2.0
    top = rng.choice(vocab, 32, replace=False)
    bulk = np.log(vocab) + 2.0  # log of the bulk's mass
    if shape == "confident":  # top-1 ~0.6, top_p 0.9 keeps ~3 ids
        x[top] = bulk + 8.0 - np.arange(32.0)
    else:  # the bulk holds ~1/3 of the mass: top_p 0.9 keeps 7 % of the ids
        x[top] = bulk + np.linspace(-1.5, -5.0, 32)
    return x.astype(np.float32).astype(np.float64)


def measure(x: np.ndarray, top_p: float, top_k: int, tokens: int, repeats: int) -> dict:
    """Median per-token ms of old and new (alternating), after checking they pick the same ids."""
    times: dict[str, list[float]] = {"old": [], "new": []}
    fns = {"old": old_sample_token, "new": sample_token}
    for r in range(repeats):
        for c in range(tokens):
            ids = {}
            for name in ("old", "new") if (r + c) % 2 == 0 else ("new", "old"):
                t = time.perf_counter()
                ids[name] = fns[name](x, 1.0, top_p, 7, c, top_k)
                times[name].append(time.perf_counter() - t)
            if ids["old"] != ids["new"]:
                raise SystemExit(f"different ids: old {ids['old']} new {ids['new']} (counter {c})")
    old, new = (statistics.median(times[k]) * 1e3 for k in ("old", "new"))
    return {"old_ms": old, "new_ms": new, "ratio": old / new}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: V = 49152 only, 4 tokens, 1 repeat")
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    vocabs, tokens, repeats = ((VOCABS[0],), 4, 1) if a.quick else (VOCABS, a.tokens, a.repeats)
    t0 = time.perf_counter()
    rows = []
    print(f"{'V':>7} {'shape':10} {'setting':22} {'old ms/tok':>10} {'new ms/tok':>10} {'old/new':>8}")
    for vocab in vocabs:
        for shape in SHAPES:
            x = logits_row(vocab, shape)
            for label, top_p, top_k in SETTINGS:
                r = measure(x, top_p, top_k, tokens, repeats)
                rows.append({"vocab": vocab, "shape": shape, "setting": label, **r})
                print(f"{vocab:7d} {shape:10} {label:22} {r['old_ms']:10.2f} {r['new_ms']:10.2f} {r['ratio']:8.1f}")
    print(f"({tokens} tokens x {repeats} repeats per row, medians, ids identical; {time.perf_counter() - t0:.0f} s)")
    if a.json:
        a.json.write_text(json.dumps({"tokens": tokens, "repeats": repeats, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
