// Cached bundle files, each sha256-verified before it is used, on every load.
//
// Bytes at rest can change under an entry (disk corruption, another writer of the same URL,
// a browser bug, an extension), and nothing the cache reports tells that apart from an intact
// entry, so no entry is trusted without hashing it. SubtleCrypto hashes a whole file (its
// digest is not incremental) off the main thread; an incremental pure-JS sha256 while the body
// streams would run on the main thread at a fraction of its speed. With 4 read slots the reads
// and hashes of different files overlap already: handing the hash off and reading on
// (measured, bench/load_bench.py) was no faster than reading then hashing in the slot.
import { integrityProblem } from "./hash.js";
import { fileUrl } from "./manifest.js";
import { runPool } from "./pool.js";

/**
 * @typedef {import("./manifest.js").BundleFile} BundleFile
 * @typedef {import("./cache.js").BundleCache} BundleCache
 * @typedef {object} CachedRead
 * @property {Map<string, ArrayBuffer>} got  path → verified bytes
 * @property {BundleFile[]} missing  files not in the cache or whose entry failed (deleted), in manifest order
 */

/**
 * Read `files` from the cache, `readers` at a time, verifying each one's size and sha256.
 * An entry that is unreadable, of the wrong size or of the wrong sha256 is deleted and
 * reported missing (the caller downloads it, as on a cold load); `onVerified` is called for
 * each file once its bytes passed.
 * @param {BundleCache} cache @param {string} baseUrl @param {BundleFile[]} files
 * @param {{readers: number, signal: AbortSignal, onVerified: (f: BundleFile, buf: ArrayBuffer) => void}} options
 * @returns {Promise<CachedRead>}
 */
export async function readCachedVerified(cache, baseUrl, files, { readers, signal, onVerified }) {
  /** @type {Map<string, ArrayBuffer>} */
  const got = new Map();
  await runPool(files, readers, signal, async (f) => {
    const url = fileUrl(baseUrl, f.path);
    const res = await cache.match(url);
    if (!res) return;
    const buf = await res.arrayBuffer().catch(() => null); // unreadable: as corrupted
    if (buf && !(await integrityProblem(buf, f))) {
      signal.throwIfAborted();
      got.set(f.path, buf);
      onVerified(f, buf);
    } else {
      await cache.delete(url);
    }
  });
  return { got, missing: files.filter((f) => !got.has(f.path)) };
}
