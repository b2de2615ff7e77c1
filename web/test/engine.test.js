// Engine logic over a fake runtime and a character-level tokenizer: no GPU. The GPU path
// and parity with the Python engine are tested in tests/test_browser.py.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Engine } from "../src/engine.js";
import { ContextWindowExceededError } from "../src/errors.js";
import { InvalidRequestError, StopMatcher } from "../src/request.js";
import { CharTokenizer, FakeModel, V, id } from "./fake_model.js";

const make = (/** @type {any[]} */ ...args) => {
  const model = new FakeModel(...args);
  return { model, engine: new Engine(model, /** @type {any} */ (new CharTokenizer()), { manifest: { model: { id: "fake" } } }) };
};
const chat = [{ role: "user", content: "hi" }];

/** @param {AsyncIterable<any>} stream */
async function collect(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

test("greedy chat: the script then eos; finish stop; usage counts eos; OpenAI shape", async () => {
  const { engine } = make();
  const r = await engine.chat.completions.create({ messages: chat, temperature: 0 });
  assert.equal(r.object, "chat.completion");
  assert.match(r.id, /^chatcmpl-[0-9a-f]{24}$/);
  assert.equal(r.model, "fake");
  assert.deepEqual(r.choices[0].message, { role: "assistant", content: "hello world", refusal: null });
  assert.equal(r.choices[0].finish_reason, "stop");
  const prompt = "<s><|user|>hi<|a|>".length - 3 + 1; // <s> is one id
  assert.deepEqual(r.usage, { prompt_tokens: prompt, completion_tokens: 12, total_tokens: prompt + 12 });
});

test("max_tokens → finish length; the context window also ends with length", async () => {
  const { engine } = make();
  const r = await engine.completions.create({ prompt: "ab>", max_tokens: 4, temperature: 0 });
  assert.equal(r.choices[0].text, "hell");
  assert.equal(r.choices[0].finish_reason, "length");
  assert.equal(r.usage.completion_tokens, 4);
  const small = make("a long answer that does not fit", { contextWindow: 10 }).engine;
  const r2 = await small.completions.create({ prompt: "ab>", temperature: 0 });
  assert.equal(r2.usage.total_tokens, 10);
  assert.equal(r2.choices[0].finish_reason, "length");
  await assert.rejects(small.completions.create({ prompt: "abcdefghij" }), ContextWindowExceededError);
});

test("stop strings cut the text, also when streamed, and hold back possible prefixes", async () => {
  const { engine } = make();
  for (const stop of ["o w", ["zz", "wor"], "d"]) {
    const r = await engine.completions.create({ prompt: ">", temperature: 0, stop });
    const s = await collect(await engine.completions.create({ prompt: ">", temperature: 0, stop, stream: true }));
    const text = s.map((c) => c.choices[0]?.text ?? "").join("");
    assert.equal(text, r.choices[0].text);
    assert.equal(r.choices[0].finish_reason, "stop");
    assert.equal(s.at(-1).choices[0].finish_reason, "stop");
  }
  assert.equal((await engine.completions.create({ prompt: ">", temperature: 0, stop: "o w" })).choices[0].text, "hell");
  const m = new StopMatcher(["abc"]);
  assert.deepEqual(m.feed("xa"), ["x", false]);
  assert.deepEqual(m.feed("b"), ["", false]);
  assert.deepEqual(m.feed("d"), ["abd", false]);
  assert.deepEqual(m.feed("zab"), ["z", false]);
  assert.deepEqual(m.feed("c!"), ["", true]);
});

test("streaming == non-streaming, with seeded sampling; include_usage adds a final usage chunk", async () => {
  const { engine } = make();
  const params = { messages: chat, temperature: 0.8, top_p: 0.9, seed: 7, max_tokens: 20 };
  const r = await engine.chat.completions.create(params);
  const chunks = await collect(await engine.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } }));
  assert.deepEqual(chunks[0].choices[0].delta, { role: "assistant", content: "", refusal: null });
  assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? "").join(""), r.choices[0].message.content);
  const finish = chunks.filter((c) => c.choices[0]?.finish_reason);
  assert.equal(finish.length, 1);
  assert.equal(finish[0].choices[0].finish_reason, r.choices[0].finish_reason);
  assert.deepEqual(chunks.at(-1).choices, []);
  assert.deepEqual(chunks.at(-1).usage, r.usage);
  assert.ok(chunks.every((c) => c.object === "chat.completion.chunk" && c.id === chunks[0].id));
  const again = await engine.chat.completions.create(params);
  assert.equal(again.choices[0].message.content, r.choices[0].message.content, "same seed, same text");
  const other = await engine.chat.completions.create({ ...params, seed: 8 });
  assert.notEqual(other.choices[0].message.content, r.choices[0].message.content);
});

test("multi-turn prefix reuse forwards only the new tokens and gives the same answer", async () => {
  const { engine, model } = make();
  const first = await engine.chat.completions.create({ messages: chat, temperature: 0 });
  const turn2 = [...chat, first.choices[0].message, { role: "user", content: "more" }];
  const before = model.forwarded;
  const r = await engine.chat.completions.create({ messages: turn2, temperature: 0 });
  const s = engine.runtimeStats();
  assert.ok(s.cached_tokens > 0);
  assert.equal(s.prefill_tokens + s.cached_tokens, s.prompt_tokens);
  assert.equal(s.decode_tokens, r.usage.completion_tokens);
  assert.ok(s.decode_tokens_per_s > 0);
  assert.equal(model.forwarded - before, s.prefill_tokens + r.usage.completion_tokens - 1); // the last token is never forwarded
  await engine.resetChat();
  const fresh = await engine.chat.completions.create({ messages: turn2, temperature: 0 });
  assert.equal(engine.runtimeStats().cached_tokens, 0);
  assert.equal(fresh.choices[0].message.content, r.choices[0].message.content);
});

test("n choices use seed + k from the same prompt logits", async () => {
  const { engine } = make();
  const base = { prompt: "x>", temperature: 1.5, max_tokens: 6 };
  const r = await engine.completions.create({ ...base, n: 3, seed: 40 });
  assert.equal(r.choices.length, 3);
  let tokens = 0;
  for (let k = 0; k < 3; k++) {
    const one = await engine.completions.create({ ...base, seed: 40 + k });
    assert.equal(r.choices[k].text, one.choices[0].text);
    assert.equal(r.choices[k].finish_reason, one.choices[0].finish_reason);
    tokens += one.usage.completion_tokens;
  }
  assert.equal(r.usage.completion_tokens, tokens);
  assert.equal(new Set(r.choices.map((c) => c.text)).size, 3);
});

test("interruptGenerate ends the stream with finish_reason abort; the engine stays usable", async () => {
  const { engine } = make("a".repeat(40));
  const stream = await engine.completions.create({ prompt: ">", temperature: 0, stream: true });
  const chunks = [];
  for await (const c of stream) {
    chunks.push(c);
    if (chunks.length === 3) engine.interruptGenerate();
  }
  assert.equal(chunks.at(-1).choices[0].finish_reason, "abort");
  assert.ok(chunks.length < 10);
  const r = await engine.completions.create({ prompt: ">", temperature: 0, max_tokens: 2 });
  assert.equal(r.choices[0].finish_reason, "length");
});

test("requests queue; a stream holds the engine until closed early", async () => {
  const { engine } = make();
  const [a, b] = await Promise.all([
    engine.completions.create({ prompt: ">", temperature: 0 }),
    engine.completions.create({ prompt: "q>", temperature: 0, max_tokens: 3 }),
  ]);
  assert.equal(a.choices[0].text, "hello world");
  assert.equal(b.choices[0].text, "hel");
  const stream = await engine.completions.create({ prompt: ">", temperature: 0, stream: true });
  for await (const _ of stream) break; // return() must release the engine
  const r = await engine.completions.create({ prompt: ">", temperature: 0, max_tokens: 1 });
  assert.equal(r.choices[0].text, "h");
});

test("invalid parameters are InvalidRequestError naming the field, as the Python engine's ValueError", async () => {
  const { engine } = make();
  const bad = [
    [{ top_p: 0 }, "top_p"], [{ temperature: -1 }, "temperature"], [{ max_tokens: 0 }, "max_tokens"],
    [{ n: 2, stream: true }, "n"], [{ stop: [""] }, "stop"], [{ logit_bias: { 99999: 1 } }, "logit_bias"],
    [{ seed: 1.5 }, "seed"], [{ stream_options: { include_usage: true } }, "stream_options"],
    [{ top_logprobs: 2 }, "top_logprobs"], [{ frequency_penalty: 3 }, "frequency_penalty"],
  ];
  for (const [p, field] of bad) {
    await assert.rejects(engine.chat.completions.create({ messages: chat, ...p }),
      (e) => e instanceof InvalidRequestError && e.param === field, JSON.stringify(p));
  }
  await assert.rejects(engine.chat.completions.create({ messages: [] }), InvalidRequestError);
  await assert.rejects(engine.chat.completions.create({ messages: [{ role: "robot", content: "x" }] }), /role must be one of/);
  await assert.rejects(engine.completions.create({ prompt: [V + 5] }), /token ids must be in/);
});

test("logit_bias and penalties change the choice; logprobs have OpenAI's shapes", async () => {
  const { engine } = make();
  const r = await engine.completions.create({ prompt: ">", temperature: 0, max_tokens: 1, logit_bias: { [id("z")]: 100 } });
  assert.equal(r.choices[0].text, "z");
  const c = await engine.chat.completions.create({ messages: chat, temperature: 0, max_tokens: 2, logprobs: true, top_logprobs: 3 });
  const lp = c.choices[0].logprobs.content;
  assert.equal(lp.length, 2);
  assert.equal(lp[0].token, "h");
  assert.deepEqual(lp[0].bytes, [104]);
  assert.equal(lp[0].top_logprobs.length, 3);
  assert.equal(lp[0].top_logprobs[0].token, "h");
  assert.ok(lp[0].logprob < 0 && lp[0].logprob === lp[0].top_logprobs[0].logprob);
  const t = await engine.completions.create({ prompt: ">", temperature: 0, max_tokens: 3, logprobs: 2 });
  assert.deepEqual(t.choices[0].logprobs.tokens, ["h", "e", "l"]);
  assert.deepEqual(t.choices[0].logprobs.text_offset, [0, 1, 2]);
  assert.equal(Object.keys(t.choices[0].logprobs.top_logprobs[0]).length, 2);
});

test("unload destroys the model; later requests fail with a clear error", async () => {
  const { engine, model } = make();
  await engine.unload();
  assert.ok(model.destroyed);
  await assert.rejects(engine.completions.create({ prompt: ">" }), /unloaded/);
});

/**
 * A runtime fake whose logits depend on how each KV row was written, as the WebGPU runtime's
 * do: forward() splits ids into steps of prefillChunk like runtime.js; under "program" a row
 * remembers whether a 1-token step (decode) or a longer one (prefill) wrote it, under
 * "schedule" the exact step (start, length). The logits are FakeModel's plus a tiny term
 * hashed from every row's (id, tag), so any row a fresh prefill would write differently
 * changes every logprob.
 */
class StepModel extends FakeModel {
  /** @param {"program"|"schedule"} kvReuse @param {number} prefillChunk */
  constructor(kvReuse, prefillChunk) {
    super("hello world", { contextWindow: 200 });
    this.kvReuse = kvReuse;
    this.prefillChunk = prefillChunk;
    /** @type {string[]} */
    this.tags = [];
  }
  /** @param {number} p */
  truncate(p) {
    super.truncate(p);
    this.tags.length = p;
  }
  reset() {
    super.reset();
    this.tags = [];
  }
  /** @param {number[]} ids */
  async forward(ids) {
    let row = this.row;
    for (let s = 0; s < ids.length; s += this.prefillChunk) {
      const step = ids.slice(s, s + this.prefillChunk);
      const tag = this.kvReuse === "program" ? (step.length === 1 ? "d" : "p") : `${this.position}:${step.length}`;
      for (const _ of step) this.tags.push(tag);
      row = await super.forward(step);
    }
    let h = 0;
    for (let i = 0; i < this.cache.length; i++) h = (h * 31 + this.cache[i] * 7 + this.tags[i].charCodeAt(0) + this.tags[i].length) % 1000003;
    for (let i = 0; i < this.vocabSize; i++) row[i] += 1e-3 * Math.sin(h + i);
    return row;
  }
}

test("prefix reuse gives a fresh prefill's logprobs bit for bit, for both reuse rules (kv_reuse.js)", async () => {
  for (const rule of /** @type {const} */ (["program", "schedule"])) {
    const C = 4;
    const cached = new Engine(new StepModel(rule, C), /** @type {any} */ (new CharTokenizer()));
    const ask = async (/** @type {Engine} */ e, /** @type {any} */ messages) => {
      const r = await e.chat.completions.create({ messages, temperature: 0.8, seed: 3, max_tokens: 6, logprobs: true, top_logprobs: 3 });
      return { text: r.choices[0].message.content, lp: r.choices[0].logprobs.content, stats: e.runtimeStats() };
    };
    let conv = [{ role: "user", content: "hi" }];
    const reuse = [];
    for (const next of ["more", "x", "abc", "more please"]) {
      for (const attempt of ["first", "repeat"]) {
        const got = await ask(cached, conv);
        const want = await ask(new Engine(new StepModel(rule, C), /** @type {any} */ (new CharTokenizer())), conv);
        assert.deepEqual(got.lp, want.lp, `${rule}, ${conv.length} messages, ${attempt}`);
        reuse.push(got.stats.cached_tokens);
        if (rule === "schedule") assert.equal(got.stats.cached_tokens % C, 0);
        if (attempt === "repeat") conv = [...conv, { role: "assistant", content: got.text }, { role: "user", content: next }];
      }
    }
    assert.ok(reuse.slice(1).every((n) => n > 0), `${rule} keeps reusing: ${reuse}`);
  }
});

test("the program rule forwards the last prompt token alone exactly when a fresh prefill would", async () => {
  const { KVLedger } = await import("../src/kv_reuse.js");
  for (const C of [1, 2, 3, 4]) {
    for (let P = 1; P <= 13; P++) {
      for (let cached = 0; cached <= 13; cached++) {
        const led = new KVLedger("program", C);
        const prompt = Array.from({ length: P }, (_, i) => i);
        for (let i = 0; i < cached; i += 2) led.wrote(Array.from({ length: Math.min(2, cached - i) }, (_, j) => i + j));
        const [keep, spans] = led.plan(prompt);
        const lens = spans.map(([a, b]) => b - a);
        const where = `C=${C} P=${P} cached=${cached}: keep ${keep}, steps ${lens}`;
        assert.ok(keep < P && spans[0][0] === keep && spans.at(-1)?.[1] === P && lens.every((n) => n >= 1 && n <= C), where);
        const freshLastAlone = C === 1 || P % C === 1;
        assert.equal(lens.at(-1) === 1, freshLastAlone, where);
        assert.ok(lens.slice(0, -1).every((n) => (n === 1) === (C === 1)), where);
      }
    }
  }
});

test("n is at most 128 and n x max_tokens at most 65536, named in the error", async () => {
  const { engine } = make("hello", { contextWindow: 4096 });
  for (const [p, ok] of /** @type {[any, boolean][]} */ ([
    [{ n: 128, max_tokens: 1 }, true], [{ n: 129, max_tokens: 1 }, false], [{ n: 1e30, max_tokens: 1 }, false],
    [{ n: 64, max_tokens: 1024 }, true], [{ n: 64, max_tokens: 1025 }, false],
  ])) {
    const req = () => engine._validate([1, 2], p, true);
    if (ok) assert.equal(req().n, p.n);
    else assert.throws(req, (e) => e instanceof InvalidRequestError && e.param === "n" && /\bn\b/.test(e.message), JSON.stringify(p));
  }
});

test("hostile values: a null logit_bias is refused, messages stay one short line (as request.py)", async () => {
  const { engine } = make();
  assert.throws(() => engine._validate([1], { logit_bias: { 5: null } }, true),
    (e) => e instanceof InvalidRequestError && e.param === "logit_bias");
  assert.throws(() => engine._validate([1], { stop: ["x".repeat(100_000), 5] }, true),
    (e) => e instanceof InvalidRequestError && e.param === "stop" && e.message.length < 400 && !e.message.includes("\n"));
});
