"""`webllm-py serve`: static serving (MIME, caching, 304, Range, gzip, confinement, CORS)
and the OpenAI-compatible REST API, tested over real sockets.

Static requests go through http.client, which sends the request target exactly as
given (no `..` normalisation, no automatic decompression). The REST API is driven by
the real `openai` client over the real Engine on a tiny bundle (reference backend);
queue-full and disconnect behaviour use small fake engines whose timing the test
controls, plus one disconnect test over the real Engine.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import threading
import time
from email.utils import formatdate
from pathlib import Path
from types import SimpleNamespace

import pytest

from webllm_py.serve import make_app, start_in_thread
from webllm_py.serve.api import WORKERS_KEY
from webllm_py.serve.static import parse_request_path

from serve_fakes import INVALID_CHAT_BODIES, FakeEngine, cli_serve, post_json, request, send_raw, slowed_tiny_engine
from serve_fakes import wait_until as _wait_until

SECRET = "TOP-SECRET-CONTENT-1234"


# ---- helpers ---------------------------------------------------------------------------------


def get(port: int, target: str, **headers: str):
    return request(port, "GET", target, headers={k.replace("_", "-"): v for k, v in headers.items()})


def files_of(bundle: Path, sub: str, ext: str) -> list[str]:
    return sorted(p.name for p in (bundle / sub).glob(f"*{ext}"))


# ---- static serving ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tiny_bundles, tmp_path_factory):
    """A copy of a tiny bundle inside a served folder, with traps around it: a secret file
    beside the served folders and symlinks pointing out of the bundle."""
    base = tmp_path_factory.mktemp("serve-site")
    (base / "secret.txt").write_text(SECRET)
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    bundles = base / "bundles"
    bundle = bundles / "tiny"
    shutil.copytree(tiny_bundles("llama", "q4"), bundle)
    (bundle / "leak.json").symlink_to(base / "secret.txt")  # file symlink out of the root
    (bundle / "leakdir").symlink_to(outside, target_is_directory=True)  # folder symlink out of the root
    (bundle / "alias.json").symlink_to(bundle / "tokenizer_config.json")  # symlink inside: fine
    (bundle / ".hidden").write_text(SECRET)
    dist = base / "dist"
    dist.mkdir()
    (dist / "index.js").write_text("export const x = 1;\n" * 200)
    demo = base / "demo"
    demo.mkdir()
    (demo / "index.html").write_text("<!doctype html><title>demo</title>" + "<p>chat</p>" * 100)
    (demo / "app.js").write_text("console.log('demo');\n")
    app = make_app(bundles, cors="https://app.example", web_dist=dist, demo_dir=demo)
    with start_in_thread(app) as srv:
        yield SimpleNamespace(port=srv.port, bundle=bundle, base=base)


def test_mime_types(site):
    b = site.bundle
    shard = files_of(b, "params", ".bin")[0]
    kernel = files_of(b, "kernels", ".wgsl")[0]
    expect = {
        "/models/tiny/manifest.json": "application/json",
        "/models/tiny/tokenizer.json": "application/json",
        f"/models/tiny/params/{shard}": "application/octet-stream",
        f"/models/tiny/kernels/{kernel}": "text/wgsl; charset=utf-8",
        "/webllm-py/index.js": "text/javascript; charset=utf-8",
        "/app.js": "text/javascript; charset=utf-8",
        "/": "text/html; charset=utf-8",
    }
    for target, ctype in expect.items():
        s, h, _ = get(site.port, target)
        assert (s, h["Content-Type"]) == (200, ctype), target
    s, h, body = get(site.port, "/models/")
    assert s == 200 and json.loads(body)["data"][0] == {
        "id": "tiny", "url": "/models/tiny/", "manifest": "/models/tiny/manifest.json"}


def test_cache_control(site):
    b = site.bundle
    for f in files_of(b, "params", ".bin"):
        _, h, body = get(site.port, f"/models/tiny/params/{f}")
        assert h["Cache-Control"] == "public, max-age=31536000, immutable"
        assert body == (b / "params" / f).read_bytes()
    for f in files_of(b, "kernels", ".wgsl"):
        _, h, _ = get(site.port, f"/models/tiny/kernels/{f}")
        assert h["Cache-Control"] == "public, max-age=31536000, immutable"
    for f in ("manifest.json", "tokenizer.json", "tokenizer_config.json"):
        _, h, _ = get(site.port, f"/models/tiny/{f}")
        assert h["Cache-Control"] == "no-cache", f


def test_etag_and_last_modified_give_304(site):
    shard = f"/models/tiny/params/{files_of(site.bundle, 'params', '.bin')[0]}"
    for target, enc in ((shard, "identity"), ("/models/tiny/manifest.json", "gzip"), ("/models/tiny/manifest.json", "identity")):
        s, h, _ = get(site.port, target, Accept_Encoding=enc)
        assert s == 200 and h["ETag"] and h["Last-Modified"]
        etag, lm = h["ETag"], h["Last-Modified"]
        s, h2, body = get(site.port, target, If_None_Match=etag, Accept_Encoding=enc)
        assert (s, body, h2["ETag"]) == (304, b"", etag), target
        assert h2["Cache-Control"] == h["Cache-Control"]
        s, _, body = get(site.port, target, If_Modified_Since=lm, Accept_Encoding=enc)
        assert (s, body) == (304, b""), target
        s, _, _ = get(site.port, target, If_None_Match='"something-else"', Accept_Encoding=enc)
        assert s == 200
        s, _, _ = get(site.port, target, If_Modified_Since=formatdate(86400, usegmt=True), Accept_Encoding=enc)
        assert s == 200


def test_range_requests(site):
    f = files_of(site.bundle, "params", ".bin")[0]
    data = (site.bundle / "params" / f).read_bytes()
    n = len(data)
    t = f"/models/tiny/params/{f}"
    s, h, body = get(site.port, t, Range="bytes=100-355")
    assert (s, body, h["Content-Range"]) == (206, data[100:356], f"bytes 100-355/{n}")
    assert h["Accept-Ranges"] == "bytes"
    s, _, body = get(site.port, t, Range="bytes=-64")
    assert (s, body) == (206, data[-64:])
    s, _, body = get(site.port, t, Range=f"bytes={n - 10}-")
    assert (s, body) == (206, data[-10:])
    s, h, _ = get(site.port, t, Range=f"bytes={n}-{n + 100}")
    assert s == 416 and h["Content-Range"] == f"bytes */{n}"
    # a Range request on a compressible file gets identity bytes even when gzip is accepted
    m = (site.bundle / "manifest.json").read_bytes()
    s, h, body = get(site.port, "/models/tiny/manifest.json", Range="bytes=0-9", Accept_Encoding="gzip")
    assert (s, body, h.get("Content-Encoding")) == (206, m[:10], None)


def test_gzip(site):
    m = (site.bundle / "manifest.json").read_bytes()
    s, h, body = get(site.port, "/models/tiny/manifest.json", Accept_Encoding="gzip, deflate, br")
    assert s == 200 and h["Content-Encoding"] == "gzip" and "Accept-Encoding" in h["Vary"]
    assert gzip.decompress(body) == m and len(body) < len(m)
    s, h, body = get(site.port, "/models/tiny/manifest.json")
    assert h.get("Content-Encoding") is None and body == m
    s, h, body = get(site.port, "/models/tiny/manifest.json", Accept_Encoding="gzip;q=0, identity")
    assert h.get("Content-Encoding") is None and body == m
    k = files_of(site.bundle, "kernels", ".wgsl")[0]
    s, h, body = get(site.port, f"/models/tiny/kernels/{k}", Accept_Encoding="gzip")
    assert h["Content-Encoding"] == "gzip" and gzip.decompress(body) == (site.bundle / "kernels" / k).read_bytes()
    s, h, body = get(site.port, "/webllm-py/index.js", Accept_Encoding="gzip")
    assert h["Content-Encoding"] == "gzip" and gzip.decompress(body).startswith(b"export const")
    f = files_of(site.bundle, "params", ".bin")[0]
    s, h, body = get(site.port, f"/models/tiny/params/{f}", Accept_Encoding="gzip")
    assert h.get("Content-Encoding") is None and body == (site.bundle / "params" / f).read_bytes()


def test_head(site):
    m = (site.bundle / "manifest.json").read_bytes()
    s, h, body = request(site.port, "HEAD", "/models/tiny/manifest.json")
    assert (s, body, int(h["Content-Length"])) == (200, b"", len(m))


@pytest.mark.parametrize("target", [
    "/models/tiny/../../secret.txt",
    "/models/tiny/../../../../../../../../etc/passwd",
    "/models/tiny/%2e%2e/%2e%2e/secret.txt",
    "/models/tiny/%2E%2E/%2E%2E/secret.txt",
    "/models/tiny/.%2e/.%2e/secret.txt",
    "/models/tiny/%2e%2e%2f%2e%2e%2fsecret.txt",
    "/models/tiny/..%2F..%2Fsecret.txt",
    "/models/tiny/..%5c..%5csecret.txt",
    "/models/tiny/..\\..\\secret.txt",
    "/models/tiny/%252e%252e/%252e%252e/secret.txt",
    "/models/tiny//etc/passwd",
    "/models/tiny/%2fetc%2fpasswd",
    "//etc/passwd",
    "/etc/passwd",
    "/models/tiny/leak.json",
    "/models/tiny/leakdir/secret.txt",
    "/models/tiny/.hidden",
    "/models/tiny/params/../../../secret.txt",
    "/models/%2e%2e/secret.txt",
    "/models/../secret.txt",
    "/webllm-py/../../secret.txt",
    "/webllm-py/%2e%2e/%2e%2e/secret.txt",
    "/../secret.txt",
    "/%2e%2e/secret.txt",
    "/models/tiny/%00manifest.json",
    "/models/tiny/C:/Windows/win.ini",
])
def test_path_traversal_is_refused(site, target):
    s, _, body = get(site.port, target)
    assert s in (403, 404), (target, s)
    assert SECRET.encode() not in body and b"root:" not in body


def test_confinement_unit():
    assert parse_request_path("/models/a/manifest.json?x=1") == ["models", "a", "manifest.json"]
    assert parse_request_path("/models/a%20b/") == ["models", "a b", ""]
    for bad in ("/a/../b", "/a/%2e%2e/b", "/a//b", "/a/%2fb", "/a\\b", "/a/%5cb", "/.git/config", "x/y", "/a/%ff"):
        assert parse_request_path(bad) is None, bad


def test_symlink_inside_root_is_served(site):
    s, _, body = get(site.port, "/models/tiny/alias.json")
    assert s == 200 and body == (site.bundle / "tokenizer_config.json").read_bytes()


def test_cors(site):
    ok, bad = "https://app.example", "https://evil.example"
    s, h, _ = get(site.port, "/models/tiny/manifest.json", Origin=ok)
    assert h["Access-Control-Allow-Origin"] == ok and "Origin" in h["Vary"]
    assert "Content-Range" in h["Access-Control-Expose-Headers"]
    s, h, _ = get(site.port, "/models/tiny/manifest.json", Origin=bad)
    assert s == 200 and "Access-Control-Allow-Origin" not in h and "Origin" in h["Vary"]
    _, h, _ = get(site.port, "/models/tiny/manifest.json")  # caches must key on Origin even without one
    assert "Origin" in h["Vary"] and "Access-Control-Allow-Origin" not in h
    pre = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "range"}
    s, h, _ = request(site.port, "OPTIONS", "/models/tiny/manifest.json", headers={"Origin": ok, **pre})
    assert s == 204 and h["Access-Control-Allow-Origin"] == ok
    assert "GET" in h["Access-Control-Allow-Methods"] and h["Access-Control-Allow-Headers"] == "range"
    s, h, _ = request(site.port, "OPTIONS", "/models/tiny/manifest.json", headers={"Origin": bad, **pre})
    assert s == 403 and "Access-Control-Allow-Origin" not in h
    # CORS headers also on 304s, Range responses and errors
    _, h, _ = get(site.port, "/models/tiny/manifest.json", Origin=ok, Range="bytes=0-1")
    assert h["Access-Control-Allow-Origin"] == ok
    _, h, _ = get(site.port, "/nope", Origin=ok)
    assert h["Access-Control-Allow-Origin"] == ok


def test_cors_wildcard_and_off(tiny_bundles, tmp_path):
    b = tiny_bundles("llama", "q4")
    with start_in_thread(make_app({"m": b}, cors="*", demo_dir=tmp_path / "none")) as srv:
        _, h, _ = get(srv.port, "/models/m/manifest.json", Origin="https://any.example")
        assert h["Access-Control-Allow-Origin"] == "*"
        s, h, _ = request(srv.port, "OPTIONS", "/v1/chat/completions", headers={
            "Origin": "https://any.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert s == 204 and h["Access-Control-Allow-Origin"] == "*"
        assert h["Access-Control-Allow-Headers"] == "authorization, content-type"
        # no demo page yet: a placeholder that links the models
        s, h, body = get(srv.port, "/")
        assert s == 200 and b"/models/m/manifest.json" in body
        # the API is off: /v1 answers an OpenAI-shaped 404
        s, _, body = get(srv.port, "/v1/models")
        assert s == 404 and "--api" in json.loads(body)["error"]["message"]
    with start_in_thread(make_app({"m": b})) as srv:
        _, h, _ = get(srv.port, "/models/m/manifest.json", Origin="https://any.example")
        assert "Access-Control-Allow-Origin" not in h


# ---- REST API over the real Engine -------------------------------------------------------------


@pytest.fixture(scope="module")
def api(tiny_bundles):
    import openai

    from webllm_py import Engine

    bundle = tiny_bundles("llama", "q4")
    eng = Engine(bundle, backend="reference", model_name="tiny")
    app = make_app({"tiny": bundle}, api_models={"tiny": eng}, queue_size=4)
    with start_in_thread(app) as srv:
        client = openai.OpenAI(base_url=f"{srv.url}v1", api_key="x", max_retries=0, timeout=60)
        yield SimpleNamespace(port=srv.port, client=client, url=srv.url)


MSGS = [{"role": "user", "content": "Once upon a time"}]


def test_models_list(api):
    models = api.client.models.list()
    assert [m.id for m in models.data] == ["tiny"]
    assert models.data[0].object == "model" and models.data[0].owned_by == "webllm-py"
    assert api.client.models.retrieve("tiny").id == "tiny"


def test_chat_stream_matches_non_stream(api):
    r = api.client.chat.completions.create(model="tiny", messages=MSGS, max_tokens=24, temperature=0)
    text = r.choices[0].message.content
    assert r.object == "chat.completion" and r.choices[0].finish_reason in ("stop", "length") and text
    assert r.usage.completion_tokens >= 1 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    chunks = list(api.client.chat.completions.create(model="tiny", messages=MSGS, max_tokens=24, temperature=0,
                                                     stream=True, stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == r.usage.total_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == r.choices[0].finish_reason


def test_completions(api):
    r = api.client.completions.create(model="tiny", prompt="The quick brown fox", max_tokens=12, temperature=0)
    assert r.object == "text_completion" and r.choices[0].text and r.usage.completion_tokens >= 1
    streamed = "".join(c.choices[0].text for c in api.client.completions.create(
        model="tiny", prompt="The quick brown fox", max_tokens=12, temperature=0, stream=True) if c.choices)
    assert streamed == r.choices[0].text


def test_api_errors(api):
    import openai

    with pytest.raises(openai.BadRequestError) as ei:
        api.client.chat.completions.create(model="tiny", messages=MSGS, temperature=-1)
    assert ei.value.param == "temperature" and ei.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as ei:
        api.client.chat.completions.create(model="no-such-model", messages=MSGS)
    assert ei.value.param == "model" and ei.value.code == "model_not_found"
    s, _, body = post_json(api.port, "/v1/chat/completions", b'{"model": "tiny", "messages": [')
    assert s == 400 and set(body["error"]) == {"message", "type", "param", "code"} and "JSON" in body["error"]["message"]
    s, _, body = post_json(api.port, "/v1/chat/completions", {"model": "tiny"})
    assert s == 400 and body["error"]["param"] == "messages"
    s, _, body = post_json(api.port, "/v1/completions", {"model": "tiny", "prompt": "x", "top_p": "high"})
    assert s == 400 and body["error"]["param"] == "top_p"
    s, _, body = post_json(api.port, "/v1/chat/completions", {"model": "tiny", "messages": MSGS, "tools": [{}]})
    assert s == 400 and body["error"]["param"] == "tools[0]"  # an invalid tool (issue 13: tools are implemented)
    s, _, body = post_json(api.port, "/v1/chat/completions", {"model": "tiny", "messages": MSGS, "echo": True})
    assert s == 400 and body["error"]["param"] == "echo" and "unknown field 'echo'" in body["error"]["message"]
    s, _, body = post_json(api.port, "/v1/chat/completions", {"model": "tiny", "messages": [{"role": "robot"}]})
    assert s == 400 and body["error"]["param"].startswith("messages")
    s, _, body = post_json(api.port, "/v1/chat/completions", [1, 2])
    assert s == 400 and body["error"]["type"] == "invalid_request_error"
    s, _, body = get(api.port, "/v1/audio/speech")
    assert s == 404 and body and json.loads(body)["error"]["code"] == "unknown_url"
    s, h, body = get(api.port, "/v1/embeddings")  # a POST endpoint since issue 14
    assert s == 405 and h["Allow"] == "POST"
    s, _, body = get(api.port, "/v1/models/tiny/extra")
    assert s == 404 and json.loads(body)["error"]["code"] == "unknown_url"
    s, h, body = request(api.port, "DELETE", "/v1/models/tiny")
    assert s == 405 and h["Allow"] == "GET"
    s, h, body = get(api.port, "/v1/chat/completions")
    assert s == 405 and json.loads(body)["error"]["type"] == "invalid_request_error" and h["Allow"] == "POST"
    # the server still works after all that
    assert api.client.chat.completions.create(model="tiny", messages=MSGS, max_tokens=2).choices


# ---- queue and disconnects ---------------------------------------------------------------------


def test_full_queue_gives_503_with_retry_after():
    fake = FakeEngine()
    app = make_app(None, api_models={"slow": fake}, queue_size=1)
    with start_in_thread(app) as srv:
        worker = app[WORKERS_KEY]["slow"]
        results: list[int] = []
        body = {"model": "slow", "messages": MSGS}
        threads = [threading.Thread(target=lambda: results.append(post_json(srv.port, "/v1/chat/completions", body)[0]))
                   for _ in range(2)]
        threads[0].start()
        _wait_until(lambda: fake.running == 1)  # one request running...
        threads[1].start()
        _wait_until(lambda: worker.inflight == 2)  # ...and one waiting: the queue (size 1) is full
        s, h, err = post_json(srv.port, "/v1/chat/completions", body)
        assert s == 503 and int(h["Retry-After"]) >= 1
        assert err["error"]["code"] == "queue_full" and err["error"]["type"] == "server_error"
        fake.gate.set()
        for t in threads:
            t.join(20)
        assert results == [200, 200]
        assert post_json(srv.port, "/v1/chat/completions", body)[0] == 200


def test_invalid_requests_are_400_with_the_queue_full(tiny_bundles):
    """The values are checked before a request takes a queue slot (Engine.check_request): with the
    one slot held by a long request (queue size 0), each invalid body is still a 400 naming its
    field, not a 503 queue_full (CI once met that in the load test), and a valid one is the 503."""
    eng, _, fwd = slowed_tiny_engine(tiny_bundles("llama", "q4"))
    eos = sorted(eng.eos_token_ids)
    app = make_app(None, api_models={"tiny": eng}, queue_size=0)
    with start_in_thread(app) as srv:
        worker = app[WORKERS_KEY]["tiny"]
        sock = send_raw(srv.port, "/v1/chat/completions", {"model": "tiny", "messages": MSGS, "stream": True,
                                                             "max_tokens": 200, "logit_bias": {str(t): -100 for t in eos}})
        try:
            _wait_until(lambda: worker.inflight == 1, 10)
            for raw, param in INVALID_CHAT_BODIES:
                s, _, err = post_json(srv.port, "/v1/chat/completions", raw)
                assert s == 400 and err["error"]["param"] == param, (raw, s, err)
            s, h, err = post_json(srv.port, "/v1/chat/completions", {"model": "tiny", "messages": MSGS})
            assert s == 503 and err["error"]["code"] == "queue_full" and int(h["Retry-After"]) >= 1
        finally:
            sock.close()
        _wait_until(lambda: worker.inflight == 0, 10)
        eng.model.forward = fwd


def _stream_then_hang_up(port: int, body: dict) -> bytes:
    """POST a streaming request, read until the first SSE event, then close the socket."""
    payload = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    try:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
        got = b""
        while b"data: " not in got:
            chunk = sock.recv(65536)
            assert chunk, "server closed the stream"
            got += chunk
        return got
    finally:
        sock.close()


def test_disconnect_stops_generation_and_frees_engine():
    fake = FakeEngine()
    fake.gate.set()
    app = make_app(None, api_models={"slow": fake}, queue_size=0)
    with start_in_thread(app) as srv:
        head = _stream_then_hang_up(srv.port, {"model": "slow", "messages": MSGS, "stream": True})
        assert b"text/event-stream" in head
        assert fake.closed.wait(5), "the generator was not closed after the client left"
        _wait_until(lambda: app[WORKERS_KEY]["slow"].inflight == 0, 5)
        s, _, body = post_json(srv.port, "/v1/chat/completions", {"model": "slow", "messages": MSGS})
        assert s == 200 and body["choices"][0]["message"]["content"] == "ok"


def test_disconnect_frees_real_engine(tiny_bundles):
    eng, _, fwd = slowed_tiny_engine(tiny_bundles("llama", "q4"))  # ~10 s for the whole context: not waited for
    eos = sorted(eng.eos_token_ids)
    app = make_app(None, api_models={"tiny": eng}, queue_size=0)
    with start_in_thread(app) as srv:
        t0 = time.monotonic()
        _stream_then_hang_up(srv.port, {"model": "tiny", "messages": MSGS, "stream": True, "max_tokens": 200,
                                        "logit_bias": {str(t): -100 for t in eos}})
        _wait_until(lambda: app[WORKERS_KEY]["tiny"].inflight == 0, 5)
        eng.model.forward = fwd
        s, _, body = post_json(srv.port, "/v1/chat/completions", {"model": "tiny", "messages": MSGS, "max_tokens": 3})
        assert s == 200 and body["usage"]["completion_tokens"] >= 1
        assert time.monotonic() - t0 < 8


def test_make_app_rejects_bad_input(tmp_path):
    from webllm_py.errors import BundleError

    with pytest.raises(BundleError):
        make_app(tmp_path)  # no manifest.json anywhere
    with pytest.raises(ValueError):
        make_app(None, api_models={"a/b": FakeEngine()})
    os.makedirs(tmp_path / "x")
    (tmp_path / "x" / "manifest.json").write_text("{}")
    app = make_app(tmp_path)  # a folder of bundles: ids are folder names
    from webllm_py.serve.app import BUNDLES_KEY

    assert list(app[BUNDLES_KEY]) == ["x"]


def test_if_range_and_multi_range(site):
    f = files_of(site.bundle, "params", ".bin")[0]
    data = (site.bundle / "params" / f).read_bytes()
    t = f"/models/tiny/params/{f}"
    _, h, _ = get(site.port, t)
    etag, lm = h["ETag"], h["Last-Modified"]
    s, _, body = get(site.port, t, Range="bytes=0-9", If_Range=etag)
    assert (s, body) == (206, data[:10])
    s, _, body = get(site.port, t, Range="bytes=0-9", If_Range=lm)
    assert (s, body) == (206, data[:10])
    for stale in ('"0-0"', "W/" + etag, formatdate(86400, usegmt=True)):  # changed file: the whole of it
        s, _, body = get(site.port, t, Range="bytes=0-9", If_Range=stale)
        assert (s, body) == (200, data), stale
    s, _, body = get(site.port, t, Range="bytes=0-3,8-9")
    assert (s, body) == (200, data)


def test_stream_error_is_reported_in_band():
    class Broken(FakeEngine):
        def _stream(self, model):
            yield {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": model,
                   "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": None}]}
            raise RuntimeError("GPU on fire")

    with start_in_thread(make_app(None, api_models={"b": Broken()})) as srv:
        s, h, body = request(srv.port, "POST", "/v1/chat/completions",
                             json.dumps({"model": "b", "messages": MSGS, "stream": True}))
        events = [e[len("data: "):] for e in body.decode().split("\n\n") if e]
        assert s == 200 and h["Content-Type"].startswith("text/event-stream")
        assert json.loads(events[0])["choices"][0]["delta"]["content"] == "a"
        err = json.loads(events[-1])["error"]
        assert "GPU on fire" in err["message"] and err["type"] == "server_error" and "[DONE]" not in events


def test_engine_factory_runs_on_worker_thread_and_load_errors_are_500():
    threads = []

    def factory():
        threads.append(threading.current_thread().name)
        e = FakeEngine()
        e.gate.set()
        return e

    def broken():
        raise OSError("bundle vanished")

    with start_in_thread(make_app(None, api_models={"f": factory, "x": broken})) as srv:
        s, _, body = post_json(srv.port, "/v1/chat/completions", {"model": "f", "messages": MSGS})
        assert s == 200 and threads == ["webllm-serve:f"]
        s, _, body = post_json(srv.port, "/v1/chat/completions", {"model": "x", "messages": MSGS})
        assert s == 500 and "bundle vanished" in body["error"]["message"]


def test_stop_during_stream_is_prompt_and_joins_worker():
    fake = FakeEngine()
    app = make_app(None, api_models={"slow": fake})
    srv = start_in_thread(app)
    got: list[bytes] = []
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
    payload = json.dumps({"model": "slow", "messages": MSGS, "stream": True}).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    while b"data: " not in b"".join(got):
        got.append(sock.recv(65536))
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 5
    assert fake.closed.is_set()
    worker = app[WORKERS_KEY]["slow"]
    assert worker._thread is not None and not worker._thread.is_alive()
    sock.close()


def test_cli_serve_end_to_end(tiny_bundles, tmp_path):
    """`webllm-py serve --api --port 0` prints its URL, answers, and exits 0 on SIGTERM."""
    b = tmp_path / "bundles"
    shutil.copytree(tiny_bundles("llama", "q4"), b / "tiny")
    with cli_serve(b, "--cors", "*") as port:
        s, _, body = get(port, "/v1/models")
        assert s == 200 and json.loads(body)["data"][0]["id"] == "tiny"
        s, _, body = post_json(port, "/v1/chat/completions", {"model": "tiny", "messages": MSGS, "max_tokens": 4})
        assert s == 200 and body["choices"][0]["message"]["role"] == "assistant"


def test_native_backend_behind_the_api(tiny_bundles, adapter):
    """The native (wgpu) runtime, loaded on this thread and run on the worker thread
    (numerical agreement with the reference backend is test_native's business)."""
    import webllm_py
    from webllm_py import Engine

    eng = Engine(webllm_py.load(tiny_bundles("llama", "q4"), backend="native", adapter=adapter), model_name="tiny")
    body = {"model": "tiny", "messages": MSGS, "max_tokens": 8, "temperature": 0}
    with start_in_thread(make_app(None, api_models={"tiny": eng})) as srv:
        s, _, r = post_json(srv.port, "/v1/chat/completions", body)
        assert s == 200 and r["choices"][0]["message"]["role"] == "assistant" and r["usage"]["completion_tokens"] >= 1
        s, _, raw = request(srv.port, "POST", "/v1/chat/completions", json.dumps({**body, "stream": True}))
        text = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content") or ""
                       for e in raw.decode().split("\n\n") if e.startswith("data: {"))
        assert s == 200 and text == r["choices"][0]["message"]["content"]
