"""A bounded load test of `webllm-py serve --api` (issue 15): 8 concurrent clients,
20 requests each (160 in all), over the real Engine on a tiny bundle (reference
backend), mixing streams, slow readers, clients that hang up mid-stream or during a
non-streamed request, and invalid requests. Every reply is checked (status, OpenAI
shape, SSE framing, the final [DONE]); at the end the model is idle, each hang-up
that found its job running cancelled it, and the server still answers.

The plan is seeded (the same 160 requests each run); what varies with timing is only
whether a request meets a full queue (a 503 queue_full with Retry-After, counted as
rejected as expected) and whether a hang-up lands before its job ends. Bounded: 160
requests of at most 8 generated tokens (64 for the ones hung up on), a few seconds on
2 cores (plus building the tiny bundle); no assertion on speed. The figures are
printed on one line (pytest -s).
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from dataclasses import dataclass, field

import pytest

from webllm_py.serve import make_app, start_in_thread
from webllm_py.serve.api import WORKERS_KEY

from serve_fakes import INVALID_CHAT_BODIES as INVALID
from serve_fakes import LOAD_VALID as VALID
from serve_fakes import wait_until

CLIENTS, PER_CLIENT = 8, 20
KINDS = ["stream", "stream_usage", "slow_stream", "nonstream", "text", "invalid", "hangup_stream",
         "hangup_nonstream"]


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    ok: int = 0
    rejected: int = 0  # as expected: 400 for invalid requests, 503 queue_full under load
    hangups: int = 0
    max_latency: float = 0.0
    ok_by_kind: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, outcome: str, seconds: float) -> None:
        with self.lock:
            self.requests += 1
            setattr(self, outcome, getattr(self, outcome) + 1)
            if outcome == "ok":
                self.ok_by_kind[kind] = self.ok_by_kind.get(kind, 0) + 1
            self.max_latency = max(self.max_latency, seconds)


def _error_shape(raw: bytes, status: int) -> dict:
    err = json.loads(raw)["error"]
    assert set(err) == {"message", "type", "param", "code"} and "\n" not in err["message"], err
    assert err["type"] == ("invalid_request_error" if status < 500 else "server_error"), err
    return err


def _check_sse(raw: bytes, usage: bool) -> None:
    text = raw.decode("utf-8")
    events = text.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]", text[-200:]
    chunks = [json.loads(e[len("data: "):]) for e in events[:-2]]
    assert chunks and all(e.startswith("data: ") for e in events[:-2])
    for c in chunks:
        assert c["object"] == "chat.completion.chunk" and "error" not in c, c
    with_choices = [c for c in chunks if c["choices"]]
    assert with_choices[0]["choices"][0]["delta"].get("role") == "assistant"
    assert with_choices[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    if usage:
        u = chunks[-1]["usage"]
        assert chunks[-1]["choices"] == [] and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]


def _check_completion(raw: bytes, chat: bool) -> None:
    r = json.loads(raw)
    assert r["object"] == ("chat.completion" if chat else "text_completion"), r
    c = r["choices"][0]
    assert isinstance(c["message"]["content"] if chat else c["text"], str)
    assert c["finish_reason"] in ("stop", "length")
    u = r["usage"]
    assert 1 <= u["completion_tokens"] <= 8 and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]


def _one(port: int, kind: str, rng: random.Random, tally: Tally) -> None:
    path, body, want = "/v1/chat/completions", dict(VALID), None
    if kind in ("stream", "stream_usage", "slow_stream", "hangup_stream"):
        body["stream"] = True
    if kind == "stream_usage":
        body["stream_options"] = {"include_usage": True}
    if kind == "text":
        path, body = "/v1/completions", {"model": "tiny", "prompt": "The quick brown fox", "max_tokens": 8}
    if kind.startswith("hangup"):
        body["max_tokens"] = 64
        body["logit_bias"] = {"1": -100}  # no early eos: the job is still running when the client leaves
    raw_body = json.dumps(body)
    if kind == "invalid":
        raw_body, want = rng.choice(INVALID)
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, raw_body, {"Content-Type": "application/json"})
        if kind == "hangup_nonstream":
            time.sleep(0.05)
            conn.close()  # before the answer: the job must be cancelled or skipped
            return tally.add(kind, "hangups", time.monotonic() - t0)
        r = conn.getresponse()
        if r.status == 503:
            err = _error_shape(r.read(), 503)
            assert err["code"] == "queue_full" and int(r.headers["Retry-After"]) >= 1 and kind != "invalid"
            return tally.add(kind, "rejected", time.monotonic() - t0)
        if kind == "invalid":
            assert r.status == 400, (raw_body, r.status)
            err = _error_shape(r.read(), 400)
            assert err["param"] == want, (raw_body, err)
            return tally.add(kind, "rejected", time.monotonic() - t0)
        assert r.status == 200, (kind, r.status, r.read()[:300])
        if kind == "hangup_stream":
            assert r.headers["Content-Type"].startswith("text/event-stream")
            assert r.read(16).startswith(b"data: ")  # the stream has begun
            conn.close()
            return tally.add(kind, "hangups", time.monotonic() - t0)
        if kind == "slow_stream":
            parts = []
            while piece := r.read(48):  # a slow reader: small reads with pauses
                parts.append(piece)
                time.sleep(0.005)
            raw = b"".join(parts)
        else:
            raw = r.read()
        if body.get("stream"):
            _check_sse(raw, usage=kind == "stream_usage")
        else:
            _check_completion(raw, chat=path.endswith("chat/completions"))
        tally.add(kind, "ok", time.monotonic() - t0)
    finally:
        conn.close()


@pytest.fixture(scope="module")
def engine(tiny_bundles):
    from webllm_py import Engine

    return Engine(tiny_bundles("llama", "q4"), backend="reference", model_name="tiny")


def test_load_mixed_clients(engine):
    app = make_app(None, api_models={"tiny": engine}, queue_size=8)
    tally = Tally()
    errors: list[BaseException] = []
    with start_in_thread(app) as srv:
        worker = app[WORKERS_KEY]["tiny"]

        def client(i: int) -> None:
            rng = random.Random(1000 + i)
            try:
                for j in range(PER_CLIENT):
                    _one(srv.port, KINDS[(i + j) % len(KINDS)], rng, tally)
            except BaseException as e:  # reported below with the figures
                errors.append(e)

        t0 = time.monotonic()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        wall = time.monotonic() - t0
        wait_until(lambda: worker.inflight == 0, 30)  # hung-up jobs are cancelled or skipped, none left
        print(f"\nserve load: {tally.requests} requests from {CLIENTS} clients in {wall:.1f} s: {tally.ok} OK, "
              f"{tally.rejected} rejected as expected, {tally.hangups} disconnects "
              f"({worker.jobs_cancelled} jobs cancelled), max latency {tally.max_latency:.2f} s")
        assert not errors, errors[0]
        assert not any(t.is_alive() for t in threads)
        assert tally.requests == CLIENTS * PER_CLIENT
        # every valid kind completed at least once (503s under load aside)
        assert set(tally.ok_by_kind) == {"stream", "stream_usage", "slow_stream", "nonstream", "text"}, tally
        # a hang-up cancels its job if the job had not finished: at most one per hang-up
        assert 1 <= worker.jobs_cancelled <= tally.hangups
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        conn.request("POST", "/v1/chat/completions", json.dumps(VALID), {"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200
        _check_completion(r.read(), chat=True)
        conn.close()
