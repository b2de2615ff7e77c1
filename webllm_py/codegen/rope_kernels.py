"""The rotary-embedding and KV-cache write kernel families (rope, rope_kv: rope of q and k fused with
the cache write, kv_write) and the KV cache storage helpers ("" or "f16x2") the attention kernels
share. Each registers itself with kernels.register_family; their names stay importable from kernels.py."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from .kernels import _act_arr, _const_groups, f32_literal, KernelKey, OMIT_DEFAULT, _Plan, register_family, STEP


@dataclass(frozen=True)
class RopeKey(KernelKey):
    """rotate_half rotary embedding at positions p..p+n-1 of x (n, heads*head_dim).

    to_cache=True writes the rotated rows into cache rows p..p+n-1 (the fused
    kv_write of k; with `ring` R rows (p..p+n-1) % R) instead of an "out" buffer, stored as
    `kv` (KV_STORAGE; "f16x2" needs
    to_cache and head_dim % 4 == 0: each invocation then rotates the adjacent pairs i, i+1 so
    that it writes whole u32 words)."""

    family: ClassVar[str] = "rope"
    act: str
    heads: int
    head_dim: int
    to_cache: bool = False
    wg: int = 64
    kv: str = field(default="", metadata=OMIT_DEFAULT)  # cache storage (KV_STORAGE)
    # partial rotary / longrope (models/rope.py): only the first rotary_dim features of each head
    # rotate (0: all), the rest pass through; long_after > 0: inv_freq holds the short then the
    # long frequencies and a forward call ending past long_after (Step._pad0) uses the long ones;
    # cos_scale multiplies cos and sin (longrope's attention factor)
    rotary_dim: int = field(default=0, metadata=OMIT_DEFAULT)
    long_after: int = field(default=0, metadata=OMIT_DEFAULT)
    cos_scale: float = field(default=1.0, metadata=OMIT_DEFAULT)
    # a sliding-window layer's ring cache of `ring` rows: position t in row t % ring (0: a row per position)
    ring: int = field(default=0, metadata=OMIT_DEFAULT)


@dataclass(frozen=True)
class KvWriteKey(KernelKey):
    """cache[p + i, :] = x[i, :] for i < n (a ring of `ring` rows: row (p + i) % ring); width =
    kv_heads * head_dim. One invocation per
    element, or with kv="f16x2" (KV_STORAGE) per u32 word (2 elements; width % 4 == 0)."""

    family: ClassVar[str] = "kv_write"
    act: str
    width: int
    wg: int = 64
    kv: str = field(default="", metadata=OMIT_DEFAULT)  # cache storage (KV_STORAGE)
    # a sliding-window layer's ring cache of `ring` rows: position t in row t % ring (0: a row per position)
    ring: int = field(default=0, metadata=OMIT_DEFAULT)


@dataclass(frozen=True)
class RopeKvKey(KernelKey):
    """The attention prologue of one step in one dispatch: for t < n at position p+t,
    q[t] is rotated in place, rope(k[t]) goes to k_cache row p+t and v[t] to v_cache row p+t
    (with `ring` R: row (p+t) % R).
    One invocation per (token, rotation pair); the pairs of q's heads come first, then k's
    (each k pair also copies the two matching v elements). kv="f16x2" (KV_STORAGE; head_dim %
    4 == 0) stores the caches as f16 pairs: one invocation per two adjacent rotation pairs
    (i, i+1), so every cache store is a whole u32 word."""

    family: ClassVar[str] = "rope_kv"
    act: str
    heads: int
    kv_heads: int
    head_dim: int
    wg: int = 64
    kv: str = field(default="", metadata=OMIT_DEFAULT)  # cache storage (KV_STORAGE)
    # partial rotary / longrope (models/rope.py): only the first rotary_dim features of each head
    # rotate (0: all), the rest pass through; long_after > 0: inv_freq holds the short then the
    # long frequencies and a forward call ending past long_after (Step._pad0) uses the long ones;
    # cos_scale multiplies cos and sin (longrope's attention factor)
    rotary_dim: int = field(default=0, metadata=OMIT_DEFAULT)
    long_after: int = field(default=0, metadata=OMIT_DEFAULT)
    cos_scale: float = field(default=1.0, metadata=OMIT_DEFAULT)
    # a sliding-window layer's ring cache of `ring` rows: position t in row t % ring (0: a row per position)
    ring: int = field(default=0, metadata=OMIT_DEFAULT)


# KV cache storage of a cache-writing or cache-reading key's `kv` field (wgsl_templates/_kv.wgsl):
# "" the activation dtype (today's layout); "f16x2" f16 pairs in u32 words, byte-identical to an
# f16 (rows, width) array, read and written with unpack2x16float / pack2x16float (no shader-f16).
KV_STORAGE = {"": "the activation dtype", "f16x2": "f16 pairs in u32 words"}


def kv_array_type(act: str, kv: str, unit: str) -> str:
    """WGSL type of a KV cache binding: unit "vec4" for the `_kv.wgsl` load4 form (entry = 4
    elements), "pair" for the store2 form (f16x2: a u32 word = 2 elements; "": scalar A)."""
    if kv == "f16x2":
        return "array<vec2<u32>>" if unit == "vec4" else "array<u32>"
    return _act_arr(act, 4 if unit == "vec4" else 1)


def kv_layout(act: str, kv: str, width: int, rows: str, ring: int = 0) -> str:
    """The header comment of a cache binding (`ring`: a ring cache of that many rows)."""
    what = f"{act}" if not kv else "f16 pairs in u32 words (an f16 array's bytes)"
    if ring:
        return f"({ring}, {width}) {what}, a ring: positions {rows}, position t in row t % {ring}"
    return f"(context_window, {width}) {what}: rows {rows}"


def check_ring(key: Any, window: int | None = None) -> None:
    """ValueError unless `key.ring` is 0 (no ring) or a ring size >= 1; for a cache reader
    (`window` given) a ring also needs a sliding window of at most `ring` keys. That the ring
    holds a whole step (ring >= window + n - 1) is checked where the step's largest n is known
    (codegen/shapes.py AttentionOp, bundle/validate_graph.py)."""
    if type(key.ring) is not int or key.ring < 0:
        raise ValueError(f"{key.name}: ring must be an integer >= 0 (0: no ring), got {key.ring!r}")
    if key.ring and window is not None and not 0 < window <= key.ring:
        raise ValueError(f"{key.name}: ring {key.ring} needs a sliding window of 1..{key.ring} keys "
                         f"(only sliding-window layers have a ring cache), got window {window}")


def with_ring(key: KernelKey, attrs: dict[str, Any]) -> KernelKey:
    """A cache-writing or cache-reading key with the `ring` of its kv_write / attention node
    (absent: no ring, the key unchanged)."""
    return replace(key, ring=attrs["ring"]) if attrs.get("ring") else key


def check_kv(key: Any, width: int) -> None:
    """ValueError unless `key.kv` is a KV_STORAGE entry whose layout fits rows of `width` elements."""
    if key.kv not in KV_STORAGE:
        raise ValueError(f"{key.name}: kv must be one of {sorted(KV_STORAGE)}, got {key.kv!r}")
    if key.kv == "f16x2" and width % 4:
        raise ValueError(f"{key.name}: kv 'f16x2' needs a cache row width that is a multiple of 4 (got {width})")


def _plan_rope(k: RopeKey) -> _Plan:
    k._check_act(), k._check_wg(k.wg)
    if k.head_dim % 2:
        raise ValueError(f"{k.name}: head_dim must be even")
    width = k.heads * k.head_dim
    check_kv(k, width)
    if k.kv and not k.to_cache:
        raise ValueError(f"{k.name}: kv storage applies to to_cache=True only (an 'out' buffer is activations)")
    check_ring(k)
    if k.ring and not k.to_cache:
        raise ValueError(f"{k.name}: ring applies to to_cache=True only (an 'out' buffer has a row per token)")
    _check_kv_pairs(k)
    decls = [("x", "read", _act_arr(k.act), f"(n, {width}) {k.act}"),
             ("inv_freq", "read", "array<f32>", _rope_table(k))]
    if k.to_cache:
        decls.append(("cache", "read_write", kv_array_type(k.act, k.kv, "pair"),
                      kv_layout(k.act, k.kv, width, "p..p+n-1 written", k.ring)))
    else:
        decls.append(("out", "read_write", _act_arr(k.act), f"(n, {width}) {k.act}"))
    decls.append(STEP)
    # f16x2: one invocation per two adjacent rotation pairs (whole u32 words)
    units = k.heads * (k.head_dim // 2) // (2 if k.kv == "f16x2" else 1)
    _const_groups(-(-units // k.wg), "pairs", k)
    return _Plan(decls, (k.wg, 1, 1), (str(-(-units // k.wg)), "n", "1"), dict(width=width, **_rope_consts(k)))


def _check_kv_pairs(k: RopeKey | RopeKvKey) -> None:
    if k.kv == "f16x2" and k.head_dim % 4:
        raise ValueError(f"{k.name}: kv 'f16x2' needs head_dim % 4 == 0 (an invocation rotates pairs i, i+1 "
                         "to write whole u32 words)")
    rot = k.rotary_dim or k.head_dim
    if rot % 2 or not 0 < rot <= k.head_dim or (k.kv == "f16x2" and rot % 4):
        raise ValueError(f"{k.name}: rotary_dim {rot} must be even, in 2..head_dim ({k.head_dim}), and a multiple "
                         "of 4 with kv 'f16x2' (whole u32 words on both sides of it)")
    if k.long_after < 0 or not (math.isfinite(k.cos_scale) and k.cos_scale > 0):
        raise ValueError(f"{k.name}: long_after must be >= 0 (0: one table) and cos_scale a finite number > 0")


def _rope_table(k: RopeKey | RopeKvKey) -> str:
    """The inv_freq binding's description: one table, or longrope's short then long tables."""
    half = (k.rotary_dim or k.head_dim) // 2
    return f"({half},) f32" if not k.long_after else f"(2 * {half},) f32: short, then long frequencies"


ROPE_ATTRS = ("rotary_dim", "long_after", "cos_scale")  # rope node attrs that are RopeKey / RopeKvKey fields


def with_rope(key: KernelKey, attrs: dict[str, Any]) -> KernelKey:
    """A rope / rope_kv key (from the lowering's shapes table) with a rope node's partial rotary
    and longrope attrs (ir/ops.py rope; absent attrs keep the defaults, so the kernel is unchanged)."""
    return replace(key, **{a: attrs[a] for a in ROPE_ATTRS if a in attrs})


def _rope_consts(k: RopeKey | RopeKvKey) -> dict[str, Any]:
    """half: the rotation pair offset (rotary_dim / 2); slots: pair slots per head (head_dim / 2:
    the rotating pairs, then the pass-through ones of a partial rotary)."""
    return dict(half=(k.rotary_dim or k.head_dim) // 2, slots=k.head_dim // 2, cos_scale_lit=f32_literal(k.cos_scale))


def _plan_rope_kv(k: RopeKvKey) -> _Plan:
    k._check_act(), k._check_wg(k.wg)
    if k.head_dim % 2 or k.head_dim < 2:
        raise ValueError(f"{k.name}: head_dim must be even")
    if k.heads < 1 or k.kv_heads < 1:
        raise ValueError(f"{k.name}: heads and kv_heads must be >= 1")
    qw, kvw, slots = k.heads * k.head_dim, k.kv_heads * k.head_dim, k.head_dim // 2  # pair slots per head
    check_kv(k, kvw)
    check_ring(k)
    _check_kv_pairs(k)
    cache_ty = kv_array_type(k.act, k.kv, "pair")
    decls = [("q", "read_write", _act_arr(k.act), f"(n, {qw}) {k.act}: rotated in place"),
             ("k", "read", _act_arr(k.act), f"(n, {kvw}) {k.act}"),
             ("v", "read", _act_arr(k.act), f"(n, {kvw}) {k.act}"),
             ("inv_freq", "read", "array<f32>", _rope_table(k)),
             ("k_cache", "read_write", cache_ty, kv_layout(k.act, k.kv, kvw, "p..p+n-1 written", k.ring)),
             ("v_cache", "read_write", cache_ty, kv_layout(k.act, k.kv, kvw, "p..p+n-1 written", k.ring)),
             STEP]
    per = 2 if k.kv == "f16x2" else 1  # rotation pairs per invocation (f16x2: whole u32 words)
    pairs = (k.heads + k.kv_heads) * slots // per
    gx = -(-pairs // k.wg)
    _const_groups(gx, "pairs", k)
    return _Plan(decls, (k.wg, 1, 1), (str(gx), "n", "1"),
                 dict(qw=qw, kvw=kvw, qpairs=k.heads * slots // per, kvpairs=k.kv_heads * slots // per, **_rope_consts(k)))


def _plan_kv_write(k: KvWriteKey) -> _Plan:
    k._check_act(), k._check_wg(k.wg)
    check_kv(k, k.width)
    check_ring(k)
    decls = [("x", "read", _act_arr(k.act), f"(n, {k.width}) {k.act}"),
             ("cache", "read_write", kv_array_type(k.act, k.kv, "pair"),
              kv_layout(k.act, k.kv, k.width, "p..p+n-1 written", k.ring)), STEP]
    units = k.width // 2 if k.kv == "f16x2" else k.width  # f16x2: one invocation per u32 word
    _const_groups(-(-units // k.wg), "width", k)
    return _Plan(decls, (k.wg, 1, 1), (str(-(-units // k.wg)), "n", "1"), {})


register_family(RopeKey, _plan_rope)
register_family(KvWriteKey, _plan_kv_write)
register_family(RopeKvKey, _plan_rope_kv)
