"""Decoder checkpoints used as embedders (Qwen3-Embedding): the packed causal graph and the weight map.

The folder is a Llama-family decoder (models/decoder.py's config and param names) that
sentence-transformers pools (modules.json; Qwen3-Embedding: last-token pooling, then
Normalize). The graph is the decoder's forward pass over a packed batch (models/encoder.py's
ids / rows / offsets): rope at each token's index within its text, attention causal within
the text (GQA), no KV cache and no LM head; the final RMSNorm's rows are pooled.

Checkpoints come as *ForCausalLM (names "model.layers.0...", maybe an lm_head) or as the bare
*Model sentence-transformers saves (names "layers.0...", no "model." prefix): `source_names`
maps the graph's names to whichever the folder has.
"""

from __future__ import annotations

import math

from ..errors import BuildError
from ..ir import Graph
from .config import DecoderConfig
from .decoder import EMBED, INV_FREQ, LM_HEAD, _linear
from .rope import rope_attrs

DECODER_EMBEDDERS = ("qwen3",)  # model_types whose embedding use is tested (tests/test_decoder_embedding.py)
BARE_PREFIX = "model."  # what a bare *Model checkpoint lacks


def build_decoder_embedding_graph(cfg: DecoderConfig, pooling: str, normalize: bool) -> Graph:
    """ids, rows (n,), offsets (b+1,) -> embeddings (b, hidden_size)."""
    if rope_attrs(cfg):  # row_rope rotates whole heads with one table, unscaled
        raise BuildError(f"rope {', '.join(sorted(rope_attrs(cfg)))} (rope_scaling {(cfg.rope_scaling or {}).get('rope_type')!r}) "
                         "is not supported for embedding models; without rope_scaling in config.json they embed "
                         "within the original context")
    g = Graph()
    H, I, hd = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    nh, nkv, eps = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.rms_norm_eps
    inv_freq = g.param(INV_FREQ, (hd // 2,), role="table")
    x = g.add("embedding", ["ids", g.param(EMBED, (cfg.vocab_size, H), role="embedding")], "x0")
    for i in range(cfg.num_hidden_layers):
        L = f"model.layers.{i}"
        h = g.add("rms_norm", [x, g.param(f"{L}.input_layernorm.weight", (H,), role="norm")], f"l{i}.attn_in", eps=eps)
        q = _linear(g, h, f"{L}.self_attn.q_proj", nh * hd, H, cfg.attention_bias, f"l{i}.q")
        k = _linear(g, h, f"{L}.self_attn.k_proj", nkv * hd, H, cfg.attention_bias, f"l{i}.k")
        v = _linear(g, h, f"{L}.self_attn.v_proj", nkv * hd, H, cfg.attention_bias, f"l{i}.v")
        if cfg.qk_norm:
            q = g.add("rms_norm", [q, g.param(f"{L}.self_attn.q_norm.weight", (hd,), role="norm")], f"l{i}.q_normed",
                      eps=eps, group=hd)
            k = g.add("rms_norm", [k, g.param(f"{L}.self_attn.k_norm.weight", (hd,), role="norm")], f"l{i}.k_normed",
                      eps=eps, group=hd)
        q = g.add("row_rope", [q, inv_freq, "rows", "offsets"], f"l{i}.q_rot", heads=nh, head_dim=hd)
        k = g.add("row_rope", [k, inv_freq, "rows", "offsets"], f"l{i}.k_rot", heads=nkv, head_dim=hd)
        a = g.add("encoder_attention", [q, k, v, "rows", "offsets"], f"l{i}.attn", heads=nh, kv_heads=nkv,
                  head_dim=hd, scale=1.0 / math.sqrt(hd), causal=True)
        o = _linear(g, a, f"{L}.self_attn.o_proj", H, nh * hd, cfg.o_proj_bias, f"l{i}.o")
        x = g.add("add", [x, o], f"l{i}.resid_attn")
        h = g.add("rms_norm", [x, g.param(f"{L}.post_attention_layernorm.weight", (H,), role="norm")], f"l{i}.mlp_in",
                  eps=eps)
        gate = _linear(g, h, f"{L}.mlp.gate_proj", I, H, cfg.mlp_bias, f"l{i}.gate")
        up = _linear(g, h, f"{L}.mlp.up_proj", I, H, cfg.mlp_bias, f"l{i}.up")
        m = g.add("silu_mul", [gate, up], f"l{i}.act")
        d = _linear(g, m, f"{L}.mlp.down_proj", H, I, cfg.mlp_bias, f"l{i}.down")
        x = g.add("add", [x, d], f"l{i}.resid_mlp")
    x = g.add("rms_norm", [x, g.param("model.norm.weight", (H,), role="norm")], "final_norm", eps=eps)
    out = g.add("pool", [x, "offsets"], "pooled", mode=pooling)
    if normalize:
        out = g.add("l2_normalize", [out], "normalized")
    g.output = out
    return g


def source_names(graph: Graph, present: set[str]) -> dict[str, str]:
    """Graph param name -> checkpoint name (bare *Model checkpoints drop "model."); inv_freq is computed."""
    bare = EMBED not in present and EMBED[len(BARE_PREFIX):] in present
    return {n: (n[len(BARE_PREFIX):] if bare and n.startswith(BARE_PREFIX) else n)
            for n in graph.params if n != INV_FREQ}


def ignorable(name: str) -> bool:
    """Checkpoint tensors the embedding graph does not use: the LM head, rotary caches."""
    return name == LM_HEAD or name.endswith("rotary_emb.inv_freq")
