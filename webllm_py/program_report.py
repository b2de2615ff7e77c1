"""`webllm-py inspect BUNDLE --programs`: the shape of every dispatch of every program set.

Per program set: its class and needs, the adapters `auto` gives it to (runtime/program_choice.py
over each class x feature combination), and per program (decode at n = 1, prefill and score at
n = prefill_chunk; all at a cached length p) and dispatch: kernel family, workgroup size,
workgroups and invocations; for matmul-like kernels invocations per output row (invocations /
(rows x tokens)), for attention invocations per q head. Read from the manifest alone: nothing
runs. These are the shape rules kernels are judged by (never emulator timings).
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping

from .ir.graph import compile_dim
from .runtime.program_choice import choose_program_set

MATMUL_FAMILIES = ("matmul", "gemv", "gemm")
ATTENTION_FAMILIES = ("attention", "attention_split", "attention_combine", "attention_tiled")
_FEATURES = ("shader-f16", "subgroups")
_FORMS = {"decode": False, "prefill": True, "score": True}  # program -> n is the prefill chunk


def auto_adapters(manifest: Mapping[str, Any]) -> dict[str, list[str]]:
    """set -> the adapters (class + features) `auto` picks it on."""
    out: dict[str, list[str]] = {}
    for cls in ("cpu", "gpu"):
        for k in range(len(_FEATURES) + 1):
            for feats in itertools.combinations(_FEATURES, k):
                name = choose_program_set(manifest, "auto", cls, set(feats))
                out.setdefault(name, []).append(f"{cls}{' + ' + ' + '.join(feats) if feats else ''}")
    return out


def _dispatch(d: Mapping[str, Any], kernel: Mapping[str, Any], n: int, p: int) -> dict[str, Any]:
    key = kernel["key"]
    groups = [compile_dim(w)(n, p) for w in d["workgroups"]]
    wg = kernel["workgroup_size"]
    inv = groups[0] * groups[1] * groups[2] * wg[0] * wg[1] * wg[2]
    row = {"kernel": d["kernel"], "family": key["family"], "workgroup_size": wg, "workgroups": groups, "invocations": inv}
    if key["family"] in MATMUL_FAMILIES:
        tokens = 1 if key.get("last_row") else n
        row["invocations_per_row"] = inv / (key["rows"] * tokens)
    elif key["family"] in ATTENTION_FAMILIES:
        row["invocations_per_head"] = inv / key["heads"]
    return row


def program_report(manifest: Mapping[str, Any], p: int = 4096) -> dict[str, Any]:
    """The --programs report as data (what --json prints)."""
    chunk = int(manifest["prefill_chunk"])
    metas = {m["name"]: m for m in manifest.get("program_sets", [])}
    auto = auto_adapters(manifest)
    sets = {}
    for name, progs in manifest["programs"].items():
        meta = metas.get(name, {})
        report: dict[str, Any] = {"class": meta.get("class"), "activations": meta.get("activations"), "kv": meta.get("kv"),
                                  "features": meta.get("features", []), "auto_on": auto.get(name, []), "programs": {}}
        for prog, body in progs.items():
            n = chunk if _FORMS.get(prog, True) else 1
            report["programs"][prog] = {"n": n, "p": p, "dispatches": [
                _dispatch(d, manifest["kernels"][d["kernel"]], n, p) for d in body["dispatches"]]}
        sets[name] = report
    return {"p": p, "sets": sets}


def format_program_report(r: Mapping[str, Any]) -> str:
    lines = []
    for name, s in r["sets"].items():
        lines.append(f"program set {name}: class {s['class']}, activations {s['activations']}, KV {s['kv']}, "
                     f"needs {', '.join(s['features']) or 'nothing'}; auto on: {'; '.join(s['auto_on']) or 'none'}")
        for prog, body in s["programs"].items():
            lines.append(f"  {prog} (n={body['n']}, p={body['p']}):")
            for d in body["dispatches"]:
                extra = (f"  {d['invocations_per_row']:.1f}/row" if "invocations_per_row" in d else
                         f"  {d['invocations_per_head']:.0f}/head" if "invocations_per_head" in d else "")
                lines.append(f"    {d['family']:<18} wg {'x'.join(map(str, d['workgroup_size'])):<9} "
                             f"groups {'x'.join(map(str, d['workgroups'])):<12} inv {d['invocations']:>9}{extra}")
    return "\n".join(lines)
