"""Lowering: graph IR → programs (ordered kernel dispatches over planned buffers).

A program is what both runtimes interpret: a list of dispatches, each naming
a kernel variant, the buffers bound to its bindings (in binding order), and
its workgroup counts as expressions of n (tokens this step) and p (tokens
cached). Three programs per program set (passes/program_sets.py: adapter class, activations,
KV storage; the class picks the kernel shapes, codegen/shapes.py):

  decode   n == 1, logits of that token           (from the logits_last graph)
  prefill  1 <= n <= prefill_chunk, last logits   (from the logits_last graph)
  score    1 <= n <= prefill_chunk, every row     (from the logits_all graph)

Fusions (lower_fusions.py FUSION_RULES, each a rule on the node list, tried in order): the
RMSNorm prologue, multi-output split, SiLU-gate and residual epilogues of a matmul, rope_kv,
add_rms_norm, rope into the cache. What is left is lowered by one rule per op (LOWER_OP).
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

from typing import Any, Callable

from ..codegen import kernels as K
from ..codegen.gemma_kernels import GeluMulKey, SoftcapKey
from ..codegen.shapes import SHAPES, AttentionOp
from ..ir import Graph
from ..ir.graph import eval_shape
from .lower_fusions import FUSION_RULES, matmul_chain, packs_for
from .lowering import (DEFAULT_MAX_BINDING_BYTES, PACK_SUFFIXES, Dispatch, LoweredProgram, Lowering, Pool, Uses,
                       new_buffer, new_packed, release_dead, row_slices, weight_buffer)
from .program_sets import DEFAULT_SETS, PROGRAM_SETS, check_sets, set_metadata

__all__ = ["DEFAULT_MAX_BINDING_BYTES", "PROGRAM_SETS", "Dispatch", "Pool", "lower_bundle", "row_slices", "weight_buffer"]


def lower_program(L: Lowering, logits_value: str) -> LoweredProgram:
    """Lower L's graph: at each node the first fusion rule that matches, else the op's own rule."""
    nodes = L.graph.nodes
    L.uses = Uses(nodes)
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
            release_dead(L, j)
        i += used
    rows = "1" if "final_last" in L.graph.values else "n"
    return LoweredProgram(L.dispatches, L.where[logits_value], rows)


# -- one lowering rule per op (what is left when no fusion rule matched) -----------------

def _embedding(L, node, i):
    ids, table = node.inputs
    vocab, hidden = L.graph.params[table].shape
    out = new_buffer(L, node.outputs[0])
    slices = L.slices(table)
    for piece, (r0, rows) in enumerate(slices):
        sliced = len(slices) > 1
        L.emit(K.EmbeddingKey(act=L.act, fmt=L.fmt(table), vocab=rows, hidden=hidden, vocab_offset=r0, sliced=sliced,
                              scale=node.attrs.get("scale", 1.0)),
               {"ids": ids, "w": table, "out": out}, piece if sliced else None)


def _rms_norm(L, node, i):
    x, w = node.inputs
    cols = L.graph.values[x].shape[-1]
    layout = packs_for(L, i) if cols % 8 == 0 else ""
    if layout:  # the linear after it takes x packed (idot prefill): write only the packed form
        new_packed(L, node.outputs[0])
        out = node.outputs[0]
        L.emit(K.RmsNormKey(act=L.act, cols=cols, eps=node.attrs["eps"], pack=True, pack_layout=layout),
               {"x": x, "w": w, "outq": out + PACK_SUFFIXES[0], "outs": out + PACK_SUFFIXES[1]})
        return
    L.emit(K.RmsNormKey(act=L.act, cols=cols, eps=node.attrs["eps"], group=node.attrs.get("group") or 0),
           {"x": x, "w": w, "out": new_buffer(L, node.outputs[0])})


def _rope(L, node, i):
    a = node.attrs
    L.emit(K.with_rope(L.shapes.rope(L.act, L.kv, a["heads"], a["head_dim"], False), a),
           {"x": node.inputs[0], "inv_freq": node.inputs[1], "out": new_buffer(L, node.outputs[0])})


def _kv_write(L, node, i):
    x, cache = node.inputs
    L.emit(K.with_ring(L.shapes.kv_write(L.act, L.kv, L.graph.state[cache].shape[-1]), node.attrs),
           {"x": x, "cache": cache})


def _attention(L, node, i):
    a = node.attrs
    q, kc, vc = node.inputs
    # positions up to the context window (a ring cache has fewer rows: the split scratch grows with p)
    positions = L.context_window if a.get("ring") else L.graph.state[kc].shape[0]
    steps = L.shapes.attention(AttentionOp(L.act, L.kv, a["heads"], a["kv_heads"], a["head_dim"], a["scale"], L.form,
                                           positions, L.max_n, L.subgroups, window=a.get("window", 0),
                                           softcap=a.get("softcap", 0.0), ring=a.get("ring", 0)))
    tensors = {"q": q, "k_cache": kc, "v_cache": vc, "out": new_buffer(L, node.outputs[0]),
               "partial": node.outputs[0] + "#partial"}
    scratch = max(s.scratch for s in steps)
    if scratch:  # the steps' f32 scratch, from the activation pool (its dtype is the set's act)
        if L.act != "f32":
            raise ValueError(f"attention scratch needs f32 activations, program set has {L.act}")
        L.where[tensors["partial"]] = L.pool.take(scratch)
    for s in steps:
        L.emit(s.key, tensors)
        if s.gate:  # runs only for the n its gate is 1 at (codegen/shapes.py AttentionStep): 0 workgroups else
            wg = L.dispatches[-1].workgroups
            wg[0] = f"({wg[0]}) * ({s.gate})"
    if scratch:
        L.pool.release(L.where.pop(tensors["partial"]))


def _elementwise(key_type, names, attrs=()):
    """An elementwise op: the key takes (act, cols) and the node attributes named in `attrs`."""
    def lower(L, node, i):
        cols = L.graph.values[node.inputs[0]].shape[-1]
        tensors = dict(zip(names, node.inputs))
        tensors["out"] = new_buffer(L, node.outputs[0])
        L.emit(key_type(act=L.act, cols=cols, **{a: node.attrs[a] for a in attrs}), tensors)
    return lower


def _unfused(op):
    def lower(L, node, i):
        raise ValueError(f"lowering: {op} node {node.outputs} is only supported fused into the matmul before it")
    return lower


LOWER_OP: dict[str, Callable] = {
    "embedding": _embedding,
    "rms_norm": _rms_norm,
    "linear": lambda L, node, i: matmul_chain(L, i),
    "rope": _rope,
    "kv_write": _kv_write,
    "attention": _attention,
    "silu_mul": _elementwise(K.SiluMulKey, ["gate", "up"]),
    "gelu_mul": _elementwise(GeluMulKey, ["gate", "up"]),  # Gemma (codegen/gemma_kernels.py)
    "softcap": _elementwise(SoftcapKey, ["x"], ["cap"]),
    "add": _elementwise(K.AddKey, ["a", "b"]),
    "last_row": _elementwise(K.LastRowKey, ["x"]),
    "split": _unfused("split"),
}


# -- whole-bundle lowering ----------------------------------------------------------

def ring_windows(g: Graph) -> dict[str, int]:
    """state name -> the sliding window of the attention reading it, for every ring cache of `g`."""
    return {cache: n.attrs["window"] for n in g.nodes if n.op == "attention" and n.attrs.get("ring")
            for cache in n.inputs[1:]}


PROGRAMS = {  # program -> (graph, kernel form)
    "decode": ("logits_last", "decode"),
    "prefill": ("logits_last", "prefill"),
    "score": ("logits_all", "prefill"),
}


def lower_bundle(graphs: dict[str, Graph], weights: dict[str, Any], prefill_chunk: int, context_window: int,
                 sets: tuple[str, ...] = DEFAULT_SETS,
                 max_binding_bytes: int = DEFAULT_MAX_BINDING_BYTES, fuse: bool = True) -> dict[str, Any]:
    """Programs (one set per PROGRAM_SETS name in `sets`), their metadata (`program_sets`),
    buffers and kernels for the manifest (kernels as Kernel objects, keyed by name)."""
    sets = check_sets(sets)
    kernels: dict[str, K.Kernel] = {}
    programs: dict[str, dict[str, Any]] = {}
    pool = Pool()
    pack_pools = (Pool("pq"), Pool("ps"))
    logits_rows = {}
    for name in sets:
        s = PROGRAM_SETS[name]
        programs[name] = {}
        for prog, (gname, form) in PROGRAMS.items():
            g = graphs[gname]
            for p in (pool, *pack_pools):
                p.free = list(p.sizes)  # every program starts with the whole pool free
            L = Lowering(g, weights, s.act, form, 1 if prog == "decode" else prefill_chunk, max_binding_bytes,
                         kernels, pool, SHAPES[s.adapter_class], s.kv, s.subgroups, fuse=fuse, idot=s.idot,
                         pack_pools=pack_pools, context_window=context_window)
            lowered = lower_program(L, g.output)
            if L.packed:
                raise AssertionError(f"lowering {name}/{prog}: packed values never consumed: {sorted(L.packed)}")
            programs[name][prog] = {"dispatches": [d.to_json() for d in lowered.dispatches],
                                    "logits_rows": lowered.output_rows}
            logits_rows[prog] = 1 if lowered.output_rows == "1" else prefill_chunk
    g = graphs["logits_last"]
    vocab = g.values[g.output].shape[-1]
    buffers: dict[str, Any] = {
        "ids": {"kind": "ids", "elements": prefill_chunk, "dtype": "i32"},
        "step": {"kind": "uniform", "bytes": 16},
        "logits": {"kind": "output", "elements": max(logits_rows.values()) * vocab, "dtype": "act"},
    }
    rings = ring_windows(g)
    for name, v in g.state.items():
        rows, width = eval_shape(v.shape, {})
        buffers[name] = {"kind": "state", "elements": rows * width, "dtype": "act"}
        if name in rings:  # a sliding-window layer's ring cache (docs/bundle-format.md "Ring KV caches")
            buffers[name].update(ring=rows, window=rings[name])
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
    return {"programs": programs, "program_sets": set_metadata(programs, kernels), "buffers": buffers,
            "kernels": kernels, "wgsl_language_features": features}

