"""q4/q8/f16 encode-decode against an independent implementation (tests/quant_oracle.py).

Tolerance: exact (0) for q4/q8 decode vs the oracle — both compute the same
f16 scale and integer codes; f16: exact vs numpy's own float16 rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

from quant_oracle import QMAX, fake_quantize, unpack_row
from webllm_py.quant import dequantize, quantization_error, quantize

SHAPES = [(1, 1), (3, 13), (13, 127), (5, 1000), (2, 32), (7, 64)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fmt", ["q4", "q8"])
def test_group_quantization_matches_oracle(fmt, shape):
    rng = np.random.default_rng(hash(shape) % 2**32)
    w = (rng.standard_normal(shape) * rng.uniform(0.01, 3)).astype(np.float32)
    w[0, : min(5, shape[1])] = 0.0  # a partly zero group
    parts = quantize(w, fmt)
    groups = -(-shape[1] // 32)
    assert parts["data"].dtype == np.uint32 and parts["data"].shape == (shape[0], groups * 32 * (4 if fmt == "q4" else 8) // 32)
    assert parts["scales"].dtype == np.float16 and parts["scales"].shape == (shape[0], groups)
    decoded = dequantize(parts, fmt, shape)
    np.testing.assert_array_equal(decoded, fake_quantize(w, fmt))
    # the bit layout itself, decoded with plain Python ints
    for r in range(shape[0]):
        codes = unpack_row(parts["data"][r], fmt, shape[1])
        scales = parts["scales"][r].astype(np.float32)
        expect = [c * scales[i // 32] for i, c in enumerate(codes)]
        np.testing.assert_array_equal(np.array(expect, dtype=np.float32), decoded[r])
    # error bound per element: half a quantization step of its group
    step = parts["scales"].astype(np.float32).repeat(32, axis=1)[:, : shape[1]]
    assert np.all(np.abs(decoded - w) <= 0.5 * step + 1e-3 * step + 1e-12)


def test_all_zero_tensor_and_extremes():
    w = np.zeros((2, 40), dtype=np.float32)
    for fmt in ("q4", "q8"):
        np.testing.assert_array_equal(dequantize(quantize(w, fmt), fmt, w.shape), w)
    w = np.array([[-1.0] + [0.5] * 31], dtype=np.float32)  # q4: -1 -> -7*scale exactly, no clipping to -8
    d = dequantize(quantize(w, "q4"), "q4", w.shape)
    np.testing.assert_allclose(d[0, 0], -1.0, rtol=1e-3)


def test_f16_and_f32_roundtrip():
    w = np.random.default_rng(0).standard_normal((13, 77)).astype(np.float32)
    np.testing.assert_array_equal(dequantize(quantize(w, "f16"), "f16", w.shape), w.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(dequantize(quantize(w, "f32"), "f32", w.shape), w)


def test_quantization_error_stats():
    w = np.random.default_rng(1).standard_normal((64, 96)).astype(np.float32)
    err = quantization_error(w, dequantize(quantize(w, "q4"), "q4", w.shape))
    d = fake_quantize(w, "q4") - w
    assert err["max_abs"] == pytest.approx(np.abs(d).max(), rel=1e-6)
    assert err["rms"] == pytest.approx(np.sqrt(np.mean(d.astype(np.float64) ** 2)), rel=1e-6)
    assert 0.05 < err["rms"] / err["weight_rms"] < 0.2  # q4 on Gaussian weights: ~10% relative RMS
    assert QMAX["q4"] == 7
