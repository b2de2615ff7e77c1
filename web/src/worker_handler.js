// Worker side of CreateWorkerEngine: runs an Engine inside a (module) Web Worker and answers
// the page's messages (protocol in worker_protocol.js). In your worker file:
//
//   import { WorkerEngineHandler } from "webllm-py";
//   new WorkerEngineHandler();
//
// or use the package's ready-made dist/worker.js.
import { CreateEngine } from "./engine.js";
import { serializeError } from "./worker_protocol.js";

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
    /** @type {Map<number, AbortController>} inits and streams in flight, by request id */
    this.inFlight = new Map();
    scope.addEventListener("message", (/** @type {MessageEvent} */ ev) => {
      this.handle(ev.data).catch((err) => this.post({ type: "error", id: ev.data?.id, error: serializeError(err) }));
    });
  }

  /** @param {any} msg */
  post(msg) {
    this.scope.postMessage(msg);
  }

  /** @returns {import("./engine.js").Engine} */
  requireEngine() {
    if (!this.engine) throw new Error("the worker engine is not initialized (call CreateWorkerEngine first)");
    return this.engine;
  }

  /** @param {any} msg */
  async handle(msg) {
    const { type, id } = msg ?? {};
    switch (type) {
      case "init": {
        const ctl = new AbortController();
        this.inFlight.set(id, ctl);
        try {
          if (this.engine) await this.engine.unload();
          this.engine = null;
          this.engine = await this.createEngine(msg.url, {
            ...msg.options,
            signal: ctl.signal,
            initProgressCallback: (report) => this.post({ type: "progress", id, report }),
          });
          this.post({ type: "result", id, value: { modelName: this.engine.modelName } });
        } finally {
          this.inFlight.delete(id);
        }
        return;
      }
      case "abort":
      case "cancel":
        this.inFlight.get(id)?.abort();
        return;
      case "interrupt":
        this.engine?.interruptGenerate();
        return;
      case "reset":
        await this.requireEngine().resetChat();
        this.post({ type: "result", id, value: null, stats: this.requireEngine().runtimeStats() });
        return;
      case "unload":
        await this.engine?.unload();
        this.engine = null;
        this.post({ type: "result", id, value: null });
        return;
      case "chat":
      case "completion": {
        const engine = this.requireEngine();
        const api = type === "chat" ? engine.chat.completions : engine.completions;
        const res = await api.create(msg.params);
        if (!msg.params?.stream) {
          this.post({ type: "result", id, value: res, stats: engine.runtimeStats() });
          return;
        }
        const ctl = new AbortController();
        this.inFlight.set(id, ctl);
        this.post({ type: "stream", id });
        try {
          // No backpressure: chunks are small and the page drains them as they come; a
          // "cancel" ends the loop, which closes the stream and frees the engine.
          for await (const chunk of /** @type {AsyncIterable<any>} */ (res)) {
            if (ctl.signal.aborted) break;
            this.post({ type: "chunk", id, value: chunk });
          }
        } finally {
          this.inFlight.delete(id);
        }
        this.post({ type: "done", id, stats: engine.runtimeStats() });
        return;
      }
      default:
        throw new Error(`unknown message type ${JSON.stringify(type)}`);
    }
  }
}
