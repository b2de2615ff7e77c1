// Which KV-cache rows a new prompt may reuse so that its logits are bit-identical to a fresh
// prefill's, and the steps that forward the rest: the rules of webllm_py/runtime/kv_reuse.py
// (read its docstring for the why), so both engines reuse the same rows.
//
// A fresh prefill of P tokens runs steps of prefill_chunk (C) tokens from position 0; a
// 1-token step runs the decode program, longer ones prefill, and the two round differently.
// The model declares `kvReuse`:
// - "program" (the WGSL programs): prefill-written rows do not depend on their step, so any
//   prefix of them is reusable; the rest goes in steps of >= 2 tokens, and the last prompt
//   token alone (decode) exactly when a fresh prefill's last step is 1 token (P % C == 1);
// - "schedule": only whole steps of the fresh schedule (C tokens at a multiple of C);
// - "any" (no chunk, e.g. test fakes whose logits depend on the ids only): the longest common prefix.
// Ring caches (sliding-window layers' R rows, position t in row t % R; `rings`: [R, window] pairs):
// after writes up to position hi - 1 (hi: 1 + the highest position written since the last write at
// position 0) the row of position j is intact iff j >= hi - R; a plan keeping L > 0 rows needs
// max(0, L - window + 1) >= hi - R for every ring, else it keeps 0 (after the rule's own plan);
// truncate never restores an overwritten row.

/** @typedef {[number, number]} Span [start, end) of the prompt, forwarded as one step */

/** @param {number} start @param {number} end @param {number} chunk @returns {Span[]} */
function steps(start, end, chunk) {
  /** @type {Span[]} */
  const out = [];
  for (let s = start; s < end; s += chunk) out.push([s, Math.min(s + chunk, end)]);
  return out;
}

/**
 * One rule: plan (rows to keep, spans to forward), extend (`exact` after a step), truncate.
 * @typedef {{
 *   plan: (reusable: number, P: number, C: number) => [number, Span[]],
 *   extend: (exact: number, start: number, n: number, C: number) => number,
 *   truncate: (exact: number, position: number, C: number) => number,
 * }} Rule
 */

/** @type {Record<string, Rule>} */
export const RULES = {
  any: {
    plan: (reusable, P) => [reusable, [[reusable, P]]],
    extend: (exact, start, n) => (start === exact ? start + n : exact),
    truncate: (exact, position) => Math.min(exact, position),
  },
  schedule: {
    plan: (reusable, P, C) => {
      const keep = Math.floor(reusable / C) * C;
      return [keep, steps(keep, P, C)];
    },
    extend: (exact, start, n, C) => (start === exact && n === C ? exact + n : exact),
    // a step cut short is not the step a fresh prefill of the shorter prompt runs
    truncate: (exact, position, C) => Math.floor(Math.min(exact, position) / C) * C,
  },
  program: {
    plan: (reusable, P, C) => {
      const lastAlone = C > 1 && P % C === 1; // a fresh prefill's last step is 1 token: decode
      const bodyEnd = lastAlone ? P - 1 : P;
      let keep = reusable;
      if (C > 1 && (bodyEnd - keep) % C === 1) keep -= 1; // else the body ends in a 1-token (decode) step
      const out = steps(keep, bodyEnd, C);
      if (lastAlone) out.push([bodyEnd, P]);
      return [keep, out];
    },
    extend: (exact, start, n, C) => (start === exact && (n === 1) === (C === 1) ? exact + n : exact),
    truncate: (exact, position) => Math.min(exact, position),
  },
};

/**
 * Whether every ring still holds the rows a step forwarding from position `keep` reads:
 * max(0, keep - window + 1) >= hi - R for each [R, window].
 * @param {number} keep @param {number} hi @param {[number, number][]} rings
 */
export function ringsIntact(keep, hi, rings) {
  return rings.every(([ring, window]) => Math.max(0, keep - window + 1) >= hi - ring);
}

/** The ids in a model's KV cache and how many leading rows a new prompt may reuse. */
export class KVLedger {
  /** @param {string} rule @param {number|null} chunk @param {[number, number][]} [rings] */
  constructor(rule, chunk, rings = []) {
    if (!(rule in RULES)) throw new RangeError(`kvReuse must be one of ${Object.keys(RULES).join(", ")}, got ${rule}`);
    if (rule !== "any" && !(Number.isInteger(chunk) && /** @type {number} */ (chunk) >= 1)) {
      throw new RangeError(`kvReuse "${rule}" needs the model's prefillChunk (an integer >= 1), got ${chunk}`);
    }
    this.rule = RULES[rule];
    this.chunk = /** @type {number} */ (chunk ?? 0);
    /** @type {number[]} */
    this.ids = [];
    this.exact = 0; // leading rows a fresh prefill would write bit for bit the same
    /** @type {[number, number][]} */
    this.rings = rings.map(([r, w]) => [Number(r), Number(w)]); // [ring rows, window] of the ring caches
    this.hi = 0; // 1 + the highest position written since the last write at position 0
  }

  /**
   * (rows to keep, spans of `prompt` to forward in order, one model step each except under
   * "any"). At least the last prompt token is forwarded, for its logits.
   * @param {number[]} prompt @returns {[number, Span[]]}
   */
  plan(prompt) {
    let common = 0;
    while (common < this.ids.length && common < prompt.length && this.ids[common] === prompt[common]) common++;
    const reusable = Math.max(0, Math.min(common, this.exact, prompt.length - 1));
    let [keep, spans] = this.rule.plan(reusable, prompt.length, this.chunk);
    if (keep && !ringsIntact(keep, this.hi, this.rings)) [keep, spans] = this.rule.plan(0, prompt.length, this.chunk);
    return [keep, spans];
  }

  /** The model forwarded `ids` in one step at the end of the cache. @param {ArrayLike<number>} ids */
  wrote(ids) {
    this.exact = this.rule.extend(this.exact, this.ids.length, ids.length, this.chunk);
    // a write at position 0 starts the cache afresh: no overwrite before it matters any more
    this.hi = Math.max(this.ids.length ? this.hi : 0, this.ids.length + ids.length);
    this.ids.push(...Array.from(ids));
  }

  /** @param {number} position */
  truncate(position) {
    this.ids.length = position;
    this.exact = this.rule.truncate(this.exact, position, this.chunk);
  }
}

/**
 * The model's [kvReuse rule, prefill chunk, ring caches] (KVLedger's arguments): the rule
 * declared by the runtime, else "schedule" for a chunked model (the safe choice) and "any" for
 * one without a chunk; `kvRings` ([R, window] pairs) where the model has ring caches.
 * @param {{kvReuse?: string, prefillChunk?: number, kvRings?: [number, number][]}} model
 * @returns {[string, number|null, [number, number][]]}
 */
export function modelRule(model) {
  const chunk = model.prefillChunk ? Number(model.prefillChunk) : null;
  return [model.kvReuse ?? (chunk ? "schedule" : "any"), chunk, model.kvRings ?? []];
}
