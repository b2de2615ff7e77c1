// Token sampling exactly as docs/sampling.md (format 1), so that a seed gives the
// same tokens here and in webllm_py/runtime/sampler.py. float64 throughout;
// the PRNG uses u32 arithmetic only (Math.imul and >>> 0).

/** murmur3 fmix32. @param {number} x u32 @returns {number} u32 */
export function mix32(x) {
  x >>>= 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b) >>> 0;
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35) >>> 0;
  x ^= x >>> 16;
  return x >>> 0;
}

/** @param {number} seed integer in [0, 2^53) @param {number} counter @returns {number} u32 */
export function randomU32(seed, counter) {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`seed must be an integer in [0, 2^53), got ${seed}`);
  const lo = seed >>> 0;
  const hi = Math.floor(seed / 4294967296) >>> 0;
  return mix32((mix32((lo ^ mix32(hi)) >>> 0) ^ Math.imul(counter, 0x9e3779b9)) >>> 0);
}

/** 24-bit uniform in [0, 1). @param {number} seed @param {number} counter */
export function uniform(seed, counter) {
  return (randomU32(seed, counter) >>> 8) / 16777216;
}

/** A random seed for requests that give none. @returns {number} */
export function randomSeed() {
  const w = new Uint32Array(2);
  globalThis.crypto.getRandomValues(w);
  return (w[0] & 0x1fffff) * 4294967296 + w[1];
}

/**
 * @typedef {object} SamplingParams
 * @property {number} [temperature] default 1; 0 = greedy
 * @property {number} [top_p] default 1
 * @property {number} [top_k] default 0 (no limit)
 * @property {number} [min_p] default 0 (no limit)
 * @property {Int32Array|null} [bitmask] grammar mask (xgrammar's layout: bit id % 32 of word id >> 5 set = allowed)
 * @property {number} [seed] integer in [0, 2^53); required unless temperature is 0
 * @property {number} [counter] index of the token within the completion (0 for the first)
 * @property {Record<number|string, number>|Map<number, number>} [logit_bias]
 * @property {number} [repetition_penalty] default 1 (HF semantics, prompt + generated)
 * @property {number} [presence_penalty] default 0 (OpenAI semantics, generated only)
 * @property {number} [frequency_penalty] default 0 (OpenAI semantics, generated only)
 * @property {ArrayLike<number>} [promptTokens]
 * @property {ArrayLike<number>} [generatedTokens]
 */

/**
 * Step 0 in place: ids whose bit is 0 get -Infinity; ids past the mask's bits are disallowed.
 * @param {Float64Array} x @param {Int32Array} bitmask
 */
export function applyBitmask(x, bitmask) {
  for (let i = 0; i < x.length; i++) if ((i >> 5) >= bitmask.length || ((bitmask[i >> 5] >>> (i & 31)) & 1) === 0) x[i] = -Infinity;
}

/**
 * Steps 0-3: the grammar mask (if any), logit_bias, repetition penalty, presence/frequency penalties.
 * @param {ArrayLike<number>} logits float32 (vocab_size)
 * @param {SamplingParams} p
 * @returns {Float64Array} adjusted logits (a new array)
 */
export function applyPenalties(logits, p = {}) {
  const x = new Float64Array(/** @type {ArrayLike<number>} */ (logits)); // float32 -> float64 is exact
  const V = x.length;
  // -Infinity stays -Infinity through steps 1-3 (r > 0), so they cannot revive a masked id
  if (p.bitmask) applyBitmask(x, p.bitmask);
  if (p.logit_bias) {
    const entries = p.logit_bias instanceof Map ? p.logit_bias.entries() : Object.entries(p.logit_bias);
    for (const [k, b] of entries) {
      const id = Number(k);
      if (Number.isInteger(id) && id >= 0 && id < V) x[id] += b;
    }
  }
  const r = p.repetition_penalty ?? 1;
  if (r !== 1) {
    const seen = new Set();
    for (const ids of [p.promptTokens ?? [], p.generatedTokens ?? []]) for (let i = 0; i < ids.length; i++) seen.add(ids[i]);
    for (const id of seen) if (id >= 0 && id < V) x[id] = x[id] > 0 ? x[id] / r : x[id] * r;
  }
  const a = p.presence_penalty ?? 0;
  const f = p.frequency_penalty ?? 0;
  if ((a !== 0 || f !== 0) && p.generatedTokens) {
    /** @type {Map<number, number>} */
    const count = new Map();
    const g = p.generatedTokens;
    for (let i = 0; i < g.length; i++) count.set(g[i], (count.get(g[i]) ?? 0) + 1);
    for (const [id, c] of count) if (id >= 0 && id < V) x[id] -= f * c + a * (c > 0 ? 1 : 0);
  }
  return x;
}

/** Lowest id among the maxima; a NaN wins (the first NaN's id), as numpy's argmax, the Python
 * engine's and the GPU argmax kernel's (docs/sampling.md step 4). @param {ArrayLike<number>} x */
export function argmax(x) {
  let best = 0;
  if (Number.isNaN(x[0])) return 0;
  for (let i = 1; i < x.length; i++) {
    if (Number.isNaN(x[i])) return i;
    if (x[i] > x[best]) best = i;
  }
  return best;
}

/** float64 log-softmax (for `logprobs`: apply to applyPenalties' output). @param {ArrayLike<number>} x */
export function logSoftmax(x) {
  let m = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i] > m) m = x[i];
  let s = 0;
  for (let i = 0; i < x.length; i++) s += Math.exp(x[i] - m);
  const lse = m + Math.log(s);
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] - lse;
  return out;
}

/**
 * Step 5: probs = exp(z - max z) / sum, z = x / temperature, summed in id order.
 * @param {ArrayLike<number>} x @param {number} temperature
 */
export function softmaxProbs(x, temperature) {
  const V = x.length;
  const probs = new Float64Array(V);
  let zmax = -Infinity;
  for (let i = 0; i < V; i++) {
    const z = (probs[i] = x[i] / temperature);
    if (z > zmax) zmax = z;
  }
  let sum = 0;
  for (let i = 0; i < V; i++) {
    const e = (probs[i] = Math.exp(probs[i] - zmax));
    sum += e;
  }
  for (let i = 0; i < V; i++) probs[i] /= sum;
  return probs;
}

/**
 * Non-negative float64 values sorted descending. Large arrays use an LSD radix sort
 * on the top 48 IEEE bits (for x >= 0 the bit pattern orders like the value), then an
 * insertion pass that fixes the rare runs equal in those bits: V8's native typed-array
 * sort takes ~25 ms for 150k values, this ~8 ms.
 * @param {ArrayLike<number>} values
 * @returns {Float64Array}
 */
export function sortDescending(values) {
  const n = values.length;
  let a = new Float64Array(values);
  if (n < 2048) return a.sort().reverse();
  let b = new Float64Array(n);
  let aw = new Uint32Array(a.buffer);
  let bw = new Uint32Array(b.buffer);
  const hist = new Uint32Array(3 * 65536); // digits: lo[16..32), hi[0..16), hi[16..32)
  for (let i = 0; i < n; i++) {
    const lo = aw[2 * i];
    const hi = aw[2 * i + 1];
    hist[lo >>> 16]++;
    hist[65536 + (hi & 0xffff)]++;
    hist[131072 + (hi >>> 16)]++;
  }
  for (let pass = 0; pass < 3; pass++) {
    const base = pass * 65536;
    let pos = 0;
    for (let d = 65535; d >= 0; d--) {
      const c = hist[base + d];
      hist[base + d] = pos; // descending: bucket 65535 first
      pos += c;
    }
    for (let i = 0; i < n; i++) {
      const d = pass === 0 ? aw[2 * i] >>> 16 : pass === 1 ? aw[2 * i + 1] & 0xffff : aw[2 * i + 1] >>> 16;
      b[hist[base + d]++] = a[i];
    }
    [a, b] = [b, a];
    [aw, bw] = [bw, aw];
  }
  for (let i = 1; i < n; i++) {
    const v = a[i];
    if (v <= a[i - 1]) continue;
    let j = i - 1;
    for (; j >= 0 && a[j] < v; j--) a[j + 1] = a[j];
    a[j + 1] = v;
  }
  return a;
}

const TAIL = 2 ** -54; // below half an ulp of any running sum >= 0.5: such values move no sum

/**
 * Steps 6-7. Equivalent to ordering all ids (prob desc, lower id first), keeping the
 * shortest of the top_p, top_k and min_p prefixes and walking it (docs/sampling.md), with
 * the rule of webllm_py/runtime/sampler.py: the values >= t precede every value < t, so the
 * row is taken in bands [t, previous t) (t from pmax / 256 down, 256x lower each), each band
 * sorted and the running sum carried across them, until the kept prefix is decided. Values
 * < 2^-54 cannot move a running sum >= 0.5, so the bands stop there. Equal values are
 * interchangeable in every sum, so only values are sorted and the one chosen position is
 * mapped back to its id among the bands' ids. top_p >= 1 alone sorts every value at once.
 * @param {Float64Array} probs @param {number} topP @param {number} u01 uniform draw in [0, 1)
 * @param {number} [topK] 0: no limit @param {number} [minP] 0: no limit
 * @returns {number}
 */
export function sampleFromProbs(probs, topP, u01, topK = 0, minP = 0) {
  if (!(topP < 1 || topK > 0 || minP > 0)) return sampleFullSort(probs, topP, u01, topK, minP);
  const V = probs.length;
  let pmax = -Infinity;
  let proper = true;
  for (let i = 0; i < V; i++) {
    const v = probs[i];
    if (!(v >= 0)) proper = false; // NaN or negative (also where it would be the running max)
    else if (v > pmax) pmax = v;
  }
  if (!proper || !(pmax >= TAIL && pmax < Infinity)) return sampleFullSort(probs, topP, u01, topK, minP);
  const thr = minP > 0 ? minP * pmax : Infinity;
  const floor = Math.min(TAIL, thr);
  /** @type {number[]} */
  const ids = []; // the bands' ids: ascending within a band; equal values share a band
  let vals = new Float64Array(0);
  let cum = new Float64Array(0);
  let k = -1;
  // the first band: down to pmax / 256, or only to min_p's threshold, which decides min_p
  for (let hi = Infinity, t = Math.max(pmax / 256, thr < Infinity ? thr : 0); ; hi = t, t /= 256) {
    t = Math.max(t, floor);
    const c0 = ids.length;
    for (let i = 0; i < V; i++) {
      const v = probs[i];
      if (v >= t && v < hi) ids.push(i);
    }
    const band = new Float64Array(ids.length - c0);
    for (let j = c0; j < ids.length; j++) band[j - c0] = probs[ids[j]];
    const nv = new Float64Array(ids.length);
    nv.set(vals);
    nv.set(sortDescending(band), c0);
    const nc = new Float64Array(ids.length);
    nc.set(cum);
    let run = c0 ? cum[c0 - 1] : 0; // the running sum goes on (0 + vals[0] is vals[0])
    for (let j = c0; j < ids.length; j++) nc[j] = run += nv[j];
    vals = nv;
    cum = nc;
    const last = t <= floor;
    if (last && !(run >= 0.5)) return sampleFullSort(probs, topP, u01, topK, minP);
    k = keptLength(vals, cum, V, last, t <= thr, topP, topK, thr);
    if (k >= 0) break;
  }
  const c = vals.length;
  // k == 0: minP > 1, the full sort's own clamp. k > c: the prefix runs into the tail, whose
  // running sums all equal cum[c - 1]; the walk stops inside when u < cum[c - 1].
  if (k === 0 || (k > c && !(u01 * cum[c - 1] < cum[c - 1]))) return sampleFullSort(probs, topP, u01, topK, minP);
  const kc = Math.min(k, c);
  // Step 7: u = u01 * kept sum; the first position whose running sum exceeds u.
  const u = u01 * cum[kc - 1];
  let pos = kc - 1;
  for (let j = 0; j < kc; j++) {
    if (cum[j] > u) {
      pos = j;
      break;
    }
  }
  // The id: those with p > v come first, then those with p == v, by id (one band's, ascending).
  const v = vals[pos];
  let rank = pos;
  for (let j = 0; j < c; j++) if (probs[ids[j]] > v) rank--;
  for (let j = 0; j < c; j++) if (probs[ids[j]] === v && rank-- === 0) return ids[j];
  throw new Error("unreachable: value not found");
}

/**
 * Length of the kept prefix given the first c sorted values and running sums, or -1 when
 * they do not decide it yet (an undecided bound is >= c, every decided one <= c).
 * @param {Float64Array} vals @param {Float64Array} cum @param {number} n
 * @param {boolean} complete every value that can move a running sum is among the c
 * @param {boolean} thrReached every value >= thr is among the c
 * @param {number} topP @param {number} topK @param {number} thr
 */
function keptLength(vals, cum, n, complete, thrReached, topP, topK, thr) {
  const c = vals.length;
  let k = Infinity;
  if (topP < 1) {
    let j = 0;
    while (j < c && !(cum[j] >= topP)) j++;
    if (j < c) k = j + 1;
    else if (complete) k = n;
  } else if (complete) k = n;
  if (topK > 0 && (topK <= c || complete)) k = Math.min(k, topK);
  if (thr < Infinity) {
    let m = 0;
    while (m < c && vals[m] >= thr) m++;
    if (m < c || thrReached) k = Math.min(k, m);
  }
  return k === Infinity ? -1 : k;
}

/**
 * The id at position `pos` of the full order (probability descending, lower id
 * first), given that position's value v: ids with p > v come first, then those
 * with p == v by id.
 * @param {Float64Array} probs @param {number} v @param {number} pos
 */
function idAtPosition(probs, v, pos) {
  let rank = pos;
  for (let i = 0; i < probs.length; i++) if (probs[i] > v) rank--;
  for (let i = 0; i < probs.length; i++) if (probs[i] === v && rank-- === 0) return i;
  throw new Error("unreachable: value not found");
}

/**
 * Steps 6-7 over sorted values (the candidate-ladder reading it had before the bands): for
 * rows that are no distribution (NaN, inf, negative values, a sum below 0.5), as before.
 * @param {Float64Array} probs @param {number} topP @param {number} u01
 * @param {number} topK @param {number} minP
 * @returns {number}
 */
function sampleFullSort(probs, topP, u01, topK, minP) {
  const V = probs.length;
  /** @type {Float64Array|null} */
  let kept = null;
  if (topP < 1) {
    // The kept prefix usually lies among the few largest probabilities. Every value >= t
    // precedes every value < t, so a prefix reaching top_p among them is exact.
    let pmax = 0;
    for (let i = 0; i < V; i++) if (probs[i] > pmax) pmax = probs[i];
    for (let t = pmax / 256; kept === null && t > 0; t = t > pmax * 2 ** -48 ? t / 256 : 0) {
      const big = [];
      for (let i = 0; i < V; i++) if (probs[i] >= t) big.push(probs[i]);
      kept = keptPrefix(sortDescending(big), topP);
    }
  }
  kept ??= keptPrefix(sortDescending(probs), topP) ?? sortDescending(probs);
  // top_k and min_p keep prefixes of the same order, on the same (full) distribution.
  let k = kept.length;
  if (topK > 0 && topK < k) k = topK;
  if (minP > 0) {
    const t = minP * kept[0];
    let m = 1; // kept[0] >= t since minP <= 1
    while (m < k && kept[m] >= t) m++;
    k = m;
  }
  if (k < kept.length) kept = kept.subarray(0, k);
  // Step 7: u = u01 * kept sum; the first position whose running sum exceeds u.
  let sum = 0;
  for (let k = 0; k < kept.length; k++) sum += kept[k];
  const u = u01 * sum;
  let run = 0;
  let pos = kept.length - 1;
  for (let k = 0; k < kept.length; k++) {
    if ((run += kept[k]) > u) {
      pos = k;
      break;
    }
  }
  return idAtPosition(probs, kept[pos], pos);
}

/**
 * The shortest prefix of `vals` (descending) whose running sum >= topP, or null if
 * the whole array does not reach it. topP >= 1 keeps everything.
 * @param {Float64Array} vals @param {number} topP
 */
function keptPrefix(vals, topP) {
  if (topP >= 1) return vals;
  let cum = 0;
  for (let k = 0; k < vals.length; k++) if ((cum += vals[k]) >= topP) return vals.subarray(0, k + 1);
  return null;
}

/**
 * Steps 4-7 on already-adjusted logits.
 * @param {Float64Array} x adjusted logits
 * @param {SamplingParams} p
 * @returns {number} token id
 */
export function sampleAdjusted(x, p = {}) {
  const temperature = p.temperature ?? 1;
  if (temperature === 0) return argmax(x);
  if (p.seed == null) throw new TypeError("sampling with temperature > 0 needs a seed (use randomSeed())");
  return sampleFromProbs(softmaxProbs(x, temperature), p.top_p ?? 1, uniform(p.seed, p.counter ?? 0), p.top_k ?? 0, p.min_p ?? 0);
}

/**
 * Sample one token from the last position's logits (docs/sampling.md steps 0-7).
 * @param {ArrayLike<number>} logits float32 (vocab_size)
 * @param {SamplingParams} params
 * @returns {number}
 */
export function sampleToken(logits, params = {}) {
  return sampleAdjusted(applyPenalties(logits, params), params);
}
