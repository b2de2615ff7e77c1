"""Run one kernel on Chrome's WebGPU (SwiftShader, compiled by Tint): the browser twin of `KernelRunner`.

`BrowserKernelRunner` has `codegen.runner.KernelRunner`'s interface, so a kernel test can run
on both emulators (lavapipe through wgpu-py/Naga, SwiftShader through Chromium/Tint) with the
same arrays and checks::

    with BrowserKernelRunner() as runner:          # one Chromium page for many runs
        out = runner.run(build(key), {"x": x, "w": w, "out": out}, n, p)["out"]
        runner.features                          # {"subgroups"} on SwiftShader: no shader-f16

Semantics shared with `KernelRunner.run`: arrays bound by binding name, "step" made from
(n, p), every buffer rounded up to 16 bytes with zeros, every read_write binding returned as
an array of its input's dtype and shape. The page (`browser_kernels.html`, served from
127.0.0.1 since WebGPU needs a secure context) keeps one device and caches one pipeline per
WGSL text; arrays go in and come back as base64. The WGSL is compiled as is: Tint needs
the `enable subgroups;` that `for_naga` strips for wgpu-py.

A compile or validation error raises `BrowserKernelError` with Tint's message (line:column).

pytest fixtures (import them into a test module)::

    from webllm_py.testing.browser_kernels import browser_kernel_runner, emulator_runner  # noqa: F401

``browser_kernel_runner``
    the session's one `BrowserKernelRunner` (starting Chromium costs seconds). It drives
    Chromium from a thread of its own, so it lives beside other modules' browser fixtures
    (Playwright's sync API allows one instance per thread). Skips, saying why, without
    Playwright or Chromium.
``emulator_runner``
    parametrized over "lavapipe" (wgpu-py's `KernelRunner`) and "swiftshader" (the same
    session runner, marked browser + slow): a test taking it runs on both emulators.

Both runners expose `.device.features` with wgpu-py's names ("shader-f16", "subgroup"), so
`codegen.runner.has_f16` / `has_subgroups` and a test's skip helpers work on either.
"""

from __future__ import annotations

import base64
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import numpy as np

from ..codegen.kernels import Kernel
from ..codegen.wgsl_compat import WGPU_PY_FEATURE
from .browser import StaticServer, WebGPUBrowser, browser_skip_reason

PAGE = Path(__file__).with_name("browser_kernels.html")


class BrowserKernelError(RuntimeError):
    """A kernel the browser's WebGPU refused (Tint compile error, validation error) or failed to run."""


def _padded_bytes(a: np.ndarray) -> bytes:
    """The array's bytes rounded up to 16 with zeros (an empty array becomes 16 zero bytes)."""
    raw = np.ascontiguousarray(a).tobytes()
    return raw + b"\0" * ((-len(raw)) % 16 or (16 if not raw else 0))


class BrowserKernelRunner:
    """Compiles kernels once per WGSL text on Chrome's WebGPU and runs them on numpy arrays.

    The runner owns its Chromium and drives it from one worker thread of its own: Playwright's
    sync API allows one instance per thread, so a runner kept for a whole test session does not
    clash with the browser fixtures of other test modules (`testing.browser.webgpu_browser`).
    After `start()`: `features` (WebGPU feature names the device has), `adapter_info` (vendor,
    architecture, subgroupMinSize/MaxSize, ...), `limits` (the device's: WebGPU defaults).
    """

    def __init__(self, timeout_ms: float = 120_000):
        self._timeout_ms = timeout_ms
        self._thread: ThreadPoolExecutor | None = None
        self._server: StaticServer | None = None
        self._browser: WebGPUBrowser | None = None
        self._page: Any = None
        self.features: frozenset[str] = frozenset()
        self.adapter_info: dict[str, Any] = {}
        self.limits: dict[str, int] = {}
        self.device = SimpleNamespace(features=frozenset())

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "BrowserKernelRunner":
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="browser-kernels")
        self._server = StaticServer({"/": PAGE.parent}).start()
        try:
            info = self._on_thread(self._open)
        except BaseException:
            self.close()
            raise
        self.features = frozenset(info["features"])
        self.adapter_info = info["info"]
        self.limits = info["limits"]
        # wgpu-py's spelling, so has_f16(runner.device) / has_subgroups(runner.device) work here too
        self.device = SimpleNamespace(features=frozenset(WGPU_PY_FEATURE.get(f, f) for f in self.features))
        return self

    def _open(self) -> dict[str, Any]:
        self._browser = WebGPUBrowser().start()
        self._page = self._browser.new_page(self._server.url("/" + PAGE.name), timeout_ms=self._timeout_ms)
        self._page.wait_for_function("window.kernelRunnerReady === true")
        return self._evaluate("init", None)

    def _shut(self) -> None:
        if self._browser is not None:
            self._browser.close()
        self._browser = self._page = None

    def close(self) -> None:
        try:
            if self._thread is not None:
                self._on_thread(self._shut)
        finally:
            if self._thread is not None:
                self._thread.shutdown()
            if self._server is not None:
                self._server.stop()
            self._thread = self._server = None

    def __enter__(self) -> "BrowserKernelRunner":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running -----------------------------------------------------------------------------

    def _on_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._thread is None:
            raise RuntimeError("BrowserKernelRunner is not started: use it as a context manager or call start()")
        return self._thread.submit(fn, *args).result()

    def _evaluate(self, fn: str, arg: Any) -> Any:
        from playwright.sync_api import Error as PlaywrightError

        try:
            return self._page.evaluate(f"(arg) => window.kernelRunner.{fn}(arg)", arg)
        except PlaywrightError as e:
            # Playwright prefixes "Page.evaluate: Error: " and appends a JS stack; keep the page's message
            msg = re.sub(r"^(Page\.evaluate: )?Error: ", "", str(e.message).split("\n    at ")[0])
            raise BrowserKernelError(msg) from None

    def run(self, kernel: Kernel, arrays: dict[str, np.ndarray], n: int, p: int = 0,
            repeat: int = 1, b: int = 0, end: int = 0) -> dict[str, np.ndarray]:
        """Bind `arrays` by binding name ("step" is [n, p, end or p + n, 0]; end: the forward call's end
        position, longrope's table switch), dispatch `repeat` times
        (b: rows of an encoder batch, for dispatch expressions only), and return every
        read_write binding's buffer as an array of its input's dtype and shape."""
        buffers, outs = [], {}
        for name, kind in kernel.bindings:
            if kind == "uniform":
                raw = np.array([n, p, end or p + n, 0], dtype=np.uint32).tobytes()
            else:
                a = np.asarray(arrays[name])
                raw = _padded_bytes(a)
                if kind == "read_write":
                    outs[name] = a
            buffers.append(base64.b64encode(raw).decode("ascii"))
        job = {"name": kernel.name, "wgsl": kernel.wgsl, "bindings": [list(bk) for bk in kernel.bindings],
               "buffers": buffers, "dispatch": list(kernel.dispatch_for(n, p, b)), "repeat": repeat}
        got = self._on_thread(self._evaluate, "run", job)
        result = {}
        for name, a in outs.items():
            raw = base64.b64decode(got[name])[: a.nbytes]
            result[name] = np.frombuffer(raw, dtype=a.dtype).reshape(a.shape).copy()
        return result


# ---- pytest fixtures ------------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # the runner works without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:
    _shared: list[BrowserKernelRunner] = []  # the session's one runner, used by both fixtures
    _users = [0]  # fixture instances holding it; the last one to finish closes it

    def _shared_runner() -> Iterator[BrowserKernelRunner]:
        reason = browser_skip_reason()
        if reason:
            pytest.skip(reason)
        if not _shared:
            _shared.append(BrowserKernelRunner().start())
        _users[0] += 1
        try:
            yield _shared[0]
        finally:
            _users[0] -= 1
            if _users[0] == 0:
                _shared.pop().close()

    def _lavapipe_runner() -> Any:
        import os

        os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
        pytest.importorskip("wgpu")
        from ..codegen.runner import KernelRunner, request_device

        try:
            _, device = request_device()
        except Exception as e:  # pragma: no cover - machines without a driver
            pytest.skip(f"no wgpu adapter: {e}")
        return KernelRunner(device)

    @pytest.fixture(scope="session")
    def browser_kernel_runner() -> Iterator[BrowserKernelRunner]:
        """The session's `BrowserKernelRunner` (SwiftShader); skips when there is no browser."""
        yield from _shared_runner()

    @pytest.fixture(scope="session", params=[
        "lavapipe", pytest.param("swiftshader", marks=[pytest.mark.browser, pytest.mark.slow])])
    def emulator_runner(request: Any) -> Iterator[Any]:
        """The kernel runner of each emulator: wgpu-py's (lavapipe) and Chromium's (SwiftShader)."""
        if request.param == "lavapipe":
            yield _lavapipe_runner()
        else:
            yield from _shared_runner()
