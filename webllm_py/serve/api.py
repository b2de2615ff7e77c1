"""OpenAI-compatible REST API of `webllm-py serve --api`, backed by `Engine`s.

Routes (all JSON; errors are OpenAI-shaped `{"error": {message, type, param, code}}`):

    GET  /v1/models              {"object": "list", "data": [{"id", "object": "model", ...}]}
    GET  /v1/models/{id}
    POST /v1/chat/completions    non-stream JSON, or SSE with "stream": true
    POST /v1/completions         idem, legacy text completions
    *    /v1/...                 404 (405 for a known path with the wrong method)

Concurrency model. An Engine owns one model with one KV cache, so requests for a
model run one at a time, in arrival order, on a dedicated worker thread per
model (`ModelWorker`): generation never blocks the event loop, and the model is
only ever touched from that one thread. At most `1 + queue_size` requests per
model are admitted (one running, the rest waiting); more get 503 with a
Retry-After estimated from recent request durations.

Streaming. The worker iterates the engine's generator and hands each chunk
(already a plain dict) to the event loop; the handler writes it as
`data: {...}\\n\\n` and ends with `data: [DONE]\\n\\n`. aiohttp does not cancel
handlers when a client goes away, so handlers watch the connection while they
wait; on a disconnect they flag the job, and the worker stops at the next chunk
and closes the generator, which releases the engine for the next request. A
request that disconnects while still queued is skipped. A running non-streamed
request cannot be interrupted (the engine offers no hook); it is bounded by
max_tokens and the context window.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import queue
import re
import threading
import time
from typing import Any, Callable, Mapping

from aiohttp import web

log = logging.getLogger("webllm_py.serve")

# How often a waiting handler checks whether its client is still connected.
POLL_SECONDS = 0.1

# OpenAI request fields each endpoint passes on to the engine's create().
CHAT_PARAMS = frozenset({
    "model", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "seed",
    "stop", "frequency_penalty", "presence_penalty", "repetition_penalty", "logit_bias", "logprobs", "top_logprobs",
    "chat_template_kwargs",
})
TEXT_PARAMS = frozenset({
    "model", "stream", "stream_options", "max_tokens", "temperature", "top_p", "n", "seed", "stop",
    "frequency_penalty", "presence_penalty", "repetition_penalty", "logit_bias", "logprobs",
})
# Fields OpenAI clients may send that change nothing here: accepted and dropped.
# Anything else (tools, response_format, echo, suffix, ...) is refused with 400 rather
# than silently ignored, so a client never believes a feature took effect.
IGNORED_PARAMS = frozenset({"user", "metadata", "store", "service_tier"})

API_PATHS = {"/v1/models": "GET", "/v1/chat/completions": "POST", "/v1/completions": "POST"}


# ---- errors -------------------------------------------------------------------------------


class APIError(Exception):
    """An error answered as an OpenAI error body."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status, headers=self.headers)


class _Cancelled(Exception):
    """The job was dropped before it ran (client gone, or the server is stopping)."""


class _ClientGone(Exception):
    """The client closed its connection while its request was pending or streaming."""


_PARAM_RE = re.compile(r"^([A-Za-z_]\w*)((?:\[\d+\]|\.[A-Za-z_]\w*)*)")


def _param_of(message: str, fields: set[str]) -> str | None:
    """The request field an engine ValueError is about: its message starts with the
    field's name ("temperature must be ...", "messages[0].role must be ...")."""
    m = _PARAM_RE.match(message)
    if m and m.group(1) in fields:
        return m.group(0)
    return None


def error_from_exception(e: BaseException, fields: set[str], prompt_field: str) -> APIError:
    """Map an exception raised by the engine to the API error to answer."""
    from ..errors import ContextWindowExceededError

    if isinstance(e, APIError):
        return e
    if isinstance(e, ContextWindowExceededError):
        return APIError(400, str(e), param=prompt_field, code="context_length_exceeded")
    if isinstance(e, ValueError):
        return APIError(400, str(e), param=_param_of(str(e), fields))
    if isinstance(e, _Cancelled):
        return APIError(503, f"request dropped: {e}", "server_error", code="server_shutting_down",
                        headers={"Retry-After": "1"})
    log.error("generation failed", exc_info=(type(e), e, e.__traceback__))
    return APIError(500, f"{type(e).__name__}: {e}", "server_error")


# ---- the per-model worker -------------------------------------------------------------------


class _Job:
    """One request's work for a ModelWorker and the channel its results come back on."""

    def __init__(self, fn: Callable[[Any], Any], stream: bool, loop: asyncio.AbstractEventLoop):
        self.fn = fn
        self.stream = stream
        self.loop = loop
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.cancelled = threading.Event()  # set by the handler, read by the worker
        self._get: asyncio.Future | None = None

    def post(self, kind: str, value: Any = None) -> None:
        """From the worker thread: hand an event to the handler on the event loop."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:
            pass  # the loop is closed: nobody is listening any more

    async def next(self, request: web.Request) -> tuple[str, Any]:
        """The next event; raises _ClientGone (and cancels the job) when the client disconnects."""
        while True:
            if self._get is None:
                self._get = asyncio.ensure_future(self.events.get())
            # asyncio.wait, not wait_for: a timeout must never lose an event that arrives at the same moment.
            done, _ = await asyncio.wait({self._get}, timeout=POLL_SECONDS)
            if done:
                ev, self._get = self._get.result(), None
                return ev
            if _disconnected(request):
                self.cancel()
                raise _ClientGone()

    def cancel(self) -> None:
        self.cancelled.set()
        if self._get is not None:
            self._get.cancel()
            self._get = None


def _disconnected(request: web.Request) -> bool:
    t = request.transport
    return t is None or t.is_closing()


class ModelWorker:
    """Runs one model's requests one at a time on a dedicated thread, from a bounded queue.

    `engine` is an Engine (anything with `.chat.completions.create` and
    `.completions.create`) or a zero-argument factory returning one, called on the
    worker thread when the worker starts (a load failure is answered as a 500 to
    every request).
    """

    def __init__(self, model_id: str, engine: Any, queue_size: int = 8):
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {queue_size}")
        self.model_id = model_id
        self.queue_size = queue_size
        self.created = int(time.time())
        self._source = engine
        self.engine: Any = None if _is_factory(engine) else engine
        self._load_error: BaseException | None = None
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._inflight = 0  # admitted and not finished; only touched on the event loop
        self._avg_seconds = 2.0  # moving average of request durations, for Retry-After
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle (event loop side) --

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"webllm-serve:{self.model_id}", daemon=True)
            self._thread.start()

    def request_stop(self) -> None:
        """Stop taking work: streams end at their next chunk, queued jobs are dropped."""
        self._stopping.set()
        self._jobs.put(None)

    async def join(self, timeout: float = 10.0) -> None:
        """Wait (off the event loop) for the worker thread to finish."""
        self.request_stop()
        t = self._thread
        if t is not None:
            await asyncio.get_running_loop().run_in_executor(None, t.join, timeout)
            if t.is_alive():
                log.warning("worker %s still busy after %.0f s; leaving it (daemon thread)", self.model_id, timeout)

    @property
    def inflight(self) -> int:
        return self._inflight

    def submit(self, fn: Callable[[Any], Any], stream: bool) -> _Job:
        """Admit a job (503 APIError when the queue is full) and queue it for the worker."""
        if self._stopping.is_set():
            raise APIError(503, "the server is shutting down", "server_error", code="server_shutting_down",
                           headers={"Retry-After": "5"})
        if self._inflight >= 1 + self.queue_size:
            retry = max(1, min(60, math.ceil(self._avg_seconds)))
            raise APIError(503, f"model {self.model_id!r} is busy ({self._inflight - 1} requests queued, "
                                f"queue size {self.queue_size}); retry later", "server_error",
                           code="queue_full", headers={"Retry-After": str(retry)})
        self.start()
        loop = asyncio.get_running_loop()
        job = _Job(fn, stream, loop)
        self._inflight += 1
        self._jobs.put(job)
        return job

    def _job_done(self, seconds: float) -> None:
        self._inflight -= 1
        self._avg_seconds = 0.7 * self._avg_seconds + 0.3 * seconds

    # -- the thread --

    def _run(self) -> None:
        if self.engine is None:
            try:
                self.engine = self._source()
            except BaseException as e:  # answered to each request instead of killing the thread
                log.error("loading model %s failed", self.model_id, exc_info=True)
                self._load_error = e
        while True:
            job = self._jobs.get()
            if job is None:
                break
            t0 = time.monotonic()
            try:
                self._do(job)
            finally:
                try:
                    job.loop.call_soon_threadsafe(self._job_done, time.monotonic() - t0)
                except RuntimeError:
                    pass
        # Whatever was still queued will never run: tell its handlers.
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.post("error", _Cancelled("the server is shutting down"))
                try:
                    job.loop.call_soon_threadsafe(self._job_done, 0.0)
                except RuntimeError:
                    pass

    def _do(self, job: _Job) -> None:
        if self._stopping.is_set():
            job.post("error", _Cancelled("the server is shutting down"))
            return
        if job.cancelled.is_set():
            job.post("error", _Cancelled("the client went away"))
            return
        if self._load_error is not None:
            job.post("error", RuntimeError(f"model {self.model_id!r} failed to load: {self._load_error}"))
            return
        try:
            result = job.fn(self.engine)
        except Exception as e:
            job.post("error", e)
            return
        if not job.stream:
            job.post("result", result.to_dict() if hasattr(result, "to_dict") else result)
            return
        try:
            for chunk in result:
                job.post("chunk", chunk.to_dict() if hasattr(chunk, "to_dict") else chunk)
                if job.cancelled.is_set() or self._stopping.is_set():
                    if self._stopping.is_set():
                        job.post("error", _Cancelled("the server is shutting down"))
                    break
            else:
                job.post("end")
        except Exception as e:
            job.post("error", e)
        finally:
            # Closing the generator runs its cleanup: the engine's lock is released here,
            # on the thread that will run the next request.
            close = getattr(result, "close", None)
            if close is not None:
                close()


def _is_factory(obj: Any) -> bool:
    return callable(obj) and not hasattr(obj, "chat")


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
        raise APIError(404, f"the model {mid!r} does not exist", param="model", code="model_not_found")
    return web.json_response(_model_object(w))


async def _read_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise APIError(400, f"the request body is not valid JSON: {e}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    return body


def _pick_worker(request: web.Request, body: dict[str, Any]) -> ModelWorker:
    workers = _workers(request)
    mid = body.get("model")
    if mid is None:
        if len(workers) == 1:  # lenient for curl users: the only model is the default
            return next(iter(workers.values()))
        raise APIError(400, f"model is required; served models: {sorted(workers)}", param="model")
    if not isinstance(mid, str) or mid not in workers:
        raise APIError(400, f"the model {mid!r} does not exist; served models: {sorted(workers)}",
                       param="model", code="model_not_found")
    return workers[mid]


def _engine_kwargs(body: dict[str, Any], allowed: frozenset[str], create: Callable, required: str) -> dict[str, Any]:
    """The create() keyword arguments of a request body; 400 for a missing or unsupported field."""
    if body.get(required) is None:
        raise APIError(400, f"{required} is required", param=required, code="missing_required_parameter")
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
    body = await _read_body(request)
    worker = _pick_worker(request, body)
    required = "messages" if chat else "prompt"
    allowed = CHAT_PARAMS if chat else TEXT_PARAMS
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
            except _ClientGone:
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


@web.middleware
async def api_errors(request: web.Request, handler: Callable) -> web.StreamResponse:
    """OpenAI error bodies for everything under /v1 (aiohttp's own 413/405/... included)."""
    try:
        return await handler(request)
    except APIError as e:
        return e.response()
    except web.HTTPException as e:
        if not request.path.startswith("/v1") or e.status < 400:
            raise
        return APIError(e.status, e.reason or "error", "invalid_request_error" if e.status < 500 else "server_error",
                        headers={k: v for k, v in e.headers.items() if k.lower() in ("allow", "retry-after")}
                        ).response()


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
    app.router.add_route("*", "/v1{tail:(/.*)?}", api_fallback)
