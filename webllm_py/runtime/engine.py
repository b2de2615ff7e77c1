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

Layout: this module holds the engine's state, its request lock and the public helpers; the
generation loop (prefill, sampling, stopping, n choices) is generation.py, chat completions
chat_completion.py and text completions text_completion.py, mixins of Engine.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from .chat_completion import ChatCompletionMixin
from .context_policy import ContextPolicy
from .create_api import Chat, Completions
from .embeddings import Embeddings, Refusing, init_embedding_engine, is_embedding_bundle_dir
from .grammar import Grammars
from .kv_reuse import KVLedger, model_rule
from .lifecycle import get_message, load_options, reload_engine
from .lm import LanguageModel
from .request_fields import check_fields, given
from .text_completion import TextCompletionMixin
from .tokenizer import Tokenizer


class Engine(ChatCompletionMixin, TextCompletionMixin):
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

    def check_request(self, params: Mapping[str, Any], chat: bool) -> None:
        """Raise what create() would raise for `params`' fields and values alone (ValueError
        naming the field), without rendering or tokenizing the prompt: the REST server checks
        a request with this before it queues it, so an invalid request is a 400 however busy
        the model is. The prompt itself (and whether it fits the context window) is checked
        by create()."""
        if isinstance(self.chat, Refusing):  # an embedding model: say so, as create() would
            self.chat.completions.create()
        prompt_field = "messages" if chat else "prompt"
        p = {k: v for k, v in params.items() if k != prompt_field}
        check_fields([prompt_field, *given(p)], chat=chat)
        if chat:
            self._chat_options(p)
            p.pop("chat_template_kwargs", None)
        self._validate(None, p, chat=chat)

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

    # ---- the request lock ----------------------------------------------------------

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
