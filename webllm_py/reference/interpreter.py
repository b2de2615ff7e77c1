"""Numpy interpreter of the bundle's graph: the oracle for the native and browser runtimes.

It runs exactly what the bundle carries (graph + dequantized weights), so any
difference from transformers is the compiler's or the quantization's, and any
difference from the GPU runtimes is theirs. precision="f16" rounds every
activation and the KV cache to float16, mimicking the f16-activation kernels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..bundle import Bundle
from ..errors import ContextWindowExceededError
from ..ir import Graph
from ..ir.graph import eval_shape
from ..ir.ops import OPS, StepContext

PRECISIONS = ("f32", "f16")


def run_graph(graph: Graph, params: dict[str, np.ndarray], state: dict[str, np.ndarray],
              ids: np.ndarray, p: int, precision: str = "f32") -> np.ndarray:
    """One step: feed `ids` at position `p`, mutate `state` (KV cache), return the output value."""
    ctx = StepContext(n=len(ids), p=p)
    env: dict[str, np.ndarray] = {"ids": np.asarray(ids, dtype=np.int32)}
    for node in graph.nodes:
        args = [env[i] if i in env else params[i] if i in params else state[i] for i in node.inputs]
        out = OPS[node.op].reference(args, node.attrs, ctx)
        outs = out if isinstance(out, list) else [out] if node.outputs else []
        for name, value in zip(node.outputs, outs):
            if precision == "f16":
                value = value.astype(np.float16).astype(np.float32)
            expect = eval_shape(graph.values[name].shape, {"n": ctx.n, "p": ctx.p})
            assert value.shape == expect, f"{node.op} -> {name}: {value.shape} != {expect}"
            env[name] = value
    return env[graph.output]


class ReferenceModel:
    """LanguageModel (runtime/lm.py) backed by numpy."""

    def __init__(self, bundle: Bundle, precision: str = "f32"):
        if precision == "auto":
            precision = "f32"
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS} or 'auto', got {precision!r}")
        self.bundle = bundle
        self.bundle_dir: Path = bundle.dir
        self.manifest: dict[str, Any] = bundle.manifest
        self.precision = precision
        m = self.manifest
        self.vocab_size = int(m["model"]["config"]["vocab_size"])
        self.context_window = int(m["context_window"])
        self.prefill_chunk = int(m["prefill_chunk"])
        self.eos_token_ids = set(m["tokenizer"]["eos_token_ids"])
        self._graphs = {k: Graph.from_json(g) for k, g in m["graphs"].items()}
        self._params = {name: bundle.read_param(name) for name in m["weights"]}
        cache_dtype = np.float16 if precision == "f16" else np.float32
        g = self._graphs["logits_last"]
        self._state = {k: np.zeros(eval_shape(v.shape, {}), dtype=cache_dtype) for k, v in g.state.items()}
        self._position = 0

    @property
    def position(self) -> int:
        return self._position

    def reset(self) -> None:
        self._position = 0

    def truncate(self, position: int) -> None:
        if not 0 <= position <= self._position:
            raise ValueError(f"cannot truncate to {position}: cache holds {self._position} tokens")
        self._position = position  # rows past it are overwritten before they are read again

    def _check_room(self, n: int) -> None:
        if self._position + n > self.context_window:
            raise ContextWindowExceededError(
                f"{self._position} cached + {n} new tokens exceed the context window of {self.context_window}"
            )

    def _run(self, graph: str, ids: Sequence[int]) -> list[np.ndarray]:
        ids = [int(i) for i in ids]
        if not ids:
            raise ValueError("ids must not be empty")
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token ids {bad[:5]} are outside the vocabulary (size {self.vocab_size})")
        self._check_room(len(ids))
        outs = []
        for start in range(0, len(ids), self.prefill_chunk):
            chunk = np.array(ids[start : start + self.prefill_chunk], dtype=np.int32)
            outs.append(run_graph(self._graphs[graph], self._params, self._state, chunk, self._position, self.precision))
            self._position += len(chunk)
        return outs

    def forward(self, ids: Sequence[int]) -> np.ndarray:
        return self._run("logits_last", ids)[-1][-1]

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        self.reset()
        return np.concatenate(self._run("logits_all", ids), axis=0)

    def generate(self, ids: Sequence[int], max_new_tokens: int) -> list[int]:
        self.reset()
        out: list[int] = []
        row = self.forward(ids)
        for _ in range(max_new_tokens):
            tok = int(np.argmax(row))
            out.append(tok)
            if tok in self.eos_token_ids or self._position >= self.context_window:
                break
            if len(out) < max_new_tokens:
                row = self.forward([tok])
        return out
