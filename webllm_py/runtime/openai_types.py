"""Response objects shaped like the openai Python client's.

Plain dataclasses with attribute access (`r.choices[0].message.content`,
`chunk.choices[0].delta.content`, `r.usage.total_tokens`) and `to_dict()` /
`to_json()` producing the OpenAI wire JSON (fields that are None serialize as
null, as the OpenAI API sends them), so a REST server can return them directly.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Optional, TypeVar

FinishReason = Literal["stop", "length", "tool_calls", "abort"]  # abort: Engine.interrupt_generate()


class _Base:
    """to_dict / to_json / model_dump for every response object."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _to_plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def model_dump(self) -> dict[str, Any]:  # the openai client's pydantic name
        return self.to_dict()

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, **kwargs)


def _to_plain(v: Any) -> Any:
    if isinstance(v, _Base):
        return v.to_dict()
    if isinstance(v, list):
        return [_to_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _to_plain(x) for k, x in v.items()}
    return v


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


@dataclass
class CompletionUsage(_Base):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


C = TypeVar("C")


@dataclass
class _Response(_Base, Generic[C]):
    """The fields (in OpenAI's order) every response object has; a subclass sets the type of its
    choices and the default of `object`."""

    id: str
    choices: list[C]
    created: int
    model: str
    object: str
    usage: Optional[CompletionUsage] = None
    system_fingerprint: Optional[str] = None


# ---- logprobs (chat) ---------------------------------------------------------


@dataclass
class TopLogprob(_Base):
    token: str
    logprob: float
    bytes: Optional[list[int]]


@dataclass
class ChatCompletionTokenLogprob(_Base):
    token: str
    logprob: float
    bytes: Optional[list[int]]
    top_logprobs: list[TopLogprob] = field(default_factory=list)


@dataclass
class ChoiceLogprobs(_Base):
    content: Optional[list[ChatCompletionTokenLogprob]]
    refusal: Optional[list[ChatCompletionTokenLogprob]] = None


# ---- chat completion ---------------------------------------------------------


@dataclass
class Function(_Base):
    name: str
    arguments: str  # JSON text


@dataclass
class ChatCompletionMessageToolCall(_Base):
    id: str
    function: Function
    type: str = "function"


class _OmitNoneToolCalls:
    """tool_calls is left out of the JSON when there are none (as OpenAI's API does)."""

    def to_dict(self) -> dict[str, Any]:
        d = _Base.to_dict(self)  # type: ignore[arg-type]
        if d.get("tool_calls") is None:
            d.pop("tool_calls", None)
        return d


@dataclass
class ChatCompletionMessage(_OmitNoneToolCalls, _Base):
    role: str
    content: Optional[str]
    refusal: Optional[str] = None
    tool_calls: Optional[list[ChatCompletionMessageToolCall]] = None


@dataclass
class Choice(_Base):
    index: int
    message: ChatCompletionMessage
    finish_reason: Optional[FinishReason]
    logprobs: Optional[ChoiceLogprobs] = None


@dataclass
class ChatCompletion(_Response[Choice]):
    object: str = "chat.completion"


# ---- chat completion stream --------------------------------------------------


@dataclass
class ChoiceDeltaToolCallFunction(_Base):
    name: Optional[str] = None
    arguments: Optional[str] = None


@dataclass
class ChoiceDeltaToolCall(_Base):
    index: int
    id: Optional[str] = None
    function: Optional[ChoiceDeltaToolCallFunction] = None
    type: Optional[str] = None


@dataclass
class ChoiceDelta(_OmitNoneToolCalls, _Base):
    role: Optional[str] = None
    content: Optional[str] = None
    refusal: Optional[str] = None
    tool_calls: Optional[list[ChoiceDeltaToolCall]] = None


@dataclass
class ChunkChoice(_Base):
    index: int
    delta: ChoiceDelta
    finish_reason: Optional[FinishReason] = None
    logprobs: Optional[ChoiceLogprobs] = None


@dataclass
class ChatCompletionChunk(_Response[ChunkChoice]):
    """One streamed event. With stream_options.include_usage, the last chunk has
    `choices == []` and `usage` set (OpenAI's shape); the others have usage None."""

    object: str = "chat.completion.chunk"


# ---- legacy text completion --------------------------------------------------


@dataclass
class Logprobs(_Base):
    """Legacy completions logprobs: parallel lists over the generated tokens."""

    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[dict[str, float]] = field(default_factory=list)
    text_offset: list[int] = field(default_factory=list)


@dataclass
class CompletionChoice(_Base):
    index: int
    text: str
    finish_reason: Optional[FinishReason]
    logprobs: Optional[Logprobs] = None


@dataclass
class Completion(_Response[CompletionChoice]):
    """A text completion, or (stream=True) one streamed piece of it."""

    object: str = "text_completion"
