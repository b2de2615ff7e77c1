"""tests/ci_skips.py: with CI set, a skip fails unless its reason is one CI may skip for
(shader-f16 on SwiftShader); without CI the skips stay skips. Runs pytest on a probe file in a
subprocess, with and without the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROBE = '''
import pytest
def test_runtime_skip(): pytest.skip("no thing here")
def test_allowed(): pytest.skip("adapter lacks shader-f16 (SwiftShader)")
@pytest.mark.skipif(True, reason="a condition")
def test_skipif(): pass
def test_importorskip(): pytest.importorskip("surely_not_a_package_xyz")
def test_passes(): pass
'''


def _run(tmp_path: Path, ci: str | None) -> str:
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(Path(__file__).parent)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "ci_skips", "-p", "no:cacheprovider",
                        str(tmp_path / "test_probe.py")], capture_output=True, text=True, cwd=tmp_path, env=env,
                       timeout=120)
    return r.stdout


def test_skips_fail_on_ci(tmp_path):
    out = _run(tmp_path, "true")
    assert "2 failed, 1 passed, 1 skipped, 1 error" in out, out
    for name in ("test_runtime_skip", "test_importorskip"):
        assert f"FAILED test_probe.py::{name} - CI is set, so this skip is a failure" in out, out
    assert "ERROR test_probe.py::test_skipif - CI is set" in out, out  # skipif is decided at set-up
    assert "SKIPPED [1] test_probe.py:4: adapter lacks shader-f16" in out, out


def test_skips_stay_skips_off_ci(tmp_path):
    out = _run(tmp_path, None)
    assert "1 passed, 4 skipped" in out, out
