"""The (legacy) text-completion side of the Engine (engine.py), as a mixin: tokenize the
prompt with special tokens (or take its token ids) and shape the generation loop's output
(generation.py) into OpenAI text_completion objects, logprobs in the legacy layout.
"""

from __future__ import annotations

from typing import Any, Iterator

from . import openai_types as ot
from .context_policy import ContextPolicy
from .generation import GenerationMixin, _TokenInfo
from .request import Request, completion_prompt_ids
from .request_fields import check_fields, given


class TextCompletionMixin(GenerationMixin):
    """Engine's `completions.create` (create_api.py calls create_completion)."""

    _context: ContextPolicy

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
