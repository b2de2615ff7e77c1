"""The ranges of the build options, one rule each, shared by `webllm_py.build()` and the CLI.

context window (KV cache rows):
  - at least 1; None means min(max_position_embeddings, 2048), cut to the
    sliding window when the model has one;
  - at most the model's max_position_embeddings: RoPE positions beyond those the
    model was made for give garbage, and a window nothing can fill only costs memory;
  - at most the sliding window when the model has one, unless its architecture's
    attention implements the window (registry `sliding_window_kernels`: Gemma); beyond
    it the model attends differently;
  - one layer's K (or V) cache, context_window x num_key_value_heads x head_dim x
    4 bytes (f32, the widest cache dtype), at most 2 GiB: the runtimes bind each
    layer's cache whole, and 2 GiB is the largest storage binding
    (maxStorageBufferBindingSize) desktop adapters commonly grant.
prefill chunk: at least 1 (cut to the context window by the writer).
shard size: PART_ALIGN (256 bytes, one aligned part slot) .. 512 MiB (browsers
  fetch and hash a shard as one ArrayBuffer).
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

from .bundle.manifest import PART_ALIGN
from .errors import BuildError
from .models.config import DecoderConfig
from .models.registry import architecture

DEFAULT_CONTEXT_WINDOW = 2048
MAX_KV_CACHE_BYTES = 2 << 30
KV_BYTES_PER_VALUE = 4
MIN_SHARD_BYTES = PART_ALIGN
MAX_SHARD_BYTES = 512 << 20


def _int(name: str, v: Any, lo: int, hi: int | None = None) -> int:
    if not isinstance(v, Integral) or isinstance(v, bool) or v < lo or (hi is not None and v > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise BuildError(f"{name} must be an integer {rng}, got {v!r}")
    return int(v)


def kv_cache_bytes(cfg: DecoderConfig, context_window: int) -> int:
    """Bytes of one layer's K (or V) cache buffer at the widest cache dtype."""
    return context_window * cfg.num_key_value_heads * cfg.head_dim * KV_BYTES_PER_VALUE


def resolve_context_window(requested: int | None, cfg: DecoderConfig) -> int:
    """The bundle's context window: `requested` checked against the model, or the default."""
    windowed = architecture(cfg).sliding_window_kernels  # the kernels mask the window: no cap needed
    if requested is None:
        ctx = min(cfg.max_position_embeddings, DEFAULT_CONTEXT_WINDOW)
        if cfg.sliding_window and not windowed:
            ctx = min(ctx, cfg.sliding_window)
    else:
        ctx = _int("context_window", requested, 1)
        if ctx > cfg.max_position_embeddings:
            raise BuildError(f"context_window {ctx} is larger than the model's max_position_embeddings "
                             f"{cfg.max_position_embeddings} (positions the model is not made for)")
        if cfg.sliding_window and not windowed and ctx > cfg.sliding_window:
            raise BuildError(f"context_window {ctx} is larger than the model's sliding_window {cfg.sliding_window} "
                             "(sliding-window attention is not implemented)")
    kv = kv_cache_bytes(cfg, ctx)
    if kv > MAX_KV_CACHE_BYTES:
        most = MAX_KV_CACHE_BYTES // kv_cache_bytes(cfg, 1)
        raise BuildError(f"context_window {ctx}: one layer's KV cache would take {kv / 2**30:.1f} GiB, more than "
                         f"the {MAX_KV_CACHE_BYTES >> 30} GiB a GPU binding holds; at most {most} fits this model")
    return ctx


def check_prefill_chunk(n: Any) -> int:
    return _int("prefill_chunk", n, 1)


def check_shard_bytes(n: Any) -> int:
    return _int("shard_bytes", n, MIN_SHARD_BYTES, MAX_SHARD_BYTES)
