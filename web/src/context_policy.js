// What a chat does when its prompt outgrows the context window: the `contextOverflow` option,
// with the rules of webllm_py/runtime/context_policy.py.
//
// - "error" (default): a prompt that leaves no room for one generated token is a
//   ContextWindowExceededError naming the window chosen at load, the bundle's and what to change;
// - "slide": keep the leading system (developer) messages and drop the oldest whole turns (a user
//   message and the replies after it) until the prompt leaves room for the reply, as WebLLM's
//   sliding window keeps the system prompt and forgets the oldest tokens. The room is max_tokens,
//   or a quarter of the window without it, and at most half the window; the newest turn is always
//   kept (a single turn longer than the window is still the error). Text completions have no
//   turns: both policies refuse a prompt that does not fit.
import { ContextWindowExceededError } from "./errors.js";

export const POLICIES = /** @type {const} */ (["error", "slide"]);
const HEAD_ROLES = ["system", "developer"];

/** @param {unknown} policy @returns {"error"|"slide"} */
export function checkPolicy(policy) {
  if (!POLICIES.includes(/** @type {any} */ (policy))) {
    throw new RangeError(`contextOverflow must be one of ${JSON.stringify(POLICIES)}, got ${JSON.stringify(policy) ?? String(policy)}`);
  }
  return /** @type {"error"|"slide"} */ (policy);
}

/**
 * @param {number} promptTokens @param {number} window the window chosen at load
 * @param {number} built the bundle's @param {boolean} [slid]
 */
export function overflowError(promptTokens, window, built, slid = false) {
  const grow = window < built
    ? `load with a larger contextWindowSize (this bundle allows up to ${built})`
    : "rebuild the bundle with a larger --context-window";
  const fix = slid ? "Even with only the newest turn (contextOverflow: \"slide\") the prompt does not fit: shorten the newest message" :
    "Shorten the prompt, use contextOverflow: \"slide\" (chat)";
  return new ContextWindowExceededError(promptTokens + 1, window,
    `The prompt has ${promptTokens} tokens (contextWindowSize ${window}; prompt + completion must fit). ${fix}, or ${grow}.`);
}

/** Tokens "slide" keeps free for the reply. @param {number} window @param {unknown} maxTokens */
export function replyRoom(window, maxTokens) {
  const ok = typeof maxTokens === "number" && Number.isInteger(maxTokens) && maxTokens > 0;
  return Math.max(1, Math.min(ok ? /** @type {number} */ (maxTokens) : Math.floor(window / 4), Math.floor(window / 2)));
}

/**
 * (leading system messages, turns): each turn starts at a user message (messages before the
 * first user message are a turn of their own).
 * @param {any[]} messages @returns {[any[], any[][]]}
 */
export function splitTurns(messages) {
  let i = 0;
  while (i < messages.length && HEAD_ROLES.includes(messages[i]?.role)) i++;
  /** @type {any[][]} */
  const turns = [];
  for (const m of messages.slice(i)) {
    if (!turns.length || m?.role === "user") turns.push([]);
    turns[turns.length - 1].push(m);
  }
  return [messages.slice(0, i), turns];
}

/** Applies one of POLICIES to the prompts of one engine. */
export class ContextPolicy {
  /** @param {unknown} [policy] default "error" */
  constructor(policy = "error") {
    this.policy = checkPolicy(policy);
    /** turns the last chat prompt left out */
    this.dropped = 0;
  }

  /**
   * The prompt ids of `messages` (rendered and validated by `render`), slid if the policy says so.
   * @param {{contextWindow: number}} model @param {number} built the bundle's context window
   * @param {any} messages @param {(messages: any) => number[]} render @param {unknown} maxTokens
   */
  fitChat(model, built, messages, render, maxTokens) {
    this.dropped = 0;
    let ids = render(messages);
    const window = model.contextWindow;
    const room = replyRoom(window, maxTokens);
    if (this.policy === "slide" && ids.length + room > window) {
      const [head, turns] = splitTurns(messages);
      for (let k = 1; k < turns.length; k++) {
        ids = render([...head, ...turns.slice(k).flat()]);
        this.dropped = k;
        if (ids.length + room <= window) break;
      }
      if (ids.length >= window) throw overflowError(ids.length, window, built, true);
    }
    return this.check(model, built, ids);
  }

  /**
   * `ids`, or the error when they leave no room for one generated token.
   * @param {{contextWindow: number}} model @param {number} built @param {number[]} ids
   */
  check(model, built, ids) {
    if (ids.length >= model.contextWindow) throw overflowError(ids.length, model.contextWindow, built);
    return ids;
  }
}
