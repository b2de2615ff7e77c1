"""Compile one of a bundle's kernels into a pipeline, for the native runtimes (language and encoder models).

The WGSL is read through the Bundle (a listed, hashed file inside the folder); a kernel the
adapter's compiler refuses is one BundleError naming the file and the compiler's error line,
not wgpu's multi-line GPUValidationError. Kernels are written for Tint: `enable subgroups;` is
stripped for Naga (codegen/wgsl_compat.py).
"""

from __future__ import annotations

from typing import Any

from ..bundle import Bundle
from ..codegen.wgsl_compat import for_naga
from ..errors import BundleError
from .device import create_pipeline


def _error_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if "error" in ln.lower() and ln.strip() != "Validation Error"]
    return (lines[0] if lines else (str(e).strip().splitlines() or [type(e).__name__])[0])[:200]


def kernel_pipeline(device: Any, adapter: Any, bundle: Bundle, name: str) -> tuple[Any, Any]:
    """(compute pipeline, bind group layout) of manifest kernel `name`."""
    import wgpu

    k = bundle.manifest["kernels"][name]
    wgsl = for_naga(bundle.read_text(k["file"]))  # Naga takes subgroup builtins without Tint's `enable`
    try:
        return create_pipeline(device, wgsl, k["bindings"], name)
    except wgpu.GPUError as e:
        raise BundleError(f"kernel {name} does not compile on {adapter.info.get('device')}: {_error_line(e)}",
                          bundle.dir / k["file"]) from None
