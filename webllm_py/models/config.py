"""DecoderConfig: the HF config.json fields a Llama-family decoder needs, validated.

Every field is checked for type and range (positive head counts, heads a
multiple of kv heads, a finite positive rope_theta, ...) with errors naming
config.json and the field (typed reads: config_fields.py).

Field names are HF's own (hidden_size, num_key_value_heads, ...), used the
same way in the graph, the templates and the manifest.
"""

from __future__ import annotations

import math
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
    # Graph variants of the family (defaults: the Llama graph; each set by its registry entry)
    qk_norm_scope: str = "head"  # "head" (qwen3) | "projection" (olmo2: one RMSNorm over all of q / k)
    post_norms: bool = False  # olmo2: RMSNorm on the attention / MLP outputs before the residual add, no pre-norms
    rope_layers: tuple[int, ...] | None = None  # smollm3 no_rope_layers: 1 rotates q/k, 0 is a NoPE layer
    # granite: embedding, residual, attention and logits multipliers (folded into weights: models/decoder.py)
    multipliers: dict[str, float] | None = None
    # phi3 (models/phi3.py): the checkpoint's fused qkv_proj / gate_up_proj, and partial rotary:
    # only the first rotary_dim features of each head rotate (0: all head_dim of them)
    fused_projections: bool = False
    rotary_dim: int = 0

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
    # dynamic NTK changes the base only once a call runs past max_position_embeddings, which a
    # bundle's context window never does (build_limits.py): within it the table is plain RoPE
    "dynamic": [("factor", F.number, {})],
}  # + yarn, whose fields _yarn resolves
# Types whose whole effect is the inv_freq table. yarn also scales cos and sin (its attention factor,
# the rope attr cos_scale): only graphs whose rope ops carry rope_attrs take it (parse_decoder_config).
TABLE_ONLY_ROPE_TYPES = ("linear", "llama3", "dynamic")
ROPE_TYPES = (*TABLE_ONLY_ROPE_TYPES, "yarn")


def _yarn(cfg: dict[str, Any], where: str, scaling: dict[str, Any], path: Path) -> dict[str, Any]:
    """yarn's fields resolved as transformers' _compute_yarn_parameters (and standardize_rope_params)
    read them, so models/rope.py only computes: original_max_position_embeddings (a top-level field
    wins, else the rope dict's, else max_position_embeddings), factor (required, >= 1), attention_factor (absent: from mscale / mscale_all_dim when both are set, else
    0.1 ln(factor) + 1), beta_fast 32 / beta_slow 1 when absent, truncate (default true)."""
    key = "original_max_position_embeddings"
    orig = F.integer(cfg, key, path, default=None) or F.integer(cfg, f"{where}.{key}", path, default=None) \
        or F.integer(cfg, "max_position_embeddings", path, default=2048)
    factor = F.number(cfg, f"{where}.factor", path, lo=1.0, lo_open=False)  # transformers requires it too

    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention = F.number(cfg, f"{where}.attention_factor", path, default=None)
    if attention is None:
        m, m_all = (F.number(cfg, f"{where}.{k}", path, default=None, lo_open=False) for k in ("mscale", "mscale_all_dim"))
        attention = mscale(factor, m) / mscale(factor, m_all) if m and m_all else mscale(factor)
    beta_fast = F.number(cfg, f"{where}.beta_fast", path, default=32.0)
    beta_slow = F.number(cfg, f"{where}.beta_slow", path, default=1.0)
    if beta_fast < beta_slow:  # the ramp runs from beta_fast's dimension up to beta_slow's
        raise BuildError(f"field '{where}.beta_fast' ({beta_fast:g}) must not be below '{where}.beta_slow' "
                         f"({beta_slow:g})", path)
    return {"rope_type": "yarn", "factor": float(factor), key: orig, "attention_factor": float(attention),
            "beta_fast": beta_fast, "beta_slow": beta_slow, "truncate": F.flag(cfg, f"{where}.truncate", path, True)}


def rope_settings(cfg: dict[str, Any], path: Path,
                  kinds: tuple[str, ...] = TABLE_ONLY_ROPE_TYPES) -> tuple[float, dict[str, Any] | None]:
    """(rope_theta, rope_scaling) from either transformers 4 (rope_theta, rope_scaling)
    or transformers 5 (rope_parameters) config layouts; rope types outside `kinds` are refused."""
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
    if not isinstance(kind, str) or kind not in kinds:
        raise BuildError(f"field '{where}.rope_type' {kind!r} is not supported (supported: default, "
                         f"{', '.join(kinds)})", path)
    if kind == "yarn":
        return theta, _yarn(cfg, where, scaling, path)
    for name, read, kw in _ROPE_SCALING_FIELDS[kind]:
        read({where: scaling}, f"{where}.{name}", path, **kw)
    if kind == "llama3" and scaling["high_freq_factor"] <= scaling["low_freq_factor"]:
        # the llama3 blend divides by (high - low)
        raise BuildError(f"field '{where}.high_freq_factor' ({scaling['high_freq_factor']}) must be larger than "
                         f"'{where}.low_freq_factor' ({scaling['low_freq_factor']})", path)
    return theta, dict(scaling, rope_type=kind)


def _bad_object(key: str, v: Any, path: Path) -> None:
    raise BuildError(f"field '{key}' must be an object, got {v!r}", path)


def _rope_layers(cfg: dict[str, Any], path: Path, layers: int) -> tuple[int, ...] | None:
    """smollm3's no_rope_layers: one 0/1 per layer (1: the layer applies RoPE)."""
    v = cfg.get("no_rope_layers")
    if v is None:
        return None  # the config class's default is written into every saved config; absent: all rotate
    if not isinstance(v, list) or len(v) != layers or any(type(e) is not int or e not in (0, 1) for e in v):
        raise BuildError(f"field 'no_rope_layers' must be a list of {layers} values 0 or 1 (one per layer), got {v!r}", path)
    return tuple(v)


GRANITE_MULTIPLIERS = ("embedding_multiplier", "residual_multiplier", "attention_multiplier", "logits_scaling")


def parse_decoder_config(cfg: dict[str, Any], path: Path, *, qkv_bias_default: bool = False, qk_norm: bool = False,
                         o_proj_bias: bool = False, qk_norm_scope: str = "head", post_norms: bool = False,
                         nope_layers: bool = False, multipliers: bool = False,
                         rope_types: tuple[str, ...] = ROPE_TYPES) -> DecoderConfig:
    """Validate a Llama-family config.json into a DecoderConfig (errors name `path` and the field).

    The keyword arguments are the registry entry's (models/registry.py): o_proj_bias (the output
    projection has a bias when attention_bias is set), qk_norm + qk_norm_scope, post_norms,
    nope_layers (read no_rope_layers), multipliers (read granite's four); rope_types: the rope_scaling
    types the builder's graph implements (models/decoder.py's rope ops carry yarn's cos_scale)."""
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
    layers = F.integer(cfg, "num_hidden_layers", path)
    act = F.text(cfg, "hidden_act", path, default="silu")
    if act not in ("silu", "swish"):
        raise BuildError(f"field 'hidden_act' {act!r} is not supported (supported: silu)", path)
    theta, scaling = rope_settings(cfg, path, rope_types)
    # Qwen2 configs carry a sliding_window that use_sliding_window false switches off: read it only when on
    sliding = F.integer(cfg, "sliding_window", path, default=None) if F.flag(cfg, "use_sliding_window", path, True) else None
    for key in ("bos_token_id", "eos_token_id"):  # read by the tokenizer metadata; checked here with the rest
        F.token_ids(cfg, key, path)
    return DecoderConfig(
        model_type=model_type,
        hidden_size=hidden,
        intermediate_size=F.integer(cfg, "intermediate_size", path),
        num_hidden_layers=layers,
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
        o_proj_bias=F.flag(cfg, "attention_bias", path, False) if o_proj_bias else False,
        mlp_bias=F.flag(cfg, "mlp_bias", path, False),
        qk_norm=qk_norm,
        sliding_window=sliding,
        qk_norm_scope=qk_norm_scope,
        post_norms=post_norms,
        rope_layers=_rope_layers(cfg, path, layers) if nope_layers else None,
        # absent: GraniteConfig's default 1.0, as transformers reads the file
        multipliers={k: F.number(cfg, k, path, default=1.0) for k in GRANITE_MULTIPLIERS} if multipliers else None,
    )
