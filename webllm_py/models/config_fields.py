"""Typed reads of config.json fields: each returns the value or raises a BuildError naming the file and field.

JSON gives any type anywhere (a string rope_theta, a float head count, NaN, a
"false" that bool() would take as true), so every field the compiler uses is
read through one of these, never with int()/float()/bool() on the raw value.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from ..errors import BuildError

_MISSING: Any = object()


def _fail(key: str, want: str, v: Any, path: Path) -> BuildError:
    return BuildError(f"field '{key}' must be {want}, got {v!r}", path)


def _value(cfg: Mapping[str, Any], key: str, default: Any, path: Path) -> tuple[bool, Any]:
    """(present, cfg[key]); `key` may be dotted ("rope_scaling.factor"); null counts as absent."""
    v: Any = cfg
    for part in key.split("."):
        v = v.get(part) if isinstance(v, Mapping) else None
    if v is None:
        if default is _MISSING:
            raise BuildError(f"missing required key '{key}'", path)
        return False, default
    return True, v


def require_object(v: Any, path: Path) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise BuildError(f"expected a JSON object, got {type(v).__name__} {str(v)[:40]!r}", path)
    return v


def integer(cfg: Mapping[str, Any], key: str, path: Path, default: Any = _MISSING, lo: int = 1) -> Any:
    """An integer >= lo (bools and floats refused: 4.0 heads is a typo, not 4)."""
    present, v = _value(cfg, key, default, path)
    if not present:
        return v
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise _fail(key, "a positive integer" if lo == 1 else f"an integer >= {lo}", v, path)
    return v


def number(cfg: Mapping[str, Any], key: str, path: Path, default: Any = _MISSING, lo: float = 0.0,
           lo_open: bool = True, hi: float | None = None) -> Any:
    """A finite number > lo (>= lo when not lo_open), <= hi; nan, inf, strings and bools refused."""
    present, v = _value(cfg, key, default, path)
    if not present:
        return v
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or (v <= lo if lo_open else v < lo) or (hi is not None and v > hi):
        rng = f"{'>' if lo_open else '>='} {lo:g}" + (f" and <= {hi:g}" if hi is not None else "")
        raise _fail(key, f"a finite number {rng}", v, path)
    return float(v)


def flag(cfg: Mapping[str, Any], key: str, path: Path, default: bool) -> bool:
    """true or false (the string "false" is refused rather than read as true)."""
    _, v = _value(cfg, key, default, path)
    if not isinstance(v, bool):
        raise _fail(key, "true or false", v, path)
    return v


def text(cfg: Mapping[str, Any], key: str, path: Path, default: Any = _MISSING) -> Any:
    present, v = _value(cfg, key, default, path)
    if present and not isinstance(v, str):
        raise _fail(key, "a string", v, path)
    return v


def token_ids(cfg: Mapping[str, Any], key: str, path: Path) -> list[int]:
    """A token id or a list of them (eos_token_id may be either); [] when absent."""
    _, v = _value(cfg, key, [], path)
    ids = v if isinstance(v, list) else [v]
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise _fail(key, "a token id (integer >= 0) or a list of them", v, path)
    return ids
