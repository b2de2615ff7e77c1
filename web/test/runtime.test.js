// The GPU-free parts of the runtime: workgroup expressions, buffer planning, f16 readback,
// precision and limit choice.
import assert from "node:assert/strict";
import { test } from "node:test";
import { BundleError, FeatureSupportError } from "../src/errors.js";
import { acquireDevice, choosePrecision, isCpuAdapter, requiredLimits, usableProgramSets } from "../src/gpu_device.js";
import { bufferBytes, compileDim, compilePrograms, halfToFloat, halfsToFloats, planBuffers, round16 } from "../src/runtime.js";

test("compileDim: integers, n, p, + - * // with Python's precedence and floor division", () => {
  const cases = [
    ["1", 3, 0, 1],
    ["n", 7, 2, 7],
    ["p", 7, 2, 2],
    ["(n * 1 + 63) // 64", 1, 0, 1],
    ["(n * 1 + 63) // 64", 64, 0, 1],
    ["(n * 1 + 63) // 64", 65, 0, 2],
    ["(n + 3) // 4", 13, 0, 4],
    ["(p + n + 15) // 16 * 2", 3, 30, 6],
    ["n - 2 * 3", 10, 0, 4],
    ["n * 4 - p // 3", 5, 7, 18],
    ["(n - 10) // 4", 1, 0, -3], // floors toward -inf, as Python
    ["2*(n+1)//3", 4, 0, 3],
    [5, 9, 9, 5],
  ];
  for (const [expr, n, p, want] of cases) assert.equal(compileDim(expr)(n, p), want, `${expr} at n=${n}, p=${p}`);
});

test("compileDim rejects anything outside the grammar", () => {
  for (const bad of ["n ** 2", "x + 1", "n / 2", "(n + 1", "n +", "Math.max(n)", "1.5", ""]) {
    assert.throws(() => compileDim(bad), BundleError, bad);
  }
  assert.throws(() => compileDim("n // (p - p)")(1, 0), BundleError);
});

/** A manifest with the fields the runtime plans from (shapes of a real stories260k build). */
function manifest() {
  const kernel = (/** @type {string[]} */ kinds) => ({ file: "kernels/k.wgsl", bindings: kinds.map((k, i) => [`b${i}`, k]), workgroup_size: [64, 1, 1] });
  const prog = (/** @type {string} */ rows) => ({
    dispatches: [
      { kernel: "emb", bindings: ["ids", "w/emb/data", "w/emb/scales", "act0", "step"], workgroups: ["1", "n", "1"] },
      { kernel: "head", bindings: ["act0", "w/emb/data", "w/emb/scales", "logits", "cache.0.k", "cache.0.v", "step"], workgroups: ["(n * 1 + 63) // 64", "1", "1"] },
    ],
    logits_rows: rows,
  });
  return {
    model: { config: { vocab_size: 513 } },
    context_window: 512,
    prefill_chunk: 128,
    buffers: {
      ids: { kind: "ids", dtype: "i32", elements: 128 },
      step: { kind: "uniform", bytes: 16 },
      act0: { kind: "activation", dtype: "act", elements: 22017 },
      logits: { kind: "output", dtype: "act", elements: 513 * 128 },
      "cache.0.k": { kind: "state", dtype: "act", elements: 16384 },
      "cache.0.v": { kind: "state", dtype: "act", elements: 16384 },
      "w/emb/data": { kind: "weight", bytes: 16385, param: "emb", part: "data" },
      "w/emb/scales": { kind: "weight", bytes: 2050, param: "emb", part: "scales" },
    },
    kernels: { emb: kernel(["read", "read", "read", "read_write", "uniform"]), head: kernel(["read", "read", "read", "read_write", "read_write", "read_write", "uniform"]) },
    programs: { f32: { decode: prog("1"), prefill: prog("1"), score: prog("n") }, f16: { decode: prog("1"), prefill: prog("1") } },
  };
}

test("planBuffers: sizes as native.py (act = 4 or 2 bytes, i32 = 4, bytes as given), rounded up to 16", () => {
  const m = manifest();
  const f32 = planBuffers(m, "f32");
  assert.equal(f32.sizes.get("ids"), 512);
  assert.equal(f32.sizes.get("step"), 16);
  assert.equal(f32.sizes.get("act0"), round16(22017 * 4));
  assert.equal(f32.sizes.get("act0"), 88080);
  assert.equal(f32.sizes.get("w/emb/data"), 16400);
  assert.equal(f32.sizes.get("w/emb/scales"), 2064);
  assert.equal(f32.maxBuffer, 513 * 128 * 4);
  assert.equal(f32.maxStorageBuffers, 6); // uniforms do not count
  assert.equal(f32.maxInvocations, 64);
  const f16 = planBuffers(m, "f16");
  assert.equal(f16.sizes.get("act0"), round16(22017 * 2));
  assert.equal(f16.sizes.get("ids"), 512); // i32 whatever the precision
  assert.equal(f16.sizes.get("w/emb/data"), 16400);
  for (const s of [...f32.sizes.values(), ...f16.sizes.values()]) assert.equal(s % 16, 0);
  assert.equal(bufferBytes({ bytes: 0 }, "f32"), 16);
  assert.throws(() => planBuffers({ buffers: {} }, "f32"), /no programs/);
});

test("compilePrograms: every dispatch's kernel and buffers exist; workgroups compiled", () => {
  const m = manifest();
  const p = compilePrograms(m, "f32");
  assert.deepEqual(Object.keys(p).sort(), ["decode", "prefill", "score"]);
  assert.equal(p.score.rows(13, 0), 13);
  assert.equal(p.decode.rows(1, 40), 1);
  assert.deepEqual(p.prefill.dispatches[1].workgroups.map((f) => f(65, 0)), [2, 1, 1]);
  const broken = manifest();
  broken.programs.f32.decode.dispatches[0].bindings[0] = "nope";
  assert.throws(() => compilePrograms(broken, "f32"), /unknown buffer nope/);
  assert.throws(() => compilePrograms(m, /** @type {any} */ ("f64")), /no f64 programs/);
});

test("halfToFloat: zeros, subnormals, normals, infinities, NaN; the table agrees", () => {
  const cases = [[0x0000, 0], [0x8000, -0], [0x3c00, 1], [0xbc00, -1], [0x3555, 0.333251953125], [0x7bff, 65504],
    [0x0001, 2 ** -24], [0x03ff, 1023 * 2 ** -24], [0x0400, 2 ** -14], [0x7c00, Infinity], [0xfc00, -Infinity], [0xc900, -10]];
  for (const [h, want] of cases) assert.ok(Object.is(halfToFloat(h), want), `0x${h.toString(16)} → ${halfToFloat(h)}, want ${want}`);
  assert.ok(Number.isNaN(halfToFloat(0x7e00)));
  const src = new Uint16Array(cases.map(([h]) => h));
  const out = halfsToFloats(src, new Float32Array(src.length));
  cases.forEach(([, want], i) => assert.ok(Object.is(out[i], Math.fround(want))));
});

test("choosePrecision: f16 only with shader-f16 and f16 programs; explicit f16 without it is FeatureSupportError", () => {
  assert.equal(choosePrecision("auto", true, ["f32", "f16"]), "f16");
  assert.equal(choosePrecision("auto", false, ["f32", "f16"]), "f32"); // SwiftShader
  assert.equal(choosePrecision("auto", true, ["f32"]), "f32");
  assert.equal(choosePrecision("f32", true, ["f32", "f16"]), "f32");
  assert.throws(() => choosePrecision("f16", false, ["f32", "f16"]), FeatureSupportError);
  assert.throws(() => choosePrecision("f32", false, ["f16"]), BundleError);
});

test("choosePrecision: auto picks idot on CPU adapters when the bundle has it; isCpuAdapter recognizes software adapters", () => {
  assert.equal(choosePrecision("auto", false, ["f32", "f16", "idot"], true), "idot"); // SwiftShader
  assert.equal(choosePrecision("auto", true, ["f32", "f16", "idot"], true), "idot"); // lavapipe has shader-f16
  assert.equal(choosePrecision("auto", true, ["f32", "f16", "idot"], false), "f16"); // a real GPU
  assert.equal(choosePrecision("auto", false, ["f32", "f16"], true), "f32"); // a bundle from before idot
  assert.equal(choosePrecision("idot", false, ["f32", "f16", "idot"]), "idot");
  assert.throws(() => choosePrecision("idot", false, ["f32", "f16"]), BundleError);
  assert.equal(isCpuAdapter({ vendor: "google", architecture: "swiftshader" }), true);
  assert.equal(isCpuAdapter({ isFallbackAdapter: true }), true);
  assert.equal(isCpuAdapter({ description: "llvmpipe (LLVM 15.0.6, 256 bits)" }), true);
  assert.equal(isCpuAdapter({ vendor: "nvidia", architecture: "hopper", description: "NVIDIA H100" }), false);
  assert.equal(isCpuAdapter(undefined), false);
});

test("usableProgramSets: a set needing WGSL language features the browser lacks is left out, with what it lacks", () => {
  const manifest = { programs: { f32: {}, f16: {}, idot: {} }, wgsl_language_features: { idot: ["packed_4x8_integer_dot_product"] } };
  assert.deepEqual(usableProgramSets(manifest, new Set(["packed_4x8_integer_dot_product", "readonly_and_readwrite_storage_textures"])),
    { usable: ["f32", "f16", "idot"], missing: {} });
  assert.deepEqual(usableProgramSets(manifest, new Set()), { usable: ["f32", "f16"], missing: { idot: ["packed_4x8_integer_dot_product"] } });
  assert.deepEqual(usableProgramSets(manifest, undefined).usable, ["f32", "f16"]); // a browser without wgslLanguageFeatures
  assert.deepEqual(usableProgramSets({ programs: { f32: {}, idot: {} } }, undefined).usable, ["f32", "idot"]); // bundles from before the field
});

test("acquireDevice: auto skips a set the browser's WGSL cannot compile; asking for it by name is FeatureSupportError", async () => {
  const manifest = { programs: { f32: {}, idot: {} }, wgsl_language_features: { idot: ["packed_4x8_integer_dot_product"] } };
  const adapter = { features: new Set(), info: { architecture: "swiftshader" }, limits: { maxStorageBuffersPerShaderStage: 8 },
    requestDevice: async () => ({}) };
  const req = (precision, langs) => ({ manifest, precision, adapter, gpu: { wgslLanguageFeatures: langs },
    limitsFor: () => ({ maxBuffer: 1 << 20, maxStorageBuffers: 8 }) });
  assert.equal((await acquireDevice(req("auto", new Set()))).precision, "f32");
  assert.equal((await acquireDevice(req("auto", new Set(["packed_4x8_integer_dot_product"])))).precision, "idot");
  await assert.rejects(acquireDevice(req("idot", new Set())), (e) => e instanceof FeatureSupportError && /packed_4x8_integer_dot_product/.test(e.message));
});

test("requiredLimits: only raised above WebGPU's defaults; FeatureSupportError names the limit", () => {
  const adapter = { maxStorageBufferBindingSize: 1 << 30, maxBufferSize: 1 << 30, maxStorageBuffersPerShaderStage: 10 };
  assert.deepEqual(requiredLimits({ sizes: new Map(), maxBuffer: 1 << 20, maxStorageBuffers: 6 }, adapter), {});
  assert.deepEqual(requiredLimits({ maxBuffer: 1 << 20, maxStorageBuffers: 6, maxInvocations: 512, maxWorkgroupX: 512 },
    { ...adapter, maxComputeInvocationsPerWorkgroup: 1024, maxComputeWorkgroupSizeX: 1024 }),
  { maxComputeInvocationsPerWorkgroup: 512, maxComputeWorkgroupSizeX: 512 });
  assert.deepEqual(requiredLimits({ sizes: new Map(), maxBuffer: 300 << 20, maxStorageBuffers: 9 }, adapter),
    { maxStorageBufferBindingSize: 300 << 20, maxBufferSize: 300 << 20, maxStorageBuffersPerShaderStage: 9 });
  assert.throws(() => requiredLimits({ sizes: new Map(), maxBuffer: 2 ** 31, maxStorageBuffers: 6 }, adapter),
    (e) => e instanceof FeatureSupportError && /maxStorageBufferBindingSize/.test(e.message));
});
