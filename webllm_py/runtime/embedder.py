"""What every embedding backend (reference numpy, native wgpu-py) shares: input checks and batching.

A backend sets `manifest` and implements `_step(ids, rows, offsets)`: one packed
batch (models/encoder.py) within the bundle's max_batch_tokens / max_batch_rows,
returning one embedding per row. `encode` checks the token rows and packs them
into as few steps as the limits allow, in order.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import BundleError


def is_embedding_bundle(manifest: dict[str, Any]) -> bool:
    return "embedding" in manifest


def pack_rows(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids (n,), rows (n,), offsets (b+1,)) int32 of token rows packed back to back."""
    lengths = [len(r) for r in rows]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    ids = np.fromiter((t for r in rows for t in r), dtype=np.int32, count=int(offsets[-1]))
    row_of = np.repeat(np.arange(len(rows), dtype=np.int32), lengths)
    return ids, row_of, offsets


class BatchedEncoder:
    """Checks and batching over a backend's `_step`."""

    manifest: dict[str, Any]

    def _init_limits(self, manifest: dict[str, Any], where: Any) -> None:
        if not is_embedding_bundle(manifest):
            raise BundleError("not an embedding bundle (no 'embedding' section in its manifest): it is a "
                              "language model; use load()/Engine chat, or build an embedding model", where)
        e = manifest["embedding"]
        self.manifest = manifest
        self.dimensions = int(e["dimensions"])
        self.max_seq_length = int(e["max_seq_length"])
        self.max_batch_tokens = int(e["max_batch_tokens"])
        self.max_batch_rows = int(e["max_batch_rows"])
        self.vocab_size = int(manifest["model"]["config"]["vocab_size"])

    def _step(self, ids: np.ndarray, rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check(self, rows: Sequence[Sequence[int]]) -> list[list[int]]:
        out = []
        for i, r in enumerate(rows):
            r = [int(t) for t in r]
            if not r:
                raise ValueError(f"row {i} has no tokens")
            if len(r) > self.max_seq_length:
                raise ValueError(f"row {i} has {len(r)} tokens; the model embeds at most max_seq_length "
                                 f"{self.max_seq_length} (the tokenizer truncates texts to it)")
            bad = [t for t in r if not 0 <= t < self.vocab_size]
            if bad:
                raise ValueError(f"row {i}: token ids {bad[:5]} are outside the vocabulary (size {self.vocab_size})")
            out.append(r)
        return out

    def batches(self, rows: list[list[int]]) -> list[tuple[int, int]]:
        """[start, end) row ranges, in order, each within the step limits."""
        out, start, tokens = [], 0, 0
        for i, r in enumerate(rows):
            if i > start and (tokens + len(r) > self.max_batch_tokens or i - start == self.max_batch_rows):
                out.append((start, i))
                start, tokens = i, 0
            tokens += len(r)
        if rows:
            out.append((start, len(rows)))
        return out

    def encode(self, rows: Sequence[Sequence[int]]) -> np.ndarray:
        """(len(rows), dimensions) float32: each token row's pooled (and, per the bundle, normalized) embedding."""
        rows = self._check(rows)
        parts = [self._step(*pack_rows(rows[s:e])) for s, e in self.batches(rows)]
        return np.concatenate(parts, axis=0) if parts else np.zeros((0, self.dimensions), dtype=np.float32)
