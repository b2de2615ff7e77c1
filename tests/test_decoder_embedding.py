"""Decoder checkpoints as embedders (Qwen3-Embedding's layout): which folders embed, names, prompts.

The numerics (reference and native vs transformers' Qwen3Model, last-token pooling, 2e-4 f32)
are in the parametrized tests of tests/test_encoder_models.py and tests/test_encoder_native.py,
whose TINY_ENCODERS include "qwen3". Here: a qwen3 folder with modules.json is an embedding
model, the same folder without it a language model; bare Qwen3Model names ("layers.0...") and
*ForCausalLM names ("model.layers.0...", with an lm_head) both build and embed alike; the
default prompt of config_sentence_transformers.json prefixes every text.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import webllm_py
from webllm_py import Engine


def test_manifest_of_a_decoder_embedder(tiny_encoder_bundles):
    m = json.loads((tiny_encoder_bundles("qwen3", "f32") / "manifest.json").read_text())
    assert m["model"]["architecture"] == "qwen3" and m["model"]["config"]["num_key_value_heads"] == 2
    assert (m["embedding"]["pooling"], m["embedding"]["normalize"]) == ("last", True)
    assert "lm_head.weight" not in m["weights"] and "rope.inv_freq" in m["weights"]
    kernels = [d["kernel"] for d in m["programs"]["f32"]["encode"]["dispatches"]]
    assert any(k.startswith("encoder_attention_") and "causal-1" in k and "kv_heads-2" in k for k in kernels)
    assert any(k.startswith("matmul_") and "epilogue-silu_mul" in k for k in kernels)  # gate/up + SiLU in one matmul


def test_without_modules_json_it_is_a_language_model(tiny_encoders, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(tiny_encoders["qwen3"], folder)
    (folder / "modules.json").unlink()
    # a bare Qwen3Model checkpoint has no LM head: as a language model it is refused by name
    with pytest.raises(webllm_py.BuildError, match="missing tensors: lm_head.weight, model.embed_tokens.weight"):
        webllm_py.build(folder, tmp_path / "b", quantization="f32", progress=False)


def test_causal_lm_names_embed_like_bare_names(tiny_encoders, tiny_encoder_bundles, tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "m"
    shutil.copytree(tiny_encoders["qwen3"], folder)
    t = load_file(folder / "model.safetensors")
    t = {f"model.{k}": v for k, v in t.items()}
    t["lm_head.weight"] = np.zeros((304, 64), np.float32)  # a *ForCausalLM checkpoint: the head is ignored
    save_file(t, folder / "model.safetensors")
    rows = [[5, 6, 7, 1], [9, 1]]
    a = webllm_py.load_embedder(webllm_py.build(folder, tmp_path / "b", quantization="f32", progress=False),
                                backend="reference").encode(rows)
    b = webllm_py.load_embedder(tiny_encoder_bundles("qwen3", "f32"), backend="reference").encode(rows)
    assert np.array_equal(a, b)


def test_default_prompt_prefixes_every_text(tiny_encoders, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(tiny_encoders["qwen3"], folder)
    prompt = "Instruct: find the story\nQuery: "
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": prompt, "document": ""}, "default_prompt_name": "query"}))
    bundle = webllm_py.build(folder, tmp_path / "b", quantization="f32", progress=False)
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["embedding"]["prompts"]["query"] == prompt and m["embedding"]["default_prompt_name"] == "query"
    eng = Engine(bundle, backend="reference")
    got = eng.embeddings.create(input="once upon a time").data[0].embedding
    plain = Engine(webllm_py.build(tiny_encoders["qwen3"], tmp_path / "p", quantization="f32", progress=False),
                   backend="reference")  # the same model without a default prompt
    assert got == plain.embeddings.create(input=prompt + "once upon a time").data[0].embedding
