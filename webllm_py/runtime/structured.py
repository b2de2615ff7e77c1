"""`response_format` of a chat request as a GrammarSpec (grammar.py), or None for free text.

Accepted shapes (OpenAI's and WebLLM's), each checked key by key with errors naming the field:

    {"type": "text"}                                            free text (no grammar)
    {"type": "json_object"}                                     any JSON object
    {"type": "json_object", "schema": "<JSON schema string>"}   WebLLM's schema form
    {"type": "json_schema", "json_schema": {"name": ..., "schema": {...}, "strict": ..., "description": ...}}
    {"type": "grammar", "grammar": "<EBNF>"}                    WebLLM's EBNF grammar (xgrammar's dialect)

The JS engine's web/src/structured.js is the same function with the same messages.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

from .grammar import GrammarSpec
from .request import show

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# keys allowed per type (besides "type")
_KEYS = {"text": (), "json_object": ("schema",), "json_schema": ("json_schema",), "grammar": ("grammar",)}
_JSON_SCHEMA_KEYS = ("name", "schema", "strict", "description")
ANY_OBJECT = '{"type": "object"}'


def _extra_keys(obj: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    extra = sorted(str(k) for k in obj if k not in allowed)
    if extra:
        raise ValueError(f"{where}: unknown field(s) {show(extra)}; allowed: {', '.join(allowed)}")


def schema_text(schema: Any, where: str) -> str:
    """A JSON schema (an object or WebLLM's JSON string) as JSON text; ValueError naming `where`."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as e:
            raise ValueError(f"{where} is not valid JSON: {e}") from None
    if not isinstance(schema, (Mapping, bool)):
        raise ValueError(f"{where} must be a JSON schema object, got {show(schema)}")
    try:
        return json.dumps(schema, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where} is not JSON data: {e}") from None


def response_format_spec(rf: Any) -> GrammarSpec | None:
    """The grammar a response_format asks for (None: free text)."""
    if rf is None:
        return None
    if hasattr(rf, "model_dump"):
        rf = rf.model_dump(exclude_none=True)
    if not isinstance(rf, Mapping):
        raise ValueError(f"response_format must be an object with a type, got {show(rf)}")
    kind = rf.get("type")
    if not isinstance(kind, str) or kind not in _KEYS:
        raise ValueError(f"response_format.type must be one of {list(_KEYS)}, got {show(kind)}")
    _extra_keys(rf, ("type", *_KEYS[kind]), "response_format")
    if kind == "text":
        return None
    if kind == "json_object":
        schema = rf.get("schema")
        src = ANY_OBJECT if schema is None else schema_text(schema, "response_format.schema")
        return GrammarSpec("json_schema", src, "response_format.schema" if schema is not None else "response_format")
    if kind == "grammar":
        g = rf.get("grammar")
        if not isinstance(g, str) or not g.strip():
            raise ValueError(f"response_format.grammar must be a non-empty EBNF string, got {show(g)}")
        return GrammarSpec("ebnf", g, "response_format.grammar")
    js = rf.get("json_schema")
    if not isinstance(js, Mapping):
        raise ValueError(f"response_format.json_schema must be an object with name and schema, got {show(js)}")
    _extra_keys(js, _JSON_SCHEMA_KEYS, "response_format.json_schema")
    name = js.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"response_format.json_schema.name must be 1-64 letters, digits, _ or -, got {show(name)}")
    for key, typ in (("strict", bool), ("description", str)):
        if js.get(key) is not None and not isinstance(js[key], typ):
            raise ValueError(f"response_format.json_schema.{key} must be a {typ.__name__}, got {show(js[key])}")
    schema = js.get("schema")
    src = ANY_OBJECT if schema is None else schema_text(schema, "response_format.json_schema.schema")
    return GrammarSpec("json_schema", src, "response_format.json_schema.schema")
