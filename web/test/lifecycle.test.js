// Engine lifecycle without a GPU (issue 16): the context window chosen at load and what it
// allocates (a recording fake GPUDevice), the context-overflow policy, reload, a request's
// AbortSignal and getMessage over the fake model, also through the worker engine. The same
// features on WebGPU in Chromium: tests/test_lifecycle_browser.py.
import assert from "node:assert/strict";
import { test } from "node:test";
import { MemoryCache } from "../src/cache.js";
import { listCachedModels } from "../src/cache_list.js";
import { ContextPolicy, replyRoom, splitTurns } from "../src/context_policy.js";
import { Engine } from "../src/engine.js";
import { ContextWindowExceededError } from "../src/errors.js";
import { estimateMemory, resolveContextWindow } from "../src/kv_sizing.js";
import { reloadEngine } from "../src/lifecycle.js";
import { deleteModelFromCache, hasModelInCache, loadBundle } from "../src/loader.js";
import { WebGPURuntime, planBuffers } from "../src/runtime.js";
import { ServiceWorkerEngineHandler } from "../src/service_worker_handler.js";
import { CreateWorkerEngine } from "../src/worker.js";
import { WorkerEngineHandler } from "../src/worker_handler.js";
import { BASE, fakeFetch, fakeStorage, makeBundle } from "../testing/fake_bundle.js";
import { CharTokenizer, FakeModel } from "./fake_model.js";

/** A manifest with the buffer kinds the runtime allocates: 2 caches of (512, 32) rows. */
function manifest() {
  return {
    model: { config: { vocab_size: 40 } },
    context_window: 512,
    prefill_chunk: 16,
    tokenizer: { eos_token_ids: [1] },
    buffers: {
      ids: { kind: "ids", dtype: "i32", elements: 16 },
      step: { kind: "uniform", bytes: 16 },
      act0: { kind: "activation", dtype: "act", elements: 1000 },
      logits: { kind: "output", dtype: "act", elements: 40 * 16 },
      "cache.0.k": { kind: "state", dtype: "act", elements: 512 * 32 },
      "cache.0.v": { kind: "state", dtype: "act", elements: 512 * 32 },
      "w/emb/data": { kind: "weight", bytes: 4096, param: "emb", part: "data" },
    },
    weights: { emb: { parts: { data: { file: "params/a.bin", offset: 0, nbytes: 4096 } } } },
    kernels: { k: { file: "kernels/k.wgsl", bindings: [["x", "read"]], workgroup_size: [64, 1, 1] } },
    programs: { f32: { decode: { dispatches: [], logits_rows: "1" }, prefill: { dispatches: [], logits_rows: "1" } } },
  };
}

/** Records every createBuffer: what the runtime allocates. */
function recordingDevice() {
  const sizes = /** @type {number[]} */ ([]);
  const device = {
    lost: new Promise(() => {}),
    queue: { writeBuffer() {} },
    createBuffer: (/** @type {{size: number}} */ d) => (sizes.push(d.size), { size: d.size, destroy() {} }),
    destroy() {},
  };
  return { device: /** @type {any} */ (device), sizes };
}

/** @param {number|undefined} rows */
function allocate(rows) {
  const { device, sizes } = recordingDevice();
  const rt = new WebGPURuntime(manifest(), device, "f32", {}, rows);
  rt._createBuffers();
  return { rt, total: sizes.reduce((a, b) => a + b, 0) };
}

test("contextWindowSize: a smaller KV cache is allocated, to the byte of the estimate made before", () => {
  const full = allocate(undefined), small = allocate(128);
  assert.equal(full.rt.contextWindow, 512);
  assert.equal(small.rt.contextWindow, 128);
  assert.equal(full.total, full.rt.memoryEstimate.totalBytes);
  assert.equal(small.total, small.rt.memoryEstimate.totalBytes);
  const est = estimateMemory(manifest(), "f32", 128);
  assert.deepEqual(small.rt.memoryEstimate, est);
  assert.equal(est.kvCacheBytes, 2 * 128 * 32 * 4); // k and v, 128 rows of 32 floats
  assert.equal(estimateMemory(manifest(), "f16", 128).kvCacheBytes, 2 * 128 * 32 * 2);
  assert.equal(est.weightsBytes, 4096);
  assert.equal(full.total - small.total, 3 * est.kvCacheBytes); // a quarter of the rows
  assert.equal(planBuffers(manifest(), "f32", 128).sizes.get("cache.0.k"), 128 * 32 * 4);
  assert.equal(planBuffers(manifest(), "f32").sizes.get("cache.0.k"), 512 * 32 * 4);
});

test("contextWindowSize: anything but an integer from 2 to the bundle's window is a RangeError naming it", () => {
  for (const bad of [0, 1, 513, 1e9, -4, 64.5, "64", true, [64], NaN, Infinity]) {
    assert.throws(() => resolveContextWindow(manifest(), bad), (err) => {
      assert.ok(err instanceof RangeError);
      assert.match(/** @type {Error} */ (err).message, /^contextWindowSize must be an integer from 2 to 512 \(the context window this bundle was built for; rebuild it with a larger --context-window for more\), got /);
      assert.ok(!/** @type {Error} */ (err).message.includes("\n"));
      return true;
    }, String(bad));
  }
  assert.equal(resolveContextWindow(manifest(), 2), 2);
  assert.equal(resolveContextWindow(manifest(), null), 512);
});

// ---- context overflow ------------------------------------------------------------------------

const SYSTEM = { role: "system", content: "be brief" };
/** n user/assistant turns, then the newest user message. @param {number} n */
function turns(n) {
  const msgs = [SYSTEM];
  for (let i = 0; i < n; i++) msgs.push({ role: "user", content: `question ${"abcdefghij"[i % 10]}` }, { role: "assistant", content: "an answer" });
  msgs.push({ role: "user", content: "and now" });
  return msgs;
}

/** @param {number} window @param {string} [overflow] the model is built for 256, loaded with `window` */
function engine(window, overflow) {
  const model = new FakeModel("ok", { contextWindow: window });
  const options = /** @type {any} */ ({ manifest: { model: { id: "fake" }, context_window: 256 }, contextOverflow: overflow });
  return { model, engine: new Engine(model, /** @type {any} */ (new CharTokenizer()), options) };
}

test("contextOverflow error: a prompt past the chosen window names contextWindowSize and the bundle's limit", async () => {
  const { engine: e } = engine(60);
  await assert.rejects(e.chat.completions.create({ messages: turns(4), max_tokens: 2 }), (err) => {
    assert.ok(err instanceof ContextWindowExceededError);
    const msg = /** @type {Error} */ (err).message;
    assert.match(msg, /contextWindowSize 60/);
    assert.match(msg, /load with a larger contextWindowSize \(this bundle allows up to 256\)/);
    assert.match(msg, /contextOverflow: "slide"/);
    assert.ok(!msg.includes("\n"));
    return true;
  });
  await assert.rejects(e.completions.create({ prompt: "x".repeat(70) }), /contextWindowSize 60/);
  assert.throws(() => new ContextPolicy("drop"), /contextOverflow must be one of \["error","slide"\], got "drop"/);
});

test("contextOverflow slide: keeps the system prompt and the newest turns, answering past the window", async () => {
  const { engine: e } = engine(80, "slide");
  const render = (/** @type {any} */ m) => e._chatPrompt(m, null);
  let past = 0;
  for (let n = 0; n < 12; n++) {
    const msgs = turns(n);
    const full = render(msgs).length;
    const r = await e.chat.completions.create({ messages: msgs, max_tokens: 2, temperature: 0 });
    assert.equal(r.choices[0].message.content, "ok");
    assert.ok(r.usage.prompt_tokens + 2 <= 80);
    if (full + 2 > 80) {
      past++;
      const d = e._context.dropped;
      assert.ok(d > 0);
      // exactly the system prompt + the turns after the d oldest, and no fewer than needed
      assert.equal(r.usage.prompt_tokens, render([SYSTEM, ...msgs.slice(1 + 2 * d)]).length);
      assert.ok(render([SYSTEM, ...msgs.slice(1 + 2 * (d - 1))]).length + 2 > 80);
    } else assert.equal(e._context.dropped, 0);
  }
  assert.ok(past >= 6, `the conversation outgrew the window for ${past} requests`);
  // without max_tokens a quarter of the window stays free; a giant newest turn is still refused
  const r = await e.chat.completions.create({ messages: turns(10), temperature: 0 });
  assert.ok(r.usage.prompt_tokens + 20 <= 80);
  await assert.rejects(e.chat.completions.create({ messages: [SYSTEM, { role: "user", content: "y".repeat(90) }] }),
    /Even with only the newest turn/);
});

test("splitTurns and replyRoom", () => {
  const msgs = [SYSTEM, { role: "developer", content: "d" }, { role: "assistant", content: "hi" }, { role: "user", content: "a" },
    { role: "assistant", content: "b" }, { role: "tool", content: "t" }, { role: "user", content: "c" }];
  const [head, t] = splitTurns(msgs);
  assert.deepEqual(head, msgs.slice(0, 2));
  assert.deepEqual(t, [[msgs[2]], msgs.slice(3, 6), [msgs[6]]]);
  assert.equal(replyRoom(100, 10), 10);
  assert.equal(replyRoom(100, 1000), 50); // at most half the window
  assert.equal(replyRoom(100, undefined), 25); // a quarter without max_tokens
  assert.equal(replyRoom(100, "7"), 25); // invalid max_tokens: validation refuses it later
});

// ---- reload, signal, getMessage --------------------------------------------------------------


const HI = [{ role: "user", content: "hi" }];
/** @param {string} script @param {any} [options] */
const fakeEngine = (script, options = {}) =>
  new Engine(new FakeModel(script), /** @type {any} */ (new CharTokenizer()), { manifest: { model: { id: script } }, ...options });
/** @param {AsyncIterable<any>} stream */
async function texts(stream) {
  let s = "";
  for await (const c of stream) s += c.choices[0]?.delta?.content ?? c.choices[0]?.text ?? "";
  return s;
}

test("reload switches to the new bundle, destroys the old runtime and ends a running stream with abort", async () => {
  const e = fakeEngine("hello world");
  /** @type {any} */ (e)._createOptions = { initProgressCallback: () => {}, contextWindowSize: 60, modelName: "x", precision: "f32" };
  const old = e.model;
  const stream = await e.chat.completions.create({ messages: HI, temperature: 0, stream: true });
  const it = stream[Symbol.asyncIterator]();
  await it.next(); // the role chunk
  await it.next(); // generating
  /** @type {any[]} */
  const calls = [];
  const create = async (/** @type {any} */ url, /** @type {any} */ options) => (calls.push([url, options]), fakeEngine("bye"));
  const reloading = reloadEngine(e, "https://example.org/b2/", { contextOverflow: "slide" }, create);
  let finish = null;
  for (let r = await it.next(); !r.done; r = await it.next()) finish = r.value.choices[0]?.finish_reason ?? finish;
  await reloading;
  assert.equal(finish, "abort", "the running stream ends at its next token");
  assert.equal(old.destroyed, true);
  assert.equal(e.modelName, "bye");
  const [[url, options]] = calls;
  assert.equal(url, "https://example.org/b2/");
  // carried: the engine's options; not carried: the per-bundle ones
  assert.deepEqual(Object.keys(options).sort(), ["contextOverflow", "initProgressCallback", "precision"]);
  assert.equal(options.contextOverflow, "slide");
  const r = await e.chat.completions.create({ messages: HI, temperature: 0 });
  assert.equal(r.choices[0].message.content, "bye");
  assert.equal(r.model, "bye");
  // a load that fails leaves the engine on its model
  await assert.rejects(reloadEngine(e, "https://example.org/gone/", {}, async () => { throw new Error("404"); }), /404/);
  assert.equal((await e.completions.create({ prompt: ">", temperature: 0 })).choices[0].text, "bye");
  assert.equal(e.model.destroyed, false);
  await assert.rejects(reloadEngine(e, "u", /** @type {any} */ ("slide"), create), /options must be an object/);
});

test("signal: an aborted request ends with its reason, mid-stream or not, and the next one works", async () => {
  const e = fakeEngine("hello world");
  const want = (await fakeEngine("hello world").chat.completions.create({ messages: HI, temperature: 0 })).choices[0].message.content;
  const reason = new Error("user pressed stop");
  // mid-stream
  const ctl = new AbortController();
  let got = "";
  await assert.rejects((async () => {
    for await (const c of await e.chat.completions.create({ messages: HI, temperature: 0, stream: true }, { signal: ctl.signal })) {
      got += c.choices[0]?.delta?.content ?? "";
      if (got.length >= 3) ctl.abort(reason);
    }
  })(), (err) => err === reason);
  assert.equal(got, want.slice(0, got.length));
  assert.ok(got.length < want.length);
  assert.equal((await e.chat.completions.create({ messages: HI, temperature: 0 })).choices[0].message.content, want);
  // already aborted: nothing runs
  const forwarded = /** @type {any} */ (e.model).forwarded;
  await assert.rejects(e.completions.create({ prompt: ">" }, { signal: AbortSignal.abort(reason) }), (err) => err === reason);
  assert.equal(/** @type {any} */ (e.model).forwarded, forwarded);
  // aborted while waiting for its turn behind an open stream: rejects now, the queue goes on
  const holder = await e.completions.create({ prompt: ">", temperature: 0, stream: true });
  const hi = holder[Symbol.asyncIterator]();
  await hi.next(); // the stream holds the engine
  const queued = new AbortController();
  const waiting = e.completions.create({ prompt: ">", temperature: 0 }, { signal: queued.signal });
  const after = e.completions.create({ prompt: ">", temperature: 0, max_tokens: 3 });
  queued.abort(reason);
  await assert.rejects(waiting, (err) => err === reason);
  await hi.return(undefined);
  assert.equal((await after).choices[0].text, "hel");
  for (const bad of ["x", { signal: "x" }, { signal: {} }]) {
    await assert.rejects(e.completions.create({ prompt: ">" }, /** @type {any} */ (bad)), TypeError);
  }
});

test("getMessage: the first choice's reply, also mid-stream", async () => {
  const e = fakeEngine("hello world");
  assert.equal(await e.getMessage(), "");
  const r = await e.chat.completions.create({ messages: HI, temperature: 0 });
  assert.equal(await e.getMessage(), r.choices[0].message.content);
  let so = "";
  const s = await e.completions.create({ prompt: ">", temperature: 0, stream: true });
  const it = s[Symbol.asyncIterator]();
  for (let x = await it.next(); !x.done; x = await it.next()) {
    so += x.value.choices[0]?.text ?? "";
    assert.equal(await e.getMessage(), so);
  }
  assert.equal(so, "hello world");
});

test("the worker engine: a request's signal, getMessage and reload cross to the worker", async (t) => {
  const { port1, port2 } = new MessageChannel();
  port1.start();
  port2.start();
  t.after(() => (port1.close(), port2.close()));
  /** @type {any[]} */
  const made = [];
  new WorkerEngineHandler(/** @type {any} */ (port2), {
    createEngine: async (url, options) => {
      if (url.endsWith("/gone/")) throw new Error("404 gone");
      made.push([url, Object.keys(options).sort()]);
      return fakeEngine(url.endsWith("/b2/") ? "bye" : "hello world");
    },
  });
  const we = await CreateWorkerEngine(/** @type {any} */ (port1), "https://example.org/b1/", { precision: "f32", contextWindowSize: 60 });
  const ctl = new AbortController();
  const reason = new Error("stop");
  let got = "";
  await assert.rejects((async () => {
    for await (const c of await we.chat.completions.create({ messages: HI, temperature: 0, stream: true }, { signal: ctl.signal })) {
      got += c.choices[0]?.delta?.content ?? "";
      if (got.length >= 2) ctl.abort(reason);
    }
  })(), (err) => err === reason);
  const slow = new AbortController();
  const pending = we.completions.create({ prompt: ">", temperature: 0 }, { signal: slow.signal });
  slow.abort(reason);
  await assert.rejects(pending, (err) => err === reason);
  const r = await we.chat.completions.create({ messages: HI, temperature: 0 });
  assert.equal(r.choices[0].message.content, "hello world");
  assert.equal(await we.getMessage(), "hello world");
  await we.reload("https://example.org/b2/");
  assert.equal(we.modelName, "bye");
  assert.deepEqual(made[1], ["https://example.org/b2/", ["initProgressCallback", "precision", "signal"]]);
  assert.equal((await we.completions.create({ prompt: ">", temperature: 0 })).choices[0].text, "bye");
  await assert.rejects(we.reload("https://example.org/gone/"), /404 gone/);
  assert.equal((await we.completions.create({ prompt: ">", temperature: 0 })).choices[0].text, "bye"); // still the old one
});

test("the service-worker handler answers each client, and reuses the loaded bundle for the same options", async () => {
  /** @type {Record<string, Function[]>} */
  const listeners = {};
  const waits = /** @type {Promise<any>[]} */ ([]);
  const scope = { addEventListener: (/** @type {string} */ t, /** @type {Function} */ f) => (listeners[t] ??= []).push(f), skipWaiting() {}, clients: { claim: async () => {} } };
  let creates = 0;
  const handler = new ServiceWorkerEngineHandler(scope, { createEngine: async () => (creates++, fakeEngine("hello world")) });
  /** @param {string} clientId */
  const client = (clientId) => {
    const got = /** @type {any[]} */ ([]);
    return { got, id: clientId, postMessage: (/** @type {any} */ m) => got.push(m) };
  };
  const send = async (/** @type {any} */ c, /** @type {any} */ data) => {
    for (const f of listeners.message) f({ data, source: c, waitUntil: (/** @type {Promise<any>} */ p) => waits.push(p) });
    await Promise.all(waits);
  };
  const a = client("page-a"), b = client("page-b");
  await send(a, { type: "init", id: 1, url: "https://example.org/b/", options: { precision: "f32" } });
  assert.deepEqual(a.got.at(-1), { type: "result", id: 1, value: { modelName: "hello world", reused: false, loads: 1 } });
  // another page (same request id), same bundle and options: answered at once, nothing loaded
  await send(b, { type: "init", id: 1, url: "https://example.org/b/", options: { precision: "f32" } });
  assert.equal(b.got[0].type, "progress");
  assert.match(b.got[0].report.text, /Reusing the model/);
  assert.deepEqual(b.got.at(-1).value, { modelName: "hello world", reused: true, loads: 1 });
  assert.equal(creates, 1);
  await send(b, { type: "completion", id: 2, params: { prompt: ">", temperature: 0 } });
  assert.equal(b.got.at(-1).value.choices[0].text, "hello world");
  assert.ok(!a.got.some((m) => m.id === 2), "answers go to the client that asked");
  await send(a, { type: "keepAlive" });
  assert.equal(a.got.length, 1);
  // other options: loaded again
  await send(a, { type: "init", id: 3, url: "https://example.org/b/", options: { precision: "f32", contextWindowSize: 32 } });
  assert.deepEqual(a.got.at(-1).value, { modelName: "hello world", reused: false, loads: 2 });
  await send(a, { type: "unload", id: 4 });
  await send(a, { type: "init", id: 5, url: "https://example.org/b/", options: { precision: "f32", contextWindowSize: 32 } });
  assert.equal(a.got.at(-1).value.loads, 3);
});

// ---- listing the cache ----------------------------------------------------------------------


test("listCachedModels: each cached bundle with its file count and bytes; deleteModelFromCache removes it", async () => {
  const { bodies, manifest, totalBytes } = makeBundle();
  const cache = new MemoryCache();
  assert.deepEqual(await listCachedModels({ cache }), []);
  await loadBundle(BASE, { cache, fetch: fakeFetch(bodies).fetch, retryDelayMs: 1, storage: fakeStorage() });
  const manifestBytes = bodies.get("manifest.json")?.byteLength ?? 0;
  // a second bundle with only its manifest and the first two files cached, and an unreadable manifest
  const other = "https://cdn.example/bundles/other/";
  await cache.put(other + "manifest.json", new Response(bodies.get("manifest.json")));
  for (const f of manifest.files.slice(0, 2)) await cache.put(other + f.path, new Response(bodies.get(f.path)));
  const broken = "https://cdn.example/bundles/broken/";
  await cache.put(broken + "manifest.json", new Response("{not json"));
  const list = await listCachedModels({ cache });
  assert.deepEqual(list.map((m) => m.url), [broken, other, BASE].sort());
  const tiny = list.find((m) => m.url === BASE);
  assert.deepEqual(tiny, {
    url: BASE, modelId: "tiny", files: manifest.files.length, cachedFiles: manifest.files.length,
    bytes: manifestBytes + totalBytes, totalBytes: manifestBytes + totalBytes, complete: true, error: null,
  });
  assert.equal(await hasModelInCache(BASE, { cache }), tiny?.complete);
  const part = list.find((m) => m.url === other);
  assert.equal(part?.cachedFiles, 2);
  assert.equal(part?.bytes, manifestBytes + manifest.files[0].size + manifest.files[1].size);
  assert.equal(part?.complete, false);
  const bad = list.find((m) => m.url === broken);
  assert.equal(bad?.modelId, null);
  assert.match(String(bad?.error), /manifest\.json/);
  await deleteModelFromCache(other, { cache });
  await deleteModelFromCache(broken, { cache });
  assert.deepEqual((await listCachedModels({ cache })).map((m) => m.url), [BASE]);
});
