// CreateWorkerEngine ↔ WorkerEngineHandler over a real MessageChannel (structured clone),
// with the fake model of engine.test.js: same answers, streaming, errors, cancel.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Engine } from "../src/engine.js";
import { ContextWindowExceededError } from "../src/errors.js";
import { InvalidRequestError } from "../src/request.js";
import { CreateWorkerEngine } from "../src/worker.js";
import { WorkerEngineHandler } from "../src/worker_handler.js";
import { CharTokenizer, FakeModel } from "./fake_model.js";

async function setup() {
  const { port1, port2 } = new MessageChannel();
  port1.start();
  port2.start();
  const local = new Engine(new FakeModel(), /** @type {any} */ (new CharTokenizer()), { manifest: { model: { id: "fake" } } });
  const remote = new Engine(new FakeModel(), /** @type {any} */ (new CharTokenizer()), { manifest: { model: { id: "fake" } } });
  /** @type {any[]} */
  const seen = [];
  new WorkerEngineHandler(/** @type {any} */ (port2), {
    createEngine: async (url, options) => {
      seen.push(url);
      options.initProgressCallback?.({ progress: 0.5, loadedBytes: 1, totalBytes: 2, text: "half", timeElapsed: 0 });
      options.initProgressCallback?.({ progress: 1, loadedBytes: 2, totalBytes: 2, text: "done", timeElapsed: 0 });
      return remote;
    },
  });
  const progress = [];
  const engine = await CreateWorkerEngine(/** @type {any} */ (port1), "https://example.org/b/", {
    initProgressCallback: (r) => progress.push(r.progress),
  });
  return { engine, local, seen, progress, close: () => (port1.close(), port2.close()) };
}

test("the worker engine answers like the local engine, streamed or not", async (t) => {
  const { engine, local, seen, progress, close } = await setup();
  t.after(close);
  assert.deepEqual(seen, ["https://example.org/b/"]);
  assert.deepEqual(progress, [0.5, 1]);
  assert.equal(engine.modelName, "fake");
  const params = { messages: [{ role: "user", content: "hi" }], temperature: 0.8, top_p: 0.9, seed: 7, max_tokens: 12 };
  const a = await engine.chat.completions.create(params);
  const b = await local.chat.completions.create(params);
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
  assert.deepEqual(a.usage, b.usage);
  assert.equal(engine.runtimeStats().decode_tokens, a.usage.completion_tokens);
  const chunks = [];
  for await (const c of await engine.chat.completions.create({ ...params, stream: true })) chunks.push(c);
  assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? "").join(""), a.choices[0].message.content);
  const text = await engine.completions.create({ prompt: ">", temperature: 0 });
  assert.equal(text.choices[0].text, "hello world");
});

test("errors come back as their classes; a stream closed early frees the worker engine", async (t) => {
  const { engine, close } = await setup();
  t.after(close);
  await assert.rejects(engine.chat.completions.create({ messages: [{ role: "user", content: "x" }], top_p: 0 }),
    (e) => e instanceof InvalidRequestError && e.param === "top_p");
  await assert.rejects(engine.chat.completions.create({ messages: [{ role: "user", content: "x" }], top_p: 0, stream: true }),
    InvalidRequestError);
  await assert.rejects(engine.completions.create({ prompt: "a".repeat(80) }),
    (e) => e instanceof ContextWindowExceededError && e.contextWindow === 64);
  const stream = await engine.completions.create({ prompt: ">", temperature: 0, stream: true });
  for await (const _ of stream) break;
  const r = await engine.completions.create({ prompt: ">", temperature: 0, max_tokens: 2 });
  assert.equal(r.choices[0].text, "he");
  await engine.resetChat();
  await engine.unload();
  await assert.rejects(engine.completions.create({ prompt: ">" }), /not initialized/);
});
