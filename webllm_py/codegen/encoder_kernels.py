"""Kernel variants of the encoder (embedding) programs; registered into codegen.kernels.

Conventions are kernels.py's (bindings, Step uniform, dispatch expressions). A
packed batch (models/encoder.py) binds `rows` (n,) i32 and `offsets` (b+1,) i32;
dispatch expressions may use b (rows of the batch), which the runtime knows; no
kernel reads b from the uniform. The word embedding lookup and every linear reuse
kernels.py's EmbeddingKey and MatmulKey (the tiled prefill form handles n tokens).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from . import kernels as K
from .kernels import OMIT_DEFAULT, STEP, KernelKey, _act_arr, _ceil, _const_groups, _Plan, f32_literal

BATCH = [("rows", "read", "array<i32>", "(n,) i32: the row (text) of each token"),
         ("offsets", "read", "array<i32>", "(b+1,) i32: first token of each row; offsets[b] = n")]


@dataclass(frozen=True)
class PositionAddKey(KernelKey):
    """x[t] = (x[t] + token_type[0]) + position[position_offset + t - offsets[rows[t]]], in place
    (x holds the word embeddings); one invocation per element."""

    family: ClassVar[str] = "position_add"
    act: str
    hidden: int
    positions: int  # rows of the position table
    position_offset: int
    wg: int = 64


@dataclass(frozen=True)
class LayerNormKey(KernelKey):
    """out = (x - mean) / sqrt(var + eps) * w + b per row (biased variance, two passes as torch);
    one invocation per row."""

    family: ClassVar[str] = "layer_norm"
    act: str
    cols: int
    eps: float
    wg: int = 64


@dataclass(frozen=True)
class GeluKey(KernelKey):
    """out = gelu(x): approximate "none" (erf, Abramowitz-Stegun 7.1.26, |error| <= 1.5e-7) or "tanh"."""

    family: ClassVar[str] = "gelu"
    act: str
    cols: int
    approximate: str = "none"
    wg: int = 64


@dataclass(frozen=True)
class EncoderAttentionKey(KernelKey):
    """Attention within each row of a packed batch: query t (head h) attends to keys
    offsets[rows[t]] .. offsets[rows[t]+1]-1 (bidirectional) or .. t (causal: a decoder used as an
    embedder), of kv head h / (heads / kv_heads). One invocation per (query, head), online softmax."""

    family: ClassVar[str] = "encoder_attention"
    act: str
    heads: int
    head_dim: int
    scale: float
    wg: int = 8
    kv_heads: int = field(default=0, metadata=OMIT_DEFAULT)  # 0: heads (no GQA)
    causal: bool = field(default=False, metadata=OMIT_DEFAULT)


@dataclass(frozen=True)
class RowRopeKey(KernelKey):
    """rotate_half rotary embedding of x (n, heads*head_dim) at each token's index within its row
    (rope.wgsl with packed positions); one invocation per (token, head, pair)."""

    family: ClassVar[str] = "row_rope"
    act: str
    heads: int
    head_dim: int
    wg: int = 64


@dataclass(frozen=True)
class PoolKey(KernelKey):
    """out[r] = mean / first (cls) / last of row r's tokens, scaled to unit L2 norm with normalize
    (x / max(||x||, 1e-12)); one workgroup per row, wg lanes over the columns."""

    family: ClassVar[str] = "pool"
    act: str
    cols: int
    mode: str
    normalize: bool
    wg: int = 64


POOL_MODES = ("mean", "cls", "last")
GELU_FORMS = ("none", "tanh")


def _plan_position_add(k: PositionAddKey) -> _Plan:
    k._check_act(), k._check_wg(k.wg)
    decls = [("x", "read_write", _act_arr(k.act), f"(n, {k.hidden}) {k.act}: word embeddings in, sum out"), *BATCH,
             ("token_type", "read", "array<f32>", f"(type_vocab_size, {k.hidden}) f32: row 0 is added"),
             ("position", "read", "array<f32>", f"({k.positions}, {k.hidden}) f32"), STEP]
    gx = -(-k.hidden // k.wg)
    _const_groups(gx, "hidden", k)
    return _Plan(decls, (k.wg, 1, 1), (str(gx), "n", "1"), {})


def _plan_layer_norm(k: LayerNormKey) -> _Plan:
    k._check_act(), k._check_wg(k.wg)
    row = f"(n, {k.cols}) {k.act}"
    decls = [("x", "read", _act_arr(k.act), row), ("w", "read", "array<f32>", f"({k.cols},) f32"),
             ("b", "read", "array<f32>", f"({k.cols},) f32"), ("out", "read_write", _act_arr(k.act), row), STEP]
    return _Plan(decls, (k.wg, 1, 1), (_ceil("n", k.wg), "1", "1"), dict(eps_lit=f32_literal(k.eps)))


def _plan_gelu(k: GeluKey) -> _Plan:
    if k.approximate not in GELU_FORMS:
        raise ValueError(f"{k.name}: approximate must be one of {GELU_FORMS}")
    return K._plan_elementwise(k, ["x"])


def _plan_encoder_attention(k: EncoderAttentionKey) -> _Plan:
    k._check_act(), k._check_wg(k.wg)
    kv_heads = k.kv_heads or k.heads
    if k.head_dim % 4:
        raise ValueError(f"{k.name}: head_dim must be a multiple of 4 (vec4 loads)")
    if kv_heads < 1 or k.heads % kv_heads:
        raise ValueError(f"{k.name}: heads {k.heads} is not a multiple of kv_heads {kv_heads}")
    qw, kvw = k.heads * k.head_dim, kv_heads * k.head_dim
    row, kvrow = f"(n, {qw}) {k.act}", f"(n, {kvw}) {k.act}"
    decls = [("q", "read", _act_arr(k.act, 4), row), ("k_cache", "read", _act_arr(k.act, 4), kvrow + ": this batch's keys"),
             ("v_cache", "read", _act_arr(k.act, 4), kvrow + ": this batch's values"), *BATCH,
             ("out", "read_write", _act_arr(k.act, 4), row), STEP]
    return _Plan(decls, (k.wg, 1, 1), (_ceil("n", k.wg), str(k.heads), "1"),
                 dict(lanes=k.wg, group=k.heads // kv_heads, hd4=k.head_dim // 4, qw=qw, kvw=kvw,
                      scale_lit=f32_literal(k.scale)))


def _plan_row_rope(k: RowRopeKey) -> _Plan:
    k._check_act(), k._check_wg(k.wg)
    if k.head_dim % 2:
        raise ValueError(f"{k.name}: head_dim must be even")
    width, pairs = k.heads * k.head_dim, k.heads * (k.head_dim // 2)
    decls = [("x", "read", _act_arr(k.act), f"(n, {width}) {k.act}"),
             ("inv_freq", "read", "array<f32>", f"({k.head_dim // 2},) f32"), *BATCH,
             ("out", "read_write", _act_arr(k.act), f"(n, {width}) {k.act}"), STEP]
    gx = -(-pairs // k.wg)
    _const_groups(gx, "pairs", k)
    return _Plan(decls, (k.wg, 1, 1), (str(gx), "n", "1"),
                 dict(width=width, half=k.head_dim // 2, to_cache=False, packed=True))


def _plan_pool(k: PoolKey) -> _Plan:
    k._check_act(), k._check_wg(k.wg)
    if k.mode not in POOL_MODES:
        raise ValueError(f"{k.name}: mode must be one of {POOL_MODES}")
    if k.cols * 4 + k.wg * 4 > K.MAX_WORKGROUP_STORAGE:
        raise ValueError(f"{k.name}: {k.cols} columns exceed the 16 KiB of workgroup storage")
    decls = [("x", "read", _act_arr(k.act), f"(n, {k.cols}) {k.act}"), BATCH[1],
             ("out", "read_write", _act_arr(k.act), f"(b, {k.cols}) {k.act}"), STEP]
    return _Plan(decls, (k.wg, 1, 1), ("b", "1", "1"), {})


K.register_family(PositionAddKey, _plan_position_add)
K.register_family(LayerNormKey, _plan_layer_norm)
K.register_family(GeluKey, _plan_gelu)
K.register_family(EncoderAttentionKey, _plan_encoder_attention)
K.register_family(PoolKey, _plan_pool)
K.register_family(RowRopeKey, _plan_row_rope, lambda k: "rope.wgsl")  # the decoder's rope with packed positions
