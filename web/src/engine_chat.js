// The chat side of the Engine (engine.js), as webllm_py/runtime/chat_completion.py: render the
// bundle's chat template (add_generation_prompt) over the validated messages and tokenize
// without special tokens; response_format / tool-call grammars; OpenAI chat.completion objects
// and chunks from the generation loop (engine_generate.js), tool calls parsed out of the reply
// (tool_chat.js).
import { applyChatTemplate } from "./chat_template.js";
import { attachSignal } from "./lifecycle.js";
import { InvalidRequestError } from "./request.js";
import { checkFields } from "./request_fields.js";
import { responseFormatSpec } from "./structured.js";
import { toolGrammar, toolPlan } from "./tool_calls.js";
import { StreamedReply, promptMessages, reply, templateTools, toolMode } from "./tool_chat.js";
import { runRequest, streamRequest } from "./engine_generate.js";
import { newId, now } from "./engine_ids.js";

/**
 * @typedef {import("./engine.js").Engine} Engine
 * @typedef {import("./request.js").Request} Request
 * @typedef {import("./engine_generate.js").TokenInfo} TokenInfo
 */

const ROLES = ["system", "developer", "user", "assistant", "tool"];

/** @param {Engine} engine @param {any} messages @param {any} templateKwargs @param {import("./tool_chat.js").ToolMode|null} [mode] @returns {number[]} */
export function chatPrompt(engine, messages, templateKwargs, mode = null) {
  if (!Array.isArray(messages) || !messages.length) {
    throw new InvalidRequestError("messages must be a non-empty list of {role, content} objects", "messages");
  }
  const msgs = messages.map((m, i) => {
    if (!m || typeof m !== "object" || Array.isArray(m)) throw new InvalidRequestError(`messages[${i}] must be an object with role and content`, "messages");
    const role = m.role;
    if (!ROLES.includes(role)) throw new InvalidRequestError(`messages[${i}].role must be one of ${JSON.stringify(ROLES)}, got ${JSON.stringify(role)}`, "messages");
    let content = m.content;
    if (Array.isArray(content)) {
      content = content.map((part, j) => {
        if (!part || part.type !== "text" || typeof part.text !== "string") {
          throw new InvalidRequestError(`messages[${i}].content[${j}]: only text parts are supported`, "messages");
        }
        return part.text;
      }).join("");
    } else if (content == null) {
      if (role !== "assistant") throw new InvalidRequestError(`messages[${i}].content is required for role "${role}"`, "messages");
    } else if (typeof content !== "string") {
      throw new InvalidRequestError(`messages[${i}].content must be a string or a list of text parts`, "messages");
    }
    // OpenAI's "developer" role is the system prompt for templates, which know "system".
    return { ...m, role: role === "developer" ? "system" : role, content };
  });
  if (templateKwargs != null && (typeof templateKwargs !== "object" || Array.isArray(templateKwargs))) {
    throw new InvalidRequestError("chat_template_kwargs must be an object", "chat_template_kwargs");
  }
  for (const k of Object.keys(templateKwargs ?? {})) {
    if (["messages", "add_generation_prompt", "tools", "documents"].includes(k)) {
      throw new InvalidRequestError(`chat_template_kwargs.${k} is not allowed: the engine sets that template variable itself${k === "tools" ? " (give tools as the request field tools)" : ""}`, "chat_template_kwargs");
    }
  }
  const template = engine.tokenizer.config?.chat_template;
  return applyChatTemplate(engine.tokenizer, promptMessages(msgs, mode, template), {
    add_generation_prompt: true, kwargs: templateKwargs ?? {}, tools: templateTools(mode),
  }).ids;
}

/** @param {Engine} engine @param {TokenInfo[]} infos */
function chatLogprobs(engine, infos) {
  const tb = engine._bytes();
  const entry = (/** @type {number} */ t, /** @type {number} */ lp) => ({ token: tb.text(t), logprob: lp, bytes: Array.from(tb.bytes(t)) });
  return {
    content: infos.map((i) => ({ ...entry(i.token, i.logprob), top_logprobs: i.top.map(([t, lp]) => entry(t, lp)) })),
    refusal: null,
  };
}

/**
 * Engine.createChatCompletion: validate, build the prompt (fitted to the window by the context
 * policy) and the grammar, run or stream.
 * @param {Engine} engine @param {Record<string, any>} params @param {{signal?: AbortSignal}} [requestOptions]
 */
export async function createChatCompletion(engine, params, requestOptions) {
  engine._checkUsable();
  checkFields({ messages: true, ...params }, true);
  const { messages, chat_template_kwargs, response_format, tools, tool_choice, parallel_tool_calls, ...rest } = params ?? {};
  const spec = responseFormatSpec(response_format);
  const mode = toolMode(toolPlan(tools, tool_choice, parallel_tool_calls), engine.tokenizer.config?.chat_template);
  if (spec && mode?.constrained) {
    throw new InvalidRequestError('response_format cannot be combined with tool_choice "required" or a named function (the reply is then the call)', "response_format");
  }
  const prompt = engine._context.fitChat(engine.model, engine.manifest.context_window ?? engine.model.contextWindow, messages,
    (/** @type {any} */ m) => chatPrompt(engine, m, chat_template_kwargs, mode), rest.max_tokens ?? rest.max_completion_tokens);
  const req = attachSignal(engine._validate(prompt, rest, true), requestOptions);
  const grammar = spec ?? (mode ? toolGrammar(mode.plan, mode.family) : null);
  if (grammar) {
    if (req.ignoreEos) throw new InvalidRequestError(`ignore_eos cannot be combined with ${grammar.field.split(".")[0]}: the grammar ends the reply with eos`, "ignore_eos");
    req.grammar = await (await engine._grammarEngine()).compile(grammar);
  }
  req.keepSpecial = mode?.parses ?? false;
  if (req.stream) return chatStream(engine, req, mode);
  const results = await runRequest(engine, req);
  const ct = results.reduce((a, r) => a + r.tokens, 0);
  return {
    id: newId("chatcmpl"),
    choices: results.map((r, k) => {
      const { message, finish } = reply(mode, r.text, r.finish);
      return { index: k, message, finish_reason: finish, logprobs: req.logprobs ? chatLogprobs(engine, r.infos) : null };
    }),
    created: now(),
    model: req.model,
    object: "chat.completion",
    usage: { prompt_tokens: prompt.length, completion_tokens: ct, total_tokens: prompt.length + ct },
    system_fingerprint: null,
  };
}

/** @param {Engine} engine @param {Request} req @param {import("./tool_chat.js").ToolMode|null} mode */
async function* chatStream(engine, req, mode) {
  const id = newId("chatcmpl"), created = now();
  const chunk = (/** @type {any[]} */ choices, /** @type {any} */ usage = null) => ({
    id, choices, created, model: req.model, object: "chat.completion.chunk", usage, system_fingerprint: null,
  });
  const choice = (/** @type {any} */ delta, /** @type {string|null} */ finish = null, /** @type {any} */ logprobs = null) =>
    ({ index: 0, delta: { role: null, content: null, refusal: null, ...delta }, finish_reason: finish, logprobs });
  yield chunk([choice({ role: "assistant", content: "" })]);
  let ntok = 0;
  const out = new StreamedReply(mode); // holds back what may be a tool call (tool_chat.js)
  for await (const piece of streamRequest(engine, req)) {
    ntok = piece.ntok;
    let lp = req.logprobs ? chatLogprobs(engine, piece.infos) : null;
    const text = out.content(piece.text);
    if (text) {
      yield chunk([choice({ content: text }, null, lp)]);
      lp = req.logprobs ? chatLogprobs(engine, []) : null;
    }
    if (piece.finish) {
      for (const [delta, fin] of out.end(piece.finish)) {
        yield chunk([choice(delta, fin, lp)]);
        lp = req.logprobs ? chatLogprobs(engine, []) : null;
      }
    }
  }
  if (req.includeUsage) {
    const P = req.promptIds.length;
    yield chunk([], { prompt_tokens: P, completion_tokens: ntok, total_tokens: P + ntok });
  }
}
