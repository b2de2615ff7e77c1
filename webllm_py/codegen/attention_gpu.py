"""GPU-class decode attention: flash-decoding in two kernel families, registered into kernels.py.

"attention_split" (AttentionSplitKey): the keys 0..p+qi of query qi are cut into blocks of
`block` keys; one workgroup per (key block, kv head, query) computes, for each of the GROUP
q heads of that kv head, the block's softmax partial (m = max score, l = sum exp(s - m),
acc = sum exp(s - m) * v) and writes it to the f32 scratch "partial". "attention_combine"
(AttentionCombineKey): one workgroup per (head, query) merges that query's
(p + qi) // block + 1 partials into the output row. Both are correct for any n; decode uses
n == 1 (the tiled prefill form is attention_tiled.py).

Why this shape (shared/docs/gpu-kernels.md; no emulator timing went into it):
- Parallelism grows with the context: ceil((p+n)/block) x kv_heads x n workgroups, where the
  CPU-class AttentionKey runs heads x n workgroups of 8 lanes whatever p is. At p = 4096 with
  8 kv heads (Llama-3-8B) the defaults give 264 workgroups of 128 lanes (33,792 invocations).
- The GROUP q heads of a kv head share every K/V row load (GQA): the K/V bytes, the decode
  step's dominant read, are read once per kv head instead of once per q head.
- Scores: one key per lane (block 128 = wg 128), the lane reading its K row as head_dim/4
  contiguous 16-byte loads against q held in workgroup memory (broadcast reads); no per-key
  cross-lane reduction. V: lanes over head_dim/4 (adjacent lanes read adjacent 16-byte words
  of a V row: coalesced) x wg/(head_dim/4) key slices, combined through workgroup memory.
- Block 128: 128 keys per workgroup keep the partial scratch small next to the K/V it
  summarizes (GROUP * (head_dim + 4) * 4 bytes written and read once, against
  2 * 128 * head_dim * 2 bytes of f16x2 K/V: GROUP/64, 6 % at GROUP 4) while a 4k context
  still fills an H200's 132 SMs twice with 8 kv heads.
- subgroups=True: the block's max and sum reductions use subgroupMax / subgroupAdd, then one
  value per subgroup through workgroup memory (any subgroup size; several subgroups per
  workgroup). Without: a workgroup-memory tree (log2(wg) barriers). Either way the reductions
  are 2 per block; the kernel's time is its K/V loads.

PARTIAL LAYOUT ("partial", f32, bound as vec4<f32>): record r = (qi * heads + h) * nb + b,
nb = ceil((p + n) / block) (both kernels compute it from Step), at vec4 index r * (head_dim/4
+ 1): (m, l, 0, 0) then acc (head_dim,). `partial_elements` sizes the buffer.

Subgroup kernels assume subgroup s holds local invocations s*size..(s+1)*size-1 (true of the
drivers the references target; the emulator tests check it on lavapipe and SwiftShader).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from .kernels import (
    MAX_WORKGROUP_STORAGE,
    OMIT_DEFAULT,
    STEP,
    KernelKey,
    _act_arr,
    _ceil,
    _Plan,
    check_kv,
    check_ring,
    f32_literal,
    kv_array_type,
    kv_layout,
    register_family,
)

DEFAULT_BLOCK = 128  # keys per split workgroup (module docstring)
DEFAULT_SPLIT_WG = 128  # one key per lane in the score phase at the default block
DEFAULT_COMBINE_WG = 64


@dataclass(frozen=True)
class AttentionSplitKey(KernelKey):
    """Flash-decoding, split phase: per (key block, kv head, query) the softmax partials of the
    kv head's GROUP q heads over the block's keys (causal: query qi sees keys 0..p+qi).

    kv: KV cache storage (kernels.KV_STORAGE: "" = act, "f16x2"). subgroups: max/sum
    reductions by subgroup builtins (needs the WebGPU `subgroups` feature). window > 0: a
    sliding window, query qi sees keys p+qi-window+1..p+qi (a block before it writes an empty
    record: m = -1e30, l = 0); softcap > 0: scores tanh(s / softcap) * softcap (Gemma 2); ring > 0:
    the caches are a ring of `ring` rows, key t read from row t % ring."""

    family: ClassVar[str] = "attention_split"
    act: str
    kv: str
    heads: int
    kv_heads: int
    head_dim: int
    scale: float
    block: int = DEFAULT_BLOCK
    wg: int = DEFAULT_SPLIT_WG
    subgroups: bool = False
    window: int = field(default=0, metadata=OMIT_DEFAULT)
    softcap: float = field(default=0.0, metadata=OMIT_DEFAULT)
    ring: int = field(default=0, metadata=OMIT_DEFAULT)


@dataclass(frozen=True)
class AttentionCombineKey(KernelKey):
    """Flash-decoding, combine phase: out[qi, head] from the (p + qi) // block + 1 partials of
    attention_split with the same heads, head_dim and block."""

    family: ClassVar[str] = "attention_combine"
    act: str
    heads: int
    head_dim: int
    block: int
    wg: int = DEFAULT_COMBINE_WG


def partial_elements(heads: int, head_dim: int, context_window: int, block: int, max_n: int) -> int:
    """f32 elements of the "partial" scratch for steps of up to max_n queries with p + n <= context_window."""
    return max_n * heads * math.ceil(context_window / block) * (head_dim + 4)


def split_storage(group: int, head_dim: int, block: int, wg: int) -> int:
    """Workgroup memory bytes of an attention_split kernel: q (GROUP heads), scores, reduction
    slots, the V-slice combine."""
    hd4 = head_dim // 4
    return 16 * group * hd4 + 4 * group * block + 4 * group * wg + 16 * (wg // hd4) * hd4


def _check_wg_pow2(k: KernelKey, wg: int, hd4: int) -> None:
    if wg & (wg - 1) or not hd4 <= wg <= 256:
        raise ValueError(f"{k.name}: wg must be a power of two in head_dim/4 ({hd4})..256 "
                         "(lanes over head_dim/4 x key slices; tree reductions)")


def _partial_decl(kind: str, heads: int, head_dim: int) -> tuple[str, str, str, str]:
    return ("partial", kind, "array<vec4<f32>>",
            f"(n, {heads}, nb = ceil((p+n)/block), {head_dim // 4 + 1}) vec4 f32: (m, l, 0, 0), acc[{head_dim}] "
            "per (query, head, key block)")


def _plan_split(k: AttentionSplitKey) -> _Plan:
    k._check_act()
    if k.head_dim % 4 or k.head_dim < 4:
        raise ValueError(f"{k.name}: head_dim must be a multiple of 4 (vec4 K/V loads)")
    if k.kv_heads < 1 or k.heads % k.kv_heads:
        raise ValueError(f"{k.name}: heads {k.heads} is not a multiple of kv_heads {k.kv_heads}")
    hd4, group = k.head_dim // 4, k.heads // k.kv_heads
    _check_wg_pow2(k, k.wg, hd4)
    if k.block < 1:
        raise ValueError(f"{k.name}: block must be >= 1 key")
    if k.window < 0 or not k.softcap >= 0:
        raise ValueError(f"{k.name}: window must be >= 0 keys and softcap >= 0 (0: none)")
    qw, kvw = k.heads * k.head_dim, k.kv_heads * k.head_dim
    check_kv(k, kvw)
    check_ring(k, k.window)
    storage = split_storage(group, k.head_dim, k.block, k.wg)
    if storage > MAX_WORKGROUP_STORAGE:
        raise ValueError(f"{k.name}: {storage} bytes of workgroup storage (GROUP {group} x block {k.block}, "
                         f"wg {k.wg}, head_dim {k.head_dim}) exceed 16 KiB; lower block or wg")
    cache_ty = kv_array_type(k.act, k.kv, "vec4")
    decls = [("q", "read", _act_arr(k.act, 4), f"(n, {qw}) {k.act}"),
             ("k_cache", "read", cache_ty, kv_layout(k.act, k.kv, kvw, "0..p+n-1 read", k.ring)),
             ("v_cache", "read", cache_ty, kv_layout(k.act, k.kv, kvw, "0..p+n-1 read", k.ring)),
             _partial_decl("read_write", k.heads, k.head_dim), STEP]
    return _Plan(decls, (k.wg, 1, 1), (_ceil("p + n", k.block), str(k.kv_heads), "n"),
                 dict(group=group, hd4=hd4, qw4=qw // 4, kvw4=kvw // 4, slices=k.wg // hd4,
                      scale_lit=f32_literal(k.scale), cap_lit=f32_literal(k.softcap) if k.softcap else ""))


def _plan_combine(k: AttentionCombineKey) -> _Plan:
    k._check_act()
    if k.head_dim % 4 or k.head_dim < 4:
        raise ValueError(f"{k.name}: head_dim must be a multiple of 4")
    if k.block < 1 or k.heads < 1:
        raise ValueError(f"{k.name}: block and heads must be >= 1")
    hd4 = k.head_dim // 4
    _check_wg_pow2(k, k.wg, hd4)
    qw = k.heads * k.head_dim
    decls = [_partial_decl("read", k.heads, k.head_dim),
             ("out", "read_write", _act_arr(k.act, 4), f"(n, {qw}) {k.act}"), STEP]
    return _Plan(decls, (k.wg, 1, 1), (str(k.heads), "n", "1"),
                 dict(hd4=hd4, qw4=qw // 4, slices=k.wg // hd4))


def attention_split_key(act: str, kv: str, heads: int, kv_heads: int, head_dim: int, scale: float,
                        *, subgroups: bool = False, window: int = 0, softcap: float = 0.0,
                        ring: int = 0) -> AttentionSplitKey:
    """The default-tuned split kernel (module docstring): block 128 keys on 128 lanes, the block
    halved (down to 32) where GROUP x block x head_dim would pass 16 KiB of workgroup memory."""
    block, wg, group = DEFAULT_BLOCK, DEFAULT_SPLIT_WG, heads // max(kv_heads, 1)
    while block > 32 and split_storage(group, head_dim, block, wg) > MAX_WORKGROUP_STORAGE:
        block //= 2
    return AttentionSplitKey(act, kv, heads, kv_heads, head_dim, scale, block=block, wg=wg, subgroups=subgroups,
                             window=window, softcap=softcap, ring=ring)


def attention_combine_key(act: str, heads: int, head_dim: int, block: int) -> AttentionCombineKey:
    """The combine kernel matching a split kernel's block: 64 lanes (head_dim/4 x slices of the
    blocks; more, the next power of two, when head_dim/4 > 64). Its work is small next to the
    split's: (head_dim + 4) floats per block against the block's 128 K/V rows."""
    hd4_pow2 = 1 << max(head_dim // 4 - 1, 0).bit_length()
    return AttentionCombineKey(act, heads, head_dim, block, wg=max(DEFAULT_COMBINE_WG, hd4_pow2))


register_family(AttentionSplitKey, _plan_split)
register_family(AttentionCombineKey, _plan_combine)
