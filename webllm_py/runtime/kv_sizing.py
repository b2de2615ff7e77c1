"""The context window chosen at load, and what the runtime will allocate for it.

A bundle's manifest sizes the KV-cache buffers (kind "state") for the context window it was
built for (bundle/validate.py checks that they hold `context_window` rows, or exactly `ring`
rows for a sliding-window layer's ring cache). The kernels index the caches by row
(`(p + t) * width`, a ring `((p + t) % ring) * width`) and never read past row p+n, so a runtime
may allocate fewer rows and run the same programs: `context_window_size` (WebLLM's ChatOptions
name) picks that count N, up to the bundle's (`resolve_context_window`); a ring buffer then holds
min(ring, N) rows (positions < N map to rows < N). `memory_estimate` adds up the buffers before
any is created.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

MIN_CONTEXT = 2  # one prompt token and one generated token

# bytes per "act" element of each program set (passes/program_sets.py; the gpu sets keep f32 activations)
ACT_BYTES = {"f32": 4, "f16": 2, "idot": 4, "gpu": 4, "gpu-sg": 4}
KV_BYTES = {"f32": 4, "f16": 2, "f16x2": 2}  # bytes per KV-cache element of each storage ("f16x2": f16 pairs in u32)


def round16(n: int) -> int:
    return max(16, (n + 15) // 16 * 16)


def resolve_context_window(manifest: Mapping[str, Any], requested: Any = None) -> int:
    """The KV-cache rows to allocate: the bundle's context_window, or `requested` (an int from
    MIN_CONTEXT to the bundle's). Anything else is one ValueError naming the option."""
    built = int(manifest["context_window"])
    if requested is None:
        return built
    if isinstance(requested, bool) or not isinstance(requested, int) or not MIN_CONTEXT <= requested <= built:
        raise ValueError(f"context_window_size must be an integer from {MIN_CONTEXT} to {built} (the context window "
                         f"this bundle was built for; rebuild with a larger --context-window for more), got {requested!r}")
    return requested


def sized_buffers(manifest: Mapping[str, Any], rows: int) -> dict[str, dict[str, Any]]:
    """manifest["buffers"] with every KV-cache buffer holding `rows` rows instead of the bundle's
    (a ring buffer min(ring, rows))."""
    built = int(manifest["context_window"])
    out = {}
    for name, b in manifest["buffers"].items():
        if b.get("kind") == "state":
            held = b.get("ring") or built  # (context_window or ring, width), validated
            b = {**b, "elements": b["elements"] // held * min(held, rows)}
        out[name] = b
    return out


def kv_rings(manifest: Mapping[str, Any]) -> tuple[tuple[int, int], ...]:
    """The (ring rows, window) pairs of the bundle's ring KV caches, for the reuse rule (runtime/kv_reuse.py);
    none in a bundle without `buffers` (the first format, from before ring caches)."""
    return tuple(sorted({(int(b["ring"]), int(b["window"])) for b in manifest.get("buffers", {}).values()
                         if b.get("kind") == "state" and b.get("ring")}))


def set_bytes(manifest: Mapping[str, Any], precision: str) -> tuple[int, int]:
    """(activation, KV-cache) bytes per element of program set `precision`: its `program_sets` entry's
    activations and kv; a bundle without that entry stores its caches as its activations."""
    meta = next((m for m in manifest.get("program_sets", []) if m["name"] == precision), None)
    act = ACT_BYTES[meta["activations"]] if meta else ACT_BYTES[precision]
    return act, KV_BYTES[meta["kv"]] if meta else act


def buffer_bytes(b: Mapping[str, Any], act_bytes: int, kv_bytes: int | None = None) -> int:
    """Bytes of one buffer spec: `bytes`, or elements x (kv_bytes for a KV cache, act_bytes for
    another "act" buffer, else 4), rounded up to 16. kv_bytes None: the caches hold activations."""
    if "bytes" in b:
        return round16(b["bytes"])
    if b["dtype"] != "act":
        return round16(b["elements"] * 4)
    kv = act_bytes if kv_bytes is None else kv_bytes
    return round16(b["elements"] * (kv if b.get("kind") == "state" else act_bytes))


@dataclass(frozen=True)
class MemoryEstimate:
    """GPU bytes a language-model runtime allocates: weights, the KV cache, and the rest
    (activations, ids, step uniform, logits and its readback copy)."""

    context_window_size: int
    weights_bytes: int
    kv_cache_bytes: int
    other_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.other_bytes

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "total_bytes": self.total_bytes}

    def __str__(self) -> str:
        mib = lambda n: f"{n / 2**20:.1f} MiB"  # noqa: E731
        return (f"{mib(self.total_bytes)} (weights {mib(self.weights_bytes)}, KV cache {mib(self.kv_cache_bytes)} "
                f"for {self.context_window_size} tokens, other {mib(self.other_bytes)})")


KIND_GROUP = {"weight": "weights_bytes", "state": "kv_cache_bytes"}  # every other kind: other_bytes


def memory_estimate(manifest: Mapping[str, Any], precision: str, context_window_size: int | None = None) -> MemoryEstimate:
    """What loading `manifest`'s programs of `precision` (a program set) allocates with a
    KV cache of `context_window_size` rows (default: the bundle's), before anything is allocated."""
    if precision not in ACT_BYTES:
        raise ValueError(f"precision must be one of {tuple(ACT_BYTES)} for an estimate, got {precision!r}")
    rows = resolve_context_window(manifest, context_window_size)
    sums = {"weights_bytes": 0, "kv_cache_bytes": 0, "other_bytes": 0}
    act, kv = set_bytes(manifest, precision)
    for name, b in sized_buffers(manifest, rows).items():
        n = buffer_bytes(b, act, kv)
        sums[KIND_GROUP.get(b["kind"], "other_bytes")] += n
        if name == "logits":
            sums["other_bytes"] += n  # its MAP_READ staging copy
    return MemoryEstimate(rows, **sums)
