"""Headless Chromium with WebGPU (on SwiftShader when there is no GPU), for testing pages.

Three pieces, usable on their own or together:

``StaticServer``
    A threaded static file server on ``127.0.0.1`` (a secure context, so
    ``navigator.gpu``, Cache Storage and SubtleCrypto exist; ``about:blank`` has no
    WebGPU). URL prefixes map to folders; every request is logged; a path can be
    overridden with other bytes (to serve a wrong shard, say)::

        with StaticServer({"/dist/": "web/dist", "/b/": bundle_dir}) as srv:
            srv.url("/b/manifest.json")         # http://127.0.0.1:PORT/b/manifest.json
            srv.override("/b/params/x.bin", b"garbage")
            srv.requests                          # ["/b/manifest.json", ...]

``WebGPUBrowser``
    Debian's ``/usr/bin/chromium`` (or ``$CHROMIUM``) launched headless by Playwright's
    sync API with the flags that give WebGPU on SwiftShader. Never run
    ``playwright install``: it downloads another browser, which fails offline::

        with WebGPUBrowser() as browser:
            page = browser.new_page(srv.url("/test_pages/engine.html"))
            page.evaluate("async () => (await navigator.gpu.requestAdapter()).info.architecture")
            browser.console                       # console lines of every page, for failure messages

    ``new_page`` opens a fresh browser context (its own Cache Storage) unless
    ``context=`` is given; pass the same context twice to test a reload with a warm cache.

pytest fixtures
    ``webgpu_browser`` (module scope: one Chromium per test module, as SwiftShader start-up
    costs seconds) and ``static_server`` (a factory; servers stop at the test's end).
    Import them into a test module or conftest::

        from webllm_py.testing.browser import static_server, webgpu_browser  # noqa: F401

    Both skip the test, saying why, when Playwright or Chromium is missing
    (``browser_skip_reason()``).

SwiftShader facts (see shared/docs/environment.md): no ``shader-f16`` (pages must choose
f32 kernels), subgroup size 4, maxStorageBufferBindingSize 1 GiB, and it is slow: use
tiny models and few tokens.
"""

from __future__ import annotations

import mimetypes
import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import unquote, urlsplit

#: Chromium flags verified to give a WebGPU adapter on SwiftShader (no GPU needed).
CHROMIUM_WEBGPU_FLAGS = (
    "--no-sandbox",
    "--enable-unsafe-webgpu",
    "--enable-features=Vulkan",
    "--use-vulkan=swiftshader",
    "--use-webgpu-adapter=swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

_CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def chromium_path() -> str | None:
    """$CHROMIUM, else the first installed Chromium of the usual paths, else None."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for c in _CHROMIUM_CANDIDATES:
        if Path(c).exists():
            return c
    return shutil.which("chromium")


def browser_skip_reason() -> str | None:
    """Why browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install playwright; do NOT run `playwright install`)"
    if chromium_path() is None:
        return "no Chromium found (apt-get install chromium, or set CHROMIUM=/path/to/chrome)"
    return None


# ---- static server ------------------------------------------------------------------------


Override = bytes | Callable[[str], "tuple[int, bytes, str] | None"]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        # A page that aborts a download (a failed integrity check cancels the others) closes
        # the socket mid-response: expected, not worth a traceback.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class StaticServer:
    """Serve folders under URL prefixes from 127.0.0.1 on a free port (see the module doc).

    Responses carry ``Cache-Control: no-store`` so the browser's HTTP cache never hides a
    request from ``requests`` (what a page caches itself, in Cache Storage, is the point of
    most tests).
    """

    def __init__(self, routes: Mapping[str, str | os.PathLike[str]], host: str = "127.0.0.1", port: int = 0):
        self.routes = {(p if p.endswith("/") else p + "/"): Path(d).resolve() for p, d in routes.items()}
        self.requests: list[str] = []
        self._overrides: dict[str, Override] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server._handle(self)

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

        self._httpd = _QuietServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def origin(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str = "/") -> str:
        return self.origin + path

    def override(self, path: str, body: Override | None) -> None:
        """Serve `body` for `path` instead of the file (None removes the override). A callable
        gets the path and returns (status, body, content type), or None to serve the file."""
        with self._lock:
            if body is None:
                self._overrides.pop(path, None)
            else:
                self._overrides[path] = body

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = unquote(urlsplit(h.path).path)
        with self._lock:
            self.requests.append(path)
            ov = self._overrides.get(path)
        resp: tuple[int, bytes, str] | None = None
        if isinstance(ov, bytes):
            resp = (200, ov, "application/octet-stream")
        elif ov is not None:
            resp = ov(path)
        if resp is None:
            resp = self._file(path)
        status, body, ctype = resp
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Cache-Control", "no-store")
        h.end_headers()
        h.wfile.write(body)

    def _file(self, path: str) -> tuple[int, bytes, str]:
        for prefix, root in sorted(self.routes.items(), key=lambda kv: -len(kv[0])):
            if path.startswith(prefix) or path + "/" == prefix:
                f = (root / path[len(prefix):]).resolve()
                if f.is_dir():
                    f = f / "index.html"
                if (f == root or root in f.parents) and f.is_file():
                    ctype = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
                    if f.suffix in (".js", ".mjs"):
                        ctype = "text/javascript"  # module scripts need a JS MIME type
                    return 200, f.read_bytes(), ctype
        return 404, b"not found", "text/plain"

    def start(self) -> "StaticServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="static-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "StaticServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---- browser ----------------------------------------------------------------------------------


class WebGPUBrowser:
    """Headless Chromium with WebGPU through Playwright's sync API (see the module doc)."""

    def __init__(self, headless: bool = True, extra_args: tuple[str, ...] = (), executable: str | None = None):
        reason = browser_skip_reason() if executable is None else None
        if reason:
            raise RuntimeError(reason)
        self.executable = executable or chromium_path()
        self.args = [*CHROMIUM_WEBGPU_FLAGS, *extra_args]
        self.headless = headless
        self.console: list[str] = []
        self._pw: Any = None
        self.browser: Any = None

    def start(self) -> "WebGPUBrowser":
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        try:
            self.browser = self._pw.chromium.launch(executable_path=self.executable, headless=self.headless, args=self.args)
        except BaseException:
            self._pw.stop()
            raise
        return self

    def new_context(self) -> Any:
        """A fresh context: its own Cache Storage and HTTP cache."""
        return self.browser.new_context()

    def new_page(self, url: str | None = None, context: Any = None, timeout_ms: float = 60_000) -> Any:
        """A page (in `context`, else in a new context), its console lines and page errors
        collected in `self.console`, navigated to `url` when given."""
        ctx = context or self.new_context()
        page = ctx.new_page()
        page.set_default_timeout(timeout_ms)
        page.on("console", lambda m: self.console.append(f"[{m.type}] {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"[pageerror] {e}"))
        if url:
            page.goto(url)
        return page

    def console_tail(self, n: int = 30) -> str:
        """The last console lines, for assertion messages."""
        return "\n".join(self.console[-n:])

    def close(self) -> None:
        try:
            if self.browser is not None:
                self.browser.close()
        finally:
            if self._pw is not None:
                self._pw.stop()
            self.browser = self._pw = None

    def __enter__(self) -> "WebGPUBrowser":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- pytest fixtures ------------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # the helpers above work without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="module")
    def webgpu_browser() -> Iterator[WebGPUBrowser]:
        """One headless Chromium with WebGPU per test module (skips when unavailable)."""
        reason = browser_skip_reason()
        if reason:
            pytest.skip(reason)
        with WebGPUBrowser() as b:
            yield b

    @pytest.fixture
    def static_server() -> Iterator[Callable[[Mapping[str, str | os.PathLike[str]]], StaticServer]]:
        """Factory: static_server({"/prefix/": folder, ...}) → a started StaticServer,
        stopped at the end of the test."""
        servers: list[StaticServer] = []

        def make(routes: Mapping[str, str | os.PathLike[str]]) -> StaticServer:
            s = StaticServer(routes).start()
            servers.append(s)
            return s

        yield make
        for s in servers:
            s.stop()
