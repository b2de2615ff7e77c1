// Tokenizer: @huggingface/tokenizers over the bundle's tokenizer.json + tokenizer_config.json,
// plus a streaming decoder that never emits a broken UTF-8 sequence.
import { DigitsPreTokenizer, Tokenizer as HFTokenizer } from "@huggingface/tokenizers";
import { BundleError } from "./errors.js";

const SPECIAL_TOKEN_KEYS = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

/** A special token entry of tokenizer_config.json as a string (it may be an AddedToken dict). @param {unknown} v */
const tokenString = (v) => (typeof v === "string" ? v : v && typeof v === "object" && "content" in v ? String(v.content) : null);

/**
 * HF tokenizers' Digits pre-tokenizer splits on Rust `char::is_numeric` (Unicode N*: "½",
 * "²", "٣"), @huggingface/tokenizers 0.2 on ASCII `\d`. Make the JS one match.
 * @param {any} pre
 */
function fixDigits(pre) {
  if (pre instanceof DigitsPreTokenizer) {
    const p = /** @type {any} */ (pre);
    p.pattern = new RegExp(`\\P{N}+|\\p{N}${p.config.individual_digits ? "" : "+"}`, "gu");
  }
  for (const child of pre?.tokenizers ?? []) fixDigits(child);
}

export class Tokenizer {
  /**
   * @param {object} tokenizerJson parsed tokenizer.json
   * @param {Record<string, any>} [tokenizerConfig] parsed tokenizer_config.json ({} when the bundle has none)
   * @param {{eosTokenIds?: number[], chatTemplate?: string|null}} [options] chatTemplate: used when the
   *   config has none (newer HF checkpoints keep it in chat_template.jinja)
   */
  constructor(tokenizerJson, tokenizerConfig = {}, { eosTokenIds = [], chatTemplate = null } = {}) {
    this.config = tokenizerConfig.chat_template == null && chatTemplate != null
      ? { ...tokenizerConfig, chat_template: chatTemplate }
      : tokenizerConfig;
    this.eosTokenIds = eosTokenIds;
    this.hf = new HFTokenizer(tokenizerJson, this.config);
    fixDigits(this.hf.pre_tokenizer);
    // transformers >= 5 ignores clean_up_tokenization_spaces for BPE (it strips spaces before
    // punctuation); only WordPiece models get it, as there.
    this.cleanUp = /** @type {any} */ (tokenizerJson).model?.type === "WordPiece" ? null : false;
  }

  /**
   * Build from loadBundle's result, as webllm_py's Tokenizer.from_bundle: tokenizer.file,
   * tokenizer.config_file, chat_template.jinja when the config has no template, and eos
   * ids = manifest tokenizer.eos_token_ids ∪ generation.eos_token_ids.
   * @param {{manifest: import("./manifest.js").Manifest, files: Map<string, ArrayBuffer>}} bundle
   */
  static fromBundle({ manifest, files }) {
    const text = (/** @type {string|undefined|null} */ path) => {
      const buf = path ? files.get(path) : undefined;
      return buf ? new TextDecoder().decode(buf) : null;
    };
    const json = text(manifest.tokenizer.file);
    if (json == null) throw new BundleError(`tokenizer file ${manifest.tokenizer.file} was not loaded`);
    const config = JSON.parse(text(manifest.tokenizer.config_file) ?? "{}");
    const eos = [...(manifest.tokenizer.eos_token_ids ?? []), ...(manifest.generation?.eos_token_ids ?? [])];
    return new Tokenizer(JSON.parse(json), config, {
      eosTokenIds: [...new Set(eos)],
      chatTemplate: text("chat_template.jinja"),
    });
  }

  /**
   * @param {string} text
   * @param {{addSpecialTokens?: boolean}} [options] default true (bos etc. per the post-processor)
   * @returns {number[]}
   */
  encode(text, { addSpecialTokens = true } = {}) {
    return this.hf.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  /**
   * @param {ArrayLike<number>} ids
   * @param {{skipSpecialTokens?: boolean}} [options] default true, as webllm_py's Tokenizer.decode
   */
  decode(ids, { skipSpecialTokens = true } = {}) {
    if (ids.length === 0) return "";
    return this.hf.decode(Array.from(ids), {
      skip_special_tokens: skipSpecialTokens,
      clean_up_tokenization_spaces: this.cleanUp,
    });
  }

  /** @param {string} token */
  tokenToId(token) {
    return this.hf.token_to_id(token);
  }

  /** @param {number} id */
  idToToken(id) {
    return this.hf.id_to_token(id);
  }

  /** Named special tokens of tokenizer_config.json as strings (bos_token, eos_token, ...), absent ones left out. */
  get specialTokens() {
    /** @type {Record<string, string>} */
    const out = {};
    for (const k of SPECIAL_TOKEN_KEYS) {
      const s = tokenString(this.config[k]);
      if (s != null) out[k] = s;
    }
    return out;
  }

  /** @param {{promptIds?: ArrayLike<number>, skipSpecialTokens?: boolean}} [options] */
  createStreamDecoder(options) {
    return new StreamDecoder(this, options);
  }
}

/** Prompt ids kept as decoding context by a StreamDecoder (as webllm_py/runtime/tokenizer.py). */
const INITIAL_CONTEXT = 5;

/**
 * Incremental detokenizer, the same algorithm as webllm_py's StreamDetokenizer.
 * `push(id)` returns the newly completed text ("" while the window ends inside a
 * multi-byte character, i.e. decodes to a trailing U+FFFD); `flush()` returns what is
 * left. A short window of recent ids (seeded with the prompt's last ids, never emitted)
 * is decoded each time, so decoders that strip or merge at token boundaries
 * (Metaspace's leading space, byte fallback) stay correct.
 */
export class StreamDecoder {
  /**
   * @param {Tokenizer} tokenizer
   * @param {{promptIds?: ArrayLike<number>, skipSpecialTokens?: boolean}} [options]
   */
  constructor(tokenizer, { promptIds = [], skipSpecialTokens = true } = {}) {
    this.tokenizer = tokenizer;
    this.skipSpecialTokens = skipSpecialTokens;
    /** @type {number[]} */
    this.ids = Array.from(promptIds).slice(-INITIAL_CONTEXT);
    this.prefix = 0; // window start: context for the decoder
    this.read = this.ids.length; // ids before this have been emitted
    this.prefixText = this._decode(this.ids);
  }

  /** @param {number[]} ids */
  _decode(ids) {
    return this.tokenizer.decode(ids, { skipSpecialTokens: this.skipSpecialTokens });
  }

  /** Add one id; return the newly completed text (possibly ""). @param {number} id @returns {string} */
  push(id) {
    this.ids.push(id);
    const text = this._decode(this.ids.slice(this.prefix));
    if (text.length > this.prefixText.length && !text.endsWith("\uFFFD")) {
      const delta = text.slice(this.prefixText.length);
      this.prefix = this.read;
      this.read = this.ids.length;
      this.prefixText = this._decode(this.ids.slice(this.prefix, this.read));
      return delta;
    }
    return "";
  }

  /** End of generation: whatever is still held back (incomplete bytes become U+FFFD). */
  flush() {
    const text = this._decode(this.ids.slice(this.prefix));
    const delta = text.length > this.prefixText.length ? text.slice(this.prefixText.length) : "";
    this.ids = this.ids.slice(-INITIAL_CONTEXT);
    this.prefix = 0;
    this.read = this.ids.length;
    this.prefixText = this._decode(this.ids);
    return delta;
  }
}
