"""Property-based fuzz of the REST request path (issue 15): arbitrary JSON bodies
(nested objects, deep nesting, integers of thousands of digits, unicode with lone
surrogates, reserved template variables, wrong types, unknown fields) and arbitrary
bytes, sent to /v1/chat/completions and /v1/completions of a server over the real
Engine (tiny bundle, reference backend; one model without a chat template), never get a 5xx:
always a 200 (a complete JSON answer or SSE stream ending in [DONE]) or a 4xx in
OpenAI's error shape, and the server answers a plain request after each one.

Bounded: max_examples per property (200 and 100), no deadline (a shared 2-core
machine), generation kept cheap: integer max_tokens / max_completion_tokens are
clamped to 1..4 and an integer n to 1..3 (out-of-range ones above OpenAI's cap of
128 are kept: they must be refused).
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from webllm_py.serve import make_app, start_in_thread

from serve_fakes import request

CHAT_FIELDS = ["model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature",
               "top_p", "n", "seed", "stop", "frequency_penalty", "presence_penalty", "repetition_penalty",
               "logit_bias", "logprobs", "top_logprobs", "chat_template_kwargs", "user", "tools", "echo"]
TEXT_FIELDS = ["model", "prompt", "stream", "stream_options", "max_tokens", "temperature", "top_p", "n", "seed",
               "stop", "logit_bias", "logprobs", "suffix", "user"]
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# exclude_categories=[]: surrogates (category Cs) too, which st.text() leaves out by default
text = st.text(st.characters(exclude_categories=[]), max_size=12) | st.sampled_from(["\ud800", "a\udfffb", "\U0001f600"])
# Placeholders that _to_json turns into what Python's json.dumps cannot write:
# integers of more digits than int() converts, and nesting deeper than the body check allows.
huge_int = st.integers(21, 6000).map(lambda d: f"__BIG{d}__")
deep = st.integers(33, 3000).map(lambda d: f"__DEEP{d}__")
scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10 ** 40), max_value=10 ** 40)
           | st.floats(allow_nan=False) | text | huge_int | deep | st.sampled_from(["user", "assistant", "tiny"]))
# keys: any text, and the names a template must not be given (chat_template_kwargs)
keys = text | st.sampled_from(["messages", "add_generation_prompt", "self", "tools", "documents", "enable_thinking"])
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(keys, c, max_size=4),
                           max_leaves=12)
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool", "x"])
                                           | json_values, "content": text | json_values}), min_size=0, max_size=3)
_PLACEHOLDER = re.compile(r'"__(BIG|DEEP)(\d+)__"')


def _to_json(body) -> bytes:
    # ensure_ascii: lone surrogates travel as \udXXX escapes, as a hostile client sends them
    raw = json.dumps(body, ensure_ascii=True)
    return _PLACEHOLDER.sub(lambda m: "9" * int(m.group(2)) if m.group(1) == "BIG"
                            else "[" * int(m.group(2)) + "]" * int(m.group(2)), raw).encode()


def _hostile(fields: list[str], required: str, required_values) -> st.SearchStrategy[dict]:
    """Requests with any field of any value (most are refused)."""
    return st.fixed_dictionaries(
        {"model": st.sampled_from(["tiny", "plain"]) | json_values, required: required_values},
        optional={f: json_values for f in fields if f not in ("model", required)}
        | {"stream": st.booleans(), "max_tokens": st.integers(-3, 10 ** 30)},
    )


plain_text = st.text(max_size=12)
num = st.floats(-3, 3, allow_nan=False)
# Plausible values, near and across their limits: many of these requests reach generation.
PLAUSIBLE = {
    "stream": st.booleans(), "max_tokens": st.integers(0, 4), "max_completion_tokens": st.integers(1, 4),
    "temperature": num, "top_p": num, "n": st.integers(0, 3) | st.just(129), "seed": st.integers(-1, 2 ** 53),
    "stop": plain_text | st.lists(plain_text, max_size=3), "frequency_penalty": num, "presence_penalty": num,
    "repetition_penalty": num, "logit_bias": st.dictionaries(st.integers(-1, 330).map(str), st.floats(-101, 101),
                                                             max_size=3),
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}), "user": plain_text,
    "chat_template_kwargs": st.dictionaries(keys, json_values, max_size=2),
}


def _plausible(chat: bool) -> st.SearchStrategy[dict]:
    if chat:
        required = {"messages": st.lists(st.fixed_dictionaries({
            "role": st.sampled_from(["user", "assistant", "system", "developer"]), "content": plain_text}),
            min_size=1, max_size=3)}
        extra = {"logprobs": st.booleans(), "top_logprobs": st.integers(0, 21)}
        fields = CHAT_FIELDS
    else:
        required = {"prompt": plain_text | st.lists(st.integers(-1, 330), min_size=1, max_size=5)}
        extra = {"logprobs": st.integers(-1, 21)}
        fields = TEXT_FIELDS
    optional = {f: v for f, v in (PLAUSIBLE | extra).items() if f in fields}
    return st.fixed_dictionaries({"model": st.sampled_from(["tiny", "plain"]), **required}, optional=optional)


def _cheap(body: dict) -> dict:
    """Generation cost bounded, validation untouched: only in-range integers are clamped."""
    for f in ("max_tokens", "max_completion_tokens"):
        v = body.get(f)
        if isinstance(v, int) and not isinstance(v, bool) and v > 4:
            body[f] = 4
    body.setdefault("max_tokens", 4)
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and 3 < n <= 128:
        body["n"] = 3
    return body


@pytest.fixture(scope="module")
def server(tiny_bundles):
    from webllm_py import Engine

    eng = Engine(tiny_bundles("llama", "q4"), backend="reference", model_name="tiny")
    plain = Engine(tiny_bundles("llama", "q4"), backend="reference", model_name="plain")
    plain.tokenizer.chat_template = None  # a base model: chat must be a 400, completions work
    with start_in_thread(make_app(None, api_models={"tiny": eng, "plain": plain}, queue_size=2)) as srv:
        yield srv


def _check_reply(port: int, path: str, raw_body: bytes) -> int:
    s, h, raw = request(port, "POST", path, raw_body, {"Content-Type": "application/json"})
    event(f"status {s}")  # --hypothesis-show-statistics: how many reached the engine
    assert s < 500, (s, raw[:300], raw_body[:300])
    if s >= 400:
        err = json.loads(raw)["error"]
        assert set(err) == {"message", "type", "param", "code"}, err
        assert isinstance(err["message"], str) and err["message"] and "\n" not in err["message"], err
    elif h["Content-Type"].startswith("text/event-stream"):
        events = raw.decode("utf-8").split("\n\n")
        assert events[-1] == "" and events[-2] == "data: [DONE]", raw[-200:]
        for e in events[:-2]:
            assert e.startswith("data: ") and "error" not in json.loads(e[6:]), e
    else:
        r = json.loads(raw)
        assert r["object"] in ("chat.completion", "text_completion") and r["choices"], r
    return s


def _still_up(port: int) -> None:
    s, _, raw = request(port, "POST", "/v1/completions", json.dumps({"model": "tiny", "prompt": "x", "max_tokens": 1}))
    assert s == 200, raw


@settings(max_examples=200, **SETTINGS)
@given(chat=st.booleans(), data=st.data())
def test_fuzz_json_bodies_never_5xx(server, chat, data):
    if chat:
        hostile = _hostile(CHAT_FIELDS, "messages", messages | json_values)
        path = "/v1/chat/completions"
    else:
        hostile = _hostile(TEXT_FIELDS, "prompt", text | st.lists(st.integers(-5, 400), max_size=5) | json_values)
        path = "/v1/completions"
    body = data.draw(_plausible(chat) | hostile, label="body")
    _check_reply(server.port, path, _to_json(_cheap(body)))
    _still_up(server.port)


@settings(max_examples=100, **SETTINGS)
@given(path=st.sampled_from(["/v1/chat/completions", "/v1/completions"]),
       raw=st.binary(max_size=64) | json_values.map(_to_json)
       | st.integers(1, 3000).map(lambda d: b"[" * d + b"]" * d))
def test_fuzz_raw_bodies_never_5xx(server, path, raw):
    _check_reply(server.port, path, raw)
    _still_up(server.port)
