// loadBundle: manifest → cached files (each sha256-verified, see cache_read.js) → quota
// check → bounded-concurrency streamed downloads (download.js), each written to the cache as
// it arrives but committed and returned only once sha256-verified. No byte reaches the caller
// unverified, on a cold or a warm load.
import { NoCache, resolveCache } from "./cache.js";
import { readCachedVerified } from "./cache_read.js";
import { beginCacheWrite, downloadVerified, isQuotaError } from "./download.js";
import { BundleError, NetworkError, QuotaExceededError } from "./errors.js";
import { fileUrl, readManifestResponse, resolveBundleUrl } from "./manifest.js";
import { fetchOnce, withRetry } from "./net.js";
import { runPool } from "./pool.js";
import { ProgressTracker } from "./progress.js";

/**
 * @typedef {import("./manifest.js").Manifest} Manifest
 * @typedef {import("./manifest.js").BundleFile} BundleFile
 * @typedef {import("./cache.js").BundleCache} BundleCache
 * @typedef {import("./progress.js").ProgressReport} ProgressReport
 * @typedef {import("./download.js").Store} Store
 * @typedef {object} LoadOptions
 * @property {BundleCache|boolean|string} [cache] false: no cache; a string: Cache Storage scope; an object: custom backend
 * @property {AbortSignal} [signal]
 * @property {number} [concurrency] parallel downloads and cache reads (default 4)
 * @property {(report: ProgressReport) => void} [onProgress]
 * @property {boolean} [persist] ask for persistent storage (navigator.storage.persist())
 * @property {typeof fetch} [fetch]
 * @property {number} [retries] network retries per request (default 3)
 * @property {number} [retryDelayMs] first backoff delay (default 500, doubling)
 * @property {StorageManager} [storage] defaults to navigator.storage
 * @property {boolean} [verifyCache] deprecated, ignored: every cached file is verified on every load
 * @property {(manifest: Manifest) => void} [onManifest] the validated manifest, before any other file is read
 * @property {(file: BundleFile, buf: ArrayBuffer) => void} [onFile] each file once verified (kernels first, then
 *   weight shards, then the rest), so that a runtime can compile and upload while the others load (runtime_load.js)
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
    const manifest = await loadManifest(loc.manifestUrl, cache, net);
    const totalBytes = manifest.files.reduce((s, f) => s + f.size, 0);
    const progress = new ProgressTracker(totalBytes, onProgress);
    const stats = { cachedFiles: 0, fetchedFiles: 0, fetchedBytes: 0 };
    options.onManifest?.(manifest);

    const { got, missing } = await readCachedVerified(cache, loc.baseUrl, [...manifest.files].sort(byUse), {
      readers: concurrency,
      signal: ctl.signal,
      onVerified: (f, buf) => {
        stats.cachedFiles++;
        progress.add(f.size, `Loaded ${f.path} from cache`);
        options.onFile?.(f, buf);
      },
    });

    const missingBytes = missing.reduce((s, f) => s + f.size, 0);
    if (missing.length && cache.persistent) await checkQuota(storage, missingBytes);
    const persisted = persist && storage?.persist ? await storage.persist() : null;

    // Each download is written to the cache while it arrives, not after it (measured with
    // buffered puts after download + sha256: ~0.24 s of Cache Storage writes, mostly after
    // the downloads, in a 0.65 s cold load of a 94 MiB bundle); its put finishes while the
    // slot fetches the next file, and every write is awaited before the load reports
    // success. No cache, no writes (and no second copy of the bytes in flight).
    /** @type {Promise<void>[]} */
    const puts = [];
    /** @type {Store|null} */
    const store = cache instanceof NoCache ? null : (u, size) => {
      const entry = beginCacheWrite(cache, u, size, missingBytes);
      // A refused write stops the other downloads now, not when this file has arrived.
      entry.done.catch((err) => err instanceof QuotaExceededError && ctl.abort(err));
      return entry;
    };
    await runPool(missing, concurrency, ctl.signal, async (f) => {
      const { buf, entry } = await downloadVerified(fileUrl(loc.baseUrl, f.path), f, net, progress, store);
      if (entry) {
        entry.done.catch((err) => ctl.abort(err)); // a failed write stops the downloads; rethrown below
        puts.push(entry.done);
      }
      got.set(f.path, buf);
      stats.fetchedFiles++;
      stats.fetchedBytes += f.size;
      options.onFile?.(f, buf);
    });
    await Promise.all(puts);
    // An older version's "verified record" (it let warm loads skip hashing) is not used any more.
    if (!(cache instanceof NoCache)) await cache.delete(legacyRecordUrl(loc.manifestUrl)).catch(() => {});

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
 * The manifest from the network (stored in the cache for offline use, once it validated);
 * the cached copy when the network fails.
 * @param {string} manifestUrl @param {BundleCache} cache @param {import("./net.js").FetchOptions} net
 * @returns {Promise<Manifest>}
 */
async function loadManifest(manifestUrl, cache, net) {
  let text;
  try {
    text = await withRetry(async () => {
      const res = await fetchOnce(manifestUrl, net);
      try {
        return await res.text();
      } catch (cause) {
        // A body that breaks is a network failure like any other: retried, then the cached copy.
        if (net.signal?.aborted) throw net.signal.reason;
        throw new NetworkError(manifestUrl, "connection broke while reading the body", { cause });
      }
    }, net);
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

/** Kernels (small; compiling them is the longest GPU step) first, then weight shards, then the rest. */
const USE_ORDER = ["kernels/", "params/"];
/** @param {BundleFile} f */
const useRank = (f) => {
  const i = USE_ORDER.findIndex((p) => f.path.startsWith(p));
  return i < 0 ? USE_ORDER.length : i;
};
/** @param {BundleFile} a @param {BundleFile} b */
const byUse = (a, b) => useRank(a) - useRank(b);

/** The query that marked an older version's verified record (one cache entry per manifest). */
const LEGACY_RECORD = "webllm-py-verified";
/** @param {string} manifestUrl */
const legacyRecordUrl = (manifestUrl) => manifestUrl + (manifestUrl.includes("?") ? "&" : "?") + LEGACY_RECORD;
/** @param {string} url */
const isLegacyRecord = (url) => url.endsWith("?" + LEGACY_RECORD) || url.endsWith("&" + LEGACY_RECORD);

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
 * Is every file of the bundle in the cache? (Presence only: loadBundle still verifies each entry.)
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
 * Delete the bundle's manifest and files from the cache. Shards are content-addressed, so a
 * shard shared with another cached bundle of the same folder is deleted too (that bundle
 * then refetches it).
 * @param {string|URL} url @param {{cache?: BundleCache|boolean|string}} [options]
 * @returns {Promise<number>} number of entries deleted (files and manifests; an older version's records are not counted)
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
  for (const key of await cache.keys()) {
    const rel = key.startsWith(baseUrl) ? key.slice(baseUrl.length) : null;
    if (!rel || key === manifestUrl || !/^((params|kernels)\/)?[^/]+$/.test(rel)) continue;
    const gone = await cache.delete(key);
    if (!isLegacyRecord(key)) deleted += Number(gone);
  }
  deleted += Number(await cache.delete(manifestUrl));
  return deleted;
}
