"""The npm package (web/dist) in headless Chromium with WebGPU on SwiftShader, against the
native (wgpu-py) runtime on the same bundles.

One Chromium for the module; each test opens its own browser context (its own Cache
Storage). Pages come from a StaticServer on 127.0.0.1 (a secure context) serving web/dist,
web/test_pages and the bundles; its request log and overrides drive the cache and integrity
tests.

Tolerance: browser logits vs native f32 logits within 1e-3 · max|logit| — the same f32
programs run on two drivers (SwiftShader vs lavapipe), whose float rounding (fma
contraction, exp/inversesqrt precision) differs slightly; greedy token ids must match exactly.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from webllm_py.testing.browser import StaticServer, browser_skip_reason, webgpu_browser  # noqa: F401

from conftest import REPO, SHARED_MODELS

pytestmark = [pytest.mark.slow, pytest.mark.browser]

WEB = REPO / "web"
PROMPT = "Once upon a time"
LOGIT_RTOL = 1e-3  # × max|logit|, see the module doc


def _ensure_dist() -> None:
    """web/dist/index.js, built with `npm run build` when missing (skip when it cannot be)."""
    if (WEB / "dist" / "index.js").exists() and (WEB / "dist" / "worker.js").exists():
        return
    npm = shutil.which("npm")
    if npm is None or not (WEB / "node_modules").exists():
        pytest.skip("web/dist is not built and cannot be (run `npm install && npm run build` in web/)")
    subprocess.run([npm, "run", "build"], cwd=WEB, check=True, capture_output=True)


@pytest.fixture(scope="module")
def bundles(tiny_bundles, tmp_path_factory) -> dict[str, Path]:
    """name → bundle folder: the tiny llama in q4, q8 and f32, and stories260k (q4) when present."""
    out = {"q4": tiny_bundles("llama", "q4"), "q8": tiny_bundles("llama", "q8"), "f32": tiny_bundles("llama", "f32")}
    st = SHARED_MODELS / "stories260k"
    if st.exists():
        import webllm_py

        out["stories"] = webllm_py.build(st, tmp_path_factory.mktemp("stories") / "b", quantization="q4", progress=False)
    return out


@contextlib.contextmanager
def page_server(routes: dict[str, Path]) -> Iterator[StaticServer]:
    """web/dist, web/test_pages and `routes` (URL prefix -> folder: the bundles) served from
    127.0.0.1 for a test page; skips with the reason where no WebGPU Chromium is found."""
    reason = browser_skip_reason()
    if reason:
        pytest.skip(reason)
    _ensure_dist()
    with StaticServer({"/dist/": WEB / "dist", "/test_pages/": WEB / "test_pages", **routes}) as s:
        yield s


@pytest.fixture(scope="module")
def server(bundles):
    with page_server({f"/b/{name}/": path for name, path in bundles.items()}) as s:
        yield s


@pytest.fixture(scope="module")
def native():
    """(bundle, program set) → (model, Engine) on the native runtime, built on first use."""
    import webllm_py
    from webllm_py.runtime.engine import Engine

    cache: dict[tuple, tuple] = {}

    def get(path: Path, precision: str = "f32"):
        if (path, precision) not in cache:
            m = webllm_py.load(path, backend="native", precision=precision)
            cache[path, precision] = (m, Engine(m))
        return cache[path, precision]

    return get


def _open(browser, server, context=None):
    page = browser.new_page(server.url("/test_pages/engine.html"), context=context)
    page.wait_for_function("window.webllmReady === true")
    return page


def _eval(browser, page, script: str, arg=None):
    """page.evaluate with the browser console in the failure message."""
    try:
        return page.evaluate(script, arg)
    except Exception as e:  # playwright.Error: add what the page logged
        raise AssertionError(f"{e}\n--- browser console ---\n{browser.console_tail()}") from None


CREATE = """async ([url, opts]) => {
  const progress = [];
  window.engine = await webllm.CreateEngine(url, { ...opts, initProgressCallback: (r) => progress.push(r.progress) });
  return { progress, precision: window.engine.model.precision };
}"""


# the gpu sets (f32 activations, f16x2 KV cache, GPU kernel shapes) forced on SwiftShader too
@pytest.mark.parametrize("name,precision", [("q4", "f32"), ("f32", "f32"), ("stories", "f32"), ("q4", "gpu"), ("q4", "gpu-sg")])
def test_greedy_tokens_and_text_match_native(webgpu_browser, server, bundles, native, name, precision):
    if name not in bundles:
        pytest.skip(f"{SHARED_MODELS / 'stories260k'} is absent")
    # f32 programs: text for text needs (near) identical logits on both drivers; idot's rounding to
    # 9-bit activations can flip at a tie between SwiftShader and lavapipe (test_logits_match_native)
    model, engine = native(bundles[name], precision)
    ids = engine.tokenizer.encode(PROMPT, add_special_tokens=True)
    want_ids = model.generate(ids, 8)
    want = engine.completions.create(prompt=PROMPT, max_tokens=8, temperature=0)
    page = _open(webgpu_browser, server)
    if precision == "f32":  # once per bundle (the gpu cases reuse q4's): the default is auto
        made = _eval(webgpu_browser, page, CREATE, [server.url(f"/b/{name}/"), {}])
        assert made["precision"] == "idot", "SwiftShader is a CPU adapter: auto must pick the idot programs"
    _eval(webgpu_browser, page, CREATE, [server.url(f"/b/{name}/"), {"precision": precision}])
    assert _eval(webgpu_browser, page, "async () => engine.model.precision", None) == precision
    got = _eval(webgpu_browser, page, """async (ids) => {
      const gen = await engine.model.generate(ids, 8);
      const r = await engine.completions.create({ prompt: "%s", max_tokens: 8, temperature: 0 });
      return { gen, text: r.choices[0].text, finish: r.choices[0].finish_reason, usage: r.usage };
    }""" % PROMPT, ids)
    assert got["gen"] == want_ids
    assert got["text"] == want.choices[0].text
    assert got["finish"] == want.choices[0].finish_reason
    assert got["usage"] == want.usage.to_dict()
    page.context.close()


# idot steps: each runtime is within IDOT_TOL * max|logit| of the exact result (test_native.py:
# 1.5e-2 for q4 bundles, 9-bit pairs; 3e-2 for q8 bundles, int8 and dot4I8Packed), so the two within
# twice that
IDOT_BROWSER_TOL = {"q4": 3e-2, "q8": 6e-2}


@pytest.mark.parametrize("name,precision", [("q4", "f32"), ("f32", "f32"), ("q4", "idot"), ("q8", "idot")])
def test_logits_match_native(webgpu_browser, server, bundles, native, name, precision):
    model, engine = native(bundles[name], precision)
    ids = engine.tokenizer.encode("The quick brown fox jumps over the lazy dog", add_special_tokens=True)
    want = model.logits(ids)
    page = _open(webgpu_browser, server)
    _eval(webgpu_browser, page, CREATE, [server.url(f"/b/{name}/"), {"precision": precision, "cache": False}])
    got = np.array(_eval(webgpu_browser, page, "async (ids) => (await engine.model.logits(ids)).map((r) => Array.from(r))", ids))
    assert got.shape == want.shape
    scale = float(np.abs(want).max())
    err = float(np.abs(got - want).max())
    # the score program: idot's packs the norms' outputs (q4 bundles), so it gets idot's bound too
    tol = IDOT_BROWSER_TOL[name] if precision == "idot" else LOGIT_RTOL
    assert err <= tol * scale, f"max |browser - native| = {err:.3g}, max |logit| = {scale:.3g}"
    # decode steps (the "decode" program after a prefill) agree too
    last = np.array(_eval(webgpu_browser, page, """async (ids) => {
      engine.model.reset(); await engine.model.forward(ids.slice(0, -1));
      return Array.from(await engine.model.forward(ids.slice(-1)));
    }""", ids))
    assert float(np.abs(last - want[-1]).max()) <= (IDOT_BROWSER_TOL[name] if precision == "idot" else LOGIT_RTOL) * scale
    page.context.close()


def test_seeded_sampling_streaming_and_worker_match_python(webgpu_browser, server, bundles, native):
    # f32 programs on both sides: this checks the sampler, whose draws must see (near) identical
    # logits; idot's rounding to 9-bit activations can flip between two drivers at a tie
    _, engine = native(bundles["q4"])
    messages = [{"role": "user", "content": "hello"}]
    params = dict(temperature=0.8, top_p=0.9, seed=7, max_tokens=12)
    want = engine.chat.completions.create(messages=messages, **params)
    page = _open(webgpu_browser, server)
    _eval(webgpu_browser, page, CREATE, [server.url("/b/q4/"), {"precision": "f32"}])
    got = _eval(webgpu_browser, page, """async ([messages, params]) => {
      const r = await engine.chat.completions.create({ messages, ...params });
      let streamed = "", finish = null;
      for await (const c of await engine.chat.completions.create({ messages, ...params, stream: true })) {
        streamed += c.choices[0]?.delta?.content ?? "";
        finish = c.choices[0]?.finish_reason ?? finish;
      }
      const worker = new Worker("/dist/worker.js", { type: "module" });
      const we = await webllm.CreateWorkerEngine(worker, "/b/q4/", { precision: "f32" });
      const w = await we.chat.completions.create({ messages, ...params });
      let wStreamed = "";
      for await (const c of await we.chat.completions.create({ messages, ...params, stream: true })) wStreamed += c.choices[0]?.delta?.content ?? "";
      await we.unload();
      worker.terminate();
      return { text: r.choices[0].message.content, finish: r.choices[0].finish_reason, usage: r.usage,
               streamed, streamFinish: finish, worker: w.choices[0].message.content, wStreamed };
    }""", [messages, params])
    text = want.choices[0].message.content
    assert got["text"] == text
    assert got["finish"] == want.choices[0].finish_reason
    assert got["usage"] == want.usage.to_dict()
    assert got["streamed"] == text and got["streamFinish"] == got["finish"]
    assert got["worker"] == text and got["wStreamed"] == text
    page.context.close()


def _bin_requests(log: list[str]) -> list[str]:
    return [u for u in log if u.endswith(".bin")]


def test_cache_reload_corruption_and_integrity(webgpu_browser, server, bundles):
    ctx = webgpu_browser.new_context()
    requests: list[str] = []
    ctx.on("request", lambda r: requests.append(r.url))
    page = _open(webgpu_browser, server, ctx)
    cold = _eval(webgpu_browser, page, CREATE, [server.url("/b/q4/"), {}])
    p = cold["progress"]
    assert p and all(b >= a for a, b in zip(p, p[1:])), p
    assert p[-1] == 1 and p.count(1) == 1, p
    shards = _bin_requests(requests)
    assert shards, "the cold load fetched the weight shards"

    # Reload: everything from Cache Storage, zero shard requests, every cached file hashed
    # before use (tests/test_browser_loader.py: one changed at rest is refetched).
    requests.clear()
    page.reload()
    page.wait_for_function("window.webllmReady === true")
    page.evaluate("""() => {
      window.digests = 0;
      const digest = crypto.subtle.digest.bind(crypto.subtle);
      crypto.subtle.digest = (...args) => { window.digests++; return digest(...args); };
    }""")
    _eval(webgpu_browser, page, CREATE, [server.url("/b/q4/"), {}])
    assert _bin_requests(requests) == []
    assert page.evaluate("window.digests") >= len(shards)

    # A shard corrupted inside Cache Storage is detected and refetched, and the engine works.
    shard = shards[0]
    _eval(webgpu_browser, page, """async (url) => {
      const c = await caches.open(webllm.DEFAULT_CACHE_SCOPE);
      const old = await c.match(url);
      const bytes = new Uint8Array(await old.arrayBuffer());
      bytes[0] ^= 0xff;
      await c.put(url, new Response(bytes));
    }""", shard)
    requests.clear()
    _eval(webgpu_browser, page, CREATE, [server.url("/b/q4/"), {}])
    assert _bin_requests(requests) == [shard]
    r = _eval(webgpu_browser, page, "async () => (await engine.completions.create({prompt: 'a', max_tokens: 2, temperature: 0})).usage")
    assert r["completion_tokens"] >= 1

    # A server that keeps sending a wrong shard: IntegrityError naming the file.
    path = shard[len(server.origin):]
    server.override(path, b"not the shard")
    try:
        err = _eval(webgpu_browser, page, """async (url) => {
          try { await webllm.CreateEngine(url, { cache: false }); return null; }
          catch (e) { return { name: e.name, path: e.path, integrity: e instanceof webllm.IntegrityError }; }
        }""", server.url("/b/q4/"))
    finally:
        server.override(path, None)
    assert err == {"name": "IntegrityError", "path": path.split("/b/q4/", 1)[1], "integrity": True}
    ctx.close()


def test_errors_device_lost_and_recreate(webgpu_browser, server, bundles):
    page = _open(webgpu_browser, server)
    got = _eval(webgpu_browser, page, """async (url) => {
      const out = {};
      let engine = await webllm.CreateEngine(url, { cache: false });
      try { await engine.completions.create({ prompt: "a ".repeat(400) }); }
      catch (e) { out.context = e.name; }
      try { await webllm.CreateEngine(url, { precision: "f16", cache: false }); }
      catch (e) { out.f16 = e.name; }
      engine.model.device.destroy();                 // what a driver reset looks like
      await engine.model.device.lost;
      try { await engine.completions.create({ prompt: "a", max_tokens: 2 }); }
      catch (e) { out.lost = e.name; }
      engine = await webllm.CreateEngine(url, { cache: false });   // and the engine can be re-created
      out.after = (await engine.completions.create({ prompt: "a", max_tokens: 2, temperature: 0 })).usage.completion_tokens;
      await engine.unload();
      return out;
    }""", server.url("/b/q4/"))
    assert got == {"context": "ContextWindowExceededError", "f16": "FeatureSupportError", "lost": "DeviceLostError", "after": 2}
    page.context.close()
