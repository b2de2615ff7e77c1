"""Bundle writer for embedding models (BERT, XLM-RoBERTa, Qwen3-Embedding): source -> embedding bundle.

Same guarantees as writer.py (streaming quantization, atomic folder, deterministic
bytes) and the same weight formats; what differs is the graph (models/encoder.py,
models/decoder_embedding.py; models/embedding_models.py says which a folder gets),
the programs (passes/lower_encoder.py: one `encode` program per set) and the
manifest's `embedding` section: pooling, normalize, max_seq_length and the batch
limits the buffers are planned for, from the folder's sentence-transformers files
(models/sentence_transformers.py). The shipped tokenizer.json truncates at
max_seq_length and does not pad, so a tokenizer built from it gives exactly the
ids a row needs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import refuse_to_replace
from ..build_limits import check_shard_bytes
from ..errors import BuildError
from ..models.embedding_models import EmbeddingModel, embedding_model
from ..models.source import ModelSource
from ..passes.fuse_linears import fuse_linears
from ..passes.lower import DEFAULT_MAX_BINDING_BYTES
from ..progress import progress_bar
from ..quant import FORMATS
from .manifest import DEFAULT_SHARD_BYTES, FORMAT, FORMAT_VERSION
from .ownership import why_not_a_bundle
from .shards import ShardWriter
from .writer import (BYTES_PER_WEIGHT, _quantize_blocked, _weight_format, _write_json, compiled_entries, staged_folder,
                     write_kernels_and_tokenizer)

# q8 by default: with q4 linears all-MiniLM-L6-v2's embeddings keep only cosine 0.90-0.96 with
# sentence-transformers' (q8: >= 0.9996, f32: 1.0; five texts, short to 256 tokens)
DEFAULT_QUANTIZATION = "q8"
DEFAULT_BATCH_TOKENS = 2048  # tokens of one step (all rows): 8 texts of 256 tokens, or 64 short ones
DEFAULT_BATCH_ROWS = 64


def _check_weights(source: ModelSource, spec: EmbeddingModel) -> None:
    expected = {spec.names[n]: p.shape for n, p in spec.graph.params.items() if n in spec.names}
    present = set(source.tensor_names())
    missing = sorted(set(expected) - present)
    if missing:
        raise BuildError(f"missing tensors: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}", source.path)
    unused = sorted(n for n in present - set(expected) if not spec.ignorable(n))
    if unused:
        raise BuildError(f"tensors not used by the {spec.model_type} embedding graph (wrong architecture or config?): "
                         f"{', '.join(unused[:5])}{' ...' if len(unused) > 5 else ''}", source.path)
    for name, shape in expected.items():
        got = tuple(source.tensor_shape(name))
        if got != tuple(shape):
            raise BuildError(f"tensor {name} has shape {list(got)}, the config implies {list(shape)}", source.where(name))


def _tokenizer(source: ModelSource, vocab_size: int, max_seq_length: int) -> tuple[str, dict[str, Any]]:
    """(tokenizer.json text truncating at max_seq_length without padding, manifest tokenizer section)."""
    from tokenizers import Tokenizer

    path = source.path / "tokenizer.json"
    try:
        d = json.loads(source.tokenizer_json)
        d["truncation"] = {"direction": "Right", "max_length": max_seq_length, "strategy": "LongestFirst", "stride": 0}
        d["padding"] = None  # rows are packed, never padded
        text = json.dumps(d, ensure_ascii=False)
        tok = Tokenizer.from_str(text)
    except Exception as e:  # the Rust error type is not exported; any failure means unreadable
        raise BuildError(f"unreadable tokenizer ({str(e).splitlines()[0][:200]})", path) from None
    size = tok.get_vocab_size(with_added_tokens=True)
    if size > vocab_size:
        raise BuildError(f"tokenizer has {size} tokens but the model's vocab_size is {vocab_size}", path)
    if not tok.encode("a").ids:
        raise BuildError("the tokenizer gives no tokens for the text 'a'", path)
    return text, {"file": "tokenizer.json", "config_file": "tokenizer_config.json"}


def write_encoder_bundle(
    source: ModelSource,
    out: str | Path,
    *,
    quantization: str = DEFAULT_QUANTIZATION,
    embedding_format: str | None = None,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    model_id: str | None = None,
    max_binding_bytes: int = DEFAULT_MAX_BINDING_BYTES,
    fuse: bool = True,
    progress: bool = True,
    max_batch_tokens: int = DEFAULT_BATCH_TOKENS,
    max_batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Path:
    """Compile an encoder `source` into an embedding bundle at `out`; return its path.

    max_batch_tokens / max_batch_rows: the largest step (tokens of all rows, rows); buffers are
    planned for it and the runtimes split larger inputs into several steps."""
    if quantization not in FORMATS:
        raise BuildError(f"unknown quantization {quantization!r}; choose one of {', '.join(FORMATS)}")
    if embedding_format is not None and embedding_format not in FORMATS:
        raise BuildError(f"unknown embedding format {embedding_format!r}; choose one of {', '.join(FORMATS)}")
    check_shard_bytes(shard_bytes)  # the range and its reason: build_limits.py
    spec = embedding_model(source)
    recipe = spec.recipe
    for name, v, lo in (("max_batch_tokens", max_batch_tokens, recipe.max_seq_length), ("max_batch_rows", max_batch_rows, 1)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise BuildError(f"{name} must be an integer >= {lo} (max_seq_length {recipe.max_seq_length}: one whole "
                             f"row fits a step), got {v!r}")
    graph = spec.graph
    _check_weights(source, spec)
    if fuse:  # q/k/v (and gate/up) as one matmul over stacked rows (fused params name their checkpoint members)
        graph = fuse_linears(graph, max_binding_bytes, max(BYTES_PER_WEIGHT[quantization], BYTES_PER_WEIGHT["q8"]))
    tok_text, tok_meta = _tokenizer(source, spec.vocab_size, recipe.max_seq_length)

    out = Path(out).absolute()
    refuse_to_replace(out, why_not_a_bundle, "webllm-py bundle")  # holding a manifest.json is not enough
    with staged_folder(out) as tmp:
        shards = ShardWriter(tmp / "params", shard_bytes)
        weights: dict[str, Any] = {}
        total = sum(int(np.prod(p.shape)) for p in graph.params.values())
        with progress_bar(total, "quantize", enabled=progress, unit="param") as bar:
            for name, p in graph.params.items():
                members = p.concat or (name,)
                arrs = [spec.computed[m] if m in spec.computed else source.read(spec.names[m]) for m in members]
                for m, a in zip(members, arrs):
                    if not np.all(np.isfinite(a)):
                        raise BuildError(f"tensor {spec.names[m]} contains NaN or Inf", source.where(spec.names[m]))
                arr = np.concatenate(arrs).reshape(p.shape)
                fmt = _weight_format(p.role, quantization, embedding_format) if arr.ndim == 2 else "f32"
                parts, err = _quantize_blocked(arr, fmt) if arr.ndim == 2 else (
                    {"data": np.ascontiguousarray(arr, dtype=np.float32)},
                    {"max_abs": 0.0, "rms": 0.0, "weight_rms": float(np.sqrt(np.mean(arr.astype(np.float64) ** 2)))})
                refs = {k: shards.add(v) for k, v in parts.items()}
                weights[name] = {"shape": list(p.shape), "format": fmt, "parts": refs, "error": err}
                bar.update(arr.size)
        shards.finish()
        for w in weights.values():
            w["parts"] = {k: r.to_json() for k, r in w["parts"].items()}
        from ..passes.lower_encoder import lower_encoder

        lowered = lower_encoder(graph, weights, max_batch_tokens, max_batch_rows, max_binding_bytes=max_binding_bytes)
        files, kernels = write_kernels_and_tokenizer(tmp, shards.files, lowered["kernels"], tok_text, source.tokenizer_config)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": {"id": model_id or source.path.stem, "architecture": spec.model_type,
                      "config": spec.config.to_json()},
            "embedding": {**recipe.to_json(), "dimensions": spec.hidden_size,
                          "max_batch_tokens": max_batch_tokens, "max_batch_rows": max_batch_rows},
            "quantization": {"scheme": quantization, "group_size": 32,
                             "embedding": _weight_format("embedding", quantization, embedding_format)},
            "tokenizer": tok_meta,
            "graphs": {"embed": graph.to_json()},
            **compiled_entries(weights, lowered, kernels, files),
        }
        _write_json(tmp / "manifest.json", manifest)
    return out


# build options of language models (writer.py) and the values that mean "not asked for"
DECODER_ONLY_OPTIONS = {"context_window": None, "prefill_chunk": 128, "keep_source_quantization": True}


def encoder_options(model_type: str, options: dict[str, Any]) -> dict[str, Any]:
    """`options` without the language-model-only ones left at their defaults; one set otherwise is an error."""
    out = dict(options)
    for name, default in DECODER_ONLY_OPTIONS.items():
        if name in out and out.pop(name) != default:
            raise BuildError(f"option {name} applies to language models; a {model_type} embedding model has no "
                             "KV cache (its step limits are max_batch_tokens and max_batch_rows)")
    return out
