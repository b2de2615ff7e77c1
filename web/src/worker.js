// Page side of the worker engine: the Engine API over postMessage, so tokenization, sampling
// and the GPU loop run off the main thread.
//
//   const worker = new Worker(new URL("webllm-py/dist/worker.js", import.meta.url), { type: "module" });
//   const engine = await CreateWorkerEngine(worker, bundleUrl, { initProgressCallback });
//   for await (const c of await engine.chat.completions.create({ messages, stream: true })) ...
import { attachSignal, carriedOptions } from "./lifecycle.js";
import { deserializeError } from "./worker_protocol.js";

/**
 * @typedef {object} WorkerEngineOptions
 * @property {(report: import("./progress.js").ProgressReport) => void} [initProgressCallback]
 * @property {"auto"|"f32"|"f16"|"idot"} [precision]
 * @property {boolean|string} [cache] true / false / a Cache Storage scope (custom cache objects cannot cross to a worker)
 * @property {boolean} [verifyCache] see EngineOptions
 * @property {AbortSignal} [signal]
 * @property {string} [modelName]
 * @property {number} [contextWindowSize] see EngineOptions
 * @property {"error"|"slide"} [contextOverflow] see EngineOptions
 */

export class WorkerEngine {
  /** @param {Worker|{postMessage: Function, addEventListener: Function}} worker */
  constructor(worker) {
    this.worker = worker;
    this.nextId = 1;
    /** @type {Map<number, (msg: any) => void>} message handlers by request id */
    this.handlers = new Map();
    /** @type {Record<string, number>} stats of the last finished request (sent along by the worker) */
    this._stats = {};
    this.modelName = "";
    /** @type {WorkerEngineOptions} the last init's (reload carries them over, lifecycle.js) */
    this._options = {};
    worker.addEventListener("message", (ev) => {
      const msg = /** @type {any} */ (ev).data;
      this.handlers.get(msg?.id)?.(msg);
    });
    this.chat = { completions: { create: (/** @type {any} */ params, /** @type {any} */ opts) => this._create("chat", params, opts) } };
    this.completions = { create: (/** @type {any} */ params, /** @type {any} */ opts) => this._create("completion", params, opts) };
  }

  /**
   * Send a request and resolve with its "result" (or reject with its "error").
   * @param {any} msg @param {(msg: any) => void} [onOther] progress etc.
   * @param {AbortSignal|null} [signal] its abort is sent to the worker; the call then rejects with signal.reason
   * @returns {Promise<any>}
   */
  _call(msg, onOther, signal) {
    const id = this.nextId++;
    /** @type {() => void} */
    let onAbort = () => {};
    const done = () => signal?.removeEventListener("abort", onAbort);
    return new Promise((resolve, reject) => {
      // the call rejects at once; the worker stops its request and its late answer is ignored
      onAbort = () => {
        this.handlers.delete(id);
        this.worker.postMessage({ type: "abort", id });
        reject(signal?.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.handlers.set(id, (m) => {
        if (m.type === "result") {
          this.handlers.delete(id);
          done();
          if (m.stats) this._stats = m.stats;
          resolve(m.value);
        } else if (m.type === "error") {
          this.handlers.delete(id);
          done();
          reject(signal?.aborted ? signal.reason : deserializeError(m.error));
        } else onOther?.(m);
      });
      this.worker.postMessage({ ...msg, id });
    });
  }

  /** @param {string|URL} bundleUrl @param {WorkerEngineOptions} options @returns {Promise<any>} the worker's answer */
  async _init(bundleUrl, options) {
    const { initProgressCallback, signal, ...rest } = options;
    signal?.throwIfAborted();
    // Resolve against the page: a worker's own location is the script's.
    const url = new URL(String(bundleUrl), globalThis.location?.href).href;
    const value = await this._call({ type: "init", url, options: rest }, (m) => {
      if (m.type === "progress") initProgressCallback?.(m.report);
    }, signal);
    this.modelName = value.modelName;
    this._options = options;
    return value;
  }

  /**
   * Serve another bundle (as Engine.reload): the worker loads it, then unloads the old one (a
   * failed load leaves it answering). Options not given carry over but signal, modelName and
   * contextWindowSize. @param {string|URL} bundleUrl @param {WorkerEngineOptions} [options]
   */
  async reload(bundleUrl, options = {}) {
    this.interruptGenerate();
    await this._init(bundleUrl, carriedOptions(this._options, options));
  }

  /** The reply text of the last request's first choice, so far (WebLLM's getMessage). */
  async getMessage() {
    return this._call({ type: "getMessage" });
  }

  /**
   * @param {"chat"|"completion"} type @param {Record<string, any>} params
   * @param {{signal?: AbortSignal}} [requestOptions] signal: abort this request (lifecycle.js)
   * @returns {Promise<any>} the response, or (stream) an async iterable of chunks
   */
  async _create(type, params, requestOptions) {
    const signal = attachSignal({}, requestOptions).signal ?? null;
    signal?.throwIfAborted();
    if (!params?.stream) return this._call({ type, params }, undefined, signal);
    const id = this.nextId++;
    /** @type {any[]} */
    const queue = [];
    /** @type {((v?: unknown) => void)|null} */
    let wake = null;
    let finished = false;
    /** @type {Error|null} */
    let failure = null;
    let started = /** @type {(v?: unknown) => void} */ (() => {});
    let startFailed = /** @type {(e: Error) => void} */ (() => {});
    const start = new Promise((res, rej) => ((started = res), (startFailed = rej)));
    const onAbort = () => {
      this.worker.postMessage({ type: "abort", id });
      failure ??= /** @type {Error} */ (signal?.reason); // the stream throws it at its next read
      startFailed(/** @type {Error} */ (failure));
      wake?.();
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    this.handlers.set(id, (m) => {
      if (m.type === "stream") started();
      else if (m.type === "chunk") queue.push(m.value);
      else {
        if (m.type === "error") {
          failure = signal?.aborted ? signal.reason : deserializeError(m.error);
          startFailed(/** @type {Error} */ (failure));
        } else if (m.stats) this._stats = m.stats;
        finished = true;
        this.handlers.delete(id);
        signal?.removeEventListener("abort", onAbort);
      }
      wake?.();
      wake = null;
    });
    this.worker.postMessage({ type, id, params });
    await start; // validation errors reject create() itself, as on the main-thread engine
    const self = this;
    return (async function* stream() {
      try {
        for (;;) {
          if (queue.length) yield queue.shift();
          else if (failure) throw failure;
          else if (finished) return;
          else await new Promise((r) => (wake = r));
        }
      } finally {
        if (!finished) self.worker.postMessage({ type: "cancel", id }); // the consumer stopped early
        signal?.removeEventListener("abort", onAbort);
      }
    })();
  }

  /** Stop the running generation after the current token (finish_reason "abort"). */
  interruptGenerate() {
    this.worker.postMessage({ type: "interrupt" });
  }

  async resetChat() {
    await this._call({ type: "reset" });
  }

  /** Stats of the last finished request (see Engine.runtimeStats). */
  runtimeStats() {
    return { ...this._stats };
  }

  async runtimeStatsText() {
    const s = this._stats;
    return `prefill: ${(s.prefill_tokens_per_s ?? 0).toFixed(1)} tok/s, decode: ${(s.decode_tokens_per_s ?? 0).toFixed(1)} tok/s`;
  }

  /** Free the worker's GPU resources (the worker itself stays; terminate() it if you like). */
  async unload() {
    await this._call({ type: "unload" });
  }
}

/**
 * An engine running in `worker` (a module worker running WorkerEngineHandler, e.g.
 * dist/worker.js), with the same API as CreateEngine's.
 * @param {Worker} worker @param {string|URL} bundleUrl @param {WorkerEngineOptions} [options]
 */
export async function CreateWorkerEngine(worker, bundleUrl, options = {}) {
  const engine = new WorkerEngine(worker);
  await engine._init(bundleUrl, options);
  return engine;
}
