"""Tokenizer facts the runtimes need (bos/eos ids), checked against the model config.

The tokenizer itself ships unchanged (tokenizer.json, tokenizer_config.json);
this only validates it loads and gathers eos ids from every place HF keeps them
(config.json, generation_config.json, tokenizer_config.json's eos_token).
"""

from __future__ import annotations

from typing import Any

from ..errors import BuildError
from ..models.config import DecoderConfig
from ..models.source import ModelSource


def _ids(v: Any) -> list[int]:
    if v is None:
        return []
    return [int(x) for x in (v if isinstance(v, list) else [v])]


def _token_str(v: Any) -> str | None:
    if isinstance(v, dict):  # AddedToken serialized form
        return v.get("content")
    return v if isinstance(v, str) else None


def tokenizer_metadata(source: ModelSource, cfg: DecoderConfig) -> dict[str, Any]:
    from tokenizers import Tokenizer

    tok_path = source.path / "tokenizer.json" if source.path.is_dir() else source.path
    try:
        tok = Tokenizer.from_str(source.tokenizer_json)
    except Exception as e:  # the Rust error type is not exported; any failure means unreadable
        raise BuildError(f"unreadable tokenizer ({str(e).splitlines()[0][:200]})", tok_path) from None
    size = tok.get_vocab_size(with_added_tokens=True)
    if size > cfg.vocab_size:
        raise BuildError(f"tokenizer has {size} tokens but the model's vocab_size is {cfg.vocab_size}", tok_path)
    tc = source.tokenizer_config
    eos = _ids(source.generation_config.get("eos_token_id")) + _ids(source.config.get("eos_token_id"))
    eos_str = _token_str(tc.get("eos_token"))
    if eos_str is not None and tok.token_to_id(eos_str) is not None:
        eos.append(tok.token_to_id(eos_str))
    bos = source.generation_config.get("bos_token_id", source.config.get("bos_token_id"))
    bos_str = _token_str(tc.get("bos_token"))
    if bos is None and bos_str is not None:
        bos = tok.token_to_id(bos_str)
    bad = [i for i in eos if not 0 <= i < cfg.vocab_size]
    if bad:
        raise BuildError(f"eos token ids {bad} are outside the vocabulary", tok_path)
    return {
        "file": "tokenizer.json",
        "config_file": "tokenizer_config.json",
        "bos_token_id": int(bos) if isinstance(bos, int) else None,
        "eos_token_ids": sorted(set(eos)),
        "add_bos_token": bool(tc.get("add_bos_token", False)),
        "has_chat_template": bool(tc.get("chat_template")),
    }
