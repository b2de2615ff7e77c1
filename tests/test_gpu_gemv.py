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

from test_kernels import check, need, rng_for, runner  # noqa: F401  (runner is a fixture)
from test_kernels import _run_fused, weight_parts
from webllm_py.codegen import MatmulKey, build, dequant, key_from_json
from webllm_py.codegen.gemv import GemvKey, gemv_key
from webllm_py.codegen.kernels import STEP, Kernel, _env, _weight_decls
from webllm_py.codegen.runner import has_subgroups
from webllm_py.testing.browser_kernels import browser_kernel_runner  # noqa: F401  (SwiftShader, a fixture)

FORMATS = ["f32", "f16", "q8", "q4", "q4a"]

# -- the dequantization library -------------------------------------------------------

# a probe kernel's bindings (decls) and _dequant.wgsl's functions for (fmt, cols); tests/test_kquant.py too
DQ_PROBE_HEAD = """\
{% import "_dequant.wgsl" as dq %}
{% for d in decls %}
@group(0) @binding({{ loop.index0 }}) var<{{ "uniform" if d[1] == "uniform" else "storage, " ~ d[1] }}> {{ d[0] }}: {{ d[2] }};
{% endfor %}
struct Step { n: u32, p: u32, _pad0: u32, _pad1: u32 }
{{ dq.fns(fmt, cols) }}
"""
_PROBE = DQ_PROBE_HEAD + """\
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


# -- the GEMV ---------------------------------------------------------------------------

def need_subgroups(runner, subgroups: bool) -> None:
    if subgroups and not has_subgroups(runner.device):
        pytest.skip("adapter lacks the subgroups feature: the subgroupAdd form cannot run here")


# (form, cols, key options): one case per fusion form. Sizes are awkward on purpose: cols not a
# multiple of lanes * 8 nor (100, 127, 36) of 32, rows (37, 29, 44) not a multiple of rows_per_wg.
FORMS = {
    "plain": (100, dict(rows=37)),
    "bias": (1000, dict(rows=37, bias=True)),  # several blocks per lane at wg 128 for f32/f16/q8
    "norm": (36, dict(rows=37, norm=True, norm_eps=0.25)),  # a large eps changes the result visibly
    "residual": (127, dict(rows=37, epilogue="residual", bias=True)),  # scalar x loads (cols % 4 != 0)
    "silu_mul": (64, dict(rows=29, epilogue="silu_mul", norm=True, norm_eps=1e-5, bias=True)),
    "splits": (96, dict(rows=44, splits=(16, 8, 20), norm=True, norm_eps=1e-5, bias=True)),
    "last_row": (127, dict(rows=29, last_row=True, norm=True, norm_eps=1e-5)),
    "row_slice": (100, dict(rows=24, row_offset=8, out_rows=40, epilogue="residual", bias=True)),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("form", FORMS)
def test_gemv_forms(runner, fmt, form):
    """Every format x every fusion form once, n = 1 and 3; the subgroup and the tree reduction
    alternate over formats, so each form runs both ways."""
    cols, opts = FORMS[form]
    opts = dict(opts)
    rows = opts.pop("rows")
    subgroups = (FORMATS.index(fmt) + list(FORMS).index(form)) % 2 == 0
    need_subgroups(runner, subgroups)
    key = gemv_key("f32", fmt, rows, cols, subgroups=subgroups, **opts)
    rng = rng_for("gemv", fmt, form)
    for n in (1, 3):
        _run_fused(runner, key, n, rng)


@pytest.mark.parametrize("subgroups", [False, True])
@pytest.mark.parametrize("wg,rows_per_wg", [(16, 1), (64, 3), (256, 8)])
def test_gemv_knobs(runner, subgroups, wg, rows_per_wg):
    """Lane counts and rows per workgroup, on a row of 1000 columns (q4: 125 blocks, 8 per lane
    at wg 16; 256 lanes: half idle) and a silu_mul + norm form (the most reduction slots):
    256 lanes on lavapipe's subgroups of 8 are 32 subgroups to combine."""
    need_subgroups(runner, subgroups)
    rng = rng_for("gemvknobs", subgroups, wg, rows_per_wg)
    for fmt in ("q4", "f16"):
        _run_fused(runner, GemvKey("f32", fmt, 45, 1000, wg=wg, rows_per_wg=rows_per_wg, subgroups=subgroups), 1, rng)
    silu = GemvKey("f32", "q8", 21, 200, norm=True, norm_eps=1e-5, epilogue="silu_mul", wg=wg,
                   rows_per_wg=min(rows_per_wg, 4), subgroups=subgroups)
    _run_fused(runner, silu, 3, rng)


@pytest.mark.parametrize("fmt", FORMATS)
def test_gemv_f16_activations(runner, fmt):
    """f16 activations (x and out f16, math in f32) where the adapter has shader-f16."""
    need(runner, "f16")
    rng = rng_for("gemvf16", fmt)
    for key in (gemv_key("f16", fmt, 37, 100, bias=True),
                gemv_key("f16", fmt, 29, 64, norm=True, norm_eps=1e-5, epilogue="silu_mul", subgroups=False)):
        for n in (1, 3):
            _run_fused(runner, key, n, rng)



@pytest.mark.parametrize("fmt", ["q5", "q5a", "q2k", "q3k", "q4k", "q5k", "q6k"])
def test_gemv_gguf_block_formats(runner, fmt):
    """The GGUF block formats (quant/kquant.py; their _dequant.wgsl entries are H7's) through the GEMV:
    random GGUF blocks, the reference dequantized by gguf itself (test_kquant.kweight); a plain form
    with the tree reduction and a norm + silu_mul + bias form with subgroups. Tolerance 1e-4 (f32 sums)."""
    pytest.importorskip("gguf")
    from test_kquant import kweight
    from test_kernels import EXTRA, padded, rand, ref_op, same_bits, sentinel

    rng = rng_for("gemvkq", fmt)
    rows, cols = 37, 512
    for n, key in [(1, gemv_key("f32", fmt, rows, cols)),
                   (3, gemv_key("f32", fmt, rows, cols, bias=True, norm=True, norm_eps=1e-5, epilogue="silu_mul",
                                subgroups=has_subgroups(runner.device)))]:
        silu = key.epilogue == "silu_mul"
        arrays, wd = kweight(rng, fmt, 2 * rows if silu else rows, cols)
        x = rand(rng, (n, cols), "f32")
        xin = x
        if silu:
            arrays["norm_w"] = (rng.standard_normal(cols) * 0.5 + 1).astype(np.float32)
            arrays["bias"] = rng.standard_normal(2 * rows).astype(np.float32)
            xin = ref_op("rms_norm", [x, arrays["norm_w"]], n, eps=1e-5)
            gate = ref_op("linear", [xin, wd[:rows], arrays["bias"][:rows]], n)
            up = ref_op("linear", [xin, wd[rows:], arrays["bias"][rows:]], n)
            ref = ref_op("silu_mul", [gate, up], n)
        else:
            ref = ref_op("linear", [x, wd], n)
        out = sentinel((n + EXTRA, rows), "f32")
        got = runner.run(build(key), {**arrays, "x": padded(x, "f32"), "out": out}, n)["out"]
        check(got[:n], ref, 1e-4, key.name)
        same_bits(got[n:], out[n:], "sentinel rows")

# A Llama-3.2-1B-like layer (hidden 1024 here, ffn 4096): every GEMV the decode step runs.
def llama_keys(fmt: str) -> list[GemvKey]:
    H, I, q, kv, vocab = 1024, 4096, 1024, 256, 32000
    return [gemv_key("f32", fmt, q + 2 * kv, H, bias=True, norm=True, norm_eps=1e-5, splits=(q, kv, kv)),
            gemv_key("f32", fmt, H, q, epilogue="residual"),
            gemv_key("f32", fmt, I, H, norm=True, norm_eps=1e-5, epilogue="silu_mul"),
            gemv_key("f32", fmt, H, I, epilogue="residual"),
            gemv_key("f32", fmt, vocab, H, last_row=True, norm=True, norm_eps=1e-5),
            gemv_key("f32", fmt, 512, H, row_offset=512, out_rows=1024)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_gemv_plan_shape(fmt):
    """The shape rules on a Llama shape, read from the plan (no timing): >= 16 invocations per output
    row counted two ways (workgroup lanes / rows per workgroup, and lanes that have a block of the
    row to load), a serial chain of <= 8 blocks per lane, at most 16 KiB of workgroup storage."""
    for key in llama_keys(fmt):
        k = build(key)
        groups, _, _ = k.dispatch_for(1, 0)
        invocations = groups * k.workgroup_size[0]
        assert invocations / key.rows >= 16, (k.name, invocations / key.rows)
        blocks = -(-key.cols // dequant.block_cols(fmt))
        assert min(key.wg, blocks) >= 16, k.name  # lanes with work in every row
        assert -(-blocks // key.wg) <= 8, k.name
        assert key.reduction_bytes() <= 16384, k.name
        assert key_from_json(key.to_json()) == key


def test_gemv_bindings_are_matmuls():
    """The lowering's tensor map works unchanged: same binding names, kinds and order as MatmulKey."""
    for kw in [dict(bias=True, norm=True, norm_eps=1e-5, splits=(8, 8, 16)), dict(epilogue="residual"),
               dict(norm=True, norm_eps=1e-5, epilogue="silu_mul", bias=True), dict(last_row=True),
               dict(row_offset=8, out_rows=64)]:
        for fmt in FORMATS:
            g = build(gemv_key("f32", fmt, 32, 96, **kw))
            m = build(MatmulKey("f32", fmt, 32, 96, **kw))
            assert g.bindings == m.bindings, (g.name, g.bindings, m.bindings)
            assert g.dispatch[1] == m.dispatch[1]


@pytest.mark.parametrize("kw,msg", [
    (dict(wg=8), "power of two"), (dict(wg=96), "power of two"), (dict(rows_per_wg=9), "rows_per_wg"),
    (dict(wg=256, rows_per_wg=8, epilogue="silu_mul", norm=True), "workgroup storage"),
    (dict(fmt="q3"), "_dequant.wgsl"), (dict(epilogue="gelu"), "epilogue"),
    (dict(norm_eps=1e-5), "without norm"), (dict(splits=(32,)), "at least 2"),
    (dict(splits=(16, 8)), "sum to rows"), (dict(epilogue="silu_mul", row_offset=8, out_rows=64), "row_offset"),
    (dict(splits=(8, 8, 8, 8), norm=True, bias=True), "storage buffers"),
    (dict(row_offset=40, out_rows=64), "exceeds out_rows"),
])
def test_gemv_key_errors(kw, msg):
    base = dict(act="f32", fmt="q4", rows=32, cols=96)
    with pytest.raises(ValueError, match=msg):
        build(GemvKey(**{**base, **kw}))


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_gemv_swiftshader(browser_kernel_runner, fmt):  # noqa: F811
    """Tint compiles the GEMV (with `enable subgroups;`) and SwiftShader (4-wide subgroups, 64 of them
    in a 256-lane workgroup) agrees: per format a plain and a fused form, subgroups off and on."""
    r = browser_kernel_runner
    rng = rng_for("gemvswift", fmt)
    _run_fused(r, gemv_key("f32", fmt, 37, 100, bias=True), 3, rng)
    if not has_subgroups(r.device):
        pytest.skip("SwiftShader here lacks the subgroups feature (the tree form passed)")
    _run_fused(r, GemvKey("f32", fmt, 29, 200, norm=True, norm_eps=1e-5, epilogue="silu_mul", subgroups=True), 3, rng)


# sha256 over the WGSL of every matmul and embedding key of test_kernels.smollm_like_keys (f32 then f16,
# 202 kernels), computed at 193f01a, before matmul.wgsl and embedding.wgsl took their per-format code
# from _dequant.wgsl. The move was checked wider by hand: 26,660 keys (the cross product of MatmulKey
# options over the 5 formats, 96 embedding keys, every kernel of the bundles then on disk) and the
# K formats' dq8 forms rendered byte-identical.
CPU_TEXT_SHA256 = "05a105e1c0cc9b32497ab21761608f85e6daf8dfc73ecd8bc67fd1c55b9a5f7a"


def test_cpu_matmul_text_unchanged():
    """The cpu program sets must not change: their matmul/embedding WGSL is byte-identical to before."""
    import hashlib

    from test_kernels import smollm_like_keys

    keys = [k for act in ("f32", "f16") for k in smollm_like_keys(act) if k.family in ("matmul", "embedding")]
    h = hashlib.sha256()
    for k in keys:
        h.update(build(k).wgsl.encode())
    assert (len(keys), h.hexdigest()) == (202, CPU_TEXT_SHA256)
