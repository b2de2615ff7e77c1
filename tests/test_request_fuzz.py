"""Property-based fuzz of the Python request validator (webllm_py/runtime/request.py), no
model involved: arbitrary values for every known field (wrong types, NaN/inf, huge ints,
bools where ints are expected, nested junk, unicode) plus unknown fields. The validator
either accepts, and the normalized request has every field in its documented range, or
raises ValueError/TypeError with a one-line message naming a field it was given; never
KeyError / AttributeError / OverflowError / ... Bounded: a few hundred examples per test,
no deadline (a shared CI core may stall), a few seconds in all.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from webllm_py.runtime.request import (
    MAX_GENERATED_TOKENS,
    MAX_N,
    MAX_SEED,
    MAX_TOP_LOGPROBS,
    normalize_messages,
    validate_request,
)

VOCAB, CONTEXT = 320, 256
GEN = {"temperature": 0.7, "top_p": 0.9}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from([0, 1, -1, 2**53, 2**63, 10**400, -(10**400), 128, 129, 10**9]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.binary(max_size=6),
    st.sampled_from([np.int64(3), np.float32("nan"), np.bool_(True), np.float64("inf"), "12", " 7", "--5", "²",
                     "9" * 5000, "", "\n", "\u202e"]),
)
junk = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), inner, max_size=4)),
                    max_leaves=8)
# Plausible values per field, so that the accept path is reached often too.
PLAUSIBLE: dict[str, Any] = {
    "stream": st.booleans(), "n": st.integers(-2, 200), "max_tokens": st.integers(-1, 10**6),
    "max_completion_tokens": st.integers(-1, 600), "temperature": st.floats(-1, 3), "top_p": st.floats(-0.5, 1.5),
    "repetition_penalty": st.floats(-1, 3), "frequency_penalty": st.floats(-3, 3), "presence_penalty": st.floats(-3, 3),
    "seed": st.integers(-5, 2**54), "stop": st.one_of(st.text(max_size=4), st.lists(st.text(max_size=4), max_size=5)),
    "logit_bias": st.dictionaries(st.one_of(st.integers(-5, 400), st.text(max_size=4)), st.floats(-150, 150), max_size=4),
    "logprobs": st.one_of(st.booleans(), st.integers(-1, 25)), "top_logprobs": st.integers(-1, 25),
    "stream_options": st.one_of(st.just({"include_usage": True}), st.dictionaries(st.text(max_size=5), junk, max_size=2)),
    "model": st.one_of(st.text(max_size=8), junk),
}
params_st = st.fixed_dictionaries({}, optional={k: st.one_of(v, junk) for k, v in PLAUSIBLE.items()}).flatmap(
    lambda d: st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k not in PLAUSIBLE), junk, max_size=2)
    .map(lambda extra: {**d, **extra}))


def _check_in_range(req: Any, chat: bool) -> None:
    s = req.sampling
    assert math.isfinite(s.temperature) and s.temperature >= 0
    assert 0 < s.top_p <= 1
    assert -2 <= s.frequency_penalty <= 2 and -2 <= s.presence_penalty <= 2
    assert math.isfinite(s.repetition_penalty) and s.repetition_penalty > 0
    assert all(type(k) is int and 0 <= k < VOCAB and -100 <= v <= 100 for k, v in s.logit_bias.items())
    assert type(req.n) is int and 1 <= req.n <= MAX_N
    assert req.max_tokens is None or (type(req.max_tokens) is int and req.max_tokens >= 1)
    limit = CONTEXT - len(req.prompt_ids) if req.max_tokens is None else min(req.max_tokens, CONTEXT - len(req.prompt_ids))
    assert req.n == 1 or req.n * limit <= MAX_GENERATED_TOKENS
    assert type(req.seed) is int and 0 <= req.seed <= MAX_SEED - req.n
    assert all(isinstance(x, str) and x for x in req.stop)
    assert type(req.stream) is bool and type(req.include_usage) is bool and type(req.logprobs) is bool
    assert type(req.top_logprobs) is int and 0 <= req.top_logprobs <= MAX_TOP_LOGPROBS
    assert not (req.stream and req.n > 1)
    assert isinstance(req.model_name, str) and req.model_name


def _check_error(e: Exception, given: set[str]) -> None:
    msg = str(e)
    assert isinstance(e, (ValueError, TypeError)), f"{type(e).__name__}: {msg}"
    assert "\n" not in msg and len(msg) < 400, f"not one short line: {msg!r}"
    assert any(re.search(rf"\b{re.escape(name)}\b", msg) for name in given), f"names none of {sorted(given)}: {msg}"


@FUZZ
@given(params=params_st, chat=st.booleans(), prompt_len=st.integers(1, CONTEXT - 1))
def test_validator_accepts_in_range_or_names_the_field(params: dict[str, Any], chat: bool, prompt_len: int) -> None:
    try:
        req = validate_request(list(range(prompt_len)), dict(params), chat=chat, generation=GEN, vocab_size=VOCAB,
                               context_window=CONTEXT, model_name="tiny")
    except Exception as e:  # noqa: BLE001 - the property is about which exceptions escape
        _check_error(e, set(params))
        return
    _check_in_range(req, chat)


message = st.one_of(junk, st.fixed_dictionaries({"role": st.one_of(st.sampled_from(["user", "assistant", "system", "developer", "tool"]), junk)},
                                                optional={"content": st.one_of(st.text(max_size=10), junk,
                                                                               st.lists(st.one_of(junk, st.fixed_dictionaries({"type": st.just("text"), "text": st.one_of(st.text(max_size=5), junk)})), max_size=3)),
                                                          "name": junk}))


@FUZZ
@given(messages=st.one_of(junk, st.lists(message, max_size=4)))
def test_messages_normalize_or_name_the_message(messages: Any) -> None:
    try:
        out = normalize_messages(messages)
    except Exception as e:  # noqa: BLE001
        _check_error(e, {"messages"})
        return
    assert out and all(m["role"] in ("system", "user", "assistant", "tool") for m in out)
    assert all(isinstance(m["content"], str) or (m["content"] is None and m["role"] == "assistant") for m in out)


@pytest.mark.parametrize("n, max_tokens, ok", [
    (MAX_N, 1, True), (MAX_N + 1, 1, False), (10**30, 1, False), (2, None, True), (MAX_N, None, False),
    (64, MAX_GENERATED_TOKENS // 64, True), (64, MAX_GENERATED_TOKENS // 64 + 1, False), (1, 10**12, True),
])
def test_n_is_capped_and_bounds_the_generated_tokens(n: int, max_tokens: int | None, ok: bool) -> None:
    """n <= 128 (OpenAI's limit) and, for n > 1, n x (max_tokens or the room left in the context)
    within MAX_GENERATED_TOKENS: what one request may make the engine hold. n = 1 is bounded by
    the context window alone."""
    def run() -> Any:
        return validate_request([1, 2], {"n": n, "max_tokens": max_tokens}, chat=True, generation={}, vocab_size=VOCAB,
                                context_window=4096, model_name="tiny")
    if ok:
        assert run().n == n
    else:
        with pytest.raises(ValueError, match=r"\bn\b") as e:
            run()
        assert "\n" not in str(e.value)


# What the fuzz found (each failed before the fix: a crash, a message naming no field or
# megabytes long, or a value accepted out of range), kept as plain cases.
HOSTILE = [
    ("temperature", {"temperature": 10**400}),  # OverflowError in math.isfinite
    ("top_p", {"top_p": -(10**400)}),
    ("logit_bias", {"logit_bias": {"²": 1.0}}),  # str.isdigit() accepts it, int() does not
    ("logit_bias", {"logit_bias": {"--5": 1.0}}),
    ("logit_bias", {"logit_bias": {"9" * 5000: 1.0}}),  # beyond int()'s digit limit
    ("logit_bias", {"logit_bias": {10**5000: 1.0}}),  # its str() in the message raised
    ("logit_bias", {"logit_bias": {"5": None}}),  # None was kept as the bias
    ("seed", {"seed": 10**5000}),
    ("n", {"n": 129}),
    ("n", {"n": 10**30}),  # "empty range for randrange()"
    ("stream_options", {"stream": True, "stream_options": {1: True, "x": 2}}),  # sorted() of mixed keys
    ("stop", {"stop": ["x" * 100_000, 5]}),  # the whole list in the message
]


@pytest.mark.parametrize("field, params", HOSTILE, ids=[f"{f}-{i}" for i, (f, _) in enumerate(HOSTILE)])
def test_hostile_values_name_the_field(field: str, params: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as e:
        validate_request([1, 2, 3], params, chat=True, generation=GEN, vocab_size=VOCAB, context_window=CONTEXT,
                         model_name="tiny")
    _check_error(e.value, {field})


@pytest.mark.parametrize("messages", [
    [{"role": 10**5000, "content": "hi"}],  # str() of the role raised
    [{"role": "user", "content": ["x" * 100_000]}],
    [{"role": "user", "content": {"nested": ["junk"] * 10_000}}],
])
def test_hostile_messages_name_the_message(messages: Any) -> None:
    with pytest.raises(ValueError) as e:
        normalize_messages(messages)
    _check_error(e.value, {"messages"})
