// The generation loop of the Engine (engine.js), with the semantics of webllm_py/runtime/generation.py:
// prefill with multi-turn prefix reuse (kv_reuse.js), then per choice sample token by token
// (docs/sampling.md; counter = index of the generated token, choice k of n uses seed + k)
// until eos, a stop string, max_tokens, a full context window ("length") or
// interruptGenerate() ("abort"). runRequest (non-streaming) and streamRequest share the loop,
// so the concatenated stream text is the non-stream text by construction; engine_chat.js and
// engine_completions.js shape what they give into OpenAI objects. Functions of an Engine: the
// state (KV ledger, stats, the request queue) stays on it.
import { KVLedger } from "./kv_reuse.js";
import { recordMessage, signalOf } from "./lifecycle.js";
import { StopMatcher } from "./request.js";
import { gpuArgmaxOk } from "./gpu_sampling.js";
import { applyPenalties, logSoftmax, sampleAdjusted } from "./sampler.js";

/**
 * @typedef {import("./engine.js").Engine} Engine
 * @typedef {import("./request.js").Request} Request
 * @typedef {{token: number, logprob: number, top: [number, number][], offset: number}} TokenInfo
 * @typedef {{text: string, info: TokenInfo|null, finish: string|null}} Step
 */

export const seconds = () => performance.now() / 1000;

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

/** The logits of the last id, or with pick its argmax id picked on the GPU (gpu_sampling.js). @param {Engine} engine @param {number[]} ids @param {boolean} [pick] */
async function forward(engine, ids, pick = false) {
  engine._signal?.throwIfAborted(); // before the GPU step: the cache still holds what the ledger says
  let logits;
  try {
    logits = await (pick ? /** @type {(ids: number[]) => Promise<number>} */ (engine.model.forwardArgmax)(ids) : engine.model.forward(ids));
  } catch (err) {
    engine._kv = null; // the model's cache state is unknown now
    throw err;
  }
  /** @type {KVLedger} */ (engine._kv).wrote(ids);
  return logits;
}

/** Reuse the cached rows a fresh prefill writes the same (kv_reuse.js), forward the rest; the last logits. @param {Engine} engine @param {number[]} promptIds */
async function prefill(engine, promptIds) {
  const m = engine.model;
  if (engine._kv == null || m.position !== engine._kv.ids.length) {
    // unknown state (first use, an error, or someone used the model directly)
    m.reset();
    engine._kv = new KVLedger(...engine._kvRule);
  }
  const kv = engine._kv, [keep, spans] = kv.plan(promptIds);
  if (keep < kv.ids.length) {
    m.truncate(keep);
    kv.truncate(keep);
  }
  const t0 = seconds();
  let logits;
  for (const [a, b] of spans) logits = await forward(engine, promptIds.slice(a, b));
  Object.assign(engine._stats, {
    prompt_tokens: promptIds.length, cached_tokens: keep, prefill_tokens: promptIds.length - keep, prefill_seconds: seconds() - t0,
  });
  return /** @type {Float32Array} */ (logits); // spans is never empty
}

/** @param {number} tok @param {Float64Array} x @param {number} top @param {number} offset @returns {TokenInfo} */
function tokenInfo(tok, x, top, offset) {
  const lp = logSoftmax(x);
  // under a grammar, masked ids (-Infinity) are no alternatives (and -Infinity is no JSON number)
  return { token: tok, logprob: lp[tok], top: top ? topKIds(lp, top).filter((t) => lp[t] > -Infinity).map((t) => [t, lp[t]]) : [], offset };
}

/**
 * One choice: sample until eos / stop string / max_tokens / context full / interrupt. The KV
 * cache holds prompt + generated tokens except the last (never forwarded).
 * @param {Engine} engine
 * @param {Request} req @param {number} seed @param {Float32Array} logits
 * @returns {AsyncGenerator<Step>}
 */
async function* generate(engine, req, seed, logits) {
  const P = req.promptIds.length;
  let limit = engine.model.contextWindow - P; // prompt + completion <= context window
  if (req.maxTokens != null) limit = Math.min(limit, req.maxTokens);
  const s = req.sampling;
  const params = {
    temperature: s.temperature, top_p: s.top_p, top_k: s.top_k, min_p: s.min_p, seed, counter: 0, logit_bias: s.logit_bias,
    repetition_penalty: s.repetition_penalty, presence_penalty: s.presence_penalty, frequency_penalty: s.frequency_penalty,
    promptTokens: req.promptIds, generatedTokens: /** @type {number[]} */ ([]),
    bitmask: /** @type {Int32Array|null} */ (null),
  };
  const guide = req.grammar ? await (await engine._grammarEngine()).guide(req.grammar) : null;
  try {
    yield* loop(engine, req, params, guide, limit, logits);
  } finally {
    if (guide) {
      engine._stats.grammar_seconds = (engine._stats.grammar_seconds ?? 0) + guide.maskSeconds;
      guide.dispose();
    }
  }
}

/**
 * The sampling loop of _generate.
 * @param {Engine} engine
 * @param {Request} req @param {any} params the sampler's parameters (their counter and history advance)
 * @param {import("./grammar.js").Guide|null} guide @param {number} limit @param {Float32Array} logits the prompt's
 * @returns {AsyncGenerator<Step>}
 */
async function* loop(engine, req, params, guide, limit, logits) {
  const detok = engine.tokenizer.createStreamDecoder({ promptIds: req.promptIds, skipSpecialTokens: !req.keepSpecial });
  const stopper = new StopMatcher(req.stop);
  const stats = engine._stats;
  let decoded = 0; // characters produced so far (logprobs text_offset)
  let n = 0;
  let t = seconds();
  const pick = gpuArgmaxOk(req, engine.model); // greedy only: decode tokens argmax'd on the GPU
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
    const info = req.logprobs ? tokenInfo(tok, /** @type {Float64Array} */ (x), req.topLogprobs, decoded) : null;
    if (engine.eosTokenIds.has(tok) && !req.ignoreEos) {
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
    if (n >= limit || engine._interrupted) {
      const [tail, hit2] = stopper.feed(detok.flush());
      out += tail;
      if (!hit2) out += stopper.flush();
      yield step(out, info, hit2 ? "stop" : n >= limit ? "length" : "abort");
      return;
    }
    yield step(out, info);
    t = seconds();
    const next = forward(engine, [tok], pick); // the GPU work is submitted now...
    const mask = guide?.advance(tok); // ...so the next mask is computed while it runs
    if (pick) picked = /** @type {number} */ (await next);
    else logits = /** @type {Float32Array} */ (await next);
    await mask;
  }
}

/**
 * (index, steps) per choice; choice k uses seed + k and the same prompt logits.
 * @param {Engine} engine
 * @param {Request} req
 * @returns {AsyncGenerator<[number, AsyncGenerator<Step>]>}
 */
async function* choices(engine, req) {
  engine._checkUsable();
  engine._interrupted = false;
  engine._signal = signalOf(req);
  engine._stats = { decode_seconds: 0, decode_tokens: 0 };
  let first = await prefill(engine, req.promptIds);
  // The runtime reuses its logits array; other choices need the prompt's logits again.
  if (req.n > 1) first = Float32Array.from(first);
  const P = req.promptIds.length;
  for (let k = 0; k < req.n; k++) {
    if (k) {
      engine.model.truncate(P); // back to just the prompt; its last logits are `first`
      /** @type {KVLedger} */ (engine._kv).truncate(P);
    }
    yield [k, recordMessage(engine, k, generate(engine, req, req.seed + k, first))];
  }
}

/** @param {Engine} engine @param {Request} req @returns {Promise<{text: string, infos: TokenInfo[], finish: string|null, tokens: number}[]>} */
export async function runRequest(engine, req) {
  const release = await engine._acquire(signalOf(req));
  try {
    const results = [];
    for await (const [, steps] of choices(engine, req)) {
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
 * @param {Engine} engine
 * @param {Request} req
 * @returns {AsyncGenerator<{text: string, infos: TokenInfo[], finish: string|null, ntok: number}>}
 */
export async function* streamRequest(engine, req) {
  const release = await engine._acquire(signalOf(req));
  try {
    for await (const [, steps] of choices(engine, req)) {
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
