"""GGUF import of qwen2, qwen3 and Mistral (llama.cpp writes it as "llama"): tiny seeded HF models
written as GGUFs in convert_hf_to_gguf.py's layout for each, checked against transformers' GGUF
loader reading the same file (it is the reference: its own dequantizer, config and tensor mapping).

| gguf arch         | HF model (conftest.TINY_ARCHS)  | what it exercises                              |
|-------------------|---------------------------------|------------------------------------------------|
| qwen2             | Qwen2Config                     | q/k/v biases (attn_*.bias), tied embeddings, q/k rows NOT permuted (Qwen2Model) |
| qwen3             | Qwen3Config, head_dim 128       | attn_q_norm / attn_k_norm, attention.key_length != hidden / heads, not permuted |
| llama ("mistral") | MistralConfig, 1 kv head        | q/k permuted (LlamaModel.permute); built as llama, as llama.cpp runs it |

Every 2-D weight is Q8_0 (kept as q8 blocks by the default build: bit for bit), norms and biases f32.
llama.cpp has no "mistral" architecture: convert_hf_to_gguf.py writes Mistral 7B v0.x as "llama"
(llama.cpp runs it without a sliding window). transformers' loader loads such a file as a
LlamaForCausalLM too: its mistral route (general.name exactly "mistral") needs a "mistral" arch
that gguf-py 0.19 lacks (NotImplementedError), so it is not the reference.

The vocabulary is conftest's byte-level BPE written as a gpt2-model GGUF vocab with the qwen2
pre-tokenizer (the mistral file too: only its weights are compared; real Mistral files carry a
SentencePiece vocab, tests/test_gguf.py), padded with unused tokens to the model's vocab_size.

Tolerances: logits max |d| <= 2e-3 * max(1, max|logit|) (issue 12's bound for a GGUF), reference
and native f32 backends; both sides dequantize the same blocks exactly, so the differences are f32
summation order only (measured <= 7e-7 x max|logit|). Tokenizer ids: exact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import gguf
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from tokenizers import Tokenizer

import webllm_py
from conftest import make_tiny_model
from gguf_files import add_tensor, finish_gguf
from webllm_py.models.gguf_source import GGUFSource

TOL = 2e-3
PROMPT = [(7 * i + 3) % 290 + 2 for i in range(20)]
TEXTS = ["Once upon a time", " the lazy dog 0123456789.", "hello  there!\n\tweb page", "naïve café 🙂"]
# gguf arch, conftest arch, HF config overrides, q/k permuted by the converter
CASES = {
    "qwen2": ("qwen2", "qwen2", {}, False),
    "qwen3": ("qwen3", "qwen3", {"head_dim": 128, "attention_bias": False}, False),  # transformers' loader: head_dim default 128
    "mistral": ("llama", "mistral", {}, True),
}
_GLOBAL = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
           "lm_head.weight": "output.weight"}
_LAYER = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
          "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
          "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm", "mlp.gate_proj": "ffn_gate",
          "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute: rotate_half halves -> interleaved RoPE pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(folder: Path, out: Path, arch: str, permuted: bool, qtype: str = "Q8_0",
               extra: Callable[[gguf.GGUFWriter], None] | None = None, split_max_tensors: int = 0) -> Path:
    """The HF model in `folder` as convert_hf_to_gguf.py lays it out for `arch`: 2-D weights as `qtype`
    (Q8_0 or F32), yarn rope scaling as Qwen2Model writes it; `extra` adds metadata, and
    split_max_tensors > 0 makes gguf-split's files (the gguf package's writer adds the split keys)."""
    cfg = json.loads((folder / "config.json").read_text())
    sd = load_file(str(folder / "model.safetensors"))
    tok = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    heads, kv, V = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["vocab_size"]
    w = gguf.GGUFWriter(str(out), arch, split_max_tensors=split_max_tensors)
    w.add_name("Mistral 7B tiny" if cfg["model_type"] == "mistral" else f"tiny-{arch}")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    if cfg.get("head_dim"):  # the converter writes it when the config has one
        w.add_key_length(cfg["head_dim"])
        w.add_value_length(cfg["head_dim"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    w.add_rope_freq_base(rope.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    if rope.get("rope_type", rope.get("type")) == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(rope["factor"])
        w.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
    if extra:
        extra(w)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    tokens, types = [f"[PAD{i}]" for i in range(V)], [gguf.TokenType.UNUSED] * V
    for t, i in tok["model"]["vocab"].items():
        tokens[i], types[i] = t, gguf.TokenType.NORMAL
    for a in tok["added_tokens"]:
        tokens[a["id"]], types[a["id"]] = a["content"], gguf.TokenType.CONTROL
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]])
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)
    for hf, t in sd.items():
        if hf == "lm_head.weight" and cfg.get("tie_word_embeddings"):
            continue
        parts = hf.split(".")
        g = _GLOBAL.get(hf) or f"blk.{parts[2]}.{_LAYER['.'.join(parts[3:-1])]}.{parts[-1]}"
        t = t.astype(np.float32)
        if permuted and g.endswith(("attn_q.weight", "attn_k.weight")):
            t = _permute(t, heads if ".attn_q." in g else kv)
        add_tensor(w, g, t, qtype if t.ndim == 2 else None)
    finish_gguf(w)
    return out


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    cache: dict[str, Path] = {}

    def get(case: str) -> Path:
        if case not in cache:
            arch, tiny, overrides, permuted = CASES[case]
            folder = make_tiny_model(tmp_path_factory.mktemp(f"hf-{case}"), tiny, **overrides)
            out = tmp_path_factory.mktemp(f"gguf-{case}")
            cache[case] = write_gguf(folder, out / f"tiny-{case}.gguf", arch, permuted)
        return cache[case]

    return get


def bound(ref: np.ndarray) -> float:
    return TOL * max(1.0, float(np.abs(ref).max()))


@pytest.mark.parametrize("case,model_type,hf_class", [("qwen2", "qwen2", "Qwen2ForCausalLM"),
                                                     ("qwen3", "qwen3", "Qwen3ForCausalLM"),
                                                     ("mistral", "llama", "LlamaForCausalLM")])
def test_logits_match_transformers_gguf_loader(case, model_type, hf_class, gguf_file, tmp_path):
    from transformers import AutoModelForCausalLM

    path = gguf_file(case)
    hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    assert type(hf).__name__ == hf_class
    with torch.no_grad():
        ref = hf(torch.tensor([PROMPT])).logits[0].numpy()
    bundle = webllm_py.build(path, tmp_path / "b", progress=False, prefill_chunk=16)  # default quantization
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["model"]["config"]["model_type"] == model_type
    linears = [w for w in m["weights"].values() if len(w["shape"]) == 2]
    assert {w["format"] for w in linears} == {"q8"} and all(w["error"]["max_abs"] == 0.0 for w in linears)
    model = webllm_py.load(bundle, backend="reference", precision="f32")
    assert np.abs(model.logits(PROMPT) - ref).max() <= bound(ref)
    native = webllm_py.load(bundle, backend="native", precision="f32")
    try:
        assert np.abs(native.logits(PROMPT) - ref).max() <= bound(ref)
    finally:
        native.close()


@pytest.mark.parametrize("case", ["qwen2", "qwen3"])
def test_tokenizer_ids_match_transformers(case, gguf_file):
    from transformers import AutoTokenizer

    path = gguf_file(case)
    ours = Tokenizer.from_str(GGUFSource(path).tokenizer_json)
    theirs = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    for text in TEXTS:
        assert ours.encode(text, add_special_tokens=False).ids == theirs.encode(text, add_special_tokens=False), repr(text)


# -- Gemma's attention scale: llama.cpp's rule (no GGUF key holds query_pre_attn_scalar) ---------------
# llama-model.cpp: 1/sqrt(n_embd / n_head) for the 27B model, which it recognizes by its block count
# (gemma2 46, gemma3 62), 1/sqrt(head_dim) otherwise. hidden 96 / 4 heads = 24 != head_dim 16, so the
# two branches give different scales. A metadata-only GGUF: the config and graph need no tensors.
@pytest.mark.parametrize("arch,layers,scalar", [("gemma2", 46, 24), ("gemma2", 42, 16), ("gemma3", 62, 24),
                                                ("gemma3", 46, 16)])
def test_gemma_attention_scale_follows_llama_cpp(arch, layers, scalar, tmp_path):
    from webllm_py.models.registry import architecture, parse_config

    w = gguf.GGUFWriter(str(tmp_path / "g.gguf"), arch)
    for add, v in [(w.add_block_count, layers), (w.add_context_length, 128), (w.add_embedding_length, 96),
                   (w.add_feed_forward_length, 128), (w.add_head_count, 4), (w.add_head_count_kv, 2),
                   (w.add_key_length, 16), (w.add_value_length, 16), (w.add_sliding_window, 8)]:
        add(v)
    w.add_tokenizer_model("llama")
    w.add_token_list(["<pad>", "<eos>", "<bos>", "<unk>"] + [f"t{i}" for i in range(60)])
    w.add_token_scores([0.0] * 64)
    w.add_token_types([3, 3, 3, 2] + [1] * 60)
    finish_gguf(w)
    src = GGUFSource(tmp_path / "g.gguf")
    assert src.config["query_pre_attn_scalar"] == scalar
    cfg = parse_config(src.config, src.path)
    graph = architecture(cfg).builder.build_graph(cfg, 64)
    scales = {n.attrs["scale"] for n in graph.nodes if n.op == "attention"}
    assert scales == {scalar ** -0.5}  # the attrs the manifest's graphs carry
