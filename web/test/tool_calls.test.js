// Tool calling in the JS engine (issue 13): the shared parse cases (fixtures/tool_calls.json, also
// run by tests/test_tool_calls.py), the families and parse round trips of the real chat templates,
// the injected tool prompt written as the Python engine writes it, and required/named replies.
import "./xgrammar_node.js";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { ChatTemplate } from "../src/chat_template.js";
import { Engine } from "../src/engine.js";
import { InvalidRequestError } from "../src/request.js";
import { TOOL_CALL_TEXT, TOOL_PROMPT, ToolStream, familyOf, parseToolCalls, usesToolsVariable } from "../src/tool_calls.js";
import { Tokenizer } from "../src/tokenizer.js";
import { CharTokenizer, FakeModel } from "./fake_model.js";

const fixture = JSON.parse(readFileSync(new URL("./fixtures/tool_calls.json", import.meta.url), "utf8"));
const SHARED = new URL("../../../shared/models/", import.meta.url);
const TEMPLATES = new URL("chat-templates/", SHARED);
const SMOL = new URL("smollm2-135m-instruct/tokenizer.json", SHARED);
const noShared = existsSync(TEMPLATES) && existsSync(SMOL) ? false : "../shared/models is absent";
const FAMILY = {
  "Qwen-Qwen2.5-7B-Instruct.jinja": "hermes", "Qwen-Qwen3-0.6B.jinja": "hermes",
  "meta-llama-Llama-3.1-8B-Instruct.jinja": "llama3", "meta-llama-Llama-3.2-3B-Instruct.jinja": "llama3",
  "mistralai-Mistral-Nemo-Instruct-2407.jinja": "mistral", "Mistral-Small-3.2-24B-Instruct-2506.jinja": "mistral11",
  "HuggingFaceTB-SmolLM3-3B.jinja": "hermes", "google-gemma-2-2b-it.jinja": "hermes", "microsoft-Phi-3.5-mini-instruct.jinja": "hermes",
};
const [WEATHER, TIME] = fixture.tool_prompt.tools;

test("the shared parse cases, and streaming holds back what may be a call", () => {
  for (const c of fixture.cases) {
    const r = parseToolCalls(c.family, c.text);
    assert.deepEqual(r, { content: c.content, calls: c.calls }, `${c.family}: ${c.text}`);
    const st = new ToolStream(c.family);
    let streamed = "";
    for (const ch of c.text) streamed += st.feed(ch);
    assert.ok((r.calls.length ? r.content ?? "" : c.text).startsWith(streamed), `${c.family}: ${c.text} -> ${streamed}`);
  }
  assert.ok(fixture.cases.length >= 20);
});

test("the tool prompt and earlier calls are written as the Python engine writes them", () => {
  const dummy = [{ role: "system", content: "" }];
  assert.equal(new ChatTemplate(TOOL_PROMPT).render(dummy, { tools: fixture.tool_prompt.tools }), fixture.tool_prompt.text);
  assert.equal(new ChatTemplate(TOOL_CALL_TEXT).render(dummy, { kwargs: { calls: fixture.tool_call_text.calls } }), fixture.tool_call_text.text);
});

test("tools given as a chat-template kwarg reach the template (they were overwritten with null)", () => {
  const tpl = new ChatTemplate("{{ tools | length }} {{ documents | length }}");
  assert.equal(tpl.render([{ role: "user", content: "x" }], { kwargs: { tools: [WEATHER, TIME], documents: [1] } }), "2 1");
  assert.equal(tpl.render([{ role: "user", content: "x" }], { tools: [WEATHER], kwargs: { tools: [WEATHER, TIME] }, documents: [] }), "1 0");
});

test("families of the real templates; the parser reads back what each writes", { skip: noShared }, () => {
  for (const [name, fam] of Object.entries(FAMILY)) {
    const src = readFileSync(new URL(name, TEMPLATES), "utf8");
    assert.equal(familyOf(src), fam, name);
    assert.equal(usesToolsVariable(src), Object.keys(FAMILY).indexOf(name) < 6, name);
    if (Object.keys(FAMILY).indexOf(name) >= 6) continue;
    const tpl = new ChatTemplate(src, { bos_token: "<s>", eos_token: "</s>" });
    const user = [{ role: "user", content: "Weather in Paris?" }];
    const args = { city: "Paris", unit: "celsius" };
    const turn = { role: "assistant", content: "", tool_calls: [{ id: "call00000", type: "function", function: { name: "get_weather", arguments: args } }] };
    const prefix = tpl.render(user, { add_generation_prompt: true, tools: [WEATHER, TIME] });
    const full = tpl.render([...user, turn], { tools: [WEATHER, TIME] });
    let k = 0;
    while (k < prefix.length && prefix[k] === full[k]) k++;
    let text = full.slice(k);
    for (const end of ["<|im_end|>\n", "<|im_end|>", "<|eot_id|>", "</s>"]) if (text.endsWith(end)) text = text.slice(0, -end.length);
    const r = parseToolCalls(fam, text);
    assert.deepEqual(r.calls.map((c) => [c.name, JSON.parse(c.arguments)]), [["get_weather", args]], `${name}: ${text}`);
  }
});

test("required and named tool_choice give a call that parses; streamed as tool-call deltas; bad requests name the field", { skip: noShared }, async () => {
  const json = JSON.parse(readFileSync(SMOL, "utf8"));
  const tok = new Tokenizer(json, { chat_template: new CharTokenizer().config.chat_template, bos_token: "<|im_start|>" }, { eosTokenIds: [2] });
  const engine = new Engine(new FakeModel("x", { vocabSize: 49152, contextWindow: 512 }), tok, {
    manifest: { model: { id: "fake" } }, tokenizerJson: () => json,
  });
  const messages = [{ role: "user", content: "Weather in Paris?" }];
  const small = { ...WEATHER, function: { ...WEATHER.function, parameters: { type: "object", properties: { unit: { enum: ["celsius", "fahrenheit"] } }, required: ["unit"] } } };
  for (const tool_choice of ["required", { type: "function", function: { name: "get_weather" } }]) {
    const kw = { messages, tools: [small], tool_choice, temperature: 1, seed: 3, max_tokens: 60 };
    const r = await engine.chat.completions.create(kw);
    const c = r.choices[0];
    assert.equal(c.finish_reason, "tool_calls", JSON.stringify(c.message));
    assert.equal(c.message.content, null);
    assert.equal(c.message.tool_calls.length, 1);
    const call = c.message.tool_calls[0];
    assert.match(call.id, /^call_[0-9a-f]{24}$/);
    assert.equal(call.function.name, "get_weather");
    assert.ok(["celsius", "fahrenheit"].includes(JSON.parse(call.function.arguments).unit));
    let name = "", args = "", finish = null;
    for await (const ch of await engine.chat.completions.create({ ...kw, stream: true })) {
      for (const tc of ch.choices[0]?.delta?.tool_calls ?? []) {
        name += tc.function?.name ?? "";
        args += tc.function?.arguments ?? "";
      }
      finish = ch.choices[0]?.finish_reason ?? finish;
    }
    assert.deepEqual([name, args, finish], ["get_weather", call.function.arguments, "tool_calls"]);
  }
  const bad = [
    [{ tools: "x" }, "tools must be a list of functions"],
    [{ tools: [{ type: "function", function: { name: "a b" } }] }, "tools[0].function.name must be 1-64"],
    [{ tools: [WEATHER, WEATHER] }, "tools: function names must be unique, ['get_weather'] repeat"],
    [{ tools: [WEATHER], tool_choice: { type: "function", function: { name: "nope" } } }, "tool_choice.function.name 'nope' is not one of the tools"],
    [{ tool_choice: "auto" }, "tool_choice needs tools"],
    [{ tools: [WEATHER], tool_choice: "required", response_format: { type: "json_object" } }, "response_format cannot be combined with tool_choice"],
    [{ chat_template_kwargs: { tools: [WEATHER] } }, "chat_template_kwargs.tools is not allowed"],
    [{ messages: [{ role: "user", content: "x" }, { role: "tool", content: "18" }] }, "messages[1].tool_call_id is required"],
  ];
  for (const [kw, match] of bad) {
    await assert.rejects(engine.chat.completions.create({ messages, ...kw }), (/** @type {any} */ e) => e instanceof InvalidRequestError && e.message.includes(match) || assert.fail(e.message));
  }
});
