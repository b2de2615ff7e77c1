"""Rotary embedding frequencies, computed at build time (llama3 / linear / longrope / yarn / dynamic
scaling, partial rotary).

The bundle stores inv_freq as a small f32 param, so runtimes and kernels know nothing about
scaling schemes: angle = position * inv_freq[i]. Two things cannot be folded into one table and
are rope attrs instead (`rope_attrs`, read by the rope op and its kernels):
  rotary_dim   partial rotary (phi3's partial_rotary_factor): only the first rotary_dim features of
               each head rotate, in rotate_half pairs (i, i + rotary_dim/2); the rest pass through.
  long_after   longrope: inv_freq holds the short then the long frequencies (rotary_dim/2 each); a
               forward call whose end (max position + 1) exceeds long_after
               (original_max_position_embeddings) uses the long ones, as transformers'
               longrope_frequency_update does per call.
  cos_scale    longrope's or yarn's attention factor, multiplying cos and sin.
yarn (Qwen2.5 / Qwen3 long context): one table, blending interpolated (base / factor) and
extrapolated (base) frequencies over a linear ramp between the dimensions where beta_fast and
beta_slow rotations fit in original_max_position_embeddings, in float32 as transformers'
_compute_yarn_parameters does; its attention factor is cos_scale. dynamic (NTK): plain RoPE, since
transformers only rescales once a call runs past max_position_embeddings, beyond any context window
a bundle has (build_limits.py).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .config import DecoderConfig


def rotary_dim(cfg: DecoderConfig) -> int:
    """Features of each head that rotate."""
    return cfg.rotary_dim or cfg.head_dim


def _base(theta: float, dim: int) -> np.ndarray:
    # float32 exponent and power, as transformers' rope init functions compute them
    return (theta ** (np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / np.float32(dim))).astype(np.float32)


def inv_freq(cfg: DecoderConfig) -> np.ndarray:
    """(rotary_dim/2,) float32 (longrope: (rotary_dim,), short then long), as transformers' rope
    init functions compute it."""
    dim = rotary_dim(cfg)
    powers = _base(cfg.rope_theta, dim)
    base = (1.0 / powers).astype(np.float32)
    s = cfg.rope_scaling
    if s is None or s["rope_type"] == "dynamic":
        return base
    if s["rope_type"] == "yarn":
        return _yarn(s, cfg.rope_theta, dim, powers)
    if s["rope_type"] == "linear":
        return (base / np.float32(s["factor"])).astype(np.float32)
    if s["rope_type"] == "longrope":  # 1 / (ext_factor * base^(2i/dim)) per frequency, each factor set
        return np.concatenate([(1.0 / (np.asarray(s[k], dtype=np.float32) * powers)).astype(np.float32)
                               for k in ("short_factor", "long_factor")])
    # llama3: keep high frequencies, divide low ones by `factor`, blend in between.
    factor = float(s["factor"])
    low, high = float(s["low_freq_factor"]), float(s["high_freq_factor"])
    old_ctx = float(s["original_max_position_embeddings"])
    low_wl, high_wl = old_ctx / low, old_ctx / high
    wavelen = 2 * math.pi / base
    out = np.where(wavelen > low_wl, base / factor, base)
    smooth = (old_ctx / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * out / factor + smooth * out
    medium = ~(wavelen < high_wl) & ~(wavelen > low_wl)
    return np.where(medium, smoothed, out).astype(np.float32)


def _yarn(s: dict[str, Any], theta: float, dim: int, powers: np.ndarray) -> np.ndarray:
    """transformers' _compute_yarn_parameters: the correction range in float64 (python math), the ramp
    and the blend in float32."""
    def correction_dim(rotations: float) -> float:  # the dimension that turns `rotations` times in the old context
        return dim * math.log(s["original_max_position_embeddings"] / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = correction_dim(s["beta_fast"]), correction_dim(s["beta_slow"])
    if s["truncate"]:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # transformers' guard against a zero-width ramp
    ramp = np.clip((np.arange(dim // 2, dtype=np.float32) - np.float32(low)) / np.float32(high - low), 0, 1)
    extrapolation = (np.float32(1) - ramp).astype(np.float32)
    interpolated = (1.0 / (np.float32(s["factor"]) * powers)).astype(np.float32)
    extrapolated = (1.0 / powers).astype(np.float32)
    return (interpolated * (1 - extrapolation) + extrapolated * extrapolation).astype(np.float32)


def rope_attrs(cfg: DecoderConfig) -> dict[str, Any]:
    """The rope node attrs beyond heads/head_dim (module docstring); {} for plain RoPE, so
    existing graphs and kernels are unchanged."""
    out: dict[str, Any] = {}
    if rotary_dim(cfg) != cfg.head_dim:
        out["rotary_dim"] = rotary_dim(cfg)
    s = cfg.rope_scaling
    if s is not None and s["rope_type"] == "longrope":
        out["long_after"] = int(s["original_max_position_embeddings"])
    if s is not None and s["rope_type"] in ("longrope", "yarn") and s["attention_factor"] != 1.0:
        out["cos_scale"] = float(s["attention_factor"])
    return out


def table_size(cfg: DecoderConfig) -> int:
    """Length of the inv_freq param."""
    return len(inv_freq(cfg))
