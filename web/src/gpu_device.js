// Adapter and device for a bundle: picks the program set by the adapter's class and features
// (chooseProgramSet, the rule of webllm_py/runtime/program_choice.py), requests the features that
// set needs (shader-f16, subgroups) and raises the buffer limits to what the bundle's largest buffer
// needs, as webllm_py/runtime/device.py.
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
 * @property {string} precision "auto" or a program set name
 * @property {GPU} [gpu] defaults to navigator.gpu; its wgslLanguageFeatures decide which program sets
 *   can compile (without either, sets that need a language feature are left out)
 * @property {GPUAdapter} [adapter]
 * @property {(precision: any) => BufferPlan} limitsFor the bundle's needs with a program set
 */

/**
 * Choose the program set, the same rule as webllm_py/runtime/program_choice.py (shared cases:
 * test/fixtures/program_choice.json): by the adapter's class ("cpu": a fallback / software
 * adapter, isCpuAdapter; else "gpu"), the first set of that class in the manifest's
 * `program_sets` (preference order) whose WebGPU features and WGSL language features the adapter
 * has, else the same over the other class. A bundle without `program_sets` keeps the earlier rule:
 * idot on CPU adapters, else f16 with shader-f16, else f32 (among the sets whose language features
 * are there). A forced set the bundle lacks is BundleError; one whose features are missing,
 * FeatureSupportError naming them.
 * @param {any} manifest @param {string} requested "auto" or a set name
 * @param {"cpu"|"gpu"} cls @param {ReadonlySet<string>} features the adapter's WebGPU features
 * @param {ReadonlySet<string>} [languageFeatures] navigator.gpu.wgslLanguageFeatures
 * @returns {string}
 */
export function chooseProgramSet(manifest, requested, cls, features, languageFeatures) {
  const sets = Object.keys(manifest?.programs ?? {});
  /** @type {any[]} */ const metas = manifest?.program_sets ?? [];
  /** @param {any} m */
  const lacks = (m) => [...(m.features ?? []).filter((/** @type {string} */ f) => !features.has(f)),
    ...(m.wgsl_language_features ?? []).filter((/** @type {string} */ f) => !languageFeatures?.has(f)).map((/** @type {string} */ f) => `WGSL ${f}`)];
  if (!metas.length) {
    const { usable, missing } = usableProgramSets(manifest, languageFeatures);
    const legacy = (/** @type {string} */ name) => ({ name, features: name === "f16" ? ["shader-f16"] : [] });
    if (requested !== "auto") {
      if (!sets.includes(requested)) throw new BundleError(`bundle has no ${requested} programs (has: ${sets.join(", ")})`);
      const need = [...lacks(legacy(requested)), ...(missing[requested] ?? []).map((f) => `WGSL ${f}`)];
      if (need.length) throw new FeatureSupportError(need.join(", "), `program set ${requested} needs ${need.join(", ")}; load with precision: "auto".`);
      return requested;
    }
    if (cls === "cpu" && usable.includes("idot")) return "idot";
    return features.has("shader-f16") && usable.includes("f16") ? "f16" : "f32";
  }
  if (requested !== "auto") {
    const m = metas.find((x) => x.name === requested);
    if (!m || !sets.includes(requested)) throw new BundleError(`bundle has no ${requested} programs (has: ${sets.join(", ")})`);
    const need = lacks(m);
    if (need.length) throw new FeatureSupportError(need.join(", "), `program set ${requested} needs ${need.join(", ")}; load with precision: "auto".`);
    return requested;
  }
  for (const c of cls === "cpu" ? ["cpu", "gpu"] : ["gpu", "cpu"]) {
    const m = metas.find((x) => x.class === c && !lacks(x).length);
    if (m) return m.name;
  }
  throw new FeatureSupportError([...features].join(", ") || "no features", `no program set of this bundle (${sets.join(", ")}) runs on this adapter.`);
}

/**
 * The earlier choice by its old arguments (kept for callers of the public API): a bundle with
 * only the program sets `available`, no program_sets metadata.
 * @param {string} requested @param {boolean} hasF16 @param {string[]} available program sets
 * @param {boolean} [cpuAdapter] the adapter is a software rasterizer (SwiftShader, lavapipe)
 * @returns {string}
 */
export function choosePrecision(requested, hasF16, available, cpuAdapter = false) {
  const programs = Object.fromEntries(available.map((s) => [s, {}]));
  return chooseProgramSet({ programs }, requested, cpuAdapter ? "cpu" : "gpu", new Set(hasF16 ? ["shader-f16"] : []));
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
 * @returns {Promise<{device: GPUDevice, adapter: GPUAdapter, precision: any, adapterInfo: Record<string, string>}>}
 *   precision: the chosen program set's name
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
  const info = /** @type {any} */ (adapter).info ?? {};
  const languageFeatures = (req.gpu ?? globalThis.navigator?.gpu)?.wgslLanguageFeatures;
  const precision = chooseProgramSet(req.manifest, req.precision, isCpuAdapter(info) ? "cpu" : "gpu",
    /** @type {ReadonlySet<string>} */ (adapter.features), languageFeatures);
  const limits = requiredLimits(req.limitsFor(precision), /** @type {any} */ (adapter.limits));
  const meta = (req.manifest?.program_sets ?? []).find((/** @type {any} */ m) => m.name === precision);
  /** @type {GPUFeatureName[]} */
  const features = meta ? [...meta.features] : precision === "f16" ? ["shader-f16"] : []; // WebGPU names (subgroups)
  let device;
  try {
    device = await adapter.requestDevice({ requiredFeatures: features, requiredLimits: limits, label: "webllm-py" });
  } catch (cause) {
    throw new FeatureSupportError(JSON.stringify({ features, limits }), `requestDevice failed: ${/** @type {any} */ (cause)?.message ?? cause}`);
  }
  const adapterInfo = { vendor: String(info.vendor ?? ""), architecture: String(info.architecture ?? ""), description: String(info.description ?? "") };
  return { device, adapter, precision, adapterInfo };
}
