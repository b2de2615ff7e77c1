"""Which of a bundle's program sets runs on an adapter: the `auto` rule and forced sets.

The same rule as web/src/gpu_device.js chooseProgramSet; both are held to the shared cases in
web/test/fixtures/program_choice.json (tests/test_program_sets.py, web/test/program_sets.test.js):

  1. the adapter's class: "cpu" for a software adapter (wgpu-py adapter_type "CPU": lavapipe;
     in the browser a fallback adapter or SwiftShader / llvmpipe / lavapipe), else "gpu";
  2. the first set of that class in the manifest's `program_sets` (preference order) whose
     WebGPU features (and, in the browser, WGSL language features) the adapter has;
  3. none of that class: the same over the other class.

A bundle from before program sets had classes (no `program_sets`) keeps the earlier rule: idot
on CPU adapters where the bundle has it, else f16 with shader-f16, else f32. A set forced by
name that the bundle lacks, or whose features the adapter lacks, is one error naming both.
"""

from __future__ import annotations

from typing import Any, Collection, Mapping

from ..errors import BundleError, DeviceError


def adapter_class(adapter: Any) -> str:
    """"cpu" for a software adapter (wgpu-py reports lavapipe as adapter_type "CPU"), else "gpu"."""
    return "cpu" if adapter.info.get("adapter_type") == "CPU" else "gpu"


def _legacy(cls: str, features: Collection[str], sets: Collection[str]) -> str:
    if cls == "cpu" and "idot" in sets:
        return "idot"
    return "f16" if "shader-f16" in features and "f16" in sets else "f32"


def _lacks(meta: Mapping[str, Any], features: Collection[str], language: Collection[str] | None) -> list[str]:
    need = [f for f in meta.get("features", []) if f not in features]
    if language is not None:
        need += [f"WGSL {f}" for f in meta.get("wgsl_language_features", []) if f not in language]
    return need


def choose_program_set(manifest: Mapping[str, Any], requested: str, cls: str, features: Collection[str],
                       language_features: Collection[str] | None = None) -> str:
    """The program set to run: `requested` ("auto" or a set name) on an adapter of class `cls`
    with WebGPU `features` (and WGSL `language_features`; None: not checked, as natively)."""
    sets = list(manifest.get("programs", {}))
    metas = {m["name"]: m for m in manifest.get("program_sets", [])}
    if requested != "auto":
        if requested not in sets:
            raise BundleError(f"bundle has no {requested} programs (it has {', '.join(sets)}); "
                              "rebuild it with this webllm-py or choose precision='auto'")
        lacks = _lacks(metas[requested], features, language_features) if requested in metas else \
            (["shader-f16"] if requested == "f16" and "shader-f16" not in features else [])
        if lacks:
            raise DeviceError(f"program set {requested} needs {', '.join(lacks)}, which this adapter lacks; "
                              "use precision='auto'")
        return requested
    if not metas:
        return _legacy(cls, features, sets)
    other = "gpu" if cls == "cpu" else "cpu"
    for c in (cls, other):
        for m in metas.values():  # manifest order = preference order
            if m["class"] == c and not _lacks(m, features, language_features):
                return m["name"]
    raise DeviceError(f"no program set of this bundle ({', '.join(sets)}) runs on this adapter "
                      f"(features: {', '.join(sorted(features)) or 'none'})")
