// Constrained decoding with xgrammar's web build (npm @mlc-ai/web-xgrammar 0.1.27, built from the
// xgrammar source of the PyPI xgrammar 0.1.27 that webllm_py/runtime/grammar.py pins): the same
// GrammarSpec gives the same token bitmasks, so one request and seed give the same tokens here
// and natively (tests/test_structured_output.py compares the masks on the real SmolLM2 vocabulary).
//
// The package is ~1.1 MB minified (its wasm inlined), so it is imported on the first structured
// request only (dist/xgrammar.js, built beside dist/index.js; a UMD build, it sets
// globalThis.xgrammar where it finds no CommonJS exports). Its wasm aborts on a bad schema or grammar instead of throwing a
// message: the "[FATAL] file:line: message" it prints on console.error is captured (the print
// function is bound when the module instantiates, which happens below under a wrapper) and
// becomes the error's text, and the compiler, whose state the abort may have left half-updated,
// is replaced by a fresh one (the matchers of other requests are unaffected).
import { InvalidRequestError } from "./request.js";

/** @typedef {{kind: "json_schema"|"ebnf"|"structural_tag"|"tags", source: string, field: string}} GrammarSpec */

export const XGRAMMAR_VERSION = "0.1.27";

/** @type {Promise<any>|null} */
let loading = null;
/** @type {string|null} the last [FATAL] line xgrammar printed */
let lastFatal = null;

/** xgrammar's exports (loaded once). @returns {Promise<any>} */
export function loadXGrammar() {
  loading ??= (async () => {
    const original = console.error;
    console.error = (/** @type {unknown[]} */ ...args) => {
      const s = args.map(String).join(" ");
      if (s.startsWith("[FATAL]")) lastFatal = s;
      else if (!s.startsWith("Aborted(")) original.apply(console, args);
    };
    try {
      const mod = await import("@mlc-ai/web-xgrammar");
      /** @type {any} */
      const g = globalThis;
      const x = mod.GrammarCompiler ? mod : mod.default?.GrammarCompiler ? mod.default : g.xgrammar;
      if (!x?.GrammarCompiler) throw new Error("@mlc-ai/web-xgrammar did not load (no GrammarCompiler export)");
      await x.Grammar.builtinJSONGrammar(); // instantiates the wasm now, while console.error is wrapped
      return x;
    } finally {
      console.error = original;
    }
  })();
  loading.catch(() => (loading = null)); // a failed load (offline, CSP) may be retried
  return loading;
}

/** xgrammar's error as one line without its C++ source location (as grammar.py's compile_error_text). @param {string} s */
export function compileErrorText(s) {
  return s.replace(/^\[FATAL\] \S+:\d+: (Check failed: \(.*?\) is false: )?/, "").trim().slice(0, 200);
}

/**
 * (vocab type, add_prefix_space) of an HF tokenizer.json, as grammar.py's vocab_metadata.
 * @param {any} tokenizerJson @returns {[string, boolean]}
 */
export function vocabMetadata(tokenizerJson) {
  const kinds = (/** @type {any} */ node) => {
    if (!node || typeof node !== "object" || Array.isArray(node)) return [];
    /** @type {string[]} */
    const out = [String(node.type)];
    for (const key of ["decoders", "pretokenizers", "normalizers"]) for (const sub of node[key] ?? []) out.push(...kinds(sub));
    return out;
  };
  const dec = kinds(tokenizerJson.decoder);
  const vt = dec.includes("ByteLevel") ? "byte_level" : dec.includes("ByteFallback") ? "byte_fallback" : "raw";
  let prefix = false;
  for (const root of [tokenizerJson.normalizer, tokenizerJson.pre_tokenizer]) {
    const stack = [root];
    while (stack.length) {
      const n = stack.pop();
      if (!n || typeof n !== "object" || Array.isArray(n)) continue;
      if (n.type === "Prepend" && n.prepend === "▁") prefix = true;
      if (n.type === "Metaspace" && (n.prepend_scheme === "always" || n.prepend_scheme === "first" || n.add_prefix_space === true)) prefix = true;
      for (const key of ["normalizers", "pretokenizers"]) stack.push(...(n[key] ?? []));
    }
  }
  return [vt, prefix];
}

/**
 * Token strings by id from tokenizer.json (model.vocab: an object for BPE/WordPiece, [token, score]
 * pairs for Unigram; added_tokens on top), unprocessed: xgrammar decodes them per vocab type.
 * @param {any} tokenizerJson @returns {string[]}
 */
export function vocabFromTokenizerJson(tokenizerJson) {
  /** @type {string[]} */
  const vocab = [];
  const v = tokenizerJson.model?.vocab;
  if (Array.isArray(v)) v.forEach((e, i) => (vocab[i] = String(Array.isArray(e) ? e[0] : e)));
  else for (const [tok, id] of Object.entries(v ?? {})) vocab[Number(id)] = tok;
  for (const a of tokenizerJson.added_tokens ?? []) vocab[a.id] = a.content;
  for (let i = 0; i < vocab.length; i++) vocab[i] ??= "";
  return vocab;
}

/** One completion's walk through a compiled grammar. */
export class Guide {
  /** @param {any} matcher */
  constructor(matcher) {
    this.matcher = matcher;
    /** @type {Int32Array|null} */
    this._mask = null;
    this.maskSeconds = 0; // time in accept + mask (bench/ reports it per token)
    this.tokens = 0; // tokens accepted
  }

  /** The bitmask of the tokens allowed next. @returns {Promise<Int32Array>} */
  async mask() {
    if (this._mask == null) {
      const t = performance.now();
      this._mask = await this.matcher.getNextTokenBitmask();
      this.maskSeconds += (performance.now() - t) / 1000;
    }
    if (!this._mask?.some((w) => w !== 0)) {
      // a vocabulary that cannot spell what the grammar requires next
      throw new InvalidRequestError(`the grammar allows no token of this model's vocabulary after ${this.tokens} tokens`, "response_format");
    }
    return /** @type {Int32Array} */ (this._mask);
  }

  /**
   * Accept `tok` and compute the next mask. The engine calls this after it has started the
   * model's step, so the (synchronous, wasm) work runs while the GPU computes.
   * @param {number} tok
   */
  advance(tok) {
    const t = performance.now();
    if (!this.matcher.acceptToken(tok)) throw new Error(`the grammar rejected token ${tok} that its own mask allowed`);
    this._mask = null;
    this.tokens++;
    this.maskSeconds += (performance.now() - t) / 1000;
    return this.mask();
  }

  dispose() {
    this.matcher.dispose();
  }
}

/** Compiles GrammarSpecs for one tokenizer (vocab, stop ids) into Guides. */
export class Grammars {
  /** @param {any} xgr @param {any} info */
  constructor(xgr, info) {
    this.xgr = xgr;
    this.info = info;
    /** @type {any} */
    this.compiler = null;
  }

  /**
   * @param {string[]} vocab token strings by id (tokenizer.json's, unprocessed)
   * @param {any} tokenizerJson @param {number} vocabSize the logits' size @param {Iterable<number>} stopIds
   */
  static async create(vocab, tokenizerJson, vocabSize, stopIds) {
    let xgr;
    try {
      xgr = await loadXGrammar();
    } catch (err) {
      throw new InvalidRequestError(`structured output needs the grammar engine @mlc-ai/web-xgrammar ${XGRAMMAR_VERSION}, which did not load: ${/** @type {any} */ (err)?.message ?? err}`, "response_format");
    }
    const [vt, prefix] = vocabMetadata(tokenizerJson);
    const stops = [...new Set(stopIds)].sort((a, b) => a - b);
    const info = await xgr.TokenizerInfo.createTokenizerInfo(vocab, vt, prefix, vocabSize, stops);
    return new Grammars(xgr, info);
  }

  /** @param {GrammarSpec} spec @returns {Promise<any>} the compiled grammar; InvalidRequestError naming spec.field */
  async compile(spec) {
    this.compiler ??= await this.xgr.GrammarCompiler.createGrammarCompiler(this.info, true);
    lastFatal = null;
    try {
      if (spec.kind === "json_schema") return await this.compiler.compileJSONSchema(spec.source, false, -1, undefined, true);
      if (spec.kind === "ebnf") return await this.compiler.compileGrammar(spec.source);
      if (spec.kind === "tags") return await this.compiler.compileGrammar(await this._tagsEbnf(JSON.parse(spec.source)));
      return await this.compiler.compileStructuralTag(spec.source);
    } catch (err) {
      this.compiler = null; // the abort may have left it half-updated: the next compile gets a fresh one
      const what = { json_schema: "schema", ebnf: "grammar", structural_tag: "tool grammar", tags: "tool grammar" }[spec.kind];
      const text = lastFatal ? compileErrorText(lastFatal) : String(/** @type {any} */ (err)?.message ?? err);
      throw new InvalidRequestError(`${spec.field}: the ${what} cannot be compiled: ${text}`, spec.field.split(".")[0]);
    }
  }

  /**
   * EBNF of begin JSON end [(separator begin JSON end)*] with xgrammar's compact grammar of
   * cfg.schema, its root renamed (as grammar.py's _tags_ebnf).
   * @param {{schema: any, begin: string, end: string, separator: string, many: boolean}} cfg
   */
  async _tagsEbnf(cfg) {
    const g = await this.xgr.Grammar.fromJSONSchema(JSON.stringify(cfg.schema), false, -1, undefined, true);
    const inner = g.toString().replace(/^root ::=/m, "tool_call ::=");
    g.dispose();
    const one = `${JSON.stringify(cfg.begin)} tool_call ${JSON.stringify(cfg.end)}`;
    return `root ::= ${one}${cfg.many ? ` (${JSON.stringify(cfg.separator)} ${one})*` : ""}\n${inner}`;
  }

  /** @param {any} compiled @returns {Promise<Guide>} */
  async guide(compiled) {
    return new Guide(await this.xgr.GrammarMatcher.createGrammarMatcher(compiled));
  }
}
