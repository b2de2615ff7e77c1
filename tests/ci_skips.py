"""With the env var CI set, a skipped test is a failed test, except for the skips named in
CI_SKIPS_ALLOWED: a CI run must never pass because what it was meant to check was absent
(a package the [test] extra installs, a file in ../shared, a browser, an adapter). Off CI the
skips stay skips, each with its reason. Loaded by conftest.py as a pytest plugin; covers
skips at run time (pytest.skip, importorskip in a fixture, skipif) and at collection (a
module's importorskip).
"""

from __future__ import annotations

import os

import pytest

# Reasons (substrings) CI may skip for: a capability the CI adapters lack by design. SwiftShader
# has no shader-f16; the f16 variants run on lavapipe in the same run.
CI_SKIPS_ALLOWED = ("shader-f16",)


def _on_ci() -> bool:
    return bool(os.environ.get("CI"))


def _reason(longrepr: object) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _fail_unless_allowed(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not (_on_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = _reason(report.longrepr)
    if any(a in reason for a in CI_SKIPS_ALLOWED):
        return
    report.outcome = "failed"
    report.longrepr = f"CI is set, so this skip is a failure (tests/ci_skips.py): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    _fail_unless_allowed(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    outcome = yield
    _fail_unless_allowed(outcome.get_result())
