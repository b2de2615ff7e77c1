"""Every program set of a bundle, natively, against transformers: the loop the architecture tests share.

test_architectures, test_gemma, test_phi3, test_kv_ring and test_rope_yarn build a seeded tiny
model, take transformers' logits as the reference, and run each program set of its bundle on the
native backend. Tolerances (x max(1, max|logit|)):

| sets            | tol    | why                                                                  |
|-----------------|--------|----------------------------------------------------------------------|
| f32, idot       | 2e-4   | f32 storage; only the summation order differs from torch's           |
| f16, gpu, gpu-sg| 5e-2   | f16 activations and KV cache (11-bit mantissa) through every layer   |
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

F32_TOL, F16_TOL = 2e-4, 5e-2
F16_STORAGE_SETS = {"f16", "gpu", "gpu-sg"}


def bound(ref: np.ndarray, tol: float) -> float:
    """The absolute bound `tol` x max(1, max|ref|) (logits scale with the model)."""
    return tol * max(1.0, float(np.abs(ref).max()))


def set_tol(name: str) -> float:
    """The table's tolerance of program set `name`."""
    return F16_TOL if name in F16_STORAGE_SETS else F32_TOL


def native_program_sets(bundle: Path, adapter: Any, required: Iterable[str]) -> Iterator[tuple[str, Any]]:
    """(set name, the bundle loaded natively with it) for every program set of the manifest, each
    closed after the caller's loop body; f16 only where the adapter has shader-f16 (lavapipe has it).
    After the last set, asserts that every name of `required` ran (the GPU class forced on a CPU
    adapter included), so a bundle that lost a set fails rather than passing with fewer."""
    import webllm_py

    ran = []
    for name in json.loads((Path(bundle) / "manifest.json").read_text())["programs"]:
        if name == "f16" and "shader-f16" not in adapter.features:
            continue
        model = webllm_py.load(bundle, backend="native", precision=name, adapter=adapter)
        try:
            yield name, model
        finally:
            model.close()
        ran.append(name)
    assert set(required) <= set(ran), ran


def assert_reference_matches(bundle: Path, prompt: list[int], ref: np.ndarray, greedy: list[int]) -> None:
    """The numpy reference backend (f32) on `bundle`: the logits of every position of `prompt` within
    F32_TOL of transformers' `ref`, and the 12 greedy tokens after prompt[:10] are transformers'."""
    import webllm_py

    model = webllm_py.load(bundle, backend="reference", precision="f32")
    ours = model.logits(prompt)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= bound(ref, F32_TOL)
    assert model.generate(prompt[:10], max_new_tokens=12) == greedy
