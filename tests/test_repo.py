"""The repository itself: no leftovers of a merge in any tracked file."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKERS = ("<<<<<<< ", ">>>>>>> ", "<<<<<<<\n", ">>>>>>>\n")


def test_no_tracked_file_holds_merge_conflict_markers():
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    found = []
    for name in files:
        path = ROOT / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        for number, line in enumerate(path.read_bytes().decode(errors="replace").splitlines(True)):
            if line.startswith(MARKERS):
                found.append(f"{name}:{number + 1}")
    assert not found, "merge conflict markers left in: " + ", ".join(found)
