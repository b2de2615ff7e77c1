"""DecoderConfig: the HF config.json fields a Llama-family decoder needs, validated.

Every field is checked for type and range (positive head counts, heads a
multiple of kv heads, a finite positive rope_theta, ...) with errors naming
config.json and the field (typed reads: config_fields.py).

Field names are HF's own (hidden_size, num_key_value_heads, ...), used the
same way in the graph, the templates and the manifest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BuildError
from . import config_fields as F


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


# rope_scaling types and the fields each needs: (field, reader, reader kwargs)
_ROPE_SCALING_FIELDS: dict[str, list[tuple[str, Any, dict[str, Any]]]] = {
    "linear": [("factor", F.number, {})],
    "llama3": [("factor", F.number, {}), ("low_freq_factor", F.number, {}), ("high_freq_factor", F.number, {}),
               ("original_max_position_embeddings", F.integer, {})],
}


def rope_settings(cfg: dict[str, Any], path: Path) -> tuple[float, dict[str, Any] | None]:
    """(rope_theta, rope_scaling) from either transformers 4 (rope_theta, rope_scaling)
    or transformers 5 (rope_parameters) config layouts."""
    params = cfg.get("rope_parameters")
    if params is not None:
        if not isinstance(params, dict):
            _bad_object("rope_parameters", params, path)
        key = "rope_parameters.rope_theta" if params.get("rope_theta") is not None else "rope_theta"
        theta = F.number(cfg, key, path, default=10000.0)
        scaling, where = {k: v for k, v in params.items() if k != "rope_theta"}, "rope_parameters"
    else:
        theta = F.number(cfg, "rope_theta", path, default=10000.0)
        scaling, where = cfg.get("rope_scaling") or None, "rope_scaling"
        if scaling is not None and not isinstance(scaling, dict):
            _bad_object(where, scaling, path)
    if scaling is None:
        return theta, None
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return theta, None
    if not isinstance(kind, str) or kind not in _ROPE_SCALING_FIELDS:
        raise BuildError(f"field '{where}.rope_type' {kind!r} is not supported (supported: default, "
                         f"{', '.join(_ROPE_SCALING_FIELDS)})", path)
    for name, read, kw in _ROPE_SCALING_FIELDS[kind]:
        read({where: scaling}, f"{where}.{name}", path, **kw)
    if kind == "llama3" and scaling["high_freq_factor"] <= scaling["low_freq_factor"]:
        # the llama3 blend divides by (high - low)
        raise BuildError(f"field '{where}.high_freq_factor' ({scaling['high_freq_factor']}) must be larger than "
                         f"'{where}.low_freq_factor' ({scaling['low_freq_factor']})", path)
    return theta, dict(scaling, rope_type=kind)


def _bad_object(key: str, v: Any, path: Path) -> None:
    raise BuildError(f"field '{key}' must be an object, got {v!r}", path)


def parse_decoder_config(cfg: dict[str, Any], path: Path, *, qkv_bias_default: bool = False, qk_norm: bool = False) -> DecoderConfig:
    """Validate a Llama-family config.json into a DecoderConfig (errors name `path` and the field)."""
    F.require_object(cfg, path)
    model_type = F.text(cfg, "model_type", path)
    hidden = F.integer(cfg, "hidden_size", path)
    heads = F.integer(cfg, "num_attention_heads", path)
    kv_heads = F.integer(cfg, "num_key_value_heads", path, default=heads)
    head_dim = F.integer(cfg, "head_dim", path, default=None)
    if head_dim is None:
        if hidden % heads:
            raise BuildError(f"hidden_size {hidden} is not a multiple of num_attention_heads {heads} and no head_dim is given", path)
        head_dim = hidden // heads
    if heads % kv_heads:
        raise BuildError(f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}", path)
    if head_dim % 2:
        raise BuildError(f"head_dim {head_dim} must be even for rotary embeddings", path)
    act = F.text(cfg, "hidden_act", path, default="silu")
    if act not in ("silu", "swish"):
        raise BuildError(f"field 'hidden_act' {act!r} is not supported (supported: silu)", path)
    theta, scaling = rope_settings(cfg, path)
    # Qwen2 configs carry a sliding_window that use_sliding_window false switches off: read it only when on
    sliding = F.integer(cfg, "sliding_window", path, default=None) if F.flag(cfg, "use_sliding_window", path, True) else None
    for key in ("bos_token_id", "eos_token_id"):  # read by the tokenizer metadata; checked here with the rest
        F.token_ids(cfg, key, path)
    return DecoderConfig(
        model_type=model_type,
        hidden_size=hidden,
        intermediate_size=F.integer(cfg, "intermediate_size", path),
        num_hidden_layers=F.integer(cfg, "num_hidden_layers", path),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=F.integer(cfg, "vocab_size", path),
        rms_norm_eps=F.number(cfg, "rms_norm_eps", path, default=1e-6),
        rope_theta=theta,
        rope_scaling=scaling,
        max_position_embeddings=F.integer(cfg, "max_position_embeddings", path, default=2048),
        tie_word_embeddings=F.flag(cfg, "tie_word_embeddings", path, False),
        attention_bias=F.flag(cfg, "attention_bias", path, qkv_bias_default),
        o_proj_bias=F.flag(cfg, "attention_bias", path, False) if model_type in ("llama", "qwen3") else False,
        mlp_bias=F.flag(cfg, "mlp_bias", path, False),
        qk_norm=qk_norm,
        sliding_window=sliding,
    )
