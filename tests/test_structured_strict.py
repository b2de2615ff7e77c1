"""Strict requests (issue 13): every field is implemented, accepted without effect, or refused
with an error naming it; and the sampling knobs top_k, min_p, ignore_eos.

The refused/accepted cases are web/test/fixtures/strict_requests.json, which the JS engine's
test (web/test/request_fields.test.js) runs too. The engine is test_engine's FakeLM behind the
real Qwen3 tokenizer: validation must happen before the model is touched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from test_engine import MSGS, bundle, make_engine  # noqa: F401  (bundle is a fixture)
from webllm_py.runtime.request_fields import CHAT_FIELDS, NO_EFFECT, TEXT_FIELDS, UNSUPPORTED_CHAT, UNSUPPORTED_TEXT, FieldError

FIXTURE = json.loads((Path(__file__).resolve().parents[1] / "web/test/fixtures/strict_requests.json").read_text())
REFUSED = FIXTURE["refused"]


def _create(eng: Any, api: str, params: dict) -> Any:
    if api == "chat":
        return eng.chat.completions.create(messages=MSGS, max_tokens=3, **params)
    return eng.completions.create(prompt="Once", max_tokens=3, **params)


@pytest.mark.parametrize("case", REFUSED, ids=[f"{c['api']}-{c['param']}-{i}" for i, c in enumerate(REFUSED)])
def test_refused_fields_name_the_field(bundle: Any, case: dict) -> None:
    eng, lm = make_engine(bundle)
    with pytest.raises(ValueError) as ei:
        _create(eng, case["api"], case["params"])
    msg = str(ei.value)
    assert case["match"] in msg
    assert case["param"] in msg
    assert "\n" not in msg and len(msg) < 300  # one short line
    if isinstance(ei.value, FieldError):
        assert ei.value.param == case["param"]
    assert lm.forward_calls == 0  # refused before the model is touched


@pytest.mark.parametrize("case", FIXTURE["accepted"], ids=lambda c: f"{c['api']}-{'-'.join(c['params'])}")
def test_accepted_fields_answer(bundle: Any, case: dict) -> None:
    eng, _ = make_engine(bundle)
    r = _create(eng, case["api"], case["params"])
    assert r.choices[0].finish_reason in ("stop", "length")


def test_the_fixture_covers_every_refused_field() -> None:
    """Each unsupported field of the tables has a case, so the JS tables are held to the same list."""
    covered = {(c["api"], c["param"]) for c in REFUSED}
    want = {("chat", k) for k in UNSUPPORTED_CHAT} | {("text", k) for k in UNSUPPORTED_TEXT}
    assert want <= covered, sorted(want - covered)
    assert not (CHAT_FIELDS | TEXT_FIELDS) & NO_EFFECT


def test_top_k_one_is_greedy_and_min_p_one_keeps_the_top(bundle: Any) -> None:
    """top_k=1 and min_p=1 keep only the most probable token: the same text as temperature 0
    (the FakeLM has no exact ties among favoured logits: they are normal draws)."""
    eng, _ = make_engine(bundle)
    greedy = eng.chat.completions.create(messages=MSGS, max_tokens=12, temperature=0).choices[0].message.content
    for kw in (dict(top_k=1), dict(min_p=1.0)):
        for seed in (1, 2, 3):
            r = eng.chat.completions.create(messages=MSGS, max_tokens=12, temperature=1.5, seed=seed, **kw)
            assert r.choices[0].message.content == greedy, (kw, seed)


def test_top_k_limits_the_choices(bundle: Any) -> None:
    """With top_k=2 every sampled token is one of the two most probable after the penalties."""
    eng, lm = make_engine(bundle)
    r = eng.completions.create(prompt="Once", max_tokens=20, temperature=2.0, top_k=2, seed=5, logprobs=5)
    lp = r.choices[0].logprobs
    for tok, top in zip(lp.tokens, lp.top_logprobs):
        assert tok in list(top)[:2]


def test_ignore_eos_generates_past_eos(bundle: Any) -> None:
    """eos_at makes eos dominate from cache length 40: without ignore_eos the reply stops there,
    with it the completion runs to max_tokens (finish "length")."""
    eng, _ = make_engine(bundle, eos_at=40)
    r = eng.chat.completions.create(messages=MSGS, max_tokens=60, temperature=0)
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens < 60
    r2 = eng.chat.completions.create(messages=MSGS, max_tokens=60, temperature=0, ignore_eos=True)
    assert r2.choices[0].finish_reason == "length" and r2.usage.completion_tokens == 60
    assert r2.choices[0].message.content.startswith(r.choices[0].message.content)


def test_generation_top_k_default(bundle: Any) -> None:
    """A bundle's generation.top_k is the default (HF generation_config), overridden per request."""
    eng, _ = make_engine(bundle)
    eng.generation_defaults = {**eng.generation_defaults, "top_k": 1}
    greedy = eng.chat.completions.create(messages=MSGS, max_tokens=8, temperature=0).choices[0].message.content
    assert eng.chat.completions.create(messages=MSGS, max_tokens=8, temperature=1.5, seed=9).choices[0].message.content == greedy
    other = eng.chat.completions.create(messages=MSGS, max_tokens=8, temperature=1.5, seed=9, top_k=0)
    assert other.choices[0].message.content != greedy  # 8 tokens at T=1.5 over ~60 favoured ids
