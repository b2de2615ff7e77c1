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

`sample_token` avoids a full ``argsort`` of the vocabulary (≈10 ms for 150k ids)
by sorting only the *values* (equal values are interchangeable for the sums) and
then ordering just the ids that can precede the chosen position; the result is
identical to the full stable sort (tests check this against a naive version).
"""

from __future__ import annotations

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


def softmax_probs(x: np.ndarray, temperature: float) -> np.ndarray:
    """Step 5: probs = exp(z - max z) / sum, the sum taken sequentially in id order."""
    z = x / float(temperature)
    e = np.exp(z - np.max(z))
    return e / np.cumsum(e)[-1]


def sample_from_probs(probs: np.ndarray, top_p: float, u01: float, top_k: int = 0, min_p: float = 0.0) -> int:
    """Steps 6-7 given the step-5 probabilities and the uniform draw in [0, 1)."""
    # Values in descending order; equal values are interchangeable for the sums,
    # so this sequence equals probs[stable order by (-p, id)].
    sorted_vals = -np.sort(-probs)
    cum = np.cumsum(sorted_vals)
    n = len(sorted_vals)
    if top_p >= 1.0:
        k = n
    else:
        hit = np.flatnonzero(cum >= top_p)
        k = int(hit[0]) + 1 if len(hit) else n
    # top_k and min_p keep prefixes of the same order, measured on the same (full) distribution,
    # so the kept set is the shortest of the three prefixes.
    if top_k > 0:
        k = min(k, int(top_k))
    if min_p > 0:
        k = int(np.count_nonzero(sorted_vals[:k] >= min_p * sorted_vals[0]))  # >= 1: min_p <= 1
    u = u01 * float(cum[k - 1])
    i = int(np.searchsorted(cum[:k], u, side="right"))  # first running sum > u
    if i >= k:
        i = k - 1
    # The ids at sorted positions 0..i are exactly those with p >= sorted_vals[i]
    # (a prefix of the stable order); order only them, ties by lower id.
    v = sorted_vals[i]
    cand = np.flatnonzero(probs >= v)
    order = cand[np.argsort(-probs[cand], kind="stable")]
    return int(order[i])


def sample_token(x: np.ndarray, temperature: float, top_p: float, seed: int, counter: int,
                 top_k: int = 0, min_p: float = 0.0) -> int:
    """Steps 4-7 on processed (float64) logits."""
    if temperature == 0:
        return int(np.argmax(x))  # first index of the maximum = lowest id on ties
    probs = softmax_probs(x, temperature)
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
