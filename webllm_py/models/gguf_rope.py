"""Rope scaling of a GGUF, back to HF's rope_scaling (GGUFSource's config).

- llama3 (Llama 3.x): convert_hf_to_gguf.py keeps only the per-frequency factors, as the
  rope_freqs tensor; the parameters are recovered by matching the known Llama 3.x settings.
- linear and yarn: {arch}.rope.scaling.type / .factor / .original_context_length (yarn: Qwen2 /
  Qwen3's converter writes these three; yarn_beta_fast / yarn_beta_slow are read too). llama.cpp's
  other yarn keys change its attention factor (attn_factor, yarn_log_multiplier, ...): refused by
  name rather than dropped. The attention factor is then transformers' default for the factor.
- phi3's longrope is its own (gguf_source._phi3_config: the factor tensors).
Types the config parser does not know are refused there, naming rope_type.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BuildError

if TYPE_CHECKING:
    from .gguf_source import GGUFSource

# yarn's optional keys -> transformers' fields, and the llama.cpp-only ones refused
_YARN_BETAS = {"yarn_beta_fast": "beta_fast", "yarn_beta_slow": "beta_slow"}
_YARN_UNSUPPORTED = ("attn_factor", "yarn_attn_factor", "yarn_log_multiplier", "yarn_ext_factor")


def rope_scaling(src: "GGUFSource", theta: float, head_dim: int) -> dict[str, Any] | None:
    """The HF rope_scaling of a GGUF (None: plain RoPE)."""
    if "rope_freqs.weight" in src._by_gguf:
        factors = src._dequantize("rope_freqs.weight").astype(np.float64).ravel()
        return _llama3_scaling(factors, theta, head_dim, src.path)
    kind = src._key("rope.scaling.type", "none")
    if kind in ("none", None):
        return None
    scaling: dict[str, Any] = {"rope_type": kind, "factor": src._num("rope.scaling.factor", 1.0)}
    if src._key("rope.scaling.original_context_length", None) is not None:
        scaling["original_max_position_embeddings"] = src._int("rope.scaling.original_context_length")
    if kind == "yarn":
        scaling.update(_yarn_betas(src))
    return scaling  # types the config parser does not know are refused there, naming rope_type


def _yarn_betas(src: "GGUFSource") -> dict[str, float]:
    """yarn's optional beta_fast / beta_slow keys; a yarn key that changes its attention factor
    (llama.cpp's own mscale variants) is refused rather than silently dropped."""
    for key in _YARN_UNSUPPORTED:
        if f"{src.arch}.rope.scaling.{key}" in src._meta:
            raise BuildError(f"metadata key '{src.arch}.rope.scaling.{key}' (a llama.cpp yarn variant) is not "
                             "supported; only factor, original_context_length, yarn_beta_fast and yarn_beta_slow",
                             src.path)
    return {hf: src._num(f"rope.scaling.{key}", 0.0) for key, hf in _YARN_BETAS.items()
            if f"{src.arch}.rope.scaling.{key}" in src._meta}


def _llama3_scaling(factors: np.ndarray, theta: float, head_dim: int, path: Path) -> dict[str, Any]:
    """Recover HF's llama3 rope_scaling from the rope_freqs tensor convert_hf_to_gguf.py writes.

    The GGUF keeps only the per-frequency factors; the parameters are found by
    recomputing the factors for the known Llama 3.x settings and matching.
    """
    freqs = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    factor = float(np.round(factors.max(), 4))
    for old_ctx in (8192, 4096, 16384, 32768, 2048):
        for low, high in ((1.0, 4.0), (1.0, 2.0), (1.0, 8.0), (2.0, 4.0)):
            wavelen = 2 * math.pi / freqs
            smooth = (old_ctx / wavelen - low) / (high - low)
            want = np.where(
                wavelen < old_ctx / high, 1.0, np.where(wavelen > old_ctx / low, factor, 1 / ((1 - smooth) / factor + smooth))
            )
            if factors.shape == want.shape and np.allclose(factors, want, rtol=1e-5, atol=1e-6):
                return {
                    "rope_type": "llama3",
                    "factor": factor,
                    "low_freq_factor": low,
                    "high_freq_factor": high,
                    "original_max_position_embeddings": old_ctx,
                }
    raise BuildError("rope_freqs.weight does not match any known llama3 rope scaling; cannot recover rope_scaling", path)
