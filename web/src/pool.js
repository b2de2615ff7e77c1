// Bounded-concurrency loop shared by the loader's cache reads and downloads.

/**
 * Run `fn` over `items` with at most `limit` in flight; stops taking new items once
 * `signal` is aborted. Rejects with the first error.
 * @template T
 * @param {T[]} items @param {number} limit @param {AbortSignal} signal @param {(item: T) => Promise<void>} fn
 * @returns {Promise<void>}
 */
export async function runPool(items, limit, signal, fn) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      signal.throwIfAborted();
      await fn(items[next++]);
    }
  };
  const n = Math.max(1, Math.min(limit | 0 || 1, items.length));
  await Promise.all(Array.from({ length: n }, worker));
}
