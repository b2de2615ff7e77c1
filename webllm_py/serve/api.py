"""OpenAI-compatible REST API of `webllm-py serve --api`, backed by `Engine`s.

Routes (all JSON; errors are OpenAI-shaped `{"error": {message, type, param, code}}`):

    GET  /v1/models              {"object": "list", "data": [{"id", "object": "model", ...}]}
    GET  /v1/models/{id}
    POST /v1/chat/completions    non-stream JSON, or SSE with "stream": true
    POST /v1/completions         idem, legacy text completions
    POST /v1/embeddings          OpenAI embeddings of an embedding model (embeddings_api.py)
    *    /v1/...                 404 (405 for a known path with the wrong method)

Requests for a model run one at a time on its worker thread (worker.py; 503 with
Retry-After when its queue is full). Before that, the body is read within a time
limit and checked (body.py: strict JSON, depth, integer size, valid Unicode) and
so are the few fields the server refuses itself (fields.py: n <= 128, reserved
chat-template variables, chat without a chat template).

Streaming. The worker iterates the engine's generator and hands each chunk
(already a plain dict) to the event loop; the handler writes it as
`data: {...}\\n\\n` and ends with `data: [DONE]\\n\\n`. A client that goes away
(streamed or not) has its job cancelled: the worker stops at the next model step
and the engine is free for the next request (worker.py, cancel.py).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from typing import Any, Callable, Mapping

from aiohttp import web

from .body import read_body
from .embeddings_api import embeddings
from .errors import APIError, error_from_exception, short_repr
from .fields import check_fields
from .worker import ClientGone, ModelWorker
from ..runtime.request_fields import CHAT_FIELDS, NO_EFFECT, TEXT_FIELDS, FieldError, check_fields as check_field_names

# Longest wait for a request body (slow clients; a trickled body must not hold a connection forever).
BODY_TIMEOUT_S = 60.0
BODY_TIMEOUT_KEY: web.AppKey[float] = web.AppKey("webllm_body_timeout", float)

# Request fields each endpoint passes on to the engine's create(): the engines' own tables
# (runtime/request_fields.py), so REST, the Python engine and the JS engine accept and refuse the
# same fields with the same messages. Fields that change nothing here (user, metadata, ...) are
# accepted and dropped; anything else (echo, audio, a misspelt field, ...) is refused with 400
# naming it rather than silently ignored, so a client never believes a feature took effect.
CHAT_PARAMS = CHAT_FIELDS - {"messages"}
TEXT_PARAMS = TEXT_FIELDS - {"prompt"}
IGNORED_PARAMS = NO_EFFECT

API_PATHS = {"/v1/models": "GET", "/v1/chat/completions": "POST", "/v1/completions": "POST", "/v1/embeddings": "POST"}


# ---- handlers ---------------------------------------------------------------------------------

WORKERS_KEY: web.AppKey[dict[str, ModelWorker]] = web.AppKey("webllm_workers", dict)


def _workers(request: web.Request) -> dict[str, ModelWorker]:
    return request.app[WORKERS_KEY]


def _model_object(w: ModelWorker) -> dict[str, Any]:
    return {"id": w.model_id, "object": "model", "created": w.created, "owned_by": "webllm-py"}


async def list_models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [_model_object(w) for w in _workers(request).values()]})


async def get_model(request: web.Request) -> web.Response:
    mid = request.match_info["model"]
    w = _workers(request).get(mid)
    if w is None:
        raise APIError(404, f"the model {short_repr(mid)} does not exist", param="model", code="model_not_found")
    return web.json_response(_model_object(w))


def _pick_worker(request: web.Request, body: dict[str, Any]) -> ModelWorker:
    workers = _workers(request)
    mid = body.get("model")
    if mid is None:
        if len(workers) == 1:  # lenient for curl users: the only model is the default
            return next(iter(workers.values()))
        raise APIError(400, f"model is required; served models: {sorted(workers)}", param="model")
    if not isinstance(mid, str) or mid not in workers:
        raise APIError(400, f"the model {short_repr(mid)} does not exist; served models: {sorted(workers)}",
                       param="model", code="model_not_found")
    return workers[mid]


def _engine_kwargs(body: dict[str, Any], allowed: frozenset[str], create: Callable, required: str) -> dict[str, Any]:
    """The create() keyword arguments of a request body; 400 for a missing or unsupported field."""
    if body.get(required) is None:
        raise APIError(400, f"{required} is required", param=required, code="missing_required_parameter")
    try:  # unknown and unsupported fields, named as the engines name them
        check_field_names([k for k, v in body.items() if v is not None], chat=required == "messages")
    except FieldError as e:
        raise APIError(400, str(e), param=e.param, code="unsupported_parameter") from None
    try:
        sig = inspect.signature(create)
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        names = set(sig.parameters)
    except (TypeError, ValueError):
        accepts_any, names = True, set()
    kw: dict[str, Any] = {}
    for k, v in body.items():
        if k == required or k in IGNORED_PARAMS or v is None:
            continue  # null means "not given", as the OpenAI API treats it
        if k not in allowed or not (accepts_any or k in names):
            raise APIError(400, f"{k} is not supported by this server", param=k, code="unsupported_parameter")
        kw[k] = v
    return kw


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _completion(request, chat=True)


async def completions(request: web.Request) -> web.StreamResponse:
    return await _completion(request, chat=False)


async def _completion(request: web.Request, chat: bool) -> web.StreamResponse:
    body = await read_body(request, request.app.get(BODY_TIMEOUT_KEY, BODY_TIMEOUT_S))
    worker = _pick_worker(request, body)
    required = "messages" if chat else "prompt"
    allowed = CHAT_PARAMS if chat else TEXT_PARAMS
    check_fields(body, chat, worker.model_id, worker.engine)
    # Validate field names against the engine's signature now, on the loop; values are the engine's job.
    sample_engine = worker.engine
    if sample_engine is not None:
        create = sample_engine.chat.completions.create if chat else sample_engine.completions.create
        kw = _engine_kwargs(body, allowed, create, required)
    else:  # still loading: check names against the OpenAI set only
        kw = _engine_kwargs(body, allowed, lambda **_: None, required)
    kw["model"] = worker.model_id
    prompt = body[required]
    stream = kw.get("stream") is True
    fields = set(allowed) | {required}
    # The values too, before the request takes a queue slot: a 400 is a 400 however busy
    # the model is (an engine without check_request is checked on the worker thread alone).
    check = getattr(sample_engine, "check_request", None)
    if check is not None:
        try:
            check({required: prompt, **kw}, chat)
        except ValueError as e:
            raise error_from_exception(e, fields, required) from None

    def run(engine: Any) -> Any:  # on the worker thread
        if chat:
            return engine.chat.completions.create(messages=prompt, **kw)
        return engine.completions.create(prompt=prompt, **kw)

    job = worker.submit(run, stream)
    done = False
    resp: web.StreamResponse | None = None
    try:
        while True:
            try:
                kind, value = await job.next(request)
            except ClientGone:
                done = True
                return resp if resp is not None else web.Response(status=499)
            if kind == "result":
                done = True
                return web.json_response(value)
            if kind == "error":
                done = True
                err = error_from_exception(value, fields, required)
                if resp is None:
                    return err.response()
                # Headers are gone already: report in-band, as OpenAI does (the client raises APIError).
                await resp.write(b"data: " + json.dumps(err.body()).encode() + b"\n\n")
                await resp.write_eof()
                return resp
            if resp is None:
                resp = web.StreamResponse(headers={
                    "Content-Type": "text/event-stream; charset=utf-8",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",  # reverse proxies: do not buffer the stream
                })
                await resp.prepare(request)
            if kind == "chunk":
                await resp.write(b"data: " + json.dumps(value, ensure_ascii=False).encode() + b"\n\n")
            elif kind == "end":
                done = True
                await resp.write(b"data: [DONE]\n\n")
                await resp.write_eof()
                return resp
    except ConnectionError:
        # write() to a connection the client closed: stop generating, nobody to answer
        done = True
        job.cancel()
        return resp if resp is not None else web.Response(status=499)
    finally:
        if not done:
            job.cancel()


async def api_fallback(request: web.Request) -> web.Response:
    """Everything else under /v1: 405 for a known path with the wrong method, else 404."""
    path = request.path.rstrip("/")
    method = API_PATHS.get(path) or ("GET" if re.fullmatch(r"/v1/models/[^/]+", path) else None)
    if method is not None and request.method != method:
        raise APIError(405, f"{request.method} is not allowed on {request.path}; use {method}",
                       code="method_not_allowed", headers={"Allow": method})
    raise APIError(404, f"unknown endpoint {request.method} {request.path}", code="unknown_url")


async def api_disabled(request: web.Request) -> web.Response:
    raise APIError(404, "the REST API is off; start the server with `webllm-py serve ... --api`", code="unknown_url")


def add_api_routes(app: web.Application, models: Mapping[str, Any] | None, queue_size: int) -> None:
    """Register /v1 routes; with `models` None the API answers 404 "start with --api"."""
    if models is None:
        app.router.add_route("*", "/v1{tail:(/.*)?}", api_disabled)
        return
    workers = {mid: ModelWorker(mid, eng, queue_size) for mid, eng in models.items()}
    app[WORKERS_KEY] = workers

    async def start(app: web.Application) -> None:
        for w in workers.values():
            w.start()  # loads factories now rather than on the first request

    async def shutdown(app: web.Application) -> None:
        for w in workers.values():
            w.request_stop()  # before aiohttp waits for handlers: streams end promptly

    async def cleanup(app: web.Application) -> None:
        await asyncio.gather(*(w.join() for w in workers.values()))

    app.on_startup.append(start)
    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(cleanup)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", get_model)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)  # embeddings_api.py
    app.router.add_route("*", "/v1{tail:(/.*)?}", api_fallback)
