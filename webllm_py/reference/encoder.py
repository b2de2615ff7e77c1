"""Numpy interpreter of an embedding bundle's graph: the oracle for the GPU encoder programs.

Like reference/interpreter.py it runs exactly what the bundle carries (graph +
dequantized weights); precision="f16" rounds every activation to float16, as
the f16 program set stores them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..bundle import Bundle
from ..ir import Graph
from ..ir.graph import eval_shape
from ..ir.ops import OPS, StepContext
from ..runtime.embedder import BatchedEncoder

PRECISIONS = ("f32", "f16")


def run_encoder_graph(graph: Graph, params: dict[str, np.ndarray], ids: np.ndarray, rows: np.ndarray,
                      offsets: np.ndarray, precision: str = "f32") -> np.ndarray:
    """One packed batch through the graph; returns its output, (b, dimensions)."""
    env: dict[str, Any] = {"ids": ids, "rows": rows, "offsets": offsets}
    dims = {"n": len(ids), "p": 0, "b": len(offsets) - 1}
    ctx = StepContext(n=len(ids), p=0)
    for node in graph.nodes:
        args = [env[i] if i in env else params[i] for i in node.inputs]
        out = OPS[node.op].reference(args, node.attrs, ctx)
        for name, value in zip(node.outputs, out if isinstance(out, list) else [out]):
            if precision == "f16":
                value = value.astype(np.float16).astype(np.float32)
            expect = eval_shape(graph.values[name].shape, dims)
            assert value.shape == expect, f"{node.op} -> {name}: {value.shape} != {expect}"
            env[name] = value
    return env[graph.output]


class ReferenceEncoder(BatchedEncoder):
    """Embedding backend (runtime/embedder.py) backed by numpy."""

    def __init__(self, bundle: Bundle, precision: str = "f32"):
        if precision in ("auto", "idot"):  # idot approximates the f32 result; the reference computes it exactly
            precision = "f32"
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS} or 'auto', got {precision!r}")
        self._init_limits(bundle.manifest, bundle.dir)
        self.bundle, self.bundle_dir, self.precision = bundle, bundle.dir, precision
        self._graph = Graph.from_json(bundle.manifest["graphs"]["embed"])
        self._params = {name: bundle.read_param(name) for name in bundle.manifest["weights"]}

    def _step(self, ids: np.ndarray, rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        return run_encoder_graph(self._graph, self._params, ids, rows, offsets, self.precision)
