"""The Llama-family decoder: graph builder and HF weight map.

Llama, Mistral, Qwen2 and Qwen3 share this one forward pass; the differences
(q/k/v biases, q/k RMSNorm, explicit head_dim, tied embeddings, rope scaling)
are fields of DecoderConfig. Param names in the graph are the HF names, so the
weight map is the identity on every name the graph declares; what it adds is
the explicit set of HF names the compiler may ignore and the computed params.
"""

from __future__ import annotations

import math
import re

from ..ir import Graph
from .config import DecoderConfig

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


def build_graph(cfg: DecoderConfig, context_window: int, logits: str = "all") -> Graph:
    """One step of the decoder: ids (n,) -> logits ((n or 1), vocab_size).

    logits="all" gives every position's logits (scoring, perplexity);
    logits="last" only the last row's (generation)."""
    g = Graph()
    H, I, hd = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    eps = cfg.rms_norm_eps
    inv_freq = g.param(INV_FREQ, (hd // 2,), role="table")
    x = g.add("embedding", ["ids", g.param(EMBED, (cfg.vocab_size, H), role="embedding")], "x0")
    for i in range(cfg.num_hidden_layers):
        L = f"model.layers.{i}"
        h = g.add("rms_norm", [x, g.param(f"{L}.input_layernorm.weight", (H,), role="norm")], f"l{i}.attn_in", eps=eps)
        q = _linear(g, h, f"{L}.self_attn.q_proj", nh * hd, H, cfg.attention_bias, f"l{i}.q")
        k = _linear(g, h, f"{L}.self_attn.k_proj", nkv * hd, H, cfg.attention_bias, f"l{i}.k")
        v = _linear(g, h, f"{L}.self_attn.v_proj", nkv * hd, H, cfg.attention_bias, f"l{i}.v")
        if cfg.qk_norm:
            q = g.add("rms_norm", [q, g.param(f"{L}.self_attn.q_norm.weight", (hd,), role="norm")], f"l{i}.q_normed", eps=eps, group=hd)
            k = g.add("rms_norm", [k, g.param(f"{L}.self_attn.k_norm.weight", (hd,), role="norm")], f"l{i}.k_normed", eps=eps, group=hd)
        q = g.add("rope", [q, inv_freq], f"l{i}.q_rot", heads=nh, head_dim=hd)
        k = g.add("rope", [k, inv_freq], f"l{i}.k_rot", heads=nkv, head_dim=hd)
        kc = g.state_tensor(f"cache.{i}.k", (context_window, nkv * hd))
        vc = g.state_tensor(f"cache.{i}.v", (context_window, nkv * hd))
        g.add("kv_write", [k, kc], None)
        g.add("kv_write", [v, vc], None)
        a = g.add("attention", [q, kc, vc], f"l{i}.attn", heads=nh, kv_heads=nkv, head_dim=hd, scale=1.0 / math.sqrt(hd))
        o = _linear(g, a, f"{L}.self_attn.o_proj", H, nh * hd, cfg.o_proj_bias, f"l{i}.o")
        x = g.add("add", [x, o], f"l{i}.resid_attn")
        h = g.add("rms_norm", [x, g.param(f"{L}.post_attention_layernorm.weight", (H,), role="norm")], f"l{i}.mlp_in", eps=eps)
        gate = _linear(g, h, f"{L}.mlp.gate_proj", I, H, cfg.mlp_bias, f"l{i}.gate")
        up = _linear(g, h, f"{L}.mlp.up_proj", I, H, cfg.mlp_bias, f"l{i}.up")
        m = g.add("silu_mul", [gate, up], f"l{i}.act")
        d = _linear(g, m, f"{L}.mlp.down_proj", H, I, cfg.mlp_bias, f"l{i}.down")
        x = g.add("add", [x, d], f"l{i}.resid_mlp")
    x = g.add("rms_norm", [x, g.param("model.norm.weight", (H,), role="norm")], "final_norm", eps=eps)
    if logits == "last":
        x = g.add("last_row", [x], "final_last")
    head = EMBED if cfg.tie_word_embeddings else g.param(LM_HEAD, (cfg.vocab_size, H), role="linear")
    g.add("linear", [x, head], "logits")
    g.output = "logits"
    return g


def checkpoint_names(cfg: DecoderConfig, graph: Graph) -> dict[str, tuple[int, ...]]:
    """HF tensor name -> expected shape, for every param read from the checkpoint."""
    return {name: p.shape for name, p in graph.params.items() if name != INV_FREQ}


def ignorable(cfg: DecoderConfig, name: str) -> bool:
    """Checkpoint tensors the graph does not use and that may be dropped silently."""
    if cfg.tie_word_embeddings and name == LM_HEAD:
        return True
    return any(p.fullmatch(name) for p in IGNORED_PATTERNS)
