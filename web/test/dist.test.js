// The built single-file ES module (npm run build) exports the same API as src/.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { test } from "node:test";

const dist = new URL("../dist/index.js", import.meta.url);

test("dist/index.js exports what src/index.js exports, with no bare imports", { skip: existsSync(dist) ? false : "dist/index.js not built (run npm run build)" }, async () => {
  const [built, src] = await Promise.all([import(dist.href), import("../src/index.js")]);
  assert.deepEqual(Object.keys(built).sort(), Object.keys(src).sort());
  const { readFileSync } = await import("node:fs");
  assert.doesNotMatch(readFileSync(dist, "utf8"), /^\s*import\s.*from\s*["'][^./]/m, "bare import specifiers need a bundler");
  assert.equal(built.mix32(0xdeadbeef), src.mix32(0xdeadbeef));
});
