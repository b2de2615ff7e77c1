"""The GPU-class decode GEMV (codegen/gemv.py) and the dequantization library it reads
(wgsl_templates/_dequant.wgsl), on wgpu-py (lavapipe) against the numpy references.

References: quant.formats.dequantize for the weights, ir/ops.py's linear, rms_norm, silu_mul
composed as in tests/test_kernels.py (`_run_fused` there documents the compositions).

Tolerances (normalized max error, as tests/test_kernels.py `check`), and why:

| what                        | tol   | why                                                                  |
|-----------------------------|-------|----------------------------------------------------------------------|
| dq8 (8 weights of a row)    | 1e-6  | q * scale in f32 as numpy; q4a's s*q + lo may be fused into one fma    |
|                             |       | (one rounding fewer than numpy's)                                    |
| dq_dot (one block's sum)    | 1e-5  | f32 sum of <= 32 products in another order                           |
| GEMV, f32 activations       | 1e-4  | f32 sums of <= 4096 terms split over lanes and a tree / subgroup      |
|                             |       | reduction: another order than numpy's (~1e-6 seen)                  |
| GEMV, f16 activations       | 2e-3  | output rounded to f16 (2^-11 relative) plus f32 math inside; the      |
|                             |       | reference runs on the same f16-rounded inputs                        |
"""

from __future__ import annotations

import numpy as np
import pytest

from test_kernels import EXTRA, TOL, check, f, need, padded, rand, ref_op, rng_for, runner, same_bits  # noqa: F401
from test_kernels import sentinel, weight_parts
from webllm_py.codegen import dequant
from webllm_py.codegen.kernels import STEP, Kernel, _env, _weight_decls

FORMATS = ["f32", "f16", "q8", "q4", "q4a"]

# -- the dequantization library -------------------------------------------------------

_PROBE = """\
{% import "_dequant.wgsl" as dq %}
{% for d in decls %}
@group(0) @binding({{ loop.index0 }}) var<{{ "uniform" if d[1] == "uniform" else "storage, " ~ d[1] }}> {{ d[0] }}: {{ d[2] }};
{% endfor %}
struct Step { n: u32, p: u32, _pad0: u32, _pad1: u32 }
{{ dq.fns(fmt, cols) }}
const C8: u32 = {{ c8 }}u;
const NB: u32 = {{ nb }}u;

// row gid.y: invocation i < C8 writes dq8(row, i); i < NB writes dq_dot(row, i, x's block i)
@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row = gid.y;
  let i = gid.x;
  if (i < C8) {
    let m = dq8(row, i);
    out8[(row * C8 + i) * 2u] = m[0];
    out8[(row * C8 + i) * 2u + 1u] = m[1];
  }
  if (i < NB) {
    var xb: array<vec4<f32>, DQ_BV>;
    for (var k = 0u; k < DQ_BV; k = k + 1u) {
      xb[k] = x[i * DQ_BV + k];
    }
    outd[row * NB + i] = dq_dot(row, i, xb);
  }
}
"""


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("cols", [64, 40, 13])
def test_dequant_library(runner, fmt, cols):
    """dq8 of every 8-column chunk and dq_dot of every block equal quant.formats.dequantize's weights
    (columns past cols are not compared for dq8; x is 0 there for dq_dot)."""
    rows = 5
    rng = rng_for("dq", fmt, cols)
    arrays, wd = weight_parts(rng, fmt, rows, cols)
    blk = dequant.block_cols(fmt)
    c8, nb = -(-cols // 8), -(-cols // blk)
    x = np.zeros(nb * blk, np.float32)
    x[:cols] = rng.standard_normal(cols)
    decls = dequant.weight_decls(fmt, rows, cols)
    assert [d[:3] for d in decls] == [d[:3] for d in _weight_decls(fmt, rows, cols, vec_ok=True)]  # MatmulKey's
    decls += [("x", "read", "array<vec4<f32>>", ""), ("out8", "read_write", "array<vec4<f32>>", ""),
              ("outd", "read_write", "array<f32>", ""), STEP]
    wgsl = _env().from_string(_PROBE).render(decls=decls, fmt=fmt, cols=cols, c8=c8, nb=nb)
    k = Kernel(key=None, name=f"dq_probe_{fmt}_{cols}", wgsl=wgsl, bindings=tuple((d[0], d[1]) for d in decls),
               workgroup_size=(64, 1, 1), dispatch=(str(-(-max(c8, nb) // 64)), str(rows), "1"))
    got = runner.run(k, {**arrays, "x": x, "out8": np.zeros((rows, c8 * 8), np.float32),
                         "outd": np.zeros((rows, nb), np.float32)}, 1)
    check(got["out8"][:, :cols], wd, 1e-6, f"dq8 {fmt}")
    wpad = np.zeros((rows, nb * blk), np.float32)
    wpad[:, :cols] = wd
    ref = (wpad * x).reshape(rows, nb, blk).sum(-1)
    check(got["outd"], ref, 1e-5, f"dq_dot {fmt}")
