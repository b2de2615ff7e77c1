"""DecoderConfig: the HF config.json fields a Llama-family decoder needs, validated.

Field names are HF's own (hidden_size, num_key_value_heads, ...), used the
same way in the graph, the templates and the manifest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BuildError


@dataclass(frozen=True)
class DecoderConfig:
    model_type: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: dict[str, Any] | None
    max_position_embeddings: int
    tie_word_embeddings: bool
    attention_bias: bool  # bias on q, k, v projections
    o_proj_bias: bool
    mlp_bias: bool
    qk_norm: bool  # qwen3: RMSNorm over each head of q and k, before RoPE
    sliding_window: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "DecoderConfig":
        return cls(**d)


def _get(cfg: dict[str, Any], key: str, path: Path, default: Any = ..., kind: type | tuple = (int,)) -> Any:
    if key not in cfg or cfg[key] is None:
        if default is ...:
            raise BuildError(f"missing required key '{key}'", path)
        return default
    v = cfg[key]
    if not isinstance(v, kind) or isinstance(v, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise BuildError(f"key '{key}' has value {v!r}; expected {kind}", path)
    return v


def rope_settings(cfg: dict[str, Any], path: Path) -> tuple[float, dict[str, Any] | None]:
    """(rope_theta, rope_scaling) from either transformers 4 (rope_theta, rope_scaling)
    or transformers 5 (rope_parameters) config layouts."""
    params = cfg.get("rope_parameters")
    if isinstance(params, dict):
        theta = float(params.get("rope_theta", cfg.get("rope_theta", 10000.0)))
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
    else:
        theta = float(cfg.get("rope_theta", 10000.0))
        scaling = cfg.get("rope_scaling") or None
    if scaling is not None:
        kind = scaling.get("rope_type", scaling.get("type", "default"))
        if kind == "default":
            scaling = None
        elif kind not in ("llama3", "linear"):
            raise BuildError(f"rope scaling type '{kind}' is not supported (supported: default, linear, llama3)", path)
        else:
            scaling = dict(scaling, rope_type=kind)
    return theta, scaling


def parse_decoder_config(cfg: dict[str, Any], path: Path, *, qkv_bias_default: bool = False, qk_norm: bool = False) -> DecoderConfig:
    """Validate a Llama-family config.json into a DecoderConfig (errors name `path`)."""
    hidden = _get(cfg, "hidden_size", path)
    heads = _get(cfg, "num_attention_heads", path)
    kv_heads = _get(cfg, "num_key_value_heads", path, default=heads)
    head_dim = _get(cfg, "head_dim", path, default=None)
    if head_dim is None:
        if hidden % heads:
            raise BuildError(f"hidden_size {hidden} is not a multiple of num_attention_heads {heads} and no head_dim is given", path)
        head_dim = hidden // heads
    if heads % kv_heads:
        raise BuildError(f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}", path)
    if head_dim % 2:
        raise BuildError(f"head_dim {head_dim} must be even for rotary embeddings", path)
    act = cfg.get("hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise BuildError(f"hidden_act '{act}' is not supported (supported: silu)", path)
    theta, scaling = rope_settings(cfg, path)
    sliding = cfg.get("sliding_window") if cfg.get("use_sliding_window", True) else None
    return DecoderConfig(
        model_type=cfg["model_type"],
        hidden_size=hidden,
        intermediate_size=_get(cfg, "intermediate_size", path),
        num_hidden_layers=_get(cfg, "num_hidden_layers", path),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=_get(cfg, "vocab_size", path),
        rms_norm_eps=float(_get(cfg, "rms_norm_eps", path, default=1e-6, kind=(int, float))),
        rope_theta=theta,
        rope_scaling=scaling,
        max_position_embeddings=_get(cfg, "max_position_embeddings", path, default=2048),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        attention_bias=bool(cfg.get("attention_bias", qkv_bias_default)),
        o_proj_bias=bool(cfg.get("attention_bias", False)) if cfg["model_type"] in ("llama", "qwen3") else False,
        mlp_bias=bool(cfg.get("mlp_bias", False)),
        qk_norm=qk_norm,
        sliding_window=int(sliding) if isinstance(sliding, int) else None,
    )
