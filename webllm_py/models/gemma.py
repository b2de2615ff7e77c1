"""Gemma 2 and Gemma 3 (text): config parsing and graph builder.

What differs from the Llama-family graph (models/decoder.py), each as transformers computes it
(models/gemma2, models/gemma3 modeling files):

- RMSNorm scales by (1 + w): the +1 is folded into the stored norm weights at read time
  (`param_offsets`, applied by the bundle writer beside `param_scales`), so the rms_norm op
  and its kernels are the Llama ones. q/k norms (Gemma 3) are per-head RMSNorms, also (1 + w).
- The embedding output is scaled by sqrt(hidden_size) (an `embedding` op attribute, in the
  activation dtype); the table itself is not scaled, because it is tied to the LM head.
- Norms before and after attention and the MLP (input / post_attention /
  pre_feedforward / post_feedforward layernorms).
- GeGLU with tanh GELU: gelu_mul(gate, up), its own elementwise op (fused gate/up stacking
  still applies; the SiLU epilogue does not match it).
- The attention scale is query_pre_attn_scalar ** -0.5.
- Sliding-window layers (`layer_types`, or Gemma 2's every other layer / Gemma 3's
  sliding_window_pattern): attention attribute `window`, a query at t sees keys
  max(0, t - window + 1)..t. Their KV caches are rings of R = window + prefill_chunk - 1 rows
  (position t in row t % R: a step writes its <= prefill_chunk rows before it reads, and its first
  query needs keys from p - window + 1 on) when R < context_window; otherwise they keep every row.
  Gemma 3 270M (18 layers of which 15 local, 1 kv head x head_dim 256, window 512, prefill_chunk
  128: R = 639), the KV buffers of the built Q4_K_M bundle: context 2048 30.7 MiB f32 / 15.4 MiB
  f16x2 instead of 72 / 36 MiB (-57 %); context 32768 210.7 / 105.4 MiB instead of 1152 / 576 MiB
  (-82 %).
- Gemma 3: two rope bases, local layers rope_local_base_freq (no scaling), global layers
  rope_theta with its rope_scaling: two computed inv_freq params.
- Gemma 2: attention logit soft-capping (attention attribute `softcap`: tanh(s / c) * c of the
  scaled scores) and final logit soft-capping (a `softcap` op on the logits). Gemma 3 applies
  final_logit_softcapping too; transformers' Gemma 3 attention ignores
  attn_logit_softcapping, so this builder does the same.

Param names are the HF names (model.layers.{i}...), as in decoder.py; the embedding table is
tied to the LM head unless tie_word_embeddings is false.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BuildError
from ..ir import Graph
from . import config_fields as F
from .config import TABLE_ONLY_ROPE_TYPES, DecoderConfig, parse_decoder_config, rope_settings
from .decoder import EMBED, INV_FREQ, LM_HEAD, _linear

INV_FREQ_LOCAL = "rope.inv_freq_local"  # Gemma 3's sliding-window layers (rope_local_base_freq)
NORM_OFFSET = 1.0  # Gemma's RMSNorm multiplies by (1 + weight)
GELU_TANH = ("gelu_pytorch_tanh", "gelu_tanh")  # hidden_activation values meaning gelu(approximate="tanh")
LAYER_TYPES = {"sliding_attention": True, "full_attention": False}


@dataclass(frozen=True)
class GemmaConfig(DecoderConfig):
    """DecoderConfig plus Gemma's fields (module docstring)."""

    query_pre_attn_scalar: float = 256.0
    sliding_layers: tuple[int, ...] = ()  # 1 per layer that attends over the sliding window
    rope_local_theta: float = 0.0  # Gemma 3 local layers' rope base (0: the global rope for all layers)
    rope_local_scaling: dict[str, Any] | None = None
    attn_softcap: float = 0.0  # 0: none
    final_softcap: float = 0.0  # 0: none


# the transformers config classes' defaults, for fields a saved config.json may leave out
_DEFAULTS = {
    "gemma2": {"head_dim": 256, "tie_word_embeddings": True, "max_position_embeddings": 8192,
               "query_pre_attn_scalar": 256, "sliding_window": 4096, "final_logit_softcapping": 30.0,
               "attn_logit_softcapping": 50.0},
    "gemma3_text": {"head_dim": 256, "tie_word_embeddings": True, "max_position_embeddings": 131072,
                    "query_pre_attn_scalar": 256, "sliding_window": 4096, "rope_theta": 1_000_000.0},
}
_PATTERN = {"gemma2": 2, "gemma3_text": 6}  # every PATTERN-th layer is global when layer_types is absent


def _softcap(cfg: dict[str, Any], key: str, path: Path, model_type: str) -> float:
    """A soft-capping value, 0 for none: null in the file means none; absent, the config class's default."""
    v = cfg[key] if key in cfg else _DEFAULTS[model_type].get(key)
    return 0.0 if v is None else F.number({key: v}, key, path)


def _sliding_layers(cfg: dict[str, Any], path: Path, layers: int, model_type: str) -> tuple[int, ...]:
    types = cfg.get("layer_types")
    if types is None:
        pattern = cfg.get("sliding_window_pattern", cfg.get("_sliding_window_pattern", _PATTERN[model_type]))
        if type(pattern) is not int or pattern < 1:
            raise BuildError(f"field 'sliding_window_pattern' must be a positive integer, got {pattern!r}", path)
        return tuple(int(bool((i + 1) % pattern)) for i in range(layers))
    if not isinstance(types, list) or len(types) != layers or any(t not in LAYER_TYPES for t in types):
        raise BuildError(f"field 'layer_types' must be a list of {layers} values 'sliding_attention' or "
                         f"'full_attention' (one per layer), got {types!r}", path)
    return tuple(int(LAYER_TYPES[t]) for t in types)


def _gemma3_ropes(cfg: dict[str, Any], path: Path) -> tuple[float, dict | None, float, dict | None]:
    """(global theta, global scaling, local theta, local scaling), from transformers 5's per-layer-type
    rope_parameters or transformers 4's rope_theta / rope_scaling / rope_local_base_freq."""
    params = cfg.get("rope_parameters")
    if isinstance(params, dict) and ("full_attention" in params or "sliding_attention" in params):
        ropes = []
        for kind, default in (("full_attention", 1_000_000.0), ("sliding_attention", 10_000.0)):
            sub = params.get(kind) or {}
            ropes += rope_settings({"rope_parameters": {"rope_theta": default, **sub}}, path)
        return ropes[0], ropes[1], ropes[2], ropes[3]
    theta, scaling = rope_settings(cfg, path)
    return theta, scaling, F.number(cfg, "rope_local_base_freq", path, default=10_000.0), None


def parse_gemma_config(cfg: dict[str, Any], path: Path) -> GemmaConfig:
    """Validate a gemma2 / gemma3_text config.json (errors name `path` and the field)."""
    F.require_object(cfg, path)
    model_type = F.text(cfg, "model_type", path)
    act = cfg.get("hidden_activation", "gelu_pytorch_tanh")
    if act not in GELU_TANH:
        raise BuildError(f"field 'hidden_activation' {act!r} is not supported (supported: gelu_pytorch_tanh)", path)
    if cfg.get("use_bidirectional_attention"):
        raise BuildError("field 'use_bidirectional_attention' true (an embedding model's attention) is not "
                         "supported; build a causal Gemma language model", path)
    merged = {**_DEFAULTS[model_type], **{k: v for k, v in cfg.items() if k != "hidden_act" and v is not None}}
    base = parse_decoder_config(merged, path, qk_norm=model_type == "gemma3_text", o_proj_bias=True,
                                rope_types=TABLE_ONLY_ROPE_TYPES)  # these rope ops take no cos_scale (yarn's)
    layers = base.num_hidden_layers
    sliding = _sliding_layers(cfg, path, layers, model_type)
    window = F.integer(merged, "sliding_window", path) if any(sliding) else None
    extra: dict[str, Any] = {}
    if model_type == "gemma3_text":
        theta, scaling, local, local_scaling = _gemma3_ropes(merged, path)  # merged: the class default theta
        extra = dict(rope_theta=theta, rope_scaling=scaling, rope_local_theta=local, rope_local_scaling=local_scaling)
    else:
        extra = dict(attn_softcap=_softcap(cfg, "attn_logit_softcapping", path, model_type))
    extra.update(sliding_window=window, sliding_layers=sliding,
                 query_pre_attn_scalar=F.number(merged, "query_pre_attn_scalar", path),
                 final_softcap=_softcap(cfg, "final_logit_softcapping", path, model_type))
    return GemmaConfig(**{**dataclasses.asdict(base), **extra})


def ring_rows(cfg: GemmaConfig, context_window: int, prefill_chunk: int | None) -> int:
    """Rows of a sliding-window layer's ring cache (module docstring), 0 where the layer keeps
    every row: no window, no step limit (prefill_chunk None), or a ring no smaller than the cache."""
    if not cfg.sliding_window or not prefill_chunk:
        return 0
    ring = cfg.sliding_window + prefill_chunk - 1
    return ring if ring < context_window else 0


def build_graph(cfg: GemmaConfig, context_window: int, logits: str = "all", prefill_chunk: int | None = None) -> Graph:
    """One step of a Gemma 2/3 decoder: ids (n,) -> logits ((n or 1), vocab_size); see decoder.build_graph.
    prefill_chunk: the largest step, which sizes the sliding-window layers' ring caches (None: steps
    of any size, every layer keeps a row per position)."""
    g = Graph()
    H, I, hd = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    eps, bias = cfg.rms_norm_eps, cfg.attention_bias
    inv_global = g.param(INV_FREQ, (hd // 2,), role="table")
    inv_local = g.param(INV_FREQ_LOCAL, (hd // 2,), role="table") if cfg.rope_local_theta else inv_global
    table = g.param(EMBED, (cfg.vocab_size, H), role="embedding")
    # transformers: the scale is a tensor of the activations' dtype (f32 here: float32(sqrt(H)))
    x = g.add("embedding", ["ids", table], "x0", scale=float(np.float32(math.sqrt(H))))
    scale = float(cfg.query_pre_attn_scalar) ** -0.5
    ring = ring_rows(cfg, context_window, prefill_chunk)

    def norm(x: str, param: str, width: int, out: str, group: int = 0) -> str:
        w = g.param(param, (width,), role="norm")
        return g.add("rms_norm", [x, w], out, eps=eps, **({"group": group} if group else {}))

    for i in range(cfg.num_hidden_layers):
        L, local = f"model.layers.{i}", bool(cfg.sliding_layers[i])
        h = norm(x, f"{L}.input_layernorm.weight", H, f"l{i}.attn_in")
        q = _linear(g, h, f"{L}.self_attn.q_proj", nh * hd, H, bias, f"l{i}.q")
        k = _linear(g, h, f"{L}.self_attn.k_proj", nkv * hd, H, bias, f"l{i}.k")
        v = _linear(g, h, f"{L}.self_attn.v_proj", nkv * hd, H, bias, f"l{i}.v")
        if cfg.qk_norm:
            q = norm(q, f"{L}.self_attn.q_norm.weight", hd, f"l{i}.q_normed", hd)
            k = norm(k, f"{L}.self_attn.k_norm.weight", hd, f"l{i}.k_normed", hd)
        inv = inv_local if local else inv_global
        q = g.add("rope", [q, inv], f"l{i}.q_rot", heads=nh, head_dim=hd)
        k = g.add("rope", [k, inv], f"l{i}.k_rot", heads=nkv, head_dim=hd)
        rows = ring if local and ring else context_window
        ring_attr = {"ring": ring} if local and ring else {}
        kc = g.state_tensor(f"cache.{i}.k", (rows, nkv * hd))
        vc = g.state_tensor(f"cache.{i}.v", (rows, nkv * hd))
        g.add("kv_write", [k, kc], None, **ring_attr)
        g.add("kv_write", [v, vc], None, **ring_attr)
        extra = {"window": cfg.sliding_window, **ring_attr} if local else {}
        if cfg.attn_softcap:
            extra["softcap"] = cfg.attn_softcap
        a = g.add("attention", [q, kc, vc], f"l{i}.attn", heads=nh, kv_heads=nkv, head_dim=hd, scale=scale, **extra)
        o = _linear(g, a, f"{L}.self_attn.o_proj", H, nh * hd, cfg.o_proj_bias, f"l{i}.o")
        o = norm(o, f"{L}.post_attention_layernorm.weight", H, f"l{i}.o_normed")
        x = g.add("add", [x, o], f"l{i}.resid_attn")
        h = norm(x, f"{L}.pre_feedforward_layernorm.weight", H, f"l{i}.mlp_in")
        gate = _linear(g, h, f"{L}.mlp.gate_proj", I, H, cfg.mlp_bias, f"l{i}.gate")
        up = _linear(g, h, f"{L}.mlp.up_proj", I, H, cfg.mlp_bias, f"l{i}.up")
        m = g.add("gelu_mul", [gate, up], f"l{i}.act")
        d = _linear(g, m, f"{L}.mlp.down_proj", H, I, cfg.mlp_bias, f"l{i}.down")
        d = norm(d, f"{L}.post_feedforward_layernorm.weight", H, f"l{i}.down_normed")
        x = g.add("add", [x, d], f"l{i}.resid_mlp")
    x = norm(x, "model.norm.weight", H, "final_norm")
    if logits == "last":
        x = g.add("last_row", [x], "final_last")
    head = EMBED if cfg.tie_word_embeddings else g.param(LM_HEAD, (cfg.vocab_size, H), role="linear")
    out = g.add("linear", [x, head], "logits" if not cfg.final_softcap else "logits_uncapped")
    if cfg.final_softcap:
        out = g.add("softcap", [out], "logits", cap=cfg.final_softcap)
    g.output = out
    return g


def computed_params(cfg: GemmaConfig) -> dict[str, np.ndarray]:
    """Params computed from the config: the rope frequencies (two tables for Gemma 3)."""
    from .rope import inv_freq

    out = {INV_FREQ: inv_freq(cfg)}
    if cfg.rope_local_theta:
        out[INV_FREQ_LOCAL] = inv_freq(dataclasses.replace(cfg, rope_theta=cfg.rope_local_theta,
                                                           rope_scaling=cfg.rope_local_scaling))
    return out


def param_scales(cfg: GemmaConfig, graph: Graph) -> dict[str, float]:
    return {}


def param_offsets(cfg: GemmaConfig, graph: Graph) -> dict[str, float]:
    """Every RMSNorm weight is read as 1 + w (Gemma's norm; module docstring)."""
    return {name: NORM_OFFSET for name, p in graph.params.items() if p.role == "norm"}


def checkpoint_names(cfg: GemmaConfig, graph: Graph) -> dict[str, tuple[int, ...]]:
    return {name: p.shape for name, p in graph.params.items() if name not in (INV_FREQ, INV_FREQ_LOCAL)}


def ignorable(cfg: GemmaConfig, name: str) -> bool:
    return cfg.tie_word_embeddings and name == LM_HEAD


def refuse_multimodal(cfg: dict[str, Any], path: Path) -> DecoderConfig:
    """model_type "gemma3": a Gemma3ForConditionalGeneration checkpoint (vision tower + language model)."""
    raise BuildError("model_type 'gemma3' is a vision-language checkpoint (Gemma3ForConditionalGeneration); only "
                     "its text part could be built and that is not supported yet: use a gemma3_text checkpoint "
                     "(e.g. google/gemma-3-270m or -1b) or its GGUF", path)
