"""Which request fields the engine knows: implemented, accepted without effect, or refused.

Every field of OpenAI's chat/completions requests and of WebLLM's is in one of these tables,
so a request never silently loses a field: an implemented one takes effect, one of
`NO_EFFECT` (identifiers and storage hints that change no output) is accepted and dropped,
one of `UNSUPPORTED` is refused with its reason, and anything else is an unknown field (a
misspelling gets a "did you mean"). The JS engine has the same tables (web/src/request_fields.js)
and both are held to web/test/fixtures/strict_requests.json; the REST server uses these.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

# Fields create() implements, per API (values are checked by request.py / structured.py).
SAMPLING = ("temperature", "top_p", "top_k", "min_p", "seed", "frequency_penalty", "presence_penalty",
            "repetition_penalty", "logit_bias", "ignore_eos")
CHAT_FIELDS = frozenset({
    "messages", "model", "stream", "stream_options", "max_tokens", "max_completion_tokens", "n", "stop",
    "logprobs", "top_logprobs", "response_format", "tools", "tool_choice", "parallel_tool_calls",
    "chat_template_kwargs", *SAMPLING,
})
TEXT_FIELDS = frozenset({"prompt", "model", "stream", "stream_options", "max_tokens", "n", "stop", "logprobs", *SAMPLING})

# Accepted and dropped: they identify the caller or ask for server-side storage; no output changes.
NO_EFFECT = frozenset({"user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key"})

_TEXT_ONLY_MODELS = "the models this runtime runs are text-only"
UNSUPPORTED_CHAT: dict[str, str] = {
    "audio": f"audio output is not supported ({_TEXT_ONLY_MODELS})",
    "modalities": f"output modalities are not supported ({_TEXT_ONLY_MODELS}: the output is text)",
    "prediction": "predicted outputs are not supported",
    "reasoning_effort": "reasoning_effort is not supported; a template's thinking switch goes in "
                        "chat_template_kwargs (e.g. {\"enable_thinking\": false})",
    "verbosity": "verbosity is not supported",
    "web_search_options": "web search is not available to a local model",
    "functions": "the deprecated functions field is not supported; use tools",
    "function_call": "the deprecated function_call field is not supported; use tool_choice",
    "extra_body": "extra_body is not a request field here: put its fields at the top level "
                  "(enable_thinking goes in chat_template_kwargs)",
    "enable_latency_breakdown": "enable_latency_breakdown is not supported; see runtime_stats()",
}
UNSUPPORTED_TEXT: dict[str, str] = {
    "echo": "echo is not supported",
    "suffix": "suffix (fill-in-the-middle) is not supported",
    "best_of": "best_of is not supported; use n",
    "response_format": "response_format is only supported by chat completions",
    "tools": "tools are only supported by chat completions",
    "max_completion_tokens": "max_completion_tokens belongs to chat completions; use max_tokens",
    "extra_body": UNSUPPORTED_CHAT["extra_body"],
}


def _distance(a: str, b: str) -> int:
    """Levenshtein distance (the JS port computes the same, so both suggest the same name)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def suggest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to `name` ignoring case (ties: the alphabetically first), if it is
    within 2 edits and a third of the name's length: a misspelling, not another field."""
    low = name.lower()[:64]
    best = min(sorted(known), key=lambda k: _distance(low, k.lower()), default=None)
    if best is None:
        return None
    d = _distance(low, best.lower())
    return best if d <= 2 and d <= len(low) // 3 else None


class FieldError(ValueError):
    """A request field is unknown or unsupported; `param` names it."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


def known_fields(chat: bool) -> frozenset[str]:
    """Every field name the API knows (implemented, no-effect or refused)."""
    return (CHAT_FIELDS if chat else TEXT_FIELDS) | NO_EFFECT | set(UNSUPPORTED_CHAT if chat else UNSUPPORTED_TEXT)


def check_fields(names: Iterable[Any], chat: bool) -> None:
    """FieldError naming the first unknown or unsupported field among `names` (sorted, so the
    message does not depend on dict order)."""
    implemented = CHAT_FIELDS if chat else TEXT_FIELDS
    unsupported = UNSUPPORTED_CHAT if chat else UNSUPPORTED_TEXT
    api = "chat.completions" if chat else "completions"
    for name in sorted(names, key=str):
        if name in implemented or name in NO_EFFECT:
            continue
        if name in unsupported:
            raise FieldError(f"{name}: {unsupported[name]}", str(name))
        shown = repr(name) if isinstance(name, str) and len(name) <= 60 else f"{str(name)[:57]!r}..."
        close = suggest(str(name), known_fields(chat))
        hint = f" (did you mean {close!r}?)" if close else ""
        raise FieldError(f"unknown field {shown} for {api}{hint}", str(name)[:60])


def given(params: Mapping[str, Any]) -> list[str]:
    """The names of the fields a create() call gave (None means "not given", as in OpenAI's API)."""
    return [k for k, v in params.items() if v is not None]
