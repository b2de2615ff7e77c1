// Bundle file caches, shaped like the Web Cache API (match / put / delete / keys)
// so that backends can be swapped: Cache Storage (default in browsers), none, or
// anything else (IndexedDB, OPFS) passed in as an object with these four methods.

/**
 * @typedef {object} BundleCache
 * @property {(url: string) => Promise<Response|undefined>} match  the stored body (the loader
 *   hashes it before every use, so a backend need not guard against bit rot)
 * @property {(url: string, response: Response) => Promise<void>} put  a download comes as a
 *   streaming body that ends only once verified: store nothing when the body errors
 * @property {(url: string) => Promise<boolean>} delete
 * @property {() => Promise<string[]>} keys  absolute URLs of the entries
 * @property {boolean} [persistent]  true when entries use browser storage quota
 */

export const DEFAULT_CACHE_SCOPE = "webllm-py/bundles";

/** Browser Cache Storage (`caches.open(scope)`), opened lazily. @implements {BundleCache} */
export class CacheStorageCache {
  /** @param {string} [scope] @param {CacheStorage} [storage] */
  constructor(scope = DEFAULT_CACHE_SCOPE, storage = globalThis.caches) {
    if (!storage) throw new Error("Cache Storage is not available here (needs a secure context); use { cache: false }");
    this.scope = scope;
    this.storage = storage;
    this.persistent = true;
    /** @type {Promise<Cache>|null} */
    this._cache = null;
  }
  /** @returns {Promise<Cache>} */
  open() {
    return (this._cache ??= this.storage.open(this.scope));
  }
  /** @param {string} url */
  async match(url) {
    return (await this.open()).match(url);
  }
  /** @param {string} url @param {Response} response */
  async put(url, response) {
    await (await this.open()).put(url, response);
  }
  /** @param {string} url */
  async delete(url) {
    return (await this.open()).delete(url);
  }
  async keys() {
    return (await (await this.open()).keys()).map((req) => req.url);
  }
}

/** Caches nothing: every load downloads everything. @implements {BundleCache} */
export class NoCache {
  persistent = false;
  /** @param {string} _url @returns {Promise<Response|undefined>} */
  async match(_url) {
    return undefined;
  }
  /** @param {string} _url @param {Response} _response */
  async put(_url, _response) {}
  /** @param {string} _url */
  async delete(_url) {
    return false;
  }
  /** @returns {Promise<string[]>} */
  async keys() {
    return [];
  }
}

/** In-memory cache (tests, Node, or one page session). Stores bytes, hands out fresh Responses. @implements {BundleCache} */
export class MemoryCache {
  persistent = false;
  /** @type {Map<string, {body: ArrayBuffer, headers: [string, string][]}>} */
  entries = new Map();
  /** @param {string} url */
  async match(url) {
    const e = this.entries.get(url);
    return e && new Response(e.body.slice(0), { headers: e.headers });
  }
  /** @param {string} url @param {Response} response */
  async put(url, response) {
    this.entries.set(url, { body: await response.arrayBuffer(), headers: [...response.headers] });
  }
  /** @param {string} url */
  async delete(url) {
    return this.entries.delete(url);
  }
  async keys() {
    return [...this.entries.keys()];
  }
}

/**
 * Pick a cache from the `cache` option: a BundleCache object is used as is;
 * `false` → NoCache; `true`/undefined → Cache Storage when available, else NoCache;
 * a string → Cache Storage under that scope name.
 * @param {BundleCache|boolean|string|undefined} option
 * @returns {BundleCache}
 */
export function resolveCache(option) {
  if (option && typeof option === "object") return option;
  if (option === false) return new NoCache();
  if (!globalThis.caches) return new NoCache();
  return new CacheStorageCache(typeof option === "string" ? option : DEFAULT_CACHE_SCOPE);
}
