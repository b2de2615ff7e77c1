// webllm-py: public API of the npm package.
//
// Layout (one job per module):
//   errors.js        typed errors            manifest.js  locate/parse/validate manifest.json
//   net.js           fetch + retry/backoff   cache.js     Cache-API-shaped cache backends
//   hash.js          sha256 (SubtleCrypto)   progress.js  byte-level load progress
//   loader.js        loadBundle & cache utils
//   sampler.js       docs/sampling.md        tokenizer.js tokenizer.json runtime + stream decoder
//   chat_template.js transformers-compatible chat templates
//   gpu_device.js    adapter/device/limits   runtime.js   WebGPU program interpreter
//   kv_sizing.js     contextWindowSize, memory estimate   context_policy.js  contextOverflow
//   request.js       request validation      token_bytes.js token bytes for logprobs
//   engine.js        CreateEngine, OpenAI-style chat/completions
//   engine_generate.js the generation loop  engine_chat.js, engine_completions.js  chat / text requests
//   worker.js        CreateWorkerEngine (page side)  worker_handler.js  the worker side
//   service_worker.js CreateServiceWorkerEngine (page)  service_worker_handler.js  the service worker
//   lifecycle.js     reload, a request's signal, getMessage

export * from "./errors.js";
export { BUNDLE_FORMAT, KNOWN_MAJOR, fetchManifest, fileUrl, parseManifest, resolveBundleUrl } from "./manifest.js";
export { CacheStorageCache, DEFAULT_CACHE_SCOPE, MemoryCache, NoCache, resolveCache } from "./cache.js";
export { deleteModelFromCache, hasModelInCache, loadBundle } from "./loader.js";
export { listCachedModels } from "./cache_list.js";
export { sha256Hex } from "./hash.js";
export {
  applyPenalties, argmax, logSoftmax, mix32, randomSeed, randomU32, sampleAdjusted, sampleFromProbs, sampleToken,
  softmaxProbs, sortDescending, uniform,
} from "./sampler.js";
export { StreamDecoder, Tokenizer } from "./tokenizer.js";
export { ChatTemplate, applyChatTemplate, selectChatTemplate } from "./chat_template.js";

export { ACT_BYTES, WebGPURuntime, bufferBytes, compileDim, compilePrograms, halfToFloat, planBuffers } from "./runtime.js";
export { MIN_CONTEXT, estimateMemory, resolveContextWindow } from "./kv_sizing.js";
export { ContextPolicy } from "./context_policy.js";
export { chooseProgramSet, choosePrecision, isCpuAdapter, requiredLimits, usableProgramSets } from "./gpu_device.js";
export { InvalidRequestError, StopMatcher } from "./request.js";
export { CreateEngine, Engine } from "./engine.js";
export { EmbeddingEngine, Embeddings, ModelKindError, WebGPUEncoder } from "./embeddings.js";
export { CreateWorkerEngine, WorkerEngine } from "./worker.js";
export { WorkerEngineHandler } from "./worker_handler.js";
export { CreateServiceWorkerEngine, ServiceWorkerEngine } from "./service_worker.js";
export { ServiceWorkerEngineHandler } from "./service_worker_handler.js";
