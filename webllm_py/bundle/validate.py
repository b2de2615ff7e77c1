"""The manifest checked against itself, in one place, before any runtime reads it.

`validate_manifest` is called by the reader (`Bundle`), so the reference and native
runtimes (and publish, inspect, serve) all see the same checks: required keys with their
types, every path relative and inside the bundle, every referenced file listed (hashed),
weight parts that match their format and neither overlap nor leave their file, buffers
and graph state large enough for the context window, generation defaults in range,
programs that only name kernels and buffers that exist. The first violation is one
BundleError: `<bundle>/manifest.json: <field path>: <problem>`.

The browser runtime mirrors this in web/src (parseManifest); the field paths are the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import BundleError
from .fields import Invalid, field, show, sub, token_ids, want
from .paths import check_path, listed
from .validate_graph import check_graphs
from .validate_programs import StepBuffers, check_programs
from .validate_weights import check_weights

_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
def _check_files(m: dict) -> dict[str, int]:
    """files: [{path, size, sha256}], unique paths; returns path -> size."""
    out: dict[str, int] = {}
    for i, f in enumerate(field(m, "files", "", "list")):
        where = sub("files", i)
        want(f, "dict", where)
        path = check_path(field(f, "path", where, "str"), sub(where, "path"))
        size = field(f, "size", where, "int", lo=0)
        sha = field(f, "sha256", where, "str")
        if not _SHA256.match(sha):
            raise Invalid(sub(where, "sha256"), f"{show(sha)} is not 64 lowercase hex digits")
        if path == "manifest.json":
            raise Invalid(sub(where, "path"), "manifest.json cannot list itself")
        if path in out:
            raise Invalid(sub(where, "path"), f"{show(path)} is listed twice")
        out[path] = size
    return out


def _check_tokenizer(m: dict, files: dict[str, int], vocab: int, language_model: bool) -> None:
    t = field(m, "tokenizer", "", "dict")
    listed(files, field(t, "file", "tokenizer", "str"), "tokenizer.file")
    if field(t, "config_file", "tokenizer", "str", optional=True) is not None:
        listed(files, t["config_file"], "tokenizer.config_file")
    field(t, "bos_token_id", "tokenizer", "int", optional=True, lo=0, hi=vocab - 1)
    for key in ("add_bos_token", "has_chat_template"):
        field(t, key, "tokenizer", "bool", optional=True)
    if language_model or "eos_token_ids" in t:  # the runtimes stop on these
        token_ids(field(t, "eos_token_ids", "tokenizer", "list"), "tokenizer.eos_token_ids", vocab)


# generation defaults (HF generation_config names) the engines read: key -> check(value, where, vocab)
GENERATION_FIELDS: dict[str, Callable[[Any, str, int], Any]] = {
    "temperature": lambda v, w, _: want(v, "number", w, lo=0),
    "top_p": lambda v, w, _: want(v, "number", w, lo=0, hi=1, lo_open=True),
    "top_k": lambda v, w, _: want(v, "int", w, lo=0),
    "repetition_penalty": lambda v, w, _: want(v, "number", w, lo=0, lo_open=True),
    "frequency_penalty": lambda v, w, _: want(v, "number", w, lo=-2, hi=2),
    "presence_penalty": lambda v, w, _: want(v, "number", w, lo=-2, hi=2),
    "do_sample": lambda v, w, _: want(v, "bool", w),
    "eos_token_ids": token_ids,
}


def _check_generation(m: dict, vocab: int) -> None:
    gen = field(m, "generation", "", "dict", optional=True)
    for key, check in GENERATION_FIELDS.items():
        if gen is not None and gen.get(key) is not None:  # absent or null: the engines' default
            check(gen[key], sub("generation", key), vocab)


def _check_model(m: dict) -> int:
    """model: {id, architecture, config: {vocab_size, ...}}; returns vocab_size."""
    model = field(m, "model", "", "dict")
    field(model, "id", "model", "str")
    field(model, "architecture", "model", "str")
    cfg = field(model, "config", "model", "dict")
    for key in ("hidden_size", "num_hidden_layers"):
        field(cfg, key, "model.config", "int", optional=True, lo=1)
    return field(cfg, "vocab_size", "model.config", "int", lo=1)


def _check_quantization(m: dict) -> None:
    q = field(m, "quantization", "", "dict", optional=True)
    for key in ("scheme", "embedding", "lm_head"):
        if q is not None:
            field(q, key, "quantization", "str", optional=True)


@dataclass(frozen=True)
class BundleKind:
    """What a kind of bundle must hold beyond the common part (files, weights, tokenizer)."""

    graphs: tuple[str, ...]  # graphs the reference interprets
    programs: tuple[str, ...]  # programs of every set the native/browser runtimes run
    step_limits: Callable[[dict], dict[str, int]]  # the step sizes buffers are planned for
    step_buffers: StepBuffers  # (buffer, limit, elements it needs) the runtimes write each step


def _lm_limits(m: dict) -> dict[str, int]:
    ctx = field(m, "context_window", "", "int", lo=1)
    return {"context_window": ctx, "prefill_chunk": field(m, "prefill_chunk", "", "int", lo=1, hi=ctx)}


def _embedding_limits(m: dict) -> dict[str, int]:
    e = field(m, "embedding", "", "dict")
    out = {k: field(e, k, "embedding", "int", lo=1) for k in ("dimensions", "max_seq_length", "max_batch_rows")}
    out["max_batch_tokens"] = field(e, "max_batch_tokens", "embedding", "int", lo=out["max_seq_length"])
    return out


BUNDLE_KINDS: dict[str, BundleKind] = {
    "language_model": BundleKind(
        ("logits_all", "logits_last"), ("decode", "prefill", "score"), _lm_limits,
        (("ids", "prefill_chunk", lambda lim, v: lim["prefill_chunk"]),
         ("logits", "prefill_chunk", lambda lim, v: lim["prefill_chunk"] * v))),  # score: a row per id
    "embedding": BundleKind(
        ("embed",), ("encode",), _embedding_limits,
        (("ids", "max_batch_tokens", lambda lim, v: lim["max_batch_tokens"]),
         ("rows", "max_batch_tokens", lambda lim, v: lim["max_batch_tokens"]),
         ("offsets", "max_batch_rows", lambda lim, v: lim["max_batch_rows"] + 1))),
}


def bundle_kind(m: dict) -> str:
    """"embedding" for an encoder bundle (it has an `embedding` section), else "language_model"."""
    return "embedding" if "embedding" in m else "language_model"


def _check(m: Any) -> None:
    if not isinstance(m, dict):
        raise Invalid("(top level)", f"must be a JSON object, not {type(m).__name__}")
    kind_name = bundle_kind(m)
    kind = BUNDLE_KINDS[kind_name]
    files = _check_files(m)
    vocab = _check_model(m)
    limits = kind.step_limits(m)
    _check_tokenizer(m, files, vocab, kind_name == "language_model")
    _check_generation(m, vocab)
    _check_quantization(m)
    weights = check_weights(m, files)
    state = check_graphs(m, kind.graphs, weights, limits, vocab)
    check_programs(m, kind.programs, kind.step_buffers, files, weights, state, limits, vocab)


def validate_manifest(manifest: Any, path: str | Path) -> None:
    """Raise BundleError (naming `path`, the manifest.json, and the field) unless the manifest is
    consistent with itself. The format/version check (`check_version`) comes first, separately."""
    try:
        _check(manifest)
    except Invalid as e:
        raise BundleError(f"{e.where}: {e.problem}", path) from None
