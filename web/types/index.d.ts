// Public API of the webllm-py npm package (hand-written; mirrors src/index.js).

import type { ContextOverflow, MemoryEstimate, RequestOptions } from "./lifecycle";
export * from "./lifecycle";

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
  constructor(needed: number, contextWindow: number, hint?: string);
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
  /** Should hand back the stored headers too: a file entry whose `x-webllm-py-write` header is lost is re-hashed on every load. */
  match(url: string): Promise<Response | undefined>;
  /**
   * A downloaded file arrives as a streaming body, fed while it downloads and ended only once
   * it passed sha256: store it only if the body ends normally, and settle once stored (or
   * refused: a `QuotaExceededError`-named error becomes `QuotaExceededError`).
   */
  put(url: string, response: Response): Promise<void>;
  delete(url: string): Promise<boolean>;
  keys(): Promise<string[]>;
  /** true when entries count against the origin's storage quota */
  persistent?: boolean;
}
export const DEFAULT_CACHE_SCOPE: string;
/** The built-in caches: BundleCache's methods (each class merges the interface), persistent always set. */
export interface CacheStorageCache extends BundleCache {}
export class CacheStorageCache {
  constructor(scope?: string, storage?: CacheStorage);
  scope: string;
  persistent: boolean;
}
export interface NoCache extends BundleCache {}
export class NoCache {
  persistent: boolean;
}
export interface MemoryCache extends BundleCache {}
export class MemoryCache {
  persistent: boolean;
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
  /** parallel downloads and cache reads (default 4) */
  concurrency?: number;
  onProgress?: (report: ProgressReport) => void;
  /** ask for persistent storage (navigator.storage.persist()) */
  persist?: boolean;
  /** defaults to navigator.storage */
  storage?: Pick<StorageManager, "estimate" | "persist">;
  /**
   * @deprecated ignored: every cached file is checked (size and sha256) on every load before
   * it is used, and an entry that fails is deleted and refetched.
   */
  verifyCache?: boolean;
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
/** Resolves to the number of cache entries deleted (files and manifests; an older version's verified records go too, uncounted). */
export function deleteModelFromCache(url: string | URL, options?: { cache?: CacheOption }): Promise<number>;
// listCachedModels: see ./lifecycle
export function sha256Hex(data: BufferSource): Promise<string>;

// ---- sampler (docs/sampling.md) -----------------------------------------------
export interface SamplingParams {
  /** default 1; 0 = greedy */
  temperature?: number;
  /** default 1 */
  top_p?: number;
  /** default 0 (no limit): keep the top_k most probable ids */
  top_k?: number;
  /** default 0 (no limit): keep ids with probability >= min_p x the largest */
  min_p?: number;
  /** step 0: the grammar's bitmask (xgrammar's layout: bit id % 32 of word id >> 5 set = allowed) */
  bitmask?: Int32Array | null;
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

// ---- WebGPU runtime (src/runtime.js, src/gpu_device.js) --------------------------------
/** Program sets: f32 / f16 activations, or idot (f32 activations, decode matmuls as integer dot products on packed 9-bit activations; auto picks it on CPU adapters such as SwiftShader) */
/** A program set (webllm_py/passes/program_sets.py): f32, f16, idot for CPU adapters; gpu, gpu-sg for GPUs. */
export type Precision = "f32" | "f16" | "idot" | "gpu" | "gpu-sg";
export type DimFn = (n: number, p: number) => number;
export const ACT_BYTES: { readonly f32: 4; readonly f16: 2 };
/** A manifest workgroup expression (integers, n, p, + - * //, parentheses) as a function. */
export function compileDim(expr: string | number): DimFn;
/** Bytes of one manifest buffer at a precision, rounded up to 16. */
export function bufferBytes(spec: { bytes?: number; elements?: number; dtype?: string; kind?: string }, precision: Precision, manifest?: any): number;
export function planBuffers(manifest: any, precision: Precision): {
  sizes: Map<string, number>;
  maxBuffer: number;
  maxStorageBuffers: number;
  maxInvocations: number;
  maxWorkgroupX: number;
};
export function compilePrograms(manifest: any, precision: Precision): Record<string, {
  dispatches: { kernel: string; bindings: string[]; workgroups: DimFn[] }[];
  rows: DimFn;
}>;
export function halfToFloat(h: number): number;
export function choosePrecision(requested: "auto" | Precision, hasShaderF16: boolean, available: string[], cpuAdapter?: boolean): Precision;
/** The program set to run (the rule of webllm_py/runtime/program_choice.py): by adapter class, then features. */
export function chooseProgramSet(manifest: any, requested: "auto" | Precision, adapterClass: "cpu" | "gpu", features: ReadonlySet<string>, languageFeatures?: ReadonlySet<string>): Precision;
/** The bundle's program sets this browser can compile (manifest `wgsl_language_features` vs `navigator.gpu.wgslLanguageFeatures`), and what each other set lacks. */
export function usableProgramSets(manifest: unknown, languageFeatures: ReadonlySet<string> | undefined): { usable: string[]; missing: Record<string, string[]> };
/** Is this GPUAdapterInfo a software (CPU) adapter: SwiftShader, lavapipe / llvmpipe? */
export function isCpuAdapter(info: any): boolean;
export function requiredLimits(
  plan: { maxBuffer: number; maxStorageBuffers: number; maxInvocations?: number; maxWorkgroupX?: number },
  adapterLimits: Record<string, number>,
): Record<string, number>;

/** The LanguageModel the engine drives (webllm_py/runtime/lm.py's verbs, async). */
export interface LanguageModel {
  vocabSize: number;
  contextWindow: number;
  /** tokens in the KV cache */
  position: number;
  reset(): void;
  truncate(position: number): void;
  /** Last token's logits; the array may be reused by the next call. */
  forward(ids: number[]): Promise<Float32Array>;
  /** forward() of one token resolving to argmax(logits) picked on the GPU: greedy requests use it when present */
  forwardArgmax?(ids: number[]): Promise<number>;
  destroy?(): void;
}
export interface RuntimeOptions {
  precision?: "auto" | Precision;
  /** KV-cache rows, up to the bundle's context_window (default) */
  contextWindowSize?: number;
  gpu?: GPU;
  adapter?: GPUAdapter;
  onPipeline?: (done: number, total: number) => void;
}
export class WebGPURuntime implements LanguageModel {
  static create(bundle: { manifest: Manifest; files: Map<string, ArrayBuffer> }, options?: RuntimeOptions): Promise<WebGPURuntime>;
  /** The device and every buffer, before the files: then addFile() each verified file and await ready(). */
  static begin(manifest: Manifest, options?: RuntimeOptions): Promise<WebGPURuntime>;
  addFile(path: string, buf: ArrayBuffer): void;
  ready(): Promise<void>;
  /** GPU bytes allocated, known before allocating */
  memoryEstimate: MemoryEstimate;
  device: GPUDevice;
  precision: Precision;
  adapterInfo: { vendor: string; architecture: string; description: string };
  vocabSize: number;
  contextWindow: number;
  prefillChunk: number;
  position: number;
  /** set once the device is lost; every later call throws it */
  lost: DeviceLostError | null;
  stats: { tokens: number; seconds: number };
  reset(): void;
  truncate(position: number): void;
  forward(ids: ArrayLike<number>): Promise<Float32Array>;
  /** forward() of one decode token resolving to argmax(logits) picked on the GPU (4 bytes read back) */
  forwardArgmax(ids: ArrayLike<number>): Promise<number>;
  /** Fresh cache; every position's logits ("score" program). */
  logits(ids: ArrayLike<number>): Promise<Float32Array[]>;
  /** Fresh cache; greedy ids, stopping at an eos id. */
  generate(ids: ArrayLike<number>, maxNewTokens: number): Promise<number[]>;
  destroy(): void;
}

// ---- OpenAI-style engine (src/engine.js, src/request.js) ---------------------------------
export class InvalidRequestError extends WebLLMError {
  constructor(message: string, param?: string | null);
  /** the request field at fault */
  param: string | null;
}
export class StopMatcher {
  constructor(stops: string[]);
  feed(text: string): [string, boolean];
  flush(): string;
}

export type FinishReason = "stop" | "length" | "tool_calls" | "abort";
/** Constrains the reply (xgrammar). WebLLM's forms too: json_object with a schema string, and grammar (EBNF). */
export type ResponseFormat =
  | { type: "text" }
  | { type: "json_object"; schema?: string }
  | { type: "json_schema"; json_schema: { name: string; schema?: Record<string, unknown>; strict?: boolean | null; description?: string } }
  | { type: "grammar"; grammar: string };
export interface ChatCompletionTool {
  type: "function";
  function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean | null };
}
export type ToolChoice = "none" | "auto" | "required" | { type: "function"; function: { name: string } };
export interface ChatCompletionMessageToolCall { id: string; type: "function"; function: { name: string; arguments: string } }
export interface ChoiceDeltaToolCall { index: number; id?: string; type?: "function"; function?: { name?: string; arguments?: string } }
export interface CompletionUsage { prompt_tokens: number; completion_tokens: number; total_tokens: number }
export interface TopLogprob { token: string; logprob: number; bytes: number[] | null }
export interface ChatCompletionTokenLogprob extends TopLogprob { top_logprobs: TopLogprob[] }
export interface ChoiceLogprobs { content: ChatCompletionTokenLogprob[] | null; refusal: null }
export interface ChatCompletionRequestBase {
  messages: ChatMessage[];
  model?: string;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  n?: number | null;
  /** integer in [0, 2^53 - n); same seed → same tokens as the Python engine */
  seed?: number | null;
  stop?: string | string[] | null;
  frequency_penalty?: number | null;
  presence_penalty?: number | null;
  repetition_penalty?: number | null;
  /** default: the bundle's generation.top_k, else 0 (no limit) */
  top_k?: number | null;
  /** in [0, 1]; default 0 (no limit) */
  min_p?: number | null;
  /** sample and decode eos ids like any token (the reply ends at max_tokens or a full window) */
  ignore_eos?: boolean | null;
  logit_bias?: Record<string, number> | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
  /** constrain the reply: a JSON object, a JSON schema, or an EBNF grammar */
  response_format?: ResponseFormat | null;
  /** functions the model may call; replies become message.tool_calls with finish_reason "tool_calls" */
  tools?: ChatCompletionTool[] | null;
  /** default "auto"; "required" / a named function constrain the reply to a call (it always parses) */
  tool_choice?: ToolChoice | null;
  /** default false (unlike OpenAI's API): one call per reply */
  parallel_tool_calls?: boolean | null;
  /** extra chat template variables, e.g. { enable_thinking: false } (not messages, tools, ...: those are the request's) */
  chat_template_kwargs?: Record<string, unknown> | null;
  /** accepted without effect */
  user?: string | null;
  metadata?: Record<string, string> | null;
  store?: boolean | null;
  service_tier?: string | null;
}
/** The fields every response object has (webllm_py/runtime/openai_types.py _Response): `O` is its object, `C` a choice. */
interface ResponseBase<O extends string, C> {
  id: string;
  object: O;
  created: number;
  model: string;
  choices: C[];
  system_fingerprint: null;
}
export interface ChatCompletionChoice {
  index: number;
  /** content is null when the reply is only tool calls */
  message: { role: "assistant"; content: string | null; refusal: null; tool_calls?: ChatCompletionMessageToolCall[] };
  finish_reason: FinishReason;
  logprobs: ChoiceLogprobs | null;
}
export interface ChatCompletion extends ResponseBase<"chat.completion", ChatCompletionChoice> {
  usage: CompletionUsage;
}
export interface ChatCompletionChunkChoice {
  index: number;
  /** tool calls arrive at the end: per call an id/name delta (arguments ""), then its arguments */
  delta: { role: "assistant" | null; content: string | null; refusal: null; tool_calls?: ChoiceDeltaToolCall[] };
  finish_reason: FinishReason | null;
  logprobs: ChoiceLogprobs | null;
}
/** choices is empty in the final usage chunk (stream_options.include_usage). */
export interface ChatCompletionChunk extends ResponseBase<"chat.completion.chunk", ChatCompletionChunkChoice> {
  usage: CompletionUsage | null;
}
/** Every other field (and echo, suffix, best_of, audio, ...) is refused with an InvalidRequestError naming it. */
export interface CompletionRequestBase extends Omit<ChatCompletionRequestBase, "messages" | "logprobs" | "top_logprobs" | "chat_template_kwargs" | "max_completion_tokens" | "response_format" | "tools" | "tool_choice" | "parallel_tool_calls"> {
  /** a string (tokenized with special tokens) or token ids */
  prompt: string | number[];
  /** number of top alternatives per token, 0..20 */
  logprobs?: number | null;
}
export interface CompletionChoice {
  index: number;
  text: string;
  finish_reason: FinishReason | null;
  logprobs: { tokens: string[]; token_logprobs: number[]; top_logprobs: Record<string, number>[]; text_offset: number[] } | null;
}
export interface Completion extends ResponseBase<"text_completion", CompletionChoice> {
  usage: CompletionUsage | null;
}
type Streaming = { stream: true; stream_options?: { include_usage?: boolean } | null };
type NotStreaming = { stream?: false | null; stream_options?: null };

export interface ChatCompletionsAPI {
  create(request: ChatCompletionRequestBase & NotStreaming, options?: RequestOptions): Promise<ChatCompletion>;
  create(request: ChatCompletionRequestBase & Streaming, options?: RequestOptions): Promise<AsyncIterableIterator<ChatCompletionChunk>>;
}
export interface CompletionsAPI {
  create(request: CompletionRequestBase & NotStreaming, options?: RequestOptions): Promise<Completion>;
  create(request: CompletionRequestBase & Streaming, options?: RequestOptions): Promise<AsyncIterableIterator<Completion>>;
}
/** Engine.runtimeStats(): the keys of webllm_py's Engine.runtime_stats. */
export interface RuntimeStats {
  prompt_tokens?: number;
  cached_tokens?: number;
  prefill_tokens?: number;
  prefill_seconds?: number;
  decode_tokens?: number;
  decode_seconds?: number;
  /** the grammar's CPU time (accept + mask) under response_format or a forced tool call */
  grammar_seconds?: number;
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
  [key: string]: number | undefined;
}
/** What Engine and WorkerEngine answer (declared once: each class merges it); `R` is reload()'s options. */
export interface EngineAPI<R = object> {
  chat: { completions: ChatCompletionsAPI };
  completions: CompletionsAPI;
  /** Stop the running generation after the current token (finish_reason "abort"). */
  interruptGenerate(): void;
  /** Empty the KV cache and the stats. */
  resetChat(): Promise<void>;
  /** the stats of the last finished request */
  runtimeStats(): RuntimeStats;
  runtimeStatsText(): Promise<string>;
  /** Free the GPU buffers and the device (a WorkerEngine: the worker's; the worker itself stays). */
  unload(): Promise<void>;
  /**
   * Serve another bundle (WebLLM's reload; see ./lifecycle LifecycleAPI): the running request
   * ends ("abort"), the bundle loads, then the old one is freed; a failed load keeps the old one.
   */
  reload(bundleUrl: string | URL, options?: R): Promise<void>;
  /** The reply text of the last request's first choice, so far (WebLLM's getMessage). */
  getMessage(): Promise<string>;
}
export interface Engine extends EngineAPI<EngineOptions> {}
export class Engine {
  constructor(model: LanguageModel, tokenizer: Tokenizer, options?: { manifest?: Manifest; modelName?: string });
  model: LanguageModel & Partial<WebGPURuntime>;
  tokenizer: Tokenizer;
  modelName: string;
  eosTokenIds: Set<number>;
  /** a language model does not embed: create() rejects with ModelKindError */
  embeddings: import("./embeddings").Embeddings;
}
export interface EngineOptions {
  /** monotonic; downloads fill 0..0.9, GPU upload and kernel compilation the rest; exactly 1 once ready */
  initProgressCallback?: (report: ProgressReport) => void;
  /** auto (default): idot on CPU adapters (SwiftShader) when the bundle has it, else f16 programs when the adapter has shader-f16, else f32 */
  precision?: "auto" | Precision;
  /** default true (Cache Storage) */
  cache?: CacheOption;
  /** @deprecated ignored: every cached file is verified on every load (see LoadOptions) */
  verifyCache?: boolean;
  signal?: AbortSignal;
  fetch?: typeof fetch;
  gpu?: GPU;
  adapter?: GPUAdapter;
  /** the `model` of responses (default: the manifest's model.id) */
  modelName?: string;
  /** KV-cache rows, up to the bundle's context_window (default); fewer use less GPU memory (runtime.memoryEstimate) */
  contextWindowSize?: number;
  /** a chat prompt past the window: "error" (default) or "slide" (drop the oldest turns, keep the system prompt) */
  contextOverflow?: ContextOverflow;
}
/** For an embedding bundle (manifest.embedding) it resolves to an EmbeddingEngine (./embeddings). */
export function CreateEngine(bundleUrl: string | URL, options?: EngineOptions): Promise<Engine>;
export * from "./embeddings";

// ---- worker engine (src/worker.js, src/worker_handler.js) --------------------------------
/** EngineOptions less what cannot cross to a worker: fetch, gpu, adapter and a cache object. */
export interface WorkerEngineOptions extends Omit<EngineOptions, "cache" | "fetch" | "gpu" | "adapter"> {
  /** true / false / a Cache Storage scope */
  cache?: boolean | string;
}
/** The worker runs the Engine; reload() there loads the new bundle, then unloads the old one. */
export interface WorkerEngine extends EngineAPI<WorkerEngineOptions> {}
export class WorkerEngine {
  constructor(worker: Worker);
  worker: Worker;
  modelName: string;
}
/** An engine inside `worker` (a module worker running WorkerEngineHandler, e.g. dist/worker.js). */
export function CreateWorkerEngine(worker: Worker, bundleUrl: string | URL, options?: WorkerEngineOptions): Promise<WorkerEngine>;
export class WorkerEngineHandler {
  constructor(scope?: { addEventListener: Function; postMessage: Function }, options?: { createEngine?: typeof CreateEngine });
  engine: Engine | null;
}
