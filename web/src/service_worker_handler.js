// Service-worker side of CreateServiceWorkerEngine: one Engine in the site's service worker,
// shared by its pages, so the model stays loaded (on the GPU) while the user navigates between
// them. In your service worker (a module script at the root of the pages' scope):
//
//   import { ServiceWorkerEngineHandler } from "./webllm-py/index.js";
//   new ServiceWorkerEngineHandler();
//
// and register it from the pages: navigator.serviceWorker.register("/sw.js", { type: "module" }).
// The protocol is the worker engine's (worker_protocol.js); each message is answered to the
// client that sent it, request ids are per client, and an "init" for the bundle (and options)
// already loaded answers at once: no download, no verification, no upload of the weights again.
import { WorkerEngineHandler } from "./worker_handler.js";

/** Options that do not change what is loaded (so they do not stop a reuse). */
const NOT_LOAD = new Set(["signal", "initProgressCallback"]);

export class ServiceWorkerEngineHandler extends WorkerEngineHandler {
  /**
   * @param {any} [scope] the ServiceWorkerGlobalScope (default globalThis)
   * @param {{createEngine?: typeof import("./engine.js").CreateEngine}} [options] createEngine: for tests
   */
  constructor(scope = globalThis, options = {}) {
    super(scope, options);
    /** @type {string|null} the url and options of the loaded engine */
    this.loadedKey = null;
    /** bundles loaded so far (a reused init does not count) */
    this.loads = 0;
    this.reused = false;
  }

  /** @param {any} scope */
  listen(scope) {
    // A new version takes over at once and controls the open pages (instead of waiting for
    // every tab of the site to close); the engine of an old version goes with it.
    scope.addEventListener("install", () => scope.skipWaiting?.());
    scope.addEventListener("activate", (/** @type {any} */ ev) => ev.waitUntil?.(scope.clients?.claim()));
    scope.addEventListener("message", (/** @type {any} */ ev) => {
      const client = ev.source;
      if (ev.data?.type === "keepAlive" || !client) return; // the page's heartbeat only keeps us running
      // waitUntil: the browser keeps the service worker alive while the request runs
      ev.waitUntil?.(this.dispatch(ev.data, (/** @type {any} */ m) => client.postMessage(m), String(client.id)));
    });
  }

  /** @param {string} url @param {any} options */
  async load(url, options) {
    const key = JSON.stringify([url, Object.entries(options).filter(([k]) => !NOT_LOAD.has(k)).sort()]);
    this.reused = this.engine != null && key === this.loadedKey;
    if (this.reused) {
      options.initProgressCallback?.({ progress: 1, loadedBytes: 0, totalBytes: 0, text: "Reusing the model loaded in the service worker", timeElapsed: 0 });
      return;
    }
    this.loadedKey = null; // while loading, and if the load fails, the next init loads again
    await super.load(url, options);
    this.loadedKey = key;
    this.loads++;
  }

  loadInfo() {
    return { reused: this.reused, loads: this.loads };
  }

  /** @param {any} msg @param {import("./worker_handler.js").Reply} [reply] @param {string} [sender] */
  async handle(msg, reply, sender) {
    if (msg?.type === "unload") this.loadedKey = null;
    return super.handle(msg, reply, sender);
  }
}
