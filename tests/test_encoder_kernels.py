"""The encoder kernel families (codegen/encoder_kernels.py) on wgpu-py against the ir op references.

Error measure and tolerances as tests/test_kernels.py: max |got - ref| / max |ref|;
f32 reductions (layer_norm, attention, pool) 1e-4, f32 elementwise 1e-5 (gelu's erf is
Abramowitz-Stegun 7.1.26, |error| <= 1.5e-7 absolute, plus the driver's exp), f16 2e-3
(the output rounded to f16, the reference run on the same f16-rounded inputs). Output
buffers carry NaN sentinel rows past the valid ones, which must come back unchanged.
The batch is packed rows of lengths 5, 1, 12, 7 (one single-token row).
"""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

from webllm_py.codegen import build
from webllm_py.codegen.encoder_kernels import (
    EncoderAttentionKey,
    GeluKey,
    LayerNormKey,
    PoolKey,
    PositionAddKey,
    RowRopeKey,
)
from webllm_py.ir.ops import OPS
from webllm_py.runtime.embedder import pack_rows

NP = {"f32": np.float32, "f16": np.float16}
TOL = {"f32": 1e-4, "f16": 2e-3}
LENGTHS = (5, 1, 12, 7)
EXTRA = 3  # sentinel rows


@pytest.fixture(scope="module")
def runner():
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    from webllm_py.codegen.runner import KernelRunner, request_device

    return KernelRunner(request_device()[1])


def need(runner, act):
    if act == "f16" and "shader-f16" not in runner.device.features:
        pytest.fail("adapter lacks shader-f16 (lavapipe has it): the f16 set cannot be checked")


def batch():
    ids, rows, offsets = pack_rows([[0] * n for n in LENGTHS])
    return rows, offsets, len(rows)


def rand(key, shape, act, scale=1.0):
    rng = np.random.default_rng(zlib.crc32(repr(key).encode()))
    return (rng.standard_normal(shape) * scale).astype(NP[act])


def with_sentinel(arr, act):
    pad = np.full((EXTRA,) + arr.shape[1:], np.nan, dtype=NP[act])
    return np.concatenate([arr, pad])


def check(got, ref, tol, act):
    got, ref = got.astype(np.float32), ref.astype(np.float32)
    valid = got[: len(ref)]
    assert np.all(np.isfinite(valid))
    assert np.abs(valid - ref).max() / max(np.abs(ref).max(), 1e-30) <= tol
    assert np.all(np.isnan(got[len(ref):])), "a kernel wrote past the valid rows"


def ref_op(op, inputs, **attrs):
    return OPS[op].reference([np.asarray(a, dtype=np.float32) if a.dtype.kind == "f" else a for a in inputs],
                             attrs, None)


@pytest.mark.parametrize("act", ["f32", "f16"])
def test_position_add(runner, act):
    need(runner, act)
    rows, offsets, n = batch()
    H, P, off = 24, 16, 2
    x = rand(("pa", act), (n, H), act)
    tt, pos = rand("tt", (2, H), "f32"), rand("pos", (P, H), "f32")
    k = build(PositionAddKey(act=act, hidden=H, positions=P, position_offset=off))
    got = runner.run(k, {"x": with_sentinel(x, act), "rows": rows, "offsets": offsets, "token_type": tt,
                         "position": pos}, n=n)["x"]
    word = x.astype(np.float32)  # the op's reference looks the word rows up: here they are x itself
    ref = ref_op("encoder_embedding", [np.arange(n, dtype=np.int32), rows, offsets, word, tt, pos], position_offset=off)
    check(got, ref, TOL[act] if act == "f16" else 1e-6, act)


@pytest.mark.parametrize("act", ["f32", "f16"])
@pytest.mark.parametrize("cols", [24, 384])
def test_layer_norm(runner, act, cols):
    need(runner, act)
    n = 9
    x = rand(("ln", act, cols), (n, cols), act, 3.0) + NP[act](2.0)  # an offset mean: the two-pass variance matters
    w, b = rand("w", (cols,), "f32") + 1, rand("b", (cols,), "f32")
    k = build(LayerNormKey(act=act, cols=cols, eps=1e-12))
    got = runner.run(k, {"x": x, "w": w, "b": b, "out": with_sentinel(np.zeros_like(x), act)}, n=n)["out"]
    check(got, ref_op("layer_norm", [x, w, b], eps=1e-12), TOL[act], act)


@pytest.mark.parametrize("act", ["f32", "f16"])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("cols", [16, 18])  # vec4 and scalar forms
def test_gelu(runner, act, approximate, cols):
    need(runner, act)
    n = 7
    x = rand(("gelu", act, cols), (n, cols), act, 4.0)
    x[0, :4] = np.array([-30.0, 30.0, 0.0, -0.5], dtype=NP[act])  # far tails (exp overflow) and the origin
    k = build(GeluKey(act=act, cols=cols, approximate=approximate))
    got = runner.run(k, {"x": x, "out": with_sentinel(np.zeros_like(x), act)}, n=n)["out"]
    check(got, ref_op("gelu", [x], approximate=approximate), 1e-5 if act == "f32" else TOL[act], act)


@pytest.mark.parametrize("act", ["f32", "f16"])
def test_encoder_attention(runner, act):
    need(runner, act)
    rows, offsets, n = batch()
    heads, hd = 3, 8
    q, k_, v = (rand(("att", t, act), (n, heads * hd), act) for t in "qkv")
    key = build(EncoderAttentionKey(act=act, heads=heads, head_dim=hd, scale=hd ** -0.5))
    got = runner.run(key, {"q": q, "k_cache": k_, "v_cache": v, "rows": rows, "offsets": offsets,
                           "out": with_sentinel(np.zeros_like(q), act)}, n=n)["out"]
    check(got, ref_op("encoder_attention", [q, k_, v, rows, offsets], heads=heads, head_dim=hd, scale=hd ** -0.5),
          TOL[act], act)


@pytest.mark.parametrize("act", ["f32", "f16"])
def test_causal_gqa_attention(runner, act):
    # a decoder used as an embedder: 4 query heads over 2 kv heads, each token sees its row up to itself
    need(runner, act)
    rows, offsets, n = batch()
    heads, kv_heads, hd = 4, 2, 12
    q = rand(("catt", "q", act), (n, heads * hd), act)
    k_, v = (rand(("catt", t, act), (n, kv_heads * hd), act) for t in "kv")
    key = build(EncoderAttentionKey(act=act, heads=heads, head_dim=hd, scale=hd ** -0.5, kv_heads=kv_heads, causal=True))
    got = runner.run(key, {"q": q, "k_cache": k_, "v_cache": v, "rows": rows, "offsets": offsets,
                           "out": with_sentinel(np.zeros_like(q), act)}, n=n)["out"]
    ref = ref_op("encoder_attention", [q, k_, v, rows, offsets], heads=heads, kv_heads=kv_heads, head_dim=hd,
                 scale=hd ** -0.5, causal=True)
    check(got, ref, TOL[act], act)


@pytest.mark.parametrize("act", ["f32", "f16"])
def test_row_rope(runner, act):
    need(runner, act)
    rows, offsets, n = batch()
    heads, hd = 2, 24
    x = rand(("rope", act), (n, heads * hd), act)
    inv_freq = (1.0 / 10000 ** (np.arange(0, hd, 2) / hd)).astype(np.float32)
    k = build(RowRopeKey(act=act, heads=heads, head_dim=hd))
    got = runner.run(k, {"x": x, "inv_freq": inv_freq, "rows": rows, "offsets": offsets,
                         "out": with_sentinel(np.zeros_like(x), act)}, n=n)["out"]
    # elementwise math with the driver's sin/cos at positions < 12: the f32 elementwise bound
    check(got, ref_op("row_rope", [x, inv_freq, rows, offsets], heads=heads, head_dim=hd),
          1e-5 if act == "f32" else TOL[act], act)


@pytest.mark.parametrize("act", ["f32", "f16"])
@pytest.mark.parametrize("mode", ["mean", "cls", "last"])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("cols", [24, 100])  # fewer and more columns than the 64 lanes
def test_pool(runner, act, mode, normalize, cols):
    need(runner, act)
    rows, offsets, n = batch()
    x = rand(("pool", act, cols), (n, cols), act)
    k = build(PoolKey(act=act, cols=cols, mode=mode, normalize=normalize))
    b = len(offsets) - 1
    got = runner.run(k, {"x": x, "offsets": offsets, "out": with_sentinel(np.zeros((b, cols), NP[act]), act)},
                     n=n, b=b)["out"]
    ref = ref_op("pool", [x, offsets], mode=mode)
    if normalize:
        ref = ref_op("l2_normalize", [ref])
    check(got, ref, TOL[act], act)


def test_bad_keys_are_refused():
    for key, msg in [(PoolKey(act="f32", cols=8, mode="max", normalize=False), "mode must be one of"),
                     (PoolKey(act="f32", cols=5000, mode="mean", normalize=True), "workgroup storage"),
                     (GeluKey(act="f32", cols=8, approximate="sigmoid"), "approximate must be one of"),
                     (EncoderAttentionKey(act="f32", heads=2, head_dim=6, scale=1.0), "multiple of 4"),
                     (EncoderAttentionKey(act="f32", heads=3, head_dim=8, scale=1.0, kv_heads=2), "not a multiple of kv_heads"),
                     (RowRopeKey(act="f32", heads=2, head_dim=7), "head_dim must be even"),
                     (LayerNormKey(act="bf16", cols=8, eps=1e-5), "act must be one of")]:
        with pytest.raises(ValueError, match=msg):
            build(key)
