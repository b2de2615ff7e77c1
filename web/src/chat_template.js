// Chat templates with transformers' apply_chat_template semantics, on @huggingface/jinja.
import { Template } from "@huggingface/jinja";
import { ChatTemplateError } from "./errors.js";

/**
 * @typedef {{role: string, content?: string|Array<Record<string, unknown>>|null, [key: string]: unknown}} ChatMessage
 * @typedef {object} ChatTemplateOptions
 * @property {boolean} [add_generation_prompt] default false, as in transformers
 * @property {boolean} [continue_final_message] leave the last message open for the model to continue
 * @property {Array<object>|null} [tools]
 * @property {Array<object>|null} [documents]
 * @property {Record<string, unknown>} [kwargs] extra template variables (e.g. {enable_thinking: false})
 */

/**
 * The template source from tokenizer_config.chat_template: a string, or a list of
 * {name, template} where "tool_use" is picked when tools are given, else "default".
 * @param {Record<string, any>} config
 * @param {{tools?: unknown, name?: string}} [options]
 * @returns {string}
 */
export function selectChatTemplate(config, { tools, name } = {}) {
  const t = config.chat_template;
  if (typeof t === "string") return t;
  /** @type {Record<string, string>} */
  const byName = Array.isArray(t) ? Object.fromEntries(t.map((e) => [e.name, e.template])) : (t ?? {});
  const pick = name ?? (tools && byName.tool_use ? "tool_use" : "default");
  if (!byName[pick]) {
    throw new ChatTemplateError(
      t == null
        ? "this bundle's tokenizer_config.json has no chat_template (it is a base model; use completions, not chat)"
        : `no chat template named "${pick}" (have: ${Object.keys(byName).join(", ")})`,
    );
  }
  return byName[pick];
}

export class ChatTemplate {
  /**
   * @param {string} source Jinja source
   * @param {Record<string, string>} [specialTokens] bos_token, eos_token, ... (Tokenizer.specialTokens)
   */
  constructor(source, specialTokens = {}) {
    try {
      this.template = new Template(source);
    } catch (cause) {
      throw new ChatTemplateError(`cannot parse it (${errorText(cause)})`, { cause });
    }
    this.specialTokens = specialTokens;
  }

  /**
   * Render a conversation to the prompt string (transformers' tokenize=False output).
   * @param {ChatMessage[]} messages
   * @param {ChatTemplateOptions} [options]
   * @returns {string}
   */
  render(messages, options = {}) {
    // tools / documents given as template kwargs count as given (as transformers' keyword arguments do)
    const { add_generation_prompt = false, continue_final_message = false } = options;
    const tools = options.tools ?? options.kwargs?.tools ?? null;
    const documents = options.documents ?? options.kwargs?.documents ?? null;
    if (!messages.length) throw new ChatTemplateError("the conversation is empty; give at least one message");
    if (continue_final_message && add_generation_prompt) {
      throw new ChatTemplateError("continue_final_message and add_generation_prompt cannot both be set");
    }
    // As transformers does: drop keys whose value is null/undefined (OpenAI sends content: null).
    const msgs = messages.map((m) => Object.fromEntries(Object.entries(m).filter(([, v]) => v != null)));
    let text;
    try {
      text = this.template.render({
        ...this.specialTokens,
        ...options.kwargs,
        messages: msgs,
        tools,
        documents,
        add_generation_prompt,
      });
    } catch (cause) {
      throw new ChatTemplateError(errorText(cause), { cause });
    }
    return continue_final_message ? cutAfterFinalMessage(text, msgs[msgs.length - 1]) : text;
  }
}

/** @param {unknown} e */
const errorText = (e) => String(/** @type {any} */ (e)?.message ?? e);

/** transformers' continue_final_message: end the prompt right after the last message's content. */
function cutAfterFinalMessage(/** @type {string} */ text, /** @type {Record<string, any>} */ last) {
  let final = last.content;
  if (Array.isArray(final)) final = final.filter((b) => b?.type === "text").at(-1)?.text;
  if (typeof final !== "string") throw new ChatTemplateError("continue_final_message needs a final message with text");
  const at = text.lastIndexOf(final.trim());
  if (at < 0) throw new ChatTemplateError("continue_final_message: the final message does not appear in the rendered prompt");
  const lead = final.trimStart();
  return text.slice(0, at + (text.slice(at, at + lead.length) === final ? lead.length : final.trim().length));
}

/**
 * Render with the tokenizer's template and special tokens, then tokenize WITHOUT
 * special tokens (the template already wrote bos etc.), as transformers does.
 * @param {import("./tokenizer.js").Tokenizer} tokenizer
 * @param {ChatMessage[]} messages
 * @param {ChatTemplateOptions & {template?: string}} [options] template: override tokenizer_config.chat_template
 * @returns {{text: string, ids: number[]}}
 */
export function applyChatTemplate(tokenizer, messages, options = {}) {
  const source = options.template ?? selectChatTemplate(tokenizer.config, { tools: options.tools });
  const text = new ChatTemplate(source, tokenizer.specialTokens).render(messages, options);
  return { text, ids: tokenizer.encode(text, { addSpecialTokens: false }) };
}
