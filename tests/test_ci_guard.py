"""The CI guard: skips and xfails fail the run under CI=true unless allowlisted."""

from __future__ import annotations

import pytest

INNER = """
import pytest

def test_skips():
    pytest.skip("no tool")

@pytest.mark.xfail(reason="known bug")
def test_xfails():
    assert False

@pytest.mark.xfail(reason="fixed meanwhile")
def test_xpasses():
    pass

def test_passes():
    pass
"""


def _run(pytester: pytest.Pytester) -> pytest.RunResult:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_inner=INNER)
    return pytester.runpytest_inprocess("-p", "tests.ci_guard", "-p", "no:cacheprovider")


@pytest.mark.parametrize("ci", ["true", "TRUE", "True"])
def test_skip_and_xfail_fail_on_ci(pytester: pytest.Pytester, monkeypatch, ci: str) -> None:
    """With CI=true in any case, a skip, an xfail and an xpass each count as a failure."""
    monkeypatch.setenv("CI", ci)
    result = _run(pytester)
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines(["*skip (*no tool*) on CI*ALLOWED*"])


def test_skips_are_only_reported_off_ci(pytester: pytest.Pytester, monkeypatch) -> None:
    """Without CI the same file skips and xfails as pytest normally does."""
    monkeypatch.delenv("CI", raising=False)
    result = _run(pytester)
    result.assert_outcomes(passed=1, skipped=1, xfailed=1, xpassed=1)


def test_allowlisted_tests_may_skip_on_ci(pytester: pytest.Pytester, monkeypatch) -> None:
    """A node id on the allowlist may skip on CI."""
    from tests import ci_guard

    monkeypatch.setenv("CI", "true")
    monkeypatch.setitem(ci_guard.ALLOWED, "test_inner.py::test_skips", "outside tool")
    result = _run(pytester)
    result.assert_outcomes(passed=1, skipped=1, failed=2)
