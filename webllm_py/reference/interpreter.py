"""Numpy interpreter of the bundle's graph: the oracle for the native and browser runtimes.

It runs exactly what the bundle carries (graph + dequantized weights), so any
difference from transformers is the compiler's or the quantization's, and any
difference from the GPU runtimes is theirs. precision="f16" rounds every
activation and the KV cache to float16, mimicking the f16-activation kernels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle
from ..ir import Graph
from ..ir.graph import eval_shape
from ..ir.ops import OPS, StepContext
from ..runtime.kv_sizing import kv_rings, resolve_context_window
from ..runtime.lm import CachedModel

PRECISIONS = ("f32", "f16")


def run_graph(graph: Graph, params: dict[str, np.ndarray], state: dict[str, np.ndarray],
              ids: np.ndarray, p: int, precision: str = "f32", end: int = 0) -> np.ndarray:
    """One step: feed `ids` at position `p`, mutate `state` (KV cache), return the output value.
    `end`: the position after the forward call's last id when this step is one chunk of it."""
    ctx = StepContext(n=len(ids), p=p, end=end)
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


class ReferenceModel(CachedModel):
    """LanguageModel (runtime/lm.py) backed by numpy."""

    def __init__(self, bundle: Bundle, precision: str = "f32", context_window_size: int | None = None):
        if precision in ("auto", "idot"):
            # idot is an execution strategy of the GPU programs (integer dot products on 9-bit
            # activations); the reference computes what it approximates, the exact f32 result
            precision = "f32"
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS} or 'auto', got {precision!r}")
        self.bundle = bundle
        self.bundle_dir: Path = bundle.dir
        self.manifest: dict[str, Any] = bundle.manifest
        self.precision = precision
        m = self.manifest
        self.vocab_size = int(m["model"]["config"]["vocab_size"])
        self.context_window = resolve_context_window(m, context_window_size)  # KV rows (runtime/kv_sizing.py)
        self.prefill_chunk = int(m["prefill_chunk"])
        self.eos_token_ids = set(m["tokenizer"]["eos_token_ids"])
        self._graphs = {k: Graph.from_json(g) for k, g in m["graphs"].items()}
        self._params = {name: bundle.read_param(name) for name in m["weights"]}
        cache_dtype = np.float16 if precision == "f16" else np.float32
        g = self._graphs["logits_last"]
        # (context_window, width) per cache in the graph, or a sliding-window layer's ring of R rows:
        # the chosen window's rows here, at most R for a ring (positions < the window never pass row R - 1)
        self._state = {k: np.zeros((min(rows, self.context_window), width), dtype=cache_dtype)
                       for k, v in g.state.items() for rows, width in [eval_shape(v.shape, {})]}
        self.kv_rings = kv_rings(m)  # which cached rows a ring overwrote (runtime/kv_reuse.py)

    def close(self) -> None:
        super().close()
        self._params, self._state = {}, {}

    def _step(self, rows: str, ids: list[int]) -> np.ndarray:
        graph = self._graphs["logits_last" if rows == "last" else "logits_all"]
        return run_graph(graph, self._params, self._state, np.array(ids, dtype=np.int32), self._position, self.precision,
                         self._call_end)
