// loadBundle: manifest → cached files (trusted via the bundle's verified record, else
// re-hashed) → quota check → bounded-concurrency streamed downloads, each written to the
// cache as it arrives but committed, recorded and returned only once sha256-verified.
//
// Trusting a cached file without hashing it again: every entry the loader writes carries
// a fresh random write id (header x-webllm-py-write), and after the entry's put resolved
// with bytes that passed sha256, the bundle's verified record (one small JSON entry next
// to the manifest, see verifiedRecordUrl) lists {path, sha256, size, write}. A later load
// trusts an entry only when the record names the manifest's sha256 and size AND the write
// id of the entry now in the cache, and the body has that size. Any other writer (an
// interrupted write, an older package version, another bundle's load of a shared shard,
// anything else calling cache.put) leaves an entry whose write id the record does not
// name, so that entry is hashed again, exactly as before the record existed.
import { NoCache, resolveCache } from "./cache.js";
import { BundleError, IntegrityError, NetworkError, QuotaExceededError } from "./errors.js";
import { integrityProblem } from "./hash.js";
import { fileUrl, readManifestResponse, resolveBundleUrl } from "./manifest.js";
import { fetchOnce, withRetry } from "./net.js";
import { ProgressTracker } from "./progress.js";

/**
 * @typedef {import("./manifest.js").Manifest} Manifest
 * @typedef {import("./manifest.js").BundleFile} BundleFile
 * @typedef {import("./cache.js").BundleCache} BundleCache
 * @typedef {import("./progress.js").ProgressReport} ProgressReport
 * @typedef {object} LoadOptions
 * @property {BundleCache|boolean|string} [cache] false: no cache; a string: Cache Storage scope; an object: custom backend
 * @property {AbortSignal} [signal]
 * @property {number} [concurrency] parallel downloads (default 4)
 * @property {(report: ProgressReport) => void} [onProgress]
 * @property {boolean} [persist] ask for persistent storage (navigator.storage.persist())
 * @property {typeof fetch} [fetch]
 * @property {number} [retries] network retries per request (default 3)
 * @property {number} [retryDelayMs] first backoff delay (default 500, doubling)
 * @property {StorageManager} [storage] defaults to navigator.storage
 * @property {boolean} [verifyCache] re-hash every cached file, even those the verified record vouches for (default false)
 * @typedef {object} LoadedBundle
 * @property {Manifest} manifest
 * @property {string} baseUrl
 * @property {string} manifestUrl
 * @property {Map<string, ArrayBuffer>} files path → verified bytes, in manifest order
 * @property {{cachedFiles: number, fetchedFiles: number, fetchedBytes: number}} stats
 * @property {boolean|null} persisted result of storage.persist(), null when not asked
 */

/**
 * Fetch, verify and cache every file of a bundle.
 * @param {string|URL} url bundle folder URL or its manifest.json URL
 * @param {LoadOptions} [options]
 * @returns {Promise<LoadedBundle>}
 */
export async function loadBundle(url, options = {}) {
  const { onProgress, persist = false, concurrency = 4 } = options;
  const storage = options.storage ?? globalThis.navigator?.storage;
  const cache = resolveCache(options.cache);
  const outer = options.signal;
  outer?.throwIfAborted();
  // Inner controller: the first failing file cancels the other downloads.
  const ctl = new AbortController();
  const onOuterAbort = () => ctl.abort(outer?.reason);
  outer?.addEventListener("abort", onOuterAbort, { once: true });
  const net = { fetch: options.fetch, signal: ctl.signal, retries: options.retries, retryDelayMs: options.retryDelayMs };
  try {
    const loc = resolveBundleUrl(url);
    const recordP = readRecord(cache, loc.manifestUrl); // never rejects; read while the manifest loads
    const manifest = await loadManifest(loc.manifestUrl, cache, net);
    const record = await recordP;
    const totalBytes = manifest.files.reduce((s, f) => s + f.size, 0);
    const progress = new ProgressTracker(totalBytes, onProgress);
    /** @type {Map<string, ArrayBuffer>} */
    const got = new Map();
    const stats = { cachedFiles: 0, fetchedFiles: 0, fetchedBytes: 0 };

    /** @type {Map<string, VerifiedFile>} path → what the record will say after this load */
    const verified = new Map();
    // Every cache write, awaited before the load reports success (see below).
    /** @type {Promise<void>[]} */
    const puts = [];

    /** @type {BundleFile[]} */
    const missing = [];
    await runPool(manifest.files, concurrency, ctl, async (f) => {
      const u = fileUrl(loc.baseUrl, f.path);
      const hit = await readCached(cache, u, f, options.verifyCache ? undefined : record.files.get(f.path));
      if (!hit) return void missing.push(f);
      got.set(f.path, hit.buf);
      stats.cachedFiles++;
      progress.add(f.size, `Loaded ${f.path} from cache`);
      if (hit.write) verified.set(f.path, { path: f.path, sha256: f.sha256, size: f.size, write: hit.write });
      else puts.push(rewriteVerified(cache, u, f, hit.buf, verified));
    });

    const missingBytes = missing.reduce((s, f) => s + f.size, 0);
    if (missing.length && cache.persistent) await checkQuota(storage, missingBytes);
    const persisted = persist && storage?.persist ? await storage.persist() : null;

    // Each download is written to the cache while it arrives, not after it (measured with
    // buffered puts after download + sha256: ~0.24 s of Cache Storage writes, mostly after
    // the downloads, in a 0.65 s cold load of a 94 MiB bundle); its put finishes while the
    // slot fetches the next file, and every write is awaited before the load reports
    // success. No cache, no writes (and no second copy of the bytes in flight).
    /** @type {Store|null} */
    const store = cache instanceof NoCache ? null : (u, size) => {
      const entry = beginCacheWrite(cache, u, size, missingBytes);
      // A refused write stops the other downloads now, not when this file has arrived.
      entry.done.catch((err) => err instanceof QuotaExceededError && ctl.abort(err));
      return entry;
    };
    await runPool(missing, concurrency, ctl, async (f) => {
      const { buf, entry } = await downloadVerified(fileUrl(loc.baseUrl, f.path), f, net, progress, store);
      if (entry) {
        // Recorded only once the put of the whole verified body has resolved.
        const put = entry.done.then(() => {
          if (entry.committed()) verified.set(f.path, { path: f.path, sha256: f.sha256, size: f.size, write: entry.write });
        });
        put.catch((err) => ctl.abort(err)); // a failed write stops the downloads; rethrown below
        puts.push(put);
      }
      got.set(f.path, buf);
      stats.fetchedFiles++;
      stats.fetchedBytes += f.size;
    });
    await Promise.all(puts);
    if (!(cache instanceof NoCache)) await saveRecord(cache, loc.manifestUrl, manifest, verified, record);

    progress.finish(`Loaded ${manifest.model?.id ?? "bundle"} (${manifest.files.length} files)`);
    const files = new Map(manifest.files.map((f) => [f.path, /** @type {ArrayBuffer} */ (got.get(f.path))]));
    return { manifest, ...loc, files, stats, persisted };
  } catch (err) {
    ctl.abort(err);
    throw outer?.aborted ? outer.reason : err;
  } finally {
    outer?.removeEventListener("abort", onOuterAbort);
  }
}

/**
 * The manifest from the network (stored in the cache for offline use); the cached
 * copy when the network fails.
 * @param {string} manifestUrl @param {BundleCache} cache @param {import("./net.js").FetchOptions} net
 * @returns {Promise<Manifest>}
 */
async function loadManifest(manifestUrl, cache, net) {
  let text;
  try {
    const res = await withRetry(() => fetchOnce(manifestUrl, net), net);
    text = await res.text();
  } catch (err) {
    if (!(err instanceof NetworkError)) throw err;
    const cached = await cache.match(manifestUrl);
    if (!cached) throw err;
    return readManifestResponse(cached, manifestUrl);
  }
  const manifest = await readManifestResponse(new Response(text), manifestUrl);
  try {
    await cache.put(manifestUrl, new Response(text, { headers: { "content-type": "application/json" } }));
  } catch (err) {
    if (isQuotaError(err)) throw new QuotaExceededError(text.length, null, { cause: err });
    throw err;
  }
  return manifest;
}

/**
 * @typedef {{path: string, sha256: string, size: number, write: string}} VerifiedFile
 * @typedef {{files: Map<string, VerifiedFile>, text: string|null}} VerifiedRecord  text: as stored
 */

/** Response header holding the id of the write that stored a cache entry. */
export const WRITE_HEADER = "x-webllm-py-write";
const RECORD_FORMAT = "webllm-py-verified";

/**
 * Cache key of the verified record of the bundle whose manifest is at `manifestUrl`: one per
 * manifest, so bundles sharing a cache (or a folder, hence shard URLs) never share a record.
 * A query keeps it out of the way of every file URL of the bundle.
 * @param {string} manifestUrl
 */
export function verifiedRecordUrl(manifestUrl) {
  return manifestUrl + (manifestUrl.includes("?") ? "&" : "?") + RECORD_FORMAT;
}

/** @param {string} url */
const isRecordUrl = (url) => url.endsWith("?" + RECORD_FORMAT) || url.endsWith("&" + RECORD_FORMAT);

/** A fresh, unique id for one cache write. */
function newWriteId() {
  const c = globalThis.crypto;
  if (c?.randomUUID) return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}-${Math.random().toString(36).slice(2)}`;
}

/**
 * The bundle's verified record; empty when missing or unreadable (then every cached file
 * is hashed, as by a version of this package without records). Never rejects.
 * @param {BundleCache} cache @param {string} manifestUrl
 * @returns {Promise<VerifiedRecord>}
 */
async function readRecord(cache, manifestUrl) {
  /** @type {VerifiedRecord} */
  const empty = { files: new Map(), text: null };
  try {
    const res = await cache.match(verifiedRecordUrl(manifestUrl));
    if (!res) return empty;
    const text = await res.text();
    const json = JSON.parse(text);
    if (json?.format !== RECORD_FORMAT || !Array.isArray(json.files)) return { ...empty, text };
    /** @type {Map<string, VerifiedFile>} */
    const files = new Map();
    for (const e of json.files) {
      const ok = typeof e?.path === "string" && typeof e.sha256 === "string" && Number.isSafeInteger(e.size) && typeof e.write === "string" && e.write;
      if (ok) files.set(e.path, { path: e.path, sha256: e.sha256, size: e.size, write: e.write });
    }
    return { files, text };
  } catch {
    return empty;
  }
}

/**
 * Store the record of what this load verified (files of this manifest only), if it changed.
 * Bookkeeping only: a failed write costs the next load a re-hash, so it does not fail this one.
 * @param {BundleCache} cache @param {string} manifestUrl @param {Manifest} manifest
 * @param {Map<string, VerifiedFile>} verified @param {VerifiedRecord} old
 */
async function saveRecord(cache, manifestUrl, manifest, verified, old) {
  const files = manifest.files.flatMap((f) => verified.get(f.path) ?? []);
  const text = JSON.stringify({ format: RECORD_FORMAT, files });
  if (text === old.text) return;
  try {
    await cache.put(verifiedRecordUrl(manifestUrl), new Response(text, { headers: { "content-type": "application/json" } }));
  } catch {
    // ignored: see above
  }
}

/**
 * Cached bytes of `url` if present and intact, with the entry's write id (null for an entry
 * written without one); a corrupted/truncated entry is deleted. The body is hashed unless
 * `vouched` (the record's line for this file) names this sha256, size and the entry's write id.
 * @param {BundleCache} cache @param {string} url @param {BundleFile} f @param {VerifiedFile} [vouched]
 * @returns {Promise<{buf: ArrayBuffer, write: string|null}|null>}
 */
async function readCached(cache, url, f, vouched) {
  const res = await cache.match(url);
  if (!res) return null;
  const write = res.headers.get(WRITE_HEADER) || null;
  let buf = null;
  try {
    buf = await res.arrayBuffer();
  } catch {
    // unreadable entry: treat as corrupted
  }
  if (buf && buf.byteLength === f.size) {
    const trusted = write !== null && vouched?.write === write && vouched.sha256 === f.sha256 && vouched.size === f.size;
    if (trusted || !(await integrityProblem(buf, f))) return { buf, write };
  }
  await cache.delete(url);
  return null;
}

/**
 * Write bytes that just passed sha256 again, now with a write id, and record them: upgrades
 * an entry stored without one (older package version, or by someone else) so later loads
 * need not hash it. Best effort: on failure the entry stays as it was, unrecorded.
 * @param {BundleCache} cache @param {string} url @param {BundleFile} f @param {ArrayBuffer} buf
 * @param {Map<string, VerifiedFile>} verified
 * @returns {Promise<void>}
 */
async function rewriteVerified(cache, url, f, buf, verified) {
  const write = newWriteId();
  try {
    await cache.put(url, new Response(buf, { headers: entryHeaders(buf.byteLength, write) }));
    verified.set(f.path, { path: f.path, sha256: f.sha256, size: f.size, write });
  } catch {
    // ignored: see above
  }
}

/** @param {number} size @param {string} write */
const entryHeaders = (size, write) => ({ "content-type": "application/octet-stream", "content-length": String(size), [WRITE_HEADER]: write });

/**
 * @typedef {object} CacheWrite  a cache entry being written while its body downloads
 * @property {string} write  this write's id (in the entry's header; in the record once verified)
 * @property {(chunk: Uint8Array) => void} push  pass on bytes as they arrive
 * @property {() => void} commit  end the body: only once all of it passed sha256
 * @property {() => boolean} committed  whether commit() ended the body (not a failure, nor the put cancelling it)
 * @property {(reason: unknown) => void} fail  error the body, so that the put stores nothing
 * @property {() => Promise<void>} discard  fail, wait for the put to settle, delete the entry
 * @property {Promise<void>} done  the put (quota refusals as QuotaExceededError)
 */

/**
 * Start `cache.put(url)` with a body that this download feeds chunk by chunk, so the disk
 * write overlaps the download instead of following it. The body stays open until the bytes
 * are verified: Cache.put() stores nothing when its body errors, so Cache Storage never
 * holds an unverified body from here; for backends that might, discard() also deletes the
 * entry, and no entry is ever recorded before its put resolved with verified bytes.
 * @param {BundleCache} cache @param {string} url @param {number} size
 * @param {number} missingBytes for QuotaExceededError
 * @returns {CacheWrite}
 */
function beginCacheWrite(cache, url, size, missingBytes) {
  /** @type {ReadableStreamDefaultController<Uint8Array>|undefined} */
  let body;
  /** @type {"open"|"committed"|"failed"|"cancelled"} */
  let state = "open";
  const stream = new ReadableStream({
    start: (c) => void (body = c),
    cancel: () => void (state = state === "open" ? "cancelled" : state), // the put gave up on the body
  });
  const write = newWriteId();
  const done = putInCache(cache, url, new Response(stream, { headers: entryHeaders(size, write) }), missingBytes);
  done.catch(() => {}); // awaited (or deliberately dropped) by the caller
  /** @param {"committed"|"failed"} to @param {() => void} fn */
  const end = (to, fn) => {
    if (state !== "open") return;
    state = to;
    fn();
  };
  /** @param {unknown} reason */
  const fail = (reason) => end("failed", () => body?.error(reason));
  return {
    write,
    done,
    push: (chunk) => void (state === "open" && body?.enqueue(chunk)),
    commit: () => end("committed", () => body?.close()),
    committed: () => state === "committed",
    fail,
    discard: async () => {
      fail(new Error("body failed verification"));
      await done.catch(() => {});
      await cache.delete(url);
    },
  };
}

/** @typedef {(url: string, size: number) => CacheWrite} Store  starts the cache write of one download attempt */

/**
 * Download `url` (retrying network errors), verify it, refetch once bypassing the
 * HTTP cache on a mismatch, then give up with IntegrityError. With a `store`, each attempt's
 * body also streams into a cache write, committed once verified and discarded otherwise.
 * @param {string} url @param {BundleFile} f @param {import("./net.js").FetchOptions} net
 * @param {ProgressTracker} progress @param {Store|null} [store]
 * @returns {Promise<{buf: ArrayBuffer, entry: CacheWrite|null}>}
 */
async function downloadVerified(url, f, net, progress, store = null) {
  let counted = 0; // bytes of this file already counted toward progress (high-water mark)
  const onBytes = (/** @type {number} */ n) => {
    const d = Math.min(n, f.size) - counted;
    if (d > 0) {
      counted += d;
      progress.add(d, `Fetching ${f.path}`);
    }
  };
  for (let attempt = 0; ; attempt++) {
    const reload = attempt > 0;
    const { buf, entry } = await withRetry(async () => {
      const res = await fetchOnce(url, { ...net, reload });
      const entry = store?.(url, f.size) ?? null;
      try {
        return { buf: await readBody(res, url, f.size, onBytes, net.signal, entry), entry };
      } catch (err) {
        entry?.fail(err); // broken or aborted body: nothing stored, the retry writes afresh
        throw err;
      }
    }, net);
    let problem;
    try {
      problem = buf ? await integrityProblem(buf, f) : `more than ${f.size} bytes received`;
    } catch (err) {
      entry?.fail(err);
      throw err;
    }
    if (!problem) {
      entry?.commit();
      return { buf: /** @type {ArrayBuffer} */ (buf), entry };
    }
    await entry?.discard(); // settled and deleted before the next attempt writes the same URL
    if (attempt >= 1) throw new IntegrityError(f.path, problem, url);
  }
}

/**
 * Read a response body chunk by chunk, reporting bytes read so far and passing each chunk
 * to `sink`. Returns null as soon as the body exceeds `size` (it cannot match). Stream
 * failures become NetworkError.
 * @param {Response} res @param {string} url @param {number} size
 * @param {(n: number) => void} onBytes @param {AbortSignal} [signal]
 * @param {{push: (chunk: Uint8Array) => void}|null} [sink]
 * @returns {Promise<ArrayBuffer|null>}
 */
async function readBody(res, url, size, onBytes, signal, sink) {
  if (!res.body) {
    const b = await res.arrayBuffer();
    onBytes(b.byteLength);
    if (b.byteLength > size) return null;
    sink?.push(new Uint8Array(b.slice(0)));
    return b;
  }
  const reader = res.body.getReader();
  const out = new Uint8Array(size);
  let n = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      signal?.throwIfAborted();
      if (done) break;
      if (n + value.byteLength > size) {
        reader.cancel().catch(() => {});
        return null;
      }
      out.set(value, n);
      n += value.byteLength;
      sink?.push(value);
      onBytes(n);
    }
  } catch (cause) {
    if (signal?.aborted) throw signal.reason;
    reader.cancel().catch(() => {});
    throw new NetworkError(url, `connection broke after ${n} bytes`, { cause });
  }
  return n === size ? out.buffer : out.buffer.slice(0, n);
}

/** @param {BundleCache} cache @param {string} url @param {Response} response @param {number} missingBytes */
async function putInCache(cache, url, response, missingBytes) {
  try {
    await cache.put(url, response);
  } catch (err) {
    if (isQuotaError(err)) throw new QuotaExceededError(missingBytes, null, { cause: err });
    throw err;
  }
}

/** @param {unknown} err */
const isQuotaError = (err) => /** @type {any} */ (err)?.name === "QuotaExceededError";

/** Throw QuotaExceededError now if `neededBytes` will clearly not fit. @param {StorageManager|undefined} storage @param {number} neededBytes */
async function checkQuota(storage, neededBytes) {
  if (!storage?.estimate) return;
  let est;
  try {
    est = await storage.estimate();
  } catch {
    return; // no estimate: find out at put() time
  }
  if (typeof est?.quota !== "number") return;
  const available = Math.max(0, est.quota - (est.usage ?? 0));
  if (neededBytes > available) throw new QuotaExceededError(neededBytes, available);
}

/**
 * Run `fn` over `items` with at most `limit` in flight; stops taking new items once
 * `ctl` is aborted. Rejects with the first error.
 * @template T
 * @param {T[]} items @param {number} limit @param {AbortController} ctl @param {(item: T) => Promise<void>} fn
 */
async function runPool(items, limit, ctl, fn) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      ctl.signal.throwIfAborted();
      await fn(items[next++]);
    }
  };
  const n = Math.max(1, Math.min(limit | 0 || 1, items.length));
  await Promise.all(Array.from({ length: n }, worker));
}

/**
 * Is every file of the bundle in the cache? (Presence only: loadBundle still checks each
 * entry, hashing those the verified record does not vouch for; the record itself is not
 * needed here, nor enough.)
 * @param {string|URL} url @param {{cache?: BundleCache|boolean|string}} [options]
 */
export async function hasModelInCache(url, options = {}) {
  const cache = resolveCache(options.cache ?? true);
  const { baseUrl, manifestUrl } = resolveBundleUrl(url);
  const res = await cache.match(manifestUrl);
  if (!res) return false;
  let manifest;
  try {
    manifest = await readManifestResponse(res, manifestUrl);
  } catch (err) {
    if (err instanceof BundleError) return false;
    throw err;
  }
  for (const f of manifest.files) if (!(await cache.match(fileUrl(baseUrl, f.path)))) return false;
  return true;
}

/**
 * Delete the bundle's manifest, files and verified record from the cache. Shards are
 * content-addressed, so a shard shared with another cached bundle of the same folder is
 * deleted too (that bundle's record then no longer matches it: it is refetched).
 * @param {string|URL} url @param {{cache?: BundleCache|boolean|string}} [options]
 * @returns {Promise<number>} number of entries deleted (files and manifests; records are not counted)
 */
export async function deleteModelFromCache(url, options = {}) {
  const cache = resolveCache(options.cache ?? true);
  const { baseUrl, manifestUrl } = resolveBundleUrl(url);
  const res = await cache.match(manifestUrl);
  let deleted = 0;
  if (res) {
    try {
      const manifest = await readManifestResponse(res, manifestUrl);
      for (const f of manifest.files) deleted += Number(await cache.delete(fileUrl(baseUrl, f.path)));
    } catch (err) {
      if (!(err instanceof BundleError)) throw err;
    }
  }
  // Bundle-layout entries in this folder that the cached manifest does not list (older
  // versions, their records); not entries in subfolders, which may belong to another bundle.
  const record = verifiedRecordUrl(manifestUrl);
  for (const key of await cache.keys()) {
    const rel = key.startsWith(baseUrl) ? key.slice(baseUrl.length) : null;
    if (!rel || key === manifestUrl || key === record || !/^((params|kernels)\/)?[^/]+$/.test(rel)) continue;
    const gone = await cache.delete(key);
    if (!isRecordUrl(key)) deleted += Number(gone);
  }
  // (A record left behind would be harmless: it only vouches for the write ids of entries
  // that are gone; a refetched file gets a new one.)
  await cache.delete(record);
  deleted += Number(await cache.delete(manifestUrl));
  return deleted;
}
