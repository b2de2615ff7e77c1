"""The interface every backend (reference numpy, native wgpu-py) implements.

A LanguageModel owns one KV cache. `forward` appends tokens at the current
position and returns the logits of the last one; the engine builds prefill,
decode, multi-turn prefix reuse and sampling on these few verbs.

Longrope models (phi3: models/rope.py) rotate with the short or the long frequencies by the
length of the sequence: a forward call ending past original_max_position_embeddings
(`long_after`) uses the long ones. Cached rows rotated with the other table are computed again
(CachedModel keeps the cached ids for that), as transformers' Phi3 generate() drops its cache at
the switch: logits always equal one fresh forward of the whole sequence, whatever the chunking,
the decode steps or the prefix reuse before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np


class LanguageModel(Protocol):
    manifest: dict[str, Any]  # the bundle's manifest.json
    bundle_dir: Path
    vocab_size: int  # config.vocab_size: columns of every logits row
    context_window: int  # KV cache rows: the bundle's context_window, or fewer chosen at load (kv_sizing.py)
    # Optional: prefill_chunk (int, largest step) and kv_reuse ("program" | "schedule" | "any"):
    # which cached rows the engine may reuse bit-exactly (runtime/kv_reuse.py). A model with
    # a chunk defaults to "schedule", one without to "any" (logits depend on the ids only).

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

    def close(self) -> None:
        """Free what the model holds (GPU buffers, the device); every later step raises."""
        ...


class CachedModel:
    """What every backend shares: the KV-cache position, input checks, chunking, greedy generate.

    A backend sets manifest, bundle_dir, vocab_size, context_window, prefill_chunk and
    eos_token_ids, and implements `_step(rows, ids)`: one step over at most prefill_chunk
    ids at `position`, returning the logits of the last id (rows="last") or of every id
    (rows="all"). It must not move `position`; this class does."""

    prefill_chunk: int
    eos_token_ids: set[int]
    _position: int = 0
    _closed: bool = False
    # while forward/logits run: the position after the call's last id, which every chunk's step
    # passes on (the step uniform's third field; longrope picks its table by it: ir/ops.py
    # rope_table); 0 between calls, when a step's own p + n is its end
    _call_end: int = 0
    _ids: list[int] = []  # the cached positions' ids (a longrope switch runs them again); _advance owns it
    _long_rows: bool = False  # longrope: the cached rows were rotated with the long frequencies

    @property
    def long_after(self) -> int:
        """longrope's original_max_position_embeddings (0: the model has one rope table)."""
        s = self.manifest["model"]["config"].get("rope_scaling") or {}
        return int(s["original_max_position_embeddings"]) if s.get("rope_type") == "longrope" else 0

    def _long(self, end: int) -> bool:
        return bool(self.long_after) and end > self.long_after

    def _stale(self, n: int) -> bool:
        """A call of n more ids uses the other longrope table than the cached rows were rotated with."""
        return self._position > 0 and self._long(self._position + n) != self._long_rows

    def _advance(self, ids: list[int]) -> None:
        """`ids` were written at position: move past them."""
        if self._position == 0:
            self._ids = []  # a fresh sequence: never the class-level default list
        del self._ids[self._position :]
        self._ids.extend(ids)
        self._position += len(ids)
        self._long_rows = self._long(self._position)

    def _step(self, rows: str, ids: list[int]) -> np.ndarray:
        raise NotImplementedError

    @property
    def position(self) -> int:
        return self._position

    def reset(self) -> None:
        self._position = 0

    def truncate(self, position: int) -> None:
        if not 0 <= position <= self._position:
            raise ValueError(f"cannot truncate to {position}: cache holds {self._position} tokens")
        self._position = position  # attention reads rows < p+n only, and each step writes its rows first
        del self._ids[position:]

    def close(self) -> None:
        """Backends free their buffers (and call this); every later step raises."""
        self._closed = True

    def _check(self, ids: Sequence[int]) -> list[int]:
        from ..errors import ContextWindowExceededError, WebLLMError

        if self._closed:
            raise WebLLMError(f"this model of {self.bundle_dir} was closed (Engine.reload or close()); load the bundle again")
        ids = [int(i) for i in ids]
        if not ids:
            raise ValueError("ids must not be empty")
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token ids {bad[:5]} are outside the vocabulary (size {self.vocab_size})")
        if self._position + len(ids) > self.context_window:
            raise ContextWindowExceededError(
                f"{self._position} cached + {len(ids)} new tokens exceed the context window of {self.context_window}")
        return ids

    def _chunks(self, rows: str, ids: Sequence[int]) -> list[np.ndarray]:
        ids = self._check(ids)
        if self._stale(len(ids)):  # longrope switch: the cached rows again, with this call's table
            ids, self._position = self._ids[: self._position] + ids, 0
        out = []
        self._call_end = self._position + len(ids)
        try:
            for start in range(0, len(ids), self.prefill_chunk):
                chunk = ids[start : start + self.prefill_chunk]
                out.append(self._step(rows, chunk))
                self._advance(chunk)
        finally:
            self._call_end = 0
        return out

    def forward(self, ids: Sequence[int]) -> np.ndarray:
        return self._chunks("last", ids)[-1][-1]

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        self.reset()
        return np.concatenate(self._chunks("all", ids), axis=0)

    def generate(self, ids: Sequence[int], max_new_tokens: int) -> list[int]:
        self.reset()
        out: list[int] = []
        row = self.forward(ids)
        while len(out) < max_new_tokens:
            tok = int(np.argmax(row))
            out.append(tok)
            if tok in self.eos_token_ids or self._position >= self.context_window or len(out) == max_new_tokens:
                break
            row = self.forward([tok])
        return out
