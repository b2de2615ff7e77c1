// webllm-py: public API of the npm package.
//
// Layout (one job per module):
//   errors.js        typed errors            manifest.js  locate/parse/validate manifest.json
//   net.js           fetch + retry/backoff   cache.js     Cache-API-shaped cache backends
//   hash.js          sha256 (SubtleCrypto)   progress.js  byte-level load progress
//   loader.js        loadBundle & cache utils
//   sampler.js       docs/sampling.md        tokenizer.js tokenizer.json runtime + stream decoder
//   chat_template.js transformers-compatible chat templates

export * from "./errors.js";
export { BUNDLE_FORMAT, KNOWN_MAJOR, fetchManifest, fileUrl, parseManifest, resolveBundleUrl } from "./manifest.js";
export { CacheStorageCache, DEFAULT_CACHE_SCOPE, MemoryCache, NoCache, resolveCache } from "./cache.js";
export { deleteModelFromCache, hasModelInCache, loadBundle } from "./loader.js";
export { sha256Hex } from "./hash.js";
export {
  applyPenalties, argmax, logSoftmax, mix32, randomSeed, randomU32, sampleAdjusted, sampleFromProbs, sampleToken,
  softmaxProbs, sortDescending, uniform,
} from "./sampler.js";
export { StreamDecoder, Tokenizer } from "./tokenizer.js";
export { ChatTemplate, applyChatTemplate, selectChatTemplate } from "./chat_template.js";

// Engine (WebGPU program interpreter + OpenAI-style chat.completions) goes here:
//   export { CreateEngine, Engine } from "./engine.js";
