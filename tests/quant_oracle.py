"""An independent, deliberately plain implementation of the q4/q8 formats for tests.

Written from the format description (webllm_py/quant/formats.py docstring),
not from the code: per-group loops and Python integer bit twiddling.
"""

from __future__ import annotations

import numpy as np

QMAX = {"q4": 7, "q8": 127}
QMIN = {"q4": -8, "q8": -127}


def fake_quantize(w: np.ndarray, fmt: str) -> np.ndarray:
    """What the quantized weight decodes to, computed group by group."""
    w = np.asarray(w, dtype=np.float32)
    out = np.zeros_like(w)
    rows, cols = w.shape
    for r in range(rows):
        for g0 in range(0, cols, 32):
            grp = w[r, g0 : g0 + 32]
            scale = float(np.float16(np.abs(grp).max() / np.float32(QMAX[fmt])))
            if scale == 0.0:
                continue
            q = np.clip(np.rint(grp / np.float32(scale)), QMIN[fmt], QMAX[fmt])
            out[r, g0 : g0 + 32] = q * np.float32(scale)
    return out


def unpack_row(words: np.ndarray, fmt: str, cols: int) -> list[int]:
    """Signed integer codes of one packed row, with plain Python ints."""
    bits = 4 if fmt == "q4" else 8
    codes = []
    for word in words.tolist():
        for i in range(32 // bits):
            field = (word >> (bits * i)) & ((1 << bits) - 1)
            codes.append(field - 8 if bits == 4 else (field - 256 if field >= 128 else field))
    return codes[:cols]
