"""Lowering: graph IR → programs (ordered kernel dispatches over planned buffers).

A program is what both runtimes interpret: a list of dispatches, each naming
a kernel variant, the buffers bound to its bindings (in binding order), and
its workgroup counts as expressions of n (tokens this step) and p (tokens
cached). Three programs per activation precision:

  decode   n == 1, logits of that token           (from the logits_last graph)
  prefill  1 <= n <= prefill_chunk, last logits   (from the logits_last graph)
  score    1 <= n <= prefill_chunk, every row     (from the logits_all graph)

Fusions made here (each is a rule on the node list, not a new op):
  add → rms_norm          one add_rms_norm kernel, residual updated in place
  rope(k) → kv_write      rope writes rotated k straight into the cache
  last_row → linear       the LM head reads only row n-1 (matmul last_row)

Buffers: activations come from a pool planned by liveness for the largest n
(prefill_chunk), so they are allocated once; the pool is shared by all
programs (they never run concurrently). Weights are one buffer per stored part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..codegen import kernels as K
from ..ir import Graph, Node
from ..ir.graph import eval_shape

ACT_BYTES = {"f32": 4, "f16": 2}


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
class _Lowering:
    graph: Graph
    weights: dict[str, Any]  # manifest weights: formats and parts
    act: str
    form: str  # "decode" | "prefill"
    max_n: int
    max_binding_bytes: int
    kernels: dict[str, K.Kernel]
    pool: "_Pool"
    dispatches: list[Dispatch] = field(default_factory=list)
    where: dict[str, str] = field(default_factory=dict)  # tensor -> buffer name

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


class _Pool:
    """Activation buffers reused by liveness: a freed buffer serves the next value that fits."""

    def __init__(self) -> None:
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
        b = f"act{len(self.sizes)}"
        self.sizes[b] = elements
        return b

    def release(self, buffer: str) -> None:
        if buffer.startswith("act") and buffer not in self.free:
            self.free.append(buffer)


def _last_uses(nodes: list[Node]) -> dict[str, int]:
    last: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for t in node.inputs:
            last[t] = i
    return last


def _lower(L: _Lowering, logits_value: str) -> LoweredProgram:
    nodes = L.graph.nodes
    last = _last_uses(nodes)
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for t in node.inputs:
            consumers.setdefault(t, []).append(i)
    skip: set[int] = set()

    def out_buffer(i: int, value: str, inplace_of: str | None = None) -> None:
        L.where[value] = L.where[inplace_of] if inplace_of else L.pool.take(L.elements(value))

    def release_dead(i: int) -> None:
        # a buffer is free once every tensor living in it (in-place aliases included) is dead
        for t in set(nodes[i].inputs):
            if last.get(t) == i and t in L.where and t != logits_value:
                buf = L.where[t]
                if all(last.get(o, -1) <= i for o, b in L.where.items() if b == buf):
                    L.pool.release(buf)

    for i, node in enumerate(nodes):
        if i in skip:
            continue
        a = node.attrs
        nxt = nodes[i + 1] if i + 1 < len(nodes) else None
        if node.op == "add" and nxt is not None and nxt.op == "rms_norm" and nxt.inputs[0] == node.outputs[0] \
                and last.get(node.inputs[0]) == i and node.inputs[0] in L.where and not nxt.attrs.get("group"):
            # residual += b in place, then norm: the residual value takes the old residual's buffer
            resid, b = node.inputs
            cols = L.graph.values[node.outputs[0]].shape[-1]
            out_buffer(i, node.outputs[0], inplace_of=resid)
            out_buffer(i + 1, nxt.outputs[0])
            L.emit(K.AddRmsNormKey(act=L.act, cols=cols, eps=nxt.attrs["eps"], inplace=True),
                   {"x": node.outputs[0], "b": b, "w": nxt.inputs[1], "out": nxt.outputs[0]})
            skip.add(i + 1)
            release_dead(i), release_dead(i + 1)
            continue
        if node.op == "rope" and nxt is not None and nxt.op == "kv_write" and nxt.inputs[0] == node.outputs[0] \
                and consumers[node.outputs[0]] == [i + 1]:
            L.emit(K.RopeKey(act=L.act, heads=a["heads"], head_dim=a["head_dim"], to_cache=True),
                   {"x": node.inputs[0], "inv_freq": node.inputs[1], "cache": nxt.inputs[1]})
            skip.add(i + 1)
            release_dead(i), release_dead(i + 1)
            continue
        if node.op == "last_row" and nxt is not None and nxt.op == "linear" and nxt.inputs[0] == node.outputs[0]:
            L.where[nxt.outputs[0]] = "logits"
            _emit_matmul(L, nxt, node.inputs[0], last_row=True)
            skip.add(i + 1)
            release_dead(i), release_dead(i + 1)
            continue
        LOWER_OP[node.op](L, node, out_buffer, i, logits_value)
        release_dead(i)
    rows = "1" if "final_last" in L.graph.values else "n"
    return LoweredProgram(L.dispatches, L.where[logits_value], rows)


# -- one lowering rule per op ------------------------------------------------------

def _out(L: _Lowering, node: Node, out_buffer: Callable, i: int, logits_value: str) -> str:
    v = node.outputs[0]
    if v == logits_value:
        L.where[v] = "logits"
    else:
        out_buffer(i, v)
    return v


def _embedding(L, node, out_buffer, i, lv):
    ids, table = node.inputs
    vocab, hidden = L.graph.params[table].shape
    out = _out(L, node, out_buffer, i, lv)
    slices = L.slices(table)
    for piece, (r0, rows) in enumerate(slices):
        sliced = len(slices) > 1
        L.emit(K.EmbeddingKey(act=L.act, fmt=L.fmt(table), vocab=rows, hidden=hidden, vocab_offset=r0, sliced=sliced),
               {"ids": ids, "w": table, "out": out}, piece if sliced else None)


def _rms_norm(L, node, out_buffer, i, lv):
    x, w = node.inputs
    cols = L.graph.values[x].shape[-1]
    L.emit(K.RmsNormKey(act=L.act, cols=cols, eps=node.attrs["eps"], group=node.attrs.get("group") or 0),
           {"x": x, "w": w, "out": _out(L, node, out_buffer, i, lv)})


def _emit_matmul(L, node, x: str, last_row: bool = False) -> None:
    """x @ W.T (+ bias) into node's output, one dispatch per row slice of W."""
    w = node.inputs[1]
    rows, cols = L.graph.params[w].shape
    slices = L.slices(w)
    tensors = {"x": x, "w": w, "bias": node.inputs[2] if len(node.inputs) > 2 else "", "out": node.outputs[0]}
    for piece, (r0, n_rows) in enumerate(slices):
        sliced = len(slices) > 1
        key = K.matmul_key(L.act, L.fmt(w), n_rows, cols, bias=len(node.inputs) > 2,
                           prefill=L.form == "prefill", last_row=last_row,
                           row_offset=r0, out_rows=rows if sliced else 0)
        L.emit(key, tensors, piece if sliced else None)


def _linear(L, node, out_buffer, i, lv):
    _out(L, node, out_buffer, i, lv)
    _emit_matmul(L, node, node.inputs[0])


def _rope(L, node, out_buffer, i, lv):
    a = node.attrs
    L.emit(K.RopeKey(act=L.act, heads=a["heads"], head_dim=a["head_dim"]),
           {"x": node.inputs[0], "inv_freq": node.inputs[1], "out": _out(L, node, out_buffer, i, lv)})


def _kv_write(L, node, out_buffer, i, lv):
    x, cache = node.inputs
    L.emit(K.KvWriteKey(act=L.act, width=L.graph.state[cache].shape[-1]), {"x": x, "cache": cache})


def _attention(L, node, out_buffer, i, lv):
    a = node.attrs
    q, kc, vc = node.inputs
    L.emit(K.AttentionKey(act=L.act, heads=a["heads"], kv_heads=a["kv_heads"], head_dim=a["head_dim"],
                          scale=a["scale"], form=L.form),
           {"q": q, "k_cache": kc, "v_cache": vc, "out": _out(L, node, out_buffer, i, lv)})


def _elementwise(key_type, names):
    def lower(L, node, out_buffer, i, lv):
        cols = L.graph.values[node.inputs[0]].shape[-1]
        tensors = dict(zip(names, node.inputs))
        tensors["out"] = _out(L, node, out_buffer, i, lv)
        L.emit(key_type(act=L.act, cols=cols), tensors)
    return lower


LOWER_OP: dict[str, Callable] = {
    "embedding": _embedding,
    "rms_norm": _rms_norm,
    "linear": _linear,
    "rope": _rope,
    "kv_write": _kv_write,
    "attention": _attention,
    "silu_mul": _elementwise(K.SiluMulKey, ["gate", "up"]),
    "add": _elementwise(K.AddKey, ["a", "b"]),
    "last_row": _elementwise(K.LastRowKey, ["x"]),
}


# -- whole-bundle lowering ----------------------------------------------------------

PROGRAMS = {  # program -> (graph, kernel form)
    "decode": ("logits_last", "decode"),
    "prefill": ("logits_last", "prefill"),
    "score": ("logits_all", "prefill"),
}


def lower_bundle(graphs: dict[str, Graph], weights: dict[str, Any], prefill_chunk: int, context_window: int,
                 acts: tuple[str, ...] = ("f32", "f16"),
                 max_binding_bytes: int = DEFAULT_MAX_BINDING_BYTES) -> dict[str, Any]:
    """Programs, buffers and kernels for the manifest (kernels as Kernel objects, keyed by name)."""
    kernels: dict[str, K.Kernel] = {}
    programs: dict[str, dict[str, Any]] = {}
    pool = _Pool()
    logits_rows = {}
    for act in acts:
        programs[act] = {}
        for prog, (gname, form) in PROGRAMS.items():
            g = graphs[gname]
            pool.free = list(pool.sizes)  # every program starts with the whole pool free
            L = _Lowering(g, weights, act, form, 1 if prog == "decode" else prefill_chunk, max_binding_bytes,
                          kernels, pool)
            lowered = _lower(L, g.output)
            programs[act][prog] = {"dispatches": [d.to_json() for d in lowered.dispatches],
                                   "logits_rows": lowered.output_rows}
            logits_rows[prog] = 1 if lowered.output_rows == "1" else prefill_chunk
    g = graphs["logits_last"]
    vocab = g.params[g.nodes[-1].inputs[1]].shape[0]
    buffers: dict[str, Any] = {
        "ids": {"kind": "ids", "elements": prefill_chunk, "dtype": "i32"},
        "step": {"kind": "uniform", "bytes": 16},
        "logits": {"kind": "output", "elements": max(logits_rows.values()) * vocab, "dtype": "act"},
    }
    for name, v in g.state.items():
        rows, width = eval_shape(v.shape, {})
        buffers[name] = {"kind": "state", "elements": rows * width, "dtype": "act"}
    for name, size in pool.sizes.items():
        buffers[name] = {"kind": "activation", "elements": size, "dtype": "act"}
    for param, w in weights.items():
        slices = row_slices(w, max_binding_bytes) if len(w["shape"]) == 2 else [(0, w["shape"][0])]
        for part, ref in w["parts"].items():
            if len(slices) == 1:
                buffers[weight_buffer(param, part)] = {"kind": "weight", "param": param, "part": part,
                                                       "offset": 0, "bytes": ref["nbytes"]}
                continue
            per_row = ref["nbytes"] // w["shape"][0]
            for piece, (r0, rows) in enumerate(slices):  # a byte range of the part, bound on its own
                buffers[weight_buffer(param, part, piece)] = {"kind": "weight", "param": param, "part": part,
                                                              "offset": r0 * per_row, "bytes": rows * per_row}
    return {"programs": programs, "buffers": buffers, "kernels": kernels}
