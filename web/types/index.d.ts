// Public API of the webllm-py npm package (hand-written; mirrors src/index.js).

// ---- errors -----------------------------------------------------------------
export class WebLLMError extends Error {}
export class WebGPUNotAvailableError extends WebLLMError {
  constructor(detail?: string);
  detail: string | null;
}
export class FeatureSupportError extends WebLLMError {
  constructor(feature: string, hint?: string);
  feature: string;
}
export class DeviceLostError extends WebLLMError {
  constructor(reason?: string, message?: string);
  reason: string | null;
}
export class ContextWindowExceededError extends WebLLMError {
  constructor(needed: number, contextWindow: number);
  needed: number;
  contextWindow: number;
}
export class BundleError extends WebLLMError {
  constructor(message: string, url?: string | null, options?: { cause?: unknown });
  url: string | null;
}
export class BundleVersionError extends BundleError {
  constructor(version: string, knownMajor: number, url?: string | null);
  version: string;
}
export class IntegrityError extends BundleError {
  constructor(path: string, detail: string, url?: string | null);
  /** the file's path within the bundle */
  path: string;
}
export class QuotaExceededError extends WebLLMError {
  constructor(neededBytes: number, availableBytes: number | null, options?: { cause?: unknown });
  neededBytes: number;
  availableBytes: number | null;
}
export class NetworkError extends WebLLMError {
  constructor(url: string, detail: string, options?: { cause?: unknown; status?: number });
  url: string;
  status: number | null;
}
export class ChatTemplateError extends WebLLMError {
  constructor(detail: string, options?: { cause?: unknown });
}

// ---- manifest ---------------------------------------------------------------
export const BUNDLE_FORMAT: "webllm-py-bundle";
export const KNOWN_MAJOR: number;
export interface BundleFile { path: string; size: number; sha256: string }
export interface TokenizerInfo {
  file: string;
  config_file?: string;
  bos_token_id?: number | null;
  eos_token_ids?: number[];
  add_bos_token?: boolean;
}
export interface Manifest {
  format: "webllm-py-bundle";
  format_version: string;
  model: { id: string; architecture: string; config: Record<string, unknown> };
  context_window: number;
  prefill_chunk?: number;
  quantization?: Record<string, unknown>;
  tokenizer: TokenizerInfo;
  generation?: { temperature?: number; top_p?: number; eos_token_ids?: number[] };
  graphs?: Record<string, unknown>;
  weights?: Record<string, unknown>;
  files: BundleFile[];
  [key: string]: unknown;
}
export interface BundleLocation { baseUrl: string; manifestUrl: string }
export interface FetchOptions {
  fetch?: typeof fetch;
  signal?: AbortSignal;
  retries?: number;
  retryDelayMs?: number;
}
export function resolveBundleUrl(url: string | URL, base?: string): BundleLocation;
export function fileUrl(baseUrl: string, path: string): string;
export function parseManifest(json: unknown, url?: string | null): Manifest;
export function fetchManifest(url: string | URL, options?: FetchOptions): Promise<BundleLocation & { manifest: Manifest }>;

// ---- cache ------------------------------------------------------------------
/** Shaped like the Web Cache API so backends (IndexedDB, OPFS, ...) can be swapped in. */
export interface BundleCache {
  match(url: string): Promise<Response | undefined>;
  put(url: string, response: Response): Promise<void>;
  delete(url: string): Promise<boolean>;
  keys(): Promise<string[]>;
  /** true when entries count against the origin's storage quota */
  persistent?: boolean;
}
export const DEFAULT_CACHE_SCOPE: string;
export class CacheStorageCache implements BundleCache {
  constructor(scope?: string, storage?: CacheStorage);
  scope: string;
  persistent: boolean;
  match(url: string): Promise<Response | undefined>;
  put(url: string, response: Response): Promise<void>;
  delete(url: string): Promise<boolean>;
  keys(): Promise<string[]>;
}
export class NoCache implements BundleCache {
  persistent: boolean;
  match(url: string): Promise<Response | undefined>;
  put(url: string, response: Response): Promise<void>;
  delete(url: string): Promise<boolean>;
  keys(): Promise<string[]>;
}
export class MemoryCache implements BundleCache {
  persistent: boolean;
  match(url: string): Promise<Response | undefined>;
  put(url: string, response: Response): Promise<void>;
  delete(url: string): Promise<boolean>;
  keys(): Promise<string[]>;
}
/** false → NoCache; true/undefined → Cache Storage if available; string → Cache Storage scope; object → itself. */
export type CacheOption = BundleCache | boolean | string;
export function resolveCache(option?: CacheOption): BundleCache;

// ---- loader -----------------------------------------------------------------
export interface ProgressReport {
  /** 0..1 over all bytes of the bundle; monotonic; exactly 1 only once everything is verified */
  progress: number;
  loadedBytes: number;
  totalBytes: number;
  text: string;
  /** seconds since the load started */
  timeElapsed: number;
}
export interface LoadOptions extends FetchOptions {
  cache?: CacheOption;
  /** parallel downloads (default 4) */
  concurrency?: number;
  onProgress?: (report: ProgressReport) => void;
  /** ask for persistent storage (navigator.storage.persist()) */
  persist?: boolean;
  /** defaults to navigator.storage */
  storage?: Pick<StorageManager, "estimate" | "persist">;
}
export interface LoadedBundle extends BundleLocation {
  manifest: Manifest;
  /** path → sha256-verified bytes, in manifest order */
  files: Map<string, ArrayBuffer>;
  stats: { cachedFiles: number; fetchedFiles: number; fetchedBytes: number };
  /** result of storage.persist(); null when not asked */
  persisted: boolean | null;
}
export function loadBundle(url: string | URL, options?: LoadOptions): Promise<LoadedBundle>;
export function hasModelInCache(url: string | URL, options?: { cache?: CacheOption }): Promise<boolean>;
/** Resolves to the number of cache entries deleted. */
export function deleteModelFromCache(url: string | URL, options?: { cache?: CacheOption }): Promise<number>;
export function sha256Hex(data: BufferSource): Promise<string>;

// ---- sampler (docs/sampling.md) -----------------------------------------------
export interface SamplingParams {
  /** default 1; 0 = greedy */
  temperature?: number;
  /** default 1 */
  top_p?: number;
  /** integer in [0, 2^53); required unless temperature is 0 */
  seed?: number;
  /** index of the token within the completion (0 for the first) */
  counter?: number;
  logit_bias?: Record<number | string, number> | Map<number, number>;
  repetition_penalty?: number;
  presence_penalty?: number;
  frequency_penalty?: number;
  promptTokens?: ArrayLike<number>;
  generatedTokens?: ArrayLike<number>;
}
export function mix32(x: number): number;
export function randomU32(seed: number, counter: number): number;
export function uniform(seed: number, counter: number): number;
export function randomSeed(): number;
/** Steps 1-3 (logit_bias, repetition, presence/frequency penalties) as float64. */
export function applyPenalties(logits: ArrayLike<number>, params?: SamplingParams): Float64Array;
export function argmax(x: ArrayLike<number>): number;
/** float64 log-softmax; logprobs = logSoftmax(applyPenalties(logits, params)). */
export function logSoftmax(x: ArrayLike<number>): Float64Array;
export function softmaxProbs(x: ArrayLike<number>, temperature: number): Float64Array;
export function sampleFromProbs(probs: Float64Array, topP: number, u01: number): number;
export function sortDescending(values: ArrayLike<number>): Float64Array;
/** Steps 4-7 on already-adjusted logits. */
export function sampleAdjusted(x: Float64Array, params?: SamplingParams): number;
/** Steps 1-7. */
export function sampleToken(logits: ArrayLike<number>, params?: SamplingParams): number;

// ---- tokenizer ----------------------------------------------------------------
export class Tokenizer {
  constructor(
    tokenizerJson: object,
    tokenizerConfig?: Record<string, any>,
    options?: { eosTokenIds?: number[]; chatTemplate?: string | null },
  );
  static fromBundle(bundle: { manifest: Manifest; files: Map<string, ArrayBuffer> }): Tokenizer;
  config: Record<string, any>;
  eosTokenIds: number[];
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  /** skipSpecialTokens defaults to true (as webllm_py's Tokenizer.decode) */
  decode(ids: ArrayLike<number>, options?: { skipSpecialTokens?: boolean }): string;
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
  /** bos_token, eos_token, ... of tokenizer_config.json as strings */
  readonly specialTokens: Record<string, string>;
  createStreamDecoder(options?: { promptIds?: ArrayLike<number>; skipSpecialTokens?: boolean }): StreamDecoder;
}
export class StreamDecoder {
  constructor(tokenizer: Tokenizer, options?: { promptIds?: ArrayLike<number>; skipSpecialTokens?: boolean });
  /** the newly completed text; "" while a character is incomplete */
  push(id: number): string;
  flush(): string;
}

// ---- chat templates -------------------------------------------------------------
export interface ChatMessage {
  role: string;
  content?: string | Array<Record<string, unknown>> | null;
  [key: string]: unknown;
}
export interface ChatTemplateOptions {
  /** default false, as in transformers */
  add_generation_prompt?: boolean;
  continue_final_message?: boolean;
  tools?: object[] | null;
  documents?: object[] | null;
  /** extra template variables, e.g. { enable_thinking: false } */
  kwargs?: Record<string, unknown>;
}
export function selectChatTemplate(config: Record<string, any>, options?: { tools?: unknown; name?: string }): string;
export class ChatTemplate {
  constructor(source: string, specialTokens?: Record<string, string>);
  render(messages: ChatMessage[], options?: ChatTemplateOptions): string;
}
export function applyChatTemplate(
  tokenizer: Tokenizer,
  messages: ChatMessage[],
  options?: ChatTemplateOptions & { template?: string },
): { text: string; ids: number[] };
