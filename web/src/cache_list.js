// listCachedModels: the bundles in a cache and their sizes, beside hasModelInCache and
// deleteModelFromCache (loader.js), so that a page can show what is stored and free space.
//
// A bundle is found by its cached manifest.json (the loader stores it on every load); its size is
// the sum of the manifest's sizes of its files that are in the cache (presence only: every entry
// is still sha256-verified when it is loaded). Two bundles of one folder may share shards (they
// are content-addressed): each one counts them.
import { resolveCache } from "./cache.js";
import { BundleError } from "./errors.js";
import { fileUrl, readManifestResponse } from "./manifest.js";

/**
 * @typedef {object} CachedModel
 * @property {string} url the bundle folder (what CreateEngine, hasModelInCache and deleteModelFromCache take)
 * @property {string|null} modelId manifest model.id (null when the cached manifest is unreadable)
 * @property {number} files files the manifest lists
 * @property {number} cachedFiles of which are in the cache
 * @property {number} bytes bytes of those files (manifest sizes), the manifest itself included
 * @property {number} totalBytes bytes of the whole bundle
 * @property {boolean} complete every file is cached (hasModelInCache is true)
 * @property {string|null} error why the cached manifest could not be read (then delete it)
 */

/**
 * Every bundle whose manifest is in the cache, sorted by url.
 * @param {{cache?: import("./cache.js").BundleCache|boolean|string}} [options] as hasModelInCache's
 * @returns {Promise<CachedModel[]>}
 */
export async function listCachedModels(options = {}) {
  const cache = resolveCache(options.cache ?? true);
  const keys = await cache.keys();
  const present = new Set(keys);
  /** @type {CachedModel[]} */
  const out = [];
  for (const manifestUrl of keys.filter((k) => new URL(k).pathname.endsWith("/manifest.json")).sort()) {
    const url = manifestUrl.slice(0, -"manifest.json".length);
    const res = await cache.match(manifestUrl);
    if (!res) continue; // deleted meanwhile
    const text = await res.text();
    let manifest;
    try {
      manifest = await readManifestResponse(new Response(text), manifestUrl);
    } catch (err) {
      if (!(err instanceof BundleError)) throw err;
      out.push({ url, modelId: null, files: 0, cachedFiles: 0, bytes: new TextEncoder().encode(text).length, totalBytes: 0, complete: false, error: err.message });
      continue;
    }
    const own = new TextEncoder().encode(text).length;
    const cached = manifest.files.filter((f) => present.has(fileUrl(url, f.path)));
    const size = (/** @type {{size: number}[]} */ fs) => fs.reduce((s, f) => s + f.size, 0);
    out.push({
      url, modelId: manifest.model?.id ?? null, files: manifest.files.length, cachedFiles: cached.length,
      bytes: own + size(cached), totalBytes: own + size(manifest.files),
      complete: cached.length === manifest.files.length, error: null,
    });
  }
  return out;
}
