"""Weight storage formats and their exact bit layouts.

A 2-D weight W of logical shape (rows, cols) — (out_features, in_features) for a
linear, (vocab, hidden) for an embedding — is stored in one of:

  f32   data:   (rows, cols) float32, little-endian.
  f16   data:   (rows, cols) float16 (IEEE binary16), little-endian.
  q8    groups of 32 consecutive columns of one row, symmetric:
          scale = f16(max|w| / 127); q = clip(rint(w / scale), -127, 127)
        data:   (rows, G*8) u32, G = ceil(cols/32); column c of a row lives in
                word c // 4, bits 8*(c % 4) .. +7, as an int8 (two's complement).
        scales: (rows, G) float16.
  q4    groups of 32 consecutive columns of one row, symmetric:
          scale = f16(max|w| / 7); q = clip(rint(w / scale), -8, 7)
        data:   (rows, G*4) u32; column c lives in word c // 8, bits 4*(c % 8) .. +3,
                as the unsigned nibble q + 8 (0..15).
        scales: (rows, G) float16.

  q4a   groups of 32 consecutive columns of one row, asymmetric (exactly GGUF's Q4_1):
          lo = f16(min w); scale = f16((max w - lo) / 15); q = clip(rint((w - lo) / scale), 0, 15)
        data:   (rows, G*4) u32, as q4 but the nibble holds q itself (0..15).
        scales: (rows, G*2) float16: (scale, lo) pairs, so one u32 word per group
                unpacks with unpack2x16float to vec2(scale, lo).
        dequantized w = scale * q + lo.

  q4/q8: dequantized w = scale[row, c // 32] * q. Columns past `cols` (padding of the
  last group, when cols % 32 != 0) hold q = 0 and are never read as weights.
  An all-zero group has scale 0.

Scales are computed from the f16-rounded value so that quantize and
dequantize agree exactly on which scale is used. Shaders read f16 scales two
per u32 with unpack2x16float, which needs no shader-f16 extension.

GGUF block formats kept bit for bit (layouts: quant/kquant.py's docstring):
  q5 (GGUF Q5_0), q5a (Q5_1): blocks of 32, 5 data words + f16 d / (d, m) per block;
    also made from float weights (gguf's own quantizer).
  q2k, q3k, q4k, q5k, q6k (GGUF Q2_K .. Q6_K): super-blocks of 256 columns, kept from a
    GGUF only (rows of whole 256-column blocks); quantize() refuses them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kquant

GROUP_SIZE = 32


@dataclass(frozen=True)
class WeightFormat:
    name: str
    bits: int | None  # None: not group-quantized
    qmax: int = 0  # largest |q|
    qmin: int = 0

    @property
    def quantized(self) -> bool:
        return self.bits is not None

    @property
    def per_word(self) -> int:
        return 32 // self.bits if self.bits else 0

    @property
    def block(self) -> kquant.BlockSpec | None:
        """The GGUF block layout of q5 / q5a / the K formats; None for the formats above."""
        return kquant.SPECS.get(self.name)


FORMATS: dict[str, WeightFormat] = {
    f.name: f
    for f in [
        WeightFormat("f32", None),
        WeightFormat("f16", None),
        WeightFormat("q8", 8, qmax=127, qmin=-127),
        WeightFormat("q4", 4, qmax=7, qmin=-8),
        WeightFormat("q4a", 4, qmax=15, qmin=0),
        WeightFormat("q5", 5),
        WeightFormat("q5a", 5),
        WeightFormat("q2k", 2),
        WeightFormat("q3k", 3),
        WeightFormat("q4k", 4),
        WeightFormat("q5k", 5),
        WeightFormat("q6k", 6),
    ]
}
# scales per group of GROUP_SIZE columns: q4a keeps a (scale, min) pair
_SCALES_PER_GROUP = {"q4": 1, "q8": 1, "q4a": 2}


def part_shapes(fmt: str, shape: tuple[int, ...]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """part name -> (dtype "u32" / "f16" / "f32", shape) that a weight of `fmt` and logical `shape` is stored as."""
    f = FORMATS[fmt]
    if not f.quantized:
        return {"data": (fmt, tuple(shape))}  # f32 / f16: the dtype is the format
    rows, cols = shape
    b = f.block
    if b is not None:
        nb = -(-cols // b.block)
        scales = ("u32", (rows, nb * b.scale_words)) if b.sub else ("f16", (rows, nb * (2 if fmt == "q5a" else 1)))
        return {"data": ("u32", (rows, nb * b.data_words)), "scales": scales}
    groups = _groups(cols)
    return {"data": ("u32", (rows, groups * GROUP_SIZE // f.per_word)),
            "scales": ("f16", (rows, groups * _SCALES_PER_GROUP[fmt]))}


_DTYPE_BYTES = {"u32": 4, "f16": 2, "f32": 4}


def bytes_per_weight(fmt: str, cols: int = 256) -> float:
    """Stored bytes per weight of `fmt` for rows of `cols` columns (256: whole blocks of every format)."""
    parts = part_shapes(fmt, (1, cols))
    return sum(_DTYPE_BYTES[d] * int(np.prod(s)) for d, s in parts.values()) / cols


def _groups(cols: int) -> int:
    return -(-cols // GROUP_SIZE)


def quantize(w: np.ndarray, fmt: str) -> dict[str, np.ndarray]:
    """Encode a 2-D f32 array into the parts of `fmt` ("data", and "scales" for q4/q8)."""
    f = FORMATS[fmt]
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2:
        raise ValueError(f"quantize expects a 2-D array, got shape {w.shape}")
    if fmt == "f32":
        return {"data": np.ascontiguousarray(w)}
    if fmt == "f16":
        return {"data": w.astype(np.float16)}
    if f.block is not None:
        return kquant.quantize(w, fmt)
    rows, cols = w.shape
    g = _groups(cols)
    padded = np.zeros((rows, g * GROUP_SIZE), dtype=np.float32)
    padded[:, :cols] = w
    grouped = padded.reshape(rows, g, GROUP_SIZE)
    if fmt == "q4a":
        return _quantize_q4a(w, grouped, rows, g)
    scales = (np.abs(grouped).max(axis=-1) / np.float32(f.qmax)).astype(np.float16)
    s32 = scales.astype(np.float32)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(s32 > 0, np.rint(grouped / s32), 0.0)
    q = np.clip(q, f.qmin, f.qmax).astype(np.int32).reshape(rows, g * GROUP_SIZE)
    if fmt == "q4":
        u = (q + 8).astype(np.uint32).reshape(rows, -1, 8)
    else:
        u = (q & 0xFF).astype(np.uint32).reshape(rows, -1, 4)
    shifts = (np.arange(u.shape[-1], dtype=np.uint32) * np.uint32(f.bits))
    data = np.bitwise_or.reduce(u << shifts, axis=-1).astype(np.uint32)
    return {"data": data, "scales": scales}


def _pack_nibbles(q: np.ndarray, rows: int) -> np.ndarray:
    """(rows, cols) ints 0..15 -> (rows, cols/8) u32, column c at bits 4*(c%8) of word c//8."""
    u = q.astype(np.uint32).reshape(rows, -1, 8)
    return np.bitwise_or.reduce(u << (np.arange(8, dtype=np.uint32) * np.uint32(4)), axis=-1).astype(np.uint32)


def _quantize_q4a(w: np.ndarray, grouped: np.ndarray, rows: int, g: int) -> dict[str, np.ndarray]:
    valid = np.zeros(grouped.shape, dtype=bool)  # padding columns must not stretch a group's range
    valid.reshape(rows, -1)[:, : w.shape[1]] = True
    lo = np.where(valid, grouped, np.inf).min(axis=-1).astype(np.float16)
    hi = np.where(valid, grouped, -np.inf).max(axis=-1)
    scale = ((hi - lo.astype(np.float32)) / np.float32(15)).astype(np.float16)
    s32, lo32 = scale.astype(np.float32)[..., None], lo.astype(np.float32)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(s32 > 0, np.rint((grouped - lo32) / s32), 0.0)
    q = np.where(valid, np.clip(q, 0, 15), 0).reshape(rows, -1)
    return {"data": _pack_nibbles(q, rows), "scales": np.stack([scale, lo], axis=-1).reshape(rows, 2 * g)}


def dequantize(parts: dict[str, np.ndarray], fmt: str, shape: tuple[int, int]) -> np.ndarray:
    """Decode the parts of `fmt` back to an f32 array of logical `shape`."""
    f = FORMATS[fmt]
    rows, cols = shape
    if not f.quantized:
        return parts["data"].astype(np.float32).reshape(rows, cols)
    if f.block is not None:
        return kquant.dequantize(parts, fmt, (rows, cols))
    data = parts["data"].astype(np.uint32)
    shifts = np.arange(f.per_word, dtype=np.uint32) * np.uint32(f.bits)
    fields = ((data[..., None] >> shifts) & np.uint32((1 << f.bits) - 1)).reshape(rows, -1).astype(np.int32)
    if fmt == "q4a":
        pairs = parts["scales"].astype(np.float32).reshape(rows, -1, 2)
        w = fields.reshape(rows, -1, GROUP_SIZE) * pairs[..., :1] + pairs[..., 1:]
        return w.reshape(rows, -1)[:, :cols].astype(np.float32)
    q = fields - 8 if fmt == "q4" else np.where(fields >= 128, fields - 256, fields)
    scales = parts["scales"].astype(np.float32)
    w = q.reshape(rows, -1, GROUP_SIZE) * scales[..., None]
    return w.reshape(rows, -1)[:, :cols].astype(np.float32)


def quantization_error(w: np.ndarray, w_hat: np.ndarray) -> dict[str, float]:
    """Max abs and RMS error of a decoded weight against the original, plus RMS of the original."""
    d = w_hat.astype(np.float64) - w.astype(np.float64)
    return {
        "max_abs": float(np.abs(d).max()) if d.size else 0.0,
        "rms": float(np.sqrt(np.mean(d * d))) if d.size else 0.0,
        "weight_rms": float(np.sqrt(np.mean(w.astype(np.float64) ** 2))) if w.size else 0.0,
    }
