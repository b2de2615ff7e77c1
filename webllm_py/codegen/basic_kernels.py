"""The small kernel families: embedding lookup, RMSNorm (optionally fused with the residual add),
the elementwise SiLU-gate and add, the last token's row, and activation packing for an xq matmul.
Each registers itself with kernels.register_family; their names stay importable from kernels.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..quant.formats import FORMATS, GROUP_SIZE
from .kernels import (
    _act_arr, _ceil, _const_groups, f32_literal, KernelKey, OMIT_DEFAULT, PACK_LAYOUTS, _Plan, register_family,
    STEP, _weight_decls,
)
from .matmul import _check_pack_layout, _pack_decls


@dataclass(frozen=True)
class EmbeddingKey(KernelKey):
    """out[i, :] = dequant(table[ids[i], :]); one invocation per output element."""

    family: ClassVar[str] = "embedding"
    act: str
    fmt: str
    vocab: int
    hidden: int
    wg: int = 64
    vocab_offset: int = 0  # a slice of a larger table: rows for ids vocab_offset..vocab_offset+vocab-1
    sliced: bool = False  # True: ids outside the slice are left to the other slices' dispatches
    # out *= scale in the activation dtype (Gemma's sqrt(hidden); the table stays as stored: tied to the LM head)
    scale: float = field(default=1.0, metadata=OMIT_DEFAULT)


@dataclass(frozen=True)
class RmsNormKey(KernelKey):
    """out = x / sqrt(mean(x^2 over each `group` features) + eps) * w; one invocation per group."""

    family: ClassVar[str] = "rms_norm"
    act: str
    cols: int
    eps: float
    group: int = 0  # 0: the whole row
    wg: int = 64
    # out written packed for a MatmulKey xq consumer ("outq"/"outs" replace "out"; whole rows, cols % 8 == 0)
    pack: bool = field(default=False, metadata=OMIT_DEFAULT)
    pack_layout: str = field(default="pairs", metadata=OMIT_DEFAULT)


@dataclass(frozen=True)
class AddRmsNormKey(KernelKey):
    """r = a + b (the residual stream); out = rms_norm(r) * w. One invocation per row.

    inplace=True binds the residual once as "x" (read_write): x += b."""

    family: ClassVar[str] = "add_rms_norm"
    act: str
    cols: int
    eps: float
    inplace: bool = False
    wg: int = 64


@dataclass(frozen=True)
class ColsKey(KernelKey):
    """Base of the keys whose only fields are an (n, cols) activation's dtype, cols and wg (the
    fields, in this order, make the name: a family with more fields declares its own)."""

    act: str
    cols: int
    wg: int = 64


@dataclass(frozen=True)
class SiluMulKey(ColsKey):
    """out = silu(gate) * up, (n, cols)."""

    family: ClassVar[str] = "silu_mul"


@dataclass(frozen=True)
class AddKey(ColsKey):
    """out = a + b, (n, cols)."""

    family: ClassVar[str] = "add"


@dataclass(frozen=True)
class LastRowKey(ColsKey):
    """out[0, :] = x[n-1, :]."""

    family: ClassVar[str] = "last_row"


@dataclass(frozen=True)
class PackKey(KernelKey):
    """x (n, cols) written packed ("outq"/"outs", MatmulKey PACKED ACTIVATIONS) for an xq consumer
    whose producer cannot pack in its epilogue (the tiled prefill form: attention, SiLU-gate).
    One invocation per (token, 8 columns); cols % 8 == 0."""

    family: ClassVar[str] = "pack"
    act: str
    cols: int
    layout: str = "pairs"
    wg: int = 64


def _plan_embedding(k: EmbeddingKey) -> _Plan:
    k._check_act(), k._check_wg(k.wg)
    decls = [("ids", "read", "array<i32>", "(n,) i32 token ids"),
             *_weight_decls(k.fmt, k.vocab, k.hidden, vec_ok=False),
             ("out", "read_write", _act_arr(k.act), f"(n, {k.hidden}) {k.act}"), STEP]
    _const_groups(-(-k.hidden // k.wg), "hidden", k)
    return _Plan(decls, (k.wg, 1, 1), (str(-(-k.hidden // k.wg)), "n", "1"),
                 dict(groups=-(-k.hidden // GROUP_SIZE), dq8=FORMATS[k.fmt].block is not None,
                      scale_lit=f32_literal(k.scale)))


def _plan_rms_norm(k: RmsNormKey) -> _Plan:
    k._check_act(), k._check_wg(k.wg)
    group = k.group or k.cols
    if k.cols % group:
        raise ValueError(f"{k.name}: cols {k.cols} is not a multiple of group {group}")
    units = k.cols // group
    _check_pack_layout(k)
    if k.pack and (k.group or k.cols % 8):
        raise ValueError(f"{k.name}: pack needs whole rows (group 0) and cols % 8 == 0")
    decls = [("x", "read", _act_arr(k.act), f"(n, {k.cols}) {k.act}"),
             ("w", "read", "array<f32>", f"({group},) f32")]
    decls += _pack_decls(k.cols, k.pack_layout, "rms_norm(x) * w") if k.pack else \
        [("out", "read_write", _act_arr(k.act), f"(n, {k.cols}) {k.act}")]
    decls.append(STEP)
    return _Plan(decls, (k.wg, 1, 1), (_ceil(f"n * {units}", k.wg), "1", "1"),
                 dict(group=group, units=units, eps_lit=f32_literal(k.eps)))


def _plan_add_rms_norm(k: AddRmsNormKey) -> _Plan:
    k._check_act(), k._check_wg(k.wg)
    row = f"(n, {k.cols}) {k.act}"
    if k.inplace:
        decls = [("x", "read_write", _act_arr(k.act), row + ": residual in, x + b out"),
                 ("b", "read", _act_arr(k.act), row)]
    else:
        decls = [("a", "read", _act_arr(k.act), row), ("b", "read", _act_arr(k.act), row)]
    decls += [("w", "read", "array<f32>", f"({k.cols},) f32")]
    if not k.inplace:
        decls += [("r", "read_write", _act_arr(k.act), row + ": a + b")]
    decls += [("out", "read_write", _act_arr(k.act), row + ": rms_norm(a + b) * w"), STEP]
    return _Plan(decls, (k.wg, 1, 1), (_ceil("n", k.wg), "1", "1"),
                 dict(eps_lit=f32_literal(k.eps), a_name="x" if k.inplace else "a", r_name="x" if k.inplace else "r"))


def _plan_elementwise(k: Any, ins: list[str]) -> _Plan:
    k._check_act(), k._check_wg(k.wg)
    vec = 4 if k.cols % 4 == 0 else 1
    decls = [(name, "read", _act_arr(k.act, vec), f"(n, {k.cols}) {k.act}") for name in ins]
    decls += [("out", "read_write", _act_arr(k.act, vec), f"(n, {k.cols}) {k.act}"), STEP]
    per_row = k.cols // vec
    _const_groups(-(-per_row // k.wg), "cols", k)
    return _Plan(decls, (k.wg, 1, 1), (str(-(-per_row // k.wg)), "n", "1"), dict(vec=vec, per_row=per_row))


def _plan_gated(k: ColsKey) -> _Plan:
    """An activation-gated pair (SiLU-gate, GeGLU): out = f(gate) * up."""
    return _plan_elementwise(k, ["gate", "up"])


def _plan_pack(k: PackKey) -> _Plan:
    k._check_act(), k._check_wg(k.wg)
    if k.cols % 8 or k.layout not in PACK_LAYOUTS.values():
        raise ValueError(f"{k.name}: pack needs cols % 8 == 0 and a layout of {sorted(set(PACK_LAYOUTS.values()))}")
    decls = [("x", "read", _act_arr(k.act, 4), f"(n, {k.cols}) {k.act}")]
    decls += _pack_decls(k.cols, k.layout, "x") + [STEP]
    chunks = k.cols // 8
    _const_groups(-(-chunks // k.wg), "cols", k)
    return _Plan(decls, (k.wg, 1, 1), (str(-(-chunks // k.wg)), "n", "1"), dict(chunks=chunks, pack_layout=k.layout))


def _plan_last_row(k: LastRowKey) -> _Plan:
    k._check_act(), k._check_wg(k.wg)
    decls = [("x", "read", _act_arr(k.act), f"(n, {k.cols}) {k.act}"),
             ("out", "read_write", _act_arr(k.act), f"(1, {k.cols}) {k.act}"), STEP]
    _const_groups(-(-k.cols // k.wg), "cols", k)
    return _Plan(decls, (k.wg, 1, 1), (str(-(-k.cols // k.wg)), "1", "1"), {})


register_family(EmbeddingKey, _plan_embedding)
register_family(RmsNormKey, _plan_rms_norm)
register_family(AddRmsNormKey, _plan_add_rms_norm)
register_family(SiluMulKey, _plan_gated)
register_family(AddKey, lambda k: _plan_elementwise(k, ["a", "b"]))
register_family(LastRowKey, _plan_last_row)
register_family(PackKey, _plan_pack)
