"""Typed field access for the manifest validator: each check names the field path it is about.

A failed check raises `Invalid(where, problem)`; `validate.validate_manifest` turns it into the
one BundleError a reader shows (`manifest.json: weights["x"].parts.data.nbytes: ...`).
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any

from ..ir.graph import eval_dim

MAX_INT = 2**53 - 1  # JSON numbers the browser runtime reads exactly (Number.isSafeInteger)


class Invalid(Exception):
    """One manifest field is wrong: `where` is its path, `problem` says what is wrong."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"{where}: {problem}")
        self.where, self.problem = where, problem


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def sub(where: str, key: str | int) -> str:
    """The path of a member: `a.b`, `a["model.x"]` (keys that are not identifiers), `a[3]`."""
    if isinstance(key, int):
        return f"{where}[{key}]"
    if _IDENT.match(key):
        return f"{where}.{key}" if where else key
    return f"{where}[{show(key, limit=200)}]"  # names (kernels are long) stay whole, hostile ones bounded


def show(v: Any, limit: int = 60) -> str:
    """A value as it reads in JSON, on one line and short (hostile strings can be long or odd)."""
    try:
        s = json.dumps(v, ensure_ascii=True)
    except (TypeError, ValueError, RecursionError):
        s = f"<{type(v).__name__}>"
    return s if len(s) <= limit else s[: limit - 3] + "..."


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # JSON true is not a number


def is_number(v: Any) -> bool:
    return (is_int(v) or isinstance(v, float)) and math.isfinite(v)


# kind -> (test, what the error says the value must be); a table so every check reads alike
KINDS: dict[str, tuple[Any, str]] = {
    "int": (is_int, "an integer"),
    "number": (is_number, "a finite number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "dict": (lambda v: isinstance(v, dict), "an object"),
    "list": (lambda v: isinstance(v, list), "a list"),
}


def want(v: Any, kind: str, where: str, lo: float | None = None, hi: float | None = None,
         lo_open: bool = False) -> Any:
    """`v` if it is of `kind` (and, for numbers, within [lo, hi] / (lo, hi]); else Invalid."""
    test, what = KINDS[kind]
    if not test(v):
        raise Invalid(where, f"{show(v)} must be {what}")
    if kind in ("int", "number"):
        if kind == "int" and not -MAX_INT <= v <= MAX_INT:
            raise Invalid(where, f"{show(v)} is out of range (|n| <= 2^53-1)")
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise Invalid(where, f"{show(v)} must be {'>' if lo_open else '>='} {lo:g}")
        if hi is not None and v > hi:
            raise Invalid(where, f"{show(v)} must be <= {hi:g}")
    return v


def field(obj: dict, key: str, where: str, kind: str, *, optional: bool = False, **bounds: Any) -> Any:
    """obj[key] checked by `want`; None when optional and absent (null counts as absent then)."""
    path = sub(where, key)
    if key not in obj or (optional and obj[key] is None):
        if optional:
            return None
        raise Invalid(path, "missing required key")
    return want(obj[key], kind, path, **bounds)


def token_ids(v: Any, where: str, vocab: int) -> list[int]:
    """A list of token ids inside the vocabulary."""
    for i, t in enumerate(want(v, "list", where)):
        want(t, "int", sub(where, i), lo=0, hi=vocab - 1)
    return v


def dim(v: Any, where: str) -> Any:
    """A shape dim or dispatch size: a non-negative int, or an expression over n, p, b (ir/graph.py)."""
    if is_int(v):
        return want(v, "int", where, lo=0)
    if not isinstance(v, str):
        raise Invalid(where, f"{show(v)} must be an integer or an expression over n, p and b")
    problem = _dim_problem(v)
    if problem:
        raise Invalid(where, f"{show(v)} {problem}")
    return v


@functools.lru_cache(maxsize=4096)  # a manifest repeats a few expressions ("n", "p+n") thousands of times
def _dim_problem(v: str) -> str | None:
    try:
        value = eval_dim(v, {"n": 1, "p": 0, "b": 1})
    except (ValueError, SyntaxError, ZeroDivisionError, RecursionError, MemoryError):
        return "is not an expression over n, p and b (integers, + - * //)"
    return "is negative for n=1, p=0, b=1" if value < 0 else None
