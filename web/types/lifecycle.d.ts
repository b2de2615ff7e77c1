// Engine lifecycle (issue 16): the context window chosen at load, the context-overflow policy,
// a request's AbortSignal, the service-worker engine and the cache listing (hand-written; mirrors
// src/kv_sizing.js, src/context_policy.js, src/lifecycle.js, src/service_worker*.js, src/cache_list.js).
import type { CacheOption, Engine, EngineAPI, Manifest, Precision, WorkerEngine, WorkerEngineOptions } from "./index";

/** The smallest contextWindowSize: one prompt token and one generated token. */
export const MIN_CONTEXT: 2;
/** GPU bytes a language-model runtime allocates; known before anything is allocated. */
export interface MemoryEstimate {
  contextWindowSize: number;
  weightsBytes: number;
  kvCacheBytes: number;
  /** activations, ids, step uniform, logits and its readback copy */
  otherBytes: number;
  totalBytes: number;
}
export function estimateMemory(manifest: Manifest, precision: Precision, contextWindowSize?: number): MemoryEstimate;
/** The bundle's context_window, or `requested` (an integer from 2 to it); else a RangeError naming contextWindowSize. */
export function resolveContextWindow(manifest: Manifest, requested?: number | null): number;

export type ContextOverflow = "error" | "slide";
/** "error": a prompt past the window is a ContextWindowExceededError; "slide": drop the oldest turns, keep the system prompt. */
export class ContextPolicy {
  constructor(policy?: ContextOverflow);
  policy: ContextOverflow;
  /** turns the last chat prompt left out */
  dropped: number;
}

/** create()'s second argument, as the OpenAI client's request options. */
export interface RequestOptions {
  /** aborting rejects the request (or makes its stream throw) with signal.reason; the next request works */
  signal?: AbortSignal;
}

// ---- service-worker engine ----------------------------------------------------------------
export interface ServiceWorkerEngineOptions extends WorkerEngineOptions {
  /** the page's heartbeat to the service worker, ms (default 10000) */
  keepAliveMs?: number;
  /** default navigator.serviceWorker */
  serviceWorker?: ServiceWorkerContainer;
}
export class ServiceWorkerEngine extends WorkerEngine {
  /** the service worker already had this bundle loaded with these options: nothing was fetched or uploaded */
  reused: boolean;
  /** bundles the service worker has loaded so far */
  loads: number;
}
/** An engine in the site's service worker (which runs ServiceWorkerEngineHandler); it survives navigation between pages. */
export function CreateServiceWorkerEngine(bundleUrl: string | URL, options?: ServiceWorkerEngineOptions): Promise<ServiceWorkerEngine>;
/** In the service worker: `new ServiceWorkerEngineHandler()`. */
export class ServiceWorkerEngineHandler {
  constructor(scope?: any, options?: { createEngine?: (url: string, options: any) => Promise<Engine> });
  engine: Engine | null;
  loads: number;
}

// ---- cache listing ------------------------------------------------------------------------
export interface CachedModel {
  /** the bundle folder (what CreateEngine, hasModelInCache and deleteModelFromCache take) */
  url: string;
  modelId: string | null;
  files: number;
  cachedFiles: number;
  /** bytes of the cached files (manifest sizes), the manifest included */
  bytes: number;
  totalBytes: number;
  complete: boolean;
  /** why the cached manifest is unreadable (then deleteModelFromCache it) */
  error: string | null;
}
export function listCachedModels(options?: { cache?: CacheOption }): Promise<CachedModel[]>;

/** What an engine gains with the lifecycle (Engine and WorkerEngine both have it). */
export interface LifecycleAPI extends EngineAPI {
  /** Serve another bundle (WebLLM's reload); options not given carry over but signal, modelName and contextWindowSize. */
  reload(bundleUrl: string | URL, options?: object): Promise<void>;
  /** The reply text of the last request's first choice, so far (WebLLM's getMessage). */
  getMessage(): Promise<string>;
}
