// Strict requests (issue 13) in the JS engine: the cases of fixtures/strict_requests.json, which
// tests/test_structured_strict.py runs against the Python engine with the same messages, and
// the sampling knobs top_k, min_p, ignore_eos.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { Engine } from "../src/engine.js";
import { InvalidRequestError } from "../src/request.js";
import { UNSUPPORTED_CHAT, UNSUPPORTED_TEXT, suggest } from "../src/request_fields.js";
import { CharTokenizer, FakeModel } from "./fake_model.js";

const fixture = JSON.parse(readFileSync(new URL("./fixtures/strict_requests.json", import.meta.url), "utf8"));
const make = () => {
  const model = new FakeModel();
  return { model, engine: new Engine(model, /** @type {any} */ (new CharTokenizer()), { manifest: { model: { id: "fake" } } }) };
};
const create = (/** @type {Engine} */ engine, /** @type {string} */ api, /** @type {any} */ params) =>
  api === "chat"
    ? engine.chat.completions.create({ messages: [{ role: "user", content: "hi" }], max_tokens: 3, ...params })
    : engine.completions.create({ prompt: "ab>", max_tokens: 3, ...params });

test("every refused case of strict_requests.json is an InvalidRequestError naming the field, before the model runs", async () => {
  for (const c of fixture.refused) {
    const { engine, model } = make();
    await assert.rejects(create(engine, c.api, c.params), (/** @type {any} */ err) => {
      assert.ok(err instanceof InvalidRequestError, `${c.param}: ${err}`);
      assert.ok(err.message.includes(c.match), `${JSON.stringify(c.params)}: ${err.message}`);
      assert.ok(err.message.includes(c.param) && !err.message.includes("\n"));
      assert.equal(err.param?.split(".")[0], c.param);
      return true;
    });
    assert.equal(model.forwarded, 0);
  }
  const covered = new Set(fixture.refused.map((/** @type {any} */ c) => `${c.api}:${c.param}`));
  for (const k of Object.keys(UNSUPPORTED_CHAT)) assert.ok(covered.has(`chat:${k}`), k);
  for (const k of Object.keys(UNSUPPORTED_TEXT)) assert.ok(covered.has(`text:${k}`), k);
});

test("the accepted cases answer", async () => {
  for (const c of fixture.accepted) {
    const r = await create(make().engine, c.api, c.params);
    assert.ok(["stop", "length"].includes(r.choices[0].finish_reason), JSON.stringify(c.params));
  }
});

test("suggest: case and up to two edits, not unrelated short names", () => {
  const known = ["temperature", "top_k", "top_p", "n", "max_tokens"];
  assert.equal(suggest("TOP_K", known), "top_k");
  assert.equal(suggest("temprature", known), "temperature");
  assert.equal(suggest("x", known), null);
  assert.equal(suggest("foo", known), null);
});

test("top_k=1 and min_p=1 sample the most probable token; ignore_eos runs to max_tokens", async () => {
  const { engine } = make();
  const greedy = (await engine.completions.create({ prompt: "ab>", temperature: 0 })).choices[0].text;
  assert.equal(greedy, "hello world");
  for (const kw of [{ top_k: 1 }, { min_p: 1 }]) {
    for (const seed of [1, 2, 3]) {
      const r = await engine.completions.create({ prompt: "ab>", temperature: 3, seed, ...kw });
      assert.equal(r.choices[0].text, greedy, JSON.stringify({ ...kw, seed }));
    }
  }
  const r = await engine.completions.create({ prompt: "ab>", temperature: 0, max_tokens: 20, ignore_eos: true });
  assert.equal(r.choices[0].finish_reason, "length");
  assert.equal(r.usage.completion_tokens, 20);
  assert.ok(r.choices[0].text.startsWith(greedy));
});
