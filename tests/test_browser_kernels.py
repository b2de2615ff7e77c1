"""The SwiftShader kernel runner (webllm_py/testing/browser_kernels.py) is known good.

Existing kernels, already proven on lavapipe by tests/test_kernels.py, run on Chrome's WebGPU
(Tint + SwiftShader) through `BrowserKernelRunner` against the numpy op references of
`webllm_py/ir/ops.py`, with test_kernels.py's sentinels, error measure and tolerances:

| what                                | tol   | why                                                     |
|-------------------------------------|-------|---------------------------------------------------------|
| rms_norm, matmul, attention (f32)   | 1e-4  | f32 reductions in another order than numpy's (as TOL)   |
| subgroup sum of small integers      | exact | integers < 2^24 add exactly in f32 in any order         |
| sentinel rows                       | exact | out-of-bounds writes or a wrong read-back change bits   |

f16-activation variants skip visibly: SwiftShader has no shader-f16. A subgroup kernel runs on
both emulators (`emulator_runner`): lavapipe's subgroups are 8 wide, SwiftShader's 4, and the
kernel reads `subgroup_size` instead of assuming either.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from test_kernels import TOL, check, padded, rand, ref_op, rng_for, same_bits, sentinel, weight_parts, f, EXTRA

from webllm_py.codegen import AttentionKey, MatmulKey, RmsNormKey, build
from webllm_py.codegen.kernels import Kernel
from webllm_py.codegen.runner import has_f16, has_subgroups
from webllm_py.testing.browser_kernels import BrowserKernelError, browser_kernel_runner, emulator_runner  # noqa: F401

browser = [pytest.mark.browser, pytest.mark.slow]


@pytest.mark.parametrize("act", ["f32", pytest.param("f16", id="f16-needs-shader-f16")])
@pytest.mark.parametrize("cols,n", [(127, 7), (1000, 1)])
@pytest.mark.browser
@pytest.mark.slow
def test_rms_norm(browser_kernel_runner, act, cols, n):
    r = browser_kernel_runner
    if act == "f16" and not has_f16(r.device):
        pytest.skip(f"{r.adapter_info.get('architecture')} lacks shader-f16: f16 activations cannot run here")
    rng = rng_for("brms", act, cols, n)
    x = rand(rng, (n, cols), act, 3.0)
    w = rng.standard_normal(cols).astype(np.float32)
    out = sentinel((n + EXTRA, cols), act)
    got = r.run(build(RmsNormKey(act, cols, eps=1e-5)), {"x": padded(x, act), "w": w, "out": out}, n)["out"]
    assert got.dtype == out.dtype and got.shape == out.shape
    check(got[:n], ref_op("rms_norm", [f(x), w], n, eps=1e-5), TOL[act], "rms_norm")
    same_bits(got[n:], out[n:], "sentinel rows")


@pytest.mark.parametrize("rows,cols,n,last_row", [(37, 1000, 1, False), (130, 64, 7, False), (29, 127, 7, True)])
@pytest.mark.browser
@pytest.mark.slow
def test_matmul_q4(browser_kernel_runner, rows, cols, n, last_row):
    rng = rng_for("bmm", rows, cols, n, last_row)
    key = MatmulKey("f32", "q4", rows, cols, bias=cols == 1000, last_row=last_row, rpi=4 if last_row else 1)
    arrays, wd = weight_parts(rng, "q4", rows, cols)
    x = rand(rng, (n, cols), "f32")
    inputs = [f(x), wd]
    if key.bias:
        arrays["bias"] = rng.standard_normal(rows).astype(np.float32)
        inputs.append(arrays["bias"])
    out_rows = 1 if last_row else n
    out = sentinel((out_rows + EXTRA, rows), "f32")
    got = browser_kernel_runner.run(build(key), {**arrays, "x": padded(x, "f32"), "out": out}, n)["out"]
    ref = ref_op("linear", inputs, n)
    check(got[:out_rows], ref[-1:] if last_row else ref, TOL["f32"], key.name)
    same_bits(got[out_rows:], out[out_rows:], "sentinel rows")


@pytest.mark.parametrize("heads,kv_heads,head_dim,p", [(4, 2, 8, 45), (2, 2, 64, 5), (3, 1, 12, 0)])
@pytest.mark.browser
@pytest.mark.slow
def test_attention_decode(browser_kernel_runner, heads, kv_heads, head_dim, p):
    n, act = 1, "f32"
    rng = rng_for("batt", heads, kv_heads, head_dim, p)
    scale = 1.0 / math.sqrt(head_dim)
    kvw = kv_heads * head_dim
    q = rand(rng, (n, heads * head_dim), act, 2.0)
    kc = rand(rng, (p + n + EXTRA, kvw), act, 2.0)
    vc = rand(rng, (p + n + EXTRA, kvw), act)
    kc[p + n:] = sentinel((EXTRA, kvw), act)  # never read: NaN would poison the output
    vc[p + n:] = sentinel((EXTRA, kvw), act)
    out = sentinel((n + EXTRA, heads * head_dim), act)
    k = build(AttentionKey(act, heads, kv_heads, head_dim, scale, form="decode"))
    got = browser_kernel_runner.run(k, {"q": padded(q, act), "k_cache": kc, "v_cache": vc, "out": out}, n, p)["out"]
    ref = ref_op("attention", [f(q), f(kc), f(vc)], n, p, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                 scale=scale)
    check(got[:n], ref, TOL[act], k.name)
    same_bits(got[n:], out[n:], "sentinel rows")


@pytest.mark.browser
@pytest.mark.slow
def test_compile_error_is_tints_message(browser_kernel_runner):
    k = build(RmsNormKey("f32", 13, eps=1e-5))
    bad = dataclasses.replace(k, wgsl=k.wgsl + "\nnot wgsl\n")
    x = np.ones((1, 13), np.float32)
    with pytest.raises(BrowserKernelError, match=r"compile rms_norm.*line \d+:\d+: .*unexpected token"):
        browser_kernel_runner.run(bad, {"x": x, "w": x[0], "out": x}, 1)
    # the page is still usable after a failed compile
    got = browser_kernel_runner.run(k, {"x": x, "w": x[0], "out": np.zeros_like(x)}, 1)["out"]
    check(got, ref_op("rms_norm", [x, x[0]], 1, eps=1e-5), TOL["f32"], "rms_norm after an error")


# A workgroup of 64 sums its x values: subgroupAdd inside each subgroup, then one partial per
# subgroup combined through workgroup memory (any subgroup size 4..64 divides 64). Invocation 0
# also writes the subgroup size it saw. Its WGSL carries `enable subgroups;` as Tint needs.
_SUBGROUP_SUM = """enable subgroups;
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> size: array<u32>;
var<workgroup> partial: array<f32, 16>;  // 64 / smallest subgroup size (4)

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_size) sg_size: u32, @builtin(subgroup_invocation_id) sg_id: u32) {
  let s = subgroupAdd(x[wg.x * 64u + li]);
  if (sg_id == 0u) { partial[li / sg_size] = s; }
  workgroupBarrier();
  if (li == 0u) {
    var t = 0.0;
    for (var i = 0u; i < 64u / sg_size; i++) { t += partial[i]; }
    out[wg.x] = t;
    if (wg.x == 0u) { size[0] = sg_size; }
  }
}
"""


def test_subgroup_kernel_on_each_emulator(emulator_runner):
    r = emulator_runner
    if not has_subgroups(r.device):
        pytest.skip("adapter lacks the subgroups feature")
    groups = 5
    kernel = Kernel(key=None, name="subgroup_sum", wgsl=_SUBGROUP_SUM,  # type: ignore[arg-type]
                    bindings=(("x", "read"), ("out", "read_write"), ("size", "read_write")),
                    workgroup_size=(64, 1, 1), dispatch=(str(groups), "1", "1"))
    x = np.random.default_rng(0).integers(-50, 50, groups * 64).astype(np.float32)
    got = r.run(kernel, {"x": x, "out": np.zeros(groups + EXTRA, np.float32), "size": np.zeros(1, np.uint32)}, 1)
    same_bits(got["out"][:groups], x.reshape(groups, 64).sum(1), "per-workgroup sums")
    same_bits(got["out"][groups:], np.zeros(EXTRA, np.float32), "untouched tail")
    sg = int(got["size"][0])
    assert sg in (4, 8, 16, 32, 64), f"subgroup size {sg}"
    if hasattr(r, "adapter_info"):  # the browser reports its range: the kernel saw a size inside it
        assert r.adapter_info["subgroupMinSize"] <= sg <= r.adapter_info["subgroupMaxSize"]
