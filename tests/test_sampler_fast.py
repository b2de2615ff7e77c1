"""The candidate-band sampler (runtime/sampler.py sample_from_probs, softmax_probs) picks the ids
the literal readings of docs/sampling.md pick, for every row, setting and draw tried.

Two independent references:
- `full_sort_reading`: the previous numpy implementation, kept only here: every probability
  sorted, running sums over the whole row (the straightforward vectorised reading);
- `make_sampler_golden.sample`: the golden generator's plain-Python reading (web/test/fixtures),
  from logits, with Python's own floats and sums (slow at large V, so few of those cases).
Ids must be equal (no tolerance: the spec fixes every sum and its order).
"""

from __future__ import annotations

import importlib.util
import math
import threading
from pathlib import Path

import numpy as np
import pytest

from webllm_py.runtime import sampler
from webllm_py.runtime.sampler import sample_from_probs, sample_token, softmax_probs, uniform

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("make_sampler_golden", REPO / "web/test/fixtures/make_sampler_golden.py")
golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden)  # type: ignore[union-attr]

TOP_P = (0.5, 0.9, 0.95, 0.999, 1.0)
TOP_K = (0, 1, 20, 64)
MIN_P = (0.0, 0.05)
U_EDGES = (0.0, 1.0 - 2.0**-24)  # the PRNG's smallest and largest draws


def full_sort_reading(probs: np.ndarray, top_p: float, u01: float, top_k: int = 0, min_p: float = 0.0,
                      _sorted: tuple[np.ndarray, np.ndarray] | None = None) -> int:
    """Steps 6-7 as sampler.py read them before the bands (`_sorted`: the row's sorted values and
    their running sums, computed once per row to keep the large-V cases quick)."""
    sorted_vals, cum = _sorted if _sorted is not None else full_sort(probs)
    n = len(sorted_vals)
    if top_p >= 1.0:
        k = n
    else:
        hit = np.flatnonzero(cum >= top_p)
        k = int(hit[0]) + 1 if len(hit) else n
    if top_k > 0:
        k = min(k, int(top_k))
    if min_p > 0:
        k = int(np.count_nonzero(sorted_vals[:k] >= min_p * sorted_vals[0]))
    u = u01 * float(cum[k - 1])
    i = int(np.searchsorted(cum[:k], u, side="right"))
    if i >= k:
        i = k - 1
    v = sorted_vals[i]
    cand = np.flatnonzero(probs >= v)
    order = cand[np.argsort(-probs[cand], kind="stable")]
    return int(order[i])


def full_sort(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sorted_vals = -np.sort(-probs)
    return sorted_vals, np.cumsum(sorted_vals)


def old_softmax(x: np.ndarray, temperature: float) -> np.ndarray:
    z = x / float(temperature)
    e = np.exp(z - np.max(z))
    return e / np.cumsum(e)[-1]


def logits(kind: str, vocab: int, rng: np.random.Generator) -> np.ndarray:
    """float32 rows widened to float64, as process_logits gives them."""
    if kind == "normal":
        x = rng.standard_normal(vocab) * 2.5
    elif kind == "peaked":  # a few ids hold nearly everything
        x = rng.standard_normal(vocab)
        x[rng.choice(vocab, 3, replace=False)] += (16.0, 14.0, 11.0)
    elif kind == "open":  # a flat bulk holds much of the mass: the kept prefix is long
        x = rng.standard_normal(vocab) * 2.0
        m = min(32, vocab)
        x[rng.choice(vocab, m, replace=False)] = np.log(vocab) + 2.0 + np.linspace(-1.5, -5.0, m)
    elif kind == "ties":  # few distinct values: the cut and the draw land inside tie groups
        x = rng.choice(np.array([-3.0, 0.0, 1.0, 2.0, 2.0, 4.5]), vocab)
    elif kind == "flat":  # every id equal
        x = np.zeros(vocab)
    elif kind == "masked":  # a grammar mask: most ids -inf (probability 0)
        x = rng.standard_normal(vocab) * 3.0
        x[rng.random(vocab) < 0.95] = -np.inf
        x[int(rng.integers(vocab))] = 2.0
    elif kind == "wide":  # a spread of hundreds of nats: most probabilities below 2^-54 or 0
        x = rng.standard_normal(vocab) * 40.0
    else:
        raise ValueError(kind)
    return x.astype(np.float32).astype(np.float64)


def draws(seed: int, n: int) -> list[float]:
    return [uniform(seed, c) for c in range(n)] + list(U_EDGES)


def check_row(probs: np.ndarray, us: list[float], settings=None) -> int:
    """Every setting x draw: the band sampler's id == the full-sort reading's; returns the count."""
    srt = full_sort(probs)
    n = 0
    for top_p, top_k, min_p in settings or [(p, k, m) for p in TOP_P for k in TOP_K for m in MIN_P]:
        for u in us:
            want = full_sort_reading(probs, top_p, u, top_k, min_p, srt)
            got = sample_from_probs(probs, top_p, u, top_k, min_p)
            assert got == want, (top_p, top_k, min_p, u)
            n += 1
    return n


KINDS = ("normal", "peaked", "open", "ties", "flat", "masked", "wide")


@pytest.mark.parametrize("vocab", [7, 257, 3000, 49152])
@pytest.mark.parametrize("kind", KINDS)
def test_bands_match_full_sort(vocab: int, kind: str) -> None:
    rng = np.random.default_rng([vocab, KINDS.index(kind)])
    for temperature in (0.3, 1.0, 1.7):
        x = logits(kind, vocab, rng)
        probs = softmax_probs(x, temperature)
        check_row(probs, draws(vocab + int(temperature * 10), 3))


@pytest.mark.parametrize("kind", ["peaked", "open", "ties", "masked"])
def test_bands_match_full_sort_gemma_vocab(kind: str) -> None:
    """V = 262144 (Gemma 3): the settings generation_configs use, and the grid's corners."""
    rng = np.random.default_rng([262144, KINDS.index(kind)])
    probs = softmax_probs(logits(kind, 262144, rng), 1.0)
    settings = [(0.9, 0, 0.0), (0.95, 64, 0.0), (0.8, 20, 0.0), (1.0, 0, 0.0), (0.999, 0, 0.05),
                (0.5, 1, 0.0), (1.0, 64, 0.05)]
    check_row(probs, draws(3, 3), settings)


def test_tail_below_half_an_ulp() -> None:
    """top_p 1 without top_k keeps every id, but the values < 2^-54 cannot move a running sum
    >= 0.5, so the sampler leaves them unsorted: a row where most of the ids are such a tail
    (and zeros), with tiny ties, and draws up to the largest."""
    rng = np.random.default_rng(5)
    x = np.full(20000, -200.0)
    x[:30] = rng.standard_normal(30)
    x[30:5000] = -38.0 - rng.random(4970) * 5  # around 2^-54 relative to the top
    x[5000:5100] = -37.5  # a tie group near the edge
    x[6000:7000] = -np.inf
    probs = softmax_probs(rng.permutation(x), 1.0)
    assert np.count_nonzero((probs > 0) & (probs < 2.0**-54)) > 1000
    us = draws(11, 20) + [1.0 - 2.0**-25, 1.0 - 2.0**-53, 1.0]  # past the PRNG's range: the guard
    check_row(probs, us, [(1.0, 0, 0.0), (1.0, 40, 0.0), (0.999999, 0, 0.0), (1.0, 0, 1e-30),
                          (1.0 - 2.0**-53, 0, 0.0), (1.0 - 2.0**-53, 30, 0.0)])


@pytest.mark.parametrize("kind", ["normal", "flat", "ties"])
def test_large_top_k(kind: str) -> None:
    """top_k in the thousands: the first band's narrowing gives up, the bands go on."""
    probs = softmax_probs(logits(kind, 49152, np.random.default_rng(8)), 1.0)
    check_row(probs, draws(4, 2), [(p, k, 0.0) for p in (0.5, 0.999, 1.0) for k in (1500, 3000, 40000)])


def test_ties_straddling_the_cut() -> None:
    """The top_p cut and the drawn position inside one group of equal values: the lower ids
    come first, whichever band they fall in."""
    probs = np.array([0.1] * 5 + [0.05] * 10 + [0.001] * 20 + [0.0] * 3, dtype=np.float64)
    probs = probs / np.cumsum(probs)[-1]
    probs = np.random.default_rng(2).permutation(probs)
    us = [i / 64 for i in range(64)] + list(U_EDGES)
    check_row(probs, us)


@pytest.mark.parametrize(
    "probs",
    [
        np.array([np.nan, 0.5, 0.5]),
        np.array([0.2, -0.1, 0.9]),
        np.array([0.0, 0.0, 0.0, 0.0]),
        np.array([np.inf, 0.2, 0.1]),
        np.array([1e-300, 2e-300, 3e-300]),  # no distribution: the sum is far below 0.5
        np.array([0.1, 0.2, 0.05, 0.0]),  # sums to 0.35
    ],
    ids=["nan", "negative", "zeros", "inf", "tiny", "short"],
)
def test_no_distribution_takes_the_full_sort(probs: np.ndarray) -> None:
    def outcome(f, *args):  # the id, or the error's type (a NaN row finds no id either way)
        try:
            return f(*args)
        except IndexError as e:
            return type(e)

    for top_p, top_k, min_p in [(0.9, 0, 0.0), (1.0, 0, 0.0), (1.0, 2, 0.0), (0.5, 0, 0.5)]:
        for u in (0.0, 0.3, 1.0 - 2.0**-24):
            args = (probs, top_p, u, top_k, min_p)
            assert outcome(sample_from_probs, *args) == outcome(full_sort_reading, *args), (top_p, top_k, min_p, u)


def test_min_p_past_one_is_the_full_sorts_clamp() -> None:
    probs = softmax_probs(np.random.default_rng(3).standard_normal(500), 1.0)
    for min_p in (1.0, 1.5):
        for u in (0.0, 0.5):
            assert sample_from_probs(probs, 0.9, u, 0, min_p) == full_sort_reading(probs, 0.9, u, 0, min_p)


@pytest.mark.parametrize("n", [1, 8191, 8192, 8193, 16385, 262144])
def test_softmax_in_place_is_the_plain_expression(n: int) -> None:
    """Same bits as z = x / t, exp(z - max), e / np.cumsum(e)[-1], with or without `out`, for
    lengths around the sequential sum's chunks; float32 rows keep the plain expression."""
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n) * 4.0
    x[rng.random(n) < 0.1] = -np.inf
    x[0] = 1.0
    want = old_softmax(x, 0.7)
    assert np.array_equal(softmax_probs(x, 0.7), want)
    assert np.array_equal(softmax_probs(x, 0.7, out=np.empty(n)), want)
    assert sampler._sequential_sum(want) == np.cumsum(want)[-1]
    x32 = x.astype(np.float32)
    assert np.array_equal(softmax_probs(x32, 0.7), old_softmax(x32, 0.7))


def spec_params(top_p: float, top_k: int, min_p: float, temperature: float) -> dict:
    return {"temperature": temperature, "top_p": top_p, "top_k": top_k, "min_p": min_p}


@pytest.mark.parametrize("vocab,kind", [(257, "normal"), (3000, "ties"), (3000, "masked"), (49152, "peaked"),
                                        (49152, "open")])
def test_sample_token_matches_golden_reading(vocab: int, kind: str) -> None:
    """sample_token (softmax + bands, the per-thread buffer) == the golden generator's plain-Python
    reading of steps 4-7 from the same logits."""
    rng = np.random.default_rng([vocab, 77, KINDS.index(kind)])
    x = logits(kind, vocab, rng)
    xs = [float(v) for v in x]
    settings = [(0.9, 0, 0.0), (0.95, 64, 0.0), (0.8, 20, 0.05), (1.0, 0, 0.0), (0.5, 1, 0.0)]
    reps = 4 if vocab <= 3000 else 1
    for top_p, top_k, min_p in settings:
        for counter in range(reps):
            want = golden.sample(xs, spec_params(top_p, top_k, min_p, 0.8), 42, counter)
            assert sample_token(x, 0.8, top_p, 42, counter, top_k, min_p) == want, (top_p, top_k, min_p, counter)


def test_sample_token_matches_golden_reading_gemma_vocab() -> None:
    rng = np.random.default_rng(262144)
    x = logits("open", 262144, rng)
    xs = [float(v) for v in x]
    for top_p, top_k in ((0.95, 64), (0.9, 0)):
        want = golden.sample(xs, spec_params(top_p, top_k, 0.0, 1.0), 9, 0)
        assert sample_token(x, 1.0, top_p, 9, 0, top_k) == want


def test_sample_token_buffer_per_thread_and_shape() -> None:
    """The reused probabilities row: alternating vocab sizes and threads give the oracle's ids."""
    rows = [logits("normal", v, np.random.default_rng(v)) for v in (1000, 3000)]
    want = {(i, c): full_sort_reading(old_softmax(rows[i], 1.0), 0.9, uniform(1, c)) for i in range(2) for c in range(6)}
    got: dict = {}

    def work(i: int) -> None:
        for c in range(6):
            got[(i, c)] = sample_token(rows[i], 1.0, 0.9, 1, c)
            got[(1 - i, c)] = sample_token(rows[1 - i], 1.0, 0.9, 1, c)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == want
    assert math.isclose(sum(softmax_probs(rows[0], 1.0)), 1.0)


def test_bench_quick_runs() -> None:
    """bench/sampler_bench.py --quick (under a second): the table, with old and new agreeing."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(REPO / "bench/sampler_bench.py"), "--quick"], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert "ids identical" in out and len([ln for ln in out.splitlines() if ln.strip().startswith("49152")]) == 8
