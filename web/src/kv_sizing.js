// The context window chosen at load, and what the runtime will allocate for it, as
// webllm_py/runtime/kv_sizing.py.
//
// A manifest sizes the KV-cache buffers (kind "state") for the context window the bundle was
// built for (manifest_validate.js checks that they hold context_window rows, or exactly `ring`
// rows for a sliding-window layer's ring cache). The kernels index the caches by row
// ((p + t) * width, a ring ((p + t) % ring) * width) and never read past row p+n, so the runtime
// may allocate fewer rows and run the same programs: `contextWindowSize` picks that count N, up
// to the bundle's; a ring buffer then holds min(ring, N) rows. estimateMemory adds up the
// buffers before any is created.

/** One prompt token and one generated token. */
export const MIN_CONTEXT = 2;

/** Bytes per activation element for each program precision. */
// Program sets (webllm_py/passes/program_sets.py): f32 / f16 / idot for CPU adapters, gpu / gpu-sg
// (f32 activations) for GPUs.
export const ACT_BYTES = /** @type {const} */ ({ f32: 4, f16: 2, idot: 4, gpu: 4, "gpu-sg": 4 });
/** Bytes per KV-cache element of each storage ("f16x2": f16 pairs in u32 words). */
export const KV_BYTES = /** @type {const} */ ({ f32: 4, f16: 2, f16x2: 2 });

/** Round up to a multiple of 16 bytes (at least 16), as native.py. @param {number} n */
export const round16 = (n) => Math.max(16, Math.ceil(n / 16) * 16);

/**
 * (activation, KV-cache) bytes per element of a program set: its manifest `program_sets` entry's
 * activations and kv; a bundle without that entry stores its caches as its activations.
 * @param {any} manifest @param {string} precision
 * @returns {[number, number]}
 */
export function setBytes(manifest, precision) {
  const meta = (manifest?.program_sets ?? []).find((/** @type {any} */ m) => m.name === precision);
  const act = meta ? /** @type {any} */ (ACT_BYTES)[meta.activations] : /** @type {any} */ (ACT_BYTES)[precision];
  return [act, meta ? /** @type {any} */ (KV_BYTES)[meta.kv] : act];
}

/**
 * Bytes of one manifest buffer with a program set: `bytes`, or elements × (the set's KV bytes for
 * a KV cache, its activation bytes for another "act" buffer, 4 for i32/u32/f32), rounded up to 16.
 * @param {{bytes?: number, elements?: number, dtype?: string, kind?: string}} spec
 * @param {string} precision @param {any} [manifest] for the set's KV storage (without: caches hold activations)
 */
export function bufferBytes(spec, precision, manifest) {
  if (spec.bytes != null) return round16(spec.bytes);
  const [act, kv] = manifest ? setBytes(manifest, precision) : [/** @type {any} */ (ACT_BYTES)[precision], /** @type {any} */ (ACT_BYTES)[precision]];
  const elem = spec.dtype !== "act" ? 4 : spec.kind === "state" ? kv : act;
  return round16(/** @type {number} */ (spec.elements) * elem);
}

/**
 * The KV-cache rows to allocate: the bundle's context_window, or `requested` (an integer from
 * MIN_CONTEXT to the bundle's). Anything else is a RangeError naming the option.
 * @param {any} manifest @param {unknown} [requested]
 * @returns {number}
 */
export function resolveContextWindow(manifest, requested) {
  const built = Number(manifest.context_window);
  if (requested == null) return built;
  if (typeof requested !== "number" || !Number.isInteger(requested) || requested < MIN_CONTEXT || requested > built) {
    throw new RangeError(
      `contextWindowSize must be an integer from ${MIN_CONTEXT} to ${built} (the context window this bundle was built for; ` +
        `rebuild it with a larger --context-window for more), got ${JSON.stringify(requested) ?? String(requested)}`,
    );
  }
  return requested;
}

/**
 * manifest.buffers with every KV-cache buffer holding `rows` rows instead of the bundle's (a ring
 * buffer min(ring, rows)).
 * @param {any} manifest @param {number} [rows] default: the bundle's context window
 * @returns {Record<string, any>}
 */
export function sizedBufferSpecs(manifest, rows) {
  const built = Number(manifest.context_window);
  if (rows == null || rows === built) return manifest.buffers;
  /** @type {Record<string, any>} */
  const out = {};
  for (const [name, b] of Object.entries(manifest.buffers)) {
    const spec = /** @type {any} */ (b);
    // (context_window or ring, width), validated by manifest_validate.js
    const held = spec.ring || built;
    out[name] = spec.kind === "state" ? { ...spec, elements: (spec.elements / held) * Math.min(held, rows) } : spec;
  }
  return out;
}

/**
 * The [ring rows, window] pairs of the bundle's ring KV caches, for the reuse rule (kv_reuse.js).
 * @param {any} manifest @returns {[number, number][]}
 */
export function kvRings(manifest) {
  const seen = new Map();
  for (const b of Object.values(manifest.buffers ?? {})) {
    const spec = /** @type {any} */ (b);
    if (spec.kind === "state" && spec.ring) seen.set(`${spec.ring},${spec.window}`, [Number(spec.ring), Number(spec.window)]);
  }
  return [...seen.values()].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
}

/** @type {Record<string, "weightsBytes"|"kvCacheBytes">} every other kind counts as otherBytes */
const KIND_GROUP = { weight: "weightsBytes", state: "kvCacheBytes" };

/**
 * @typedef {object} MemoryEstimate GPU bytes a language-model runtime allocates
 * @property {number} contextWindowSize KV-cache rows
 * @property {number} weightsBytes
 * @property {number} kvCacheBytes
 * @property {number} otherBytes activations, ids, step uniform, logits and its readback copy
 * @property {number} totalBytes
 */

/**
 * What loading the programs of `precision` allocates with a KV cache of `contextWindowSize`
 * rows (default: the bundle's), before anything is allocated.
 * @param {any} manifest @param {string} precision a program set @param {number} [contextWindowSize]
 * @returns {MemoryEstimate}
 */
export function estimateMemory(manifest, precision, contextWindowSize) {
  if (!Object.hasOwn(ACT_BYTES, precision)) throw new RangeError(`precision must be one of ${Object.keys(ACT_BYTES).join(", ")} for an estimate, got ${precision}`);
  const rows = resolveContextWindow(manifest, contextWindowSize);
  const est = { contextWindowSize: rows, weightsBytes: 0, kvCacheBytes: 0, otherBytes: 0, totalBytes: 0 };
  for (const [name, b] of Object.entries(sizedBufferSpecs(manifest, rows))) {
    const n = bufferBytes(b, precision, manifest);
    est[KIND_GROUP[b.kind] ?? "otherBytes"] += name === "logits" ? 2 * n : n; // logits: and its MAP_READ copy
  }
  est.totalBytes = est.weightsBytes + est.kvCacheBytes + est.otherBytes;
  return est;
}
