// Manifest `buffers`, `kernels` and `programs` (as webllm_py/bundle/validate_programs.py): kernels
// come from listed (hashed) WGSL files; dispatches name existing kernels and buffers, as many as
// the kernel binds; weight buffers are byte ranges of their part; the KV-cache, ids and output
// buffers are large enough for the step limits (context_window, prefill_chunk, ...).
import { dim, fail, field, show, sub, want } from "./manifest_fields.js";
import { listed } from "./manifest_paths.js";

const BUFFER_KINDS = ["ids", "rows", "offsets", "uniform", "output", "state", "activation", "weight"];
const BUFFER_DTYPES = ["act", "i32", "u32", "f32"]; // "act": the program set's activation type
const BINDING_KINDS = ["read", "read_write", "uniform"];

/**
 * @typedef {[string, string, (limits: Record<string, number>, vocab: number) => number][]} StepBuffers
 *   (buffer, limit, elements it needs) the runtimes write each step
 */

/** @param {any} m @param {Record<string, any>} weights */
function checkBuffers(m, weights) {
  const buffers = field(m, "buffers", "", "dict");
  for (const [name, b] of Object.entries(buffers)) {
    const where = sub("buffers", name);
    want(b, "dict", where);
    const kind = field(b, "kind", where, "str");
    if (!BUFFER_KINDS.includes(kind)) fail(sub(where, "kind"), `${show(kind)} is not a buffer kind (${BUFFER_KINDS.join(", ")})`);
    if ("bytes" in b || kind === "uniform" || kind === "weight") field(b, "bytes", where, "int", { lo: 0 });
    else {
      field(b, "elements", where, "int", { lo: 0 });
      const dtype = field(b, "dtype", where, "str");
      if (!BUFFER_DTYPES.includes(dtype)) fail(sub(where, "dtype"), `${show(dtype)} is not one of ${BUFFER_DTYPES.join(", ")}`);
    }
    if (kind === "weight") {
      const param = field(b, "param", where, "str");
      if (!Object.hasOwn(weights, param)) fail(sub(where, "param"), `${show(param)} is not in weights`);
      const part = field(b, "part", where, "str");
      if (!Object.hasOwn(weights[param].parts, part)) fail(sub(where, "part"), `${show(part)} is not a part of weights[${show(param)}]`);
      const offset = field(b, "offset", where, "int", { lo: 0 });
      const nbytes = weights[param].parts[part].nbytes;
      if (offset + b.bytes > nbytes) {
        fail(where, `${b.bytes} bytes at offset ${offset} end past the ${nbytes} bytes of weights[${show(param)}].parts.${part}`);
      }
    }
  }
  if (!Object.keys(buffers).length) fail("buffers", "no buffers");
  return buffers;
}

/** @param {any} m @param {Map<string, number>} files */
function checkKernels(m, files) {
  const kernels = field(m, "kernels", "", "dict");
  if (!Object.keys(kernels).length) fail("kernels", "no kernels");
  for (const [name, k] of Object.entries(kernels)) {
    const where = sub("kernels", name);
    want(k, "dict", where);
    listed(files, field(k, "file", where, "str"), sub(where, "file"));
    field(k, "bindings", where, "list").forEach((/** @type {any} */ b, /** @type {number} */ i) => {
      if (!(Array.isArray(b) && b.length === 2 && typeof b[0] === "string" && BINDING_KINDS.includes(b[1]))) {
        fail(sub(sub(where, "bindings"), i), `${show(b)} is not [name, one of ${BINDING_KINDS.join(", ")}]`);
      }
    });
    const wg = field(k, "workgroup_size", where, "list");
    if (wg.length !== 3) fail(sub(where, "workgroup_size"), `${show(wg)} is not [x, y, z]`);
    wg.forEach((/** @type {unknown} */ n, /** @type {number} */ i) => want(n, "int", sub(sub(where, "workgroup_size"), i), { lo: 1 }));
  }
  return kernels;
}

/** @param {any} d @param {string} where @param {Record<string, any>} kernels @param {Record<string, any>} buffers */
function checkDispatch(d, where, kernels, buffers) {
  want(d, "dict", where);
  const kname = field(d, "kernel", where, "str");
  if (!Object.hasOwn(kernels, kname)) fail(sub(where, "kernel"), `${show(kname)} is not in kernels`);
  const kinds = kernels[kname].bindings.map((/** @type {[string, string]} */ b) => b[1]);
  const bound = field(d, "bindings", where, "list");
  if (bound.length !== kinds.length) fail(sub(where, "bindings"), `${bound.length} buffers for the ${kinds.length} bindings of ${kname}`);
  bound.forEach((/** @type {unknown} */ bname, /** @type {number} */ i) => {
    const bwhere = sub(sub(where, "bindings"), i);
    if (typeof bname !== "string" || !Object.hasOwn(buffers, bname)) fail(bwhere, `${show(bname)} is not in buffers`);
    if ((kinds[i] === "uniform") !== (buffers[bname].kind === "uniform")) fail(bwhere, `${bname} (${buffers[bname].kind}) cannot be bound as ${kinds[i]}`);
    if (kinds[i] === "read_write" && bound.filter((/** @type {unknown} */ x) => x === bname).length > 1) fail(bwhere, `${bname} is bound twice, once writable`);
  });
  const groups = field(d, "workgroups", where, "list");
  if (groups.length !== 3) fail(sub(where, "workgroups"), `${show(groups)} is not [x, y, z]`);
  groups.forEach((/** @type {unknown} */ g, /** @type {number} */ i) => dim(g, sub(sub(where, "workgroups"), i)));
}

/**
 * A ring state buffer (docs/bundle-format.md "Ring KV caches"): `ring` = the graphs' rows (<
 * context_window), `window` the attention's, elements = ring x width; a buffer of a cache without
 * a ring has neither field. As bundle/validate_programs.py _check_ring.
 * @param {any} b @param {string} where @param {number} rows @param {number} width @param {number} window
 * @param {number|undefined} ctx
 */
function checkRing(b, where, rows, width, window, ctx) {
  if (!window) {
    for (const key of ["ring", "window"]) {
      if (key in b) fail(sub(where, key), `the graphs' cache ${show(where)} is not a ring (it holds every position); remove the field`);
    }
    return;
  }
  const ring = field(b, "ring", where, "int", { lo: 1, hi: ctx == null ? undefined : ctx - 1 });
  if (ring !== rows) fail(sub(where, "ring"), `${ring}, but the graphs' ring cache has ${rows} rows`);
  if (field(b, "window", where, "int", { lo: 1 }) !== window) fail(sub(where, "window"), `${b.window}, but the graphs' attention window is ${window}`);
  if (b.elements !== ring * width) fail(sub(where, "elements"), `${b.elements} is not ring x width = ${ring} x ${width}`);
}

/**
 * KV-cache buffers hold context_window rows (a ring cache: exactly `ring` rows); step buffers hold the largest step.
 * @param {Record<string, any>} buffers @param {Record<string, number[]>} state @param {Record<string, number>} limits
 * @param {StepBuffers} stepBuffers @param {number} vocab
 */
function checkSizes(buffers, state, limits, stepBuffers, vocab) {
  const ctx = limits.context_window;
  for (const [name, [rows, width, window]] of Object.entries(state)) {
    const b = buffers[name];
    if (!b || b.kind !== "state") fail(sub("buffers", name), "missing: the graphs' KV cache needs a state buffer");
    field(b, "elements", sub("buffers", name), "int"); // not `bytes`: its rows are counted in elements
    checkRing(b, sub("buffers", name), rows, width, window ?? 0, ctx);
    if (window) continue;
    if (ctx != null && b.elements < ctx * width) {
      fail("context_window", `${ctx} is more than the ${Math.floor(b.elements / width)} rows ${sub("buffers", name)} holds (${b.elements} elements of width ${width})`);
    }
  }
  for (const [name, limit, need] of stepBuffers) {
    const b = buffers[name];
    if (!b || !("elements" in b)) fail(sub("buffers", name), "missing (the runtimes write each step into it)");
    const n = need(limits, vocab);
    if (b.elements < n) fail(limit, `${limits[limit]} needs ${n} elements of ${sub("buffers", name)}, which holds ${b.elements}`);
  }
}

// program_sets entries (webllm_py/passes/program_sets.py set_metadata): field -> allowed values
const SET_FIELDS = /** @type {const} */ ([["class", ["cpu", "gpu"]], ["activations", ["f32", "f16"]], ["kv", ["f32", "f16", "f16x2"]]]);

/**
 * `program_sets` (optional: bundles before adapter classes lack it): one entry per set of
 * `programs`, each naming its class, activations, KV storage and the features it needs.
 * @param {any} m @param {Record<string, any>} sets
 */
function checkSetMetadata(m, sets) {
  const metas = field(m, "program_sets", "", "list", { optional: true });
  if (metas === undefined) return;
  /** @type {string[]} */ const seen = [];
  metas.forEach((/** @type {any} */ meta, /** @type {number} */ i) => {
    const where = sub("program_sets", i);
    want(meta, "dict", where);
    const name = field(meta, "name", where, "str");
    if (!Object.hasOwn(sets, name) || seen.includes(name)) fail(sub(where, "name"), `${show(name)} is not a program set of programs, or is listed twice`);
    seen.push(name);
    for (const [key, allowed] of SET_FIELDS) {
      const v = field(meta, key, where, "str");
      if (!(/** @type {readonly string[]} */ (allowed)).includes(v)) fail(sub(where, key), `${show(v)} is not one of ${allowed.join(", ")}`);
    }
    for (const key of ["features", "wgsl_language_features"]) {
      field(meta, key, where, "list").forEach((/** @type {unknown} */ f, /** @type {number} */ j) => want(f, "str", sub(sub(where, key), j)));
    }
  });
  const names = Object.keys(sets);
  if (seen.length !== names.length || !names.every((n) => seen.includes(n))) {
    fail("program_sets", `lists ${seen.join(", ")} but programs has ${names.join(", ")}; rebuild the bundle`);
  }
}

/**
 * Validate buffers, kernels and every program set (each must hold `programs`). Bundles of the
 * first format have no programs (the browser runtime then says to rebuild).
 * @param {any} m @param {string[]} programs @param {StepBuffers} stepBuffers @param {Map<string, number>} files
 * @param {Record<string, any>} weights @param {Record<string, number[]>} state @param {Record<string, number>} limits @param {number} vocab
 */
export function checkPrograms(m, programs, stepBuffers, files, weights, state, limits, vocab) {
  if (!("programs" in m)) return;
  const buffers = checkBuffers(m, weights);
  const kernels = checkKernels(m, files);
  const sets = field(m, "programs", "", "dict");
  if (!Object.keys(sets).length) fail("programs", "no program set");
  for (const [setName, progs] of Object.entries(sets)) {
    const swhere = sub("programs", setName);
    want(progs, "dict", swhere);
    for (const pname of programs) {
      const pwhere = sub(swhere, pname);
      const prog = field(progs, pname, swhere, "dict");
      field(prog, "dispatches", pwhere, "list").forEach((/** @type {any} */ d, /** @type {number} */ i) =>
        checkDispatch(d, sub(sub(pwhere, "dispatches"), i), kernels, buffers));
      for (const key of ["logits_rows", "output_rows"]) if (key in prog) dim(prog[key], sub(pwhere, key));
      const out = field(prog, "output", pwhere, "str", { optional: true });
      if (out !== undefined && !Object.hasOwn(buffers, out)) fail(sub(pwhere, "output"), `${show(out)} is not in buffers`);
    }
  }
  checkSetMetadata(m, sets);
  const features = field(m, "wgsl_language_features", "", "dict", { optional: true }) ?? {};
  for (const [setName, names] of Object.entries(features)) {
    const fwhere = sub("wgsl_language_features", setName);
    want(names, "list", fwhere).forEach((/** @type {unknown} */ f, /** @type {number} */ i) => want(f, "str", sub(fwhere, i)));
  }
  checkSizes(buffers, state, limits, stepBuffers, vocab);
}
