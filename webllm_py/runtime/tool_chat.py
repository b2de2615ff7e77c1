"""Tool calling in a chat request: the prompt side (messages and the template's tools) and the
reply side (message.tool_calls, finish_reason "tool_calls", streamed tool-call deltas).

tool_calls.py holds the formats; this module wires them to the engine (engine.py), as
web/src/tool_chat.js does for the JS engine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from . import openai_types as ot
from .chat_template import ChatTemplate
from .request import show
from .tool_calls import (TOOL_CALL_TEXT, TOOL_PROMPT, ParsedReply, ToolPlan, ToolStream, family_of, new_call_id, parse_tool_calls,
                         template_source, uses_tools_variable)


@dataclass
class ToolMode:
    """How one request uses tools: the plan, the template family, and whether a grammar forces calls."""

    plan: ToolPlan
    family: str
    template_has_tools: bool

    @property
    def constrained(self) -> bool:
        return self.plan.choice not in ("none", "auto")

    @property
    def parses(self) -> bool:  # tool_choice "none": the reply is content, whatever it looks like
        return self.plan.choice != "none"


def tool_mode(plan: ToolPlan | None, template: Any) -> ToolMode | None:
    if plan is None:
        return None
    src = template_source(template)
    return ToolMode(plan, family_of(src), uses_tools_variable(src))


def _tool_call_arguments(i: int, j: int, call: Any) -> dict[str, Any]:
    where = f"messages[{i}].tool_calls[{j}]"
    if not isinstance(call, Mapping) or not isinstance(call.get("function"), Mapping):
        raise ValueError(f"{where} must be {{id, type: function, function: {{name, arguments}}}}, got {show(call)}")
    fn = dict(call["function"])
    if not isinstance(fn.get("name"), str):
        raise ValueError(f"{where}.function.name must be a string, got {show(fn.get('name'))}")
    args = fn.get("arguments", "{}")
    if isinstance(args, str):  # OpenAI sends JSON text; chat templates expect the object (transformers' convention)
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            raise ValueError(f"{where}.function.arguments is not valid JSON: {show(args)}") from None
    if not isinstance(args, Mapping):
        raise ValueError(f"{where}.function.arguments must be a JSON object, got {show(args)}")
    fn["arguments"] = dict(args)
    return {**call, "function": fn}


def prompt_messages(msgs: list[dict[str, Any]], mode: ToolMode | None, template: Any) -> list[dict[str, Any]]:
    """Messages as the template gets them: assistant tool_calls with object arguments, tool
    results checked. A template that knows no tool_calls gets earlier calls as the Hermes text
    the model wrote and tool results as <tool_response> user turns; one without a tools
    variable gets the tools as a system prompt."""
    src = template_source(template)
    knows_calls = "tool_calls" in src
    out = []
    for i, m in enumerate(msgs):
        m = dict(m)
        if m.get("tool_calls") is not None:
            if m["role"] != "assistant" or not isinstance(m["tool_calls"], (list, tuple)):
                raise ValueError(f"messages[{i}].tool_calls must be a list, on an assistant message")
            m["tool_calls"] = [_tool_call_arguments(i, j, c) for j, c in enumerate(m["tool_calls"])]
            if m.get("content") is None:
                m["content"] = ""  # OpenAI sends null; templates (Qwen3's) read message.content
            if not knows_calls:
                calls = ChatTemplate(TOOL_CALL_TEXT).render([{"role": "system", "content": ""}], calls=m.pop("tool_calls"))
                m["content"] = f"{m['content']}\n{calls}" if m.get("content") else calls
        if m["role"] == "tool":
            if not isinstance(m.get("tool_call_id"), str):
                raise ValueError(f"messages[{i}].tool_call_id is required for role 'tool' (the id of the call it answers)")
            if not knows_calls:
                m = {"role": "user", "content": f"<tool_response>\n{m['content']}\n</tool_response>"}
        out.append(m)
    if mode is not None and not mode.template_has_tools:
        prompt = ChatTemplate(TOOL_PROMPT).render([{"role": "system", "content": ""}], tools=mode.plan.tools)
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{prompt}"}
        else:
            out.insert(0, {"role": "system", "content": prompt})
    return out


def template_tools(mode: ToolMode | None) -> list[dict[str, Any]] | None:
    """The template's tools variable."""
    return mode.plan.tools if mode is not None and mode.template_has_tools else None


def reply(mode: ToolMode | None, text: str, finish: str | None) -> tuple[ot.ChatCompletionMessage, str | None]:
    """A finished reply's message and finish_reason (tool_calls when it made calls)."""
    if mode is None or not mode.parses:
        return ot.ChatCompletionMessage(role="assistant", content=text), finish
    return _message(mode, text, parse_tool_calls(mode.family, text), finish)


def _message(mode: ToolMode, text: str, parsed: ParsedReply, finish: str | None) -> tuple[ot.ChatCompletionMessage, str | None]:
    if not parsed.calls or finish != "stop":  # a call cut by max_tokens is no call
        return ot.ChatCompletionMessage(role="assistant", content=text), finish
    calls = [ot.ChatCompletionMessageToolCall(c.id or new_call_id(mode.family), ot.Function(c.name, c.arguments))
             for c in parsed.calls]
    return ot.ChatCompletionMessage(role="assistant", content=parsed.content, tool_calls=calls), "tool_calls"


class StreamedReply:
    """The streamed form of `reply`: content deltas as they become safe, tool-call deltas at the end."""

    def __init__(self, mode: ToolMode | None):
        self.mode = mode
        self.stream = ToolStream(mode.family, mode.constrained) if mode is not None and mode.parses else None

    def content(self, piece: str) -> str:
        return piece if self.stream is None else self.stream.feed(piece)

    def end(self, finish: str | None) -> Iterator[tuple[ot.ChoiceDelta, str | None]]:
        """(delta, finish) pairs closing the reply: the content held back, or the calls (each
        an id/name delta, then its arguments), then the finish reason."""
        if self.stream is None:
            yield ot.ChoiceDelta(), finish
            return
        assert self.mode is not None
        sent, text = self.stream.sent, self.stream.text
        msg, fin = _message(self.mode, text, parse_tool_calls(self.mode.family, text), finish)
        rest = (msg.content or "")[sent:] if msg.tool_calls else text[sent:]
        if rest:
            yield ot.ChoiceDelta(content=rest), None
        for k, c in enumerate(msg.tool_calls or []):
            yield ot.ChoiceDelta(tool_calls=[ot.ChoiceDeltaToolCall(
                k, c.id, ot.ChoiceDeltaToolCallFunction(c.function.name, ""), "function")]), None
            yield ot.ChoiceDelta(tool_calls=[ot.ChoiceDeltaToolCall(
                k, function=ot.ChoiceDeltaToolCallFunction(arguments=c.function.arguments))]), None
        yield ot.ChoiceDelta(), fin
