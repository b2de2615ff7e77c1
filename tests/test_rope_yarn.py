"""YaRN rope scaling (Qwen2.5 / Qwen3's long-context setting) and dynamic NTK, against transformers.

| check                                   | reference                                        | tolerance                    |
|-----------------------------------------|--------------------------------------------------|------------------------------|
| inv_freq + attention factor per variant | transformers' ROPE_INIT_FUNCTIONS["yarn"]        | rtol 1e-6 (same f32 ops; measured bit-equal) |
| tiny qwen2 / qwen3 with yarn, llama     | the transformers model on the same HF folder     | 2e-4 x max|logit| (issue 12's f32 bound: f32 |
|   with dynamic NTK                      |                                                  |   summation order only)      |
| qwen2 yarn, every native program set    | the same                                         | f32 sets 2e-4, f16-storage sets 5e-2 (test_phi3's) |
| qwen2 yarn GGUF                         | the HF-config build (inv_freq, cos_scale: equal) | exact; logits 2e-4 x max|logit| vs transformers |

The tiny models' original_max_position_embeddings is 32 and the prompt 40 tokens, so positions cross
it; with head_dim 16 the ramp runs over dims 0..2 (correction dims -1.6 / 1.4 before truncation), so
extrapolated, blended (dim 1, asserted) and interpolated frequencies all occur.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import webllm_py
from conftest import TINY_ARCHS, hf_reference_bundle
from webllm_py.bundle.reader import Bundle
from webllm_py.errors import BuildError
from webllm_py.models.registry import parse_config
from webllm_py.models.rope import inv_freq, rope_attrs

TOL = 2e-4
PROMPT = [(5 * i + 7) % 290 + 2 for i in range(40)]
YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}
# case -> (conftest arch, rope_scaling)
MODELS = {"qwen2-yarn": ("qwen2", YARN), "qwen3-yarn": ("qwen3", YARN),
          "llama-dynamic": ("llama", {"rope_type": "dynamic", "factor": 2.0})}


def bound(ref: np.ndarray) -> float:
    return TOL * max(1.0, float(np.abs(ref).max()))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    cache: dict[str, tuple] = {}

    def get(case: str) -> tuple[Path, Path, np.ndarray]:
        if case not in cache:
            arch, scaling = MODELS[case]
            cls, kw = TINY_ARCHS[arch]
            folder, bundle, ref, _ = hf_reference_bundle(tmp_path_factory, case, (cls, {**kw, "rope_scaling": scaling}),
                                                         PROMPT, greedy_tokens=1)
            cache[case] = (folder, bundle, ref)
        return cache[case]

    return get


@pytest.mark.parametrize("extra", [{}, {"truncate": False}, {"mscale": 0.7, "mscale_all_dim": 1.0},
                                   {"attention_factor": 1.3, "beta_fast": 16, "beta_slow": 2},
                                   {"factor": 8.0, "rope_theta": 1e6}])
def test_yarn_table_matches_transformers(extra):
    from transformers import Qwen2Config
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    params = {k: v for k, v in {"rope_theta": 10000.0, **YARN, **extra}.items() if v is not None}
    hf_cfg = Qwen2Config(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         rope_parameters=dict(params))
    want, factor = ROPE_INIT_FUNCTIONS["yarn"](hf_cfg, "cpu")
    # transformers 5's saved layout (rope_parameters) and 4's (rope_scaling + rope_theta, "type")
    t5 = hf_cfg.to_dict()
    t4 = {k: v for k, v in t5.items() if k != "rope_parameters"}
    t4.update(rope_theta=params.pop("rope_theta"), rope_scaling={"type": params.pop("rope_type"), **params})
    plain = 1.0 / 10000.0 ** (np.arange(0, 16, 2) / 16)
    if not extra:  # dim 1 is blended: strictly between the interpolated and the extrapolated frequency
        assert plain[1] / 4 * (1 + 1e-3) < want[1] < plain[1] * (1 - 1e-3)
    for layout in (t5, t4):
        cfg = parse_config(layout, Path("config.json"))
        np.testing.assert_allclose(inv_freq(cfg), want.numpy(), rtol=1e-6)
        assert rope_attrs(cfg) == {"cos_scale": pytest.approx(factor, rel=1e-12)}


@pytest.mark.parametrize("case", list(MODELS))
def test_models_match_transformers(case, models):
    folder, bundle, ref = models(case)
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["model"]["config"]["rope_scaling"]["rope_type"] == MODELS[case][1]["rope_type"]
    for backend in ("reference", "native"):
        model = webllm_py.load(bundle, backend=backend, precision="f32")
        try:
            assert np.abs(model.logits(PROMPT) - ref).max() <= bound(ref), backend
        finally:
            getattr(model, "close", lambda: None)()


def test_every_program_set_scales_cos(models, adapter):
    """yarn's cos_scale through every native program set (GPU sets forced on lavapipe); f16-storage
    sets within test_phi3's f16 bound 5e-2 x max|logit| (f16 activations / KV), the others 2e-4."""
    from parity import native_program_sets, set_tol

    _, bundle, ref = models("qwen2-yarn")
    for s, model in native_program_sets(bundle, adapter, {"f32", "idot", "gpu", "gpu-sg"}):
        assert np.abs(model.logits(PROMPT) - ref).max() <= set_tol(s) * max(1.0, float(np.abs(ref).max())), s


def _rope_attrs_in(bundle: Path) -> list[dict]:
    """The attrs of every rope node of the bundle's graph."""
    m = json.loads((bundle / "manifest.json").read_text())
    return [n["attrs"] for n in m["graphs"]["logits_all"]["nodes"] if n["op"] == "rope"]


def test_gguf_yarn_builds_the_same_rope(models, tmp_path):
    """convert_hf_to_gguf.py's Qwen2Model writes rope.scaling.type yarn, .factor and
    .original_context_length; transformers' GGUF loader ignores them, so the HF folder's build is
    the reference for the table and attrs, and transformers on the folder for the logits."""
    from test_gguf_archs import write_gguf

    folder, hf_bundle, ref = models("qwen2-yarn")
    path = write_gguf(folder, tmp_path / "tiny-qwen2-yarn.gguf", "qwen2", permuted=False, qtype="F32")
    bundle = webllm_py.build(path, tmp_path / "b", quantization="f32", progress=False, prefill_chunk=16)
    assert np.array_equal(Bundle(bundle).read_param("rope.inv_freq"), Bundle(hf_bundle).read_param("rope.inv_freq"))
    attrs = _rope_attrs_in(bundle)
    assert attrs and attrs == _rope_attrs_in(hf_bundle) and all("cos_scale" in a for a in attrs)
    model = webllm_py.load(bundle, backend="reference", precision="f32")
    assert np.abs(model.logits(PROMPT) - ref).max() <= bound(ref)  # F32 weights: the folder's own


@pytest.mark.parametrize("scaling,msg", [
    ({**YARN, "beta_fast": 1, "beta_slow": 32}, "beta_fast' (1) must not be below"),
    ({**YARN, "factor": 0.5}, "rope_scaling.factor' must be a finite number >= 1"),
    ({"rope_type": "ntk-by-parts", "factor": 2.0}, "'ntk-by-parts' is not supported (supported: default, linear, llama3, dynamic, yarn)"),
])
def test_bad_yarn_fields_are_one_line_errors(scaling, msg):
    cfg = {"model_type": "qwen2", "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 96,
           "num_hidden_layers": 1, "vocab_size": 100, "max_position_embeddings": 256, "rope_scaling": scaling}
    with pytest.raises(BuildError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        parse_config(cfg, Path("config.json"))


def test_yarn_refused_where_the_graph_cannot_scale_cos():
    """Gemma's rope ops and the embedding graph's row_rope take no cos_scale: yarn is refused there."""
    from webllm_py.models.decoder_embedding import build_decoder_embedding_graph

    gemma = {"model_type": "gemma2", "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 96,
             "num_hidden_layers": 2, "vocab_size": 100, "head_dim": 16, "rope_scaling": YARN}
    with pytest.raises(BuildError, match="'yarn' is not supported"):
        parse_config(gemma, Path("config.json"))
    qwen3 = dict(gemma, model_type="qwen3", max_position_embeddings=256)
    with pytest.raises(BuildError, match="not supported for embedding models"):
        build_decoder_embedding_graph(parse_config(qwen3, Path("config.json")), "last", True)


def test_gguf_yarn_variants_are_refused(models, tmp_path):
    from test_gguf_archs import write_gguf

    folder = models("qwen2-yarn")[0]
    path = write_gguf(folder, tmp_path / "log-mul.gguf", "qwen2", permuted=False,
                      extra=lambda w: w.add_float32("qwen2.rope.scaling.yarn_log_multiplier", 0.1))
    with pytest.raises(BuildError, match="'qwen2.rope.scaling.yarn_log_multiplier' .* not supported"):
        webllm_py.build(path, tmp_path / "b", progress=False)
    assert not (tmp_path / "b").exists()
