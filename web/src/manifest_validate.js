// manifest.json checked against itself before anything is fetched or run, mirroring the Python
// reader's webllm_py/bundle/validate.py (same field paths; shared bad cases in
// web/test/fixtures/bad_manifests.json): required keys with their types, every path relative
// and inside the bundle, every referenced file listed (hashed), weight parts that match their
// format and neither overlap nor leave their file, buffers and graph state large enough for the
// context window, generation defaults in range, programs that only name kernels and buffers
// that exist. The first violation throws ManifestProblem; parseManifest makes it the one
// BundleError `<url of manifest.json>: <field path>: <problem>`.
//
// Left to the Python side: the graphs' nodes (ops and their inputs), which only the reference
// interpreter reads; here a graph's params and state are checked, which the buffers rely on.
import { fail, field, show, sub, tokenIds, want } from "./manifest_fields.js";
import { checkPath, listed } from "./manifest_paths.js";
import { checkPrograms } from "./manifest_programs.js";
import { checkWeights } from "./manifest_weights.js";

export { ManifestProblem } from "./manifest_fields.js";

/** @param {any} m @returns {Map<string, number>} path → size */
function checkFiles(m) {
  /** @type {Map<string, number>} */
  const out = new Map();
  field(m, "files", "", "list").forEach((/** @type {any} */ f, /** @type {number} */ i) => {
    const where = sub("files", i);
    want(f, "dict", where);
    const path = checkPath(field(f, "path", where, "str"), sub(where, "path"));
    const size = field(f, "size", where, "int", { lo: 0 });
    const sha = field(f, "sha256", where, "str");
    if (!/^[0-9a-f]{64}$/.test(sha)) fail(sub(where, "sha256"), `${show(sha)} is not 64 lowercase hex digits`);
    if (path === "manifest.json") fail(sub(where, "path"), "manifest.json cannot list itself");
    if (out.has(path)) fail(sub(where, "path"), `${show(path)} is listed twice`);
    out.set(path, size);
  });
  return out;
}

/** @param {any} m @param {Map<string, number>} files @param {number} vocab @param {boolean} languageModel */
function checkTokenizer(m, files, vocab, languageModel) {
  const t = field(m, "tokenizer", "", "dict");
  listed(files, field(t, "file", "tokenizer", "str"), "tokenizer.file");
  if (field(t, "config_file", "tokenizer", "str", { optional: true }) !== undefined) listed(files, t.config_file, "tokenizer.config_file");
  field(t, "bos_token_id", "tokenizer", "int", { optional: true, lo: 0, hi: vocab - 1 });
  for (const key of ["add_bos_token", "has_chat_template"]) field(t, key, "tokenizer", "bool", { optional: true });
  if (languageModel || "eos_token_ids" in t) tokenIds(field(t, "eos_token_ids", "tokenizer", "list"), "tokenizer.eos_token_ids", vocab);
}

/** Generation defaults (HF generation_config names) the engines read: key → check(value, where, vocab). */
const GENERATION_FIELDS = /** @type {Record<string, (v: unknown, where: string, vocab: number) => unknown>} */ ({
  temperature: (v, w) => want(v, "number", w, { lo: 0 }),
  top_p: (v, w) => want(v, "number", w, { lo: 0, hi: 1, loOpen: true }),
  top_k: (v, w) => want(v, "int", w, { lo: 0 }),
  repetition_penalty: (v, w) => want(v, "number", w, { lo: 0, loOpen: true }),
  frequency_penalty: (v, w) => want(v, "number", w, { lo: -2, hi: 2 }),
  presence_penalty: (v, w) => want(v, "number", w, { lo: -2, hi: 2 }),
  do_sample: (v, w) => want(v, "bool", w),
  eos_token_ids: tokenIds,
});

/** @param {any} m @param {number} vocab */
function checkGeneration(m, vocab) {
  const gen = field(m, "generation", "", "dict", { optional: true });
  if (!gen) return;
  // absent keys take the engines' defaults; null is not absent
  for (const [key, check] of Object.entries(GENERATION_FIELDS)) if (key in gen) check(gen[key], sub("generation", key), vocab);
}

/** model: {id, architecture, config: {vocab_size, ...}}; returns vocab_size. @param {any} m @returns {number} */
function checkModel(m) {
  const model = field(m, "model", "", "dict");
  field(model, "id", "model", "str");
  field(model, "architecture", "model", "str");
  const cfg = field(model, "config", "model", "dict");
  for (const key of ["hidden_size", "num_hidden_layers"]) field(cfg, key, "model.config", "int", { optional: true, lo: 1 });
  return field(cfg, "vocab_size", "model.config", "int", { lo: 1 });
}

/** @param {any} m */
function checkQuantization(m) {
  const q = field(m, "quantization", "", "dict", { optional: true });
  if (q) for (const key of ["scheme", "embedding", "lm_head"]) field(q, key, "quantization", "str", { optional: true });
}

/**
 * What a kind of bundle must hold beyond the common part (files, weights, tokenizer).
 * @typedef {{graphs: string[], programs: string[], stepLimits: (m: any) => Record<string, number>,
 *            stepBuffers: import("./manifest_programs.js").StepBuffers}} BundleKind
 * @type {Record<string, BundleKind>}
 */
const BUNDLE_KINDS = {
  language_model: {
    graphs: ["logits_all", "logits_last"],
    programs: ["decode", "prefill", "score"],
    stepLimits: (m) => {
      const ctx = field(m, "context_window", "", "int", { lo: 1 });
      return { context_window: ctx, prefill_chunk: field(m, "prefill_chunk", "", "int", { lo: 1, hi: ctx }) };
    },
    stepBuffers: [
      ["ids", "prefill_chunk", (lim) => lim.prefill_chunk],
      ["logits", "prefill_chunk", (lim, vocab) => lim.prefill_chunk * vocab], // score: a row per id
    ],
  },
  embedding: {
    graphs: ["embed"],
    programs: ["encode"],
    stepLimits: (m) => {
      const e = field(m, "embedding", "", "dict");
      /** @type {Record<string, number>} */
      const out = {};
      for (const k of ["dimensions", "max_seq_length", "max_batch_rows"]) out[k] = field(e, k, "embedding", "int", { lo: 1 });
      out.max_batch_tokens = field(e, "max_batch_tokens", "embedding", "int", { lo: out.max_seq_length });
      return out;
    },
    stepBuffers: [
      ["ids", "max_batch_tokens", (lim) => lim.max_batch_tokens],
      ["rows", "max_batch_tokens", (lim) => lim.max_batch_tokens],
      ["offsets", "max_batch_rows", (lim) => lim.max_batch_rows + 1],
    ],
  },
};

/**
 * state name → [ring attrs, windows] of the kv_write / attention nodes of graph `g` using it.
 * @param {any} g @returns {Map<string, {rings: Set<number>, windows: Set<number>}>}
 */
function cacheUsers(g) {
  const out = new Map();
  for (const node of Array.isArray(g.nodes) ? g.nodes : []) {
    const inputs = Array.isArray(node?.inputs) ? node.inputs : []; // nodes' shapes are the Python reader's to check
    const caches = node?.op === "kv_write" ? inputs.slice(1, 2) : node?.op === "attention" ? inputs.slice(1, 3) : [];
    for (const name of caches) {
      if (!out.has(name)) out.set(name, { rings: new Set(), windows: new Set() });
      out.get(name).rings.add(node.attrs?.ring ?? 0);
      if (node.op === "attention") out.get(name).windows.add(node.attrs?.window ?? 0);
    }
  }
  return out;
}

/**
 * The graphs a kind of bundle needs: their params are weights of the same shape, their state
 * has a row per context position or is a ring (exactly `ring` rows, ring < context_window and
 * >= window + prefill_chunk - 1, the `ring` attr of every node using it); returns every graph's
 * state (name → [rows, width], a ring cache [rows, width, window]).
 * @param {any} m @param {string[]} names @param {Record<string, any>} weights @param {Record<string, number>} limits
 * @returns {Record<string, number[]>}
 */
function checkGraphs(m, names, weights, limits) {
  const graphs = field(m, "graphs", "", "dict");
  /** @type {Record<string, number[]>} */
  const state = {};
  const ints = (/** @type {unknown} */ v, /** @type {string} */ where) =>
    want(v, "list", where).map((/** @type {unknown} */ d, /** @type {number} */ i) => want(d, "int", sub(where, i), { lo: 1 }));
  for (const name of names) {
    const where = sub("graphs", name);
    const g = field(graphs, name, "graphs", "dict");
    for (const [p, t] of Object.entries(field(g, "params", where, "dict"))) {
      const pwhere = sub(sub(where, "params"), p);
      const shape = ints(field(want(t, "dict", pwhere), "shape", pwhere, "list"), sub(pwhere, "shape"));
      if (!Object.hasOwn(weights, p)) fail(pwhere, "is not in weights");
      if (show(weights[p].shape) !== show(shape)) fail(sub(pwhere, "shape"), `${show(shape)}, but weights[${show(p)}] has ${show(weights[p].shape)}`);
    }
    const users = cacheUsers(g);
    for (const [s, t] of Object.entries(field(g, "state", where, "dict"))) {
      const swhere = sub(sub(where, "state"), s);
      const shape = ints(field(want(t, "dict", swhere), "shape", swhere, "list"), sub(swhere, "shape"));
      if (shape.length !== 2) fail(sub(swhere, "shape"), `${show(shape)} is not [rows, width]`);
      const ctx = limits.context_window;
      const rings = [...(users.get(s)?.rings ?? [])];
      const ringed = rings.some((r) => r !== 0);
      if (ringed && (rings.length !== 1 || rings[0] !== shape[0] || (ctx != null && shape[0] >= ctx))) {
        fail(swhere, `a ring cache of ${shape[0]} rows needs ring == ${shape[0]} < context_window (${ctx}) on every node using it, got rings ${show(rings)}`);
      }
      if (!ringed && ctx != null && shape[0] < ctx) fail("context_window", `${ctx} is more than the ${shape[0]} rows of the KV cache ${swhere}`);
      state[s] = shape;
      if (ringed) {
        const window = Math.max(0, ...(users.get(s)?.windows ?? []));
        const chunk = limits.prefill_chunk ?? 1;
        if (shape[0] < window + chunk - 1) fail(swhere, `a ring of ${shape[0]} rows cannot hold window ${window} + prefill_chunk ${chunk} - 1 keys`);
        state[s] = [shape[0], shape[1], window];
      }
    }
  }
  return state;
}

/**
 * Check a manifest (format and major version already checked) against itself; throws
 * ManifestProblem naming the first field that is wrong.
 * @param {any} m
 */
export function validateManifest(m) {
  if (m === null || typeof m !== "object" || Array.isArray(m)) fail("(top level)", "must be a JSON object");
  const kindName = "embedding" in m ? "embedding" : "language_model";
  const kind = BUNDLE_KINDS[kindName];
  const files = checkFiles(m);
  const vocab = checkModel(m);
  const limits = kind.stepLimits(m);
  checkTokenizer(m, files, vocab, kindName === "language_model");
  checkGeneration(m, vocab);
  checkQuantization(m);
  const weights = checkWeights(m, files);
  const state = checkGraphs(m, kind.graphs, weights, limits);
  checkPrograms(m, kind.programs, kind.stepBuffers, files, weights, state, limits, vocab);
}
