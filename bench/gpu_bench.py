"""Decode kernels and a decode step on a real GPU (wgpu-py), in one prepared command.

    python3 bench/gpu_bench.py --json OUT.json          # a machine with a GPU: ~2.5-3.5 minutes
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
5. prefill_attention: the gpu sets' two prefill attention shapes at the same (n, p) (Llama-1B
   and Llama-8B, n = 1..128, p = 1024 / 4096; bench/gpu_cases.py prefill_attention_cases):
   µs of attention_tiled against attention_split + attention_combine (two dispatches), their
   ratio, and per (shape, p) the largest n where the split still wins: what
   codegen/shapes.py SPLIT_PREFILL_MAX_N should be. Its own time budget (--prefill-budget-s).
6. decode: a random-weight Llama-1B bundle built here and decoded by the native runtime with
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
from gpu_cases import SHAPES, Case, PrefillCase, decode_cases, prefill_attention_cases  # noqa: E402

MAX_COPIES = 4096

FULL = dict(shapes="smollm2-135m,llama-1b,llama-8b", formats="q4,q4a,q8,f16", contexts="1024,4096",
            rotate_mb=512, bandwidth_mb=1024, target_ms=20.0, reps=3, decode_shape="llama-1b", decode_fmt="q4",
            decode_tokens=64, decode_context=1024, prefill_shapes="llama-1b,llama-8b", prefill_ns="1,4,8,16,32,64,128",
            prefill_contexts="1024,4096")
# smoke: n = 16 and 17 straddle today's SPLIT_PREFILL_MAX_N
SMOKE = dict(shapes="tiny", formats="q4", contexts="300", rotate_mb=1, bandwidth_mb=16, target_ms=1.0, reps=1,
             decode_shape="tiny", decode_fmt="q4", decode_tokens=8, decode_context=64, prefill_shapes="tiny",
             prefill_ns="1,16,17", prefill_contexts="300")


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


def _us(row: dict[str, Any]) -> float | None:
    return None if "error" in row else row["us"]


def prefill_row(gpu: gt.Gpu, fill: gt.Filler, c: PrefillCase, args: argparse.Namespace) -> dict[str, Any]:
    """Time one (shape, p, n): each kernel alone (run_case); split + combine is the sum of the two
    (what one chunk's attention costs when the split runs: the tiled dispatch counts 0 workgroups
    and the runtimes skip it, and the other way round)."""
    row: dict[str, Any] = {"shape": c.shape, "p": c.p, "n": c.n}
    for part in ("tiled", "split", "combine"):
        case = getattr(c, part)
        try:
            row[part] = run_case(gpu, fill, case, args.rotate_mb << 20, args.target_ms, args.reps)
        except Exception as e:  # one kernel failing keeps the others' figures
            row[part] = {"label": case.label, "family": case.family, "error": f"{type(e).__name__}: {e}"}
    tiled, split, combine = (_us(row[k]) for k in ("tiled", "split", "combine"))
    row["us_tiled"] = tiled
    row["us_split_combine"] = None if split is None or combine is None else split + combine
    row["ratio"] = None if tiled is None or not row["us_split_combine"] else tiled / row["us_split_combine"]
    return row


def crossovers(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (shape, p): the n where the split won (ratio tiled / split > 1) and the largest of them
    ("crossover_n"; None when the split never won). `below_all_win`: every measured n up to the
    crossover won too (else the curve is not monotone and the crossover is to be read with care)."""
    out = []
    for key in dict.fromkeys((r["shape"], r["p"]) for r in rows):
        mine = sorted((r for r in rows if (r["shape"], r["p"]) == key and r.get("ratio") is not None),
                      key=lambda r: r["n"])
        wins = [r["n"] for r in mine if r["ratio"] > 1]
        x = max(wins, default=None)
        out.append({"shape": key[0], "p": key[1], "crossover_n": x, "split_wins_at": wins,
                    "measured_n": [r["n"] for r in mine],
                    "below_all_win": x is not None and all(r["ratio"] > 1 for r in mine if r["n"] <= x)})
    return out


def prefill_attention(gpu: gt.Gpu, fill: gt.Filler, args: argparse.Namespace, rep: Report) -> None:
    """Section 5 (module docstring), written to the report after every (shape, p, n)."""
    from webllm_py.codegen.shapes import SPLIT_PREFILL_MAX_N

    t0 = time.perf_counter()
    sg = "subgroup" in gpu.device.features  # the set a runtime loads here: gpu-sg where subgroups exist
    doc: dict[str, Any] = {"set": "gpu-sg" if sg else "gpu", "split_prefill_max_n": SPLIT_PREFILL_MAX_N, "rows": []}
    cases = prefill_attention_cases(args.prefill_shapes.split(","), [int(n) for n in args.prefill_ns.split(",")],
                                    [int(p) for p in args.prefill_contexts.split(",")], sg)
    for c in cases:
        if isinstance(c, dict):
            doc["rows"].append(c)
        elif time.perf_counter() - t0 > args.prefill_budget_s:
            doc["rows"].append({"shape": c.shape, "p": c.p, "n": c.n, "error": "skipped: --prefill-budget-s spent"})
        else:
            doc["rows"].append(prefill_row(gpu, fill, c, args))
        doc["rows"].sort(key=lambda r: (r["shape"], r["p"], r["n"]))
        doc["crossover"] = crossovers(doc["rows"])
        doc["seconds"] = time.perf_counter() - t0
        rep.put("prefill_attention", doc)
    print_prefill(doc)


def print_prefill(doc: dict[str, Any]) -> None:
    def f(v: float | None, spec: str = ".1f") -> str:
        return "" if v is None else format(v, spec)

    print(f"\nprefill attention (set {doc['set']}; today's SPLIT_PREFILL_MAX_N = {doc['split_prefill_max_n']}; "
          f"{doc['seconds']:.1f} s)")
    print("| shape | p | n | µs tiled | µs split + combine | tiled / split |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in doc["rows"]:
        errs = [r[k]["error"] for k in ("tiled", "split", "combine") if "error" in r.get(k, {})]
        err = r.get("error") or "; ".join(errs)
        print(f"| {r['shape']} | {r['p']} | {r['n']} | {f(r.get('us_tiled'))} | {f(r.get('us_split_combine'))} | "
              f"{f(r.get('ratio'), '.2f')}{' error: ' + err[:100] if err else ''} |")
    for x in doc["crossover"]:
        print(f"{x['shape']} p={x['p']}: the split wins up to n = {x['crossover_n']} (wins at {x['split_wins_at']}"
              f"{'' if x['below_all_win'] or x['crossover_n'] is None else '; not monotone'})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (lavapipe, < 30 s)")
    ap.add_argument("--json", help="write the results here (after every section)")
    for k, v in FULL.items():
        ap.add_argument("--" + k.replace("_", "-"), type=type(v), default=None, help=f"default {v} (smoke {SMOKE[k]})")
    ap.add_argument("--skip-decode", action="store_true")
    ap.add_argument("--budget-s", type=float, default=100.0,
                    help="start no kernel case after this many seconds (the decode section follows)")
    ap.add_argument("--prefill-budget-s", type=float, default=25.0,
                    help="start no prefill_attention case after this many seconds of that section")
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
    """Sections 1-6 (module docstring); `build`: the pending bundle build of section 6, or None."""
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
    try:
        prefill_attention(gpu, fill, args, rep)
    except Exception as e:  # the section must not cost the decode section
        prev = rep.doc.get("prefill_attention", {})
        rep.put("prefill_attention", {**prev, "error": f"{type(e).__name__}: {e}"})
        print(f"prefill_attention: {type(e).__name__}: {e}")
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
