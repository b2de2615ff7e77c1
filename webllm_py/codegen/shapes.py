"""Kernel shapes per adapter class: how the lowering turns each op into kernel keys.

The lowering (passes/lower.py) decides WHAT a dispatch computes (its fusions, buffers and
row slices); this table decides the kernel SHAPE that computes it, per adapter class:

  class  linear (decode / prefill, score)        attention (decode / prefill, score)       norm prologue
  cpu    matmul decode form / tiled matmul       attention decode / prefill forms           decode
  gpu    gemv / gemm (last-row LM head: gemv)    attention_split + combine / attention_tiled decode, prefill
                                                (prefill n <= 16: split + combine)

The cpu entries are the choices tuned on lavapipe/SwiftShader (moved here from the lowering,
unchanged: tests/test_program_sets.py holds their programs and WGSL to a golden digest).
The gpu prefill form holds both attention shapes, each gated to zero workgroups when the other
runs (`SPLIT_PREFILL_MAX_N`): short chunks over a long cache take the split, whose parallelism
grows with p. A shape is one entry of `SHAPES`; adding a class or a kernel family for one is an entry here,
no branch in the lowering's rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from . import kernels as K
from .attention_gpu import attention_combine_key, attention_split_key, partial_elements
from .attention_tiled import AttentionTiledKey
from .gemm import gemm_key
from .gemv import gemv_key


@dataclass(frozen=True)
class AttentionOp:
    """One attention node to lower: causal GQA over cache rows 0..p+n-1."""

    act: str
    kv: str  # KV-cache storage (passes/program_sets.py KV_BYTES)
    heads: int
    kv_heads: int
    head_dim: int
    scale: float
    form: str  # "decode" | "prefill"
    context_window: int
    max_n: int
    subgroups: bool = False  # the program set may use subgroup builtins
    window: int = 0  # sliding window: query t sees keys t-window+1..t (0: all; Gemma's local layers)
    softcap: float = 0.0  # scores tanh(s / softcap) * softcap (0: none; Gemma 2)
    ring: int = 0  # the caches are a ring of `ring` rows, position t in row t % ring (0: a row per position)

    def __post_init__(self) -> None:
        # a step writes its max_n rows before it reads keys from p - window + 1 on: all in the ring
        if self.ring and self.ring < self.window + self.max_n - 1:
            raise ValueError(f"attention: a ring of {self.ring} rows cannot hold window {self.window} + a step of "
                             f"{self.max_n} - 1 keys; size it window + prefill_chunk - 1")


@dataclass(frozen=True)
class AttentionStep:
    """One dispatch of an attention: `key`, binding q/k_cache/v_cache/out and, where it has one,
    "partial": an f32 scratch of `scratch` elements shared by the steps of one attention."""

    key: K.KernelKey
    scratch: int = 0
    # an expression of n that is 1 for the steps' n that run this dispatch and 0 for the others: the
    # lowering multiplies the dispatch's workgroup count by it ("" : always runs)
    gate: str = ""


@dataclass(frozen=True)
class Shapes:
    """One adapter class's kernel choices."""

    # (act, fmt, rows, cols, *, bias, form, last_row, row_offset, out_rows, subgroups, **fusions) -> key
    linear: Callable[..., K.KernelKey]
    attention: Callable[[AttentionOp], list[AttentionStep]]
    rope_kv: Callable[..., K.KernelKey]  # (act, kv, heads, kv_heads, head_dim)
    rope: Callable[..., K.KernelKey]  # (act, kv, heads, head_dim, to_cache)
    kv_write: Callable[..., K.KernelKey]  # (act, kv, width)
    # forms whose matmul takes the RMSNorm as a prologue. Measured on lavapipe (SmolLM2, n=128):
    # the prologue costs more than a separate norm dispatch in the tiled prefill form (1.69-2.16 s
    # vs 1.32 s a chunk), and saves time in decode
    norm_prologue_forms: frozenset[str]


def _same_kv(act: str, kv: str, what: str) -> None:
    if kv != act:
        raise ValueError(f"{what}: this shape stores the KV cache as the activations ({act}), not {kv!r}")


def _cpu_linear(act: str, fmt: str, rows: int, cols: int, *, bias: bool, form: str, last_row: bool,
                row_offset: int, out_rows: int, subgroups: bool = False, **fusions: Any) -> K.KernelKey:
    return K.matmul_key(act, fmt, rows, cols, bias=bias, prefill=form == "prefill", last_row=last_row,
                        row_offset=row_offset, out_rows=out_rows, **fusions)


def _cpu_attention(op: AttentionOp) -> list[AttentionStep]:
    _same_kv(op.act, op.kv, "attention")
    return [AttentionStep(K.AttentionKey(act=op.act, heads=op.heads, kv_heads=op.kv_heads, head_dim=op.head_dim,
                                         scale=op.scale, form=op.form, window=op.window, softcap=op.softcap,
                                         ring=op.ring))]


def _cpu_rope_kv(act: str, kv: str, heads: int, kv_heads: int, head_dim: int) -> K.KernelKey:
    _same_kv(act, kv, "rope_kv")
    return K.RopeKvKey(act=act, heads=heads, kv_heads=kv_heads, head_dim=head_dim)


def _cpu_rope(act: str, kv: str, heads: int, head_dim: int, to_cache: bool) -> K.KernelKey:
    if to_cache:
        _same_kv(act, kv, "rope")
    return K.RopeKey(act=act, heads=heads, head_dim=head_dim, to_cache=to_cache)


def _cpu_kv_write(act: str, kv: str, width: int) -> K.KernelKey:
    _same_kv(act, kv, "kv_write")
    return K.KvWriteKey(act=act, width=width)


CPU = Shapes(linear=_cpu_linear, attention=_cpu_attention, rope_kv=_cpu_rope_kv, rope=_cpu_rope,
             kv_write=_cpu_kv_write, norm_prologue_forms=frozenset({"decode"}))

def _kv_field(act: str, kv: str) -> str:
    """The kernels' kv field: "" where the cache is stored as the activations."""
    return "" if kv == act else kv


def _gpu_linear(act: str, fmt: str, rows: int, cols: int, *, bias: bool, form: str, last_row: bool,
                row_offset: int, out_rows: int, subgroups: bool = False, **fusions: Any) -> K.KernelKey:
    """Decode and the last-row LM head: a GEMV (>= 16 lanes per output row); prefill / score: the
    workgroup-tiled GEMM (weights dequantized once per tile)."""
    if form == "decode" or last_row:
        return gemv_key(act, fmt, rows, cols, bias=bias, last_row=last_row, row_offset=row_offset,
                        out_rows=out_rows, subgroups=subgroups, **fusions)
    return gemm_key(act, fmt, rows, cols, bias=bias, row_offset=row_offset, out_rows=out_rows, **fusions)


# Prefill chunks of at most this many tokens take flash-decoding's split + combine, longer ones the
# tiled kernel. At n <= 16 the tiled form is at most one 32-row q tile per kv head at GROUP 2 (a
# handful of workgroups at GROUP 4-8), each walking all p + n keys: a follow-up chat turn over a
# long cache leaves a big GPU idle. The split has ceil((p + n) / block) x kv_heads x n workgroups,
# but reads the K/V once per query instead of once per tile, so past a few tiles' worth of queries
# the tiled form wins. Not tuned on a real GPU (docs/performance.md).
SPLIT_PREFILL_MAX_N = 16


def _gates(t: int, c: int) -> tuple[str, str]:
    """[n <= t] and [n > t] for 1 <= n <= c (c > t) in the manifest's dim grammar (integers, n,
    + - * //): (t + c - n) // c and (n - t - 1 + c) // c, both in 0..1 over that range."""
    return f"({t + c} - n) // {c}", f"(n + {c - t - 1}) // {c}"


def _gpu_attention(op: AttentionOp) -> list[AttentionStep]:
    """Decode: flash-decoding (split over key blocks into an f32 scratch, then combine); prefill /
    score: FlashAttention-2 tiles in workgroup memory for chunks of more than SPLIT_PREFILL_MAX_N
    tokens, the split + combine for shorter ones (both emitted, each gated by n)."""
    kv = _kv_field(op.act, op.kv)
    split = attention_split_key(op.act, kv, op.heads, op.kv_heads, op.head_dim, op.scale, subgroups=op.subgroups,
                                window=op.window, softcap=op.softcap, ring=op.ring)
    combine = attention_combine_key(op.act, op.heads, op.head_dim, split.block)
    if op.form == "prefill" and op.max_n > SPLIT_PREFILL_MAX_N:
        short, long = _gates(SPLIT_PREFILL_MAX_N, op.max_n)
        # the split only ever sees n <= SPLIT_PREFILL_MAX_N here: its scratch holds that many queries
        scratch = partial_elements(op.heads, op.head_dim, op.context_window, split.block, SPLIT_PREFILL_MAX_N)
        tiled = AttentionTiledKey(act=op.act, kv=kv, heads=op.heads, kv_heads=op.kv_heads, head_dim=op.head_dim,
                                  scale=op.scale, window=op.window, softcap=op.softcap, ring=op.ring)
        return [AttentionStep(tiled, gate=long), AttentionStep(split, scratch, gate=short),
                AttentionStep(combine, scratch, gate=short)]
    # decode, and a prefill form whose every chunk is short: the split alone
    scratch = partial_elements(op.heads, op.head_dim, op.context_window, split.block, op.max_n)
    return [AttentionStep(split, scratch), AttentionStep(combine, scratch)]


def _gpu_rope_kv(act: str, kv: str, heads: int, kv_heads: int, head_dim: int) -> K.KernelKey:
    return K.RopeKvKey(act=act, heads=heads, kv_heads=kv_heads, head_dim=head_dim, kv=_kv_field(act, kv))


def _gpu_rope(act: str, kv: str, heads: int, head_dim: int, to_cache: bool) -> K.KernelKey:
    return K.RopeKey(act=act, heads=heads, head_dim=head_dim, to_cache=to_cache, kv=_kv_field(act, kv) if to_cache else "")


def _gpu_kv_write(act: str, kv: str, width: int) -> K.KernelKey:
    return K.KvWriteKey(act=act, width=width, kv=_kv_field(act, kv))


# The norm prologue in both forms: the GEMM takes a token's sum of squares from the x rows it loads
# into its tiles, saving one dispatch and the normalized activations' round trip through memory.
GPU = Shapes(linear=_gpu_linear, attention=_gpu_attention, rope_kv=_gpu_rope_kv, rope=_gpu_rope,
             kv_write=_gpu_kv_write, norm_prologue_forms=frozenset({"decode", "prefill"}))

SHAPES: dict[str, Shapes] = {"cpu": CPU, "gpu": GPU}
