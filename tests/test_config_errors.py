"""Bad model files at intake: config.json fields, the JSON files around it, GGUF metadata, bundle tokenizers.

Each bad input must give one BuildError/BundleError line that names the file and
the field, through `webllm-py build` (exit code 1, one stderr line, no traceback,
nothing written), plus a bounded property test: any JSON value in any config field
either parses or is refused naming that field -- never another exception.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli_errors import assert_one_line, run

from webllm_py.errors import BuildError, BundleError
from webllm_py.models.registry import parse_config

DROP = object()  # a mutation value that removes the field


def _copy(src: Path, tmp_path: Path) -> Path:
    model = tmp_path / "m"
    shutil.copytree(src, model)
    return model


def _set(cfg: dict, key: str, value: Any) -> dict:
    """cfg with `key` (dotted for nested objects) set to value, or removed for DROP."""
    cfg = json.loads(json.dumps(cfg))
    *outer, last = key.split(".")
    d = cfg
    for k in outer:
        d = d[k]
    if value is DROP:
        d.pop(last, None)
    else:
        d[last] = value
    return cfg


def _v4(cfg: dict) -> dict:
    """The transformers-4 layout of the tiny config: top-level rope_theta / rope_scaling, no rope_parameters."""
    cfg = dict(cfg)
    params = cfg.pop("rope_parameters")
    cfg["rope_theta"] = params.pop("rope_theta")
    cfg["rope_scaling"] = params
    return cfg


# (field, value, layout) -> the build names config.json and the field. layout v4 moves rope
# settings to the top level first (the tiny models are saved by transformers 5).
FIELD_CASES: list[tuple[str, Any, str]] = [
    ("num_attention_heads", 0, "v5"), ("num_attention_heads", -4, "v5"), ("num_attention_heads", "4", "v5"),
    ("num_attention_heads", 4.0, "v5"), ("num_attention_heads", True, "v5"),
    ("num_key_value_heads", 0, "v5"), ("num_key_value_heads", 3, "v5"), ("num_key_value_heads", -2, "v5"),
    ("hidden_size", 0, "v5"), ("hidden_size", -64, "v5"), ("intermediate_size", 0, "v5"),
    ("num_hidden_layers", 0, "v5"), ("vocab_size", -1, "v5"), ("max_position_embeddings", 0, "v5"),
    ("max_position_embeddings", "2048", "v5"), ("head_dim", 0, "v5"), ("head_dim", 7, "v5"),
    ("rope_theta", "10000", "v4"), ("rope_theta", -1.0, "v4"), ("rope_theta", 0, "v4"), ("rope_theta", True, "v4"),
    ("rope_theta", [10000], "v4"), ("rope_theta", float("nan"), "v4"), ("rope_theta", float("inf"), "v4"),
    ("rope_parameters.rope_theta", "10000", "v5"), ("rope_parameters", "llama3", "v5"),
    ("rope_scaling", "linear", "v4"), ("rope_scaling.factor", "8", "v4"), ("rope_scaling.factor", 0, "v4"),
    ("rope_scaling.high_freq_factor", 1.0, "v4"), ("rope_scaling.original_max_position_embeddings", 0, "v4"),
    ("rope_scaling.rope_type", ["llama3"], "v4"), ("rope_scaling.rope_type", "longrope", "v4"),
    ("rms_norm_eps", "1e-5", "v5"), ("rms_norm_eps", 0, "v5"), ("rms_norm_eps", -1e-5, "v5"),
    ("tie_word_embeddings", "false", "v5"), ("attention_bias", 1, "v5"), ("mlp_bias", "no", "v5"),
    ("hidden_act", "gelu", "v5"), ("hidden_act", 5, "v5"),
    ("sliding_window", -1, "v5"), ("sliding_window", "4k", "v5"), ("use_sliding_window", "yes", "v5"),
    ("eos_token_id", "</s>", "v5"), ("eos_token_id", [-1], "v5"), ("bos_token_id", 0.5, "v5"),
    ("model_type", ["llama"], "v5"), ("model_type", DROP, "v5"), ("hidden_size", DROP, "v5"),
]


@pytest.mark.parametrize("field,value,layout", FIELD_CASES, ids=[f"{f}={'<absent>' if v is DROP else repr(v)}" for f, v, _ in FIELD_CASES])
def test_bad_config_field_is_one_line_naming_it(field, value, layout, tiny_models, tmp_path, capsys):
    model = _copy(tiny_models["llama"], tmp_path)
    cfg = json.loads((model / "config.json").read_text())
    if layout == "v4":
        cfg = _v4(cfg)
    # allow_nan: Python's json writes NaN / Infinity, which json.loads reads back (a hostile file may hold them)
    (model / "config.json").write_text(json.dumps(_set(cfg, field, value), allow_nan=True))
    code, err = run(["build", model, "-o", tmp_path / "b"], capsys)
    assert_one_line(code, err, 1, str(model / "config.json"), field.split(".")[-1])
    assert not (tmp_path / "b").exists()


def test_the_v4_layout_itself_builds(tiny_models, tmp_path, capsys):
    # The v4 rewrite used above is a valid config: the refusals come from the mutated field alone.
    model = _copy(tiny_models["llama"], tmp_path)
    (model / "config.json").write_text(json.dumps(_v4(json.loads((model / "config.json").read_text()))))
    code, err = run(["build", model, "-o", tmp_path / "b", "-q", "f32"], capsys)
    assert code == 0, err


# -- the files around config.json: (file, bytes written, words the line must hold) ----------------

FILE_CASES: list[tuple[str, bytes, tuple[str, ...]]] = [
    ("config.json", b"[1, 2, 3]", ("JSON object", "list")),
    ("config.json", b"null", ("JSON object",)),
    ("config.json", b'"llama"', ("JSON object", "str")),
    ("config.json", b'{"model_type": "llama", "hidden_size": 6\xff4}', ("UTF-8",)),
    ("config.json", b"{not json", ("not valid JSON",)),
    ("generation_config.json", b"[1]", ("JSON object",)),
    ("generation_config.json", b'{"temperature": "hot"}', ("temperature",)),
    ("generation_config.json", b'{"top_p": 2}', ("top_p",)),
    ("generation_config.json", b'{"eos_token_id": "x"}', ("eos_token_id",)),
    ("generation_config.json", b'{"do_sample": "true"}', ("do_sample",)),
    ("tokenizer.json", b'{"version": "1.0", "model": "\xc3\x28"}', ("UTF-8",)),
    ("tokenizer.json", b'{"not": "a tokenizer"}', ("tokenizer",)),
    ("tokenizer_config.json", b'["chat_template"]', ("JSON object",)),
    ("model.safetensors.index.json", b"[]", ("JSON object",)),
]


@pytest.mark.parametrize("name,data,words", FILE_CASES, ids=[f"{n}:{d[:16]!r}" for n, d, _ in FILE_CASES])
def test_bad_model_file_is_one_line_naming_it(name, data, words, tiny_models, tmp_path, capsys):
    model = _copy(tiny_models["llama"], tmp_path)
    (model / name).write_bytes(data)
    code, err = run(["build", model, "-o", tmp_path / "b"], capsys)
    assert_one_line(code, err, 1, str(model / name), *words)
    assert not (tmp_path / "b").exists()


# -- property: any JSON value in any field parses or is refused naming the field ------------------

FIELDS = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
          "head_dim", "vocab_size", "rms_norm_eps", "rope_theta", "rope_scaling", "max_position_embeddings",
          "tie_word_embeddings", "attention_bias", "mlp_bias", "hidden_act", "sliding_window", "eos_token_id",
          "bos_token_id", "model_type", "rope_parameters"]
BASE = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 100, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 320, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "max_position_embeddings": 256}
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8) | st.sampled_from(["linear", "llama3", "default", "silu", "4"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["rope_type", "factor", "rope_theta", "low_freq_factor", "high_freq_factor",
                         "original_max_position_embeddings", "type"]), inner, max_size=5),
    max_leaves=8)


@settings(max_examples=300, deadline=None)  # pure Python parsing: ~1 s for all examples
@given(field=st.sampled_from(FIELDS), value=JSON_VALUES)
def test_any_value_in_any_field_parses_or_names_the_field(field, value):
    path = Path("/m/config.json")
    try:
        cfg = parse_config({**BASE, field: value}, path)
    except BuildError as e:
        msg = str(e)
        assert msg.startswith(f"{path}: ") and "\n" not in msg
        # a cross-field check names both fields; the nested rope fields name their parent
        assert field in msg or (field == "hidden_size" and "head_dim" in msg), msg
        return
    if field in BASE and isinstance(value, int) and not isinstance(value, bool) and field != "rope_theta":
        assert getattr(cfg, field) == value  # an accepted value is used as given, never coerced


# -- GGUF metadata -----------------------------------------------------------------------------------

GGUF_VALID = {"embedding_length": ("add_uint32", 64), "block_count": ("add_uint32", 2),
              "feed_forward_length": ("add_uint32", 100), "attention.head_count": ("add_uint32", 4),
              "context_length": ("add_uint32", 256), "vocab_size": ("add_uint32", 320)}
GGUF_CASES = [("attention.head_count", "add_uint32", 0), ("attention.head_count", "add_string", "four"),
              ("attention.head_count", "add_array", [4, 4]),  # per-layer head counts
              ("attention.head_count_kv", "add_uint32", 0), ("embedding_length", "add_uint32", 0),
              ("context_length", "add_uint32", 0), ("rope.freq_base", "add_string", "x"),
              ("rope.freq_base", "add_float32", float("nan")), ("attention.layer_norm_rms_epsilon", "add_float32", -1.0)]


@pytest.mark.parametrize("suffix,method,value", GGUF_CASES, ids=[f"{k}={v!r}" for k, _, v in GGUF_CASES])
def test_bad_gguf_metadata_is_one_line_naming_the_key(suffix, method, value, tmp_path, capsys):
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(str(path), "llama")  # metadata only: the config is read before any tensor
    for key, (add, v) in {**GGUF_VALID, suffix: (method, value)}.items():
        getattr(w, add)(f"llama.{key}", v)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    code, err = run(["build", path, "-o", tmp_path / "b"], capsys)
    assert_one_line(code, err, 1, str(path), f"llama.{suffix}")
    assert not (tmp_path / "b").exists()


# -- a bundle's tokenizer files (runtime/tokenizer.py) ----------------------------------------------

# case -> (files written into the bundle, manifest change, what the error names)
TOKENIZER_CASES: dict[str, tuple[dict[str, bytes], Callable[[dict], dict], str]] = {
    "tokenizer.json not UTF-8": ({"tokenizer.json": b'{"a": "\xff"}'}, dict, "tokenizer.json"),
    "tokenizer_config a list": ({"tokenizer_config.json": b"[]"}, dict, "tokenizer_config.json"),
    "tokenizer_config not UTF-8": ({"tokenizer_config.json": b'{"x": "\xff"}'}, dict, "tokenizer_config.json"),
    "chat_template.jinja not UTF-8": ({"tokenizer_config.json": b"{}", "chat_template.jinja": b"\xff{{ x }}"}, dict,
                                      "chat_template.jinja"),
    "manifest tokenizer a string": ({}, lambda m: {**m, "tokenizer": "tokenizer.json"}, "tokenizer must be an object"),
    "eos_token_ids strings": ({}, lambda m: {**m, "tokenizer": {**m["tokenizer"], "eos_token_ids": ["</s>"]}},
                              "eos_token_ids"),
    "generation a list": ({}, lambda m: {**m, "generation": []}, "generation must be an object"),
}


@pytest.mark.parametrize("case", list(TOKENIZER_CASES))
def test_bad_bundle_tokenizer_is_a_bundle_error_naming_the_file(case, tiny_bundles, tmp_path):
    from webllm_py.runtime.tokenizer import Tokenizer

    files, edit, name = TOKENIZER_CASES[case]
    b = tmp_path / "b"
    shutil.copytree(tiny_bundles("llama", "q4"), b)
    for rel, data in files.items():
        (b / rel).write_bytes(data)
    with pytest.raises(BundleError) as e:
        Tokenizer.from_bundle(b, edit(json.loads((b / "manifest.json").read_text())))
    assert name in str(e.value) and str(b) in str(e.value) and "\n" not in str(e.value)
