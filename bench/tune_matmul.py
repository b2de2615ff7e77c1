"""Sweep matmul kernel tuning knobs (wg, rpi, tn) on given shapes; print GB/s of weights read.

    .venv/bin/python bench/tune_matmul.py --shapes 1536x576,576x1536,49152x576 --fmt q4a,q8

Each variant runs `repeat` back-to-back dispatches in one submission; the
median of 5 submissions is reported. Use it to pick defaults per adapter.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import numpy as np

from webllm_py.codegen.kernels import MatmulKey, build
from webllm_py.codegen.runner import KernelRunner, request_device
from webllm_py.quant import quantize


def time_variant(runner: KernelRunner, key: MatmulKey, arrays: dict, n: int, repeat: int) -> float:
    k = build(key)
    runner.run(k, arrays, n=n, repeat=1)  # compile + warm
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        runner.run(k, arrays, n=n, repeat=repeat)
        ts.append((time.perf_counter() - t0) / repeat)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="1536x576,576x1536,49152x576")
    ap.add_argument("--fmt", default="q4a")
    ap.add_argument("--n", type=int, default=1)
    ap.add_argument("--wg", default="8,16,32,64")
    ap.add_argument("--rpi", default="1,2,4,8")
    ap.add_argument("--tn", default="1")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    _, device = request_device()
    runner = KernelRunner(device)
    rng = np.random.default_rng(0)
    for shape, fmt in itertools.product(args.shapes.split(","), args.fmt.split(",")):
        rows, cols = map(int, shape.split("x"))
        parts = quantize(rng.standard_normal((rows, cols)).astype(np.float32), fmt)
        nbytes = sum(v.nbytes for v in parts.values())
        arrays = {"x": rng.standard_normal((args.n, cols)).astype(np.float32), "w": parts["data"],
                  "out": np.zeros((args.n, rows), np.float32)}
        if "scales" in parts:
            arrays["scales"] = parts["scales"]
        results = []
        for wg, rpi, tn in itertools.product(*(map(int, v.split(",")) for v in (args.wg, args.rpi, args.tn))):
            try:
                key = MatmulKey(act="f32", fmt=fmt, rows=rows, cols=cols, wg=wg, rpi=rpi, tn=tn)
                t = time_variant(runner, key, arrays, args.n, args.repeat)
            except ValueError as e:
                continue
            results.append((t, wg, rpi, tn))
        results.sort()
        print(f"{shape} {fmt} ({nbytes / 2**20:.2f} MiB), n={args.n}:")
        for t, wg, rpi, tn in results[:5]:
            print(f"   wg={wg:3d} rpi={rpi} tn={tn}: {t * 1e6:8.1f} us  {nbytes / t / 1e9:6.2f} GB/s  "
                  f"{args.n / t:9.1f} tok/s-equivalent")


if __name__ == "__main__":
    main()
