"""The per-model worker of the REST API: one thread per model, a bounded queue, and
the channel each request's results come back on.

An Engine owns one model with one KV cache, so requests for a model run one at a
time, in arrival order, on a dedicated worker thread (`ModelWorker`): generation
never blocks the event loop, and the model is only ever touched from that one
thread. At most `1 + queue_size` requests per model are admitted (one running,
the rest waiting); more get 503 with a Retry-After estimated from recent request
durations.

Disconnects. aiohttp does not cancel handlers when a client goes away, so
handlers watch the connection while they wait (`_Job.next`); on a disconnect they
flag the job. A queued job whose flag is set is skipped; a running one stops at
its next model step (see cancel.py), streamed or not, which releases the engine
for the next request.
"""

from __future__ import annotations

import asyncio
import math
import queue
import threading
import time
from typing import Any, Callable

from aiohttp import web

from .cancel import cancellable
from .errors import APIError, Cancelled, log

# How often a waiting handler checks whether its client is still connected.
POLL_SECONDS = 0.1


class ClientGone(Exception):
    """The client closed its connection while its request was pending or streaming."""


class _Job:
    """One request's work for a ModelWorker and the channel its results come back on."""

    def __init__(self, fn: Callable[[Any], Any], stream: bool, loop: asyncio.AbstractEventLoop):
        self.fn = fn
        self.stream = stream
        self.loop = loop
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.cancelled = threading.Event()  # set by the handler, read by the worker
        self.started = 0.0  # time.monotonic() when the worker took it
        self.ended = False  # the last event is posted (worker thread only)
        self._get: asyncio.Future | None = None

    def post(self, kind: str, value: Any = None) -> None:
        """From the worker thread: hand an event to the handler on the event loop."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:
            pass  # the loop is closed: nobody is listening any more

    async def next(self, request: web.Request) -> tuple[str, Any]:
        """The next event; raises ClientGone (and cancels the job) when the client disconnects."""
        while True:
            if self._get is None:
                self._get = asyncio.ensure_future(self.events.get())
            # asyncio.wait, not wait_for: a timeout must never lose an event that arrives at the same moment.
            done, _ = await asyncio.wait({self._get}, timeout=POLL_SECONDS)
            if done:
                ev, self._get = self._get.result(), None
                return ev
            if disconnected(request):
                self.cancel()
                raise ClientGone()

    def cancel(self) -> None:
        self.cancelled.set()
        if self._get is not None:
            self._get.cancel()
            self._get = None


def disconnected(request: web.Request) -> bool:
    t = request.transport
    return t is None or t.is_closing()


def _is_factory(obj: Any) -> bool:
    return callable(obj) and not hasattr(obj, "chat")


def _plain(obj: Any) -> Any:
    return obj.to_dict() if hasattr(obj, "to_dict") else obj


class ModelWorker:
    """Runs one model's requests one at a time on a dedicated thread, from a bounded queue.

    `engine` is an Engine (anything with `.chat.completions.create` and
    `.completions.create`) or a zero-argument factory returning one, called on the
    worker thread when the worker starts (a load failure is answered as a 500 to
    every request). `jobs_cancelled` counts the jobs whose client left before they
    finished (skipped while queued, or stopped while running).
    """

    def __init__(self, model_id: str, engine: Any, queue_size: int = 8):
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {queue_size}")
        self.model_id = model_id
        self.queue_size = queue_size
        self.created = int(time.time())
        self._source = engine
        self.engine: Any = None if _is_factory(engine) else engine
        self.jobs_cancelled = 0  # written on the worker thread only
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
        """Stop taking work: running jobs end at their next model step, queued jobs are dropped."""
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

    def _end(self, job: _Job, kind: str, value: Any = None) -> None:
        """Post a job's last event, with its bookkeeping first, in one loop callback: a
        client that sends its next request as soon as it has this answer must find the
        slot free (queue_size 0 would answer it 503 otherwise)."""
        if job.ended:
            return
        job.ended = True
        if job.cancelled.is_set():
            self.jobs_cancelled += 1
        seconds = time.monotonic() - job.started

        def deliver() -> None:
            self._job_done(seconds)
            job.events.put_nowait((kind, value))

        try:
            job.loop.call_soon_threadsafe(deliver)
        except RuntimeError:
            pass  # the loop is closed: nobody is listening any more

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
            job.started = time.monotonic()
            try:
                self._do(job)
            finally:
                # a job that ended without an answer (its client left mid-stream) still frees its slot
                self._end(job, "error", Cancelled("the client went away"))
        # Whatever was still queued will never run: tell its handlers.
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._end(job, "error", Cancelled("the server is shutting down"))

    def _do(self, job: _Job) -> None:
        if self._stopping.is_set():
            return self._end(job, "error", Cancelled("the server is shutting down"))
        if job.cancelled.is_set():
            return self._end(job, "error", Cancelled("the client went away"))
        if self._load_error is not None:
            return self._end(job, "error", RuntimeError(f"model {self.model_id!r} failed to load: {self._load_error}"))
        with cancellable(self.engine, job.cancelled, self._stopping):
            try:
                result = job.fn(self.engine)
            except Exception as e:
                return self._end(job, "error", e)
            if not job.stream:
                return self._end(job, "result", _plain(result))
            self._stream(job, result)

    def _stream(self, job: _Job, result: Any) -> None:
        try:
            for chunk in result:
                job.post("chunk", _plain(chunk))
                if self._stopping.is_set():
                    return self._end(job, "error", Cancelled("the server is shutting down"))
                if job.cancelled.is_set():
                    return  # nobody to answer; _run frees the slot
            self._end(job, "end")
        except Exception as e:
            self._end(job, "error", e)
        finally:
            # Closing the generator runs its cleanup: the engine's lock is released here,
            # on the thread that will run the next request.
            close = getattr(result, "close", None)
            if close is not None:
                close()
