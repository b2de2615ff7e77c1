// Greedy decoding's token picked on the GPU: 4 bytes read back per decode step instead of the
// vocabulary's logits (webllm_py/runtime/gpu_sampling.py's twin; issue 11 "per-token fixed cost").
//
// fullLogitsNeeds(req) is the ONE decision of the JS engine, the same table as the Python one:
// the GPU argmax stands in for the CPU sampler only when the token is exactly argmax(logits)
// and nothing else reads the logits. At temperature 0 sampleAdjusted returns argmax before
// top_p / top_k / min_p are looked at, so those do not matter; the grammar mask, logit_bias,
// the penalties and logprobs do. The kernel (ARGMAX_WGSL, generated from
// wgsl_templates/argmax.wgsl) returns the lowest id among the maxima, as sampler.js's argmax,
// for every row without NaN (a NaN wins on the GPU, as numpy's argmax; sampler.js skips it).
import { ARGMAX_BINDINGS, ARGMAX_WGSL } from "./gpu_sampling_wgsl.js";

/** @typedef {import("./request.js").Request} Request */

const BUFFER_TYPES = { read: "read-only-storage", read_write: "storage", uniform: "uniform" };
// GPUBufferUsage / GPUShaderStage / GPUMapMode values (spec constants), for node unit tests
const USAGE = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 };
const COMPUTE_STAGE = 0x4;
const MAP_READ_MODE = 0x1;

/**
 * What makes a request need the full logits row on the CPU: [name, test on the validated Request].
 * Extend it (and gpu_sampling.py's FULL_LOGITS_NEEDS) when the sampler gains an input or an output.
 * @type {[string, (r: Request) => boolean][]}
 */
export const FULL_LOGITS_NEEDS = [
  ["temperature > 0", (r) => r.sampling.temperature !== 0],
  ["logprobs", (r) => Boolean(r.logprobs) || r.topLogprobs > 0],
  ["logit_bias", (r) => (r.sampling.logit_bias?.size ?? 0) > 0],
  ["repetition_penalty", (r) => r.sampling.repetition_penalty !== 1],
  ["frequency_penalty", (r) => r.sampling.frequency_penalty !== 0],
  ["presence_penalty", (r) => r.sampling.presence_penalty !== 0],
  ["grammar (response_format / tool calls)", (r) => r.grammar != null],
];

/** Why this request's decode steps must read back the whole logits row ([]: greedy only). @param {Request} req */
export function fullLogitsNeeds(req) {
  return FULL_LOGITS_NEEDS.filter(([, needs]) => needs(req)).map(([name]) => name);
}

/** Whether the engine may take decode tokens from `model.forwardArgmax`. @param {Request} req @param {any} model */
export function gpuArgmaxOk(req, model) {
  return typeof model?.forwardArgmax === "function" && fullLogitsNeeds(req).length === 0;
}

/** The argmax kernel bound to a runtime's logits buffer (row 0, `vocab` values). */
export class GpuArgmax {
  /**
   * @param {GPUDevice} device @param {"f32"|"f16"} act the logits' dtype
   * @param {GPUBuffer} logits @param {number} vocab
   * @returns {Promise<GpuArgmax>}
   */
  static async create(device, act, logits, vocab) {
    const layout = device.createBindGroupLayout({
      label: "argmax",
      entries: ARGMAX_BINDINGS.map(([, kind], i) => ({
        binding: i, visibility: COMPUTE_STAGE, buffer: { type: /** @type {any} */ (BUFFER_TYPES)[kind] },
      })),
    });
    const module = device.createShaderModule({ code: ARGMAX_WGSL[act], label: "argmax" });
    const pipeline = await device.createComputePipelineAsync({
      label: "argmax", layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module, entryPoint: "main" },
    });
    return new GpuArgmax(device, pipeline, layout, logits, vocab);
  }

  /** @param {GPUDevice} device @param {GPUComputePipeline} pipeline @param {GPUBindGroupLayout} layout @param {GPUBuffer} logits @param {number} vocab */
  constructor(device, pipeline, layout, logits, vocab) {
    this.pipeline = pipeline;
    this.out = device.createBuffer({ size: 16, usage: USAGE.STORAGE | USAGE.COPY_SRC, label: "argmax" });
    this.staging = device.createBuffer({ size: 16, usage: USAGE.MAP_READ | USAGE.COPY_DST, label: "argmax-staging" });
    this.args = device.createBuffer({ size: 16, usage: USAGE.UNIFORM | USAGE.COPY_DST, label: "argmax-args" });
    device.queue.writeBuffer(this.args, 0, new Uint32Array([vocab, 0, 0, 0]));
    /** @type {Record<string, GPUBuffer>} */
    const bufs = { logits, out: this.out, args: this.args };
    this.bindGroup = device.createBindGroup({
      layout, entries: ARGMAX_BINDINGS.map(([name], i) => ({ binding: i, resource: { buffer: bufs[name] } })),
    });
  }

  /** Append the reduction and the 4-byte copy to `enc`, after the step's compute pass. @param {GPUCommandEncoder} enc */
  encode(enc) {
    const pass = enc.beginComputePass();
    pass.setPipeline(this.pipeline);
    pass.setBindGroup(0, this.bindGroup);
    pass.dispatchWorkgroups(1, 1, 1);
    pass.end();
    enc.copyBufferToBuffer(this.out, 0, this.staging, 0, 16);
  }

  /** The id of the submitted step. @returns {Promise<number>} */
  async read() {
    await this.staging.mapAsync(MAP_READ_MODE, 0, 16);
    try {
      return new Uint32Array(this.staging.getMappedRange(0, 16))[0];
    } finally {
      this.staging.unmap();
    }
  }

  destroy() {
    for (const b of [this.out, this.staging, this.args]) b.destroy();
  }
}
