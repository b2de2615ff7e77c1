"""Encoder models (BERT, XLM-RoBERTa): config, graph builder and HF weight map.

One step embeds a batch of texts packed row after row: `ids` (n,) holds every
row's tokens back to back, `rows` (n,) the row of each token and `offsets`
(b+1,) where each row starts (offsets[b] = n). No padding is computed: the
"padding mask" of a padded batch is here the row structure itself (a token
attends to the tokens of its own row only), so a batch of short texts costs
its real tokens, and every matmul runs over all n tokens at once.

BERT and XLM-RoBERTa share the graph (post-LayerNorm blocks, GELU MLP, absolute
position + token-type embeddings); they differ in where positions start
(XLM-RoBERTa counts from pad_token_id + 1), which ENCODERS records.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import BuildError
from ..ir import Graph

WORD = "embeddings.word_embeddings.weight"
POSITION = "embeddings.position_embeddings.weight"
TOKEN_TYPE = "embeddings.token_type_embeddings.weight"

# HF names some encoder checkpoints carry that the embedding graph does not read: the position_ids
# buffer (int64), BertModel's pooler (sentence-transformers pools the token states itself) and
# the heads of *ForMaskedLM / *ForPreTraining checkpoints.
IGNORED_PATTERNS = [re.compile(p) for p in (
    r"embeddings\.position_ids", r"embeddings\.token_type_ids", r"pooler\..*", r"cls\..*", r"lm_head\..*")]
# prefixes of task-model checkpoints (BertForMaskedLM saves "bert.embeddings...")
MODEL_PREFIXES = ("bert.", "roberta.", "xlm_roberta.")

# hidden_act -> the GELU form (torch's approximate= argument)
GELU_FORMS = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}


@dataclass(frozen=True)
class EncoderArch:
    """What differs between encoder model_types."""

    model_type: str
    positions_from_pad: bool  # XLM-RoBERTa: position ids start at pad_token_id + 1


ENCODERS: dict[str, EncoderArch] = {a.model_type: a for a in [
    EncoderArch("bert", positions_from_pad=False),  # all-MiniLM, bge, e5
    EncoderArch("xlm-roberta", positions_from_pad=True),  # multilingual-e5
]}


@dataclass(frozen=True)
class EncoderConfig:
    model_type: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    gelu: str  # "none" (erf, BERT's "gelu") | "tanh"
    position_offset: int  # position id of a row's first token

    @property
    def max_tokens(self) -> int:
        """The longest row the position table covers."""
        return self.max_position_embeddings - self.position_offset

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "EncoderConfig":
        return cls(**d)


def _int(cfg: dict[str, Any], key: str, path: Path, default: Any = ...) -> int:
    v = cfg.get(key, default)
    if v is ...:
        raise BuildError(f"missing required key '{key}'", path)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise BuildError(f"key '{key}' has value {v!r}; expected a non-negative integer", path)
    return v


def parse_encoder_config(cfg: dict[str, Any], path: Path) -> EncoderConfig:
    """Validate a BERT / XLM-RoBERTa config.json (errors name `path` and the key)."""
    arch = ENCODERS[cfg["model_type"]]
    hidden, heads = _int(cfg, "hidden_size", path), _int(cfg, "num_attention_heads", path)
    if heads < 1 or hidden % heads:
        raise BuildError(f"hidden_size {hidden} is not a multiple of num_attention_heads {heads}", path)
    act = cfg.get("hidden_act", "gelu")
    if act not in GELU_FORMS:
        raise BuildError(f"key 'hidden_act' is {act!r}; supported: {', '.join(GELU_FORMS)}", path)
    kind = cfg.get("position_embedding_type", "absolute")
    if kind != "absolute":
        raise BuildError(f"key 'position_embedding_type' is {kind!r}; only 'absolute' is supported", path)
    if cfg.get("is_decoder") or cfg.get("add_cross_attention"):
        raise BuildError("is_decoder / add_cross_attention is set: only bidirectional encoders embed", path)
    eps = cfg.get("layer_norm_eps", 1e-12)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 <= eps < 1:
        raise BuildError(f"key 'layer_norm_eps' has value {eps!r}; expected a number in [0, 1)", path)
    offset = _int(cfg, "pad_token_id", path, 1) + 1 if arch.positions_from_pad else 0
    c = EncoderConfig(
        model_type=arch.model_type, hidden_size=hidden, intermediate_size=_int(cfg, "intermediate_size", path),
        num_hidden_layers=_int(cfg, "num_hidden_layers", path), num_attention_heads=heads,
        head_dim=hidden // heads, vocab_size=_int(cfg, "vocab_size", path),
        max_position_embeddings=_int(cfg, "max_position_embeddings", path, 512),
        type_vocab_size=_int(cfg, "type_vocab_size", path, 2), layer_norm_eps=float(eps),
        gelu=GELU_FORMS[act], position_offset=offset)
    if c.max_tokens < 1 or c.type_vocab_size < 1:
        raise BuildError(f"max_position_embeddings {c.max_position_embeddings} leaves no position after the "
                         f"offset {offset}, or type_vocab_size is 0", path)
    return c


def _linear(g: Graph, x: str, prefix: str, out_f: int, in_f: int, out: str) -> str:
    w = g.param(f"{prefix}.weight", (out_f, in_f), role="linear")
    return g.add("linear", [x, w, g.param(f"{prefix}.bias", (out_f,), role="bias")], out)


def _layer_norm(g: Graph, x: str, prefix: str, width: int, eps: float, out: str) -> str:
    w = g.param(f"{prefix}.weight", (width,), role="norm")
    return g.add("layer_norm", [x, w, g.param(f"{prefix}.bias", (width,), role="bias")], out, eps=eps)


def build_encoder_graph(cfg: EncoderConfig, pooling: str, normalize: bool) -> Graph:
    """One batch: ids, rows (n,), offsets (b+1,) -> embeddings (b, hidden_size), pooled per row
    (`pooling`: mean | cls | last) and, with `normalize`, scaled to unit L2 norm."""
    g = Graph()
    H, I, nh, hd, eps = cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads, cfg.head_dim, cfg.layer_norm_eps
    e = g.add("encoder_embedding", ["ids", "rows", "offsets", g.param(WORD, (cfg.vocab_size, H), role="embedding"),
                                    g.param(TOKEN_TYPE, (cfg.type_vocab_size, H), role="table"),
                                    g.param(POSITION, (cfg.max_position_embeddings, H), role="table")],
              "emb", position_offset=cfg.position_offset)
    x = _layer_norm(g, e, "embeddings.LayerNorm", H, eps, "x0")
    for i in range(cfg.num_hidden_layers):
        L = f"encoder.layer.{i}"
        q = _linear(g, x, f"{L}.attention.self.query", H, H, f"l{i}.q")
        k = _linear(g, x, f"{L}.attention.self.key", H, H, f"l{i}.k")
        v = _linear(g, x, f"{L}.attention.self.value", H, H, f"l{i}.v")
        a = g.add("encoder_attention", [q, k, v, "rows", "offsets"], f"l{i}.attn", heads=nh, head_dim=hd,
                  scale=1.0 / math.sqrt(hd))
        o = _linear(g, a, f"{L}.attention.output.dense", H, H, f"l{i}.o")
        r = g.add("add", [x, o], f"l{i}.resid_attn")
        x = _layer_norm(g, r, f"{L}.attention.output.LayerNorm", H, eps, f"l{i}.attn_out")
        h = g.add("gelu", [_linear(g, x, f"{L}.intermediate.dense", I, H, f"l{i}.up")], f"l{i}.act",
                  approximate=cfg.gelu)
        d = _linear(g, h, f"{L}.output.dense", H, I, f"l{i}.down")
        r = g.add("add", [x, d], f"l{i}.resid_mlp")
        x = _layer_norm(g, r, f"{L}.output.LayerNorm", H, eps, f"l{i}.out")
    out = g.add("pool", [x, "offsets"], "pooled", mode=pooling)
    if normalize:
        out = g.add("l2_normalize", [out], "normalized")
    g.output = out
    return g


def checkpoint_prefix(names: list[str]) -> str:
    """'' for a BertModel checkpoint, 'bert.' for BertForMaskedLM's, ... (the word embedding's prefix)."""
    for prefix in ("",) + MODEL_PREFIXES:
        if prefix + WORD in names:
            return prefix
    return ""


def ignorable(name: str) -> bool:
    """Checkpoint tensors (without the model prefix) the embedding graph does not use."""
    return any(p.fullmatch(name) for p in IGNORED_PATTERNS)
