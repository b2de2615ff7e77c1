"""Timing on a real GPU through wgpu-py, for bench/gpu_bench.py: device, fills, per-dispatch time.

- `open_device()`: the best adapter (runtime/device.py's ranking: discrete first) and a device
  with every limit raised to the adapter's and timestamp-query / subgroup / shader-f16 where
  the adapter has them (the decode kernels of one bundle get the same from NativeModel).
- `fill(buf)`: contents written ON the GPU (no upload of hundreds of MB through the queue):
  each u32 word is `(hash(i) & 0x03FF03FF) | 0x3C003C00`, which is a finite number read as one
  f32 (about 2^-7) or as two f16 (in [1, 2)), and arbitrary bits for the 4/8-bit formats, so
  every weight format, KV layout and activation buffer reads sane values.
- `time_dispatches(...)`: K dispatches of one pipeline in ONE compute pass, cycling over bind
  groups (weight copies, so that a dispatch's weights are not in L2 from the previous one);
  per-dispatch time from timestamp queries at the pass's start and end when the device has
  them, and always the wall time of submit -> work done. Best (min) of `reps` submissions.
- `read_bandwidth()`: the device's own streaming read rate (a grid-stride vec4<u32> read of
  >= 1 GiB, best of a few grid shapes and reps): the ceiling the kernels are compared with.
- `dispatch_floor()`: an empty kernel's cost per dispatch (same pass structure as the kernels).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

FILL_WGSL = """
@group(0) @binding(0) var<storage, read_write> buf: array<u32>;
@group(0) @binding(1) var<uniform> prm: vec4<u32>;  // (words, seed, 0, 0)

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let stride = nw.x * 256u;
  for (var i = g.x; i < prm.x; i += stride) {
    var h = (i ^ prm.y) * 0x9E3779B1u;
    h ^= h >> 15u;
    h *= 0x85EBCA77u;
    h ^= h >> 13u;
    buf[i] = (h & 0x03FF03FFu) | 0x3C003C00u;
  }
}
"""

# Grid-stride streaming read: consecutive invocations read consecutive 16-byte words (coalesced).
# The result is written only if it equals a constant it (practically) never equals: the loads stay
# live, and no write traffic is added.
READ_WGSL = """
@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> sink: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let n = arrayLength(&src);
  let stride = nw.x * 256u;
  var acc = vec4<u32>(0u);
  for (var i = g.x; i < n; i += stride) { acc ^= src[i]; }
  let r = acc.x ^ acc.y ^ acc.z ^ acc.w;
  if (r == 0x9E3779B1u) { sink[g.x & 255u] = r; }
}
"""

EMPTY_WGSL = """
@group(0) @binding(0) var<storage, read_write> sink: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x == 0xFFFFFFFFu) { sink[0] = 1u; }
}
"""

MAX_GROUPS = 65535


@dataclass
class Gpu:
    """An adapter, its device and what was granted."""

    adapter: Any
    device: Any
    timestamps: bool

    def wait(self) -> None:
        """Block until the submitted work is done (a 16-byte readback: wgpu-py 0.32's
        on_submitted_work_done_sync fails on a callback signature mismatch)."""
        import wgpu

        if not hasattr(self, "_probe"):
            self._probe = self.device.create_buffer(size=16, usage=wgpu.BufferUsage.COPY_SRC | wgpu.BufferUsage.STORAGE)
        self.device.queue.read_buffer(self._probe, 0, 16)

    def info(self) -> dict[str, Any]:
        a = self.adapter
        return {"info": dict(a.info), "adapter_features": sorted(a.features),
                "device_features": sorted(self.device.features), "limits": dict(self.device.limits)}


def adapters() -> list[dict[str, Any]]:
    """Every adapter wgpu finds (all backends), for the report: what a failed selection saw."""
    import wgpu

    return [dict(a.info) for a in wgpu.gpu.enumerate_adapters_sync()]


def open_device() -> Gpu:
    from webllm_py.runtime.device import select_adapter

    adapter = select_adapter()
    features = [f for f in ("timestamp-query", "subgroup", "shader-f16") if f in adapter.features]
    keep = ("max-storage-buffer-binding-size", "max-buffer-size", "max-storage-buffers-per-shader-stage",
            "max-compute-workgroup-storage-size", "max-compute-invocations-per-workgroup",
            "max-compute-workgroup-size-x")
    limits = {k: adapter.limits[k] for k in keep if k in adapter.limits}
    device = adapter.request_device_sync(required_features=features, required_limits=limits)
    return Gpu(adapter, device, "timestamp-query" in device.features)


def _layout(device: Any, kinds: Sequence[str]) -> Any:
    import wgpu

    types = {"read": "read-only-storage", "read_write": "storage", "uniform": "uniform"}
    return device.create_bind_group_layout(entries=[
        {"binding": i, "visibility": wgpu.ShaderStage.COMPUTE, "buffer": {"type": types[k]}}
        for i, k in enumerate(kinds)])


def pipeline(gpu: Gpu, wgsl: str, kinds: Sequence[str], label: str = "") -> tuple[Any, Any]:
    """(pipeline, bind group layout) with an explicit layout, as the runtimes bind."""
    from webllm_py.codegen.wgsl_compat import for_naga

    d = gpu.device
    bgl = _layout(d, kinds)
    module = d.create_shader_module(code=for_naga(wgsl), label=label)
    pipe = d.create_compute_pipeline(layout=d.create_pipeline_layout(bind_group_layouts=[bgl]),
                                     compute={"module": module, "entry_point": "main"}, label=label)
    return pipe, bgl


def bind(gpu: Gpu, bgl: Any, buffers: Sequence[Any]) -> Any:
    """A bind group of whole buffers or (buffer, offset, size) ranges, by binding index."""
    entries = []
    for i, b in enumerate(buffers):
        buf, off, size = b if isinstance(b, tuple) else (b, 0, b.size)
        entries.append({"binding": i, "resource": {"buffer": buf, "offset": off, "size": size}})
    return gpu.device.create_bind_group(layout=bgl, entries=entries)


def storage(gpu: Gpu, nbytes: int, label: str = "") -> Any:
    import wgpu

    U = wgpu.BufferUsage
    return gpu.device.create_buffer(size=max(16, -(-nbytes // 16) * 16), usage=U.STORAGE | U.COPY_DST | U.COPY_SRC,
                                    label=label)


def uniform(gpu: Gpu, words: Sequence[int]) -> Any:
    import wgpu

    data = np.array(list(words) + [0] * (4 - len(words)), dtype=np.uint32).tobytes()
    return gpu.device.create_buffer_with_data(data=data, usage=wgpu.BufferUsage.UNIFORM)


class Filler:
    """Writes FILL_WGSL's pattern into buffers, on the GPU, one binding-sized range at a time."""

    def __init__(self, gpu: Gpu):
        self.gpu = gpu
        self.pipe, self.bgl = pipeline(gpu, FILL_WGSL, ("read_write", "uniform"), "fill")
        self.seed = 1
        limit = int(gpu.device.limits["max-storage-buffer-binding-size"])
        self.chunk = min(limit, 1 << 30) // 256 * 256

    def __call__(self, *bufs: Any) -> None:
        d = self.gpu.device
        enc = d.create_command_encoder()
        for b in bufs:
            for off in range(0, b.size, self.chunk):
                size = min(self.chunk, b.size - off)
                self.seed += 1
                cp = enc.begin_compute_pass()
                cp.set_pipeline(self.pipe)
                cp.set_bind_group(0, bind(self.gpu, self.bgl, [(b, off, size), uniform(self.gpu, [size // 4, self.seed])]))
                cp.dispatch_workgroups(min(MAX_GROUPS, -(-size // 4 // 256)), 1, 1)
                cp.end()
        d.queue.submit([enc.finish()])
        self.gpu.wait()


def time_dispatches(gpu: Gpu, pipe: Any, groups: Sequence[Any], dispatch: tuple[int, int, int],
                    k: int, reps: int = 3) -> dict[str, float]:
    """µs per dispatch of `k` dispatches in one pass, cycling over `groups`: best of `reps`
    submissions, from timestamps ("us_ts", when available) and wall clock ("us_wall")."""
    import wgpu

    d = gpu.device
    qs = resolve = read = None
    if gpu.timestamps:
        qs = d.create_query_set(type="timestamp", count=2)
        resolve = d.create_buffer(size=16, usage=wgpu.BufferUsage.QUERY_RESOLVE | wgpu.BufferUsage.COPY_SRC)
        read = d.create_buffer(size=16, usage=wgpu.BufferUsage.MAP_READ | wgpu.BufferUsage.COPY_DST)
    walls, stamps = [], []
    for _ in range(reps):
        enc = d.create_command_encoder()
        tw = {"query_set": qs, "beginning_of_pass_write_index": 0, "end_of_pass_write_index": 1} if qs else None
        cp = enc.begin_compute_pass(timestamp_writes=tw) if tw else enc.begin_compute_pass()
        cp.set_pipeline(pipe)
        for i in range(k):
            cp.set_bind_group(0, groups[i % len(groups)])
            cp.dispatch_workgroups(*dispatch)
        cp.end()
        if qs:
            enc.resolve_query_set(qs, 0, 2, resolve, 0)
            enc.copy_buffer_to_buffer(resolve, 0, read, 0, 16)
        cb = enc.finish()
        t0 = time.perf_counter()
        d.queue.submit([cb])
        gpu.wait()
        walls.append((time.perf_counter() - t0) / k * 1e6)
        if qs:
            read.map_sync(wgpu.MapMode.READ)
            t = np.frombuffer(read.read_mapped(copy=True), dtype=np.uint64)
            read.unmap()
            stamps.append(float(t[1] - t[0]) / 1e3 / k)  # WebGPU timestamps are nanoseconds
    out = {"us_wall": min(walls), "k": k}
    if stamps:
        out["us_ts"] = min(stamps)
    return out


def calibrated(gpu: Gpu, pipe: Any, groups: Sequence[Any], dispatch: tuple[int, int, int],
               target_ms: float = 20.0, reps: int = 3, max_k: int = 4000) -> dict[str, float]:
    """time_dispatches with K sized so one submission runs about `target_ms` (at least one pass
    over every bind group)."""
    probe = time_dispatches(gpu, pipe, groups, dispatch, len(groups), reps=1)  # also the warm-up
    per = probe.get("us_ts", probe["us_wall"])
    k = int(min(max_k, max(len(groups), target_ms * 1e3 / max(per, 0.5))))
    return time_dispatches(gpu, pipe, groups, dispatch, k, reps)


def read_bandwidth(gpu: Gpu, total_bytes: int = 1 << 30, reps: int = 3) -> dict[str, Any]:
    """Best streaming-read GB/s over `total_bytes` split into buffers of at most the binding limit."""
    per_buf = min(total_bytes, int(gpu.device.limits["max-storage-buffer-binding-size"]) // 16 * 16)
    nbufs = -(-total_bytes // per_buf)
    srcs = [storage(gpu, per_buf, f"bw{i}") for i in range(nbufs)]
    sink = storage(gpu, 1024, "sink")
    Filler(gpu)(*srcs)
    pipe, bgl = pipeline(gpu, READ_WGSL, ("read", "read_write"), "read_bandwidth")
    groups = [bind(gpu, bgl, [s, sink]) for s in srcs]
    tries = []
    for words_per_inv in (4, 16, 64):
        wgs = min(MAX_GROUPS, max(1, per_buf // 16 // 256 // words_per_inv))
        t = time_dispatches(gpu, pipe, groups, (wgs, 1, 1), k=max(8, nbufs * 2), reps=reps)
        us = t.get("us_ts", t["us_wall"])
        tries.append({"workgroups": wgs, "us_per_buffer": us, "gbps": per_buf / us / 1e3, **t})
    for b in srcs:
        b.destroy()
    best = max(tries, key=lambda r: r["gbps"])
    return {"bytes": per_buf * nbufs, "buffers": nbufs, "gbps": best["gbps"], "tries": tries}


def dispatch_floor(gpu: Gpu, k: int = 2000) -> dict[str, float]:
    """µs per dispatch of a kernel that does nothing (one workgroup, one storage binding)."""
    pipe, bgl = pipeline(gpu, EMPTY_WGSL, ("read_write",), "empty")
    sink = storage(gpu, 16, "sink")
    return time_dispatches(gpu, pipe, [bind(gpu, bgl, [sink])], (1, 1, 1), k=k)
