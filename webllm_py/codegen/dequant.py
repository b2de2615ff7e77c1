"""The Python view of `wgsl_templates/_dequant.wgsl`'s format table (bindings, block sizes).

The table lives in the template so that a weight format is one entry in one file; planners
(codegen/gemv.py, codegen/gemm.py) read it here to declare the weight bindings a kernel
calling `dq.fns(fmt, cols)` needs, in the same names, order and types as MatmulKey's
(`kernels._weight_decls(vec_ok=True)`), so the lowering binds the same tensors.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ..quant.formats import GROUP_SIZE
from .kernels import _env


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    return dict(_env().get_template("_dequant.wgsl").module.FORMATS)


def formats() -> tuple[str, ...]:
    """The weight formats _dequant.wgsl reads."""
    return tuple(_table())


def _entry(fmt: str) -> dict[str, Any]:
    t = _table()
    if fmt not in t:
        raise ValueError(f"weight format {fmt!r} has no entry in wgsl_templates/_dequant.wgsl; known: {sorted(t)}")
    return t[fmt]


def block_cols(fmt: str) -> int:
    """Columns one `dq_dot` call covers (16 bytes of weight words; q8: 32)."""
    return int(_entry(fmt)["block"])


def weight_decls(fmt: str, rows: int, cols: int) -> list[tuple[str, str, str, str]]:
    """The (name, kind, WGSL type, layout comment) declarations of a (rows, cols) weight in `fmt`."""
    e = _entry(fmt)
    vec = cols % e["vec_cols"] == 0
    g = -(-cols // GROUP_SIZE)
    out = []
    for i, (name, ty, comment) in enumerate(e["bindings"]):
        if i == 0 and not vec:
            ty = e["scalar"]
        out.append((name, "read", ty, comment.format(rows=rows, cols=cols, g=g)))
    return out
