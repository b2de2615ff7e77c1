"""Manifest `weights`: each part's dtype, shape and byte count follow from the weight's format and
shape (quant/formats.py), and the parts lie inside listed files without overlapping each other."""

from __future__ import annotations

import math
from typing import Any

from ..quant.formats import FORMATS, part_shapes
from .fields import Invalid, field, show, sub, want
from .manifest import PART_ALIGN
from .paths import listed

SHARD_DIR = "params/"  # shards.py writes every part into params/<sha256[:16]>.bin
PART_DTYPE_BYTES = {"u32": 4, "f16": 2, "f32": 4}  # shards.py's dtype names


def expected_parts(fmt: str, shape: tuple[int, ...]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """part name -> (dtype, shape) a weight of `fmt` and logical `shape` is stored as (quant/formats.py)."""
    return part_shapes(fmt, shape)


def _shape(v: Any, where: str) -> tuple[int, ...]:
    dims = want(v, "list", where)
    if not dims:
        raise Invalid(where, "empty shape")
    for i, d in enumerate(dims):
        want(d, "int", sub(where, i), lo=1)
    return tuple(dims)


def _check_shard(path: str, where: str) -> None:
    if not (path.startswith(SHARD_DIR) and path.endswith(".bin")):  # not a kernel's or the tokenizer's bytes
        raise Invalid(where, f"{show(path)} is not a weight shard ({SHARD_DIR}*.bin)")


def _check_part(ref: Any, where: str, dtype: str, shape: tuple[int, ...], fmt: str,
                files: dict[str, int]) -> tuple[str, int, int]:
    """One part reference; returns (file, offset, end)."""
    want(ref, "dict", where)
    path = listed(files, field(ref, "file", where, "str"), sub(where, "file"))
    _check_shard(path, sub(where, "file"))
    offset = field(ref, "offset", where, "int", lo=0)
    nbytes = field(ref, "nbytes", where, "int", lo=0)
    got_dtype = field(ref, "dtype", where, "str")
    if got_dtype != dtype:
        raise Invalid(sub(where, "dtype"), f"{show(got_dtype)}, but {fmt} stores this part as {dtype}")
    got_shape = _shape(field(ref, "shape", where, "list"), sub(where, "shape"))
    if got_shape != shape:
        raise Invalid(sub(where, "shape"), f"{list(got_shape)}, but {fmt} of this weight's shape needs {list(shape)}")
    need = math.prod(shape) * PART_DTYPE_BYTES[dtype]
    if nbytes != need:
        raise Invalid(sub(where, "nbytes"), f"{nbytes} bytes, but {fmt} needs {need} for shape {list(shape)} of {dtype}")
    if offset % PART_ALIGN:
        raise Invalid(sub(where, "offset"), f"{offset} is not a multiple of {PART_ALIGN} (parts are aligned)")
    if offset + nbytes > files[path]:
        raise Invalid(where, f"{nbytes} bytes at offset {offset} end past {path} ({files[path]} bytes)")
    return path, offset, offset + nbytes


def check_weights(m: dict, files: dict[str, int]) -> dict[str, dict]:
    """Validate `weights`; returns name -> weight entry (shape and parts checked)."""
    weights = field(m, "weights", "", "dict")
    spans: dict[str, list[tuple[int, int, str]]] = {}  # file -> (offset, end, part path)
    for name, w in weights.items():
        where = sub("weights", name)
        want(w, "dict", where)
        shape = _shape(field(w, "shape", where, "list"), sub(where, "shape"))
        fmt = field(w, "format", where, "str")
        if fmt not in FORMATS:
            raise Invalid(sub(where, "format"), f"{show(fmt)} is not a weight format ({', '.join(FORMATS)})")
        if FORMATS[fmt].quantized and len(shape) != 2:
            raise Invalid(sub(where, "format"), f"{fmt} needs a 2-D weight, the shape is {list(shape)}")
        parts = field(w, "parts", where, "dict")
        expected = expected_parts(fmt, shape)
        if set(parts) != set(expected):
            raise Invalid(sub(where, "parts"), f"has {sorted(parts)}, {fmt} stores {sorted(expected)}")
        for part, (dtype, pshape) in expected.items():
            pwhere = sub(sub(where, "parts"), part)
            path, start, end = _check_part(parts[part], pwhere, dtype, pshape, fmt, files)
            if end > start:
                spans.setdefault(path, []).append((start, end, pwhere))
        err = field(w, "error", where, "dict", optional=True)
        for key in ("max_abs", "rms", "weight_rms"):
            if err is not None:  # inspect reads these
                field(err, key, sub(where, "error"), "number", optional=True)
    for path, parts in spans.items():
        parts.sort()
        for (s0, e0, w0), (s1, e1, w1) in zip(parts, parts[1:]):
            if s1 < e0:  # sorted by offset: the later part starts inside the earlier one
                raise Invalid(w1, f"{e1 - s1} bytes at offset {s1} overlap {w0} in {path}")
    return weights
