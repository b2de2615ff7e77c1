"""File references inside a manifest: relative, '/'-separated, inside the bundle, and listed."""

from __future__ import annotations

import re
from typing import Any

from .fields import Invalid, show, want

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")  # "C:", "http:": not a path inside the bundle
_PATH_CHARS = {"\\": "a backslash", "?": "a '?'", "#": "a '#'"}  # the browser would read these as URL syntax


def check_path(v: Any, where: str) -> str:
    """A file reference: relative, '/'-separated, inside the bundle (no '..', no '.', no empty part)."""
    p = want(v, "str", where)
    if not p:
        raise Invalid(where, "empty path")
    if p.startswith("/") or _SCHEME.match(p):
        raise Invalid(where, f"{show(p)} is an absolute path; file references are relative to the bundle folder")
    for ch, name in _PATH_CHARS.items():
        if ch in p:
            raise Invalid(where, f"{show(p)} contains {name}; paths use '/' and plain names")
    if any(ord(c) < 0x20 for c in p):
        raise Invalid(where, f"{show(p)} contains a control character")
    parts = p.split("/")
    if ".." in parts:
        raise Invalid(where, f"{show(p)} contains '..'; file references must stay inside the bundle folder")
    if any(s in ("", ".") for s in parts):
        raise Invalid(where, f"{show(p)} is not a plain relative path (empty or '.' component)")
    return p


def listed(files: dict[str, int], v: Any, where: str) -> str:
    """A path that is also in `files` (so its bytes are size- and sha256-checked)."""
    p = check_path(v, where)
    if p not in files:
        raise Invalid(where, f"{show(p)} is not listed in files (every file a bundle reads is hashed there)")
    return p
