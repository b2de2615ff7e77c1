"""Prefill attention for GPU adapters, FlashAttention-2 style: family "attention_tiled".

Causal GQA attention of the n new queries (positions p..p+n-1) over cache rows 0..p+qi
(query qi), with the bindings of `AttentionKey` (q, k_cache, v_cache, out, step) so the
lowering can swap it in for the per-query prefill form. The KV rows p..p+n-1 are already
written when it runs.

Shape (one workgroup per tile of `tq` ROWS of one kv head; a row is one (query, q head)
pair and the GROUP q heads of a query are adjacent rows):

- why the kv head and not the q head: the K/V tile in workgroup memory then serves all
  GROUP q heads that read it, so K/V are read from memory once per kv head instead of GROUP
  times; the number of workgroups and the work per workgroup are the same as per q head.
- Q tile (tq rows, pre-scaled, f32) loaded once; then for each key tile of `tk` keys
  0..p + (last query of the tile): K and V rows loaded cooperatively (adjacent lanes read
  adjacent 16 bytes of a cache row); each row has `lanes_per_row` lanes: lane j scores keys
  j, j + lanes_per_row, ... of its row (full dot products, one Q load per ceil(tk /
  lanes_per_row) K loads) into the score tile, then updates the row's online softmax (m, l;
  every lane of the row keeps the same) and its head_dim / (4 * lanes_per_row) vec4 chunks of
  the accumulator in registers. The exps are recomputed by each lane of a row (tk per lane per
  tile, against tk * chunks vec4 FMAs): cheaper than another barrier round to share them.
  Key tiles past the tile's last query are never visited; keys past a row's causal limit
  inside a tile are masked; K/V rows past p+n are never read (zeros go to the tile).
- At most one tq x tk tile of scores is alive (workgroup memory "s_tile").
- Workgroup storage (<= 16 KiB, WebGPU's default limit) = Q tile + K tile (rows padded by
  one vec4 so lanes reading different keys hit different banks) + V tile + scores, all f32;
  `tile_shape` sizes tq and tk from head_dim, and a key that cannot fit is a ValueError.
- Parallelism: ceil(n * GROUP / tq) * kv_heads workgroups of tq * lanes_per_row lanes, whatever
  p is (16 heads / 4 kv heads, head_dim 64, n = 128: 64 x 128 lanes); each walks
  ceil((p + its last query + 1) / tk) tile rounds. A short chunk over a long cache (small n,
  large p) therefore has few, long workgroups: the gpu shapes (codegen/shapes.py
  SPLIT_PREFILL_MAX_N) give chunks of at most 16 tokens to attention_split + combine instead,
  this kernel gated to zero workgroups for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .kernels import (
    MAX_INVOCATIONS,
    MAX_WORKGROUP_STORAGE,
    STEP,
    OMIT_DEFAULT,
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

MAX_CHUNKS = 4  # vec4 accumulator chunks per lane (16 f32 registers); more lanes per row above that
TQ_CHOICES = (32, 16, 8, 4, 2, 1)  # rows per workgroup, largest first (fewer K/V reloads per row)
MAX_TK = 32
MIN_TK = 8  # a smaller key tile means a barrier round per few keys: take fewer rows first
MAX_KPU = 4  # keys a lane scores per pass (vec4 sums alive at once); all 32 at once hung SwiftShader's compiler


@dataclass(frozen=True)
class AttentionTiledKey(KernelKey):
    """Causal GQA prefill attention in workgroup-memory tiles (module docstring).

    tq: (query, q head) rows per workgroup; tk: keys per tile; wg: lanes (tq * lanes per row).
    0 means the planner's choice (`tile_shape`). window > 0: sliding window, the query at t sees
    keys t-window+1..t (key tiles before the tile's first window are skipped); softcap > 0:
    scores tanh(s / softcap) * softcap (Gemma 2); ring > 0: the caches are a ring of `ring` rows,
    key t read from row t % ring."""

    family: ClassVar[str] = "attention_tiled"
    act: str
    kv: str  # "" (cache in the activation dtype) or "f16x2" (kernels.KV_STORAGE)
    heads: int
    kv_heads: int
    head_dim: int
    scale: float
    tq: int = 0
    tk: int = 0
    wg: int = 0
    window: int = field(default=0, metadata=OMIT_DEFAULT)
    softcap: float = field(default=0.0, metadata=OMIT_DEFAULT)
    ring: int = field(default=0, metadata=OMIT_DEFAULT)


@dataclass(frozen=True)
class TileShape:
    tq: int  # rows per workgroup
    tk: int  # keys per tile
    lanes_per_row: int
    wg: int
    storage: int  # workgroup storage bytes


def _storage(tq: int, tk: int, hd4: int) -> int:
    """Bytes of workgroup memory: Q (tq, hd4+1) + K (tk, hd4+1) + V (tk, hd4) vec4<f32> + scores (tq, tk) f32."""
    return 16 * (tq * (hd4 + 1) + tk * (hd4 + 1) + tk * hd4) + 4 * tq * tk


def _max_tk(tq: int, hd4: int) -> int:
    room = MAX_WORKGROUP_STORAGE - 16 * tq * (hd4 + 1)
    return max(0, min(MAX_TK, room // (16 * (2 * hd4 + 1) + 4 * tq)))


def tile_shape(k: AttentionTiledKey) -> TileShape:
    """The resolved tile knobs of `k` (its own where set, else the planner's), checked against the limits."""
    if k.head_dim % 4 or k.head_dim < 4:
        raise ValueError(f"{k.name}: head_dim must be a positive multiple of 4 (vec4 loads)")
    hd4 = k.head_dim // 4
    lpr = next(d for d in range(1, hd4 + 1) if hd4 % d == 0 and hd4 // d <= MAX_CHUNKS)
    if k.wg:
        if not k.tq or k.wg % k.tq or hd4 % (k.wg // k.tq):
            raise ValueError(f"{k.name}: wg must be tq times a divisor of head_dim/4 ({hd4}); set tq with it")
        lpr = k.wg // k.tq
    if k.tq:
        tq = k.tq
    else:
        # the first row count whose key tile is not tiny; else the one doing most work per barrier round
        fits = [t for t in TQ_CHOICES if t * lpr <= MAX_INVOCATIONS and _max_tk(t, hd4) >= 1]
        good = [t for t in fits if _max_tk(t, hd4) >= MIN_TK]
        tq = good[0] if good else max(fits, key=lambda t: t * _max_tk(t, hd4), default=1)
    wg = tq * lpr
    if tq < 1 or k.tk < 0 or not 1 <= wg <= MAX_INVOCATIONS:
        raise ValueError(f"{k.name}: tq {tq} rows x {lpr} lanes per row must make 1..{MAX_INVOCATIONS} lanes "
                         "(tk >= 0); lower tq")
    # the most keys that fit (not rounded to a multiple of lpr: a ragged last key per lane wastes less
    # than the barrier rounds of a smaller tile); 1 when nothing fits: the storage check names the limit
    tk = k.tk or max(1, _max_tk(tq, hd4))
    storage = _storage(tq, tk, hd4)
    if storage > MAX_WORKGROUP_STORAGE:
        raise ValueError(f"{k.name}: tiles of {tq} rows x {tk} keys at head_dim {k.head_dim} need {storage} bytes "
                         f"of workgroup storage, over WebGPU's {MAX_WORKGROUP_STORAGE}; lower tq or tk")
    return TileShape(tq, tk, lpr, wg, storage)


def _plan_attention_tiled(k: AttentionTiledKey) -> _Plan:
    k._check_act()
    if k.kv_heads < 1 or k.heads % k.kv_heads:
        raise ValueError(f"{k.name}: heads {k.heads} is not a multiple of kv_heads {k.kv_heads}")
    if k.window < 0 or not k.softcap >= 0:
        raise ValueError(f"{k.name}: window must be >= 0 keys and softcap >= 0 (0: none)")
    qw, kvw = k.heads * k.head_dim, k.kv_heads * k.head_dim
    check_kv(k, kvw)
    check_ring(k, k.window)
    ts = tile_shape(k)
    group, hd4 = k.heads // k.kv_heads, k.head_dim // 4
    kpl = -(-ts.tk // ts.lanes_per_row)  # keys per lane per tile, scored in passes of kpu
    kpu = min(kpl, MAX_KPU)
    decls = [("q", "read", _act_arr(k.act, 4), f"(n, {qw}) {k.act}"),
             ("k_cache", "read", kv_array_type(k.act, k.kv, "vec4"), kv_layout(k.act, k.kv, kvw, "0..p+n-1 read", k.ring)),
             ("v_cache", "read", kv_array_type(k.act, k.kv, "vec4"), kv_layout(k.act, k.kv, kvw, "0..p+n-1 read", k.ring)),
             ("out", "read_write", _act_arr(k.act, 4), f"(n, {qw}) {k.act}"), STEP]
    return _Plan(decls, (ts.wg, 1, 1), (_ceil(f"n * {group}", ts.tq), str(k.kv_heads), "1"),
                 dict(tq=ts.tq, tk=ts.tk, lpr=ts.lanes_per_row, chunks=hd4 // ts.lanes_per_row, wg=ts.wg,  # resolved
                      kpl=kpl, kpu=kpu, passes=-(-kpl // kpu), ragged=ts.tk % ts.lanes_per_row != 0,
                      storage=ts.storage, group=group, hd4=hd4, qw=qw, kvw=kvw, scale_lit=f32_literal(k.scale),
                      cap_lit=f32_literal(k.softcap) if k.softcap else ""))


register_family(AttentionTiledKey, _plan_attention_tiled)
