"""Manifest `buffers`, `kernels` and `programs`: what the native and browser runtimes execute.

Kernels come from listed (hashed) WGSL files; dispatches name existing kernels and buffers,
as many as the kernel binds; weight buffers are byte ranges of their part; the KV-cache,
ids and output buffers are large enough for the step limits (context_window, prefill_chunk,
or an embedding model's batch limits). Bundles of the first format have no programs: the
reference runs them, the native runtime refuses them itself.
"""

from __future__ import annotations

from typing import Any, Callable

from .fields import Invalid, dim, field, show, sub, want
from .paths import listed

BUFFER_KINDS = ("ids", "rows", "offsets", "uniform", "output", "state", "activation", "weight")
BUFFER_DTYPES = ("act", "i32", "u32", "f32")  # "act": the program set's activation type
BINDING_KINDS = ("read", "read_write", "uniform")  # runtime/device.py _BUFFER_TYPES
StepBuffers = tuple[tuple[str, str, Callable[[dict[str, int], int], int]], ...]


def _check_buffers(m: dict, weights: dict[str, dict]) -> dict[str, dict]:
    buffers = field(m, "buffers", "", "dict")
    for name, b in buffers.items():
        where = sub("buffers", name)
        want(b, "dict", where)
        kind = field(b, "kind", where, "str")
        if kind not in BUFFER_KINDS:
            raise Invalid(sub(where, "kind"), f"{show(kind)} is not a buffer kind ({', '.join(BUFFER_KINDS)})")
        if "bytes" in b or kind in ("uniform", "weight"):
            field(b, "bytes", where, "int", lo=0)
        else:
            field(b, "elements", where, "int", lo=0)
            dtype = field(b, "dtype", where, "str")
            if dtype not in BUFFER_DTYPES:
                raise Invalid(sub(where, "dtype"), f"{show(dtype)} is not one of {', '.join(BUFFER_DTYPES)}")
        if kind == "weight":
            param = field(b, "param", where, "str")
            if param not in weights:
                raise Invalid(sub(where, "param"), f"{show(param)} is not in weights")
            part = field(b, "part", where, "str")
            if part not in weights[param]["parts"]:
                raise Invalid(sub(where, "part"), f"{show(part)} is not a part of weights[{show(param)}]")
            offset = field(b, "offset", where, "int", lo=0)
            nbytes = weights[param]["parts"][part]["nbytes"]
            if offset + b["bytes"] > nbytes:
                raise Invalid(where, f"{b['bytes']} bytes at offset {offset} end past the {nbytes} bytes of "
                              f"weights[{show(param)}].parts.{part}")
    if not buffers:
        raise Invalid("buffers", "no buffers")
    return buffers


def _check_kernels(m: dict, files: dict[str, int]) -> dict[str, dict]:
    kernels = field(m, "kernels", "", "dict")
    if not kernels:
        raise Invalid("kernels", "no kernels")
    for name, k in kernels.items():
        where = sub("kernels", name)
        want(k, "dict", where)
        listed(files, field(k, "file", where, "str"), sub(where, "file"))
        for i, b in enumerate(field(k, "bindings", where, "list")):
            bwhere = sub(sub(where, "bindings"), i)
            if not (isinstance(b, list) and len(b) == 2 and isinstance(b[0], str) and b[1] in BINDING_KINDS):
                raise Invalid(bwhere, f"{show(b)} is not [name, one of {', '.join(BINDING_KINDS)}]")
        wg = field(k, "workgroup_size", where, "list")
        if len(wg) != 3:
            raise Invalid(sub(where, "workgroup_size"), f"{show(wg)} is not [x, y, z]")
        for i, n in enumerate(wg):
            want(n, "int", sub(sub(where, "workgroup_size"), i), lo=1)
    return kernels


def _check_dispatch(d: Any, where: str, kernels: dict[str, dict], buffers: dict[str, dict]) -> None:
    want(d, "dict", where)
    kname = field(d, "kernel", where, "str")
    if kname not in kernels:
        raise Invalid(sub(where, "kernel"), f"{show(kname)} is not in kernels")
    kinds = [kind for _, kind in kernels[kname]["bindings"]]
    bound = field(d, "bindings", where, "list")
    if len(bound) != len(kinds):
        raise Invalid(sub(where, "bindings"), f"{len(bound)} buffers for the {len(kinds)} bindings of {kname}")
    for i, (bname, kind) in enumerate(zip(bound, kinds)):
        bwhere = sub(sub(where, "bindings"), i)
        if not isinstance(bname, str) or bname not in buffers:
            raise Invalid(bwhere, f"{show(bname)} is not in buffers")
        if (kind == "uniform") != (buffers[bname]["kind"] == "uniform"):
            raise Invalid(bwhere, f"{bname} ({buffers[bname]['kind']}) cannot be bound as {kind}")
        if kind == "read_write" and bound.count(bname) > 1:  # WebGPU refuses a writable alias
            raise Invalid(bwhere, f"{bname} is bound twice, once writable")
    groups = field(d, "workgroups", where, "list")
    if len(groups) != 3:
        raise Invalid(sub(where, "workgroups"), f"{show(groups)} is not [x, y, z]")
    for i, g in enumerate(groups):
        dim(g, sub(sub(where, "workgroups"), i))


def _check_sizes(buffers: dict[str, dict], state: dict[str, list], limits: dict[str, int],
                 step_buffers: StepBuffers, vocab: int) -> None:
    """KV-cache buffers hold context_window rows (a ring cache: exactly `ring` rows and its
    `window`, as the graphs have them); step buffers hold the largest step."""
    ctx = limits.get("context_window")
    for name, (rows, width, *window) in state.items():
        b = buffers.get(name)
        if b is None or b["kind"] != "state":
            raise Invalid(sub("buffers", name), "missing: the graphs' KV cache needs a state buffer")
        _check_ring(b, sub("buffers", name), rows, width, window[0] if window else 0, ctx)
        if window:
            continue
        if ctx is not None and b["elements"] < ctx * width:
            raise Invalid("context_window", f"{ctx} is more than the {b['elements'] // width} rows "
                          f"{sub('buffers', name)} holds ({b['elements']} elements of width {width})")
    for name, limit, need in step_buffers:
        b = buffers.get(name)
        if b is None or "elements" not in b:
            raise Invalid(sub("buffers", name), "missing (the runtimes write each step into it)")
        if b["elements"] < need(limits, vocab):
            raise Invalid(limit, f"{limits[limit]} needs {need(limits, vocab)} elements of "
                          f"{sub('buffers', name)}, which holds {b['elements']}")


def _check_ring(b: dict, where: str, rows: int, width: int, window: int, ctx: int | None) -> None:
    """A ring state buffer (docs/bundle-format.md "Ring KV caches"): `ring` = the graphs' rows, `window`
    the attention's, elements = ring x width; a buffer of a cache without a ring has neither field."""
    if not window:
        for key in ("ring", "window"):
            if key in b:
                raise Invalid(sub(where, key), f"the graphs' cache {show(where)} is not a ring (it holds every "
                              "position); remove the field")
        return
    ring = field(b, "ring", where, "int", lo=1, hi=None if ctx is None else ctx - 1)  # else not a ring
    if ring != rows:
        raise Invalid(sub(where, "ring"), f"{ring}, but the graphs' ring cache has {rows} rows")
    if field(b, "window", where, "int", lo=1) != window:
        raise Invalid(sub(where, "window"), f"{b['window']}, but the graphs' attention window is {window}")
    if b["elements"] != ring * width:
        raise Invalid(sub(where, "elements"), f"{b['elements']} is not ring x width = {ring} x {width}")


# program_sets entries (passes/program_sets.py set_metadata): field -> allowed values
SET_CLASSES = ("cpu", "gpu")
SET_ACTIVATIONS = ("f32", "f16")
SET_KV = ("f32", "f16", "f16x2")


def _check_set_metadata(m: dict, sets: dict) -> None:
    """`program_sets` (optional: bundles before adapter classes lack it): one entry per set of
    `programs`, each naming its class, activations, KV storage and the features it needs."""
    metas = field(m, "program_sets", "", "list", optional=True)
    if metas is None:
        return
    seen = []
    for i, meta in enumerate(metas):
        where = sub("program_sets", i)
        want(meta, "dict", where)
        name = field(meta, "name", where, "str")
        if name not in sets or name in seen:
            raise Invalid(sub(where, "name"), f"{show(name)} is not a program set of programs, or is listed twice")
        seen.append(name)
        for key, allowed in (("class", SET_CLASSES), ("activations", SET_ACTIVATIONS), ("kv", SET_KV)):
            if field(meta, key, where, "str") not in allowed:
                raise Invalid(sub(where, key), f"{show(meta[key])} is not one of {', '.join(allowed)}")
        for key in ("features", "wgsl_language_features"):
            for j, f in enumerate(field(meta, key, where, "list")):
                want(f, "str", sub(sub(where, key), j))
    if set(seen) != set(sets):
        raise Invalid("program_sets", f"lists {', '.join(seen)} but programs has {', '.join(sets)}; rebuild the bundle")


def check_programs(m: dict, programs: tuple[str, ...], step_buffers: StepBuffers, files: dict[str, int],
                   weights: dict[str, dict], state: dict[str, list], limits: dict[str, int], vocab: int) -> None:
    """Validate buffers, kernels and every program set (each must hold `programs`)."""
    if "programs" not in m:
        return
    buffers = _check_buffers(m, weights)
    kernels = _check_kernels(m, files)
    sets = field(m, "programs", "", "dict")
    if not sets:
        raise Invalid("programs", "no program set")
    for set_name, progs in sets.items():
        swhere = sub("programs", set_name)
        want(progs, "dict", swhere)
        for pname in programs:
            pwhere = sub(swhere, pname)
            prog = field(progs, pname, swhere, "dict")
            for i, d in enumerate(field(prog, "dispatches", pwhere, "list")):
                _check_dispatch(d, sub(sub(pwhere, "dispatches"), i), kernels, buffers)
            for key in ("logits_rows", "output_rows"):
                if key in prog:
                    dim(prog[key], sub(pwhere, key))
            if field(prog, "output", pwhere, "str", optional=True) not in (None, *buffers):
                raise Invalid(sub(pwhere, "output"), f"{show(prog['output'])} is not in buffers")
    _check_set_metadata(m, sets)
    features = field(m, "wgsl_language_features", "", "dict", optional=True) or {}
    for set_name, names in features.items():
        fwhere = sub("wgsl_language_features", set_name)
        for i, f in enumerate(want(names, "list", fwhere)):
            want(f, "str", sub(fwhere, i))
    _check_sizes(buffers, state, limits, step_buffers, vocab)
