"""The op catalog: for every op, a shape rule and a numpy reference.

This table is the one definition of what each op computes. The reference
interpreter runs these functions; every WGSL kernel is tested against them.

Conventions (HF vocabulary throughout):
  n          tokens in this step, p tokens already in the KV cache;
  x          activations (n, features), f32, row-major;
  linear W   (out_features, in_features), as in torch.nn.Linear;
  caches     (context_window, num_key_value_heads * head_dim), rows = positions; a sliding-window
             layer's caches may be a ring of R rows instead (kv_write / attention attr `ring`:
             position t lives in row t % R);
  heads      are contiguous blocks of head_dim features (HF's view(n, heads, head_dim)).
Ops that change state (kv_write) have no output value; split has several.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

ShapeRule = Callable[[list[tuple], dict[str, Any]], tuple | None]


@dataclass(frozen=True)
class StepContext:
    """What a reference op may know about the step besides its inputs."""

    n: int  # tokens in this step
    p: int  # tokens already in the KV cache before this step
    # the position after the last token of the whole forward call this step is a chunk of (its
    # last chunk's p + n; 0: this step's p + n): longrope's table switch (_rope) depends on it
    end: int = 0


Reference = Callable[[list[np.ndarray], dict[str, Any], StepContext], np.ndarray | None]


@dataclass(frozen=True)
class OpDef:
    name: str
    shape_rule: ShapeRule
    reference: Reference
    doc: str


def _same_as_first(shapes, attrs):
    return shapes[0]


# -- references ------------------------------------------------------------------

def _embedding(inputs, attrs, ctx):
    # scale (optional, Gemma's sqrt(hidden)): applied to the looked-up rows, not folded into the
    # table, which may be tied to the LM head and kept as a GGUF's blocks
    ids, table = inputs
    out = table[ids.astype(np.int64)].astype(np.float32)
    return out * np.float32(attrs["scale"]) if "scale" in attrs else out


def _rms_norm(inputs, attrs, ctx):
    x, w = inputs
    group = attrs.get("group") or x.shape[-1]
    xs = x.reshape(x.shape[0], -1, group).astype(np.float32)
    inv = 1.0 / np.sqrt(np.mean(xs * xs, axis=-1, keepdims=True) + np.float32(attrs["eps"]))
    return (xs * inv.astype(np.float32) * w.astype(np.float32)).reshape(x.shape).astype(np.float32)


def _add(inputs, attrs, ctx):
    a, b = inputs
    return (a + b).astype(np.float32)


def _linear(inputs, attrs, ctx):
    x, w = inputs[0], inputs[1]
    y = x.astype(np.float32) @ w.astype(np.float32).T
    if len(inputs) > 2:
        y = y + inputs[2].astype(np.float32)
    return y.astype(np.float32)


def rope_cos_sin(inv_freq: np.ndarray, p: int, n: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin tables (n, len(inv_freq)) for positions p..p+n-1, times `scale`, in f32 as
    transformers computes them."""
    pos = np.arange(p, p + n, dtype=np.float32)[:, None]
    ang = (pos * inv_freq.astype(np.float32)[None, :]).astype(np.float32)
    s = np.float32(scale)
    return (np.cos(ang) * s).astype(np.float32), (np.sin(ang) * s).astype(np.float32)


def rope_table(inv_freq: np.ndarray, attrs: dict[str, Any], ctx: StepContext) -> np.ndarray:
    """The inv_freq row a rope step uses. With `long_after` (longrope) the param holds the short
    then the long frequencies; a forward call whose end (max position + 1, as transformers'
    longrope_frequency_update) exceeds long_after uses the long ones for all its tokens."""
    if not attrs.get("long_after"):
        return inv_freq
    short, long = np.split(inv_freq, 2)
    return long if (ctx.end or ctx.p + ctx.n) > attrs["long_after"] else short


def _rope(inputs, attrs, ctx):
    # rotate_half layout over the first rotary_dim features of each head (all of them by
    # default): pairs are (i, i + rotary_dim/2); the rest of the head passes through
    # (transformers' partial rotary). cos_scale: longrope's attention factor on cos and sin.
    x, inv_freq = inputs
    hd, heads = attrs["head_dim"], attrs["heads"]
    rot = attrs.get("rotary_dim") or hd
    half = rot // 2
    xs = x.reshape(ctx.n, heads, hd)
    cos, sin = rope_cos_sin(rope_table(inv_freq, attrs, ctx), ctx.p, ctx.n, attrs.get("cos_scale", 1.0))
    cos, sin = cos[:, None, :], sin[:, None, :]
    x1, x2 = xs[..., :half], xs[..., half:rot]
    out = np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin, xs[..., rot:]], axis=-1)
    return out.reshape(x.shape).astype(np.float32)


def kv_rows(positions: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    """The cache rows of key positions: the positions themselves, or with a ring of R rows
    (attr `ring`, a sliding-window layer's cache) position t in row t % R."""
    ring = attrs.get("ring") or 0
    return positions % ring if ring else positions


def _kv_write(inputs, attrs, ctx):
    x, cache = inputs
    cache[kv_rows(np.arange(ctx.p, ctx.p + ctx.n), attrs)] = x
    return None


def _attention(inputs, attrs, ctx):
    # Causal: the query at position p+i sees cache rows 0..p+i; with a sliding `window` only rows
    # p+i-window+1..p+i (transformers' sliding mask: kv_idx > q_idx - window). `softcap` (Gemma 2):
    # the scaled scores become tanh(s / softcap) * softcap before the mask and softmax. `ring` R:
    # key t is read from row t % R (kv_rows); only keys in the window are unmasked, and a ring
    # holds them all when R >= window + n - 1 (the step's rows are written before it reads).
    q, kc, vc = inputs
    heads, kv_heads, hd = attrs["heads"], attrs["kv_heads"], attrs["head_dim"]
    group = heads // kv_heads
    total = ctx.p + ctx.n
    qs = q.reshape(ctx.n, heads, hd).astype(np.float32)
    rows = kv_rows(np.arange(total), attrs)
    ks = kc[rows].reshape(total, kv_heads, hd).astype(np.float32)
    vs = vc[rows].reshape(total, kv_heads, hd).astype(np.float32)
    ks = np.repeat(ks, group, axis=1)  # (total, heads, hd)
    vs = np.repeat(vs, group, axis=1)
    scores = np.einsum("nhd,thd->hnt", qs, ks) * np.float32(attrs["scale"])
    if attrs.get("softcap"):
        cap = np.float32(attrs["softcap"])
        scores = (np.tanh(scores / cap) * cap).astype(np.float32)
    pos = ctx.p + np.arange(ctx.n)
    mask = np.arange(total)[None, :] > pos[:, None]
    if attrs.get("window"):
        mask |= np.arange(total)[None, :] <= (pos - attrs["window"])[:, None]
    scores = np.where(mask[None], -np.inf, scores)
    scores = scores - scores.max(axis=-1, keepdims=True)
    w = np.exp(scores)
    w = w / w.sum(axis=-1, keepdims=True)
    out = np.einsum("hnt,thd->nhd", w, vs)
    return out.reshape(ctx.n, heads * hd).astype(np.float32)


def _silu_mul(inputs, attrs, ctx):
    g, u = inputs
    g = g.astype(np.float32)
    return (g / (1.0 + np.exp(-g)) * u).astype(np.float32)


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """torch's gelu(approximate="tanh") ("gelu_pytorch_tanh"), in f32."""
    x = x.astype(np.float32)
    return (0.5 * x * (1.0 + np.tanh(np.float32(0.7978845608028654) * (x + np.float32(0.044715) * x * x * x))))


def _gelu_mul(inputs, attrs, ctx):
    g, u = inputs
    return (gelu_tanh(g) * u).astype(np.float32)


def _softcap(inputs, attrs, ctx):
    cap = np.float32(attrs["cap"])
    return (np.tanh(inputs[0].astype(np.float32) / cap) * cap).astype(np.float32)


def _split(inputs, attrs, ctx):
    bounds = np.cumsum(attrs["sizes"])[:-1]
    return [part.copy() for part in np.split(inputs[0], bounds, axis=-1)]


def _split_shape(shapes, attrs):
    (x,) = shapes
    if sum(attrs["sizes"]) != x[-1]:
        raise ValueError(f"split: sizes {attrs['sizes']} do not add up to {x[-1]}")
    return [tuple(x[:-1]) + (s,) for s in attrs["sizes"]]


def _last_row(inputs, attrs, ctx):
    return inputs[0][-1:].copy()


# -- shape rules -----------------------------------------------------------------

def _embedding_shape(shapes, attrs):
    (n,), (vocab, hidden) = shapes
    return (n, hidden)


def _linear_shape(shapes, attrs):
    x, w = shapes[0], shapes[1]
    if x[-1] != w[1]:
        raise ValueError(f"linear: input features {x[-1]} != weight in_features {w[1]}")
    if len(shapes) > 2 and tuple(shapes[2]) != (w[0],):
        raise ValueError(f"linear: bias shape {shapes[2]} != ({w[0]},)")
    return (x[0], w[0])


def _rms_norm_shape(shapes, attrs):
    x, w = shapes
    group = attrs.get("group") or x[-1]
    if tuple(w) != (group,) or x[-1] % group:
        raise ValueError(f"rms_norm: weight {w} does not fit input {x} with group {group}")
    return x


def _rope_shape(shapes, attrs):
    x, f = shapes
    hd = attrs["head_dim"]
    rot = attrs.get("rotary_dim") or hd
    tables = 2 if attrs.get("long_after") else 1  # longrope: short then long frequencies
    if rot % 2 or not 0 < rot <= hd:
        raise ValueError(f"rope: rotary_dim {rot} must be even and in 2..head_dim ({hd})")
    if x[-1] != attrs["heads"] * hd or tuple(f) != (tables * rot // 2,):
        raise ValueError(f"rope: input {x} / inv_freq {f} do not fit heads={attrs['heads']} head_dim={hd} "
                         f"rotary_dim={rot} tables={tables}")
    return x


def _attention_shape(shapes, attrs):
    q, kc, vc = shapes
    if attrs["heads"] % attrs["kv_heads"]:
        raise ValueError("attention: heads must be a multiple of kv_heads")
    ring = attrs.get("ring") or 0
    if ring and not 0 < attrs.get("window", 0) <= ring:
        raise ValueError(f"attention: ring {ring} needs a sliding window of at most {ring} keys "
                         f"(got window {attrs.get('window', 0)})")
    return (q[0], attrs["heads"] * attrs["head_dim"])


def _kv_write_shape(shapes, attrs):
    return None


def _last_row_shape(shapes, attrs):
    return (1,) + tuple(shapes[0][1:])


OPS: dict[str, OpDef] = {
    d.name: d
    for d in [
        OpDef("embedding", _embedding_shape, _embedding, "out[i] = table[ids[i]] (* scale)"),
        OpDef("rms_norm", _rms_norm_shape, _rms_norm, "x / sqrt(mean(x^2 over each `group` features) + eps) * w"),
        OpDef("add", _same_as_first, _add, "a + b"),
        OpDef("linear", _linear_shape, _linear, "x @ W.T (+ bias)"),
        OpDef("rope", _rope_shape, _rope, "rotary embedding (rotate_half pairs over the first rotary_dim "
                                                 "features of each head) at positions p..p+n-1"),
        OpDef("kv_write", _kv_write_shape, _kv_write, "cache[p:p+n] = x (a ring of R rows: cache[(p:p+n) % R])"),
        OpDef("attention", _attention_shape, _attention, "causal GQA softmax([softcap] q k^T * scale) v over cache rows 0..p+n-1 [last `window` rows]"),
        OpDef("silu_mul", _same_as_first, _silu_mul, "silu(gate) * up"),
        OpDef("gelu_mul", _same_as_first, _gelu_mul, "gelu_tanh(gate) * up (Gemma's GeGLU)"),
        OpDef("softcap", _same_as_first, _softcap, "tanh(x / cap) * cap (Gemma 2's final logit soft-capping)"),
        OpDef("last_row", _last_row_shape, _last_row, "x[n-1:n]"),
        OpDef("split", _split_shape, _split, "consecutive column ranges of x (several outputs)"),
    ]
}

from .encoder_ops import ENCODER_OPS  # noqa: E402  (the encoder models' ops, same table)

OPS.update({name: OpDef(name, shape, ref, doc) for name, shape, ref, doc in ENCODER_OPS})
