"""Who may use a `webllm-py serve`: CORS, Host names, cross-origin API calls, the API key.

- CORS (`--cors`): Access-Control-* headers for the listed origins ("*" for any),
  preflights answered before routing; static bundle GETs from other origins are
  served as always (without CORS headers the browser keeps the body from the page).
- Host: bound to loopback, the server answers only Host names that mean this
  machine (localhost, 127.0.0.1, [::1], the bound address, any port) and those in
  `--allowed-hosts`: a page on another site that rebinds its DNS name to
  127.0.0.1 (DNS rebinding) sends its own name as Host and is refused (403).
- Origin: a request to /v1 from a page of another origin (its Origin header is not
  this server's own and not allowed by --cors) is refused with 403, whatever its
  Content-Type: a cross-origin `text/plain` POST needs no preflight, so CORS alone
  would let the page run a completion, just not read it.
- API key (`--api-key` or WEBLLM_API_KEY): /v1 then requires
  `Authorization: Bearer KEY` (401 otherwise; compared in constant time).
  Preflights carry no credentials and are exempt.

API refusals are OpenAI-shaped; static ones are plain text.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from aiohttp import hdrs, web

from .errors import APIError, short_repr

_EXPOSE = "Content-Length, Content-Range, Content-Encoding, Accept-Ranges, ETag, Last-Modified, Retry-After"
_DEFAULT_ALLOW_HEADERS = "Authorization, Content-Type, Range, If-None-Match, If-Modified-Since"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})


@dataclass
class AccessPolicy:
    """What access.py enforces; `bind_host` is filled in when the server starts
    (None: decided per connection from the address it arrived on)."""

    cors: frozenset[str] = frozenset()
    api_key: str | None = None
    allowed_hosts: frozenset[str] = frozenset()
    bind_host: str | None = field(default=None)


def parse_origins(cors: str | Iterable[str] | None) -> frozenset[str]:
    if cors is None:
        return frozenset()
    items = cors.split(",") if isinstance(cors, str) else list(cors)
    return frozenset(o.strip().rstrip("/") for o in items if o.strip())


def host_name(value: str) -> str:
    """The name part of a Host header or bind address, normalised: lower case, no port,
    IPv6 in brackets, no trailing dot."""
    v = value.strip().lower()
    if v.startswith("["):
        name = v[: v.find("]") + 1] if "]" in v else v
    elif v.count(":") == 1:
        name = v.split(":", 1)[0]
    elif ":" in v:  # a bare IPv6 address (a bind address, never a valid Host)
        name = f"[{v}]"
    else:
        name = v
    return name.rstrip(".")


def is_loopback(host: str) -> bool:
    """Whether a bind address or host name means only this machine."""
    name = host_name(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, api_on: bool, api_key: str | None) -> str | None:
    """The warning line to print when the API listens beyond loopback with no API key."""
    if not api_on or api_key or is_loopback(host):
        return None
    where = host or "all interfaces"
    return (f"warning: the REST API listens on {where} without an API key: anyone who can reach this port "
            f"can run the models (set --api-key or WEBLLM_API_KEY, or bind to 127.0.0.1)")


def allowed_origin(origins: frozenset[str], origin: str | None) -> str | None:
    """The Access-Control-Allow-Origin value for a request's Origin, or None."""
    if not origins or not origin:
        return None
    if "*" in origins:
        return "*"
    return origin if origin.rstrip("/") in origins else None


def _sock_host(request: web.Request) -> str | None:
    t = request.transport
    sock = t.get_extra_info("sockname") if t is not None else None
    return sock[0] if isinstance(sock, tuple) and sock else None


def _host_refusal(policy: AccessPolicy, request: web.Request) -> str | None:
    host = request.headers.get(hdrs.HOST)
    if host is None:
        return None  # HTTP/1.0 without Host: no browser sends that
    local = _sock_host(request)
    bound = policy.bind_host if policy.bind_host is not None else local
    if bound is not None and not is_loopback(bound):
        return None
    ok = LOOPBACK_NAMES | policy.allowed_hosts | {host_name(h) for h in (policy.bind_host, local) if h}
    if host_name(host) in ok:
        return None
    return (f"Host {short_repr(host)} is not allowed: this server listens on loopback and answers only "
            f"localhost, 127.0.0.1 and [::1] (add names with --allowed-hosts)")


def _same_origin(request: web.Request, origin: str) -> bool:
    host = request.headers.get(hdrs.HOST)
    return host is not None and origin.rstrip("/").lower() == f"{request.scheme}://{host}".lower()


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _key_ok(expected: str, given: str | None) -> bool:
    if given is None:
        return False
    # bytes: compare_digest refuses non-ASCII str; the comparison time does not depend on where they differ
    return hmac.compare_digest(given.encode("utf-8", "backslashreplace"), expected.encode("utf-8"))


def _is_preflight(request: web.Request) -> bool:
    return request.method == "OPTIONS" and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers


def _guard(policy: AccessPolicy) -> Callable:
    @web.middleware
    async def guard(request: web.Request, handler: Callable) -> web.StreamResponse:
        api = request.path == "/v1" or request.path.startswith("/v1/")
        refusal = _host_refusal(policy, request)
        if refusal is not None:
            if api:
                return APIError(403, refusal, code="host_not_allowed").response()
            return web.Response(status=403, text=f"403: {refusal}\n")
        if not api:
            return await handler(request)
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None and not _same_origin(request, origin) and allowed_origin(policy.cors, origin) is None:
            return APIError(403, f"cross-origin requests to the API are refused: Origin {short_repr(origin)} is "
                                 f"neither this server's origin nor allowed by --cors", code="origin_not_allowed"
                            ).response()
        if policy.api_key and not _is_preflight(request) and not _key_ok(policy.api_key, _bearer(request)):
            return APIError(401, "missing or wrong API key: send Authorization: Bearer <key> (the server was "
                                 "started with --api-key or WEBLLM_API_KEY)", code="invalid_api_key",
                            headers={hdrs.WWW_AUTHENTICATE: "Bearer"}).response()
        return await handler(request)

    return guard


def _add_vary(headers: Any, value: str) -> None:
    cur = headers.get(hdrs.VARY)
    if not cur:
        headers[hdrs.VARY] = value
    elif value.lower() not in [v.strip().lower() for v in cur.split(",")]:
        headers[hdrs.VARY] = f"{cur}, {value}"


def _install_cors(app: web.Application, origins: frozenset[str]) -> None:
    @web.middleware
    async def preflight(request: web.Request, handler: Callable) -> web.StreamResponse:
        # Preflights are answered before routing: no route has an OPTIONS handler.
        if _is_preflight(request):
            allow = allowed_origin(origins, request.headers.get(hdrs.ORIGIN))
            if allow is None:
                return web.Response(status=403, text="403: origin not allowed (see --cors)\n")
            h = {
                hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: allow,
                hdrs.ACCESS_CONTROL_ALLOW_METHODS: "GET, HEAD, POST, OPTIONS",
                hdrs.ACCESS_CONTROL_ALLOW_HEADERS: request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_HEADERS)
                or _DEFAULT_ALLOW_HEADERS,
                hdrs.ACCESS_CONTROL_MAX_AGE: "86400",
            }
            # Chrome's Private Network Access: a public https page calling this localhost server.
            if request.headers.get("Access-Control-Request-Private-Network") == "true":
                h["Access-Control-Allow-Private-Network"] = "true"
            resp = web.Response(status=204, headers=h)
            if allow != "*":
                _add_vary(resp.headers, "Origin")
            return resp
        return await handler(request)

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        # A signal rather than a middleware: it also reaches FileResponse, streams and error pages.
        if hdrs.ACCESS_CONTROL_ALLOW_ORIGIN in response.headers:
            return  # a preflight answer
        if "*" not in origins:
            # The answer depends on Origin even when there is none: shared caches must key on it.
            _add_vary(response.headers, "Origin")
        allow = allowed_origin(origins, request.headers.get(hdrs.ORIGIN))
        if allow is not None:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = allow
            response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = _EXPOSE

    app.middlewares.insert(0, preflight)
    app.on_response_prepare.append(on_prepare)


POLICY_KEY: web.AppKey[AccessPolicy] = web.AppKey("webllm_access", AccessPolicy)


def install_access(app: web.Application, policy: AccessPolicy) -> None:
    """Middlewares in this order: the guard (Host, Origin, key), CORS preflights, then the rest."""
    app[POLICY_KEY] = policy
    if policy.cors:
        _install_cors(app, policy.cors)
    app.middlewares.insert(0, _guard(policy))
