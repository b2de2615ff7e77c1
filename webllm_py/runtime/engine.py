"""OpenAI-style engine over any LanguageModel (reference numpy or native wgpu-py).

    eng = Engine(model)                      # or Engine("bundle/", backend="native")
    r = eng.chat.completions.create(messages=[{"role": "user", "content": "Hi"}], max_tokens=64)
    for chunk in eng.chat.completions.create(messages=..., stream=True): ...
    eng.completions.create(prompt="Once upon a time", max_tokens=20, temperature=0)
    eng.runtime_stats()

What it does on top of the model's few verbs (see lm.py):

- chat: render the bundle's chat template (add_generation_prompt=True) and
  tokenize with add_special_tokens=False, like HF `apply_chat_template`;
  completions: tokenize the prompt with add_special_tokens=True;
- multi-turn prefix reuse: the engine remembers which ids are in the model's KV
  cache, keeps the part of the common prefix with the new prompt that a fresh
  prefill would write bit for bit the same (kv_reuse.py: so a request and seed give
  the same tokens whatever came before) and forwards the rest (at least one token,
  so there are logits);
- sampling per docs/sampling.md (sampler.py), counter = index of the generated
  token, choice k of n uses seed + k;
- stopping on the bundle's eos ids, on stop strings (never emitting text that may
  still turn out to be the start of a stop string), on max_tokens and when
  prompt + completion fill the context window (finish_reason "length");
- streaming and non-streaming share one generation loop, so the concatenated
  stream text is the non-stream text by construction.

One request runs at a time (the model has one KV cache); a stream holds the
engine until it is exhausted or closed.
"""

from __future__ import annotations

import math
import random
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..errors import ContextWindowExceededError
from . import openai_types as ot
from .kv_reuse import KVLedger, model_rule
from .lm import LanguageModel
from .sampler import MAX_SEED, Sampler, SamplingParams, log_softmax, top_k_ids
from .tokenizer import Tokenizer

_ROLES = ("system", "developer", "user", "assistant", "tool")
_MAX_TOP_LOGPROBS = 20


# ---- validation helpers (every error names the field) --------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))) and math.isfinite(v)


def _opt_int(name: str, v: Any, lo: int | None = None, hi: int | None = None) -> int | None:
    if v is None:
        return None
    if not _is_int(v):
        raise ValueError(f"{name} must be an integer, got {v!r}")
    v = int(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be {rng}, got {v}")
    return v


def _opt_num(name: str, v: Any, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> float | None:
    if v is None:
        return None
    if not _is_num(v):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    v = float(v)
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {v}")
    if hi is not None and v > hi:
        raise ValueError(f"{name} must be <= {hi}, got {v}")
    return v


def _opt_bool(name: str, v: Any) -> bool | None:
    if v is None:
        return None
    if not isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{name} must be a boolean, got {v!r}")
    return bool(v)


# ---- request -------------------------------------------------------------------------


@dataclass
class _Request:
    """A validated request (both APIs)."""

    prompt_ids: list[int]
    sampling: SamplingParams
    max_tokens: int | None
    stop: list[str]
    seed: int
    n: int
    stream: bool
    include_usage: bool
    logprobs: bool
    top_logprobs: int
    model_name: str


@dataclass
class _TokenInfo:
    """One generated token for logprobs: id, logprob, top (id, logprob) pairs, text offset."""

    token: int
    logprob: float
    top: list[tuple[int, float]]
    text_offset: int


@dataclass
class _Step:
    """What one generated token produced: text now safe to emit, its logprobs, and the
    finish reason when it ended the completion."""

    text: str
    info: _TokenInfo | None
    finish: str | None = None


@dataclass
class _Result:
    text: str = ""
    infos: list[_TokenInfo] = field(default_factory=list)
    finish: str | None = None
    tokens: int = 0


class _StopMatcher:
    """Cuts text at the first stop string, holding back any tail that could still
    grow into one (so streamed text never has to be retracted)."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Returns (text safe to emit, whether a stop string was hit)."""
        if not self.stops:
            return text, False
        self.pending += text
        # Earlier emitted text never ends with a stop prefix, so any match starts in `pending`.
        first = -1
        for s in self.stops:
            i = self.pending.find(s)
            if i >= 0 and (first < 0 or i < first):
                first = i
        if first >= 0:
            out, self.pending = self.pending[:first], ""
            return out, True
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.pending)), hold, -1):
                if self.pending.endswith(s[:k]):
                    hold = k
                    break
        cut = len(self.pending) - hold
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


# ---- the engine ----------------------------------------------------------------------


class Engine:
    """OpenAI-style chat/text completions over one LanguageModel."""

    def __init__(
        self,
        model: LanguageModel | str | Path,
        backend: str = "native",
        precision: str = "auto",
        tokenizer: Tokenizer | None = None,
        model_name: str | None = None,
    ):
        if isinstance(model, (str, Path)):
            from .. import load  # lazy: the loader pulls in the backends

            model = load(model, backend=backend, precision=precision)
        self.model: LanguageModel = model
        manifest = model.manifest or {}
        self.manifest = manifest
        self.tokenizer = tokenizer or Tokenizer.from_bundle(model.bundle_dir, manifest)
        gen = manifest.get("generation") or {}
        eos = list(self.tokenizer.eos_token_ids)
        for t in (manifest.get("tokenizer") or {}).get("eos_token_ids") or []:
            eos.append(int(t))
        for t in gen.get("eos_token_ids") or []:
            eos.append(int(t))
        self.eos_token_ids: frozenset[int] = frozenset(eos)
        self.generation_defaults: dict[str, Any] = dict(gen)
        self.model_name = model_name or (manifest.get("model") or {}).get("id") or Path(model.bundle_dir).name
        self.chat = _Chat(self)
        self.completions = _Completions(self)
        # ids currently in the model's KV cache and which rows are exactly reusable (kv_reuse.py);
        # None: unknown, reset before use
        self._kv_rule = model_rule(model)
        self._kv: KVLedger | None = None
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._stats: dict[str, float] = {}

    # ---- public helpers ------------------------------------------------------------

    def reset(self) -> None:
        """Empty the KV cache (the next request prefills from scratch)."""
        with self._exclusive():
            self.model.reset()
            self._kv = KVLedger(*self._kv_rule)

    def runtime_stats(self) -> dict[str, float]:
        """Prefill and decode throughput of the last request.

        prefill_tokens / prefill_seconds: the prompt tokens actually forwarded
        (after prefix reuse) and the time of that forward; cached_tokens: prompt
        tokens reused from the KV cache; decode_tokens / decode_seconds: generated
        tokens and the time spent producing them (sampling + decode steps), all
        choices together; *_tokens_per_s derived from those.
        """
        s = dict(self._stats)
        for k in ("prefill", "decode"):
            sec = s.get(f"{k}_seconds", 0.0)
            s[f"{k}_tokens_per_s"] = s.get(f"{k}_tokens", 0) / sec if sec > 0 else 0.0
        return s

    # ---- request plumbing ----------------------------------------------------------

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        me = threading.get_ident()
        if self._owner == me:
            # a blocking acquire would deadlock this thread forever
            raise RuntimeError("the engine is busy with an unfinished stream in this thread; exhaust or close() it first")
        with self._lock:
            self._owner = me
            try:
                yield
            finally:
                self._owner = None

    def _validate(self, prompt_ids: list[int], p: dict[str, Any], chat: bool) -> _Request:
        gen = self.generation_defaults
        stream = _opt_bool("stream", p.get("stream")) or False
        n = _opt_int("n", p.get("n"), lo=1)
        n = 1 if n is None else n
        if n > 1 and stream:
            raise ValueError("n must be 1 when stream=True")
        max_tokens = _opt_int("max_tokens", p.get("max_tokens"), lo=1)
        mct = _opt_int("max_completion_tokens", p.get("max_completion_tokens"), lo=1)
        if max_tokens is None:
            max_tokens = mct
        temperature = _opt_num("temperature", p.get("temperature"), lo=0.0)
        if temperature is None:
            temperature = _opt_num("generation.temperature", gen.get("temperature"), lo=0.0)
            if gen.get("do_sample") is False:  # HF generation_config: greedy by default
                temperature = 0.0
        top_p = _opt_num("top_p", p.get("top_p"), lo=0.0, hi=1.0, lo_open=True)
        if top_p is None:
            top_p = _opt_num("generation.top_p", gen.get("top_p"), lo=0.0, hi=1.0, lo_open=True)
        rep = _opt_num("repetition_penalty", p.get("repetition_penalty"), lo=0.0, lo_open=True)
        if rep is None:
            rep = _opt_num("generation.repetition_penalty", gen.get("repetition_penalty"), lo=0.0, lo_open=True)
        fp = _opt_num("frequency_penalty", p.get("frequency_penalty"), lo=-2.0, hi=2.0)
        pp = _opt_num("presence_penalty", p.get("presence_penalty"), lo=-2.0, hi=2.0)
        seed = _opt_int("seed", p.get("seed"), lo=0, hi=MAX_SEED - n)
        if seed is None:
            seed = random.SystemRandom().randrange(MAX_SEED - n)

        stop = p.get("stop")
        if stop is None:
            stops: list[str] = []
        elif isinstance(stop, str):
            stops = [stop]
        elif isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop):
            stops = list(stop)
        else:
            raise ValueError(f"stop must be a string or a list of strings, got {stop!r}")
        if any(s == "" for s in stops):
            raise ValueError("stop strings must not be empty")

        bias: dict[int, float] = {}
        lb = p.get("logit_bias")
        if lb is not None:
            if not isinstance(lb, Mapping):
                raise ValueError(f"logit_bias must be a mapping of token id to bias, got {type(lb).__name__}")
            vocab = int(self.model.vocab_size)
            for k, v in lb.items():
                if _is_int(k):
                    tid = int(k)
                elif isinstance(k, str) and k.strip().lstrip("-").isdigit():
                    tid = int(k)
                else:
                    raise ValueError(f"logit_bias key {k!r} is not a token id")
                if not 0 <= tid < vocab:
                    raise ValueError(f"logit_bias key {tid} is not a token id in [0, {vocab})")
                bv = _opt_num(f"logit_bias[{tid}]", v, lo=-100.0, hi=100.0)
                bias[tid] = bv  # type: ignore[assignment]

        if chat:
            logprobs = _opt_bool("logprobs", p.get("logprobs")) or False
            top = _opt_int("top_logprobs", p.get("top_logprobs"), lo=0, hi=_MAX_TOP_LOGPROBS)
            if top is not None and not logprobs:
                raise ValueError("top_logprobs requires logprobs=True")
            top = top or 0
        else:
            # legacy completions: logprobs is the number of top alternatives (0 = just the token's)
            top = _opt_int("logprobs", p.get("logprobs"), lo=0, hi=_MAX_TOP_LOGPROBS)
            logprobs = top is not None
            top = top or 0

        so = p.get("stream_options")
        include_usage = False
        if so is not None:
            if not stream:
                raise ValueError("stream_options is only allowed with stream=True")
            if not isinstance(so, Mapping):
                raise ValueError(f"stream_options must be an object, got {so!r}")
            unknown = set(so) - {"include_usage"}
            if unknown:
                raise ValueError(f"stream_options: unknown field(s) {sorted(unknown)}")
            include_usage = _opt_bool("stream_options.include_usage", so.get("include_usage")) or False

        C = int(self.model.context_window)
        if len(prompt_ids) >= C:
            raise ContextWindowExceededError(
                f"the prompt has {len(prompt_ids)} tokens but the context window is {C} tokens "
                f"(prompt + completion must fit, so the prompt may have at most {C - 1})"
            )
        sampling = SamplingParams(
            temperature=1.0 if temperature is None else temperature,
            top_p=1.0 if top_p is None else top_p,
            frequency_penalty=fp or 0.0,
            presence_penalty=pp or 0.0,
            repetition_penalty=1.0 if rep is None else rep,
            logit_bias=bias,
        )
        name = p.get("model")
        return _Request(
            prompt_ids=prompt_ids,
            sampling=sampling,
            max_tokens=max_tokens,
            stop=stops,
            seed=seed,
            n=n,
            stream=stream,
            include_usage=include_usage,
            logprobs=logprobs,
            top_logprobs=top,
            model_name=name if isinstance(name, str) and name else self.model_name,
        )

    # ---- model + KV cache ----------------------------------------------------------

    def _forward(self, ids: Sequence[int]) -> np.ndarray:
        try:
            logits = self.model.forward(ids)
        except BaseException:
            self._kv = None  # the model's cache state is unknown now
            raise
        assert self._kv is not None
        self._kv.wrote(ids)
        return logits

    def _prefill(self, prompt_ids: list[int]) -> np.ndarray:
        """Reuse the cached rows a fresh prefill would write bit for bit the same (kv_reuse.py),
        forward the rest in the steps it plans; the last prompt token's logits."""
        m = self.model
        if self._kv is None or m.position != len(self._kv.ids):
            # unknown state (first use, an error, or someone used the model directly)
            m.reset()
            self._kv = KVLedger(*self._kv_rule)
        keep, steps = self._kv.plan(prompt_ids)
        if keep < len(self._kv.ids):
            m.truncate(keep)
            self._kv.truncate(keep)
        t0 = time.perf_counter()
        for a, b in steps:
            logits = self._forward(prompt_ids[a:b])
        self._stats.update(
            prompt_tokens=len(prompt_ids),
            cached_tokens=keep,
            prefill_tokens=len(prompt_ids) - keep,
            prefill_seconds=time.perf_counter() - t0,
        )
        return logits

    def _token_info(self, tok: int, x: np.ndarray, top: int, offset: int) -> _TokenInfo:
        lp = log_softmax(x)
        tops = [(t, float(lp[t])) for t in top_k_ids(lp, top)] if top else []
        return _TokenInfo(tok, float(lp[tok]), tops, offset)

    def _generate(self, req: _Request, seed: int, logits: np.ndarray) -> Iterator[_Step]:
        """One choice: sample until eos / stop string / max_tokens / context full.

        The KV cache holds prompt + generated tokens except the last (never forwarded).
        """
        P = len(req.prompt_ids)
        limit = int(self.model.context_window) - P  # prompt + completion <= context window
        if req.max_tokens is not None:
            limit = min(limit, req.max_tokens)
        sampler = Sampler(req.sampling, seed, req.prompt_ids)
        detok = self.tokenizer.stream_detokenizer(req.prompt_ids)
        stopper = _StopMatcher(req.stop)
        decoded = 0  # characters the detokenizer has produced (logprobs text_offset)
        n = 0
        stats = self._stats
        t = time.perf_counter()

        def step(text: str, info: _TokenInfo | None, finish: str | None = None) -> _Step:
            # time spent producing this token, excluding the consumer's time between yields
            stats["decode_seconds"] += time.perf_counter() - t
            stats["decode_tokens"] += 1
            return _Step(text, info, finish)

        while True:
            tok, x = sampler.sample(logits)
            n += 1
            info = self._token_info(tok, x, req.top_logprobs, decoded) if req.logprobs else None
            if tok in self.eos_token_ids:
                out, hit = stopper.feed(detok.flush())
                if not hit:
                    out += stopper.flush()
                yield step(out, info, "stop")
                return
            delta = detok.push(tok)
            decoded += len(delta)
            out, hit = stopper.feed(delta)
            if hit:
                yield step(out, info, "stop")
                return
            if n >= limit:
                tail, hit = stopper.feed(detok.flush())
                out += tail
                if not hit:
                    out += stopper.flush()
                yield step(out, info, "stop" if hit else "length")
                return
            yield step(out, info)
            t = time.perf_counter()
            logits = self._forward([tok])

    def _choices(self, req: _Request) -> Iterator[tuple[int, Iterator[_Step]]]:
        """(index, steps) per choice; choice k uses seed + k and the same prompt logits."""
        self._stats = {"decode_seconds": 0.0, "decode_tokens": 0}
        first = self._prefill(req.prompt_ids)
        P = len(req.prompt_ids)
        for k in range(req.n):
            if k:
                # Back to just the prompt; its last logits are those we already have.
                self.model.truncate(P)
                assert self._kv is not None
                self._kv.truncate(P)
            yield k, self._generate(req, req.seed + k, first.copy() if req.n > 1 else first)

    def _run(self, req: _Request) -> list[_Result]:
        results = []
        with self._exclusive():
            for _, steps in self._choices(req):
                r = _Result()
                parts = []
                for s in steps:
                    parts.append(s.text)
                    r.tokens += 1
                    if s.info is not None:
                        r.infos.append(s.info)
                    r.finish = s.finish
                r.text = "".join(parts)
                results.append(r)
        return results

    def _stream(self, req: _Request) -> Iterator[tuple[str, list[_TokenInfo], str | None, int]]:
        """(text, token infos, finish, tokens so far) per emitted piece; infos of
        tokens that produced no text ride along with the next piece."""
        with self._exclusive():
            for _, steps in self._choices(req):
                pending: list[_TokenInfo] = []
                ntok = 0
                for s in steps:
                    ntok += 1
                    if s.info is not None:
                        pending.append(s.info)
                    if s.text or s.finish:
                        yield s.text, pending, s.finish, ntok
                        pending = []

    # ---- chat ----------------------------------------------------------------------

    def _chat_prompt(self, messages: Any, template_kwargs: Mapping[str, Any] | None) -> list[int]:
        if not isinstance(messages, (list, tuple)) or not messages:
            raise ValueError("messages must be a non-empty list of {role, content} objects")
        msgs = []
        for i, m in enumerate(messages):
            if hasattr(m, "model_dump"):
                m = m.model_dump()
            if not isinstance(m, Mapping):
                raise ValueError(f"messages[{i}] must be an object with role and content")
            role = m.get("role")
            if role not in _ROLES:
                raise ValueError(f"messages[{i}].role must be one of {list(_ROLES)}, got {role!r}")
            content = m.get("content")
            if isinstance(content, (list, tuple)):
                texts = []
                for j, part in enumerate(content):
                    if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                        raise ValueError(f"messages[{i}].content[{j}]: only text parts are supported")
                    texts.append(part["text"])
                content = "".join(texts)
            elif content is None:
                if role != "assistant":
                    raise ValueError(f"messages[{i}].content is required for role {role!r}")
            elif not isinstance(content, str):
                raise ValueError(f"messages[{i}].content must be a string or a list of text parts")
            msg = dict(m)
            # OpenAI's "developer" role is the system prompt for templates, which know "system".
            msg["role"] = "system" if role == "developer" else role
            msg["content"] = content
            msgs.append(msg)
        if template_kwargs is not None and not isinstance(template_kwargs, Mapping):
            raise ValueError("chat_template_kwargs must be an object")
        import jinja2

        try:
            text = self.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, **dict(template_kwargs or {}))
        except jinja2.TemplateError as e:
            raise ValueError(f"messages: the chat template rejected them: {e}") from e
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _chat_logprobs(self, infos: list[_TokenInfo]) -> ot.ChoiceLogprobs:
        tk = self.tokenizer
        return ot.ChoiceLogprobs(
            content=[
                ot.ChatCompletionTokenLogprob(
                    token=tk.token_text(i.token),
                    logprob=i.logprob,
                    bytes=list(tk.token_bytes(i.token)),
                    top_logprobs=[ot.TopLogprob(tk.token_text(t), lp, list(tk.token_bytes(t))) for t, lp in i.top],
                )
                for i in infos
            ]
        )

    def create_chat_completion(self, messages: Any, **params: Any) -> ot.ChatCompletion | Iterator[ot.ChatCompletionChunk]:
        """See `_ChatCompletions.create`."""
        prompt = self._chat_prompt(messages, params.pop("chat_template_kwargs", None))
        req = self._validate(prompt, params, chat=True)
        if req.stream:
            return self._chat_stream(req)
        results = self._run(req)
        choices = [
            ot.Choice(
                index=k,
                message=ot.ChatCompletionMessage(role="assistant", content=r.text),
                finish_reason=r.finish,  # type: ignore[arg-type]
                logprobs=self._chat_logprobs(r.infos) if req.logprobs else None,
            )
            for k, r in enumerate(results)
        ]
        ct = sum(r.tokens for r in results)
        return ot.ChatCompletion(
            id=ot.new_id("chatcmpl"),
            choices=choices,
            created=ot.now(),
            model=req.model_name,
            usage=ot.CompletionUsage(len(prompt), ct, len(prompt) + ct),
        )

    def _chat_stream(self, req: _Request) -> Iterator[ot.ChatCompletionChunk]:
        cid, created = ot.new_id("chatcmpl"), ot.now()

        def chunk(choices: list[ot.ChunkChoice], usage: ot.CompletionUsage | None = None) -> ot.ChatCompletionChunk:
            return ot.ChatCompletionChunk(id=cid, choices=choices, created=created, model=req.model_name, usage=usage)

        yield chunk([ot.ChunkChoice(0, ot.ChoiceDelta(role="assistant", content=""))])
        ntok = 0
        for text, infos, finish, ntok in self._stream(req):
            lp = self._chat_logprobs(infos) if req.logprobs else None
            if text:
                yield chunk([ot.ChunkChoice(0, ot.ChoiceDelta(content=text), None, lp)])
                lp = self._chat_logprobs([]) if req.logprobs else None
            if finish:
                yield chunk([ot.ChunkChoice(0, ot.ChoiceDelta(), finish, lp)])  # type: ignore[arg-type]
        if req.include_usage:
            P = len(req.prompt_ids)
            yield chunk([], ot.CompletionUsage(P, ntok, P + ntok))

    # ---- text completions ----------------------------------------------------------

    def _completion_prompt(self, prompt: Any) -> list[int]:
        if isinstance(prompt, str):
            ids = self.tokenizer.encode(prompt, add_special_tokens=True)
        elif isinstance(prompt, (list, tuple)) and prompt and all(_is_int(t) for t in prompt):
            ids = [int(t) for t in prompt]
            vocab = int(self.model.vocab_size)
            if any(not 0 <= t < vocab for t in ids):
                raise ValueError(f"prompt: token ids must be in [0, {vocab})")
        else:
            raise ValueError("prompt must be a string or a non-empty list of token ids (batches are not supported)")
        if not ids:
            raise ValueError("prompt is empty (it tokenizes to no tokens)")
        return ids

    def _legacy_logprobs(self, infos: list[_TokenInfo]) -> ot.Logprobs:
        tk = self.tokenizer
        return ot.Logprobs(
            tokens=[tk.token_text(i.token) for i in infos],
            token_logprobs=[i.logprob for i in infos],
            top_logprobs=[{tk.token_text(t): lp for t, lp in i.top} for i in infos],
            text_offset=[i.text_offset for i in infos],
        )

    def create_completion(self, prompt: Any, **params: Any) -> ot.Completion | Iterator[ot.Completion]:
        """See `_TextCompletions.create`."""
        ids = self._completion_prompt(prompt)
        req = self._validate(ids, params, chat=False)
        if req.stream:
            return self._completion_stream(req)
        results = self._run(req)
        ct = sum(r.tokens for r in results)
        return ot.Completion(
            id=ot.new_id("cmpl"),
            choices=[
                ot.CompletionChoice(
                    index=k,
                    text=r.text,
                    finish_reason=r.finish,  # type: ignore[arg-type]
                    logprobs=self._legacy_logprobs(r.infos) if req.logprobs else None,
                )
                for k, r in enumerate(results)
            ],
            created=ot.now(),
            model=req.model_name,
            usage=ot.CompletionUsage(len(ids), ct, len(ids) + ct),
        )

    def _completion_stream(self, req: _Request) -> Iterator[ot.Completion]:
        cid, created = ot.new_id("cmpl"), ot.now()
        ntok = 0
        for text, infos, finish, ntok in self._stream(req):
            lp = self._legacy_logprobs(infos) if req.logprobs else None
            if text:
                yield ot.Completion(cid, [ot.CompletionChoice(0, text, None, lp)], created, req.model_name)
                lp = self._legacy_logprobs([]) if req.logprobs else None
            if finish:
                yield ot.Completion(cid, [ot.CompletionChoice(0, "", finish, lp)], created, req.model_name)  # type: ignore[arg-type]
        if req.include_usage:
            P = len(req.prompt_ids)
            yield ot.Completion(cid, [], created, req.model_name, usage=ot.CompletionUsage(P, ntok, P + ntok))


class _ChatCompletions:
    def __init__(self, engine: Engine):
        self._engine = engine

    def create(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        stream: bool = False,
        stream_options: Mapping[str, Any] | None = None,
        max_tokens: int | None = None,
        max_completion_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        n: int | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        frequency_penalty: float | None = None,
        presence_penalty: float | None = None,
        repetition_penalty: float | None = None,
        logit_bias: Mapping[int | str, float] | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        chat_template_kwargs: Mapping[str, Any] | None = None,
        user: str | None = None,
    ) -> ot.ChatCompletion | Iterator[ot.ChatCompletionChunk]:
        """OpenAI `chat.completions.create`. Defaults: temperature / top_p /
        repetition_penalty from the bundle's `generation` (else 1), max_tokens until
        eos or the context window is full, a random seed. `chat_template_kwargs`
        become template variables (e.g. {"enable_thinking": False}). Invalid values
        raise ValueError naming the field; a prompt that does not fit raises
        ContextWindowExceededError. stream=True returns an iterator of chunks."""
        del user
        return self._engine.create_chat_completion(
            messages,
            model=model,
            stream=stream,
            stream_options=stream_options,
            max_tokens=max_tokens,
            max_completion_tokens=max_completion_tokens,
            temperature=temperature,
            top_p=top_p,
            n=n,
            seed=seed,
            stop=stop,
            frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty,
            repetition_penalty=repetition_penalty,
            logit_bias=logit_bias,
            logprobs=logprobs,
            top_logprobs=top_logprobs,
            chat_template_kwargs=chat_template_kwargs,
        )


class _Chat:
    def __init__(self, engine: Engine):
        self.completions = _ChatCompletions(engine)


class _Completions:
    def __init__(self, engine: Engine):
        self._engine = engine

    def create(
        self,
        prompt: str | Sequence[int],
        *,
        model: str | None = None,
        stream: bool = False,
        stream_options: Mapping[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        n: int | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        frequency_penalty: float | None = None,
        presence_penalty: float | None = None,
        repetition_penalty: float | None = None,
        logit_bias: Mapping[int | str, float] | None = None,
        logprobs: int | None = None,
        user: str | None = None,
    ) -> ot.Completion | Iterator[ot.Completion]:
        """OpenAI (legacy) `completions.create` on a prompt string (tokenized with
        add_special_tokens=True) or a list of token ids. `logprobs` is the number of
        top alternatives per token (0..20). Same defaults and errors as chat."""
        del user
        return self._engine.create_completion(
            prompt,
            model=model,
            stream=stream,
            stream_options=stream_options,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            n=n,
            seed=seed,
            stop=stop,
            frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty,
            repetition_penalty=repetition_penalty,
            logit_bias=logit_bias,
            logprobs=logprobs,
        )
