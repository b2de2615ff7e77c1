"""Reading a REST request body: bounded in time, strict JSON, and checked once, so
that what reaches the engine is plain, shallow, valid Unicode.

Each of these used to be a 500 (an exception the engine or the encoder raised
deep inside a request) and is now a one-line 400 naming the field:

- nesting deeper than MAX_DEPTH (json.loads itself raises RecursionError on
  very deep input; moderately deep input would do so later, in the engine);
- integers of more than MAX_INT_DIGITS digits (Python refuses to convert more
  than 4300 digits, and no request field means anything beyond 2^64);
- NaN / Infinity (not JSON, though Python's parser accepts them) and numbers
  that overflow to infinity (1e999);
- strings with lone surrogates ("\\ud800" is valid JSON escaping but no Unicode
  scalar value: tokenizers and UTF-8 encoders reject it).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any

from aiohttp import web

from .errors import APIError

MAX_DEPTH = 32  # a chat request needs about 5 levels
MAX_INT_DIGITS = 20  # 2^64 has 20 digits; seeds are < 2^53, token ids far smaller
_IDENT = re.compile(r"^[A-Za-z_]\w*$")


class _Invalid:
    """A JSON value parsed but refused; reported with its field path by `check_body`."""

    def __init__(self, what: str):
        self.what = what


def _parse_int(text: str) -> int | _Invalid:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        return _Invalid(f"an integer of {digits} digits is out of range (at most {MAX_INT_DIGITS} digits)")
    return int(text)


def _parse_float(text: str) -> float | _Invalid:
    f = float(text)
    return f if math.isfinite(f) else _Invalid(f"the number {text[:20]}{'...' if len(text) > 20 else ''} is out of range")


def _parse_constant(name: str) -> _Invalid:
    return _Invalid(f"{name} is not valid JSON (use a number or null)")


def _bad(path: str, what: str) -> APIError:
    return APIError(400, f"{path or 'the request body'}: {what}", param=path or None, code="invalid_value")


def _key_path(path: str, key: str) -> str:
    shown = key if _IDENT.match(key) else json.dumps(key)
    if not path:
        return shown
    return f"{path}.{shown}" if _IDENT.match(key) else f"{path}[{shown}]"


def _check_str(path: str, s: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        ch = s[e.start]
        raise _bad(path, f"lone surrogate \\u{ord(ch):04x} at character {e.start} is not valid Unicode") from None


def check_body(body: Any) -> None:
    """400 APIError for the first refused value (see the module docstring); iterative, no recursion."""
    stack: list[tuple[str, Any, int]] = [("", body, 0)]
    while stack:
        path, v, depth = stack.pop()
        if isinstance(v, _Invalid):
            raise _bad(path, v.what)
        if isinstance(v, str):
            _check_str(path, v)
        elif isinstance(v, (dict, list)):
            if depth >= MAX_DEPTH:
                raise _bad(path, f"nested more than {MAX_DEPTH} levels deep")
            if isinstance(v, dict):
                for k, x in v.items():
                    _check_str(path, k)
                    stack.append((_key_path(path, k), x, depth + 1))
            else:
                stack.extend((f"{path}[{i}]", x, depth + 1) for i, x in enumerate(v))


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request body as a checked JSON object, or a 400 APIError."""
    try:
        body = json.loads(raw, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except RecursionError:
        raise APIError(400, f"the request body is nested more than {MAX_DEPTH} levels deep",
                       code="invalid_json") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise APIError(400, f"the request body is not valid JSON: {e}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    check_body(body)
    return body


async def read_body(request: web.Request, timeout: float) -> dict[str, Any]:
    """Read (at most `timeout` seconds: a client trickling its body must not hold a
    connection forever) and parse the body of a request."""
    try:
        raw = await asyncio.wait_for(request.read(), timeout)
    except asyncio.TimeoutError:
        raise APIError(408, f"the request body was not received within {timeout:g} s",
                       code="request_timeout", headers={"Connection": "close"}) from None
    return parse_body(raw)
