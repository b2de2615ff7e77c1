"""Our chat-template renderer against transformers' own `apply_chat_template(tokenize=False)`
on real tokenizer configs and real chat templates (shared test data, no network)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jinja2
import pytest

from webllm_py.runtime.chat_template import ChatTemplate, special_tokens_from_config

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "models"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/models")
TOKENIZERS = SHARED / "tokenizers"
TEMPLATES = SHARED / "chat-templates"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
transformers = pytest.importorskip("transformers", reason="transformers is the independent reference")

SYSTEM = {"role": "system", "content": "You are a helpful assistant. Ünïcödé: 日本語 🎉"}
U1 = {"role": "user", "content": "Hi! What's 2 < 3 && \"quotes\"?"}
A1 = {"role": "assistant", "content": "Yes, 2 < 3.\nAnything else?"}
U2 = {"role": "user", "content": "  Tell me a joke.  "}
A2 = {"role": "assistant", "content": "Why did the chicken cross the road?"}
A_THINK = {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nThe answer is 4."}
A_REASON = {"role": "assistant", "content": "The answer is 4.", "reasoning_content": "2+2=4"}

CONVERSATIONS = {
    "user": [U1],
    "system_user": [SYSTEM, U1],
    "multi_turn": [SYSTEM, U1, A1, U2],
    "no_system_multi": [U1, A1, U2],
    "ends_with_assistant": [U1, A1, U2, A2],
    "think": [U1, A_THINK, U2],
    "reasoning_field": [U1, A_REASON, U2],
}


def _render_both(ref_tok: Any, ours: ChatTemplate, conv: list[dict], agp: bool, **kw: Any) -> tuple[Any, Any]:
    try:
        ref = ref_tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=agp, **kw)
    except jinja2.TemplateError as e:
        ref = ("TemplateError", str(e))
    try:
        got = ours.render(conv, add_generation_prompt=agp, **kw)
    except jinja2.TemplateError as e:
        got = ("TemplateError", str(e))
    return ref, got


# ---- real tokenizer configs ------------------------------------------------------------

TOKENIZER_NAMES = ["qwen3", "llama3-instruct", "gemma3"]


@pytest.fixture(scope="module", params=TOKENIZER_NAMES)
def tokenizer_pair(request: Any) -> tuple[str, Any, ChatTemplate]:
    d = TOKENIZERS / request.param
    if not (d / "tokenizer_config.json").is_file():
        pytest.skip(f"shared tokenizer data absent: {d}")
    ref = transformers.AutoTokenizer.from_pretrained(str(d))
    cfg = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
    return request.param, ref, ChatTemplate.from_tokenizer_config(cfg)


@pytest.mark.parametrize("agp", [True, False])
@pytest.mark.parametrize("conv_name", list(CONVERSATIONS))
def test_tokenizer_config_templates_match_transformers(tokenizer_pair: Any, conv_name: str, agp: bool) -> None:
    name, ref_tok, ours = tokenizer_pair
    ref, got = _render_both(ref_tok, ours, CONVERSATIONS[conv_name], agp)
    assert got == ref, f"{name}/{conv_name}/agp={agp}"


def test_qwen3_enable_thinking_kwarg() -> None:
    d = TOKENIZERS / "qwen3"
    if not (d / "tokenizer_config.json").is_file():
        pytest.skip(f"shared tokenizer data absent: {d}")
    ref_tok = transformers.AutoTokenizer.from_pretrained(str(d))
    ours = ChatTemplate.from_tokenizer_config(json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8")))
    ref, got = _render_both(ref_tok, ours, [SYSTEM, U1], True, enable_thinking=False)
    assert got == ref and "<think>\n\n</think>" in got


# ---- real .jinja templates loaded into a PreTrainedTokenizerFast -----------------------

JINJA_FILES = sorted(p.name for p in TEMPLATES.glob("*.jinja")) if TEMPLATES.is_dir() else []


def _special_tokens_for(name: str) -> dict[str, str]:
    if "llama" in name.lower():
        return {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
    if "gemma" in name.lower():
        return {"bos_token": "<bos>", "eos_token": "<eos>"}
    if "qwen" in name.lower() or "smollm" in name.lower():
        return {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    return {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


@pytest.fixture(scope="module")
def base_tokenizer_file() -> Path:
    f = TOKENIZERS / "llama3-instruct" / "tokenizer.json"
    if not f.is_file():
        pytest.skip(f"shared tokenizer data absent: {f}")
    return f


@pytest.mark.skipif(not JINJA_FILES, reason=f"shared chat templates absent: {TEMPLATES}")
@pytest.mark.parametrize("jinja_name", JINJA_FILES)
def test_jinja_templates_match_transformers(base_tokenizer_file: Path, jinja_name: str) -> None:
    template = (TEMPLATES / jinja_name).read_text(encoding="utf-8")
    specials = _special_tokens_for(jinja_name)
    ref_tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(base_tokenizer_file), **specials)
    ref_tok.chat_template = template
    ours = ChatTemplate(template, specials)
    rendered_ok = 0
    for conv_name, conv in CONVERSATIONS.items():
        for agp in (True, False):
            ref, got = _render_both(ref_tok, ours, conv, agp)
            assert got == ref, f"{jinja_name}/{conv_name}/agp={agp}"
            rendered_ok += isinstance(ref, str)
    assert rendered_ok > 0, "every conversation was rejected: the test would prove nothing"


# ---- semantics that are easy to get wrong ----------------------------------------------


def test_named_template_list_picks_default() -> None:
    t = ChatTemplate(
        [{"name": "tool_use", "template": "TOOLS"}, {"name": "default", "template": "{{ messages[0].content }}!"}],
        {},
    )
    assert t.render([{"role": "user", "content": "x"}]) == "x!"
    assert t.render([{"role": "user", "content": "x"}], tools=[{"type": "function"}]) == "TOOLS"
    with pytest.raises(ValueError, match="default"):
        ChatTemplate([{"name": "other", "template": "x"}]).render([{"role": "user", "content": "x"}])


def test_special_tokens_from_added_token_dicts() -> None:
    cfg = {"bos_token": {"content": "<s>", "lstrip": False, "__type": "AddedToken"}, "eos_token": "</s>", "unk_token": None}
    assert special_tokens_from_config(cfg) == {"bos_token": "<s>", "eos_token": "</s>"}
    t = ChatTemplate.from_tokenizer_config({**cfg, "chat_template": "{{ bos_token }}|{{ eos_token }}|{{ unk_token }}"})
    assert t.render([{"role": "user", "content": "x"}]) == "<s>|</s>|"


def test_tojson_no_html_escaping_no_ascii_escaping() -> None:
    t = ChatTemplate("{{ messages[0] | tojson }}", {})
    assert t.render([{"role": "user", "content": "<é & '日'>"}]) == '{"role": "user", "content": "<é & \'日\'>"}'


def test_trim_and_lstrip_blocks() -> None:
    t = ChatTemplate("{% for m in messages %}\n    {% if true %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}", {})
    assert t.render([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]) == "[a]\n[b]\n"


def test_raise_exception_and_sandbox() -> None:
    t = ChatTemplate("{{ raise_exception('roles must alternate') }}", {})
    with pytest.raises(jinja2.TemplateError, match="roles must alternate"):
        t.render([{"role": "user", "content": "x"}])
    evil = ChatTemplate("{{ messages.__class__.__mro__ }}", {})
    with pytest.raises(jinja2.exceptions.SecurityError):
        evil.render([{"role": "user", "content": "x"}])
    ns = ChatTemplate("{% set ns = namespace(_x=1) %}{{ ns._x }}", {})
    with pytest.raises(jinja2.exceptions.SecurityError):
        ns.render([{"role": "user", "content": "x"}])


def test_none_values_dropped_and_strftime_now() -> None:
    t = ChatTemplate("{{ 'tool_calls' in messages[0] }} {{ strftime_now('%Y') | length }}", {})
    assert t.render([{"role": "assistant", "content": "x", "tool_calls": None}]) == "False 4"
