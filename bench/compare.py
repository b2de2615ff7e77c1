"""The side-by-side benchmark in one command: browser (webllm-py vs wllama) and native (webllm-py vs
llama.cpp vs transformers) on the same GGUF, prompt length and decode length, one table and one JSON.

    .venv/bin/python bench/compare.py                                 # SmolLM2-135M-Instruct, 256 + 64 tokens, 3 repeats
    .venv/bin/python bench/compare.py --shape llama-1b --repeats 3    # a seeded random-weight shape (bench/shapes.py)
    .venv/bin/python bench/compare.py --quick                         # CI smoke run (tiny sizes, 1 repeat)

It runs bench/native_bench.py and bench/browser_bench.py one after the other (never at the same
time: on 2 cores one would halve the other), each with its own side-by-side method (engines
alternating, medians; see bench/README.md), then joins their JSON. Ratios are taken within one
runtime only (browser engines against the best wllama path, native engines against llama.cpp and
transformers), never across runs of different days. The decode bound is the native run's:
weight bytes per token / this machine's measured read bandwidth.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
COLUMNS = ("runtime", "engine", "precision", "load s", "TTFT s", "prefill tok/s", "decode tok/s",
           "peak MiB", "decode / bound", "decode / best other", "prefill / best other")


def run(script: str, args: list[str], out: Path) -> dict[str, Any]:
    """One benchmark script with its JSON written to `out`; its own output streams through."""
    cmd = [sys.executable, str(BENCH / script), *args, "--json", str(out)]
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        sys.exit(f"{script} failed (exit {proc.returncode}); its output is above")
    return json.loads(out.read_text())


def rows(native: dict[str, Any], browser: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per engine, both runtimes, in the table's units."""
    bound = native.get("decode_bound_tok_s")
    out: list[dict[str, Any]] = []
    for name, r in native["results"].items():
        out.append({"runtime": "native", "engine": name, "precision": r.get("precision", ""), "load_s": r.get("load_s"),
                    "ttft_s": r.get("ttft_s"), "prefill_tok_s": r.get("prefill_tok_s"),
                    "decode_tok_s": r.get("decode_tok_s"), "peak_mib": None})
    for name, res in browser["results"].items():
        m = res.get("median") or {}
        runs = res.get("runs") or [{}]
        wllama = {"wllama-wasm": "wasm, 1 thread", "wllama-wasm-mt": "wasm, 2 threads"}.get(name, "")
        out.append({"runtime": "browser", "engine": name, "precision": str(runs[0].get("precision") or wllama),
                    "load_s": m.get("load_s"), "ttft_s": m.get("ttft_s"), "prefill_tok_s": m.get("prefill_tps"),
                    "decode_tok_s": m.get("decode_tps"), "peak_mib": m.get("pss_peak_mib"),
                    "skipped": res.get("skipped")})
    for r in out:
        ours = r["engine"].startswith("webllm")
        others = [o for o in out if o["runtime"] == r["runtime"] and o["engine"].startswith("webllm") != ours]
        for key in ("decode_tok_s", "prefill_tok_s"):
            best = max((o[key] for o in others if o.get(key)), default=None)
            r[key.split("_")[0] + "_vs_best_other"] = r[key] / best if r.get(key) and best else None
        r["decode_vs_bound"] = r["decode_tok_s"] / bound if r.get("decode_tok_s") and bound else None
    return out


def fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return ""
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def table(rs: list[dict[str, Any]], native: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rs:
        if r.get("skipped"):
            lines.append(f"| {r['runtime']} | {r['engine']} | skipped: {r['skipped']} |" + " |" * (len(COLUMNS) - 3))
            continue
        lines.append("| " + " | ".join([r["runtime"], r["engine"], r["precision"], fmt(r["load_s"]), fmt(r["ttft_s"]),
                                        fmt(r["prefill_tok_s"], 1), fmt(r["decode_tok_s"], 1), fmt(r["peak_mib"], 0),
                                        fmt(r["decode_vs_bound"], 3), fmt(r["decode_vs_best_other"]),
                                        fmt(r["prefill_vs_best_other"])]) + " |")
    rss = native.get("process_peak_rss_mb")
    lines.append("")
    lines.append(f"decode bound {fmt(native.get('decode_bound_tok_s'), 1)} tok/s (weights per token / read bandwidth "
                 f"{fmt(native.get('read_bandwidth_gbs'), 1)} GB/s); browser peak = summed PSS of that Chromium; native "
                 f"engines share one process (peak RSS {fmt(rss, 0)} MiB for all of them). 'best other': webllm-py vs "
                 "the best other engine of the same runtime, and the others vs the best webllm-py program set.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shape", default=None, help="a bench/shapes.py shape instead of SmolLM2-135M-Instruct")
    ap.add_argument("--native-engines", default="webllm-idot,webllm-f32,llama.cpp,transformers")
    ap.add_argument("--browser-engines", default="webllm,wllama-wasm,wllama-webgpu,wllama-wasm-mt")
    ap.add_argument("--quick", action="store_true", help="CI smoke run: both scripts' --quick")
    ap.add_argument("--json", type=Path, help="write both reports and the joined rows here")
    args = ap.parse_args()
    common = ["--quick"] if args.quick else ["--prompt-tokens", str(args.prompt_tokens), "--decode-tokens",
                                             str(args.decode_tokens), "--repeats", str(args.repeats)]
    if args.shape:
        common += ["--shape", args.shape]
    with tempfile.TemporaryDirectory() as tmp:
        native = run("native_bench.py", common + ([] if args.quick else ["--engines", args.native_engines]),
                     Path(tmp) / "native.json")
        browser = run("browser_bench.py", common + ([] if args.quick else ["--engines", args.browser_engines,
                                                                          "--profile-steps", "0"]),
                      Path(tmp) / "browser.json")
    rs = rows(native, browser)
    text = table(rs, native)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rs, "table": text,
                                         "native": native, "browser": browser}, indent=2))
        print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
