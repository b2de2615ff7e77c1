// One bundle file from the network: streamed into a preallocated buffer (and, with a cache,
// into a cache write as it arrives), sha256-verified, refetched once bypassing the HTTP cache
// on a mismatch, then IntegrityError. A cache write is committed only once its bytes passed.
import { BundleError, IntegrityError, NetworkError, QuotaExceededError } from "./errors.js";
import { integrityProblem } from "./hash.js";
import { fetchOnce, withRetry } from "./net.js";

/**
 * @typedef {import("./manifest.js").BundleFile} BundleFile
 * @typedef {import("./cache.js").BundleCache} BundleCache
 * @typedef {import("./progress.js").ProgressTracker} ProgressTracker
 * @typedef {object} CacheWrite  a cache entry being written while its body downloads
 * @property {(chunk: Uint8Array) => void} push  pass on bytes as they arrive
 * @property {() => void} commit  end the body: only once all of it passed sha256
 * @property {(reason: unknown) => void} fail  error the body, so that the put stores nothing
 * @property {() => Promise<void>} discard  fail, wait for the put to settle, delete the entry
 * @property {Promise<void>} done  the put (quota refusals as QuotaExceededError)
 * @typedef {(url: string, size: number) => CacheWrite} Store  starts the cache write of one download attempt
 */

/** @param {unknown} err */
export const isQuotaError = (err) => /** @type {any} */ (err)?.name === "QuotaExceededError";

/**
 * Start `cache.put(url)` with a body that this download feeds chunk by chunk, so the disk
 * write overlaps the download instead of following it. The body stays open until the bytes
 * are verified: Cache.put() stores nothing when its body errors, so Cache Storage never
 * holds an unverified body from here; for backends that might, discard() also deletes the
 * entry (and every later load hashes each cached entry before using it anyway).
 * @param {BundleCache} cache @param {string} url @param {number} size
 * @param {number} missingBytes for QuotaExceededError
 * @returns {CacheWrite}
 */
export function beginCacheWrite(cache, url, size, missingBytes) {
  /** @type {ReadableStreamDefaultController<Uint8Array>|undefined} */
  let body;
  let open = true;
  const stream = new ReadableStream({
    start: (c) => void (body = c),
    cancel: () => void (open = false), // the put gave up on the body
  });
  const headers = { "content-type": "application/octet-stream", "content-length": String(size) };
  const done = putInCache(cache, url, new Response(stream, { headers }), missingBytes);
  done.catch(() => {}); // awaited (or deliberately dropped) by the caller
  /** @param {() => void} fn */
  const end = (fn) => {
    if (!open) return;
    open = false;
    fn();
  };
  /** @param {unknown} reason */
  const fail = (reason) => end(() => body?.error(reason));
  return {
    done,
    push: (chunk) => void (open && body?.enqueue(chunk)),
    commit: () => end(() => body?.close()),
    fail,
    discard: async () => {
      fail(new Error("body failed verification"));
      await done.catch(() => {});
      await cache.delete(url);
    },
  };
}

/**
 * Download `url` (retrying network errors), verify it, refetch once bypassing the
 * HTTP cache on a mismatch, then give up with IntegrityError. With a `store`, each attempt's
 * body also streams into a cache write, committed once verified and discarded otherwise.
 * @param {string} url @param {BundleFile} f @param {import("./net.js").FetchOptions} net
 * @param {ProgressTracker} progress @param {Store|null} [store]
 * @returns {Promise<{buf: ArrayBuffer, entry: CacheWrite|null}>}
 */
export async function downloadVerified(url, f, net, progress, store = null) {
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
  let out;
  try {
    out = new Uint8Array(size); // zero pages: only what arrives is touched
  } catch (cause) {
    // A size past the engine's typed-array limit (a bad manifest, or a file too big for a browser)
    res.body.cancel().catch(() => {});
    throw new BundleError(`the manifest lists this file at ${size} bytes, more than this browser can hold in memory`, url, { cause });
  }
  const reader = res.body.getReader();
  let n = 0;
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (cause) {
      if (signal?.aborted) throw signal.reason;
      reader.cancel().catch(() => {});
      throw new NetworkError(url, `connection broke after ${n} bytes`, { cause });
    }
    if (signal?.aborted) {
      reader.cancel().catch(() => {});
      throw signal.reason;
    }
    const { done, value } = chunk;
    if (done) break;
    if (n + value.byteLength > size) {
      reader.cancel().catch(() => {});
      return null;
    }
    out.set(value, n);
    n += value.byteLength;
    sink?.push(value);
    // Outside the read's try: a throwing progress callback is the caller's error, not the network's.
    try {
      onBytes(n);
    } catch (err) {
      reader.cancel().catch(() => {});
      throw err;
    }
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
