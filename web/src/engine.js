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
//
// Layout: this module holds the engine's state, its request queue, the public helpers and
// CreateEngine; the generation loop is engine_generate.js, chat completions engine_chat.js,
// text completions engine_completions.js (functions of an Engine).
import { WebLLMError } from "./errors.js";
import { loadBundle } from "./loader.js";
import { ContextPolicy, checkPolicy } from "./context_policy.js";
import { OverlappedLoad } from "./engine_load.js";
import { KVLedger, modelRule } from "./kv_reuse.js";
import { currentMessage, reloadEngine, waitTurn } from "./lifecycle.js";
import { InvalidRequestError, validateRequest } from "./request.js";
import { Grammars, vocabFromTokenizerJson } from "./grammar.js";
import { WebGPURuntime } from "./runtime.js";
import { Embeddings, createEmbeddingEngine } from "./embeddings.js";
import { TokenBytes } from "./token_bytes.js";
import { Tokenizer } from "./tokenizer.js";
import { seconds } from "./engine_generate.js";
import { chatPrompt, createChatCompletion } from "./engine_chat.js";
import { createCompletion } from "./engine_completions.js";

/** Share of the init progress bar given to downloading; the rest is GPU upload + pipeline compilation. */
const LOAD_SHARE = 0.9;

/**
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
    /** @type {AbortSignal|null} the running request's (lifecycle.js), set when it starts (engine_generate.js) */
    this._signal = null;
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


  // ---- chat and text completions (engine_chat.js, engine_completions.js) -------------------

  /** @param {any} messages @param {any} templateKwargs @param {import("./tool_chat.js").ToolMode|null} [mode] @returns {number[]} */
  _chatPrompt(messages, templateKwargs, mode = null) {
    return chatPrompt(this, messages, templateKwargs, mode);
  }

  /**
   * OpenAI `chat.completions.create`. Defaults: temperature / top_p / repetition_penalty from
   * the bundle's `generation` (else 1), max_tokens until eos or the context window is full, a
   * random seed. stream: true resolves to an async iterable of chunks.
   * @param {Record<string, any>} params @param {{signal?: AbortSignal}} [requestOptions]
   */
  async createChatCompletion(params, requestOptions) {
    return createChatCompletion(this, params, requestOptions);
  }


  /**
   * OpenAI (legacy) `completions.create` on a prompt string (tokenized with special tokens)
   * or a list of token ids. `logprobs` is the number of top alternatives per token (0..20).
   * @param {Record<string, any>} params @param {{signal?: AbortSignal}} [requestOptions]
   */
  async createCompletion(params, requestOptions) {
    return createCompletion(this, params, requestOptions);
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