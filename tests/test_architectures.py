"""Architectures beyond Llama/Mistral/Qwen: each a seeded tiny model from its own transformers
config class, its distinguishing feature exercised, against transformers' logits.

| arch    | feature exercised                                                              |
|---------|--------------------------------------------------------------------------------|
| smollm3 | NoPE layers: no_rope_layers [1, 0, 1, 0] (layers 1 and 3 attend without RoPE)  |
| olmo2   | norms after attention / MLP (no pre-norms); q/k RMSNorm over the whole projection |
| granite | embedding 12, residual 0.22, attention 1/64 multipliers; logits / 8 (all != 1)  |

Tolerances (every position of a 37-token prompt that crosses the 16-token prefill chunk twice):
  f32 weights, f32 activations (reference; native f32 and idot sets): max |d| <= 2e-4 * max(1,
      max|logit|): the same f32 math in another summation order (issue 12's bound).
  f16 storage (native f16 set: f16 activations and KV; gpu sets: KV as f16 pairs): 5e-2 * max(1,
      max|logit|), test_native.py's f16 bound: values rounded to 11-bit mantissas between ops.
  greedy: 12 new tokens identical to transformers' (f32 reference).
"""

from __future__ import annotations

import numpy as np
import pytest

import webllm_py
from webllm_py.testing.browser import webgpu_browser  # noqa: F401  (the Chromium fixture)

from conftest import assert_config_field_refused, hf_reference_bundle, make_tiny_model
from parity import F16_STORAGE_SETS, assert_reference_matches, bound, native_program_sets, set_tol

PROMPT = [(5 * i + 7) % 280 + 2 for i in range(37)]
COMMON = dict(hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2,
              vocab_size=300, max_position_embeddings=256, rms_norm_eps=1e-5)
ARCHS: dict[str, tuple[str, dict]] = {
    "smollm3": ("SmolLM3Config", dict(COMMON, num_hidden_layers=4, no_rope_layers=[1, 0, 1, 0], pad_token_id=None,
                                      tie_word_embeddings=True, rope_theta=5e4)),
    "olmo2": ("Olmo2Config", dict(COMMON, num_hidden_layers=2, tie_word_embeddings=False)),
    "granite": ("GraniteConfig", dict(COMMON, num_hidden_layers=2, tie_word_embeddings=True,
                                      embedding_multiplier=12.0, residual_multiplier=0.22,
                                      attention_multiplier=1 / 64, logits_scaling=8.0)),
}


@pytest.fixture(scope="module")
def arch_bundles(tmp_path_factory):
    cache: dict[str, tuple] = {}

    def get(arch: str):
        if arch not in cache:
            _, bundle, ref, greedy = hf_reference_bundle(tmp_path_factory, arch, ARCHS[arch], PROMPT)
            cache[arch] = (bundle, ref, greedy)
        return cache[arch]

    return get


@pytest.mark.parametrize("arch", list(ARCHS))
def test_reference_matches_transformers(arch, arch_bundles):
    bundle, ref, greedy = arch_bundles(arch)
    assert_reference_matches(bundle, PROMPT, ref, greedy)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_native_every_program_set_matches_transformers(arch, arch_bundles, adapter):
    bundle, ref, greedy = arch_bundles(arch)
    for name, model in native_program_sets(bundle, adapter, {"f32", "idot", "gpu", "gpu-sg"}):
        ours = model.logits(PROMPT)
        assert np.abs(ours - ref).max() <= bound(ref, set_tol(name)), name
        if name not in F16_STORAGE_SETS:
            assert model.generate(PROMPT[:10], max_new_tokens=12) == greedy, name


@pytest.mark.parametrize("arch,field,value,msg", [
    ("smollm3", "no_rope_layers", [1, 0], "must be a list of 4 values 0 or 1"),
    ("smollm3", "no_rope_layers", [1, 0, 2, 1], "must be a list of 4 values 0 or 1"),
    ("granite", "logits_scaling", "8", "logits_scaling"),  # a multiplier must be a positive number
])
def test_bad_architecture_fields_are_one_line_errors(arch, field, value, msg, tmp_path):
    folder = make_tiny_model(tmp_path / "m", arch, spec=ARCHS[arch])
    assert_config_field_refused(folder, field, value, msg, tmp_path / "b")


@pytest.mark.slow
@pytest.mark.browser
def test_chromium_gives_natives_tokens(arch_bundles, webgpu_browser):
    """The npm package in Chromium (SwiftShader, f32 programs) generates native's greedy tokens for
    every architecture here, and its last-row logits are within 1e-3 * max|logit| of native's (two
    drivers' f32 rounding: tests/test_browser.py's tolerance)."""
    from test_browser import _ensure_dist
    from webllm_py.testing.browser import StaticServer

    from conftest import REPO

    _ensure_dist()
    routes = {"/dist/": REPO / "web" / "dist", "/test_pages/": REPO / "web" / "test_pages"}
    want = {}
    for arch in ARCHS:
        bundle, ref, greedy = arch_bundles(arch)
        routes[f"/b/{arch}/"] = bundle
        m = webllm_py.load(bundle, backend="native", precision="f32")
        tokens = m.generate(PROMPT[:10], max_new_tokens=8)
        m.reset()
        want[arch] = (tokens, np.asarray(m.forward(PROMPT), dtype=np.float32).reshape(-1))
        m.close()
    with StaticServer(routes) as server:
        page = webgpu_browser.new_page(server.url("/test_pages/engine.html"))
        page.wait_for_function("window.webllmReady === true")
        for arch, (tokens, last) in want.items():
            got = page.evaluate("""async ([url, short, long]) => {
              const engine = await webllm.CreateEngine(url, { precision: "f32" });
              const gen = await engine.model.generate(short, 8);
              engine.model.reset();
              const row = Array.from(await engine.model.forward(long));
              await engine.unload();
              return { gen, row };
            }""", [server.url(f"/b/{arch}/"), PROMPT[:10], PROMPT])
            assert got["gen"] == tokens, arch
            row = np.array(got["row"], dtype=np.float32)
            assert row.shape == last.shape, arch
            assert np.abs(row - last).max() <= 1e-3 * max(1.0, float(np.abs(last).max())), arch
        page.context.close()
