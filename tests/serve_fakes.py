"""Helpers shared by the `webllm-py serve` tests: raw HTTP requests over real sockets
and a fake engine whose timing the test controls."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace
from typing import Iterator


LOAD_VALID = {"model": "tiny", "messages": [{"role": "user", "content": "Once upon a time"}], "max_tokens": 8}
INVALID_CHAT_BODIES = [  # (raw body, the param its 400 names): what each value is checked against
    (json.dumps({**LOAD_VALID, "temperature": -1}), "temperature"),
    (json.dumps({"model": "tiny"}), "messages"),
    (json.dumps({**LOAD_VALID, "n": 129}), "n"),
    (json.dumps({**LOAD_VALID, "tools": [{}]}), "tools[0]"),  # an invalid tool (issue 13 implements tools)
    ('{"model": "tiny", "messages": [', None),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "\\ud800"}]}', "messages[0].content"),
    (json.dumps({**LOAD_VALID, "stream": True, "n": 2}), "n"),
    (json.dumps({**LOAD_VALID, "chat_template_kwargs": {"messages": []}}), "chat_template_kwargs.messages"),
    (json.dumps({**LOAD_VALID, "response_format": {"type": "yaml"}}), "response_format.type"),
    (json.dumps({**LOAD_VALID, "top_p": 2}), "top_p"),
]


def request(port: int, method: str, target: str, body: bytes | str | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request with the target sent verbatim; (status, headers, raw body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


def post_json(port: int, path: str, obj, headers: dict[str, str] | None = None
              ) -> tuple[int, http.client.HTTPMessage, dict]:
    body = obj if isinstance(obj, (bytes, str)) else json.dumps(obj)
    s, h, b = request(port, "POST", path, body, {"Content-Type": "application/json", **(headers or {})})
    return s, h, json.loads(b)


def send_raw(port: int, path: str, obj, timeout: float = 20) -> socket.socket:
    """POST `obj` as JSON on a fresh socket and return the socket, unread (the caller closes it)."""
    payload = json.dumps(obj).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    return sock


def wait_until(cond, timeout: float = 10.0) -> None:
    t = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < t, "timed out"
        time.sleep(0.01)


class FakeEngine:
    """An engine with the Engine's create() surface whose timing the test controls:
    non-stream requests block until `gate` is set; streams yield a chunk every `dt` s."""

    def __init__(self, dt: float = 0.02, chunks: int = 2000):
        self.gate = threading.Event()
        self.running = 0
        self.calls = 0
        self.closed = threading.Event()
        self.dt = dt
        self.chunks = chunks
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._create))
        self.completions = SimpleNamespace(create=self._create)

    def _create(self, messages=None, prompt=None, model=None, stream=False, **kw):
        self.calls += 1
        if stream:
            return self._stream(model)
        self.running += 1
        try:
            assert self.gate.wait(20)
        finally:
            self.running -= 1
        return {"id": "c", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    def _stream(self, model):
        try:
            for i in range(self.chunks):
                time.sleep(self.dt)
                yield {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": model,
                       "choices": [{"index": 0, "delta": {"content": f"{i} "}, "finish_reason": None}]}
        finally:
            self.closed.set()


def slowed_tiny_engine(bundle, delay: float = 0.05):
    """The real Engine on `bundle` (reference backend, served as model "tiny") whose every model step
    first sleeps `delay` s, so that a long request outlasts what a test waits for; returns (engine,
    steps: a one-item list counting the steps, the unslowed forward to put back)."""
    import webllm_py
    from webllm_py import Engine

    eng = Engine(webllm_py.load(bundle, backend="reference"), model_name="tiny")
    fwd, steps = eng.model.forward, [0]

    def slow_forward(ids):
        steps[0] += 1
        time.sleep(delay)
        return fwd(ids)

    eng.model.forward = slow_forward
    return eng, steps, fwd


@contextlib.contextmanager
def cli_serve(folder, *extra: str) -> Iterator[int]:
    """`python -m webllm_py.cli serve FOLDER --api --backend reference --port 0 EXTRA...` in a
    subprocess: yields its port once it has printed its URL; after the block it must exit 0 on
    SIGTERM (it is killed if it did not stop)."""
    p = subprocess.Popen([sys.executable, "-m", "webllm_py.cli", "serve", str(folder), "--api", "--backend", "reference",
                          "--port", "0", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line.startswith("webllm-py serve: http://127.0.0.1:"), line + p.stderr.read()
        yield int(line.strip().rstrip("/").rsplit(":", 1)[1])
        p.send_signal(signal.SIGTERM)
        assert p.wait(15) == 0
    finally:
        if p.poll() is None:
            p.kill()
        p.stdout.close()
        p.stderr.close()
