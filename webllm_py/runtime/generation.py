"""The generation loop of the Engine (engine.py), as a mixin: prefill with KV prefix reuse,
sample one choice token by token until eos / stop string / max_tokens / a full context /
interrupt, and the n-choices driver that both the non-streaming (`_run`) and the streaming
(`_stream`) paths share, so the concatenated stream text is the non-stream text by
construction. chat_completion.py and text_completion.py shape what it yields into OpenAI
objects.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Iterator, Mapping, Sequence

import numpy as np

from .grammar import Grammars, Guide
from .gpu_sampling import gpu_argmax_ok
from .kv_reuse import KVLedger
from .lifecycle import record_message
from .lm import LanguageModel
from .request import Request, StopMatcher, validate_request
from .sampler import Sampler, log_softmax, top_k_ids
from .tokenizer import StreamDetokenizer, Tokenizer


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


class GenerationMixin:
    """Engine's model + KV cache steps and sampling loop (the state lives in Engine.__init__)."""

    model: LanguageModel
    tokenizer: Tokenizer
    eos_token_ids: frozenset[int]
    generation_defaults: dict[str, Any]
    model_name: str
    _kv_rule: tuple[Any, ...]
    _kv: KVLedger | None
    _interrupt: threading.Event
    _stats: dict[str, float]
    _grammars: Grammars | None
    _exclusive: Callable[[], ContextManager[None]]  # Engine's request lock

    def _validate(self, prompt_ids: list[int] | None, p: Mapping[str, Any], chat: bool) -> Request:
        return validate_request(prompt_ids, p, chat=chat, generation=self.generation_defaults,
                                vocab_size=int(self.model.vocab_size), context_window=int(self.model.context_window),
                                model_name=self.model_name)


    def _forward(self, ids: Sequence[int], pick: bool = False) -> Any:
        """The model's logits of the last id, or with pick the argmax id picked on the GPU."""
        try:
            logits = self.model.forward_argmax(ids) if pick else self.model.forward(ids)  # type: ignore[attr-defined]
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
        # under a grammar, masked ids (-inf) are no alternatives (and -inf is no JSON number)
        tops = [(t, float(lp[t])) for t in top_k_ids(lp, top) if np.isfinite(lp[t])] if top else []
        return _TokenInfo(tok, float(lp[tok]), tops, offset)

    def _generate(self, req: Request, seed: int, logits: np.ndarray) -> Iterator[_Step]:
        """One choice: sample until eos / stop string / max_tokens / context full.

        The KV cache holds prompt + generated tokens except the last (never forwarded).
        """
        P = len(req.prompt_ids)
        limit = int(self.model.context_window) - P  # prompt + completion <= context window
        if req.max_tokens is not None:
            limit = min(limit, req.max_tokens)
        sampler = Sampler(req.sampling, seed, req.prompt_ids)
        guide: Guide | None = None if req.grammar is None else self._grammars.guide(req.grammar)  # type: ignore[union-attr]
        detok = StreamDetokenizer(self.tokenizer, req.prompt_ids, skip_special_tokens=not req.keep_special)
        stopper = StopMatcher(req.stop)
        pick = gpu_argmax_ok(req, self.model)  # greedy only: decode tokens argmax'd on the GPU (gpu_sampling.py)
        picked: int | None = None
        decoded = 0  # characters the detokenizer has produced (logprobs text_offset)
        n = 0
        stats = self._stats
        t = time.perf_counter()

        def step(text: str, info: _TokenInfo | None, finish: str | None = None) -> _Step:
            # time spent producing this token, excluding the consumer's time between yields
            stats["decode_seconds"] += time.perf_counter() - t
            stats["decode_tokens"] += 1
            return _Step(text, info, finish)

        try:
            while True:
                if picked is None:
                    tok, x = sampler.sample(logits, None if guide is None else guide.mask())
                else:
                    tok = picked  # exactly what the sampler would pick (nothing else reads x then)
                n += 1
                info = self._token_info(tok, x, req.top_logprobs, decoded) if req.logprobs else None
                if tok in self.eos_token_ids and not req.ignore_eos:
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
                if n >= limit or self._interrupt.is_set():
                    tail, hit = stopper.feed(detok.flush())
                    out += tail
                    if not hit:
                        out += stopper.flush()
                    yield step(out, info, "stop" if hit else "length" if n >= limit else "abort")
                    return
                yield step(out, info)
                t = time.perf_counter()
                if guide is not None:
                    guide.advance(tok)  # the next mask is computed while the model steps (grammar.py)
                if pick:
                    picked = self._forward([tok], pick=True)
                else:
                    logits = self._forward([tok])
        finally:
            if guide is not None:
                guide.close()
                stats["grammar_seconds"] = stats.get("grammar_seconds", 0.0) + guide.mask_seconds

    def _choices(self, req: Request) -> Iterator[tuple[int, Iterator[_Step]]]:
        """(index, steps) per choice; choice k uses seed + k and the same prompt logits."""
        self._interrupt.clear()
        self._stats = {"decode_seconds": 0.0, "decode_tokens": 0}
        first = self._prefill(req.prompt_ids)
        P = len(req.prompt_ids)
        for k in range(req.n):
            if k:
                # Back to just the prompt; its last logits are those we already have.
                self.model.truncate(P)
                assert self._kv is not None
                self._kv.truncate(P)
            yield k, record_message(self, k, self._generate(req, req.seed + k, first.copy() if req.n > 1 else first))

    def _run(self, req: Request) -> list[_Result]:
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

    def _stream(self, req: Request) -> Iterator[tuple[str, list[_TokenInfo], str | None, int]]:
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
