"""Seeded tiny embedding models (BERT, XLM-RoBERTa, a Qwen3 decoder as embedder) with sentence-transformers files.

Made with transformers' own config and model classes, random non-default
LayerNorm weights and biases (a missed or misplaced weight changes the output),
a WordPiece (BERT), Unigram (XLM-RoBERTa) or byte-level BPE (Qwen3, appending the
eos token as Qwen3-Embedding's tokenizer does) tokenizer trained on a fixed text,
and the sentence-transformers files that say how to pool. The BERT folder also
carries the int64 `embeddings.position_ids` tensor older checkpoints save, and a
tokenizer.json that pads and truncates (as all-MiniLM-L6-v2's does) so the build
has to undo both. The Qwen3 folder is saved as the bare Qwen3Model (no "model." prefix),
as sentence-transformers saves Qwen3-Embedding, with GQA, q/k norms and head_dim 24.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TEXT = ["Once upon a time there was a little model that ran in a web page.",
        "The quick brown fox jumps over the lazy dog 0123456789.",
        "Semantic search ranks documents by the cosine of their embeddings.",
        "Ünïcödé text, émojis 🙂 and CJK 文字 also get tokens."] * 10

# arch -> (config class, overrides, ST recipe)
TINY_ENCODERS: dict[str, tuple[str, dict, dict]] = {
    "bert": ("BertConfig", dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                                vocab_size=200, max_position_embeddings=64, type_vocab_size=2, layer_norm_eps=1e-12,
                                pad_token_id=0),
             dict(pooling="mean", normalize=True, max_seq_length=48)),
    "xlm-roberta": ("XLMRobertaConfig", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                             num_attention_heads=2, vocab_size=220, max_position_embeddings=52,
                                             type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1,
                                             bos_token_id=0, eos_token_id=2),
                    dict(pooling="cls", normalize=False, max_seq_length=50)),
    "qwen3": ("Qwen3Config", dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, head_dim=24, vocab_size=304, max_position_embeddings=256,
                                  rms_norm_eps=1e-6, pad_token_id=1, bos_token_id=0, eos_token_id=1,
                                  tie_word_embeddings=False),
              dict(pooling="last", normalize=True, max_seq_length=48)),
}
POOLING_FLAG = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token", "last": "pooling_mode_lasttoken"}


def wordpiece_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(TEXT, trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], show_progress=False))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    tok.enable_truncation(16)  # the build must replace these with max_seq_length / no padding
    tok.enable_padding(length=32, pad_id=0, pad_token="[PAD]")
    return tok


def unigram_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(TEXT, trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return tok


def bpe_tokenizer():
    from conftest import tiny_tokenizer_json
    from tokenizers import Tokenizer, processors

    tok = Tokenizer.from_str(tiny_tokenizer_json())
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return tok


TOKENIZERS = {"bert": lambda kw: wordpiece_tokenizer(kw["vocab_size"]),
              "xlm-roberta": lambda kw: unigram_tokenizer(kw["vocab_size"]), "qwen3": lambda kw: bpe_tokenizer()}
SPECIAL_TOKENS = {
    "bert": {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]"},
    "xlm-roberta": {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"},
    "qwen3": {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "</s>"},
}


def write_st_files(folder: Path, pooling: str, normalize: bool, max_seq_length: int, hidden: int) -> None:
    """modules.json, 1_Pooling/config.json, sentence_bert_config.json as sentence-transformers saves them."""
    mods = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        mods.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(mods))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    flags = {f: f == POOLING_FLAG[pooling] for f in POOLING_FLAG.values()}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": hidden, **flags, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length,
                                                                  "do_lower_case": False}))


def make_tiny_encoder(folder: Path, arch: str, seed: int = 0, **recipe) -> Path:
    """Save a seeded random `arch` encoder (HF layout + ST files) into `folder`; return it."""
    import numpy as np
    import torch
    import transformers
    from safetensors.numpy import load_file, save_file

    cls_name, kw, st = TINY_ENCODERS[arch]
    st = {**st, **recipe}
    cfg = getattr(transformers, cls_name)(**kw)
    torch.manual_seed(seed)
    extra = {} if arch == "qwen3" else {"add_pooling_layer": True}  # BERT's pooler: a tensor the build ignores
    model = transformers.AutoModel.from_config(cfg, **extra).to(torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name or name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.08 * torch.randn_like(p))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    if arch == "bert":  # older checkpoints save the position_ids buffer, as int64
        f = folder / "model.safetensors"
        tensors = load_file(f)
        tensors["embeddings.position_ids"] = np.arange(cfg.max_position_embeddings, dtype=np.int64)[None]
        save_file(tensors, f, metadata={"format": "pt"})
    (folder / "tokenizer.json").write_text(TOKENIZERS[arch](kw).to_str(), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({**SPECIAL_TOKENS[arch], "model_max_length": 512,
                                                               "tokenizer_class": "PreTrainedTokenizerFast"}))
    write_st_files(folder, st["pooling"], st["normalize"], st["max_seq_length"], kw["hidden_size"])
    return folder


@pytest.fixture(scope="session")
def tiny_encoders(tmp_path_factory) -> dict[str, Path]:
    """arch -> HF folder of a seeded tiny encoder (built once per session)."""
    return {arch: make_tiny_encoder(tmp_path_factory.mktemp(f"tiny-enc-{arch}") / "m", arch) for arch in TINY_ENCODERS}


@pytest.fixture(scope="session")
def tiny_encoder_bundles(tiny_encoders, tmp_path_factory):
    """(arch, quantization) -> built embedding bundle, built lazily and cached."""
    import webllm_py

    cache: dict[tuple[str, str], Path] = {}

    def get(arch: str, quantization: str = "f32") -> Path:
        if (arch, quantization) not in cache:
            out = tmp_path_factory.mktemp(f"enc-bundle-{arch}-{quantization}") / "b"
            cache[arch, quantization] = webllm_py.build(tiny_encoders[arch], out, quantization=quantization,
                                                        progress=False, max_batch_tokens=96, max_batch_rows=4)
        return cache[arch, quantization]

    return get
