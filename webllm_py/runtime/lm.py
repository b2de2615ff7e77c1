"""The interface every backend (reference numpy, native wgpu-py) implements.

A LanguageModel owns one KV cache. `forward` appends tokens at the current
position and returns the logits of the last one; the engine builds prefill,
decode, multi-turn prefix reuse and sampling on these few verbs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np


class LanguageModel(Protocol):
    manifest: dict[str, Any]  # the bundle's manifest.json
    bundle_dir: Path
    vocab_size: int  # config.vocab_size: columns of every logits row
    context_window: int  # KV cache rows

    @property
    def position(self) -> int:
        """Tokens currently in the KV cache."""
        ...

    def reset(self) -> None:
        """Empty the KV cache (position 0)."""
        ...

    def truncate(self, position: int) -> None:
        """Forget cache rows >= position (keep a shared prefix for the next turn)."""
        ...

    def forward(self, ids: Sequence[int]) -> np.ndarray:
        """Append ids at `position` (prefilled in chunks of the bundle's prefill_chunk);
        return the last token's logits, (vocab_size,) float32. Raises
        ContextWindowExceededError when position + len(ids) > context_window."""
        ...

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Fresh cache; (len(ids), vocab_size) float32 logits of every position."""
        ...

    def generate(self, ids: Sequence[int], max_new_tokens: int) -> list[int]:
        """Fresh cache; greedy new token ids (stops early at an eos id)."""
        ...
