"""On CI (``CI=true``) a skipped or xfailed test fails the run unless it is allowlisted here.

A skip hides a test that no longer runs, and an xfail hides a known bug; locally they may be
fine (a missing outside tool says how to install it), on CI they must be a decision.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from tests.server import in_ci

# Node ids (or their prefixes) allowed to skip or xfail on CI, each with why. Keep it short.
ALLOWED: dict[str, str] = {}


def allowed(nodeid: str) -> bool:
    return any(nodeid == n or nodeid.startswith(n + "[") for n in ALLOWED)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if not in_ci() or allowed(item.nodeid):
        return
    xfailed = hasattr(report, "wasxfail")
    if not (report.skipped or xfailed):
        return
    if xfailed:
        why = f"xfail ({report.wasxfail or 'no reason'})"
        del report.wasxfail
    else:
        longrepr = report.longrepr
        why = f"skip ({longrepr[2] if isinstance(longrepr, tuple) else longrepr})"
    report.outcome = "failed"
    report.longrepr = (
        f"{why} on CI: fix the cause, or add {item.nodeid!r} with a reason to ALLOWED in "
        "tests/ci_guard.py"
    )
