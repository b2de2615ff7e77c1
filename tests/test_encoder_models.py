"""Embedding models (BERT, XLM-RoBERTa, Qwen3 as an embedder) on the reference backend vs transformers.

Tolerance: f32 bundles match transformers' pooled (and normalized) outputs within
max |diff| <= 2e-4 (the issue's bound; measured ~1e-7: the same f32 math in another
summation order). transformers runs the rows as one padded batch with an attention
mask; the bundle packs them without padding, several steps when the rows exceed the
bundle's step limits (96 tokens, 4 rows), so packing, the row mask and the batching
are all checked against padding + mask. q8 bundles: cosine >= 0.999 per row (int8
groups of 32 on random weights).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import webllm_py
from encoder_fixtures import TINY_ENCODERS, make_tiny_encoder
from webllm_py.errors import BuildError

# 9 rows packed in 3 steps: [3, 17, 48] (the next row would pass 96 tokens), [40, 30, 2, 1] (4 rows),
# [5, 9]; 48 = max_seq_length, 1 = a row of one token
LENGTHS = (3, 17, 48, 40, 30, 2, 1, 5, 9)


def token_rows(vocab: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [[int(t) for t in rng.integers(5, vocab, size=n)] for n in LENGTHS]


def hf_pooled(folder, rows, pooling: str, normalize: bool, pad_id: int) -> np.ndarray:
    from transformers import AutoModel

    m = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    L = max(map(len, rows))
    ids = torch.full((len(rows), L), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    types = {} if m.config.model_type == "qwen3" else {"token_type_ids": torch.zeros_like(ids)}
    with torch.no_grad():
        h = m(input_ids=ids, attention_mask=mask, **types).last_hidden_state  # right padding: real tokens first
    lengths = mask.sum(1)
    pooled = {"mean": lambda: (h * mask[..., None]).sum(1) / lengths[:, None],
              "cls": lambda: h[:, 0],
              "last": lambda: h[torch.arange(len(rows)), lengths - 1]}[pooling]()
    if normalize:
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
    return pooled.numpy()


def cosine(a, b):
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


@pytest.mark.parametrize("arch", list(TINY_ENCODERS))
def test_f32_pooled_outputs_match_transformers(arch, tiny_encoders, tiny_encoder_bundles):
    _, kw, st = TINY_ENCODERS[arch]
    rows = token_rows(kw["vocab_size"])
    ref = hf_pooled(tiny_encoders[arch], rows, st["pooling"], st["normalize"], kw["pad_token_id"])
    enc = webllm_py.load_embedder(tiny_encoder_bundles(arch, "f32"), backend="reference")
    assert enc.batches(rows) == [(0, 3), (3, 7), (7, 9)]  # the step limits split the rows, in order
    ours = enc.encode(rows)
    assert ours.shape == (len(rows), kw["hidden_size"])
    assert np.abs(ours - ref).max() <= 2e-4


@pytest.mark.parametrize("arch", list(TINY_ENCODERS))
def test_q8_bundle_close_to_transformers(arch, tiny_encoders, tiny_encoder_bundles):
    _, kw, st = TINY_ENCODERS[arch]
    rows = token_rows(kw["vocab_size"], seed=1)
    ref = hf_pooled(tiny_encoders[arch], rows, st["pooling"], st["normalize"], kw["pad_token_id"])
    ours = webllm_py.load_embedder(tiny_encoder_bundles(arch, "q8"), backend="reference").encode(rows)
    assert cosine(ours, ref).min() >= 0.999


@pytest.mark.parametrize("pooling,normalize", [("cls", True), ("last", False), ("mean", False)])
def test_pooling_modes_follow_the_sentence_transformers_files(pooling, normalize, tmp_path):
    folder = make_tiny_encoder(tmp_path / "m", "bert", seed=3, pooling=pooling, normalize=normalize)
    bundle = webllm_py.build(folder, tmp_path / "b", quantization="f32", progress=False)
    m = json.loads((bundle / "manifest.json").read_text())
    assert (m["embedding"]["pooling"], m["embedding"]["normalize"]) == (pooling, normalize)
    rows = token_rows(200, seed=2)
    ref = hf_pooled(folder, rows, pooling, normalize, pad_id=0)
    assert np.abs(webllm_py.load_embedder(bundle, backend="reference").encode(rows) - ref).max() <= 2e-4


def test_manifest_and_tokenizer_record_the_recipe(tiny_encoder_bundles):
    from tokenizers import Tokenizer

    bundle = tiny_encoder_bundles("bert", "f32")
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["embedding"] == {"pooling": "mean", "normalize": True, "max_seq_length": 48, "lowercase": False,
                              "prompts": {}, "default_prompt_name": None, "dimensions": 64,
                              "max_batch_tokens": 96, "max_batch_rows": 4}
    assert m["quantization"]["scheme"] == "f32" and set(m["graphs"]) == {"embed"}
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    # the source tokenizer truncated at 16 and padded to 32; the bundle's truncates at 48, never pads
    long_ids = tok.encode("the quick brown fox " * 40).ids
    assert len(long_ids) == 48 and long_ids[0] == tok.token_to_id("[CLS]") and long_ids[-1] == tok.token_to_id("[SEP]")
    assert len(tok.encode("fox").ids) < 16


def test_default_quantization_of_an_embedding_model_is_q8(tiny_encoders, tmp_path):
    bundle = webllm_py.build(tiny_encoders["xlm-roberta"], tmp_path / "b", progress=False)
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["quantization"]["scheme"] == "q8"
    assert m["weights"]["encoder.layer.0.intermediate.dense.weight"]["format"] == "q8"
    assert m["weights"]["embeddings.position_embeddings.weight"]["format"] == "f32"  # tables stay f32


def test_bundle_kinds_are_not_interchangeable(tiny_encoder_bundles, tiny_bundles):
    with pytest.raises(webllm_py.BundleError, match="is an embedding model, not a language model"):
        webllm_py.load(tiny_encoder_bundles("bert", "f32"), backend="reference")
    with pytest.raises(webllm_py.BundleError, match="is a language model, not an embedding model"):
        webllm_py.load_embedder(tiny_bundles("llama", "f32"), backend="reference")


def test_encode_rejects_bad_token_rows(tiny_encoder_bundles):
    enc = webllm_py.load_embedder(tiny_encoder_bundles("bert", "f32"), backend="reference")
    for rows, msg in [([[]], "row 0 has no tokens"), ([[5] * 49], "at most max_seq_length 48"),
                      ([[5], [200]], r"row 1: token ids \[200\] are outside"), ([[-1]], "outside the vocabulary")]:
        with pytest.raises(ValueError, match=msg):
            enc.encode(rows)
    assert enc.encode([]).shape == (0, 64)


# -- bad inputs: one line naming the file and field, nothing written ------------------------

def _edit_json(path, fn):
    d = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps(fn(d)))


BAD_FOLDERS = [
    ("config.json", lambda d: {**d, "hidden_act": "relu"}, "hidden_act"),
    ("config.json", lambda d: {**d, "position_embedding_type": "relative_key"}, "position_embedding_type"),
    ("config.json", lambda d: {**d, "num_attention_heads": 5}, "not a multiple of num_attention_heads"),
    ("config.json", lambda d: {**d, "layer_norm_eps": "tiny"}, "layer_norm_eps"),
    ("config.json", lambda d: {**d, "is_decoder": True}, "is_decoder"),
    ("config.json", lambda d: {k: v for k, v in d.items() if k != "intermediate_size"}, "'intermediate_size'"),
    ("modules.json", lambda d: d + [{"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}],
     "Dense"),
    ("modules.json", lambda d: d[:1], "expected Transformer, Pooling"),
    ("modules.json", lambda d: {"not": "a list"}, "expected a list of modules"),
    ("1_Pooling/config.json", lambda d: {**d, "pooling_mode_max_tokens": True}, "pooling_mode_max_tokens"),
    ("1_Pooling/config.json", lambda d: {**d, "pooling_mode_cls_token": True}, "exactly one of"),
    ("1_Pooling/config.json", lambda d: {**d, "include_prompt": False}, "include_prompt"),
    ("sentence_bert_config.json", lambda d: {**d, "max_seq_length": 65}, "max_seq_length 65 must be an integer in 1..64"),
    ("sentence_bert_config.json", lambda d: {**d, "max_seq_length": "long"}, "max_seq_length"),
    ("config_sentence_transformers.json", lambda d: {"prompts": {"query": 3}}, "prompts must map names to strings"),
    ("config_sentence_transformers.json", lambda d: {"prompts": {"q": "x"}, "default_prompt_name": "doc"},
     "default_prompt_name"),
]


@pytest.mark.parametrize("rel,edit,msg", BAD_FOLDERS, ids=[f"{r}:{m[:24]}" for r, _, m in BAD_FOLDERS])
def test_bad_folder_is_one_clear_error_and_writes_nothing(rel, edit, msg, tiny_encoders, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(tiny_encoders["bert"], folder)
    _edit_json(folder / rel, edit)
    out = tmp_path / "out"
    with pytest.raises(BuildError) as e:
        webllm_py.build(folder, out, quantization="f32", progress=False)
    text = str(e.value)
    assert msg in text and "\n" not in text and rel.split("/")[-1] in text
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["m"]  # no output, no temp folder


def test_language_model_options_are_refused_for_an_encoder(tiny_encoders, tmp_path):
    with pytest.raises(BuildError, match="option context_window applies to language models"):
        webllm_py.build(tiny_encoders["bert"], tmp_path / "b", progress=False, context_window=64)
    with pytest.raises(BuildError, match="max_batch_tokens must be an integer >= 48"):
        webllm_py.build(tiny_encoders["bert"], tmp_path / "b", progress=False, max_batch_tokens=40)
    assert not (tmp_path / "b").exists()


def test_int64_checkpoint_tensor_is_ignored_but_never_read_as_a_weight(tiny_encoders):
    # older BERT checkpoints save embeddings.position_ids as int64: the build used to refuse the folder
    from webllm_py.models.source import HFFolderSource

    src = HFFolderSource(tiny_encoders["bert"])
    assert "embeddings.position_ids" in src.tensor_names()
    with pytest.raises(BuildError, match="embeddings.position_ids has dtype I64; a weight must be F32, F16 or BF16"):
        src.read("embeddings.position_ids")


def test_missing_weight_is_named(tiny_encoders, tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "m"
    shutil.copytree(tiny_encoders["bert"], folder)
    t = load_file(folder / "model.safetensors")
    del t["encoder.layer.1.output.dense.bias"]
    save_file(t, folder / "model.safetensors")
    with pytest.raises(BuildError, match="missing tensors: encoder.layer.1.output.dense.bias"):
        webllm_py.build(folder, tmp_path / "b", progress=False)


def test_folder_without_sentence_transformers_files_embeds_as_sentence_transformers_loads_it(tiny_encoders, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(tiny_encoders["bert"], folder)
    for f in ("modules.json", "sentence_bert_config.json"):
        (folder / f).unlink()
    m = json.loads((webllm_py.build(folder, tmp_path / "b", progress=False) / "manifest.json").read_text())
    # mean pooling, not normalized, max_seq_length = the position table (64 < model_max_length 512)
    assert (m["embedding"]["pooling"], m["embedding"]["normalize"], m["embedding"]["max_seq_length"]) == ("mean", False, 64)


def test_gelu_tanh_form_matches_torch():
    from webllm_py.ir.ops import OPS

    x = np.linspace(-6, 6, 1001, dtype=np.float32)[None]
    for approx in ("none", "tanh"):
        ref = torch.nn.functional.gelu(torch.from_numpy(x), approximate=approx).numpy()
        assert np.abs(OPS["gelu"].reference([x], {"approximate": approx}, None) - ref).max() <= 1e-6


def test_a_build_is_the_same_under_any_hash_seed(tiny_encoders, tmp_path):
    """Two builds of one model in processes with different PYTHONHASHSEED give byte-identical
    files (a lowering that walked a set once gave the programs other activation buffers)."""
    import subprocess
    import sys

    code = "import sys, webllm_py; webllm_py.build(sys.argv[1], sys.argv[2], progress=False)"
    out = []
    for seed in ("1", "2"):
        dest = tmp_path / f"seed{seed}"
        subprocess.run([sys.executable, "-c", code, str(tiny_encoders["bert"]), str(dest)], check=True,
                       env={**__import__("os").environ, "PYTHONHASHSEED": seed})
        out.append({p.relative_to(dest).as_posix(): p.read_bytes() for p in sorted(dest.rglob("*")) if p.is_file()})
    assert out[0].keys() == out[1].keys()
    assert [k for k in out[0] if out[0][k] != out[1][k]] == []
