"""`webllm-py inspect`: a bundle's summary (config, sizes, quantization error, GPU memory per
program set at the built context window, ring KV caches), as a dict and as text.

It reads only what the manifest validator (bundle/validate.py) guarantees; the
fields it leaves optional (a weight's error stats, model.config sizes, the
quantization section) are None in the summary and "-" in the text, never a KeyError.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

_TINY = 1e-30  # floor of a weight rms, so an all-zero tensor has a finite relative error


def _relative(err: dict[str, Any]) -> float | None:
    if not isinstance(err.get("rms"), (int, float)) or not isinstance(err.get("weight_rms"), (int, float)):
        return None
    return err["rms"] / max(err["weight_rms"], _TINY)


def _by_format(weights: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per stored format: tensors, params, stored bytes per weight (all parts: codes, scales) and the
    param-weighted error over the tensors that have stats (against the source's values: 0 for blocks
    kept from a GGUF as they are)."""
    acc: dict[str, dict[str, Any]] = {}
    for w in weights.values():
        n = math.prod(w["shape"])
        f = acc.setdefault(w["format"], {"tensors": 0, "params": 0, "bytes": 0, "max_abs_err": None,
                                         "_n": 0, "_sq": 0.0, "_w": 0.0})
        f["tensors"] += 1
        f["params"] += n
        f["bytes"] += sum(part.get("nbytes", 0) for part in w["parts"].values())
        err = w.get("error") or {}
        if _relative(err) is None or not isinstance(err.get("max_abs"), (int, float)):
            continue
        f["max_abs_err"] = max(f["max_abs_err"] or 0.0, err["max_abs"])
        f["_n"] += n
        f["_sq"] += err["rms"] ** 2 * n
        f["_w"] += err["weight_rms"] ** 2 * n
    for f in acc.values():
        f["bytes_per_weight"] = f["bytes"] / f["params"] if f["params"] else None
        n, sq, wsq = f.pop("_n"), f.pop("_sq"), f.pop("_w")
        f["rms_err"] = math.sqrt(sq / n) if n else None
        f["relative_rms_err"] = f["rms_err"] / max(math.sqrt(wsq / n), _TINY) if n else None
    return acc


def _memory(m: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per program set: what a language-model runtime allocates at the bundle's context window
    (runtime/kv_sizing.memory_estimate); none for an embedding model or a bundle without programs."""
    from .runtime.kv_sizing import memory_estimate

    if m.get("embedding") or "context_window" not in m or "buffers" not in m:
        return {}
    out = {}
    for name in m.get("programs", {}):
        e = memory_estimate(m, name)
        out[name] = {"weights_bytes": e.weights_bytes, "kv_cache_bytes": e.kv_cache_bytes,
                     "other_bytes": e.other_bytes, "total_bytes": e.total_bytes}
    return out


def _rings(m: dict[str, Any]) -> dict[str, Any] | None:
    """The ring KV caches (sliding-window layers): how many of the caches, their rows and window."""
    caches = [b for b in m.get("buffers", {}).values() if b.get("kind") == "state"]
    rings = [b for b in caches if b.get("ring")]
    if not rings:
        return None
    return {"caches": len(caches), "rings": len(rings), "rows": sorted({b["ring"] for b in rings}),
            "windows": sorted({b["window"] for b in rings})}


def inspect_summary(bundle_dir: str | Path) -> dict[str, Any]:
    from .bundle import Bundle

    m = Bundle(bundle_dir).manifest
    rel = {k: r for k, w in m["weights"].items() if (r := _relative(w.get("error") or {})) is not None}
    cfg = m["model"]["config"]
    return {
        "model": m["model"]["id"], "architecture": m["model"]["architecture"], "format_version": m["format_version"],
        "layers": cfg.get("num_hidden_layers"), "hidden_size": cfg.get("hidden_size"), "vocab_size": cfg["vocab_size"],
        "context_window": m.get("context_window"), "prefill_chunk": m.get("prefill_chunk"),  # None: embedding model
        "embedding": m.get("embedding"),
        "quantization": m.get("quantization") or {},
        "bytes": sum(f["size"] for f in m["files"]), "files": len(m["files"]),
        "eos_token_ids": (m.get("tokenizer") or {}).get("eos_token_ids", []),
        "weights_by_format": _by_format(m["weights"]),
        "worst_relative_error": dict(sorted(rel.items(), key=lambda kv: -kv[1])[:5]),
        "memory": _memory(m), "ring_kv_caches": _rings(m),
    }


def _g(v: Any, spec: str = "", width: int = 0) -> str:
    """`v` formatted by `spec`, or a dash (right-aligned in `width`) where the manifest has no such figure."""
    return format(v, spec) if v is not None else "-".rjust(width)


def format_summary(s: dict[str, Any]) -> str:
    q = s["quantization"]
    e = s["embedding"]
    shape = (f"embedding model: {e['pooling']} pooling{', normalized' if e['normalize'] else ''}, "
             f"max_seq_length {e['max_seq_length']}, {e['dimensions']} dimensions" if e else
             f"context {s['context_window']}, prefill chunk {s['prefill_chunk']}")
    lines = [
        f"{s['model']}  ({s['architecture']}, bundle format {s['format_version']})",
        f"  layers {_g(s['layers'])}, hidden {_g(s['hidden_size'])}, vocab {s['vocab_size']}, {shape}",
        f"  quantization {q.get('scheme', '-')} (embedding {q.get('embedding', '-')}"
        + (f", lm_head {q['lm_head']})" if "lm_head" in q else ")"),
        f"  {s['files']} files, {s['bytes'] / 2**20:.1f} MiB; eos ids {s['eos_token_ids']}",
        "  quantization error by format:",
        f"    {'format':6} {'tensors':>7} {'params':>12} {'B/weight':>8} {'max |err|':>10} {'rms err':>10} {'rel rms':>8}",
    ]
    for name, f in s["weights_by_format"].items():
        lines.append(f"    {name:6} {f['tensors']:7d} {f['params']:12d} {_g(f['bytes_per_weight'], '8.4f', 8)} "
                     f"{_g(f['max_abs_err'], '10.4g', 10)} "
                     f"{_g(f['rms_err'], '10.4g', 10)} {_g(f['relative_rms_err'], '8.2%', 8)}")
    lines.append("  largest relative rms error:")
    lines += [f"    {v:8.2%}  {k}" for k, v in s["worst_relative_error"].items()]
    if s["memory"]:
        lines.append(f"  GPU memory at context {s['context_window']} (MiB; a smaller context_window_size allocates less KV):")
        lines.append(f"    {'set':7} {'weights':>9} {'KV cache':>9} {'other':>8} {'total':>9}")
        mib = 2.0 ** 20
        for name, e in s["memory"].items():
            lines.append(f"    {name:7} {e['weights_bytes'] / mib:9.1f} {e['kv_cache_bytes'] / mib:9.1f} "
                         f"{e['other_bytes'] / mib:8.1f} {e['total_bytes'] / mib:9.1f}")
    r = s["ring_kv_caches"]
    if r:
        lines.append(f"  ring KV caches: {r['rings']} of {r['caches']} (sliding-window layers: "
                     f"{'/'.join(map(str, r['rows']))} rows for a window of {'/'.join(map(str, r['windows']))})")
    return "\n".join(lines)
