// Engine lifecycle, as WebLLM's and webllm_py/runtime/lifecycle.py: reload onto another bundle,
// a per-request AbortSignal, getMessage. engine.js calls these hooks; the logic lives here.
//
// - reload(bundleUrl, options) ends the running request (finish_reason "abort"), waits for the
//   engine, loads the new bundle completely (so a bundle that fails to load leaves the engine on
//   the model it had; both are in memory meanwhile), takes over the new engine's state and then
//   destroys the old runtime. Options not given carry over from CreateEngine's (or the last
//   reload's), except signal, modelName and contextWindowSize (per bundle).
// - create(params, { signal }): as the OpenAI client's request options. An abort rejects the
//   request (or makes its stream throw) with signal.reason before its next GPU step, also while it
//   waits for its turn; the engine's KV cache stays consistent, so the next request works.
// - getMessage(): the reply text of the last request's first choice, so far.
import { WebLLMError } from "./errors.js";

/** Options that belong to one bundle: a reload does not carry them over. */
const PER_BUNDLE = ["signal", "modelName", "contextWindowSize"];
/** The engine's identity: its request queue and the API objects that call back into it. */
const ENGINE_OWN = new Set(["_tail", "chat", "completions", "embeddings", "_createOptions"]);

/**
 * @param {any} engine an Engine @param {string|URL} bundleUrl @param {Record<string, any>} options
 * @param {(url: string|URL, options: any) => Promise<any>} createEngine CreateEngine
 */
export async function reloadEngine(engine, bundleUrl, options, createEngine) {
  const merged = carriedOptions(engine._createOptions, options);
  engine.interruptGenerate(); // the running request ends at its next token and frees the queue
  const release = await engine._acquire(merged.signal);
  try {
    const fresh = await createEngine(bundleUrl, merged);
    if (!(fresh instanceof engine.constructor)) {
      await fresh.unload?.();
      throw new WebLLMError(`reload: ${bundleUrl} is not a language model bundle (an embedding model?); load it with CreateEngine`);
    }
    const old = engine.model;
    for (const [k, v] of Object.entries(fresh)) if (!ENGINE_OWN.has(k)) engine[k] = v;
    engine._createOptions = merged;
    if (old !== engine.model) old?.destroy?.();
  } finally {
    release();
  }
}

/**
 * The request's signal from create()'s second argument (OpenAI's request options).
 * @param {any} req a validated Request @param {unknown} requestOptions
 */
export function attachSignal(req, requestOptions) {
  if (requestOptions == null) return req;
  if (typeof requestOptions !== "object" || Array.isArray(requestOptions)) {
    throw new TypeError("create(params, options): options must be an object such as { signal }");
  }
  const { signal } = /** @type {{signal?: any}} */ (requestOptions);
  if (signal != null && !(typeof signal.aborted === "boolean" && typeof signal.addEventListener === "function")) {
    throw new TypeError("create(params, { signal }): signal must be an AbortSignal");
  }
  req.signal = signal ?? null;
  return req;
}

/** @param {any} req @returns {AbortSignal|null} */
export const signalOf = (req) => req?.signal ?? null;

/**
 * Wait for `prev` (the request ahead in the queue), or reject with the signal's reason as soon as
 * it aborts; then this request's slot is released once `prev` is done, keeping the queue in order.
 * @param {Promise<void>} prev @param {() => void} release @param {AbortSignal|null|undefined} signal
 */
export async function waitTurn(prev, release, signal) {
  if (!signal) return prev;
  /** @type {() => void} */
  let onAbort = () => {};
  const aborted = new Promise((_, reject) => {
    onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    await Promise.race([prev, aborted]);
  } catch (err) {
    prev.then(release);
    throw err;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/**
 * Pass a choice's steps through, keeping the text of choice 0 for getMessage().
 * @template {{text: string}} S
 * @param {any} engine @param {number} choice @param {AsyncGenerator<S>} steps
 * @returns {AsyncGenerator<S>}
 */
export async function* recordMessage(engine, choice, steps) {
  if (choice === 0) engine._message = "";
  try {
    for await (const s of steps) {
      if (choice === 0) engine._message += s.text;
      yield s;
    }
  } finally {
    await steps.return?.(undefined); // closed early: the engine's generator cleans up
  }
}

/** @param {any} engine @returns {string} */
export const currentMessage = (engine) => engine._message ?? "";

/**
 * The options of a reload: those given, and the previous load's except the per-bundle ones.
 * @param {Record<string, any>|undefined} previous @param {Record<string, any>} [given]
 */
export function carriedOptions(previous, given = {}) {
  if (given != null && (typeof given !== "object" || Array.isArray(given))) throw new TypeError("reload(bundleUrl, options): options must be an object");
  /** @type {Record<string, any>} */
  const carried = { ...(previous ?? {}) };
  for (const k of PER_BUNDLE) delete carried[k];
  return { ...carried, ...given };
}
