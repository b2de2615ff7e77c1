"""GPU device selection and pipeline creation for the native (wgpu-py) runtime.

Picks a Vulkan/Metal/D3D12 adapter (never the OpenGL fallback, which lacks
storage-buffer features the kernels need), requests shader-f16 only when asked
and present, and raises the limits the bundle needs up to what the adapter has.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from ..codegen.wgsl_compat import WGPU_PY_FEATURE
from ..errors import DeviceError

_BUFFER_TYPES = {"read": "read-only-storage", "read_write": "storage", "uniform": "uniform"}
_NATIVE_BACKENDS = ("Vulkan", "Metal", "D3D12")
NO_ADAPTER_HINT = (
    "no Vulkan/Metal/D3D12 GPU adapter found by wgpu. On Linux without a GPU install the CPU Vulkan "
    "driver: `sudo apt-get install mesa-vulkan-drivers libvulkan1` (lavapipe)"
)


def _quiet_mesa() -> None:
    # Mesa prints noise on stderr when XDG_RUNTIME_DIR is unset.
    if not os.environ.get("XDG_RUNTIME_DIR"):
        d = Path("/tmp") / f"xdg-{os.getuid()}"
        d.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(d)


def select_adapter() -> Any:
    _quiet_mesa()
    import wgpu

    adapters = [a for a in wgpu.gpu.enumerate_adapters_sync() if a.info.get("backend_type") in _NATIVE_BACKENDS]
    if not adapters:
        raise DeviceError(NO_ADAPTER_HINT)
    rank = {"DiscreteGPU": 0, "IntegratedGPU": 1, "VirtualGPU": 2, "CPU": 3}
    return min(adapters, key=lambda a: rank.get(a.info.get("adapter_type"), 4))


def request_device(adapter: Any, *, f16: bool, storage_binding_bytes: int, buffer_bytes: int,
                   storage_buffers: int, timestamps: bool = False, features: Sequence[str] = ()) -> Any:
    """A device with shader-f16 if `f16`, the WebGPU `features` a program set needs (as wgpu-py
    names them: subgroups -> subgroup), and limits raised to what the bundle needs."""
    limits = adapter.limits
    need = {
        "max-storage-buffer-binding-size": storage_binding_bytes,
        "max-buffer-size": buffer_bytes,
        "max-storage-buffers-per-shader-stage": storage_buffers,
    }
    for k, v in need.items():
        if v > limits[k]:
            raise DeviceError(f"the bundle needs {k} = {v}, this adapter allows {limits[k]} "
                              f"({adapter.info.get('device')})")
    needs, features = features, ["shader-f16"] if f16 else []
    if f16 and "shader-f16" not in adapter.features:
        raise DeviceError(f"precision f16 needs the shader-f16 feature, which {adapter.info.get('device')} lacks; "
                          "use precision='f32' or 'auto'")
    for f in needs:
        name = WGPU_PY_FEATURE.get(f, f)
        if name not in adapter.features:
            raise DeviceError(f"the program set needs the {f} feature, which {adapter.info.get('device')} lacks; "
                              "use precision='auto'")
        if name not in features:
            features.append(name)
    if timestamps:
        if "timestamp-query" not in adapter.features:
            raise DeviceError(f"profiling needs the timestamp-query feature, which {adapter.info.get('device')} lacks")
        features.append("timestamp-query")
    required = {k: max(v, _DEFAULTS[k]) for k, v in need.items()}
    return adapter.request_device_sync(required_features=features, required_limits=required)


_DEFAULTS = {
    "max-storage-buffer-binding-size": 128 << 20,
    "max-buffer-size": 256 << 20,
    "max-storage-buffers-per-shader-stage": 8,
}


def create_pipeline(device: Any, wgsl: str, bindings: Sequence[Sequence[str]], label: str) -> tuple[Any, Any]:
    """(compute pipeline, bind group layout) with an explicit layout built from `bindings`
    [(name, kind)], so a declared-but-unused binding is still bound, exactly as in the browser."""
    import wgpu

    entries = [{"binding": i, "visibility": wgpu.ShaderStage.COMPUTE, "buffer": {"type": _BUFFER_TYPES[kind]}}
               for i, (_, kind) in enumerate(bindings)]
    bgl = device.create_bind_group_layout(entries=entries)
    layout = device.create_pipeline_layout(bind_group_layouts=[bgl])
    module = device.create_shader_module(code=wgsl, label=label)
    pipe = device.create_compute_pipeline(layout=layout, compute={"module": module, "entry_point": "main"}, label=label)
    return pipe, bgl
