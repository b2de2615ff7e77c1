// Fakes for loader tests: an in-memory bundle served by a scriptable fetch.
import { createHash } from "node:crypto";

export const BASE = "https://cdn.example/bundles/tiny/";

/** A bundle with `n` shards of the given sizes plus tokenizer files. */
export function makeBundle(sizes = [3000, 70000, 1, 12345, 0]) {
  /** @type {Map<string, Uint8Array>} */
  const bodies = new Map();
  const add = (/** @type {string} */ path, /** @type {Uint8Array} */ bytes) => bodies.set(path, bytes);
  add("tokenizer.json", new TextEncoder().encode('{"model":{}}'));
  add("tokenizer_config.json", new TextEncoder().encode("{}"));
  sizes.forEach((size, i) => {
    const b = new Uint8Array(size);
    for (let k = 0; k < size; k++) b[k] = (k * 31 + i * 7) & 255;
    add(`params/shard${i}.bin`, b);
  });
  const files = [...bodies].map(([path, b]) => ({
    path, size: b.byteLength, sha256: createHash("sha256").update(b).digest("hex"),
  }));
  const manifest = {
    format: "webllm-py-bundle", format_version: "1.0",
    model: { id: "tiny", architecture: "llama", config: { vocab_size: 16 } }, context_window: 64, prefill_chunk: 16,
    tokenizer: { file: "tokenizer.json", config_file: "tokenizer_config.json", eos_token_ids: [2] },
    // no weights nor programs: the loader only moves files (the shards' bytes stand for weights)
    weights: {}, graphs: { logits_all: { params: {}, state: {} }, logits_last: { params: {}, state: {} } },
    files,
  };
  bodies.set("manifest.json", new TextEncoder().encode(JSON.stringify(manifest)));
  return { manifest, bodies, totalBytes: files.reduce((s, f) => s + f.size, 0) };
}

/**
 * fetch() over `bodies`. `script[path]` is a list of per-call behaviours consumed in
 * order: "neterr" (throw TypeError), "500", "404", "truncate", "corrupt", "hang" (never ends
 * until aborted), "ok". Bodies stream in `chunk`-byte pieces.
 */
export function fakeFetch(bodies, script = {}, { chunk = 4096 } = {}) {
  const calls = [];
  let inFlight = 0;
  const stats = { maxInFlight: 0 };
  /** @param {string} url @param {RequestInit} [init] */
  async function fetch(url, init = {}) {
    const path = url.slice(BASE.length);
    calls.push({ path, cache: init.cache });
    const how = script[path]?.shift() ?? "ok";
    init.signal?.throwIfAborted();
    if (how === "neterr") throw new TypeError("Failed to fetch");
    if (how === "500") return new Response("oops", { status: 500, statusText: "Internal Server Error" });
    const body = bodies.get(path);
    if (!body || how === "404") return new Response("not found", { status: 404, statusText: "Not Found" });
    let bytes = body;
    if (how === "truncate") bytes = body.slice(0, Math.floor(body.length / 2));
    if (how === "corrupt") (bytes = body.slice()), bytes.length && (bytes[0] ^= 1);
    let pos = 0;
    inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, inFlight);
    const stream = new ReadableStream({
      async pull(ctl) {
        await new Promise((r) => setTimeout(r, 0));
        if (how === "hang") {
          await new Promise((_, rej) => init.signal?.addEventListener("abort", () => rej(init.signal?.reason)));
        }
        if (pos >= bytes.length) {
          inFlight--;
          ctl.close();
          return;
        }
        ctl.enqueue(bytes.slice(pos, pos + chunk));
        pos += chunk;
      },
      cancel() {
        inFlight--;
      },
    });
    return new Response(stream, { status: 200 });
  }
  return { fetch, calls, stats, shardCalls: () => calls.filter((c) => c.path !== "manifest.json") };
}

/** navigator.storage stand-in. */
export function fakeStorage({ quota = 1e12, usage = 0 } = {}) {
  return { persisted: false, estimate: async () => ({ quota, usage }), persist: async function () { return (this.persisted = true); } };
}
