"""The chat side of the Engine (engine.py), as a mixin: render the bundle's chat template
(add_generation_prompt=True) and tokenize without special tokens, like HF
`apply_chat_template`; add response_format / tool-call grammars; and shape the generation
loop's output (generation.py) into OpenAI chat.completion objects and chunks, tool calls
parsed out of the reply (tool_chat.py).
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from . import openai_types as ot
from .context_policy import ContextPolicy
from .generation import GenerationMixin, _TokenInfo
from .grammar import GrammarSpec, grammars_for
from .request import Request, normalize_messages
from .request_fields import check_fields, given
from .structured import response_format_spec
from .tool_calls import tool_grammar, tool_plan
from .tool_chat import StreamedReply, ToolMode, prompt_messages, reply, template_tools, tool_mode


class ChatCompletionMixin(GenerationMixin):
    """Engine's `chat.completions.create` (create_api.py calls create_chat_completion)."""

    _context: ContextPolicy

    def _compile(self, spec: GrammarSpec, req: Request) -> Any:
        if req.ignore_eos:
            raise ValueError(f"ignore_eos cannot be combined with {spec.field.split('.')[0]}: the grammar ends the reply with eos")
        if self._grammars is None:
            self._grammars = grammars_for(self.tokenizer, int(self.model.vocab_size), self.eos_token_ids)
        return self._grammars.compile(spec)

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

    def _chat_options(self, params: dict[str, Any]) -> tuple[GrammarSpec | None, ToolMode | None]:
        """Pop and check response_format and the tool fields: the reply's grammar spec and the
        tool mode (ValueError naming the field)."""
        spec = response_format_spec(params.pop("response_format", None))
        plan = tool_plan(params.pop("tools", None), params.pop("tool_choice", None), params.pop("parallel_tool_calls", None))
        tpl = self.tokenizer.chat_template
        mode = tool_mode(plan, tpl.template if tpl is not None else None)
        if spec is not None and mode is not None and mode.constrained:
            raise ValueError('response_format cannot be combined with tool_choice "required" or a named function '
                             "(the reply is then the call)")
        return spec, mode

    def create_chat_completion(self, messages: Any, **params: Any) -> ot.ChatCompletion | Iterator[ot.ChatCompletionChunk]:
        """See `create_api.ChatCompletions.create`."""
        check_fields(["messages", *given(params)], chat=True)
        spec, mode = self._chat_options(params)
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
