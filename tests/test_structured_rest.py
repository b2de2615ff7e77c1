"""Issue 13 through `webllm-py serve --api` with the openai client: the strict-request cases of
web/test/fixtures/strict_requests.json are 400s naming the field (as the Python and JS engines
refuse them), and, on the real SmolLM2-135M-Instruct (slow), json_schema replies that end with
"stop" validate and tool_choice "required" gives a get_weather call whose arguments validate,
non-streamed and streamed (tool-call deltas)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from serve_fakes import post_json
from webllm_py.serve import make_app, start_in_thread

FIXTURE = json.loads((Path(__file__).resolve().parents[1] / "web/test/fixtures/strict_requests.json").read_text())
MSGS = [{"role": "user", "content": "Once upon a time"}]


def _serve(bundle: Path, name: str) -> Any:
    import openai

    from webllm_py import Engine

    eng = Engine(bundle, backend="native", precision="f32", model_name=name)
    srv = start_in_thread(make_app({name: bundle}, api_models={name: eng}, queue_size=4))
    s = srv.__enter__()
    client = openai.OpenAI(base_url=f"{s.url}v1", api_key="x", max_retries=0, timeout=300)
    return srv, SimpleNamespace(port=s.port, client=client)


@pytest.fixture(scope="module")
def tiny_api(tiny_bundles):
    srv, api = _serve(tiny_bundles("llama", "q4"), "tiny")
    yield api
    srv.__exit__(None, None, None)


@pytest.mark.parametrize("case", FIXTURE["refused"], ids=[f"{c['api']}-{c['param']}-{i}" for i, c in enumerate(FIXTURE["refused"])])
def test_rest_refuses_what_the_engines_refuse(tiny_api: Any, case: dict) -> None:
    path, base = ("/v1/chat/completions", {"messages": MSGS}) if case["api"] == "chat" else ("/v1/completions", {"prompt": "Once"})
    s, _, body = post_json(tiny_api.port, path, {"model": "tiny", "max_tokens": 3, **base, **case["params"]})
    assert s == 400, body
    err = body["error"]
    assert case["match"] in err["message"] and err["param"].split(".")[0].split("[")[0] == case["param"], err


def test_openai_client_misspelt_field_is_a_bad_request(tiny_api: Any) -> None:
    import openai

    with pytest.raises(openai.BadRequestError) as ei:
        tiny_api.client.chat.completions.create(model="tiny", messages=MSGS, extra_body={"temprature": 0.5})
    assert "unknown field 'temprature' for chat.completions (did you mean 'temperature'?)" in str(ei.value)
    with pytest.raises(openai.BadRequestError, match="audio output is not supported"):
        tiny_api.client.chat.completions.create(model="tiny", messages=MSGS, audio={"voice": "alloy", "format": "wav"},
                                                modalities=["text", "audio"])
    r = tiny_api.client.chat.completions.create(model="tiny", messages=MSGS, max_tokens=4,
                                                extra_body={"top_k": 3, "min_p": 0.1, "ignore_eos": True})
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 4


# ---- the real SmolLM2 --------------------------------------------------------------------------

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"]}}}
CITY = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"},
                                         "population": {"type": "integer"}}, "required": ["city", "country", "population"]}


@pytest.fixture(scope="module")
def smol_api(smollm2_q4: Path):
    pytest.importorskip("xgrammar", reason="xgrammar is not installed (scripts/setup --test installs it)")
    srv, api = _serve(smollm2_q4, "smollm2")
    yield api
    srv.__exit__(None, None, None)


@pytest.mark.slow
def test_rest_json_schema_and_required_tool_call_with_the_openai_client(smol_api: Any) -> None:
    import jsonschema

    c = smol_api.client
    rf = {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY, "strict": True}}
    stopped = 0
    for seed, t in ((1, 0.0), (2, 0.7), (3, 1.0)):
        r = c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Tell me about Paris as JSON."}],
                                      response_format=rf, max_tokens=64, seed=seed, temperature=t)
        if r.choices[0].finish_reason == "stop":
            jsonschema.validate(json.loads(r.choices[0].message.content), CITY)
            stopped += 1
    assert stopped >= 2
    q = [{"role": "user", "content": "What's the weather like in Paris today?"}]
    r = c.chat.completions.create(model="smollm2", messages=q, tools=[WEATHER], tool_choice="required", max_tokens=80,
                                  seed=2, temperature=0.7)
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls" and ch.message.tool_calls[0].function.name == "get_weather"
    jsonschema.validate(json.loads(ch.message.tool_calls[0].function.arguments), WEATHER["function"]["parameters"])
    name, args, finish = "", "", None
    for chunk in c.chat.completions.create(model="smollm2", messages=q, tools=[WEATHER], tool_choice="required",
                                           max_tokens=80, seed=2, temperature=0.7, stream=True):
        for cc in chunk.choices:
            for tc in cc.delta.tool_calls or []:
                name += tc.function.name or ""
                args += tc.function.arguments or ""
            finish = cc.finish_reason or finish
    assert (name, args, finish) == ("get_weather", ch.message.tool_calls[0].function.arguments, "tool_calls")
