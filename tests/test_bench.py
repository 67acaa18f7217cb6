"""Every benchmark still runs: `bench/all.py --smoke` runs each in a tiny version.

Benchmarks are not timed tests: their figures are judged by people reading
docs/benchmarks.md, on a quiet machine. What CI checks is that each one starts the real app
and its baseline, measures both, and prints its table and checks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server import need_tool

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(600)


def test_every_benchmark_runs_in_its_smoke_version():
    need_tool(Path("/usr/bin/chromium").exists(), "apt-get install -y chromium")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "all.py"), "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=580,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    tail = done.stdout[-4000:] + done.stderr[-2000:]
    assert done.returncode == 0, tail
    summary = done.stdout.rsplit("every benchmark's checks", 1)[-1]
    for name in ("fanout", "capacity", "ingest", "catchup", "browser", "render"):
        rows = [line for line in summary.splitlines() if line.startswith(name + " ")]
        assert rows, f"{name} printed no checks:\n{tail}"
        assert not any(" ERROR " in row for row in rows), tail
