"""Every kernel family, every variant, on wgpu-py (lavapipe) against the numpy op catalog.

Error measure: max |got - ref| / max |ref| over the valid region (llama.cpp's
test-backend-ops uses a normalized error the same way); NaN or Inf in the
valid region always fails.

Tolerances, and why:

| what                         | tol   | why                                                                   |
|------------------------------|-------|-----------------------------------------------------------------------|
| f32 activations, reductions  | 1e-4  | f32 sums of <= 1000 terms in another order than numpy's (~1e-6 seen)   |
| f32 activations, elementwise | 1e-5  | one or two f32 roundings; exp/sin/cos of the driver (~1e-6)            |
| f16 activations              | 2e-3  | output rounded to f16 (2^-11 = 4.9e-4 relative) plus f32 math inside;  |
|                              |       | the reference runs on the same f16-rounded inputs                      |
| data movement (kv_write,     | exact | a copy: bits must match                                               |
|   last_row, embedding f32,   |       |                                                                       |
|   rope_kv's v -> v_cache)    |       |                                                                       |
| fused matmul (norm prologue, | as    | f32: 1e-4; f16: 2e-3. The references compose the ir/ops.py ops in f32 |
|   residual / silu_mul        | above | (rms_norm -> linear; linear -> add; silu_mul of two linears;           |
|   epilogue, splits)          |       | np.split) on the same f16-rounded inputs; the kernel scales by inv(t)  |
|                              |       | after the dot product instead of before (~1e-6 relative) and rounds    |
|                              |       | to the activation dtype once at the store                              |
| rope_kv (q and k rotation)   | as    | same math as rope: 1e-5 (f32), 2e-3 (f16); x10 at position 4000        |
|                              | rope  |                                                                       |

Sentinels: every written buffer has rows beyond the valid range (and, for KV
caches, rows before p) filled with a NaN pattern or known data; they must come
back bit-identical, which catches out-of-bounds writes. KV cache rows past
p+n hold NaN, so a kernel that reads them produces NaN and fails.
"""

from __future__ import annotations

import math
import os
import zlib

import numpy as np
import pytest

from webllm_py.codegen import (
    AddKey,
    AddRmsNormKey,
    AttentionKey,
    EmbeddingKey,
    KvWriteKey,
    LastRowKey,
    MatmulKey,
    PackKey,
    RmsNormKey,
    RopeKey,
    SiluMulKey,
    build,
    key_from_json,
    matmul_key,
)
from webllm_py.codegen.kernels import MAX_WORKGROUPS, PACK_LAYOUTS, RopeKvKey, wgsl_features
from webllm_py.ir.graph import eval_dim
from webllm_py.ir.ops import OPS, StepContext
from webllm_py.quant.formats import dequantize, quantize

TOL = {"f32": 1e-4, "f16": 2e-3}
TOL_ELEMENTWISE = {"f32": 1e-5, "f16": 2e-3}
NP = {"f32": np.float32, "f16": np.float16}
SENTINEL_BITS = {"f32": (np.uint32, 0x7FC0DEAD), "f16": (np.uint16, 0x7E5A)}  # quiet NaNs with a payload
FORMATS = ["f32", "f16", "q8", "q4", "q4a"]
ACTS = ["f32", "f16"]
EXTRA = 3  # sentinel rows after the valid ones


# -- device ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runner():
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    wgpu = pytest.importorskip("wgpu")
    from webllm_py.codegen.runner import KernelRunner, request_device

    try:
        adapter, device = request_device()
    except Exception as e:  # pragma: no cover - machines without a driver
        pytest.skip(f"no wgpu adapter: {e}")
    del wgpu, adapter
    return KernelRunner(device)


def need(runner, act):
    if act == "f16" and "shader-f16" not in runner.device.features:
        pytest.skip("adapter lacks shader-f16: f16-activation variants cannot run here")


# -- helpers -----------------------------------------------------------------------

def rng_for(*args) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(args).encode()))  # deterministic across runs


def sentinel(shape, act) -> np.ndarray:
    ut, bits = SENTINEL_BITS[act]
    return np.full(shape, bits, dtype=ut).view(NP[act])


def rand(rng, shape, act, scale=1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(NP[act])


def check(got: np.ndarray, ref: np.ndarray, tol: float, what: str = "") -> None:
    got = got.astype(np.float32)
    ref = ref.astype(np.float32)
    assert got.shape == ref.shape
    assert np.isfinite(got).all(), f"{what}: non-finite values in the valid region"
    denom = max(float(np.abs(ref).max()), 1e-30)
    err = float(np.abs(got - ref).max()) / denom
    assert err <= tol, f"{what}: normalized max error {err:.3g} > {tol}"


def padded(a: np.ndarray, act: str) -> np.ndarray:
    """An input with NaN rows after its n valid ones: a kernel reading past row n-1 yields NaN and fails."""
    return np.concatenate([a, sentinel((EXTRA,) + a.shape[1:], act)])


def same_bits(a: np.ndarray, b: np.ndarray, what: str) -> None:
    assert a.tobytes() == b.tobytes(), f"{what}: bytes changed (out-of-bounds write or wrong copy)"


def weight_parts(rng, fmt, rows, cols):
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    parts = quantize(w, fmt)
    arrays = {"w": parts["data"]}
    if "scales" in parts:
        arrays["scales"] = parts["scales"]
    return arrays, dequantize(parts, fmt, (rows, cols))


def ref_op(op, inputs, n, p=0, **attrs):
    return OPS[op].reference(inputs, attrs, StepContext(n, p))


def f(a):
    return a.astype(np.float32)


# -- embedding ---------------------------------------------------------------------

@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("hidden", [13, 127, 1000])
@pytest.mark.parametrize("n", [1, 7])
def test_embedding(runner, act, fmt, hidden, n):
    need(runner, act)
    rng = rng_for("emb", act, fmt, hidden, n)
    vocab = 50
    arrays, table = weight_parts(rng, fmt, vocab, hidden)
    ids = rng.integers(0, vocab, size=n).astype(np.int32)
    ids[0] = vocab - 1
    out = sentinel((n + EXTRA, hidden), act)
    k = build(EmbeddingKey(act, fmt, vocab, hidden))
    got = runner.run(k, {**arrays, "ids": ids, "out": out}, n)["out"]
    ref = ref_op("embedding", [ids, table], n)
    if act == "f32":
        same_bits(got[:n], ref, "embedding")  # dequant q * scale is exact in f32
    else:
        same_bits(got[:n], ref.astype(np.float16), "embedding")
    same_bits(got[n:], out[n:], "sentinel rows")


# -- rms_norm / add_rms_norm -------------------------------------------------------

@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("cols,group", [(13, 0), (127, 0), (1000, 0), (96, 32), (36, 12)])
@pytest.mark.parametrize("n", [1, 7])
def test_rms_norm(runner, act, cols, group, n):
    need(runner, act)
    rng = rng_for("rms", act, cols, group, n)
    g = group or cols
    x = rand(rng, (n, cols), act, 3.0)
    w = rng.standard_normal(g).astype(np.float32)
    out = sentinel((n + EXTRA, cols), act)
    k = build(RmsNormKey(act, cols, eps=1e-5, group=group))
    got = runner.run(k, {"x": padded(x, act), "w": w, "out": out}, n)["out"]
    attrs = {"eps": 1e-5} | ({"group": group} if group else {})
    check(got[:n], ref_op("rms_norm", [f(x), w], n, **attrs), TOL[act], "rms_norm")
    same_bits(got[n:], out[n:], "sentinel rows")


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("cols", [13, 127, 1000])
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("n", [1, 7])
def test_add_rms_norm(runner, act, cols, inplace, n):
    need(runner, act)
    rng = rng_for("addrms", act, cols, inplace, n)
    a = rand(rng, (n, cols), act)
    b = rand(rng, (n, cols), act)
    w = rng.standard_normal(cols).astype(np.float32)
    out = sentinel((n + EXTRA, cols), act)
    k = build(AddRmsNormKey(act, cols, eps=1e-6, inplace=inplace))
    if inplace:
        xbuf = np.concatenate([a, sentinel((EXTRA, cols), act)])
        res = runner.run(k, {"x": xbuf, "b": padded(b, act), "w": w, "out": out}, n)
        r, r_in = res["x"], xbuf
    else:
        r_in = sentinel((n + EXTRA, cols), act)
        res = runner.run(k, {"a": padded(a, act), "b": padded(b, act), "w": w, "r": r_in, "out": out}, n)
        r = res["r"]
    r_ref = ref_op("add", [f(a), f(b)], n).astype(NP[act])  # one rounding of a + b to the activation dtype
    same_bits(r[:n], r_ref, "residual a + b")
    check(res["out"][:n], ref_op("rms_norm", [f(r_ref), w], n, eps=1e-6), TOL[act], "add_rms_norm")
    same_bits(r[n:], r_in[n:], "residual sentinel rows")
    same_bits(res["out"][n:], out[n:], "sentinel rows")


# -- matmul ------------------------------------------------------------------------

def _run_matmul(runner, key: MatmulKey, n: int, rng):
    act = key.act
    arrays, wd = weight_parts(rng, key.fmt, key.rows, key.cols)
    x = rand(rng, (n, key.cols), act)
    inputs = [f(x), wd]
    if key.bias:
        arrays["bias"] = rng.standard_normal(key.rows).astype(np.float32)
        inputs.append(arrays["bias"])
    out_rows = 1 if key.last_row else n
    out = sentinel((out_rows + EXTRA, key.rows), act)
    got = runner.run(build(key), {**arrays, "x": padded(x, act), "out": out}, n)["out"]
    ref = ref_op("linear", inputs, n)
    if key.last_row:
        ref = ref[-1:]
    check(got[:out_rows], ref, TOL[act], key.name)
    same_bits(got[out_rows:], out[out_rows:], "sentinel rows")


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("cols", [13, 127, 1000, 64])
@pytest.mark.parametrize("tn,rpi", [(1, 1), (1, 4), (4, 3)])
@pytest.mark.parametrize("n", [1, 7])
def test_matmul(runner, act, fmt, cols, tn, rpi, n):
    need(runner, act)
    rng = rng_for("mm", act, fmt, cols, tn, rpi, n)
    rows = 37 if cols != 64 else 130  # not a multiple of the workgroup nor of rpi; 130 > one workgroup
    _run_matmul(runner, MatmulKey(act, fmt, rows, cols, bias=cols in (13, 1000), tn=tn, rpi=rpi), n, rng)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("cols,bias", [(127, True), (1000, False)])
def test_matmul_last_row(runner, act, fmt, cols, bias):
    need(runner, act)
    rng = rng_for("mmlast", act, fmt, cols)
    for n in (1, 7):
        _run_matmul(runner, MatmulKey(act, fmt, 29, cols, bias=bias, last_row=True, rpi=4), n, rng)


@pytest.mark.parametrize("tn,wg,rpi", [(2, 32, 2), (8, 16, 1), (3, 256, 1), (4, 8, 8)])
def test_matmul_tuning_knobs(runner, tn, wg, rpi):
    rng = rng_for("mmtune", tn, wg, rpi)
    for fmt in ("q4", "f16"):
        _run_matmul(runner, MatmulKey("f32", fmt, 300, 96, tn=tn, wg=wg, rpi=rpi), 11, rng)


# -- fused matmul: RMSNorm prologue, residual / silu_mul epilogues, split outputs ----

def fused_matmul_case(key, n: int, rng, x_scale: float = 2.0, weights=weight_parts):
    """(kernel arrays, x, reference) of a fused matmul or GEMM `key` on fresh data: its weights
    (weights(rng, fmt, rows, cols) -> (arrays, f32 weights)), RMSNorm prologue and bias as the key
    asks, and the ir/ops.py composition of rms_norm, linear and silu_mul as the reference (all n rows,
    before any residual / split / last-row epilogue)."""
    silu = key.epilogue == "silu_mul"
    wrows = 2 * key.rows if silu else key.rows
    arrays, wd = weights(rng, key.fmt, wrows, key.cols)
    x = rand(rng, (n, key.cols), key.act, x_scale)
    xin = f(x)
    if key.norm:
        arrays["norm_w"] = (rng.standard_normal(key.cols) * 0.5 + 1.0).astype(np.float32)
        xin = ref_op("rms_norm", [xin, arrays["norm_w"]], n, eps=key.norm_eps)
    bias = None
    if key.bias:  # a row slice (row_offset/out_rows) indexes the full weight's bias (out_rows entries)
        full = wrows if silu or not key.out_rows else key.out_rows
        arrays["bias"] = rng.standard_normal(full).astype(np.float32)
        bias = arrays["bias"] if full == wrows else arrays["bias"][key.row_offset:key.row_offset + key.rows]
    if silu:
        gate = ref_op("linear", [xin, wd[:key.rows]] + ([bias[:key.rows]] if key.bias else []), n)
        up = ref_op("linear", [xin, wd[key.rows:]] + ([bias[key.rows:]] if key.bias else []), n)
        return arrays, x, ref_op("silu_mul", [gate, up], n)
    return arrays, x, ref_op("linear", [xin, wd] + ([bias] if key.bias else []), n)


def _run_fused(runner, key: MatmulKey, n: int, rng, x_scale: float = 2.0):
    """Run a fused matmul variant on fresh data; check it against the ir/ops.py composition."""
    act = key.act
    arrays, x, ref = fused_matmul_case(key, n, rng, x_scale)
    m = 1 if key.last_row else n  # output rows written
    if key.last_row:
        ref = ref[-1:]
    width = key.out_rows or key.rows
    cols = slice(key.row_offset, key.row_offset + key.rows)
    if key.splits:
        bounds = np.cumsum(key.splits)[:-1]
        outs = {f"out{i}": sentinel((n + EXTRA, s), act) for i, s in enumerate(key.splits)}
        got = runner.run(build(key), {**arrays, "x": padded(x, act), **outs}, n)
        for (name, buf), part in zip(outs.items(), np.split(ref, bounds, axis=1)):
            check(got[name][:n], part, TOL[act], f"{key.name} {name}")
            same_bits(got[name][n:], buf[n:], f"{name} sentinel rows")
        return
    if key.epilogue == "residual":
        out = rand(rng, (m + EXTRA, width), act)  # the residual stream; rows >= m must stay as they are
        out[m:] = sentinel((EXTRA, width), act)
        want = f(out[:m]).copy()
        want[:, cols] += ref
    else:
        out = sentinel((m + EXTRA, width), act)
        want = f(out[:m]).copy()
        want[:, cols] = ref
    got = runner.run(build(key), {**arrays, "x": padded(x, act), "out": out}, n)["out"]
    check(got[:m, cols], want[:, cols], TOL[act], key.name)
    outside = np.ones(width, dtype=bool)
    outside[cols] = False
    same_bits(got[:m, outside], out[:m, outside], "columns outside the row slice")
    same_bits(got[m:], out[m:], "sentinel rows")


FUSED_MODES = ["none", "residual", "silu_mul", "splits"]


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("norm,mode", [(nm, m) for nm in (False, True) for m in FUSED_MODES
                                       if nm or m != "none"])  # (False, "none") is test_matmul's
@pytest.mark.parametrize("cols", [127, 64, 36])
@pytest.mark.parametrize("tn,rpi", [(1, 4), (3, 2)])
def test_matmul_fused(runner, act, fmt, norm, mode, cols, tn, rpi):
    """cols 127: scalar x loads, quant tail; 64: vector paths, no tail; 36: vec4 x, f16 scalar weights,
    quant tail. wg=8 so several workgroups run; rows are not a multiple of the workgroup's rows."""
    need(runner, act)
    rng = rng_for("mmfused", act, fmt, norm, mode, cols, tn, rpi)
    eps = 0.25 if cols == 36 else 1e-5  # a large eps changes the result visibly: it must be used
    extra = {}
    if mode == "splits":
        extra["splits"] = (16, 8, 20) if rpi == 4 else (6, 38)
        rows = 44
    else:
        rows = 37
        if mode != "none":
            extra["epilogue"] = mode
    key = MatmulKey(act, fmt, rows, cols, bias=cols != 64, tn=tn, wg=8, rpi=rpi, norm=norm,
                    norm_eps=eps if norm else 0.0, **extra)
    for n in (1, 7):
        _run_fused(runner, key, n, rng)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("fmt", ["q4", "f16"])
def test_matmul_fused_slices_and_last_row(runner, act, fmt):
    """The fusions with the row-slice (row_offset/out_rows) and last_row forms the lowering also uses:
    a residual slice keeps the residual columns it does not own."""
    need(runner, act)
    rng = rng_for("mmfslice", act, fmt)
    keys = [
        MatmulKey(act, fmt, 24, 100, bias=True, rpi=4, wg=4, row_offset=8, out_rows=40, epilogue="residual"),
        MatmulKey(act, fmt, 24, 100, tn=2, rpi=2, wg=4, row_offset=16, out_rows=40, norm=True, norm_eps=1e-6),
        MatmulKey(act, fmt, 29, 96, rpi=4, wg=4, out_rows=33, epilogue="silu_mul", norm=True, norm_eps=1e-6),
        MatmulKey(act, fmt, 29, 127, bias=True, last_row=True, rpi=4, norm=True, norm_eps=1e-5),
        MatmulKey(act, fmt, 29, 64, last_row=True, rpi=2, epilogue="residual", norm=True, norm_eps=1e-5),
    ]
    for key in keys:
        for n in (1, 7):
            _run_fused(runner, key, n, rng)


def test_matmul_fused_keys():
    """New fields at their defaults leave names, key JSON and WGSL exactly as before; fused keys round-trip."""
    plain = MatmulKey("f32", "q4", 64, 64, rpi=4)
    assert plain.name == "matmul_act-f32_fmt-q4_rows-64_cols-64_bias-0_tn-1_wg-64_last_row-0_rpi-4_row_offset-0_out_rows-0"
    assert set(plain.to_json()) == {"family", "act", "fmt", "rows", "cols", "bias", "tn", "wg", "last_row", "rpi",
                                    "row_offset", "out_rows"}
    assert build(plain).bindings == (("x", "read"), ("w", "read"), ("scales", "read"), ("out", "read_write"),
                                      ("step", "uniform"))
    assert matmul_key("f32", "q4", 64, 64) == MatmulKey("f32", "q4", 64, 64, wg=16, rpi=4)
    fused = MatmulKey("f16", "q4a", 64, 64, bias=True, norm=True, norm_eps=1e-5, splits=(32, 16, 16), rpi=4)
    assert "splits-32x16x16" in fused.name and "norm_eps-1e-05" in fused.name
    import json

    assert key_from_json(json.loads(json.dumps(fused.to_json()))) == fused
    assert MatmulKey("f32", "q4", 8, 8, splits=[4, 4]).splits == (4, 4)
    assert [b for b, _ in build(fused).bindings] == ["x", "norm_w", "w", "scales", "bias", "out0", "out1", "out2",
                                                     "step"]
    silu = build(MatmulKey("f32", "f32", 16, 64, bias=True, norm=True, norm_eps=1e-5, epilogue="silu_mul"))
    assert silu.bindings == (("x", "read"), ("norm_w", "read"), ("w", "read"), ("bias", "read"),
                             ("out", "read_write"), ("step", "uniform"))
    res = build(MatmulKey("f32", "q8", 16, 64, epilogue="residual"))
    assert res.bindings == (("x", "read"), ("w", "read"), ("scales", "read"), ("out", "read_write"),
                            ("step", "uniform"))
    assert matmul_key("f32", "q4", 44, 64, splits=(16, 8, 20)).rpi == 4
    assert matmul_key("f32", "q4", 44, 64, splits=(6, 38)).rpi == 2
    assert matmul_key("f32", "q4", 45, 64, splits=(7, 38)).rpi == 1
    assert matmul_key("f32", "q4", 960, 64, norm=True, splits=(576, 192, 192), prefill=True).rpi == 8
    assert matmul_key("f32", "q4", 960, 64, norm=True, epilogue="silu_mul", prefill=True).rpi == 4
    assert build(RopeKvKey("f32", 9, 3, 64)).bindings == (
        ("q", "read_write"), ("k", "read"), ("v", "read"), ("inv_freq", "read"), ("k_cache", "read_write"),
        ("v_cache", "read_write"), ("step", "uniform"))


@pytest.mark.parametrize("kw,msg", [
    (dict(splits=(32, 32), last_row=True), "last_row"),
    (dict(splits=(32, 32), epilogue="residual"), "epilogue 'none'"),
    (dict(splits=(30, 34), rpi=4), "multiple of rpi"),
    (dict(splits=(32, 16)), "sum to rows"),
    (dict(splits=(64,)), "at least 2"),
    (dict(splits=(32, 32), row_offset=8, out_rows=80), "row_offset"),
    (dict(epilogue="silu_mul", row_offset=8, out_rows=80), "row_offset"),
    (dict(epilogue="silu_mul", tn=4, rpi=8), "2 \\* rpi \\* tn"),
    (dict(epilogue="gelu"), "epilogue must be"),
    (dict(norm_eps=1e-5), "without norm"),
    (dict(norm=True, norm_eps=float("nan")), "norm_eps"),
    (dict(norm=True, bias=True, splits=(16, 16, 16, 16)), "storage buffers"),
])
def test_matmul_fused_key_errors(kw, msg):
    key = MatmulKey("f32", "q4", 64, 64, **kw)
    with pytest.raises(ValueError, match=msg) as e:
        build(key)
    assert key.name in str(e.value)


# -- rope / kv_write ---------------------------------------------------------------

def inv_freq_for(head_dim, base=10000.0):
    return (1.0 / base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim)).astype(np.float32)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("heads,head_dim", [(3, 6), (2, 64)])
@pytest.mark.parametrize("to_cache", [False, True])
@pytest.mark.parametrize("n,p", [(1, 0), (1, 5), (7, 0), (7, 5), (3, 4000)])
def test_rope(runner, act, heads, head_dim, to_cache, n, p):
    need(runner, act)
    rng = rng_for("rope", act, heads, head_dim, to_cache, n, p)
    width = heads * head_dim
    x = rand(rng, (n, width), act)
    inv = inv_freq_for(head_dim)
    k = build(RopeKey(act, heads, head_dim, to_cache=to_cache))
    ref = ref_op("rope", [f(x), inv], n, p, heads=heads, head_dim=head_dim)
    # f32 at position 4000: numpy's and the driver's cos of a ~4000 rad angle agree to ~1e-6 after our reduction
    tol = TOL_ELEMENTWISE[act] * (10 if p > 1000 else 1)
    if to_cache:
        cache = rand(rng, (p + n + EXTRA, width), act)
        cache[p + n:] = sentinel((EXTRA, width), act)
        got = runner.run(k, {"x": padded(x, act), "inv_freq": inv, "cache": cache}, n, p)["cache"]
        check(got[p:p + n], ref, tol, "rope -> cache")
        same_bits(got[:p], cache[:p], "cache rows before p")
        same_bits(got[p + n:], cache[p + n:], "cache rows after p+n")
    else:
        out = sentinel((n + EXTRA, width), act)
        got = runner.run(k, {"x": padded(x, act), "inv_freq": inv, "out": out}, n, p)["out"]
        check(got[:n], ref, tol, "rope")
        same_bits(got[n:], out[n:], "sentinel rows")


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("width", [13, 128])
@pytest.mark.parametrize("n,p", [(1, 0), (1, 5), (7, 0), (7, 5)])
def test_kv_write(runner, act, width, n, p):
    need(runner, act)
    rng = rng_for("kv", act, width, n, p)
    x = rand(rng, (n, width), act)
    cache = rand(rng, (p + n + EXTRA, width), act)
    cache[p + n:] = sentinel((EXTRA, width), act)
    got = runner.run(build(KvWriteKey(act, width)), {"x": padded(x, act), "cache": cache}, n, p)["cache"]
    ref = cache.copy()
    ref_op("kv_write", [x, ref], n, p)
    same_bits(got, ref, "kv cache")


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("heads,kv_heads,head_dim", [(3, 1, 6), (4, 2, 64), (2, 2, 8)])
@pytest.mark.parametrize("n,p", [(1, 0), (1, 5), (7, 0), (7, 5), (3, 4000)])
def test_rope_kv(runner, act, heads, kv_heads, head_dim, n, p):
    need(runner, act)
    rng = rng_for("ropekv", act, heads, kv_heads, head_dim, n, p)
    qw, kvw = heads * head_dim, kv_heads * head_dim
    q, kk, v = rand(rng, (n, qw), act), rand(rng, (n, kvw), act), rand(rng, (n, kvw), act)
    inv = inv_freq_for(head_dim)
    caches = {}
    for name in ("k_cache", "v_cache"):
        c = rand(rng, (p + n + EXTRA, kvw), act)  # rows before p: earlier tokens, must be kept
        c[p:] = sentinel((n + EXTRA, kvw), act)  # rows p..p+n-1 must be written, rows after kept
        caches[name] = c
    qbuf = padded(q, act)
    k = build(RopeKvKey(act, heads, kv_heads, head_dim))
    got = runner.run(k, {"q": qbuf, "k": padded(kk, act), "v": padded(v, act), "inv_freq": inv, **caches}, n, p)
    tol = TOL_ELEMENTWISE[act] * (10 if p > 1000 else 1)
    check(got["q"][:n], ref_op("rope", [f(q), inv], n, p, heads=heads, head_dim=head_dim), tol, "rope_kv q")
    same_bits(got["q"][n:], qbuf[n:], "q rows past n")
    k_ref = ref_op("rope", [f(kk), inv], n, p, heads=kv_heads, head_dim=head_dim)
    check(got["k_cache"][p:p + n], k_ref, tol, "rope_kv k_cache")
    v_ref = caches["v_cache"].copy()
    ref_op("kv_write", [v, v_ref], n, p)
    same_bits(got["v_cache"], v_ref, "v_cache")
    for name in ("k_cache", "v_cache"):
        same_bits(got[name][:p], caches[name][:p], f"{name} rows before p")
        same_bits(got[name][p + n:], caches[name][p + n:], f"{name} rows after p+n")


# -- attention ---------------------------------------------------------------------

@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("form", ["decode", "prefill"])
@pytest.mark.parametrize("heads,kv_heads,head_dim", [(4, 2, 8), (3, 1, 12), (2, 2, 64)])
@pytest.mark.parametrize("n,p", [(1, 0), (1, 5), (7, 0), (7, 5), (1, 45), (5, 40)])
def test_attention(runner, act, form, heads, kv_heads, head_dim, n, p):
    need(runner, act)
    rng = rng_for("att", act, form, heads, kv_heads, head_dim, n, p)
    scale = 1.0 / math.sqrt(head_dim)
    kvw = kv_heads * head_dim
    q = rand(rng, (n, heads * head_dim), act, 2.0)
    ctx = p + n + EXTRA
    kc = rand(rng, (ctx, kvw), act, 2.0)
    vc = rand(rng, (ctx, kvw), act)
    kc[p + n:] = sentinel((EXTRA, kvw), act)  # never read: NaN would poison the output
    vc[p + n:] = sentinel((EXTRA, kvw), act)
    out = sentinel((n + EXTRA, heads * head_dim), act)
    k = build(AttentionKey(act, heads, kv_heads, head_dim, scale, form=form))
    got = runner.run(k, {"q": padded(q, act), "k_cache": kc, "v_cache": vc, "out": out}, n, p)["out"]
    ref = ref_op("attention", [f(q), f(kc), f(vc)], n, p, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                 scale=scale)
    check(got[:n], ref, TOL[act], k.name)
    same_bits(got[n:], out[n:], "sentinel rows")


# -- elementwise -------------------------------------------------------------------

@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("op", ["silu_mul", "add"])
@pytest.mark.parametrize("cols", [13, 127, 1000])
@pytest.mark.parametrize("n", [1, 7])
def test_elementwise(runner, act, op, cols, n):
    need(runner, act)
    rng = rng_for("ew", act, op, cols, n)
    a = rand(rng, (n, cols), act, 4.0)
    b = rand(rng, (n, cols), act)
    out = sentinel((n + EXTRA, cols), act)
    if op == "silu_mul":
        k, arrays = build(SiluMulKey(act, cols)), {"gate": padded(a, act), "up": padded(b, act)}
    else:
        k, arrays = build(AddKey(act, cols)), {"a": padded(a, act), "b": padded(b, act)}
    got = runner.run(k, {**arrays, "out": out}, n)["out"]
    check(got[:n], ref_op(op, [f(a), f(b)], n), TOL_ELEMENTWISE[act], op)
    same_bits(got[n:], out[n:], "sentinel rows")


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("cols", [13, 1000])
@pytest.mark.parametrize("n", [1, 7])
def test_last_row(runner, act, cols, n):
    need(runner, act)
    rng = rng_for("last", act, cols, n)
    x = rand(rng, (n, cols), act)
    out = sentinel((1 + EXTRA, cols), act)
    got = runner.run(build(LastRowKey(act, cols)), {"x": padded(x, act), "out": out}, n)["out"]
    same_bits(got[:1], ref_op("last_row", [x], n), "last_row")
    same_bits(got[1:], out[1:], "sentinel rows")


# -- every variant a model needs: naga validation, contract checks -----------------

def smollm_like_keys(act: str) -> list:
    """The variants of a SmolLM2-135M-shaped model (plus qk-norm and bias options) in `act`."""
    H, I, nh, nkv, hd, vocab = 576, 1536, 9, 3, 64, 49152
    keys = [EmbeddingKey(act, "q4", vocab, H), RmsNormKey(act, H, 1e-5), RmsNormKey(act, nh * hd, 1e-6, group=hd),
            AddRmsNormKey(act, H, 1e-5), AddRmsNormKey(act, H, 1e-5, inplace=True), SiluMulKey(act, I),
            AddKey(act, H), LastRowKey(act, H), KvWriteKey(act, nkv * hd),
            RopeKey(act, nh, hd), RopeKey(act, nkv, hd, to_cache=True)]
    for fmt in FORMATS:
        for rows, cols in [(nh * hd, H), (nkv * hd, H), (I, H), (H, I), (vocab, H)]:
            for prefill in (False, True):
                keys.append(matmul_key(act, fmt, rows, cols, bias=rows == nkv * hd, prefill=prefill))
        keys.append(matmul_key(act, fmt, vocab, H, last_row=True))
    for form in ("decode", "prefill"):
        for head_dim in (64, 128, 256):
            keys.append(AttentionKey(act, nh, nkv, head_dim, 1 / math.sqrt(head_dim), form=form))
    # the fused 6-dispatch layer: norm+qkv (split), rope_kv, attention, o_proj+residual,
    # norm+gate/up (silu_mul), down+residual; and the final norm fused into the LM head
    keys.append(RopeKvKey(act, nh, nkv, hd))
    for fmt in FORMATS:
        for prefill in (False, True):
            keys += [matmul_key(act, fmt, (nh + 2 * nkv) * hd, H, bias=True, prefill=prefill, norm=True,
                                norm_eps=1e-5, splits=(nh * hd, nkv * hd, nkv * hd)),
                     matmul_key(act, fmt, H, nh * hd, prefill=prefill, epilogue="residual"),
                     matmul_key(act, fmt, I, H, prefill=prefill, norm=True, norm_eps=1e-5, epilogue="silu_mul"),
                     matmul_key(act, fmt, H, I, prefill=prefill, epilogue="residual")]
        keys.append(matmul_key(act, fmt, vocab, H, last_row=True, norm=True, norm_eps=1e-5))
    return keys


@pytest.mark.parametrize("act", ACTS)
def test_model_variants_validate(runner, act):
    need(runner, act)
    import re

    for key in smollm_like_keys(act):
        k = build(key)
        runner.pipeline(k)  # naga parses + validates, the driver compiles
        declared = re.findall(r"@group\(0\) @binding\((\d+)\) var<([^>]*)> (\w+)", k.wgsl)
        assert [int(i) for i, _, _ in declared] == list(range(len(k.bindings))), k.name
        assert [nm for _, _, nm in declared] == [nm for nm, _ in k.bindings], k.name
        for (_, kind), (_, space, _) in zip(k.bindings, declared):
            assert space == ("uniform" if kind == "uniform" else f"storage, {kind}"), k.name
        assert ("enable f16;" in k.wgsl) == (act == "f16"), k.name
        assert k.wgsl.startswith(f"// {k.name}\n"), "header comment"
        for n, p in [(1, 0), (128, 1920), (1, 2047)]:
            counts = k.dispatch_for(n, p)
            assert all(1 <= c <= MAX_WORKGROUPS for c in counts), (k.name, counts)
        assert math.prod(k.workgroup_size) <= 256
        assert key_from_json(key.to_json()) == key


def test_dispatch_expressions_are_plain():
    import ast

    allowed = (ast.Expression, ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Constant, ast.Name, ast.Load)
    for key in smollm_like_keys("f32"):
        for e in build(key).dispatch:
            tree = ast.parse(e, mode="eval")
            assert all(isinstance(node, allowed) for node in ast.walk(tree)), e
            eval_dim(e, {"n": 3, "p": 4})


def test_key_errors_say_the_fix():
    with pytest.raises(ValueError, match="multiple of kv_heads"):
        build(AttentionKey("f32", 5, 2, 64, 0.1))
    with pytest.raises(ValueError, match="raise wg"):
        build(MatmulKey("f32", "q4", 200_000, 64, wg=1))
    with pytest.raises(ValueError, match="act must be"):
        build(AddKey("bf16", 8))


# -- Tint (Chromium) accepts what naga accepts ---------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-vulkan=swiftshader",
                 "--use-webgpu-adapter=swiftshader", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
_TINT_JS = """async (kernels) => {
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) return {error: 'no WebGPU adapter'};
  const f16 = adapter.features.has('shader-f16');
  const device = await adapter.requestDevice({requiredFeatures: f16 ? ['shader-f16'] : []});
  const types = {read: 'read-only-storage', read_write: 'storage', uniform: 'uniform'};
  const out = [];
  for (const k of kernels) {
    if (k.f16 && !f16) continue;
    device.pushErrorScope('validation');
    const module = device.createShaderModule({code: k.wgsl});
    const info = await module.getCompilationInfo();
    const msgs = info.messages.filter(m => m.type !== 'info').map(m => `${m.type}: ${m.message} @${m.lineNum}`);
    const bgl = device.createBindGroupLayout({entries: k.kinds.map((kind, i) =>
        ({binding: i, visibility: GPUShaderStage.COMPUTE, buffer: {type: types[kind]}}))});
    try {
      await device.createComputePipelineAsync({layout: device.createPipelineLayout({bindGroupLayouts: [bgl]}),
                                               compute: {module, entryPoint: 'main'}});
    } catch (e) { msgs.push('pipeline: ' + e.message); }
    const err = await device.popErrorScope();
    if (err) msgs.push('validation: ' + err.message);
    out.push({name: k.name, msgs});
  }
  return {out};
}"""


@pytest.mark.slow
@pytest.mark.browser
def test_tint_accepts_model_variants(tmp_path):
    """Chrome's Tint compiles every variant a model needs (f16 ones only where the adapter has shader-f16;
    SwiftShader does not)."""
    import functools
    import http.server
    import threading

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} missing: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    kernels = [build(k) for act in ACTS for k in smollm_like_keys(act)]
    payload = [{"name": k.name, "wgsl": k.wgsl, "kinds": [kind for _, kind in k.bindings],
                "f16": k.key.act == "f16"} for k in kernels]
    (tmp_path / "index.html").write_text("<html><body>kernels</body></html>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{srv.server_address[1]}/index.html")  # WebGPU needs a secure context
            res = page.evaluate(_TINT_JS, payload)
            browser.close()
    finally:
        srv.shutdown()
    assert "error" not in res, res.get("error")
    assert len(res["out"]) >= len(smollm_like_keys("f32"))
    bad = {r["name"]: r["msgs"] for r in res["out"] if r["msgs"]}
    assert not bad, bad


# -- integer dot products on packed activations (MatmulKey xq / pack) ------------------------
# Packed formats (MatmulKey docstring), per 8 columns: layout "pairs" (q4/q4a consumers) sx = max|x| /
# 255, q = round(x / sx), stored as q pairs q[j+4] + q[j] * 2^16 in 4 u32 lanes; layout "bytes" (q8
# consumers) sx = max|x| / 127, q as 8 int8 in column order in 2 u32; both with (sx, sum q). The
# numpy side below packs and unpacks independently of the kernels. A consumer must compute W . x_hat
# (x_hat = q * sx) up to f32 summation order: tolerance 1e-4 as every f32 reduction. A producer's
# packed output must decode to within half a quantization step (0.5 * sx, plus f32 rounding of the
# value itself) of its value.
QMAX = {"pairs": 255, "bytes": 127}


def pack_np(x: np.ndarray, layout: str = "pairs"):
    n, c = x.shape
    chunks = x.astype(np.float32).reshape(n, c // 8, 8)
    mx = np.abs(chunks).max(-1)
    inv = np.where(mx > 0, np.float32(QMAX[layout]) / np.where(mx > 0, mx, 1), 0).astype(np.float32)
    q = np.rint(chunks * inv[..., None]).astype(np.int32)
    if layout == "pairs":
        lanes = (q[..., 4:] + q[..., :4] * 65536).astype(np.int32).view(np.uint32)
    else:
        lanes = q.astype(np.int8).view(np.uint32)  # 8 int8 -> 2 little-endian u32
    xs = np.stack([mx / np.float32(QMAX[layout]), q.sum(-1).astype(np.float32)], -1).astype(np.float32)
    return lanes, xs, (q * xs[..., :1]).reshape(n, c)


def unpack_np(xq: np.ndarray, xs: np.ndarray, layout: str = "pairs") -> np.ndarray:
    if layout == "pairs":
        lanes = xq.view(np.int32).astype(np.int64)
        hi = ((lanes & 0xFFFF) ^ 0x8000) - 0x8000  # q[j+4]: the low half, signed
        lo = (lanes - hi) >> 16  # q[j]
        q = np.concatenate([lo, hi], -1)
    else:
        q = np.ascontiguousarray(xq).view(np.int8).astype(np.int64).reshape(*xq.shape[:-1], 8)
    assert np.abs(q).max() <= QMAX[layout]
    np.testing.assert_array_equal(q.sum(-1), xs[..., 1], err_msg="stored sum q differs from the q")
    return (q * xs[..., :1]).reshape(q.shape[0], -1)


def check_packed(xq, xs, values, what, layout="pairs"):
    """The packed output decodes to within half a step of `values` (and sx = max|values| / qmax)."""
    n, c = values.shape
    xhat = unpack_np(xq.reshape(n, c // 8, 4 if layout == "pairs" else 2), xs.reshape(n, c // 8, 2), layout)
    chunks = values.reshape(n, c // 8, 8)
    sx = xs.reshape(n, c // 8, 2)[..., 0]
    np.testing.assert_allclose(sx, np.abs(chunks).max(-1) / QMAX[layout], rtol=1e-5, atol=1e-30, err_msg=what)
    step = np.repeat(sx, 8, axis=-1).reshape(n, c)
    assert (np.abs(xhat - values) <= 0.5 * step * (1 + 1e-4) + 1e-6 * np.abs(values).max()).all(), what


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("fmt", ["q4", "q4a", "q8"])
@pytest.mark.parametrize("norm,epilogue", [(False, "none"), (True, "none"), (False, "residual"), (True, "silu_mul")])
@pytest.mark.parametrize("n,tn", [(1, 1), (3, 1), (5, 4)])
def test_matmul_packed_x_consumer(runner, act, fmt, norm, epilogue, n, tn):
    """xq=True: out = [inv(x) *] W . x_hat for the packed x_hat the producer wrote (q8: int8 x_hat,
    dot4I8Packed). tn=4: the tiled (prefill) form, 5 tokens = a full and a partial tile."""
    need(runner, act)
    layout = PACK_LAYOUTS[fmt]
    if tn > 1 and layout != "pairs":
        with pytest.raises(ValueError, match="tn=1 for q8"):
            build(MatmulKey(act=act, fmt=fmt, rows=40, cols=96, tn=tn, xq=True))
        return
    rng = rng_for("xq", act, fmt, norm, epilogue, n, tn)
    rows, cols = 40, 96
    silu = epilogue == "silu_mul"
    arrays, wd = weight_parts(rng, fmt, 2 * rows if silu else rows, cols)
    x = rand(rng, (n, cols), act, 2.0)
    nw = (rng.standard_normal(cols) * 0.5 + 1.0).astype(np.float32)
    xq, xs, xhat = pack_np(f(x) * nw if norm else f(x), layout)
    key = MatmulKey(act=act, fmt=fmt, rows=rows, cols=cols, wg=8, rpi=4, tn=tn, xq=True, norm=norm,
                    norm_eps=1e-5 if norm else 0.0, epilogue=epilogue)
    inv = 1 / np.sqrt((f(x) ** 2).mean(-1, keepdims=True) + 1e-5) if norm else 1.0
    lin = xhat.astype(np.float64) @ wd.T.astype(np.float64) * inv
    ref = lin[:, :rows] / (1 + np.exp(-lin[:, :rows])) * lin[:, rows:] if silu else lin
    inputs = {**arrays, "xq": xq, "xs": xs}
    if norm:
        inputs["x"] = padded(x, act)
    out = rand(rng, (n + EXTRA, rows), act) if epilogue == "residual" else sentinel((n + EXTRA, rows), act)
    got = runner.run(build(key), {**inputs, "out": out}, n)["out"]
    want = f(out[:n]) + ref if epilogue == "residual" else ref
    check(got[:n], want, TOL[act], key.name)
    same_bits(got[n:], out[n:], "sentinel rows")


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("xq_in", [False, True])
@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("layout", ["pairs", "bytes"])
def test_matmul_pack_residual_producer(runner, act, xq_in, n, layout):
    """pack=True with the residual epilogue: out += W . x as before, and out * pack_w packed (for a
    q4 consumer: pairs; for a q8 consumer such as the LM head: bytes)."""
    need(runner, act)
    rng = rng_for("pack-res", act, xq_in, n, layout)
    rows, cols = 48, 64
    arrays, wd = weight_parts(rng, "q4a", rows, cols)
    x = rand(rng, (n, cols), act)
    pw = (rng.standard_normal(rows) * 0.5 + 1.0).astype(np.float32)
    key = MatmulKey(act=act, fmt="q4a", rows=rows, cols=cols, wg=4, rpi=8, epilogue="residual", pack=True, xq=xq_in,
                    pack_layout=layout)
    if xq_in:
        xq, xs, xin = pack_np(f(x))
        arrays.update(xq=xq, xs=xs)
    else:
        xin = f(x)
        arrays["x"] = padded(x, act)
    out = rand(rng, (n + EXTRA, rows), act)
    got = runner.run(build(key), {**arrays, "pack_w": pw, "out": out,
                                  "outq": np.zeros((n, rows // 8, 4 if layout == "pairs" else 2), np.uint32),
                                  "outs": np.zeros((n, rows // 8, 2), np.float32)}, n)
    h = f(out[:n]) + xin.astype(np.float64) @ wd.T.astype(np.float64)
    check(got["out"][:n], h, TOL[act], key.name)
    same_bits(got["out"][n:], out[n:], "sentinel rows")
    check_packed(got["outq"], got["outs"], f(got["out"][:n]) * pw, key.name + " packed", layout)


@pytest.mark.parametrize("fmt", ["q4", "q4a", "q8"])
@pytest.mark.parametrize("layout", ["pairs", "bytes"])
def test_matmul_pack_silu_producer(runner, fmt, layout):
    """The decode gate/up form: packed x in (with the RMSNorm), silu(gate) * up packed out (for a
    q4 down projection: pairs; for a q8 one: bytes)."""
    rng = rng_for("pack-silu", fmt, layout)
    rows, cols, n = 64, 96, 2
    arrays, wd = weight_parts(rng, fmt, 2 * rows, cols)
    x = rand(rng, (n, cols), "f32", 2.0)
    nw = (rng.standard_normal(cols) * 0.5 + 1.0).astype(np.float32)
    xq, xs, xhat = pack_np(x * nw, PACK_LAYOUTS[fmt])
    key = MatmulKey(act="f32", fmt=fmt, rows=rows, cols=cols, wg=4, rpi=8, xq=True, norm=True, norm_eps=1e-5,
                    epilogue="silu_mul", pack=True, pack_layout=layout)
    assert "out" not in dict(build(key).bindings)
    got = runner.run(build(key), {**arrays, "x": padded(x, "f32"), "xq": xq, "xs": xs,
                                  "outq": np.zeros((n, rows // 8, 4 if layout == "pairs" else 2), np.uint32),
                                  "outs": np.zeros((n, rows // 8, 2), np.float32)}, n)
    lin = xhat.astype(np.float64) @ wd.T.astype(np.float64) / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + 1e-5)
    v = lin[:, :rows] / (1 + np.exp(-lin[:, :rows])) * lin[:, rows:]
    # the kernel packs its own f32 value; vs the f64 value allow the f32 tolerance on top of half a step
    xhat_got = unpack_np(got["outq"], got["outs"], layout)
    step = np.repeat(got["outs"][..., 0], 8, axis=-1)
    assert (np.abs(xhat_got - v) <= 0.5 * step * (1 + 1e-4) + 1e-4 * np.abs(v).max()).all()


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("layout", ["pairs", "bytes"])
def test_rms_norm_packs(runner, act, layout):
    """RmsNormKey pack=True (the prefill norms of the idot programs): rms_norm(x) * w written packed only.
    The f32 value differs from ref_op's by f32 rounding (1e-4 relative, as test_rms_norm), on top of
    half a quantization step."""
    need(runner, act)
    rng = rng_for("rms-pack", act, layout)
    n, cols = 5, 96
    x = rand(rng, (n, cols), act, 3.0)
    w = rng.standard_normal(cols).astype(np.float32)
    k = build(RmsNormKey(act, cols, eps=1e-5, pack=True, pack_layout=layout))
    assert "out" not in dict(k.bindings)
    got = runner.run(k, {"x": padded(x, act), "w": w,
                         "outq": np.zeros((n, cols // 8, 4 if layout == "pairs" else 2), np.uint32),
                         "outs": np.zeros((n, cols // 8, 2), np.float32)}, n)
    want = ref_op("rms_norm", [f(x), w], n, eps=1e-5)
    xhat = unpack_np(got["outq"], got["outs"], layout)
    step = np.repeat(got["outs"][..., 0], 8, axis=-1)
    assert (np.abs(xhat - want) <= 0.5 * step * (1 + 1e-4) + 1e-4 * np.abs(want).max()).all()
    with pytest.raises(ValueError, match="pack"):
        build(RmsNormKey(act, 100, eps=1e-5, pack=True))  # cols % 8


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("layout", ["pairs", "bytes"])
def test_pack_kernel(runner, act, layout):
    """PackKey: x packed as is (the prefill inputs of the o and down projections)."""
    need(runner, act)
    rng = rng_for("pack", act, layout)
    n, cols = 3, 80
    x = rand(rng, (n, cols), act, 3.0)
    x[1, 8:16] = 0  # an all-zero chunk: sx = 0, q = 0
    got = runner.run(build(PackKey(act, cols, layout=layout)),
                     {"x": padded(x, act), "outq": np.zeros((n, cols // 8, 4 if layout == "pairs" else 2), np.uint32),
                      "outs": np.zeros((n, cols // 8, 2), np.float32)}, n)
    check_packed(got["outq"], got["outs"], f(x), "pack", layout)
    with pytest.raises(ValueError, match="cols % 8"):
        build(PackKey(act, 84))


@pytest.mark.parametrize("layout", ["pairs", "bytes"])
def test_pack_marks_non_finite_chunks(runner, layout):
    """A chunk holding NaN or inf gets sx = NaN (so the consumer's output is NaN, as on the float
    path); the other chunks pack as usual."""
    rng = rng_for("pack-nan", layout)
    x = rand(rng, (1, 32), "f32", 3.0)
    x[0, 3], x[0, 17] = np.nan, np.inf  # chunks 0 and 2
    got = runner.run(build(PackKey("f32", 32, layout=layout)),
                     {"x": padded(x, "f32"), "outq": np.zeros((1, 4, 4 if layout == "pairs" else 2), np.uint32),
                      "outs": np.zeros((1, 4, 2), np.float32)}, 1)
    sx = got["outs"][0, :, 0]
    assert np.isnan(sx[[0, 2]]).all()
    np.testing.assert_allclose(sx[[1, 3]], np.abs(x[0].reshape(4, 8)[[1, 3]]).max(-1) / QMAX[layout], rtol=1e-6)


def test_matmul_packed_lm_head(runner):
    """The idot LM head: q8 weight, RMSNorm prologue, last row only, x packed as int8 bytes."""
    rng = rng_for("xq-lm-head")
    rows, cols, n = 72, 128, 3
    arrays, wd = weight_parts(rng, "q8", rows, cols)
    x = rand(rng, (n, cols), "f32", 2.0)
    nw = (rng.standard_normal(cols) * 0.5 + 1.0).astype(np.float32)
    xq, xs, xhat = pack_np(x * nw, "bytes")
    key = MatmulKey(act="f32", fmt="q8", rows=rows, cols=cols, wg=4, rpi=8, xq=True, norm=True, norm_eps=1e-5,
                    last_row=True)
    assert wgsl_features(build(key).wgsl) == ["packed_4x8_integer_dot_product"]
    got = runner.run(build(key), {**arrays, "x": padded(x, "f32"), "xq": xq, "xs": xs,
                                  "out": sentinel((1 + EXTRA, rows), "f32")}, n)["out"]
    inv = 1 / np.sqrt((x[-1].astype(np.float64) ** 2).mean() + 1e-5)
    check(got[:1], (xhat[-1].astype(np.float64) @ wd.T.astype(np.float64) * inv)[None], TOL["f32"], key.name)
    same_bits(got[1:], sentinel((1 + EXTRA, rows), "f32")[1:], "sentinel rows")


def test_matmul_packed_key_checks():
    with pytest.raises(ValueError, match="xq"):
        build(MatmulKey(act="f32", fmt="f16", rows=8, cols=64, xq=True))
    with pytest.raises(ValueError, match="pack_layout"):
        build(MatmulKey(act="f32", fmt="q4", rows=8, cols=64, rpi=8, epilogue="residual", pack=True, pack_layout="nibbles"))
    with pytest.raises(ValueError, match="pack_layout"):
        build(MatmulKey(act="f32", fmt="q4", rows=8, cols=64, pack_layout="bytes"))  # without pack
    with pytest.raises(ValueError, match="xq"):
        build(MatmulKey(act="f32", fmt="q4", rows=8, cols=48, xq=True))  # cols % 32
    with pytest.raises(ValueError, match="pack"):
        build(MatmulKey(act="f32", fmt="q4", rows=8, cols=64, rpi=4, epilogue="residual", pack=True))
    with pytest.raises(ValueError, match="pack"):
        build(MatmulKey(act="f32", fmt="q4", rows=12, cols=64, rpi=8, epilogue="residual", pack=True))
