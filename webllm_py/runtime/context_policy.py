"""What a chat does when its prompt outgrows the context window: `context_overflow` (an Engine option).

- "error" (default): a prompt that leaves no room for one generated token is a
  ContextWindowExceededError saying how many tokens it has, the window chosen at load and the
  bundle's, and what to change;
- "slide": keep the leading system (developer) messages and drop the oldest whole turns (a user
  message and the replies after it) until the prompt leaves room for the reply, as WebLLM's
  sliding window keeps the system prompt and forgets the oldest tokens. The room is max_tokens,
  or a quarter of the window without it, and at most half the window; the newest turn is always
  kept (a single turn longer than the window is still the error). Text completions have no turns:
  both policies refuse a prompt that does not fit.

The same rules are in web/src/context_policy.js.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ..errors import ContextWindowExceededError

POLICIES = ("error", "slide")
HEAD_ROLES = ("system", "developer")


def check_policy(policy: Any) -> str:
    if policy not in POLICIES:
        raise ValueError(f"context_overflow must be one of {POLICIES}, got {policy!r}")
    return policy


def _windows(model: Any) -> tuple[int, int]:
    """(the window chosen at load, the bundle's)."""
    window = int(model.context_window)
    return window, int((getattr(model, "manifest", None) or {}).get("context_window", window))


def overflow_error(prompt_tokens: int, model: Any, slid: bool = False) -> ContextWindowExceededError:
    window, built = _windows(model)
    if window < built:
        grow = f"load with a larger context_window_size (this bundle allows up to {built})"
    else:
        grow = "rebuild the bundle with a larger --context-window"
    what = "even with only the newest turn (context_overflow='slide'), " if slid else ""
    fix = "shorten the newest message" if slid else "shorten the prompt, use context_overflow='slide' (chat)"
    return ContextWindowExceededError(
        f"{what}the prompt has {prompt_tokens} tokens but the context window is {window} tokens "
        f"(context_window_size={window}; prompt + completion must fit): {fix}, or {grow}")


def reply_room(window: int, max_tokens: Any) -> int:
    """Tokens "slide" keeps free for the reply."""
    ok = isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0
    return max(1, min(max_tokens if ok else window // 4, window // 2))


def split_turns(messages: Sequence[Any]) -> tuple[list[Any], list[list[Any]]]:
    """(leading system messages, turns): each turn starts at a user message (messages before the
    first user message are a turn of their own)."""
    i = 0
    while i < len(messages) and messages[i].get("role") in HEAD_ROLES:
        i += 1
    turns: list[list[Any]] = []
    for m in messages[i:]:
        if not turns or m.get("role") == "user":
            turns.append([])
        turns[-1].append(m)
    return list(messages[:i]), turns


class ContextPolicy:
    """Applies one of POLICIES to the prompts of one engine."""

    def __init__(self, policy: str = "error"):
        self.policy = check_policy(policy)
        self.dropped = 0  # turns the last chat prompt left out

    def fit_chat(self, model: Any, messages: Any, render: Callable[[Any], list[int]], max_tokens: Any) -> list[int]:
        """The prompt ids of `messages` (rendered and validated by `render`), slid if the policy says so."""
        self.dropped = 0
        ids = render(messages)
        window = int(model.context_window)
        if self.policy == "slide" and len(ids) + reply_room(window, max_tokens) > window:
            room = reply_room(window, max_tokens)
            head, turns = split_turns(messages)
            for k in range(1, len(turns)):
                ids = render(head + [m for t in turns[k:] for m in t])
                self.dropped = k
                if len(ids) + room <= window:
                    break
            if len(ids) >= window:
                raise overflow_error(len(ids), model, slid=True)
        return self.check(model, ids)

    def check(self, model: Any, ids: list[int]) -> list[int]:
        """`ids`, or the error when they leave no room for one generated token."""
        if len(ids) >= int(model.context_window):
            raise overflow_error(len(ids), model)
        return ids
