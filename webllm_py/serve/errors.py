"""OpenAI-shaped errors of the REST API: the exception type, the mapping from engine
exceptions, the /v1 middleware, and the scrubbing of server paths from messages.

Every error body is `{"error": {message, type, param, code}}`. Messages are one
line and never show where the server keeps its files: an absolute path in an
exception's text (a BundleError names its file, an OSError its path) is cut to
its last component, which still names the file.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable, Mapping

from aiohttp import web

log = logging.getLogger("webllm_py.serve")


class APIError(Exception):
    """An error answered as an OpenAI error body."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status, headers=self.headers)


class Cancelled(Exception):
    """The job was dropped or stopped (client gone, or the server is stopping)."""


# An absolute path: POSIX (two or more components, so "/v1" or "a/b" stay; the API's own "/v1/..."
# routes too) or Windows (C:\..., \\server\...).
_ABS_PATH = re.compile(r"(?<![\w.~/\\-])(?:(?!/v1/)/[^\s/'\"(),:;]+(?:/[^\s/'\"(),:;]*)+|[A-Za-z]:\\[^\s'\"(),;]*"
                       r"|\\\\[^\s'\"(),;]+)")
_MAX_MESSAGE = 300


def scrub(message: str) -> str:
    """`message` as one line without absolute paths (each cut to its last component)."""
    def last(m: re.Match) -> str:
        parts = [p for p in re.split(r"[/\\]", m.group(0)) if p]
        return parts[-1] if parts else "<path>"

    one = " ".join(_ABS_PATH.sub(last, message).split())
    return one if len(one) <= _MAX_MESSAGE else one[:_MAX_MESSAGE - 3] + "..."


def short_repr(v: Any, limit: int = 60) -> str:
    """repr(v), cut to `limit` characters: client values quoted in a message stay short."""
    r = repr(v)
    return r if len(r) <= limit else r[:limit - 3] + "..."


_PARAM_RE = re.compile(r"^([A-Za-z_]\w*)((?:\[\d+\]|\.[A-Za-z_]\w*)*)")


def _param_of(message: str, fields: set[str]) -> str | None:
    """The request field an engine ValueError is about: its message starts with the
    field's name ("temperature must be ...", "messages[0].role must be ...")."""
    m = _PARAM_RE.match(message)
    if m and m.group(1) in fields:
        return m.group(0)
    return None


def error_from_exception(e: BaseException, fields: set[str], prompt_field: str) -> APIError:
    """Map an exception raised by the engine to the API error to answer."""
    from ..errors import ContextWindowExceededError

    if isinstance(e, APIError):
        return e
    if isinstance(e, ContextWindowExceededError):
        return APIError(400, scrub(str(e)), param=prompt_field, code="context_length_exceeded")
    if isinstance(e, ValueError):
        return APIError(400, scrub(str(e)), param=_param_of(str(e), fields))
    if isinstance(e, Cancelled):
        return APIError(503, f"request dropped: {e}", "server_error", code="server_shutting_down",
                        headers={"Retry-After": "1"})
    log.error("generation failed", exc_info=(type(e), e, e.__traceback__))
    return APIError(500, scrub(f"{type(e).__name__}: {e}"), "server_error")


@web.middleware
async def api_errors(request: web.Request, handler: Callable) -> web.StreamResponse:
    """OpenAI error bodies for everything under /v1 (aiohttp's own 413/405/... and
    unexpected exceptions included: a bug is a 500 in the documented shape, not a
    plain-text page)."""
    try:
        return await handler(request)
    except APIError as e:
        return e.response()
    except web.HTTPException as e:
        if not request.path.startswith("/v1") or e.status < 400:
            raise
        return APIError(e.status, e.reason or "error", "invalid_request_error" if e.status < 500 else "server_error",
                        headers={k: v for k, v in e.headers.items() if k.lower() in ("allow", "retry-after")}
                        ).response()
    except ConnectionError:
        raise  # the client went away: aiohttp's business, nobody to answer
    except Exception as e:
        if not request.path.startswith("/v1"):
            raise
        log.error("request failed", exc_info=True)
        return APIError(500, scrub(f"{type(e).__name__}: {e}"), "server_error").response()
