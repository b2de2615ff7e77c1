"""Fusion rules of the lowering: each matches at node i and returns how many nodes it lowered (0: no match).

  [rms_norm] [last_row] linear [split [silu_mul] | add]
                          one matmul: norm as prologue, several outputs for a
                          split (fused q/k/v), SiLU-gate or residual-add epilogue
  rope(q) rope(k) kv_write kv_write
                          one rope_kv: q rotated in place, k rotated and v copied
                          into the KV cache
  add -> rms_norm         one add_rms_norm (where no matmul took the norm)
  rope(k) -> kv_write     rope writes straight into the cache (where rope_kv did not match)

What a fusion computes is decided here; the kernel shape that computes it comes from the
program set's adapter class (L.shapes, codegen/shapes.py). The idot helpers decide where an
integer-dot-product matmul takes its x packed (program set "idot", passes/lower.py docstring).
"""

from __future__ import annotations

from typing import Any, Callable

from ..codegen import kernels as K
from ..ir import Node
from .lowering import PACK_SUFFIXES, Lowering, new_buffer, new_packed, release_packed

def _idot_linear(L: Lowering, lin: Node, outputs: int, norm: bool) -> bool:
    """Can this linear take its x packed? q4/q4a/q8 (K.PACK_LAYOUTS; prefill: q4/q4a), 32-column
    groups, one slice, and within WebGPU's 8 storage buffers with `outputs` output bindings (x for
    the norm, xq, xs, w, scales, bias)."""
    w = lin.inputs[1]
    fmt = L.fmt(w)
    # the tiled (prefill) form reads pairs only: int8 bytes (q8) are decode-only
    return (L.idot and L.fuse and fmt in K.PACK_LAYOUTS and (L.form == "decode" or K.PACK_LAYOUTS[fmt] == "pairs")
            and L.graph.params[w].shape[1] % 32 == 0 and len(L.slices(w)) == 1
            and int(norm) + 2 + 2 + int(len(lin.inputs) > 2) + outputs <= K.MAX_STORAGE_BUFFERS)


def _outputs_of_chain(L: Lowering, k: int) -> int:
    """Output bindings the matmul chain of the linear at node k will have, at most."""
    nodes = L.graph.nodes
    nxt = nodes[k + 1] if k + 1 < len(nodes) else None
    if nxt is not None and nxt.op == "split":
        return 2 if k + 2 < len(nodes) and nodes[k + 2].op == "silu_mul" else len(nxt.outputs)
    return 4 if nxt is not None and nxt.op == "add" else 1  # residual: out, pack_w, outq, outs


def packs_for(L: Lowering, m: int) -> str:
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
            or not _idot_linear(L, nodes[k], _outputs_of_chain(L, k), norm=L.form in L.shapes.norm_prologue_forms):
        return ""
    return K.PACK_LAYOUTS[L.fmt(nodes[k].inputs[1])]


# -- the rules ---------------------------------------------------------------------------

def matmul_chain(L: Lowering, i: int) -> int:
    """[rms_norm] [last_row] linear [split [silu_mul] | add]  ->  one matmul dispatch (per row slice).

    rms_norm -> prologue (norm=True); split -> multi-output (splits); split -> silu_mul ->
    epilogue "silu_mul" over the stacked [gate; up] weight; add(x, linear) -> epilogue
    "residual" updating x's buffer in place."""
    nodes, U = L.graph.nodes, L.uses
    k, norm, last_row = i, None, False
    if nodes[k].op == "rms_norm" and not nodes[k].attrs.get("group") and L.fuse and L.form in L.shapes.norm_prologue_forms:
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
            new_packed(L, x)
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
        tensors["out"] = new_buffer(L, out)
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
                new_packed(L, after.outputs[0])
                tensors.update(outq=after.outputs[0] + PACK_SUFFIXES[0], outs=after.outputs[0] + PACK_SUFFIXES[1])
            else:
                tensors["out"] = new_buffer(L, after.outputs[0])
            used += 2
        else:
            kw["splits"] = tuple(nxt.attrs["sizes"])
            for j, t in enumerate(parts):
                tensors[f"out{j}"] = new_buffer(L, t)
            used += 1
    elif nxt is not None and nxt.op == "add" and nxt.inputs[1] == out and U.only(out, k + 1) \
            and U.last.get(nxt.inputs[0]) == k + 1 and nxt.inputs[0] in L.where \
            and L.where[nxt.inputs[0]].startswith("act"):
        kw["epilogue"] = "residual"
        tensors["out"] = new_buffer(L, nxt.outputs[0], alias_of=nxt.inputs[0])
        used += 1
        m = k + 2  # the next layer's (or the MLP's) RMSNorm of the updated residual stream
        inputs = (int(norm is not None) + 2) if packed_in else 1  # [x for the norm] xq xs, or x
        storage = inputs + 2 + int(len(lin.inputs) > 2) + 4  # w, scales, [bias], out, pack_w, outq, outs
        layout = packs_for(L, m) if L.form == "decode" else ""  # (prefill: the separate norm packs)
        if layout and nodes[m].inputs[0] == nxt.outputs[0] and rows % 8 == 0 and not sliced \
                and storage <= K.MAX_STORAGE_BUFFERS:
            kw.update(pack=True, pack_layout=layout)
            tensors["pack_w"] = nodes[m].inputs[1]
            new_packed(L, nodes[m].outputs[0])
            tensors.update(outq=nodes[m].outputs[0] + PACK_SUFFIXES[0], outs=nodes[m].outputs[0] + PACK_SUFFIXES[1])
    else:
        tensors["out"] = new_buffer(L, out)
    slices = L.slices(w)
    for piece, (r0, n_rows) in enumerate(slices):
        many = len(slices) > 1
        key = L.shapes.linear(L.act, L.fmt(w), n_rows if many else rows, cols, bias=len(lin.inputs) > 2,
                              form=L.form, last_row=last_row, row_offset=r0, out_rows=rows if many else 0,
                              subgroups=L.subgroups, **kw)
        L.emit(key, tensors, piece if many else None)
    if packed_in:
        release_packed(L, packed_in)
    return used


def _rope_kv(L: Lowering, i: int) -> int:
    """rope(q), rope(k), kv_write(k_rot), kv_write(v) -> one rope_kv dispatch (q rotated in place)."""
    nodes, U = L.graph.nodes, L.uses
    if not L.fuse or i + 3 >= len(nodes) or [n.op for n in nodes[i : i + 4]] != ["rope", "rope", "kv_write", "kv_write"]:
        return 0
    rq, rk, wk, wv = nodes[i : i + 4]
    if wk.inputs[0] != rk.outputs[0] or not U.only(rk.outputs[0], i + 2) or not U.only(rq.inputs[0], i) \
            or {a: v for a, v in rq.attrs.items() if a != "heads"} != {a: v for a, v in rk.attrs.items() if a != "heads"} \
            or wk.attrs != wv.attrs:  # one ring (or none) for both caches
        return 0
    new_buffer(L, rq.outputs[0], alias_of=rq.inputs[0])
    key = L.shapes.rope_kv(L.act, L.kv, rq.attrs["heads"], rk.attrs["heads"], rq.attrs["head_dim"])
    L.emit(K.with_ring(K.with_rope(key, rq.attrs), wk.attrs),  # the cache writes' ring (a sliding-window layer)
           {"q": rq.outputs[0], "k": rk.inputs[0], "v": wv.inputs[0], "inv_freq": rq.inputs[1],
            "k_cache": wk.inputs[1], "v_cache": wv.inputs[1]})
    return 4


def _add_rms_norm(L: Lowering, i: int) -> int:
    """add -> rms_norm: the residual is updated in place and normalized in one dispatch."""
    nodes, U = L.graph.nodes, L.uses
    node = nodes[i]
    nxt = nodes[i + 1] if i + 1 < len(nodes) else None
    if node.op != "add" or nxt is None or nxt.op != "rms_norm" or nxt.inputs[0] != node.outputs[0] \
            or U.last.get(node.inputs[0]) != i or node.inputs[0] not in L.where or nxt.attrs.get("group"):
        return 0
    resid, b = node.inputs
    new_buffer(L, node.outputs[0], alias_of=resid)
    new_buffer(L, nxt.outputs[0])
    L.emit(K.AddRmsNormKey(act=L.act, cols=L.graph.values[node.outputs[0]].shape[-1], eps=nxt.attrs["eps"],
                           inplace=True), {"x": node.outputs[0], "b": b, "w": nxt.inputs[1], "out": nxt.outputs[0]})
    return 2


def _rope_to_cache(L: Lowering, i: int) -> int:
    """rope(k) -> kv_write: rope writes the rotated rows straight into the cache."""
    nodes, U = L.graph.nodes, L.uses
    node = nodes[i]
    nxt = nodes[i + 1] if i + 1 < len(nodes) else None
    if node.op != "rope" or nxt is None or nxt.op != "kv_write" or nxt.inputs[0] != node.outputs[0] \
            or not U.only(node.outputs[0], i + 1):
        return 0
    key = K.with_rope(L.shapes.rope(L.act, L.kv, node.attrs["heads"], node.attrs["head_dim"], True), node.attrs)
    L.emit(K.with_ring(key, nxt.attrs), {"x": node.inputs[0], "inv_freq": node.inputs[1], "cache": nxt.inputs[1]})
    return 2


FUSION_RULES: list[Callable[[Lowering, int], int]] = [matmul_chain, _rope_kv, _add_rms_norm, _rope_to_cache]
