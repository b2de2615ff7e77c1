"""Phi-3 / Phi-3.5 / Phi-4-mini (HF model_type "phi3"): config parsing.

The graph is the Llama-family decoder (models/decoder.py) with three config fields set here:
  fused_projections  the checkpoint's qkv_proj ([q; k; v] rows) and gate_up_proj ([gate; up]) are
                     used as stored: one linear + split each, the graph fuse_linears makes for
                     Llama, so the lowering fuses them the same way (no unstacking);
  rotary_dim         int(head_dim * partial_rotary_factor) (Phi-4-mini: 0.75);
  rope_scaling       longrope (Phi-3-*-128k, Phi-3.5, Phi-4-mini): short_factor / long_factor per
                     frequency, original_max_position_embeddings (where the long factors start)
                     and the attention factor, resolved here exactly as transformers'
                     _compute_longrope_parameters does (models/rope.py turns them into tables).
"su" and "yarn" are Phi3Config's old names of longrope. Both config layouts are read: transformers
4 (rope_scaling, top-level partial_rotary_factor / original_max_position_embeddings) and 5
(rope_parameters holding all of them).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import BuildError
from . import config_fields as F
from .config import DecoderConfig, parse_decoder_config



def _rope_params(cfg: dict[str, Any], path: Path) -> tuple[str, dict[str, Any]]:
    """(field name, its dict): rope_parameters (transformers 5) or rope_scaling (4), {} if neither."""
    for where in ("rope_parameters", "rope_scaling"):
        v = cfg.get(where)
        if v is not None:
            if not isinstance(v, dict):
                raise BuildError(f"field '{where}' must be an object, got {v!r}", path)
            return where, v
    return "rope_scaling", {}


def _factors(params: dict[str, Any], where: str, key: str, count: int, path: Path) -> list[float]:
    v = params.get(key)
    ok = isinstance(v, list) and all(isinstance(e, (int, float)) and not isinstance(e, bool) and math.isfinite(e)
                                     and e > 0 for e in v)
    if not ok or len(v) != count:
        raise BuildError(f"field '{where}.{key}' must be a list of {count} positive numbers (one per rotary "
                         f"frequency: rotary_dim / 2), got {str(v)[:60]}", path)
    return [float(e) for e in v]


def _longrope(cfg: dict[str, Any], where: str, params: dict[str, Any], rot: int, path: Path) -> dict[str, Any]:
    """The resolved longrope fields (transformers' _compute_longrope_parameters)."""
    key = f"{where}.original_max_position_embeddings"
    orig = F.integer(cfg, key if params.get("original_max_position_embeddings") is not None
                     else "original_max_position_embeddings", path)
    factor = F.number(cfg, f"{where}.factor", path, default=None)
    if factor is None:  # Phi3: the ratio of the extended to the original context
        factor = F.integer(cfg, "max_position_embeddings", path) / orig
    attention = F.number(cfg, f"{where}.attention_factor", path, default=None)
    if attention is None:
        attention = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
    return {"rope_type": "longrope", "short_factor": _factors(params, where, "short_factor", rot // 2, path),
            "long_factor": _factors(params, where, "long_factor", rot // 2, path),
            "original_max_position_embeddings": orig, "attention_factor": float(attention)}


def parse_phi3_config(cfg: dict[str, Any], path: Path) -> DecoderConfig:
    """Validate a phi3 config.json (errors name `path` and the field)."""
    F.require_object(cfg, path)
    where, params = _rope_params(cfg, path)
    kind = params.get("rope_type", params.get("type", "default"))
    kind = "longrope" if kind in ("su", "yarn") else kind
    if kind not in ("default", "longrope"):
        raise BuildError(f"field '{where}.rope_type' {kind!r} is not supported for phi3 (supported: default, "
                         "longrope)", path)
    # the Llama-family parser reads everything else; it sees rope_theta alone
    rest = {k: v for k, v in cfg.items() if k not in ("rope_parameters", "rope_scaling")}
    if where == "rope_parameters" and params.get("rope_theta") is not None:
        rest["rope_theta"] = params["rope_theta"]
    base = parse_decoder_config(rest, path)
    prf_key = f"{where}.partial_rotary_factor" if params.get("partial_rotary_factor") is not None \
        else "partial_rotary_factor"
    factor = F.number(cfg, prf_key, path, default=1.0, hi=1.0)
    rot = int(base.head_dim * factor)  # transformers truncates the same way
    if rot < 2 or rot % 2 or (rot < base.head_dim and rot % 4):
        raise BuildError(f"field '{prf_key}' ({factor:g}) gives rotary_dim {rot} of head_dim {base.head_dim}: "
                         "it must be even, and a multiple of 4 when partial (pairs stored as whole f16x2 words)", path)
    scaling = _longrope(cfg, where, params, rot, path) if kind == "longrope" else None
    return replace(base, fused_projections=True, rotary_dim=0 if rot == base.head_dim else rot, rope_scaling=scaling)
