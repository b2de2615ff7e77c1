"""The native runtime of embedding bundles: interprets the `encode` program on a wgpu-py device.

As runtime/native.py: weights uploaded once, every buffer, pipeline and bind group made
at load; a step writes ids, rows, offsets and the step uniform, records the program in
one compute pass, copies the b embedding rows to a staging buffer and submits once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..bundle import Bundle
from ..errors import BundleError
from ..ir.graph import compile_dim
from .device import create_pipeline, request_device, select_adapter
from .embedder import BatchedEncoder
from .native import ACT_BYTES, PRECISIONS, _round16, auto_precision


class NativeEncoder(BatchedEncoder):
    """Embedding backend (runtime/embedder.py) on the GPU through wgpu-py."""

    def __init__(self, bundle: Bundle, precision: str = "auto", adapter: Any = None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self._init_limits(bundle.manifest, bundle.dir)
        m = bundle.manifest
        if not m.get("programs"):
            raise BundleError("embedding bundle has no programs (built by an older webllm-py?); rebuild it", bundle.dir)
        self.bundle, self.bundle_dir = bundle, bundle.dir
        self.adapter = adapter or select_adapter()
        self.precision = auto_precision(self.adapter, m["programs"]) if precision == "auto" else precision
        if self.precision not in m["programs"]:
            raise BundleError(f"bundle has no {self.precision} programs (it has {', '.join(m['programs'])})", bundle.dir)
        act_bytes = ACT_BYTES[self.precision]
        sizes = {name: _round16(b["bytes"]) if "bytes" in b else
                 _round16(b["elements"] * (act_bytes if b["dtype"] == "act" else 4)) for name, b in m["buffers"].items()}
        self.device = request_device(self.adapter, f16=self.precision == "f16",
                                     storage_binding_bytes=max(sizes.values()), buffer_bytes=max(sizes.values()),
                                     storage_buffers=max(len(k["bindings"]) for k in m["kernels"].values()))
        self._act_dtype = np.float16 if self.precision == "f16" else np.float32
        self._buffers = self._create_buffers(m["buffers"], sizes)
        self._steps = self._prepare(m["programs"][self.precision]["encode"])

    def _create_buffers(self, specs: dict[str, Any], sizes: dict[str, int]) -> dict[str, Any]:
        import wgpu

        U = wgpu.BufferUsage
        d = self.device
        bufs = {}
        for name, b in specs.items():
            usage = {"uniform": U.UNIFORM | U.COPY_DST, "output": U.STORAGE | U.COPY_DST | U.COPY_SRC}.get(
                b["kind"], U.STORAGE | U.COPY_DST)
            bufs[name] = d.create_buffer(size=sizes[name], usage=usage, label=name)
            if b["kind"] == "weight":
                ref = self.manifest["weights"][b["param"]]["parts"][b["part"]]
                data = self.bundle.read_part(ref).tobytes()[b["offset"] : b["offset"] + b["bytes"]]
                d.queue.write_buffer(bufs[name], 0, data + b"\0" * (-len(data) % 4))
        self._staging = d.create_buffer(size=sizes["embeddings"], usage=U.MAP_READ | U.COPY_DST, label="staging")
        return bufs

    def _prepare(self, program: dict[str, Any]) -> list[tuple[Any, Any, list]]:
        pipelines: dict[str, tuple[Any, Any]] = {}
        steps = []
        for disp in program["dispatches"]:
            kname = disp["kernel"]
            if kname not in pipelines:
                k = self.manifest["kernels"][kname]
                wgsl = (self.bundle_dir / k["file"]).read_text(encoding="utf-8")
                pipelines[kname] = create_pipeline(self.device, wgsl, k["bindings"], kname)
            pipe, bgl = pipelines[kname]
            bg = self.device.create_bind_group(layout=bgl, entries=[
                {"binding": i, "resource": {"buffer": self._buffers[b], "offset": 0, "size": self._buffers[b].size}}
                for i, b in enumerate(disp["bindings"])])
            steps.append((pipe, bg, [compile_dim(w) for w in disp["workgroups"]]))
        return steps

    def _step(self, ids: np.ndarray, rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        import wgpu

        n, b = len(ids), len(offsets) - 1
        q = self.device.queue
        for name, arr in (("ids", ids), ("rows", rows), ("offsets", offsets)):
            q.write_buffer(self._buffers[name], 0, np.ascontiguousarray(arr, dtype=np.int32).tobytes())
        q.write_buffer(self._buffers["step"], 0, np.array([n, 0, 0, 0], dtype=np.uint32).tobytes())
        enc = self.device.create_command_encoder()
        cp = enc.begin_compute_pass()
        for pipe, bg, wg in self._steps:
            cp.set_pipeline(pipe)
            cp.set_bind_group(0, bg)
            cp.dispatch_workgroups(wg[0](n, 0, b), wg[1](n, 0, b), wg[2](n, 0, b))
        cp.end()
        count = b * self.dimensions
        nbytes = _round16(count * np.dtype(self._act_dtype).itemsize)
        enc.copy_buffer_to_buffer(self._buffers["embeddings"], 0, self._staging, 0, nbytes)
        q.submit([enc.finish()])
        self._staging.map_sync(wgpu.MapMode.READ, 0, nbytes)
        data = np.frombuffer(self._staging.read_mapped(0, nbytes, copy=True), dtype=self._act_dtype)
        self._staging.unmap()
        return data[:count].reshape(b, self.dimensions).astype(np.float32)
