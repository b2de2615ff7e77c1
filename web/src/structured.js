// `response_format` of a chat request as a GrammarSpec (grammar.js), or null for free text: the
// same shapes, checks and messages as webllm_py/runtime/structured.py.
//   {type: "text"} | {type: "json_object"[, schema: "<JSON schema string>"]} (WebLLM's schema form)
//   | {type: "json_schema", json_schema: {name, schema, strict, description}} | {type: "grammar", grammar: "<EBNF>"}
import { InvalidRequestError } from "./request.js";

const NAME = /^[A-Za-z0-9_-]{1,64}$/;
/** @type {Record<string, string[]>} keys allowed per type (besides "type") */
const KEYS = { text: [], json_object: ["schema"], json_schema: ["json_schema"], grammar: ["grammar"] };
const JSON_SCHEMA_KEYS = ["name", "schema", "strict", "description"];
export const ANY_OBJECT = '{"type": "object"}';

/** Python's repr of a value, short (the Python engine's messages show repr). @param {unknown} v */
export function pyShow(v, limit = 60) {
  /** @type {(x: any) => string} */
  const r = (x) => {
    if (x === null || x === undefined) return "None";
    if (x === true) return "True";
    if (x === false) return "False";
    if (typeof x === "string") return x.includes("'") && !x.includes('"') ? `"${x}"` : `'${x.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
    if (Array.isArray(x)) return `[${x.map(r).join(", ")}]`;
    if (typeof x === "object") return `{${Object.entries(x).map(([k, val]) => `${r(k)}: ${r(val)}`).join(", ")}}`;
    return String(x);
  };
  const s = r(v);
  return s.length <= limit ? s : `${s.slice(0, limit - 3)}...`;
}

const fail = (/** @type {string} */ msg) => new InvalidRequestError(msg, "response_format");
const isObj = (/** @type {unknown} */ v) => typeof v === "object" && v !== null && !Array.isArray(v);

/** @param {Record<string, unknown>} obj @param {string[]} allowed @param {string} where */
function extraKeys(obj, allowed, where) {
  const extra = Object.keys(obj).filter((k) => !allowed.includes(k)).sort();
  if (extra.length) throw fail(`${where}: unknown field(s) ${pyShow(extra)}; allowed: ${allowed.join(", ")}`);
}

/** A JSON schema (an object or WebLLM's JSON string) as JSON text. @param {unknown} schema @param {string} where */
export function schemaText(schema, where) {
  if (typeof schema === "string") {
    try {
      schema = JSON.parse(schema);
    } catch (err) {
      throw fail(`${where} is not valid JSON: ${/** @type {any} */ (err).message}`);
    }
  }
  if (!isObj(schema) && typeof schema !== "boolean") throw fail(`${where} must be a JSON schema object, got ${pyShow(schema)}`);
  return JSON.stringify(schema);
}

/**
 * The grammar a response_format asks for (null: free text).
 * @param {any} rf @returns {import("./grammar.js").GrammarSpec|null}
 */
export function responseFormatSpec(rf) {
  if (rf == null) return null;
  if (!isObj(rf)) throw fail(`response_format must be an object with a type, got ${pyShow(rf)}`);
  const kind = rf.type;
  if (typeof kind !== "string" || !Object.hasOwn(KEYS, kind)) throw fail(`response_format.type must be one of ${pyShow(Object.keys(KEYS))}, got ${pyShow(kind)}`);
  extraKeys(rf, ["type", ...KEYS[kind]], "response_format");
  if (kind === "text") return null;
  if (kind === "json_object") {
    if (rf.schema == null) return { kind: "json_schema", source: ANY_OBJECT, field: "response_format" };
    return { kind: "json_schema", source: schemaText(rf.schema, "response_format.schema"), field: "response_format.schema" };
  }
  if (kind === "grammar") {
    if (typeof rf.grammar !== "string" || !rf.grammar.trim()) throw fail(`response_format.grammar must be a non-empty EBNF string, got ${pyShow(rf.grammar)}`);
    return { kind: "ebnf", source: rf.grammar, field: "response_format.grammar" };
  }
  const js = rf.json_schema;
  if (!isObj(js)) throw fail(`response_format.json_schema must be an object with name and schema, got ${pyShow(js)}`);
  extraKeys(js, JSON_SCHEMA_KEYS, "response_format.json_schema");
  if (typeof js.name !== "string" || !NAME.test(js.name)) {
    throw fail(`response_format.json_schema.name must be 1-64 letters, digits, _ or -, got ${pyShow(js.name)}`);
  }
  for (const [key, type, pyType] of [["strict", "boolean", "bool"], ["description", "string", "str"]]) {
    if (js[key] != null && typeof js[key] !== type) throw fail(`response_format.json_schema.${key} must be a ${pyType}, got ${pyShow(js[key])}`);
  }
  const source = js.schema == null ? ANY_OBJECT : schemaText(js.schema, "response_format.json_schema.schema");
  return { kind: "json_schema", source, field: "response_format.json_schema.schema" };
}
