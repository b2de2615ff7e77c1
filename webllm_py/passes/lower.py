"""Lowering: graph IR → programs (ordered kernel dispatches over planned buffers).

A program is what both runtimes interpret: a list of dispatches, each naming
a kernel variant, the buffers bound to its bindings (in binding order), and
its workgroup counts as expressions of n (tokens this step) and p (tokens
cached). Three programs per activation precision:

  decode   n == 1, logits of that token           (from the logits_last graph)
  prefill  1 <= n <= prefill_chunk, last logits   (from the logits_last graph)
  score    1 <= n <= prefill_chunk, every row     (from the logits_all graph)

Fusions made here (FUSION_RULES, each a rule on the node list, tried in order):
  [rms_norm] [last_row] linear [split [silu_mul] | add]
                          one matmul: norm as prologue, several outputs for a
                          split (fused q/k/v), SiLU-gate or residual-add epilogue
  rope(q) rope(k) kv_write kv_write
                          one rope_kv: q rotated in place, k rotated and v copied
                          into the KV cache
  add -> rms_norm         one add_rms_norm (where no matmul took the norm)
  rope(k) -> kv_write     rope writes straight into the cache (where rope_kv did not match)
With fuse_linears (q/k/v and gate/up stacked) a decoder layer is 6 dispatches.

Program set "idot": q4/q4a/q8 matmuls take their input packed (q4: 9-bit integer pairs; q8,
e.g. the LM head: int8 for dot4I8Packed, decode only; see MatmulKey) and use integer dot
products. In decode the producer packs in its epilogue, in the layout its consumer reads (the
residual epilogue packs h times the next RMSNorm weight beside h, the SiLU-gate epilogue packs
its output), so no dispatch is added; in prefill and score (the tiled form) the RMSNorm kernels
write packed x and a pack dispatch packs the attention and SiLU-gate outputs (cheap beside a
128-token matmul). Chosen per adapter by the runtimes: it pays where float unpacking is the
bottleneck (CPU drivers; docs/performance.md has the per-kernel figures).

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
# program sets: name -> (activation dtype, integer dot products in decode)
PROGRAM_SETS = {"f32": ("f32", False), "f16": ("f16", False), "idot": ("f32", True)}
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
    uses: Any = None  # _Uses of the graph being lowered
    logits_value: str = ""
    fuse: bool = True  # matmul prologue/epilogue and rope_kv fusions
    idot: bool = False  # integer dot products on packed activations (decode form only)
    pack_pools: tuple["_Pool", "_Pool"] | None = None  # (u32 pairs, f32 scales) buffers of packed values
    packed: set[str] = field(default_factory=set)  # values that live packed (L.where[v + "#q" / "#s"])

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


class _Uses:
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


def _lower(L: _Lowering, logits_value: str) -> LoweredProgram:
    nodes = L.graph.nodes
    L.uses = _Uses(nodes)
    L.logits_value = logits_value
    i = 0
    while i < len(nodes):
        for rule in FUSION_RULES:
            used = rule(L, i)
            if used:
                break
        else:
            LOWER_OP[nodes[i].op](L, nodes[i], i)
            used = 1
        for j in range(i, i + used):
            _release_dead(L, j)
        i += used
    rows = "1" if "final_last" in L.graph.values else "n"
    return LoweredProgram(L.dispatches, L.where[logits_value], rows)


def _release_dead(L: _Lowering, i: int) -> None:
    # a buffer is free once every tensor living in it (in-place aliases included) is dead
    for t in set(L.graph.nodes[i].inputs):
        if L.uses.last.get(t) == i and t in L.where and t != L.logits_value:
            buf = L.where[t]
            if all(L.uses.last.get(o, -1) <= i for o, b in L.where.items() if b == buf):
                L.pool.release(buf)


def _new_buffer(L: _Lowering, value: str, alias_of: str | None = None) -> str:
    if value == L.logits_value:
        L.where[value] = "logits"
    else:
        L.where[value] = L.where[alias_of] if alias_of else L.pool.take(L.elements(value))
    return value


def _new_packed(L: _Lowering, value: str) -> None:
    """Buffers for `value` in packed form (n rows of cols/8 entries: 4 u32 + 2 f32 each)."""
    cols = L.graph.values[value].shape[-1]
    q, sc = L.pack_pools
    L.where[value + PACK_SUFFIXES[0]] = q.take(L.max_n * cols // 2)
    L.where[value + PACK_SUFFIXES[1]] = sc.take(L.max_n * cols // 4)
    L.packed.add(value)


def _release_packed(L: _Lowering, value: str) -> None:
    L.packed.discard(value)
    for pool, suffix in zip(L.pack_pools, PACK_SUFFIXES):
        pool.release(L.where[value + suffix])


def _idot_linear(L: _Lowering, lin: Node, outputs: int, norm: bool) -> bool:
    """Can this linear take its x packed? q4/q4a/q8 (K.PACK_LAYOUTS; prefill: q4/q4a), 32-column
    groups, one slice, and within WebGPU's 8 storage buffers with `outputs` output bindings (x for
    the norm, xq, xs, w, scales, bias)."""
    w = lin.inputs[1]
    fmt = L.fmt(w)
    # the tiled (prefill) form reads pairs only: int8 bytes (q8) are decode-only
    return (L.idot and L.fuse and fmt in K.PACK_LAYOUTS and (L.form == "decode" or K.PACK_LAYOUTS[fmt] == "pairs")
            and L.graph.params[w].shape[1] % 32 == 0 and len(L.slices(w)) == 1
            and int(norm) + 2 + 2 + int(len(lin.inputs) > 2) + outputs <= K.MAX_STORAGE_BUFFERS)


def _outputs_of_chain(L: _Lowering, k: int) -> int:
    """Output bindings the matmul chain of the linear at node k will have, at most."""
    nodes = L.graph.nodes
    nxt = nodes[k + 1] if k + 1 < len(nodes) else None
    if nxt is not None and nxt.op == "split":
        return 2 if k + 2 < len(nodes) and nodes[k + 2].op == "silu_mul" else len(nxt.outputs)
    return 4 if nxt is not None and nxt.op == "add" else 1  # residual: out, pack_w, outq, outs


def _packs_for(L: _Lowering, m: int) -> str:
    """The packed layout the chain starting at node m (rms_norm -> [last_row ->] linear) will read
    its x in (K.PACK_LAYOUTS of the linear's weight format), or "" when it reads x unpacked."""
    nodes, U = L.graph.nodes, L.uses
    if m + 1 >= len(nodes) or nodes[m].op != "rms_norm" or nodes[m].attrs.get("group"):
        return ""
    k = m + 1
    if nodes[k].op == "last_row" and U.only(nodes[m].outputs[0], k) and k + 1 < len(nodes):
        k += 1  # the LM head of a last-row graph
    # the consumer binds the raw x only where the norm is its prologue (decode)
    if nodes[k].op != "linear" or not U.only(nodes[k - 1].outputs[0], k) \
            or not _idot_linear(L, nodes[k], _outputs_of_chain(L, k), norm=L.form in NORM_PROLOGUE_FORMS):
        return ""
    return K.PACK_LAYOUTS[L.fmt(nodes[k].inputs[1])]


# -- fusion rules: each matches at node i and returns how many nodes it lowered (0: no match) --

def _matmul_chain(L: _Lowering, i: int) -> int:
    """[rms_norm] [last_row] linear [split [silu_mul] | add]  ->  one matmul dispatch (per row slice).

    rms_norm -> prologue (norm=True); split -> multi-output (splits); split -> silu_mul ->
    epilogue "silu_mul" over the stacked [gate; up] weight; add(x, linear) -> epilogue
    "residual" updating x's buffer in place."""
    nodes, U = L.graph.nodes, L.uses
    k, norm, last_row = i, None, False
    if nodes[k].op == "rms_norm" and not nodes[k].attrs.get("group") and L.fuse and L.form in NORM_PROLOGUE_FORMS:
        norm = nodes[k]
        k += 1
        if k < len(nodes) and nodes[k].op == "last_row" and U.only(norm.outputs[0], k):
            last_row = True
            k += 1
        if k >= len(nodes) or nodes[k].op != "linear" or not U.only(nodes[k - 1].outputs[0], k):
            return 0
    elif nodes[k].op == "last_row" and k + 1 < len(nodes) and nodes[k + 1].op == "linear" \
            and U.only(nodes[k].outputs[0], k + 1):
        last_row = True
        k += 1
    if nodes[k].op != "linear":
        return 0
    lin = nodes[k]
    x = (norm or nodes[i]).inputs[0] if (norm or last_row) else lin.inputs[0]
    w = lin.inputs[1]
    rows, cols = L.graph.params[w].shape
    out = lin.outputs[0]
    nxt = nodes[k + 1] if k + 1 < len(nodes) else None
    tensors = {"x": x, "w": w, "bias": lin.inputs[2] if len(lin.inputs) > 2 else ""}
    kw: dict[str, Any] = {}
    used = k + 1 - i
    sliced = len(L.slices(w)) > 1
    packed_in = norm.outputs[0] if norm is not None else x
    if packed_in not in L.packed:
        packed_in = ""
        if L.form == "prefill" and norm is None and not last_row and cols % 8 == 0 \
                and _idot_linear(L, lin, _outputs_of_chain(L, k), norm=False):
            # the tiled form's producers (attention, the SiLU-gate epilogue) do not pack: a pack
            # dispatch does (its cost is small beside a 128-token matmul's integer-dot-product gain)
            _new_packed(L, x)
            L.emit(K.PackKey(act=L.act, cols=cols), {"x": x, "outq": x + PACK_SUFFIXES[0], "outs": x + PACK_SUFFIXES[1]})
            packed_in = x
    if norm is not None:
        kw.update(norm=True, norm_eps=norm.attrs["eps"])
        if not packed_in:
            tensors["norm_w"] = norm.inputs[1]
    if packed_in:  # the producer packed x (times the norm weight): integer dot products
        kw["xq"] = True
        tensors.update(xq=packed_in + PACK_SUFFIXES[0], xs=packed_in + PACK_SUFFIXES[1])
        if norm is None:
            del tensors["x"]
    if not L.fuse:
        tensors["out"] = _new_buffer(L, out)
    elif nxt is not None and nxt.op == "split" and U.only(out, k + 1) and not sliced:
        parts = nxt.outputs
        after = nodes[k + 2] if k + 2 < len(nodes) else None
        if after is not None and after.op == "silu_mul" and after.inputs == parts and len(parts) == 2 \
                and nxt.attrs["sizes"][0] == nxt.attrs["sizes"][1] and all(U.only(t, k + 2) for t in parts):
            kw["epilogue"], rows = "silu_mul", nxt.attrs["sizes"][0]
            down = nodes[k + 3] if k + 3 < len(nodes) else None
            if L.form == "decode" and down is not None and down.op == "linear" and down.inputs[0] == after.outputs[0] \
                    and U.only(after.outputs[0], k + 3) and rows % 8 == 0 \
                    and _idot_linear(L, down, _outputs_of_chain(L, k + 3), norm=False):
                kw.update(pack=True, pack_layout=K.PACK_LAYOUTS[L.fmt(down.inputs[1])])  # the down projection reads silu(gate) * up packed
                _new_packed(L, after.outputs[0])
                tensors.update(outq=after.outputs[0] + PACK_SUFFIXES[0], outs=after.outputs[0] + PACK_SUFFIXES[1])
            else:
                tensors["out"] = _new_buffer(L, after.outputs[0])
            used += 2
        else:
            kw["splits"] = tuple(nxt.attrs["sizes"])
            for j, t in enumerate(parts):
                tensors[f"out{j}"] = _new_buffer(L, t)
            used += 1
    elif nxt is not None and nxt.op == "add" and nxt.inputs[1] == out and U.only(out, k + 1) \
            and U.last.get(nxt.inputs[0]) == k + 1 and nxt.inputs[0] in L.where \
            and L.where[nxt.inputs[0]].startswith("act"):
        kw["epilogue"] = "residual"
        tensors["out"] = _new_buffer(L, nxt.outputs[0], alias_of=nxt.inputs[0])
        used += 1
        m = k + 2  # the next layer's (or the MLP's) RMSNorm of the updated residual stream
        inputs = (int(norm is not None) + 2) if packed_in else 1  # [x for the norm] xq xs, or x
        storage = inputs + 2 + int(len(lin.inputs) > 2) + 4  # w, scales, [bias], out, pack_w, outq, outs
        layout = _packs_for(L, m) if L.form == "decode" else ""  # (prefill: the separate norm packs)
        if layout and nodes[m].inputs[0] == nxt.outputs[0] and rows % 8 == 0 and not sliced \
                and storage <= K.MAX_STORAGE_BUFFERS:
            kw.update(pack=True, pack_layout=layout)
            tensors["pack_w"] = nodes[m].inputs[1]
            _new_packed(L, nodes[m].outputs[0])
            tensors.update(outq=nodes[m].outputs[0] + PACK_SUFFIXES[0], outs=nodes[m].outputs[0] + PACK_SUFFIXES[1])
    else:
        tensors["out"] = _new_buffer(L, out)
    slices = L.slices(w)
    for piece, (r0, n_rows) in enumerate(slices):
        many = len(slices) > 1
        key = K.matmul_key(L.act, L.fmt(w), n_rows if many else rows, cols, bias=len(lin.inputs) > 2,
                           prefill=L.form == "prefill", last_row=last_row,
                           row_offset=r0, out_rows=rows if many else 0, **kw)
        L.emit(key, tensors, piece if many else None)
    if packed_in:
        _release_packed(L, packed_in)
    return used


def _rope_kv(L: _Lowering, i: int) -> int:
    """rope(q), rope(k), kv_write(k_rot), kv_write(v) -> one rope_kv dispatch (q rotated in place)."""
    nodes, U = L.graph.nodes, L.uses
    if not L.fuse or i + 3 >= len(nodes) or [n.op for n in nodes[i : i + 4]] != ["rope", "rope", "kv_write", "kv_write"]:
        return 0
    rq, rk, wk, wv = nodes[i : i + 4]
    if wk.inputs[0] != rk.outputs[0] or not U.only(rk.outputs[0], i + 2) or not U.only(rq.inputs[0], i) \
            or rq.attrs["head_dim"] != rk.attrs["head_dim"]:
        return 0
    _new_buffer(L, rq.outputs[0], alias_of=rq.inputs[0])
    L.emit(K.RopeKvKey(act=L.act, heads=rq.attrs["heads"], kv_heads=rk.attrs["heads"], head_dim=rq.attrs["head_dim"]),
           {"q": rq.outputs[0], "k": rk.inputs[0], "v": wv.inputs[0], "inv_freq": rq.inputs[1],
            "k_cache": wk.inputs[1], "v_cache": wv.inputs[1]})
    return 4


def _add_rms_norm(L: _Lowering, i: int) -> int:
    """add -> rms_norm: the residual is updated in place and normalized in one dispatch."""
    nodes, U = L.graph.nodes, L.uses
    node = nodes[i]
    nxt = nodes[i + 1] if i + 1 < len(nodes) else None
    if node.op != "add" or nxt is None or nxt.op != "rms_norm" or nxt.inputs[0] != node.outputs[0] \
            or U.last.get(node.inputs[0]) != i or node.inputs[0] not in L.where or nxt.attrs.get("group"):
        return 0
    resid, b = node.inputs
    _new_buffer(L, node.outputs[0], alias_of=resid)
    _new_buffer(L, nxt.outputs[0])
    L.emit(K.AddRmsNormKey(act=L.act, cols=L.graph.values[node.outputs[0]].shape[-1], eps=nxt.attrs["eps"],
                           inplace=True), {"x": node.outputs[0], "b": b, "w": nxt.inputs[1], "out": nxt.outputs[0]})
    return 2


def _rope_to_cache(L: _Lowering, i: int) -> int:
    """rope(k) -> kv_write: rope writes the rotated rows straight into the cache."""
    nodes, U = L.graph.nodes, L.uses
    node = nodes[i]
    nxt = nodes[i + 1] if i + 1 < len(nodes) else None
    if node.op != "rope" or nxt is None or nxt.op != "kv_write" or nxt.inputs[0] != node.outputs[0] \
            or not U.only(node.outputs[0], i + 1):
        return 0
    L.emit(K.RopeKey(act=L.act, heads=node.attrs["heads"], head_dim=node.attrs["head_dim"], to_cache=True),
           {"x": node.inputs[0], "inv_freq": node.inputs[1], "cache": nxt.inputs[1]})
    return 2


# measured on lavapipe (SmolLM2, n=128): the prologue costs more than a separate norm
# dispatch in the tiled prefill form (1.69-2.16 s vs 1.32 s a chunk), and saves time in decode
NORM_PROLOGUE_FORMS = {"decode"}

FUSION_RULES: list[Callable[[_Lowering, int], int]] = [_matmul_chain, _rope_kv, _add_rms_norm, _rope_to_cache]


# -- one lowering rule per op (what is left when no fusion rule matched) -----------------

def _embedding(L, node, i):
    ids, table = node.inputs
    vocab, hidden = L.graph.params[table].shape
    out = _new_buffer(L, node.outputs[0])
    slices = L.slices(table)
    for piece, (r0, rows) in enumerate(slices):
        sliced = len(slices) > 1
        L.emit(K.EmbeddingKey(act=L.act, fmt=L.fmt(table), vocab=rows, hidden=hidden, vocab_offset=r0, sliced=sliced),
               {"ids": ids, "w": table, "out": out}, piece if sliced else None)


def _rms_norm(L, node, i):
    x, w = node.inputs
    cols = L.graph.values[x].shape[-1]
    layout = _packs_for(L, i) if cols % 8 == 0 else ""
    if layout:  # the linear after it takes x packed (idot prefill): write only the packed form
        _new_packed(L, node.outputs[0])
        out = node.outputs[0]
        L.emit(K.RmsNormKey(act=L.act, cols=cols, eps=node.attrs["eps"], pack=True, pack_layout=layout),
               {"x": x, "w": w, "outq": out + PACK_SUFFIXES[0], "outs": out + PACK_SUFFIXES[1]})
        return
    L.emit(K.RmsNormKey(act=L.act, cols=cols, eps=node.attrs["eps"], group=node.attrs.get("group") or 0),
           {"x": x, "w": w, "out": _new_buffer(L, node.outputs[0])})


def _rope(L, node, i):
    a = node.attrs
    L.emit(K.RopeKey(act=L.act, heads=a["heads"], head_dim=a["head_dim"]),
           {"x": node.inputs[0], "inv_freq": node.inputs[1], "out": _new_buffer(L, node.outputs[0])})


def _kv_write(L, node, i):
    x, cache = node.inputs
    L.emit(K.KvWriteKey(act=L.act, width=L.graph.state[cache].shape[-1]), {"x": x, "cache": cache})


def _attention(L, node, i):
    a = node.attrs
    q, kc, vc = node.inputs
    L.emit(K.AttentionKey(act=L.act, heads=a["heads"], kv_heads=a["kv_heads"], head_dim=a["head_dim"],
                          scale=a["scale"], form=L.form),
           {"q": q, "k_cache": kc, "v_cache": vc, "out": _new_buffer(L, node.outputs[0])})


def _elementwise(key_type, names):
    def lower(L, node, i):
        cols = L.graph.values[node.inputs[0]].shape[-1]
        tensors = dict(zip(names, node.inputs))
        tensors["out"] = _new_buffer(L, node.outputs[0])
        L.emit(key_type(act=L.act, cols=cols), tensors)
    return lower


def _unfused(op):
    def lower(L, node, i):
        raise ValueError(f"lowering: {op} node {node.outputs} is only supported fused into the matmul before it")
    return lower


LOWER_OP: dict[str, Callable] = {
    "embedding": _embedding,
    "rms_norm": _rms_norm,
    "linear": lambda L, node, i: _matmul_chain(L, i),
    "rope": _rope,
    "kv_write": _kv_write,
    "attention": _attention,
    "silu_mul": _elementwise(K.SiluMulKey, ["gate", "up"]),
    "add": _elementwise(K.AddKey, ["a", "b"]),
    "last_row": _elementwise(K.LastRowKey, ["x"]),
    "split": _unfused("split"),
}


# -- whole-bundle lowering ----------------------------------------------------------

PROGRAMS = {  # program -> (graph, kernel form)
    "decode": ("logits_last", "decode"),
    "prefill": ("logits_last", "prefill"),
    "score": ("logits_all", "prefill"),
}


def lower_bundle(graphs: dict[str, Graph], weights: dict[str, Any], prefill_chunk: int, context_window: int,
                 sets: tuple[str, ...] = ("f32", "f16", "idot"),
                 max_binding_bytes: int = DEFAULT_MAX_BINDING_BYTES, fuse: bool = True) -> dict[str, Any]:
    """Programs (one set per PROGRAM_SETS name in `sets`), buffers and kernels for the manifest
    (kernels as Kernel objects, keyed by name)."""
    kernels: dict[str, K.Kernel] = {}
    programs: dict[str, dict[str, Any]] = {}
    pool = _Pool()
    pack_pools = (_Pool("pq"), _Pool("ps"))
    logits_rows = {}
    for name in sets:
        act, idot = PROGRAM_SETS[name]
        programs[name] = {}
        for prog, (gname, form) in PROGRAMS.items():
            g = graphs[gname]
            for p in (pool, *pack_pools):
                p.free = list(p.sizes)  # every program starts with the whole pool free
            L = _Lowering(g, weights, act, form, 1 if prog == "decode" else prefill_chunk, max_binding_bytes,
                          kernels, pool, fuse=fuse, idot=idot, pack_pools=pack_pools)
            lowered = _lower(L, g.output)
            if L.packed:
                raise AssertionError(f"lowering {name}/{prog}: packed values never consumed: {sorted(L.packed)}")
            programs[name][prog] = {"dispatches": [d.to_json() for d in lowered.dispatches],
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
    for p, dtype in zip(pack_pools, ("u32", "f32")):  # packed activations (program set "idot")
        for name, size in p.sizes.items():
            buffers[name] = {"kind": "activation", "elements": size, "dtype": dtype}
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
    features: dict[str, list[str]] = {}  # set -> WGSL language features its kernels use
    for name, progs in programs.items():
        used = {d["kernel"] for prog in progs.values() for d in prog["dispatches"]}
        need = sorted({f for k in used for f in K.wgsl_features(kernels[k].wgsl)})
        if need:
            features[name] = need
    return {"programs": programs, "buffers": buffers, "kernels": kernels, "wgsl_language_features": features}
