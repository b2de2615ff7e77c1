"""The OpenAI-style engine on a deterministic FakeLM with a real tokenizer.

FakeLM's logits are a fixed random row picked by a hash of *everything* in its
KV cache, so any mistake in prefix reuse (a wrong truncate, a token not forwarded)
changes the output and is caught by comparing with a fresh prefill.
"""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

from webllm_py.errors import ContextWindowExceededError
from webllm_py.runtime.engine import Engine
from webllm_py.runtime.sampler import log_softmax
from webllm_py.runtime.tokenizer import Tokenizer

SHARED = Path("/work/shared/models")
_here = Path(__file__).resolve().parents[1].parent / "shared" / "models"
if _here.is_dir():
    SHARED = _here
QWEN3 = SHARED / "tokenizers" / "qwen3"

IM_END = 151645  # <|im_end|>
ENDOFTEXT = 151643  # <|endoftext|>

# The FakeLM only ever favours the tokens of this text (plus eos), so output is
# wordy, and includes multi-byte characters split across byte-level tokens.
FAVOURED_TEXT = (
    "Once upon a time, there was a little robot named Bolt. He liked apples, rain and the sea. "
    "Café naïve déjà vu — 日本語のテキスト 🎉🚀 end. The cat sat on the mat; it was happy!"
)


class FakeLM:
    """Deterministic LanguageModel: logits = table[crc32(cache ids) % rows] on favoured ids."""

    def __init__(
        self,
        bundle_dir: Path,
        manifest: dict[str, Any],
        vocab_size: int,
        favoured: Sequence[int],
        context_window: int = 256,
        eos_at: int | None = None,
        seed: int = 0,
    ):
        self.manifest = manifest
        self.bundle_dir = bundle_dir
        self.vocab_size = vocab_size
        self.context_window = context_window
        self.favoured = np.array(sorted(set(favoured)), dtype=np.int64)
        self.eos_at = eos_at  # from this cache length on, eos dominates
        rng = np.random.default_rng(seed)
        self.table = rng.normal(0.0, 3.0, size=(101, len(self.favoured))).astype(np.float32)
        self.ids: list[int] = []
        self.forward_calls = 0
        self.forwarded_tokens = 0
        self.truncations: list[int] = []

    @property
    def position(self) -> int:
        return len(self.ids)

    def reset(self) -> None:
        self.ids = []

    def truncate(self, position: int) -> None:
        assert 0 <= position <= len(self.ids)
        self.truncations.append(position)
        del self.ids[position:]

    def row(self, ids: Sequence[int]) -> np.ndarray:
        h = zlib.crc32(np.asarray(ids, dtype=np.int64).tobytes())
        out = np.full(self.vocab_size, -30.0, dtype=np.float32)
        out[self.favoured] = self.table[h % len(self.table)]
        if self.eos_at is not None and len(ids) >= self.eos_at:
            out[IM_END] = 100.0
        return out

    def forward(self, ids: Sequence[int]) -> np.ndarray:
        ids = [int(t) for t in ids]
        assert ids, "forward needs at least one token"
        if len(self.ids) + len(ids) > self.context_window:
            raise ContextWindowExceededError(f"{len(self.ids)} + {len(ids)} > {self.context_window}")
        self.forward_calls += 1
        self.forwarded_tokens += len(ids)
        self.ids.extend(ids)
        return self.row(self.ids)

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        self.reset()
        return np.stack([self.row(list(ids[: i + 1])) for i in range(len(ids))])

    def generate(self, ids: Sequence[int], max_new_tokens: int) -> list[int]:
        self.reset()
        out: list[int] = []
        logits = self.forward(ids)
        for _ in range(max_new_tokens):
            t = int(np.argmax(logits))
            out.append(t)
            if t == IM_END:
                break
            logits = self.forward([t])
        return out


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Tokenizer]:
    if not (QWEN3 / "tokenizer.json").is_file():
        pytest.skip(f"real tokenizer data absent: {QWEN3} (shared test data)")
    d = tmp_path_factory.mktemp("bundle")
    shutil.copy(QWEN3 / "tokenizer.json", d / "tokenizer.json")
    shutil.copy(QWEN3 / "tokenizer_config.json", d / "tokenizer_config.json")
    manifest = {
        "format": "webllm-py-bundle",
        "format_version": "1.0",
        "model": {"id": "fake-qwen3"},
        "context_window": 256,
        "tokenizer": {"file": "tokenizer.json", "config_file": "tokenizer_config.json", "eos_token_ids": [IM_END]},
        "generation": {"temperature": 0.7, "top_p": 0.95, "eos_token_ids": [IM_END, ENDOFTEXT]},
    }
    (d / "manifest.json").write_text(json.dumps(manifest))
    tok = Tokenizer.from_bundle(d, manifest)
    return d, manifest, tok


def make_engine(bundle: Any, load_tokenizer: bool = False, **kw: Any) -> tuple[Engine, FakeLM]:
    """A fresh FakeLM + Engine; the shared tokenizer is passed in to save its load
    time, except with load_tokenizer (Engine reads it from the bundle itself)."""
    d, manifest, tok = bundle
    favoured = tok.encode(FAVOURED_TEXT, add_special_tokens=False)  # eos only via eos_at
    lm = FakeLM(d, manifest, tok.vocab_size, favoured, **kw)
    return (Engine(lm) if load_tokenizer else Engine(lm, tokenizer=tok)), lm


MSGS = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Tell me a story."}]


def chat_text(eng: Engine, **kw: Any) -> tuple[str, Any]:
    r = eng.chat.completions.create(messages=MSGS, **kw)
    return r.choices[0].message.content, r


def stream_text(eng: Engine, **kw: Any) -> tuple[str, list[Any]]:
    chunks = list(eng.chat.completions.create(messages=MSGS, stream=True, **kw))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


# ---- basics --------------------------------------------------------------------------


def test_chat_prompt_is_template_then_tokenize_without_specials(bundle: Any) -> None:
    eng, lm = make_engine(bundle, load_tokenizer=True)
    r = eng.chat.completions.create(messages=MSGS, max_tokens=1, seed=0)
    _, _, tok = bundle
    text = tok.apply_chat_template(MSGS, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    ids = tok.encode(text, add_special_tokens=False)
    assert lm.ids == ids  # exactly the prompt was forwarded (the one sampled token is not)
    assert r.usage.prompt_tokens == len(ids)
    assert r.usage.completion_tokens == 1
    assert r.usage.total_tokens == len(ids) + 1
    assert r.object == "chat.completion" and r.model == "fake-qwen3"
    json.dumps(r.to_dict())


def test_stream_equals_non_stream(bundle: Any) -> None:
    eng, _ = make_engine(bundle)
    for kw in (
        dict(seed=3, max_tokens=60),
        dict(seed=4, max_tokens=80, temperature=1.3, top_p=0.9, stop=["sea", "!"]),
        dict(seed=5, max_tokens=50, logprobs=True, top_logprobs=3, frequency_penalty=0.5),
    ):
        full, r = chat_text(eng, **kw)
        s, chunks = stream_text(eng, stream_options={"include_usage": True}, **kw)
        assert s == full and len(full) > 0, kw
        assert chunks[0].choices[0].delta.role == "assistant"
        finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
        assert len(finals) == 1 and finals[0].choices[0].finish_reason == r.choices[0].finish_reason
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == r.usage.completion_tokens
        assert all(c.usage is None for c in chunks[:-1])
        assert all(c.object == "chat.completion.chunk" for c in chunks)
        if kw.get("logprobs"):
            lp_stream = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
            assert [e.to_dict() for e in lp_stream] == [e.to_dict() for e in r.choices[0].logprobs.content]
            assert len(lp_stream) == r.usage.completion_tokens


def test_stream_without_usage_has_no_usage_chunk(bundle: Any) -> None:
    eng, _ = make_engine(bundle)
    _, chunks = stream_text(eng, seed=1, max_tokens=5)
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


def test_max_tokens_length(bundle: Any) -> None:
    eng, _ = make_engine(bundle)
    for m in (1, 7, 30):
        _, r = chat_text(eng, seed=2, max_tokens=m)
        assert r.usage.completion_tokens == m
        assert r.choices[0].finish_reason == "length"


def test_eos_stops(bundle: Any) -> None:
    d, manifest, tok = bundle
    prompt = tok.encode(tok.apply_chat_template(MSGS, add_generation_prompt=True), add_special_tokens=False)
    eng, _ = make_engine(bundle, eos_at=len(prompt) + 5)
    text, r = chat_text(eng, seed=1, max_tokens=100)
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == 6  # 5 tokens, then eos (counted, not shown)
    assert "<|im_end|>" not in text
    s, _ = stream_text(eng, seed=1, max_tokens=100)
    assert s == text


def test_generation_eos_ids_also_stop(bundle: Any) -> None:
    eng, _ = make_engine(bundle)
    assert {IM_END, ENDOFTEXT} <= eng.eos_token_ids
    _, r = chat_text(eng, temperature=0, max_tokens=10, logit_bias={ENDOFTEXT: 100})
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens == 1
    assert r.choices[0].message.content == ""


def test_stop_strings(bundle: Any) -> None:
    eng, _ = make_engine(bundle)
    # the raw completion and its token boundaries
    full, r = chat_text(eng, seed=11, max_tokens=60, temperature=1.0, logprobs=True)
    pieces = [e.token for e in r.choices[0].logprobs.content]
    assert len(pieces) >= 10 and "".join(pieces) == full  # plain text here, pieces concatenate
    # a stop string spanning the boundary between tokens 4 and 5
    cut = len("".join(pieces[:5]))
    spanning = full[cut - 2 : cut + 2]
    assert len(spanning) == 4
    first = full.find(spanning)
    for stop in (spanning, [spanning, "\x00never"], ["\x00never", spanning[:3] + "\x01"]):
        text, rs = chat_text(eng, seed=11, max_tokens=60, temperature=1.0, stop=stop)
        s, chunks = stream_text(eng, seed=11, max_tokens=60, temperature=1.0, stop=stop)
        assert s == text
        if isinstance(stop, list) and spanning not in stop:
            # a partial match that never completes: nothing lost
            assert text == full and rs.choices[0].finish_reason == "length"
            continue
        assert text == full[:first] and rs.choices[0].finish_reason == "stop"
        assert spanning not in s
        # streamed pieces never showed text that later became part of the stop string
        shown = ""
        for c in chunks:
            if c.choices and c.choices[0].delta.content:
                shown += c.choices[0].delta.content
                assert full.startswith(shown) and len(shown) <= first


def test_same_seed_same_text_different_seeds_differ(bundle: Any) -> None:
    eng, _ = make_engine(bundle)
    a, _ = chat_text(eng, seed=7, max_tokens=40, temperature=1.0)
    b, _ = chat_text(eng, seed=7, max_tokens=40, temperature=1.0)
    eng2, _ = make_engine(bundle)
    c, _ = chat_text(eng2, seed=7, max_tokens=40, temperature=1.0)
    assert a == b == c
    others = {chat_text(eng, seed=s, max_tokens=40, temperature=1.0)[0] for s in (8, 9, 10)}
    assert len(others | {a}) == 4


def test_n_choices_use_seed_plus_k(bundle: Any) -> None:
    eng, _ = make_engine(bundle)
    r = eng.chat.completions.create(messages=MSGS, n=3, seed=20, max_tokens=25, temperature=1.0)
    assert [c.index for c in r.choices] == [0, 1, 2]
    texts = [c.message.content for c in r.choices]
    singles = [chat_text(eng, seed=20 + k, max_tokens=25, temperature=1.0)[0] for k in range(3)]
    assert texts == singles and len(set(texts)) == 3
    assert r.usage.completion_tokens == 75


def test_completions_api(bundle: Any) -> None:
    eng, lm = make_engine(bundle)
    _, _, tok = bundle
    prompt = "Once upon a time"
    ids = tok.encode(prompt, add_special_tokens=True)
    r = eng.completions.create(prompt=prompt, max_tokens=20, temperature=0)
    assert r.object == "text_completion" and r.usage.prompt_tokens == len(ids)
    greedy = lm.generate(ids, 20)
    assert r.choices[0].text == tok.decode(greedy)
    chunks = list(eng.completions.create(prompt=prompt, max_tokens=20, temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == r.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"
    # token-id prompts and legacy logprobs
    r2 = eng.completions.create(prompt=ids, max_tokens=5, temperature=0, logprobs=2)
    assert r2.choices[0].text == tok.decode(greedy[:5])
    lp = r2.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 5
    assert all(len(t) == 2 for t in lp.top_logprobs)
    json.dumps(r2.to_dict())


def test_logprobs_match_numpy_log_softmax(bundle: Any) -> None:
    eng, lm = make_engine(bundle)
    _, _, tok = bundle
    bias = {int(lm.favoured[3]): 2.5}
    r = eng.chat.completions.create(
        messages=MSGS, seed=5, max_tokens=12, temperature=0.8, logprobs=True, top_logprobs=5, logit_bias=bias
    )
    prompt = tok.encode(tok.apply_chat_template(MSGS, add_generation_prompt=True), add_special_tokens=False)
    ctx = list(prompt)
    content = r.choices[0].logprobs.content
    assert len(content) == 12
    for entry in content:
        x = lm.row(ctx).astype(np.float64)
        for t, b in bias.items():
            x[t] += b
        ref = x - x.max() - np.log(np.exp(x - x.max()).sum())  # independent numpy log-softmax
        tid = tok.encode(entry.token, add_special_tokens=False)
        # identify the sampled id via its bytes among the favoured tokens
        cands = [int(t) for t in lm.favoured if tok.token_bytes(int(t)) == bytes(entry.bytes)]
        assert len(cands) == 1, (entry.token, tid)
        t = cands[0]
        assert entry.logprob == pytest.approx(ref[t], abs=1e-9)
        top_ids = list(np.argsort(-ref, kind="stable")[:5])
        assert [e.logprob for e in entry.top_logprobs] == pytest.approx([ref[i] for i in top_ids], abs=1e-9)
        assert [bytes(e.bytes) for e in entry.top_logprobs] == [tok.token_bytes(int(i)) for i in top_ids]
        ctx.append(t)
    assert np.allclose(log_softmax(np.array([1.0, 2.0])), np.log(np.exp([1.0, 2.0]) / np.exp([1.0, 2.0]).sum()))


# ---- multi-turn prefix reuse -----------------------------------------------------------


def test_multi_turn_prefix_reuse_matches_fresh_prefill(bundle: Any) -> None:
    eng, lm = make_engine(bundle)
    kw = dict(seed=13, max_tokens=20, temperature=0.9)
    conv = list(MSGS)
    for turn in range(3):
        before = lm.forwarded_tokens
        r = eng.chat.completions.create(messages=conv, **kw)
        forwarded = lm.forwarded_tokens - before
        fresh_eng, fresh_lm = make_engine(bundle)
        rf = fresh_eng.chat.completions.create(messages=conv, **kw)
        assert r.choices[0].message.content == rf.choices[0].message.content, turn
        assert lm.ids == fresh_lm.ids  # identical KV cache contents
        if turn:
            assert forwarded < fresh_lm.forwarded_tokens, turn  # reused the cached prefix
            assert eng.runtime_stats()["cached_tokens"] > 0
        conv = conv + [{"role": "assistant", "content": r.choices[0].message.content}, {"role": "user", "content": f"And then {turn}?"}]


def test_identical_request_forwards_one_token(bundle: Any) -> None:
    eng, lm = make_engine(bundle)
    a, r = chat_text(eng, seed=1, max_tokens=10, temperature=0)
    before_tokens, before_calls = lm.forwarded_tokens, lm.forward_calls
    b, r2 = chat_text(eng, seed=1, max_tokens=1, temperature=0)
    assert lm.forwarded_tokens - before_tokens == 1  # whole prompt cached: truncate by one, forward it
    assert lm.forward_calls - before_calls == 1
    assert a.startswith(b)
    assert eng.runtime_stats()["prefill_tokens"] == 1


def test_engine_recovers_when_model_used_directly(bundle: Any) -> None:
    eng, lm = make_engine(bundle)
    a, _ = chat_text(eng, seed=1, max_tokens=10)
    lm.generate([1, 2, 3], 4)  # resets and fills the cache behind the engine's back
    b, _ = chat_text(eng, seed=1, max_tokens=10)
    assert a == b


# ---- context window --------------------------------------------------------------------


def test_prompt_too_long_raises(bundle: Any) -> None:
    eng, _ = make_engine(bundle, context_window=32)
    with pytest.raises(ContextWindowExceededError, match="32"):
        eng.chat.completions.create(messages=[{"role": "user", "content": "word " * 100}])
    with pytest.raises(ValueError):  # ContextWindowExceededError is a ValueError too
        eng.completions.create(prompt="word " * 100)


def test_generation_stops_when_context_full(bundle: Any) -> None:
    d, manifest, tok = bundle
    prompt = tok.encode(tok.apply_chat_template(MSGS, add_generation_prompt=True), add_special_tokens=False)
    eng, lm = make_engine(bundle, context_window=len(prompt) + 9)
    _, r = chat_text(eng, seed=1, max_tokens=100)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.total_tokens == lm.context_window
    _, r = chat_text(eng, seed=1)  # no max_tokens: until eos or the context is full
    assert r.usage.completion_tokens == 9


# ---- validation ------------------------------------------------------------------------

BAD_ARGS = [
    (dict(temperature=-0.1), "temperature"),
    (dict(temperature="hot"), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(n=0), "n"),
    (dict(n=2, stream=True), "n"),
    (dict(max_tokens=0), "max_tokens"),
    (dict(max_tokens=2.5), "max_tokens"),
    (dict(seed=-1), "seed"),
    (dict(seed=2**53), "seed"),
    (dict(stop=5), "stop"),
    (dict(stop=[""]), "stop"),
    (dict(frequency_penalty=3.0), "frequency_penalty"),
    (dict(presence_penalty=-2.5), "presence_penalty"),
    (dict(repetition_penalty=0.0), "repetition_penalty"),
    (dict(logit_bias={"abc": 1}), "logit_bias"),
    (dict(logit_bias={10**9: 1}), "logit_bias"),
    (dict(logit_bias={5: 101}), "logit_bias"),
    (dict(logit_bias=[1, 2]), "logit_bias"),
    (dict(logprobs=True, top_logprobs=21), "top_logprobs"),
    (dict(top_logprobs=2), "top_logprobs"),
    (dict(logprobs="yes"), "logprobs"),
    (dict(stream_options={"include_usage": True}), "stream_options"),
    (dict(stream=True, stream_options={"include_usage": "y"}), "include_usage"),
]


@pytest.mark.parametrize("kw,field", BAD_ARGS, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD_ARGS)])
def test_invalid_arguments_name_the_field(bundle: Any, kw: dict, field: str) -> None:
    eng, lm = make_engine(bundle)
    with pytest.raises(ValueError, match=field):
        eng.chat.completions.create(messages=MSGS, **kw)
    assert lm.forward_calls == 0  # rejected before touching the model


@pytest.mark.parametrize(
    "messages",
    [[], None, [{"role": "wizard", "content": "x"}], [{"content": "x"}], ["hi"], [{"role": "user", "content": 5}],
     [{"role": "user"}], [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]],
)
def test_invalid_messages(bundle: Any, messages: Any) -> None:
    eng, _ = make_engine(bundle)
    with pytest.raises(ValueError, match="messages"):
        eng.chat.completions.create(messages=messages)


def test_invalid_completion_prompt(bundle: Any) -> None:
    eng, _ = make_engine(bundle)
    for bad in (None, [], ["a", "b"], [10**9], 5):
        with pytest.raises(ValueError, match="prompt"):
            eng.completions.create(prompt=bad)
    with pytest.raises(ValueError, match="logprobs"):
        eng.completions.create(prompt="x", logprobs=21)


def test_stream_validation_is_eager(bundle: Any) -> None:
    eng, _ = make_engine(bundle)
    with pytest.raises(ValueError, match="temperature"):
        eng.chat.completions.create(messages=MSGS, stream=True, temperature=-1)  # not at first next()


# ---- misc ------------------------------------------------------------------------------


def test_text_content_parts_and_developer_role(bundle: Any) -> None:
    eng, _ = make_engine(bundle)
    a, _ = chat_text(eng, seed=3, max_tokens=8)
    parts = [
        {"role": "developer", "content": [{"type": "text", "text": "You are "}, {"type": "text", "text": "terse."}]},
        {"role": "user", "content": "Tell me a story."},
    ]
    r = eng.chat.completions.create(messages=parts, seed=3, max_tokens=8)
    assert r.choices[0].message.content == a


def test_defaults_from_manifest_generation(bundle: Any) -> None:
    eng, _ = make_engine(bundle)
    a, _ = chat_text(eng, seed=9, max_tokens=30)
    b, _ = chat_text(eng, seed=9, max_tokens=30, temperature=0.7, top_p=0.95)
    assert a == b


def test_logit_bias_forces_token(bundle: Any) -> None:
    eng, lm = make_engine(bundle)
    _, _, tok = bundle
    t = tok.encode(" robot", add_special_tokens=False)[0]
    text, r = chat_text(eng, seed=1, max_tokens=4, logit_bias={str(t): 100})
    assert text == " robot" * 4


def test_abandoned_stream_releases_engine(bundle: Any) -> None:
    eng, _ = make_engine(bundle)
    it = eng.chat.completions.create(messages=MSGS, stream=True, seed=1, max_tokens=20)
    next(it), next(it)
    with pytest.raises(RuntimeError, match="busy"):
        chat_text(eng, seed=1, max_tokens=5)
    it.close()
    a, _ = chat_text(eng, seed=1, max_tokens=5)
    eng2, _ = make_engine(bundle)
    assert a == chat_text(eng2, seed=1, max_tokens=5)[0]  # the cache state stayed consistent


def test_runtime_stats(bundle: Any) -> None:
    eng, _ = make_engine(bundle)
    chat_text(eng, seed=1, max_tokens=10)
    s = eng.runtime_stats()
    assert s["decode_tokens"] == 10 and s["prefill_tokens"] == s["prompt_tokens"] > 0
    assert s["prefill_tokens_per_s"] > 0 and s["decode_tokens_per_s"] > 0


# ---- tokenizer -------------------------------------------------------------------------


def test_stream_detokenizer_never_splits_characters(bundle: Any) -> None:
    _, _, tok = bundle
    text = "Hé said: 日本語のテキスト 🎉🚀 — déjà vu! 👩‍👩‍👧"
    ids = tok.encode(text, add_special_tokens=False)
    assert any("\ufffd" in tok.decode([i]) for i in ids)  # some tokens are partial characters
    det = tok.stream_detokenizer()
    deltas = [det.push(i) for i in ids]
    deltas.append(det.flush())
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == text == tok.decode(ids)
    assert b"".join(tok.token_bytes(i) for i in ids) == text.encode("utf-8")


def test_stream_detokenizer_keeps_leading_space_after_prompt(bundle: Any) -> None:
    _, _, tok = bundle
    prompt = tok.encode("Once upon", add_special_tokens=False)
    cont = tok.encode(" a time there", add_special_tokens=False)
    det = tok.stream_detokenizer(prompt)
    assert "".join(det.push(i) for i in cont) + det.flush() == " a time there"


def test_sentencepiece_tokenizer_streaming(tmp_path: Path) -> None:
    f = SHARED / "stories260k" / "tokenizer.json"
    if not f.is_file():
        pytest.skip(f"real tokenizer data absent: {f}")
    shutil.copy(f, tmp_path / "tokenizer.json")
    tok = Tokenizer.from_bundle(tmp_path, {"tokenizer": {"file": "tokenizer.json"}})
    prompt = tok.encode("Once upon a time", add_special_tokens=True)
    assert prompt[0] == 1  # BOS from tokenizer.json's post-processor
    full = tok.encode("Once upon a time there was a cat. 日本", add_special_tokens=True)
    assert full[: len(prompt)] == prompt
    det = tok.stream_detokenizer(prompt)
    out = "".join(det.push(i) for i in full[len(prompt):]) + det.flush()
    assert out == " there was a cat. 日本"  # leading space kept (the Strip decoder drops it alone)
