// Typed field access for the manifest validator (as webllm_py/bundle/fields.py): each check
// names the field path it is about, and a failed one throws ManifestProblem(where, problem).
import { compileDim } from "./runtime.js";

/** JSON numbers read exactly (Number.isSafeInteger); the Python side uses the same bound. */
const MAX_INT = Number.MAX_SAFE_INTEGER;

/** One manifest field is wrong: `where` is its path, `problem` says what is wrong. */
export class ManifestProblem extends Error {
  /** @param {string} where @param {string} problem */
  constructor(where, problem) {
    super(`${where}: ${problem}`);
    this.where = where;
  }
}

/** @param {string} where @param {string} problem @returns {never} */
export function fail(where, problem) {
  throw new ManifestProblem(where, problem);
}

/** The path of a member: `a.b`, `a["model.x"]` (keys that are not identifiers), `a[3]`. @param {string} where @param {string|number} k */
export function sub(where, k) {
  if (typeof k === "number") return `${where}[${k}]`;
  if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) return where ? `${where}.${k}` : k;
  return `${where}[${JSON.stringify(k)}]`;
}

/** A value as it reads in JSON, on one line and short. @param {unknown} v */
export function show(v, limit = 60) {
  let s;
  try {
    s = typeof v === "number" && !Number.isFinite(v) ? String(v) : JSON.stringify(v);
  } catch {
    s = undefined;
  }
  s ??= String(v);
  return s.length <= limit ? s : s.slice(0, limit - 3) + "...";
}

const isInt = (/** @type {unknown} */ v) => typeof v === "number" && Number.isInteger(v);
/** kind → [test, what the error says the value must be]; a table so every check reads alike. */
const KINDS = /** @type {Record<string, [(v: unknown) => boolean, string]>} */ ({
  int: [isInt, "an integer"],
  number: [(v) => typeof v === "number" && Number.isFinite(v), "a finite number"],
  str: [(v) => typeof v === "string", "a string"],
  bool: [(v) => typeof v === "boolean", "true or false"],
  dict: [(v) => v !== null && typeof v === "object" && !Array.isArray(v), "an object"],
  list: [(v) => Array.isArray(v), "a list"],
});

/**
 * @typedef {{lo?: number, hi?: number, loOpen?: boolean}} Bounds
 * @param {unknown} v @param {string} kind @param {string} where @param {Bounds} [bounds]
 * @returns {any} `v` if it is of `kind` (and, for numbers, within [lo, hi] / (lo, hi])
 */
export function want(v, kind, where, { lo, hi, loOpen = false } = {}) {
  const [test, what] = KINDS[kind];
  if (!test(v)) fail(where, `${show(v)} must be ${what}`);
  if (kind === "int" || kind === "number") {
    const n = /** @type {number} */ (v);
    if (kind === "int" && Math.abs(n) > MAX_INT) fail(where, `${show(v)} is out of range (|n| <= 2^53-1)`);
    if (lo != null && (loOpen ? n <= lo : n < lo)) fail(where, `${show(v)} must be ${loOpen ? ">" : ">="} ${lo}`);
    if (hi != null && n > hi) fail(where, `${show(v)} must be <= ${hi}`);
  }
  return v;
}

/**
 * obj[key] checked by `want`; undefined when optional and absent (null counts as absent then).
 * @param {any} obj @param {string} key @param {string} where @param {string} kind
 * @param {Bounds & {optional?: boolean}} [opts]
 * @returns {any}
 */
export function field(obj, key, where, kind, opts = {}) {
  const path = sub(where, key);
  if (!(key in obj) || (opts.optional && obj[key] == null)) {
    if (opts.optional) return undefined;
    fail(path, "missing required key");
  }
  return want(obj[key], kind, path, opts);
}

/** A list of token ids inside the vocabulary. @param {unknown} v @param {string} where @param {number} vocab */
export function tokenIds(v, where, vocab) {
  /** @type {unknown[]} */ (want(v, "list", where)).forEach((t, i) => want(t, "int", sub(where, i), { lo: 0, hi: vocab - 1 }));
  return v;
}

/** A dispatch size: a non-negative int, or an expression over n and p (as runtime.js compiles it). @param {unknown} v @param {string} where */
export function dim(v, where) {
  if (isInt(v)) return want(v, "int", where, { lo: 0 });
  if (typeof v !== "string") fail(where, `${show(v)} must be an integer or an expression over n and p`);
  let value;
  try {
    value = compileDim(v.replace(/\bb\b/g, "1"))(1, 0); // b: rows of an embedding batch (embeddings.js), at least 1
  } catch {
    fail(where, `${show(v)} is not an expression over n, p and b (integers, + - * //)`);
  }
  if (!Number.isFinite(value) || value < 0) fail(where, `${show(v)} is negative for n=1, p=0`);
  return v;
}
