"""Encode ahead: the next decode step's command buffer recorded while the GPU runs this one.

A program's dispatch list depends on (n, p) only, never on the token ids: those live in the ids
buffer and the step uniform, written with queue.write_buffer, which is ordered before the next
submit. So right after submitting a step at (n, p) a runtime records the likely next step - a
decode at (1, p + n) in the same readback mode - and the next step submits that buffer when its
(program, n, p, mode) is the one recorded. A miss (a truncate, a prefill, a mode change) records
afresh. Either way the GPU runs the same commands, so the logits are bit-identical; what moves
is ~5 us of CPU per dispatch (wgpu-py), off the step's critical path and into the GPU's time.
The browser runtime does the same (web/src/encode_ahead.js).
"""

from __future__ import annotations

from typing import Any, Callable, Hashable


class EncodeAhead:
    """One command buffer recorded ahead, keyed by what it was recorded for."""

    def __init__(self, encode: Callable[[Hashable], Any]):
        self._encode = encode
        self._key: Hashable = None
        self._buffer: Any = None
        self.hits = 0  # steps that submitted a buffer recorded ahead
        self.misses = 0  # steps that had to record theirs

    def take(self, key: Hashable) -> Any:
        """The command buffer for `key`: the one recorded ahead if it matches, else a fresh one."""
        if self._buffer is not None and self._key == key:
            buf, self.hits = self._buffer, self.hits + 1
        else:
            buf, self.misses = self._encode(key), self.misses + 1
        self._key = self._buffer = None  # command buffers are single-use
        return buf

    def prepare(self, key: Hashable) -> None:
        """Record the buffer for `key` now (call right after a submit, before waiting on it)."""
        self._key, self._buffer = key, self._encode(key)

    def clear(self) -> None:
        self._key = self._buffer = None
