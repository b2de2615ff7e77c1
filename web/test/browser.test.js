// dist/index.js in a real headless Chromium: Cache Storage, SubtleCrypto, streamed fetch.
// Skipped (with the reason) when dist/ is not built or no Chromium is installed.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { makeBundle } from "../testing/fake_bundle.js";

const dist = new URL("../dist/index.js", import.meta.url);
const chromium = process.env.CHROMIUM ?? ["chromium", "chromium-browser", "google-chrome"].map(which).find(Boolean);
const skip = !existsSync(dist) ? "dist/index.js not built (run npm run build)" : !chromium ? "no Chromium found (set CHROMIUM=path)" : false;

function which(/** @type {string} */ name) {
  try {
    return execFileSync("which", [name], { encoding: "utf8" }).trim() || null;
  } catch {
    return null;
  }
}

const PAGE = `<!doctype html><meta charset="utf-8"><script type="module">
import * as w from "/dist/index.js";
const out = {};
try {
  const base = location.origin + "/bundle/";
  const progress = [];
  out.cold = (await w.loadBundle(base, { onProgress: (r) => progress.push(r.progress) })).stats;
  out.monotonic = progress.every((p, i) => i === 0 || p >= progress[i - 1]);
  out.last = progress.at(-1);
  out.warm = (await w.loadBundle(base)).stats;
  out.has = await w.hasModelInCache(base);
  out.deleted = await w.deleteModelFromCache(base);
  out.hasAfter = await w.hasModelInCache(base);
  out.mix32 = w.mix32(0xdeadbeef);
  out.sample = w.sampleToken(new Float32Array(5000).map((_, i) => Math.sin(i)), { temperature: 0.8, top_p: 0.9, seed: 42 });
} catch (e) { out.error = String(e?.stack ?? e); }
await fetch("/result", { method: "POST", body: JSON.stringify(out) });
</script>`;

test("dist/index.js loads, verifies and caches a bundle in headless Chromium", { skip, timeout: 60_000 }, async (t) => {
  const { bodies } = makeBundle([3_000_000, 10, 70000]);
  const requests = [];
  /** @type {(v: any) => void} */
  let done = () => {};
  const result = new Promise((r) => (done = r));
  const server = createServer((req, res) => {
    const url = String(req.url);
    requests.push(url);
    if (url === "/result") {
      let body = "";
      req.on("data", (c) => (body += c)).on("end", () => (res.end(), done(JSON.parse(body))));
    } else if (url === "/page.html") res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(PAGE);
    else if (url === "/dist/index.js") res.writeHead(200, { "content-type": "text/javascript" }).end(readFileSync(dist));
    else if (url.startsWith("/bundle/") && bodies.has(url.slice(8))) res.end(bodies.get(url.slice(8)));
    else res.writeHead(404).end();
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", () => r(undefined)));
  const profile = mkdtempSync(path.join(tmpdir(), "webllm-py-chromium-"));
  const page = `http://127.0.0.1:${/** @type {any} */ (server.address()).port}/page.html`;
  const args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", `--user-data-dir=${profile}`, page];
  // Its own process group, so that teardown stops Chromium's helper processes too: killing only
  // the main process left them writing into the profile while it was being removed (ENOTEMPTY).
  const browser = spawn(/** @type {string} */ (chromium), args, { stdio: "ignore", detached: true });
  t.after(async () => {
    server.close();
    if (browser.exitCode === null) {
      const exited = new Promise((r) => browser.once("exit", r));
      try {
        process.kill(-(/** @type {number} */ (browser.pid)), "SIGKILL");
      } catch {
        browser.kill("SIGKILL");
      }
      await exited;
    }
    rmSync(profile, { recursive: true, force: true, maxRetries: 20, retryDelay: 250 });
  });
  const out = await result;
  assert.equal(out.error, undefined);
  assert.deepEqual(out.cold, { cachedFiles: 0, fetchedFiles: 5, fetchedBytes: 3070010 + 12 + 2 });
  assert.deepEqual(out.warm, { cachedFiles: 5, fetchedFiles: 0, fetchedBytes: 0 });
  assert.equal(out.monotonic, true);
  assert.equal(out.last, 1);
  assert.equal(out.has, true);
  assert.equal(out.hasAfter, false);
  assert.equal(out.deleted, 6);
  assert.equal(out.mix32, 0x0de5c6a9);
  const { sampleToken } = await import("../src/sampler.js");
  assert.equal(out.sample, sampleToken(new Float32Array(5000).map((_, i) => Math.sin(i)), { temperature: 0.8, top_p: 0.9, seed: 42 }));
  const shardGets = requests.filter((u) => u.startsWith("/bundle/params/"));
  assert.equal(shardGets.length, 3, "the warm load fetched no shard");
});
