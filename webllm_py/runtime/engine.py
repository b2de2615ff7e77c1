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
- greedy requests that nothing else needs the logits for (gpu_sampling.py decides) take
  decode tokens from the model's GPU argmax (4 bytes read back, the same ids);
- stopping on the bundle's eos ids, on stop strings (never emitting text that may
  still turn out to be the start of a stop string), on max_tokens and when
  prompt + completion fill the context window (finish_reason "length"), and on
  interrupt_generate() from any thread ("abort");
- streaming and non-streaming share one generation loop, so the concatenated
  stream text is the non-stream text by construction;
- strict requests (request_fields.py), response_format and forced tool calls as xgrammar
  masks at sampling step 0 (structured.py, grammar.py), tool calls in and out of the
  template family's format (tool_calls.py, tool_chat.py).

One request runs at a time (the model has one KV cache); a stream holds the
engine until it is exhausted or closed.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from . import openai_types as ot
from .create_api import Chat, Completions
from .embeddings import Embeddings, init_embedding_engine, is_embedding_bundle_dir
from .grammar import Grammars, GrammarSpec, Guide, grammars_for
from .context_policy import ContextPolicy
from .kv_reuse import KVLedger, model_rule
from .lifecycle import get_message, load_options, record_message, reload_engine
from .lm import LanguageModel
from .request import Request, StopMatcher, completion_prompt_ids, normalize_messages, validate_request
from .request_fields import check_fields, given
from .structured import response_format_spec
from .tool_calls import tool_grammar, tool_plan
from .tool_chat import StreamedReply, ToolMode, prompt_messages, reply, template_tools, tool_mode
from .gpu_sampling import gpu_argmax_ok
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
        context_window_size: int | None = None,
        context_overflow: str = "error",
    ):
        """context_window_size: KV-cache rows to allocate when loading a bundle folder, up to the
        bundle's context_window (the default); fewer use less memory (runtime/kv_sizing.py).
        context_overflow: "error" or "slide" (drop the oldest turns), see runtime/context_policy.py."""
        load_options(self, model, backend, precision, context_window_size=context_window_size)
        self._context = ContextPolicy(context_overflow)
        if isinstance(model, (str, Path)) and is_embedding_bundle_dir(model):  # embeddings-only (embeddings.py)
            init_embedding_engine(self, model, backend, precision, model_name)
            return
        if isinstance(model, (str, Path)):
            from .. import load  # lazy: the loader pulls in the backends

            model = load(model, backend=backend, precision=precision, context_window_size=context_window_size)
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
        self.chat = Chat(self)
        self.completions = Completions(self)
        self.embeddings = Embeddings.refusing(self.model_name)  # a language model does not embed
        # ids currently in the model's KV cache and which rows are exactly reusable (kv_reuse.py);
        # None: unknown, reset before use
        self._kv_rule = model_rule(model)
        self._kv: KVLedger | None = None
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._interrupt = threading.Event()  # interrupt_generate(); cleared when a request starts
        self._stats: dict[str, float] = {}
        self._grammars: Grammars | None = None  # built on the first structured request (grammar.py)

    # ---- public helpers ------------------------------------------------------------

    def reset(self) -> None:
        """Empty the KV cache (the next request prefills from scratch)."""
        with self._exclusive():
            self.model.reset()
            self._kv = KVLedger(*self._kv_rule)

    def reload(self, bundle: str | Path, **options: Any) -> None:
        """Serve another bundle (WebLLM's reload): the running request ends ("abort"), the bundle
        loads with `options` (Engine's: backend and precision carry over unless given), then the
        old model is freed. A bundle that fails to load leaves the engine on its old model."""
        reload_engine(self, bundle, options)

    def get_message(self) -> str:
        """The reply text of the last request's first choice, so far (WebLLM's getMessage)."""
        return get_message(self)

    def interrupt_generate(self) -> None:
        """End the running request after its current token, with finish_reason "abort" (for its
        remaining choices too), as the JS engine's interruptGenerate and WebLLM's. Thread-safe,
        for a server whose client went away; a request that starts later is not affected."""
        self._interrupt.set()

    def runtime_stats(self) -> dict[str, float]:
        """Prefill and decode throughput of the last request.

        prefill_tokens / prefill_seconds: the prompt tokens actually forwarded
        (after prefix reuse) and the time of that forward; cached_tokens: prompt
        tokens reused from the KV cache; decode_tokens / decode_seconds: generated
        tokens and the time spent producing them (sampling + decode steps), all
        choices together; *_tokens_per_s derived from those; grammar_seconds: the grammar's
        CPU time (accept + mask, partly overlapping the decode steps) under response_format or a
        forced tool call.
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

    def _validate(self, prompt_ids: list[int], p: dict[str, Any], chat: bool) -> Request:
        return validate_request(prompt_ids, p, chat=chat, generation=self.generation_defaults,
                                vocab_size=int(self.model.vocab_size), context_window=int(self.model.context_window),
                                model_name=self.model_name)

    def _compile(self, spec: GrammarSpec, req: Request) -> Any:
        if req.ignore_eos:
            raise ValueError(f"ignore_eos cannot be combined with {spec.field.split('.')[0]}: the grammar ends the reply with eos")
        if self._grammars is None:
            self._grammars = grammars_for(self.tokenizer, int(self.model.vocab_size), self.eos_token_ids)
        return self._grammars.compile(spec)

    # ---- model + KV cache ----------------------------------------------------------

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

    # ---- chat ----------------------------------------------------------------------

    def _chat_prompt(self, messages: Any, template_kwargs: Mapping[str, Any] | None, mode: ToolMode | None = None) -> list[int]:
        tpl = self.tokenizer.chat_template
        msgs = prompt_messages(normalize_messages(messages), mode, tpl.template if tpl is not None else None)
        if template_kwargs is not None and not isinstance(template_kwargs, Mapping):
            raise ValueError("chat_template_kwargs must be an object")
        for k in template_kwargs or {}:
            if k in ("messages", "add_generation_prompt", "tools", "documents"):
                raise ValueError(f"chat_template_kwargs.{k} is not allowed: the engine sets that template variable "
                                 f"itself{' (give tools as the request field tools)' if k == 'tools' else ''}")
        import jinja2

        try:
            text = self.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tools=template_tools(mode),
                                                      **dict(template_kwargs or {}))
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
        """See `create_api.ChatCompletions.create`."""
        check_fields(["messages", *given(params)], chat=True)
        spec = response_format_spec(params.pop("response_format", None))
        plan = tool_plan(params.pop("tools", None), params.pop("tool_choice", None), params.pop("parallel_tool_calls", None))
        tpl = self.tokenizer.chat_template
        mode = tool_mode(plan, tpl.template if tpl is not None else None)
        if spec is not None and mode is not None and mode.constrained:
            raise ValueError('response_format cannot be combined with tool_choice "required" or a named function '
                             "(the reply is then the call)")
        kwargs = params.pop("chat_template_kwargs", None)
        prompt = self._context.fit_chat(self.model, messages, lambda m: self._chat_prompt(m, kwargs, mode),
                                        params.get("max_tokens") or params.get("max_completion_tokens"))
        req = self._validate(prompt, params, chat=True)
        grammar = spec if spec is not None else tool_grammar(mode.plan, mode.family) if mode is not None else None
        if grammar is not None:
            req.grammar = self._compile(grammar, req)
        req.keep_special = mode is not None and mode.parses
        if req.stream:
            return self._chat_stream(req, mode)
        results = self._run(req)
        choices = []
        for k, r in enumerate(results):
            message, finish = reply(mode, r.text, r.finish)
            choices.append(ot.Choice(index=k, message=message, finish_reason=finish,  # type: ignore[arg-type]
                                     logprobs=self._chat_logprobs(r.infos) if req.logprobs else None))
        ct = sum(r.tokens for r in results)
        return ot.ChatCompletion(
            id=ot.new_id("chatcmpl"),
            choices=choices,
            created=ot.now(),
            model=req.model_name,
            usage=ot.CompletionUsage(len(prompt), ct, len(prompt) + ct),
        )

    def _chat_stream(self, req: Request, mode: ToolMode | None) -> Iterator[ot.ChatCompletionChunk]:
        cid, created = ot.new_id("chatcmpl"), ot.now()

        def chunk(choices: list[ot.ChunkChoice], usage: ot.CompletionUsage | None = None) -> ot.ChatCompletionChunk:
            return ot.ChatCompletionChunk(id=cid, choices=choices, created=created, model=req.model_name, usage=usage)

        yield chunk([ot.ChunkChoice(0, ot.ChoiceDelta(role="assistant", content=""))])
        ntok = 0
        out = StreamedReply(mode)  # holds back what may be a tool call (tool_chat.py)
        for text, infos, finish, ntok in self._stream(req):
            lp = self._chat_logprobs(infos) if req.logprobs else None
            text = out.content(text)
            if text:
                yield chunk([ot.ChunkChoice(0, ot.ChoiceDelta(content=text), None, lp)])
                lp = self._chat_logprobs([]) if req.logprobs else None
            if finish:
                for delta, fin in out.end(finish):
                    yield chunk([ot.ChunkChoice(0, delta, fin, lp)])  # type: ignore[arg-type]
                    lp = self._chat_logprobs([]) if req.logprobs else None
        if req.include_usage:
            P = len(req.prompt_ids)
            yield chunk([], ot.CompletionUsage(P, ntok, P + ntok))

    # ---- text completions ----------------------------------------------------------

    def _completion_prompt(self, prompt: Any) -> list[int]:
        return completion_prompt_ids(prompt, int(self.model.vocab_size),
                                     lambda text: self.tokenizer.encode(text, add_special_tokens=True))

    def _legacy_logprobs(self, infos: list[_TokenInfo]) -> ot.Logprobs:
        tk = self.tokenizer
        return ot.Logprobs(
            tokens=[tk.token_text(i.token) for i in infos],
            token_logprobs=[i.logprob for i in infos],
            top_logprobs=[{tk.token_text(t): lp for t, lp in i.top} for i in infos],
            text_offset=[i.text_offset for i in infos],
        )

    def create_completion(self, prompt: Any, **params: Any) -> ot.Completion | Iterator[ot.Completion]:
        """See `create_api.Completions.create`."""
        check_fields(["prompt", *given(params)], chat=False)
        ids = self._context.check(self.model, self._completion_prompt(prompt))
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

    def _completion_stream(self, req: Request) -> Iterator[ot.Completion]:
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
