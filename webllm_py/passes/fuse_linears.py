"""Graph pass: linears that read the same input become one linear over stacked weights + a split.

q/k/v projections and the MLP's gate/up projections read the same normalized
activations; one matmul over their stacked rows reads the input once, uses
one dispatch instead of three (or two), and keeps more GPU threads busy. The
fused param records which checkpoint tensors it stacks (`Param.concat`); the
bundle writer builds it by concatenating their rows, which quantizes exactly
like the separate tensors (groups run along rows). The graph stays exact:
split hands each original consumer its original columns.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..ir import Graph, Node
from ..ir.graph import Param


def _fused_name(names: list[str]) -> str:
    """'model.layers.0.self_attn.q_proj.weight' + k + v -> 'model.layers.0.self_attn.q_proj+k_proj+v_proj.weight'."""
    prefix = os.path.commonprefix([n.rsplit(".", 1)[0] for n in names])
    prefix = prefix[: prefix.rfind(".") + 1]
    short = [n[len(prefix):].rsplit(".", 1)[0] for n in names]
    return f"{prefix}{'+'.join(short)}.{names[0].rsplit('.', 1)[1]}"


def fuse_linears(g: Graph, max_bytes: float = float("inf"), bytes_per_weight: float = 4.0,
                 keep_apart: Callable[[list[str]], bool] | None = None) -> Graph:
    """Rewrite `g` in place; return it.

    Groups whose stacked weight could exceed `max_bytes` (at `bytes_per_weight`) stay
    separate: a weight over the storage-binding limit is bound in row slices, which the
    fused multi-output / SiLU-gate matmuls do not support. So do groups `keep_apart`
    is true for (the writer's: weights a GGUF stores in different block types)."""
    by_input: dict[str, list[int]] = {}
    for i, node in enumerate(g.nodes):
        if node.op == "linear" and g.params[node.inputs[1]].role == "linear":
            by_input.setdefault(node.inputs[0], []).append(i)
    replace: dict[int, list[Node]] = {}
    drop: set[int] = set()
    for x, idx in by_input.items():
        nodes = [g.nodes[i] for i in idx]
        biased = {len(n.inputs) > 2 for n in nodes}
        if len(nodes) < 2 or len(biased) != 1:
            continue
        weights = [n.inputs[1] for n in nodes]
        cols = {g.params[w].shape[1] for w in weights}
        if len(cols) != 1:
            continue
        sizes = [g.params[w].shape[0] for w in weights]
        if sum(sizes) * next(iter(cols)) * bytes_per_weight > max_bytes or (keep_apart and keep_apart(weights)):
            continue
        fused_w = _fused_name(weights)
        g.params[fused_w] = Param(fused_w, (sum(sizes), cols.pop()), "linear", tuple(weights))
        inputs = [x, fused_w]
        if biased.pop():
            biases = [n.inputs[2] for n in nodes]
            fused_b = _fused_name(biases)
            g.params[fused_b] = Param(fused_b, (sum(sizes),), "bias", tuple(biases))
            inputs.append(fused_b)
        fused_out = "+".join(n.outputs[0] for n in nodes)
        g.values[fused_out] = type(g.values[nodes[0].outputs[0]])(fused_out, (g.values[nodes[0].outputs[0]].shape[0], sum(sizes)))
        replace[idx[0]] = [Node("linear", inputs, [fused_out]),
                           Node("split", [fused_out], [n.outputs[0] for n in nodes], {"sizes": sizes})]
        drop.update(idx[1:])
        for n in nodes:
            for p in n.inputs[1:]:
                del g.params[p]
    new_nodes: list[Node] = []
    for i, node in enumerate(g.nodes):
        if i in drop:
            continue
        new_nodes.extend(replace.get(i, [node]))
    g.nodes = new_nodes
    return g
