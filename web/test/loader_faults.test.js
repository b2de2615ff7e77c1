// Bounded fault injection against loadBundle (issue 15): every file of a small bundle served
// corrupted, truncated, lengthened, missing, with a wrong status or a broken connection, on a
// cold and on a warm cache, plus cache entries damaged at rest. Each attempt must end in the
// right typed error (or, where the cache can make up for it, in the true bytes), never in a
// silently loaded bundle, and leave no cache entry whose bytes differ from the true bundle's.
import assert from "node:assert/strict";
import { test } from "node:test";
import { MemoryCache } from "../src/cache.js";
import { BundleError, IntegrityError, NetworkError } from "../src/errors.js";
import { loadBundle } from "../src/loader.js";
import { BASE, fakeFetch, fakeStorage, makeBundle } from "../testing/fake_bundle.js";

const fast = { retryDelayMs: 0, retries: 1, storage: fakeStorage() };

/**
 * Network faults, applied to every request of the faulty path. Each maps the true body to a
 * Response (or throws as fetch does); null when the fault cannot apply to that body.
 * @type {Record<string, (body: Uint8Array) => Response | null>}
 */
const NET_FAULTS = {
  corrupt: (b) => (b.length ? ok(b.map((x, i) => (i === 0 ? x ^ 0x55 : x))) : null), // the manifest: not JSON
  truncate: (b) => (b.length ? ok(b.slice(0, b.length - 1)) : null),
  lengthen: (b) => ok(new Uint8Array([...b, 0])),
  empty: (b) => (b.length ? ok(new Uint8Array(0)) : null),
  html_200: () => ok(new TextEncoder().encode("<!doctype html><title>Not found</title>")), // an SPA fallback
  status_404: () => new Response("nope", { status: 404 }),
  status_403: () => new Response("nope", { status: 403 }),
  status_500: () => new Response("oops", { status: 500 }),
  status_503: () => new Response("busy", { status: 503 }),
  refused: () => {
    throw new TypeError("Failed to fetch");
  },
  broken_body: (b) => new Response(new ReadableStream({
    start: (c) => (b.length > 1 && c.enqueue(b.slice(0, 1)), c.error(new TypeError("network error"))),
  })),
};
/** @param {Uint8Array} bytes */
const ok = (bytes) => new Response(bytes, { status: 200 });
/** @param {string} fault @param {Uint8Array} body */
const applies = (fault, body) => {
  try {
    return NET_FAULTS[fault](body) !== null;
  } catch {
    return true; // it throws as fetch would
  }
};

/** The typed error each network fault must give, by the faulty file (the manifest or another). */
const WANT = {
  corrupt: { manifest: BundleError, file: IntegrityError },
  truncate: { manifest: BundleError, file: IntegrityError },
  lengthen: { manifest: BundleError, file: IntegrityError },
  empty: { manifest: BundleError, file: IntegrityError },
  html_200: { manifest: BundleError, file: IntegrityError },
  status_404: { manifest: NetworkError, file: NetworkError },
  status_403: { manifest: NetworkError, file: NetworkError },
  status_500: { manifest: NetworkError, file: NetworkError },
  status_503: { manifest: NetworkError, file: NetworkError },
  refused: { manifest: NetworkError, file: NetworkError },
  broken_body: { manifest: NetworkError, file: NetworkError },
};

/** fetch over the true bodies, with `fault` applied to every request for `path`. */
function faultyFetch(/** @type {Map<string, Uint8Array>} */ bodies, /** @type {string} */ path, /** @type {string} */ fault) {
  const good = fakeFetch(bodies).fetch;
  return async (/** @type {string} */ url, /** @type {RequestInit} */ init) => {
    if (url !== BASE + path) return good(url, init);
    return /** @type {Response} */ (NET_FAULTS[fault](/** @type {Uint8Array} */ (bodies.get(path))));
  };
}

/** Every entry of `cache` whose bytes are not the true bundle's (the manifest included). */
function unverifiedEntries(/** @type {MemoryCache} */ cache, /** @type {Map<string, Uint8Array>} */ bodies) {
  return [...cache.entries].flatMap(([url, e]) => {
    const want = bodies.get(url.slice(BASE.length));
    return url.startsWith(BASE) && want && Buffer.from(e.body).equals(Buffer.from(want)) ? [] : [url];
  });
}

/** Damage done to a cache entry at rest. @type {Record<string, (e: {body: ArrayBuffer, headers: [string, string][]}) => void>} */
const AT_REST = {
  flipped: (e) => void (e.body.byteLength && (new Uint8Array(e.body)[e.body.byteLength >> 1] ^= 1)),
  truncated: (e) => void (e.body = e.body.slice(0, Math.max(0, e.body.byteLength - 1))),
  lengthened: (e) => void (e.body = new Uint8Array([...new Uint8Array(e.body), 1]).buffer),
  zeroed: (e) => void new Uint8Array(e.body).fill(0),
  headers_dropped: (e) => void (e.headers = []),
};

test("fault injection: every file × every network fault, cold and warm: typed error, no unverified entry", async () => {
  const { bodies, manifest } = makeBundle();
  const paths = ["manifest.json", ...manifest.files.map((f) => f.path)];
  let attempts = 0;
  for (const path of paths) {
    for (const fault of Object.keys(NET_FAULTS)) {
      if (!applies(fault, /** @type {Uint8Array} */ (bodies.get(path)))) continue; // e.g. truncating 0 bytes
      const isManifest = path === "manifest.json";
      const want = WANT[/** @type {keyof typeof WANT} */ (fault)][isManifest ? "manifest" : "file"];
      const label = `${path} ${fault}`;
      // Cold: nothing cached.
      const cold = new MemoryCache();
      const status = Number(fault.split("_")[1]) || null;
      await assert.rejects(loadBundle(BASE, { ...fast, cache: cold, fetch: faultyFetch(bodies, path, fault) }), (e) =>
        e instanceof want && (want !== IntegrityError || /** @type {any} */ (e).path === path) &&
        (want !== NetworkError || /** @type {any} */ (e).status === status) && e.message.includes(path), label);
      assert.deepEqual(unverifiedEntries(cold, bodies), [], `${label}: cold cache holds only true bytes`);
      attempts++;
      if (isManifest) continue; // a warm load with a bad manifest response: see the next test
      // Warm: the whole bundle cached, then this file's entry damaged at rest as well.
      const warm = new MemoryCache();
      await loadBundle(BASE, { ...fast, cache: warm, fetch: fakeFetch(bodies).fetch });
      AT_REST.lengthened(/** @type {any} */ (warm.entries.get(BASE + path)));
      await assert.rejects(loadBundle(BASE, { ...fast, cache: warm, fetch: faultyFetch(bodies, path, fault) }), want, label);
      assert.deepEqual(unverifiedEntries(warm, bodies), [], `${label}: the damaged entry is gone`);
      attempts++;
    }
  }
  // 8 paths × 11 faults, minus the 3 that cannot apply to the empty shard (corrupt, truncate,
  // empty), each file cold + warm, the manifest cold only.
  assert.equal(attempts, 11 + 7 * 11 * 2 - 2 * 3);
});

test("fault injection: the manifest's response fails on a warm cache: the cached manifest and files, verified", async () => {
  const { bodies, manifest } = makeBundle();
  for (const fault of ["status_404", "status_500", "status_503", "refused", "broken_body"]) {
    const cache = new MemoryCache();
    await loadBundle(BASE, { ...fast, cache, fetch: fakeFetch(bodies).fetch });
    AT_REST.flipped(/** @type {any} */ (cache.entries.get(BASE + "params/shard1.bin")));
    // Offline with the manifest, and the damaged shard is refetched (its server is up).
    const out = await loadBundle(BASE, { ...fast, cache, fetch: faultyFetch(bodies, "manifest.json", fault) });
    for (const f of manifest.files) assert.deepEqual(new Uint8Array(out.files.get(f.path)), bodies.get(f.path), `${fault} ${f.path}`);
    assert.deepEqual(unverifiedEntries(cache, bodies), []);
  }
  // A manifest that answers but is not a manifest (corrupt, an HTML page): BundleError, and
  // the cached manifest is not replaced by it.
  for (const fault of ["corrupt", "truncate", "html_200"]) {
    const cache = new MemoryCache();
    await loadBundle(BASE, { ...fast, cache, fetch: fakeFetch(bodies).fetch });
    await assert.rejects(loadBundle(BASE, { ...fast, cache, fetch: faultyFetch(bodies, "manifest.json", fault) }), BundleError, fault);
    assert.deepEqual(unverifiedEntries(cache, bodies), [], fault);
  }
});

test("fault injection: every cached file damaged at rest is refetched (true bytes returned and cached)", async () => {
  const { bodies, manifest } = makeBundle();
  let attempts = 0;
  for (const f of manifest.files) {
    for (const [damage, apply] of Object.entries(AT_REST)) {
      const cache = new MemoryCache();
      await loadBundle(BASE, { ...fast, cache, fetch: fakeFetch(bodies).fetch });
      const e = /** @type {any} */ (cache.entries.get(BASE + f.path));
      const before = e.body.slice(0);
      apply(e);
      const changed = !Buffer.from(e.body).equals(Buffer.from(before));
      const net = fakeFetch(bodies);
      const out = await loadBundle(BASE, { ...fast, cache, fetch: net.fetch });
      const label = `${f.path} ${damage}`;
      assert.deepEqual(new Uint8Array(out.files.get(f.path)), bodies.get(f.path), label);
      // refetched exactly when the bytes changed (headers alone do not matter any more)
      assert.deepEqual(net.shardCalls().map((c) => c.path), changed ? [f.path] : [], label);
      assert.deepEqual(unverifiedEntries(cache, bodies), [], label);
      attempts++;
    }
  }
  assert.equal(attempts, 7 * 5);
});

test("fault injection: an entry whose body cannot be read is treated as damaged", async () => {
  const { bodies } = makeBundle();
  const cache = new MemoryCache();
  await loadBundle(BASE, { ...fast, cache, fetch: fakeFetch(bodies).fetch });
  const match = cache.match.bind(cache);
  let broken = 1;
  cache.match = async (url) => {
    if (!url.endsWith("shard0.bin") || broken-- <= 0) return match(url);
    return new Response(new ReadableStream({ start: (c) => c.error(new Error("disk read failed")) }));
  };
  const net = fakeFetch(bodies);
  const out = await loadBundle(BASE, { ...fast, cache, fetch: net.fetch });
  assert.deepEqual(net.shardCalls().map((c) => c.path), ["params/shard0.bin"]);
  assert.deepEqual(new Uint8Array(out.files.get("params/shard0.bin")), bodies.get("params/shard0.bin"));
});

test("fault injection: a manifest naming a file larger than the browser can allocate: BundleError naming it", async () => {
  const { bodies, manifest } = makeBundle();
  const m = structuredClone(manifest);
  m.files.find((f) => f.path === "params/shard1.bin").size = 2 ** 40; // a valid integer, 1 TiB
  const lying = new Map(bodies).set("manifest.json", new TextEncoder().encode(JSON.stringify(m)));
  const cache = new MemoryCache();
  await assert.rejects(loadBundle(BASE, { ...fast, cache, fetch: fakeFetch(lying).fetch }), (e) =>
    e instanceof BundleError && !(e instanceof IntegrityError) && e.message.includes("params/shard1.bin") &&
    e.message.includes(String(2 ** 40)));
  assert.equal(cache.entries.has(BASE + "params/shard1.bin"), false);
});

test("fault injection: an onProgress that throws fails the load with its own error, not a retried NetworkError", async () => {
  const { bodies } = makeBundle();
  const boom = new Error("boom from onProgress");
  const net = fakeFetch(bodies);
  const cache = new MemoryCache();
  await assert.rejects(loadBundle(BASE, { ...fast, retries: 3, cache, fetch: net.fetch, onProgress: () => { throw boom; } }), (e) => e === boom);
  const paths = net.calls.map((c) => c.path);
  assert.equal(new Set(paths).size, paths.length, `nothing retried: ${paths}`);
  assert.deepEqual(unverifiedEntries(cache, bodies), []);
});
