"""bench/embed_bench.py --quick: the side-by-side embedding benchmark runs end to end (no timing asserted)."""

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
    assert bench.main(["--quick", "--sets", "f32", "--json", str(tmp_path / "r.json")]) == 0
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert {r["engine"] for r in rows} == {"webllm-py f32", "sentence-transformers (torch CPU)"}
    assert all(r["texts_per_s"] > 0 and r["workload"] == "64 short" for r in rows)
