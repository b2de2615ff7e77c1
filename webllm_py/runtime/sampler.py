"""Token sampling, exactly as docs/sampling.md specifies (format 1).

The JS engine (web/src/sampler.js) implements the same algorithm, so one
`seed` gives the same tokens in Python and in the browser. Everything here is
therefore written to be reproducible by a straightforward sequential JS loop:

- the PRNG uses only u32 integer operations (Python ints masked to 32 bits);
- all floating-point arithmetic is IEEE float64 (numpy float64);
- every sum that influences which token is picked is a *sequential* left-to-right
  sum (``np.cumsum``), never ``np.sum``, whose pairwise summation a JS loop would
  not reproduce bit for bit. The softmax normaliser is summed in token-id order;
  the top-p / sampling walk sums in the sorted (probability descending, lower id
  first) order.

`sample_token` sorts neither the ids nor the whole row: only the *values* (equal values are
interchangeable for the sums), and of those only the largest ones, band by band, until the kept
prefix is decided (``sample_from_probs``); then it orders just the ids that can precede the
chosen position. The result is the full stable sort's id (tests/test_sampler_fast.py checks it
against the full-sort reading and the golden generator's plain-Python one).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

MASK32 = 0xFFFFFFFF
MAX_SEED = 2**53  # seeds must be < 2^53 so that JS numbers hold them exactly


def mix32(x: int) -> int:
    """murmur3 fmix32 on a u32 (JS: Math.imul and >>> 0)."""
    x &= MASK32
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & MASK32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & MASK32
    x ^= x >> 16
    return x


def random_u32(seed: int, counter: int) -> int:
    """Counter-based u32: mix32(mix32(seed_lo ^ mix32(seed_hi)) ^ (counter * 0x9E3779B9))."""
    if not 0 <= seed < MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, 2^53), got {seed}")
    seed_lo = seed & MASK32
    seed_hi = (seed >> 32) & MASK32
    return mix32(mix32(seed_lo ^ mix32(seed_hi)) ^ ((counter * 0x9E3779B9) & MASK32))


def uniform(seed: int, counter: int) -> float:
    """A float64 in [0, 1) with 24 random bits: (random_u32 >>> 8) / 2^24."""
    return (random_u32(seed, counter) >> 8) / 16777216.0


@dataclass
class SamplingParams:
    """The per-request knobs of docs/sampling.md (already validated by the engine)."""

    temperature: float = 1.0
    top_p: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    top_k: int = 0  # 0: no limit
    min_p: float = 0.0  # 0: no limit


def apply_bitmask(x: np.ndarray, bitmask: np.ndarray) -> None:
    """Step 0 in place: ids whose bit is 0 get -inf. `bitmask` is xgrammar's layout: int32 words,
    bit (id % 32) of word id // 32 set = allowed; ids past the mask's bits are disallowed."""
    bits = np.unpackbits(np.ascontiguousarray(bitmask, dtype="<i4").view(np.uint8), bitorder="little")
    allowed = np.zeros(len(x), dtype=bool)
    m = min(len(x), len(bits))
    allowed[:m] = bits[:m].astype(bool)
    x[~allowed] = -np.inf


def process_logits(
    logits: np.ndarray,
    params: SamplingParams,
    seen_ids: np.ndarray | Sequence[int] = (),
    generated_counts: Mapping[int, int] | None = None,
    bitmask: np.ndarray | None = None,
) -> np.ndarray:
    """Steps 0-3: the grammar's token mask (if any), logit_bias, repetition_penalty,
    presence/frequency penalties.

    `seen_ids`: the distinct token ids of prompt + generated so far (repetition
    penalty); `generated_counts`: id -> count over the generated tokens only.
    Returns a new float64 array (the input is not modified).
    """
    x = np.array(logits, dtype=np.float64)  # float32 -> float64 is exact
    # 0. grammar mask: -inf stays -inf through steps 1-3 (r > 0), so they cannot revive an id
    if bitmask is not None:
        apply_bitmask(x, bitmask)
    # 1. logit_bias
    for tid, bias in params.logit_bias.items():
        x[tid] += float(bias)
    # 2. repetition penalty (HF): positive logits divided, the others multiplied
    r = float(params.repetition_penalty)
    if r != 1.0 and len(seen_ids):
        idx = np.unique(np.asarray(seen_ids, dtype=np.int64))
        v = x[idx]
        x[idx] = np.where(v > 0, v / r, v * r)
    # 3. presence / frequency penalties (OpenAI), generated tokens only
    f = float(params.frequency_penalty)
    a = float(params.presence_penalty)
    if (f != 0.0 or a != 0.0) and generated_counts:
        ids = np.fromiter(generated_counts.keys(), dtype=np.int64, count=len(generated_counts))
        cnt = np.fromiter(generated_counts.values(), dtype=np.float64, count=len(generated_counts))
        # count > 0 for every key, so the presence term is just `a`; same op order as the spec
        x[ids] -= f * cnt + a
    return x


def softmax_probs(x: np.ndarray, temperature: float, out: np.ndarray | None = None) -> np.ndarray:
    """Step 5: probs = exp(z - max z) / sum, the sum taken sequentially in id order.

    Float64 rows are done in one array (`out`, or a new one), every step in place: the same
    IEEE operations as ``z = x / t``, ``e = np.exp(z - max)``, ``e / np.cumsum(e)[-1]``, without
    the 2 MiB temporaries whose page faults cost more than the arithmetic at V = 262144."""
    if x.dtype != np.float64:  # not what process_logits gives: the plain expression
        z = x / float(temperature)
        e = np.exp(z - np.max(z))
        return e / np.cumsum(e)[-1]
    z = np.divide(x, float(temperature), out=out)
    np.subtract(z, np.max(z), out=z)
    np.exp(z, out=z)
    np.divide(z, _sequential_sum(z), out=z)
    return z


_SUM_CHUNK = 8192  # 64 KiB: stays in cache and under malloc's mmap threshold


def _sequential_sum(a: np.ndarray) -> float:
    """a[0] + a[1] + ... left to right: bit for bit ``np.cumsum(a)[-1]``, without a len(a)
    temporary. Chunk by chunk, each chunk's running sum starting from the previous total, so
    every addition is the one a single long cumsum makes."""
    n = len(a)
    if n <= _SUM_CHUNK:
        return float(np.cumsum(a)[-1])
    buf = np.empty(_SUM_CHUNK + 1)
    np.cumsum(a[:_SUM_CHUNK], out=buf[:_SUM_CHUNK])
    s = buf[_SUM_CHUNK - 1]
    for j in range(_SUM_CHUNK, n, _SUM_CHUNK):
        m = min(_SUM_CHUNK, n - j)
        buf[0] = s  # then this chunk: s + a[j], (s + a[j]) + a[j + 1], ...
        buf[1 : m + 1] = a[j : j + m]
        np.cumsum(buf[: m + 1], out=buf[: m + 1])
        s = buf[m]
    return float(s)


# Steps 6-7 need the descending order of the probabilities only as far as the kept prefix and
# the chosen position. The values >= t precede every value < t in that order, so sorting the
# row band by band (values in [t, previous t), largest band first) and continuing the running
# sum across bands gives exactly the full sort's leading values and running sums; the bands stop
# as soon as the kept prefix is decided. Below _TAIL nothing matters: once the running sum
# S >= 0.5 (half an ulp of S is >= 2^-54), S + p == S for every p < 2^-54, so the sorted tail
# leaves every running sum, hence the top_p cut, the kept sum and the walk, where they are.
# Where the bands fall changes only the time taken, never the id.
_BAND = 2.0**-8  # the first band: [pmax / 256, pmax]; then a guess (_guess)
_STEP = 2.0**-2  # the bands after the guess reach 4x lower each
_TAIL = 2.0**-54


def sample_from_probs(probs: np.ndarray, top_p: float, u01: float, top_k: int = 0, min_p: float = 0.0) -> int:
    """Steps 6-7 given the step-5 probabilities and the uniform draw in [0, 1).

    The same id as sorting every probability (see the bands above); rows that are no
    distribution (NaN, inf, negative values) take the full sort itself."""
    n = len(probs)
    pmax = float(np.max(probs)) if n else math.nan
    if not (_TAIL <= pmax < math.inf) or float(np.min(probs)) < 0.0:  # (a sum >= 0.5 has pmax >= 0.5 / n)
        return _sample_sorted(probs, -np.sort(-probs), top_p, u01, top_k, min_p)
    thr = min_p * pmax if min_p > 0 else math.inf
    floor = min(_TAIL, thr)  # the last band also holds every value the min_p prefix can keep
    if not (top_p < 1.0 or top_k > 0 or min_p > 0):
        # top_p >= 1 alone keeps every id: one band, down to the floor (most of the row)
        vals = probs[probs >= floor]
        vals.sort()  # a copy; no NaN here, so reversed it is -np.sort(-vals)
        vals = vals[::-1]
        cum = np.cumsum(vals)
        # the tail argument needs S >= 0.5 (always, for softmax), and the walk must end inside
        # vals: u < S (see below)
        if not (cum[-1] >= 0.5 and u01 * float(cum[-1]) < float(cum[-1])):
            return _sample_sorted(probs, -np.sort(-probs), top_p, u01, top_k, min_p)
        return _pick(probs, vals, cum, len(vals), u01)
    ids, vals, cum = [], np.empty(0), np.empty(0)
    # the first band: down to pmax / 256, or only to min_p's threshold, which decides min_p
    hi, t = math.inf, max(pmax * _BAND, thr if thr < math.inf else 0.0)
    while True:
        t = max(t, floor)
        got = np.flatnonzero(probs >= t) if hi == math.inf else np.flatnonzero((probs >= t) & (probs < hi))
        band = probs[got]
        if not ids and top_k > 0 and len(band) > _BIG_BAND:  # a flat row: top_k decides first
            t = _top_k_edge(band, top_k, t)
            got, band = got[band >= t], band[band >= t]
        band.sort()
        band = band[::-1]
        ids.append(got)
        if len(cum):  # the running sum goes on from the bands before
            run = np.cumsum(np.concatenate((cum[-1:], band)))[1:]
            vals, cum = np.concatenate((vals, band)), np.concatenate((cum, run))
        else:
            vals, cum = band, np.cumsum(band)
        last = t <= floor
        if last and not cum[-1] >= 0.5:
            return _sample_sorted(probs, -np.sort(-probs), top_p, u01, top_k, min_p)
        k = _kept_length(vals, cum, n, last, t <= thr, top_p, top_k, thr)
        if k is not None:
            break
        hi, t = t, _guess(probs, t, len(vals), float(cum[-1]), top_p, top_k, thr) if len(ids) == 1 else t * _STEP
    c = len(vals)
    # k == 0: min_p > 1, the full sort's own clamp. k > c: the kept prefix runs into the tail,
    # whose running sums all equal cum[-1]; the walk stops inside vals when u < cum[-1] (always
    # for u01 <= 1 - 2^-24, the PRNG's largest draw).
    if k == 0 or k > c and not u01 * float(cum[-1]) < float(cum[-1]):
        return _sample_sorted(probs, -np.sort(-probs), top_p, u01, top_k, min_p)
    # the bands' ids: ascending within a band, and equal values share a band (what _pick needs)
    return _pick(probs, vals, cum, min(k, c), u01, ids[0] if len(ids) == 1 else np.concatenate(ids))


_GUESS_SAMPLE = 16384  # values the guess looks at (a strided subsample of the row)
_BIG_BAND = 8192  # a first band this large is narrowed to about 2 top_k values when top_k is set


def _top_k_edge(band: np.ndarray, top_k: int, t: float) -> float:
    """A value of `band` (all of the row's values >= t) with at least top_k band values >= it,
    about 2 top_k + 8 steps of a strided subsample (an estimate; t itself when it falls short)."""
    step = len(band) // 2048
    sub = band[::step]
    r = -(-2 * top_k // step) + 8  # rank from the top in the subsample
    if r >= len(sub):
        return t
    edge = float(np.partition(sub, len(sub) - r)[len(sub) - r])
    return edge if np.count_nonzero(band >= edge) >= top_k else t


def _guess(probs: np.ndarray, hi: float, count: int, mass: float, top_p: float, top_k: int,
           thr: float) -> float:
    """The next band's lower edge after a first band (`count` values >= hi, summing to `mass`)
    that decided nothing: a power of two below which, by a binade histogram of the values < hi
    in a strided subsample (float32 exponents, masses summed in any order, scaled up: only an
    estimate, with margins), one of the three prefixes is decided. A low guess costs sort time,
    a high one more bands; neither changes the id."""
    step = max(1, len(probs) // _GUESS_SAMPLE)
    sub = probs[::step]
    sub = sub[sub < hi]
    e = sub.astype(np.float32).view(np.int32) >> 23  # biased exponent b: [2^(b-127), 2^(b-126))
    edges = []
    if top_p < 1.0:  # masses from the top binade down; one binade lower for the estimate's error
        masses = mass + np.cumsum(np.bincount(e, weights=sub, minlength=256)[::-1]) * step
        j = int(np.searchsorted(masses, top_p))
        edges.append(2.0 ** (127 - j) if j < 256 else 0.0)
    if top_k > 0:  # counts: twice top_k and 8 subsample hits over it, against sampling noise
        counts = count + np.cumsum(np.bincount(e, minlength=256)[::-1]) * step
        j = int(np.searchsorted(counts, 2 * top_k + 8 * step))
        edges.append(2.0 ** (127 - j) if j < 256 else 0.0)
    if thr < math.inf:
        edges.append(thr)
    return min(max(edges, default=hi * _BAND), hi * 0.5)


def _kept_length(vals: np.ndarray, cum: np.ndarray, n: int, complete: bool, thr_reached: bool,
                 top_p: float, top_k: int, thr: float) -> int | None:
    """Length of the kept prefix (step 6) given the first len(vals) sorted values and running
    sums, or None when those do not decide it yet. `complete`: every value that can change a
    running sum is among them (the rest count as positions only, for top_k's or top_p's n);
    `thr_reached`: every value >= min_p * pmax is among them."""
    c = len(vals)
    bounds = []
    if top_p < 1.0:
        j = int(np.searchsorted(cum, top_p, side="left"))  # running sums never decrease
        if j < c:
            bounds.append(j + 1)  # the shortest prefix reaching top_p
        elif complete:
            bounds.append(n)  # the whole row does not reach top_p: every id
    elif complete:
        bounds.append(n)
    if top_k > 0 and (top_k <= c or complete):
        bounds.append(int(top_k))
    if thr < math.inf:
        m = int(np.count_nonzero(vals >= thr))
        if m < c or thr_reached:  # a value below thr among them, or none left above it
            bounds.append(m)
    # an undecided bound is > c (top_p not reached, top_k > c) or >= c (min_p): the decided
    # ones are all <= c, so the shortest decided prefix is the shortest of the three.
    return min(bounds) if bounds else None


def _pick(probs: np.ndarray, vals: np.ndarray, cum: np.ndarray, k: int, u01: float,
          ids: np.ndarray | None = None) -> int:
    """Step 7 over the first k sorted values; then the id at the chosen position. `ids`: a
    superset of the ids with p >= vals[k - 1], equal values in ascending id order (default: all)."""
    u = u01 * float(cum[k - 1])
    i = int(np.searchsorted(cum[:k], u, side="right"))  # first running sum > u
    if i >= k:
        i = k - 1
    # The ids at sorted positions 0..i are exactly those with p >= vals[i] (a prefix of the
    # stable order); order only them, ties by lower id.
    v = vals[i]
    cand = np.flatnonzero(probs >= v) if ids is None else ids[probs[ids] >= v]
    order = cand[np.argsort(-probs[cand], kind="stable")]
    return int(order[i])


def _sample_sorted(probs: np.ndarray, sorted_vals: np.ndarray, top_p: float, u01: float,
                   top_k: int, min_p: float) -> int:
    """Steps 6-7 over the whole row's sorted values (the literal reading, for rows that are no
    distribution)."""
    cum = np.cumsum(sorted_vals)
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
    return _pick(probs, sorted_vals, cum, k, u01)


_scratch = threading.local()  # per thread: the probabilities row sample_token reuses


def sample_token(x: np.ndarray, temperature: float, top_p: float, seed: int, counter: int,
                 top_k: int = 0, min_p: float = 0.0) -> int:
    """Steps 4-7 on processed (float64) logits."""
    if temperature == 0:
        return int(np.argmax(x))  # first index of the maximum = lowest id on ties
    buf = getattr(_scratch, "probs", None)
    if buf is None or buf.shape != x.shape:
        buf = _scratch.probs = np.empty(x.shape)  # rewritten whole each token, never returned
    probs = softmax_probs(x, temperature, out=buf if x.dtype == np.float64 else None)
    return sample_from_probs(probs, top_p, uniform(seed, counter), top_k, min_p)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """float64 log-softmax (for reported logprobs; not part of the token choice)."""
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x)
    return x - m - np.log(np.sum(np.exp(x - m)))


def top_k_ids(values: np.ndarray, k: int) -> list[int]:
    """The k ids of largest value, descending, ties by lower id."""
    if k <= 0:
        return []
    k = min(k, len(values))
    v = np.partition(values, len(values) - k)[len(values) - k]  # k-th largest value
    cand = np.flatnonzero(values >= v)
    order = cand[np.argsort(-values[cand], kind="stable")]
    return [int(t) for t in order[:k]]


class Sampler:
    """Samples one completion's tokens: keeps the penalty state and the counter.

    `prompt_ids` seed the repetition-penalty set; `seed` and the token index
    (`counter`, 0 for the first generated token) drive the PRNG.
    """

    def __init__(self, params: SamplingParams, seed: int, prompt_ids: Iterable[int] = ()):
        self.params = params
        self.seed = int(seed)
        self.counter = 0
        self._seen: set[int] = set(int(t) for t in prompt_ids)
        self._counts: dict[int, int] = {}

    def process(self, logits: np.ndarray, bitmask: np.ndarray | None = None) -> np.ndarray:
        """Steps 0-3 with this completion's state."""
        seen = np.fromiter(self._seen, dtype=np.int64, count=len(self._seen)) if self.params.repetition_penalty != 1.0 else ()
        return process_logits(logits, self.params, seen, self._counts, bitmask)

    def sample(self, logits: np.ndarray, bitmask: np.ndarray | None = None) -> tuple[int, np.ndarray]:
        """Pick the next token (among those `bitmask` allows, if given); returns (token id,
        processed float64 logits for logprobs). Advances the counter and records the token
        for the penalties.
        """
        x = self.process(logits, bitmask)
        p = self.params
        tok = sample_token(x, p.temperature, p.top_p, self.seed, self.counter, p.top_k, p.min_p)
        self.counter += 1
        self._seen.add(tok)
        self._counts[tok] = self._counts.get(tok, 0) + 1
        return tok, x
