"""Stopping a running request whose client went away, non-streamed ones included.

The Engine has no cancel hook, and a non-streamed create() returns only when every
choice is done (up to n x max_tokens model steps). Every generated token is one
`engine.model.forward` call, though, so for the duration of a job the worker puts
a thin proxy in front of the engine's model whose forward() raises `Cancelled`
once the job's flag is set. The engine treats that like any failed forward: it
marks its KV-cache state unknown (the next request prefills from scratch),
releases its lock and re-raises; the worker answers nobody and moves on. What a
request that is not cancelled returns is unchanged: the proxy only delegates.

Engines without a `.model` (fakes, other implementations) are left as they are:
their non-streamed requests run to the end, as before.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from .errors import Cancelled


class CancellableModel:
    """Delegates everything to `model`; forward() first checks the job's flag."""

    def __init__(self, model: Any, flag: threading.Event, stopping: threading.Event):
        self._model = model
        self._flag = flag
        self._stopping = stopping

    def forward(self, ids: Sequence[int]) -> Any:
        if self._stopping.is_set():
            raise Cancelled("the server is shutting down")
        if self._flag.is_set():
            raise Cancelled("the client went away")
        return self._model.forward(ids)

    def __getattr__(self, name: str) -> Any:  # position, reset, truncate, vocab_size, ...
        return getattr(self._model, name)


@contextmanager
def cancellable(engine: Any, flag: threading.Event, stopping: threading.Event) -> Iterator[None]:
    """Within the block, `engine.model.forward` raises Cancelled once `flag` (or `stopping`) is set.

    Only the worker thread touches the engine, so swapping the attribute is safe;
    the original model is always put back, also when the job fails.
    """
    model = getattr(engine, "model", None)
    if model is None or not callable(getattr(model, "forward", None)):
        yield
        return
    engine.model = CancellableModel(model, flag, stopping)
    try:
        yield
    finally:
        engine.model = model
