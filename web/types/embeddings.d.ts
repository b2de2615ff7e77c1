// Types of src/embeddings.js: embedding bundles (engine.embeddings.create, OpenAI's shape).
import type { WebLLMError } from "./index";

/** A request the loaded model cannot serve: chat with an embedding model, embed with a language model. */
export class ModelKindError extends WebLLMError {}

export interface EmbeddingCreateParams {
  /** a string, strings, token ids, or lists of token ids (at most 2048); texts are truncated at max_seq_length */
  input: string | string[] | number[] | number[][];
  model?: string;
  /** 1..dimensions: Matryoshka truncation (renormalized when the model normalizes) */
  dimensions?: number;
  /** "float" (default) or "base64" (little-endian float32) */
  encoding_format?: "float" | "base64";
  user?: string;
}
export interface CreateEmbeddingResponse {
  object: "list";
  data: { object: "embedding"; index: number; embedding: number[] | string }[];
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}
export class Embeddings {
  create(params: EmbeddingCreateParams): Promise<CreateEmbeddingResponse>;
}
/** The encode program of an embedding bundle on a GPUDevice. */
export class WebGPUEncoder {
  precision: "f32" | "f16" | "idot";
  dimensions: number;
  maxSeqLength: number;
  encode(tokenRows: number[][]): Promise<Float32Array[]>;
  destroy(): void;
}
/** What CreateEngine resolves to for an embedding bundle. */
export class EmbeddingEngine {
  modelName: string;
  encoder: WebGPUEncoder;
  embeddings: Embeddings;
  /** reject with ModelKindError: an embedding model cannot chat */
  chat: { completions: { create(params: unknown): Promise<never> } };
  completions: { create(params: unknown): Promise<never> };
  runtimeStats(): { embedTokens: number; embedSeconds: number; precision: string };
  unload(): Promise<void>;
}
