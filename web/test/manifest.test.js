import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { BundleError, BundleVersionError } from "../src/errors.js";
import { parseManifest, resolveBundleUrl } from "../src/manifest.js";
import { makeBundle } from "../testing/fake_bundle.js";

test("resolveBundleUrl: folder with/without slash, manifest URL, relative to a page", () => {
  const want = { baseUrl: "https://x.test/m/q4/", manifestUrl: "https://x.test/m/q4/manifest.json" };
  assert.deepEqual(resolveBundleUrl("https://x.test/m/q4"), want);
  assert.deepEqual(resolveBundleUrl("https://x.test/m/q4/"), want);
  assert.deepEqual(resolveBundleUrl("https://x.test/m/q4/manifest.json"), want);
  assert.deepEqual(resolveBundleUrl("https://x.test/m/q4/manifest.json?v=2#x"), {
    baseUrl: want.baseUrl, manifestUrl: "https://x.test/m/q4/manifest.json?v=2",
  });
  assert.deepEqual(resolveBundleUrl("q4", "https://x.test/m/index.html"), want);
  assert.throws(() => resolveBundleUrl("relative/no/base", undefined), BundleError);
});

test("parseManifest accepts 1.x and refuses other majors with BundleVersionError", () => {
  const { manifest } = makeBundle();
  assert.equal(parseManifest(manifest), manifest);
  assert.ok(parseManifest({ ...manifest, format_version: "1.7" }));
  for (const v of ["2.0", "0.9", "10"]) {
    assert.throws(() => parseManifest({ ...manifest, format_version: v }, "u"), (e) =>
      e instanceof BundleVersionError && e.message.includes(v) && /upgrade/.test(e.message));
  }
});

test("parseManifest rejects malformed manifests with one BundleError line naming manifest.json and the field", () => {
  const { manifest } = makeBundle();
  const f0 = manifest.files[0];
  const url = "https://x/manifest.json";
  const bad = [
    [null, /not a JSON object/],
    [{ ...manifest, format: "gguf" }, /not a webllm-py bundle/],
    [{ ...manifest, format_version: "one" }, /bad format_version/],
    [{ ...manifest, files: null }, /manifest\.json: files: null must be a list/],
    [{ ...manifest, files: [{ ...f0, sha256: "ABC" }] }, /files\[0\]\.sha256: "ABC" is not 64 lowercase hex/],
    [{ ...manifest, files: [{ ...f0, size: -1 }] }, /files\[0\]\.size: -1 must be >= 0/],
    [{ ...manifest, files: [{ ...f0, path: "../etc/passwd" }] }, /files\[0\]\.path: .*'\.\.'/],
    [{ ...manifest, files: [{ ...f0, path: "https://evil/x" }] }, /files\[0\]\.path: .*absolute/],
    [{ ...manifest, files: [f0, f0] }, /files\[1\]\.path: .*listed twice/],
    [{ ...manifest, files: manifest.files.slice(2) }, /tokenizer\.file: "tokenizer\.json" is not listed in files/],
    [{ ...manifest, tokenizer: null }, /manifest\.json: tokenizer: null must be an object/],
  ];
  for (const [m, re] of bad) {
    assert.throws(() => parseManifest(m, url), (e) =>
      e instanceof BundleError && !(e instanceof BundleVersionError) && re.test(e.message) && !e.message.includes("\n"), String(re));
  }
});

// Shared with the Python reader's test (tests/test_browser_loader.py): made by
// fixtures/make_bad_manifests.py from a real (tiny) bundle's manifest.
const VECTORS = JSON.parse(readFileSync(new URL("./fixtures/bad_manifests.json", import.meta.url), "utf8"));

/** A copy of `base` with the case's edits applied. @param {any} base @param {{path: (string|number)[], value?: unknown, delete?: boolean}[]} edits */
function edited(base, edits) {
  const m = structuredClone(base);
  for (const { path, value, delete: del } of edits) {
    const parent = path.slice(0, -1).reduce((o, k) => o[k], m);
    const last = /** @type {string|number} */ (path.at(-1));
    if (del) delete parent[last];
    else parent[last] = structuredClone(value);
  }
  return m;
}

test("shared vectors: the base manifest (a real tiny bundle's) passes", () => {
  assert.ok(parseManifest(structuredClone(VECTORS.base), "https://x/b/manifest.json"));
});

test("shared vectors: every bad manifest is one BundleError line naming manifest.json and the field", () => {
  const cases = VECTORS.cases.filter((/** @type {any} */ c) => c.runtimes.includes("js"));
  assert.ok(cases.length >= 30, `only ${cases.length} cases`);
  for (const c of cases) {
    const url = "https://x/b/manifest.json";
    assert.throws(() => parseManifest(edited(VECTORS.base, c.edits), url), (e) =>
      e instanceof BundleError && e.message.startsWith(`${url}: ${c.field}: `) && !e.message.includes("\n"), c.name);
  }
});

// Hostile values for the fuzz below (as tests/test_bundle_hardening.py's HOSTILE, JSON-representable).
const HOSTILE = [null, true, false, 0, -1, 1.5, -(2 ** 63), 2 ** 64, 1e30, "", "..", "../../../../etc/hostname", "/etc/hostname",
  "C:\\x", "params\\x.bin", "ü\u202e\u0000", "kernels/./x.wgsl", "%2e%2e/x", [], {}, [1, "a"], { a: 1 }];

/** Every key path inside `obj`. @param {any} obj @returns {(string|number)[][]} */
function slots(obj, at = /** @type {(string|number)[]} */ ([])) {
  if (obj === null || typeof obj !== "object") return [];
  const entries = Array.isArray(obj) ? obj.map((v, i) => [i, v]) : Object.entries(obj);
  return entries.flatMap(([k, v]) => [[...at, k], ...slots(v, [...at, k])]);
}

test("fuzz: 400 seeded random edits of a real manifest either parse or throw one BundleError line", () => {
  let seed = 0x9e3779b9; // mulberry32: the same 400 cases every run
  const rand = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const pick = (/** @type {any[]} */ xs) => xs[Math.floor(rand() * xs.length)];
  const all = slots(VECTORS.base).filter((p) => p[0] !== "graphs" || p.length < 6); // fewer graph-node slots
  const outcomes = { parsed: 0, refused: 0 };
  for (let i = 0; i < 400; i++) {
    const path = pick(all);
    const action = pick(["delete", "hostile", "hostile", "scale"]);
    const m = structuredClone(VECTORS.base);
    const parent = path.slice(0, -1).reduce((o, k) => o[k], m);
    const last = path.at(-1);
    const old = parent[last];
    if (action === "delete") Array.isArray(parent) ? parent.splice(Number(last), 1) : delete parent[last];
    else if (action === "scale" && typeof old === "number") parent[last] = rand() < 0.5 ? -old - 1 : old * 1000003 + 7;
    else parent[last] = structuredClone(pick(HOSTILE));
    try {
      parseManifest(m, "https://x/b/manifest.json");
      outcomes.parsed++;
    } catch (e) {
      assert.ok(e instanceof BundleError && !e.message.includes("\n"), `${path.join(".")} ${action}: ${e?.stack ?? e}`);
      outcomes.refused++;
    }
  }
  assert.ok(outcomes.refused > 200, JSON.stringify(outcomes)); // most edits break something
});
