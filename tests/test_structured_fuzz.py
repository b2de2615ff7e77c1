"""Property-based fuzz of the structured-output and tool request fields (issue 13): whatever JSON a
client puts in response_format, tools, tool_choice, parallel_tool_calls, or in assistant
tool_calls / tool messages, the engine answers or raises ValueError with one short line; never
another exception (TypeError, KeyError, xgrammar's RuntimeError, a C++ message) and never a
multi-line one. Bounded: 150 + 100 examples, no deadline, max_tokens=2 (a few seconds each way)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from test_engine import MSGS, bundle, make_engine  # noqa: F401  (bundle is a fixture)

pytest.importorskip("xgrammar", reason="xgrammar is not installed (scripts/setup --test installs it)")

scalars = st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=12) | st.sampled_from(["object", "string", "integer", "array", "function", "json_schema",
                                             "json_object", "grammar", "text", "required", "auto", "none", "root ::= \"a\""])
keys = st.sampled_from(["type", "json_schema", "schema", "name", "strict", "grammar", "function", "parameters",
                        "properties", "required", "items", "enum", "const", "anyOf", "$ref", "description", "x"])
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4),
                           max_leaves=12)


@pytest.fixture(scope="module")
def engine(bundle: Any) -> Any:  # noqa: F811
    return make_engine(bundle)[0]


def _one_line_or_ok(call: Any) -> None:
    try:
        call()
    except ValueError as e:
        msg = str(e)
        assert msg and "\n" not in msg and len(msg) < 400 and "/project/cpp" not in msg, msg


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rf=json_values, tools=json_values, choice=json_values, parallel=json_values)
def test_request_fields_never_crash(engine: Any, rf: Any, tools: Any, choice: Any, parallel: Any) -> None:
    _one_line_or_ok(lambda: engine.chat.completions.create(messages=MSGS, max_tokens=2, response_format=rf))
    _one_line_or_ok(lambda: engine.chat.completions.create(messages=MSGS, max_tokens=2, tools=tools, tool_choice=choice,
                                                           parallel_tool_calls=parallel))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(calls=json_values, content=json_values, call_id=json_values)
def test_tool_messages_never_crash(engine: Any, calls: Any, content: Any, call_id: Any) -> None:
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": call_id, "content": content}]
    _one_line_or_ok(lambda: engine.chat.completions.create(messages=msgs, max_tokens=2))
