// loadBundle over a fake fetch + in-memory cache: integrity (cold and warm), retries, abort,
// progress, quota, and what the cache holds after a failure.
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

/** The cache entry an older version of this package kept beside the manifest (its "verified record"). */
const LEGACY_RECORD = BASE + "manifest.json?webllm-py-verified";
/** Count sha256 computations (SubtleCrypto digest calls) from now on. @param {import("node:test").TestContext} t */
const hashSpy = (t) => t.mock.method(globalThis.crypto.subtle, "digest");
/** Replace a cached file the way another writer would: same size, one byte flipped. */
async function overwriteFlipped(/** @type {MemoryCache} */ cache, /** @type {string} */ path) {
  const bytes = new Uint8Array(cache.entries.get(BASE + path).body.slice(0));
  bytes[0] ^= 0xff;
  await cache.put(BASE + path, new Response(bytes));
}

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
  for (const f of manifest.files) assert.deepEqual(bytesOf(cache.entries.get(BASE + f.path).body), bodies.get(f.path));
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
  await overwriteFlipped(cache, "params/shard1.bin"); // replaced by someone else: not vouched for
  const trunc = cache.entries.get(BASE + "params/shard3.bin");
  trunc.body = trunc.body.slice(0, 10); // truncated in place: wrong size
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

test("warm load hashes every cached file once, fetches no shard and writes only the manifest", async (t) => {
  const { bodies, manifest } = makeBundle();
  const cache = new MemoryCache();
  const digest = hashSpy(t);
  await loadBundle(BASE, { ...fast, cache, fetch: fakeFetch(bodies).fetch });
  assert.equal(digest.mock.callCount(), manifest.files.length, "a cold load hashes every file once");
  digest.mock.resetCalls();
  const puts = t.mock.method(cache, "put");
  const net = fakeFetch(bodies);
  const out = await loadBundle(BASE, { ...fast, cache, fetch: net.fetch });
  assert.equal(digest.mock.callCount(), manifest.files.length, "a warm load hashes every cached file once");
  assert.deepEqual(net.shardCalls(), []);
  assert.deepEqual(puts.mock.calls.map((c) => c.arguments[0]), [BASE + "manifest.json"]);
  assert.equal(out.stats.cachedFiles, manifest.files.length);
  for (const [path, buf] of out.files) assert.deepEqual(bytesOf(buf), bodies.get(path));
});

test("a cached entry of the wrong size is refetched without being hashed", async (t) => {
  const { bodies, manifest } = makeBundle();
  const cache = new MemoryCache();
  await loadBundle(BASE, { ...fast, cache, fetch: fakeFetch(bodies).fetch });
  const e = cache.entries.get(BASE + "params/shard1.bin");
  e.body = e.body.slice(0, e.body.byteLength - 1);
  const longer = cache.entries.get(BASE + "params/shard0.bin");
  longer.body = new Uint8Array([...new Uint8Array(longer.body), 7]).buffer;
  const digest = hashSpy(t);
  const net = fakeFetch(bodies);
  const out = await loadBundle(BASE, { ...fast, cache, fetch: net.fetch });
  assert.deepEqual(net.shardCalls().map((c) => c.path).sort(), ["params/shard0.bin", "params/shard1.bin"]);
  // the other cached entries, then the two downloads; the two of the wrong size are not hashed
  assert.equal(digest.mock.callCount(), manifest.files.length - 2 + 2);
  for (const p of ["params/shard0.bin", "params/shard1.bin"]) {
    assert.deepEqual(bytesOf(out.files.get(p)), bodies.get(p));
    assert.deepEqual(bytesOf(cache.entries.get(BASE + p).body), bodies.get(p));
  }
});

test("a new manifest: a cached file whose sha256 it no longer names is refetched", async () => {
  const { bodies, manifest } = makeBundle();
  const cache = new MemoryCache();
  await loadBundle(BASE, { ...fast, cache, fetch: fakeFetch(bodies).fetch });
  // tokenizer.json (not content-addressed) has new bytes of the same size
  const tok = bodies.get("tokenizer.json").slice();
  tok[tok.length - 1] = 0x20;
  const { createHash } = await import("node:crypto");
  const m2 = structuredClone(manifest);
  m2.files.find((f) => f.path === "tokenizer.json").sha256 = createHash("sha256").update(tok).digest("hex");
  const newBodies = new Map(bodies).set("tokenizer.json", tok).set("manifest.json", new TextEncoder().encode(JSON.stringify(m2)));
  const net = fakeFetch(newBodies);
  const out = await loadBundle(BASE, { ...fast, cache, fetch: net.fetch });
  assert.deepEqual(net.shardCalls().map((c) => c.path), ["tokenizer.json"]);
  assert.deepEqual(bytesOf(out.files.get("tokenizer.json")), tok);
  assert.deepEqual(bytesOf(cache.entries.get(BASE + "tokenizer.json").body), tok);
});

test("an older version's verified record vouches for nothing and is removed", async () => {
  const { bodies, manifest } = makeBundle();
  const cache = new MemoryCache();
  await loadBundle(BASE, { ...fast, cache, fetch: fakeFetch(bodies).fetch });
  // What that version wrote: the record names the entry's write id, which it kept in a header.
  const write = "3f0c-old-write-id";
  const e = cache.entries.get(BASE + "params/shard1.bin");
  e.headers = [["x-webllm-py-write", write]];
  new Uint8Array(e.body)[7] ^= 1; // and the bytes rotted under it
  const f1 = manifest.files.find((f) => f.path === "params/shard1.bin");
  const record = { format: "webllm-py-verified", files: [{ ...f1, write }] };
  await cache.put(LEGACY_RECORD, new Response(JSON.stringify(record)));
  const net = fakeFetch(bodies);
  const out = await loadBundle(BASE, { ...fast, cache, fetch: net.fetch });
  assert.deepEqual(net.shardCalls().map((c) => c.path), ["params/shard1.bin"]);
  assert.deepEqual(bytesOf(out.files.get("params/shard1.bin")), bodies.get("params/shard1.bin"));
  assert.equal(cache.entries.has(LEGACY_RECORD), false);
});

test("cold load streams each body into its cache write while it downloads; commits only verified bytes", async () => {
  const { bodies } = makeBundle([300000]);
  const net = fakeFetch(bodies, {}, { chunk: 1024 });
  const events = [];
  const cache = new MemoryCache();
  const inner = cache.put.bind(cache);
  cache.put = async (url, res) => {
    events.push(["put", url]);
    if (url.endsWith(".bin")) {
      // The put is under way before the last byte has arrived.
      const reader = res.body.getReader();
      const first = await reader.read();
      events.push(["first chunk in put", first.value.byteLength]);
      const rest = new Response(new ReadableStream({
        start: (c) => c.enqueue(first.value),
        pull: async (c) => { const r = await reader.read(); r.done ? c.close() : c.enqueue(r.value); },
      }), { headers: res.headers });
      return inner(url, rest);
    }
    return inner(url, res);
  };
  const reports = [];
  await loadBundle(BASE, { ...fast, cache, fetch: net.fetch, onProgress: (r) => reports.push([r.text, r.loadedBytes]) });
  const i = events.findIndex(([e]) => e === "first chunk in put");
  assert.ok(i >= 0 && events[i][1] === 1024);
  assert.deepEqual(bytesOf(cache.entries.get(BASE + "params/shard0.bin").body), bodies.get("params/shard0.bin"));
});

test("integrity failure on download leaves no entry, even with a backend that keeps partial bodies", async () => {
  const { bodies } = makeBundle();
  for (const cache of [new MemoryCache(), leakyCache()]) {
    const twice = fakeFetch(bodies, { "params/shard1.bin": ["corrupt", "corrupt"] });
    await assert.rejects(loadBundle(BASE, { ...fast, cache, fetch: twice.fetch }), IntegrityError);
    assert.equal(cache.entries.has(BASE + "params/shard1.bin"), false, "no entry for the bad file");
    // Recovers: bad once, then good — the entry in the cache is the good one.
    const once = fakeFetch(bodies, { "params/shard1.bin": ["corrupt"] });
    await loadBundle(BASE, { ...fast, cache, fetch: once.fetch });
    assert.deepEqual(bytesOf(cache.entries.get(BASE + "params/shard1.bin").body), bodies.get("params/shard1.bin"));
  }
  // The body of a bad attempt is errored, not ended: the put itself stores nothing.
  const cache = new MemoryCache();
  const inner = cache.put.bind(cache);
  const outcomes = [];
  cache.put = (url, res) => {
    const p = inner(url, res);
    p.then(() => outcomes.push([url, "stored"]), () => outcomes.push([url, "refused"]));
    return p;
  };
  const twice = fakeFetch(bodies, { "params/shard1.bin": ["corrupt", "corrupt"] });
  await assert.rejects(loadBundle(BASE, { ...fast, cache, fetch: twice.fetch }), IntegrityError);
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(outcomes.filter(([u]) => u.endsWith("shard1.bin")).map(([, o]) => o), ["refused", "refused"]);
});

/** A backend that stores whatever part of a body it got, even when the body errors. */
function leakyCache() {
  const c = new MemoryCache();
  c.put = async (url, res) => {
    const parts = [];
    const reader = res.body.getReader();
    try {
      for (let r; !(r = await reader.read()).done; ) parts.push(r.value);
    } finally {
      const body = new Uint8Array(await new Blob(parts).arrayBuffer()).buffer;
      c.entries.set(url, { body, headers: [...res.headers] });
    }
  };
  return c;
}

test("abort and network errors mid-body with a cache: nothing stored for the broken body, no unhandled rejection", async () => {
  const { bodies } = makeBundle();
  const cache = new MemoryCache();
  const ctl = new AbortController();
  const net = fakeFetch(bodies, { "params/shard1.bin": ["hang"] });
  const p = loadBundle(BASE, { ...fast, cache, fetch: net.fetch, signal: ctl.signal });
  setTimeout(() => ctl.abort(), 20);
  await assert.rejects(p, (e) => e.name === "AbortError");
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(cache.entries.has(BASE + "params/shard1.bin"), false);

  // A body that breaks (then succeeds on retry) leaves only the complete entry.
  const { bodies: b2 } = makeBundle([20000]);
  let broken = 1;
  const flaky = async (/** @type {string} */ url, /** @type {RequestInit} */ init) => {
    const res = await fakeFetch(b2).fetch(url, init);
    if (!url.endsWith(".bin") || broken-- <= 0) return res;
    const reader = res.body.getReader();
    return new Response(new ReadableStream({
      async pull(c) {
        const r = await reader.read();
        if (r.done) c.error(new TypeError("network error"));
        else c.enqueue(r.value.slice(0, 100)), c.error(new TypeError("network error"));
      },
    }));
  };
  const c2 = leakyCache();
  const out = await loadBundle(BASE, { ...fast, cache: c2, fetch: flaky });
  assert.deepEqual(bytesOf(out.files.get("params/shard0.bin")), b2.get("params/shard0.bin"));
  assert.deepEqual(bytesOf(c2.entries.get(BASE + "params/shard0.bin").body), b2.get("params/shard0.bin"));
});

test("hasModelInCache is presence only; deleteModelFromCache sweeps older versions' records uncounted", async () => {
  const { bodies } = makeBundle();
  const cache = new MemoryCache();
  await loadBundle(BASE, { ...fast, cache, fetch: fakeFetch(bodies).fetch });
  new Uint8Array(cache.entries.get(BASE + "params/shard1.bin").body)[0] ^= 1;
  assert.equal(await hasModelInCache(BASE, { cache }), true, "presence only: loadBundle verifies the bytes");
  await cache.put(LEGACY_RECORD, new Response("{}"));
  await cache.put(BASE + "old.json?webllm-py-verified", new Response("{}"));
  await cache.put("https://cdn.example/bundles/other/manifest.json?webllm-py-verified", new Response("{}"));
  assert.equal(await deleteModelFromCache(BASE, { cache }), 8, "7 files + the manifest; records are not counted");
  assert.deepEqual(await cache.keys(), ["https://cdn.example/bundles/other/manifest.json?webllm-py-verified"]);
});

test("warm load: a shard changed at rest (same size, same headers) is refetched, never returned", async () => {
  const { bodies } = makeBundle();
  const cache = new MemoryCache();
  await loadBundle(BASE, { ...fast, cache, fetch: fakeFetch(bodies).fetch });
  // Bit rot under the entry: bytes changed in place, size and every header (the write id) kept.
  new Uint8Array(cache.entries.get(BASE + "params/shard1.bin").body)[100] ^= 0xff;
  const net = fakeFetch(bodies);
  const out = await loadBundle(BASE, { ...fast, cache, fetch: net.fetch });
  assert.deepEqual(net.shardCalls().map((c) => c.path), ["params/shard1.bin"]);
  assert.deepEqual(bytesOf(out.files.get("params/shard1.bin")), bodies.get("params/shard1.bin"));
  assert.deepEqual(bytesOf(cache.entries.get(BASE + "params/shard1.bin").body), bodies.get("params/shard1.bin"));

  // The network copy is bad too (both attempts): IntegrityError, and no bad entry is left behind.
  new Uint8Array(cache.entries.get(BASE + "params/shard1.bin").body)[100] ^= 0xff;
  const bad = fakeFetch(bodies, { "params/shard1.bin": ["corrupt", "corrupt"] });
  await assert.rejects(loadBundle(BASE, { ...fast, cache, fetch: bad.fetch }), (e) =>
    e instanceof IntegrityError && e.path === "params/shard1.bin");
  assert.equal(cache.entries.has(BASE + "params/shard1.bin"), false, "the bad entry is deleted");
});
