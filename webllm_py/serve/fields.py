"""Field checks the REST layer makes before a request reaches the engine.

The engine validates every value it uses; these are the few things a server
must refuse on its own, because a hostile client could otherwise hold the model
or crash a request with them:

- `n` above OpenAI's own cap (128): one request would hold the model for n x
  max_tokens steps (the engine's validator has the cap too; checking here keeps
  any engine behind the server safe);
- `chat_template_kwargs` naming a variable the server passes to the template
  itself (`messages`, `add_generation_prompt`, ...): a TypeError deep in the
  engine otherwise;
- chat on a model whose bundle has no chat template (a base model): that is the
  client's mistake, to be told to use /v1/completions.
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any, Mapping

from .errors import APIError

MAX_N = 128  # OpenAI's cap on choices per request


@lru_cache(maxsize=1)
def reserved_template_vars() -> frozenset[str]:
    """Names a chat_template_kwargs entry must not take: the named parameters of the
    calls it is spread into (Tokenizer.apply_chat_template, ChatTemplate.render), so
    the list follows those signatures."""
    from ..runtime.chat_template import ChatTemplate
    from ..runtime.tokenizer import Tokenizer

    names: set[str] = set()
    for fn in (Tokenizer.apply_chat_template, ChatTemplate.render):
        for p in inspect.signature(fn).parameters.values():
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                names.add(p.name)
    return frozenset(names)


def _check_n(body: Mapping[str, Any]) -> None:
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > MAX_N:
        raise APIError(400, f"n must be in [1, {MAX_N}], got {n}", param="n", code="invalid_value")


def _check_template_kwargs(body: Mapping[str, Any]) -> None:
    kw = body.get("chat_template_kwargs")
    if kw is None:
        return
    if not isinstance(kw, Mapping):
        raise APIError(400, f"chat_template_kwargs must be an object, got {type(kw).__name__}",
                       param="chat_template_kwargs", code="invalid_value")
    for k in kw:
        if k in reserved_template_vars():
            raise APIError(400, f"chat_template_kwargs.{k} is not allowed: the server sets that template "
                                f"variable itself (reserved: {', '.join(sorted(reserved_template_vars()))})",
                           param=f"chat_template_kwargs.{k}", code="invalid_value")


def _check_chat_template(model_id: str, engine: Any) -> None:
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is not None and getattr(tokenizer, "chat_template", True) is None:
        raise APIError(400, f"model {model_id!r} has no chat template (its tokenizer config has none, e.g. a base "
                            f"model): use /v1/completions with a prompt instead", param="messages",
                       code="chat_template_missing")


def check_fields(body: Mapping[str, Any], chat: bool, model_id: str, engine: Any) -> None:
    """400 APIError for the refusals above; `engine` is None while the model still loads."""
    _check_n(body)
    if chat:
        _check_template_kwargs(body)
        if engine is not None:
            _check_chat_template(model_id, engine)
