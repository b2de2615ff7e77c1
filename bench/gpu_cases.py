"""The kernels bench/gpu_bench.py times: model shapes, their kernel keys, buffer sizes.

Keys come from `webllm_py.codegen` as the GPU program sets would use them: `gemv.gemv_key` for
the decode linears (subgroups off = set "gpu", on = set "gpu-sg") and attention_gpu's
`AttentionSplitKey` + `AttentionCombineKey` (KV stored "f16x2"). Where a family is not in this
checkout yet, today's `matmul_key` / decode `AttentionKey` are timed instead, and the case says
so ("family"). Each case is one kernel: its key, the byte size of every binding, which bindings
hold the data rotated over copies (weights, K/V cache) and the bytes one dispatch must move.

`prefill_attention_cases`: the two attention shapes of the gpu sets' prefill form
(codegen/shapes.py `_gpu_attention`, gated at SPLIT_PREFILL_MAX_N) at the same (n, p): the
tiled kernel alone against the split + combine pair, so gpu_bench can say where the split stops
winning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ModelShape:
    """Llama-family decode shape (head_dim = hidden / heads)."""

    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    vocab: int
    layers: int
    tied: bool

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


SHAPES: dict[str, ModelShape] = {
    "smollm2-135m": ModelShape(hidden=576, ffn=1536, heads=9, kv_heads=3, vocab=49152, layers=30, tied=True),
    "llama-1b": ModelShape(hidden=2048, ffn=8192, heads=32, kv_heads=8, vocab=128256, layers=16, tied=True),
    "llama-8b": ModelShape(hidden=4096, ffn=14336, heads=32, kv_heads=8, vocab=128256, layers=32, tied=False),
    # --smoke: lavapipe-sized
    "tiny": ModelShape(hidden=128, ffn=256, heads=4, kv_heads=2, vocab=512, layers=2, tied=True),
}

FORMATS = ("q4", "q4a", "q8", "f16")
EPS = 1e-5


@dataclass
class Case:
    """One kernel to time: `sizes` per binding (bytes), `rotate` the bindings copied to beat L2,
    `moved` the bytes one dispatch reads and writes (for GB/s), n/p the step it runs at."""

    label: str
    kernel: Any
    family: str
    sizes: dict[str, int]
    rotate: tuple[str, ...]
    moved: int
    n: int = 1
    p: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _weight_row_bytes(fmt: str, cols: int) -> dict[str, int]:
    from webllm_py.quant import quantize

    parts = quantize(np.zeros((1, cols), np.float32), fmt)
    return {("w" if k == "data" else k): v.nbytes for k, v in parts.items()}


def linear_specs(s: ModelShape) -> dict[str, dict[str, Any]]:
    """The decode linears of one layer (+ the LM head) as the lowering fuses them."""
    hd = s.head_dim
    return {
        "qkv": dict(rows=(s.heads + 2 * s.kv_heads) * hd, cols=s.hidden, norm=True, norm_eps=EPS,
                    splits=(s.heads * hd, s.kv_heads * hd, s.kv_heads * hd)),
        "o_proj": dict(rows=s.hidden, cols=s.heads * hd, epilogue="residual"),
        "gate_up": dict(rows=s.ffn, cols=s.hidden, norm=True, norm_eps=EPS, epilogue="silu_mul"),
        "down": dict(rows=s.hidden, cols=s.ffn, epilogue="residual"),
        "lm_head": dict(rows=s.vocab, cols=s.hidden, last_row=True, norm=True, norm_eps=EPS),
    }


def gemv_case(label: str, fmt: str, spec: dict[str, Any], subgroups: bool) -> Case:
    from webllm_py.codegen import build

    try:
        from webllm_py.codegen.gemv import gemv_key

        key, family = gemv_key("f32", fmt, subgroups=subgroups, **spec), "gemv"
    except ImportError:  # the gemv family has not landed in this checkout
        from webllm_py.codegen import matmul_key

        key, family = matmul_key("f32", fmt, **spec), "matmul (fallback)"
    rows, cols = spec["rows"], spec["cols"]
    wrows = 2 * rows if spec.get("epilogue") == "silu_mul" else rows
    parts = {k: v * wrows for k, v in _weight_row_bytes(fmt, cols).items()}
    sizes = {"x": cols * 4, "norm_w": cols * 4, "bias": wrows * 4, "out": rows * 4, "step": 16, **parts}
    for i, r in enumerate(spec.get("splits", ())):
        sizes[f"out{i}"] = r * 4
    out_bytes = rows * 4 * (2 if spec.get("epilogue") == "residual" else 1)  # residual reads and writes
    moved = sum(parts.values()) + cols * 4 + out_bytes
    return Case(label, build(key), family, sizes, tuple(parts), moved,
                extra={"fmt": fmt, "rows": rows, "cols": cols, "weight_bytes": sum(parts.values()),
                       "subgroups": subgroups})


def attention_cases(label: str, s: ModelShape, p: int, subgroups: bool) -> list[Case]:
    """Split + combine at context p (one new token), or today's decode AttentionKey."""
    from webllm_py.codegen import AttentionKey, build

    hd, qw, kvw = s.head_dim, s.heads * s.head_dim, s.kv_heads * s.head_dim
    ctx = p + 1
    scale = 1.0 / math.sqrt(hd)
    try:
        from webllm_py.codegen.attention_gpu import AttentionCombineKey, AttentionSplitKey, partial_elements
    except ImportError:
        k = build(AttentionKey("f32", s.heads, s.kv_heads, hd, scale, form="decode"))
        kv = ctx * kvw * 4
        return [Case(f"{label} attention", k, "attention (fallback)",
                     {"q": qw * 4, "k_cache": kv, "v_cache": kv, "out": qw * 4, "step": 16},
                     ("k_cache", "v_cache"), 2 * kv + 2 * qw * 4, p=p, extra={"kv_bytes": 2 * kv})]
    split = AttentionSplitKey("f32", "f16x2", s.heads, s.kv_heads, hd, scale, subgroups=subgroups)
    partial = partial_elements(s.heads, hd, ctx, split.block, 1) * 4
    kv = ctx * kvw * 2  # f16 pairs in u32 words
    written = s.heads * math.ceil(ctx / split.block) * (hd + 4) * 4
    combine = AttentionCombineKey("f32", s.heads, hd, split.block)
    return [
        Case(f"{label} attention_split", build(split), "attention_split",
             {"q": qw * 4, "k_cache": kv, "v_cache": kv, "partial": partial, "step": 16},
             ("k_cache", "v_cache"), 2 * kv + qw * 4 + written, p=p,
             extra={"kv_bytes": 2 * kv, "subgroups": subgroups}),
        Case(f"{label} attention_combine", build(combine), "attention_combine",
             {"partial": partial, "out": qw * 4, "step": 16}, (), written + qw * 4, p=p),
    ]


def decode_cases(shape_names: list[str], formats: list[str], contexts: list[int],
                 subgroup_modes: list[bool]) -> list[Case | dict[str, Any]]:
    """Every case of the run; a case whose key cannot be built is a dict with its error."""
    out: list[Case | dict[str, Any]] = []
    for name in shape_names:
        s = SHAPES[name]
        for sg in subgroup_modes:
            tag = "gpu-sg" if sg else "gpu"
            for fmt in formats:
                for lin, spec in linear_specs(s).items():
                    label = f"{name} {tag} {lin} {fmt}"
                    try:
                        out.append(gemv_case(label, fmt, spec, sg))
                    except (ValueError, KeyError) as e:
                        out.append({"label": label, "error": f"{type(e).__name__}: {e}"})
            for p in contexts:
                try:
                    out.extend(attention_cases(f"{name} {tag} p={p}", s, p, sg))
                except (ValueError, KeyError) as e:
                    out.append({"label": f"{name} {tag} p={p} attention", "error": f"{type(e).__name__}: {e}"})
    return out


@dataclass
class PrefillCase:
    """One (shape, p, n) of prefill attention: the tiled kernel and the split + combine pair that
    the gpu sets' prefill form chooses between by n (codegen/shapes.py SPLIT_PREFILL_MAX_N)."""

    shape: str
    p: int
    n: int
    tiled: Case
    split: Case
    combine: Case


def prefill_attention_case(name: str, s: ModelShape, n: int, p: int, subgroups: bool) -> PrefillCase:
    """The n new queries at cache length p (K/V rows 0..p+n-1 present), f32 activations, f16x2
    KV as the gpu sets store it; keys from the same constructors `_gpu_attention` calls (default
    tiles, default split block), workgroup counts from each kernel's plan at (n, p) (run_case:
    `dispatch_for(n, p)`). The split's scratch holds exactly n queries' partials."""
    from webllm_py.codegen import build
    from webllm_py.codegen.attention_gpu import attention_combine_key, attention_split_key, partial_elements
    from webllm_py.codegen.attention_tiled import AttentionTiledKey

    hd, qw, kvw = s.head_dim, s.heads * s.head_dim, s.kv_heads * s.head_dim
    ctx, scale = p + n, 1.0 / math.sqrt(hd)
    kv = ctx * kvw * 2  # f16 pairs in u32 words
    q, out = n * qw * 4, n * qw * 4
    tag = f"{name} n={n} p={p}"
    tiled = AttentionTiledKey(act="f32", kv="f16x2", heads=s.heads, kv_heads=s.kv_heads, head_dim=hd, scale=scale)
    split = attention_split_key("f32", "f16x2", s.heads, s.kv_heads, hd, scale, subgroups=subgroups)
    combine = attention_combine_key("f32", s.heads, hd, split.block)
    partial = partial_elements(s.heads, hd, ctx, split.block, n) * 4
    written = partial  # an upper bound: every (query, head, block) record
    extra = {"shape": name, "kv_bytes": 2 * kv}
    return PrefillCase(
        name, p, n,
        Case(f"{tag} attention_tiled", build(tiled), "attention_tiled",
             {"q": q, "k_cache": kv, "v_cache": kv, "out": out, "step": 16}, ("k_cache", "v_cache"),
             2 * kv + q + out, n=n, p=p, extra=extra),
        Case(f"{tag} attention_split", build(split), "attention_split",
             {"q": q, "k_cache": kv, "v_cache": kv, "partial": partial, "step": 16}, ("k_cache", "v_cache"),
             2 * kv + q + written, n=n, p=p, extra={**extra, "subgroups": subgroups}),
        Case(f"{tag} attention_combine", build(combine), "attention_combine",
             {"partial": partial, "out": out, "step": 16}, (), written + out, n=n, p=p, extra=extra),
    )


def prefill_attention_cases(shape_names: list[str], ns: list[int], contexts: list[int],
                            subgroups: bool) -> list[PrefillCase | dict[str, Any]]:
    """Every (shape, p, n) of the prefill_attention section, smallest n first over all (shape, p)
    (a run cut short by its budget loses the large n, where the tiled kernel is expected to win,
    and keeps every crossover's neighbourhood); one whose keys cannot be built is a dict with
    its error (shape, p, n and the message)."""
    out: list[PrefillCase | dict[str, Any]] = []
    for n in sorted(ns):
        for name in shape_names:
            for p in contexts:
                try:
                    out.append(prefill_attention_case(name, SHAPES[name], n, p, subgroups))
                except (ValueError, KeyError) as e:
                    out.append({"shape": name, "p": p, "n": n, "error": f"{type(e).__name__}: {e}"})
    return out
