// Adapter and device for a bundle: picks the program precision from the adapter's features
// (f16 programs only with "shader-f16": SwiftShader and many mobile GPUs lack it) and raises
// the buffer limits to what the bundle's largest buffer needs, as webllm_py/runtime/device.py.
import { BundleError, FeatureSupportError, WebGPUNotAvailableError } from "./errors.js";

// WebGPU's default limits: only ask for more when the bundle needs more (a device asked for
// more than it needs may be refused on smaller adapters).
const DEFAULT_LIMITS = {
  maxStorageBufferBindingSize: 128 << 20,
  maxBufferSize: 256 << 20,
  maxStorageBuffersPerShaderStage: 8,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
};

/**
 * @typedef {{maxBuffer: number, maxStorageBuffers: number, maxInvocations?: number, maxWorkgroupX?: number}} BufferPlan
 * @typedef {object} DeviceRequest
 * @property {any} manifest
 * @property {"auto"|"f32"|"f16"|"idot"} precision
 * @property {GPU} [gpu] defaults to navigator.gpu; its wgslLanguageFeatures decide which program sets
 *   can compile (without either, sets that need a language feature are left out)
 * @property {GPUAdapter} [adapter]
 * @property {(precision: "f32"|"f16"|"idot") => BufferPlan} limitsFor the bundle's needs at a precision
 */

/**
 * Choose the program set: "auto" → "idot" on a CPU (software) adapter when the bundle has it
 * (integer dot products on packed activations: the decode matmuls 1.2-2.5x faster on
 * SwiftShader, docs/performance.md), else f16 when the adapter has shader-f16 and the bundle
 * has f16 programs, else f32; an explicit "f16" without the feature is FeatureSupportError.
 * @param {"auto"|"f32"|"f16"|"idot"} requested @param {boolean} hasF16 @param {string[]} available program sets
 * @param {boolean} [cpuAdapter] the adapter is a software rasterizer (SwiftShader, lavapipe)
 * @returns {"f32"|"f16"|"idot"}
 */
export function choosePrecision(requested, hasF16, available, cpuAdapter = false) {
  if (requested === "f16" && !hasF16) {
    throw new FeatureSupportError("shader-f16", "Load with precision: \"f32\" or \"auto\" (f32 programs work everywhere).");
  }
  const auto = () => (cpuAdapter && available.includes("idot") ? "idot" : hasF16 && available.includes("f16") ? "f16" : "f32");
  const p = requested === "auto" ? auto() : requested;
  if (!available.includes(p)) throw new BundleError(`bundle has no ${p} programs (has: ${available.join(", ")})`);
  return p;
}

/**
 * The bundle's program sets this browser's WGSL compiler can take: a set listed in the manifest's
 * `wgsl_language_features` (e.g. idot's "packed_4x8_integer_dot_product" for dot4I8Packed) only
 * when every feature is in `navigator.gpu.wgslLanguageFeatures`. Also returns, per set left
 * out, the features it lacks (for the error when that set was asked for by name).
 * @param {any} manifest @param {ReadonlySet<string> | undefined} languageFeatures
 * @returns {{usable: string[], missing: Record<string, string[]>}}
 */
export function usableProgramSets(manifest, languageFeatures) {
  const need = manifest?.wgsl_language_features ?? {};
  /** @type {string[]} */ const usable = [];
  /** @type {Record<string, string[]>} */ const missing = {};
  for (const set of Object.keys(manifest?.programs ?? {})) {
    const lacks = (need[set] ?? []).filter((/** @type {string} */ f) => !languageFeatures?.has(f));
    if (lacks.length) missing[set] = lacks;
    else usable.push(set);
  }
  return { usable, missing };
}

/**
 * Is this a software (CPU) adapter? Chrome's SwiftShader reports isFallbackAdapter (newer
 * versions) and architecture "swiftshader"; Mesa's lavapipe/llvmpipe name themselves.
 * @param {any} info GPUAdapterInfo
 */
export function isCpuAdapter(info) {
  if (info?.isFallbackAdapter) return true;
  return /swiftshader|llvmpipe|lavapipe/i.test(`${info?.architecture ?? ""} ${info?.description ?? ""} ${info?.device ?? ""}`);
}

/**
 * The limits to request: the bundle's needs where they exceed the defaults; FeatureSupportError
 * naming the limit when the adapter allows less.
 * @param {BufferPlan} plan @param {Record<string, number>} adapterLimits
 * @returns {Record<string, number>}
 */
export function requiredLimits(plan, adapterLimits) {
  const need = {
    maxStorageBufferBindingSize: plan.maxBuffer,
    maxBufferSize: plan.maxBuffer,
    maxStorageBuffersPerShaderStage: plan.maxStorageBuffers,
    maxComputeInvocationsPerWorkgroup: plan.maxInvocations ?? 1,
    maxComputeWorkgroupSizeX: plan.maxWorkgroupX ?? 1,
  };
  /** @type {Record<string, number>} */
  const out = {};
  for (const [k, v] of Object.entries(need)) {
    const have = adapterLimits[k];
    if (have != null && v > have) {
      throw new FeatureSupportError(`${k} >= ${v}`, `This adapter allows ${have}. Use a bundle built with a smaller ` +
        "--prefill-chunk / --context-window or a smaller model, or a GPU with higher limits.");
    }
    if (v > /** @type {any} */ (DEFAULT_LIMITS)[k]) out[k] = v;
  }
  return out;
}

/**
 * @param {DeviceRequest} req
 * @returns {Promise<{device: GPUDevice, adapter: GPUAdapter, precision: "f32"|"f16"|"idot", adapterInfo: Record<string, string>}>}
 */
export async function acquireDevice(req) {
  let adapter = req.adapter ?? null;
  if (!adapter) {
    const gpu = req.gpu ?? globalThis.navigator?.gpu;
    if (!gpu) {
      const insecure = globalThis.isSecureContext === false ? "this page is not a secure context" : "navigator.gpu is undefined";
      throw new WebGPUNotAvailableError(insecure);
    }
    adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
    if (!adapter) throw new WebGPUNotAvailableError("requestAdapter() returned null: no usable GPU adapter");
  }
  const hasF16 = adapter.features.has("shader-f16");
  const info = /** @type {any} */ (adapter).info ?? {};
  const { usable, missing } = usableProgramSets(req.manifest, (req.gpu ?? globalThis.navigator?.gpu)?.wgslLanguageFeatures);
  if (missing[req.precision]) {
    throw new FeatureSupportError(`WGSL ${missing[req.precision].join(", ")}`,
      `The ${req.precision} programs need it; load with precision: "auto" or "f32".`);
  }
  const precision = choosePrecision(req.precision, hasF16, usable, isCpuAdapter(info));
  const limits = requiredLimits(req.limitsFor(precision), /** @type {any} */ (adapter.limits));
  /** @type {GPUFeatureName[]} */
  const features = precision === "f16" ? ["shader-f16"] : [];
  let device;
  try {
    device = await adapter.requestDevice({ requiredFeatures: features, requiredLimits: limits, label: "webllm-py" });
  } catch (cause) {
    throw new FeatureSupportError(JSON.stringify({ features, limits }), `requestDevice failed: ${/** @type {any} */ (cause)?.message ?? cause}`);
  }
  const adapterInfo = { vendor: String(info.vendor ?? ""), architecture: String(info.architecture ?? ""), description: String(info.description ?? "") };
  return { device, adapter, precision, adapterInfo };
}
