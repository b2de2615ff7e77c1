"""The public `create()` methods of Engine.chat.completions and Engine.completions.

Named keyword parameters document OpenAI's fields (and the peers' extras: top_k, min_p,
repetition_penalty, ignore_eos); `**other` takes everything else so that an unknown or
unsupported field is a ValueError naming it (request_fields.py) instead of Python's bare
TypeError. The two signatures share most fields but are spelled out each: they are what
help() and IDEs show, and Python 3.10 has no typing.Unpack to share a **kwargs TypedDict.
The engine does the work (engine.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from . import openai_types as ot

if TYPE_CHECKING:
    from .engine import Engine


def _fields(scope: dict[str, Any], positional: str) -> dict[str, Any]:
    """A create() call's fields for the engine, from its locals() taken first thing: every named
    parameter but self and the positional one, with **other spread in. Forwarding them this way
    means a parameter added to a signature cannot be left out of the call."""
    named = {k: v for k, v in scope.items() if k not in ("self", positional, "other")}
    return {**named, **scope["other"]}


class ChatCompletions:
    def __init__(self, engine: "Engine"):
        self._engine = engine

    def create(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        stream: bool = False,
        stream_options: Mapping[str, Any] | None = None,
        max_tokens: int | None = None,
        max_completion_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        min_p: float | None = None,
        n: int | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        frequency_penalty: float | None = None,
        presence_penalty: float | None = None,
        repetition_penalty: float | None = None,
        logit_bias: Mapping[int | str, float] | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        ignore_eos: bool | None = None,
        response_format: Mapping[str, Any] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        parallel_tool_calls: bool | None = None,
        chat_template_kwargs: Mapping[str, Any] | None = None,
        **other: Any,
    ) -> ot.ChatCompletion | Iterator[ot.ChatCompletionChunk]:
        """OpenAI `chat.completions.create`. Defaults: temperature / top_p / top_k /
        repetition_penalty from the bundle's `generation` (else 1, 1, off, 1), max_tokens until
        eos or the context window is full, a random seed. `response_format` constrains the
        reply (json_object, json_schema, grammar); `tools` + `tool_choice` give
        `message.tool_calls`. `chat_template_kwargs` become template variables (e.g.
        {"enable_thinking": False}). Invalid values and unknown or unsupported fields raise
        ValueError naming the field; a prompt that does not fit raises
        ContextWindowExceededError. stream=True returns an iterator of chunks."""
        return self._engine.create_chat_completion(messages, **_fields(locals(), "messages"))


class Chat:
    def __init__(self, engine: "Engine"):
        self.completions = ChatCompletions(engine)


class Completions:
    def __init__(self, engine: "Engine"):
        self._engine = engine

    def create(
        self,
        prompt: str | Sequence[int],
        *,
        model: str | None = None,
        stream: bool = False,
        stream_options: Mapping[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        min_p: float | None = None,
        n: int | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        frequency_penalty: float | None = None,
        presence_penalty: float | None = None,
        repetition_penalty: float | None = None,
        logit_bias: Mapping[int | str, float] | None = None,
        logprobs: int | None = None,
        ignore_eos: bool | None = None,
        **other: Any,
    ) -> ot.Completion | Iterator[ot.Completion]:
        """OpenAI (legacy) `completions.create` on a prompt string (tokenized with
        add_special_tokens=True) or a list of token ids. `logprobs` is the number of
        top alternatives per token (0..20). Same defaults and errors as chat."""
        return self._engine.create_completion(prompt, **_fields(locals(), "prompt"))
