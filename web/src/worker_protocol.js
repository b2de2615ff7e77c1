// The postMessage protocol between CreateWorkerEngine (page) and WorkerEngineHandler (worker).
//
// page → worker: {type: "init", id, url, options} (also a reload) | {type: "chat"|"completion", id, params}
//                | {type: "reset"|"unload"|"getMessage", id} | {type: "cancel", id} (stop a stream)
//                | {type: "abort", id} (abort an init or a request: its signal) | {type: "interrupt"}
// worker → page: {type: "progress", id, report} | {type: "result", id, value, stats}
//                | {type: "stream", id} (the stream started) | {type: "chunk", id, value}
//                | {type: "done", id, stats} | {type: "error", id, error}
// Errors cross as {name, message, stack, props} and come back as the same Error subclass.
import * as errors from "./errors.js";
import { InvalidRequestError } from "./request.js";

/** @type {Record<string, new (...args: any[]) => Error>} */
const CLASSES = { ...errors, InvalidRequestError, TypeError, RangeError };

/** @param {unknown} err */
export function serializeError(err) {
  const e = /** @type {any} */ (err);
  /** @type {Record<string, unknown>} */
  const props = {};
  if (e && typeof e === "object") {
    for (const [k, v] of Object.entries(e)) if (v == null || ["string", "number", "boolean"].includes(typeof v)) props[k] = v;
  }
  return { name: String(e?.name ?? "Error"), message: String(e?.message ?? e), stack: String(e?.stack ?? ""), props };
}

/** @param {{name: string, message: string, stack?: string, props?: Record<string, unknown>}} s @returns {Error} */
export function deserializeError(s) {
  const e = new Error(s.message);
  const Cls = Object.hasOwn(CLASSES, s.name) ? CLASSES[s.name] : null;
  if (Cls) Object.setPrototypeOf(e, Cls.prototype);
  Object.assign(e, s.props ?? {});
  e.name = s.name;
  if (s.stack) e.stack = s.stack;
  return e;
}
