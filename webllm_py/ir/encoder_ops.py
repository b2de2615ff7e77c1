"""Encoder ops (BERT-style embedding models): shape rules + numpy references.

Registered into ir.ops.OPS. A batch is packed (models/encoder.py): `rows` (n,)
gives each token's row, `offsets` (b+1,) each row's first token, so row r is
tokens offsets[r] .. offsets[r+1]-1 and b rows are embedded in one step.
"""

from __future__ import annotations

import math

import numpy as np

NORMALIZE_EPS = 1e-12  # torch.nn.functional.normalize's default, as sentence-transformers' Normalize uses
_erf = np.frompyfunc(math.erf, 1, 1)


def _spans(offsets: np.ndarray) -> list[tuple[int, int]]:
    o = [int(v) for v in offsets]
    return list(zip(o[:-1], o[1:]))


def _encoder_embedding(inputs, attrs, ctx):
    # word[ids] + token_type[0] + position[offset + index in row], summed in that order as transformers does
    ids, rows, offsets, word, token_type, position = inputs
    pos = np.arange(len(ids)) - offsets.astype(np.int64)[rows.astype(np.int64)] + int(attrs["position_offset"])
    x = word[ids.astype(np.int64)].astype(np.float32) + token_type[0].astype(np.float32)
    return (x + position[pos].astype(np.float32)).astype(np.float32)


def _layer_norm(inputs, attrs, ctx):
    x, w, b = (a.astype(np.float32) for a in inputs)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + np.float32(attrs["eps"])) * w + b).astype(np.float32)


def _gelu(inputs, attrs, ctx):
    x = inputs[0].astype(np.float64)
    if attrs.get("approximate", "none") == "tanh":
        y = 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    else:  # the exact (erf) form: BERT's "gelu"
        y = 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))
    return y.astype(np.float32)


def _encoder_attention(inputs, attrs, ctx):
    # bidirectional: every token of a row attends to every token of that row, and to no other row;
    # causal (a decoder used as an embedder): to the tokens of its row up to itself
    q, k, v, rows, offsets = inputs
    heads, hd = attrs["heads"], attrs["head_dim"]
    kv_heads = attrs.get("kv_heads", heads)
    out = np.zeros_like(q, dtype=np.float32)
    for s, e in _spans(offsets):
        qs = q[s:e].reshape(e - s, heads, hd).astype(np.float32)
        ks, vs = (np.repeat(t[s:e].reshape(e - s, kv_heads, hd).astype(np.float32), heads // kv_heads, axis=1)
                  for t in (k, v))
        scores = np.einsum("nhd,thd->hnt", qs, ks) * np.float32(attrs["scale"])
        if attrs.get("causal"):
            scores = np.where(np.triu(np.ones((e - s, e - s), dtype=bool), 1)[None], -np.inf, scores)
        w = np.exp(scores - scores.max(axis=-1, keepdims=True))
        w = w / w.sum(axis=-1, keepdims=True)
        out[s:e] = np.einsum("hnt,thd->nhd", w, vs).reshape(e - s, heads * hd)
    return out


def _row_rope(inputs, attrs, ctx):
    # rotate_half rope (ir.ops' rope) at each token's index within its row: a packed batch's positions
    from .ops import rope_cos_sin

    x, inv_freq, rows, offsets = inputs
    hd, heads = attrs["head_dim"], attrs["heads"]
    half = hd // 2
    pos = (np.arange(len(x)) - offsets.astype(np.int64)[rows.astype(np.int64)]).astype(np.float32)[:, None]
    ang = (pos * inv_freq.astype(np.float32)[None, :]).astype(np.float32)
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    xs = x.reshape(len(x), heads, hd).astype(np.float32)
    x1, x2 = xs[..., :half], xs[..., half:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).reshape(x.shape).astype(np.float32)


POOLS = {
    "mean": lambda x: x.mean(axis=0),
    "cls": lambda x: x[0],
    "last": lambda x: x[-1],
}


def _pool(inputs, attrs, ctx):
    x, offsets = inputs
    return np.stack([POOLS[attrs["mode"]](x[s:e].astype(np.float32)) for s, e in _spans(offsets)]).astype(np.float32)


def _l2_normalize(inputs, attrs, ctx):
    x = inputs[0].astype(np.float32)
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), np.float32(NORMALIZE_EPS))).astype(np.float32)


# -- shape rules -----------------------------------------------------------------

def _encoder_embedding_shape(shapes, attrs):
    ids, rows, offsets, word, token_type, position = shapes
    if word[1] != token_type[1] or word[1] != position[1]:
        raise ValueError(f"encoder_embedding: tables {word} {token_type} {position} differ in width")
    return (ids[0], word[1])


def _layer_norm_shape(shapes, attrs):
    x, w, b = shapes
    if tuple(w) != (x[-1],) or tuple(b) != (x[-1],):
        raise ValueError(f"layer_norm: weight {w} / bias {b} do not fit input {x}")
    return x


def _encoder_attention_shape(shapes, attrs):
    q, k, v = shapes[:3]
    heads, kv_heads, hd = attrs["heads"], attrs.get("kv_heads", attrs["heads"]), attrs["head_dim"]
    if heads % kv_heads or q[-1] != heads * hd or k[-1] != kv_heads * hd or v[-1] != kv_heads * hd:
        raise ValueError(f"encoder_attention: q/k/v {q} {k} {v} do not fit heads {heads} / kv_heads {kv_heads} "
                         f"x head_dim {hd}")
    return q


def _row_rope_shape(shapes, attrs):
    x, f = shapes[:2]
    if x[-1] != attrs["heads"] * attrs["head_dim"] or tuple(f) != (attrs["head_dim"] // 2,):
        raise ValueError(f"row_rope: input {x} / inv_freq {f} do not fit heads={attrs['heads']} "
                         f"head_dim={attrs['head_dim']}")
    return x


def _pool_shape(shapes, attrs):
    if attrs["mode"] not in POOLS:
        raise ValueError(f"pool: mode {attrs['mode']!r} is not one of {sorted(POOLS)}")
    return ("b", shapes[0][-1])


# (name, shape rule, reference, doc): ir.ops wraps them in OpDef
ENCODER_OPS = [
    ("encoder_embedding", _encoder_embedding_shape, _encoder_embedding,
     "word[ids] + token_type[0] + position[position_offset + index of the token in its row]"),
    ("layer_norm", _layer_norm_shape, _layer_norm, "(x - mean) / sqrt(var + eps) * w + b over each row"),
    ("gelu", lambda shapes, attrs: shapes[0], _gelu, "x * Phi(x) (approximate='none': erf; 'tanh')"),
    ("encoder_attention", _encoder_attention_shape, _encoder_attention,
     "softmax(q k^T * scale) v within each row of the packed batch: bidirectional, or causal; GQA by kv_heads"),
    ("row_rope", _row_rope_shape, _row_rope, "rotary embedding (rotate_half pairs) at each token's index in its row"),
    ("pool", _pool_shape, _pool, "one vector per row: mean of its tokens, its first (cls) or last token"),
    ("l2_normalize", lambda shapes, attrs: shapes[0], _l2_normalize, "x / max(||x||_2, 1e-12) per row"),
]
