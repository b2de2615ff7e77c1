"""The GPU prefill attention (codegen/attention_tiled.py) against ir/ops.py's attention reference.

Run on lavapipe through `KernelRunner` (and a subset on SwiftShader through the browser kernel
runner), with test_kernels.py's error measure (max |got - ref| / max |ref|, NaN fails),
sentinels and random data (q, k scaled by 2, so softmax weights are far from uniform).

| what                      | tol   | why                                                             |
|---------------------------|-------|-----------------------------------------------------------------|
| f32 activations, kv ""    | 1e-4  | f32 dot products and softmax sums of <= 330 terms in another    |
|                           |       | order than numpy's, exp of the driver (~1e-6 seen)               |
| kv "f16x2" (f16 K/V)      | 2e-3  | the reference gets the f32 K/V, the kernel their f16 rounding:  |
|                           |       | 2^-11 = 4.9e-4 relative per element, a score error of ~|q||k|    |
|                           |       | 2^-11 * scale moves the softmax weights by about that much       |
|                           |       | (1.1e-3 seen at p=200, scores of std ~4); a wrong half or word   |
|                           |       | order gives errors ~1                                            |
| f16 activations           | 2e-3  | as test_kernels.py: output rounded to f16; the reference runs on |
|                           |       | the same f16-rounded inputs                                      |
| sentinel rows             | exact | out rows past n come back bit-identical (no out-of-range writes) |

KV cache rows past p+n and q rows past n hold NaN: a kernel reading them fails (NaN output).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from test_kernels import EXTRA, TOL, check, f, need, padded, rand, ref_op, rng_for, runner, same_bits  # noqa: F401
from test_kernels import NP, sentinel

from webllm_py.codegen import build, key_from_json
from webllm_py.codegen.attention_tiled import AttentionTiledKey, tile_shape
from webllm_py.codegen.kernels import MAX_WORKGROUP_STORAGE
from webllm_py.testing.browser_kernels import browser_kernel_runner  # noqa: F401

TOL_F16_KV = 2e-3


def _case(r, act, kv, heads, kv_heads, head_dim, n, p, **knobs):
    """Run one AttentionTiledKey on runner r; return (kernel, got, ref)."""
    rng = rng_for("att_tiled", act, kv, heads, kv_heads, head_dim, n, p, tuple(sorted(knobs.items())))
    scale = 1.0 / math.sqrt(head_dim)
    kvw = kv_heads * head_dim
    q = rand(rng, (n, heads * head_dim), act, 2.0)
    rows = p + n + EXTRA
    kc = rand(rng, (rows, kvw), act, 2.0).astype(np.float32)
    vc = rand(rng, (rows, kvw), act).astype(np.float32)
    store = "f16" if kv == "f16x2" else act  # f16x2 is an f16 array's bytes
    kc_s, vc_s = kc.astype(NP[store]), vc.astype(NP[store])
    kc_s[p + n:] = sentinel((EXTRA, kvw), store)  # never read: NaN would poison the output
    vc_s[p + n:] = sentinel((EXTRA, kvw), store)
    out = sentinel((n + EXTRA, heads * head_dim), act)
    k = build(AttentionTiledKey(act, kv, heads, kv_heads, head_dim, scale, **knobs))
    got = r.run(k, {"q": padded(q, act), "k_cache": kc_s, "v_cache": vc_s, "out": out}, n, p)["out"]
    # kv "": the reference sees exactly the stored K/V; f16x2: the unrounded f32 values
    ref = ref_op("attention", [f(q), kc if kv else f(kc_s), vc if kv else f(vc_s)], n, p,
                 heads=heads, kv_heads=kv_heads, head_dim=head_dim, scale=scale)
    same_bits(got[n:], out[n:], "sentinel rows")
    return k, got[:n], ref


def _tol(act, kv):
    return max(TOL[act], TOL_F16_KV if kv else 0.0)


# every (n, p) on one GQA shape (group 3): one query to several row tiles, p past one key tile
@pytest.mark.parametrize("n", [1, 7, 64, 130])
@pytest.mark.parametrize("p", [0, 3, 200])
def test_attention_tiled(runner, n, p):
    k, got, ref = _case(runner, "f32", "", 6, 2, 64, n, p)
    check(got, ref, TOL["f32"], k.name)


# group 1 and 3, head_dim 64 and 96, kv "" / f16x2, f16 activations where the adapter has shader-f16
@pytest.mark.parametrize("act,kv,heads,kv_heads,head_dim", [
    ("f32", "", 2, 2, 96), ("f32", "f16x2", 6, 2, 64), ("f32", "f16x2", 2, 2, 96),
    ("f16", "", 6, 2, 64), ("f16", "f16x2", 2, 2, 96)])
@pytest.mark.parametrize("n,p", [(7, 3), (130, 200)])
def test_attention_tiled_variants(runner, act, kv, heads, kv_heads, head_dim, n, p):
    need(runner, act)
    k, got, ref = _case(runner, act, kv, heads, kv_heads, head_dim, n, p)
    check(got, ref, _tol(act, kv), k.name)


# knobs: partial row tiles (5 rows, group 3) with key tiles of 3 over 2 lanes per row (ragged: one lane
# scores 2 keys, the other 1); 2 keys for each of 4 lanes per row; head_dim 256 (planner); one lane
@pytest.mark.parametrize("head_dim,knobs", [(64, dict(tq=5, tk=3, wg=10)), (64, dict(tq=4, tk=8, wg=16)),
                                            (256, {}), (12, dict(tq=1, tk=1)),
                                            # keys scored in passes of MAX_KPU: 7 keys per lane (2 passes,
                                            # the second past the tile); 2 lanes x 11 keys (ragged and passes)
                                            (16, dict(tq=5, tk=7, wg=5)), (16, dict(tq=4, tk=11, wg=8))])
def test_attention_tiled_knobs(runner, head_dim, knobs):
    k, got, ref = _case(runner, "f32", "", 3, 1, head_dim, 9, 4, **knobs)
    check(got, ref, TOL["f32"], k.name)


def _workgroup_arrays(wgsl: str) -> dict[str, tuple[str, int]]:
    return {m[0]: (m[1], int(m[2])) for m in re.findall(r"var<workgroup>\s+(\w+)\s*:\s*array<([^,]+),\s*(\d+)>", wgsl)}


BYTES = {"f32": 4, "vec4<f32>": 16}


@pytest.mark.parametrize("head_dim", [64, 96, 128, 256])
def test_plan_score_tile_and_storage(head_dim):
    """The WGSL's workgroup arrays (read from the text): one tq x tk score tile, <= 16 KiB in all, none
    sized by n; at n = 128 the dispatch covers the 128 * GROUP rows of each kv head in tq-row tiles."""
    key = AttentionTiledKey("f32", "", 16, 4, head_dim, 0.125)
    ts, k = tile_shape(key), build(key)
    arrays = _workgroup_arrays(k.wgsl)
    assert arrays["s_tile"] == ("f32", ts.tq * ts.tk)
    assert sum(c for ty, c in arrays.values() if ty == "f32") <= ts.tq * ts.tk  # the only scores alive
    assert sum(BYTES[ty] * c for ty, c in arrays.values()) == ts.storage <= MAX_WORKGROUP_STORAGE
    assert k.workgroup_size == (ts.wg, 1, 1) and ts.wg >= 32
    assert k.dispatch_for(128, 0) == (-(-128 * 4 // ts.tq), 4, 1)
    assert key_from_json(key.to_json()) == key  # the manifest form round-trips
    if head_dim == 64:  # f32 K+V tiles of 32 keys would be 16 KiB alone: the planner sizes tk below that
        assert ts.tk < 32


def test_f16x2_binding_types():
    wgsl = build(AttentionTiledKey("f32", "f16x2", 4, 2, 64, 0.125)).wgsl
    assert re.search(r"var<storage, read> k_cache: array<vec2<u32>>", wgsl)
    assert "shader-f16" not in wgsl and "enable f16" not in wgsl


@pytest.mark.parametrize("kw,msg", [
    (dict(head_dim=2048), "workgroup storage"),
    (dict(tq=32, tk=32), "workgroup storage"),
    (dict(head_dim=62), "multiple of 4"),
    (dict(kv_heads=3), "not a multiple of kv_heads"),
    (dict(kv="f8"), "kv must be one of"),
    (dict(tq=4, wg=12), "wg must be tq times a divisor"),
    (dict(tq=128), "lanes"),
])
def test_key_errors_say_the_fix(kw, msg):
    args = dict(act="f32", kv="", heads=4, kv_heads=2, head_dim=64, scale=0.125) | kw
    with pytest.raises(ValueError, match=msg):
        build(AttentionTiledKey(**args))


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("kv,heads,kv_heads,head_dim,n,p", [("", 6, 2, 64, 130, 200), ("f16x2", 2, 2, 96, 7, 3)])
def test_attention_tiled_swiftshader(browser_kernel_runner, kv, heads, kv_heads, head_dim, n, p):  # noqa: F811
    """Tint compiles it and SwiftShader (4-wide subgroups, another barrier implementation) agrees."""
    k, got, ref = _case(browser_kernel_runner, "f32", kv, heads, kv_heads, head_dim, n, p)
    check(got, ref, _tol("f32", kv), k.name)


# the planner's one-lane-per-row shape at head_dim 16 (32 rows x 1 lane, 32 keys per lane): unrolled
# at once, its 32 vec4 score sums made SwiftShader's compiler lose the device after ~4 min (lavapipe
# ran it); in passes of MAX_KPU keys it compiles in ~1 s. Same shape on lavapipe and SwiftShader.
@pytest.mark.parametrize("kv", ["", "f16x2"])
def test_attention_tiled_one_lane_per_row(runner, kv):
    assert tile_shape(AttentionTiledKey("f32", kv, 4, 2, 16, 0.25)).lanes_per_row == 1
    k, got, ref = _case(runner, "f32", kv, 4, 2, 16, 16, 0)
    check(got, ref, _tol("f32", kv), k.name)


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("kv", ["", "f16x2"])
def test_attention_tiled_one_lane_per_row_swiftshader(browser_kernel_runner, kv):  # noqa: F811
    k, got, ref = _case(browser_kernel_runner, "f32", kv, 4, 2, 16, 16, 0)
    check(got, ref, _tol("f32", kv), k.name)
