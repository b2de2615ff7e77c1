// Tool calling in a chat request, as webllm_py/runtime/tool_chat.py: the prompt side (messages and
// the template's tools) and the reply side (message.tool_calls, finish_reason "tool_calls",
// streamed tool-call deltas). The formats are tool_calls.js's.
import { ChatTemplate } from "./chat_template.js";
import { InvalidRequestError } from "./request.js";
import { pyShow } from "./structured.js";
import {
  TOOL_CALL_TEXT, TOOL_PROMPT, ToolStream, familyOf, newCallId, parseToolCalls, templateSource, usesToolsVariable,
} from "./tool_calls.js";

/**
 * @typedef {{plan: import("./tool_calls.js").ToolPlan, family: string, templateHasTools: boolean, constrained: boolean, parses: boolean}} ToolMode
 */

/** @param {import("./tool_calls.js").ToolPlan|null} plan @param {any} template @returns {ToolMode|null} */
export function toolMode(plan, template) {
  if (!plan) return null;
  const src = templateSource(template);
  return { plan, family: familyOf(src), templateHasTools: usesToolsVariable(src),
    constrained: plan.choice !== "none" && plan.choice !== "auto", parses: plan.choice !== "none" };
}

const DUMMY = [{ role: "system", content: "" }];

/** @param {number} i @param {number} j @param {any} call */
function callArguments(i, j, call) {
  const where = `messages[${i}].tool_calls[${j}]`;
  if (!call || typeof call !== "object" || !call.function || typeof call.function !== "object") {
    throw new InvalidRequestError(`${where} must be {id, type: function, function: {name, arguments}}, got ${pyShow(call)}`, "messages");
  }
  const fn = { ...call.function };
  if (typeof fn.name !== "string") throw new InvalidRequestError(`${where}.function.name must be a string, got ${pyShow(fn.name)}`, "messages");
  let args = fn.arguments ?? "{}";
  if (typeof args === "string") {
    try {
      args = args.trim() ? JSON.parse(args) : {};
    } catch {
      throw new InvalidRequestError(`${where}.function.arguments is not valid JSON: ${pyShow(args)}`, "messages");
    }
  }
  if (!args || typeof args !== "object" || Array.isArray(args)) throw new InvalidRequestError(`${where}.function.arguments must be a JSON object, got ${pyShow(args)}`, "messages");
  return { ...call, function: { ...fn, arguments: args } };
}

/**
 * Messages as the template gets them (tool_chat.py's prompt_messages).
 * @param {any[]} msgs @param {ToolMode|null} mode @param {any} template
 */
export function promptMessages(msgs, mode, template) {
  const knowsCalls = templateSource(template).includes("tool_calls");
  const out = msgs.map((m0, i) => {
    let m = { ...m0 };
    if (m.tool_calls != null) {
      if (m.role !== "assistant" || !Array.isArray(m.tool_calls)) throw new InvalidRequestError(`messages[${i}].tool_calls must be a list, on an assistant message`, "messages");
      m.tool_calls = m.tool_calls.map((/** @type {any} */ c, /** @type {number} */ j) => callArguments(i, j, c));
      if (m.content == null) m.content = ""; // OpenAI sends null; templates (Qwen3's) read message.content
      if (!knowsCalls) {
        const calls = new ChatTemplate(TOOL_CALL_TEXT).render(DUMMY, { kwargs: { calls: m.tool_calls } });
        delete m.tool_calls;
        m.content = m.content ? `${m.content}\n${calls}` : calls;
      }
    }
    if (m.role === "tool") {
      if (typeof m.tool_call_id !== "string") throw new InvalidRequestError(`messages[${i}].tool_call_id is required for role 'tool' (the id of the call it answers)`, "messages");
      if (!knowsCalls) m = { role: "user", content: `<tool_response>\n${m.content}\n</tool_response>` };
    }
    return m;
  });
  if (mode && !mode.templateHasTools) {
    const prompt = new ChatTemplate(TOOL_PROMPT).render(DUMMY, { tools: mode.plan.tools });
    if (out.length && out[0].role === "system") out[0] = { ...out[0], content: `${out[0].content}\n\n${prompt}` };
    else out.unshift({ role: "system", content: prompt });
  }
  return out;
}

/** The template's tools variable. @param {ToolMode|null} mode */
export const templateTools = (mode) => (mode && mode.templateHasTools ? mode.plan.tools : null);

/** @param {ToolMode} mode @param {string} text @param {import("./tool_calls.js").ParsedReply} parsed @param {string|null} finish */
function message(mode, text, parsed, finish) {
  if (!parsed.calls.length || finish !== "stop") return { message: { role: "assistant", content: text, refusal: null }, finish };
  const tool_calls = parsed.calls.map((c) => ({ id: c.id || newCallId(mode.family), type: "function", function: { name: c.name, arguments: c.arguments } }));
  return { message: { role: "assistant", content: parsed.content, refusal: null, tool_calls }, finish: "tool_calls" };
}

/** A finished reply's message and finish_reason. @param {ToolMode|null} mode @param {string} text @param {string|null} finish */
export function reply(mode, text, finish) {
  if (!mode || !mode.parses) return { message: { role: "assistant", content: text, refusal: null }, finish };
  return message(mode, text, parseToolCalls(mode.family, text), finish);
}

/** The streamed form of reply: content deltas as they become safe, tool-call deltas at the end. */
export class StreamedReply {
  /** @param {ToolMode|null} mode */
  constructor(mode) {
    this.mode = mode;
    this.stream = mode && mode.parses ? new ToolStream(mode.family, mode.constrained) : null;
  }

  /** @param {string} piece */
  content(piece) {
    return this.stream ? this.stream.feed(piece) : piece;
  }

  /** (delta, finish) pairs closing the reply. @param {string|null} finish @returns {[any, string|null][]} */
  end(finish) {
    if (!this.stream || !this.mode) return [[{}, finish]];
    const { sent, text } = this.stream;
    const r = message(this.mode, text, parseToolCalls(this.mode.family, text), finish);
    const rest = r.message.tool_calls ? (r.message.content ?? "").slice(sent) : text.slice(sent);
    /** @type {[any, string|null][]} */
    const out = rest ? [[{ content: rest }, null]] : [];
    (r.message.tool_calls ?? []).forEach((/** @type {any} */ c, /** @type {number} */ k) => {
      out.push([{ tool_calls: [{ index: k, id: c.id, type: "function", function: { name: c.function.name, arguments: "" } }] }, null]);
      out.push([{ tool_calls: [{ index: k, function: { arguments: c.function.arguments } }] }, null]);
    });
    out.push([{}, r.finish]);
    return out;
  }
}
