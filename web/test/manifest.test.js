import assert from "node:assert/strict";
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

test("parseManifest rejects malformed manifests with a BundleError saying what is wrong", () => {
  const { manifest } = makeBundle();
  const f0 = manifest.files[0];
  const bad = [
    [null, /not a JSON object/],
    [{ ...manifest, format: "gguf" }, /not a webllm-py bundle/],
    [{ ...manifest, format_version: "one" }, /bad format_version/],
    [{ ...manifest, files: undefined }, /no `files`/],
    [{ ...manifest, files: [{ ...f0, sha256: "ABC" }] }, /bad sha256/],
    [{ ...manifest, files: [{ ...f0, size: -1 }] }, /bad size/],
    [{ ...manifest, files: [{ ...f0, path: "../etc/passwd" }] }, /relative/],
    [{ ...manifest, files: [{ ...f0, path: "https://evil/x" }] }, /relative/],
    [{ ...manifest, files: [f0, f0] }, /duplicate/],
    [{ ...manifest, files: manifest.files.slice(2) }, /not listed/],
    [{ ...manifest, tokenizer: undefined }, /tokenizer.file/],
  ];
  for (const [m, re] of bad) {
    assert.throws(() => parseManifest(m, "https://x/manifest.json"), (e) =>
      e instanceof BundleError && !(e instanceof BundleVersionError) && re.test(e.message), String(re));
  }
});
