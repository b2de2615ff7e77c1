"""The GPU-class prefill GEMM (codegen/gemm.py, wgsl_templates/gemm.wgsl) against the numpy references.

References: quant.formats.dequantize for the weights (through test_kernels.weight_parts), and
ir/ops.py's linear, rms_norm, silu_mul composed as tests/test_kernels.py's `_run_fused` does
(RMSNorm prologue: rms_norm -> linear; residual: out + linear; silu_mul: silu_mul of the gate and
up linears; splits: np.split of the linear). Runs on lavapipe (KernelRunner) and, for a subset,
on SwiftShader (BrowserKernelRunner, browser + slow).

Tolerances (normalized max error, test_kernels.check), and why:

| what                   | tol   | why                                                                    |
|------------------------|-------|------------------------------------------------------------------------|
| f32 activations        | 1e-4  | f32 sums of <= 1000 products, accumulated per 32-column K step in      |
|                        |       | another order than numpy's (~1e-7 seen); the norm prologue scales by   |
|                        |       | 1/rms after the dot product instead of before (~1e-6 relative)         |
| f16 activations        | 2e-3  | the output rounded to f16 once (2^-11 relative) plus f32 math inside;  |
|                        |       | the reference runs on the same f16-rounded inputs                      |
| sentinel rows / columns| exact | rows past n and columns outside a row slice must keep their bits       |

Sizes: rows 70 (two row tiles of 64, the second partial), n 1 / 37 / 128 (one partial token tile,
two tiles with a partial one, four full ones), cols 96 and 100 (100: a partial last K step; its
x is vec4-aligned) and 13 (scalar x loads, one partial K step).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_kernels import EXTRA, TOL, check, f, need, padded, rand, rng_for, runner, same_bits  # noqa: F401
from test_kernels import fused_matmul_case, sentinel, weight_parts

from webllm_py.codegen import MatmulKey, build
from webllm_py.codegen.gemm import GemmKey, _plan_gemm, gemm_key
from webllm_py.quant import kquant
from webllm_py.testing.browser_kernels import browser_kernel_runner  # noqa: F401  (SwiftShader fixture)

FORMATS = ["f32", "f16", "q8", "q4", "q4a"]


def _run(runner, key: GemmKey, n: int, rng, x_scale: float = 2.0, weights=weight_parts) -> None:
    """Run `key` on fresh data with NaN sentinels; check it against the ir/ops.py composition.
    weights(rng, fmt, rows, cols) -> (kernel arrays, reference f32 weights)."""
    act = key.act
    arrays, x, ref = fused_matmul_case(key, n, rng, x_scale, weights)
    kernel = build(key)
    if key.splits:
        outs = {f"out{i}": sentinel((n + EXTRA, s), act) for i, s in enumerate(key.splits)}
        got = runner.run(kernel, {**arrays, "x": padded(x, act), **outs}, n)
        for (name, buf), part in zip(outs.items(), np.split(ref, np.cumsum(key.splits)[:-1], axis=1)):
            check(got[name][:n], part, TOL[act], f"{key.name} n={n} {name}")
            same_bits(got[name][n:], buf[n:], f"{name} sentinel rows")
        return
    width = key.out_rows or key.rows
    cols = slice(key.row_offset, key.row_offset + key.rows)
    if key.epilogue == "residual":
        out = rand(rng, (n + EXTRA, width), act)  # the residual stream; rows >= n must stay as they are
        out[n:] = sentinel((EXTRA, width), act)
        want = f(out[:n, cols]) + ref
    else:
        out = sentinel((n + EXTRA, width), act)
        want = ref
    got = runner.run(kernel, {**arrays, "x": padded(x, act), "out": out}, n)["out"]
    check(got[:n, cols], want, TOL[act], f"{key.name} n={n}")
    outside = np.ones(width, dtype=bool)
    outside[cols] = False
    same_bits(got[:n, outside], out[:n, outside], "columns outside the row slice")
    same_bits(got[n:], out[n:], "sentinel rows")


@pytest.mark.parametrize("act", ["f32", "f16"])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("cols", [96, 100])
def test_gemm_formats(runner, act, fmt, cols):
    """Every weight format through _dequant.wgsl's dq8, at partial row, token and K tiles."""
    need(runner, act)
    rng = rng_for("gemm", act, fmt, cols)
    key = gemm_key(act, fmt, 70, cols, bias=cols == 100)
    for n in (1, 37, 128):
        _run(runner, key, n, rng)


@pytest.mark.parametrize("fmt", ["f32", "f16"])
def test_gemm_scalar_x(runner, fmt):
    """cols 13: x rows are not vec4-aligned (scalar loads), the only K step is partial."""
    rng = rng_for("gemm13", fmt)
    for n in (1, 37):
        _run(runner, gemm_key("f32", fmt, 70, 13), n, rng)


@pytest.mark.parametrize("fmt", list(kquant.SPECS))
def test_gemm_block_formats(runner, fmt):
    """The GGUF block formats (q5, q5a, q2k..q6k) through the same dq8 calls: random GGUF blocks,
    the reference weights dequantized by gguf.quants.dequantize (test_kquant.kweight); cols 512:
    K steps inside 256-column blocks, two blocks per row. Small x (the random blocks' weights reach ~40)."""
    kq = pytest.importorskip("test_kquant", reason="needs the gguf package (the reference dequantizer)")
    rng = rng_for("gemmkq", fmt)
    for key in (gemm_key("f32", fmt, 70, 512, bias=True),
                gemm_key("f32", fmt, 37, 512, epilogue="silu_mul")):
        for n in (1, 37):
            _run(runner, key, n, rng, x_scale=0.01, weights=kq.kweight)  # gate sums of O(1): silu not saturated


def test_gemm_tiny_model_shapes(runner):
    """The prefill linears of tests/conftest.py's tiny llama (hidden 64, 4 heads / 2 kv heads of 16,
    intermediate 100) as the GPU sets' lowering fuses them: q/k/v with the norm prologue and
    splits, gate/up with norm + silu_mul, o_proj and down as residual epilogues."""
    rng = rng_for("gemmtiny")
    keys = [gemm_key("f32", "q4", 128, 64, norm=True, norm_eps=1e-5, splits=(64, 32, 32)),
            gemm_key("f32", "q4", 100, 64, norm=True, norm_eps=1e-5, epilogue="silu_mul"),
            gemm_key("f32", "q4", 64, 64, epilogue="residual"),
            gemm_key("f32", "q4", 64, 100, epilogue="residual")]
    for key in keys:
        for n in (1, 16, 37):
            _run(runner, key, n, rng)


FUSIONS = {
    "residual": dict(epilogue="residual", bias=True),
    "silu_mul": dict(epilogue="silu_mul", bias=True),
    "splits": dict(splits=(16, 8, 46)),  # a split boundary inside a lane's rows and inside a row tile
    "slice": dict(epilogue="residual", row_offset=8, out_rows=90, bias=True),
    "slice_silu": dict(epilogue="silu_mul", out_rows=75),
}


@pytest.mark.parametrize("act", ["f32", "f16"])
@pytest.mark.parametrize("fusion", sorted(FUSIONS))
@pytest.mark.parametrize("norm", [False, True])
def test_gemm_fused(runner, act, fusion, norm):
    """Each fusion once, with and without the RMSNorm prologue (eps 0.25: a large eps changes the
    result visibly, so it must be used), q4a weights (scale and offset per group), cols 100."""
    need(runner, act)
    rng = rng_for("gemmfused", act, fusion, norm)
    key = gemm_key(act, "q4a", 70, 100, norm=norm, norm_eps=0.25 if norm else 0.0, **FUSIONS[fusion])
    for n in (1, 37):
        _run(runner, key, n, rng)


@pytest.mark.parametrize("tm,tn", [(4, 4), (16, 32), (64, 32), (8, 96)])
def test_gemm_tile_knobs(runner, tm, tn):
    """Other tile shapes: one lane (4 x 4), a lane count below a subgroup, 128 lanes of tall tiles."""
    rng = rng_for("gemmtile", tm, tn)
    for fmt in ("q4", "f16"):
        _run(runner, GemmKey("f32", fmt, 70, 100, tm=tm, tn=tn, norm=True, norm_eps=1e-5), 37, rng)


def test_gemm_plan():
    """The shape: weights are read and dequantized once per (token tile, K step), 32 tokens per
    workgroup at n = 128 (4 workgroups along tokens), within WebGPU's default limits; bindings equal
    MatmulKey's (names, order, kinds) so the lowering binds the same tensors."""
    for kw in ({}, dict(epilogue="silu_mul", bias=True), dict(norm=True, norm_eps=1e-5, splits=(576, 192, 192))):
        key = gemm_key("f32", "q4", 960 if "splits" in kw else 1536, 576, **kw)
        plan, kernel = _plan_gemm(key), build(key)
        wtile = key.weight_tile_rows
        assert plan.consts["w_items"] * 8 == wtile * 32  # one dq8 of 8 weights per (tile row, 8 columns)
        assert f"const W_ITEMS: u32 = {plan.consts['w_items']}u;" in kernel.wgsl
        assert kernel.wgsl.count("dq8(") - kernel.wgsl.count("fn dq8(") == 1  # fetch_w's one call
        per_lane = -(-plan.consts["w_items"] // key.lanes)
        assert kernel.wgsl.count("= fetch_w(lane") == 2 * per_lane  # step 0, then each next step once
        assert key.tm >= 32 and kernel.dispatch_for(128, 0)[1] == 4
        assert kernel.dispatch_for(128, 0)[0] == -(-key.rows // key.tn)
        assert 64 <= key.lanes <= 256 and key.workgroup_bytes() <= 16384
        mm = MatmulKey("f32", "q4", key.rows, key.cols, bias=key.bias, norm=key.norm, norm_eps=key.norm_eps,
                       epilogue=key.epilogue, splits=key.splits)
        assert kernel.bindings == build(mm).bindings
    slice_key = gemm_key("f16", "f16", 24, 100, row_offset=8, out_rows=40, epilogue="residual", bias=True)
    assert build(slice_key).bindings == build(MatmulKey("f16", "f16", 24, 100, row_offset=8, out_rows=40,
                                                       epilogue="residual", bias=True)).bindings
    assert gemm_key("f32", "q8", 64, 64, splits=[32, 32]).splits == (32, 32)


@pytest.mark.parametrize("kw,msg", [
    (dict(tm=64, tn=64), "workgroup storage.*lower tm or tn"),
    (dict(tm=128, tn=64), "lanes exceed 256; lower tm or tn"),
    (dict(tm=6), "multiples of 4"),
    (dict(epilogue="gelu"), "epilogue must be"),
    (dict(splits=(32, 32), epilogue="residual"), "epilogue 'none'"),
    (dict(splits=(32, 16)), "sum to rows"),
    (dict(splits=(32, 32), row_offset=8, out_rows=80), "row_offset"),
    (dict(epilogue="silu_mul", row_offset=8, out_rows=80), "row_offset"),
    (dict(norm_eps=1e-5), "without norm"),
    (dict(norm=True, bias=True, splits=(16, 16, 16, 16)), "storage buffers.*fewer splits"),
    (dict(fmt="q9z"), "no entry in wgsl_templates/_dequant.wgsl"),
])
def test_gemm_key_errors(kw, msg):
    key = GemmKey(**{**dict(act="f32", fmt="q4", rows=64, cols=64), **kw})
    with pytest.raises(ValueError, match=msg) as e:
        build(key)
    assert key.name in str(e.value)


BROWSER_CASES = [  # the fused forms the GPU sets' prefill uses, one partial K step each
    gemm_key("f32", "q4", 70, 100, norm=True, norm_eps=1e-5, splits=(16, 8, 46)),  # q/k/v
    gemm_key("f32", "q4a", 70, 100, bias=True, norm=True, norm_eps=0.25, epilogue="silu_mul"),  # gate/up
    gemm_key("f32", "q8", 70, 100, row_offset=8, out_rows=90, epilogue="residual"),  # o_proj / down slice
    gemm_key("f32", "f16", 70, 13),  # scalar x and weights
]


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("key", BROWSER_CASES, ids=lambda k: f"{k.fmt}-{k.epilogue}-{len(k.splits)}")
def test_gemm_swiftshader(browser_kernel_runner, key):
    """The same kernels on Chrome's WebGPU (Tint + SwiftShader), tolerances as on lavapipe."""
    rng = rng_for("gemmbrowser", key.name)
    for n in (1, 37):
        _run(browser_kernel_runner, key, n, rng)
