// Worker side of CreateWorkerEngine: runs an Engine inside a (module) Web Worker and answers
// the page's messages (protocol in worker_protocol.js). In your worker file:
//
//   import { WorkerEngineHandler } from "webllm-py";
//   new WorkerEngineHandler();
//
// or use the package's ready-made dist/worker.js.
import { CreateEngine } from "./engine.js";
import { currentMessage } from "./lifecycle.js";
import { serializeError } from "./worker_protocol.js";

/** @typedef {(msg: any) => void} Reply */

export class WorkerEngineHandler {
  /**
   * @param {{addEventListener: Function, postMessage: Function}} [scope] the worker global (default globalThis)
   * @param {{createEngine?: typeof CreateEngine}} [options] createEngine: for tests
   */
  constructor(scope = /** @type {any} */ (globalThis), { createEngine = CreateEngine } = {}) {
    this.scope = scope;
    this.createEngine = createEngine;
    /** @type {import("./engine.js").Engine|null} */
    this.engine = null;
    /** @type {Map<string, AbortController>} inits and requests in flight, by sender and request id */
    this.inFlight = new Map();
    this.listen(scope);
  }

  /** Answer the scope's messages (a service worker answers each message's client instead). @param {any} scope */
  listen(scope) {
    scope.addEventListener("message", (/** @type {MessageEvent} */ ev) => this.dispatch(ev.data, (m) => this.post(m), ""));
  }

  /**
   * Handle one message; its failure goes back as an "error".
   * @param {any} msg @param {Reply} reply @param {string} sender @returns {Promise<void>} settled when handled
   */
  dispatch(msg, reply, sender) {
    return this.handle(msg, reply, sender).catch((err) => reply({ type: "error", id: msg?.id, error: serializeError(err) }));
  }

  /** @param {any} msg */
  post(msg) {
    this.scope.postMessage(msg);
  }

  /**
   * Load `url`; the engine already loaded is unloaded only once the new one is ready, so a failed
   * load leaves it answering (as Engine.reload). @param {string} url @param {any} options
   */
  async load(url, options) {
    const fresh = await this.createEngine(url, options);
    const old = this.engine;
    this.engine = fresh;
    if (old && old !== fresh) await old.unload();
  }

  /** Extra fields of an init's answer (the service worker's says whether it reused its model). */
  loadInfo() {
    return {};
  }

  /** @returns {import("./engine.js").Engine} */
  requireEngine() {
    if (!this.engine) throw new Error("the worker engine is not initialized (call CreateWorkerEngine first)");
    return this.engine;
  }

  /**
   * @param {any} msg @param {Reply} [reply] where answers go (default: the scope)
   * @param {string} [sender] who sent it (request ids are unique per sender)
   */
  async handle(msg, reply = (m) => this.post(m), sender = "") {
    const { type, id } = msg ?? {};
    const key = `${sender}#${id}`;
    switch (type) {
      case "init": {
        const ctl = new AbortController();
        this.inFlight.set(key, ctl);
        try {
          await this.load(msg.url, {
            ...msg.options,
            signal: ctl.signal,
            initProgressCallback: (/** @type {any} */ report) => reply({ type: "progress", id, report }),
          });
          reply({ type: "result", id, value: { modelName: this.requireEngine().modelName, ...this.loadInfo() } });
        } finally {
          this.inFlight.delete(key);
        }
        return;
      }
      case "abort":
      case "cancel":
        this.inFlight.get(key)?.abort();
        return;
      case "getMessage":
        reply({ type: "result", id, value: this.engine ? currentMessage(this.engine) : "" });
        return;
      case "interrupt":
        this.engine?.interruptGenerate();
        return;
      case "reset":
        await this.requireEngine().resetChat();
        reply({ type: "result", id, value: null, stats: this.requireEngine().runtimeStats() });
        return;
      case "unload":
        await this.engine?.unload();
        this.engine = null;
        reply({ type: "result", id, value: null });
        return;
      case "chat":
      case "completion": {
        const engine = this.requireEngine();
        const api = type === "chat" ? engine.chat.completions : engine.completions;
        // "abort" (the page's signal) or "cancel" (a stream closed early) aborts the request
        const ctl = new AbortController();
        this.inFlight.set(key, ctl);
        try {
          const res = await api.create(msg.params, { signal: ctl.signal });
          if (!msg.params?.stream) {
            reply({ type: "result", id, value: res, stats: engine.runtimeStats() });
            return;
          }
          reply({ type: "stream", id });
          // No backpressure: chunks are small and the page drains them as they come.
          for await (const chunk of /** @type {AsyncIterable<any>} */ (res)) reply({ type: "chunk", id, value: chunk });
          reply({ type: "done", id, stats: engine.runtimeStats() });
        } finally {
          this.inFlight.delete(key);
        }
        return;
      }
      default:
        throw new Error(`unknown message type ${JSON.stringify(type)}`);
    }
  }
}
