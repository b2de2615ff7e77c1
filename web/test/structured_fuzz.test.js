// Seeded random fuzz of response_format / tools / tool_choice / parallel_tool_calls and tool messages
// in the JS engine (as tests/test_structured_fuzz.py does with hypothesis): any JSON value is an
// answer or an InvalidRequestError with one short line, never a TypeError. Bounded: 300 + 200 cases.
import "./xgrammar_node.js";
import assert from "node:assert/strict";
import { test } from "node:test";
import { Engine } from "../src/engine.js";
import { InvalidRequestError } from "../src/request.js";
import { CHARS, CharTokenizer, FakeModel } from "./fake_model.js";

const tokenizerJson = {
  model: { type: "BPE", vocab: Object.fromEntries(CHARS.map((c, i) => [c, i])) },
  added_tokens: [{ id: 0, content: "<s>" }, { id: 1, content: "</s>" }], decoder: null,
};
const engine = new Engine(new FakeModel("hello", { contextWindow: 4096 }), /** @type {any} */ (new CharTokenizer()), { manifest: { model: { id: "fake" } }, tokenizerJson: () => tokenizerJson });

let state = Number(process.env.FUZZ_SEED ?? 12345); // fixed by default: a failure reproduces
const rand = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32);
const pick = (/** @type {any[]} */ a) => a[Math.floor(rand() * a.length)];
const WORDS = ["type", "json_schema", "schema", "name", "strict", "grammar", "function", "parameters", "properties", "required",
  "items", "enum", "const", "anyOf", "$ref", "text", "json_object", "object", "string", "required", "auto", "none", 'root ::= "a"', ""];
/** @returns {any} */
function value(depth = 0) {
  const r = rand();
  if (depth > 3 || r < 0.35) return pick([null, true, false, 0, -1, 7.5, 1e300, "x", ...WORDS]);
  if (r < 0.6) return Array.from({ length: Math.floor(rand() * 4) }, () => value(depth + 1));
  return Object.fromEntries(Array.from({ length: Math.floor(rand() * 4) }, () => [pick(WORDS), value(depth + 1)]));
}

async function oneLineOrOk(/** @type {any} */ params) {
  try {
    await engine.chat.completions.create({ messages: [{ role: "user", content: "hi" }], max_tokens: 2, ...params });
  } catch (err) {
    const e = /** @type {any} */ (err);
    assert.ok(e instanceof InvalidRequestError, `${JSON.stringify(params)}: ${e?.stack ?? e}`);
    assert.ok(e.message && !e.message.includes("\n") && e.message.length < 400 && !e.message.includes("/cpp/"), e.message);
  }
}

test("random response_format / tools / tool_choice / parallel_tool_calls: an answer or a one-line InvalidRequestError", async () => {
  for (let i = 0; i < 300; i++) {
    await oneLineOrOk({ response_format: value() });
    await oneLineOrOk({ tools: value(), tool_choice: value(), parallel_tool_calls: value() });
  }
});

test("random assistant tool_calls and tool messages: an answer or a one-line InvalidRequestError", async () => {
  for (let i = 0; i < 200; i++) {
    await oneLineOrOk({ messages: [{ role: "user", content: "hi" }, { role: "assistant", content: null, tool_calls: value() },
      { role: "tool", tool_call_id: value(), content: pick(["18", value()]) }] });
  }
});
