// fetch with bounded exponential-backoff retries; abort-aware.
import { NetworkError } from "./errors.js";

/**
 * @typedef {{fetch?: typeof fetch, signal?: AbortSignal, retries?: number, retryDelayMs?: number,
 *            reload?: boolean}} FetchOptions
 */

/** Sleep `ms`, rejecting with the signal's reason if it aborts first. @param {number} ms @param {AbortSignal} [signal] */
export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(undefined);
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** HTTP statuses worth retrying: server errors, throttling, timeouts. @param {number} status */
export const isRetryableStatus = (status) => status >= 500 || status === 429 || status === 408;

/**
 * Run `attempt` and retry it on NetworkError (retryable ones) with delays
 * retryDelayMs·2^k, k < retries. Aborts are never retried.
 * @template T
 * @param {(k: number) => Promise<T>} attempt
 * @param {FetchOptions} options
 * @returns {Promise<T>}
 */
export async function withRetry(attempt, { signal, retries = 3, retryDelayMs = 500 } = {}) {
  for (let k = 0; ; k++) {
    signal?.throwIfAborted();
    try {
      return await attempt(k);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      const retryable = err instanceof NetworkError && (err.status == null || isRetryableStatus(err.status));
      if (!retryable || k >= retries) throw err;
      await sleep(retryDelayMs * 2 ** k, signal);
    }
  }
}

/**
 * One fetch; turns failures into NetworkError (status set for HTTP errors).
 * @param {string} url
 * @param {FetchOptions} options
 * @returns {Promise<Response>}
 */
export async function fetchOnce(url, { fetch: fetchFn = globalThis.fetch, signal, reload = false } = {}) {
  if (!fetchFn) throw new NetworkError(url, "no fetch() in this environment; pass options.fetch");
  let res;
  try {
    /** @type {RequestInit} */
    const init = { signal };
    // After an integrity failure, bypass the HTTP cache so a bad cached copy is not served again.
    if (reload) init.cache = "reload";
    res = await fetchFn(url, init);
  } catch (cause) {
    if (signal?.aborted) throw signal.reason;
    throw new NetworkError(url, String(/** @type {any} */ (cause)?.message ?? cause), { cause });
  }
  if (!res.ok) {
    throw new NetworkError(url, `HTTP ${res.status} ${res.statusText}`.trim(), { status: res.status });
  }
  return res;
}

/** fetchOnce with retries. @param {string} url @param {FetchOptions} [options] */
export function fetchWithRetry(url, options = {}) {
  return withRetry(() => fetchOnce(url, options), options);
}
