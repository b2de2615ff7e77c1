// Test fakes without a GPU: a character-level tokenizer and a model whose greedy output is
// a fixed script. Shared by engine.test.js and worker.test.js.
import assert from "node:assert/strict";
import { ContextWindowExceededError } from "../src/errors.js";
import { StreamDecoder } from "../src/tokenizer.js";

// ids 0 = <s>, 1 = </s> (eos), then one id per character.
export const CHARS = ["<s>", "</s>", ..."abcdefghijklmnopqrstuvwxyz <|>.!"];
export const V = CHARS.length;
export const id = (/** @type {string} */ c) => CHARS.indexOf(c);

export class CharTokenizer {
  constructor() {
    this.eosTokenIds = [1];
    this.config = {
      bos_token: "<s>", eos_token: "</s>",
      chat_template: "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<|a|>{% endif %}",
    };
    this.specialTokens = { bos_token: "<s>", eos_token: "</s>" };
  }
  /** @param {string} text */
  encode(text, { addSpecialTokens = true } = {}) {
    const ids = [];
    for (let i = 0; i < text.length; ) {
      if (text.startsWith("<s>", i)) (ids.push(0), (i += 3));
      else if (text.startsWith("</s>", i)) (ids.push(1), (i += 4));
      else ids.push(id(text[i++]));
    }
    return addSpecialTokens ? [0, ...ids] : ids;
  }
  /** @param {ArrayLike<number>} ids */
  decode(ids, { skipSpecialTokens = true } = {}) {
    return Array.from(ids).filter((i) => !(skipSpecialTokens && i < 2)).map((i) => CHARS[i]).join("");
  }
  /** @param {number} i */
  idToToken(i) {
    return CHARS[i];
  }
  /** @param {any} options */
  createStreamDecoder(options) {
    return new StreamDecoder(/** @type {any} */ (this), options);
  }
}

/**
 * A model whose greedy continuation spells `script` (then eos), with smooth non-peaked logits
 * elsewhere so that sampling has choices. Logits depend only on (position, last id), as a
 * real model's depend on the cache, so prefix reuse must give the same answers.
 */
export class FakeModel {
  constructor(script = "hello world", { contextWindow = 64, vocabSize = V } = {}) {
    this.script = script;
    this.contextWindow = contextWindow;
    this.vocabSize = vocabSize;
    this.position = 0;
    /** @type {number[]} */
    this.cache = [];
    this.forwarded = 0;
    this.row = new Float32Array(vocabSize);
    this.destroyed = false;
  }
  reset() {
    this.position = 0;
    this.cache = [];
  }
  /** @param {number} p */
  truncate(p) {
    assert.ok(p <= this.position);
    this.position = p;
    this.cache.length = p;
  }
  /** @param {number[]} ids */
  async forward(ids) {
    if (this.position + ids.length > this.contextWindow) throw new ContextWindowExceededError(this.position + ids.length, this.contextWindow);
    this.cache.push(...ids);
    this.position += ids.length;
    this.forwarded += ids.length;
    const gen = this.cache.length - this.cache.lastIndexOf(id(">")) - 1; // ids since the prompt's last ">"
    const want = gen < this.script.length ? id(this.script[gen]) : 1;
    for (let i = 0; i < this.vocabSize; i++) this.row[i] = Math.sin(i * 1.7 + this.position) + (i === want ? 4 : 0);
    await null;
    return this.row; // reused, like the WebGPU runtime's
  }
  destroy() {
    this.destroyed = true;
  }
}

