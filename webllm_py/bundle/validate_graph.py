"""Manifest `graphs`: well-formed IR (ir/graph.py) whose params are the bundle's weights, whose
nodes only read tensors that exist, and whose KV state has a row for every context position, or
is a sliding-window layer's ring: exactly `ring` rows (ring < context_window, >= window +
prefill_chunk - 1), the `ring` attr of every kv_write / attention node using it."""

from __future__ import annotations

from typing import Any

from ..ir.graph import STEP_INPUTS
from ..ir.ops import OPS
from .fields import Invalid, dim, field, show, sub, want


def _shape(v: Any, where: str, *, ints: bool = False) -> list:
    for i, d in enumerate(want(v, "list", where)):
        if ints:
            want(d, "int", sub(where, i), lo=1)
        else:
            dim(d, sub(where, i))
    return v


def _tensors(g: dict, key: str, where: str, *, ints: bool) -> dict[str, list]:
    """params / state / values: name -> shape (each entry {shape, dtype or role})."""
    out = {}
    for name, t in field(g, key, where, "dict").items():
        twhere = sub(sub(where, key), name)
        want(t, "dict", twhere)
        out[name] = _shape(field(t, "shape", twhere, "list"), sub(twhere, "shape"), ints=ints)
        if key == "params":
            field(t, "role", twhere, "str", optional=True)
            for i, c in enumerate(field(t, "concat", twhere, "list", optional=True) or []):
                want(c, "str", sub(sub(twhere, "concat"), i))
        else:
            field(t, "dtype", twhere, "str")
    return out


def _rule_shapes(op: str, shapes: list[tuple], attrs: dict) -> list[tuple]:
    """The output shapes the op's shape rule gives (ir/ops.py); Invalid-free, may raise anything."""
    out = OPS[op].shape_rule(shapes, attrs)
    if out is None:  # kv_write: state only
        return []
    if out and all(isinstance(s, (tuple, list)) for s in out):  # split: several outputs
        return [tuple(s) for s in out]
    return [tuple(out)]


def _check_nodes(g: dict, where: str, known: dict[str, list], values: dict[str, list]) -> set[str]:
    """Every node: a known op reading defined tensors, writing declared values once, and the op's
    shape rule gives the declared shapes (so the reference's per-step shape checks hold); returns
    the values written."""
    shapes = {name: tuple(shape) for name, shape in known.items()}
    produced: set[str] = set()
    for i, node in enumerate(field(g, "nodes", where, "list")):
        nwhere = sub(sub(where, "nodes"), i)
        want(node, "dict", nwhere)
        op = field(node, "op", nwhere, "str")
        if op not in OPS:
            raise Invalid(sub(nwhere, "op"), f"{show(op)} is not an op of this webllm-py")
        inputs = field(node, "inputs", nwhere, "list")
        for j, name in enumerate(inputs):
            if not isinstance(name, str) or name not in shapes:
                raise Invalid(sub(sub(nwhere, "inputs"), j), f"{show(name)} is not a param, state, step input or "
                              "earlier value")
        outputs = field(node, "outputs", nwhere, "list")
        for j, name in enumerate(outputs):
            if not isinstance(name, str) or name not in values or name in produced:
                raise Invalid(sub(sub(nwhere, "outputs"), j), f"{show(name)} is not a declared value written once")
        attrs = field(node, "attrs", nwhere, "dict")
        try:
            expect = _rule_shapes(op, [shapes[name] for name in inputs], attrs)
        except Exception as e:  # a shape rule is op code run on manifest data: any failure
            # (unpacking, a missing attr, a zero group) means the node does not fit its op
            raise Invalid(nwhere, f"does not fit op {op} ({type(e).__name__}: {show(str(e))})") from None
        declared = [tuple(values[name]) for name in outputs]
        if expect != declared:
            raise Invalid(nwhere, f"op {op} gives shapes {show([list(x) for x in expect])}, the graph declares "
                          f"{show([list(x) for x in declared])}")
        shapes.update(zip(outputs, declared))
        produced.update(outputs)
    return produced


CACHE_INPUTS = {"kv_write": slice(1, 2), "attention": slice(1, 3)}  # op -> its inputs that are caches


def _cache_users(g: dict) -> dict[str, list[tuple[int, str, dict]]]:
    """state name -> (node index, op, attrs) of the kv_write / attention nodes using it (nodes checked)."""
    users: dict[str, list[tuple[int, str, dict]]] = {}
    for i, node in enumerate(g["nodes"]):
        for name in node["inputs"][CACHE_INPUTS[node["op"]]] if node["op"] in CACHE_INPUTS else []:
            users.setdefault(name, []).append((i, node["op"], node["attrs"]))
    return users


def _check_state_rows(g: dict, where: str, state: dict[str, list], limits: dict[str, int]) -> None:
    """Every cache holds context_window rows, or is a ring: rows == the `ring` attr of each node using it,
    < context_window and >= window + prefill_chunk - 1. A ring cache's state entry gains its window:
    [rows, width, window]."""
    ctx, chunk = limits.get("context_window"), limits.get("prefill_chunk", 1)
    users = _cache_users(g)
    for name, shape in state.items():
        swhere = sub(sub(where, "state"), name)
        rings = {(i, a.get("ring", 0)) for i, _, a in users.get(name, [])}
        for i, ring in rings:
            if ring != 0:
                want(ring, "int", sub(sub(sub(sub(where, "nodes"), i), "attrs"), "ring"), lo=1)
        ring_of = {r for _, r in rings}
        if ring_of - {0} and (ring_of != {shape[0]} or (ctx is not None and shape[0] >= ctx)):
            raise Invalid(swhere, f"a ring cache of {shape[0]} rows needs ring == {shape[0]} < context_window "
                          f"({ctx}) on every node using it, got rings {sorted(ring_of)}")
        if ctx is not None and not ring_of - {0} and shape[0] < ctx:
            raise Invalid("context_window", f"{ctx} is more than the {shape[0]} rows of the KV cache {swhere}")
        windows = {a.get("window", 0) for _, op, a in users.get(name, []) if op == "attention"}
        if ring_of - {0}:
            window = max(windows, default=0)
            if shape[0] < window + chunk - 1:
                raise Invalid(swhere, f"a ring of {shape[0]} rows cannot hold window {window} + prefill_chunk "
                              f"{chunk} - 1 keys")
            state[name] = [shape[0], shape[1], window]


def check_graph(g: Any, where: str, weights: dict[str, dict], limits: dict[str, int],
                out_width: int) -> dict[str, list]:
    """One graph; returns its state: name -> [rows, width] ([rows, width, window] for a ring cache)."""
    want(g, "dict", where)
    params = _tensors(g, "params", where, ints=True)
    for name, shape in params.items():
        if name not in weights:
            raise Invalid(sub(sub(where, "params"), name), "is not in weights")
        if list(weights[name]["shape"]) != shape:
            raise Invalid(sub(sub(sub(where, "params"), name), "shape"),
                          f"{shape}, but weights[{show(name)}] has {weights[name]['shape']}")
    state = _tensors(g, "state", where, ints=True)
    for name, shape in state.items():
        if len(shape) != 2:
            raise Invalid(sub(sub(sub(where, "state"), name), "shape"), f"{shape} is not [rows, width]")
    values = _tensors(g, "values", where, ints=False)
    known = {**STEP_INPUTS, **params, **state}
    produced = _check_nodes(g, where, known, values)
    _check_state_rows(g, where, state, limits)
    out = field(g, "output", where, "str")
    if out not in produced:
        raise Invalid(sub(where, "output"), f"{show(out)} is not a value a node writes")
    width = values[out][-1] if values[out] else None
    if isinstance(width, int) and width != out_width:
        raise Invalid(sub(sub(sub(where, "values"), out), "shape"),
                      f"output width {width} != {out_width} (vocab_size or embedding dimensions)")
    return state


def check_graphs(m: dict, names: tuple[str, ...], weights: dict[str, dict], limits: dict[str, int],
                 vocab: int) -> dict[str, list]:
    """The graphs a kind of bundle needs (others are left alone); returns every graph's state."""
    graphs = field(m, "graphs", "", "dict")
    out_width = limits.get("dimensions", vocab)
    state: dict[str, list] = {}
    for name in names:
        state.update(check_graph(field(graphs, name, "graphs", "dict"), sub("graphs", name), weights, limits,
                                 out_width))
    return state
