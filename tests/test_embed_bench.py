"""bench/embed_bench.py --quick: the side-by-side embedding benchmark runs end to end, native and in
Chromium, every engine on its smoke workload (8 short texts; no timing asserted; the engines' first
embeddings must agree: cosine >= 0.999, webllm-py's q8 bundle vs transformers.js' fp32 ONNX export
of the same checkpoint, measured 0.99990)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_embed_bench_quick(tmp_path):
    spec = importlib.util.spec_from_file_location("embed_bench", Path(__file__).parents[1] / "bench" / "embed_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from webllm_py.testing.browser import browser_skip_reason

    assert browser_skip_reason() is None, browser_skip_reason()
    assert bench.main(["--quick", "--sets", "f32", "--json", str(tmp_path / "r.json")]) == 0
    out = json.loads((tmp_path / "r.json").read_text())
    assert {r["engine"] for r in out["rows"]} == {"webllm-py f32", "sentence-transformers (torch CPU)"}
    assert all(r["texts_per_s"] > 0 and r["workload"] == "8 short" for r in out["rows"])
    assert {r["engine"] for r in out["browser"]} == {"webllm-py f32", "webllm-py idot", "transformers.js webgpu",
                                                     "transformers.js wasm"}
    assert all(r["texts_per_s"] > 0 and r["cosine"] >= 0.999 and r["workload"] == "8 short" for r in out["browser"])
