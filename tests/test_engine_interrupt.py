"""Engine.interrupt_generate(): the hook a server uses to end a running request (as the JS
engine's interruptGenerate and WebLLM's): thread-safe, checked once per generated token,
the request ends with finish_reason "abort", and the engine stays usable and exact."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from webllm_py.runtime.engine import Engine

MSGS = [{"role": "user", "content": "Once upon a time there was a little model"}]


class _InterruptAt:
    """Wraps a model; calls engine.interrupt_generate() (from another thread, as a server's
    cancellation would) during the first forward at cache position `at`."""

    def __init__(self, model: Any, at: int):
        self._m, self.at, self.engine, self.fired = model, at, None, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._m, name)

    def forward(self, ids: Any) -> Any:
        if self._m.position == self.at and not self.fired:
            self.fired = True
            t = threading.Thread(target=self.engine.interrupt_generate)
            t.start()
            t.join()
        return self._m.forward(ids)


@pytest.fixture
def model(tiny_bundles):
    import webllm_py

    return webllm_py.load(tiny_bundles("llama", "f32"), backend="reference")


def _prompt_len(model: Any) -> int:
    return len(Engine(model)._chat_prompt(MSGS, None))


def test_interrupt_ends_a_non_streamed_request_with_abort(model) -> None:
    # during the forward of the 3rd generated token: the 4th is sampled, then the flag is seen
    wrapped = _InterruptAt(model, at=_prompt_len(model) + 2)
    eng = wrapped.engine = Engine(wrapped)
    r = eng.chat.completions.create(messages=MSGS, max_tokens=50, temperature=0, logit_bias={1: -100})
    assert r.choices[0].finish_reason == "abort"
    assert r.usage.completion_tokens == 4  # the token after the interrupt is the last one
    # the next request is not interrupted and matches a fresh engine
    again = eng.chat.completions.create(messages=MSGS, max_tokens=6, temperature=0, logit_bias={1: -100})
    fresh = Engine(model).chat.completions.create(messages=MSGS, max_tokens=6, temperature=0, logit_bias={1: -100})
    assert again.choices[0].finish_reason == "length"
    assert again.choices[0].message.content == fresh.choices[0].message.content


def test_interrupt_ends_a_stream_and_later_choices(model) -> None:
    eng = Engine(model)
    chunks = eng.chat.completions.create(messages=MSGS, max_tokens=50, temperature=0, stream=True, logit_bias={1: -100})
    first = [next(chunks), next(chunks)]  # the role chunk, then the first token's text
    eng.interrupt_generate()
    rest = list(chunks)
    assert first[1].choices[0].finish_reason is None
    assert [c.choices[0].finish_reason for c in rest if c.choices][-1] == "abort"
    # n choices: as in the JS engine, the flag holds for the rest of the request
    wrapped = _InterruptAt(model, at=_prompt_len(model))  # the first decode step
    e2 = wrapped.engine = Engine(wrapped)
    r = e2.chat.completions.create(messages=MSGS, max_tokens=20, temperature=0.8, seed=1, n=3, logit_bias={1: -100})
    assert [c.finish_reason for c in r.choices] == ["abort"] * 3


def test_interrupt_while_idle_does_not_touch_the_next_request(model) -> None:
    eng = Engine(model)
    eng.interrupt_generate()  # nothing running: the next request starts with the flag cleared
    r = eng.chat.completions.create(messages=MSGS, max_tokens=5, temperature=0, logit_bias={1: -100})
    assert r.choices[0].finish_reason == "length"
