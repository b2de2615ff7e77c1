"""What one WGSL text needs to compile on both compilers the runtimes meet.

Kernels are written for Tint (Chrome/Dawn), which requires `enable subgroups;` before a
kernel uses subgroup builtins. wgpu-py's Naga (0.32) rejects that directive but accepts the
builtins once the device has the `subgroup` feature, so the native runtimes and the kernel test
harness strip it (`for_naga`). The directive is the single marker of a subgroup kernel:
`uses_subgroups` is what the lowering reads to put "subgroups" in a program set's features.
"""

from __future__ import annotations

import re

SUBGROUPS_DIRECTIVE = "enable subgroups;"
_DIRECTIVE_LINE = re.compile(r"^[ \t]*enable[ \t]+subgroups[ \t]*;[ \t]*$", re.M)

# WebGPU feature name -> wgpu-py feature name, where they differ
WGPU_PY_FEATURE = {"subgroups": "subgroup"}


def uses_subgroups(wgsl: str) -> bool:
    """Whether this kernel text enables (and so needs) the WebGPU `subgroups` feature."""
    return _DIRECTIVE_LINE.search(wgsl) is not None


def for_naga(wgsl: str) -> str:
    """The text Naga accepts: the `enable subgroups;` line blanked (line numbers kept)."""
    return _DIRECTIVE_LINE.sub("", wgsl)
