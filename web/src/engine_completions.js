// The (legacy) text-completion side of the Engine (engine.js), as
// webllm_py/runtime/text_completion.py: tokenize the prompt with special tokens (or take its
// token ids), OpenAI text_completion objects and chunks from the generation loop
// (engine_generate.js), logprobs in the legacy layout.
import { attachSignal } from "./lifecycle.js";
import { InvalidRequestError } from "./request.js";
import { checkFields } from "./request_fields.js";
import { runRequest, streamRequest } from "./engine_generate.js";
import { newId, now } from "./engine_ids.js";

/**
 * @typedef {import("./engine.js").Engine} Engine
 * @typedef {import("./request.js").Request} Request
 * @typedef {import("./engine_generate.js").TokenInfo} TokenInfo
 */

/** @param {Engine} engine @param {any} prompt @returns {number[]} */
function completionPrompt(engine, prompt) {
  let ids;
  if (typeof prompt === "string") ids = engine.tokenizer.encode(prompt, { addSpecialTokens: true });
  else if (Array.isArray(prompt) && prompt.length && prompt.every((t) => Number.isSafeInteger(t))) {
    ids = [...prompt];
    const V = engine.model.vocabSize;
    if (ids.some((t) => t < 0 || t >= V)) throw new InvalidRequestError(`prompt: token ids must be in [0, ${V})`, "prompt");
  } else {
    throw new InvalidRequestError("prompt must be a string or a non-empty list of token ids (batches are not supported)", "prompt");
  }
  if (!ids.length) throw new InvalidRequestError("prompt is empty (it tokenizes to no tokens)", "prompt");
  return ids;
}

/** @param {Engine} engine @param {TokenInfo[]} infos */
function legacyLogprobs(engine, infos) {
  const tb = engine._bytes();
  return {
    tokens: infos.map((i) => tb.text(i.token)),
    token_logprobs: infos.map((i) => i.logprob),
    top_logprobs: infos.map((i) => Object.fromEntries(i.top.map(([t, lp]) => [tb.text(t), lp]))),
    text_offset: infos.map((i) => i.offset),
  };
}

/**
 * Engine.createCompletion: validate, tokenize (the context policy checks the window), run or stream.
 * @param {Engine} engine @param {Record<string, any>} params @param {{signal?: AbortSignal}} [requestOptions]
 */
export async function createCompletion(engine, params, requestOptions) {
  engine._checkUsable();
  checkFields({ prompt: true, ...params }, false);
  const { prompt, ...rest } = params ?? {};
  const ids = engine._context.check(engine.model, engine.manifest.context_window ?? engine.model.contextWindow, completionPrompt(engine, prompt));
  const req = attachSignal(engine._validate(ids, rest, false), requestOptions);
  if (req.stream) return completionStream(engine, req);
  const results = await runRequest(engine, req);
  const ct = results.reduce((a, r) => a + r.tokens, 0);
  return {
    id: newId("cmpl"),
    choices: results.map((r, k) => ({
      index: k, text: r.text, finish_reason: r.finish, logprobs: req.logprobs ? legacyLogprobs(engine, r.infos) : null,
    })),
    created: now(),
    model: req.model,
    object: "text_completion",
    usage: { prompt_tokens: ids.length, completion_tokens: ct, total_tokens: ids.length + ct },
    system_fingerprint: null,
  };
}

/** @param {Engine} engine @param {Request} req */
async function* completionStream(engine, req) {
  const id = newId("cmpl"), created = now();
  const piece = (/** @type {any[]} */ choices, /** @type {any} */ usage = null) => ({
    id, choices, created, model: req.model, object: "text_completion", usage, system_fingerprint: null,
  });
  let ntok = 0;
  for await (const p of streamRequest(engine, req)) {
    ntok = p.ntok;
    let lp = req.logprobs ? legacyLogprobs(engine, p.infos) : null;
    if (p.text) {
      yield piece([{ index: 0, text: p.text, finish_reason: null, logprobs: lp }]);
      lp = req.logprobs ? legacyLogprobs(engine, []) : null;
    }
    if (p.finish) yield piece([{ index: 0, text: "", finish_reason: p.finish, logprobs: lp }]);
  }
  if (req.includeUsage) {
    const P = req.promptIds.length;
    yield piece([], { prompt_tokens: P, completion_tokens: ntok, total_tokens: P + ntok });
  }
}
