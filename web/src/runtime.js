// The WebGPU runtime: interprets a bundle's programs (manifest.programs) on a GPUDevice,
// exactly as webllm_py/runtime/native.py does with wgpu-py.
//
// Everything per step is prepared at load: weights uploaded once from the shard bytes,
// activation / KV-cache / ids / step-uniform / logits / staging buffers allocated once,
// pipelines built from explicit bind group layouts (never layout "auto": a binding the
// shader declares but does not use must still be bound, as in native.py), and one bind
// group per dispatch. A step writes the ids and the 16-byte step uniform [n, p, end, 0] (end:
// the position after the forward call's last id),
// records every dispatch of one program in one compute pass, copies the logits rows to a
// MAP_READ staging buffer, submits once and maps it: one submission and one readback per
// step, no GPU allocation, and the ids/step typed arrays are reused. The next decode step's
// commands are recorded while the GPU runs this one (encode_ahead.js), and a greedy decode step
// can read back only its argmax id (forwardArgmax, gpu_sampling.js).
import { compileDim } from "./dims.js";
import { EncodeAhead } from "./encode_ahead.js";
import { BundleError, ContextWindowExceededError, DeviceLostError } from "./errors.js";
import { GpuArgmax } from "./gpu_sampling.js";
import { acquireDevice } from "./gpu_device.js";
import { halfsToFloats } from "./half.js";
import { ACT_BYTES, bufferBytes, estimateMemory, kvRings, resolveContextWindow, round16, sizedBufferSpecs } from "./kv_sizing.js";
import { RuntimeLoad } from "./runtime_load.js";
import { argmax } from "./sampler.js";

export { compileDim } from "./dims.js";
export { halfToFloat, halfsToFloats } from "./half.js";
export { ACT_BYTES, bufferBytes, round16 } from "./kv_sizing.js";

// "auto" or a program set (webllm_py/passes/program_sets.py; chooseProgramSet in gpu_device.js)
export const PRECISIONS = /** @type {const} */ (["auto", "f32", "f16", "idot", "gpu", "gpu-sg"]);

/** @typedef {"f32"|"f16"|"idot"|"gpu"|"gpu-sg"} Precision */
/** @typedef {(n: number, p: number) => number} DimFn */

// GPUBufferUsage / GPUShaderStage / GPUMapMode values (spec constants), so this module
// also loads where the WebGPU globals are absent (node unit tests).
const USAGE = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 };
const MAP_READ_MODE = 0x1;

// ---- buffer planning --------------------------------------------------------------------

/**
 * The size of every buffer, the largest one, the most storage bindings of one kernel and the
 * largest workgroup: what the device's limits must allow.
 * @param {any} manifest
 * @param {Precision} precision
 * @param {number} [contextWindowSize] KV-cache rows (default: the bundle's context window, kv_sizing.js)
 * @returns {{sizes: Map<string, number>, maxBuffer: number, maxStorageBuffers: number, maxInvocations: number, maxWorkgroupX: number}}
 */
export function planBuffers(manifest, precision, contextWindowSize) {
  if (!manifest.buffers || !manifest.programs || !manifest.kernels) {
    throw new BundleError("bundle has no programs (built by an older webllm-py?); rebuild it");
  }
  const specs = sizedBufferSpecs(manifest, contextWindowSize);
  const sizes = new Map(Object.entries(specs).map(([name, b]) => [name, bufferBytes(/** @type {any} */ (b), precision, manifest)]));
  let maxStorageBuffers = 0, maxInvocations = 1, maxWorkgroupX = 1;
  for (const k of Object.values(manifest.kernels)) {
    const kernel = /** @type {any} */ (k);
    const storage = kernel.bindings.filter((/** @type {[string, string]} */ b) => b[1] !== "uniform").length;
    maxStorageBuffers = Math.max(maxStorageBuffers, storage);
    const [x = 1, y = 1, z = 1] = kernel.workgroup_size ?? [];
    maxInvocations = Math.max(maxInvocations, x * y * z);
    maxWorkgroupX = Math.max(maxWorkgroupX, x);
  }
  return { sizes, maxBuffer: Math.max(...sizes.values()), maxStorageBuffers, maxInvocations, maxWorkgroupX };
}

/**
 * Programs of one precision with their workgroup expressions compiled.
 * @param {any} manifest @param {Precision} precision
 * @returns {Record<string, {dispatches: {kernel: string, bindings: string[], workgroups: DimFn[]}[], rows: DimFn}>}
 */
export function compilePrograms(manifest, precision) {
  const progs = manifest.programs?.[precision];
  if (!progs) throw new BundleError(`bundle has no ${precision} programs (has: ${Object.keys(manifest.programs ?? {}).join(", ")})`);
  /** @type {Record<string, any>} */
  const out = {};
  for (const [name, prog] of Object.entries(progs)) {
    out[name] = {
      dispatches: prog.dispatches.map((/** @type {any} */ d) => {
        if (!manifest.kernels[d.kernel]) throw new BundleError(`program ${name} uses unknown kernel ${d.kernel}`);
        for (const b of d.bindings) if (!manifest.buffers[b]) throw new BundleError(`kernel ${d.kernel} binds unknown buffer ${b}`);
        return { kernel: d.kernel, bindings: d.bindings, workgroups: d.workgroups.map(compileDim) };
      }),
      rows: compileDim(prog.logits_rows),
    };
  }
  for (const need of ["decode", "prefill"]) if (!out[need]) throw new BundleError(`bundle has no "${need}" program for ${precision}`);
  return out;
}

// ---- the runtime --------------------------------------------------------------------------------

/**
 * @typedef {object} RuntimeOptions
 * @property {"auto"|"f32"|"f16"|"idot"|"gpu"|"gpu-sg"} [precision] "auto" (chooseProgramSet: by adapter class, then features) or a program set by name
 * @property {GPU} [gpu] defaults to navigator.gpu
 * @property {GPUAdapter} [adapter] use this adapter instead of requesting one
 * @property {(done: number, total: number) => void} [onPipeline] pipeline compile progress
 * @property {number} [contextWindowSize] KV-cache rows, up to the bundle's context_window (default); fewer use less memory
 */

/**
 * The LanguageModel of webllm_py/runtime/lm.py on WebGPU. Methods are async (mapAsync);
 * one call at a time (the engine serializes requests).
 */
export class WebGPURuntime {
  /** @type {RuntimeLoad|null} between begin() and ready() */
  _load = null;

  /**
   * Upload the bundle's weights and build every pipeline.
   * @param {{manifest: any, files: Map<string, ArrayBuffer>}} bundle loadBundle's result
   * @param {RuntimeOptions} [options]
   */
  static async create(bundle, options = {}) {
    const rt = await WebGPURuntime.begin(bundle.manifest, options);
    try {
      for (const [path, buf] of bundle.files) rt.addFile(path, buf);
      await rt.ready();
    } catch (err) {
      rt.destroy();
      throw err;
    }
    return rt;
  }

  /**
   * The device and every buffer for `manifest`, before its files are read (runtime_load.js): then
   * addFile() each verified file as it comes (kernels compile, shards are written) and await
   * ready(). On any failure the caller destroy()s it.
   * @param {any} manifest @param {RuntimeOptions} [options]
   */
  static async begin(manifest, options = {}) {
    const precisionOpt = options.precision ?? "auto";
    if (!PRECISIONS.includes(precisionOpt)) throw new TypeError(`precision must be one of ${PRECISIONS.join(", ")}, got ${precisionOpt}`);
    const rows = resolveContextWindow(manifest, options.contextWindowSize);
    planBuffers(manifest, "f32"); // validates that the bundle has programs at all
    const gpu = await acquireDevice({
      manifest, precision: precisionOpt, gpu: options.gpu, adapter: options.adapter,
      limitsFor: (/** @type {Precision} */ p) => planBuffers(manifest, p, rows),
    });
    const rt = new WebGPURuntime(manifest, gpu.device, gpu.precision, gpu.adapterInfo, rows);
    try {
      rt._createBuffers();
      rt._load = new RuntimeLoad(rt, compilePrograms(manifest, rt.precision), options.onPipeline);
    } catch (err) {
      rt.destroy();
      throw err;
    }
    return rt;
  }

  /** A verified file of the bundle (between begin and ready). @param {string} path @param {ArrayBuffer} buf */
  addFile(path, buf) {
    const load = this._load;
    if (!load) throw new Error("addFile() after ready()");
    load.addFile(path, buf);
  }

  /** Every file added: wait for the pipelines and make the bind groups; then the runtime runs. */
  async ready() {
    const load = this._load;
    if (!load) throw new Error("ready() called twice");
    await load.ready();
    this._load = null;
    // greedy decoding's GPU argmax; where it does not compile, forwardArgmax reads the row back
    const logits = /** @type {GPUBuffer} */ (this.buffers.get("logits"));
    this._argmax = await GpuArgmax.create(this.device, ACT_BYTES[this.precision] === 2 ? "f16" : "f32", logits, this.vocabSize)
      .catch(() => null);
  }

  /**
   * @param {any} manifest @param {GPUDevice} device @param {Precision} precision
   * @param {Record<string, string>} adapterInfo
   * @param {number} [contextWindowSize] KV-cache rows (default: the bundle's context window)
   */
  constructor(manifest, device, precision, adapterInfo, contextWindowSize) {
    this.manifest = manifest;
    this.device = device;
    this.precision = precision;
    this.adapterInfo = adapterInfo;
    this.vocabSize = Number(manifest.model.config.vocab_size);
    this.contextWindow = resolveContextWindow(manifest, contextWindowSize);
    /** known before anything is allocated (kv_sizing.js) */
    this.memoryEstimate = estimateMemory(manifest, precision, this.contextWindow);
    this.prefillChunk = Number(manifest.prefill_chunk ?? 1);
    /** @type {"program"} prefill-written KV rows do not depend on the step they were in (kv_reuse.js) */
    this.kvReuse = "program";
    /** sliding-window ring caches' [rows, window]: which cached rows were overwritten (kv_reuse.js) */
    this.kvRings = kvRings(manifest);
    this.eosTokenIds = new Set(manifest.tokenizer?.eos_token_ids ?? []);
    this.position = 0;
    // longrope (runtime/lm.py): calls ending past longAfter rotate with the long frequencies, and
    // cached rows rotated with the other table are run again from their ids
    const rs = manifest.model.config.rope_scaling;
    this.longAfter = rs?.rope_type === "longrope" ? Number(rs.original_max_position_embeddings) : 0;
    /** @type {number[]} the cached positions' ids */
    this._cachedIds = [];
    this._longRows = false;
    /** @type {DeviceLostError|null} set once the device is lost; every later call throws it */
    this.lost = null;
    /** @type {Map<string, GPUBuffer>} */
    this.buffers = new Map();
    /** @type {Record<string, {steps: {pipeline: GPUComputePipeline, bindGroup: GPUBindGroup, workgroups: DimFn[]}[], rows: DimFn}>} */
    this.programs = {};
    /** @type {{tokens: number, seconds: number}} */
    this.stats = { tokens: 0, seconds: 0 };
    this.specs = sizedBufferSpecs(manifest, this.contextWindow);
    this.sizes = planBuffers(manifest, precision, this.contextWindow).sizes;
    // Reused per step: the ids (i32, up to prefill_chunk) and the step uniform [n, p, end, 0].
    this._ids = new Int32Array(Math.max(this.prefillChunk, 1));
    this._step = new Uint32Array(4);
    // While forward/logits run: the position after the call's last id, the step uniform's third
    // field for every chunk (longrope picks its table by it); 0 between calls (a step's own p + n).
    this._callEnd = 0;
    // The last logits row, reused per decode step (valid until the next call).
    this._row = new Float32Array(this.vocabSize);
    /** @type {GPUBuffer|null} the MAP_READ copy of the logits rows */
    this.staging = null;
    // decode steps recorded ahead (encode_ahead.js); the argmax of greedy decoding (gpu_sampling.js)
    this._ahead = new EncodeAhead((key) => this._encode(key));
    /** @type {GpuArgmax|null} */
    this._argmax = null;
    this._pick = false; // the readback mode of the last decode step: the next is recorded ahead in it
    this._destroyed = false;
    device.lost.then((info) => {
      if (!this._destroyed) this.lost = new DeviceLostError(info.reason, info.message);
    });
  }

  /** Every buffer of the plan (weights are written as their shards arrive: runtime_load.js). */
  _createBuffers() {
    const d = this.device;
    for (const [name, b] of Object.entries(this.specs)) {
      const spec = /** @type {any} */ (b);
      let usage = USAGE.STORAGE | USAGE.COPY_DST;
      if (spec.kind === "uniform") usage = USAGE.UNIFORM | USAGE.COPY_DST;
      else if (spec.kind === "output") usage |= USAGE.COPY_SRC;
      const buf = d.createBuffer({ size: /** @type {number} */ (this.sizes.get(name)), usage, label: name });
      this.buffers.set(name, buf);
    }
    if (!this.buffers.has("logits") || !this.buffers.has("ids") || !this.buffers.has("step")) {
      throw new BundleError("bundle buffers lack ids, step or logits");
    }
    this.staging = d.createBuffer({
      size: /** @type {number} */ (this.sizes.get("logits")), usage: USAGE.MAP_READ | USAGE.COPY_DST, label: "logits-staging",
    });
  }

  // ---- LanguageModel ---------------------------------------------------------------------

  _alive() {
    if (this.lost) throw this.lost;
    if (this._destroyed) throw new DeviceLostError("destroyed", "the engine was unloaded");
  }

  /** Empty the KV cache. */
  reset() {
    this.position = 0;
  }

  /** Forget cache rows >= position (attention reads rows < p+n only, and kv writes them first). @param {number} position */
  truncate(position) {
    if (!(Number.isInteger(position) && position >= 0 && position <= this.position)) {
      throw new RangeError(`cannot truncate to ${position}: cache holds ${this.position} tokens`);
    }
    this.position = position;
    this._cachedIds.length = position;
  }

  /** longrope: whether a call ending at `end` uses the long frequencies. @param {number} end */
  _long(end) {
    return this.longAfter > 0 && end > this.longAfter;
  }

  /** A call of n more ids uses the other longrope table than the cached rows were rotated with. @param {number} n */
  _stale(n) {
    return this.position > 0 && this._long(this.position + n) !== this._longRows;
  }

  /** `ids` were written at the current position: move past them. @param {ArrayLike<number>} ids */
  _advance(ids) {
    this._cachedIds.length = this.position;
    for (let i = 0; i < ids.length; i++) this._cachedIds.push(ids[i]);
    this.position += ids.length;
    this._longRows = this._long(this.position);
  }

  /**
   * The command buffer of one step: `program` at (n, p), then the logits rows' copy to the
   * staging buffer, or with pick the argmax of the last row and its 4-byte copy.
   * @param {string} key "program n p pick" (stepKey)
   */
  _encode(key) {
    const [program, ns, ps, pick] = key.split(" ");
    const n = Number(ns), p = Number(ps);
    const prog = this.programs[program];
    const enc = this.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (const s of prog.steps) {
      const x = s.workgroups[0](n, p), y = s.workgroups[1](n, p), z = s.workgroups[2](n, p);
      if (!x || !y || !z) continue; // a dispatch gated off at this n (codegen/shapes.py): skip it
      pass.setPipeline(s.pipeline);
      pass.setBindGroup(0, s.bindGroup);
      pass.dispatchWorkgroups(x, y, z);
    }
    pass.end();
    if (pick === "1") /** @type {GpuArgmax} */ (this._argmax).encode(enc);
    else {
      const nbytes = round16(prog.rows(n, p) * this.vocabSize * ACT_BYTES[this.precision]);
      enc.copyBufferToBuffer(this.buffers.get("logits") ?? fail(), 0, /** @type {GPUBuffer} */ (this.staging), 0, nbytes);
    }
    return enc.finish();
  }

  /**
   * Write the ids and step uniform of one step of `program` at the current position, submit its
   * commands (recorded ahead when they were predicted) and record the likely next step's.
   * @param {string} program @param {ArrayLike<number>} ids @param {boolean} pick
   */
  _submit(program, ids, pick) {
    const n = ids.length, p = this.position;
    if (!this.programs[program]) throw new BundleError(`bundle has no "${program}" program`);
    const q = this.device.queue;
    this._ids.set(ids);
    q.writeBuffer(this.buffers.get("ids") ?? fail(), 0, this._ids.buffer, 0, n * 4);
    this._step[0] = n;
    this._step[1] = p;
    this._step[2] = this._callEnd || p + n;
    q.writeBuffer(this.buffers.get("step") ?? fail(), 0, this._step);
    q.submit([this._ahead.take(stepKey(program, n, p, pick))]);
    if (program === "decode") this._pick = pick;
    if (program !== "score" && p + n < this.contextWindow) this._ahead.prepare(stepKey("decode", 1, p + n, this._pick));
  }

  /**
   * Await a readback of the submitted step. A lost device explains a failure better than
   * mapAsync's OperationError; its `lost` promise may settle just after the rejection, so give
   * it a moment. @template T @param {Promise<T>} mapped @returns {Promise<T>}
   */
  async _settle(mapped) {
    try {
      return await mapped;
    } catch (cause) {
      await Promise.race([this.device.lost, new Promise((r) => setTimeout(r, 100))]);
      this._alive();
      throw cause;
    }
  }

  /**
   * One step of `program` over ids at the current position. Writes the logits rows into
   * `out` (rows × vocab) or, when out is null, into the reused last-row array.
   * @param {string} program @param {ArrayLike<number>} ids @param {Float32Array|null} out
   * @returns {Promise<Float32Array>} out, or the last row
   */
  async _run(program, ids, out) {
    const n = ids.length, p = this.position;
    this._submit(program, ids, false);
    const rows = this.programs[program].rows(n, p);
    const V = this.vocabSize;
    const act = ACT_BYTES[this.precision];
    const nbytes = round16(rows * V * act);
    const staging = /** @type {GPUBuffer} */ (this.staging);
    await this._settle(staging.mapAsync(MAP_READ_MODE, 0, nbytes));
    try {
      const mapped = staging.getMappedRange(0, nbytes);
      // Only the last row is wanted for generation; score wants them all.
      const first = out ? 0 : rows - 1;
      const count = (rows - first) * V;
      const dst = out ?? this._row;
      if (act === 4) dst.set(new Float32Array(mapped, first * V * 4, count));
      else halfsToFloats(new Uint16Array(mapped, first * V * 2, count), dst);
    } finally {
      staging.unmap();
    }
    this._advance(ids);
    return out ?? this._row;
  }

  /** @param {ArrayLike<number>} ids @returns {number[]} */
  _check(ids) {
    this._alive();
    const arr = Array.from(ids, Number);
    if (!arr.length) throw new RangeError("ids must not be empty");
    const bad = arr.filter((i) => !(Number.isInteger(i) && i >= 0 && i < this.vocabSize));
    if (bad.length) throw new RangeError(`token ids ${bad.slice(0, 5)} are outside the vocabulary (size ${this.vocabSize})`);
    if (this.position + arr.length > this.contextWindow) throw new ContextWindowExceededError(this.position + arr.length, this.contextWindow);
    return arr;
  }

  /**
   * Append ids at the current position (prefilled in chunks of prefill_chunk); resolve to the
   * last token's logits. The returned array is reused: it is valid until the next call.
   * @param {ArrayLike<number>} ids
   * @returns {Promise<Float32Array>}
   */
  async forward(ids) {
    let arr = this._check(ids);
    if (this._stale(arr.length)) {
      // longrope switch: the cached rows again, with this call's table
      arr = this._cachedIds.slice(0, this.position).concat(arr);
      this.position = 0;
    }
    const t0 = performance.now();
    /** @type {Float32Array} */
    let row = this._row;
    this._callEnd = this.position + arr.length;
    try {
      for (let s = 0; s < arr.length; s += this.prefillChunk) {
        const chunk = arr.slice(s, s + this.prefillChunk);
        row = await this._run(chunk.length === 1 ? "decode" : "prefill", chunk, null);
      }
    } finally {
      this._callEnd = 0;
    }
    this.stats = { tokens: arr.length, seconds: (performance.now() - t0) / 1000 };
    return row;
  }

  /**
   * forward() of one decode token resolving to argmax(logits) picked on the GPU (gpu_sampling.js):
   * 4 bytes read back instead of the row; the lowest id among the maxima, as sampler.js's argmax.
   * @param {ArrayLike<number>} ids one token
   * @returns {Promise<number>}
   */
  async forwardArgmax(ids) {
    const arr = this._check(ids);
    if (arr.length !== 1) throw new RangeError(`forwardArgmax takes one token (a decode step), got ${arr.length}`);
    if (!this._argmax || this._stale(1)) return argmax(await this.forward(arr));
    const t0 = performance.now();
    this._submit("decode", arr, true);
    const tok = await this._settle(this._argmax.read());
    this._advance(arr);
    this.stats = { tokens: 1, seconds: (performance.now() - t0) / 1000 };
    return tok;
  }

  /**
   * Fresh cache; every position's logits with the "score" program.
   * @param {ArrayLike<number>} ids
   * @returns {Promise<Float32Array[]>} one (vocab_size) row per id
   */
  async logits(ids) {
    this.reset();
    const arr = this._check(ids);
    /** @type {Float32Array[]} */
    const rows = [];
    this._callEnd = arr.length;
    try {
      for (let s = 0; s < arr.length; s += this.prefillChunk) {
        const chunk = arr.slice(s, s + this.prefillChunk);
        const out = await this._run("score", chunk, new Float32Array(chunk.length * this.vocabSize));
        for (let r = 0; r < chunk.length; r++) rows.push(out.subarray(r * this.vocabSize, (r + 1) * this.vocabSize));
      }
    } finally {
      this._callEnd = 0;
    }
    return rows;
  }

  /**
   * Fresh cache; greedy new token ids (stops early at an eos id).
   * @param {ArrayLike<number>} ids @param {number} maxNewTokens
   */
  async generate(ids, maxNewTokens) {
    this.reset();
    /** @type {number[]} */
    const out = [];
    let row = await this.forward(ids);
    for (let k = 0; k < maxNewTokens; k++) {
      let tok = 0;
      for (let i = 1; i < row.length; i++) if (row[i] > row[tok]) tok = i;
      out.push(tok);
      if (this.eosTokenIds.has(tok) || this.position >= this.contextWindow || out.length === maxNewTokens) break;
      row = await this.forward([tok]);
    }
    return out;
  }

  /** Release every GPU buffer and the device. */
  destroy() {
    if (this._destroyed) return;
    this._destroyed = true;
    this._ahead.clear();
    this._argmax?.destroy();
    for (const b of this.buffers.values()) b.destroy();
    this.staging?.destroy();
    this.buffers.clear();
    this.device.destroy();
  }
}

/** The EncodeAhead key of a step. @param {string} program @param {number} n @param {number} p @param {boolean} pick */
function stepKey(program, n, p, pick) {
  return `${program} ${n} ${p} ${pick ? 1 : 0}`;
}

/** @returns {never} */
function fail() {
  throw new BundleError("bundle buffers lack ids, step or logits");
}
