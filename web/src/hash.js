// sha256 of a buffer as lowercase hex, via SubtleCrypto (secure contexts and Node >= 20).
import { WebLLMError } from "./errors.js";

/** @param {BufferSource} data @returns {Promise<string>} */
export async function sha256Hex(data) {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) {
    throw new WebLLMError("crypto.subtle is unavailable: serve the page over https:// or http://localhost");
  }
  const digest = new Uint8Array(await subtle.digest("SHA-256", data));
  let hex = "";
  for (const b of digest) hex += b.toString(16).padStart(2, "0");
  return hex;
}

/**
 * Check a buffer against a manifest file record; returns a description of the
 * mismatch, or null when size and sha256 both match.
 * @param {ArrayBuffer} buf
 * @param {{size: number, sha256: string}} file
 * @returns {Promise<string|null>}
 */
export async function integrityProblem(buf, file) {
  if (buf.byteLength !== file.size) return `size ${buf.byteLength} bytes, manifest says ${file.size}`;
  const got = await sha256Hex(buf);
  return got === file.sha256 ? null : `sha256 ${got.slice(0, 16)}…, manifest says ${file.sha256.slice(0, 16)}…`;
}
