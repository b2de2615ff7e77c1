"""Run one kernel variant on wgpu-py: the test harness, reusable by a runtime.

The device is passed in (or made by `request_device`), never created at import.
Bind group layouts are built explicitly from `Kernel.bindings` (not "auto"), so
a binding a kernel declares but never uses still has to be bound, exactly as
the JS runtime will bind it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .kernels import Kernel
from .wgsl_compat import for_naga

_BUFFER_TYPES = {"read": "read-only-storage", "read_write": "storage", "uniform": "uniform"}


def request_device(power_preference: str = "high-performance") -> tuple[Any, Any]:
    """(adapter, device) of the wgpu-py adapter, with shader-f16 and subgroups when the adapter has them.

    The device keeps WebGPU's default limits, so kernels are tested against
    what a browser grants by default (8 storage buffers, 16 KiB workgroup storage)."""
    import wgpu

    adapter = wgpu.gpu.request_adapter_sync(power_preference=power_preference)
    if adapter is None:
        raise RuntimeError("no WebGPU adapter: install mesa-vulkan-drivers and libvulkan1 (lavapipe)")
    features = [f for f in ("shader-f16", "subgroup") if f in adapter.features]
    device = adapter.request_device_sync(required_features=features)
    return adapter, device


def has_f16(device: Any) -> bool:
    return "shader-f16" in device.features


def has_subgroups(device: Any) -> bool:
    return "subgroup" in device.features


class KernelRunner:
    """Compiles kernels once per WGSL text and runs them on numpy arrays."""

    def __init__(self, device: Any):
        self.device = device
        self._pipelines: dict[str, tuple[Any, Any]] = {}

    def pipeline(self, kernel: Kernel) -> tuple[Any, Any]:
        """(pipeline, bind group layout) for `kernel`; compiling it validates the WGSL with naga."""
        hit = self._pipelines.get(kernel.wgsl)
        if hit is not None:
            return hit
        import wgpu

        d = self.device
        entries = [
            {"binding": i, "visibility": wgpu.ShaderStage.COMPUTE, "buffer": {"type": _BUFFER_TYPES[kind]}}
            for i, (_, kind) in enumerate(kernel.bindings)
        ]
        bgl = d.create_bind_group_layout(entries=entries)
        layout = d.create_pipeline_layout(bind_group_layouts=[bgl])
        module = d.create_shader_module(code=for_naga(kernel.wgsl), label=kernel.name)
        pipe = d.create_compute_pipeline(layout=layout, compute={"module": module, "entry_point": "main"},
                                         label=kernel.name)
        self._pipelines[kernel.wgsl] = (pipe, bgl)
        return pipe, bgl

    def run(self, kernel: Kernel, arrays: dict[str, np.ndarray], n: int, p: int = 0,
            repeat: int = 1, b: int = 0, end: int = 0) -> dict[str, np.ndarray]:
        """Bind `arrays` by binding name ("step" is [n, p, end or p + n, 0]; end: the forward call's end
        position, longrope's table switch), dispatch (b: rows of an encoder
        batch, for dispatch expressions only), and return every
        read_write binding's buffer as an array of its input's dtype and shape.

        Buffers are rounded up to 16 bytes with zeros; callers that want sentinels put them
        inside their arrays."""
        import wgpu

        d = self.device
        pipe, bgl = self.pipeline(kernel)
        buffers, outs = [], {}
        for i, (name, kind) in enumerate(kernel.bindings):
            if kind == "uniform":
                data = np.array([n, p, end or p + n, 0], dtype=np.uint32).tobytes()
                buf = d.create_buffer_with_data(data=data, usage=wgpu.BufferUsage.UNIFORM)
            else:
                a = np.ascontiguousarray(arrays[name])
                raw = a.tobytes()
                raw += b"\0" * ((-len(raw)) % 16 or (16 if not raw else 0))
                buf = d.create_buffer_with_data(
                    data=raw, usage=wgpu.BufferUsage.STORAGE | wgpu.BufferUsage.COPY_SRC | wgpu.BufferUsage.COPY_DST)
                if kind == "read_write":
                    outs[name] = (buf, a)
            buffers.append({"binding": i, "resource": {"buffer": buf, "offset": 0, "size": buf.size}})
        group = d.create_bind_group(layout=bgl, entries=buffers)
        x, y, z = kernel.dispatch_for(n, p, b)
        enc = d.create_command_encoder()
        for _ in range(repeat):
            cp = enc.begin_compute_pass()
            cp.set_pipeline(pipe)
            cp.set_bind_group(0, group)
            cp.dispatch_workgroups(x, y, z)
            cp.end()
        d.queue.submit([enc.finish()])
        result = {}
        for name, (buf, a) in outs.items():
            raw = bytes(d.queue.read_buffer(buf))[: a.nbytes]
            result[name] = np.frombuffer(raw, dtype=a.dtype).reshape(a.shape).copy()
        return result
