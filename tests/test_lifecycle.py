"""Engine lifecycle, natively (issue 16): the context window chosen at load and its memory,
the context-overflow policy. The browser runs the same checks in tests/test_lifecycle_browser.py.

The tiny llama bundle (conftest.tiny_bundles) is built for a context window of 256 tokens with a
prefill chunk of 16.
"""

from __future__ import annotations

import numpy as np
import pytest

import webllm_py
from webllm_py.errors import ContextWindowExceededError
from webllm_py.runtime.engine import Engine
from webllm_py.runtime.kv_sizing import memory_estimate

PROMPT = [(5 * i + 7) % 280 + 2 for i in range(37)]  # crosses the 16-token prefill chunk twice
BUILT = 256  # the tiny bundles' context window


@pytest.fixture(scope="module")
def bundle(tiny_bundles):
    return tiny_bundles("llama", "f32")


def _allocated(model) -> int:
    """Bytes of every GPU buffer the native model created (its readback copy included)."""
    return sum(b.size for b in model._buffers.values()) + model._staging.size


# ---- context_window_size -------------------------------------------------------------------


def test_a_smaller_context_window_allocates_a_smaller_kv_cache_and_gives_the_same_logits(bundle, adapter):
    full = webllm_py.load(bundle, precision="f32", adapter=adapter)
    small = webllm_py.load(bundle, precision="f32", adapter=adapter, context_window_size=64)
    assert (full.context_window, small.context_window) == (BUILT, 64)
    # the estimate is made before allocating, and is what gets allocated, to the byte
    for m in (full, small):
        assert m.memory_estimate == memory_estimate(m.manifest, "f32", m.context_window)
        assert _allocated(m) == m.memory_estimate.total_bytes
    # 2 layers x (k, v) x 64 rows x 32 floats: exactly a quarter of the full cache; weights unchanged
    assert small.memory_estimate.kv_cache_bytes == 2 * 2 * 64 * 32 * 4
    assert full.memory_estimate.kv_cache_bytes == 4 * small.memory_estimate.kv_cache_bytes
    assert small.memory_estimate.weights_bytes == full.memory_estimate.weights_bytes
    assert _allocated(full) - _allocated(small) == 3 * small.memory_estimate.kv_cache_bytes
    # the same kernels over fewer rows: attention reads rows < p+n only, so the logits are the same bits
    assert np.array_equal(small.logits(PROMPT), full.logits(PROMPT))
    small.reset()
    with pytest.raises(ContextWindowExceededError, match="exceed the context window of 64"):
        small.forward(list(range(2, 67)))


def test_reference_backend_takes_the_context_window_too(bundle):
    full = webllm_py.load(bundle, backend="reference")
    small = webllm_py.load(bundle, backend="reference", context_window_size=40)
    assert small.context_window == 40
    assert np.array_equal(small.logits(PROMPT), full.logits(PROMPT))  # numpy: the same ops on the same rows


@pytest.mark.parametrize("bad", [0, 1, BUILT + 1, 10**6, -5, "64", 64.0, True, [64]])
def test_a_bad_context_window_size_is_one_line_naming_the_option(bundle, bad):
    for backend in ("reference", "native"):
        with pytest.raises(ValueError) as e:
            webllm_py.load(bundle, backend=backend, context_window_size=bad)
        msg = str(e.value)
        assert "\n" not in msg and "context_window_size must be an integer from 2 to 256" in msg and repr(bad) in msg


def test_engine_loads_with_the_window_and_refuses_a_longer_prompt_clearly(bundle):
    eng = Engine(bundle, backend="reference", context_window_size=24)
    assert eng.model.context_window == 24
    long = [{"role": "user", "content": "Once upon a time there was a little model that ran in a web page."}]
    with pytest.raises(ContextWindowExceededError) as e:
        eng.chat.completions.create(messages=long, max_tokens=4)
    msg = str(e.value)
    assert "\n" not in msg
    assert "context_window_size=24" in msg and "larger context_window_size (this bundle allows up to 256)" in msg
    with pytest.raises(ContextWindowExceededError, match="context_window_size=24"):
        eng.completions.create(prompt=list(range(2, 40)), max_tokens=2)
    # a prompt that fits still answers, and the reply stops at the chosen window
    r = eng.completions.create(prompt=list(range(2, 12)), temperature=0, logit_bias={1: -100})
    assert r.choices[0].finish_reason == "length" and r.usage.total_tokens == 24


def test_load_options_an_engine_cannot_apply_are_refused(bundle, tiny_encoder_bundles):
    model = webllm_py.load(bundle, backend="reference")
    with pytest.raises(ValueError, match="context_window_size is chosen when the bundle is loaded"):
        Engine(model, context_window_size=32)
    with pytest.raises(ValueError, match="embedding model, which has no context window"):
        Engine(tiny_encoder_bundles("bert"), backend="reference", context_window_size=32)
    with pytest.raises(ValueError, match=r"context_overflow must be one of \('error', 'slide'\), got 'drop'"):
        Engine(model, context_overflow="drop")


# ---- context_overflow ------------------------------------------------------------------------

SYSTEM = {"role": "system", "content": "You are a tiny model."}


def _turns(n: int) -> list[dict]:
    """n user/assistant turns of ~20 tokens each, then the newest user message."""
    msgs = [SYSTEM]
    for i in range(n):
        msgs += [{"role": "user", "content": f"Question {i}: the quick brown fox?"},
                 {"role": "assistant", "content": f"Answer {i}: over the lazy dog."}]
    return msgs + [{"role": "user", "content": "And now?"}]


def test_slide_keeps_answering_past_the_window_and_keeps_the_system_prompt(bundle):
    window = 160  # a turn is ~62 tokens of the tiny tokenizer: up to 2 turns fit
    error = Engine(bundle, backend="reference", context_window_size=window)
    slide = Engine(bundle, backend="reference", context_window_size=window, context_overflow="slide")
    answered = 0
    for n in range(0, 12):
        msgs = _turns(n)
        full = len(error._chat_prompt(msgs, None))
        r = slide.chat.completions.create(messages=msgs, max_tokens=8, temperature=0, logit_bias={1: -100})
        assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 8
        assert r.usage.prompt_tokens + 8 <= window
        if full + 8 > window:
            answered += 1
            assert slide._context.dropped == n - 1  # the newest old turn still fits beside the new one
            # what was kept: the system prompt and the newest turns, rendered as the template does
            head = [SYSTEM] + msgs[1 + 2 * slide._context.dropped:]
            assert r.usage.prompt_tokens == len(slide._chat_prompt(head, None))
            if full >= window:
                with pytest.raises(ContextWindowExceededError, match="context_overflow='slide'"):
                    error.chat.completions.create(messages=msgs, max_tokens=8)
        else:
            assert slide._context.dropped == 0 and r.usage.prompt_tokens == full
    assert answered >= 9, "the conversation must outgrow the window for several turns"


def test_slide_without_max_tokens_keeps_a_quarter_of_the_window_and_refuses_a_giant_newest_turn(bundle):
    window = 96
    slide = Engine(bundle, backend="reference", context_window_size=window, context_overflow="slide")
    r = slide.chat.completions.create(messages=_turns(10), temperature=0, max_tokens=None, logit_bias={1: -100})
    assert r.usage.prompt_tokens + window // 4 <= window
    giant = [SYSTEM, {"role": "user", "content": "fox " * 200}]
    with pytest.raises(ContextWindowExceededError) as e:
        slide.chat.completions.create(messages=giant, max_tokens=4)
    assert "even with only the newest turn" in str(e.value) and "\n" not in str(e.value)
    # text completions have no turns to drop: refused under either policy
    with pytest.raises(ContextWindowExceededError, match="context_window_size=96"):
        slide.completions.create(prompt=list(range(2, 100)), max_tokens=2)


# ---- reload, get_message ---------------------------------------------------------------------

HI = [{"role": "user", "content": "Once upon a time"}]
GREEDY = dict(max_tokens=6, temperature=0, logit_bias={1: -100})


def _answer(eng) -> str:
    return eng.chat.completions.create(messages=HI, **GREEDY).choices[0].message.content


def test_reload_switches_bundles_and_frees_the_first(tiny_bundles, adapter):
    first, second = tiny_bundles("llama", "f32"), tiny_bundles("qwen3", "f32")
    eng = Engine(first, precision="f32", context_window_size=64)
    before = _answer(eng)
    old = eng.model
    eng.reload(second)
    # the second bundle, loaded as a fresh engine would (its own window: the size is not carried over)
    assert eng.model is not old and eng.model.bundle_dir == second and eng.model.context_window == BUILT
    assert eng.model.precision == "f32" and eng.model_name == Engine(second, backend="reference").model_name
    assert _answer(eng) == _answer(Engine(second, precision="f32"))
    # the first model's GPU buffers and device are gone, and it says so when used
    assert old._buffers == {} and old._programs == {}
    with pytest.raises(webllm_py.errors.WebLLMError, match="was closed"):
        old.forward([2])
    eng.reload(first, context_window_size=64)
    assert _answer(eng) == before


def test_a_reload_that_fails_leaves_the_engine_on_its_model(bundle, tmp_path):
    eng = Engine(bundle, backend="reference")
    before, model = _answer(eng), eng.model
    (tmp_path / "manifest.json").write_text("{}")
    bad = [(tmp_path / "missing", webllm_py.BundleError), (tmp_path, webllm_py.BundleError),
           (bundle, ValueError, {"context_window_size": 1}), (bundle, ValueError, {"context_overflow": "drop"}),
           (bundle, ValueError, {"contextWindowSize": 64})]
    for path, err, *opts in bad:
        with pytest.raises(err) as e:
            eng.reload(path, **(opts[0] if opts else {}))
        assert "\n" not in str(e.value)
        assert eng.model is model and not model._closed and _answer(eng) == before
    with pytest.raises(ValueError, match="unknown option 'contextWindowSize'; it takes backend, precision"):
        eng.reload(bundle, contextWindowSize=64)


def test_reload_ends_a_stream_in_another_thread_with_abort(bundle, tiny_bundles):
    import threading
    import time

    second = tiny_bundles("qwen3", "f32")  # built before the stream starts
    eng = Engine(bundle, backend="reference")
    started, seen = threading.Event(), {}

    def consume():
        finish = None
        for c in eng.chat.completions.create(messages=HI, stream=True, max_tokens=200, temperature=0,
                                             logit_bias={1: -100}):
            if c.choices and c.choices[0].delta.content:  # generating (the role chunk comes before)
                started.set()
            finish = (c.choices[0].finish_reason if c.choices else None) or finish
            time.sleep(0.005)  # a slow reader: at most 200 x 5 ms
        seen["finish"] = finish

    t = threading.Thread(target=consume)
    t.start()
    assert started.wait(30)
    eng.reload(second, backend="reference")
    t.join(30)
    assert seen["finish"] == "abort"
    assert _answer(eng) == _answer(Engine(second, backend="reference"))


def test_get_message_is_the_reply_so_far(bundle):
    eng = Engine(bundle, backend="reference")
    assert eng.get_message() == ""
    r = eng.chat.completions.create(messages=HI, n=2, temperature=1.0, seed=3, max_tokens=8)
    assert eng.get_message() == r.choices[0].message.content  # the first choice's
    parts = []
    stream = eng.chat.completions.create(messages=HI, stream=True, **GREEDY)
    next(stream)  # the role chunk comes before the request starts (and get_message is still the last one's)
    for c in stream:
        parts.append(c.choices[0].delta.content or "" if c.choices else "")
        assert eng.get_message() == "".join(parts)  # mid-stream: what was emitted so far
    assert eng.get_message() == _answer(Engine(bundle, backend="reference"))
    c = eng.completions.create(prompt="The quick", max_tokens=5, temperature=0)
    assert eng.get_message() == c.choices[0].text
