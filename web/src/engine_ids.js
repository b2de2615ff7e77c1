// Ids and timestamps of the OpenAI response objects (engine_chat.js, engine_completions.js).

/** A random response id: prefix, "-", 24 hex digits. @param {string} prefix */
export function newId(prefix) {
  const b = new Uint8Array(12);
  globalThis.crypto.getRandomValues(b);
  return `${prefix}-${Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("")}`;
}
/** Unix time in seconds. */
export const now = () => Math.floor(Date.now() / 1000);
