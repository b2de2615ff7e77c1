"""Reference backend vs transformers, per architecture, on seeded tiny models.

Tolerances (logits compared over every position of a 40-token prompt, which
crosses the bundles' 16-token prefill chunk):
  f32 bundle   max |Δ| <= 1e-4 · max(1, max|logit|): same f32 math, different summation order.
  f16 weights  relative RMS error <= 1%: weights rounded to 11-bit mantissas.
  q8           relative RMS error <= 3%: int8 groups of 32, f16 scales.
  q4           relative RMS error <= 35%: int4 groups of 32 on random (incompressible)
               weights is a large perturbation; real models lose far less (see test_real_models).
For q8/q4 the exact semantics are checked separately: transformers run on weights
fake-quantized by an independent implementation (tests/quant_oracle.py) must
match the bundle within the f32 tolerance (1e-4 · max|logit|, 2e-4 for q4 whose
larger weights amplify rounding-order differences).
Greedy generation must be identical to transformers' for f32 bundles.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import webllm_py
from conftest import TINY_ARCHS

ARCHS = list(TINY_ARCHS)
PROMPT = [(7 * i + 3) % 280 + 2 for i in range(40)]

REL_RMS = {"f16": 0.01, "q8": 0.03, "q4": 0.35}


def hf_logits(folder, ids):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        return m(torch.tensor([ids])).logits[0].numpy(), m


def rel_rms(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b**2)))


@pytest.mark.parametrize("arch", ARCHS)
def test_f32_logits_and_greedy_match_transformers(arch, tiny_models, tiny_bundles):
    ref, hf = hf_logits(tiny_models[arch], PROMPT)
    model = webllm_py.load(tiny_bundles(arch, "f32"), backend="reference", precision="f32")
    ours = model.logits(PROMPT)
    assert ours.shape == (len(PROMPT), hf.config.vocab_size)
    assert np.abs(ours - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())

    with torch.no_grad():
        out = hf.generate(torch.tensor([PROMPT[:10]]), max_new_tokens=20, do_sample=False, eos_token_id=1,
                          pad_token_id=1)[0, 10:].tolist()
    assert model.generate(PROMPT[:10], max_new_tokens=20) == out


@pytest.mark.parametrize("quant", ["f16", "q8", "q4"])
@pytest.mark.parametrize("arch", ARCHS)
def test_quantized_logits_close_to_transformers(arch, quant, tiny_models, tiny_bundles):
    ref, _ = hf_logits(tiny_models[arch], PROMPT)
    ours = webllm_py.load(tiny_bundles(arch, quant), backend="reference").logits(PROMPT)
    assert rel_rms(ours, ref) <= REL_RMS[quant]


@pytest.mark.parametrize("quant", ["q8", "q4"])
@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_quantized_bundle_equals_transformers_on_fake_quantized_weights(arch, quant, tiny_models, tiny_bundles):
    from quant_oracle import fake_quantize
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(tiny_models[arch], dtype=torch.float32)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if p.ndim == 2:  # every linear and the embedding are quantized in q4/q8 bundles
                p.copy_(torch.from_numpy(fake_quantize(p.numpy(), quant)))
        ref = hf(torch.tensor([PROMPT])).logits[0].numpy()
    ours = webllm_py.load(tiny_bundles(arch, quant), backend="reference").logits(PROMPT)
    tol = (1e-4 if quant == "q8" else 2e-4) * max(1.0, np.abs(ref).max())
    assert np.abs(ours - ref).max() <= tol


def test_f16_activation_reference_close_to_f32(tiny_bundles):
    """precision='f16' rounds activations and the KV cache to f16: the oracle for f16 kernels.
    Tolerance: relative RMS <= 1% (11-bit mantissas through 2 layers)."""
    b = tiny_bundles("llama", "f32")
    f32 = webllm_py.load(b, backend="reference", precision="f32").logits(PROMPT)
    f16 = webllm_py.load(b, backend="reference", precision="f16").logits(PROMPT)
    assert 0 < rel_rms(f16, f32) <= 0.01


def test_incremental_decode_equals_full_prefill(tiny_bundles):
    """forward() over the KV cache, one token at a time, gives the rows of logits() (f32: 1e-5 abs)."""
    model = webllm_py.load(tiny_bundles("qwen3", "f32"), backend="reference")
    full = model.logits(PROMPT[:20])
    model.reset()
    rows = [model.forward(PROMPT[:5])] + [model.forward([t]) for t in PROMPT[5:20]]
    np.testing.assert_allclose(np.stack(rows), full[4:20], atol=1e-5)
    model.truncate(10)
    np.testing.assert_allclose(model.forward(PROMPT[10:12]), full[11], atol=1e-5)


def test_context_window_is_enforced(tiny_models, tmp_path):
    out = webllm_py.build(tiny_models["llama"], tmp_path / "b", quantization="f32", context_window=32, progress=False)
    model = webllm_py.load(out, backend="reference")
    with pytest.raises(webllm_py.ContextWindowExceededError, match="context window of 32"):
        model.logits(list(range(2, 40)))


def test_bf16_and_f16_checkpoints_import(tmp_path):
    """Checkpoints stored in bf16 / f16 import exactly (values are representable in f32)."""
    from conftest import make_tiny_model

    for dtype in ("bfloat16", "float16"):
        folder = make_tiny_model(tmp_path / dtype, "llama", dtype=dtype)
        out = webllm_py.build(folder, tmp_path / f"b-{dtype}", quantization="f32", progress=False)
        ref, _ = hf_logits(folder, PROMPT[:12])
        ours = webllm_py.load(out, backend="reference").logits(PROMPT[:12])
        assert np.abs(ours - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
