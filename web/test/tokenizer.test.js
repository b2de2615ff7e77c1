// Tokenizer + chat template parity with HF `tokenizers` / `transformers` on the REAL
// tokenizer files in ../shared/models (fixtures/make_tokenizer_golden.py recorded the
// expected outputs). Skips, saying why, when those files are absent.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { ChatTemplate, applyChatTemplate, selectChatTemplate } from "../src/chat_template.js";
import { ChatTemplateError } from "../src/errors.js";
import { Tokenizer } from "../src/tokenizer.js";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const shared = path.resolve(repoRoot, "../shared/models");
const golden = JSON.parse(readFileSync(new URL("./fixtures/tokenizer_golden.json", import.meta.url), "utf8"));

const loaded = new Map();
/** @param {string} folder (memoized: gemma3's tokenizer.json is 33 MB) */
function load(folder) {
  if (!loaded.has(folder)) loaded.set(folder, loadUncached(folder));
  return loaded.get(folder);
}

/** @param {string} folder */
function loadUncached(folder) {
  const dir = path.join(shared, folder);
  const json = (/** @type {string} */ f) => JSON.parse(readFileSync(path.join(dir, f), "utf8"));
  const config = existsSync(path.join(dir, "tokenizer_config.json")) ? json("tokenizer_config.json") : {};
  return new Tokenizer(json("tokenizer.json"), config);
}

for (const [name, g] of Object.entries(golden.models)) {
  const present = existsSync(path.join(shared, g.folder, "tokenizer.json"));
  const skip = present ? false : `real tokenizer files not found at ${path.join(shared, g.folder)}`;

  test(`${name}: encode/decode match HF tokenizers`, { skip }, () => {
    const tok = load(g.folder);
    golden.texts.forEach((text, i) => {
      const want = g.encode[i];
      const label = `${name} text #${i} ${JSON.stringify(text.slice(0, 30))}`;
      assert.deepEqual(tok.encode(text), want.with_special, `${label} with special tokens`);
      assert.deepEqual(tok.encode(text, { addSpecialTokens: false }), want.without_special, `${label} without`);
      assert.equal(tok.decode(want.with_special, { skipSpecialTokens: false }), want.decode, `${label} decode`);
      assert.equal(tok.decode(want.with_special, { skipSpecialTokens: true }), want.decode_skip, `${label} decode skip`);
    });
  });

  test(`${name}: streaming decode reassembles the text, never a broken character`, { skip }, () => {
    const tok = load(g.folder);
    golden.texts.forEach((text, i) => {
      const ids = g.encode[i].without_special;
      const dec = tok.createStreamDecoder();
      let out = "";
      for (const id of ids) {
        const piece = dec.push(id);
        assert.ok(!piece.includes("\uFFFD"), `${name} #${i}: piece ${JSON.stringify(piece)} has U+FFFD`);
        out += piece;
      }
      out += dec.flush();
      assert.equal(out, tok.decode(ids), `${name} #${i}`);
      // With the prompt as context: the continuation keeps its leading space etc.
      const cut = Math.floor(ids.length / 2);
      const [full, head] = [tok.decode(ids), tok.decode(ids.slice(0, cut))];
      if (cut > 0 && full.startsWith(head)) {
        const d2 = tok.createStreamDecoder({ promptIds: ids.slice(0, cut) });
        const streamed = ids.slice(cut).map((id) => d2.push(id)).join("") + d2.flush();
        assert.equal(streamed, full.slice(head.length), `${name} #${i} after a prompt`);
      }
    });
  });

  if (g.chat.length) {
    test(`${name}: chat template matches transformers apply_chat_template`, { skip }, () => {
      const tok = load(g.folder);
      golden.conversations.forEach((conv, i) => {
        const { text, ids } = applyChatTemplate(tok, conv.messages, {
          add_generation_prompt: conv.add_generation_prompt,
          kwargs: conv.kwargs,
        });
        assert.equal(text, g.chat[i].text, `${name} conversation #${i} text`);
        assert.deepEqual(ids, g.chat[i].ids, `${name} conversation #${i} ids`);
      });
    });
  }
}

test("chat template: special tokens, raise_exception, template lists, continue_final_message", () => {
  const t = new ChatTemplate(
    "{{ bos_token }}{% for m in messages %}{% if m.role == 'bad' %}{{ raise_exception('no bad roles') }}{% endif %}" +
      "<{{ m.role }}>{{ m.content }}</s>\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}",
    { bos_token: "<s>" },
  );
  assert.equal(t.render([{ role: "user", content: "hi", name: null }], { add_generation_prompt: true }), "<s><user>hi</s>\n<assistant>");
  assert.throws(() => t.render([{ role: "bad", content: "x" }]), (e) => e instanceof ChatTemplateError && /no bad roles/.test(e.message));
  assert.equal(t.render([{ role: "assistant", content: "Once upon" }], { continue_final_message: true }), "<s><assistant>Once upon");
  const cfg = { chat_template: [{ name: "default", template: "D" }, { name: "tool_use", template: "T" }] };
  assert.equal(selectChatTemplate(cfg), "D");
  assert.equal(selectChatTemplate(cfg, { tools: [{}] }), "T");
  assert.throws(() => selectChatTemplate({}), ChatTemplateError);
});

test("Tokenizer.fromBundle: files from loadBundle, chat_template.jinja fallback, eos ids union", { skip: existsSync(path.join(shared, "tokenizers/qwen3")) ? false : "qwen3 tokenizer files not found" }, () => {
  const dir = path.join(shared, "tokenizers/qwen3");
  const config = JSON.parse(readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
  const template = config.chat_template;
  delete config.chat_template;
  const enc = (/** @type {string} */ s) => new TextEncoder().encode(s).buffer;
  const files = new Map([
    ["tokenizer.json", readFileSync(path.join(dir, "tokenizer.json")).buffer],
    ["tokenizer_config.json", enc(JSON.stringify(config))],
    ["chat_template.jinja", enc(template)],
  ]);
  const manifest = /** @type {any} */ ({
    tokenizer: { file: "tokenizer.json", config_file: "tokenizer_config.json", eos_token_ids: [151645] },
    generation: { eos_token_ids: [151643, 151645] },
  });
  const tok = Tokenizer.fromBundle({ manifest, files });
  assert.deepEqual(tok.eosTokenIds, [151645, 151643]);
  const conv = golden.conversations[0];
  const { text } = applyChatTemplate(tok, conv.messages, { add_generation_prompt: true });
  assert.equal(text, golden.models.qwen3.chat[0].text);
});
