// Which request fields the engine knows: implemented, accepted without effect, or refused, as
// webllm_py/runtime/request_fields.py (same tables, same messages, same "did you mean"): a
// request never silently loses a field. Both are held to web/test/fixtures/strict_requests.json.
import { InvalidRequestError } from "./request.js";

const SAMPLING = ["temperature", "top_p", "top_k", "min_p", "seed", "frequency_penalty", "presence_penalty",
  "repetition_penalty", "logit_bias", "ignore_eos"];
export const CHAT_FIELDS = new Set([
  "messages", "model", "stream", "stream_options", "max_tokens", "max_completion_tokens", "n", "stop",
  "logprobs", "top_logprobs", "response_format", "tools", "tool_choice", "parallel_tool_calls",
  "chat_template_kwargs", ...SAMPLING,
]);
export const TEXT_FIELDS = new Set(["prompt", "model", "stream", "stream_options", "max_tokens", "n", "stop", "logprobs", ...SAMPLING]);
/** Accepted and dropped: they identify the caller or ask for server-side storage; no output changes. */
export const NO_EFFECT = new Set(["user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key"]);

const TEXT_ONLY = "the models this runtime runs are text-only";
/** @type {Record<string, string>} */
export const UNSUPPORTED_CHAT = {
  audio: `audio output is not supported (${TEXT_ONLY})`,
  modalities: `output modalities are not supported (${TEXT_ONLY}: the output is text)`,
  prediction: "predicted outputs are not supported",
  reasoning_effort: "reasoning_effort is not supported; a template's thinking switch goes in chat_template_kwargs (e.g. {\"enable_thinking\": false})",
  verbosity: "verbosity is not supported",
  web_search_options: "web search is not available to a local model",
  functions: "the deprecated functions field is not supported; use tools",
  function_call: "the deprecated function_call field is not supported; use tool_choice",
  extra_body: "extra_body is not a request field here: put its fields at the top level (enable_thinking goes in chat_template_kwargs)",
  enable_latency_breakdown: "enable_latency_breakdown is not supported; see runtime_stats()",
};
/** @type {Record<string, string>} */
export const UNSUPPORTED_TEXT = {
  echo: "echo is not supported",
  suffix: "suffix (fill-in-the-middle) is not supported",
  best_of: "best_of is not supported; use n",
  response_format: "response_format is only supported by chat completions",
  tools: "tools are only supported by chat completions",
  max_completion_tokens: "max_completion_tokens belongs to chat completions; use max_tokens",
  extra_body: UNSUPPORTED_CHAT.extra_body,
};

/** Levenshtein distance. @param {string} a @param {string} b */
function distance(a, b) {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur.push(Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = cur;
  }
  return prev[b.length];
}

/** Python's repr of a short str (what the Python engine's messages show). @param {string} s */
const pyRepr = (s) => (s.includes("'") && !s.includes('"') ? `"${s}"` : `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`);

/**
 * The known name closest to `name` ignoring case (ties: alphabetically first), if within 2 edits
 * and a third of the name's length.
 * @param {string} name @param {Iterable<string>} known @returns {string|null}
 */
export function suggest(name, known) {
  const low = name.toLowerCase().slice(0, 64);
  let best = null, bestD = Infinity;
  for (const k of [...known].sort()) {
    const d = distance(low, k.toLowerCase());
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best != null && bestD <= 2 && bestD <= Math.floor(low.length / 3) ? best : null;
}

/** @param {boolean} chat */
export function knownFields(chat) {
  return new Set([...(chat ? CHAT_FIELDS : TEXT_FIELDS), ...NO_EFFECT, ...Object.keys(chat ? UNSUPPORTED_CHAT : UNSUPPORTED_TEXT)]);
}

/**
 * InvalidRequestError naming the first unknown or unsupported field given (a null/undefined value
 * is "not given", as in OpenAI's API); fields are checked in sorted order.
 * @param {Record<string, unknown>} params @param {boolean} chat
 */
export function checkFields(params, chat) {
  const implemented = chat ? CHAT_FIELDS : TEXT_FIELDS;
  const unsupported = chat ? UNSUPPORTED_CHAT : UNSUPPORTED_TEXT;
  const api = chat ? "chat.completions" : "completions";
  const names = Object.keys(params).filter((k) => params[k] != null).sort();
  for (const name of names) {
    if (implemented.has(name) || NO_EFFECT.has(name)) continue;
    if (Object.hasOwn(unsupported, name)) throw new InvalidRequestError(`${name}: ${unsupported[name]}`, name);
    const shown = name.length <= 60 ? pyRepr(name) : `${pyRepr(name.slice(0, 57))}...`;
    const close = suggest(name, knownFields(chat));
    throw new InvalidRequestError(`unknown field ${shown} for ${api}${close ? ` (did you mean ${pyRepr(close)}?)` : ""}`, name.slice(0, 60));
  }
}
