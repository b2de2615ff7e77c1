"""Family "gemm": the prefill linear for GPU adapters, tiled in workgroup memory.

out = x @ dequant(W).T with MatmulKey's fusion semantics and binding names/order (no xq/pack,
no last_row): x, [norm_w], w, [scales], [bias], out | out0..outK, step.

Shape (a GPU shape, not tuned on the CPU emulators; see ../shared/docs/gpu-kernels.md):
one workgroup per output tile of `tm` tokens x `tn` weight rows, (tm/4) x (tn/4) lanes, each
lane owning a 4 x 4 register sub-tile (4 tokens x 4 rows, interleaved across the tile). The K
loop steps one 32-column group at a time: the workgroup copies the x tile (tm x 32) and the
DEQUANTIZED weight tile (tn x 32, or 2*tn with silu_mul; one dq8 of _dequant.wgsl per 8
weights) into workgroup memory as rows of 8 vec4 (+1 padding vec4 against bank conflicts),
barrier; per 4 columns each lane then loads 4 x and 4 weight vec4s (8 with silu_mul) and
accumulates 16 dot products (32), barrier. Each weight is read and dequantized once per
(token tile, K step): at n = 128 and tm = 32, 4 times per weight instead of once per token.
The global loads (and dequantization) of step g+1 go to registers before step g's compute, so
their latency overlaps it (a GPU runs few such workgroups per core at prefill sizes).

Fusions:
  bias, epilogue "residual" (out += value by the owning lane), "silu_mul" (W holds
  [gate; up]; two accumulators per output), splits (rows to out0..outK, any sizes),
  row_offset/out_rows slices (as MatmulKey; silu_mul refuses row_offset), and the RMSNorm
  prologue norm=True: x * norm_w goes into the tile, each loader lane sums the squares of
  the x it loads (its tile items are the same at every K step), the partial sums are
  combined through workgroup memory after the K loop and out is scaled by 1/rms at the end.
Every MatmulKey fusion a prefill linear of the GPU sets needs is supported; last_row (the LM head
reads one token: a GEMV, family "gemv") and xq / pack (the CPU sets' integer-dot-product forms)
are not fields of GemmKey. Unsupported values of the fields (an unknown epilogue, splits with an
epilogue or a slice, silu_mul with row_offset, tiles over the WebGPU limits) raise ValueError
naming the field or the knob to lower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from ..quant.formats import GROUP_SIZE
from . import kernels as K
from .dequant import formats, weight_decls
from .kernels import STEP, KernelKey, _act_arr, _ceil, _const_groups, _Plan, f32_literal

SUB = 4  # each lane's register sub-tile: SUB tokens x SUB consecutive rows (one vec4 of each)


@dataclass(frozen=True)
class GemmKey(KernelKey):
    """Tiled prefill linear; fields as MatmulKey's (see module docstring) plus the tile knobs
    tm (tokens per workgroup) and tn (weight rows per workgroup), both multiples of 4."""

    family: ClassVar[str] = "gemm"
    act: str
    fmt: str
    rows: int
    cols: int
    bias: bool = False
    row_offset: int = 0
    out_rows: int = 0
    norm: bool = False
    norm_eps: float = 0.0
    epilogue: str = "none"
    splits: tuple[int, ...] = ()
    tm: int = 32
    tn: int = 64

    def __post_init__(self) -> None:
        if not isinstance(self.splits, tuple):  # JSON lists -> a hashable tuple
            object.__setattr__(self, "splits", tuple(int(v) for v in self.splits))

    @property
    def lanes(self) -> int:
        return (self.tm // SUB) * (self.tn // SUB)

    @property
    def weight_tile_rows(self) -> int:
        return 2 * self.tn if self.epilogue == "silu_mul" else self.tn

    def workgroup_bytes(self) -> int:
        """Workgroup memory: the x tile and the weight tile, f32, one 32-column group each, stored as
        rows of 8 vec4 plus one padding vec4 (so 8 lanes' 16-byte loads hit distinct banks)."""
        return 16 * 9 * (self.tm + self.weight_tile_rows)


def _check(k: GemmKey) -> None:
    k._check_act()
    if k.fmt not in formats():
        raise ValueError(f"{k.name}: weight format {k.fmt!r} has no entry in wgsl_templates/_dequant.wgsl; "
                         f"known: {sorted(formats())}")
    if k.rows < 1 or k.cols < 1:
        raise ValueError(f"{k.name}: rows and cols must be >= 1")
    if k.tm < SUB or k.tm % SUB or k.tn < SUB or k.tn % SUB:
        raise ValueError(f"{k.name}: tile knobs tm and tn must be positive multiples of {SUB}")
    if k.lanes > K.MAX_INVOCATIONS:
        raise ValueError(f"{k.name}: (tm/4) * (tn/4) = {k.lanes} lanes exceed {K.MAX_INVOCATIONS}; lower tm or tn")
    if k.workgroup_bytes() > K.MAX_WORKGROUP_STORAGE:
        raise ValueError(f"{k.name}: tiles need {k.workgroup_bytes()} bytes of workgroup storage, over "
                         f"{K.MAX_WORKGROUP_STORAGE}; lower tm or tn")
    if k.epilogue not in K.EPILOGUES:
        raise ValueError(f"{k.name}: epilogue must be one of {K.EPILOGUES}, got {k.epilogue!r}")
    if not math.isfinite(k.norm_eps) or k.norm_eps < 0:
        raise ValueError(f"{k.name}: norm_eps must be finite and >= 0")
    if k.norm_eps and not k.norm:
        raise ValueError(f"{k.name}: norm_eps set without norm=True")
    if k.out_rows and k.row_offset + k.rows > k.out_rows:
        raise ValueError(f"{k.name}: row slice {k.row_offset}+{k.rows} exceeds out_rows {k.out_rows}")
    if k.epilogue == "silu_mul" and k.row_offset:
        raise ValueError(f"{k.name}: silu_mul reads [gate; up] row pairs of one weight; row_offset slices "
                         "are not supported (slice gate and up alike and use out_rows, or drop the fusion)")
    if k.splits:
        if len(k.splits) < 2:
            raise ValueError(f"{k.name}: splits needs at least 2 ranges (use the plain `out` form for one)")
        if k.epilogue != "none":
            raise ValueError(f"{k.name}: splits need epilogue 'none'")
        if k.row_offset or k.out_rows:
            raise ValueError(f"{k.name}: splits cannot be combined with row_offset/out_rows slices")
        if any(s < 1 for s in k.splits) or sum(k.splits) != k.rows:
            raise ValueError(f"{k.name}: splits {k.splits} must be positive and sum to rows {k.rows}")


def _plan_gemm(k: GemmKey) -> _Plan:
    _check(k)
    silu = k.epilogue == "silu_mul"
    wrows = 2 * k.rows if silu else k.rows
    xvec = k.cols % 4 == 0
    decls = [("x", "read", _act_arr(k.act, 4 if xvec else 1), f"(n, {k.cols}) {k.act}")]
    if k.norm:
        decls.append(("norm_w", "read", "array<f32>", f"({k.cols},) f32 RMSNorm weight"))
    for d in weight_decls(k.fmt, wrows, k.cols):
        if silu and d[0] == "w":
            d = d[:3] + (d[3] + f"; rows 0..{k.rows - 1} gate, {k.rows}..{wrows - 1} up",)
        decls.append(d)
    if k.bias:
        decls.append(("bias", "read", "array<f32>", f"({wrows if silu else k.out_rows or k.rows},) f32"
                      + (": [gate; up]" if silu else "")))
    if k.splits:
        b = 0
        for i, s in enumerate(k.splits):
            decls.append((f"out{i}", "read_write", _act_arr(k.act), f"(n, {s}) {k.act}: rows {b}..{b + s - 1}"))
            b += s
    else:
        what = {"none": "", "residual": ": the residual stream, out += result", "silu_mul": ": silu(gate) * up"}
        decls.append(("out", "read_write", _act_arr(k.act), f"(n, {k.out_rows or k.rows}) {k.act}"
                      + (f": rows {k.row_offset}..{k.row_offset + k.rows - 1} written" if k.out_rows else "")
                      + what[k.epilogue]))
    decls.append(STEP)
    storage = sum(1 for d in decls if d[1] != "uniform")
    if storage > K.MAX_STORAGE_BUFFERS:
        raise ValueError(f"{k.name}: {storage} storage buffers exceed WebGPU's {K.MAX_STORAGE_BUFFERS}; "
                         "use fewer splits or drop the bias / norm fusion")
    gx = -(-k.rows // k.tn)
    _const_groups(gx, "row tiles", k)
    bounds = [sum(k.splits[:i + 1]) for i in range(len(k.splits))]
    return _Plan(decls, (k.lanes, 1, 1), (str(gx), _ceil("n", k.tm), "1"),
                 dict(groups=-(-k.cols // GROUP_SIZE), xvec=xvec, wtile=k.weight_tile_rows, lanes=k.lanes,
                      x_items=k.tm * (GROUP_SIZE // 4), w_items=k.weight_tile_rows * (GROUP_SIZE // 8),
                      bounds=bounds, norm_eps_lit=f32_literal(k.norm_eps)))


def gemm_key(act: str, fmt: str, rows: int, cols: int, bias: bool = False, row_offset: int = 0,
             out_rows: int = 0, *, norm: bool = False, norm_eps: float = 0.0, epilogue: str = "none",
             splits: tuple[int, ...] = ()) -> GemmKey:
    """The default-tuned prefill GEMM: 32 tokens x 64 rows per workgroup (128 lanes, 13.5 KiB of
    tiles); silu_mul, whose weight tile holds gate and up rows, takes 32 x 32 (64 lanes, 13.5 KiB).
    Chosen by shape (a 4 x 4 register sub-tile per lane, tiles within the 16 KiB default), not
    measured on a GPU."""
    tn = 32 if epilogue == "silu_mul" else 64
    return GemmKey(act=act, fmt=fmt, rows=rows, cols=cols, bias=bias, row_offset=row_offset, out_rows=out_rows,
                   norm=norm, norm_eps=norm_eps, epilogue=epilogue, splits=tuple(splits), tm=32, tn=tn)


K.register_family(GemmKey, _plan_gemm)
