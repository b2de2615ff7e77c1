"""Which KV-cache rows a new prompt may reuse so that its logits are bit-identical to a
fresh prefill's, and the steps that forward the rest.

A fresh prefill of a P-token prompt runs steps of `prefill_chunk` (C) tokens from
position 0; a step of one token runs the decode program, longer ones the prefill program.
Programs round differently (the last prompt token through decode instead of prefill moves
the idot logits by up to ~7e-3), so a reused row must be one that a fresh prefill would
have written identically, and every forwarded row must go through the program a fresh
prefill would use for it. What "identically" requires depends on the backend, which
declares it as `kv_reuse` (runtime/lm.py); the table `RULES` below holds one rule each:

- "program" (the WGSL programs, native and browser): a prefill-written row does not depend
  on where its step started or how long it was (measured bit for bit, and pinned by
  tests/test_engine_determinism.py), so any prefix of prefill-written rows is reusable;
  rows written by decode (the previous reply) are not. The rest is forwarded in steps of
  at least two tokens, and the last prompt token alone (decode) exactly when a fresh
  prefill's last step is one token (P % C == 1).
- "schedule" (the numpy reference: BLAS rounds by matrix shape): only whole steps of the
  fresh schedule (C tokens at a multiple of C) are reusable; the rest is forwarded in that
  schedule.
- "any" (models without a chunk, such as test fakes whose logits depend on the ids only):
  the longest common prefix, as before.

Each rule keeps `exact`: how many leading cache rows are reusable under it.

Ring caches (a sliding-window layer's R rows, position t in row t % R; `rings`: the model's
(R, window) pairs) lose rows as later positions overwrite them. After writes up to position
hi - 1 (hi: 1 + the highest position written since the last plan that kept 0 rows, i.e. since the
last write at position 0, where such a plan starts; `plan` itself changes nothing) the row of
position j is intact iff j >= hi - R. A plan keeping L > 0 rows forwards from position L, whose
queries read keys from L - window + 1 on, so it needs max(0, L - window + 1) >= hi - R for every
ring; otherwise it keeps 0 rows (a fresh prefill from the start, exact as ever). The check runs
after the rule's own plan (which may lower L by one). `truncate` forgets ids, never the
overwrites: hi stays.
"""

from __future__ import annotations

from typing import Sequence


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _steps(start: int, end: int, chunk: int) -> list[tuple[int, int]]:
    return [(s, min(s + chunk, end)) for s in range(start, end, chunk)]


class _Any:
    """Every cached row is reusable; the rest goes in one forward (the model chunks it)."""

    def __init__(self, chunk: int | None):
        self.chunk = chunk

    def plan(self, reusable: int, prompt_len: int) -> tuple[int, list[tuple[int, int]]]:
        return reusable, [(reusable, prompt_len)]

    def extend(self, exact: int, start: int, n: int) -> int:
        return start + n if start == exact else exact

    def truncate(self, exact: int, position: int) -> int:
        return min(exact, position)


class _Schedule(_Any):
    """Only whole steps of the fresh schedule: C tokens starting at a multiple of C."""

    chunk: int

    def plan(self, reusable: int, prompt_len: int) -> tuple[int, list[tuple[int, int]]]:
        keep = reusable // self.chunk * self.chunk
        return keep, _steps(keep, prompt_len, self.chunk)

    def extend(self, exact: int, start: int, n: int) -> int:
        return exact + n if start == exact and n == self.chunk else exact

    def truncate(self, exact: int, position: int) -> int:
        # a step cut short is not the step a fresh prefill of the shorter prompt runs
        return min(exact, position) // self.chunk * self.chunk


class _Program(_Any):
    """Rows written by the program a fresh prefill uses for them (prefill, or decode when C is 1)."""

    chunk: int

    def plan(self, reusable: int, prompt_len: int) -> tuple[int, list[tuple[int, int]]]:
        C = self.chunk
        last_alone = C > 1 and prompt_len % C == 1  # a fresh prefill's last step is 1 token: decode
        body_end = prompt_len - 1 if last_alone else prompt_len
        keep = reusable
        if (body_end - keep) % C == 1 and C > 1:
            keep -= 1  # the body would end in a 1-token (decode) step: start it one row earlier
        steps = _steps(keep, body_end, C)
        if last_alone:
            steps.append((body_end, prompt_len))
        return keep, steps

    def extend(self, exact: int, start: int, n: int) -> int:
        interior_is_decode = self.chunk == 1
        return exact + n if start == exact and (n == 1) == interior_is_decode else exact


RULES: dict[str, type[_Any]] = {"any": _Any, "schedule": _Schedule, "program": _Program}


def rings_intact(keep: int, hi: int, rings: Sequence[tuple[int, int]]) -> bool:
    """Whether every ring still holds the rows a step forwarding from position `keep` reads (module
    docstring): max(0, keep - window + 1) >= hi - R for each (R, window)."""
    return all(max(0, keep - window + 1) >= hi - ring for ring, window in rings)


class KVLedger:
    """The ids in a model's KV cache and how many leading rows a new prompt may reuse."""

    def __init__(self, rule: str, chunk: int | None, rings: Sequence[tuple[int, int]] = ()):
        if rule not in RULES:
            raise ValueError(f"kv_reuse must be one of {sorted(RULES)}, got {rule!r}")
        if rule != "any" and not (isinstance(chunk, int) and chunk >= 1):
            raise ValueError(f"kv_reuse {rule!r} needs the model's prefill_chunk (an integer >= 1), got {chunk!r}")
        self.rule = RULES[rule](chunk)
        self.ids: list[int] = []
        self.exact = 0  # leading rows a fresh prefill would write bit for bit the same
        self.rings = tuple((int(r), int(w)) for r, w in rings)  # (ring rows, window) of the ring caches
        self.hi = 0  # 1 + the highest position written since the last write at position 0

    def plan(self, prompt: Sequence[int]) -> tuple[int, list[tuple[int, int]]]:
        """(rows to keep, [start, end) slices of `prompt` to forward in order, one model step each
        except under "any"). At least the last prompt token is forwarded, for its logits."""
        reusable = min(_common_prefix(self.ids, prompt), self.exact, len(prompt) - 1)
        keep, steps = self.rule.plan(max(reusable, 0), len(prompt))
        if keep and not rings_intact(keep, self.hi, self.rings):
            keep, steps = self.rule.plan(0, len(prompt))  # a ring overwrote rows the new steps read
        return keep, steps

    def wrote(self, ids: Sequence[int]) -> None:
        """The model forwarded `ids` in one step at the end of the cache."""
        self.exact = self.rule.extend(self.exact, len(self.ids), len(ids))
        # a write at position 0 starts the cache afresh (what a plan keeping 0 rows does): no
        # overwrite before it matters any more
        self.hi = max(self.hi if self.ids else 0, len(self.ids) + len(ids))
        self.ids.extend(int(t) for t in ids)

    def truncate(self, position: int) -> None:
        del self.ids[position:]
        self.exact = self.rule.truncate(self.exact, position)


def model_rule(model: object) -> tuple[str, int | None, tuple[tuple[int, int], ...]]:
    """The model's (kv_reuse rule, prefill_chunk, ring caches): the rule declared by the backend,
    else "schedule" for a chunked model (the safe choice) and "any" for one without a chunk;
    `kv_rings` (R, window) pairs where the model has ring caches (KVLedger's arguments)."""
    chunk = getattr(model, "prefill_chunk", None)
    rule = getattr(model, "kv_reuse", None) or ("schedule" if chunk else "any")
    return rule, (int(chunk) if chunk else None), tuple(getattr(model, "kv_rings", ()))
