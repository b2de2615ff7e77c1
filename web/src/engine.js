// OpenAI-style engine over a LanguageModel (the WebGPU runtime, or a fake in tests), with
// the semantics of webllm_py/runtime/engine.py, so the same seed gives the same tokens:
//
// - chat: render the bundle's chat template (add_generation_prompt) and tokenize without
//   special tokens; completions: tokenize the prompt with special tokens;
// - multi-turn prefix reuse: keep the part of the KV cache's common prefix with the new prompt
//   that a fresh prefill would write bit for bit the same (kv_reuse.js: a request and seed give
//   the same tokens whatever came before) and forward the rest (at least one token, for logits);
// - sampling per docs/sampling.md, counter = index of the generated token, choice k of n
//   uses seed + k;
// - stopping on eos ids, stop strings (never emitting text that may still become a stop
//   string), max_tokens, a full context window ("length") and interruptGenerate() ("abort");
// - streaming and non-streaming share one generation loop, so the concatenated stream text
//   is the non-stream text by construction.
//
// One request runs at a time (the model has one KV cache): requests queue, and a stream
// holds the engine until it is exhausted or its iterator is closed (break / return()).
import { applyChatTemplate } from "./chat_template.js";
import { WebLLMError } from "./errors.js";
import { loadBundle } from "./loader.js";
import { ContextPolicy, checkPolicy } from "./context_policy.js";
import { OverlappedLoad } from "./engine_load.js";
import { KVLedger, modelRule } from "./kv_reuse.js";
import { attachSignal, currentMessage, recordMessage, reloadEngine, signalOf, waitTurn } from "./lifecycle.js";
import { InvalidRequestError, StopMatcher, validateRequest } from "./request.js";
import { checkFields } from "./request_fields.js";
import { Grammars, vocabFromTokenizerJson } from "./grammar.js";
import { responseFormatSpec } from "./structured.js";
import { toolGrammar, toolPlan } from "./tool_calls.js";
import { StreamedReply, promptMessages, reply, templateTools, toolMode } from "./tool_chat.js";
import { WebGPURuntime } from "./runtime.js";
import { Embeddings, createEmbeddingEngine } from "./embeddings.js";
import { gpuArgmaxOk } from "./gpu_sampling.js";
import { applyPenalties, logSoftmax, sampleAdjusted } from "./sampler.js";
import { TokenBytes } from "./token_bytes.js";
import { Tokenizer } from "./tokenizer.js";

const ROLES = ["system", "developer", "user", "assistant", "tool"];
/** Share of the init progress bar given to downloading; the rest is GPU upload + pipeline compilation. */
const LOAD_SHARE = 0.9;

/**
 * @typedef {import("./request.js").Request} Request
 * @typedef {{token: number, logprob: number, top: [number, number][], offset: number}} TokenInfo
 * @typedef {{text: string, info: TokenInfo|null, finish: string|null}} Step
 * @typedef {object} LanguageModel what the engine needs of a runtime (WebGPURuntime has it)
 * @property {number} vocabSize
 * @property {number} contextWindow
 * @property {number} position tokens in the KV cache
 * @property {() => void} reset
 * @property {(position: number) => void} truncate
 * @property {(ids: number[]) => Promise<Float32Array>} forward last token's logits; may be reused by the next call
 * @property {(ids: number[]) => Promise<number>} [forwardArgmax] forward one token, resolve to argmax(logits) picked on the GPU (gpu_sampling.js)
 * @property {number} [prefillChunk] the largest step (forward chunks longer ids into steps of it)
 * @property {"program"|"schedule"|"any"} [kvReuse] which cached rows are reusable bit-exactly (kv_reuse.js)
 * @property {() => void} [destroy]
 * @property {string} [precision]
 * @property {Record<string, string>} [adapterInfo]
 */

const newId = (/** @type {string} */ prefix) => {
  const b = new Uint8Array(12);
  globalThis.crypto.getRandomValues(b);
  return `${prefix}-${Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("")}`;
};
const now = () => Math.floor(Date.now() / 1000);
const seconds = () => performance.now() / 1000;

/** The k ids of largest value, descending, ties by lower id. @param {Float64Array} v @param {number} k */
function topKIds(v, k) {
  /** @type {number[]} */
  const top = [];
  for (let i = 0; i < v.length; i++) {
    if (top.length === k && !(v[i] > v[top[k - 1]])) continue; // strictly greater: lower ids win ties
    let j = top.length < k ? top.length : k - 1;
    while (j > 0 && v[i] > v[top[j - 1]]) j--;
    top.splice(j, 0, i);
    if (top.length > k) top.pop();
  }
  return top;
}

export class Engine {
  /**
   * @param {LanguageModel} model
   * @param {Tokenizer} tokenizer
   * @param {{manifest?: any, modelName?: string, contextOverflow?: "error"|"slide", tokenBytes?: () => TokenBytes, tokenizerJson?: () => any}} [options]
   *   tokenBytes: lazily built token → bytes table for logprobs; tokenizerJson: the parsed
   *   tokenizer.json, read on the first structured request (the grammar engine's vocabulary)
   */
  constructor(model, tokenizer, options = {}) {
    this.model = model;
    this.tokenizer = tokenizer;
    const manifest = options.manifest ?? {};
    this.manifest = manifest;
    const gen = manifest.generation ?? {};
    this.generationDefaults = { ...gen };
    this.eosTokenIds = new Set([
      ...(tokenizer.eosTokenIds ?? []), ...(manifest.tokenizer?.eos_token_ids ?? []), ...(gen.eos_token_ids ?? []),
    ].map(Number));
    this.modelName = options.modelName ?? manifest.model?.id ?? "model";
    this.embeddings = new Embeddings(null, null, null, this.modelName); // a language model: create() refuses
    this._tokenBytesFactory = options.tokenBytes ?? (() => new TokenBytes({}, (id) => tokenizer.idToToken(id)));
    /** @type {TokenBytes|null} */
    this._tokenBytes = null;
    this._tokenizerJson = options.tokenizerJson ?? null;
    /** @type {Promise<Grammars>|null} built on the first structured request (grammar.js) */
    this._grammars = null;
    this._kvRule = modelRule(model);
    /** @type {KVLedger|null} ids in the model's KV cache, which rows are exactly reusable (null: unknown, reset before use) */
    this._kv = null;
    /** @type {Promise<void>} the request queue's tail */
    this._tail = Promise.resolve();
    this._interrupted = false;
    this._unloaded = false;
    /** @type {Record<string, number>} */
    this._stats = {};
    /** contextOverflow: "error" | "slide" (context_policy.js) */
    this._context = new ContextPolicy(options.contextOverflow);
    // create(params, { signal }): the OpenAI client's request options (lifecycle.js)
    this.chat = { completions: { create: (/** @type {any} */ params, /** @type {any} */ opts) => this.createChatCompletion(params, opts) } };
    this.completions = { create: (/** @type {any} */ params, /** @type {any} */ opts) => this.createCompletion(params, opts) };
  }

  // ---- public helpers -------------------------------------------------------------------

  /**
   * Serve another bundle (WebLLM's reload): the running request ends ("abort"), the bundle loads
   * with CreateEngine's options (those not given carry over, but signal, modelName and
   * contextWindowSize), then the old runtime is destroyed. A failed load leaves the old model.
   * @param {string|URL} bundleUrl @param {EngineOptions} [options]
   */
  async reload(bundleUrl, options = {}) {
    await reloadEngine(this, bundleUrl, options, CreateEngine);
  }

  /** The reply text of the last request's first choice, so far (WebLLM's getMessage). */
  async getMessage() {
    return currentMessage(this);
  }

  /** Stop the running generation after the current token; it finishes with finish_reason "abort". */
  interruptGenerate() {
    this._interrupted = true;
  }

  /** Empty the KV cache (the next request prefills from scratch) and clear the stats. */
  async resetChat() {
    const release = await this._acquire();
    try {
      this.model.reset();
      this._kv = new KVLedger(...this._kvRule);
      this._stats = {};
    } finally {
      release();
    }
  }

  /**
   * Prefill and decode throughput of the last request (the keys of webllm_py's
   * Engine.runtime_stats): prompt_tokens, cached_tokens (reused from the KV cache),
   * prefill_tokens / prefill_seconds (forwarded after prefix reuse), decode_tokens /
   * decode_seconds (sampling + decode steps), and *_tokens_per_s.
   * @returns {Record<string, number>}
   */
  runtimeStats() {
    /** @type {Record<string, number>} */
    const s = { ...this._stats };
    for (const k of ["prefill", "decode"]) {
      const sec = s[`${k}_seconds`] ?? 0;
      s[`${k}_tokens_per_s`] = sec > 0 ? (s[`${k}_tokens`] ?? 0) / sec : 0;
    }
    return s;
  }

  /** One line, as WebLLM's runtimeStatsText. */
  async runtimeStatsText() {
    const s = this.runtimeStats();
    return `prefill: ${s.prefill_tokens_per_s.toFixed(1)} tok/s, decode: ${s.decode_tokens_per_s.toFixed(1)} tok/s`;
  }

  /** Free the GPU buffers and the device; the engine is unusable afterwards. */
  async unload() {
    this._interrupted = true;
    const release = await this._acquire();
    try {
      this._unloaded = true;
      this.model.destroy?.();
    } finally {
      release();
    }
  }

  // ---- plumbing -------------------------------------------------------------------------------

  /** Wait for the previous request (or the signal's abort); resolves to the release function. @param {AbortSignal|null} [signal] */
  async _acquire(signal) {
    const prev = this._tail;
    /** @type {() => void} */
    let release = () => {};
    this._tail = new Promise((r) => (release = r));
    await waitTurn(prev, release, signal);
    return release;
  }

  _checkUsable() {
    if (this._unloaded) throw new WebLLMError("this engine was unloaded; create a new one with CreateEngine()");
  }

  /** The logits of the last id, or with pick its argmax id picked on the GPU (gpu_sampling.js). @param {number[]} ids @param {boolean} [pick] */
  async _forward(ids, pick = false) {
    this._signal?.throwIfAborted(); // before the GPU step: the cache still holds what the ledger says
    let logits;
    try {
      logits = await (pick ? /** @type {(ids: number[]) => Promise<number>} */ (this.model.forwardArgmax)(ids) : this.model.forward(ids));
    } catch (err) {
      this._kv = null; // the model's cache state is unknown now
      throw err;
    }
    /** @type {KVLedger} */ (this._kv).wrote(ids);
    return logits;
  }

  /** Reuse the cached rows a fresh prefill writes the same (kv_reuse.js), forward the rest; the last logits. @param {number[]} promptIds */
  async _prefill(promptIds) {
    const m = this.model;
    if (this._kv == null || m.position !== this._kv.ids.length) {
      // unknown state (first use, an error, or someone used the model directly)
      m.reset();
      this._kv = new KVLedger(...this._kvRule);
    }
    const kv = this._kv, [keep, spans] = kv.plan(promptIds);
    if (keep < kv.ids.length) {
      m.truncate(keep);
      kv.truncate(keep);
    }
    const t0 = seconds();
    let logits;
    for (const [a, b] of spans) logits = await this._forward(promptIds.slice(a, b));
    Object.assign(this._stats, {
      prompt_tokens: promptIds.length, cached_tokens: keep, prefill_tokens: promptIds.length - keep, prefill_seconds: seconds() - t0,
    });
    return /** @type {Float32Array} */ (logits); // spans is never empty
  }

  /** @param {number} tok @param {Float64Array} x @param {number} top @param {number} offset @returns {TokenInfo} */
  _tokenInfo(tok, x, top, offset) {
    const lp = logSoftmax(x);
    // under a grammar, masked ids (-Infinity) are no alternatives (and -Infinity is no JSON number)
    return { token: tok, logprob: lp[tok], top: top ? topKIds(lp, top).filter((t) => lp[t] > -Infinity).map((t) => [t, lp[t]]) : [], offset };
  }

  /**
   * One choice: sample until eos / stop string / max_tokens / context full / interrupt. The KV
   * cache holds prompt + generated tokens except the last (never forwarded).
   * @param {Request} req @param {number} seed @param {Float32Array} logits
   * @returns {AsyncGenerator<Step>}
   */
  async *_generate(req, seed, logits) {
    const P = req.promptIds.length;
    let limit = this.model.contextWindow - P; // prompt + completion <= context window
    if (req.maxTokens != null) limit = Math.min(limit, req.maxTokens);
    const s = req.sampling;
    const params = {
      temperature: s.temperature, top_p: s.top_p, top_k: s.top_k, min_p: s.min_p, seed, counter: 0, logit_bias: s.logit_bias,
      repetition_penalty: s.repetition_penalty, presence_penalty: s.presence_penalty, frequency_penalty: s.frequency_penalty,
      promptTokens: req.promptIds, generatedTokens: /** @type {number[]} */ ([]),
      bitmask: /** @type {Int32Array|null} */ (null),
    };
    const guide = req.grammar ? await (await this._grammarEngine()).guide(req.grammar) : null;
    try {
      yield* this._loop(req, params, guide, limit, logits);
    } finally {
      if (guide) {
        this._stats.grammar_seconds = (this._stats.grammar_seconds ?? 0) + guide.maskSeconds;
        guide.dispose();
      }
    }
  }

  /**
   * The sampling loop of _generate.
   * @param {Request} req @param {any} params the sampler's parameters (their counter and history advance)
   * @param {import("./grammar.js").Guide|null} guide @param {number} limit @param {Float32Array} logits the prompt's
   * @returns {AsyncGenerator<Step>}
   */
  async *_loop(req, params, guide, limit, logits) {
    const detok = this.tokenizer.createStreamDecoder({ promptIds: req.promptIds, skipSpecialTokens: !req.keepSpecial });
    const stopper = new StopMatcher(req.stop);
    const stats = this._stats;
    let decoded = 0; // characters produced so far (logprobs text_offset)
    let n = 0;
    let t = seconds();
    const pick = gpuArgmaxOk(req, this.model); // greedy only: decode tokens argmax'd on the GPU
    let picked = -1;
    const step = (/** @type {string} */ text, /** @type {TokenInfo|null} */ info, /** @type {string|null} */ finish = null) => {
      // time spent producing this token, excluding the consumer's time between yields
      stats.decode_seconds += seconds() - t;
      stats.decode_tokens += 1;
      return { text, info, finish };
    };
    for (;;) {
      params.bitmask = guide ? await guide.mask() : null;
      const x = picked < 0 ? applyPenalties(logits, params) : null;
      const tok = x ? sampleAdjusted(x, params) : picked; // exactly what the sampler would pick (nothing reads x then)
      params.counter++;
      params.generatedTokens.push(tok);
      n++;
      const info = req.logprobs ? this._tokenInfo(tok, /** @type {Float64Array} */ (x), req.topLogprobs, decoded) : null;
      if (this.eosTokenIds.has(tok) && !req.ignoreEos) {
        let [out, hit] = stopper.feed(detok.flush());
        if (!hit) out += stopper.flush();
        yield step(out, info, "stop");
        return;
      }
      const delta = detok.push(tok);
      decoded += delta.length;
      let [out, hit] = stopper.feed(delta);
      if (hit) {
        yield step(out, info, "stop");
        return;
      }
      if (n >= limit || this._interrupted) {
        const [tail, hit2] = stopper.feed(detok.flush());
        out += tail;
        if (!hit2) out += stopper.flush();
        yield step(out, info, hit2 ? "stop" : n >= limit ? "length" : "abort");
        return;
      }
      yield step(out, info);
      t = seconds();
      const next = this._forward([tok], pick); // the GPU work is submitted now...
      const mask = guide?.advance(tok); // ...so the next mask is computed while it runs
      if (pick) picked = /** @type {number} */ (await next);
      else logits = /** @type {Float32Array} */ (await next);
      await mask;
    }
  }

  /**
   * (index, steps) per choice; choice k uses seed + k and the same prompt logits.
   * @param {Request} req
   * @returns {AsyncGenerator<[number, AsyncGenerator<Step>]>}
   */
  async *_choices(req) {
    this._checkUsable();
    this._interrupted = false;
    /** @type {AbortSignal|null} this request's (lifecycle.js) */
    this._signal = signalOf(req);
    this._stats = { decode_seconds: 0, decode_tokens: 0 };
    let first = await this._prefill(req.promptIds);
    // The runtime reuses its logits array; other choices need the prompt's logits again.
    if (req.n > 1) first = Float32Array.from(first);
    const P = req.promptIds.length;
    for (let k = 0; k < req.n; k++) {
      if (k) {
        this.model.truncate(P); // back to just the prompt; its last logits are `first`
        /** @type {KVLedger} */ (this._kv).truncate(P);
      }
      yield [k, recordMessage(this, k, this._generate(req, req.seed + k, first))];
    }
  }

  /** @param {Request} req @returns {Promise<{text: string, infos: TokenInfo[], finish: string|null, tokens: number}[]>} */
  async _run(req) {
    const release = await this._acquire(signalOf(req));
    try {
      const results = [];
      for await (const [, steps] of this._choices(req)) {
        const r = { text: "", infos: /** @type {TokenInfo[]} */ ([]), finish: /** @type {string|null} */ (null), tokens: 0 };
        for await (const s of steps) {
          r.text += s.text;
          r.tokens++;
          if (s.info) r.infos.push(s.info);
          r.finish = s.finish;
        }
        results.push(r);
      }
      return results;
    } finally {
      release();
    }
  }

  /**
   * (text, token infos, finish, tokens so far) per emitted piece; infos of tokens that
   * produced no text ride along with the next piece.
   * @param {Request} req
   * @returns {AsyncGenerator<{text: string, infos: TokenInfo[], finish: string|null, ntok: number}>}
   */
  async *_stream(req) {
    const release = await this._acquire(signalOf(req));
    try {
      for await (const [, steps] of this._choices(req)) {
        /** @type {TokenInfo[]} */
        let pending = [];
        let ntok = 0;
        for await (const s of steps) {
          ntok++;
          if (s.info) pending.push(s.info);
          if (s.text || s.finish) {
            yield { text: s.text, infos: pending, finish: s.finish, ntok };
            pending = [];
          }
        }
      }
    } finally {
      release();
    }
  }

  _bytes() {
    return (this._tokenBytes ??= this._tokenBytesFactory());
  }

  /** The grammar engine over this tokenizer (loaded on the first structured request). @returns {Promise<Grammars>} */
  _grammarEngine() {
    if (!this._grammars) {
      const json = this._tokenizerJson?.();
      if (!json) throw new InvalidRequestError("structured output needs the bundle's tokenizer.json, which this engine was not given", "response_format");
      this._grammars = Grammars.create(vocabFromTokenizerJson(json), json, this.model.vocabSize, this.eosTokenIds);
      this._grammars.catch(() => (this._grammars = null));
    }
    return this._grammars;
  }

  // ---- chat ---------------------------------------------------------------------------------

  /** @param {any} messages @param {any} templateKwargs @param {import("./tool_chat.js").ToolMode|null} [mode] @returns {number[]} */
  _chatPrompt(messages, templateKwargs, mode = null) {
    if (!Array.isArray(messages) || !messages.length) {
      throw new InvalidRequestError("messages must be a non-empty list of {role, content} objects", "messages");
    }
    const msgs = messages.map((m, i) => {
      if (!m || typeof m !== "object" || Array.isArray(m)) throw new InvalidRequestError(`messages[${i}] must be an object with role and content`, "messages");
      const role = m.role;
      if (!ROLES.includes(role)) throw new InvalidRequestError(`messages[${i}].role must be one of ${JSON.stringify(ROLES)}, got ${JSON.stringify(role)}`, "messages");
      let content = m.content;
      if (Array.isArray(content)) {
        content = content.map((part, j) => {
          if (!part || part.type !== "text" || typeof part.text !== "string") {
            throw new InvalidRequestError(`messages[${i}].content[${j}]: only text parts are supported`, "messages");
          }
          return part.text;
        }).join("");
      } else if (content == null) {
        if (role !== "assistant") throw new InvalidRequestError(`messages[${i}].content is required for role "${role}"`, "messages");
      } else if (typeof content !== "string") {
        throw new InvalidRequestError(`messages[${i}].content must be a string or a list of text parts`, "messages");
      }
      // OpenAI's "developer" role is the system prompt for templates, which know "system".
      return { ...m, role: role === "developer" ? "system" : role, content };
    });
    if (templateKwargs != null && (typeof templateKwargs !== "object" || Array.isArray(templateKwargs))) {
      throw new InvalidRequestError("chat_template_kwargs must be an object", "chat_template_kwargs");
    }
    for (const k of Object.keys(templateKwargs ?? {})) {
      if (["messages", "add_generation_prompt", "tools", "documents"].includes(k)) {
        throw new InvalidRequestError(`chat_template_kwargs.${k} is not allowed: the engine sets that template variable itself${k === "tools" ? " (give tools as the request field tools)" : ""}`, "chat_template_kwargs");
      }
    }
    const template = this.tokenizer.config?.chat_template;
    return applyChatTemplate(this.tokenizer, promptMessages(msgs, mode, template), {
      add_generation_prompt: true, kwargs: templateKwargs ?? {}, tools: templateTools(mode),
    }).ids;
  }

  /** @param {TokenInfo[]} infos */
  _chatLogprobs(infos) {
    const tb = this._bytes();
    const entry = (/** @type {number} */ t, /** @type {number} */ lp) => ({ token: tb.text(t), logprob: lp, bytes: Array.from(tb.bytes(t)) });
    return {
      content: infos.map((i) => ({ ...entry(i.token, i.logprob), top_logprobs: i.top.map(([t, lp]) => entry(t, lp)) })),
      refusal: null,
    };
  }

  /**
   * OpenAI `chat.completions.create`. Defaults: temperature / top_p / repetition_penalty from
   * the bundle's `generation` (else 1), max_tokens until eos or the context window is full, a
   * random seed. stream: true resolves to an async iterable of chunks.
   * @param {Record<string, any>} params @param {{signal?: AbortSignal}} [requestOptions]
   */
  async createChatCompletion(params, requestOptions) {
    this._checkUsable();
    checkFields({ messages: true, ...params }, true);
    const { messages, chat_template_kwargs, response_format, tools, tool_choice, parallel_tool_calls, ...rest } = params ?? {};
    const spec = responseFormatSpec(response_format);
    const mode = toolMode(toolPlan(tools, tool_choice, parallel_tool_calls), this.tokenizer.config?.chat_template);
    if (spec && mode?.constrained) {
      throw new InvalidRequestError('response_format cannot be combined with tool_choice "required" or a named function (the reply is then the call)', "response_format");
    }
    const prompt = this._context.fitChat(this.model, this.manifest.context_window ?? this.model.contextWindow, messages,
      (/** @type {any} */ m) => this._chatPrompt(m, chat_template_kwargs, mode), rest.max_tokens ?? rest.max_completion_tokens);
    const req = attachSignal(this._validate(prompt, rest, true), requestOptions);
    const grammar = spec ?? (mode ? toolGrammar(mode.plan, mode.family) : null);
    if (grammar) {
      if (req.ignoreEos) throw new InvalidRequestError(`ignore_eos cannot be combined with ${grammar.field.split(".")[0]}: the grammar ends the reply with eos`, "ignore_eos");
      req.grammar = await (await this._grammarEngine()).compile(grammar);
    }
    req.keepSpecial = mode?.parses ?? false;
    if (req.stream) return this._chatStream(req, mode);
    const results = await this._run(req);
    const ct = results.reduce((a, r) => a + r.tokens, 0);
    return {
      id: newId("chatcmpl"),
      choices: results.map((r, k) => {
        const { message, finish } = reply(mode, r.text, r.finish);
        return { index: k, message, finish_reason: finish, logprobs: req.logprobs ? this._chatLogprobs(r.infos) : null };
      }),
      created: now(),
      model: req.model,
      object: "chat.completion",
      usage: { prompt_tokens: prompt.length, completion_tokens: ct, total_tokens: prompt.length + ct },
      system_fingerprint: null,
    };
  }

  /** @param {Request} req @param {import("./tool_chat.js").ToolMode|null} mode */
  async *_chatStream(req, mode) {
    const id = newId("chatcmpl"), created = now();
    const chunk = (/** @type {any[]} */ choices, /** @type {any} */ usage = null) => ({
      id, choices, created, model: req.model, object: "chat.completion.chunk", usage, system_fingerprint: null,
    });
    const choice = (/** @type {any} */ delta, /** @type {string|null} */ finish = null, /** @type {any} */ logprobs = null) =>
      ({ index: 0, delta: { role: null, content: null, refusal: null, ...delta }, finish_reason: finish, logprobs });
    yield chunk([choice({ role: "assistant", content: "" })]);
    let ntok = 0;
    const out = new StreamedReply(mode); // holds back what may be a tool call (tool_chat.js)
    for await (const piece of this._stream(req)) {
      ntok = piece.ntok;
      let lp = req.logprobs ? this._chatLogprobs(piece.infos) : null;
      const text = out.content(piece.text);
      if (text) {
        yield chunk([choice({ content: text }, null, lp)]);
        lp = req.logprobs ? this._chatLogprobs([]) : null;
      }
      if (piece.finish) {
        for (const [delta, fin] of out.end(piece.finish)) {
          yield chunk([choice(delta, fin, lp)]);
          lp = req.logprobs ? this._chatLogprobs([]) : null;
        }
      }
    }
    if (req.includeUsage) {
      const P = req.promptIds.length;
      yield chunk([], { prompt_tokens: P, completion_tokens: ntok, total_tokens: P + ntok });
    }
  }

  // ---- text completions -----------------------------------------------------------------------

  /** @param {any} prompt @returns {number[]} */
  _completionPrompt(prompt) {
    let ids;
    if (typeof prompt === "string") ids = this.tokenizer.encode(prompt, { addSpecialTokens: true });
    else if (Array.isArray(prompt) && prompt.length && prompt.every((t) => Number.isSafeInteger(t))) {
      ids = [...prompt];
      const V = this.model.vocabSize;
      if (ids.some((t) => t < 0 || t >= V)) throw new InvalidRequestError(`prompt: token ids must be in [0, ${V})`, "prompt");
    } else {
      throw new InvalidRequestError("prompt must be a string or a non-empty list of token ids (batches are not supported)", "prompt");
    }
    if (!ids.length) throw new InvalidRequestError("prompt is empty (it tokenizes to no tokens)", "prompt");
    return ids;
  }

  /** @param {TokenInfo[]} infos */
  _legacyLogprobs(infos) {
    const tb = this._bytes();
    return {
      tokens: infos.map((i) => tb.text(i.token)),
      token_logprobs: infos.map((i) => i.logprob),
      top_logprobs: infos.map((i) => Object.fromEntries(i.top.map(([t, lp]) => [tb.text(t), lp]))),
      text_offset: infos.map((i) => i.offset),
    };
  }

  /**
   * OpenAI (legacy) `completions.create` on a prompt string (tokenized with special tokens)
   * or a list of token ids. `logprobs` is the number of top alternatives per token (0..20).
   * @param {Record<string, any>} params @param {{signal?: AbortSignal}} [requestOptions]
   */
  async createCompletion(params, requestOptions) {
    this._checkUsable();
    checkFields({ prompt: true, ...params }, false);
    const { prompt, ...rest } = params ?? {};
    const ids = this._context.check(this.model, this.manifest.context_window ?? this.model.contextWindow, this._completionPrompt(prompt));
    const req = attachSignal(this._validate(ids, rest, false), requestOptions);
    if (req.stream) return this._completionStream(req);
    const results = await this._run(req);
    const ct = results.reduce((a, r) => a + r.tokens, 0);
    return {
      id: newId("cmpl"),
      choices: results.map((r, k) => ({
        index: k, text: r.text, finish_reason: r.finish, logprobs: req.logprobs ? this._legacyLogprobs(r.infos) : null,
      })),
      created: now(),
      model: req.model,
      object: "text_completion",
      usage: { prompt_tokens: ids.length, completion_tokens: ct, total_tokens: ids.length + ct },
      system_fingerprint: null,
    };
  }

  /** @param {Request} req */
  async *_completionStream(req) {
    const id = newId("cmpl"), created = now();
    const piece = (/** @type {any[]} */ choices, /** @type {any} */ usage = null) => ({
      id, choices, created, model: req.model, object: "text_completion", usage, system_fingerprint: null,
    });
    let ntok = 0;
    for await (const p of this._stream(req)) {
      ntok = p.ntok;
      let lp = req.logprobs ? this._legacyLogprobs(p.infos) : null;
      if (p.text) {
        yield piece([{ index: 0, text: p.text, finish_reason: null, logprobs: lp }]);
        lp = req.logprobs ? this._legacyLogprobs([]) : null;
      }
      if (p.finish) yield piece([{ index: 0, text: "", finish_reason: p.finish, logprobs: lp }]);
    }
    if (req.includeUsage) {
      const P = req.promptIds.length;
      yield piece([], { prompt_tokens: P, completion_tokens: ntok, total_tokens: P + ntok });
    }
  }

  /** @param {number[]} ids @param {Record<string, any>} params @param {boolean} chat */
  _validate(ids, params, chat) {
    return validateRequest(ids, params, {
      chat, generation: this.generationDefaults, vocabSize: this.model.vocabSize,
      contextWindow: this.model.contextWindow, model: this.modelName,
    });
  }
}

/**
 * @typedef {object} EngineOptions
 * @property {(report: import("./progress.js").ProgressReport) => void} [initProgressCallback]
 *   monotonic; downloads fill 0..0.9, GPU upload and pipeline compilation the rest; exactly 1 once ready
 * @property {"auto"|"f32"|"f16"|"idot"} [precision] auto: idot on CPU adapters (SwiftShader), else f16 programs when the adapter has shader-f16
 * @property {import("./cache.js").BundleCache|boolean|string} [cache] default true (Cache Storage)
 * @property {boolean} [verifyCache] re-hash every cached file, also those this package verified when it stored them (default false)
 * @property {AbortSignal} [signal]
 * @property {typeof fetch} [fetch]
 * @property {GPU} [gpu] defaults to navigator.gpu
 * @property {GPUAdapter} [adapter]
 * @property {string} [modelName] the `model` of responses (default: manifest model.id)
 * @property {number} [contextWindowSize] KV-cache rows, up to the bundle's context_window (default); fewer use less GPU memory
 * @property {"error"|"slide"} [contextOverflow] a chat prompt past the window: an error (default) or drop the oldest turns (context_policy.js)
 */

/**
 * Download (or read from the cache) and verify a bundle, upload it to a WebGPU device, and
 * return an OpenAI-style engine.
 * @param {string|URL} bundleUrl the bundle folder (or its manifest.json)
 * @param {EngineOptions} [options]
 * @returns {Promise<Engine>}
 */
export async function CreateEngine(bundleUrl, options = {}) {
  checkPolicy(options.contextOverflow ?? "error"); // before any download
  const cb = options.initProgressCallback;
  const start = seconds();
  let totals = { loadedBytes: 0, totalBytes: 0 };
  const report = (/** @type {number} */ progress, /** @type {string} */ text) =>
    cb?.({ progress, ...totals, text, timeElapsed: seconds() - start });
  // the runtime compiles and uploads while the files are read and verified (engine_load.js)
  const overlap = new OverlappedLoad(options, report, LOAD_SHARE);
  const bundle = await loadBundle(bundleUrl, {
    cache: options.cache ?? true,
    verifyCache: options.verifyCache,
    signal: overlap.signal,
    fetch: options.fetch,
    onManifest: overlap.onManifest,
    onFile: overlap.onFile,
    onProgress: (r) => {
      totals = { loadedBytes: r.loadedBytes, totalBytes: r.totalBytes };
      overlap.downloaded = r.progress;
      report(overlap.progress(), r.text);
    },
  }).catch((err) => overlap.fail(err));
  options.signal?.throwIfAborted();
  if (/** @type {any} */ (bundle.manifest).embedding) {
    // an embedding bundle: an EmbeddingEngine (embeddings.create; its chat and completions refuse)
    return /** @type {any} */ (await createEmbeddingEngine(bundle, options, report, LOAD_SHARE));
  }
  const runtime = /** @type {WebGPURuntime} */ (await overlap.ready());
  try {
    options.signal?.throwIfAborted();
    const tokenizer = Tokenizer.fromBundle(bundle);
    const tokFile = bundle.files.get(bundle.manifest.tokenizer.file);
    // The weights live on the GPU now: drop the shard bytes, which would otherwise stay in
    // the page's heap next to the GPU copy (~180 MiB for SmolLM2-135M q4).
    for (const path of [...bundle.files.keys()]) if (path.startsWith("params/")) bundle.files.delete(path);
    const engine = new Engine(runtime, tokenizer, {
      manifest: bundle.manifest,
      modelName: options.modelName,
      contextOverflow: options.contextOverflow,
      // parsed again only if logprobs are asked for (tokenizer.json can be megabytes)
      tokenBytes: () => new TokenBytes(JSON.parse(new TextDecoder().decode(tokFile)), (id) => tokenizer.idToToken(id)),
      tokenizerJson: () => JSON.parse(new TextDecoder().decode(tokFile)),
    });
    const info = runtime.adapterInfo;
    report(1, `Finish loading on WebGPU (${runtime.precision}, ${info.vendor || "?"} ${info.architecture || ""})`.trim());
    /** @type {any} */ (engine)._createOptions = options; // what reload() carries over (lifecycle.js)
    return engine;
  } catch (err) {
    runtime.destroy();
    throw err;
  }
}
