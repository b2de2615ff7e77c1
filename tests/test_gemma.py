"""Gemma 2 and Gemma 3 (text): seeded tiny models from their own transformers config classes
against transformers' logits, and the Gemma ops' kernels against the numpy op references
(webllm_py/ir/ops.py) on wgpu-py (lavapipe).

| model        | features exercised                                                                    |
|--------------|---------------------------------------------------------------------------------------|
| gemma2       | 4 layers alternating sliding (window 8) / global, attention soft-capping 2.0 and final |
|              | soft-capping 3.0 that cap (checked below), query_pre_attn_scalar 24, (1 + w) norms     |
|              | (weights ~1 +- 0.3: a missing +1 is a 2x error), pre/post norms, GeGLU                 |
| gemma3_text  | 6 layers, the 5:1 local/global pattern, two rope bases (local 100, global 1e4 with      |
|              | linear scaling 2), q/k norms, sqrt(hidden) embedding scale                             |

The prompt (37 tokens) is longer than the window and crosses the 16-token prefill chunk twice;
every position's logits are compared (score program), and token by token (decode program).

Tolerances:
  f32 weights and activations (reference; native f32 and idot sets): max |d| <= 2e-4 * max(1,
      max|logit|), the same f32 math in another order (issue 12's bound).
  f16 storage (native f16: f16 activations and KV; gpu / gpu-sg: KV as f16 pairs): 5e-2 *
      max(1, max|logit|), test_architectures.py's f16 bound.
  greedy: 12 new tokens identical to transformers' (f32 sets).
  kernels: attention 1e-4 (f32 sums in another order; tanh as 1 - 2/(exp(2u)+1): ~1e-7
      absolute), 2e-3 with f16 activations (2^-11 rounding of q and out); elementwise 1e-5 f32,
      2e-3 f16 (test_kernels.py's TOL_ELEMENTWISE).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import webllm_py
from conftest import assert_config_field_refused, hf_reference_bundle, make_tiny_model
from gguf_files import add_tensor, finish_gguf
from parity import F16_STORAGE_SETS, F32_TOL, assert_reference_matches, bound, native_program_sets, set_tol
from webllm_py.codegen import AttentionKey, EmbeddingKey, build
from webllm_py.codegen.attention_gpu import AttentionSplitKey
from webllm_py.codegen.attention_tiled import AttentionTiledKey
from webllm_py.codegen.gemma_kernels import GeluMulKey, SoftcapKey
from webllm_py.errors import BuildError

from webllm_py.testing.browser_kernels import browser_kernel_runner  # noqa: F401  (the SwiftShader fixture)

from test_gpu_attention import need_subgroups, run_flash
from test_kernels import (  # noqa: F401  (runner: the lavapipe fixture)
    EXTRA,
    TOL,
    TOL_ELEMENTWISE,
    check,
    f,
    need,
    padded,
    rand,
    ref_op,
    rng_for,
    runner,
    same_bits,
    sentinel,
)

PROMPT = [(5 * i + 7) % 280 + 2 for i in range(37)]
WINDOW = 8
COMMON = dict(hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
              vocab_size=300, max_position_embeddings=256, rms_norm_eps=1e-5, sliding_window=WINDOW)
ATTN_CAP, FINAL_CAP = 2.0, 3.0
ARCHS: dict[str, tuple[str, dict]] = {
    "gemma2": ("Gemma2Config", dict(COMMON, num_hidden_layers=4, query_pre_attn_scalar=24,
                                    attn_logit_softcapping=ATTN_CAP, final_logit_softcapping=FINAL_CAP)),
    "gemma3_text": ("Gemma3TextConfig", dict(COMMON, num_hidden_layers=6, query_pre_attn_scalar=16, rope_parameters={
        "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4},
        "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}})),
}


def _hf_logits(folder, **overrides) -> np.ndarray:
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **overrides)
    with torch.no_grad():
        return hf(torch.tensor([PROMPT])).logits[0].numpy()


@pytest.fixture(scope="module")
def gemma_bundles(tmp_path_factory):
    cache: dict[str, tuple] = {}

    def get(arch: str):
        if arch not in cache:
            folder, bundle, ref, greedy = hf_reference_bundle(tmp_path_factory, arch, ARCHS[arch], PROMPT)
            cache[arch] = (folder, bundle, ref, greedy)
        return cache[arch]

    return get


def test_gemma2_soft_capping_actually_caps(gemma_bundles):
    """Without the caps transformers' logits change far beyond the tolerance, and the raw logits
    pass the final cap: the fixture exercises both soft-cappings."""
    folder, _, ref, _ = gemma_bundles("gemma2")
    raw = _hf_logits(folder, final_logit_softcapping=None)
    assert np.abs(raw).max() > FINAL_CAP
    uncapped_attn = _hf_logits(folder, attn_logit_softcapping=None)
    assert np.abs(uncapped_attn - ref).max() > 50 * bound(ref, F32_TOL)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_reference_matches_transformers(arch, gemma_bundles):
    _, bundle, ref, greedy = gemma_bundles(arch)
    # the default context window is not cut to the sliding window: the kernels implement it
    assert json.loads((bundle / "manifest.json").read_text())["context_window"] == 256 > WINDOW
    assert_reference_matches(bundle, PROMPT, ref, greedy)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_native_every_program_set_matches_transformers(arch, gemma_bundles, adapter):
    _, bundle, ref, greedy = gemma_bundles(arch)
    for name, model in native_program_sets(bundle, adapter, {"f32", "idot", "gpu"}):
        tol = bound(ref, set_tol(name))
        assert np.abs(model.logits(PROMPT) - ref).max() <= tol, name  # score program (prefill forms)
        model.reset()
        steps = np.stack([model.forward([t]) for t in PROMPT])  # decode program, past the window
        assert np.abs(steps - ref).max() <= tol, name
        if name not in F16_STORAGE_SETS:
            assert model.generate(PROMPT[:10], max_new_tokens=12) == greedy, name


# -- kernels ------------------------------------------------------------------------------

@pytest.mark.parametrize("act", ["f32", "f16"])
@pytest.mark.parametrize("cols", [13, 1000])
@pytest.mark.parametrize("n", [1, 7])
def test_gelu_mul_and_softcap_kernels(runner, act, cols, n):
    need(runner, act)
    rng = rng_for("gemma-ew", act, cols, n)
    a, b = rand(rng, (n, cols), act, 4.0), rand(rng, (n, cols), act)
    out = sentinel((n + EXTRA, cols), act)
    k = build(GeluMulKey(act, cols))
    got = runner.run(k, {"gate": padded(a, act), "up": padded(b, act), "out": out}, n)["out"]
    check(got[:n], ref_op("gelu_mul", [f(a), f(b)], n), TOL_ELEMENTWISE[act], k.name)
    same_bits(got[n:], out[n:], "sentinel rows")
    k = build(SoftcapKey(act, cols, 3.0))  # inputs up to ~16: well past the cap
    got = runner.run(k, {"x": padded(a, act), "out": out}, n)["out"]
    check(got[:n], ref_op("softcap", [f(a)], n, cap=3.0), TOL_ELEMENTWISE[act], k.name)
    same_bits(got[n:], out[n:], "sentinel rows")


@pytest.mark.parametrize("act", ["f32", "f16"])
def test_embedding_scale(runner, act):
    need(runner, act)
    rng = rng_for("emb-scale", act)
    table = rng.standard_normal((50, 24)).astype(np.float32)
    ids = np.array([3, 49, 0, 7], np.int32)
    scale = float(np.float32(math.sqrt(640)))
    out = sentinel((len(ids) + EXTRA, 24), act)
    k = build(EmbeddingKey(act, "f32", 50, 24, scale=scale))
    got = runner.run(k, {"ids": ids, "w": table, "out": out}, len(ids))["out"]
    check(got[:len(ids)], ref_op("embedding", [ids, table], len(ids), scale=scale), TOL_ELEMENTWISE[act], k.name)


def _attention_case(act: str, heads: int, kv_heads: int, hd: int, n: int, p: int, kv_dtype: str | None = None):
    """q, K/V caches with NaN rows before the first query's window and past p+n (a kernel reading
    a key outside every window fails), and the reference with window + softcap."""
    rng = rng_for("gemma-att", act, heads, kv_heads, hd, n, p)
    kvw, dt = kv_heads * hd, kv_dtype or act
    q = rand(rng, (n, heads * hd), act, 2.0)
    kc, vc = rand(rng, (p + n + EXTRA, kvw), dt, 2.0), rand(rng, (p + n + EXTRA, kvw), dt)
    lo = max(0, p + 1 - WINDOW)
    for c in (kc, vc):
        c[:lo] = sentinel((lo, kvw), dt)
        c[p + n:] = sentinel((EXTRA, kvw), dt)
    scale = 1.0 / math.sqrt(hd)
    ref = ref_op("attention", [f(q), f(np.nan_to_num(kc)), f(np.nan_to_num(vc))], n, p, heads=heads,
                 kv_heads=kv_heads, head_dim=hd, scale=scale, window=WINDOW, softcap=ATTN_CAP)
    return q, kc, vc, scale, ref


CASES = [(1, 0), (1, 5), (1, 40), (7, 3), (5, 40), (20, 9)]  # p + n below, at and past the window


@pytest.mark.parametrize("act", ["f32", "f16"])
@pytest.mark.parametrize("form", ["decode", "prefill"])
@pytest.mark.parametrize("n,p", CASES)
def test_cpu_attention_window_softcap(runner, act, form, n, p):
    need(runner, act)
    heads, kv_heads, hd = 4, 2, 16
    q, kc, vc, scale, ref = _attention_case(act, heads, kv_heads, hd, n, p)
    out = sentinel((n + EXTRA, heads * hd), act)
    k = build(AttentionKey(act, heads, kv_heads, hd, scale, form=form, window=WINDOW, softcap=ATTN_CAP))
    got = runner.run(k, {"q": padded(q, act), "k_cache": kc, "v_cache": vc, "out": out}, n, p)["out"]
    check(got[:n], ref, TOL[act], k.name)
    same_bits(got[n:], out[n:], "sentinel rows")


@pytest.mark.parametrize("kv", ["", "f16x2"])
@pytest.mark.parametrize("tq,tk", [(0, 0), (2, 3)])  # default tiles; tiny tiles: rows whose window starts past a tile
@pytest.mark.parametrize("n,p", CASES)
def test_tiled_attention_window_softcap(runner, kv, tq, tk, n, p):
    heads, kv_heads, hd = 6, 2, 16
    q, kc, vc, scale, ref = _attention_case("f32", heads, kv_heads, hd, n, p, "f16" if kv else None)
    out = sentinel((n + EXTRA, heads * hd), "f32")
    k = build(AttentionTiledKey("f32", kv, heads, kv_heads, hd, scale, tq=tq, tk=tk, window=WINDOW, softcap=ATTN_CAP))
    got = runner.run(k, {"q": padded(q, "f32"), "k_cache": kc, "v_cache": vc, "out": out}, n, p)["out"]
    check(got[:n], ref, TOL["f32"], k.name)
    same_bits(got[n:], out[n:], "sentinel rows")


@pytest.mark.parametrize("subgroups", [False, True])
@pytest.mark.parametrize("kv", ["", "f16x2"])
@pytest.mark.parametrize("n,p", [(1, 0), (1, 5), (1, 40), (3, 37)])
def test_split_attention_window_softcap(runner, subgroups, kv, n, p):
    """Flash-decoding with blocks of 4 keys: at p = 40 nine blocks lie wholly before the window
    (empty records), one is cut by it."""
    need_subgroups(runner, subgroups)
    heads, kv_heads, hd = 4, 2, 16
    q, kc, vc, scale, ref = _attention_case("f32", heads, kv_heads, hd, n, p, "f16" if kv else None)
    key = AttentionSplitKey("f32", kv, heads, kv_heads, hd, scale, block=4, wg=8, subgroups=subgroups,
                            window=WINDOW, softcap=ATTN_CAP)
    check(run_flash(runner, key, q, kc, vc, n, p), ref, TOL["f32"], key.name)


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("which", ["gelu_mul", "softcap", "decode", "tiled", "split"])
def test_gemma_kernels_swiftshader(browser_kernel_runner, which):
    """Tint compiles the Gemma kernels and SwiftShader computes them (f32; tolerances as on lavapipe):
    gelu_mul, softcap, and the attention forms with window + softcap past the window."""
    r, n, p = browser_kernel_runner, 3, 37
    if which in ("gelu_mul", "softcap"):
        rng = rng_for("bgemma", n)
        a, b = rand(rng, (n, 40), "f32", 4.0), rand(rng, (n, 40), "f32")
        out = sentinel((n + EXTRA, 40), "f32")
        if which == "gelu_mul":
            got = r.run(build(GeluMulKey("f32", 40)), {"gate": padded(a, "f32"), "up": padded(b, "f32"), "out": out}, n)
            check(got["out"][:n], ref_op("gelu_mul", [a, b], n), TOL_ELEMENTWISE["f32"], which)
        else:
            got = r.run(build(SoftcapKey("f32", 40, 3.0)), {"x": padded(a, "f32"), "out": out}, n)
            check(got["out"][:n], ref_op("softcap", [a], n, cap=3.0), TOL_ELEMENTWISE["f32"], which)
        return
    heads, kv_heads, hd = 4, 2, 16
    q, kc, vc, scale, ref = _attention_case("f32", heads, kv_heads, hd, n, p)
    if which == "split":
        key = AttentionSplitKey("f32", "", heads, kv_heads, hd, scale, block=4, wg=8, window=WINDOW, softcap=ATTN_CAP)
        check(run_flash(r, key, q, kc, vc, n, p), ref, TOL["f32"], key.name)
        return
    key = (AttentionKey("f32", heads, kv_heads, hd, scale, form="decode", window=WINDOW, softcap=ATTN_CAP) if which == "decode"
           else AttentionTiledKey("f32", "", heads, kv_heads, hd, scale, tq=4, tk=8, window=WINDOW, softcap=ATTN_CAP))
    out = sentinel((n + EXTRA, heads * hd), "f32")
    got = r.run(build(key), {"q": padded(q, "f32"), "k_cache": kc, "v_cache": vc, "out": out}, n, p)["out"]
    check(got[:n], ref, TOL["f32"], key.name)


def test_window_and_softcap_leave_other_kernels_unchanged():
    """window=0 / softcap=0 are the kernels' old text: names and WGSL of keys without them equal."""
    plain = AttentionKey("f32", 4, 2, 16, 0.25, form="prefill")
    assert plain.name == "attention_act-f32_heads-4_kv_heads-2_head_dim-16_scale-0.25_form-prefill_wg-0"
    assert "WINDOW" not in build(plain).wgsl and "CAP" not in build(plain).wgsl
    assert "scale" not in EmbeddingKey("f32", "f32", 50, 24).name


@pytest.mark.parametrize("key", [
    lambda: AttentionKey("f32", 4, 2, 16, 0.25, window=-1),
    lambda: AttentionTiledKey("f32", "", 4, 2, 16, 0.25, softcap=-1.0),
    lambda: AttentionSplitKey("f32", "", 4, 2, 16, 0.25, window=-2),
    lambda: SoftcapKey("f32", 10, 0.0),
])
def test_kernel_key_errors(key):
    with pytest.raises(ValueError, match="window must be|cap must be"):
        build(key())


# -- config errors ------------------------------------------------------------------------

@pytest.mark.parametrize("field,value,msg", [
    ("layer_types", ["sliding_attention"] * 3, "must be a list of 4 values 'sliding_attention' or 'full_attention'"),
    ("layer_types", ["sliding_attention", "full", "sliding_attention", "full_attention"], "layer_types"),
    ("hidden_activation", "relu", "'hidden_activation' 'relu' is not supported"),
    ("use_bidirectional_attention", True, "use_bidirectional_attention"),
    ("attn_logit_softcapping", -1.0, "attn_logit_softcapping"),
    ("query_pre_attn_scalar", 0, "query_pre_attn_scalar"),
])
def test_bad_gemma_fields_are_one_line_errors(field, value, msg, tmp_path):
    folder = make_tiny_model(tmp_path / "m", "gemma2", spec=ARCHS["gemma2"])
    assert_config_field_refused(folder, field, value, msg, tmp_path / "b")


def test_gemma3_vision_language_checkpoint_is_refused(tmp_path):
    from webllm_py.models.registry import parse_config

    with pytest.raises(BuildError, match="vision-language checkpoint.*gemma3_text") as e:
        parse_config({"model_type": "gemma3", "text_config": {}}, tmp_path / "config.json")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("fields", [
    dict(rope_theta=5e4, rope_local_base_freq=300.0, rope_scaling={"rope_type": "linear", "factor": 4.0},
         sliding_window_pattern=3),
    {},  # every rope / pattern field absent: the config class's defaults (1e6 global, 1e4 local, 5:1)
])
def test_legacy_gemma3_config_layout_reads_like_transformers(fields, tmp_path):
    """A transformers-4 style config.json (rope_theta, rope_local_base_freq, rope_scaling,
    sliding_window_pattern; as google/gemma-3 checkpoints ship), or one leaving them out, gives the
    rope tables and layer pattern transformers computes from it."""
    from transformers import Gemma3TextConfig
    from transformers.models.gemma3.modeling_gemma3 import Gemma3RotaryEmbedding

    from webllm_py.models import gemma

    legacy = dict(COMMON, model_type="gemma3_text", num_hidden_layers=7, **fields)
    cfg = gemma.parse_gemma_config(legacy, tmp_path / "config.json")
    hf_cfg = Gemma3TextConfig(**{k: v for k, v in legacy.items() if k != "model_type"})
    rot = Gemma3RotaryEmbedding(hf_cfg)
    ours = gemma.computed_params(cfg)
    np.testing.assert_allclose(ours[gemma.INV_FREQ], rot.full_attention_inv_freq.numpy(), rtol=1e-6)
    np.testing.assert_allclose(ours[gemma.INV_FREQ_LOCAL], rot.sliding_attention_inv_freq.numpy(), rtol=1e-6)
    assert cfg.sliding_layers == tuple(int(t == "sliding_attention") for t in hf_cfg.layer_types)


# -- GGUF ---------------------------------------------------------------------------------
# A tiny gemma2 / gemma3 GGUF written the way llama.cpp's convert_hf_to_gguf.py writes one (its
# tensor names, norms stored as 1 + w, q/k not permuted, a SentencePiece vocab without a space
# prefix), each linear in another block type that bundles keep bit for bit. transformers'
# GGUF loader is the reference (it reads the metadata it knows and takes its config class's
# defaults for the rest: the local rope base, the layer pattern; query_pre_attn_scalar is given it
# as llama.cpp's rule sets it for the GGUF build, head_dim here: models/gguf_source.py).
# Tolerance 2e-4 x max|logit|: both dequantize the same blocks; only f32 summation order differs.

GGUF_TYPES = ["Q8_0", "Q5_0", "Q4_0", "Q5_1", "Q4_1"]
_GGUF_LAYER = {"input_layernorm": "attn_norm", "post_attention_layernorm": "post_attention_norm",
               "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm",
               "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
               "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
               "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
               "mlp.down_proj": "ffn_down"}


def write_gemma_gguf(hf_folder, path, arch: str):
    """The HF tiny model `hf_folder` as a `arch` ("gemma2" | "gemma3") GGUF at `path`."""
    import gguf
    from safetensors.numpy import load_file

    cfg = json.loads((hf_folder / "config.json").read_text())
    sd = load_file(str(hf_folder / "model.safetensors"))
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_key_length(cfg["head_dim"])
    w.add_value_length(cfg["head_dim"])
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_sliding_window(cfg["sliding_window"])
    if arch == "gemma2":
        w.add_attn_logit_softcapping(50.0)  # what transformers' loader assumes (its config default)
        w.add_final_logit_softcapping(30.0)
    vocab = cfg["vocab_size"]
    toks = ["<pad>", "<eos>", "<bos>", "<unk>"] + [f"▁t{i}" if i % 3 else f"t{i}" for i in range(vocab - 4)]
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores([0.0] * 4 + [-float(i) for i in range(vocab - 4)])
    w.add_token_types([3, 3, 3, 2] + [1] * (vocab - 4))
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_unk_token_id(3)
    w.add_add_space_prefix(False)
    k = 0
    for name, t in sd.items():
        if name == "lm_head.weight":
            continue
        if name == "model.embed_tokens.weight":
            g = "token_embd.weight"
        elif name == "model.norm.weight":
            g = "output_norm.weight"
        else:
            i, rest = name[len("model.layers."):].split(".", 1)
            g = f"blk.{i}.{_GGUF_LAYER[rest.rsplit('.', 1)[0]]}.weight"
        t = t.astype(np.float32) + (1.0 if name.endswith("norm.weight") else 0.0)  # the converter's 1 + w
        if t.ndim == 2:
            add_tensor(w, g, t, GGUF_TYPES[k % len(GGUF_TYPES)])
            k += 1
        else:
            add_tensor(w, g, t)
    finish_gguf(w)
    return path


@pytest.mark.parametrize("arch,hf_arch", [("gemma3", "gemma3_text"), ("gemma2", "gemma2")])
def test_gguf_matches_transformers_gguf_loader(arch, hf_arch, gemma_bundles, tmp_path):
    from transformers import AutoModelForCausalLM

    folder = gemma_bundles(hf_arch)[0]
    path = write_gemma_gguf(folder, tmp_path / f"tiny-{arch}.gguf", arch)
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=path.name, dtype=torch.float32,
                                              query_pre_attn_scalar=COMMON["head_dim"])
    with torch.no_grad():
        ref = hf(torch.tensor([PROMPT])).logits[0].numpy()
    bundle = webllm_py.build(path, tmp_path / "b", progress=False, prefill_chunk=16)  # default quantization
    m = json.loads((bundle / "manifest.json").read_text())
    linears = [w for n, w in m["weights"].items() if len(w["shape"]) == 2]
    assert {w["format"] for w in linears} == {"q8", "q5", "q4", "q5a", "q4a"}  # every block kept as stored
    assert all(w["error"]["max_abs"] == 0.0 for w in linears)
    model = webllm_py.load(bundle, backend="reference", precision="f32")
    assert np.abs(model.logits(PROMPT) - ref).max() <= bound(ref, F32_TOL)
    native = webllm_py.load(bundle, backend="native", precision="f32")
    try:
        assert np.abs(native.logits(PROMPT) - ref).max() <= bound(ref, F32_TOL)
    finally:
        native.close()
