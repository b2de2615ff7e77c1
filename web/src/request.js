// Request validation and stop strings for the OpenAI-style engine: the same rules, defaults,
// limits and messages as webllm_py/runtime/request.py (validate_request, StopMatcher), so a
// request that works in Python works here and a seed gives the same tokens. Limits: n <= MAX_N
// (OpenAI's), and for n > 1, n x (max_tokens, else the room left in the context window) <=
// MAX_GENERATED_TOKENS, since a non-streamed request holds every choice until it ends.
import { ContextWindowExceededError, WebLLMError } from "./errors.js";
import { randomSeed } from "./sampler.js";

export const MAX_SEED = 2 ** 53;
export const MAX_TOP_LOGPROBS = 20;
export const MAX_N = 128;
export const MAX_GENERATED_TOKENS = 2 ** 16;

/** A request parameter is invalid; `param` names it. */
export class InvalidRequestError extends WebLLMError {
  /** @param {string} message @param {string|null} [param] */
  constructor(message, param) {
    super(message);
    this.param = param ?? null;
  }
}

/**
 * @typedef {object} Sampling
 * @property {number} temperature
 * @property {number} top_p
 * @property {number} frequency_penalty
 * @property {number} presence_penalty
 * @property {number} repetition_penalty
 * @property {Map<number, number>} logit_bias
 * @property {number} top_k 0: no limit
 * @property {number} min_p 0: no limit
 * @typedef {object} Request
 * @property {number[]} promptIds
 * @property {Sampling} sampling
 * @property {number|null} maxTokens
 * @property {string[]} stop
 * @property {number} seed
 * @property {number} n
 * @property {boolean} stream
 * @property {boolean} includeUsage
 * @property {boolean} logprobs
 * @property {number} topLogprobs
 * @property {string} model
 * @property {boolean} ignoreEos
 * @property {any} [grammar] a compiled grammar (grammar.js) the reply must follow
 * @property {boolean} [keepSpecial] decode special tokens too (tool-call markers such as [TOOL_CALLS])
 */

const isInt = (/** @type {unknown} */ v) => typeof v === "number" && Number.isSafeInteger(v);
const isNum = (/** @type {unknown} */ v) => typeof v === "number" && Number.isFinite(v);
/** A value for an error message: one short line, whatever the value. */
const show = (/** @type {unknown} */ v, limit = 60) => {
  let s;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length <= limit ? s : `${s.slice(0, limit - 3)}...`;
};

/** @param {string} name @param {unknown} v @param {number|null} [lo] @param {number|null} [hi] @returns {number|null} */
function optInt(name, v, lo = null, hi = null) {
  if (v == null) return null;
  if (!isInt(v)) throw new InvalidRequestError(`${name} must be an integer, got ${show(v)}`, name);
  const x = /** @type {number} */ (v);
  if ((lo != null && x < lo) || (hi != null && x > hi)) {
    throw new InvalidRequestError(`${name} must be ${hi != null ? `in [${lo}, ${hi}]` : `>= ${lo}`}, got ${x}`, name);
  }
  return x;
}

/**
 * @param {string} name @param {unknown} v @param {{lo?: number, hi?: number, loOpen?: boolean}} [range]
 * @returns {number|null}
 */
function optNum(name, v, { lo, hi, loOpen = false } = {}) {
  if (v == null) return null;
  if (!isNum(v)) throw new InvalidRequestError(`${name} must be a finite number, got ${show(v)}`, name);
  const x = /** @type {number} */ (v);
  if (lo != null && (loOpen ? x <= lo : x < lo)) throw new InvalidRequestError(`${name} must be ${loOpen ? ">" : ">="} ${lo}, got ${x}`, name);
  if (hi != null && x > hi) throw new InvalidRequestError(`${name} must be <= ${hi}, got ${x}`, name);
  return x;
}

/** @param {string} name @param {unknown} v @returns {boolean|null} */
function optBool(name, v) {
  if (v == null) return null;
  if (typeof v !== "boolean") throw new InvalidRequestError(`${name} must be a boolean, got ${show(v)}`, name);
  return v;
}

/**
 * Validate request parameters into a Request (both APIs).
 * @param {number[]} promptIds
 * @param {Record<string, any>} p the create() parameters
 * @param {{chat: boolean, generation: Record<string, any>, vocabSize: number, contextWindow: number, model: string}} ctx
 * @returns {Request}
 */
export function validateRequest(promptIds, p, ctx) {
  const gen = ctx.generation ?? {};
  const stream = optBool("stream", p.stream) ?? false;
  const n = optInt("n", p.n, 1, MAX_N) ?? 1;
  if (n > 1 && stream) throw new InvalidRequestError("n must be 1 when stream=True", "n");
  const maxTokens = optInt("max_tokens", p.max_tokens, 1) ?? optInt("max_completion_tokens", p.max_completion_tokens, 1);
  let temperature = optNum("temperature", p.temperature, { lo: 0 });
  if (temperature == null) {
    temperature = optNum("generation.temperature", gen.temperature, { lo: 0 });
    if (gen.do_sample === false) temperature = 0; // HF generation_config: greedy by default
  }
  const topP = optNum("top_p", p.top_p, { lo: 0, hi: 1, loOpen: true }) ??
    optNum("generation.top_p", gen.top_p, { lo: 0, hi: 1, loOpen: true });
  const topK = optInt("top_k", p.top_k, 0) ?? optInt("generation.top_k", gen.top_k, 0);
  const minP = optNum("min_p", p.min_p, { lo: 0, hi: 1 });
  const ignoreEos = optBool("ignore_eos", p.ignore_eos) ?? false;
  const rep = optNum("repetition_penalty", p.repetition_penalty, { lo: 0, loOpen: true }) ??
    optNum("generation.repetition_penalty", gen.repetition_penalty, { lo: 0, loOpen: true });
  const fp = optNum("frequency_penalty", p.frequency_penalty, { lo: -2, hi: 2 });
  const pp = optNum("presence_penalty", p.presence_penalty, { lo: -2, hi: 2 });
  let seed = optInt("seed", p.seed, 0, MAX_SEED - n);
  if (seed == null) seed = randomSeed() % (MAX_SEED - n);

  /** @type {string[]} */
  let stop;
  if (p.stop == null) stop = [];
  else if (typeof p.stop === "string") stop = [p.stop];
  else if (Array.isArray(p.stop) && p.stop.every((s) => typeof s === "string")) stop = [...p.stop];
  else throw new InvalidRequestError(`stop must be a string or a list of strings, got ${show(p.stop)}`, "stop");
  if (stop.some((s) => s === "")) throw new InvalidRequestError("stop strings must not be empty", "stop");

  /** @type {Map<number, number>} */
  const bias = new Map();
  if (p.logit_bias != null) {
    const lb = p.logit_bias;
    if (typeof lb !== "object" || Array.isArray(lb)) {
      throw new InvalidRequestError(`logit_bias must be a mapping of token id to bias, got ${show(lb)}`, "logit_bias");
    }
    for (const [k, v] of lb instanceof Map ? lb.entries() : Object.entries(lb)) {
      const key = String(k).trim();
      if (!/^-?\d+$/.test(key)) throw new InvalidRequestError(`logit_bias key ${show(k)} is not a token id`, "logit_bias");
      const tid = Number(key);
      if (!(tid >= 0 && tid < ctx.vocabSize)) throw new InvalidRequestError(`logit_bias key ${tid} is not a token id in [0, ${ctx.vocabSize})`, "logit_bias");
      const bv = optNum(`logit_bias[${tid}]`, v, { lo: -100, hi: 100 });
      if (bv == null) throw new InvalidRequestError(`logit_bias[${tid}] must be a number in [-100, 100], got null`, "logit_bias");
      bias.set(tid, bv);
    }
  }

  let logprobs, top;
  if (ctx.chat) {
    logprobs = optBool("logprobs", p.logprobs) ?? false;
    top = optInt("top_logprobs", p.top_logprobs, 0, MAX_TOP_LOGPROBS);
    if (top != null && !logprobs) throw new InvalidRequestError("top_logprobs requires logprobs=True", "top_logprobs");
  } else {
    // legacy completions: logprobs is the number of top alternatives (0 = just the token's)
    top = optInt("logprobs", p.logprobs, 0, MAX_TOP_LOGPROBS);
    logprobs = top != null;
  }

  let includeUsage = false;
  const so = p.stream_options;
  if (so != null) {
    if (!stream) throw new InvalidRequestError("stream_options is only allowed with stream=True", "stream_options");
    if (typeof so !== "object" || Array.isArray(so)) throw new InvalidRequestError(`stream_options must be an object, got ${show(so)}`, "stream_options");
    const unknown = Object.keys(so).filter((k) => k !== "include_usage");
    if (unknown.length) throw new InvalidRequestError(`stream_options: unknown field(s) ${show(unknown.sort())}`, "stream_options");
    includeUsage = optBool("stream_options.include_usage", so.include_usage) ?? false;
  }

  if (promptIds.length >= ctx.contextWindow) throw new ContextWindowExceededError(promptIds.length + 1, ctx.contextWindow);
  const room = maxTokens == null ? ctx.contextWindow - promptIds.length : Math.min(maxTokens, ctx.contextWindow - promptIds.length);
  if (n > 1 && n * room > MAX_GENERATED_TOKENS) {
    const what = maxTokens != null ? "max_tokens" : "the room left in the context window (no max_tokens)";
    throw new InvalidRequestError(`n x max_tokens must be <= ${MAX_GENERATED_TOKENS} tokens per request, got n=${n} x ${room} (${what}); lower n or set a smaller max_tokens`, "n");
  }
  return {
    promptIds,
    sampling: {
      temperature: temperature ?? 1,
      top_p: topP ?? 1,
      frequency_penalty: fp ?? 0,
      presence_penalty: pp ?? 0,
      repetition_penalty: rep ?? 1,
      logit_bias: bias,
      top_k: topK ?? 0,
      min_p: minP ?? 0,
    },
    maxTokens,
    stop,
    seed,
    n,
    stream,
    includeUsage,
    logprobs,
    topLogprobs: top ?? 0,
    model: typeof p.model === "string" && p.model ? p.model : ctx.model,
    ignoreEos,
  };
}

/**
 * Cuts text at the first stop string, holding back any tail that could still grow into one
 * (so streamed text never has to be retracted).
 */
export class StopMatcher {
  /** @param {string[]} stops */
  constructor(stops) {
    this.stops = stops.filter(Boolean);
    this.pending = "";
  }

  /** @param {string} text @returns {[string, boolean]} text safe to emit, whether a stop string was hit */
  feed(text) {
    if (!this.stops.length) return [text, false];
    this.pending += text;
    // Earlier emitted text never ends with a stop prefix, so any match starts in `pending`.
    let first = -1;
    for (const s of this.stops) {
      const i = this.pending.indexOf(s);
      if (i >= 0 && (first < 0 || i < first)) first = i;
    }
    if (first >= 0) {
      const out = this.pending.slice(0, first);
      this.pending = "";
      return [out, true];
    }
    let hold = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.pending.length); k > hold; k--) {
        if (this.pending.endsWith(s.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    const cut = this.pending.length - hold;
    const out = this.pending.slice(0, cut);
    this.pending = this.pending.slice(cut);
    return [out, false];
  }

  flush() {
    const out = this.pending;
    this.pending = "";
    return out;
  }
}
