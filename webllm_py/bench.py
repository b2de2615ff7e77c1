"""`webllm-py bench`: prefill and decode throughput of a bundle, per backend, in one run.

Each backend runs the same prompt (deterministic ids) and the same number of
greedy decode steps; repeats alternate backends (A B A B ...) and the median
is reported, so ratios are between numbers measured side by side.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np


def _one_run(model: Any, prompt: list[int], decode_tokens: int) -> dict[str, float]:
    model.reset()
    t0 = time.perf_counter()
    row = model.forward(prompt)
    t1 = time.perf_counter()
    for _ in range(decode_tokens):
        row = model.forward([int(np.argmax(row))])
    t2 = time.perf_counter()
    return {"ttft_s": t1 - t0, "prefill_tok_s": len(prompt) / (t1 - t0),
            "decode_tok_s": decode_tokens / (t2 - t1) if decode_tokens else 0.0}


def run_bench(bundle: str, backends: list[str], precision: str = "auto", prompt_tokens: int = 128,
              decode_tokens: int = 32, repeats: int = 3, reference_decode_tokens: int = 8) -> dict[str, Any]:
    from .api import load

    models, load_s = {}, {}
    for b in backends:
        t = time.perf_counter()
        models[b] = load(bundle, backend=b, precision=precision)
        load_s[b] = time.perf_counter() - t
    any_model = next(iter(models.values()))
    vocab = any_model.vocab_size
    n = min(prompt_tokens, any_model.context_window - decode_tokens - 1)
    prompt = [(7919 * i + 13) % (vocab - 10) + 5 for i in range(n)]
    for m in models.values():  # warm-up: pipeline creation, first-touch of buffers
        _one_run(m, prompt[:8], 2)
    runs: dict[str, list[dict[str, float]]] = {b: [] for b in backends}
    for _ in range(repeats):
        for b, m in models.items():
            steps = reference_decode_tokens if b == "reference" else decode_tokens
            runs[b].append(_one_run(m, prompt, steps))
    results = {}
    for b, rs in runs.items():
        results[b] = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        results[b]["load_s"] = load_s[b]
        results[b]["precision"] = getattr(models[b], "precision", precision)
    base = results.get("reference")
    if base:
        for b, r in results.items():
            r["decode_vs_reference"] = r["decode_tok_s"] / base["decode_tok_s"]
            r["prefill_vs_reference"] = r["prefill_tok_s"] / base["prefill_tok_s"]
    return {"bundle": bundle, "prompt_tokens": n, "decode_tokens": decode_tokens, "repeats": repeats,
            "results": results}


def format_table(report: dict[str, Any]) -> str:
    lines = [f"bundle {report['bundle']}: prompt {report['prompt_tokens']} tokens, "
             f"decode {report['decode_tokens']} tokens, median of {report['repeats']}",
             f"{'backend':10} {'precision':9} {'load s':>7} {'TTFT s':>7} {'prefill tok/s':>14} {'decode tok/s':>13} {'decode x ref':>12}"]
    for b, r in report["results"].items():
        ratio = f"{r['decode_vs_reference']:.1f}x" if "decode_vs_reference" in r else "-"
        lines.append(f"{b:10} {r['precision']:9} {r['load_s']:7.2f} {r['ttft_s']:7.3f} {r['prefill_tok_s']:14.1f} "
                     f"{r['decode_tok_s']:13.1f} {ratio:>12}")
    return "\n".join(lines)
