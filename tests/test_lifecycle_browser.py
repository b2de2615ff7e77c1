"""Engine lifecycle in headless Chromium (WebGPU on SwiftShader), against the native engine on the
same bundles (issue 16): a smaller context window chosen at load, reload, a request's AbortSignal,
the sliding context policy, and the service-worker engine across a navigation.

f32 programs on both sides, greedy decoding: the text must match exactly (tests/test_browser.py's
module doc: the same f32 programs on two drivers, whose logits agree to 1e-3 x max|logit|).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from webllm_py.testing.browser import webgpu_browser  # noqa: F401  (the Chromium fixture)

from test_browser import _eval, page_server

pytestmark = [pytest.mark.slow, pytest.mark.browser]

HI = [{"role": "user", "content": "Once upon a time"}]
GREEDY = {"max_tokens": 6, "temperature": 0, "logit_bias": {"1": -100}}


@pytest.fixture(scope="module")
def bundles(tiny_bundles) -> dict[str, Path]:
    return {"llama": tiny_bundles("llama", "f32"), "qwen3": tiny_bundles("qwen3", "f32")}


@pytest.fixture(scope="module")
def server(bundles):
    with page_server({f"/b/{name}/": path for name, path in bundles.items()}) as s:
        yield s


@functools.cache  # four tests ask for the same plain answer: one native engine and run for all
def _native(bundle: Path, **options) -> str:
    from webllm_py.runtime.engine import Engine

    eng = Engine(bundle, precision="f32", **options)
    return eng.chat.completions.create(messages=HI, max_tokens=6, temperature=0, logit_bias={1: -100}).choices[0].message.content


def _page(browser, server, path="/test_pages/engine.html", context=None):
    page = browser.new_page(server.url(path), context=context)
    page.wait_for_function("window.webllmReady === true")
    return page


ALLOCATED = "(rt) => [...rt.buffers.values()].reduce((a, b) => a + b.size, 0) + rt.staging.size"


def test_smaller_context_window_uses_less_gpu_memory_and_refuses_a_longer_prompt(webgpu_browser, server, bundles):
    page = _page(webgpu_browser, server)
    got = _eval(webgpu_browser, page, """async ([hi, greedy]) => {
      const allocated = %s;
      const full = await webllm.CreateEngine("/b/llama/", { precision: "f32", cache: false });
      const small = await webllm.CreateEngine("/b/llama/", { precision: "f32", cache: false, contextWindowSize: 40 });
      const out = {
        windows: [full.model.contextWindow, small.model.contextWindow],
        estimates: [full.model.memoryEstimate, small.model.memoryEstimate],
        allocated: [allocated(full.model), allocated(small.model)],
        text: (await small.chat.completions.create({ messages: hi, ...greedy })).choices[0].message.content,
      };
      try {
        await small.chat.completions.create({ messages: [{ role: "user", content: "The quick brown fox jumps over the lazy dog, once upon a time." }], max_tokens: 2 });
      } catch (e) { out.error = [e.name, e.message]; }
      await full.unload(); await small.unload();
      return out;
    }""" % ALLOCATED, [HI, GREEDY])
    assert got["windows"] == [256, 40]
    full, small = got["estimates"]
    # the estimate made before allocating is what was allocated, to the byte
    assert got["allocated"] == [full["totalBytes"], small["totalBytes"]]
    assert small["kvCacheBytes"] * 256 == full["kvCacheBytes"] * 40
    assert full["totalBytes"] - small["totalBytes"] == full["kvCacheBytes"] - small["kvCacheBytes"] > 0
    assert got["text"] == _native(bundles["llama"], context_window_size=40)
    name, msg = got["error"]
    assert name == "ContextWindowExceededError" and "contextWindowSize 40" in msg and "allows up to 256" in msg
    assert "\n" not in msg
    page.context.close()


def test_reload_switches_bundles_and_frees_the_first(webgpu_browser, server, bundles):
    page = _page(webgpu_browser, server)
    got = _eval(webgpu_browser, page, """async ([hi, greedy]) => {
      const ask = async (e) => (await e.chat.completions.create({ messages: hi, ...greedy })).choices[0].message.content;
      const engine = await webllm.CreateEngine("/b/llama/", { precision: "f32", cache: false, contextWindowSize: 64 });
      const first = await ask(engine);
      const old = engine.model;
      await engine.reload("/b/qwen3/");
      const out = { first, second: await ask(engine), window: engine.model.contextWindow, precision: engine.model.precision,
                    oldDestroyed: old._destroyed, sameObject: old === engine.model };
      try { await old.forward([2]); } catch (e) { out.oldError = e.name; }
      try { await engine.reload("/b/missing/"); } catch (e) { out.failed = e.name; }
      out.afterFailure = await ask(engine);
      await engine.unload();
      return out;
    }""", [HI, GREEDY])
    assert got["first"] == _native(bundles["llama"], context_window_size=64)
    assert got["second"] == _native(bundles["qwen3"])
    assert got["window"] == 256 and got["precision"] == "f32"  # the size is per bundle; precision carries over
    assert got["oldDestroyed"] is True and got["sameObject"] is False and got["oldError"] == "DeviceLostError"
    assert got["failed"] == "NetworkError" and got["afterFailure"] == got["second"]
    page.context.close()


def test_an_aborted_request_ends_with_its_error_and_the_next_one_works(webgpu_browser, server, bundles):
    page = _page(webgpu_browser, server)
    got = _eval(webgpu_browser, page, """async ([hi, greedy]) => {
      const engine = await webllm.CreateEngine("/b/llama/", { precision: "f32", cache: false });
      const ctl = new AbortController();
      let streamed = 0, error = null;
      try {
        const s = await engine.chat.completions.create({ messages: hi, ...greedy, max_tokens: 40, stream: true }, { signal: ctl.signal });
        for await (const c of s) if (c.choices[0]?.delta?.content && ++streamed === 2) ctl.abort(new Error("stopped by the user"));
      } catch (e) { error = e.message; }
      const next = (await engine.chat.completions.create({ messages: hi, ...greedy })).choices[0].message.content;
      const message = await engine.getMessage();
      await engine.unload();
      return { streamed, error, next, message };
    }""", [HI, GREEDY])
    assert got["error"] == "stopped by the user" and got["streamed"] == 2
    assert got["next"] == _native(bundles["llama"]) == got["message"]
    page.context.close()


def test_the_sliding_policy_keeps_answering_past_the_window(webgpu_browser, server, bundles):
    from webllm_py.runtime.engine import Engine

    window = 160
    turns = [{"role": "system", "content": "You are a tiny model."}]
    convo = []
    for i in range(5):  # ~62 tokens a turn: the window holds 2
        turns += [{"role": "user", "content": f"Question {i}: the quick brown fox?"},
                  {"role": "assistant", "content": f"Answer {i}: over the lazy dog."}]
        convo.append(turns + [{"role": "user", "content": "And now?"}])
    native = Engine(bundles["llama"], precision="f32", context_window_size=window, context_overflow="slide")
    want = []
    for msgs in convo:
        r = native.chat.completions.create(messages=msgs, max_tokens=8, temperature=0, logit_bias={1: -100})
        want.append([r.choices[0].message.content, r.usage.prompt_tokens])
    page = _page(webgpu_browser, server)
    got = _eval(webgpu_browser, page, """async ([convo, window]) => {
      const engine = await webllm.CreateEngine("/b/llama/", { precision: "f32", cache: false, contextWindowSize: window, contextOverflow: "slide" });
      const out = [];
      for (const messages of convo) {
        const r = await engine.chat.completions.create({ messages, max_tokens: 8, temperature: 0, logit_bias: { "1": -100 } });
        out.push([r.choices[0].message.content, r.usage.prompt_tokens]);
      }
      await engine.unload();
      return out;
    }""", [convo, window])
    assert got == want
    assert sum(p + 8 > window for _, p in want) == 0 and len(want) == 5  # every answer fit the window...
    full = Engine(bundles["llama"], backend="reference")
    assert sum(len(full._chat_prompt(m, None)) > window for m in convo) >= 3  # ...which the conversations outgrew
    page.context.close()


def test_the_service_worker_engine_answers_after_a_navigation_without_reloading_the_weights(webgpu_browser, server, bundles):
    ctx = webgpu_browser.new_context()
    page = _page(webgpu_browser, server, "/test_pages/sw_page.html?page=a", context=ctx)
    create = """async ([hi, greedy]) => {
      const engine = await webllm.CreateServiceWorkerEngine("/b/llama/", { precision: "f32" });
      const r = await engine.chat.completions.create({ messages: hi, ...greedy });
      return { reused: engine.reused, loads: engine.loads, text: r.choices[0].message.content };
    }"""
    first = _eval(webgpu_browser, page, create, [HI, GREEDY])
    assert first["reused"] is False and first["loads"] == 1
    server.clear_requests()
    page.goto(server.url("/test_pages/sw_page.html?page=b"))  # another page of the site
    page.wait_for_function("window.webllmReady === true")
    second = _eval(webgpu_browser, page, create, [HI, GREEDY])
    bundle_requests = [u for u in server.requests if u.startswith("/b/")]
    assert second["reused"] is True and second["loads"] == 1, second
    assert bundle_requests == [], "the weights were fetched again"
    assert first["text"] == second["text"] == _native(bundles["llama"])
    ctx.close()


def test_create_engine_compiles_kernels_while_the_weight_shards_are_still_being_verified(webgpu_browser, server, bundles):
    # A warm load from a cache whose weight shards cannot be read until a kernel has compiled:
    # a CreateEngine that compiles only after every file is verified waits the 10 s out.
    page = _page(webgpu_browser, server)
    got = _eval(webgpu_browser, page, """async ([hi, greedy]) => {
      const store = new webllm.MemoryCache();
      const cold = await webllm.CreateEngine("/b/llama/", { precision: "f32", cache: store });
      await cold.unload();
      let compiled = null, unblockedByCompile = false;
      const compiling = new Promise((r) => (compiled = r));
      const gated = {
        persistent: false,
        match: async (url) => {
          if (url.includes("/params/")) {
            unblockedByCompile = await Promise.race([compiling.then(() => true), new Promise((r) => setTimeout(() => r(false), 10000))]);
          }
          return store.match(url);
        },
        put: (u, r) => store.put(u, r), delete: (u) => store.delete(u), keys: () => store.keys(),
      };
      const texts = [];
      const warm = await webllm.CreateEngine("/b/llama/", { precision: "f32", cache: gated, initProgressCallback: (p) => {
        texts.push([p.progress, p.text]);
        if (p.text.startsWith("Compiling kernels")) compiled();
      } });
      const text = (await warm.chat.completions.create({ messages: hi, ...greedy })).choices[0].message.content;
      await warm.unload();
      // a shard served wrong on a cold load: the engine is never made (nothing runs on unverified bytes)
      let error = null;
      try { await webllm.CreateEngine("/b/llama/", { precision: "f32", cache: false, fetch: async (u, init) => {
        const res = await fetch(u, init);
        return String(u).includes("/params/") ? new Response(new Uint8Array((await res.arrayBuffer()).byteLength)) : res;
      } }); } catch (e) { error = e.name; }
      return { unblockedByCompile, text, texts, error };
    }""", [HI, GREEDY])
    assert got["unblockedByCompile"] is True, got["texts"]
    progress = [p for p, _ in got["texts"]]
    assert progress == sorted(progress) and progress[-1] == 1  # still monotonic, and ends at exactly 1
    assert got["text"] == _native(bundles["llama"])
    assert got["error"] == "IntegrityError"
    page.context.close()
