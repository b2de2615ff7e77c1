// File references inside a manifest: relative, "/"-separated, inside the bundle, and listed (as
// webllm_py/bundle/paths.py), plus what only a browser resolving them as URLs needs refused.
import { fail, show, want } from "./manifest_fields.js";

const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/; // "C:", "http:": not a path inside the bundle
/** The browser would read these as URL syntax. */
const PATH_CHARS = /** @type {Record<string, string>} */ ({ "\\": "a backslash", "?": "a '?'", "#": "a '#'" });

/**
 * A file reference: relative, "/"-separated, inside the bundle (no "..", no ".", no empty part).
 * @param {unknown} v @param {string} where @returns {string}
 */
export function checkPath(v, where) {
  const p = /** @type {string} */ (want(v, "str", where));
  if (!p) fail(where, "empty path");
  if (p.startsWith("/") || SCHEME.test(p)) fail(where, `${show(p)} is an absolute path; file references are relative to the bundle folder`);
  for (const [ch, name] of Object.entries(PATH_CHARS)) {
    if (p.includes(ch)) fail(where, `${show(p)} contains ${name}; paths use '/' and plain names`);
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f]/.test(p)) fail(where, `${show(p)} contains a control character`);
  // JS only: URL parsing turns "%2e" into "." (so "%2e%2e" is ".."), and servers decode "%2f"/"%5c"
  if (/%(2e|2f|5c)/i.test(p)) fail(where, `${show(p)} contains a percent-encoded '.', '/' or '\\' (a URL would decode it)`);
  const parts = p.split("/");
  if (parts.includes("..")) fail(where, `${show(p)} contains '..'; file references must stay inside the bundle folder`);
  if (parts.some((s) => s === "" || s === ".")) fail(where, `${show(p)} is not a plain relative path (empty or '.' component)`);
  return p;
}

/**
 * A path that is also in `files` (so its bytes are size- and sha256-checked).
 * @param {Map<string, number>} files path → size @param {unknown} v @param {string} where @returns {string}
 */
export function listed(files, v, where) {
  const p = checkPath(v, where);
  if (!files.has(p)) fail(where, `${show(p)} is not listed in files (every file a bundle reads is hashed there)`);
  return p;
}
