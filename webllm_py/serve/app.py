"""The `webllm-py serve` application: URL layout, its options, and running it.

URL layout:

    /                         the demo chat page (web/demo/, when it exists; a placeholder until then)
    /<file>                   other files of web/demo/
    /webllm-py/<file>         the built npm package (web/dist/)
    /models/                  JSON index of the served bundles: {"object": "list", "data": [{"id", "url", "manifest"}]}
    /models/<id>/<file>       a bundle's files (id = the bundle's folder name): manifest.json,
                              tokenizer.json, tokenizer_config.json, params/<sha16>.bin, kernels/<sha16>.wgsl
    /v1/...                   the OpenAI-compatible REST API (with --api; see api.py)

`make_app` builds the aiohttp Application (no CLI needed, for tests and
embedding); `serve` runs it until SIGINT/SIGTERM; `start_in_thread` runs it on a
background thread (tests, scripts that drive a browser). Who may use it (CORS,
Host names, cross-origin API calls, the API key) is access.py's business.

Slow clients. A connection that has not sent a complete request head within
`header_timeout` seconds of connecting (or of its previous response) is closed
(aiohttp's keep-alive timer, which also covers a head trickled byte by byte:
slowloris); a request body must arrive within `body_timeout` seconds (408).
"""

from __future__ import annotations

import asyncio
import html
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import quote

from aiohttp import hdrs, web

from ..errors import BundleError
from ..publish import web_assets_dir
from . import api, static
from .access import POLICY_KEY, AccessPolicy, host_name, install_access, parse_origins
from .errors import api_errors

REPO_WEB = web_assets_dir()

BUNDLES_KEY: web.AppKey[dict[str, Path]] = web.AppKey("webllm_bundles", dict)


def discover_bundles(path: str | Path) -> dict[str, Path]:
    """id -> real bundle folder for one bundle (a folder with manifest.json) or a folder
    of bundles (each subfolder with a manifest.json). The id is the folder name."""
    p = Path(path)
    if not p.is_dir():
        raise BundleError("not a folder (expected a bundle or a folder of bundles)", p)
    if (p / "manifest.json").is_file():
        return {p.resolve().name: Path(os.path.realpath(p))}
    found = {c.name: Path(os.path.realpath(c)) for c in sorted(p.iterdir())
             if not c.name.startswith(".") and c.is_dir() and (c / "manifest.json").is_file()}
    if not found:
        raise BundleError("no manifest.json here or in any subfolder: not a bundle nor a folder of bundles", p)
    return found


# ---- static routes ---------------------------------------------------------------------------


def _placeholder_page(bundles: Mapping[str, Path], api_on: bool) -> str:
    items = "".join(
        f'<li><code>{html.escape(mid)}</code>: <a href="/models/{html.escape(quote(mid))}/manifest.json">manifest.json</a></li>'
        for mid in bundles) or "<li>(none)</li>"
    api_line = ('<p>REST API: <a href="/v1/models"><code>/v1/models</code></a>, '
                '<code>POST /v1/chat/completions</code>, <code>POST /v1/completions</code></p>'
                if api_on else "<p>REST API off (start with <code>--api</code>).</p>")
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><title>webllm-py</title></head><body>"
            "<h1>webllm-py</h1><p>The demo chat page (<code>web/demo/</code>) is not built yet; "
            "this server already serves the bundles below.</p>"
            f"<h2>Models</h2><ul>{items}</ul>{api_line}"
            "<p>JS package: <code>/webllm-py/</code> (from <code>web/dist/</code>, once built).</p>"
            "</body></html>")


def _dir_root(p: Path | None) -> Path | None:
    return Path(os.path.realpath(p)) if p is not None and p.is_dir() else None


def _add_static_routes(app: web.Application, bundles: Mapping[str, Path], web_dist: Path, demo_dir: Path,
                       api_on: bool) -> None:
    gz = static.GzipCache()

    async def dispatch(request: web.Request) -> web.StreamResponse:
        # Route on the raw request target, never on aiohttp's decoded/normalised path:
        # see static.parse_request_path.
        segs = static.parse_request_path(request.raw_path)
        if segs is None:
            raise web.HTTPNotFound(text="404: not found\n")
        head = segs[0] if segs else ""
        if head == "models":
            rest = segs[1:]
            if rest in ([], [""]):
                return web.json_response({"object": "list", "data": [
                    {"id": mid, "url": f"/models/{quote(mid)}/", "manifest": f"/models/{quote(mid)}/manifest.json"}
                    for mid in bundles]}, headers={hdrs.CACHE_CONTROL: static.NO_CACHE})
            root = bundles.get(rest[0])
            if root is None or len(rest) < 2 or rest[-1] == "":
                raise web.HTTPNotFound(text="404: not found\n")
            return await static.serve_file(request, root, rest[1:], static.bundle_cache_control(rest[1:]), gz)
        if head == "webllm-py":
            root = _dir_root(web_dist)
            if root is None:
                raise web.HTTPNotFound(text="404: the JS package is not built (web/dist/ is missing)\n")
            return await _serve_site_file(request, root, segs[1:], gz)
        root = _dir_root(demo_dir)
        if root is None or not (root / "index.html").is_file():
            if segs in ([], [""]):
                return web.Response(text=_placeholder_page(bundles, api_on), content_type="text/html",
                                    headers={hdrs.CACHE_CONTROL: static.NO_CACHE})
            raise web.HTTPNotFound(text="404: not found\n")
        return await _serve_site_file(request, root, segs, gz)

    app.router.add_get("/{tail:.*}", dispatch)


async def _serve_site_file(request: web.Request, root: Path, rel: list[str], gz: static.GzipCache) -> web.StreamResponse:
    """A file of the demo page or the JS package; a directory URL serves its index.html."""
    if not rel or rel[-1] == "":
        rel = rel[:-1] + ["index.html"]
    # Not content-hashed: revalidate every time (cheap with ETags).
    return await static.serve_file(request, root, rel, static.NO_CACHE, gz)


# ---- the app -------------------------------------------------------------------------------


HEADER_TIMEOUT_S = 15.0


def make_app(roots: str | Path | Mapping[str, str | Path] | None, api_models: Mapping[str, Any] | None = None, *,
             cors: str | Iterable[str] | None = None, queue_size: int = 8, web_dist: str | Path | None = None,
             demo_dir: str | Path | None = None, api_key: str | None = None,
             allowed_hosts: str | Iterable[str] | None = None, header_timeout: float = HEADER_TIMEOUT_S,
             body_timeout: float = api.BODY_TIMEOUT_S) -> web.Application:
    """The aiohttp Application of `webllm-py serve`.

    roots: a bundle folder, a folder of bundles, or {id: bundle folder}; None serves no bundles.
    api_models: {id: Engine or zero-argument factory of one}; None turns the /v1 API off
        (every /v1 URL answers 404). Each model gets a worker thread and a queue of
        `queue_size` waiting requests.
    cors: None (no CORS headers), "*", an origin, or several (a list or comma-separated).
    api_key: when set, /v1 requires `Authorization: Bearer <api_key>`.
    allowed_hosts: Host names answered besides localhost/127.0.0.1/[::1] when bound to
        loopback (a list or comma-separated; e.g. a reverse proxy's name).
    header_timeout / body_timeout: seconds a client may take to send a request head / body.
    web_dist / demo_dir: the JS package and the demo page (default: web/dist, web/demo of this repository).
    """
    if roots is None:
        bundles: dict[str, Path] = {}
    elif isinstance(roots, Mapping):
        bundles = {str(k): Path(os.path.realpath(v)) for k, v in roots.items()}
    else:
        bundles = discover_bundles(roots)
    for mid in list(bundles) + list(api_models or {}):
        if not mid or "/" in mid or mid.startswith("."):
            raise ValueError(f"model id {mid!r} cannot be a URL segment")
    for name, t in (("header_timeout", header_timeout), ("body_timeout", body_timeout)):
        if not t > 0:
            raise ValueError(f"{name} must be > 0 seconds, got {t!r}")
    # 16 MiB request bodies: long chat histories; aiohttp's default is 1 MiB.
    # keepalive_timeout is also how long a new connection may take to send its first request head.
    app = web.Application(middlewares=[api_errors], client_max_size=16 << 20,
                          handler_args={"keepalive_timeout": header_timeout})
    app[BUNDLES_KEY] = bundles
    app[api.BODY_TIMEOUT_KEY] = body_timeout
    install_access(app, AccessPolicy(cors=parse_origins(cors), api_key=api_key or None,
                                     allowed_hosts=frozenset(_host_names(allowed_hosts))))
    api.add_api_routes(app, api_models, queue_size)
    _add_static_routes(app, bundles, Path(web_dist) if web_dist else REPO_WEB / "dist",
                       Path(demo_dir) if demo_dir else REPO_WEB / "demo", api_models is not None)
    return app


def _host_names(hosts: str | Iterable[str] | None) -> list[str]:
    items = hosts.split(",") if isinstance(hosts, str) else list(hosts or [])
    return [host_name(h) for h in items if h.strip()]


def _url(host: str, port: int) -> str:
    h = f"[{host}]" if ":" in host else host
    return f"http://{h}:{port}/"


async def _start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    # shutdown_timeout: how long in-flight requests may finish after SIGINT/SIGTERM.
    app[POLICY_KEY].bind_host = host  # the Host check applies when this is a loopback address
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5.0, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port
    for addr in runner.addresses:  # the real port when port=0
        if isinstance(addr, tuple):
            bound = addr[1]
            break
    return runner, bound


def serve(app: web.Application, host: str = "127.0.0.1", port: int = 8000,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Run `app` until SIGINT/SIGTERM, then shut down cleanly (worker threads included)."""

    async def main() -> None:
        runner, bound = await _start(app, host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # not the main thread / Windows
                pass
        try:
            (on_ready or (lambda u: print(u, flush=True)))(_url(host, bound))
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())


@dataclass
class RunningServer:
    """A server started by `start_in_thread`; `stop()` shuts it down and joins the thread."""

    url: str
    port: int
    _loop: asyncio.AbstractEventLoop
    _stop: asyncio.Event
    _thread: threading.Thread

    def stop(self, timeout: float = 15.0) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_in_thread(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Run `app` on a background thread (own event loop); returns once it is listening."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        stop = asyncio.Event()

        async def main() -> None:
            try:
                runner, bound = await _start(app, host, port)
            except BaseException as e:
                box["error"] = e
                ready.set()
                return
            box.update(port=bound, loop=loop, stop=stop)
            ready.set()
            try:
                await stop.wait()
            finally:
                await runner.cleanup()

        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    t = threading.Thread(target=run, name="webllm-serve", daemon=True)
    t.start()
    ready.wait()
    if "error" in box:
        raise box["error"]
    return RunningServer(_url(host, box["port"]), box["port"], box["loop"], box["stop"], t)


def print_banner(url: str, bundles: Mapping[str, Path], api_models: Mapping[str, Any] | None,
                 file: Any = sys.stdout) -> None:
    """What `webllm-py serve` prints once listening."""
    print(f"webllm-py serve: {url}", file=file)
    for mid in bundles:
        print(f"  model {mid}: {url}models/{mid}/manifest.json", file=file)
    if api_models is not None:
        print(f"  OpenAI API: {url}v1  (models: {', '.join(api_models)})", file=file)
    print("  Ctrl-C to stop", file=file, flush=True)


__all__ = ["make_app", "discover_bundles", "serve", "start_in_thread", "RunningServer", "print_banner"]
