"""Program sets: the registry of kernel-choice variants a bundle carries, and their manifest metadata.

A program set is one complete set of programs (decode, prefill, score) lowered for one adapter
class with one activation dtype and one KV-cache storage. The runtimes pick one per adapter
(`runtime/program_choice.py`, `web/src/gpu_device.js` chooseProgramSet: the same rule, held to
the shared cases of web/test/fixtures/program_choice.json). The table:

  set      class  activations  KV storage  needs
  f32      cpu    f32          f32         -
  f16      cpu    f16          f16         shader-f16
  idot     cpu    f32          f32         WGSL packed_4x8_integer_dot_product (decode matmuls on packed x)
  gpu      gpu    f32          f16x2       -
  gpu-sg   gpu    f32          f16x2       subgroups (where its kernels use them)

The cpu-class sets were tuned on lavapipe/SwiftShader; the gpu-class sets ask codegen/shapes.py's
"gpu" table for their kernels (GEMV with >= 16 invocations per output row, flash-decoding, ...).
Why f32 activations on the gpu sets: a decode GEMV reads hidden*4 bytes of x against the
weights' rows*cols*0.5+ bytes (< 1 %); what grows is the KV cache, so it is stored as
"f16x2": the cache as f16 pairs in u32 words (docs/bundle-format.md), without shader-f16 (Chrome
on Linux/NVIDIA lacks it).

`PREFERENCE` is the order `auto` tries the sets of one class in; the manifest lists the sets it
holds in that order (`program_sets`), with the WebGPU features and WGSL language features each
needs, detected from the kernels it uses (`set_metadata`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..codegen import kernels as K
from ..codegen.wgsl_compat import uses_subgroups

ADAPTER_CLASSES = ("cpu", "gpu")
# bytes per element of each KV-cache storage ("f16x2": f16 pairs in u32 words)
KV_BYTES = {"f32": 4, "f16": 2, "f16x2": 2}
ACT_BYTES = {"f32": 4, "f16": 2}


@dataclass(frozen=True)
class ProgramSet:
    name: str
    adapter_class: str  # "cpu" | "gpu": the codegen/shapes.py table its kernels come from
    act: str  # activation dtype
    kv: str  # KV-cache storage (KV_BYTES)
    idot: bool = False  # decode matmuls as integer dot products on packed activations (cpu table)
    subgroups: bool = False  # kernels may use subgroup builtins (then the set needs "subgroups")


PROGRAM_SETS: dict[str, ProgramSet] = {s.name: s for s in (
    ProgramSet("f32", "cpu", "f32", "f32"),
    ProgramSet("f16", "cpu", "f16", "f16"),
    ProgramSet("idot", "cpu", "f32", "f32", idot=True),
    ProgramSet("gpu", "gpu", "f32", "f16x2"),
    ProgramSet("gpu-sg", "gpu", "f32", "f16x2", subgroups=True),
)}
# auto's order within a class: subgroups before without; on CPU adapters idot (1.3x faster decode
# on lavapipe, docs/performance.md) before f16 before f32 (today's rule, kept)
PREFERENCE = ("gpu-sg", "gpu", "idot", "f16", "f32")
DEFAULT_SETS = ("f32", "f16", "idot", "gpu", "gpu-sg")


def check_sets(sets: Iterable[str]) -> tuple[str, ...]:
    """`sets` as a tuple of known names; one ValueError naming an unknown one and the choices."""
    out = tuple(sets)
    for s in out:
        if s not in PROGRAM_SETS:
            raise ValueError(f"unknown program set {s!r}; choose from {', '.join(PROGRAM_SETS)}")
    if not out:
        raise ValueError(f"no program set given; choose from {', '.join(PROGRAM_SETS)}")
    return out


def set_metadata(programs: Mapping[str, Mapping[str, Any]], kernels: Mapping[str, K.Kernel]) -> list[dict[str, Any]]:
    """The manifest's `program_sets`: per set it holds, in PREFERENCE order, its class, activation
    dtype, KV storage, and the WebGPU features / WGSL language features its kernels use."""
    out = []
    for name in sorted(programs, key=PREFERENCE.index):
        s = PROGRAM_SETS[name]
        texts = [kernels[d["kernel"]].wgsl for prog in programs[name].values() for d in prog["dispatches"]]
        features = (["shader-f16"] if s.act == "f16" else []) + (["subgroups"] if any(map(uses_subgroups, texts)) else [])
        out.append({"name": name, "class": s.adapter_class, "activations": s.act, "kv": s.kv,
                    "features": features,
                    "wgsl_language_features": sorted({f for t in texts for f in K.wgsl_features(t)})})
    return out
