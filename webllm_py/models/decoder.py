"""The Llama-family decoder: graph builder and HF weight map.

Llama, Mistral, Qwen2, Qwen3, SmolLM3, OLMo 2, Granite and Phi-3 share this one forward
pass; the differences are fields of DecoderConfig: q/k/v biases, q/k RMSNorm per
head (qwen3) or over the whole projection (olmo2), explicit head_dim, tied
embeddings, rope scaling, NoPE layers (smollm3), norms after attention and MLP
instead of before (olmo2), Granite's four multipliers, and phi3's fused qkv_proj /
gate_up_proj, partial rotary and longrope (models/phi3.py, models/rope.py). Param names in the
graph are the HF names, so the weight map is the identity on every name the
graph declares; what it adds is the explicit set of HF names the compiler may
ignore, the computed params, and per-param scale factors (`param_scales`).

Granite's multipliers are folded into weights rather than added as ops: the
embedding table times embedding_multiplier, o_proj/down_proj (and biases) times
residual_multiplier, the attention scale is attention_multiplier, and the LM
head divided by logits_scaling (a tied head: the final norm weight divided by
embedding_multiplier * logits_scaling, since the table it reads is scaled).
"""

from __future__ import annotations

import math
import re

import numpy as np

from ..ir import Graph
from .config import DecoderConfig
from .rope import rope_attrs, table_size

EMBED = "model.embed_tokens.weight"
LM_HEAD = "lm_head.weight"
INV_FREQ = "rope.inv_freq"  # computed from the config, not read from the checkpoint

# HF names present in some checkpoints that carry nothing the graph needs.
IGNORED_PATTERNS = [re.compile(r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq")]


def _linear(g: Graph, x: str, prefix: str, out_f: int, in_f: int, bias: bool, out: str) -> str:
    w = g.param(f"{prefix}.weight", (out_f, in_f), role="linear")
    ins = [x, w]
    if bias:
        ins.append(g.param(f"{prefix}.bias", (out_f,), role="bias"))
    return g.add("linear", ins, out)


def build_graph(cfg: DecoderConfig, context_window: int, logits: str = "all",
                prefill_chunk: int | None = None) -> Graph:
    """One step of the decoder: ids (n,) -> logits ((n or 1), vocab_size).

    logits="all" gives every position's logits (scoring, perplexity);
    logits="last" only the last row's (generation). prefill_chunk (the largest step) is the
    builders' common signature: a builder with sliding-window layers sizes their ring caches
    from it (models/gemma.py); every layer here keeps a KV row per position."""
    g = Graph()
    H, I, hd = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    eps = cfg.rms_norm_eps
    inv_freq = g.param(INV_FREQ, (table_size(cfg),), role="table")
    rope = rope_attrs(cfg)  # partial rotary / longrope (models/rope.py); {} for plain RoPE
    x = g.add("embedding", ["ids", g.param(EMBED, (cfg.vocab_size, H), role="embedding")], "x0")
    attn_scale = cfg.multipliers["attention_multiplier"] if cfg.multipliers else 1.0 / math.sqrt(hd)

    def norm(x: str, param: str, width: int, out: str, group: int = 0) -> str:
        w = g.param(param, (width,), role="norm")
        return g.add("rms_norm", [x, w], out, eps=eps, **({"group": group} if group else {}))

    for i in range(cfg.num_hidden_layers):
        L = f"model.layers.{i}"
        h = x if cfg.post_norms else norm(x, f"{L}.input_layernorm.weight", H, f"l{i}.attn_in")
        if cfg.fused_projections:  # phi3's stored [q; k; v]: the linear + split fuse_linears makes
            qkv = _linear(g, h, f"{L}.self_attn.qkv_proj", (nh + 2 * nkv) * hd, H, cfg.attention_bias, f"l{i}.q+k+v")
            q, k, v = g.add_multi("split", [qkv], [f"l{i}.q", f"l{i}.k", f"l{i}.v"], sizes=[nh * hd, nkv * hd, nkv * hd])
        else:
            q = _linear(g, h, f"{L}.self_attn.q_proj", nh * hd, H, cfg.attention_bias, f"l{i}.q")
            k = _linear(g, h, f"{L}.self_attn.k_proj", nkv * hd, H, cfg.attention_bias, f"l{i}.k")
            v = _linear(g, h, f"{L}.self_attn.v_proj", nkv * hd, H, cfg.attention_bias, f"l{i}.v")
        if cfg.qk_norm:
            whole = cfg.qk_norm_scope == "projection"  # one norm over all heads (olmo2), else per head
            q = norm(q, f"{L}.self_attn.q_norm.weight", nh * hd if whole else hd, f"l{i}.q_normed", 0 if whole else hd)
            k = norm(k, f"{L}.self_attn.k_norm.weight", nkv * hd if whole else hd, f"l{i}.k_normed", 0 if whole else hd)
        if cfg.rope_layers is None or cfg.rope_layers[i]:
            q = g.add("rope", [q, inv_freq], f"l{i}.q_rot", heads=nh, head_dim=hd, **rope)
            k = g.add("rope", [k, inv_freq], f"l{i}.k_rot", heads=nkv, head_dim=hd, **rope)
        kc = g.state_tensor(f"cache.{i}.k", (context_window, nkv * hd))
        vc = g.state_tensor(f"cache.{i}.v", (context_window, nkv * hd))
        g.add("kv_write", [k, kc], None)
        g.add("kv_write", [v, vc], None)
        a = g.add("attention", [q, kc, vc], f"l{i}.attn", heads=nh, kv_heads=nkv, head_dim=hd, scale=attn_scale)
        o = _linear(g, a, f"{L}.self_attn.o_proj", H, nh * hd, cfg.o_proj_bias, f"l{i}.o")
        if cfg.post_norms:
            o = norm(o, f"{L}.post_attention_layernorm.weight", H, f"l{i}.o_normed")
        x = g.add("add", [x, o], f"l{i}.resid_attn")
        h = x if cfg.post_norms else norm(x, f"{L}.post_attention_layernorm.weight", H, f"l{i}.mlp_in")
        if cfg.fused_projections:  # phi3's stored [gate; up]
            gate_up = _linear(g, h, f"{L}.mlp.gate_up_proj", 2 * I, H, cfg.mlp_bias, f"l{i}.gate+up")
            gate, up = g.add_multi("split", [gate_up], [f"l{i}.gate", f"l{i}.up"], sizes=[I, I])
        else:
            gate = _linear(g, h, f"{L}.mlp.gate_proj", I, H, cfg.mlp_bias, f"l{i}.gate")
            up = _linear(g, h, f"{L}.mlp.up_proj", I, H, cfg.mlp_bias, f"l{i}.up")
        m = g.add("silu_mul", [gate, up], f"l{i}.act")
        d = _linear(g, m, f"{L}.mlp.down_proj", H, I, cfg.mlp_bias, f"l{i}.down")
        if cfg.post_norms:
            d = norm(d, f"{L}.post_feedforward_layernorm.weight", H, f"l{i}.down_normed")
        x = g.add("add", [x, d], f"l{i}.resid_mlp")
    x = g.add("rms_norm", [x, g.param("model.norm.weight", (H,), role="norm")], "final_norm", eps=eps)
    if logits == "last":
        x = g.add("last_row", [x], "final_last")
    head = EMBED if cfg.tie_word_embeddings else g.param(LM_HEAD, (cfg.vocab_size, H), role="linear")
    g.add("linear", [x, head], "logits")
    g.output = "logits"
    return g


def param_scales(cfg: DecoderConfig, graph: Graph) -> dict[str, float]:
    """Factors some checkpoint tensors are multiplied by when read (Granite's multipliers, see the
    module docstring); every other param is read as stored."""
    m = cfg.multipliers
    if not m:
        return {}
    out = {EMBED: m["embedding_multiplier"]}
    if cfg.tie_word_embeddings:
        out["model.norm.weight"] = 1.0 / (m["embedding_multiplier"] * m["logits_scaling"])
    else:
        out[LM_HEAD] = 1.0 / m["logits_scaling"]
    for name in graph.params:
        if re.fullmatch(r"model\.layers\.\d+\.(self_attn\.o_proj|mlp\.down_proj)\.(weight|bias)", name):
            out[name] = m["residual_multiplier"]
    return out


def param_offsets(cfg: DecoderConfig, graph: Graph) -> dict[str, float]:
    """Constants some checkpoint tensors are shifted by when read (after param_scales): none here
    (Gemma's (1 + w) norms: models/gemma.py)."""
    return {}


def computed_params(cfg: DecoderConfig) -> dict[str, np.ndarray]:
    """Params computed from the config, not read from the checkpoint: the rope frequencies."""
    from .rope import inv_freq

    return {INV_FREQ: inv_freq(cfg)}


def checkpoint_names(cfg: DecoderConfig, graph: Graph) -> dict[str, tuple[int, ...]]:
    """HF tensor name -> expected shape, for every param read from the checkpoint."""
    return {name: p.shape for name, p in graph.params.items() if name != INV_FREQ}


def ignorable(cfg: DecoderConfig, name: str) -> bool:
    """Checkpoint tensors the graph does not use and that may be dropped silently."""
    if cfg.tie_word_embeddings and name == LM_HEAD:
        return True
    return any(p.fullmatch(name) for p in IGNORED_PATTERNS)
