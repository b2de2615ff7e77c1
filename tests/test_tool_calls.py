"""Tool calling (issue 13): the template families, their parsers and grammars, the request checks,
and the engine's tool_calls replies (non-streamed and streamed), on the real chat templates of
../shared/models/chat-templates and the real SmolLM2-135M-Instruct.

Round trips: each family's real template renders an assistant turn with tool_calls; the parser
must get the same calls (names, and arguments equal as JSON) back from that text, and the
family's "required" grammar must accept it (as far as a grammar can spell it: special tokens
such as [TOOL_CALLS] are left out). No tolerances: parsed or not, valid or not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import SHARED_MODELS
from test_engine import MSGS, bundle, make_engine  # noqa: F401  (bundle is a fixture)
from webllm_py.runtime.chat_template import ChatTemplate
from webllm_py.runtime.tool_calls import (ToolStream, family_of, parse_tool_calls, template_source, tool_grammar,
                                          tool_plan, uses_tools_variable)

TEMPLATES = SHARED_MODELS / "chat-templates"
FIXTURE = json.loads((Path(__file__).resolve().parents[1] / "web/test/fixtures/tool_calls.json").read_text())
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {
    "zone": {"type": "string"}}, "required": ["zone"]}}}
FAMILY = {  # template file -> the family it writes; the last four write no tool calls (hermes + injected prompt)
    "Qwen-Qwen2.5-7B-Instruct.jinja": "hermes", "Qwen-Qwen3-0.6B.jinja": "hermes",
    "meta-llama-Llama-3.1-8B-Instruct.jinja": "llama3", "meta-llama-Llama-3.2-3B-Instruct.jinja": "llama3",
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": "mistral", "Mistral-Small-3.2-24B-Instruct-2506.jinja": "mistral11",
    "HuggingFaceTB-SmolLM3-3B.jinja": "hermes", "google-gemma-2-2b-it.jinja": "hermes",
    "microsoft-Phi-3.5-mini-instruct.jinja": "hermes",
}
SPECIAL = {"bos_token": "<s>", "eos_token": "</s>"}
END = ("<|im_end|>\n", "<|im_end|>", "<|eot_id|>", "</s>")


def _template(name: str) -> str:
    p = TEMPLATES / name
    if not p.is_file():
        pytest.skip(f"{p} is absent (real chat templates live in ../shared/models beside the repo)")
    return p.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_family_of_each_real_template(name: str) -> None:
    src = _template(name)
    assert family_of(src) == FAMILY[name]
    assert uses_tools_variable(src) == (name in list(FAMILY)[:6])


def _assistant_text(src: str, calls: list[dict]) -> str:
    """The text the template writes for an assistant turn making `calls` (its generation prompt cut off)."""
    tpl = ChatTemplate(src, SPECIAL)
    user = [{"role": "user", "content": "What is the weather in Paris and the time in Tokyo?"}]
    turn = {"role": "assistant", "content": "", "tool_calls": [
        {"id": f"call{k:05d}", "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
        for k, c in enumerate(calls)]}
    prefix = tpl.render(user, add_generation_prompt=True, tools=[WEATHER, TIME])
    full = tpl.render(user + [turn], tools=[WEATHER, TIME])
    common = 0
    while common < min(len(prefix), len(full)) and prefix[common] == full[common]:
        common += 1
    text = full[common:]
    for end in END:
        if text.endswith(end):
            text = text[: -len(end)]
    return text


ROUND_TRIP = ["Qwen-Qwen2.5-7B-Instruct.jinja", "Qwen-Qwen3-0.6B.jinja", "meta-llama-Llama-3.1-8B-Instruct.jinja",
              "meta-llama-Llama-3.2-3B-Instruct.jinja", "mistralai-Mistral-Nemo-Instruct-2407.jinja",
              "Mistral-Small-3.2-24B-Instruct-2506.jinja"]


@pytest.mark.parametrize("name", ROUND_TRIP)
@pytest.mark.parametrize("n", [1, 2])
def test_parser_reads_back_what_the_real_template_writes(name: str, n: int) -> None:
    src = _template(name)
    fam = family_of(src)
    calls = [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
             {"name": "get_time", "arguments": {"zone": "Asia/Tokyo"}}][:n]
    if fam == "llama3" and n == 2:  # Llama 3.x templates take one call per turn (their grammar too)
        import jinja2

        with pytest.raises(jinja2.TemplateError, match="only supports single tool-calls"):
            _assistant_text(src, calls)
        return
    text = _assistant_text(src, calls)
    got = parse_tool_calls(fam, text)
    assert [(c.name, json.loads(c.arguments)) for c in got.calls] == [(c["name"], c["arguments"]) for c in calls], text
    if fam == "mistral11":
        assert [c.id for c in got.calls] == [f"call{k:05d}" for k in range(n)]  # [CALL_ID] is read back


@pytest.mark.parametrize("case", FIXTURE["cases"], ids=lambda c: f"{c['family']}-{c['text'][:20]}")
def test_parser_cases_and_streaming_hold_back(case: dict) -> None:
    """The shared cases (the JS parser is held to them too); streamed char by char, the content
    emitted equals the final content."""
    r = parse_tool_calls(case["family"], case["text"])
    assert r.content == case["content"]
    assert [{"name": c.name, "arguments": c.arguments, "id": c.id} for c in r.calls] == case["calls"]
    st = ToolStream(case["family"])
    streamed = "".join(st.feed(ch) for ch in case["text"])
    assert case["text"].startswith(streamed)
    assert (r.content or "" if r.calls else case["text"]).startswith(streamed)


@pytest.fixture(scope="module")
def smol_grammars() -> Any:
    pytest.importorskip("xgrammar", reason="xgrammar is not installed (scripts/setup --test installs it)")
    from webllm_py.runtime.grammar import grammars_for
    from webllm_py.runtime.tokenizer import Tokenizer

    p = SHARED_MODELS / "smollm2-135m-instruct" / "tokenizer.json"
    if not p.is_file():
        pytest.skip(f"{p} is absent")
    return grammars_for(Tokenizer(p, {}), 49152, [2])


def _accepts(grammars: Any, spec: Any, text: str) -> bool:
    m = grammars._xgr.GrammarMatcher(grammars.compile(spec))
    if not m.accept_string(text):
        return False
    mask = grammars.guide(grammars.compile(spec))  # noqa: F841 (compiles again: cached)
    import numpy as np

    bm = grammars._xgr.allocate_token_bitmask(1, 49152)
    m.fill_next_token_bitmask(bm)
    return bool(np.unpackbits(bm.numpy()[0].view(np.uint8), bitorder="little")[2])  # eos allowed: complete


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_required_grammar_accepts_the_templates_call(smol_grammars: Any, name: str) -> None:
    src = _template(name)
    fam = family_of(src)
    text = _assistant_text(src, [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}])
    if "</think>" in text:  # Qwen3 writes an empty thinking block before the calls
        text = text[text.index("</think>") + len("</think>"):]
    for special in ("[TOOL_CALLS]", "<|python_tag|>"):
        text = text.replace(special, "")  # a grammar cannot spell special tokens; the parsers take them as optional
    if fam == "mistral11":
        text = text.replace("[CALL_ID]call00000", "")
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        spec = tool_grammar(tool_plan([WEATHER, TIME], choice, None), fam)
        assert _accepts(smol_grammars, spec, text.strip()), (name, choice, text)
    named_other = tool_grammar(tool_plan([WEATHER, TIME], {"type": "function", "function": {"name": "get_time"}}, None), fam)
    assert not _accepts(smol_grammars, named_other, text.strip())


BAD_TOOLS = [
    (dict(tools="get_weather"), "tools must be a list of functions"),
    (dict(tools=[{"type": "code_interpreter"}]), 'tools[0] must be {"type": "function"'),
    (dict(tools=[{"type": "function", "function": {"name": "a b"}}]), "tools[0].function.name must be 1-64"),
    (dict(tools=[{"type": "function", "function": {"name": "f", "parameters": []}}]), "tools[0].function.parameters must be a JSON schema object"),
    (dict(tools=[{"type": "function", "function": {"name": "f", "extra": 1}}]), "tools[0].function: unknown field(s) ['extra']"),
    (dict(tools=[WEATHER, WEATHER]), "tools: function names must be unique, ['get_weather'] repeat"),
    (dict(tools=[WEATHER], tool_choice="sometimes"), 'tool_choice must be "none", "auto", "required"'),
    (dict(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}}), "tool_choice.function.name 'nope' is not one of the tools"),
    (dict(tools=[], tool_choice="required"), 'tool_choice "required" needs at least one tool'),
    (dict(tool_choice="auto"), "tool_choice needs tools"),
    (dict(parallel_tool_calls=True), "parallel_tool_calls needs tools"),
    (dict(tools=[WEATHER], parallel_tool_calls="yes"), "parallel_tool_calls must be a bool"),
    (dict(tools=[WEATHER], tool_choice="required", response_format={"type": "json_object"}), "response_format cannot be combined with tool_choice"),
    (dict(chat_template_kwargs={"tools": [WEATHER]}), "chat_template_kwargs.tools is not allowed"),
]


@pytest.mark.parametrize("kw,match", BAD_TOOLS, ids=[f"bad-{i}" for i in range(len(BAD_TOOLS))])
def test_bad_tool_requests_name_the_field(bundle: Any, kw: dict, match: str) -> None:
    eng, lm = make_engine(bundle)
    with pytest.raises(ValueError) as ei:
        eng.chat.completions.create(messages=MSGS, max_tokens=4, **kw)
    assert match in str(ei.value) and "\n" not in str(ei.value)
    assert lm.forward_calls == 0


BAD_MESSAGES = [
    ([{"role": "user", "content": "x"}, {"role": "tool", "content": "18"}], "messages[1].tool_call_id is required"),
    ([{"role": "user", "content": "x"}, {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]}],
     "messages[1].tool_calls[0].function.arguments is not valid JSON"),
    ([{"role": "user", "content": "x", "tool_calls": []}], "messages[0].tool_calls must be a list, on an assistant message"),
]


@pytest.mark.parametrize("messages,match", BAD_MESSAGES, ids=[f"msg-{i}" for i in range(len(BAD_MESSAGES))])
def test_bad_tool_messages_name_the_message(bundle: Any, messages: list, match: str) -> None:
    eng, _ = make_engine(bundle)
    with pytest.raises(ValueError, match=match.replace("[", r"\[").replace("]", r"\]")):
        eng.chat.completions.create(messages=messages, max_tokens=4)


def _chunks_message(chunks: list) -> tuple[str | None, list[tuple[str, str]], str | None]:
    content, calls, finish = "", {}, None
    for ch in chunks:
        for c in ch.choices:
            content += c.delta.content or ""
            for tc in c.delta.tool_calls or []:
                cur = calls.setdefault(tc.index, ["", ""])
                cur[0] += tc.function.name or ""
                cur[1] += tc.function.arguments or ""
            finish = c.finish_reason or finish
    return content or None, [tuple(v) for _, v in sorted(calls.items())], finish


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_required_and_named_choices_always_call(bundle: Any, choice: Any) -> None:
    """The FakeLM favours story words; the grammar makes every reply one call whose arguments
    validate (Qwen3's own template: the hermes family), streamed as OpenAI tool-call deltas."""
    import jsonschema

    eng, _ = make_engine(bundle)
    for seed in (1, 2, 3):
        kw = dict(messages=MSGS, tools=[WEATHER, TIME], tool_choice=choice, max_tokens=60, seed=seed, temperature=1.0)
        r = eng.chat.completions.create(**kw)
        c = r.choices[0]
        if c.finish_reason == "length":  # a long free-text city string; allowed to be cut
            continue
        assert c.finish_reason == "tool_calls" and c.message.content is None
        (call,) = c.message.tool_calls
        assert call.id.startswith("call_") and call.type == "function"
        schema = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, TIME)}[call.function.name]
        jsonschema.validate(json.loads(call.function.arguments), schema)
        if isinstance(choice, dict):
            assert call.function.name == "get_weather"
        content, calls, finish = _chunks_message(list(eng.chat.completions.create(stream=True, **kw)))
        assert (content, calls, finish) == (None, [(call.function.name, call.function.arguments)], "tool_calls")


def test_auto_and_none_give_content_and_tool_results_reach_the_template(bundle: Any) -> None:
    eng, _ = make_engine(bundle)
    a = eng.chat.completions.create(messages=MSGS, tools=[WEATHER], max_tokens=10, temperature=0)
    assert a.choices[0].message.tool_calls is None and a.choices[0].finish_reason == "length"
    n = eng.chat.completions.create(messages=MSGS, tools=[WEATHER], tool_choice="none", max_tokens=10, temperature=0)
    assert n.choices[0].message.content == a.choices[0].message.content
    turn = [{"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
                "name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 18}'}]
    text = eng.tokenizer.decode(eng._chat_prompt(turn, None), skip_special_tokens=False)
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>' in text
    assert '<tool_response>\n{"temp": 18}\n</tool_response>' in text
    r = eng.chat.completions.create(messages=turn, tools=[WEATHER], max_tokens=5, temperature=0)
    assert r.choices[0].finish_reason == "length"


# ---- the real SmolLM2-135M-Instruct (its template has no tools: the injected Hermes prompt) ------


@pytest.mark.slow
def test_smollm2_required_tool_call_validates(smollm2_q4: Path) -> None:
    import jsonschema

    from webllm_py.runtime.engine import Engine

    eng = Engine(smollm2_q4, backend="native", precision="f32")
    q = [{"role": "user", "content": "What's the weather like in Paris today?"}]
    for seed, t in ((1, 0.0), (2, 0.7), (3, 1.0)):
        r = eng.chat.completions.create(messages=q, tools=[WEATHER], tool_choice="required", max_tokens=80, seed=seed, temperature=t)
        c = r.choices[0]
        assert c.finish_reason == "tool_calls", c.message
        (call,) = c.message.tool_calls
        assert call.function.name == "get_weather"
        jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])
    follow = q + [{"role": "assistant", "content": None, "tool_calls": [c.message.tool_calls[0].to_dict()]},
                  {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 18, "unit": "celsius"}'}]
    r2 = eng.chat.completions.create(messages=follow, tools=[WEATHER], max_tokens=40, temperature=0)
    assert r2.choices[0].message.content  # the turn goes on after the tool result
