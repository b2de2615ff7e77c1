"""The Python runtime against the fixtures the JS package (web/) is tested with.

web/test/fixtures/sampler_golden.json (plain-Python reading of docs/sampling.md) and
tokenizer_golden.json (HF tokenizers / transformers on the real tokenizer files) are
what web/src/sampler.js, tokenizer.js and chat_template.js must reproduce; checking
webllm_py.runtime against the same files makes "same seed, same tokens, same prompt"
hold across the two runtimes.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from webllm_py.runtime.sampler import SamplingParams, process_logits, random_u32, sample_token, uniform
from webllm_py.runtime.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "web/test/fixtures"
SHARED = (REPO / "../shared/models").resolve()
SAMPLER = json.loads((FIXTURES / "sampler_golden.json").read_text())
TOKENIZER = json.loads((FIXTURES / "tokenizer_golden.json").read_text(encoding="utf-8"))


def test_prng_matches_web_golden() -> None:
    for row in SAMPLER["prng"]:
        assert random_u32(row["seed"], row["counter"]) == row["u32"]
        assert uniform(row["seed"], row["counter"]) == row["uniform"]


def bitmask_of(allowed: list[int], vocab: int) -> np.ndarray:
    """xgrammar's bitmask layout (int32 words, bit id % 32 of word id // 32) of the allowed ids."""
    words = np.zeros((vocab + 31) // 32, dtype=np.uint32)
    for t in allowed:
        words[t // 32] |= np.uint32(1 << (t % 32))
    return words.view(np.int32)


def test_sampled_tokens_match_web_golden() -> None:
    for c in SAMPLER["cases"]:
        p = c["params"]
        sp = SamplingParams(
            temperature=p.get("temperature", 1.0),
            top_p=p.get("top_p", 1.0),
            frequency_penalty=p.get("frequency_penalty", 0.0),
            presence_penalty=p.get("presence_penalty", 0.0),
            repetition_penalty=p.get("repetition_penalty", 1.0),
            logit_bias={int(k): v for k, v in (p.get("logit_bias") or {}).items()},
            top_k=p.get("top_k", 0),
            min_p=p.get("min_p", 0.0),
        )
        logits = np.array(SAMPLER["vectors"][c["logits"]], dtype=np.float32)
        mask = bitmask_of(p["allowed"], len(logits)) if "allowed" in p else None
        generated: list[int] = []
        for counter in range(len(c["tokens"])):
            x = process_logits(logits, sp, sorted(set(c["prompt"]) | set(generated)), Counter(generated), mask)
            generated.append(sample_token(x, sp.temperature, sp.top_p, c["seed"], counter, sp.top_k, sp.min_p))
        assert generated == c["tokens"], (c["logits"], p, c["seed"])


@pytest.mark.parametrize("name", sorted(TOKENIZER["models"]))
def test_tokenizer_and_chat_template_match_web_golden(name: str) -> None:
    g = TOKENIZER["models"][name]
    folder = SHARED / g["folder"]
    if not (folder / "tokenizer.json").is_file():
        pytest.skip(f"real tokenizer files not found at {folder}")
    cfg_path = folder / "tokenizer_config.json"
    config = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    tok = Tokenizer(folder / "tokenizer.json", config)
    for text, want in zip(TOKENIZER["texts"], g["encode"]):
        assert tok.encode(text) == want["with_special"], text
        assert tok.encode(text, add_special_tokens=False) == want["without_special"], text
    for conv, want in zip(TOKENIZER["conversations"], g["chat"]):
        text = tok.apply_chat_template(conv["messages"], add_generation_prompt=conv["add_generation_prompt"],
                                       **conv.get("kwargs", {}))
        assert text == want["text"]
        assert tok.encode(text, add_special_tokens=False) == want["ids"]
