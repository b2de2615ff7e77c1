// Manifest `weights` (as webllm_py/bundle/validate_weights.py): each part's dtype, shape and byte
// count follow from the weight's format and shape (webllm_py/quant/formats.py), and the parts lie
// inside listed files, 256-byte aligned, without overlapping each other.
import { fail, field, show, sub, want } from "./manifest_fields.js";
import { listed } from "./manifest_paths.js";

const PART_ALIGN = 256;
const SHARD_DIR = "params/";
const GROUP_SIZE = 32;
const PART_DTYPE_BYTES = /** @type {Record<string, number>} */ ({ u32: 4, f16: 2, f32: 4 });
/** format → [values per u32 word, scales per group] for the group-quantized ones (null: f32/f16). */
const FORMATS = /** @type {Record<string, [number, number]|null>} */ ({ f32: null, f16: null, q8: [4, 1], q4: [8, 1], q4a: [8, 2] });
/** GGUF block formats kept bit for bit (webllm_py/quant/kquant.py): format → [columns per block, data
 *  u32 words per block, scales dtype, scales entries per block]. */
const BLOCK_FORMATS = /** @type {Record<string, [number, number, string, number]>} */ ({
  q5: [32, 5, "f16", 1], q5a: [32, 5, "f16", 2], q2k: [256, 16, "u32", 5], q3k: [256, 24, "u32", 5],
  q4k: [256, 32, "u32", 5], q5k: [256, 40, "u32", 5], q6k: [256, 48, "u32", 5],
});
for (const f of Object.keys(BLOCK_FORMATS)) FORMATS[f] = [0, 0]; // quantized (2-D only); parts from BLOCK_FORMATS

/**
 * part name → [dtype, shape] a weight of `fmt` and logical `shape` is stored as.
 * @param {string} fmt @param {number[]} shape @returns {Record<string, [string, number[]]>}
 */
export function expectedParts(fmt, shape) {
  const q = FORMATS[fmt];
  if (!q) return { data: [fmt, shape] }; // f32 / f16: the dtype is the format
  const [rows, cols] = shape;
  const b = BLOCK_FORMATS[fmt];
  if (b) {
    const blocks = Math.ceil(cols / b[0]);
    return { data: ["u32", [rows, blocks * b[1]]], scales: [b[2], [rows, blocks * b[3]]] };
  }
  const groups = Math.ceil(cols / GROUP_SIZE);
  return { data: ["u32", [rows, (groups * GROUP_SIZE) / q[0]]], scales: ["f16", [rows, groups * q[1]]] };
}

/** @param {unknown} v @param {string} where @returns {number[]} */
function shapeOf(v, where) {
  const dims = want(v, "list", where);
  if (!dims.length) fail(where, "empty shape");
  dims.forEach((/** @type {unknown} */ d, /** @type {number} */ i) => want(d, "int", sub(where, i), { lo: 1 }));
  return dims;
}

/**
 * One part reference; returns [file, offset, end].
 * @param {any} ref @param {string} where @param {string} dtype @param {number[]} shape @param {string} fmt
 * @param {Map<string, number>} files @returns {[string, number, number]}
 */
function checkPart(ref, where, dtype, shape, fmt, files) {
  want(ref, "dict", where);
  const path = listed(files, field(ref, "file", where, "str"), sub(where, "file"));
  // not a kernel's or the tokenizer's bytes (webllm_py/bundle/shards.py writes every part there)
  if (!(path.startsWith(SHARD_DIR) && path.endsWith(".bin"))) fail(sub(where, "file"), `${show(path)} is not a weight shard (${SHARD_DIR}*.bin)`);
  const offset = field(ref, "offset", where, "int", { lo: 0 });
  const nbytes = field(ref, "nbytes", where, "int", { lo: 0 });
  const gotDtype = field(ref, "dtype", where, "str");
  if (gotDtype !== dtype) fail(sub(where, "dtype"), `${show(gotDtype)}, but ${fmt} stores this part as ${dtype}`);
  const gotShape = shapeOf(field(ref, "shape", where, "list"), sub(where, "shape"));
  if (show(gotShape) !== show(shape)) fail(sub(where, "shape"), `${show(gotShape)}, but ${fmt} of this weight's shape needs ${show(shape)}`);
  const need = shape.reduce((a, b) => a * b, 1) * PART_DTYPE_BYTES[dtype];
  if (nbytes !== need) fail(sub(where, "nbytes"), `${nbytes} bytes, but ${fmt} needs ${need} for shape ${show(shape)} of ${dtype}`);
  if (offset % PART_ALIGN) fail(sub(where, "offset"), `${offset} is not a multiple of ${PART_ALIGN} (parts are aligned)`);
  const size = /** @type {number} */ (files.get(path));
  if (offset + nbytes > size) fail(where, `${nbytes} bytes at offset ${offset} end past ${path} (${size} bytes)`);
  return [path, offset, offset + nbytes];
}

/**
 * Validate `weights`; returns name → weight entry (shape and parts checked).
 * @param {any} m @param {Map<string, number>} files @returns {Record<string, any>}
 */
export function checkWeights(m, files) {
  const weights = field(m, "weights", "", "dict");
  /** @type {Map<string, [number, number, string][]>} file → [offset, end, part path] */
  const spans = new Map();
  for (const [name, w] of Object.entries(weights)) {
    const where = sub("weights", name);
    want(w, "dict", where);
    const shape = shapeOf(field(w, "shape", where, "list"), sub(where, "shape"));
    const fmt = field(w, "format", where, "str");
    if (!(fmt in FORMATS)) fail(sub(where, "format"), `${show(fmt)} is not a weight format (${Object.keys(FORMATS).join(", ")})`);
    if (FORMATS[fmt] && shape.length !== 2) fail(sub(where, "format"), `${fmt} needs a 2-D weight, the shape is ${show(shape)}`);
    const parts = field(w, "parts", where, "dict");
    const expected = expectedParts(fmt, shape);
    const [have, need] = [Object.keys(parts).sort(), Object.keys(expected).sort()];
    if (show(have) !== show(need)) fail(sub(where, "parts"), `has ${show(have)}, ${fmt} stores ${show(need)}`);
    for (const [part, [dtype, pshape]] of Object.entries(expected)) {
      const pwhere = sub(sub(where, "parts"), part);
      const [path, start, end] = checkPart(parts[part], pwhere, dtype, pshape, fmt, files);
      if (end > start) (spans.get(path) ?? spans.set(path, []).get(path))?.push([start, end, pwhere]);
    }
    const err = field(w, "error", where, "dict", { optional: true });
    for (const key of ["max_abs", "rms", "weight_rms"]) if (err) field(err, key, sub(where, "error"), "number", { optional: true });
  }
  for (const [path, parts] of spans) {
    parts.sort((a, b) => a[0] - b[0] || a[1] - b[1] || (a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0));
    for (let i = 1; i < parts.length; i++) {
      const [[, e0, w0], [s1, e1, w1]] = [parts[i - 1], parts[i]];
      if (s1 < e0) fail(w1, `${e1 - s1} bytes at offset ${s1} overlap ${w0} in ${path}`); // the later part starts inside the earlier one
    }
  }
  return weights;
}
