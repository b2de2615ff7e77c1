// Page side of the service-worker engine (WebLLM's CreateServiceWorkerMLCEngine): the Engine
// API over postMessage to the site's service worker, which keeps the model loaded while the user
// navigates between pages. The service worker runs ServiceWorkerEngineHandler
// (service_worker_handler.js); each page then does
//
//   await navigator.serviceWorker.register("/sw.js", { type: "module" });
//   const engine = await CreateServiceWorkerEngine(bundleUrl, { initProgressCallback });
//
// and a page opened later gets the loaded model at once (engine.reused is true).
import { WebLLMError } from "./errors.js";
import { WorkerEngine } from "./worker.js";

/**
 * @typedef {import("./worker.js").WorkerEngineOptions & {keepAliveMs?: number, serviceWorker?: ServiceWorkerContainer}} ServiceWorkerEngineOptions
 *   keepAliveMs: the page's heartbeat to the service worker (default 10000; browsers stop an idle
 *   service worker after about 30 s, and its model with it); serviceWorker: defaults to navigator.serviceWorker
 */

export class ServiceWorkerEngine extends WorkerEngine {
  /**
   * @param {ServiceWorker} worker the active service worker @param {ServiceWorkerContainer} container
   * @param {number} keepAliveMs
   */
  constructor(worker, container, keepAliveMs) {
    // answers come to the page's ServiceWorkerContainer, requests go to the active worker
    super({ postMessage: (/** @type {any} */ m) => worker.postMessage(m), addEventListener: (/** @type {string} */ t, /** @type {any} */ f) => container.addEventListener(t, f) });
    container.startMessages?.(); // deliver messages now, not only once the document has loaded
    /** the service worker already had this bundle loaded: nothing was downloaded or uploaded */
    this.reused = false;
    /** bundles the service worker has loaded so far */
    this.loads = 0;
    this._keepAlive = setInterval(() => worker.postMessage({ type: "keepAlive" }), keepAliveMs);
  }

  /** Unload the service worker's model (for every page of the site) and stop the heartbeat. */
  async unload() {
    clearInterval(this._keepAlive);
    await super.unload();
  }

  /** @param {string|URL} bundleUrl @param {import("./worker.js").WorkerEngineOptions} options */
  async _init(bundleUrl, options) {
    const value = await super._init(bundleUrl, options);
    this.reused = Boolean(value.reused);
    this.loads = Number(value.loads ?? 0);
    return value;
  }
}

/**
 * An engine in the site's service worker (registered by the page, running
 * ServiceWorkerEngineHandler), with the API of CreateEngine's. When the service worker already
 * has `bundleUrl` loaded with the same options, it answers at once.
 * @param {string|URL} bundleUrl @param {ServiceWorkerEngineOptions} [options]
 * @returns {Promise<ServiceWorkerEngine>}
 */
export async function CreateServiceWorkerEngine(bundleUrl, options = {}) {
  const { keepAliveMs = 10_000, serviceWorker, ...rest } = options;
  const container = serviceWorker ?? globalThis.navigator?.serviceWorker;
  if (!container) throw new WebLLMError("service workers are not available here (they need a secure context: https:// or http://localhost)");
  const reg = await container.getRegistration();
  if (!reg) {
    throw new WebLLMError("no service worker is registered for this page: register one that runs ServiceWorkerEngineHandler " +
      "first, e.g. await navigator.serviceWorker.register(\"/sw.js\", { type: \"module\" })");
  }
  const worker = reg.active ?? (await container.ready).active;
  if (!worker) throw new WebLLMError("the service worker did not become active");
  const engine = new ServiceWorkerEngine(worker, container, keepAliveMs);
  try {
    await engine._init(bundleUrl, rest);
  } catch (err) {
    clearInterval(engine._keepAlive);
    throw err;
  }
  return engine;
}
