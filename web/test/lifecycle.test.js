// Engine lifecycle without a GPU (issue 16): the context window chosen at load and what it
// allocates (a recording fake GPUDevice), the context-overflow policy over the fake model. The
// same features on WebGPU in Chromium: tests/test_lifecycle_browser.py.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ContextPolicy, replyRoom, splitTurns } from "../src/context_policy.js";
import { Engine } from "../src/engine.js";
import { ContextWindowExceededError } from "../src/errors.js";
import { estimateMemory, resolveContextWindow } from "../src/kv_sizing.js";
import { WebGPURuntime, planBuffers } from "../src/runtime.js";
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
  rt._createBuffers(new Map([["params/a.bin", new ArrayBuffer(4096)]]));
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
