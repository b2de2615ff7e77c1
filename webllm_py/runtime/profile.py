"""Per-kernel GPU time of one program step, from timestamp queries (`webllm-py profile`).

Each dispatch runs in its own compute pass with begin/end timestamps, so the
numbers include each dispatch's own cost but not the driver's batching of a
normal step; the total is reported next to the step's wall time for scale.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import numpy as np


def profile_step(model: Any, program: str = "decode", n: int = 1, p: int = 0, repeats: int = 5) -> dict[str, Any]:
    """GPU microseconds per kernel family (median over `repeats`) for one step of `program`."""
    import wgpu

    d = model.device
    # the dispatches that run at this n (a gated one counts 0 workgroups, codegen/shapes.py: skipped as the runtime does)
    steps = [s for s in model._programs[program]["steps"] if all(w(n, p) for w in s[2])]
    count = 2 * len(steps)
    qs = d.create_query_set(type="timestamp", count=count)
    resolve = d.create_buffer(size=8 * count, usage=wgpu.BufferUsage.QUERY_RESOLVE | wgpu.BufferUsage.COPY_SRC)
    read = d.create_buffer(size=8 * count, usage=wgpu.BufferUsage.MAP_READ | wgpu.BufferUsage.COPY_DST)
    ids = np.arange(n, dtype=np.int32) % model.vocab_size
    d.queue.write_buffer(model._buffers["ids"], 0, ids.tobytes())
    d.queue.write_buffer(model._buffers["step"], 0, np.array([n, p, 0, 0], dtype=np.uint32).tobytes())
    per_dispatch = []
    walls = []
    for _ in range(repeats):
        enc = d.create_command_encoder()
        for i, (pipe, bg, wg, _) in enumerate(steps):
            cp = enc.begin_compute_pass(timestamp_writes={"query_set": qs, "beginning_of_pass_write_index": 2 * i,
                                                           "end_of_pass_write_index": 2 * i + 1})
            cp.set_pipeline(pipe)
            cp.set_bind_group(0, bg)
            cp.dispatch_workgroups(wg[0](n, p), wg[1](n, p), wg[2](n, p))
            cp.end()
        enc.resolve_query_set(qs, 0, count, resolve, 0)
        enc.copy_buffer_to_buffer(resolve, 0, read, 0, 8 * count)
        t0 = time.perf_counter()
        d.queue.submit([enc.finish()])
        read.map_sync(wgpu.MapMode.READ)
        walls.append(time.perf_counter() - t0)
        ts = np.frombuffer(read.read_mapped(copy=True), dtype=np.uint64).astype(np.float64)
        read.unmap()
        per_dispatch.append((ts[1::2] - ts[0::2]) / 1000.0)
    med = np.median(np.stack(per_dispatch), axis=0)
    by_family: dict[str, list[float]] = defaultdict(list)
    by_kernel: dict[str, list[float]] = defaultdict(list)
    for (_, _, _, name), us in zip(steps, med):
        by_family[name.split("_act-")[0]].append(float(us))
        by_kernel[name].append(float(us))
    return {"program": program, "n": n, "p": p, "dispatches": len(steps), "gpu_total_us": float(med.sum()),
            "wall_profiled_ms": float(np.median(walls) * 1000),
            "families": _summary(by_family), "kernels": _summary(by_kernel)}


def _summary(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """{name: dispatches, total_us, mean_us}, largest total first."""
    rows = {k: {"dispatches": len(v), "total_us": sum(v), "mean_us": sum(v) / len(v)} for k, v in times.items()}
    return dict(sorted(rows.items(), key=lambda kv: -kv[1]["total_us"]))


def format_profile(r: dict[str, Any]) -> str:
    lines = [f"{r['program']} step, n={r['n']} p={r['p']}: {r['dispatches']} dispatches, "
             f"GPU {r['gpu_total_us'] / 1000:.2f} ms (profiled wall {r['wall_profiled_ms']:.2f} ms)",
             f"{'kernel':16} {'count':>5} {'total ms':>9} {'share':>6} {'mean us':>8}"]
    for f, v in r["families"].items():
        lines.append(f"{f:16} {v['dispatches']:5d} {v['total_us'] / 1000:9.3f} {v['total_us'] / r['gpu_total_us']:6.1%} "
                     f"{v['mean_us']:8.1f}")
    lines.append("per kernel variant (key):")
    for k, v in r["kernels"].items():
        lines.append(f"  {v['dispatches']:5d} x {v['mean_us']:8.1f} us = {v['total_us'] / 1000:7.3f} ms  {k}")
    return "\n".join(lines)
