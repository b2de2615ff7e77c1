"""Lowering state shared by the lowering's rules (passes/lower.py, lower_fusions.py, lower_encoder.py).

`Lowering` is one program being lowered: its graph, the program set's activation dtype, KV
storage and kernel shapes (codegen/shapes.py), the dispatches so far and which buffer holds
each tensor. Activation buffers come from a `Pool` planned by liveness (`Uses`); weights over
the storage binding limit are bound as row slices (`row_slices`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..codegen import kernels as K
from ..codegen.shapes import Shapes
from ..ir import Graph, Node
from ..ir.graph import eval_shape

PACK_SUFFIXES = ("#q", "#s")  # pseudo-tensors naming a packed value's two buffers


DEFAULT_MAX_BINDING_BYTES = 128 << 20  # WebGPU's default maxStorageBufferBindingSize


def weight_buffer(param: str, part: str, piece: int | None = None) -> str:
    return f"w/{param}/{part}" + ("" if piece is None else f"#{piece}")


def row_slices(weight: dict[str, Any], max_bytes: int) -> list[tuple[int, int]]:
    """(first row, rows) slices of a 2-D weight so that no part of a slice exceeds max_bytes.

    A weight within the limit is one slice; a larger one (the embedding / LM head
    of a 1B model is ~130 MiB in q4) is bound as several buffers, one per slice."""
    rows = weight["shape"][0]
    per_row = max(ref["nbytes"] // rows for ref in weight["parts"].values())
    if per_row * rows <= max_bytes:
        return [(0, rows)]
    step = max_bytes // per_row
    if step < 1:
        raise ValueError(f"one row of {per_row} bytes exceeds the storage binding limit {max_bytes}")
    return [(r0, min(step, rows - r0)) for r0 in range(0, rows, step)]


@dataclass
class Dispatch:
    kernel: str
    bindings: list[str]
    workgroups: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "bindings": self.bindings, "workgroups": self.workgroups}


@dataclass
class LoweredProgram:
    dispatches: list[Dispatch]
    output: str  # buffer holding the logits after the program ran
    output_rows: str  # expression: rows of logits written ("1" or "n")


@dataclass
class Lowering:
    graph: Graph
    weights: dict[str, Any]  # manifest weights: formats and parts
    act: str
    form: str  # "decode" | "prefill"
    max_n: int
    max_binding_bytes: int
    kernels: dict[str, K.Kernel]
    pool: "Pool"
    shapes: Shapes  # the program set's adapter class: which kernel computes each op
    kv: str  # the program set's KV-cache storage (program_sets.KV_BYTES)
    subgroups: bool  # the program set's kernels may use subgroup builtins
    dispatches: list[Dispatch] = field(default_factory=list)
    where: dict[str, str] = field(default_factory=dict)  # tensor -> buffer name
    uses: Any = None  # Uses of the graph being lowered
    logits_value: str = ""
    fuse: bool = True  # matmul prologue/epilogue and rope_kv fusions
    idot: bool = False  # integer dot products on packed activations (decode form only)
    pack_pools: tuple["Pool", "Pool"] | None = None  # (u32 pairs, f32 scales) buffers of packed values
    packed: set[str] = field(default_factory=set)  # values that live packed (L.where[v + "#q" / "#s"])
    context_window: int = 0  # KV positions (a ring cache's state has fewer rows: passes/lower.py _attention)

    def slices(self, param: str) -> list[tuple[int, int]]:
        return row_slices(self.weights[param], self.max_binding_bytes)

    def buffer_of(self, tensor: str, binding: str, piece: int | None = None) -> str:
        if tensor == "ids":
            return "ids"
        if tensor in self.graph.params:
            part = "scales" if binding == "scales" else "data"
            return weight_buffer(tensor, part, piece if binding in ("w", "scales") else None)
        if tensor in self.graph.state:
            return tensor
        return self.where[tensor]

    def emit(self, key: K.KernelKey, tensors: dict[str, str], piece: int | None = None) -> None:
        """One dispatch of `key`; `piece` selects a row slice of the weight bound as w/scales."""
        kern = K.build(key)
        self.kernels[kern.name] = kern
        binds = []
        for name, kind in kern.bindings:
            if name == "step":
                binds.append("step")
            elif name == "scales":
                binds.append(self.buffer_of(tensors["w"], "scales", piece))
            else:
                binds.append(self.buffer_of(tensors[name], name, piece))
        self.dispatches.append(Dispatch(kern.name, binds, list(kern.dispatch)))

    def elements(self, value: str) -> int:
        shape = eval_shape(self.graph.values[value].shape, {"n": self.max_n, "p": 0})
        total = 1
        for s in shape:
            total *= s
        return total

    def fmt(self, param: str) -> str:
        return self.weights[param]["format"]


class Pool:
    """Activation buffers reused by liveness: a freed buffer serves the next value that fits."""

    def __init__(self, prefix: str = "act") -> None:
        self.prefix = prefix
        self.sizes: dict[str, int] = {}  # buffer -> elements
        self.free: list[str] = []

    def take(self, elements: int) -> str:
        fits = sorted((b for b in self.free if self.sizes[b] >= elements), key=lambda b: self.sizes[b])
        if fits:
            self.free.remove(fits[0])
            return fits[0]
        if self.free:  # grow the largest free buffer rather than adding one
            b = max(self.free, key=lambda b: self.sizes[b])
            self.free.remove(b)
            self.sizes[b] = elements
            return b
        b = f"{self.prefix}{len(self.sizes)}"
        self.sizes[b] = elements
        return b

    def release(self, buffer: str) -> None:
        if buffer.startswith(self.prefix) and buffer not in self.free:
            self.free.append(buffer)


class Uses:
    """Who reads each tensor: last use and consumer nodes."""

    def __init__(self, nodes: list[Node]):
        self.last: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = {}
        for i, node in enumerate(nodes):
            for t in node.inputs:
                self.last[t] = i
                self.consumers.setdefault(t, []).append(i)

    def only(self, tensor: str, j: int) -> bool:
        return self.consumers.get(tensor) == [j]



def release_dead(L: Lowering, i: int) -> None:
    # a buffer is free once every tensor living in it (in-place aliases included) is dead
    for t in dict.fromkeys(L.graph.nodes[i].inputs):  # ordered: set order varies with PYTHONHASHSEED
        if L.uses.last.get(t) == i and t in L.where and t != L.logits_value:
            buf = L.where[t]
            if all(L.uses.last.get(o, -1) <= i for o, b in L.where.items() if b == buf):
                L.pool.release(buf)


def new_buffer(L: Lowering, value: str, alias_of: str | None = None) -> str:
    if value == L.logits_value:
        L.where[value] = "logits"
    else:
        L.where[value] = L.where[alias_of] if alias_of else L.pool.take(L.elements(value))
    return value


def new_packed(L: Lowering, value: str) -> None:
    """Buffers for `value` in packed form (n rows of cols/8 entries: 4 u32 + 2 f32 each)."""
    cols = L.graph.values[value].shape[-1]
    q, sc = L.pack_pools
    L.where[value + PACK_SUFFIXES[0]] = q.take(L.max_n * cols // 2)
    L.where[value + PACK_SUFFIXES[1]] = sc.take(L.max_n * cols // 4)
    L.packed.add(value)


def release_packed(L: Lowering, value: str) -> None:
    L.packed.discard(value)
    for pool, suffix in zip(L.pack_pools, PACK_SUFFIXES):
        pool.release(L.where[value + suffix])


