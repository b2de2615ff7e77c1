"""GGUF block formats kept bit for bit: Q5_0, Q5_1 and the K-quants Q2_K..Q6_K.

llama.cpp's blocks are byte streams (Q6_K 210 bytes, Q3_K 110, Q5_0 22: not word
aligned) whose codes are interleaved for its SIMD loops. Here each block is
repacked, losslessly, into u32 words in COLUMN order, so a shader reads the 8
codes of 8 consecutive columns from one word of each bit plane. The layouts
(also in docs/bundle-format.md, "Block formats"):

  bit planes of one block of E columns (column c counted within the block):
    nib   E/8 words:  4-bit field of column c at bits 4*(c%8) of word c/8
    two   E/16 words: 2-bit field of column c at bits 2*(c%16) of word c/16
    bit   E/32 words: 1-bit field of column c at bit c%32 of word c/32

  format  GGUF  E    data words / block              scales                     w (f32, in this order)
  q5      Q5_0  32   nib(4) + bit(1) = 5             f16 d per block            d * (q - 16), q = nib | bit << 4
  q5a     Q5_1  32   nib(4) + bit(1) = 5             f16 (d, m) per block       d * q + m
  q2k     Q2_K  256  two(16) = 16                    5 words per block          (d*sc) * q - (dmin*mn), 16-col sub-blocks
  q3k     Q3_K  256  two(16) + bit(8) = 24           5 words per block          (d*(sc-32)) * (two - 4*(1-bit)), 16-col
  q4k     Q4_K  256  nib(32) = 32                    5 words per block          (d*sc) * q - (dmin*mn), 32-col sub-blocks
  q5k     Q5_K  256  nib(32) + bit(8) = 40           5 words per block          (d*sc) * (nib | bit<<4) - (dmin*mn), 32-col
  q6k     Q6_K  256  nib(32) + two(16) = 48          5 words per block          (d*sc) * ((nib | two<<4) - 32), 16-col

  data:   (rows, blocks * words) u32, a row's blocks in column order, each block's planes in
          the order listed. Q5_0/Q5_1's bit plane is the GGUF qh word itself.
  K scales: (rows, blocks * 5) u32 per block: word 0 = f16 d | f16 dmin << 16 (dmin 0 for
          q3k, q6k); words 1..4 = 16 bytes, byte i at bits 8*(i%4) of word 1 + i/4:
            q4k, q5k  bytes 0..7 the 6-bit scales sc[j], 8..15 the 6-bit mins mn[j] of the
                      8 sub-blocks (GGUF packs them in 12 bytes; unpacked here, lossless)
            q3k       the 16 6-bit scales, unsigned 0..63 (GGUF's 12 packed bytes, unpacked)
            q6k       the 16 int8 scales (two's complement)
            q2k       GGUF's 16 bytes as they are: sc = low nibble, mn = high nibble
  q5/q5a scales are f16 like q4/q4a's: (rows, blocks) d, or (rows, 2*blocks) (d, m) pairs.

Dequantization multiplies in exactly gguf.quants.dequantize's order in float32, so the
values are bit-equal to it (tests/test_kquant.py). A weight row must be a whole number of
blocks (cols % E == 0): GGUF files only hold such rows in these types.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QK_K = 256


@dataclass(frozen=True)
class BlockSpec:
    gguf: str  # GGUF type name
    block: int  # columns per block
    block_bytes: int  # GGUF bytes per block
    planes: tuple[str, ...]  # data planes per block, in storage order
    sub: int  # columns per sub-block scale (K formats); 0 for q5 / q5a

    @property
    def data_words(self) -> int:
        return sum(self.block * _PLANE_BITS[p] // 32 for p in self.planes)

    @property
    def scale_words(self) -> int:
        return 5 if self.sub else 0


_PLANE_BITS = {"nib": 4, "two": 2, "bit": 1}
SPECS: dict[str, BlockSpec] = {
    "q5": BlockSpec("Q5_0", 32, 22, ("nib", "bit"), 0),
    "q5a": BlockSpec("Q5_1", 32, 24, ("nib", "bit"), 0),
    "q2k": BlockSpec("Q2_K", QK_K, 84, ("two",), 16),
    "q3k": BlockSpec("Q3_K", QK_K, 110, ("two", "bit"), 16),
    "q4k": BlockSpec("Q4_K", QK_K, 144, ("nib",), 32),
    "q5k": BlockSpec("Q5_K", QK_K, 176, ("nib", "bit"), 32),
    "q6k": BlockSpec("Q6_K", QK_K, 210, ("nib", "two"), 16),
}
BY_GGUF = {s.gguf: name for name, s in SPECS.items()}


def _pack(v: np.ndarray, bits: int) -> np.ndarray:
    """(..., n) small ints -> (..., n*bits/32) u32, field c at bits bits*(c % per) of word c // per."""
    per = 32 // bits
    u = v.astype(np.uint32).reshape(*v.shape[:-1], -1, per)
    return np.bitwise_or.reduce(u << (np.arange(per, dtype=np.uint32) * np.uint32(bits)), axis=-1).astype(np.uint32)


def _unpack(w: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of _pack: (..., words) u32 -> (..., words*32/bits) uint8."""
    per = 32 // bits
    f = (w[..., None] >> (np.arange(per, dtype=np.uint32) * np.uint32(bits))) & np.uint32((1 << bits) - 1)
    return f.reshape(*w.shape[:-1], -1).astype(np.uint8)


def _bytes_words(b: np.ndarray) -> np.ndarray:
    """(..., 4k) uint8 -> (..., k) u32 little-endian."""
    return np.ascontiguousarray(b.astype(np.uint8)).view("<u4").astype(np.uint32)


def _words_bytes(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.astype("<u4")).view(np.uint8)


def _f16_bits(b: np.ndarray) -> np.ndarray:
    """(..., 2) uint8 -> (...) u32 holding the f16's bits."""
    return np.ascontiguousarray(b).view("<u2")[..., 0].astype(np.uint32)


# ---- GGUF block bytes <-> per-column codes (element order) and per-block fields


def _lohi_nibbles(qs: np.ndarray, run: int) -> np.ndarray:
    """ggml nibble runs: byte l of each `run`-byte chunk holds element l (low) and l + run (high)."""
    q = qs.reshape(*qs.shape[:-1], -1, 1, run)
    return np.concatenate([q & 0x0F, q >> 4], axis=-2).reshape(*qs.shape[:-1], -1)


def _crumbs(qs: np.ndarray) -> np.ndarray:
    """ggml 2-bit runs: byte l of each 32-byte chunk holds elements l, l+32, l+64, l+96 (bits 0, 2, 4, 6)."""
    q = qs.reshape(*qs.shape[:-1], -1, 1, 32)
    return ((q >> (np.arange(4, dtype=np.uint8) * 2).reshape(4, 1)) & 3).reshape(*qs.shape[:-1], -1)


def _bitmask(qh: np.ndarray) -> np.ndarray:
    """ggml 32-byte bit masks: bit i of byte l is element 32 i + l."""
    q = qh.reshape(*qh.shape[:-1], 1, 32)
    return ((q >> np.arange(8, dtype=np.uint8).reshape(8, 1)) & 1).reshape(*qh.shape[:-1], -1)


def _scale_min_k4(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K/Q5_K's 12 bytes -> 8 6-bit scales and 8 6-bit mins (ggml get_scale_min_k4)."""
    d, m, md = s[..., 0:4], s[..., 4:8], s[..., 8:12]
    sc = np.concatenate([d & 0x3F, (md & 0x0F) | ((d >> 2) & 0x30)], axis=-1)
    mn = np.concatenate([m & 0x3F, (md >> 4) | ((m >> 2) & 0x30)], axis=-1)
    return sc, mn


def _pack_scale_min_k4(sc: np.ndarray, mn: np.ndarray) -> np.ndarray:
    out = np.concatenate([(sc[..., :4] & 0x3F) | ((sc[..., 4:] >> 4) << 6),
                          (mn[..., :4] & 0x3F) | ((mn[..., 4:] >> 4) << 6),
                          (sc[..., 4:] & 0x0F) | ((mn[..., 4:] & 0x0F) << 4)], axis=-1)
    return out.astype(np.uint8)


def _scales_q3k(s: np.ndarray) -> np.ndarray:
    """Q3_K's 12 bytes -> 16 6-bit scales (low nibbles in bytes 0..7, high crumbs in 8..11)."""
    lo = ((s[..., None, 0:8] >> np.array([[0], [4]], dtype=np.uint8)) & 0x0F).reshape(*s.shape[:-1], 16)
    hi = ((s[..., None, 8:12] >> np.array([[0], [2], [4], [6]], dtype=np.uint8)) & 3).reshape(*s.shape[:-1], 16)
    return (lo | (hi << 4)).astype(np.uint8)


def _pack_scales_q3k(sc: np.ndarray) -> np.ndarray:
    lo = (sc[..., :8] & 0x0F) | ((sc[..., 8:] & 0x0F) << 4)
    hi = sc >> 4
    h = hi[..., 0:4] | (hi[..., 4:8] << 2) | (hi[..., 8:12] << 4) | (hi[..., 12:16] << 6)
    return np.concatenate([lo, h], axis=-1).astype(np.uint8)


def _decode(fmt: str, b: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """GGUF blocks (..., block_bytes) -> (planes' per-column codes, d|dmin<<16 word, 16 scale bytes)."""
    z = np.zeros(b.shape[:-1], np.uint32)
    if fmt in ("q5", "q5a"):
        off = 2 if fmt == "q5" else 4
        qh = _bytes_words(b[..., off:off + 4])[..., 0]
        d = _f16_bits(b[..., 0:2]) | (_f16_bits(b[..., 2:4]) << 16 if fmt == "q5a" else z)
        return {"nib": _lohi_nibbles(b[..., off + 4:], 16), "bit": _unpack(qh[..., None], 1)}, d, None
    if fmt == "q2k":
        return {"two": _crumbs(b[..., 16:80])}, _f16_bits(b[..., 80:82]) | (_f16_bits(b[..., 82:84]) << 16), b[..., 0:16]
    if fmt == "q3k":
        return ({"two": _crumbs(b[..., 32:96]), "bit": _bitmask(b[..., 0:32])}, _f16_bits(b[..., 108:110]),
                _scales_q3k(b[..., 96:108]))
    if fmt in ("q4k", "q5k"):
        dd = _f16_bits(b[..., 0:2]) | (_f16_bits(b[..., 2:4]) << 16)
        sc, mn = _scale_min_k4(b[..., 4:16])
        planes = {"nib": _lohi_nibbles(b[..., -128:], 32)}
        if fmt == "q5k":
            planes["bit"] = _bitmask(b[..., 16:48])
        return planes, dd, np.concatenate([sc, mn], axis=-1)
    if fmt == "q6k":
        return ({"nib": _lohi_nibbles(b[..., 0:128], 64), "two": _crumbs(b[..., 128:192])}, _f16_bits(b[..., 208:210]),
                b[..., 192:208])
    raise ValueError(f"{fmt!r} is not a GGUF block format ({', '.join(SPECS)})")


def _encode(fmt: str, planes: dict[str, np.ndarray], d: np.ndarray, sb: np.ndarray | None) -> np.ndarray:
    """Inverse of _decode: the GGUF block bytes."""
    def f16(bits: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(bits.astype("<u2")[..., None]).view(np.uint8)

    def nibbles(q: np.ndarray, run: int) -> np.ndarray:
        q = q.reshape(*q.shape[:-1], -1, 2, run)
        return (q[..., 0, :] | (q[..., 1, :] << 4)).reshape(*q.shape[:-3], -1)

    def crumbs(q: np.ndarray) -> np.ndarray:
        q = q.reshape(*q.shape[:-1], -1, 4, 32)
        return (q[..., 0, :] | (q[..., 1, :] << 2) | (q[..., 2, :] << 4) | (q[..., 3, :] << 6)).reshape(*q.shape[:-3], -1)

    def bitmask(q: np.ndarray) -> np.ndarray:
        q = q.reshape(*q.shape[:-1], 8, 32)
        return np.bitwise_or.reduce(q << np.arange(8, dtype=np.uint8).reshape(8, 1), axis=-2).astype(np.uint8)

    lo, hi = d & 0xFFFF, d >> 16
    if fmt in ("q5", "q5a"):
        qh = _words_bytes(_pack(planes["bit"], 1))
        head = [f16(lo)] + ([f16(hi)] if fmt == "q5a" else [])
        parts = head + [qh, nibbles(planes["nib"], 16)]
    elif fmt == "q2k":
        parts = [sb, crumbs(planes["two"]), f16(lo), f16(hi)]
    elif fmt == "q3k":
        parts = [bitmask(planes["bit"]), crumbs(planes["two"]), _pack_scales_q3k(sb), f16(lo)]
    elif fmt in ("q4k", "q5k"):
        parts = [f16(lo), f16(hi), _pack_scale_min_k4(sb[..., :8], sb[..., 8:])]
        parts += ([bitmask(planes["bit"])] if fmt == "q5k" else []) + [nibbles(planes["nib"], 32)]
    else:  # q6k
        parts = [nibbles(planes["nib"], 64), crumbs(planes["two"]), sb, f16(lo)]
    return np.concatenate([p.astype(np.uint8) for p in parts], axis=-1)


# ---- bundle parts


def from_gguf(fmt: str, raw: np.ndarray, rows: int, cols: int) -> dict[str, np.ndarray]:
    """A (rows, cols) tensor's GGUF blocks (any uint8 view of its bytes) -> the bundle parts of `fmt`."""
    s = SPECS[fmt]
    if cols % s.block:
        raise ValueError(f"{fmt} ({s.gguf}) needs rows of whole {s.block}-column blocks; a row has {cols} columns")
    b = np.asarray(raw).reshape(-1).view(np.uint8).reshape(rows, cols // s.block, s.block_bytes)
    planes, d, sb = _decode(fmt, b)
    data = np.concatenate([_pack(planes[p], _PLANE_BITS[p]) for p in s.planes], axis=-1).reshape(rows, -1)
    if s.sub:
        scales = np.concatenate([d[..., None], _bytes_words(sb)], axis=-1).reshape(rows, -1)
    else:
        scales = np.ascontiguousarray(d.astype("<u4")).view(np.float16).reshape(rows, -1)
        scales = scales if fmt == "q5a" else scales[:, 0::2]
    return {"data": data.astype(np.uint32), "scales": np.ascontiguousarray(scales)}


def _fields(parts: dict[str, np.ndarray], fmt: str, rows: int, cols: int):
    s = SPECS[fmt]
    nb = -(-cols // s.block)  # q5 / q5a made from float weights pad the last block with zeros
    words = parts["data"].astype(np.uint32).reshape(rows, nb, s.data_words)
    planes, at = {}, 0
    for p in s.planes:
        n = s.block * _PLANE_BITS[p] // 32
        planes[p] = _unpack(words[..., at:at + n], _PLANE_BITS[p])
        at += n
    if s.sub:
        sw = parts["scales"].astype(np.uint32).reshape(rows, nb, 5)
        return planes, sw[..., 0], _words_bytes(sw[..., 1:]).reshape(rows, nb, 16)
    h = np.ascontiguousarray(parts["scales"]).view("<u2").astype(np.uint32).reshape(rows, nb, -1)
    return planes, h[..., 0] | (h[..., 1] << 16 if fmt == "q5a" else 0), None


def to_gguf(parts: dict[str, np.ndarray], fmt: str, rows: int, cols: int) -> np.ndarray:
    """Inverse of from_gguf: the GGUF bytes, (rows, blocks * block_bytes) uint8."""
    return _encode(fmt, *_fields(parts, fmt, rows, cols)).reshape(rows, -1)


def dequantize(parts: dict[str, np.ndarray], fmt: str, shape: tuple[int, int]) -> np.ndarray:
    """The f32 weights, computed in gguf.quants.dequantize's order (bit-equal to it)."""
    rows, cols = shape
    s = SPECS[fmt]
    planes, d, sb = _fields(parts, fmt, rows, cols)
    d32 = (d & 0xFFFF).astype(np.uint16).view(np.float16).astype(np.float32)[..., None]
    m32 = (d >> 16).astype(np.uint16).view(np.float16).astype(np.float32)[..., None]
    if fmt in ("q5", "q5a"):
        q = (planes["nib"] | (planes["bit"] << 4)).astype(np.float32)
        w = d32 * (q - np.float32(16)) if fmt == "q5" else d32 * q + m32
        return w.reshape(rows, -1)[:, :cols].astype(np.float32)
    nsub = s.block // s.sub
    if fmt in ("q4k", "q5k"):
        sc, mn = sb[..., :8].astype(np.float32), sb[..., 8:].astype(np.float32)
        q = planes["nib"] | (planes["bit"] << 4) if fmt == "q5k" else planes["nib"]
    elif fmt == "q2k":
        sc, mn = (sb & 0x0F).astype(np.float32), (sb >> 4).astype(np.float32)
        q = planes["two"]
    elif fmt == "q3k":
        sc, mn = sb.astype(np.float32) - np.float32(32), None
        q = planes["two"].astype(np.int8) - ((planes["bit"] ^ 1) << 2).astype(np.int8)
    else:  # q6k
        sc, mn = sb.view(np.int8).astype(np.float32), None
        q = (planes["nib"] | (planes["two"] << 4)).astype(np.int8) - np.int8(32)
    q = q.astype(np.float32).reshape(rows, -1, nsub, s.sub)
    w = (d32 * sc)[..., None] * q
    if mn is not None:
        w = w - (m32 * mn)[..., None]
    return w.reshape(rows, cols).astype(np.float32)


def quantize(w: np.ndarray, fmt: str) -> dict[str, np.ndarray]:
    """Float weights -> q5 / q5a through the gguf package's own Q5_0 / Q5_1 quantizer (padded to
    whole blocks of 32 with zeros). The K formats are made by llama.cpp's quantizer, not here."""
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize as gguf_quantize

    s = SPECS[fmt]
    if s.sub:
        raise ValueError(f"{fmt} holds a GGUF file's {s.gguf} blocks as they are and cannot be made from float "
                         f"weights here: build from a {s.gguf} .gguf, or choose q4, q4a, q5, q5a or q8")
    rows, cols = w.shape
    padded = np.zeros((rows, -(-cols // 32) * 32), np.float32)
    padded[:, :cols] = w
    raw = gguf_quantize(padded, GGMLQuantizationType[s.gguf])
    return from_gguf(fmt, raw, rows, padded.shape[1])
