// Program-set choice (gpu_device.js chooseProgramSet) on the cases webllm_py/runtime/program_choice.py
// is tested on (tests/test_program_sets.py), so the two runtimes pick the same set; KV bytes per set.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { chooseProgramSet } from "../src/gpu_device.js";
import { bufferBytes, estimateMemory } from "../src/kv_sizing.js";

const CHOICE = JSON.parse(readFileSync(new URL("./fixtures/program_choice.json", import.meta.url), "utf8"));

/** @param {any} c */
function caseManifest(c) {
  if (c.sets.length && typeof c.sets[0] === "string") return { programs: Object.fromEntries(c.sets.map((/** @type {string} */ s) => [s, {}])) };
  return { programs: Object.fromEntries(c.sets.map((/** @type {any} */ m) => [m.name, {}])), program_sets: c.sets };
}

for (const c of CHOICE.cases) {
  test(`chooseProgramSet: ${c.name}`, () => {
    const args = /** @type {const} */ ([caseManifest(c), c.requested, c.class, new Set(c.features), new Set(c.language_features)]);
    if (typeof c.expect === "object") assert.throws(() => chooseProgramSet(...args), (e) => String(/** @type {any} */ (e).message).includes(c.expect.error));
    else assert.equal(chooseProgramSet(...args), c.expect);
  });
}

test("KV caches are sized with the set's KV storage (f16x2: 2 bytes), other act buffers with its activations", () => {
  const manifest = {
    context_window: 8,
    program_sets: [{ name: "gpu", class: "gpu", activations: "f32", kv: "f16x2", features: [], wgsl_language_features: [] }],
    buffers: { k: { kind: "state", elements: 8 * 64, dtype: "act" }, act0: { kind: "activation", elements: 64, dtype: "act" } },
  };
  assert.equal(bufferBytes(manifest.buffers.k, "gpu", manifest), 8 * 64 * 2);
  assert.equal(bufferBytes(manifest.buffers.act0, "gpu", manifest), 64 * 4);
  assert.equal(bufferBytes(manifest.buffers.k, "f32"), 8 * 64 * 4); // a bundle without program_sets
  assert.equal(estimateMemory(manifest, "gpu", 4).kvCacheBytes, 4 * 64 * 2);
});

test("program_sets metadata is validated: a bad entry is one BundleError naming the field", async () => {
  const { parseManifest } = await import("../src/manifest.js");
  const { BundleError } = await import("../src/errors.js");
  const vectors = JSON.parse(readFileSync(new URL("./fixtures/bad_manifests.json", import.meta.url), "utf8"));
  const base = structuredClone(vectors.base);
  base.program_sets = Object.keys(base.programs).map((name) => ({ name, class: "cpu", activations: name === "f16" ? "f16" : "f32", kv: name === "f16" ? "f16" : "f32", features: [], wgsl_language_features: [] }));
  const url = "https://x/b/manifest.json";
  assert.ok(parseManifest(structuredClone(base), url));
  const cases = [
    [(/** @type {any} */ m) => { m.program_sets[0].class = "tpu"; }, 'program_sets[0].class: "tpu" is not one of cpu, gpu'],
    [(/** @type {any} */ m) => { m.program_sets[0].kv = "f8"; }, 'program_sets[0].kv: "f8" is not one of f32, f16, f16x2'],
    [(/** @type {any} */ m) => { m.program_sets.pop(); }, "program_sets: lists "],
    [(/** @type {any} */ m) => { m.program_sets[0].features = "subgroups"; }, "program_sets[0].features: "],
  ];
  for (const [edit, where] of cases) {
    const m = structuredClone(base);
    /** @type {any} */ (edit)(m);
    assert.throws(() => parseManifest(m, url), (e) => e instanceof BundleError && e.message.startsWith(`${url}: ${where}`), String(where));
  }
});
