// Locate, fetch, parse and validate a bundle's manifest.json (docs/bundle-format.md).
import { BundleError, BundleVersionError } from "./errors.js";
import { ManifestProblem, validateManifest } from "./manifest_validate.js";
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
 * Validate a parsed manifest object: format, major version, then the manifest against itself
 * (manifest_validate.js); throws BundleError / BundleVersionError naming the field.
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

  try {
    validateManifest(m);
  } catch (err) {
    if (err instanceof ManifestProblem) throw new BundleError(err.message, url ?? "manifest.json");
    throw err;
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
