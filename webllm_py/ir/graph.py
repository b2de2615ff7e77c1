"""The graph IR: what the model computes for one step, independent of any runtime.

A step feeds `n` new tokens to a model whose KV cache already holds `p`
tokens (prefill: n >= 1 at any p; decode: n == 1). Shapes are tuples of dims;
a dim is an int or a small expression over the symbols `n` and `p`
(e.g. "n", "p+n"), evaluated per step by `eval_dim`.

Three kinds of named tensors exist:
  - params: weights, read-only, stored in the bundle (maybe quantized);
  - state: buffers that outlive a step (the KV cache), shape fixed by the
    bundle's context window;
  - values: activations produced by nodes within a step.
The step's input is `ids` (int32, shape (n,)); an encoder batch of b texts also
has `rows` (n,) and `offsets` (b+1,) (STEP_INPUTS, models/encoder.py).

The graph is plain data and round-trips through JSON (the manifest).
"""

from __future__ import annotations

import ast
from dataclasses import asdict, dataclass, field
from typing import Any

Dim = int | str
Shape = tuple[Dim, ...]

_ALLOWED_SYMBOLS = {"n", "p", "b"}  # b: rows of an encoder batch (models/encoder.py)
# step inputs: token ids, and for an encoder batch each token's row and the rows' offsets
STEP_INPUTS: dict[str, tuple] = {"ids": ("n",), "rows": ("n",), "offsets": ("b+1",)}
# Dim expressions: integers, n, p, + - * and // (ceil division is written (a + b - 1) // b).
_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b, ast.FloorDiv: lambda a, b: a // b}


def eval_dim(dim: Dim, env: dict[str, int]) -> int:
    """Evaluate a dim (int or expression over n, p) in `env`."""
    if isinstance(dim, int):
        return dim
    tree = ast.parse(dim, mode="eval")

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name) and node.id in _ALLOWED_SYMBOLS:
            return env[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError(f"unsupported dim expression {dim!r}")

    return ev(tree)


def eval_shape(shape: Shape, env: dict[str, int]) -> tuple[int, ...]:
    return tuple(eval_dim(d, env) for d in shape)


@dataclass(frozen=True)
class Value:
    """An activation or state tensor."""

    name: str
    shape: Shape
    dtype: str = "f32"


@dataclass(frozen=True)
class Param:
    """A weight tensor as the graph sees it: logical shape (HF layout, (out, in) for linears)."""

    name: str
    shape: tuple[int, ...]
    role: str = "other"  # "linear" | "embedding" | "norm" | "bias" | "table": decides quantization
    concat: tuple[str, ...] = ()  # made by stacking the rows of these checkpoint tensors (fused linears)


@dataclass
class Node:
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    params: dict[str, Param] = field(default_factory=dict)
    state: dict[str, Value] = field(default_factory=dict)
    values: dict[str, Value] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    output: str = "logits"

    # -- building ---------------------------------------------------------------
    def param(self, name: str, shape: tuple[int, ...], role: str = "other") -> str:
        if name in self.params:
            if self.params[name].shape != tuple(shape):
                raise ValueError(f"param {name} redeclared with shape {shape}")
            return name
        self.params[name] = Param(name, tuple(int(s) for s in shape), role)
        return name

    def state_tensor(self, name: str, shape: Shape, dtype: str = "f32") -> str:
        self.state[name] = Value(name, tuple(shape), dtype)
        return name

    def add(self, op: str, inputs: list[str], out: str | None, **attrs: Any) -> str | None:
        """Append a node; infer the output's shape with the op's shape rule.

        `out` is None for ops that only change state (kv_write)."""
        from .ops import OPS

        opdef = OPS[op]
        shapes = [self.shape_of(i) for i in inputs]
        out_shape = opdef.shape_rule(shapes, attrs)
        if (out is None) != (out_shape is None):
            raise ValueError(f"{op}: output name and shape rule disagree on whether it has an output")
        if out is not None:
            if out in self.values or out in self.params or out in self.state:
                raise ValueError(f"value {out} defined twice")
            self.values[out] = Value(out, tuple(out_shape))
        self.nodes.append(Node(op, list(inputs), [out] if out else [], dict(attrs)))
        return out

    def add_multi(self, op: str, inputs: list[str], outs: list[str], **attrs: Any) -> list[str]:
        """Append a node with several outputs (split)."""
        from .ops import OPS

        shapes = OPS[op].shape_rule([self.shape_of(i) for i in inputs], attrs)
        if len(shapes) != len(outs):
            raise ValueError(f"{op}: {len(outs)} output names for {len(shapes)} outputs")
        for out, shape in zip(outs, shapes):
            if out in self.values or out in self.params or out in self.state:
                raise ValueError(f"value {out} defined twice")
            self.values[out] = Value(out, tuple(shape))
        self.nodes.append(Node(op, list(inputs), list(outs), dict(attrs)))
        return list(outs)

    def shape_of(self, name: str) -> Shape:
        if name in STEP_INPUTS:
            return STEP_INPUTS[name]
        for table in (self.values, self.params, self.state):
            if name in table:
                return table[name].shape
        raise KeyError(f"unknown tensor {name}")

    # -- (de)serialization ------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "params": {k: {"shape": list(v.shape), "role": v.role, **({"concat": list(v.concat)} if v.concat else {})}
                       for k, v in self.params.items()},
            "state": {k: {"shape": list(v.shape), "dtype": v.dtype} for k, v in self.state.items()},
            "values": {k: {"shape": list(v.shape), "dtype": v.dtype} for k, v in self.values.items()},
            "nodes": [asdict(n) for n in self.nodes],
            "output": self.output,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Graph":
        g = cls()
        g.params = {k: Param(k, tuple(v["shape"]), v.get("role", "other"), tuple(v.get("concat", ())))
                    for k, v in d["params"].items()}
        g.state = {k: Value(k, tuple(v["shape"]), v["dtype"]) for k, v in d["state"].items()}
        g.values = {k: Value(k, tuple(v["shape"]), v["dtype"]) for k, v in d["values"].items()}
        g.nodes = [Node(n["op"], list(n["inputs"]), list(n["outputs"]), dict(n["attrs"])) for n in d["nodes"]]
        g.output = d["output"]
        return g


def compile_dim(dim: Dim):
    """A fast callable f(n, p, b=0) -> int for a dim, validated like eval_dim (runtimes call it per step)."""
    if isinstance(dim, int):
        return lambda n, p, b=0: dim
    eval_dim(dim, {"n": 1, "p": 0, "b": 1})  # validates: only ints, n, p, b and + - * //
    code = compile(ast.parse(dim, mode="eval"), "<dim>", "eval")
    return lambda n, p, b=0: eval(code, {"__builtins__": {}}, {"n": n, "p": p, "b": b})
