// The JS engine's GPU argmax decision (gpu_sampling.js) and its hook, and encode-ahead's
// bookkeeping (encode_ahead.js), without a GPU. The kernel itself runs on lavapipe and SwiftShader
// in tests/test_gpu_sampling.py (the same WGSL: gpu_sampling_wgsl.js is generated and checked there).
import assert from "node:assert/strict";
import { test } from "node:test";
import { EncodeAhead } from "../src/encode_ahead.js";
import { Engine } from "../src/engine.js";
import { fullLogitsNeeds, gpuArgmaxOk } from "../src/gpu_sampling.js";
import { validateRequest } from "../src/request.js";
import { sampleAdjusted } from "../src/sampler.js";
import { CharTokenizer, FakeModel } from "./fake_model.js";

const CTX = { vocabSize: 300, contextWindow: 64, model: "m", generation: {} };
const req = (/** @type {any} */ p, chat = false) => validateRequest([1, 2, 3], { temperature: 0, ...p }, { ...CTX, chat });
const withArgmax = { forwardArgmax() {} };

// every request option that needs the full row -> the FULL_LOGITS_NEEDS name it trips
const NEEDS_LOGITS = [
  [{ temperature: 0.7 }, "temperature > 0"],
  [{ logprobs: true }, "logprobs", true],
  [{ logprobs: true, top_logprobs: 3 }, "logprobs", true],
  [{ logprobs: 0 }, "logprobs"], // completions: the chosen token's logprob only
  [{ logit_bias: { 5: 1 } }, "logit_bias"],
  [{ repetition_penalty: 1.1 }, "repetition_penalty"],
  [{ frequency_penalty: 0.5 }, "frequency_penalty"],
  [{ presence_penalty: -0.5 }, "presence_penalty"],
];

test("each option that reads the logits turns the GPU argmax off; greedy alone keeps it", () => {
  assert.deepEqual(fullLogitsNeeds(req({})), []);
  assert.ok(gpuArgmaxOk(req({}), withArgmax));
  for (const [p, need, chat] of NEEDS_LOGITS) {
    const r = req(p, Boolean(chat));
    assert.deepEqual(fullLogitsNeeds(r), [need], JSON.stringify(p));
    assert.ok(!gpuArgmaxOk(r, withArgmax));
  }
  const g = req({});
  g.grammar = {}; // response_format / forced tool calls (the engine compiles it after validation)
  assert.deepEqual(fullLogitsNeeds(g), ["grammar (response_format / tool calls)"]);
  assert.ok(!gpuArgmaxOk(req({}), {}), "a model without forwardArgmax");
});

test("top_p, top_k, min_p, stop, n, seed keep it: the sampler returns argmax at temperature 0 before them", () => {
  for (const p of [{ top_p: 0.5 }, { top_k: 3 }, { min_p: 0.3 }, { stop: ["x"] }, { n: 2 }, { seed: 7 }]) {
    const r = req(p);
    assert.deepEqual(fullLogitsNeeds(r), [], JSON.stringify(p));
    const row = Float64Array.from({ length: 300 }, (_, i) => ((i * 7919) % 9) - 4); // ties
    const first = row.indexOf(Math.max(...row));
    assert.equal(sampleAdjusted(row, { ...r.sampling, seed: r.seed, counter: 0 }), first);
  }
});

/** FakeModel with a forwardArgmax taking the lowest id among the maxima of its row, counting calls. */
class ArgmaxModel extends FakeModel {
  calls = 0;
  /** @param {number[]} ids */
  async forwardArgmax(ids) {
    this.calls++;
    const row = await this.forward(ids);
    let best = 0;
    for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
    return best;
  }
}

test("the engine takes greedy decode tokens from forwardArgmax, the same text as the CPU sampler's", async () => {
  const engine = (/** @type {any} */ m) => new Engine(m, /** @type {any} */ (new CharTokenizer()), { manifest: { model: { id: "fake" } } });
  const chat = [{ role: "user", content: "hi" }];
  const gpu = new ArgmaxModel();
  const cpu = new FakeModel();
  const a = await engine(gpu).chat.completions.create({ messages: chat, temperature: 0 });
  const b = await engine(cpu).chat.completions.create({ messages: chat, temperature: 0 });
  assert.equal(a.choices[0].message.content, "hello world");
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
  assert.equal(a.usage.completion_tokens, b.usage.completion_tokens);
  assert.equal(gpu.calls, a.usage.completion_tokens - 1); // every token after the prefill's first
  const calls = gpu.calls;
  const lp = await engine(gpu).chat.completions.create({ messages: chat, temperature: 0, logprobs: true });
  assert.equal(gpu.calls, calls, "logprobs read the row: the CPU path");
  assert.equal(lp.choices[0].message.content, "hello world");
  const streamed = [];
  for await (const c of await engine(gpu).chat.completions.create({ messages: chat, temperature: 0, stream: true })) {
    streamed.push(c.choices[0]?.delta?.content ?? "");
  }
  assert.equal(streamed.join(""), "hello world");
});

test("EncodeAhead submits what it recorded only for the same key, once", () => {
  const made = [];
  const ahead = new EncodeAhead((key) => (made.push(key), { key }));
  assert.deepEqual(ahead.take("decode 1 5 0"), { key: "decode 1 5 0" }); // nothing recorded: a miss
  ahead.prepare("decode 1 6 0");
  const rec = ahead.take("decode 1 6 0");
  assert.deepEqual([ahead.hits, ahead.misses, made.length], [1, 1, 2]);
  ahead.prepare("decode 1 7 0");
  assert.notEqual(ahead.take("decode 1 7 1"), rec); // another mode: recorded afresh
  assert.equal(ahead.take("decode 1 7 0").key, "decode 1 7 0"); // single-use: the recorded one is gone
  assert.deepEqual([ahead.hits, ahead.misses], [1, 3]);
});
