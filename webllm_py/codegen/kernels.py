"""Kernel variants: one frozen key per variant, rendered from `wgsl_templates/`.

A key names a kernel family (`family`) and every constant baked into its WGSL:
activation dtype ("f32" | "f16"), weight format, shapes, eps, and the tuning
knobs (workgroup size `wg`, tokens per invocation `tn`, ...). `build(key)`
returns a `Kernel`: the WGSL text plus the plain data a runtime needs to run it:

  bindings        ((name, kind), ...), kind "read" | "read_write" | "uniform";
                  binding index = position, all in @group(0).
  workgroup_size  (x, y, z)
  dispatch        workgroup counts (x, y, z) as expressions over n (tokens this
                  step) and p (tokens already cached): integers, n, p, + - * //
                  and parentheses; evaluated with webllm_py.ir.eval_dim.

Every kernel that needs n or p binds "step", a 16-byte uniform
`struct Step { n: u32, p: u32, _pad0: u32, _pad1: u32 }`, written once per step.

Buffer element types (what the lowering pass must allocate):
  activations and KV cache: f32 (act="f32") or f16 (act="f16", needs shader-f16);
  ids: i32;  norm weights, biases, rope inv_freq: f32;
  weights: the stored formats of webllm_py.quant.formats, bound as raw words
  (q4/q8 data u32, scales f16 read two per u32 word, f16 data read two per u32).
Every binding's size must be a multiple of 16 bytes (round buffers up; the
kernels never read past the logical extent except within the last 16 bytes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import jinja2
import numpy as np

from ..ir.graph import eval_dim
from ..quant.formats import FORMATS, GROUP_SIZE

ACTS = ("f32", "f16")
WEIGHT_FORMATS = ("f32", "f16", "q8", "q4", "q4a", "q5", "q5a", "q2k", "q3k", "q4k", "q5k", "q6k")
MAX_WORKGROUPS = 65535  # WebGPU maxComputeWorkgroupsPerDimension
MAX_INVOCATIONS = 256  # WebGPU maxComputeInvocationsPerWorkgroup (default limit)
MAX_WORKGROUP_STORAGE = 16384  # WebGPU maxComputeWorkgroupStorageSize (default limit)
MAX_STORAGE_BUFFERS = 8  # WebGPU maxStorageBuffersPerShaderStage (default limit)
# weight format -> the packed-activation layout its integer dot products read (MatmulKey xq / pack)
PACK_LAYOUTS = {"q4": "pairs", "q4a": "pairs", "q8": "bytes"}
# WGSL language features a kernel's text needs (the browser runtime checks them before picking a set)
WGSL_FEATURE_USES = {"packed_4x8_integer_dot_product": ("dot4I8Packed", "pack4xI8")}


def wgsl_features(wgsl: str) -> list[str]:
    """The WGSL language features (navigator.gpu.wgslLanguageFeatures) this kernel text uses."""
    return [f for f, uses in WGSL_FEATURE_USES.items() if any(u + "(" in wgsl for u in uses)]


def _template_dir() -> Path:
    top = Path(__file__).resolve().parents[2] / "wgsl_templates"
    if top.is_dir():
        return top
    return Path(__file__).resolve().parents[1] / "wgsl_templates"  # installed wheel


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_template_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def f32_literal(x: float) -> str:
    """A WGSL literal that parses to exactly float32(x)."""
    v = float(np.float32(x))
    if not math.isfinite(v):
        raise ValueError(f"cannot bake non-finite constant {x!r} into WGSL")
    return repr(v) + "f" if ("." in repr(v) or "e" in repr(v)) else repr(v) + ".0f"


def _ceil(a: str, b: int) -> str:
    return a if b == 1 else f"({a} + {b - 1}) // {b}"


# Field metadata of options added after a family's first release: left out of the
# variant name and the key JSON while they hold their default, so the kernels
# (names, headers, text) of keys that do not use them stay exactly as before.
OMIT_DEFAULT = {"omit_default": True}


def _omitted(key: Any, f: Any) -> bool:
    return bool(f.metadata.get("omit_default")) and getattr(key, f.name) == f.default


def _const_groups(count: int, what: str, key: Any) -> None:
    if count > MAX_WORKGROUPS:
        raise ValueError(f"{key.name}: {count} workgroups along x for {what} exceeds WebGPU's {MAX_WORKGROUPS}; raise wg")


# -- keys ------------------------------------------------------------------------

@dataclass(frozen=True)
class KernelKey:
    """Base of all keys. `family` is the template name; fields are baked constants."""

    family: ClassVar[str] = ""

    @property
    def name(self) -> str:
        """Deterministic variant name, e.g. matmul_act-f32_fmt-q4_rows-576_..."""
        parts = []
        for f in fields(self):
            if _omitted(self, f):
                continue
            v = getattr(self, f.name)
            if isinstance(v, bool):
                v = int(v)
            elif isinstance(v, tuple):
                v = "x".join(str(e) for e in v)
            parts.append(f"{f.name}-{v}")
        return "_".join([self.family] + parts)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"family": self.family}
        for f in fields(self):
            if not _omitted(self, f):
                v = getattr(self, f.name)
                d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    def _check_act(self) -> None:
        act = getattr(self, "act")
        if act not in ACTS:
            raise ValueError(f"{self.family}: act must be one of {ACTS}, got {act!r}")

    def _check_wg(self, wg: int) -> None:
        if not 1 <= wg <= MAX_INVOCATIONS:
            raise ValueError(f"{self.family}: workgroup size {wg} outside 1..{MAX_INVOCATIONS}")


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
class MatmulKey(KernelKey):
    """out = x @ dequant(W).T (+ bias). W: (rows, cols) = (out_features, in_features).

    Fusions (all off by default; each combines with fmt/act/bias/tn/rpi/wg):
      norm=True      RMSNorm prologue: binds "norm_w" (f32, (cols,)) right after "x";
                     out = inv(t) * (W @ (x * norm_w)) (+ bias), inv(t) = 1/sqrt(mean(x^2) + norm_eps).
                     The sum of squares is taken in the same pass over x (no second read of x).
      epilogue="residual"  out is the residual stream: out[t, r] += value (read and written by one invocation).
      epilogue="silu_mul"  W (and bias) hold 2*rows rows [gate; up]; out = silu(gate . x) * (up . x).
      splits=(a, b, ...)   the rows go to consecutive outputs "out0", "out1", ... (row strides a, b, ...),
                     replacing "out"; each size a multiple of rpi; epilogue "none" only.
      xq=True        integer dot products (q4/q4a: any tn; q8: tn=1; cols % 32 == 0): x arrives packed (PACKED
                     ACTIVATIONS below, in the layout the weight format takes) in "xq"/"xs"; with norm=True
                     the producer already multiplied by the norm weight, and "x" (the raw activation) is
                     still bound for the sum of squares.
      pack=True      the output is also written packed for an xq consumer (rpi == 8, rows % 8 == 0), in
                     `pack_layout`: silu_mul writes only "outq"/"outs"; residual writes "out" and packs
                     out * "pack_w" (the consumer's RMSNorm weight).

    PACKED ACTIVATIONS (n, C), C % 8 == 0: per token and 8-column chunk c, a scale sx and integers
    q = round(x / sx); "xs" (n, C/8) vec2<f32>: (sx, sum of the 8 q). Two layouts of the q, by the
    consumer's weight format (PACK_LAYOUTS):
    "pairs" (q4/q4a consumers): sx = max|x| / 255, q in [-255, 255]; "xq" (n, C/8) vec4<u32>: lane j =
      q[8c+j+4] + q[8c+j] * 2^16 (i32 bits). A q4 weight word (8 nibbles n_i) times lane j, after
      (w >> 4j) & 0x000F000F, holds n_j q_j + n_{j+4} q_{j+4} in its high half; 4 lanes sum without
      overflow (|sum| <= 30600, cross terms <= 15300 below bit 16), so one word costs ~17 integer
      ops for 8 weights where the float unpack costs ~34 (bench/probe_int_gemv.py).
    "bytes" (q8 consumers): sx = max|x| / 127, q in [-127, 127]; "xq" (n, C/8) vec2<u32>: the 8 q as
      int8, column order, low byte first (pack4xI8). A q8 weight word (4 int8) and an x word make one
      dot4I8Packed; 16-bit fields cannot hold an int8 x 9-bit product, so q8 has no pairs form.

    One invocation per `rpi` output rows x `tn` tokens: every weight word
    loaded is reused for tn tokens, every x chunk loaded for rpi rows (on
    lavapipe the x loads, repeated per lane, dominate). tn=1 is the decode
    (GEMV) form, tn=4..8 the prefill form. last_row=True reads only row n-1 of x and writes one output row (the
    LM head of a logits_last graph; needs tn=1)."""

    family: ClassVar[str] = "matmul"
    act: str
    fmt: str
    rows: int
    cols: int
    bias: bool = False
    tn: int = 1
    wg: int = 64
    last_row: bool = False
    rpi: int = 1
    row_offset: int = 0  # a row slice of a larger weight: these rows are out columns row_offset..
    out_rows: int = 0  # row stride of `out` (0: rows); > rows when the weight is split in slices
    norm: bool = field(default=False, metadata=OMIT_DEFAULT)  # RMSNorm prologue ("norm_w" binding)
    norm_eps: float = field(default=0.0, metadata=OMIT_DEFAULT)
    epilogue: str = field(default="none", metadata=OMIT_DEFAULT)  # "none" | "residual" | "silu_mul"
    splits: tuple[int, ...] = field(default=(), metadata=OMIT_DEFAULT)  # output row ranges -> out0, out1, ...
    xq: bool = field(default=False, metadata=OMIT_DEFAULT)  # x packed: integer dot products
    pack: bool = field(default=False, metadata=OMIT_DEFAULT)  # output also packed for an xq consumer
    pack_layout: str = field(default="pairs", metadata=OMIT_DEFAULT)  # PACK_LAYOUTS value the consumer reads

    def __post_init__(self) -> None:
        if not isinstance(self.splits, tuple):  # JSON lists -> a hashable tuple
            object.__setattr__(self, "splits", tuple(int(v) for v in self.splits))


@dataclass(frozen=True)
class RopeKey(KernelKey):
    """rotate_half rotary embedding at positions p..p+n-1 of x (n, heads*head_dim).

    to_cache=True writes the rotated rows into cache rows p..p+n-1 (the fused
    kv_write of k) instead of an "out" buffer, stored as `kv` (KV_STORAGE; "f16x2" needs
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


@dataclass(frozen=True)
class KvWriteKey(KernelKey):
    """cache[p + i, :] = x[i, :] for i < n; width = kv_heads * head_dim. One invocation per
    element, or with kv="f16x2" (KV_STORAGE) per u32 word (2 elements; width % 4 == 0)."""

    family: ClassVar[str] = "kv_write"
    act: str
    width: int
    wg: int = 64
    kv: str = field(default="", metadata=OMIT_DEFAULT)  # cache storage (KV_STORAGE)


@dataclass(frozen=True)
class AttentionKey(KernelKey):
    """Causal GQA attention of q (n, heads*head_dim) over cache rows 0..p+n-1.

    form="decode": one workgroup per (head, query); its wg lanes split the keys,
    each keeps an online softmax, one combine at the end (good for n == 1,
    correct for any n). form="prefill": one invocation per (query, head), wg
    queries of one head per workgroup, no barriers (good for n > 1).
    window > 0: a sliding window, query at position t sees rows max(0, t-window+1)..t only (the
    loops start there). softcap > 0: scores tanh(s / softcap) * softcap (Gemma 2)."""

    family: ClassVar[str] = "attention"
    act: str
    heads: int
    kv_heads: int
    head_dim: int
    scale: float
    form: str = "decode"
    wg: int = 0  # 0: the default for the form
    window: int = field(default=0, metadata=OMIT_DEFAULT)
    softcap: float = field(default=0.0, metadata=OMIT_DEFAULT)

    def lanes(self) -> int:
        if self.wg:
            return self.wg
        if self.form == "prefill":
            return 8
        # 8 lanes, measured on SmolLM2's shapes (heads 9, head_dim 64): on SwiftShader 4.3x (p=64)
        # and 1.7x (p=512) faster than 32 lanes (bench/kernel_bench.py); on lavapipe as fast as 32
        # (4 is 1.5x slower there at p=1000). Real GPUs likely want more: tune per adapter.
        lanes = 8
        while lanes > 1 and lanes * (self.head_dim * 4 + 8) > MAX_WORKGROUP_STORAGE:
            lanes //= 2
        return lanes


@dataclass(frozen=True)
class SiluMulKey(KernelKey):
    """out = silu(gate) * up, (n, cols)."""

    family: ClassVar[str] = "silu_mul"
    act: str
    cols: int
    wg: int = 64


@dataclass(frozen=True)
class AddKey(KernelKey):
    """out = a + b, (n, cols)."""

    family: ClassVar[str] = "add"
    act: str
    cols: int
    wg: int = 64


@dataclass(frozen=True)
class LastRowKey(KernelKey):
    """out[0, :] = x[n-1, :]."""

    family: ClassVar[str] = "last_row"
    act: str
    cols: int
    wg: int = 64


@dataclass(frozen=True)
class RopeKvKey(KernelKey):
    """The attention prologue of one step in one dispatch: for t < n at position p+t,
    q[t] is rotated in place, rope(k[t]) goes to k_cache row p+t and v[t] to v_cache row p+t.
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


KEY_TYPES: dict[str, type[KernelKey]] = {
    k.family: k
    for k in [EmbeddingKey, RmsNormKey, AddRmsNormKey, MatmulKey, RopeKey, KvWriteKey,
              AttentionKey, SiluMulKey, AddKey, LastRowKey, RopeKvKey, PackKey]
}


def key_from_json(d: dict[str, Any]) -> KernelKey:
    d = dict(d)
    cls = KEY_TYPES[d.pop("family")]
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# -- kernels ---------------------------------------------------------------------

@dataclass(frozen=True)
class Kernel:
    key: KernelKey
    name: str
    wgsl: str
    bindings: tuple[tuple[str, str], ...]
    workgroup_size: tuple[int, int, int]
    dispatch: tuple[str, str, str]

    def dispatch_for(self, n: int, p: int, b: int = 0) -> tuple[int, int, int]:
        env = {"n": n, "p": p, "b": b}  # b: rows of an encoder batch (encoder_kernels.py)
        return tuple(eval_dim(e, env) for e in self.dispatch)  # type: ignore[return-value]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key.to_json(), "bindings": [list(b) for b in self.bindings],
                "workgroup_size": list(self.workgroup_size), "dispatch": list(self.dispatch)}


@dataclass
class _Plan:
    """What a family's planner hands the template: declarations and constants."""

    decls: list[tuple[str, str, str, str]]  # (name, kind, wgsl type, layout comment)
    workgroup_size: tuple[int, int, int]
    dispatch: tuple[str, str, str]
    consts: dict[str, Any]


def _act_arr(act: str, vec: int = 1) -> str:
    return f"array<{act}>" if vec == 1 else f"array<vec{vec}<{act}>>"


STEP = ("step", "uniform", "Step", "Step { n, p }: tokens this step, tokens already cached")


def _weight_decls(fmt: str, rows: int, cols: int, vec_ok: bool) -> list[tuple[str, str, str, str]]:
    """Declarations of a (rows, cols) weight in `fmt`. vec_ok: bind vectorized word arrays."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown weight format {fmt!r}; known: {sorted(FORMATS)}")
    if FORMATS[fmt].block is not None:  # GGUF block formats: bindings from _dequant.wgsl's table
        from .dequant import weight_decls

        return weight_decls(fmt, rows, cols)
    g = -(-cols // GROUP_SIZE)
    if fmt == "q4":
        ty = "array<vec4<u32>>" if vec_ok else "array<u32>"
        return [("w", "read", ty, f"({rows}, {g}*4) u32: 4-bit q+8 nibbles, column c at bits 4*(c%8) of word c/8"),
                ("scales", "read", "array<u32>", f"({rows}, {g}) f16 scales, two per u32 word")]
    if fmt == "q4a":
        ty = "array<vec4<u32>>" if vec_ok else "array<u32>"
        return [("w", "read", ty, f"({rows}, {g}*4) u32: 4-bit q nibbles, column c at bits 4*(c%8) of word c/8"),
                ("scales", "read", "array<u32>", f"({rows}, {g}) u32: f16 (scale, lo) pair per group, w = scale*q + lo")]
    if fmt == "q8":
        ty = "array<vec4<u32>>" if vec_ok else "array<u32>"
        return [("w", "read", ty, f"({rows}, {g}*8) u32: int8 q, column c at bits 8*(c%4) of word c/4"),
                ("scales", "read", "array<u32>", f"({rows}, {g}) f16 scales, two per u32 word")]
    if fmt == "f16":
        ty = "array<vec4<u32>>" if vec_ok and cols % 8 == 0 else "array<u32>"
        return [("w", "read", ty, f"({rows}, {cols}) f16, two per u32 word")]
    ty = "array<vec4<f32>>" if vec_ok and cols % 4 == 0 else "array<f32>"
    return [("w", "read", ty, f"({rows}, {cols}) f32")]


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


EPILOGUES = ("none", "residual", "silu_mul")


def _check_matmul_fusions(k: MatmulKey) -> None:
    if k.epilogue not in EPILOGUES:
        raise ValueError(f"{k.name}: epilogue must be one of {EPILOGUES}, got {k.epilogue!r}")
    if not isinstance(k.norm, bool):
        raise ValueError(f"{k.name}: norm must be a bool")
    if not math.isfinite(k.norm_eps) or k.norm_eps < 0:
        raise ValueError(f"{k.name}: norm_eps must be finite and >= 0")
    if k.norm_eps and not k.norm:
        raise ValueError(f"{k.name}: norm_eps set without norm=True")
    if k.epilogue == "silu_mul":
        if k.row_offset:
            raise ValueError(f"{k.name}: silu_mul reads [gate; up] row pairs of one weight; row_offset slices "
                             "are not supported (slice gate and up alike and use out_rows, or drop the fusion)")
        if 2 * k.rpi * k.tn > 32:
            raise ValueError(f"{k.name}: silu_mul keeps 2 * rpi * tn accumulators; need 2 * rpi * tn <= 32")
    if k.xq:
        if k.fmt not in PACK_LAYOUTS or k.cols % GROUP_SIZE or (k.tn != 1 and PACK_LAYOUTS[k.fmt] != "pairs"):
            raise ValueError(f"{k.name}: xq (packed x) needs fmt {'/'.join(PACK_LAYOUTS)}, cols % {GROUP_SIZE} == 0, "
                             "and tn=1 for q8 (bytes)")
    _check_pack_layout(k)
    if k.pack:
        if k.epilogue not in ("silu_mul", "residual") or k.rpi != 8 or k.rows % 8 or k.tn != 1 \
                or k.row_offset or k.out_rows:
            raise ValueError(f"{k.name}: pack needs epilogue silu_mul/residual, rpi=8, rows % 8 == 0, tn=1, no slices")
    if k.splits:
        if len(k.splits) < 2:
            raise ValueError(f"{k.name}: splits needs at least 2 ranges (use the plain `out` form for one)")
        if k.epilogue != "none":
            raise ValueError(f"{k.name}: splits need epilogue 'none'")
        if k.last_row:
            raise ValueError(f"{k.name}: splits cannot be combined with last_row")
        if k.row_offset or k.out_rows:
            raise ValueError(f"{k.name}: splits cannot be combined with row_offset/out_rows slices")
        if any(int(s) < 1 for s in k.splits) or sum(k.splits) != k.rows:
            raise ValueError(f"{k.name}: splits {k.splits} must be positive and sum to rows {k.rows}")
        if any(s % k.rpi for s in k.splits):
            raise ValueError(f"{k.name}: every split size must be a multiple of rpi {k.rpi} "
                             "(one invocation's rows must not straddle two outputs); lower rpi")


def _check_pack_layout(k: MatmulKey | RmsNormKey) -> None:
    if k.pack_layout not in PACK_LAYOUTS.values():
        raise ValueError(f"{k.name}: pack_layout must be one of {sorted(set(PACK_LAYOUTS.values()))}")
    if k.pack_layout != "pairs" and not k.pack:
        raise ValueError(f"{k.name}: pack_layout set without pack=True")


def _pack_decls(cols: int, layout: str, what: str) -> list[tuple[str, str, str, str]]:
    """The "outq"/"outs" bindings of a packing producer (MatmulKey PACKED ACTIVATIONS)."""
    return [("outq", "read_write", f"array<{'vec4' if layout == 'pairs' else 'vec2'}<u32>>",
             f"(n, {cols // 8}) packed {what} (layout {layout!r})"),
            ("outs", "read_write", "array<vec2<f32>>", f"(n, {cols // 8}) (sx, sum q) per 8 columns")]


def _plan_matmul(k: MatmulKey) -> _Plan:
    k._check_act(), k._check_wg(k.wg)
    if k.tn < 1 or k.tn > 16:
        raise ValueError(f"{k.name}: tn must be 1..16")
    if k.rpi < 1 or k.rpi * k.tn > 32:
        raise ValueError(f"{k.name}: rpi must be >= 1 and rpi * tn <= 32 (accumulator registers)")
    if k.last_row and k.tn != 1:
        raise ValueError(f"{k.name}: last_row needs tn=1")
    _check_matmul_fusions(k)
    quant = FORMATS[k.fmt].quantized if k.fmt in FORMATS else False
    silu = k.epilogue == "silu_mul"
    wrows = 2 * k.rows if silu else k.rows  # weight (and bias) rows: [gate; up] for silu_mul
    x_decl = ("x", "read", _act_arr(k.act, 4 if k.cols % 4 == 0 else 1), f"(n, {k.cols}) {k.act}")
    if k.xq:
        layout = PACK_LAYOUTS[k.fmt]
        decls = [x_decl[:3] + (x_decl[3] + ": read for the RMSNorm sum of squares only",)] if k.norm else []
        decls += [("xq", "read", "array<vec4<u32>>", f"(n, {k.cols // (8 if layout == 'pairs' else 16)}) packed x "
                   f"(layout {layout!r}, see MatmulKey)"),
                  ("xs", "read", "array<vec2<f32>>", f"(n, {k.cols // 8}) (sx, sum q) per 8 columns")]
    else:
        decls = [x_decl]
    if k.norm and not k.xq:
        decls.append(("norm_w", "read", "array<vec4<f32>>" if k.cols % 4 == 0 else "array<f32>",
                      f"({k.cols},) f32 RMSNorm weight"))
    for d in _weight_decls(k.fmt, wrows, k.cols, vec_ok=True):
        if silu and d[0] == "w":
            d = d[:3] + (d[3] + f"; rows 0..{k.rows - 1} gate, {k.rows}..{wrows - 1} up",)
        decls.append(d)
    if k.bias:
        decls.append(("bias", "read", "array<f32>", f"({wrows},) f32" + (": [gate; up]" if silu else "")))
    if k.out_rows and k.row_offset + k.rows > k.out_rows:
        raise ValueError(f"{k.name}: row slice {k.row_offset}+{k.rows} exceeds out_rows {k.out_rows}")
    out_rows = "1" if k.last_row else "n"
    if k.splits:
        b = 0
        for i, s in enumerate(k.splits):
            decls.append((f"out{i}", "read_write", _act_arr(k.act), f"(n, {s}) {k.act}: rows {b}..{b + s - 1}"))
            b += s
    elif not (k.pack and silu):
        what = {"none": "", "residual": ": the residual stream, out += result",
                "silu_mul": ": silu(gate) * up"}[k.epilogue]
        decls += [("out", "read_write", _act_arr(k.act), f"({out_rows}, {k.out_rows or k.rows}) {k.act}"
                   + (f": rows {k.row_offset}..{k.row_offset + k.rows - 1} written" if k.out_rows else "") + what)]
    if k.pack:
        if not silu:
            decls.append(("pack_w", "read", "array<f32>", f"({k.rows},) f32: the consumer's RMSNorm weight"))
        decls += _pack_decls(k.rows, k.pack_layout, "silu(gate) * up" if silu else "out * pack_w")
    decls.append(STEP)
    gx = -(-k.rows // (k.wg * k.rpi))
    _const_groups(gx, "rows", k)
    gy = "1" if k.last_row else _ceil("n", k.tn)
    groups = -(-k.cols // GROUP_SIZE)
    if k.xq:
        path = "idot"
    elif FORMATS[k.fmt].block is not None:
        path = "dq8"  # GGUF block formats: _dequant.wgsl's dq_chunk, 8 columns per step
    elif quant:
        path = "quant"
    elif k.fmt == "f16":
        path = "f16vec" if k.cols % 8 == 0 else "scalar"
    else:
        path = "f32vec" if k.cols % 4 == 0 else "scalar"
    bounds = [sum(k.splits[:i + 1]) for i in range(len(k.splits))]
    return _Plan(decls, (k.wg, 1, 1), (str(gx), gy, "1"),
                 dict(path=path, groups=groups, full=k.cols // GROUP_SIZE, tail=k.cols % GROUP_SIZE != 0,
                      xvec=k.cols % 4 == 0, slots=2 * k.rpi if silu else k.rpi, bounds=bounds,
                      norm_eps_lit=f32_literal(k.norm_eps), x_layout=PACK_LAYOUTS.get(k.fmt) if k.xq else None))


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


def kv_layout(act: str, kv: str, width: int, rows: str) -> str:
    """The header comment of a cache binding."""
    what = f"{act}" if not kv else "f16 pairs in u32 words (an f16 array's bytes)"
    return f"(context_window, {width}) {what}: rows {rows}"


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
    _check_kv_pairs(k)
    decls = [("x", "read", _act_arr(k.act), f"(n, {width}) {k.act}"),
             ("inv_freq", "read", "array<f32>", _rope_table(k))]
    if k.to_cache:
        decls.append(("cache", "read_write", kv_array_type(k.act, k.kv, "pair"),
                      kv_layout(k.act, k.kv, width, "p..p+n-1 written")))
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
    _check_kv_pairs(k)
    cache_ty = kv_array_type(k.act, k.kv, "pair")
    decls = [("q", "read_write", _act_arr(k.act), f"(n, {qw}) {k.act}: rotated in place"),
             ("k", "read", _act_arr(k.act), f"(n, {kvw}) {k.act}"),
             ("v", "read", _act_arr(k.act), f"(n, {kvw}) {k.act}"),
             ("inv_freq", "read", "array<f32>", _rope_table(k)),
             ("k_cache", "read_write", cache_ty, kv_layout(k.act, k.kv, kvw, "p..p+n-1 written")),
             ("v_cache", "read_write", cache_ty, kv_layout(k.act, k.kv, kvw, "p..p+n-1 written")),
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
    decls = [("x", "read", _act_arr(k.act), f"(n, {k.width}) {k.act}"),
             ("cache", "read_write", kv_array_type(k.act, k.kv, "pair"),
              kv_layout(k.act, k.kv, k.width, "p..p+n-1 written")), STEP]
    units = k.width // 2 if k.kv == "f16x2" else k.width  # f16x2: one invocation per u32 word
    _const_groups(-(-units // k.wg), "width", k)
    return _Plan(decls, (k.wg, 1, 1), (str(-(-units // k.wg)), "n", "1"), {})


def _plan_attention(k: AttentionKey) -> _Plan:
    k._check_act()
    if k.heads % k.kv_heads:
        raise ValueError(f"{k.name}: heads {k.heads} is not a multiple of kv_heads {k.kv_heads}")
    if k.head_dim % 4:
        raise ValueError(f"{k.name}: head_dim must be a multiple of 4 (vec4 loads)")
    if k.form not in ("decode", "prefill"):
        raise ValueError(f"{k.name}: form must be 'decode' or 'prefill'")
    if k.window < 0 or not k.softcap >= 0:
        raise ValueError(f"{k.name}: window must be >= 0 keys and softcap >= 0 (0: none)")
    lanes = k.lanes()
    k._check_wg(lanes)
    if k.form == "decode" and lanes * (k.head_dim * 4 + 8) > MAX_WORKGROUP_STORAGE:
        raise ValueError(f"{k.name}: {lanes} lanes x head_dim {k.head_dim} exceed 16 KiB of workgroup storage")
    qw, kvw = k.heads * k.head_dim, k.kv_heads * k.head_dim
    decls = [("q", "read", _act_arr(k.act, 4), f"(n, {qw}) {k.act}"),
             ("k_cache", "read", _act_arr(k.act, 4), f"(context_window, {kvw}) {k.act}: rows 0..p+n-1 read"),
             ("v_cache", "read", _act_arr(k.act, 4), f"(context_window, {kvw}) {k.act}: rows 0..p+n-1 read"),
             ("out", "read_write", _act_arr(k.act, 4), f"(n, {qw}) {k.act}"), STEP]
    if k.form == "decode":
        disp = (str(k.heads), "n", "1")
    else:
        disp = (_ceil("n", lanes), str(k.heads), "1")
    return _Plan(decls, (lanes, 1, 1), disp,
                 dict(lanes=lanes, group=k.heads // k.kv_heads, hd4=k.head_dim // 4, qw=qw, kvw=kvw,
                      scale_lit=f32_literal(k.scale), cap_lit=f32_literal(k.softcap) if k.softcap else ""))


def _plan_elementwise(k: Any, ins: list[str]) -> _Plan:
    k._check_act(), k._check_wg(k.wg)
    vec = 4 if k.cols % 4 == 0 else 1
    decls = [(name, "read", _act_arr(k.act, vec), f"(n, {k.cols}) {k.act}") for name in ins]
    decls += [("out", "read_write", _act_arr(k.act, vec), f"(n, {k.cols}) {k.act}"), STEP]
    per_row = k.cols // vec
    _const_groups(-(-per_row // k.wg), "cols", k)
    return _Plan(decls, (k.wg, 1, 1), (str(-(-per_row // k.wg)), "n", "1"), dict(vec=vec, per_row=per_row))


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


_PLANNERS = {
    "embedding": _plan_embedding,
    "rms_norm": _plan_rms_norm,
    "add_rms_norm": _plan_add_rms_norm,
    "matmul": _plan_matmul,
    "rope": _plan_rope,
    "kv_write": _plan_kv_write,
    "attention": _plan_attention,
    "silu_mul": lambda k: _plan_elementwise(k, ["gate", "up"]),
    "add": lambda k: _plan_elementwise(k, ["a", "b"]),
    "last_row": _plan_last_row,
    "pack": _plan_pack,
    "rope_kv": _plan_rope_kv,
}

_TEMPLATE = {"attention": lambda k: f"attention_{k.form}.wgsl"}


def register_family(key_type: type[KernelKey], planner: Any, template: Any = None) -> None:
    """Add a kernel family in one place: its key type, its planner (key -> _Plan) and, when its
    template is not `wgsl_templates/<family>.wgsl`, a function key -> template file name."""
    fam = key_type.family
    if fam in KEY_TYPES and KEY_TYPES[fam] is not key_type:
        raise ValueError(f"kernel family {fam!r} registered twice")
    KEY_TYPES[fam] = key_type
    _PLANNERS[fam] = planner
    if template is not None:
        _TEMPLATE[fam] = template


@lru_cache(maxsize=None)
def build(key: KernelKey) -> Kernel:
    """Render and describe one kernel variant (cached per key)."""
    plan = _PLANNERS[key.family](key)
    storage = sum(1 for d in plan.decls if d[1] != "uniform")
    if storage > MAX_STORAGE_BUFFERS:
        raise ValueError(f"{key.name}: {storage} storage buffers exceed WebGPU's {MAX_STORAGE_BUFFERS}")
    ctx = {f.name: getattr(key, f.name) for f in fields(key)}
    ctx.update(plan.consts)
    ctx.update(key=key, family=key.family, name=key.name, decls=plan.decls,
               workgroup_size=plan.workgroup_size, dispatch=plan.dispatch)
    tname = _TEMPLATE.get(key.family, lambda k: f"{k.family}.wgsl")(key)
    wgsl = _env().get_template(tname).render(**ctx)
    return Kernel(key=key, name=key.name, wgsl=wgsl,
                  bindings=tuple((d[0], d[1]) for d in plan.decls),
                  workgroup_size=plan.workgroup_size, dispatch=plan.dispatch)


def render(key: KernelKey) -> str:
    """The WGSL source of one kernel variant."""
    return build(key).wgsl


def matmul_key(act: str, fmt: str, rows: int, cols: int, bias: bool = False, prefill: bool = False,
               last_row: bool = False, row_offset: int = 0, out_rows: int = 0, *, norm: bool = False,
               norm_eps: float = 0.0, epilogue: str = "none", splits: tuple[int, ...] = (),
               xq: bool = False, pack: bool = False, pack_layout: str = "pairs") -> MatmulKey:
    """The default-tuned matmul variant (lavapipe, 2 cores): decode form (tn=1) or prefill form (tn=4),
    4 rows per invocation, 16 invocations per workgroup. A norm prologue without silu_mul takes 8 rows
    per invocation (its norm_w loads, per lane like the x loads, are then shared by 8 rows: measured
    ~15-30% faster than 4 on lavapipe). With `splits`, rpi drops to the largest candidate that divides
    every split size."""
    tn = 4 if prefill and not last_row else 1
    splits = tuple(splits)
    # The decode gate/up (silu_mul) also takes 8 rows per invocation: on SwiftShader 1758 vs 2021 us
    # for SmolLM2's 2x1536x576 (bench/kernel_bench.py), on lavapipe no change (webllm-py profile);
    # prefill keeps 4 because silu_mul holds 2*rpi*tn accumulators (<= 32).
    # Integer dot products (xq) also take 8: bench/probe_int_gemv.py, 1.43x over the float kernel at 8
    # rows vs 1.29x at 4 (576x1536); a packing epilogue needs 8 (one packed entry per invocation).
    wide = (norm and epilogue != "silu_mul") or (epilogue == "silu_mul" and tn == 1) or xq or pack
    rpi = next(r for r in ((8, 4, 2, 1) if wide else (4, 2, 1)) if all(s % r == 0 for s in splits))
    if xq and prefill and not last_row:
        # tiled integer dot products (n=128, bench notes in docs/performance.md): 2 tokens x 8 rows per
        # invocation, lavapipe 1.5x over the f32 tiled kernel (q/k/v, down); the SiLU-gate form keeps
        # 4 x 4 (2 * rpi * tn accumulators <= 32): lavapipe 1.65x, SwiftShader 1.3x
        tn = 4 if epilogue == "silu_mul" else 2
        rpi = next(r for r in ((4,) if epilogue == "silu_mul" else (8, 4, 2, 1)) if all(s % r == 0 for s in splits))
    if xq and last_row:
        # The LM head on packed x: its x loads and per-8 scale conversions shared by 32 rows. SmolLM2's
        # q8 49152x576: SwiftShader 30.2 -> 22.9 ms (bench/kernel_bench.py), lavapipe 5.3-5.8 -> 5.1 ms.
        rpi = 32
    return MatmulKey(act=act, fmt=fmt, rows=rows, cols=cols, bias=bias, tn=tn, wg=16, last_row=last_row, rpi=rpi,
                     row_offset=row_offset, out_rows=out_rows, norm=norm, norm_eps=norm_eps, epilogue=epilogue,
                     splits=splits, xq=xq, pack=pack, pack_layout=pack_layout)
