"""Bundle writer: model source → quantized, sharded, verified bundle folder.

Streaming: params are read, quantized and written one at a time, so peak
memory stays near the largest tensor, not the model. Atomic: everything is
written into a temporary folder beside the target and renamed into place only
when complete; on any failure the temporary folder is removed and an existing
bundle at the target is left untouched. Deterministic: the same input and
options give byte-identical bundles (no timestamps, sorted JSON keys).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..atomic import refuse_to_replace, replace_dir, temp_dir_beside
from ..models.gguf_split import model_stem
from ..build_limits import check_prefill_chunk, check_shard_bytes, resolve_context_window
from ..errors import BuildError
from ..models.config import DecoderConfig
from ..models.registry import architecture, parse_config
from ..models.source import ModelSource
from ..passes.fuse_linears import fuse_linears
from ..passes.lower import DEFAULT_MAX_BINDING_BYTES, lower_bundle
from ..progress import progress_bar
from ..quant import FORMATS, dequantize, quantization_error, quantize
from ..quant.formats import bytes_per_weight
from .manifest import DEFAULT_SHARD_BYTES, FORMAT, FORMAT_VERSION
from .ownership import why_not_a_bundle
from .shards import ShardWriter
from .tokenizer_meta import tokenizer_metadata

DEFAULT_PREFILL_CHUNK = 128


def _weight_format(role: str, scheme: str, embedding_format: str | None) -> str:
    """Which stored format a param gets: norms, biases and tables stay f32."""
    if role == "linear":
        return scheme
    if role == "embedding":
        return embedding_format or scheme
    return "f32"


def _source_blocks(source: ModelSource, members: tuple[str, ...], fmt: str) -> tuple[str, dict[str, np.ndarray]] | None:
    """The members' own quantized blocks stacked by rows, when all are stored losslessly in one format."""
    if not FORMATS[fmt].quantized or not hasattr(source, "stored_parts"):
        return None
    stored = [source.stored_parts(m) for m in members]
    if any(s is None for s in stored) or len({s[0] for s in stored}) != 1:
        return None
    return stored[0][0], {k: np.concatenate([s[1][k] for s in stored]) for k in stored[0][1]}


def _check_weights(source: ModelSource, cfg: DecoderConfig, graph) -> None:
    """Every param the graph reads must exist with the right shape; nothing may be left unused."""
    decoder = architecture(cfg).builder
    expected = decoder.checkpoint_names(cfg, graph)
    present = set(source.tensor_names())
    missing = sorted(set(expected) - present)
    if missing:
        raise BuildError(f"missing tensors: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}", source.path)
    unused = sorted(n for n in present - set(expected) if not decoder.ignorable(cfg, n))
    if unused:
        raise BuildError(
            f"tensors not used by the {cfg.model_type} graph (wrong architecture or config?): "
            f"{', '.join(unused[:5])}{' ...' if len(unused) > 5 else ''}",
            source.path,
        )
    for name, shape in expected.items():
        got = tuple(source.tensor_shape(name))
        if got != tuple(shape):
            raise BuildError(f"tensor {name} has shape {list(got)}, the config implies {list(shape)}", source.where(name))


def _read_param(source: ModelSource, cfg: DecoderConfig, name: str, shape: tuple[int, ...] | None) -> np.ndarray:
    computed = architecture(cfg).builder.computed_params(cfg)
    if name in computed:
        return computed[name]
    arr = source.read(name)
    if not np.all(np.isfinite(arr)):
        raise BuildError(f"tensor {name} contains NaN or Inf", source.where(name))
    return arr if shape is None else arr.reshape(shape)


def _scaled(arr: np.ndarray, factor: float) -> np.ndarray:
    return arr if factor == 1.0 else (arr * np.float32(factor)).astype(np.float32)


def _offset(arr: np.ndarray, shift: float) -> np.ndarray:
    return arr if shift == 0.0 else (arr.astype(np.float32) + np.float32(shift)).astype(np.float32)


BYTES_PER_WEIGHT = {f: bytes_per_weight(f) for f in FORMATS}
QUANT_BLOCK_ELEMENTS = 1 << 21  # rows are quantized in blocks of ~2M values to bound peak memory


def _row_blocks(arr: np.ndarray) -> range:
    return range(0, arr.shape[0], max(1, QUANT_BLOCK_ELEMENTS // max(1, arr.shape[1])))


def _blocked_error(arr: np.ndarray, parts: dict[str, np.ndarray], fmt: str) -> dict[str, float]:
    """quantization_error() of stored parts against `arr`, over blocks of rows (bounded temporaries)."""
    max_abs, sq, wsq = 0.0, 0.0, 0.0
    step = _row_blocks(arr).step
    for r0 in _row_blocks(arr):
        w = arr[r0 : r0 + step]
        e = quantization_error(w, dequantize({k: v[r0 : r0 + step] for k, v in parts.items()}, fmt, w.shape))
        max_abs = max(max_abs, e["max_abs"])
        sq += e["rms"] ** 2 * w.size
        wsq += e["weight_rms"] ** 2 * w.size
    return {"max_abs": max_abs, "rms": float(np.sqrt(sq / arr.size)), "weight_rms": float(np.sqrt(wsq / arr.size))}


def _quantize_blocked(arr: np.ndarray, fmt: str) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """quantize() over blocks of rows: temporaries stay a few MB, not 8x the tensor."""
    if fmt == "f32":  # stored as is: no copy, no error
        wrms = float(np.sqrt(np.mean(arr.astype(np.float64) ** 2)))
        return {"data": np.ascontiguousarray(arr, dtype=np.float32)}, {"max_abs": 0.0, "rms": 0.0, "weight_rms": wrms}
    step = _row_blocks(arr).step
    blocks = [quantize(arr[r0 : r0 + step], fmt) for r0 in _row_blocks(arr)]
    parts = {k: np.concatenate([b[k] for b in blocks], axis=0) for k in blocks[0]}
    return parts, _blocked_error(arr, parts, fmt)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def write_bundle(
    source: ModelSource,
    out: str | Path,
    *,
    quantization: str = "q4",
    embedding_format: str | None = None,
    context_window: int | None = None,
    prefill_chunk: int = DEFAULT_PREFILL_CHUNK,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    model_id: str | None = None,
    keep_source_quantization: bool = True,
    max_binding_bytes: int = DEFAULT_MAX_BINDING_BYTES,
    fuse: bool = True,
    progress: bool = True,
) -> Path:
    """Compile `source` into a bundle folder at `out`; return its path.

    keep_source_quantization: when a quantized scheme is asked for and the source
    holds a tensor in blocks a bundle format represents exactly (GGUF Q4_0, Q4_1,
    Q8_0), keep those blocks instead of quantizing their dequantized values again.
    max_binding_bytes: weights larger than this are bound as several row slices
    (WebGPU's default maxStorageBufferBindingSize is 128 MiB).
    fuse: stack q/k/v and gate/up weights and fuse norms, residual adds and the SiLU
    gate into matmuls (6 dispatches per layer instead of 14)."""
    if quantization not in FORMATS:
        raise BuildError(f"unknown quantization {quantization!r}; choose one of {', '.join(FORMATS)}")
    if embedding_format is not None and embedding_format not in FORMATS:
        raise BuildError(f"unknown embedding format {embedding_format!r}; choose one of {', '.join(FORMATS)}")
    check_shard_bytes(shard_bytes)
    cfg = parse_config(source.config, source.path / "config.json" if source.path.is_dir() else source.path)
    # the ranges and their reasons: build_limits.py (0 is refused there, not taken for "default")
    ctx = resolve_context_window(context_window, cfg)
    prefill_chunk = min(check_prefill_chunk(prefill_chunk), ctx)
    decoder = architecture(cfg).builder  # the graph builder of this model_type (models/registry.py)
    graph_all = decoder.build_graph(cfg, ctx, logits="all", prefill_chunk=prefill_chunk)  # sizes ring caches
    graph_last = decoder.build_graph(cfg, ctx, logits="last", prefill_chunk=prefill_chunk)
    _check_weights(source, cfg, graph_all)  # against checkpoint names, before fusion renames them
    if fuse:
        # worst case per weight: the scheme's, or q8's when a GGUF keeps Q8_0 blocks
        bpw = max(BYTES_PER_WEIGHT[quantization], BYTES_PER_WEIGHT["q8"])
        kinds = getattr(source, "gguf_tensor_type", None) if keep_source_quantization else None
        apart = (lambda ws: len({kinds(w) for w in ws}) > 1) if kinds else None  # kept blocks of two types cannot stack
        graph_all, graph_last = (fuse_linears(g, max_binding_bytes, bpw, apart) for g in (graph_all, graph_last))
    tok_meta = tokenizer_metadata(source, cfg)

    out = Path(out).absolute()
    refuse_to_replace(out, why_not_a_bundle, "webllm-py bundle")  # holding a manifest.json is not enough
    out.parent.mkdir(parents=True, exist_ok=True)
    with staged_folder(out) as tmp:
        shards = ShardWriter(tmp / "params", shard_bytes)
        weights: dict[str, Any] = {}
        params = graph_all.params
        scales = decoder.param_scales(cfg, graph_all)
        offsets = decoder.param_offsets(cfg, graph_all)  # applied after the scale (Gemma's 1 + w norms)
        total = sum(int(np.prod(p.shape)) for p in params.values())
        with progress_bar(total, "quantize", enabled=progress, unit="param") as bar:
            for name, p in params.items():
                members = p.concat or (name,)
                arr = np.concatenate([_offset(_scaled(_read_param(source, cfg, m, None), scales.get(m, 1.0)),
                                              offsets.get(m, 0.0)) for m in members]).reshape(p.shape)
                fmt = _weight_format(p.role, quantization, embedding_format) if arr.ndim == 2 else "f32"
                # a tensor scaled at read time (models/decoder.py param_scales) no longer equals its blocks
                keep = keep_source_quantization and all(scales.get(m, 1.0) == 1.0 and not offsets.get(m)
                                                        for m in members)
                stored = _source_blocks(source, members, fmt) if keep else None
                if stored is not None:  # the source's own blocks, re-laid-out losslessly
                    fmt, parts = stored
                    err = _blocked_error(arr, parts, fmt)
                elif fmt == "f32" and arr.ndim != 2:
                    parts = {"data": np.ascontiguousarray(arr, dtype=np.float32)}
                    err = {"max_abs": 0.0, "rms": 0.0, "weight_rms": float(np.sqrt(np.mean(arr.astype(np.float64) ** 2)))}
                else:
                    try:
                        parts, err = _quantize_blocked(arr, fmt)
                    except ValueError as e:  # a format only kept from a GGUF (q4k, ...) asked of float weights
                        raise BuildError(f"tensor {name}: {e}", source.where(members[0])) from None
                    note = getattr(source, "conversion_note", None) if FORMATS[fmt].quantized else None
                    for line in filter(None, (note(m, fmt, err) for m in members) if note else ()):
                        print(f"note: {line}", file=sys.stderr)  # a GGUF type no format holds, never silently
                refs = {k: shards.add(v) for k, v in parts.items()}
                weights[name] = {"shape": list(p.shape), "format": fmt, "parts": refs, "error": err}
                bar.update(arr.size)
                del arr, parts
        shards.finish()
        for w in weights.values():
            w["parts"] = {k: r.to_json() for k, r in w["parts"].items()}

        lowered = lower_bundle({"logits_all": graph_all, "logits_last": graph_last}, weights, prefill_chunk, ctx,
                               max_binding_bytes=max_binding_bytes, fuse=fuse)
        files, kernels = write_kernels_and_tokenizer(tmp, shards.files, lowered["kernels"], source.tokenizer_json,
                                                     source.tokenizer_config)
        gen = source.generation_config
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": {"id": model_id or model_stem(source.path), "architecture": cfg.model_type, "config": cfg.to_json()},
            "context_window": ctx,
            "prefill_chunk": prefill_chunk,
            "quantization": {
                "scheme": quantization,
                "group_size": 32,
                "embedding": _weight_format("embedding", quantization, embedding_format),
                "lm_head": _weight_format("embedding" if cfg.tie_word_embeddings else "linear", quantization, embedding_format),
            },
            "tokenizer": tok_meta,
            "generation": {
                "temperature": float(gen.get("temperature", 1.0)) if gen.get("do_sample", True) else 0.0,
                "top_p": float(gen.get("top_p", 1.0)),
                "eos_token_ids": tok_meta["eos_token_ids"],
            },
            "graphs": {"logits_all": graph_all.to_json(), "logits_last": graph_last.to_json()},
            "program_sets": lowered["program_sets"],
            **compiled_entries(weights, lowered, kernels, files),
        }
        _write_json(tmp / "manifest.json", manifest)
    return out


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A temp folder beside `out` to write a bundle into: it replaces `out` when the block ends,
    and is removed instead when the block raises (a failed build leaves `out` as it was)."""
    tmp = temp_dir_beside(out)
    try:
        yield tmp
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def compiled_entries(weights: dict[str, Any], lowered: dict[str, Any], kernels: dict[str, Any],
                     files: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest entries both writers fill alike (encoder_writer.py too): weights, the lowered
    buffers / programs / WGSL language features, kernels and files."""
    return {"weights": weights, "buffers": lowered["buffers"], "programs": lowered["programs"],
            "wgsl_language_features": lowered["wgsl_language_features"], "kernels": kernels, "files": files}


def write_kernels_and_tokenizer(tmp: Path, shard_files: list[str], kernels: dict[str, Any], tokenizer_json: str,
                                tokenizer_config: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Write the kernels and the tokenizer files into `tmp` (the shards are there already): the
    manifest's `files` (shards, kernels, tokenizer; each path, size, sha256) and `kernels`.
    Shared by both bundle writers (encoder_writer.py)."""
    kernel_files = _write_kernels(tmp, kernels)
    (tmp / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
    _write_json(tmp / "tokenizer_config.json", tokenizer_config)
    files = []
    for rel in sorted(shard_files) + sorted(set(kernel_files.values())) + ["tokenizer.json", "tokenizer_config.json"]:
        f = tmp / rel
        files.append({"path": rel, "size": f.stat().st_size, "sha256": _sha256(f)})
    return files, kernel_entries(kernels, kernel_files)


def kernel_entries(kernels: dict[str, Any], kernel_files: dict[str, str]) -> dict[str, Any]:
    """The manifest's `kernels` section: per kernel, its file, bindings, workgroup size and key."""
    return {name: {"file": kernel_files[name], "bindings": [list(b) for b in k.bindings],
                   "workgroup_size": list(k.workgroup_size), "key": k.key.to_json()}
            for name, k in sorted(kernels.items())}


def _write_kernels(tmp: Path, kernels: dict[str, Any]) -> dict[str, str]:
    """Write each distinct WGSL text once, named by its content hash; kernel name -> file."""
    (tmp / "kernels").mkdir()
    files = {}
    for name, k in kernels.items():
        rel = f"kernels/{hashlib.sha256(k.wgsl.encode()).hexdigest()[:16]}.wgsl"
        if not (tmp / rel).exists():
            (tmp / rel).write_text(k.wgsl, encoding="utf-8")
        files[name] = rel
    return files
