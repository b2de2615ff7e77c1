// A WebGPU runtime filled file by file, as the loader verifies them (issue 15, item 4).
//
// Every cached file is sha256-verified on every load (cache_read.js), and hashing ~100 MB takes
// about as long as compiling the pipelines, so CreateEngine no longer does one after the other:
// the runtime's buffers exist as soon as the manifest is known, each kernel's pipeline starts
// compiling when its (small) file has been verified, each shard's weights are written when that
// shard has been verified, and the bind groups are made once every file is in. Only verified bytes
// are ever handed over (the loader's onFile), and nothing runs before ready().
import { BundleError } from "./errors.js";

const COMPUTE_STAGE = 0x4; // GPUShaderStage.COMPUTE, so this module loads without the WebGPU globals
const BUFFER_TYPES = { read: "read-only-storage", read_write: "storage", uniform: "uniform" };

/**
 * @typedef {{pipeline: GPUComputePipeline, layout: GPUBindGroupLayout}} Pipe
 * @typedef {import("./runtime.js").WebGPURuntime} WebGPURuntime
 */

export class RuntimeLoad {
  /**
   * @param {WebGPURuntime} rt its buffers already created
   * @param {Record<string, {dispatches: {kernel: string, bindings: string[], workgroups: any[]}[], rows: any}>} compiled its programs
   * @param {((done: number, total: number) => void)|undefined} onPipeline compile progress
   */
  constructor(rt, compiled, onPipeline) {
    this.rt = rt;
    this.compiled = compiled;
    this.onPipeline = onPipeline;
    const m = rt.manifest;
    this.used = [...new Set(Object.values(compiled).flatMap((p) => p.dispatches.map((x) => x.kernel)))];
    /** @type {Map<string, string[]>} kernel file → the used kernels compiled from it */
    this.kernelsOf = new Map();
    for (const k of this.used) this.kernelsOf.set(m.kernels[k].file, [...(this.kernelsOf.get(m.kernels[k].file) ?? []), k]);
    /** @type {Map<string, [string, any][]>} shard → its weight buffers (name, spec) */
    this.weightsOf = new Map();
    for (const [name, spec] of Object.entries(rt.specs)) {
      if (/** @type {any} */ (spec).kind !== "weight") continue;
      const ref = m.weights?.[spec.param]?.parts?.[spec.part];
      if (!ref) throw new BundleError(`weight ${spec.param}/${spec.part} is not in manifest.weights`);
      this.weightsOf.set(ref.file, [...(this.weightsOf.get(ref.file) ?? []), [name, spec]]);
    }
    /** @type {Map<string, Promise<Pipe>>} */
    this.pipes = new Map();
    /** @type {Set<string>} shards written */
    this.written = new Set();
    this.done = 0;
  }

  /** A verified file of the bundle: compile its kernels, or write its weights. @param {string} path @param {ArrayBuffer} buf */
  addFile(path, buf) {
    for (const k of this.kernelsOf.get(path) ?? []) {
      const p = this._compile(k, buf);
      p.catch(() => {}); // reported by ready(); not an unhandled rejection while the other files load
      this.pipes.set(k, p);
    }
    const weights = this.weightsOf.get(path);
    if (weights && !this.written.has(path)) {
      for (const [name, spec] of weights) this._upload(/** @type {GPUBuffer} */ (this.rt.buffers.get(name)), spec, path, buf);
      this.written.add(path);
    }
  }

  /** Wait for every pipeline (each file must have been added), then make the bind groups. */
  async ready() {
    for (const k of this.used) if (!this.pipes.has(k)) throw new BundleError(`kernel file ${this.rt.manifest.kernels[k].file} was not loaded`);
    for (const f of this.weightsOf.keys()) if (!this.written.has(f)) throw new BundleError(`weight shard ${f} was not loaded`);
    /** @type {Map<string, Pipe>} */
    const pipes = new Map(await Promise.all([...this.pipes].map(async ([k, p]) => /** @type {[string, Pipe]} */ ([k, await p]))));
    const d = this.rt.device;
    for (const [pname, prog] of Object.entries(this.compiled)) {
      this.rt.programs[pname] = {
        rows: prog.rows,
        steps: prog.dispatches.map((disp) => {
          const { pipeline, layout } = /** @type {Pipe} */ (pipes.get(disp.kernel));
          const bindGroup = d.createBindGroup({
            layout,
            entries: disp.bindings.map((b, i) => ({ binding: i, resource: { buffer: /** @type {GPUBuffer} */ (this.rt.buffers.get(b)) } })),
          });
          return { pipeline, bindGroup, workgroups: disp.workgroups };
        }),
      };
    }
  }

  /**
   * createComputePipelineAsync: compiles in parallel and rejects with the shader error (instead of
   * an uncaptured validation error and a silently broken pipeline).
   * @param {string} kname @param {ArrayBuffer} buf @returns {Promise<Pipe>}
   */
  async _compile(kname, buf) {
    const d = this.rt.device;
    const k = this.rt.manifest.kernels[kname];
    const layout = d.createBindGroupLayout({
      label: kname,
      entries: k.bindings.map((/** @type {[string, string]} */ [, kind], /** @type {number} */ i) => ({
        binding: i, visibility: COMPUTE_STAGE, buffer: { type: /** @type {any} */ (BUFFER_TYPES)[kind] },
      })),
    });
    const module = d.createShaderModule({ code: new TextDecoder().decode(buf), label: kname });
    let pipeline;
    try {
      pipeline = await d.createComputePipelineAsync({
        label: kname, layout: d.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module, entryPoint: "main" },
      });
    } catch (cause) {
      throw new BundleError(`kernel ${kname} (${k.file}) failed to compile: ${/** @type {any} */ (cause)?.message ?? cause}`, null, { cause });
    }
    this.onPipeline?.(++this.done, this.used.length);
    return { pipeline, layout };
  }

  /**
   * Copy one weight part from its shard into `buf`.
   * @param {GPUBuffer} buf @param {any} spec @param {string} file @param {ArrayBuffer} shard
   */
  _upload(buf, spec, file, shard) {
    const ref = this.rt.manifest.weights[spec.param].parts[spec.part];
    // a buffer holds the byte range [offset, offset + bytes) of its part: a row slice of a weight
    // past the binding limit (passes/lower.py row_slices), else the whole part (as native.py)
    const start = ref.offset + (spec.offset ?? 0), n = spec.bytes ?? ref.nbytes;
    if (start + n > shard.byteLength || (spec.offset ?? 0) + n > ref.nbytes) {
      throw new BundleError(`weight ${spec.param}/${spec.part} lies past the end of ${file}`);
    }
    if (n % 4 === 0) {
      this.rt.device.queue.writeBuffer(buf, 0, shard, start, n);
    } else {
      // writeBuffer sizes must be multiples of 4 (an odd count of f16 scales): pad with zeros.
      const padded = new Uint8Array(Math.ceil(n / 4) * 4);
      padded.set(new Uint8Array(shard, start, n));
      this.rt.device.queue.writeBuffer(buf, 0, padded);
    }
  }
}
