"""Decode kernels and a decode step on a real GPU (wgpu-py), in one prepared command.

    python3 bench/gpu_bench.py --json OUT.json          # a machine with a GPU: ~2-3 minutes
    .venv/bin/python bench/gpu_bench.py --smoke         # lavapipe, tiny sizes, < 30 s (CI smoke test)

It needs only numpy, jinja2, safetensors, tokenizers and wgpu (+ a Vulkan loader): what
bench/gpu_bench_wheels.sh prepares for the device tool (bench/README.md gives the one `run`).
Sections, printed and written to --json after each one (a run cut short keeps what it did):

1. adapter: info, features and limits (bench/gpu_timing.py opens the device: limits raised to
   the adapter's, timestamp-query / subgroup / shader-f16 where present).
2. read_bandwidth: the device's own streaming read rate over >= 1 GiB, best of a few grid
   shapes: the ceiling every kernel below is compared with.
3. dispatch_floor: an empty kernel's cost per dispatch in a pass of 2000.
4. kernels: each decode kernel of the GPU program sets (bench/gpu_cases.py: gemv per linear and
   format, attention_split + combine at contexts 1024/4096, for set "gpu" and, with subgroups,
   "gpu-sg") at SmolLM2-135M, Llama-1B and Llama-8B shapes; weights (and K/V) rotated over
   copies totalling >= --rotate-mb so that L2 hits do not count; µs per dispatch (timestamps
   when available, else wall), GB/s of the bytes it must move and % of read_bandwidth.
5. decode: a random-weight Llama-1B bundle built here and decoded by the native runtime with
   a GPU program set forced (bench/gpu_decode.py): tok/s against the weight-read bound.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import gpu_timing as gt  # noqa: E402
from gpu_cases import SHAPES, Case, decode_cases  # noqa: E402

MAX_COPIES = 4096

FULL = dict(shapes="smollm2-135m,llama-1b,llama-8b", formats="q4,q4a,q8,f16", contexts="1024,4096",
            rotate_mb=512, bandwidth_mb=1024, target_ms=20.0, reps=3, decode_shape="llama-1b", decode_fmt="q4",
            decode_tokens=64, decode_context=1024)
SMOKE = dict(shapes="tiny", formats="q4", contexts="300", rotate_mb=1, bandwidth_mb=16, target_ms=1.0, reps=1,
             decode_shape="tiny", decode_fmt="q4", decode_tokens=8, decode_context=64)


def run_case(gpu: gt.Gpu, fill: gt.Filler, case: Case, rotate_bytes: int, target_ms: float,
             reps: int) -> dict[str, Any]:
    """Allocate `case`'s buffers (rotated ones as aligned copies inside shared buffers), fill
    them on the GPU, time it; every buffer is destroyed before returning."""
    k = case.kernel
    lim = gpu.device.limits
    align = int(lim["min-storage-buffer-offset-alignment"])
    strides = {b: -(-max(16, case.sizes[b]) // align) * align for b in case.rotate}
    per_copy = sum(strides.values())
    copies = 1 if not case.rotate else max(2, min(MAX_COPIES, math.ceil(rotate_bytes / max(per_copy, 1))))
    for b, st in strides.items():
        if case.sizes[b] > int(lim["max-storage-buffer-binding-size"]):
            raise ValueError(f"{b} is {case.sizes[b]} bytes, over this device's max-storage-buffer-binding-size")
    per_buf = max(1, int(lim["max-buffer-size"]) // max(strides.values(), default=1))
    made: list[Any] = []
    ranges: dict[str, list[tuple[Any, int, int]]] = {}
    for b, st in strides.items():
        ranges[b] = []
        for first in range(0, copies, per_buf):
            buf = gt.storage(gpu, min(per_buf, copies - first) * st, b)
            made.append(buf)
            ranges[b] += [(buf, i * st, -(-max(16, case.sizes[b]) // 16) * 16)
                          for i in range(min(per_buf, copies - first))]
    shared: dict[str, Any] = {}
    for name, kind in k.bindings:
        if kind == "uniform":
            shared[name] = gt.uniform(gpu, [case.n, case.p])
        elif name not in strides:
            if name not in case.sizes:
                raise KeyError(f"no size for binding {name!r} of {k.name}")
            shared[name] = gt.storage(gpu, case.sizes[name], name)
            made.append(shared[name])
    try:
        fill(*made)
        pipe, bgl = gt.pipeline(gpu, k.wgsl, [kind for _, kind in k.bindings], k.name)
        groups = [gt.bind(gpu, bgl, [ranges[name][c] if name in ranges else shared[name] for name, _ in k.bindings])
                  for c in range(copies)]
        dispatch = k.dispatch_for(case.n, case.p)
        t = gt.calibrated(gpu, pipe, groups, dispatch, target_ms=target_ms, reps=reps, max_k=max(4000, 2 * copies))
    finally:
        for b in made:
            b.destroy()
    us = t.get("us_ts", t["us_wall"])
    wg = k.workgroup_size
    return {"label": case.label, "family": case.family, "kernel": k.name, "n": case.n, "p": case.p,
            "dispatch": list(dispatch), "invocations": math.prod(dispatch) * math.prod(wg),
            "copies": copies, "rotated_mb": copies * per_copy / 2**20, "moved_bytes": case.moved,
            "us": us, "timing": "timestamp" if "us_ts" in t else "wall", **t,
            "gbps": case.moved / us / 1e3, **case.extra}


class Report:
    """The JSON document, rewritten after each section."""

    def __init__(self, path: str | None, args: argparse.Namespace):
        self.path = path
        self.doc: dict[str, Any] = {"args": vars(args), "host": platform.node(), "python": sys.version.split()[0],
                                    "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def put(self, key: str, value: Any) -> None:
        self.doc[key] = value
        if self.path:
            Path(self.path).write_text(json.dumps(self.doc, indent=1, default=str))


def print_kernels(rows: list[dict[str, Any]], bw: float) -> None:
    print(f"\n| kernel | family | invocations | µs | GB/s | % of {bw:.0f} GB/s | copies |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['label']} | error: {r['error'][:100]} | | | | | |")
        else:
            print(f"| {r['label']} | {r['family']} | {r['invocations']} | {r['us']:.1f} ({r['timing']}) | "
                  f"{r['gbps']:.3g} | {100 * r['gbps'] / bw:.0f} % | {r['copies']} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (lavapipe, < 30 s)")
    ap.add_argument("--json", help="write the results here (after every section)")
    for k, v in FULL.items():
        ap.add_argument("--" + k.replace("_", "-"), type=type(v), default=None, help=f"default {v} (smoke {SMOKE[k]})")
    ap.add_argument("--skip-decode", action="store_true")
    ap.add_argument("--budget-s", type=float, default=100.0,
                    help="start no kernel case after this many seconds (the decode section follows)")
    args = ap.parse_args(argv)
    for k, v in (SMOKE if args.smoke else FULL).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    t_start = time.perf_counter()
    rep = Report(args.json, args)
    work = tempfile.TemporaryDirectory(prefix="gpu-bench-")
    build = None
    if not args.skip_decode:
        # the decode section's bundle is built on the CPU in another process while the GPU times
        # kernels; spawned before any GPU device exists in this one
        from multiprocessing import get_context

        from gpu_decode import prepare_bundle

        pool = get_context("spawn").Pool(1)
        build = pool.apply_async(prepare_bundle, (work.name, SHAPES[args.decode_shape], args.decode_fmt,
                                                  args.decode_context))
    try:
        return _measure(args, rep, t_start, build)
    finally:
        if build is not None:
            pool.terminate()  # a run that ends early does not wait for the build
        work.cleanup()


def _measure(args: argparse.Namespace, rep: Report, t_start: float, build: Any) -> int:
    """Sections 1-5 (module docstring); `build`: the pending bundle build of section 5, or None."""
    rep.put("adapters", gt.adapters())
    try:
        gpu = gt.open_device()
    except Exception as e:  # no usable adapter: the report says what wgpu saw
        rep.put("error", f"{type(e).__name__}: {e}")
        print(f"no device: {e}\nadapters wgpu found: {rep.doc['adapters']}")
        return 2
    rep.put("adapter", gpu.info())
    info = gpu.adapter.info
    print(f"adapter: {info.get('vendor')} {info.get('device')} ({info.get('adapter_type')}, {info.get('backend_type')}), "
          f"timestamps {'yes' if gpu.timestamps else 'no'}, subgroups {'yes' if 'subgroup' in gpu.device.features else 'no'}")

    bw = gt.read_bandwidth(gpu, args.bandwidth_mb << 20, reps=args.reps)
    rep.put("read_bandwidth", bw)
    print(f"read bandwidth: {bw['gbps']:.1f} GB/s over {bw['bytes'] / 2**20:.0f} MiB")
    floor = gt.dispatch_floor(gpu, k=200 if args.smoke else 2000)
    rep.put("dispatch_floor", floor)
    print(f"dispatch floor: {floor.get('us_ts', floor['us_wall']):.2f} µs per empty dispatch "
          f"(wall {floor['us_wall']:.2f})")

    sg_modes = [False, True] if "subgroup" in gpu.device.features else [False]
    cases = decode_cases(args.shapes.split(","), args.formats.split(","), [int(c) for c in args.contexts.split(",")],
                         sg_modes)
    fill = gt.Filler(gpu)
    rows: list[dict[str, Any]] = []
    for c in cases:
        if time.perf_counter() - t_start > args.budget_s:
            rows.append({"label": c.label if isinstance(c, Case) else c["label"], "error": "skipped: --budget-s spent"})
        elif isinstance(c, dict):
            rows.append(c)
        else:
            try:
                rows.append(run_case(gpu, fill, c, args.rotate_mb << 20, args.target_ms, args.reps))
            except Exception as e:  # one case failing (a limit, a compile error) must not lose the others
                rows.append({"label": c.label, "family": c.family, "error": f"{type(e).__name__}: {e}"})
        rep.put("kernels", rows)
    print_kernels(rows, bw["gbps"])
    gpu.device.destroy()

    if build is not None:
        from gpu_decode import run_decode

        try:
            dec = run_decode(build.get(), bw["gbps"], tokens=args.decode_tokens)
        except Exception as e:
            dec = {"error": f"{type(e).__name__}: {e}"}
        rep.put("decode", dec)
        if "error" in dec:
            print(f"decode: {dec['error']}")
        else:
            print(f"decode {args.decode_shape} {args.decode_fmt} ({dec['precision']}): {dec['decode_tok_s']:.1f} tok/s "
                  f"({dec['ms_per_token']:.2f} ms/token), weight-read bound {dec['bound_tok_s']:.1f} tok/s "
                  f"({dec['weight_bytes_per_token'] / 2**20:.0f} MiB/token): {100 * dec['of_bound']:.0f} % of it; "
                  f"built in {dec['write_s'] + dec['build_s']:.1f} s beside the kernels")
    rep.put("seconds", time.perf_counter() - t_start)
    print(f"done in {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
