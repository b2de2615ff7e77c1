"""Who may use `webllm-py serve` (issue 15 item 6), over real sockets:

- bound to loopback, only Host names that mean this machine are answered (DNS rebinding);
- a cross-origin request to /v1 (Origin neither the server's own nor in --cors) is refused
  with 403 before it reaches the engine, a `text/plain` POST included;
- with an API key, /v1 requires `Authorization: Bearer KEY` (401 otherwise);
- beyond loopback without a key, `serve` prints a warning line;
- slow clients: a request head trickled byte by byte (slowloris) or a body that never
  arrives is dropped after a bounded time, while long SSE streams are not cut.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from webllm_py.serve import make_app, start_in_thread
from webllm_py.serve.access import exposure_warning

from serve_fakes import FakeEngine, request, wait_until

MSGS = [{"role": "user", "content": "hi"}]
CHAT = json.dumps({"model": "f", "messages": MSGS})


def _fake() -> FakeEngine:
    f = FakeEngine()
    f.gate.set()
    return f


def _openai_error(status: int, raw: bytes, want: int, code: str) -> None:
    assert status == want, (status, raw)
    err = json.loads(raw)["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["code"] == code, err
    assert "\n" not in err["message"]


@pytest.fixture()
def site(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text("{}")
    fake = _fake()
    app = make_app({"b": tmp_path / "b"}, api_models={"f": fake}, demo_dir=tmp_path / "none")
    with start_in_thread(app) as srv:
        yield srv, fake


# ---- Host (DNS rebinding) ---------------------------------------------------------------------

FOREIGN_HOSTS = ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil.example",
                 "[::2]:80", "10.0.0.1", "", "attacker.localhost"]
LOOPBACK_HOSTS = ["127.0.0.1", "127.0.0.1:9", "localhost", "LOCALHOST:8000", "[::1]", "[::1]:80", "localhost."]


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_foreign_host_is_refused_on_loopback(site, host):
    srv, fake = site
    s, _, raw = request(srv.port, "POST", "/v1/chat/completions", CHAT,
                        {"Host": host, "Content-Type": "application/json"})
    _openai_error(s, raw, 403, "host_not_allowed")
    s, _, raw = request(srv.port, "GET", "/models/b/manifest.json", headers={"Host": host})
    assert s == 403 and b"Host" in raw
    assert fake.calls == 0


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_loopback_host_names_are_answered(site, host):
    srv, _ = site
    s, _, raw = request(srv.port, "POST", "/v1/chat/completions", CHAT,
                        {"Host": host, "Content-Type": "application/json"})
    assert s == 200, raw
    s, _, _ = request(srv.port, "GET", "/models/b/manifest.json", headers={"Host": host})
    assert s == 200


def test_request_without_host_header_is_answered(site):
    """HTTP/1.0 clients may omit Host; no browser does, so this opens nothing to rebinding."""
    srv, _ = site
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"GET /models/b/manifest.json HTTP/1.0\r\n\r\n")
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
    assert got.startswith(b"HTTP/1.0 200") or got.startswith(b"HTTP/1.1 200"), got[:80]


def test_allowed_hosts_and_non_loopback_bind(tmp_path):
    app = make_app(None, api_models={"f": _fake()}, allowed_hosts="proxy.example, other.example:443")
    with start_in_thread(app) as srv:
        for host in ("proxy.example", "PROXY.example:8443", "other.example"):
            assert request(srv.port, "GET", "/v1/models", headers={"Host": host})[0] == 200, host
        assert request(srv.port, "GET", "/v1/models", headers={"Host": "evil.example"})[0] == 403
    # bound to all interfaces, the operator chose to be reachable by any name: no Host check
    with start_in_thread(make_app(None, api_models={"f": _fake()}), host="0.0.0.0") as srv:
        assert request(srv.port, "GET", "/v1/models", headers={"Host": "my-box.lan:8000"})[0] == 200


# ---- Origin (cross-site requests to the API) ---------------------------------------------------


def test_cross_origin_api_requests_are_refused_without_cors(site):
    srv, fake = site
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/json"):
        s, _, raw = request(srv.port, "POST", "/v1/chat/completions", CHAT,
                            {"Origin": "https://evil.example", "Content-Type": ctype})
        _openai_error(s, raw, 403, "origin_not_allowed")
    s, _, raw = request(srv.port, "GET", "/v1/models", headers={"Origin": "null"})
    _openai_error(s, raw, 403, "origin_not_allowed")
    assert fake.calls == 0
    # the server's own origin (the demo page it serves) is fine
    s, _, _ = request(srv.port, "POST", "/v1/chat/completions", CHAT,
                      {"Origin": f"http://127.0.0.1:{srv.port}", "Content-Type": "text/plain"})
    assert s == 200 and fake.calls == 1
    # static bundle GETs stay as they are: served (the browser withholds the body without CORS)
    s, h, _ = request(srv.port, "GET", "/models/b/manifest.json", headers={"Origin": "https://evil.example"})
    assert s == 200 and "Access-Control-Allow-Origin" not in h


def test_cors_listed_origins_may_call_the_api():
    fake = _fake()
    with start_in_thread(make_app(None, api_models={"f": fake}, cors="https://app.example")) as srv:
        s, h, _ = request(srv.port, "POST", "/v1/chat/completions", CHAT,
                          {"Origin": "https://app.example", "Content-Type": "application/json"})
        assert s == 200 and h["Access-Control-Allow-Origin"] == "https://app.example"
        s, _, raw = request(srv.port, "POST", "/v1/chat/completions", CHAT,
                            {"Origin": "https://evil.example", "Content-Type": "text/plain"})
        _openai_error(s, raw, 403, "origin_not_allowed")
        s, _, _ = request(srv.port, "OPTIONS", "/v1/chat/completions", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert s == 403
        assert fake.calls == 1
    with start_in_thread(make_app(None, api_models={"f": _fake()}, cors="*")) as srv:
        s, _, _ = request(srv.port, "POST", "/v1/chat/completions", CHAT, {"Origin": "https://any.example"})
        assert s == 200


# ---- API key -----------------------------------------------------------------------------------


def test_api_key_is_required_on_v1(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text("{}")
    fake = _fake()
    app = make_app({"b": tmp_path / "b"}, api_models={"f": fake}, api_key="s3cret-key", cors="https://app.example")
    with start_in_thread(app) as srv:
        for auth in (None, "Bearer wrong", "Bearer s3cret-key-and-more", "Basic czNjcmV0LWtleQ==", "s3cret-key",
                     "Bearer ", "Bearer \u043a\u043b\u044e\u0447"):
            headers = {"Content-Type": "application/json"}
            if auth is not None:
                headers["Authorization"] = auth.encode("utf-8").decode("latin-1")
            s, h, raw = request(srv.port, "POST", "/v1/chat/completions", CHAT, headers)
            _openai_error(s, raw, 401, "invalid_api_key")
            assert h["WWW-Authenticate"] == "Bearer", auth
            s, _, raw = request(srv.port, "GET", "/v1/models", headers=headers)
            _openai_error(s, raw, 401, "invalid_api_key")
        assert fake.calls == 0
        ok = {"Authorization": "Bearer s3cret-key", "Content-Type": "application/json"}
        assert request(srv.port, "POST", "/v1/chat/completions", CHAT, ok)[0] == 200
        assert request(srv.port, "GET", "/v1/models", headers={"Authorization": "bearer s3cret-key"})[0] == 200
        # bundles stay public; preflights carry no credentials
        assert request(srv.port, "GET", "/models/b/manifest.json")[0] == 200
        s, _, _ = request(srv.port, "OPTIONS", "/v1/chat/completions", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert s == 204


@pytest.mark.parametrize("host,api_on,key,warns", [
    ("127.0.0.1", True, None, False), ("localhost", True, None, False), ("::1", True, None, False),
    ("127.0.0.2", True, None, False), ("0.0.0.0", True, None, True), ("::", True, None, True),
    ("192.168.1.5", True, None, True), ("", True, None, True), ("my-box.lan", True, None, True),
    ("0.0.0.0", True, "k", False), ("0.0.0.0", False, None, False),
])
def test_exposure_warning(host, api_on, key, warns):
    w = exposure_warning(host, api_on, key)
    assert (w is not None) == warns, (host, w)
    if w:
        assert w.startswith("warning: ") and "\n" not in w and "--api-key" in w


def test_cli_api_key_from_env_and_warning(tiny_bundles, tmp_path):
    """`serve --api` reads WEBLLM_API_KEY; bound beyond loopback without a key it warns on stderr."""
    b = tmp_path / "bundles"
    shutil.copytree(tiny_bundles("llama", "q4"), b / "tiny")
    base = [sys.executable, "-m", "webllm_py.cli", "serve", str(b), "--api", "--backend", "reference", "--port", "0"]

    def run(extra: list[str], env: dict[str, str]):
        p = subprocess.Popen(base + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, **env})
        line = p.stdout.readline()
        assert line.startswith("webllm-py serve: http://"), line + p.stderr.read()
        return p, int(line.strip().rstrip("/").rsplit(":", 1)[1])

    def stop(p) -> str:
        p.send_signal(signal.SIGTERM)
        assert p.wait(15) == 0
        p.stdout.close()
        err = p.stderr.read()
        p.stderr.close()
        return err

    env = {k: "" for k in ("WEBLLM_API_KEY",)}
    p, port = run(["--host", "0.0.0.0"], env)
    try:
        assert request(port, "GET", "/v1/models")[0] == 200
    finally:
        err = stop(p) if p.poll() is None else p.stderr.read()
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1 and "0.0.0.0" in warnings[0], err
    p, port = run([], {"WEBLLM_API_KEY": "from-env"})
    try:
        assert request(port, "GET", "/v1/models")[0] == 401
        assert request(port, "GET", "/v1/models", headers={"Authorization": "Bearer from-env"})[0] == 200
    finally:
        err = stop(p) if p.poll() is None else p.stderr.read()
    assert "warning" not in err


# ---- slow clients --------------------------------------------------------------------------------


def _closed_by_server(sock: socket.socket, trickle: bytes, limit_s: float) -> bool:
    """Send `trickle` one byte every 0.1 s; True once the server closes the connection."""
    sock.settimeout(0.1)
    t_end = time.monotonic() + limit_s
    i = 0
    while time.monotonic() < t_end:
        try:
            if sock.recv(4096) == b"":
                return True
        except socket.timeout:
            pass
        except OSError:
            return True
        try:
            sock.send(trickle[i % len(trickle):i % len(trickle) + 1])
        except OSError:
            return True
        i += 1
    return False


def test_slowloris_head_and_idle_connections_are_dropped():
    app = make_app(None, api_models={"f": _fake()}, header_timeout=1.0)
    with start_in_thread(app) as srv:
        with socket.create_connection(("127.0.0.1", srv.port)) as sock:
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            # a header line that never ends; dropped after about 1 s (10 s bound: a loaded machine)
            assert _closed_by_server(sock, b"X-Slow: aaaaaaaaaaaaaaaa", 10)
        with socket.create_connection(("127.0.0.1", srv.port)) as sock:  # connects, sends nothing
            sock.settimeout(10)
            assert sock.recv(4096) == b""
        assert request(srv.port, "GET", "/v1/models")[0] == 200  # others are still served


def test_slow_body_is_a_408():
    app = make_app(None, api_models={"f": _fake()}, body_timeout=1.0)
    with start_in_thread(app) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"model\": ")
            got = b""
            while b"\r\n\r\n" not in got or not got.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                got += chunk
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), got[:200]
        assert json.loads(body)["error"]["code"] == "request_timeout"


def test_long_stream_outlives_the_header_timeout():
    """The head timeout must not cut a response in progress: a 3 s stream under a 1 s timeout."""
    fake = FakeEngine(dt=0.05, chunks=60)
    with start_in_thread(make_app(None, api_models={"f": fake}, header_timeout=1.0)) as srv:
        s, _, raw = request(srv.port, "POST", "/v1/chat/completions",
                            json.dumps({"model": "f", "messages": MSGS, "stream": True}))
        events = [e for e in raw.decode().split("\n\n") if e]
        assert s == 200 and len(events) == 61 and events[-1] == "data: [DONE]"
        wait_until(lambda: fake.closed.is_set(), 5)
