// loadBundle over a fake fetch + in-memory cache: integrity, retries, abort, progress, quota.
import assert from "node:assert/strict";
import { test } from "node:test";
import { MemoryCache } from "../src/cache.js";
import { IntegrityError, NetworkError, QuotaExceededError } from "../src/errors.js";
import { deleteModelFromCache, hasModelInCache, loadBundle } from "../src/loader.js";
import { BASE, fakeFetch, fakeStorage, makeBundle } from "../testing/fake_bundle.js";

const fast = { retryDelayMs: 1, storage: fakeStorage() };
const bytesOf = (/** @type {ArrayBuffer} */ b) => new Uint8Array(b);

/** A MemoryCache that counts as persistent storage (so the quota check applies). */
const persistentCache = () => Object.assign(new MemoryCache(), { persistent: true });

test("cold load fetches, verifies and caches every file; progress is monotonic and ends at exactly 1", async () => {
  const { bodies, manifest, totalBytes } = makeBundle();
  const net = fakeFetch(bodies);
  const cache = new MemoryCache();
  const reports = [];
  const out = await loadBundle(BASE, { ...fast, cache, fetch: net.fetch, onProgress: (r) => reports.push(r) });
  assert.deepEqual([...out.files.keys()], manifest.files.map((f) => f.path));
  for (const [path, buf] of out.files) assert.deepEqual(bytesOf(buf), bodies.get(path));
  assert.equal(out.stats.fetchedFiles, manifest.files.length);
  assert.ok(reports.length > 5);
  for (let i = 1; i < reports.length; i++) {
    assert.ok(reports[i].progress >= reports[i - 1].progress, "progress monotonic");
    assert.ok(reports[i].loadedBytes >= reports[i - 1].loadedBytes, "bytes monotonic");
  }
  const last = reports.at(-1);
  assert.equal(last.progress, 1);
  assert.equal(last.loadedBytes, totalBytes);
  assert.equal(last.totalBytes, totalBytes);
  assert.ok(reports.slice(0, -1).every((r) => r.progress < 1), "only the final report says 1");
  assert.equal(typeof last.timeElapsed, "number");
  assert.equal(cache.entries.size, manifest.files.length + 1); // + manifest.json
});

test("warm load makes no shard request and returns identical bytes", async () => {
  const { bodies } = makeBundle();
  const cache = new MemoryCache();
  await loadBundle(BASE, { ...fast, cache, fetch: fakeFetch(bodies).fetch });
  const net = fakeFetch(bodies);
  const reports = [];
  const out = await loadBundle(BASE + "manifest.json", { ...fast, cache, fetch: net.fetch, onProgress: (r) => reports.push(r) });
  assert.deepEqual(net.shardCalls(), []);
  assert.equal(out.stats.fetchedFiles, 0);
  assert.equal(reports.at(-1).progress, 1);
  for (const [path, buf] of out.files) assert.deepEqual(bytesOf(buf), bodies.get(path));
});

test("offline: the cached manifest is used when the network is down", async () => {
  const { bodies } = makeBundle();
  const cache = new MemoryCache();
  await loadBundle(BASE, { ...fast, cache, fetch: fakeFetch(bodies).fetch });
  const offline = async () => { throw new TypeError("Failed to fetch"); };
  const out = await loadBundle(BASE, { ...fast, retries: 1, cache, fetch: offline });
  assert.equal(out.stats.cachedFiles, out.files.size);
});

test("a corrupted or truncated cached entry is detected, deleted and refetched", async () => {
  const { bodies } = makeBundle();
  const cache = new MemoryCache();
  await loadBundle(BASE, { ...fast, cache, fetch: fakeFetch(bodies).fetch });
  const corrupt = cache.entries.get(BASE + "params/shard1.bin");
  new Uint8Array(corrupt.body)[100] ^= 0xff;
  const trunc = cache.entries.get(BASE + "params/shard3.bin");
  trunc.body = trunc.body.slice(0, 10);
  const net = fakeFetch(bodies);
  const out = await loadBundle(BASE, { ...fast, cache, fetch: net.fetch });
  assert.deepEqual(net.shardCalls().map((c) => c.path).sort(), ["params/shard1.bin", "params/shard3.bin"]);
  assert.deepEqual(bytesOf(out.files.get("params/shard1.bin")), bodies.get("params/shard1.bin"));
  assert.deepEqual(bytesOf(cache.entries.get(BASE + "params/shard3.bin").body), bodies.get("params/shard3.bin"));
});

test("a bad body is refetched once bypassing the HTTP cache; twice bad → IntegrityError naming the file", async () => {
  const { bodies } = makeBundle();
  const once = fakeFetch(bodies, { "params/shard1.bin": ["truncate"], "params/shard0.bin": ["corrupt"] });
  const out = await loadBundle(BASE, { ...fast, cache: new MemoryCache(), fetch: once.fetch });
  assert.deepEqual(bytesOf(out.files.get("params/shard1.bin")), bodies.get("params/shard1.bin"));
  const s1 = once.calls.filter((c) => c.path === "params/shard1.bin");
  assert.deepEqual(s1.map((c) => c.cache), [undefined, "reload"]);

  const cache = new MemoryCache();
  const twice = fakeFetch(bodies, { "params/shard1.bin": ["truncate", "truncate"] });
  await assert.rejects(loadBundle(BASE, { ...fast, cache, fetch: twice.fetch }), (e) =>
    e instanceof IntegrityError && e.path === "params/shard1.bin" && e.message.includes("params/shard1.bin"));
  assert.equal(cache.entries.has(BASE + "params/shard1.bin"), false, "a bad file is never cached");
});

test("network errors and 5xx are retried with backoff; 404 is not", async () => {
  const { bodies } = makeBundle();
  const flaky = fakeFetch(bodies, { "params/shard1.bin": ["neterr", "500", "ok"], "manifest.json": ["neterr"] });
  const out = await loadBundle(BASE, { ...fast, cache: false, fetch: flaky.fetch });
  assert.equal(out.files.size, 7);
  assert.equal(flaky.calls.filter((c) => c.path === "params/shard1.bin").length, 3);

  const down = fakeFetch(bodies, { "params/shard2.bin": Array(10).fill("neterr") });
  await assert.rejects(loadBundle(BASE, { ...fast, retries: 2, cache: false, fetch: down.fetch }), NetworkError);
  assert.equal(down.calls.filter((c) => c.path === "params/shard2.bin").length, 3);

  const missing = fakeFetch(bodies, { "params/shard2.bin": ["404"] });
  await assert.rejects(loadBundle(BASE, { ...fast, cache: false, fetch: missing.fetch }), (e) =>
    e instanceof NetworkError && e.status === 404);
  assert.equal(missing.calls.filter((c) => c.path === "params/shard2.bin").length, 1);
});

test("AbortSignal cancels a load in progress and before it starts", async () => {
  const { bodies } = makeBundle();
  const ctl = new AbortController();
  const net = fakeFetch(bodies, { "params/shard1.bin": ["hang"] });
  const p = loadBundle(BASE, { ...fast, cache: false, fetch: net.fetch, signal: ctl.signal });
  setTimeout(() => ctl.abort(), 20);
  await assert.rejects(p, (e) => e.name === "AbortError");
  await assert.rejects(loadBundle(BASE, { ...fast, fetch: net.fetch, signal: AbortSignal.abort() }), (e) => e.name === "AbortError");
});

test("downloads run with bounded concurrency", async () => {
  const { bodies } = makeBundle([5000, 5000, 5000, 5000, 5000, 5000]);
  const net = fakeFetch(bodies, {}, { chunk: 512 });
  await loadBundle(BASE, { ...fast, cache: false, concurrency: 2, fetch: net.fetch });
  assert.equal(net.stats.maxInFlight, 2);
});

test("quota: not enough space for the missing files → QuotaExceededError before any shard fetch", async () => {
  const { bodies, totalBytes } = makeBundle();
  const net = fakeFetch(bodies);
  const storage = fakeStorage({ quota: 1000 + totalBytes, usage: 1001 });
  await assert.rejects(loadBundle(BASE, { ...fast, storage, cache: persistentCache(), fetch: net.fetch }), (e) =>
    e instanceof QuotaExceededError && e.neededBytes === totalBytes && e.availableBytes === totalBytes - 1);
  assert.deepEqual(net.shardCalls(), []);
  // Enough room: loads, and persist() is asked for.
  const roomy = fakeStorage({ quota: 1000 + totalBytes, usage: 1000 });
  const out = await loadBundle(BASE, { ...fast, storage: roomy, persist: true, cache: persistentCache(), fetch: net.fetch });
  assert.equal(out.persisted, true);
  // A cache.put() refused by the browser also surfaces as QuotaExceededError.
  const full = Object.assign(new MemoryCache(), {
    put: async (/** @type {string} */ url) => {
      if (url.endsWith(".bin")) throw new DOMException("full", "QuotaExceededError");
    },
  });
  await assert.rejects(loadBundle(BASE, { ...fast, cache: full, fetch: net.fetch }), QuotaExceededError);
});

test("hasModelInCache / deleteModelFromCache", async () => {
  const { bodies } = makeBundle();
  const cache = new MemoryCache();
  assert.equal(await hasModelInCache(BASE, { cache }), false);
  await loadBundle(BASE, { ...fast, cache, fetch: fakeFetch(bodies).fetch });
  assert.equal(await hasModelInCache(BASE.slice(0, -1), { cache }), true);
  await cache.delete(BASE + "params/shard0.bin");
  assert.equal(await hasModelInCache(BASE, { cache }), false);
  await cache.put("https://cdn.example/bundles/other/x.bin", new Response("keep"));
  await cache.put(BASE + "v2/manifest.json", new Response("another bundle in a subfolder"));
  await cache.put(BASE + "params/old.bin", new Response("an older version's shard"));
  assert.equal(await deleteModelFromCache(BASE + "manifest.json", { cache }), 8);
  assert.deepEqual((await cache.keys()).sort(), ["https://cdn.example/bundles/other/x.bin", BASE + "v2/manifest.json"]);
});

test("real fetch over HTTP (node:http): streamed bodies, refetch with cache: reload, then warm", async (t) => {
  const { createServer } = await import("node:http");
  const { bodies } = makeBundle([200000, 5, 65536]);
  let bad = 1; // the first request for shard0 gets a corrupted body
  const seen = [];
  const server = createServer((req, res) => {
    const path = req.url.replace(/^\/b\//, "");
    seen.push(path);
    const body = bodies.get(path);
    if (!body) return res.writeHead(404).end();
    const out = path === "params/shard0.bin" && bad-- > 0 ? body.map((x) => x ^ 1) : body;
    res.writeHead(200, { "content-type": "application/octet-stream" });
    res.end(Buffer.from(out));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => server.close());
  const url = `http://127.0.0.1:${server.address().port}/b`;
  const cache = new MemoryCache();
  const out = await loadBundle(url, { ...fast, cache });
  assert.deepEqual(bytesOf(out.files.get("params/shard0.bin")), bodies.get("params/shard0.bin"));
  assert.equal(seen.filter((p) => p === "params/shard0.bin").length, 2);
  seen.length = 0;
  await loadBundle(url + "/manifest.json", { ...fast, cache });
  assert.deepEqual(seen, ["manifest.json"]);
});
