"""Perplexity of a bundle on a text, any backend (`webllm-py eval`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def token_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Negative log-likelihood of each target under each logits row (float64)."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    logz = np.log(np.exp(z).sum(axis=-1))
    return logz - z[np.arange(len(targets)), targets]


def perplexity(model: Any, text: str, max_tokens: int | None = None) -> dict[str, Any]:
    """Score `text` in non-overlapping windows of the context window; return perplexity and counts."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model.bundle_dir / model.manifest["tokenizer"]["file"]))
    ids = tok.encode(text, add_special_tokens=True).ids
    if max_tokens:
        ids = ids[:max_tokens]
    if len(ids) < 2:
        raise ValueError("text is too short to score (needs at least 2 tokens)")
    win = model.context_window
    nll, count, windows = 0.0, 0, 0
    for start in range(0, len(ids) - 1, win):
        chunk = ids[start : start + win + 1]
        if len(chunk) < 2:
            break
        lg = model.logits(chunk[:-1])
        nll += float(token_nll(lg, np.array(chunk[1:])).sum())
        count += len(chunk) - 1
        windows += 1
    return {"perplexity": math.exp(nll / count), "nll": nll / count, "tokens": count, "windows": windows}
