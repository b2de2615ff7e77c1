"""GPU argmax for greedy decoding (codegen/argmax.py, runtime/gpu_sampling.py) and encode-ahead.

Oracle: numpy's `argmax` of the row widened to float64, which is exactly what the CPU sampler
takes at temperature 0 (sampler.sample_token); the kernel must return the same id, bit for bit
(tolerance: exact - it is a selection, no arithmetic). Rows include ties (lowest id must win),
-inf, +inf, -0 vs +0, NaN (numpy returns the first NaN's id), awkward lengths (not a multiple
of the workgroup, shorter than it, odd for f16's two-per-word layout) and a row other than 0.
"""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

from webllm_py.codegen import build
from webllm_py.codegen.argmax import ArgmaxKey
from webllm_py.runtime.gpu_sampling import gpu_argmax_ok
from webllm_py.runtime.request import Request
from webllm_py.runtime.sampler import SamplingParams

NP = {"f32": np.float32, "f16": np.float16}
UINT = {"f32": np.uint32, "f16": np.uint16}


@pytest.fixture(scope="module")
def runner():
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    pytest.importorskip("wgpu")
    from webllm_py.codegen.runner import KernelRunner, request_device

    try:
        _, device = request_device()
    except Exception as e:  # pragma: no cover - machines without a driver
        pytest.skip(f"no wgpu adapter: {e}")
    return KernelRunner(device)


def _rows(act: str, cols: int, case: str) -> np.ndarray:
    """Two rows of `cols` logits shaped by `case`; the kernel reduces row 1 (row 0 is a decoy
    whose maximum would win if the kernel read the wrong row)."""
    rng = np.random.default_rng(zlib.crc32(repr((act, cols, case)).encode()))
    x = rng.standard_normal((2, cols)).astype(NP[act])
    x[0, :] = 100.0
    r = x[1]
    if case == "ties":  # few distinct values: many ids share the maximum
        r[:] = rng.integers(-3, 4, cols).astype(NP[act])
    elif case == "neg_inf":  # a grammar-masked row: all -inf but a few
        r[:] = -np.inf
        r[rng.choice(cols, 3, replace=False)] = -5.0
    elif case == "all_neg_inf":  # every id -inf: argmax is id 0
        r[:] = -np.inf
    elif case == "zeros":  # -0 and +0 are equal: the lowest id of either wins
        r[:] = -1.0
        r[[cols // 3, cols // 2]] = [-0.0, 0.0]
    elif case == "pos_inf":
        r[[cols - 1, cols // 2]] = np.inf
    elif case == "nan":  # numpy: the first NaN wins over everything, inf included
        r[[cols - 2, cols // 2]] = np.nan
        r[1] = np.inf
    return x


CASES = ["random", "ties", "neg_inf", "all_neg_inf", "zeros", "pos_inf", "nan"]


@pytest.mark.parametrize("act", ["f32", "f16"])
@pytest.mark.parametrize("cols,case", [(49152, c) for c in CASES] + [(1001, "ties"), (7, "random"), (257, "nan")])
def test_argmax_kernel_matches_numpy(runner, act, cols, case):
    if act == "f16" and "shader-f16" not in runner.device.features:
        pytest.skip("adapter lacks shader-f16 (the f16 variant declares f16 aliases)")
    x = _rows(act, cols, case)
    want = int(np.argmax(x[1].astype(np.float64)))
    words = np.frombuffer(x.tobytes() + b"\0" * (-x.nbytes % 4), dtype=np.uint32)
    sentinel = np.array([0xDEADBEEF, 0xDEADBEEF, 0xDEADBEEF, 0xDEADBEEF], dtype=np.uint32)
    # the runner fills the uniform with [n, p, 0, 0]: n = cols, p = the row
    got = runner.run(build(ArgmaxKey(act)), {"logits": words, "out": sentinel}, n=cols, p=1)["out"]
    assert int(got[0]) == want, (case, int(got[0]), want)
    assert (got[1:] == 0xDEADBEEF).all()  # writes only its one word


def test_argmax_key_checks():
    with pytest.raises(ValueError, match="power of two"):
        build(ArgmaxKey("f32", wg=96))
    with pytest.raises(ValueError, match="act must be"):
        build(ArgmaxKey("bf16"))
