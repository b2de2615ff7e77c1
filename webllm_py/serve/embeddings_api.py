"""POST /v1/embeddings of `webllm-py serve --api`: OpenAI's embeddings endpoint.

The body is read and checked as the completion endpoints' are (body.py), the model
picked the same way, and the request runs on the model's worker thread; the engine's
embeddings.create_from_dict validates the fields (unknown ones included: 400 naming
them). A language model asked to embed, or an embedding model asked to chat, is a
400 whose message says which kind the model is.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .errors import error_from_exception
from .worker import ClientGone

FIELDS = {"input", "model", "dimensions", "encoding_format", "user"}


async def embeddings(request: web.Request) -> web.Response:
    from .api import BODY_TIMEOUT_KEY, BODY_TIMEOUT_S, _pick_worker
    from .body import read_body

    body = await read_body(request, request.app.get(BODY_TIMEOUT_KEY, BODY_TIMEOUT_S))
    worker = _pick_worker(request, body)
    params = {k: v for k, v in body.items() if k != "model" and v is not None}  # null means "not given"
    check = getattr(getattr(worker.engine, "embeddings", None), "check", None)
    if check is not None:  # the values before a queue slot: a 400 however busy the model is
        try:
            check(params)
        except ValueError as e:
            raise error_from_exception(e, FIELDS, "input") from None

    def run(engine: Any) -> Any:  # on the worker thread
        return engine.embeddings.create_from_dict(params)

    job = worker.submit(run, False)
    try:
        kind, value = await job.next(request)
    except ClientGone:
        return web.Response(status=499)
    if kind == "result":
        return web.json_response(value)
    return error_from_exception(value, FIELDS, "input").response()
