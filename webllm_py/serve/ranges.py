"""The Range header of a single-file GET, decided by RFC 9110 (14.1.2, 14.2, 15.5.17).

`parse_range(header, size)` says what to answer:

- a (first, last) byte pair, both inclusive and within the file: 206;
- UNSATISFIABLE: 416 with `Content-Range: bytes */SIZE`. A range starting at
  or past the end, a zero-length suffix (`bytes=-0`), any range of an empty file;
- None: ignore the header and send the whole file (200). A unit other than
  bytes (which RFC 9110 says MUST be ignored), a malformed or invalid spec
  (`bytes=5-2`, `bytes=abc`, `bytes=-`), and several ranges (a server may always
  ignore Range; one whole file is cheaper than multipart/byteranges).

Positions of any length are accepted: a 5000-digit number compares as larger
than any file (int() of it would raise).
"""

from __future__ import annotations

import math
import re

UNSATISFIABLE = "unsatisfiable"
_SPEC = re.compile(r"(\d*)-(\d*)", re.ASCII)
_MAX_DIGITS = 18  # below 2^63: exact; above, larger than any file


def _pos(digits: str) -> float:
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_DIGITS else math.inf


def parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """(first, last), UNSATISFIABLE or None (see the module docstring)."""
    unit, eq, spec = header.strip().partition("=")
    if not eq or unit.strip().lower() != "bytes" or "," in spec:
        return None
    m = _SPEC.fullmatch(spec.strip())
    if m is None or m.group(1) == m.group(2) == "":
        return None
    first_s, last_s = m.groups()
    if first_s == "":  # suffix: the last N bytes
        n = _pos(last_s)
        if n == 0 or size == 0:
            return UNSATISFIABLE
        return int(max(0, size - n)), size - 1
    first = _pos(first_s)
    last = _pos(last_s) if last_s else math.inf
    if last < first:
        return None  # invalid (RFC 9110 14.1.1): ignored
    if first >= size:
        return UNSATISFIABLE
    return int(first), int(min(last, size - 1))
