"""Rotary embedding frequencies, computed at build time (llama3 / linear scaling included).

The bundle stores inv_freq as a small f32 param, so runtimes and kernels know
nothing about scaling schemes: angle = position * inv_freq[i].
"""

from __future__ import annotations

import math

import numpy as np

from .config import DecoderConfig


def inv_freq(cfg: DecoderConfig) -> np.ndarray:
    """(head_dim/2,) float32, as transformers' rope init functions compute it."""
    dim = cfg.head_dim
    base = 1.0 / (cfg.rope_theta ** (np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / dim))
    base = base.astype(np.float32)
    s = cfg.rope_scaling
    if s is None:
        return base
    if s["rope_type"] == "linear":
        return (base / np.float32(s["factor"])).astype(np.float32)
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
