"""GPU-class decode attention (flash-decoding: attention_split + attention_combine) and the
packed-f16 KV cache ("f16x2") writers (rope_kv, kv_write, rope to_cache), on wgpu-py (lavapipe)
against the numpy op references of webllm_py/ir/ops.py.

Error measure and sentinels as tests/test_kernels.py (whose helpers this module uses): max
|got - ref| / max |ref| over the valid region; NaN/Inf there fails; cache rows before p and
after p+n must come back bit-identical; KV rows past p+n hold NaN so a kernel reading them fails.

Tolerances, and why:

| what                              | tol        | why                                                      |
|-----------------------------------|------------|----------------------------------------------------------|
| rope / rope_kv k -> f16x2 cache   | 2e-3       | the rotated f32 value is rounded to f16 once at the store |
|                                   | (x10 at    | (2^-11 = 4.9e-4 relative) on top of rope's f32 math;      |
|                                   | p = 4000)  | p = 4000 as test_kernels.py's rope                        |
| kv_write / rope_kv v -> f16x2     | 1 f16 ulp  | a copy through pack2x16float: the nearest f16 (WGSL       |
|                                   | per elem   | allows either neighbour, so one ulp, not exact bits)      |
| attention over an f32 KV cache    | 1e-4       | f32 sums of <= 1,000 terms in another order than numpy's  |
| attention over an f16x2 KV cache  | 1e-4       | the reference reads the same f16 values (the cache array  |
|                                   |            | is made in f16), so only f32 ordering remains; the f16    |
|                                   |            | rounding of K/V itself is the writers' 2e-3 above         |
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from webllm_py.codegen import KvWriteKey, RopeKey, RopeKvKey, build
from webllm_py.codegen.encoder_kernels import RowRopeKey

from test_kernels import (  # noqa: F401  (runner: the module's lavapipe fixture)
    EXTRA,
    TOL_ELEMENTWISE,
    check,
    f,
    inv_freq_for,
    padded,
    rand,
    ref_op,
    rng_for,
    runner,
    same_bits,
    sentinel,
)


def f16_close(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    """got (f16) is within one f16 ulp of the f32 values ref (normal range)."""
    g, r = got.astype(np.float32), ref.astype(np.float32)
    assert np.isfinite(g).all(), f"{what}: non-finite values"
    bad = np.abs(g - r) > np.abs(r) * 2.0 ** -10 + 2.0 ** -24
    assert not bad.any(), f"{what}: {int(bad.sum())} values more than one f16 ulp off"


# -- existing kernels stay byte-identical --------------------------------------------

# sha256 (first 16 hex digits) of keys without `kv`, rendered before the field was added
GOLDEN = {
    RopeKey("f32", 9, 64): "71c0c804652acecc",
    RopeKey("f16", 3, 80, to_cache=True): "54a80d26d35192fb",
    RopeKey("f32", 4, 64, to_cache=True, wg=32): "00566dbe29a5131e",
    RowRopeKey("f32", 12, 64): "a8532e05dad2f0ed",
    KvWriteKey("f32", 192): "6a15083809398840",
    KvWriteKey("f16", 320): "49bbd75202ff5db9",
    RopeKvKey("f32", 9, 3, 64): "ad1be3f9cd55759f",
    RopeKvKey("f16", 16, 4, 80, wg=128): "a3c97d27d06f9633",
}


@pytest.mark.parametrize("key", list(GOLDEN), ids=lambda k: k.name)
def test_existing_kv_kernels_unchanged(key):
    kern = build(key)
    assert "_kv-" not in kern.name and "kv" not in key.to_json()
    assert hashlib.sha256(kern.wgsl.encode()).hexdigest()[:16] == GOLDEN[key]


def test_kv_key_errors():
    with pytest.raises(ValueError, match="kv must be one of"):
        build(KvWriteKey("f32", 64, kv="f8"))
    with pytest.raises(ValueError, match="multiple of 4"):
        build(KvWriteKey("f32", 66, kv="f16x2"))
    with pytest.raises(ValueError, match="head_dim % 4"):
        build(RopeKvKey("f32", 4, 2, 6, kv="f16x2"))
    with pytest.raises(ValueError, match="to_cache=True only"):
        build(RopeKey("f32", 2, 8, kv="f16x2"))


# -- f16x2 cache writers --------------------------------------------------------------

def f16_cache(rng, p: int, n: int, width: int) -> np.ndarray:
    """An f16x2 cache as its f16 view: earlier tokens before p, NaN from p on (rows p..p+n-1
    must be written, rows after kept)."""
    c = rand(rng, (p + n + EXTRA, width), "f16")
    c[p:] = sentinel((n + EXTRA, width), "f16")
    return c


@pytest.mark.parametrize("width", [4, 132])
@pytest.mark.parametrize("n,p", [(1, 0), (1, 5), (7, 5)])
def test_kv_write_f16x2(runner, width, n, p):
    rng = rng_for("kv16", width, n, p)
    x = rand(rng, (n, width), "f32")
    cache = f16_cache(rng, p, n, width)
    got = runner.run(build(KvWriteKey("f32", width, kv="f16x2")), {"x": padded(x, "f32"), "cache": cache}, n, p)["cache"]
    ref = cache.astype(np.float32)
    ref_op("kv_write", [x, ref], n, p)
    f16_close(got[p:p + n], ref[p:p + n], "kv_write f16x2")
    same_bits(got[:p], cache[:p], "cache rows before p")
    same_bits(got[p + n:], cache[p + n:], "cache rows after p+n")


@pytest.mark.parametrize("heads,kv_heads,head_dim", [(3, 1, 4), (4, 2, 64), (2, 2, 80)])
@pytest.mark.parametrize("n,p", [(1, 0), (7, 5), (3, 4000)])
def test_rope_kv_f16x2(runner, heads, kv_heads, head_dim, n, p):
    rng = rng_for("ropekv16", heads, kv_heads, head_dim, n, p)
    qw, kvw = heads * head_dim, kv_heads * head_dim
    q, kk, v = rand(rng, (n, qw), "f32"), rand(rng, (n, kvw), "f32"), rand(rng, (n, kvw), "f32")
    inv = inv_freq_for(head_dim)
    caches = {name: f16_cache(rng, p, n, kvw) for name in ("k_cache", "v_cache")}
    qbuf = padded(q, "f32")
    k = build(RopeKvKey("f32", heads, kv_heads, head_dim, kv="f16x2"))
    got = runner.run(k, {"q": qbuf, "k": padded(kk, "f32"), "v": padded(v, "f32"), "inv_freq": inv, **caches}, n, p)
    scale = 10 if p > 1000 else 1
    check(got["q"][:n], ref_op("rope", [q, inv], n, p, heads=heads, head_dim=head_dim),
          TOL_ELEMENTWISE["f32"] * scale, "rope_kv q (f32, in place)")
    same_bits(got["q"][n:], qbuf[n:], "q rows past n")
    k_ref = ref_op("rope", [kk, inv], n, p, heads=kv_heads, head_dim=head_dim)
    check(got["k_cache"][p:p + n], k_ref, 2e-3 * scale, "rope_kv k -> f16x2 cache")
    f16_close(got["v_cache"][p:p + n], v, "rope_kv v -> f16x2 cache")
    for name in ("k_cache", "v_cache"):
        same_bits(got[name][:p], caches[name][:p], f"{name} rows before p")
        same_bits(got[name][p + n:], caches[name][p + n:], f"{name} rows after p+n")


@pytest.mark.parametrize("heads,head_dim", [(3, 4), (2, 64)])
@pytest.mark.parametrize("n,p", [(1, 5), (7, 0), (3, 4000)])
def test_rope_to_f16x2_cache(runner, heads, head_dim, n, p):
    rng = rng_for("rope16", heads, head_dim, n, p)
    width = heads * head_dim
    x = rand(rng, (n, width), "f32")
    inv = inv_freq_for(head_dim)
    cache = f16_cache(rng, p, n, width)
    k = build(RopeKey("f32", heads, head_dim, to_cache=True, kv="f16x2"))
    got = runner.run(k, {"x": padded(x, "f32"), "inv_freq": inv, "cache": cache}, n, p)["cache"]
    ref = ref_op("rope", [x, inv], n, p, heads=heads, head_dim=head_dim)
    check(got[p:p + n], ref, 2e-3 * (10 if p > 1000 else 1), "rope -> f16x2 cache")
    same_bits(got[:p], cache[:p], "cache rows before p")
    same_bits(got[p + n:], cache[p + n:], "cache rows after p+n")
