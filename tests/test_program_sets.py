"""Program sets (passes/program_sets.py): metadata, the cpu sets kept byte-identical, the `auto` rule.

Golden digests: sha256 of the canonical JSON (sort_keys) of the f32/f16/idot programs and the
WGSL of every kernel they use, for the seeded tiny Llama (conftest TINY_ARCHS["llama"], seed 0,
prefill_chunk 16), computed by the same `_cpu_digest` at commit 404cef5 (before program sets had
adapter classes) and renewed once since, when rope's sin/cos became polynomials (_sincos.wgsl): the
rope_kv kernels' WGSL was the only difference from 404cef5's (checked by rendering both template
trees). The programs depend on shapes and formats only, not on weight values.

Tolerances of the whole-model runs: as tests/test_native.py's f16 rows (the gpu sets keep f32
activations; what they may round is the KV cache stored as f16): logits max |diff| <= 2e-2 of
the reference backend's f32 logits.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from webllm_py.codegen.wgsl_compat import uses_subgroups
from webllm_py.passes.program_sets import DEFAULT_SETS, PREFERENCE, PROGRAM_SETS, check_sets

CPU_SETS = ("f32", "f16", "idot")
GOLDEN = {  # quantization -> digest at 404cef5 with _sincos.wgsl's rope_kv
    "q4": "00049e183a9600318c6756762ed5428067fcdde51f784ae9edbd4c5ec1009ce0",
    "q8": "2ff518f95a0637d90662561b97fe1f307d40f0351efa889436197b6213511b5e",
}


def _cpu_digest(bundle: Path) -> str:
    m = json.loads((bundle / "manifest.json").read_text())
    used = sorted({d["kernel"] for s in CPU_SETS for p in m["programs"][s].values() for d in p["dispatches"]})
    doc = {"programs": {s: m["programs"][s] for s in CPU_SETS},
           "kernels": {k: (bundle / m["kernels"][k]["file"]).read_text() for k in used}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@pytest.mark.parametrize("quantization", sorted(GOLDEN))
def test_cpu_sets_are_byte_identical(tiny_bundles, quantization):
    assert _cpu_digest(tiny_bundles("llama", quantization)) == GOLDEN[quantization]


def test_manifest_lists_sets_in_preference_order(tiny_bundles):
    m = json.loads((tiny_bundles("llama", "q4") / "manifest.json").read_text())
    meta = m["program_sets"]
    assert [s["name"] for s in meta] == [s for s in PREFERENCE if s in DEFAULT_SETS]
    assert set(m["programs"]) == set(DEFAULT_SETS)
    by = {s["name"]: s for s in meta}
    assert by["f16"] == {"name": "f16", "class": "cpu", "activations": "f16", "kv": "f16", "features": ["shader-f16"],
                         "wgsl_language_features": []}
    assert by["gpu"]["class"] == by["gpu-sg"]["class"] == "gpu"
    assert all(by[s]["class"] == "cpu" for s in CPU_SETS)
    bundle = tiny_bundles("llama", "q4")
    for s in meta:  # a set needs "subgroups" exactly when one of its kernels enables them
        texts = [(bundle / m["kernels"][d["kernel"]]["file"]).read_text()
                 for p in m["programs"][s["name"]].values() for d in p["dispatches"]]
        assert ("subgroups" in s["features"]) == any(map(uses_subgroups, texts))


def test_unknown_set_is_one_error():
    with pytest.raises(ValueError, match="unknown program set 'gpu2'; choose from f32, f16, idot, gpu, gpu-sg"):
        check_sets(["f32", "gpu2"])
    assert set(PREFERENCE) == set(PROGRAM_SETS)


CHOICE = json.loads((Path(__file__).resolve().parents[1] / "web/test/fixtures/program_choice.json").read_text())


def _case_manifest(case: dict) -> dict:
    sets = case["sets"]
    if sets and isinstance(sets[0], str):  # a bundle from before program_sets
        return {"programs": {s: {} for s in sets}}
    return {"programs": {m["name"]: {} for m in sets}, "program_sets": sets}


@pytest.mark.parametrize("case", CHOICE["cases"], ids=[c["name"] for c in CHOICE["cases"]])
def test_choice_golden_cases(case):
    """The same cases web/test/program_sets.test.js runs through gpu_device.js chooseProgramSet."""
    from webllm_py.runtime.program_choice import choose_program_set

    args = (_case_manifest(case), case["requested"], case["class"], set(case["features"]), set(case["language_features"]))
    if isinstance(case["expect"], dict):
        with pytest.raises(Exception, match=case["expect"]["error"]):
            choose_program_set(*args)
    else:
        assert choose_program_set(*args) == case["expect"]


LONG_PROMPT = [(7 * i + 3) % 280 + 2 for i in range(150)]  # 10 prefill chunks of 16, past one key block


@pytest.mark.parametrize("precision", ["gpu", "gpu-sg"])
def test_gpu_sets_match_reference_natively(precision, tiny_bundles, adapter):
    """Forced gpu sets on lavapipe: score, prefill + decode vs the f32 reference (f16-KV tolerance,
    module docstring)."""
    import numpy as np

    import webllm_py

    b = tiny_bundles("llama", "q4")
    ref = webllm_py.load(b, backend="reference").logits(LONG_PROMPT)
    tol = 2e-2 * max(1.0, float(np.abs(ref).max()))
    native = webllm_py.load(b, backend="native", precision=precision, adapter=adapter)
    assert native.precision == precision
    assert np.abs(native.logits(LONG_PROMPT) - ref).max() <= tol  # score
    native.reset()
    rows = [native.forward(LONG_PROMPT[:140])] + [native.forward([t]) for t in LONG_PROMPT[140:146]]
    assert np.abs(np.stack(rows) - ref[139:146]).max() <= tol  # prefill, then decode steps


def test_forced_set_errors_natively(tiny_bundles, adapter):
    """An unknown name is refused before anything loads; a set whose feature the adapter lacks is
    the golden cases' DeviceError (here: f16 on an adapter without shader-f16, as wgpu-py names it)."""
    import webllm_py
    from webllm_py.errors import DeviceError

    b = tiny_bundles("llama", "q4")
    with pytest.raises(ValueError, match="precision must be one of"):
        webllm_py.load(b, backend="native", precision="gpu3", adapter=adapter)
    if "shader-f16" not in adapter.features:
        with pytest.raises(DeviceError, match="program set f16 needs shader-f16"):
            webllm_py.load(b, backend="native", precision="f16", adapter=adapter)


def test_inspect_programs_llama_shape(tmp_path):
    """`inspect --programs` on a Llama shape (hidden 1024, ffn 4096, 16 heads / 4 KV heads, 2 layers,
    a tiny vocab) holds the issue's shape criteria for the gpu sets: every decode GEMV >= 16
    invocations per output row; decode attention at p = 4096 >= 32 x heads invocations."""
    import subprocess
    import sys

    import webllm_py
    from conftest import make_tiny_model

    src = make_tiny_model(tmp_path / "m", "llama", hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                          num_key_value_heads=4, num_hidden_layers=2, max_position_embeddings=4096)
    b = webllm_py.build(src, tmp_path / "b", quantization="q4", progress=False, prefill_chunk=32, context_window=4096)
    out = subprocess.run([sys.executable, "-m", "webllm_py.cli", "inspect", str(b), "--programs", "--json", "--p", "4096"],
                         capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    assert r["sets"]["gpu-sg"]["auto_on"] == ["gpu + subgroups", "gpu + shader-f16 + subgroups"]
    assert "cpu" in r["sets"]["idot"]["auto_on"]
    for name in ("gpu", "gpu-sg"):
        decode = r["sets"][name]["programs"]["decode"]["dispatches"]
        gemvs = [d for d in decode if d["family"] == "gemv"]
        assert len(gemvs) == 2 * 4 + 1 and all(d["invocations_per_row"] >= 16 for d in gemvs)
        split = [d for d in decode if d["family"] == "attention_split"]
        assert split and all(d["invocations"] >= 32 * 16 for d in split)
        assert {d["family"] for d in r["sets"][name]["programs"]["prefill"]["dispatches"]} >= {"gemm", "attention_tiled"}
    text = subprocess.run([sys.executable, "-m", "webllm_py.cli", "inspect", str(b), "--programs"],
                          capture_output=True, text=True, check=True).stdout
    assert "program set gpu-sg: class gpu" in text and "/row" in text and "/head" in text


@pytest.mark.parametrize("edit, where", [
    (lambda ps: ps[0].update({"class": "tpu"}), 'program_sets[0].class: "tpu" is not one of cpu, gpu'),
    (lambda ps: ps[1].update({"kv": "f8"}), 'program_sets[1].kv: "f8" is not one of f32, f16, f16x2'),
    (lambda ps: ps[2].update({"name": "gpu"}), 'program_sets[2].name: "gpu" is not a program set'),
    (lambda ps: ps.pop(), "program_sets: lists gpu-sg, gpu, idot, f16 but programs has"),
    (lambda ps: ps[0].update({"features": "subgroups"}), 'program_sets[0].features: "subgroups" must be a list'),
])
def test_bad_program_sets_metadata_is_one_error(tiny_bundles, edit, where):
    from webllm_py.bundle.validate import validate_manifest
    from webllm_py.errors import BundleError

    m = json.loads((tiny_bundles("llama", "q4") / "manifest.json").read_text())
    validate_manifest(m, "manifest.json")
    edit(m["program_sets"])
    with pytest.raises(BundleError, match="manifest.json: " + __import__("re").escape(where)):
        validate_manifest(m, "manifest.json")


def test_memory_estimate_counts_the_sets_kv_storage(tiny_bundles):
    """f16x2 caches are 2 bytes per element: the gpu sets' KV cache is half the f32 set's."""
    from webllm_py.runtime.kv_sizing import memory_estimate

    m = json.loads((tiny_bundles("llama", "q4") / "manifest.json").read_text())
    f32, gpu, f16 = (memory_estimate(m, s, 64) for s in ("f32", "gpu", "f16"))
    assert gpu.kv_cache_bytes * 2 == f32.kv_cache_bytes == f16.kv_cache_bytes * 2
    assert gpu.other_bytes == f32.other_bytes  # f32 activations in both
