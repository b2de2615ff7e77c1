"""Request validation for the OpenAI-style engine (both APIs), and stop strings.

`validate_request` turns create() parameters into a `Request` whose fields are in their
documented ranges, or raises ValueError with one short line that names the field (the
JS engine's web/src/request.js keeps the same rules and messages). Limits a request
cannot exceed: n <= MAX_N (OpenAI's), and for n > 1, n x (max_tokens, else the room
left in the context window) <= MAX_GENERATED_TOKENS: a non-streamed request holds every
choice's text and logprobs until it ends, so this bounds what one request may make the
engine hold. n = 1 is bounded by the context window alone.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import ContextWindowExceededError
from .sampler import MAX_SEED, SamplingParams

ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_TOP_LOGPROBS = 20
MAX_N = 128  # OpenAI's limit on n
MAX_GENERATED_TOKENS = 2**16  # n x max_tokens, all choices of one request together (n > 1)
_TOKEN_ID_KEY = re.compile(r"\s*-?[0-9]{1,19}\s*")  # a logit_bias key as JSON sends it (ASCII digits)


# ---- helpers (every error names the field) -------------------------------------------


def show(v: Any, limit: int = 60) -> str:
    """A value for an error message: one short line, whatever the value (a 10**5000 int has no
    repr under Python's digit limit, a nested list may be megabytes)."""
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 64:
        return f"an integer of {v.bit_length()} bits"
    try:
        s = repr(v)
    except Exception:  # noqa: BLE001 - a user object's __repr__ may raise anything
        s = f"<{type(v).__name__}>"
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_num(v: Any) -> bool:
    if not isinstance(v, (int, float, np.integer, np.floating)) or isinstance(v, (bool, np.bool_)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int beyond float range
        return False


def _opt_int(name: str, v: Any, lo: int | None = None, hi: int | None = None) -> int | None:
    if v is None:
        return None
    if not _is_int(v):
        raise ValueError(f"{name} must be an integer, got {show(v)}")
    v = int(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be {rng}, got {show(v)}")
    return v


def _opt_num(name: str, v: Any, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> float | None:
    if v is None:
        return None
    if not _is_num(v):
        raise ValueError(f"{name} must be a finite number, got {show(v)}")
    v = float(v)
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {v}")
    if hi is not None and v > hi:
        raise ValueError(f"{name} must be <= {hi}, got {v}")
    return v


def _opt_bool(name: str, v: Any) -> bool | None:
    if v is None:
        return None
    if not isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{name} must be a boolean, got {show(v)}")
    return bool(v)


# ---- the request ---------------------------------------------------------------------


@dataclass
class Request:
    """A validated request (both APIs)."""

    prompt_ids: list[int]
    sampling: SamplingParams
    max_tokens: int | None
    stop: list[str]
    seed: int
    n: int
    stream: bool
    include_usage: bool
    logprobs: bool
    top_logprobs: int
    model_name: str
    ignore_eos: bool = False
    grammar: Any = None  # a compiled grammar (grammar.py) the reply must follow, or None
    keep_special: bool = False  # decode special tokens too (tool-call markers such as [TOOL_CALLS])


def _stops(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop):
        stops = list(stop)
    else:
        raise ValueError(f"stop must be a string or a list of strings, got {show(stop)}")
    if any(s == "" for s in stops):
        raise ValueError("stop strings must not be empty")
    return stops


def _logit_bias(lb: Any, vocab: int) -> dict[int, float]:
    if lb is None:
        return {}
    if not isinstance(lb, Mapping):
        raise ValueError(f"logit_bias must be a mapping of token id to bias, got {type(lb).__name__}")
    bias: dict[int, float] = {}
    for k, v in lb.items():
        if _is_int(k):
            tid = int(k)
        elif isinstance(k, str) and _TOKEN_ID_KEY.fullmatch(k):
            tid = int(k)
        else:
            raise ValueError(f"logit_bias key {show(k)} is not a token id")
        if not 0 <= tid < vocab:
            raise ValueError(f"logit_bias key {show(tid)} is not a token id in [0, {vocab})")
        bv = _opt_num(f"logit_bias[{tid}]", v, lo=-100.0, hi=100.0)
        if bv is None:
            raise ValueError(f"logit_bias[{tid}] must be a number in [-100, 100], got None")
        bias[tid] = bv
    return bias


def _include_usage(so: Any, stream: bool) -> bool:
    if so is None:
        return False
    if not stream:
        raise ValueError("stream_options is only allowed with stream=True")
    if not isinstance(so, Mapping):
        raise ValueError(f"stream_options must be an object, got {show(so)}")
    unknown = sorted(show(k) for k in so if k != "include_usage")
    if unknown:
        raise ValueError(f"stream_options: unknown field(s) {show(unknown)}")
    return _opt_bool("stream_options.include_usage", so.get("include_usage")) or False


def _check_room(prompt_ids: list[int], C: int, n: int, max_tokens: int | None) -> None:
    """The prompt fits the context window C, and n choices of what is left fit the cap."""
    if len(prompt_ids) >= C:
        raise ContextWindowExceededError(
            f"the prompt has {len(prompt_ids)} tokens but the context window is {C} tokens "
            f"(prompt + completion must fit, so the prompt may have at most {C - 1})"
        )
    room = C - len(prompt_ids) if max_tokens is None else min(max_tokens, C - len(prompt_ids))
    if n > 1 and n * room > MAX_GENERATED_TOKENS:
        what = "max_tokens" if max_tokens is not None else "the room left in the context window (no max_tokens)"
        raise ValueError(f"n x max_tokens must be <= {MAX_GENERATED_TOKENS} tokens per request, got n={n} x {room} "
                         f"({what}); lower n or set a smaller max_tokens")


def validate_request(
    prompt_ids: list[int] | None,
    p: Mapping[str, Any],
    *,
    chat: bool,
    generation: Mapping[str, Any],
    vocab_size: int,
    context_window: int,
    model_name: str,
) -> Request:
    """Validate create() parameters `p` for a prompt; `generation` is the bundle's defaults.
    `prompt_ids` None checks the values alone (the REST layer's check before it queues a
    request: an invalid one is a 400 however busy the model is); the checks that need the
    prompt's length (the context window, n x the room left) are then skipped."""
    gen = generation
    stream = _opt_bool("stream", p.get("stream")) or False
    n = _opt_int("n", p.get("n"), lo=1, hi=MAX_N)
    n = 1 if n is None else n
    if n > 1 and stream:
        raise ValueError("n must be 1 when stream=True")
    max_tokens = _opt_int("max_tokens", p.get("max_tokens"), lo=1)
    mct = _opt_int("max_completion_tokens", p.get("max_completion_tokens"), lo=1)
    if max_tokens is None:
        max_tokens = mct
    temperature = _opt_num("temperature", p.get("temperature"), lo=0.0)
    if temperature is None:
        temperature = _opt_num("generation.temperature", gen.get("temperature"), lo=0.0)
        if gen.get("do_sample") is False:  # HF generation_config: greedy by default
            temperature = 0.0
    top_p = _opt_num("top_p", p.get("top_p"), lo=0.0, hi=1.0, lo_open=True)
    if top_p is None:
        top_p = _opt_num("generation.top_p", gen.get("top_p"), lo=0.0, hi=1.0, lo_open=True)
    top_k = _opt_int("top_k", p.get("top_k"), lo=0)
    if top_k is None:
        top_k = _opt_int("generation.top_k", gen.get("top_k"), lo=0)
    min_p = _opt_num("min_p", p.get("min_p"), lo=0.0, hi=1.0)
    ignore_eos = _opt_bool("ignore_eos", p.get("ignore_eos")) or False
    rep = _opt_num("repetition_penalty", p.get("repetition_penalty"), lo=0.0, lo_open=True)
    if rep is None:
        rep = _opt_num("generation.repetition_penalty", gen.get("repetition_penalty"), lo=0.0, lo_open=True)
    fp = _opt_num("frequency_penalty", p.get("frequency_penalty"), lo=-2.0, hi=2.0)
    pp = _opt_num("presence_penalty", p.get("presence_penalty"), lo=-2.0, hi=2.0)
    seed = _opt_int("seed", p.get("seed"), lo=0, hi=MAX_SEED - n)
    if seed is None:
        seed = random.SystemRandom().randrange(MAX_SEED - n)
    stops = _stops(p.get("stop"))
    bias = _logit_bias(p.get("logit_bias"), int(vocab_size))

    if chat:
        logprobs = _opt_bool("logprobs", p.get("logprobs")) or False
        top = _opt_int("top_logprobs", p.get("top_logprobs"), lo=0, hi=MAX_TOP_LOGPROBS)
        if top is not None and not logprobs:
            raise ValueError("top_logprobs requires logprobs=True")
    else:
        # legacy completions: logprobs is the number of top alternatives (0 = just the token's)
        top = _opt_int("logprobs", p.get("logprobs"), lo=0, hi=MAX_TOP_LOGPROBS)
        logprobs = top is not None
    include_usage = _include_usage(p.get("stream_options"), stream)

    if prompt_ids is not None:
        _check_room(prompt_ids, int(context_window), n, max_tokens)
    sampling = SamplingParams(
        temperature=1.0 if temperature is None else temperature,
        top_p=1.0 if top_p is None else top_p,
        frequency_penalty=fp or 0.0,
        presence_penalty=pp or 0.0,
        repetition_penalty=1.0 if rep is None else rep,
        logit_bias=bias,
        top_k=top_k or 0,
        min_p=min_p or 0.0,
    )
    name = p.get("model")
    return Request(
        prompt_ids=prompt_ids or [],
        sampling=sampling,
        max_tokens=max_tokens,
        stop=stops,
        seed=seed,
        n=n,
        stream=stream,
        include_usage=include_usage,
        logprobs=logprobs,
        top_logprobs=top or 0,
        model_name=name if isinstance(name, str) and name else model_name,
        ignore_eos=ignore_eos,
    )


# ---- prompts -------------------------------------------------------------------------


def normalize_messages(messages: Any) -> list[dict[str, Any]]:
    """Chat messages as the template gets them: text content (text parts joined), the
    "developer" role as "system"; ValueError naming messages[i] otherwise."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("messages must be a non-empty list of {role, content} objects")
    msgs = []
    for i, m in enumerate(messages):
        if hasattr(m, "model_dump"):
            m = m.model_dump()
        if not isinstance(m, Mapping):
            raise ValueError(f"messages[{i}] must be an object with role and content, got {show(m)}")
        role = m.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise ValueError(f"messages[{i}].role must be one of {list(ROLES)}, got {show(role)}")
        content = m.get("content")
        if isinstance(content, (list, tuple)):
            texts = []
            for j, part in enumerate(content):
                if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise ValueError(f"messages[{i}].content[{j}]: only text parts are supported")
                texts.append(part["text"])
            content = "".join(texts)
        elif content is None:
            if role != "assistant":
                raise ValueError(f"messages[{i}].content is required for role {role!r}")
        elif not isinstance(content, str):
            raise ValueError(f"messages[{i}].content must be a string or a list of text parts, got {show(content)}")
        msg = dict(m)
        # OpenAI's "developer" role is the system prompt for templates, which know "system".
        msg["role"] = "system" if role == "developer" else str(role)
        msg["content"] = content
        msgs.append(msg)
    return msgs


def completion_prompt_ids(prompt: Any, vocab_size: int, encode: Callable[[str], list[int]]) -> list[int]:
    """A completions prompt as ids: a string (through `encode`) or a non-empty list of token ids."""
    if isinstance(prompt, str):
        ids = encode(prompt)
    elif isinstance(prompt, (list, tuple)) and prompt and all(_is_int(t) for t in prompt):
        ids = [int(t) for t in prompt]
        if any(not 0 <= t < vocab_size for t in ids):
            raise ValueError(f"prompt: token ids must be in [0, {vocab_size})")
    else:
        raise ValueError("prompt must be a string or a non-empty list of token ids (batches are not supported)")
    if not ids:
        raise ValueError("prompt is empty (it tokenizes to no tokens)")
    return ids


# ---- stop strings --------------------------------------------------------------------


class StopMatcher:
    """Cuts text at the first stop string, holding back any tail that could still
    grow into one (so streamed text never has to be retracted)."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Returns (text safe to emit, whether a stop string was hit)."""
        if not self.stops:
            return text, False
        self.pending += text
        # Earlier emitted text never ends with a stop prefix, so any match starts in `pending`.
        first = -1
        for s in self.stops:
            i = self.pending.find(s)
            if i >= 0 and (first < 0 or i < first):
                first = i
        if first >= 0:
            out, self.pending = self.pending[:first], ""
            return out, True
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.pending)), hold, -1):
                if self.pending.endswith(s[:k]):
                    hold = k
                    break
        cut = len(self.pending) - hold
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out
