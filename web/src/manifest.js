// Locate, fetch, parse and validate a bundle's manifest.json (docs/bundle-format.md).
import { BundleError, BundleVersionError } from "./errors.js";
import { fetchWithRetry } from "./net.js";

export const BUNDLE_FORMAT = "webllm-py-bundle";
export const KNOWN_MAJOR = 1;

/**
 * @typedef {{path: string, size: number, sha256: string}} BundleFile
 * @typedef {{file: string, config_file?: string, bos_token_id?: number|null,
 *            eos_token_ids?: number[], add_bos_token?: boolean}} TokenizerInfo
 * @typedef {{format: string, format_version: string, model: {id: string, architecture: string, config: object},
 *            context_window: number, prefill_chunk?: number, quantization?: object, tokenizer: TokenizerInfo,
 *            generation?: {temperature?: number, top_p?: number, eos_token_ids?: number[]},
 *            graphs?: object, weights?: Record<string, object>, files: BundleFile[]}} Manifest
 * @typedef {{baseUrl: string, manifestUrl: string}} BundleLocation
 */

/**
 * Resolve a bundle URL: a folder URL (with or without trailing slash) or the URL of
 * manifest.json itself. Relative URLs resolve against the page (`location.href`).
 * @param {string|URL} url
 * @param {string} [base]
 * @returns {BundleLocation}
 */
export function resolveBundleUrl(url, base = globalThis.location?.href) {
  let u;
  try {
    u = new URL(String(url), base);
  } catch (cause) {
    throw new BundleError(`not a valid bundle URL (use an absolute URL outside a page)`, String(url), { cause });
  }
  u.hash = "";
  if (/\.json$/i.test(u.pathname)) {
    const manifestUrl = u.href;
    u.search = "";
    u.pathname = u.pathname.replace(/[^/]*$/, "");
    return { baseUrl: u.href, manifestUrl };
  }
  u.search = "";
  if (!u.pathname.endsWith("/")) u.pathname += "/";
  return { baseUrl: u.href, manifestUrl: new URL("manifest.json", u).href };
}

/** Absolute URL of a bundle-relative file path. @param {string} baseUrl @param {string} path */
export function fileUrl(baseUrl, path) {
  return new URL(path, baseUrl).href;
}

/**
 * Validate a parsed manifest object; throws BundleError / BundleVersionError.
 * @param {any} m
 * @param {string|null} [url] for error messages
 * @returns {Manifest}
 */
export function parseManifest(m, url = null) {
  if (!m || typeof m !== "object" || Array.isArray(m)) throw new BundleError("manifest is not a JSON object", url);
  if (m.format !== BUNDLE_FORMAT) {
    throw new BundleError(`not a webllm-py bundle manifest (format=${JSON.stringify(m.format)})`, url);
  }
  const version = String(m.format_version ?? "");
  const major = /^\d+(\.\d+)*$/.test(version) ? Number(version.split(".")[0]) : NaN;
  if (Number.isNaN(major)) throw new BundleError(`bad format_version ${JSON.stringify(m.format_version)}`, url);
  if (major !== KNOWN_MAJOR) throw new BundleVersionError(version, KNOWN_MAJOR, url);

  if (!Array.isArray(m.files)) throw new BundleError("manifest has no `files` list", url);
  const seen = new Set();
  for (const [i, f] of m.files.entries()) {
    const where = `files[${i}]`;
    if (!f || typeof f.path !== "string" || !f.path) throw new BundleError(`${where} has no path`, url);
    if (f.path.startsWith("/") || f.path.split("/").includes("..") || /^[a-z][a-z0-9+.-]*:/i.test(f.path)) {
      throw new BundleError(`${where}.path ${JSON.stringify(f.path)} must be relative to the bundle folder`, url);
    }
    if (!Number.isSafeInteger(f.size) || f.size < 0) throw new BundleError(`${where} (${f.path}) has a bad size`, url);
    if (typeof f.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(f.sha256)) {
      throw new BundleError(`${where} (${f.path}) has a bad sha256 (want 64 lowercase hex digits)`, url);
    }
    if (seen.has(f.path)) throw new BundleError(`${where}: duplicate path ${f.path}`, url);
    seen.add(f.path);
  }
  if (!m.tokenizer || typeof m.tokenizer.file !== "string") throw new BundleError("manifest has no tokenizer.file", url);
  for (const p of [m.tokenizer.file, m.tokenizer.config_file]) {
    if (p != null && !seen.has(p)) throw new BundleError(`tokenizer file ${p} is not listed in files`, url);
  }
  if (m.context_window != null && !(Number.isSafeInteger(m.context_window) && m.context_window > 0)) {
    throw new BundleError("context_window must be a positive integer", url);
  }
  return /** @type {Manifest} */ (m);
}

/**
 * Fetch and validate manifest.json (no cache involved; see loader.js for the cached path).
 * @param {string|URL} url bundle folder or manifest.json URL
 * @param {{fetch?: typeof fetch, signal?: AbortSignal, retries?: number, retryDelayMs?: number}} [options]
 * @returns {Promise<BundleLocation & {manifest: Manifest}>}
 */
export async function fetchManifest(url, options = {}) {
  const loc = resolveBundleUrl(url);
  const res = await fetchWithRetry(loc.manifestUrl, options);
  return { ...loc, manifest: await readManifestResponse(res, loc.manifestUrl) };
}

/** @param {Response} res @param {string} url @returns {Promise<Manifest>} */
export async function readManifestResponse(res, url) {
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new BundleError("manifest.json is not valid JSON (is this URL a bundle folder?)", url, { cause });
  }
  return parseManifest(json, url);
}
