"""Render a Hugging Face chat template (tokenizer_config.json's `chat_template`).

Mirrors transformers' `apply_chat_template(tokenize=False)`: the template is
compiled in an `ImmutableSandboxedEnvironment` with trim_blocks/lstrip_blocks
and the loopcontrols extension, like transformers' `_compile_jinja_template`;
the globals `raise_exception`, `strftime_now`, `dict`, `namespace` and a
`tojson` filter that does not HTML-escape (ensure_ascii=False) are provided, and
the template sees `messages`, `add_generation_prompt`, `tools`, `documents` and
the tokenizer's special-token strings (`bos_token`, `eos_token`, ...).

Templates stored as a list of named templates (`[{"name": ..., "template": ...}]`)
use the one named "default" (or "tool_use" when tools are given and it exists).
The `{% generation %}` tag (assistant-mask tracking in transformers) is accepted
and renders its body unchanged.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Mapping, Sequence

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.utils
from jinja2.sandbox import ImmutableSandboxedEnvironment

# transformers' SPECIAL_TOKENS_ATTRIBUTES: the named special tokens a template sees.
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")

# Names a message's reasoning is passed under (transformers' _REASONING_FIELDS).
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


class _GenerationTag(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}`: renders the body as is."""

    tags = {"generation"}

    def parse(self, parser: Any) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller: Any) -> str:
        return caller()


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False) -> str:
    # Jinja's own tojson HTML-escapes (<, >, &, '), which chat templates must not do.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _TemplateDict:
    """`dict(...)` in templates, without exposing the dict type itself to the sandbox."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
        return dict.fromkeys(*args, **kwargs)


class _TemplateNamespace(jinja2.utils.Namespace):
    """`namespace(...)` that refuses underscore-prefixed attributes (no CPython internals)."""

    def __init__(*args: Any, **kwargs: Any):  # same signature trick as jinja2's Namespace
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"chat templates cannot set underscore attributes on a namespace: {name!r}")


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _TemplateNamespace
    return env


def _token_str(value: Any) -> str | None:
    """A special token from tokenizer_config.json: a string or a serialized AddedToken dict."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        content = value.get("content")
        return None if content is None else str(content)
    return str(value)


def special_tokens_from_config(config: Mapping[str, Any]) -> dict[str, str]:
    """The special-token strings transformers passes to templates (its `special_tokens_map`):
    the named ones set in the config, plus named `extra_special_tokens` (transformers v5)."""
    out: dict[str, str] = {}
    for name in SPECIAL_TOKEN_NAMES:
        s = _token_str(config.get(name))
        if s is not None:
            out[name] = s
    extra = config.get("extra_special_tokens")
    if isinstance(extra, Mapping):
        for name, value in extra.items():
            s = _token_str(value)
            if s is not None:
                out.setdefault(str(name), s)
    return out


def _select_template(template: str | Sequence[Mapping[str, str]], tools: Any) -> str:
    if isinstance(template, str):
        return template
    named = {t["name"]: t["template"] for t in template}
    if tools is not None and "tool_use" in named:
        return named["tool_use"]
    if "default" in named:
        return named["default"]
    raise ValueError(f"chat_template: no template named 'default' among {sorted(named)}")


def _plain(value: Any) -> Any:
    """Plain JSON-like copy of the inputs (templates must not reach arbitrary objects)."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump())
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return f"<{type(value).__name__}>"


def normalize_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """transformers' preprocessing: drop None-valued keys; alias reasoning fields."""
    out = []
    for m in messages:
        msg = {k: _plain(v) for k, v in m.items() if v is not None}
        reasoning = next((msg[k] for k in _REASONING_FIELDS if msg.get(k) is not None), None)
        if reasoning is not None:
            msg = {"thinking": reasoning, **msg, "reasoning_content": reasoning}
        out.append(msg)
    return out


class ChatTemplate:
    """A compiled chat template plus the special-token strings it renders with."""

    def __init__(self, template: str | Sequence[Mapping[str, str]], special_tokens: Mapping[str, str] | None = None):
        self.template = template
        self.special_tokens = dict(special_tokens or {})
        self._env = _environment()
        self._compiled: dict[str, jinja2.Template] = {}

    @classmethod
    def from_tokenizer_config(cls, config: Mapping[str, Any], template: Any = None) -> "ChatTemplate":
        """From a parsed tokenizer_config.json (`template` overrides its chat_template)."""
        template = template if template is not None else config.get("chat_template")
        if template is None:
            raise ValueError("tokenizer_config.json has no chat_template")
        return cls(template, special_tokens_from_config(config))

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = False,
        tools: Sequence[Mapping[str, Any]] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> str:
        """The prompt text, as `tokenizer.apply_chat_template(messages, tokenize=False, ...)`.

        Extra kwargs (e.g. `enable_thinking=False`) become template variables and
        override special tokens of the same name. Template errors
        (`raise_exception`) surface as jinja2.TemplateError.
        """
        source = _select_template(self.template, tools)
        tpl = self._compiled.get(source)
        if tpl is None:
            tpl = self._compiled[source] = self._env.from_string(source)
        variables = {**self.special_tokens, **_plain(kwargs)}
        return tpl.render(
            messages=normalize_messages(messages),
            tools=_plain(tools),
            documents=_plain(documents),
            add_generation_prompt=add_generation_prompt,
            **variables,
        )
