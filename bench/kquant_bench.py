"""Decode matmul kernels on the GGUF block formats (q5, q5a, q2k..q6k) vs q4a, same shape, per weight byte.

    .venv/bin/python bench/kquant_bench.py                          # 576x1536, 1536x768 on the wgpu-py adapter
    .venv/bin/python bench/kquant_bench.py --shapes 576x1536 --repeat 40 --json out.json
    .venv/bin/python bench/kquant_bench.py --browser                # the same on SwiftShader (Chromium)

Each format runs the CPU sets' default decode matmul (codegen.kernels.matmul_key, n = 1, f32
activations: the block formats take matmul.wgsl's "dq8" path, q4a its "quant" path) on random
weights of the shape (random GGUF blocks for the block formats). `repeat` back-to-back dispatches
go in one submission; the formats take turns for `rounds` rounds and the fastest submission of
each is its time per dispatch (the least disturbed by other load on a shared machine). Reported per format:
µs per dispatch, the stored weight bytes (data + scales) read per dispatch, GB/s of them, and two
ratios against q4a: time (how much slower one matmul is) and time per weight byte (how much
slower each byte is read: > 1 means the format's decode costs more ALU per byte than q4a's).

--browser runs the kernels on Chromium's WebGPU (SwiftShader here) through
webllm_py.testing.browser_kernels; there every run also moves its arrays through the page as
base64, so a dispatch's time is the difference of a `repeat`-dispatch run and a 1-dispatch run
of the same arrays, over repeat - 1.

On lavapipe / SwiftShader (CPU emulators) these figures rank kernel ALU cost on a CPU, not GPU
speed: see docs/performance.md's warning about emulator timings.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from webllm_py.codegen.kernels import build, matmul_key  # noqa: E402
from webllm_py.codegen.runner import KernelRunner, request_device  # noqa: E402
from webllm_py.quant import kquant, quantize  # noqa: E402

FORMATS = ["q4a", *kquant.SPECS]


def weight_arrays(rng: np.random.Generator, fmt: str, rows: int, cols: int) -> dict[str, np.ndarray]:
    """The kernel's weight bindings for random weights of `fmt` (random GGUF blocks for block formats)."""
    if fmt in kquant.SPECS:
        s = kquant.SPECS[fmt]
        raw = rng.integers(0, 256, (rows, cols // s.block, s.block_bytes), dtype=np.uint8)
        parts = kquant.from_gguf(fmt, raw, rows, cols)
    else:
        parts = quantize(rng.standard_normal((rows, cols)).astype(np.float32), fmt)
    return {"w": parts["data"], "scales": parts["scales"]}


def prepare(fmt: str, rows: int, cols: int, rng) -> dict:
    k = build(matmul_key("f32", fmt, rows, cols))
    arrays = {**weight_arrays(rng, fmt, rows, cols), "x": rng.standard_normal((1, cols)).astype(np.float32),
              "out": np.zeros((1, rows), np.float32)}
    return {"format": fmt, "kernel": k, "arrays": arrays, "weight_bytes": arrays["w"].nbytes + arrays["scales"].nbytes}


def _timed(runner: KernelRunner, c: dict, repeat: int) -> float:
    t0 = time.perf_counter()
    runner.run(c["kernel"], c["arrays"], n=1, repeat=repeat)
    return time.perf_counter() - t0


def time_formats(runner: KernelRunner, cases: list[dict], repeat: int, rounds: int, differential: bool = False) -> None:
    """Per case the fastest of `rounds` submissions of `repeat` dispatches, the formats interleaved
    round by round so a burst of load from other processes hits them alike (min: the least disturbed).
    differential: (time of `repeat` dispatches - time of 1) / (repeat - 1), cancelling per-run transfers."""
    for c in cases:
        runner.run(c["kernel"], c["arrays"], n=1)  # compile + warm
        c["times"] = []
    for _ in range(rounds):
        for c in cases:
            if differential:
                c["times"].append((_timed(runner, c, repeat) - _timed(runner, c, 1)) / (repeat - 1))
            else:
                c["times"].append(_timed(runner, c, repeat) / repeat)
    for c in cases:
        t = min(c.pop("times"))
        c.update(kernel=c["kernel"].name, us=t * 1e6, gbps=c["weight_bytes"] / t / 1e9)
        del c["arrays"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="576x1536,1536x768", help="rows x cols (cols a multiple of 256)")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--browser", action="store_true", help="Chromium's WebGPU (SwiftShader here) instead of wgpu-py")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.browser:
        from webllm_py.testing.browser_kernels import BrowserKernelRunner

        runner = BrowserKernelRunner().start()
        info = {"device": " ".join(str(runner.adapter_info.get(k, "")) for k in ("vendor", "architecture")).strip()
                  or "Chromium WebGPU",
                "adapter_type": "browser", **runner.adapter_info}
    else:
        adapter, device = request_device()
        info = dict(adapter.info)
        runner = KernelRunner(device)
    rng = np.random.default_rng(0)
    results = []
    print(f"adapter: {info.get('device', '?')} ({info.get('adapter_type', '?')}), {platform.node()}")
    for shape in args.shapes.split(","):
        rows, cols = map(int, shape.split("x"))
        rows_out = [prepare(f, rows, cols, rng) for f in args.formats.split(",")]
        time_formats(runner, rows_out, args.repeat, args.rounds, differential=args.browser)
        base = next((r for r in rows_out if r["format"] == "q4a"), None)
        print(f"\n{rows}x{cols} decode (n = 1), f32 activations")
        print(f"  {'format':6} {'us':>9} {'bytes':>10} {'GB/s':>7} {'time/q4a':>9} {'per byte/q4a':>13}")
        for r in rows_out:
            r.update(shape=shape)
            if base:
                r["time_ratio"] = r["us"] / base["us"]
                r["per_byte_ratio"] = (r["us"] / r["weight_bytes"]) / (base["us"] / base["weight_bytes"])
            print(f"  {r['format']:6} {r['us']:9.1f} {r['weight_bytes']:10d} {r['gbps']:7.2f} "
                  f"{r.get('time_ratio', float('nan')):9.2f} {r.get('per_byte_ratio', float('nan')):13.2f}")
        results += rows_out
    if args.browser:
        runner.close()
    if args.json:
        args.json.write_text(json.dumps({"adapter": info, "results": results}, indent=1))


if __name__ == "__main__":
    main()
