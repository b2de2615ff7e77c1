// Ring KV caches of sliding-window layers (issue 12) in the browser package: the reuse ledger's
// ring rule on the cases tests/test_kv_ring.py runs through webllm_py/runtime/kv_reuse.py
// (fixtures/kv_ring_reuse.json, written from the Python rule), the sizing and memory estimate of
// ring buffers, and the validator on a tiny Gemma 3 manifest (fixtures/ring_manifest.json: one
// sliding-window layer with an 11-row ring, window 8, prefill_chunk 4, context_window 64; the f32
// program set only) and broken copies of it.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { KVLedger } from "../src/kv_reuse.js";
import { estimateMemory, kvRings, sizedBufferSpecs } from "../src/kv_sizing.js";
import { parseManifest } from "../src/manifest.js";

const load = (name) => JSON.parse(readFileSync(new URL(`./fixtures/${name}`, import.meta.url), "utf8"));
const CASES = load("kv_ring_reuse.json");
const MANIFEST = load("ring_manifest.json");
const RING = 11, WIDTH = 32;

test("the ledger's ring rule gives the Python rule's plans on the shared cases", () => {
  for (const c of CASES) {
    const led = new KVLedger(c.rule, c.chunk, c.rings);
    const plans = [];
    for (const [op, arg] of c.ops) {
      if (op === "wrote") led.wrote(arg);
      else if (op === "truncate") led.truncate(arg);
      else plans.push(led.plan(arg));
    }
    assert.deepEqual(plans, c.plans, c.name);
  }
});

test("kvRings reads the ring caches from the manifest; sized buffers hold min(ring, N) rows", () => {
  assert.deepEqual(kvRings(MANIFEST), [[RING, 8]]);
  for (const rows of [5, RING, 64]) {
    const sized = sizedBufferSpecs(MANIFEST, rows);
    assert.equal(sized["cache.0.k"].elements, Math.min(RING, rows) * WIDTH, `ring at ${rows}`);
    assert.equal(sized["cache.1.k"].elements, rows * WIDTH, `full cache at ${rows}`);
    // f32 KV: 4 bytes per element, 2 ring buffers + 2 full ones (each a multiple of 16 bytes)
    assert.equal(estimateMemory(MANIFEST, "f32", rows).kvCacheBytes, 2 * 4 * WIDTH * (Math.min(RING, rows) + rows));
  }
});

test("the validator accepts the ring manifest and refuses broken ring buffers with one line", () => {
  assert.equal(parseManifest(MANIFEST), MANIFEST);
  const broken = (change, name = "cache.0.k") => {
    const m = structuredClone(MANIFEST);
    m.buffers[name] = { ...m.buffers[name], ...change };
    for (const [k, v] of Object.entries(change)) if (v === undefined) delete m.buffers[name][k];
    return m;
  };
  const bad = [
    [broken({ ring: 64, elements: 64 * WIDTH }), /buffers\["cache\.0\.k"\]\.ring: 64 must be <= 63/], // ring >= context_window
    [broken({ window: undefined }), /buffers\["cache\.0\.k"\]\.window: missing/], // ring without window
    [broken({ elements: RING * WIDTH - 4 }), /elements: 348 is not ring x width = 11 x 32/],
    [broken({ window: 8 }, "cache.1.k"), /cache\.1\.k"\]\.window: .*not a ring/],
  ];
  for (const [m, re] of bad) {
    assert.throws(() => parseManifest(m, "https://x/manifest.json"), (e) => re.test(e.message) && !e.message.includes("\n"), String(re));
  }
});
