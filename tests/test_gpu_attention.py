"""GPU-class decode attention (flash-decoding: attention_split + attention_combine) and the
packed-f16 KV cache ("f16x2") writers (rope_kv, kv_write, rope to_cache), on wgpu-py (lavapipe)
and, marked browser + slow, on Chromium's SwiftShader (Tint, 4-wide subgroups) through
webllm_py/testing/browser_kernels.py, against the numpy op references of webllm_py/ir/ops.py.

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
| rope_kv q on SwiftShader (f32)    | 5e-4       | SwiftShader's sin/cos: 1.4e-4 measured, as much for the   |
|                                   |            | existing kv '' kernel (lavapipe ~1e-6)                    |
| attention over an f32 KV cache    | 1e-4       | f32 sums of <= 1,000 terms in another order than numpy's  |
| attention, f16 activations        | 2e-3       | q read and out rounded to f16 (2^-11 relative)            |
| attention over an f16x2 KV cache  | 1e-4       | the reference reads the same f16 values (the cache array  |
|                                   |            | is made in f16), so only f32 ordering remains; the f16    |
|                                   |            | rounding of K/V itself is the writers' 2e-3 above         |
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from webllm_py.codegen import KvWriteKey, RopeKey, RopeKvKey, build
from webllm_py.codegen.attention_gpu import (
    DEFAULT_BLOCK,
    AttentionSplitKey,
    attention_combine_key,
    attention_split_key,
    partial_elements,
    split_storage,
)
from webllm_py.codegen.encoder_kernels import RowRopeKey
from webllm_py.codegen.runner import has_subgroups
from webllm_py.codegen.wgsl_compat import uses_subgroups
from webllm_py.testing.browser_kernels import browser_kernel_runner  # noqa: F401  (the SwiftShader fixture)

from test_kernels import (  # noqa: F401  (runner: the module's lavapipe fixture)
    EXTRA,
    TOL_ELEMENTWISE,
    check,
    f,
    inv_freq_for,
    need,
    padded,
    rand,
    ref_op,
    rng_for,
    runner,
    same_bits,
    sentinel,
)


TOL_SWIFTSHADER_TRIG = 5e-4  # module docstring table


def f16_close(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    """got (f16) is within one f16 ulp of the f32 values ref (normal range)."""
    g, r = got.astype(np.float32), ref.astype(np.float32)
    assert np.isfinite(g).all(), f"{what}: non-finite values"
    bad = np.abs(g - r) > np.abs(r) * 2.0 ** -10 + 2.0 ** -24
    assert not bad.any(), f"{what}: {int(bad.sum())} values more than one f16 ulp off"


# -- existing kernels stay byte-identical --------------------------------------------

# sha256 (first 16 hex digits) of keys without `kv`, rendered before the field was added; the rope
# kernels' renewed once since, when their sin/cos became _sincos.wgsl's polynomials (088d6bb)
GOLDEN = {
    RopeKey("f32", 9, 64): "0606faa13d1ed155",
    RopeKey("f16", 3, 80, to_cache=True): "ee1e675c5aa545e5",
    RopeKey("f32", 4, 64, to_cache=True, wg=32): "ebe1c750be675158",
    RowRopeKey("f32", 12, 64): "925f5b2a3084eed0",
    KvWriteKey("f32", 192): "6a15083809398840",
    KvWriteKey("f16", 320): "49bbd75202ff5db9",
    RopeKvKey("f32", 9, 3, 64): "b86abf90cae9c517",
    RopeKvKey("f16", 16, 4, 80, wg=128): "600503c231a5aaa3",
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


# -- flash-decoding ---------------------------------------------------------------------

def run_flash(runner, key: AttentionSplitKey, q, kc, vc, n: int, p: int) -> np.ndarray:
    """attention_split then attention_combine, the partial scratch sized by partial_elements;
    returns the combine's out buffer (n valid rows + EXTRA sentinel rows)."""
    heads, hd = key.heads, key.head_dim
    partial = np.zeros(partial_elements(heads, hd, kc.shape[0], key.block, n), np.float32)
    part = runner.run(build(key), {"q": padded(q, key.act), "k_cache": kc, "v_cache": vc, "partial": partial},
                      n, p)["partial"]
    out = sentinel((n + EXTRA, heads * hd), key.act)
    comb = build(attention_combine_key(key.act, heads, hd, key.block))
    got = runner.run(comb, {"partial": part, "out": out}, n, p)["out"]
    same_bits(got[n:], out[n:], "out rows past n")
    return got[:n]


def kv_caches(rng, kv: str, act: str, p: int, n: int, kvw: int):
    """K and V caches of p + n valid rows then NaN rows, in the cache storage's dtype."""
    dt = "f16" if kv == "f16x2" else act
    kc, vc = rand(rng, (p + n + EXTRA, kvw), dt, 2.0), rand(rng, (p + n + EXTRA, kvw), dt)
    kc[p + n:] = sentinel((EXTRA, kvw), dt)  # never read: NaN would poison the output
    vc[p + n:] = sentinel((EXTRA, kvw), dt)
    return kc, vc


def need_subgroups(runner, subgroups: bool) -> None:
    if subgroups and not has_subgroups(runner.device):
        pytest.skip("adapter lacks subgroups: the subgroup variant cannot run here")


B = 16  # a small key block so that contexts past several blocks stay quick on lavapipe


@pytest.mark.parametrize("kv", ["", "f16x2"])
@pytest.mark.parametrize("subgroups", [False, True])
@pytest.mark.parametrize("heads,kv_heads,head_dim", [(4, 4, 64), (8, 2, 80)])
@pytest.mark.parametrize("n,p", [(1, 0), (1, 5), (1, B - 1), (1, B), (1, 3 * B + 7), (2, 3 * B + 7), (2, B - 1)])
def test_flash_decoding(runner, kv, subgroups, heads, kv_heads, head_dim, n, p):
    need_subgroups(runner, subgroups)
    rng = rng_for("flash", kv, heads, kv_heads, head_dim, n, p)
    scale = 1.0 / math.sqrt(head_dim)
    q = rand(rng, (n, heads * head_dim), "f32", 2.0)
    kc, vc = kv_caches(rng, kv, "f32", p, n, kv_heads * head_dim)
    # wg 32 with head_dim/4 = 16 or 20 lanes: two V slices, and several subgroups on both emulators
    key = AttentionSplitKey("f32", kv, heads, kv_heads, head_dim, scale, block=B, wg=32, subgroups=subgroups)
    got = run_flash(runner, key, q, kc, vc, n, p)
    ref = ref_op("attention", [q, f(kc), f(vc)], n, p, heads=heads, kv_heads=kv_heads, head_dim=head_dim, scale=scale)
    check(got, ref, 1e-4, key.name)


@pytest.mark.parametrize("kv", ["", "f16x2"])
def test_flash_decoding_f16_activations(runner, kv):
    """act f16 (q and out f16; needs shader-f16): the output is rounded to f16 once, so 2e-3."""
    need(runner, "f16")
    n, p, heads, kv_heads, hd = 2, 3 * B + 7, 8, 2, 80
    rng = rng_for("flash16", kv)
    q = rand(rng, (n, heads * hd), "f16", 2.0)
    kc, vc = kv_caches(rng, kv, "f16", p, n, kv_heads * hd)
    key = AttentionSplitKey("f16", kv, heads, kv_heads, hd, 0.1, block=B, wg=32, subgroups=has_subgroups(runner.device))
    got = run_flash(runner, key, q, kc, vc, n, p)
    ref = ref_op("attention", [f(q), f(kc), f(vc)], n, p, heads=heads, kv_heads=kv_heads, head_dim=hd, scale=0.1)
    check(got, ref, 2e-3, key.name)


@pytest.mark.parametrize("n,p", [(1, 300), (2, 299)])
def test_flash_decoding_many_blocks(runner, n, p):
    """More blocks (block 4: 76) than the combine kernel has lanes (64): each lane merges several
    partials online before the tree, a path the contexts above do not reach."""
    rng = rng_for("flash-many", n, p)
    q = rand(rng, (n, 2 * 16), "f32", 2.0)
    kc, vc = kv_caches(rng, "", "f32", p, n, 16)
    key = AttentionSplitKey("f32", "", 2, 1, 16, 0.25, block=4, wg=8)
    got = run_flash(runner, key, q, kc, vc, n, p)
    check(got, ref_op("attention", [q, kc, vc], n, p, heads=2, kv_heads=1, head_dim=16, scale=0.25), 1e-4, key.name)


@pytest.mark.parametrize("subgroups", [False, True])
@pytest.mark.parametrize("n,p", [(1, 130), (1, 300)])
def test_flash_decoding_defaults(runner, subgroups, n, p):
    """The default-tuned keys (block 128 on 128 lanes: one key per lane) past one and two blocks."""
    need_subgroups(runner, subgroups)
    heads, kv_heads, hd = 16, 4, 64
    rng = rng_for("flash-default", subgroups, n, p)
    q = rand(rng, (n, heads * hd), "f32", 2.0)
    kc, vc = kv_caches(rng, "f16x2", "f32", p, n, kv_heads * hd)
    key = attention_split_key("f32", "f16x2", heads, kv_heads, hd, 0.125, subgroups=subgroups)
    assert (key.block, key.wg) == (DEFAULT_BLOCK, 128)
    got = run_flash(runner, key, q, kc, vc, n, p)
    ref = ref_op("attention", [q, f(kc), f(vc)], n, p, heads=heads, kv_heads=kv_heads, head_dim=hd, scale=0.125)
    check(got, ref, 1e-4, key.name)


def test_flash_decoding_plan():
    """Parallelism grows with the context: at p = 4096 (16 heads / 4 kv heads, head_dim 64) the
    split kernel runs >= 32 invocations per head; the scratch fits every record it indexes."""
    key = attention_split_key("f32", "f16x2", 16, 4, 64, 0.125)
    kern = build(key)
    gx, gy, gz = kern.dispatch_for(1, 4096)
    invocations = gx * gy * gz * math.prod(kern.workgroup_size)
    assert invocations >= 32 * 16, invocations
    assert (gx, gy, gz) == (-(-4097 // key.block), 4, 1)
    cw = 4096 + 1
    assert partial_elements(16, 64, cw, key.block, 1) == 16 * gx * (64 + 4)
    comb = build(attention_combine_key("f32", 16, 64, key.block))
    assert comb.dispatch_for(1, 4096) == (16, 1, 1)
    assert uses_subgroups(build(AttentionSplitKey("f32", "", 4, 2, 64, 0.1, subgroups=True)).wgsl)
    assert not uses_subgroups(kern.wgsl) and "subgroupAdd" not in kern.wgsl


# (heads, kv_heads, head_dim) of SmolLM2-135M, Llama-3.2-1B, TinyLlama, Llama-3-8B, Qwen2.5-7B, Llama-3-70B
MODEL_SHAPES = [(9, 3, 64), (32, 8, 64), (32, 4, 64), (32, 8, 128), (28, 4, 128), (64, 8, 128)]


@pytest.mark.parametrize("heads,kv_heads,head_dim", MODEL_SHAPES)
def test_flash_decoding_defaults_fit(heads, kv_heads, head_dim):
    """The default keys of real model shapes build (16 KiB of workgroup memory) with block 128."""
    for sg in (False, True):
        key = attention_split_key("f32", "f16x2", heads, kv_heads, head_dim, 0.1, subgroups=sg)
        assert key.block == DEFAULT_BLOCK and split_storage(heads // kv_heads, head_dim, key.block, key.wg) <= 16384
        build(key), build(attention_combine_key("f32", heads, head_dim, key.block))


def test_flash_decoding_key_errors():
    with pytest.raises(ValueError, match="multiple of 4"):
        build(AttentionSplitKey("f32", "", 4, 2, 6, 0.1))
    with pytest.raises(ValueError, match="not a multiple of kv_heads"):
        build(AttentionSplitKey("f32", "", 6, 4, 64, 0.1))
    with pytest.raises(ValueError, match="16 KiB"):
        build(AttentionSplitKey("f32", "", 64, 4, 128, 0.1, block=256, wg=256))
    with pytest.raises(ValueError, match="power of two"):
        build(AttentionSplitKey("f32", "", 4, 2, 64, 0.1, wg=96))
    with pytest.raises(ValueError, match="kv must be one of"):
        build(AttentionSplitKey("f32", "f8", 4, 2, 64, 0.1))


# -- SwiftShader (Tint; subgroups 4 wide) ------------------------------------------------

@pytest.mark.parametrize("kv,subgroups,heads,kv_heads,head_dim,n,p,block,wg", [
    ("f16x2", True, 8, 2, 80, 1, 3 * B + 7, B, 32),  # GQA 4, awkward head_dim, 8 subgroups of 4
    ("", False, 4, 4, 64, 2, B, B, 32),  # the tree fallback, a query on a fresh block
    ("f16x2", True, 16, 4, 64, 1, 300, DEFAULT_BLOCK, 128),  # the defaults past two blocks
])
@pytest.mark.browser
@pytest.mark.slow
def test_flash_decoding_swiftshader(browser_kernel_runner, kv, subgroups, heads, kv_heads, head_dim, n, p, block, wg):
    r = browser_kernel_runner
    need_subgroups(r, subgroups)
    rng = rng_for("bflash", kv, subgroups, heads, head_dim, n, p)
    scale = 1.0 / math.sqrt(head_dim)
    q = rand(rng, (n, heads * head_dim), "f32", 2.0)
    kc, vc = kv_caches(rng, kv, "f32", p, n, kv_heads * head_dim)
    key = AttentionSplitKey("f32", kv, heads, kv_heads, head_dim, scale, block=block, wg=wg, subgroups=subgroups)
    got = run_flash(r, key, q, kc, vc, n, p)
    ref = ref_op("attention", [q, f(kc), f(vc)], n, p, heads=heads, kv_heads=kv_heads, head_dim=head_dim, scale=scale)
    check(got, ref, 1e-4, key.name)


@pytest.mark.browser
@pytest.mark.slow
def test_rope_kv_f16x2_swiftshader(browser_kernel_runner):
    n, p, heads, kv_heads, hd = 3, 5, 4, 2, 64
    rng = rng_for("bropekv16", n, p)
    q, kk, v = rand(rng, (n, heads * hd), "f32"), rand(rng, (n, kv_heads * hd), "f32"), rand(rng, (n, kv_heads * hd), "f32")
    inv = inv_freq_for(hd)
    caches = {name: f16_cache(rng, p, n, kv_heads * hd) for name in ("k_cache", "v_cache")}
    got = browser_kernel_runner.run(build(RopeKvKey("f32", heads, kv_heads, hd, kv="f16x2")),
                                    {"q": padded(q, "f32"), "k": padded(kk, "f32"), "v": padded(v, "f32"),
                                     "inv_freq": inv, **caches}, n, p)
    # SwiftShader's sin/cos: 1.4e-4 here, the same for today's kv '' kernel (lavapipe ~1e-6)
    check(got["q"][:n], ref_op("rope", [q, inv], n, p, heads=heads, head_dim=hd), TOL_SWIFTSHADER_TRIG, "q")
    check(got["k_cache"][p:p + n], ref_op("rope", [kk, inv], n, p, heads=kv_heads, head_dim=hd), 2e-3, "k_cache")
    f16_close(got["v_cache"][p:p + n], v, "v_cache")
    for name in ("k_cache", "v_cache"):
        same_bits(got[name][:p], caches[name][:p], f"{name} rows before p")
        same_bits(got[name][p + n:], caches[name][p + n:], f"{name} rows after p+n")


@pytest.mark.browser
@pytest.mark.slow
def test_kv_writers_f16x2_swiftshader(browser_kernel_runner):
    """kv_write and rope -> cache with kv f16x2 compile on Tint and write whole words there too."""
    r, n, p, heads, hd = browser_kernel_runner, 2, 5, 3, 64
    rng = rng_for("bkv16", n, p)
    x = rand(rng, (n, heads * hd), "f32")
    cache = f16_cache(rng, p, n, heads * hd)
    got = r.run(build(KvWriteKey("f32", heads * hd, kv="f16x2")), {"x": padded(x, "f32"), "cache": cache}, n, p)["cache"]
    f16_close(got[p:p + n], x, "kv_write f16x2")
    same_bits(got[p + n:], cache[p + n:], "cache rows after p+n")
    inv = inv_freq_for(hd)
    got = r.run(build(RopeKey("f32", heads, hd, to_cache=True, kv="f16x2")),
                {"x": padded(x, "f32"), "inv_freq": inv, "cache": cache}, n, p)["cache"]
    check(got[p:p + n], ref_op("rope", [x, inv], n, p, heads=heads, head_dim=hd), 2e-3, "rope -> f16x2 cache")
    same_bits(got[:p], cache[:p], "cache rows before p")
    same_bits(got[p + n:], cache[p + n:], "cache rows after p+n")
