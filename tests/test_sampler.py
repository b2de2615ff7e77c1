"""The sampler against docs/sampling.md: PRNG goldens (shared with the JS port) and
an independent, deliberately naive implementation of steps 1-7."""

from __future__ import annotations

import math

import numpy as np
import pytest

from webllm_py.runtime.sampler import (
    Sampler,
    SamplingParams,
    log_softmax,
    mix32,
    process_logits,
    random_u32,
    sample_token,
    top_k_ids,
    uniform,
)

# Computed by hand from the spec with plain Python ints (% 2**32, // 2**32), not with
# sampler.py. web/src/sampler.js must reproduce exactly these.
PRNG_GOLDEN = [
    # (seed, counter, random_u32, uniform)
    (0, 0, 0x00000000, 0.0),
    (0, 1, 0x92CA2F0E, 0.5733975768089294),
    (1, 0, 0x2FEF5C8F, 0.18724608421325684),
    (42, 0, 0xB9DAC15F, 0.7259941697120667),
    (42, 1, 0x6F533D78, 0.4348638653755188),
    (42, 2, 0xC09D47FF, 0.7523998618125916),
    (2**32 + 7, 3, 0x5A1A5F73, 0.35196489095687866),
    (2**53 - 1, 1000, 0x4B88D5D5, 0.29505664110183716),
]


@pytest.mark.parametrize("seed,counter,u32,u", PRNG_GOLDEN)
def test_prng_golden(seed: int, counter: int, u32: int, u: float) -> None:
    assert random_u32(seed, counter) == u32
    assert uniform(seed, counter) == u


def test_mix32_known_values() -> None:
    assert mix32(0) == 0
    assert mix32(1) == 0x514E28B7  # murmur3 fmix32(1)
    assert mix32(0xDEADBEEF) == 0x0DE5C6A9


def test_prng_rejects_bad_seed() -> None:
    with pytest.raises(ValueError):
        random_u32(-1, 0)
    with pytest.raises(ValueError):
        random_u32(2**53, 0)


def test_uniform_is_roughly_uniform() -> None:
    us = np.array([uniform(7, c) for c in range(20000)])
    assert 0 <= us.min() and us.max() < 1
    assert abs(us.mean() - 0.5) < 0.01
    hist, _ = np.histogram(us, bins=10, range=(0, 1))
    assert hist.min() > 1800


# ---- a naive reference of steps 1-7, straight from the text of the spec ----------------


def naive_process(logits, bias, rep, freq, pres, seen, generated):
    x = [float(v) for v in logits]
    for tid, b in bias.items():
        x[tid] += b
    for tid in set(seen):
        x[tid] = x[tid] / rep if x[tid] > 0 else x[tid] * rep
    counts: dict[int, int] = {}
    for t in generated:
        counts[t] = counts.get(t, 0) + 1
    for tid, c in counts.items():
        x[tid] -= freq * c + pres * (1 if c > 0 else 0)
    return x


def naive_sample(x, temperature, top_p, seed, counter):
    if temperature == 0:
        best = 0
        for i, v in enumerate(x):
            if v > x[best]:
                best = i
        return best
    z = [v / temperature for v in x]
    m = max(z)
    p = [math.exp(v - m) for v in z]
    s = 0.0
    for v in p:  # sequential, in id order
        s += v
    p = [v / s for v in p]
    order = sorted(range(len(p)), key=lambda i: (-p[i], i))
    if top_p >= 1:
        kept = order
    else:
        kept, cum = [], 0.0
        for i in order:
            kept.append(i)
            cum += p[i]
            if cum >= top_p:
                break
    total = 0.0
    for i in kept:
        total += p[i]
    u = uniform(seed, counter) * total
    run = 0.0
    for i in kept:
        run += p[i]
        if run > u:
            return i
    return kept[-1]


def _logits(rng: np.random.Generator, v: int, ties: bool) -> np.ndarray:
    x = rng.normal(0, 3, size=v).astype(np.float32)
    if ties:  # coarse values -> many exactly equal probabilities
        x = np.round(x * 2) / 2
    return x


@pytest.mark.parametrize("ties", [False, True])
def test_sample_matches_naive(ties: bool) -> None:
    rng = np.random.default_rng(0)
    for case in range(300):
        v = int(rng.integers(2, 300))
        x = _logits(rng, v, ties).astype(np.float64)
        temperature = float(rng.choice([0.0, 0.3, 0.7, 1.0, 1.5]))
        top_p = float(rng.choice([1.0, 0.95, 0.9, 0.5, 0.1, 1e-6]))
        seed = int(rng.integers(0, 2**53))
        counter = int(rng.integers(0, 5000))
        got = sample_token(x, temperature, top_p, seed, counter)
        want = naive_sample(list(x), temperature, top_p, seed, counter)
        assert got == want, (case, v, temperature, top_p, seed, counter)


def test_process_logits_matches_naive() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        v = 64
        logits = rng.normal(0, 3, size=v).astype(np.float32)
        bias = {int(t): float(b) for t, b in zip(rng.integers(0, v, 5), rng.uniform(-100, 100, 5))}
        rep = float(rng.choice([1.0, 1.1, 1.5, 0.8]))
        freq = float(rng.uniform(-2, 2))
        pres = float(rng.uniform(-2, 2))
        seen = [int(t) for t in rng.integers(0, v, 10)]
        generated = [int(t) for t in rng.integers(0, v, 12)]
        counts: dict[int, int] = {}
        for t in generated:
            counts[t] = counts.get(t, 0) + 1
        params = SamplingParams(1.0, 1.0, freq, pres, rep, bias)
        got = process_logits(logits, params, sorted(set(seen) | set(generated)), counts)
        want = naive_process(logits, bias, rep, freq, pres, seen + generated, generated)
        assert got.dtype == np.float64
        assert got.tolist() == want  # bit-exact


def test_sampler_object_penalises_and_counts() -> None:
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 1, size=50).astype(np.float32)
    prompt = [3, 4, 5]
    params = SamplingParams(temperature=0.8, top_p=0.9, frequency_penalty=0.5, presence_penalty=0.3, repetition_penalty=1.2)
    s = Sampler(params, seed=123, prompt_ids=prompt)
    gen: list[int] = []
    for c in range(30):
        tok, x = s.sample(logits)
        xr = naive_process(logits, {}, 1.2, 0.5, 0.3, prompt + gen, gen)
        assert x.tolist() == xr
        assert tok == naive_sample(xr, 0.8, 0.9, 123, c)
        gen.append(tok)


def test_temperature_zero_is_argmax_lowest_id_on_ties() -> None:
    x = np.array([0.0, 5.0, 2.0, 5.0])
    assert sample_token(x, 0.0, 0.5, 1, 0) == 1


def test_top_p_and_temperature_behaviour() -> None:
    # p = softmax: a dominant token beyond top_p keeps only it
    x = np.log(np.array([0.6, 0.25, 0.1, 0.05]))
    picks = {sample_token(x, 1.0, 0.5, 9, c) for c in range(200)}
    assert picks == {0}
    picks = {sample_token(x, 1.0, 0.8, 9, c) for c in range(400)}
    assert picks == {0, 1}
    # higher temperature flattens: the tail gets picked more often
    lo = sum(sample_token(x, 0.3, 1.0, 5, c) != 0 for c in range(2000))
    hi = sum(sample_token(x, 2.0, 1.0, 5, c) != 0 for c in range(2000))
    assert lo < hi
    # empirical frequencies at T=1 follow the probabilities
    counts = np.bincount([sample_token(x, 1.0, 1.0, 11, c) for c in range(20000)], minlength=4) / 20000
    assert np.allclose(counts, [0.6, 0.25, 0.1, 0.05], atol=0.015)


def test_log_softmax_and_top_k() -> None:
    x = np.array([1.0, 3.0, 3.0, -2.0, 0.5])
    lp = log_softmax(x)
    ref = x - np.log(np.exp(x).sum())
    assert np.allclose(lp, ref, rtol=0, atol=1e-12)
    assert top_k_ids(lp, 3) == [1, 2, 0]
    assert top_k_ids(lp, 0) == []
    assert top_k_ids(lp, 10) == [1, 2, 0, 4, 3]
