// Tool calling: request checks, the template family's call format, its grammar and the parser,
// as webllm_py/runtime/tool_calls.py (same rules and messages; both are held to
// web/test/fixtures/tool_calls.json). Families, told apart by what the chat template writes:
//   hermes    <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>   Qwen2.5/3, and the default
//   llama3    {"name": ..., "parameters": {...}} (optionally after <|python_tag|>)   Llama 3.1/3.2
//   mistral   [TOOL_CALLS][{"name": ..., "arguments": {...}, "id": ...}]        Mistral Nemo
//   mistral11 [TOOL_CALLS]name[CALL_ID]id[ARGS]{...}                          Mistral Small 3.2
import { InvalidRequestError } from "./request.js";
import { pyShow } from "./structured.js";

const NAME = /^[A-Za-z0-9_-]{1,64}$/;
export const TOOL_PROMPT =
  "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n" +
  "You are provided with function signatures within <tools></tools> XML tags:\n<tools>" +
  "{% for tool in tools %}{{ '\\n' }}{{ tool | tojson }}{% endfor %}{{ '\\n' }}</tools>\n\n" +
  "For each function call, return a json object with function name and arguments within " +
  '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>';
export const TOOL_CALL_TEXT =
  '{% for c in calls %}{% if not loop.first %}{{ "\\n" }}{% endif %}<tool_call>\n{"name": {{ c.function.name | tojson }}, ' +
  '"arguments": {{ c.function.arguments | tojson }}}\n</tool_call>{% endfor %}';

/**
 * @typedef {{tools: any[], choice: string, parallel: boolean, named: boolean}} ToolPlan
 * @typedef {{name: string, arguments: string, id: string}} ToolCall
 * @typedef {{content: string|null, calls: ToolCall[]}} ParsedReply
 */

const fail = (/** @type {string} */ msg, /** @type {string} */ param) => new InvalidRequestError(msg, param);
const isObj = (/** @type {unknown} */ v) => typeof v === "object" && v !== null && !Array.isArray(v);

/** @param {number} i @param {any} t */
function checkTool(i, t) {
  const where = `tools[${i}]`;
  if (!isObj(t) || t.type !== "function") throw fail(`${where} must be {"type": "function", "function": {...}}, got ${pyShow(t)}`, "tools");
  const extra = Object.keys(t).filter((k) => k !== "type" && k !== "function").sort();
  if (extra.length) throw fail(`${where}: unknown field(s) ${pyShow(extra)}`, "tools");
  const f = t.function;
  if (!isObj(f)) throw fail(`${where}.function must be an object with a name, got ${pyShow(f)}`, "tools");
  const extraF = Object.keys(f).filter((k) => !["name", "description", "parameters", "strict"].includes(k)).sort();
  if (extraF.length) throw fail(`${where}.function: unknown field(s) ${pyShow(extraF)}`, "tools");
  if (typeof f.name !== "string" || !NAME.test(f.name)) throw fail(`${where}.function.name must be 1-64 letters, digits, _ or -, got ${pyShow(f.name)}`, "tools");
  if (f.description != null && typeof f.description !== "string") throw fail(`${where}.function.description must be a string, got ${pyShow(f.description)}`, "tools");
  if (f.parameters != null && !isObj(f.parameters)) throw fail(`${where}.function.parameters must be a JSON schema object, got ${pyShow(f.parameters)}`, "tools");
  if (f.strict != null && typeof f.strict !== "boolean") throw fail(`${where}.function.strict must be a bool, got ${pyShow(f.strict)}`, "tools");
  return { type: "function", function: Object.fromEntries(Object.entries(f).filter(([, v]) => v != null)) };
}

const CHOICE_SHAPES = 'tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}';

/** The request's tools, checked; null without tools. @param {any} tools @param {any} toolChoice @param {any} parallel @returns {ToolPlan|null} */
export function toolPlan(tools, toolChoice, parallel) {
  if (tools == null) {
    for (const [k, v] of [["tool_choice", toolChoice], ["parallel_tool_calls", parallel]]) if (v != null) throw fail(`${k} needs tools`, k);
    return null;
  }
  if (!Array.isArray(tools)) throw fail(`tools must be a list of functions, got ${pyShow(tools)}`, "tools");
  const checked = tools.map((t, i) => checkTool(i, t));
  const names = checked.map((t) => t.function.name);
  const dup = [...new Set(names.filter((n, i) => names.indexOf(n) !== i))].sort();
  if (dup.length) throw fail(`tools: function names must be unique, ${pyShow(dup)} repeat`, "tools");
  if (parallel != null && typeof parallel !== "boolean") throw fail(`parallel_tool_calls must be a bool, got ${pyShow(parallel)}`, "parallel_tool_calls");
  let choice = toolChoice ?? "auto";
  let named = false;
  if (isObj(choice)) {
    const fn = choice.function;
    const keys = Object.keys(choice).sort().join(",");
    if (choice.type !== "function" || !isObj(fn) || keys !== "function,type" || Object.keys(fn).join(",") !== "name") {
      throw fail(`${CHOICE_SHAPES}, got ${pyShow(choice)}`, "tool_choice");
    }
    if (!names.includes(fn.name)) throw fail(`tool_choice.function.name ${pyShow(fn.name)} is not one of the tools ${pyShow(names)}`, "tool_choice");
    [choice, named] = [fn.name, true];
  } else if (!["none", "auto", "required"].includes(choice)) {
    throw fail(`${CHOICE_SHAPES}, got ${pyShow(choice)}`, "tool_choice");
  }
  if (choice === "required" && !checked.length) throw fail('tool_choice "required" needs at least one tool', "tool_choice");
  // parallel_tool_calls defaults to false (tool_calls.py says why)
  return { tools: checked, choice, parallel: parallel === true, named };
}

/** A chat template's text (named templates joined). @param {any} template */
export function templateSource(template) {
  if (typeof template === "string") return template;
  if (Array.isArray(template)) return template.map((t) => String(t?.template ?? "")).join("\n");
  if (isObj(template)) return Object.values(template).map(String).join("\n");
  return "";
}

/** @param {string} src */
export function familyOf(src) {
  if (src.includes("[TOOL_CALLS]")) return src.includes("[ARGS]") ? "mistral11" : "mistral";
  if (src.includes("<tool_call>")) return "hermes";
  if (src.includes('"parameters"') && (src.includes("ipython") || src.includes("<|python_tag|>"))) return "llama3";
  return "hermes";
}

/** @param {string} src */
export const usesToolsVariable = (src) => /\btools\b/.test(src);

/** @param {string} family */
export function newCallId(family) {
  const b = new Uint8Array(12);
  globalThis.crypto.getRandomValues(b);
  if (family.startsWith("mistral")) {
    const abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    return Array.from(b.subarray(0, 9), (x) => abc[x % abc.length]).join("");
  }
  return `call_${Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("")}`;
}

/** @param {string} name @param {any} params @param {string} argsKey */
const callObject = (name, params, argsKey) => ({
  type: "object", properties: { name: { const: name }, [argsKey]: params }, required: ["name", argsKey], additionalProperties: false,
});

/**
 * The grammar a "required" or named tool_choice constrains the reply to (compact JSON except
 * mistral11's structural tag, as tool_calls.py's tool_grammar).
 * @param {ToolPlan} plan @param {string} family @returns {import("./grammar.js").GrammarSpec|null}
 */
export function toolGrammar(plan, family) {
  if (plan.choice === "none" || plan.choice === "auto") return null;
  const tools = plan.tools.filter((t) => !plan.named || t.function.name === plan.choice)
    .map((t) => [t.function.name, t.function.parameters ?? { type: "object" }]);
  const many = plan.parallel && !plan.named;
  if (family === "hermes") {
    const schema = { anyOf: tools.map(([n, p]) => callObject(n, p, "arguments")) };
    return { kind: "tags", source: JSON.stringify({ schema, begin: "<tool_call>\n", end: "\n</tool_call>", separator: "\n", many }), field: "tools" };
  }
  if (family === "llama3") return { kind: "json_schema", source: JSON.stringify({ anyOf: tools.map(([n, p]) => callObject(n, p, "parameters")) }), field: "tools" };
  if (family === "mistral") {
    const items = tools.map(([n, p]) => callObject(n, p, "arguments"));
    for (const it of items) it.properties.id = { type: "string", pattern: "^[A-Za-z0-9]{9}$" };
    return { kind: "json_schema", source: JSON.stringify({ type: "array", minItems: 1, items: { anyOf: items }, ...(many ? {} : { maxItems: 1 }) }), field: "tools" };
  }
  const calls = tools.map(([n, p]) => ({ type: "sequence", elements: [{ type: "const_string", value: `${n}[ARGS]` }, { type: "json_schema", json_schema: p }] }));
  const one = calls.length === 1 ? calls[0] : { type: "or", elements: calls };
  const fmt = { type: "tags_with_separator", separator: "[TOOL_CALLS]", at_least_one: true, stop_after_first: !many,
    tags: [{ type: "tag", begin: "", content: one, end: "" }] };
  return { kind: "structural_tag", source: JSON.stringify({ type: "structural_tag", format: fmt }), field: "tools" };
}

// ---- parsing ----------------------------------------------------------------------------------

/** The end of the JSON value starting at text[i] (strings and brackets only); -1 if it does not end. @param {string} text @param {number} i */
export function jsonValueEnd(text, i) {
  if (i >= text.length) return -1;
  const c = text[i];
  if (c === '"') {
    for (let j = i + 1; j < text.length; j++) {
      if (text[j] === "\\") j++;
      else if (text[j] === '"') return j + 1;
    }
    return -1;
  }
  if (c === "{" || c === "[") {
    let depth = 0, inStr = false;
    for (let j = i; j < text.length; j++) {
      const ch = text[j];
      if (inStr) {
        if (ch === "\\") j++;
        else if (ch === '"') inStr = false;
      } else if (ch === '"') inStr = true;
      else if (ch === "{" || ch === "[") depth++;
      else if (ch === "}" || ch === "]") if (--depth === 0) return j + 1;
    }
    return -1;
  }
  const m = /^(-?[0-9][0-9eE.+-]*|true|false|null)/.exec(text.slice(i));
  return m ? i + m[0].length : -1;
}

const parse = (/** @type {string} */ s) => {
  try {
    return { ok: true, v: JSON.parse(s) };
  } catch {
    return { ok: false, v: undefined };
  }
};
const WS = " \t\r\n";

/** The raw text of a top-level member of a JSON object's text. @param {string} obj @param {string} key */
function memberText(obj, key) {
  let i = 1;
  const n = obj.length;
  while (i < n) {
    while (i < n && (WS + ",").includes(obj[i])) i++;
    if (i >= n || obj[i] !== '"') return null;
    const kEnd = jsonValueEnd(obj, i);
    if (kEnd < 0) return null;
    const k = JSON.parse(obj.slice(i, kEnd));
    i = kEnd;
    while (i < n && (WS + ":").includes(obj[i])) i++;
    const vEnd = jsonValueEnd(obj, i);
    if (vEnd < 0) return null;
    if (k === key) return obj.slice(i, vEnd);
    i = vEnd;
  }
  return null;
}

/** @param {string} objText @param {string} argsKey @param {string} family @returns {ToolCall|null} */
function callFrom(objText, argsKey, family) {
  const { ok, v: obj } = parse(objText);
  if (!ok || !isObj(obj) || typeof obj.name !== "string") return null;
  const key = argsKey in obj ? argsKey : "arguments" in obj ? "arguments" : "parameters" in obj ? "parameters" : null;
  const args = key ? memberText(objText, key) : "{}";
  if (args == null || (key && !isObj(obj[key]))) return null;
  return { name: obj.name, arguments: args, id: typeof obj.id === "string" && family === "mistral" ? obj.id : "" };
}

/** @type {Record<string, (text: string, family: string) => ParsedReply>} */
const PARSERS = {
  hermes(text, family) {
    const calls = [];
    let first = -1;
    for (const m of text.matchAll(/<tool_call>\s*/g)) {
      const start = /** @type {number} */ (m.index) + m[0].length;
      const end = text[start] === "{" ? jsonValueEnd(text, start) : -1;
      const call = end > 0 ? callFrom(text.slice(start, end), "arguments", family) : null;
      if (!call) return { content: text, calls: [] };
      calls.push(call);
      if (first < 0) first = /** @type {number} */ (m.index);
    }
    return calls.length ? { content: text.slice(0, first).trimEnd() || null, calls } : { content: text, calls: [] };
  },
  llama3(text, family) {
    let body = text.trim();
    if (body.startsWith("<|python_tag|>")) body = body.slice("<|python_tag|>".length).trimStart();
    const calls = [];
    let i = 0;
    while (body.startsWith("{", i)) {
      const end = jsonValueEnd(body, i);
      const call = end > 0 ? callFrom(body.slice(i, end), "parameters", family) : null;
      if (!call) return { content: text, calls: [] };
      calls.push(call);
      i = end;
      while (i < body.length && (WS + ";").includes(body[i])) i++;
    }
    return calls.length && i === body.length ? { content: null, calls } : { content: text, calls: [] };
  },
  mistral(text, family) {
    const at = text.indexOf("[TOOL_CALLS]");
    const head = at >= 0 ? text.slice(0, at).trimEnd() : "";
    const body = (at >= 0 ? text.slice(at + "[TOOL_CALLS]".length) : text).trimStart();
    const end = body.startsWith("[") ? jsonValueEnd(body, 0) : -1;
    const { ok, v: items } = end > 0 ? parse(body.slice(0, end)) : { ok: false, v: null };
    if (!ok || !Array.isArray(items) || !items.length) return { content: text, calls: [] };
    const calls = [];
    let i = 1;
    for (let k = 0; k < items.length; k++) {
      while ((WS + ",").includes(body[i])) i++;
      const j = jsonValueEnd(body, i);
      const call = callFrom(body.slice(i, j), "arguments", family);
      if (!call) return { content: text, calls: [] };
      calls.push(call);
      i = j;
    }
    return { content: head || null, calls };
  },
  mistral11(text) {
    const re = /\s*(?:\[TOOL_CALLS\])?\s*([A-Za-z0-9_-]{1,64})(?:\[CALL_ID\]([A-Za-z0-9]+))?\[ARGS\]/y;
    re.lastIndex = 0;
    const at = re.test(text) ? 0 : text.indexOf("[TOOL_CALLS]");
    const [head, start] = at >= 0 ? [text.slice(0, at).trimEnd(), at] : ["", 0];
    const calls = [];
    let pos = start;
    while (pos < text.length) {
      re.lastIndex = pos;
      const m = re.exec(text);
      if (!m) break;
      const argStart = m.index + m[0].length;
      const end = jsonValueEnd(text, argStart);
      const p = end > 0 ? parse(text.slice(argStart, end)) : { ok: false, v: null };
      if (!p.ok || !isObj(p.v)) return { content: text, calls: [] };
      calls.push({ name: m[1], arguments: text.slice(argStart, end), id: m[2] ?? "" });
      pos = end;
    }
    if (!calls.length || text.slice(pos).trim()) return { content: text, calls: [] };
    return { content: head || null, calls };
  },
};

/** @param {string} family @param {string} text @returns {ParsedReply} */
export const parseToolCalls = (family, text) => PARSERS[family](text, family);

// ---- streaming --------------------------------------------------------------------------------

/** @type {Record<string, string[]>} */
const ANYWHERE = { hermes: ["<tool_call>"], llama3: [], mistral: ["[TOOL_CALLS]"], mistral11: ["[TOOL_CALLS]"] };
/** @type {Record<string, string[]>} */
const AT_START = { hermes: [], llama3: ["{", "<|python_tag|>"], mistral: ["["], mistral11: [] };

/** @param {string} s @returns {"call"|"maybe"|"text"} */
function mistral11Start(s) {
  const m = /^[A-Za-z0-9_-]{0,65}/.exec(s);
  const len = m ? m[0].length : 0;
  if (len > 64) return "text";
  const rest = s.slice(len);
  if (len > 0 && (rest.startsWith("[ARGS]") || rest.startsWith("[CALL_ID]"))) return "call";
  return "[ARGS]".startsWith(rest) || "[CALL_ID]".startsWith(rest) ? "maybe" : "text";
}

/** Streams a tool-mode reply's content, holding back what may be a call (as tool_calls.py's ToolStream). */
export class ToolStream {
  /** @param {string} family @param {boolean} [constrained] */
  constructor(family, constrained = false) {
    this.family = family;
    this.text = "";
    this.sent = 0;
    this.held = constrained;
  }

  /** @param {string} piece @returns {string} content safe to emit now */
  feed(piece) {
    this.text += piece;
    if (this.held) return "";
    const t = this.text;
    if (this.sent === 0 && this.family === "mistral11") {
      const start = mistral11Start(t.trimStart());
      if (start === "call") this.held = true;
      if (start !== "text") return "";
    }
    const atStart = AT_START[this.family];
    if (this.sent === 0 && atStart.length) {
      const s = t.trimStart();
      if (atStart.some((m) => s.startsWith(m))) {
        this.held = true;
        return "";
      }
      if (!s || atStart.some((m) => m.startsWith(s))) return "";
    }
    let cut = t.length;
    for (const m of ANYWHERE[this.family]) {
      const i = t.indexOf(m, this.sent);
      if (i >= 0) {
        cut = Math.min(cut, i);
        this.held = true;
        continue;
      }
      for (let k = Math.min(m.length - 1, t.length - this.sent); k > 0; k--) {
        if (t.endsWith(m.slice(0, k))) {
          cut = Math.min(cut, t.length - k);
          break;
        }
      }
    }
    const keep = t.slice(this.sent, cut).trimEnd(); // trailing whitespace waits: it is not content before a call
    this.sent += keep.length;
    return keep;
  }
}
