// response_format in the JS engine (issue 13) on the fake model with a character vocabulary; the
// masks' parity with the Python engine on the real SmolLM2 vocabulary is tests/test_structured_output.py's.
import "./xgrammar_node.js";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { Engine } from "../src/engine.js";
import { compileErrorText, vocabMetadata } from "../src/grammar.js";
import { InvalidRequestError } from "../src/request.js";
import { Tokenizer } from "../src/tokenizer.js";
import { CHARS, CharTokenizer, FakeModel } from "./fake_model.js";

// A tokenizer.json for the fake vocabulary: one raw token per character, eos "</s>" as an added token.
const tokenizerJson = {
  model: { type: "BPE", vocab: Object.fromEntries(CHARS.map((c, i) => [c, i])) },
  added_tokens: [{ id: 0, content: "<s>" }, { id: 1, content: "</s>" }],
  decoder: null,
};
const make = (script = "hello world") => new Engine(new FakeModel(script), /** @type {any} */ (new CharTokenizer()), {
  manifest: { model: { id: "fake" } }, tokenizerJson: () => tokenizerJson,
});
const chat = [{ role: "user", content: "hi" }];
const SMOL = new URL("../../../shared/models/smollm2-135m-instruct/tokenizer.json", import.meta.url);
const YES_NO = { type: "grammar", grammar: 'root ::= "yes" | "no"' };

test("a grammar constrains the reply; it ends with eos (stop) for greedy, seeded and n choices", async () => {
  const engine = make();
  const r = await engine.chat.completions.create({ messages: chat, response_format: YES_NO, temperature: 0 });
  assert.ok(["yes", "no"].includes(r.choices[0].message.content), r.choices[0].message.content);
  assert.equal(r.choices[0].finish_reason, "stop");
  const many = await engine.chat.completions.create({ messages: chat, response_format: YES_NO, temperature: 2, seed: 3, n: 5 });
  for (const c of many.choices) assert.ok(["yes", "no"].includes(c.message.content) && c.finish_reason === "stop");
});

test("json_schema and WebLLM's schema string give JSON of the schema over the real SmolLM2 vocabulary; stream = non-stream", { skip: existsSync(SMOL) ? false : `${SMOL.pathname} is absent (../shared/models beside the repo)` }, async () => {
  const json = JSON.parse(readFileSync(SMOL, "utf8"));
  const tok = new Tokenizer(json, { chat_template: new CharTokenizer().config.chat_template, bos_token: "<|im_start|>" }, { eosTokenIds: [2] });
  const engine = new Engine(new FakeModel("x", { vocabSize: 49152, contextWindow: 256 }), tok, {
    manifest: { model: { id: "fake" } }, tokenizerJson: () => json,
  });
  const schema = { type: "object", properties: { mood: { enum: ["happy", "sad"] }, n: { type: "integer" } }, required: ["mood", "n"] };
  for (const rf of [{ type: "json_schema", json_schema: { name: "m", schema } }, { type: "json_object", schema: JSON.stringify(schema) }]) {
    const kw = { messages: chat, response_format: rf, temperature: 0.8, seed: 4, max_tokens: 40 };
    const r = await engine.chat.completions.create(kw);
    const c = r.choices[0];
    if (c.finish_reason === "stop") assert.ok(["happy", "sad"].includes(JSON.parse(c.message.content).mood), c.message.content);
    else assert.ok(c.message.content.startsWith('{"mood": "'), c.message.content); // cut inside the integer
    let text = "";
    for await (const ch of await engine.chat.completions.create({ ...kw, stream: true })) text += ch.choices[0]?.delta?.content ?? "";
    assert.equal(text, c.message.content);
  }
});

test("bad formats and uncompilable schemas/grammars are InvalidRequestErrors naming the problem; the engine goes on", async () => {
  const engine = make();
  const bad = [
    [{ type: "xml" }, "response_format.type must be one of ['text', 'json_object', 'json_schema', 'grammar'], got 'xml'"],
    [{ type: ["text"] }, "response_format.type must be one of ['text', 'json_object', 'json_schema', 'grammar'], got ['text']"],
    [{ type: "json_object", strict: true }, "response_format: unknown field(s) ['strict']"],
    [{ type: "json_schema", json_schema: { schema: {} } }, "response_format.json_schema.name must be 1-64"],
    [{ type: "json_schema", json_schema: { name: "x", schema: { type: "foo" } } }, 'response_format.json_schema.schema: the schema cannot be compiled: Unsupported type "foo"'],
    [{ type: "grammar", grammar: "root ::= foo" }, 'response_format.grammar: the grammar cannot be compiled: EBNF parser error at line 1, column 10: Rule "foo" is not defined'],
    [{ type: "grammar", grammar: 'start ::= "a"' }, "response_format.grammar: the grammar cannot be compiled:"],
  ];
  for (const [rf, match] of bad) {
    await assert.rejects(engine.chat.completions.create({ messages: chat, response_format: rf }), (/** @type {any} */ err) => {
      assert.ok(err instanceof InvalidRequestError && err.message.includes(match) && !err.message.includes("/cpp/"), err.message);
      return true;
    });
    // after an xgrammar abort, the next structured request still works
    const ok = await engine.chat.completions.create({ messages: chat, response_format: YES_NO, temperature: 0 });
    assert.ok(["yes", "no"].includes(ok.choices[0].message.content));
  }
  await assert.rejects(engine.chat.completions.create({ messages: chat, response_format: YES_NO, ignore_eos: true }), /ignore_eos cannot be combined with response_format/);
});

test("a grammar the vocabulary cannot spell is an error naming it, not a NaN", async () => {
  // the fake vocabulary has no "{": a JSON object cannot start
  await assert.rejects(make().chat.completions.create({ messages: chat, response_format: { type: "json_object" } }),
    /the grammar allows no token of this model's vocabulary after 0 tokens/);
});

test("logprobs under a grammar list only the allowed tokens", async () => {
  const r = await make().chat.completions.create({ messages: chat, response_format: YES_NO, temperature: 0, logprobs: true, top_logprobs: 5 });
  const first = r.choices[0].logprobs.content[0];
  assert.deepEqual(first.top_logprobs.map((/** @type {any} */ t) => t.token).sort(), ["n", "y"]);
});

test("vocabMetadata and compileErrorText", () => {
  assert.deepEqual(vocabMetadata({ decoder: { type: "ByteLevel" } }), ["byte_level", false]);
  assert.deepEqual(vocabMetadata({ decoder: { type: "Sequence", decoders: [{ type: "ByteFallback" }] }, normalizer: { type: "Prepend", prepend: "▁" } }), ["byte_fallback", true]);
  assert.deepEqual(vocabMetadata({ decoder: null }), ["raw", false]);
  assert.equal(compileErrorText("[FATAL] /a/b/x.cc:9: Check failed: (a) is false: Bad thing"), "Bad thing");
});
