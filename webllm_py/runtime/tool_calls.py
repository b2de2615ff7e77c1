"""Tool calling: request checks, the template family's call format, its grammar, and the parser.

The tool list reaches the model through its chat template's `tools` variable; a template that
never mentions `tools` (SmolLM2, Gemma 2, Phi-3.5, ...) gets the Hermes instructions as a system
message instead (TOOL_PROMPT, rendered with the same template engine, so the JS engine writes
the same prompt). Replies are parsed per family, told apart by what the template writes:

    hermes    <tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>   Qwen2.5/3, and the default
    llama3    {"name": ..., "parameters": {...}}  (optionally after <|python_tag|>)   Llama 3.1/3.2
    mistral   [TOOL_CALLS][{"name": ..., "arguments": {...}, "id": ...}, ...]        Mistral Nemo
    mistral11 [TOOL_CALLS]name[CALL_ID]id[ARGS]{...}  ([CALL_ID] optional)          Mistral Small 3.2

With tool_choice "required" or a named function the reply is constrained by an xgrammar
structural tag built from the tools' parameter schemas (TOOL_GRAMMAR per family), so it always
parses. Special tokens ([TOOL_CALLS], <|python_tag|>) cannot be spelled by a grammar; the
grammars leave them out and the parsers take them as optional. web/src/tool_calls.js is the
same module in JS (same rules, ids aside).
"""

from __future__ import annotations

import json
import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .grammar import GrammarSpec
from .request import show

FAMILIES = ("hermes", "llama3", "mistral", "mistral11")
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
TOOL_PROMPT = (  # Qwen2.5's tool instructions, for templates without a tools variable
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
    "{% for tool in tools %}{{ '\\n' }}{{ tool | tojson }}{% endfor %}{{ '\\n' }}</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>"
)
# An earlier assistant turn's calls, for templates that know no tool_calls: as the model wrote them.
# (Newlines right after block tags are written as {{ '\\n' }}: trim_blocks would drop them.)
TOOL_CALL_TEXT = (
    '{% for c in calls %}{% if not loop.first %}{{ "\\n" }}{% endif %}<tool_call>\n{"name": {{ c.function.name | tojson }}, '
    '"arguments": {{ c.function.arguments | tojson }}}\n</tool_call>{% endfor %}'
)


@dataclass
class ToolPlan:
    """A request's validated tools: the list (as the template gets it), tool_choice ("none",
    "auto", "required" or a function name) and whether several calls are allowed."""

    tools: list[dict[str, Any]]
    choice: str
    parallel: bool
    named: bool = False  # choice is a function name

    def schemas(self) -> list[tuple[str, Any]]:
        """(name, parameters schema) of the tools a call may use."""
        out = []
        for t in self.tools:
            f = t["function"]
            if not self.named or f["name"] == self.choice:
                out.append((f["name"], f.get("parameters") if f.get("parameters") is not None else {"type": "object"}))
        return out


@dataclass
class ToolCall:
    name: str
    arguments: str  # JSON text, as the model wrote it
    id: str = ""


@dataclass
class ParsedReply:
    content: str | None
    calls: list[ToolCall] = field(default_factory=list)


# ---- request checks ----------------------------------------------------------------------------


def _tool(i: int, t: Any) -> dict[str, Any]:
    where = f"tools[{i}]"
    if hasattr(t, "model_dump"):
        t = t.model_dump(exclude_none=True)
    if not isinstance(t, Mapping) or t.get("type") != "function":
        raise ValueError(f'{where} must be {{"type": "function", "function": {{...}}}}, got {show(t)}')
    extra = sorted(str(k) for k in t if k not in ("type", "function"))
    if extra:
        raise ValueError(f"{where}: unknown field(s) {show(extra)}")
    f = t.get("function")
    if not isinstance(f, Mapping):
        raise ValueError(f"{where}.function must be an object with a name, got {show(f)}")
    extra = sorted(str(k) for k in f if k not in ("name", "description", "parameters", "strict"))
    if extra:
        raise ValueError(f"{where}.function: unknown field(s) {show(extra)}")
    if not isinstance(f.get("name"), str) or not _NAME.fullmatch(f["name"]):
        raise ValueError(f"{where}.function.name must be 1-64 letters, digits, _ or -, got {show(f.get('name'))}")
    if f.get("description") is not None and not isinstance(f["description"], str):
        raise ValueError(f"{where}.function.description must be a string, got {show(f['description'])}")
    if f.get("parameters") is not None and not isinstance(f["parameters"], Mapping):
        raise ValueError(f"{where}.function.parameters must be a JSON schema object, got {show(f['parameters'])}")
    if f.get("strict") is not None and not isinstance(f["strict"], bool):
        raise ValueError(f"{where}.function.strict must be a bool, got {show(f['strict'])}")
    return {"type": "function", "function": {k: v for k, v in f.items() if v is not None}}


def tool_plan(tools: Any, tool_choice: Any, parallel: Any) -> ToolPlan | None:
    """The request's tools, checked (ValueError naming the field); None without tools."""
    if tools is None:
        for k, v in (("tool_choice", tool_choice), ("parallel_tool_calls", parallel)):
            if v is not None:
                raise ValueError(f"{k} needs tools")
        return None
    if not isinstance(tools, (list, tuple)):
        raise ValueError(f"tools must be a list of functions, got {show(tools)}")
    checked = [_tool(i, t) for i, t in enumerate(tools)]
    names = [t["function"]["name"] for t in checked]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"tools: function names must be unique, {show(dup)} repeat")
    if parallel is not None and not isinstance(parallel, bool):
        raise ValueError(f"parallel_tool_calls must be a bool, got {show(parallel)}")
    choice = "auto" if tool_choice is None else tool_choice
    if hasattr(choice, "model_dump"):
        choice = choice.model_dump(exclude_none=True)
    named = False
    if isinstance(choice, Mapping):
        fn = choice.get("function")
        if choice.get("type") != "function" or not isinstance(fn, Mapping) or set(choice) != {"type", "function"} \
                or set(fn) != {"name"}:
            raise ValueError(f'tool_choice must be "none", "auto", "required" or {{"type": "function", "function": '
                             f'{{"name": ...}}}}, got {show(choice)}')
        if fn["name"] not in names:
            raise ValueError(f"tool_choice.function.name {show(fn['name'])} is not one of the tools {show(names)}")
        choice, named = fn["name"], True
    elif choice not in ("none", "auto", "required"):
        raise ValueError(f'tool_choice must be "none", "auto", "required" or {{"type": "function", "function": '
                         f'{{"name": ...}}}}, got {show(choice)}')
    if choice == "required" and not checked:
        raise ValueError('tool_choice "required" needs at least one tool')
    # parallel_tool_calls defaults to false, unlike OpenAI's API: under a "required" grammar small
    # models go on repeating the call until max_tokens (SmolLM2-135M does)
    return ToolPlan(checked, choice, bool(parallel), named)


# ---- families ----------------------------------------------------------------------------------


def template_source(template: Any) -> str:
    """A chat template's text (all named templates of a list joined), for family detection."""
    if isinstance(template, str):
        return template
    if isinstance(template, (list, tuple)):
        return "\n".join(str(t.get("template", "")) for t in template if isinstance(t, Mapping))
    return ""


def family_of(source: str) -> str:
    """The tool-call format a chat template writes (hermes when it shows none)."""
    if "[TOOL_CALLS]" in source:
        return "mistral11" if "[ARGS]" in source else "mistral"
    if "<tool_call>" in source:
        return "hermes"
    if '"parameters"' in source and ("ipython" in source or "<|python_tag|>" in source):
        return "llama3"
    return "hermes"


def uses_tools_variable(source: str) -> bool:
    return re.search(r"\btools\b", source) is not None


def new_call_id(family: str) -> str:
    """Mistral's templates accept only 9 alphanumeric characters; others get OpenAI's call_ ids."""
    if family.startswith("mistral"):
        return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(9))
    return "call_" + secrets.token_hex(12)


# ---- grammars ----------------------------------------------------------------------------------


def _call_object(name: str, params: Any, args_key: str) -> dict[str, Any]:
    return {"type": "object", "properties": {"name": {"const": name}, args_key: params},
            "required": ["name", args_key], "additionalProperties": False}


def tool_grammar(plan: ToolPlan, family: str) -> GrammarSpec | None:
    """The grammar a "required" or named tool_choice constrains the reply to. The JSON in it is
    compact (xgrammar's schema grammars without free whitespace: a model cannot wander off into
    newlines), except mistral11's, which needs a structural tag (calls with text between)."""
    if plan.choice in ("none", "auto"):
        return None
    tools = plan.schemas()
    many = plan.parallel and not plan.named
    if family == "hermes":
        one = {"anyOf": [_call_object(n, p, "arguments") for n, p in tools]}
        tags = {"schema": one, "begin": "<tool_call>\n", "end": "\n</tool_call>", "separator": "\n", "many": many}
        return GrammarSpec("tags", json.dumps(tags), "tools")
    if family == "llama3":  # Llama 3.x templates take one call at a time
        return GrammarSpec("json_schema", json.dumps({"anyOf": [_call_object(n, p, "parameters") for n, p in tools]}), "tools")
    if family == "mistral":  # Mistral's template writes each call's 9-character id too
        items = [_call_object(n, p, "arguments") for n, p in tools]
        for it in items:
            it["properties"]["id"] = {"type": "string", "pattern": "^[A-Za-z0-9]{9}$"}
        arr: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"anyOf": items}}
        if not many:
            arr["maxItems"] = 1
        return GrammarSpec("json_schema", json.dumps(arr), "tools")
    # mistral11: name[ARGS]{...}, one or more in a row
    calls = [{"type": "sequence", "elements": [{"type": "const_string", "value": f"{n}[ARGS]"},
                                               {"type": "json_schema", "json_schema": p}]} for n, p in tools]
    one_call = calls[0] if len(calls) == 1 else {"type": "or", "elements": calls}
    fmt = {"type": "tags_with_separator", "separator": "[TOOL_CALLS]", "at_least_one": True,
           "stop_after_first": not many, "tags": [{"type": "tag", "begin": "", "content": one_call, "end": ""}]}
    return GrammarSpec("structural_tag", json.dumps({"type": "structural_tag", "format": fmt}), "tools")


# ---- parsing -----------------------------------------------------------------------------------


def json_value_end(text: str, i: int) -> int:
    """The end of the JSON value starting at text[i] (no validation: strings and brackets only);
    -1 if it does not end in `text`."""
    if i >= len(text):
        return -1
    c = text[i]
    if c == '"':
        j = i + 1
        while j < len(text):
            if text[j] == "\\":
                j += 2
                continue
            if text[j] == '"':
                return j + 1
            j += 1
        return -1
    if c in "{[":
        depth, j, in_str = 0, i, False
        while j < len(text):
            ch = text[j]
            if in_str:
                if ch == "\\":
                    j += 1
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
        return -1
    m = re.compile(r"-?[0-9][0-9eE.+-]*|true|false|null").match(text, i)
    return m.end() if m else -1


def _member_text(obj_text: str, key: str) -> str | None:
    """The raw text of a top-level member of a JSON object's text."""
    i, n = 1, len(obj_text)
    while i < n:
        while i < n and obj_text[i] in " \t\r\n,":
            i += 1
        if i >= n or obj_text[i] != '"':
            return None
        k_end = json_value_end(obj_text, i)
        if k_end < 0:
            return None
        k = json.loads(obj_text[i:k_end])
        i = k_end
        while i < n and obj_text[i] in " \t\r\n:":
            i += 1
        v_end = json_value_end(obj_text, i)
        if v_end < 0:
            return None
        if k == key:
            return obj_text[i:v_end]
        i = v_end
    return None


def _call_from(obj_text: str, args_key: str, family: str) -> ToolCall | None:
    try:
        obj = json.loads(obj_text)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    key = args_key if args_key in obj else "arguments" if "arguments" in obj else "parameters" if "parameters" in obj else None
    args = _member_text(obj_text, key) if key else "{}"
    if args is None or not isinstance(obj.get(key, {}), dict):
        return None
    return ToolCall(obj["name"], args, obj["id"] if isinstance(obj.get("id"), str) and family == "mistral" else "")


def _hermes(text: str, family: str) -> ParsedReply:
    calls, first = [], -1
    for m in re.finditer(r"<tool_call>\s*", text):
        start = m.end()
        end = json_value_end(text, start) if start < len(text) and text[start] == "{" else -1
        call = _call_from(text[start:end], "arguments", family) if end > 0 else None
        if call is None:
            return ParsedReply(text)
        calls.append(call)
        first = m.start() if first < 0 else first
    return ParsedReply(text[:first].rstrip() or None, calls) if calls else ParsedReply(text)


def _llama3(text: str, family: str) -> ParsedReply:
    body = text.strip()
    if body.startswith("<|python_tag|>"):
        body = body[len("<|python_tag|>"):].lstrip()
    calls, i = [], 0
    while body.startswith("{", i):  # calls separated by ";"
        end = json_value_end(body, i)
        call = _call_from(body[i:end], "parameters", family) if end > 0 else None
        if call is None:
            return ParsedReply(text)
        calls.append(call)
        i = end
        while i < len(body) and body[i] in " \t\r\n;":
            i += 1
    return ParsedReply(None, calls) if calls and i == len(body) else ParsedReply(text)


def _mistral(text: str, family: str) -> ParsedReply:
    at = text.find("[TOOL_CALLS]")
    body = text[at + len("[TOOL_CALLS]"):] if at >= 0 else text.lstrip()
    head = text[:at].rstrip() if at >= 0 else ""
    body = body.lstrip()
    end = json_value_end(body, 0) if body.startswith("[") else -1
    try:
        items = json.loads(body[:end]) if end > 0 else None
    except ValueError:
        items = None
    if not isinstance(items, list) or not items:
        return ParsedReply(text)
    calls, i = [], 1
    for _ in items:  # the raw text of each element, for its arguments
        while body[i] in " \t\r\n,":
            i += 1
        j = json_value_end(body, i)
        call = _call_from(body[i:j], "arguments", family)
        if call is None:
            return ParsedReply(text)
        calls.append(call)
        i = j
    return ParsedReply(head or None, calls)


_MISTRAL11 = re.compile(r"\s*(?:\[TOOL_CALLS\])?\s*([A-Za-z0-9_-]{1,64})(?:\[CALL_ID\]([A-Za-z0-9]+))?\[ARGS\]")


def _mistral11(text: str, family: str) -> ParsedReply:
    at = 0 if _MISTRAL11.match(text) else text.find("[TOOL_CALLS]")
    head, pos = (text[:at].rstrip(), at) if at >= 0 else ("", 0)
    calls = []
    while pos < len(text):
        m = _MISTRAL11.match(text, pos)
        if m is None:
            break
        end = json_value_end(text, m.end())
        try:
            ok = end > 0 and isinstance(json.loads(text[m.end():end]), dict)
        except ValueError:
            ok = False
        if not ok:
            return ParsedReply(text)
        calls.append(ToolCall(m.group(1), text[m.end():end], m.group(2) or ""))
        pos = end
    if not calls or text[pos:].strip():
        return ParsedReply(text)
    return ParsedReply(head or None, calls)


_PARSERS = {"hermes": _hermes, "llama3": _llama3, "mistral": _mistral, "mistral11": _mistral11}


def parse_tool_calls(family: str, text: str) -> ParsedReply:
    """The reply's tool calls in `family`'s format; a reply that is not wholly calls (after any
    leading text) is content with no calls."""
    return _PARSERS[family](text, family)


# ---- streaming ---------------------------------------------------------------------------------

# Where a call can begin: anywhere (after content) or only as the reply's first text.
_ANYWHERE = {"hermes": ("<tool_call>",), "llama3": (), "mistral": ("[TOOL_CALLS]",), "mistral11": ("[TOOL_CALLS]",)}
_AT_START = {"hermes": (), "llama3": ("{", "<|python_tag|>"), "mistral": ("[",), "mistral11": ()}


def _mistral11_start(s: str) -> str:
    """Whether a reply beginning `s` is a name[ARGS] / name[CALL_ID] call ("call"), may still
    become one ("maybe"), or is text ("text")."""
    m = re.match(r"[A-Za-z0-9_-]{0,65}", s)
    if m.end() > 64:
        return "text"
    rest = s[m.end():]
    if m.end() > 0 and (rest.startswith("[ARGS]") or rest.startswith("[CALL_ID]")):
        return "call"
    return "maybe" if "[ARGS]".startswith(rest) or "[CALL_ID]".startswith(rest) else "text"


class ToolStream:
    """Streams a tool-mode reply's content, holding back from the first possible call marker on
    (and trailing whitespace), so that the content streamed equals the final message.content.
    `constrained`: a grammar makes the whole reply calls, so nothing is content."""

    def __init__(self, family: str, constrained: bool = False):
        self.family = family
        self.text = ""  # the whole reply so far
        self.sent = 0  # characters of it emitted as content
        self.held = constrained  # a call has begun: everything after `sent` waits for finish()

    def feed(self, piece: str) -> str:
        """Content safe to emit now."""
        self.text += piece
        if self.held:
            return ""
        t = self.text
        if self.sent == 0 and self.family == "mistral11":
            start = _mistral11_start(t.lstrip())
            if start == "call":
                self.held = True
                return ""
            if start == "maybe":
                return ""
        if self.sent == 0 and _AT_START[self.family]:
            s = t.lstrip()
            if any(s.startswith(m) for m in _AT_START[self.family]):
                self.held = True
                return ""
            if not s or any(m.startswith(s) for m in _AT_START[self.family]):
                return ""  # not decided yet
        cut = len(t)
        for m in _ANYWHERE[self.family]:
            i = t.find(m, self.sent)
            if i >= 0:
                cut, self.held = min(cut, i), True
                continue
            for k in range(min(len(m) - 1, len(t) - self.sent), 0, -1):  # a tail that may grow into m
                if t.endswith(m[:k]):
                    cut = min(cut, len(t) - k)
                    break
        keep = t[self.sent:cut].rstrip()  # trailing whitespace waits: it is not content before a call
        out, self.sent = keep, self.sent + len(keep)
        return out
