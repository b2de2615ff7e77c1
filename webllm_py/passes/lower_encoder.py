"""Lowering of the encoder graph (models/encoder.py) to one `encode` program per program set.

The program embeds one packed batch: n tokens of b rows (n <= max_tokens, b <= max_rows),
every dispatch over all n tokens at once (the tiled prefill matmul form), so a batch of
short texts fills the GPU instead of looping over texts. Kernels: kernels.py's
EmbeddingKey and MatmulKey, encoder_kernels.py's for the rest. Fusions (each a rule on
the node list, as in lower.py):
  linear split                one matmul, q/k/v written to three outputs
  linear split silu_mul       one matmul with the SiLU-gate epilogue over stacked [gate; up]
  linear add(x, .)            matmul with the residual epilogue, in place in x's buffer
  pool l2_normalize           one pool kernel that normalizes
  encoder_embedding           word lookup, then (x + token_type[0]) + position in place
Program set "idot": q4/q4a linears take x packed by a pack dispatch (integer dot products,
as lower.py's prefill form); the rest is the f32 set.

Buffers: ids, rows (n,), offsets (b+1,) inputs, the step uniform (n, 0), `embeddings`
(max_rows, hidden) output, activations from a liveness-planned pool shared by the sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..codegen import encoder_kernels as EK
from ..codegen import kernels as K
from ..ir import Graph, Node
from ..ir.graph import eval_shape
from .lower import DEFAULT_MAX_BINDING_BYTES, PROGRAM_SETS, Dispatch, Pool, row_slices, weight_buffer

OUTPUT = "embeddings"
INPUTS = {"ids": "ids", "rows": "rows", "offsets": "offsets"}


@dataclass
class _Enc:
    graph: Graph
    weights: dict[str, Any]
    act: str
    idot: bool
    max_tokens: int
    max_rows: int
    max_binding_bytes: int
    kernels: dict[str, K.Kernel]
    pool: Pool
    pack_pools: tuple[Pool, Pool]
    dispatches: list[Dispatch] = field(default_factory=list)
    where: dict[str, str] = field(default_factory=dict)  # tensor -> buffer
    last: dict[str, int] = field(default_factory=dict)  # tensor -> index of its last reader

    def buffer(self, tensor: str, binding: str) -> str:
        if tensor in INPUTS:
            return INPUTS[tensor]
        if tensor in self.graph.params:
            if len(row_slices(self.weights[tensor], self.max_binding_bytes)) > 1 and len(self.weights[tensor]["shape"]) == 2:
                raise ValueError(f"lowering: weight {tensor} exceeds the storage binding limit; "
                                 "row slices are not supported in encoder programs")
            return weight_buffer(tensor, "scales" if binding == "scales" else "data")
        return self.where[tensor]

    def emit(self, key: K.KernelKey, tensors: dict[str, str]) -> None:
        kern = K.build(key)
        self.kernels[kern.name] = kern
        binds = []
        for name, _ in kern.bindings:
            if name == "step":
                binds.append("step")
            elif name == "scales":
                binds.append(self.buffer(tensors["w"], "scales"))
            else:
                binds.append(self.buffer(tensors[name], name))
        self.dispatches.append(Dispatch(kern.name, binds, list(kern.dispatch)))

    def new(self, value: str, alias_of: str | None = None) -> str:
        if value == self.graph.output:
            self.where[value] = OUTPUT
        elif alias_of is not None:
            self.where[value] = self.where[alias_of]
        else:
            shape = eval_shape(self.graph.values[value].shape, {"n": self.max_tokens, "p": 0, "b": self.max_rows})
            total = 1
            for s in shape:
                total *= s
            self.where[value] = self.pool.take(total)
        return value

    def fmt(self, param: str) -> str:
        return self.weights[param]["format"]

    def release_dead(self, i: int) -> None:
        for t in dict.fromkeys(self.graph.nodes[i].inputs):  # ordered: set order varies with PYTHONHASHSEED
            if self.last.get(t) == i and t in self.where:
                buf = self.where[t]
                if all(self.last.get(o, -1) <= i for o, b in self.where.items() if b == buf and o != t) \
                        and buf != self.where.get(self.graph.output):
                    self.pool.release(buf)


# -- rules: each lowers the node at i (maybe with its successors) and returns how many it used; 0: no match --

def _linear(E: _Enc, i: int) -> int:
    nodes = E.graph.nodes
    lin = nodes[i]
    if lin.op != "linear":
        return 0
    x, w = lin.inputs[:2]
    rows, cols = E.graph.params[w].shape
    bias = len(lin.inputs) > 2
    tensors = {"x": x, "w": w, "bias": lin.inputs[2] if bias else ""}
    kw: dict[str, Any] = {}
    nxt = nodes[i + 1] if i + 1 < len(nodes) else None
    used = 1
    after = nodes[i + 2] if i + 2 < len(nodes) else None
    if nxt is not None and nxt.op == "split" and nxt.inputs == [lin.outputs[0]] and after is not None \
            and after.op == "silu_mul" and after.inputs == nxt.outputs and len(set(nxt.attrs["sizes"])) == 1 \
            and all(E.last.get(t) == i + 2 for t in nxt.outputs):
        kw["epilogue"], rows = "silu_mul", nxt.attrs["sizes"][0]  # silu(gate) * up straight from the matmul
        tensors["out"] = E.new(after.outputs[0])
        used = 3
    elif nxt is not None and nxt.op == "split" and nxt.inputs == [lin.outputs[0]]:
        kw["splits"] = tuple(nxt.attrs["sizes"])
        tensors.update({f"out{j}": E.new(t) for j, t in enumerate(nxt.outputs)})
        used = 2
    elif nxt is not None and nxt.op == "add" and nxt.inputs[1] == lin.outputs[0] and E.last.get(nxt.inputs[0]) == i + 1 \
            and E.where.get(nxt.inputs[0], "").startswith("act"):
        kw["epilogue"] = "residual"  # out += x @ W.T + bias, in the residual stream's buffer
        tensors["out"] = E.new(nxt.outputs[0], alias_of=nxt.inputs[0])
        used = 2
    else:
        tensors["out"] = E.new(lin.outputs[0])
    packed = E.idot and E.fmt(w) in K.PACK_LAYOUTS and K.PACK_LAYOUTS[E.fmt(w)] == "pairs" and cols % 32 == 0
    if packed:  # integer dot products: a pack dispatch writes x packed (the tiled form's producers do not)
        q, s = (p.take(E.max_tokens * cols // d) for p, d in zip(E.pack_pools, (2, 4)))
        E.where[x + "#q"], E.where[x + "#s"] = q, s
        E.emit(K.PackKey(act=E.act, cols=cols), {"x": x, "outq": x + "#q", "outs": x + "#s"})
        tensors.update(xq=x + "#q", xs=x + "#s")
        del tensors["x"]
        kw["xq"] = True
    E.emit(K.matmul_key(E.act, E.fmt(w), rows, cols, bias=bias, prefill=True, **kw), tensors)
    if packed:
        for p, sfx in zip(E.pack_pools, ("#q", "#s")):
            p.release(E.where.pop(x + sfx))
    return used


def _pool(E: _Enc, i: int) -> int:
    nodes = E.graph.nodes
    node = nodes[i]
    if node.op != "pool":
        return 0
    nxt = nodes[i + 1] if i + 1 < len(nodes) else None
    normalize = nxt is not None and nxt.op == "l2_normalize" and nxt.inputs == node.outputs
    out = nxt.outputs[0] if normalize else node.outputs[0]
    E.new(out)
    E.emit(EK.PoolKey(act=E.act, cols=E.graph.values[node.inputs[0]].shape[-1], mode=node.attrs["mode"],
                      normalize=normalize), {"x": node.inputs[0], "offsets": "offsets", "out": out})
    return 2 if normalize else 1


def _word_lookup(E: _Enc, ids: str, word: str, out: str) -> None:
    vocab, hidden = E.graph.params[word].shape
    if len(row_slices(E.weights[word], E.max_binding_bytes)) > 1:
        raise ValueError(f"lowering: word embedding {word} exceeds the storage binding limit; "
                         "row slices are not supported in encoder programs yet")
    E.emit(K.EmbeddingKey(act=E.act, fmt=E.fmt(word), vocab=vocab, hidden=hidden), {"ids": ids, "w": word, "out": out})


def _embedding(E: _Enc, i: int) -> int:
    node = E.graph.nodes[i]
    if node.op == "embedding":  # a decoder used as an embedder: the word lookup only (rope comes later)
        _word_lookup(E, node.inputs[0], node.inputs[1], E.new(node.outputs[0]))
        return 1
    if node.op != "encoder_embedding":
        return 0
    ids, rows, offsets, word, token_type, position = node.inputs
    out = E.new(node.outputs[0])
    _word_lookup(E, ids, word, out)
    E.emit(EK.PositionAddKey(act=E.act, hidden=E.graph.params[word].shape[1],
                             positions=E.graph.params[position].shape[0], position_offset=node.attrs["position_offset"]),
           {"x": out, "rows": rows, "offsets": offsets, "token_type": token_type, "position": position})
    return 1


def _single(op: str, lower: Callable[[_Enc, Node], None]) -> Callable[[_Enc, int], int]:
    def rule(E: _Enc, i: int) -> int:
        node = E.graph.nodes[i]
        if node.op != op:
            return 0
        lower(E, node)
        return 1
    return rule


def _layer_norm(E: _Enc, node: Node) -> None:
    x, w, b = node.inputs
    E.emit(EK.LayerNormKey(act=E.act, cols=E.graph.values[x].shape[-1], eps=node.attrs["eps"]),
           {"x": x, "w": w, "b": b, "out": E.new(node.outputs[0])})


def _gelu(E: _Enc, node: Node) -> None:
    E.emit(EK.GeluKey(act=E.act, cols=E.graph.values[node.inputs[0]].shape[-1], approximate=node.attrs["approximate"]),
           {"x": node.inputs[0], "out": E.new(node.outputs[0])})


def _attention(E: _Enc, node: Node) -> None:
    q, k, v, rows, offsets = node.inputs
    a = node.attrs
    kv = a.get("kv_heads", a["heads"])
    E.emit(EK.EncoderAttentionKey(act=E.act, heads=a["heads"], head_dim=a["head_dim"], scale=a["scale"],
                                  kv_heads=0 if kv == a["heads"] else kv, causal=bool(a.get("causal"))),
           {"q": q, "k_cache": k, "v_cache": v, "rows": rows, "offsets": offsets, "out": E.new(node.outputs[0])})


def _rms_norm(E: _Enc, node: Node) -> None:
    x, w = node.inputs
    E.emit(K.RmsNormKey(act=E.act, cols=E.graph.values[x].shape[-1], eps=node.attrs["eps"],
                        group=node.attrs.get("group") or 0), {"x": x, "w": w, "out": E.new(node.outputs[0])})


def _row_rope(E: _Enc, node: Node) -> None:
    x, inv_freq, rows, offsets = node.inputs
    E.emit(EK.RowRopeKey(act=E.act, heads=node.attrs["heads"], head_dim=node.attrs["head_dim"]),
           {"x": x, "inv_freq": inv_freq, "rows": rows, "offsets": offsets, "out": E.new(node.outputs[0])})


def _silu_mul(E: _Enc, node: Node) -> None:
    gate, up = node.inputs
    E.emit(K.SiluMulKey(act=E.act, cols=E.graph.values[gate].shape[-1]),
           {"gate": gate, "up": up, "out": E.new(node.outputs[0])})


def _add(E: _Enc, node: Node) -> None:
    a, b = node.inputs
    E.emit(K.AddKey(act=E.act, cols=E.graph.values[a].shape[-1]), {"a": a, "b": b, "out": E.new(node.outputs[0])})


RULES: list[Callable[[_Enc, int], int]] = [
    _embedding, _linear, _pool,
    _single("layer_norm", _layer_norm), _single("gelu", _gelu), _single("encoder_attention", _attention),
    _single("add", _add), _single("rms_norm", _rms_norm), _single("row_rope", _row_rope),
    _single("silu_mul", _silu_mul),
]


def _lower_program(E: _Enc) -> list[Dispatch]:
    nodes = E.graph.nodes
    for j, node in enumerate(nodes):
        for t in node.inputs:
            E.last[t] = j
    i = 0
    while i < len(nodes):
        used = next((u for u in (rule(E, i) for rule in RULES) if u), 0)
        if not used:
            raise ValueError(f"lowering: no encoder kernel for {nodes[i].op} node {nodes[i].outputs}")
        for j in range(i, i + used):
            E.release_dead(j)
        i += used
    return E.dispatches


def lower_encoder(graph: Graph, weights: dict[str, Any], max_tokens: int, max_rows: int,
                  sets: tuple[str, ...] = ("f32", "f16", "idot"),
                  max_binding_bytes: int = DEFAULT_MAX_BINDING_BYTES) -> dict[str, Any]:
    """Programs (one `encode` per set), buffers and kernels for the manifest (kernels as Kernel objects)."""
    kernels: dict[str, K.Kernel] = {}
    pool, pack_pools = Pool(), (Pool("pq"), Pool("ps"))
    programs: dict[str, Any] = {}
    for name in sets:
        act, idot = PROGRAM_SETS[name].act, PROGRAM_SETS[name].idot
        for p in (pool, *pack_pools):
            p.free = list(p.sizes)  # every program starts with the whole pool free
        E = _Enc(graph, weights, act, idot, max_tokens, max_rows, max_binding_bytes, kernels, pool, pack_pools)
        programs[name] = {"encode": {"dispatches": [d.to_json() for d in _lower_program(E)],
                                     "output": OUTPUT, "output_rows": "b"}}
    hidden = eval_shape(graph.values[graph.output].shape, {"n": 1, "p": 0, "b": 1})[-1]
    buffers: dict[str, Any] = {
        "ids": {"kind": "ids", "elements": max_tokens, "dtype": "i32"},
        "rows": {"kind": "rows", "elements": max_tokens, "dtype": "i32"},
        "offsets": {"kind": "offsets", "elements": max_rows + 1, "dtype": "i32"},
        "step": {"kind": "uniform", "bytes": 16},
        OUTPUT: {"kind": "output", "elements": max_rows * hidden, "dtype": "act"},
    }
    for bname, size in pool.sizes.items():
        buffers[bname] = {"kind": "activation", "elements": size, "dtype": "act"}
    for p, dtype in zip(pack_pools, ("u32", "f32")):
        for bname, size in p.sizes.items():
            buffers[bname] = {"kind": "activation", "elements": size, "dtype": dtype}
    for param, w in weights.items():
        for part, ref in w["parts"].items():
            buffers[weight_buffer(param, part)] = {"kind": "weight", "param": param, "part": part,
                                                   "offset": 0, "bytes": ref["nbytes"]}
    features = {}
    for name, progs in programs.items():
        need = sorted({f for d in progs["encode"]["dispatches"] for f in K.wgsl_features(kernels[d["kernel"]].wgsl)})
        if need:
            features[name] = need
    return {"programs": programs, "buffers": buffers, "kernels": kernels, "wgsl_language_features": features}
