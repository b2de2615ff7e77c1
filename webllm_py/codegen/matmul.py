"""The matmul kernel family (a linear layer's x @ dequant(W).T with its fusions: RMSNorm prologue,
residual / SiLU-gate epilogues, split outputs, integer dot products on packed activations) and its
default-tuned constructor `matmul_key`; the packed-activation layout helpers its producers share.
Registers itself with kernels.register_family; its names stay importable from kernels.py."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, TYPE_CHECKING

from ..quant.formats import FORMATS, GROUP_SIZE
from .kernels import (
    _act_arr, _ceil, _const_groups, f32_literal, KernelKey, OMIT_DEFAULT, PACK_LAYOUTS, _Plan, register_family,
    STEP, _weight_decls,
)

if TYPE_CHECKING:
    from .basic_kernels import RmsNormKey


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


register_family(MatmulKey, _plan_matmul)
