// Embedding bundles in the browser: the `encode` program on WebGPU and engine.embeddings.create,
// as webllm_py/runtime/encoder.py, embedder.py and embeddings.py do natively.
//
// A batch is packed (no padding): ids, rows (the text of each token) and offsets (each text's
// first token) are written with the step uniform [n, 0, 0, 0], the program is recorded in one
// compute pass, and the b pooled rows of `embeddings` are copied to a MAP_READ buffer: one
// submission and one readback per step. Workgroup counts are expressions of n and b; encoder
// programs never use p (no KV cache), so runtime.js' compileDim evaluates them with b in p's place.
import { Tokenizer as HFTokenizer } from "@huggingface/tokenizers";
import { BundleError, DeviceLostError, WebLLMError } from "./errors.js";
import { acquireDevice } from "./gpu_device.js";
import { InvalidRequestError } from "./request.js";
import { ACT_BYTES, PRECISIONS, compileDim, halfsToFloats, planBuffers, round16 } from "./runtime.js";

const USAGE = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 };
const COMPUTE_STAGE = 0x4;
const BUFFER_TYPES = { read: "read-only-storage", read_write: "storage", uniform: "uniform" };
export const MAX_INPUTS = 2048; // OpenAI's limit of inputs per request
const FIELDS = ["input", "model", "dimensions", "encoding_format", "user"];

/** A request the loaded model cannot serve (chat with an embedding model, embed with a language model). */
export class ModelKindError extends WebLLMError {}

/** Compile an encoder workgroup expression over n and b (b takes p's place: encoder programs have no p). @param {string|number} expr */
export function compileEncoderDim(expr) {
  if (typeof expr === "string" && /p/.test(expr)) throw new BundleError(`encoder workgroup expression ${JSON.stringify(expr)} uses p`);
  return compileDim(typeof expr === "string" ? expr.replace(/b/g, "p") : expr);
}

/** Token rows packed back to back. @param {number[][]} rows */
export function packRows(rows) {
  const n = rows.reduce((s, r) => s + r.length, 0);
  const ids = new Int32Array(n), rowOf = new Int32Array(n), offsets = new Int32Array(rows.length + 1);
  let t = 0;
  rows.forEach((r, i) => {
    offsets[i] = t;
    for (const id of r) { ids[t] = id; rowOf[t++] = i; }
  });
  offsets[rows.length] = n;
  return { ids, rows: rowOf, offsets };
}

/** [start, end) row ranges, in order, each within the step limits. @param {number[][]} rows @param {number} maxTokens @param {number} maxRows */
export function batches(rows, maxTokens, maxRows) {
  /** @type {[number, number][]} */
  const out = [];
  let start = 0, tokens = 0;
  rows.forEach((r, i) => {
    if (i > start && (tokens + r.length > maxTokens || i - start === maxRows)) {
      out.push([start, i]);
      start = i;
      tokens = 0;
    }
    tokens += r.length;
  });
  if (rows.length) out.push([start, rows.length]);
  return out;
}

/**
 * HF tokenizers' truncation of a single text (which @huggingface/tokenizers does not apply):
 * the text's own tokens are cut so that, with the post-processor's special tokens around them,
 * at most `max` remain. `full` is the encoding with special tokens, `plain` without.
 * @param {number[]} full @param {number[]} plain @param {number} max
 */
export function truncateIds(full, plain, max) {
  if (full.length <= max) return full;
  let pre = 0; // where the text's tokens start inside `full`
  while (pre + plain.length <= full.length && !plain.every((id, j) => full[pre + j] === id)) pre++;
  if (pre + plain.length > full.length) throw new BundleError("the tokenizer's special tokens could not be told from the text's");
  const post = full.length - pre - plain.length;
  return [...full.slice(0, pre), ...plain.slice(0, Math.max(0, max - pre - post)), ...full.slice(pre + plain.length)];
}

/** @param {unknown} v */
const isInt = (v) => typeof v === "number" && Number.isInteger(v);

/**
 * OpenAI's `input`: {texts} or {tokenRows}; InvalidRequestError naming what is wrong.
 * @param {unknown} value
 * @returns {{texts?: string[], tokenRows?: number[][]}}
 */
export function parseInput(value) {
  const list = typeof value === "string" ? [value] : value;
  const kinds = "a non-empty string, list of strings, list of token ids or list of such lists";
  if (!Array.isArray(list) || !list.length) throw new InvalidRequestError(`input must be ${kinds}`, "input");
  if (list.length > MAX_INPUTS) throw new InvalidRequestError(`input has ${list.length} items; at most ${MAX_INPUTS} per request`, "input");
  if (list.every((v) => typeof v === "string")) {
    const empty = list.findIndex((v) => !v);
    if (empty >= 0) throw new InvalidRequestError(`input[${empty}] is an empty string`, "input");
    return { texts: list };
  }
  if (list.every(isInt)) return { tokenRows: [list] };
  if (list.every(Array.isArray)) {
    list.forEach((r, i) => {
      if (!r.length || !r.every(isInt)) throw new InvalidRequestError(`input[${i}] must be a non-empty list of token ids (integers)`, "input");
    });
    return { tokenRows: list };
  }
  throw new InvalidRequestError("input must be one kind: strings, token ids, or lists of token ids (not a mix)", "input");
}

/** Little-endian float32 bytes as base64 (OpenAI's encoding_format "base64"). @param {Float32Array} v */
function toBase64(v) {
  const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** The `encode` program of one program set on a GPUDevice. */
export class WebGPUEncoder {
  /**
   * @param {{manifest: any, files: Map<string, ArrayBuffer>}} bundle loadBundle's result
   * @param {{precision?: string, gpu?: GPU, adapter?: GPUAdapter, onPipeline?: (done: number, total: number) => void}} [options]
   */
  static async create(bundle, options = {}) {
    const { manifest, files } = bundle;
    const precisionOpt = options.precision ?? "auto";
    if (!PRECISIONS.includes(/** @type {any} */ (precisionOpt))) throw new TypeError(`precision must be one of ${PRECISIONS.join(", ")}, got ${precisionOpt}`);
    planBuffers(manifest, "f32");
    const gpu = await acquireDevice({
      manifest, precision: /** @type {any} */ (precisionOpt), gpu: options.gpu, adapter: options.adapter,
      limitsFor: (/** @type {any} */ p) => planBuffers(manifest, p),
    });
    const enc = new WebGPUEncoder(manifest, gpu.device, gpu.precision, gpu.adapterInfo);
    try {
      enc._createBuffers(files);
      await enc._createPipelines(files, options.onPipeline);
    } catch (err) {
      enc.destroy();
      throw err;
    }
    return enc;
  }

  /** @param {any} manifest @param {GPUDevice} device @param {"f32"|"f16"|"idot"} precision @param {Record<string, string>} adapterInfo */
  constructor(manifest, device, precision, adapterInfo) {
    const e = manifest.embedding;
    this.manifest = manifest;
    this.device = device;
    this.precision = precision;
    this.adapterInfo = adapterInfo;
    this.dimensions = Number(e.dimensions);
    this.maxSeqLength = Number(e.max_seq_length);
    this.maxBatchTokens = Number(e.max_batch_tokens);
    this.maxBatchRows = Number(e.max_batch_rows);
    this.vocabSize = Number(manifest.model.config.vocab_size);
    this.sizes = planBuffers(manifest, precision).sizes;
    /** @type {Map<string, GPUBuffer>} */
    this.buffers = new Map();
    /** @type {{pipeline: GPUComputePipeline, bindGroup: GPUBindGroup, workgroups: ((n: number, b: number) => number)[]}[]} */
    this.steps = [];
    /** @type {GPUBuffer|null} */
    this.staging = null;
    /** @type {DeviceLostError|null} */
    this.lost = null;
    this._destroyed = false;
    this.stats = { tokens: 0, seconds: 0 };
    device.lost.then((info) => {
      if (!this._destroyed) this.lost = new DeviceLostError(info.reason, info.message);
    });
  }

  /** @param {Map<string, ArrayBuffer>} files */
  _createBuffers(files) {
    for (const [name, b] of Object.entries(this.manifest.buffers)) {
      const spec = /** @type {any} */ (b);
      const usage = spec.kind === "uniform" ? USAGE.UNIFORM | USAGE.COPY_DST
        : USAGE.STORAGE | USAGE.COPY_DST | (spec.kind === "output" ? USAGE.COPY_SRC : 0);
      const buf = this.device.createBuffer({ size: /** @type {number} */ (this.sizes.get(name)), usage, label: name });
      this.buffers.set(name, buf);
      if (spec.kind === "weight") this._upload(buf, spec, files);
    }
    for (const need of ["ids", "rows", "offsets", "step", "embeddings"]) {
      if (!this.buffers.has(need)) throw new BundleError(`embedding bundle buffers lack ${need}`);
    }
    this.staging = this.device.createBuffer({
      size: /** @type {number} */ (this.sizes.get("embeddings")), usage: USAGE.MAP_READ | USAGE.COPY_DST, label: "embeddings-staging",
    });
  }

  /** @param {GPUBuffer} buf @param {any} spec @param {Map<string, ArrayBuffer>} files */
  _upload(buf, spec, files) {
    const ref = this.manifest.weights?.[spec.param]?.parts?.[spec.part];
    const shard = ref && files.get(ref.file);
    if (!shard) throw new BundleError(`weight ${spec.param}/${spec.part} was not loaded`);
    const padded = new Uint8Array(Math.ceil(ref.nbytes / 4) * 4); // writeBuffer sizes are multiples of 4
    padded.set(new Uint8Array(shard, ref.offset, ref.nbytes));
    this.device.queue.writeBuffer(buf, 0, padded);
  }

  /** @param {Map<string, ArrayBuffer>} files @param {((done: number, total: number) => void)|undefined} onPipeline */
  async _createPipelines(files, onPipeline) {
    const d = this.device;
    const program = this.manifest.programs?.[this.precision]?.encode;
    if (!program) throw new BundleError(`embedding bundle has no ${this.precision} encode program`);
    /** @type {Map<string, Promise<{pipeline: GPUComputePipeline, layout: GPUBindGroupLayout}>>} */
    const pipes = new Map();
    let done = 0;
    const total = new Set(program.dispatches.map((/** @type {any} */ x) => x.kernel)).size;
    const pipeline = (/** @type {string} */ kname) => {
      if (!pipes.has(kname)) {
        pipes.set(kname, (async () => {
          const k = this.manifest.kernels[kname];
          const text = k && files.get(k.file);
          if (!text) throw new BundleError(`kernel ${kname} was not loaded`);
          const layout = d.createBindGroupLayout({
            label: kname,
            entries: k.bindings.map((/** @type {[string, string]} */ [, kind], /** @type {number} */ i) => ({
              binding: i, visibility: COMPUTE_STAGE, buffer: { type: /** @type {any} */ (BUFFER_TYPES)[kind] },
            })),
          });
          const module = d.createShaderModule({ code: new TextDecoder().decode(text), label: kname });
          try {
            const p = await d.createComputePipelineAsync({
              label: kname, layout: d.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module, entryPoint: "main" },
            });
            onPipeline?.(++done, total);
            return { pipeline: p, layout };
          } catch (cause) {
            throw new BundleError(`kernel ${kname} (${k.file}) failed to compile: ${/** @type {any} */ (cause)?.message ?? cause}`, null, { cause });
          }
        })());
      }
      return /** @type {Promise<any>} */ (pipes.get(kname));
    };
    const compiled = await Promise.all(program.dispatches.map((/** @type {any} */ disp) => pipeline(disp.kernel)));
    this.steps = program.dispatches.map((/** @type {any} */ disp, /** @type {number} */ i) => ({
      pipeline: compiled[i].pipeline,
      bindGroup: d.createBindGroup({
        layout: compiled[i].layout,
        entries: disp.bindings.map((/** @type {string} */ b, /** @type {number} */ j) => {
          const buffer = this.buffers.get(b);
          if (!buffer) throw new BundleError(`kernel ${disp.kernel} binds unknown buffer ${b}`);
          return { binding: j, resource: { buffer } };
        }),
      }),
      workgroups: disp.workgroups.map(compileEncoderDim),
    }));
  }

  /** One packed batch; resolves to its b embeddings (b × dimensions, f32). @param {ReturnType<typeof packRows>} batch */
  async _step(batch) {
    if (this.lost) throw this.lost;
    if (this._destroyed) throw new DeviceLostError("destroyed", "the engine was unloaded");
    const n = batch.ids.length, b = batch.offsets.length - 1;
    const q = this.device.queue;
    q.writeBuffer(/** @type {GPUBuffer} */ (this.buffers.get("ids")), 0, batch.ids);
    q.writeBuffer(/** @type {GPUBuffer} */ (this.buffers.get("rows")), 0, batch.rows);
    q.writeBuffer(/** @type {GPUBuffer} */ (this.buffers.get("offsets")), 0, batch.offsets);
    q.writeBuffer(/** @type {GPUBuffer} */ (this.buffers.get("step")), 0, new Uint32Array([n, 0, 0, 0]));
    const enc = this.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (const s of this.steps) {
      pass.setPipeline(s.pipeline);
      pass.setBindGroup(0, s.bindGroup);
      pass.dispatchWorkgroups(s.workgroups[0](n, b), s.workgroups[1](n, b), s.workgroups[2](n, b));
    }
    pass.end();
    const count = b * this.dimensions, act = ACT_BYTES[this.precision];
    const nbytes = round16(count * act);
    const staging = /** @type {GPUBuffer} */ (this.staging);
    enc.copyBufferToBuffer(/** @type {GPUBuffer} */ (this.buffers.get("embeddings")), 0, staging, 0, nbytes);
    q.submit([enc.finish()]);
    await staging.mapAsync(0x1, 0, nbytes);
    try {
      const mapped = staging.getMappedRange(0, nbytes);
      return act === 4 ? new Float32Array(mapped, 0, count).slice() : halfsToFloats(new Uint16Array(mapped, 0, count), new Float32Array(count));
    } finally {
      staging.unmap();
    }
  }

  /** Each token row's embedding, in as few steps as the bundle's limits allow. @param {number[][]} rows @returns {Promise<Float32Array[]>} */
  async encode(rows) {
    rows.forEach((r, i) => {
      if (!r.length) throw new InvalidRequestError(`input: row ${i} has no tokens`, "input");
      if (r.length > this.maxSeqLength) {
        throw new InvalidRequestError(`input: row ${i} has ${r.length} tokens; the model embeds at most max_seq_length ${this.maxSeqLength}`, "input");
      }
      const bad = r.filter((t) => !(t >= 0 && t < this.vocabSize));
      if (bad.length) throw new InvalidRequestError(`input: row ${i}: token ids ${bad.slice(0, 5)} are outside the vocabulary (size ${this.vocabSize})`, "input");
    });
    const t0 = performance.now();
    /** @type {Float32Array[]} */
    const out = [];
    for (const [s, e] of batches(rows, this.maxBatchTokens, this.maxBatchRows)) {
      const flat = await this._step(packRows(rows.slice(s, e)));
      for (let i = 0; i < e - s; i++) out.push(flat.subarray(i * this.dimensions, (i + 1) * this.dimensions));
    }
    this.stats = { tokens: rows.reduce((a, r) => a + r.length, 0), seconds: (performance.now() - t0) / 1000 };
    return out;
  }

  destroy() {
    if (this._destroyed) return;
    this._destroyed = true;
    for (const b of this.buffers.values()) b.destroy();
    this.staging?.destroy();
    this.device.destroy();
  }
}

/** engine.embeddings of an embedding bundle (or, with no encoder, of a language model: it refuses). */
export class Embeddings {
  /** @param {WebGPUEncoder|null} encoder @param {any} tokenizer @param {any} manifest @param {string} modelName */
  constructor(encoder, tokenizer, manifest, modelName) {
    this.encoder = encoder;
    this.tokenizer = tokenizer;
    this.modelName = modelName;
    const e = manifest?.embedding ?? {};
    this.lowercase = Boolean(e.lowercase);
    this.prefix = e.default_prompt_name ? (e.prompts?.[e.default_prompt_name] ?? "") : "";
    this.normalize = Boolean(e.normalize);
    /** @type {Promise<unknown>} one step at a time on the device */
    this.queue = Promise.resolve();
  }

  /** @param {string} text */
  _ids(text) {
    const t = this.prefix + (this.lowercase ? text.toLowerCase() : text);
    const full = this.tokenizer.encode(t).ids, max = /** @type {WebGPUEncoder} */ (this.encoder).maxSeqLength;
    return full.length <= max ? full : truncateIds(full, this.tokenizer.encode(t, { add_special_tokens: false }).ids, max);
  }

  /**
   * OpenAI `embeddings.create`: {input, model?, dimensions?, encoding_format?: "float"|"base64", user?}.
   * @param {Record<string, any>} params
   */
  async create(params) {
    if (!this.encoder) {
      throw new ModelKindError(`model ${JSON.stringify(this.modelName)} is a language model, not an embedding model: build a bundle from an embedding model (BERT, XLM-RoBERTa) to embed`);
    }
    const unknown = Object.keys(params ?? {}).filter((k) => !FIELDS.includes(k)).sort();
    if (unknown.length) throw new InvalidRequestError(`unknown field${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")}; embeddings accept ${FIELDS.join(", ")}`, unknown[0]);
    if (params.input == null) throw new InvalidRequestError("input is required", "input");
    const { texts, tokenRows } = parseInput(params.input);
    const dims = params.dimensions;
    if (dims != null && !(isInt(dims) && dims >= 1 && dims <= this.encoder.dimensions)) {
      throw new InvalidRequestError(`dimensions must be an integer in 1..${this.encoder.dimensions}, got ${JSON.stringify(dims)}`, "dimensions");
    }
    const fmt = params.encoding_format ?? "float";
    if (fmt !== "float" && fmt !== "base64") throw new InvalidRequestError(`encoding_format must be one of float, base64, got ${JSON.stringify(fmt)}`, "encoding_format");
    for (const k of ["model", "user"]) if (params[k] != null && typeof params[k] !== "string") throw new InvalidRequestError(`${k} must be a string`, k);
    const rows = tokenRows ?? /** @type {string[]} */ (texts).map((t) => this._ids(t));
    const run = this.queue.then(() => /** @type {WebGPUEncoder} */ (this.encoder).encode(rows));
    this.queue = run.catch(() => {});
    let vecs = await run;
    if (dims != null && dims < this.encoder.dimensions) {
      vecs = vecs.map((v) => {
        const cut = v.slice(0, dims);
        if (!this.normalize) return cut;
        const norm = Math.max(Math.hypot(...cut), 1e-12); // Matryoshka: the prefix of a unit vector, back to unit length
        return cut.map((x) => x / norm);
      });
    }
    const tokens = rows.reduce((a, r) => a + r.length, 0);
    return {
      object: "list",
      data: vecs.map((v, index) => ({ object: "embedding", index, embedding: fmt === "base64" ? toBase64(Float32Array.from(v)) : Array.from(v) })),
      model: this.modelName,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    };
  }
}

/** The engine of an embedding bundle: `embeddings.create`; chat and completions refuse. */
export class EmbeddingEngine {
  /** @param {WebGPUEncoder} encoder @param {any} tokenizer @param {any} manifest @param {string} [modelName] */
  constructor(encoder, tokenizer, manifest, modelName) {
    this.encoder = encoder;
    this.modelName = modelName ?? manifest.model?.id ?? "model";
    this.embeddings = new Embeddings(encoder, tokenizer, manifest, this.modelName);
    const refuse = async () => {
      throw new ModelKindError(`model ${JSON.stringify(this.modelName)} is an embedding model: it cannot chat or complete text; use embeddings.create`);
    };
    this.chat = { completions: { create: refuse } };
    this.completions = { create: refuse };
  }

  runtimeStats() {
    const s = this.encoder.stats;
    return { embedTokens: s.tokens, embedSeconds: s.seconds, precision: this.encoder.precision };
  }

  async unload() {
    this.encoder.destroy();
  }
}

/**
 * CreateEngine's path for an embedding bundle (loadBundle already ran).
 * @param {{manifest: any, files: Map<string, ArrayBuffer>}} bundle
 * @param {{precision?: string, gpu?: GPU, adapter?: GPUAdapter, modelName?: string}} options
 * @param {(progress: number, text: string) => void} report
 * @param {number} loadShare the share of progress the download took
 */
export async function createEmbeddingEngine(bundle, options, report, loadShare) {
  const encoder = await WebGPUEncoder.create(bundle, {
    precision: options.precision, gpu: options.gpu, adapter: options.adapter,
    onPipeline: (done, total) => report(loadShare + (1 - loadShare) * 0.99 * (done / total), `Compiling kernels ${done}/${total}`),
  });
  try {
    const m = bundle.manifest;
    const dec = (/** @type {string} */ path) => {
      const buf = bundle.files.get(path);
      if (!buf) throw new BundleError(`${path} was not loaded`);
      return JSON.parse(new TextDecoder().decode(buf));
    };
    const tokenizer = new HFTokenizer(dec(m.tokenizer.file), m.tokenizer.config_file ? dec(m.tokenizer.config_file) : {});
    for (const path of [...bundle.files.keys()]) if (path.startsWith("params/")) bundle.files.delete(path);
    report(1, `Finish loading on WebGPU (${encoder.precision}, embedding model)`);
    return new EmbeddingEngine(encoder, tokenizer, m, options.modelName);
  } catch (err) {
    encoder.destroy();
    throw err;
  }
}
