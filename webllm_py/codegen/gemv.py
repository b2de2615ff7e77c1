"""The decode GEMV of the GPU program sets: family "gemv" (GemvKey, gemv_key), rendered from
`wgsl_templates/gemv.wgsl` with the weight reads of `_dequant.wgsl`.

Shape (docs: ../shared/docs/gpu-kernels.md): one workgroup per `rows_per_wg` output rows and one
token; its `wg` lanes split K: lane l takes blocks l, l + wg, ... of the row (a block is one
lane-load of weight words, dequant.block_cols), so adjacent lanes read adjacent words. Each lane
loads its x chunk once and uses it for every row of the workgroup, then the lanes' partial sums
are reduced: subgroupAdd plus a workgroup-memory combine across the subgroups (subgroups=True;
each subgroup's first lane takes a slot from an atomic counter, so neither the subgroup size,
4..128, nor how lanes are grouped into subgroups is assumed), or a workgroup-memory tree. The fusions are MatmulKey's, with its binding
names and order (x, [norm_w], w, [scales], [bias], out | out0..outK, step), so the lowering
binds the same tensors:
  norm=True            RMSNorm prologue: out = inv(t) * (W @ (x * norm_w)) (+ bias); the sum of
                       squares of x is taken in the same pass (another reduction slot).
  epilogue="residual"  out[t, r] += value.
  epilogue="silu_mul"  W (and bias) hold 2*rows rows [gate; up]; out = silu(gate . x) * (up . x).
  splits=(a, b, ...)   rows go to out0, out1, ... (row strides a, b, ...); epilogue "none" only.
  last_row=True        reads only row n-1 of x, writes one output row.
  row_offset/out_rows  a row slice of a larger output (out_rows: its row stride).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from .dequant import block_cols, formats, weight_decls
from .kernels import (EPILOGUES, MAX_INVOCATIONS, MAX_STORAGE_BUFFERS, MAX_WORKGROUP_STORAGE, STEP, KernelKey,
                      _act_arr, _const_groups, _Plan, f32_literal, register_family)

MIN_SUBGROUP = 4  # the smallest subgroup size WebGPU allows: sizes the subgroup combine's storage
MAX_ROWS_PER_WG = 8


@dataclass(frozen=True)
class GemvKey(KernelKey):
    """out = x @ dequant(W).T (+ bias) for the GPU class; see the module docstring."""

    family: ClassVar[str] = "gemv"
    act: str
    fmt: str
    rows: int
    cols: int
    bias: bool = False
    last_row: bool = False
    row_offset: int = 0
    out_rows: int = 0
    norm: bool = False
    norm_eps: float = 0.0
    epilogue: str = "none"
    splits: tuple[int, ...] = ()
    wg: int = 256
    rows_per_wg: int = 4
    subgroups: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.splits, tuple):  # JSON lists -> a hashable tuple
            object.__setattr__(self, "splits", tuple(int(v) for v in self.splits))

    @property
    def slots(self) -> int:
        """Values each lane reduces: one per weight row of the workgroup (+ the sum of squares)."""
        return self.rows_per_wg * (2 if self.epilogue == "silu_mul" else 1) + (1 if self.norm else 0)

    def reduction_bytes(self) -> int:
        """Workgroup storage of the reduction: a slot per lane (tree) or per subgroup (subgroups)."""
        per = self.wg // MIN_SUBGROUP if self.subgroups else self.wg
        return 4 * per * self.slots


def _check(k: GemvKey) -> None:
    k._check_act()
    if k.fmt not in formats():
        raise ValueError(f"{k.name}: weight format {k.fmt!r} has no _dequant.wgsl entry; known: {list(formats())}")
    if k.rows < 1 or k.cols < 1:
        raise ValueError(f"{k.name}: rows and cols must be >= 1")
    if not 16 <= k.wg <= MAX_INVOCATIONS or k.wg & (k.wg - 1):
        raise ValueError(f"{k.name}: wg must be a power of two in 16..{MAX_INVOCATIONS} "
                         "(>= 16 lanes split each row; the tree reduction halves it)")
    if not 1 <= k.rows_per_wg <= MAX_ROWS_PER_WG:
        raise ValueError(f"{k.name}: rows_per_wg must be 1..{MAX_ROWS_PER_WG}")
    if k.epilogue not in EPILOGUES:
        raise ValueError(f"{k.name}: epilogue must be one of {EPILOGUES}, got {k.epilogue!r}")
    if not math.isfinite(k.norm_eps) or k.norm_eps < 0:
        raise ValueError(f"{k.name}: norm_eps must be finite and >= 0")
    if k.norm_eps and not k.norm:
        raise ValueError(f"{k.name}: norm_eps set without norm=True")
    if k.epilogue == "silu_mul" and k.row_offset:
        raise ValueError(f"{k.name}: silu_mul reads [gate; up] row pairs of one weight; row_offset slices "
                         "are not supported (slice gate and up alike and use out_rows, or drop the fusion)")
    if k.out_rows and k.row_offset + k.rows > k.out_rows:
        raise ValueError(f"{k.name}: row slice {k.row_offset}+{k.rows} exceeds out_rows {k.out_rows}")
    if k.splits:
        if len(k.splits) < 2:
            raise ValueError(f"{k.name}: splits needs at least 2 ranges (use the plain `out` form for one)")
        if k.epilogue != "none" or k.last_row or k.row_offset or k.out_rows:
            raise ValueError(f"{k.name}: splits need epilogue 'none' and no last_row / row_offset / out_rows")
        if any(s < 1 for s in k.splits) or sum(k.splits) != k.rows:
            raise ValueError(f"{k.name}: splits {k.splits} must be positive and sum to rows {k.rows}")
    if k.reduction_bytes() > MAX_WORKGROUP_STORAGE:
        raise ValueError(f"{k.name}: the reduction needs {k.reduction_bytes()} bytes of workgroup storage "
                         f"(> WebGPU's {MAX_WORKGROUP_STORAGE}); lower wg or rows_per_wg, or use subgroups")


def _plan_gemv(k: GemvKey) -> _Plan:
    _check(k)
    silu = k.epilogue == "silu_mul"
    wrows = 2 * k.rows if silu else k.rows
    xvec = k.cols % 4 == 0
    decls = [("x", "read", _act_arr(k.act, 4 if xvec else 1), f"(n, {k.cols}) {k.act}")]
    if k.norm:
        decls.append(("norm_w", "read", "array<vec4<f32>>" if xvec else "array<f32>", f"({k.cols},) f32 RMSNorm weight"))
    for d in weight_decls(k.fmt, wrows, k.cols):
        if silu and d[0] == "w":
            d = d[:3] + (d[3] + f"; rows 0..{k.rows - 1} gate, {k.rows}..{wrows - 1} up",)
        decls.append(d)
    if k.bias:
        decls.append(("bias", "read", "array<f32>", f"({wrows if silu or not k.out_rows else k.out_rows},) f32"
                      + (": [gate; up]" if silu else "")))
    out_n = "1" if k.last_row else "n"
    if k.splits:
        b = 0
        for i, s in enumerate(k.splits):
            decls.append((f"out{i}", "read_write", _act_arr(k.act), f"(n, {s}) {k.act}: rows {b}..{b + s - 1}"))
            b += s
    else:
        what = {"none": "", "residual": ": the residual stream, out += result", "silu_mul": ": silu(gate) * up"}
        decls.append(("out", "read_write", _act_arr(k.act), f"({out_n}, {k.out_rows or k.rows}) {k.act}"
                      + (f": rows {k.row_offset}..{k.row_offset + k.rows - 1} written" if k.out_rows else "")
                      + what[k.epilogue]))
    decls.append(STEP)
    storage = sum(1 for d in decls if d[1] != "uniform")
    if storage > MAX_STORAGE_BUFFERS:
        raise ValueError(f"{k.name}: {storage} storage buffers exceed WebGPU's {MAX_STORAGE_BUFFERS}; "
                         "drop a fusion (bias, norm or a split output)")
    gx = -(-k.rows // k.rows_per_wg)
    _const_groups(gx, "rows", k)
    blk = block_cols(k.fmt)
    return _Plan(decls, (k.wg, 1, 1), (str(gx), out_n, "1"),
                 dict(xvec=xvec, blk=blk, nfull=k.cols // blk, tail=k.cols % blk != 0, nslots=k.slots,
                      wslots=k.slots - (1 if k.norm else 0), bounds=[sum(k.splits[:i + 1]) for i in range(len(k.splits))],
                      norm_eps_lit=f32_literal(k.norm_eps), min_subgroup=MIN_SUBGROUP))


register_family(GemvKey, _plan_gemv)


def gemv_key(act: str, fmt: str, rows: int, cols: int, bias: bool = False, last_row: bool = False,
             row_offset: int = 0, out_rows: int = 0, *, norm: bool = False, norm_eps: float = 0.0,
             epilogue: str = "none", splits: tuple[int, ...] = (), subgroups: bool = False) -> GemvKey:
    """The default-tuned GEMV variant, chosen from the shape rules (not from emulator timings):

    - lanes: as many as the row has blocks (one lane-load each), up to 256, at least 16. A lane
      then walks ceil(blocks / wg) blocks: its serial chain of dependent loads is 1-2 for hidden
      1024-4096 (q4: 128-512 blocks) and 7 for K = 14336, instead of K/32 for a row-per-lane kernel.
      More lanes than blocks would idle.
    - rows per workgroup: 4 (llama.cpp's shape). Every x chunk a lane loads serves the 4 rows, and
      each lane has 4 independent weight loads in flight per step (4 x 16 bytes for f32/f16/q8,
      4 x 4 for q4): 256 lanes x 4 rows keep ~4-16 KB per workgroup in flight, several workgroups
      per SM fill the ~1-3 MB a big GPU needs. More rows would cut the workgroup count (a
      1024-row o_proj at 8 rows is 128 workgroups: too few for a 100+ SM GPU); fewer would reload x.
      silu_mul holds gate and up: 8 weight rows per lane at 4 output rows.
    - The tree reduction's storage (wg x slots x 4 bytes) is checked against 16 KiB; at these
      defaults it is at most 256 x 9 x 4 = 9 KiB."""
    blocks = -(-cols // block_cols(fmt))
    wg = 16
    while wg < 256 and wg < blocks:
        wg *= 2
    return GemvKey(act=act, fmt=fmt, rows=rows, cols=cols, bias=bias, last_row=last_row, row_offset=row_offset,
                   out_rows=out_rows, norm=norm, norm_eps=norm_eps, epilogue=epilogue, splits=tuple(splits),
                   wg=wg, rows_per_wg=4, subgroups=subgroups)
