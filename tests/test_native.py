"""Native runtime (wgpu-py on lavapipe) vs the numpy reference vs transformers, per architecture.

Tolerances:
  f32 kernels   max |Δ| vs reference <= 2e-4 · max(1, max|logit|): same f32 math, GPU summation order.
  f16 kernels   max |Δ| vs reference(precision="f16") <= 5e-2 · max(1, max|logit|): activations and the
                KV cache stored as f16 (11-bit mantissa); reference rounds at op boundaries only.
  greedy        identical tokens to the reference wherever the reference's top-2 logit gap > 1e-3.
"""

from __future__ import annotations

import numpy as np
import pytest

import webllm_py
from conftest import TINY_ARCHS

PROMPT = [(5 * i + 7) % 280 + 2 for i in range(37)]  # crosses the 16-token prefill chunk twice


def load_native(bundle, precision, adapter):
    return webllm_py.load(bundle, backend="native", precision=precision, adapter=adapter)


def scale(x):
    return max(1.0, float(np.abs(x).max()))


@pytest.mark.parametrize("quant", ["f32", "q4"])
@pytest.mark.parametrize("arch", list(TINY_ARCHS))
def test_native_f32_matches_reference(arch, quant, tiny_bundles, adapter):
    b = tiny_bundles(arch, quant)
    ref = webllm_py.load(b, backend="reference").logits(PROMPT)
    native = load_native(b, "f32", adapter)
    ours = native.logits(PROMPT)
    assert np.abs(ours - ref).max() <= 2e-4 * scale(ref)
    native.reset()  # prefill program (last row only) then decode steps
    rows = [native.forward(PROMPT[:20])] + [native.forward([t]) for t in PROMPT[20:24]]
    np.testing.assert_allclose(np.stack(rows), ref[19:24], atol=2e-4 * scale(ref))


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_native_f16_matches_f16_reference(arch, tiny_bundles, adapter):
    if "shader-f16" not in adapter.features:
        pytest.skip(f"{adapter.info['device']} has no shader-f16")
    b = tiny_bundles(arch, "q8")
    ref = webllm_py.load(b, backend="reference", precision="f16").logits(PROMPT)
    ours = load_native(b, "f16", adapter).logits(PROMPT)
    assert np.abs(ours - ref).max() <= 5e-2 * scale(ref)


@pytest.mark.parametrize("arch", list(TINY_ARCHS))
def test_native_greedy_equals_reference(arch, tiny_bundles, adapter):
    b = tiny_bundles(arch, "q4")
    ref = webllm_py.load(b, backend="reference")
    expect = ref.generate(PROMPT[:9], max_new_tokens=24)
    # where the reference's decision is a near-tie, either token is acceptable: compare up to it
    ref.reset()
    row = ref.forward(PROMPT[:9])
    clear = 0
    for tok in expect:
        top2 = np.sort(row)[-2:]
        if top2[1] - top2[0] <= 1e-3:
            break
        clear += 1
        row = ref.forward([tok])
    got = load_native(b, "f32", adapter).generate(PROMPT[:9], max_new_tokens=24)
    assert clear >= 8, "the test prompt should give a clear greedy path"
    assert got[:clear] == expect[:clear]


def test_native_context_window(tiny_models, tmp_path, adapter):
    b = webllm_py.build(tiny_models["llama"], tmp_path / "b", quantization="q4", context_window=24,
                        prefill_chunk=8, progress=False)
    m = load_native(b, "f32", adapter)
    m.forward(PROMPT[:20])
    with pytest.raises(webllm_py.ContextWindowExceededError, match="context window of 24"):
        m.forward(PROMPT[:5])
    assert m.position == 20  # a refused step changes nothing
    m.truncate(4)
    ref = webllm_py.load(b, backend="reference")
    ref.forward(PROMPT[:4])
    np.testing.assert_allclose(m.forward(PROMPT[4:9]), ref.forward(PROMPT[4:9]), atol=1e-3)


def test_stories260k_native_golden(tmp_path, adapter):
    """The real pretrained tiny Llama: f32 bundle natively reproduces llama2.c's greedy text."""
    import json

    from conftest import shared_model

    src = shared_model("stories260k")
    golden = json.loads((src / "golden.json").read_text())
    b = webllm_py.build(src, tmp_path / "b", quantization="f32", progress=False)
    m = load_native(b, "f32", adapter)
    for case in golden["cases"]:
        assert m.generate(case["prompt_ids"], len(case["greedy_new_ids"])) == case["greedy_new_ids"]


def test_weights_larger_than_the_binding_limit_are_split(tiny_models, tmp_path, adapter):
    """A 4 KiB binding limit splits the embedding, LM head and MLP weights into row slices;
    logits must be the unsplit bundle's (f32: 2e-4 relative, different dispatch grouping only)."""
    import json

    whole = webllm_py.build(tiny_models["qwen2"], tmp_path / "whole", quantization="q4", progress=False)
    split = webllm_py.build(tiny_models["qwen2"], tmp_path / "split", quantization="q4", progress=False,
                            max_binding_bytes=4096)
    m = json.loads((split / "manifest.json").read_text())
    pieces = [b for b in m["buffers"] if "#" in b]
    assert any(b.startswith("w/model.embed_tokens.weight/data#") for b in pieces)
    assert all(v["bytes"] <= 4096 for k, v in m["buffers"].items() if v["kind"] == "weight")
    ref = load_native(whole, "f32", adapter).logits(PROMPT)
    got = load_native(split, "f32", adapter)
    np.testing.assert_allclose(got.logits(PROMPT), ref, atol=2e-4 * scale(ref))
    got.reset()
    np.testing.assert_allclose(got.forward(PROMPT[:17]), ref[16], atol=2e-4 * scale(ref))


def test_fused_layer_is_six_dispatches_and_matches_unfused(tiny_models, tmp_path, adapter):
    """fuse_linears + the fusion rules: 6 dispatches per decoder layer (qkv matmul with the norm
    as prologue, rope_kv, attention, o_proj + residual, gate/up + norm + SiLU gate, down + residual);
    logits equal the unfused bundle's within the f32 tolerance (2e-4 relative)."""
    import json

    fused = webllm_py.build(tiny_models["llama"], tmp_path / "fused", quantization="q4", progress=False)
    plain = webllm_py.build(tiny_models["llama"], tmp_path / "plain", quantization="q4", progress=False, fuse=False)
    m = json.loads((fused / "manifest.json").read_text())
    layers = m["model"]["config"]["num_hidden_layers"]
    decode = m["programs"]["f32"]["decode"]["dispatches"]
    assert len(decode) == 6 * layers + 2  # + embedding + LM head (final norm as its prologue)
    families = [d["kernel"].split("_act-")[0] for d in decode[1:7]]
    assert families == ["matmul", "rope_kv", "attention", "matmul", "matmul", "matmul"]
    ref = load_native(plain, "f32", adapter).logits(PROMPT)
    got = load_native(fused, "f32", adapter)
    np.testing.assert_allclose(got.logits(PROMPT), ref, atol=2e-4 * scale(ref))
    got.reset()
    np.testing.assert_allclose(got.forward(PROMPT[:17]), ref[16], atol=2e-4 * scale(ref))


# idot programs: matmuls whose input another kernel produces run as integer dot products on
# activations packed per 8 values, as 9-bit integers for q4 weights (step = max|x| / 255 of the 8) and
# as int8 for q8 weights in decode (step = max|x| / 127): in decode the producing matmuls pack, in
# prefill and score (the tiled form, q4 only) the RMSNorm kernels and pack dispatches do.
# The error: each packed input is off by at most half a step per element (<= 0.4% of its chunk's
# max), through a few matmuls of seeded random weights; measured on these tiny q4 models (9-bit pairs
# everywhere) 4.2e-3 to 6.2e-3 * max|logit| (prefill, then decode steps) and 5.0e-3 to 7.9e-3 (score),
# bound 1.5e-2 (1.9x margin); int8 steps
# are twice as coarse, so q8 models (int8 everywhere in decode, measured 6.6e-3 to 9.8e-3) get twice
# the bound. Greedy tokens: identical wherever the reference's top-2 gap exceeds that bound.
IDOT_TOL = {"pairs": 1.5e-2, "bytes": 3e-2}


@pytest.mark.parametrize("arch", list(TINY_ARCHS))
@pytest.mark.parametrize("quant,layout", [("q4", "pairs"), ("q8", "bytes")])
def test_native_idot_matches_reference(arch, quant, layout, tiny_bundles, adapter):
    """q4 bundles: every matmul incl. the LM head on 9-bit pairs; q8 bundles: on int8 (dot4I8Packed)."""
    b = tiny_bundles(arch, quant)
    ref = webllm_py.load(b, backend="reference").logits(PROMPT)
    native = load_native(b, "idot", adapter)
    assert native.precision == "idot"
    decode = [d["kernel"] for d in native.manifest["programs"]["idot"]["decode"]["dispatches"]]
    assert any("_xq-1" in k for k in decode), "no decode matmul uses integer dot products"
    lm_head = [k for k in decode if "_last_row-1_" in k]
    assert len(lm_head) == 1 and f"_fmt-{quant}_" in lm_head[0] and "_xq-1" in lm_head[0], lm_head
    packers = [k for k in decode if "_pack-1" in k]
    assert packers and all(("_pack_layout-bytes" in k) == (layout == "bytes") for k in packers), packers
    if quant == "q4":  # the tiled prefill / score matmuls after a norm read x packed too
        for prog in ("prefill", "score"):
            ks = [d["kernel"] for d in native.manifest["programs"]["idot"][prog]["dispatches"]]
            assert any("rms_norm" in k and "_pack-1" in k for k in ks) and any("_tn-" in k and "_xq-1" in k for k in ks), prog
            # the norms pack themselves (also with q/k/v bias): no pack dispatch right after a norm
            assert not any(a.startswith("rms_norm") and b.startswith("pack_") for a, b in zip(ks, ks[1:])), prog
    assert np.abs(native.logits(PROMPT) - ref).max() <= IDOT_TOL[layout] * scale(ref)  # score program
    native.reset()
    rows = [native.forward(PROMPT[:20])] + [native.forward([t]) for t in PROMPT[20:30]]
    got, want = np.stack(rows), ref[19:30]
    assert np.abs(got - want).max() <= IDOT_TOL[layout] * scale(ref)
    top2 = np.sort(want, axis=-1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * IDOT_TOL[layout] * scale(ref)
    assert (got.argmax(-1) == want.argmax(-1))[clear].all()


def test_auto_picks_idot_on_cpu_adapters(tiny_bundles, adapter, tmp_path):
    from webllm_py.runtime.native import auto_precision

    from types import SimpleNamespace

    def fake(kind, f16):
        return SimpleNamespace(info={"adapter_type": kind}, features={"shader-f16"} if f16 else set())

    every = {"f32": {}, "f16": {}, "idot": {}}
    assert auto_precision(fake("CPU", True), every) == "idot"  # lavapipe
    assert auto_precision(fake("DiscreteGPU", True), every) == "f16"
    assert auto_precision(fake("IntegratedGPU", False), every) == "f32"
    assert auto_precision(fake("CPU", True), {"f32": {}, "f16": {}}) == "f16"  # a bundle from before idot
    assert auto_precision(fake("CPU", False), {"f32": {}}) == "f32"
    if adapter.info.get("adapter_type") == "CPU":  # this machine's lavapipe, as the runtime sees it
        assert webllm_py.load(tiny_bundles("llama", "q4"), backend="native", adapter=adapter).precision == "idot"
    import json
    import shutil

    shutil.copytree(tiny_bundles("llama", "q4"), tmp_path / "b")
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    del m["programs"]["idot"]  # a bundle built without the idot set (its program_sets entry goes too)
    m["program_sets"] = [s for s in m.get("program_sets", []) if s["name"] != "idot"]
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(webllm_py.errors.BundleError, match="no idot programs"):
        webllm_py.load(tmp_path / "b", backend="native", precision="idot", adapter=adapter, verify=False)
