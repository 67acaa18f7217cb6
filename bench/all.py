"""Run every benchmark, then print one table of their verdicts.

Each benchmark measures Hashroom next to a baseline in the same run and prints its checks as
lines starting with ``ok`` or ``FAIL`` (see docs/benchmarks.md). This script runs them one
after another (never in parallel: they share the machine's cores), keeps each one's full
output in ``bench/results/all-<time>/<name>.log``, and ends with every check in one table.

    .venv/bin/python bench/all.py                 # everything (about 20 minutes)
    .venv/bin/python bench/all.py --smoke         # each one tiny: proves they run (CI)
    .venv/bin/python bench/all.py --only fanout,ingest

Exit status: 0 when every benchmark ran and (unless ``--smoke``) every check passed; 1
otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"


@dataclass(frozen=True)
class Bench:
    name: str
    what: str
    full: list[str]
    smoke: list[str] = field(default_factory=list)


BENCHES = [
    Bench(
        "fanout",
        "1,000 readers x 10 posts/s vs raw websockets.broadcast()",
        ["fanout.py", "--repeat", "3"],
        ["fanout.py", "--smoke"],
    ),
    Bench(
        "capacity",
        "10,000 readers x 1 post/s vs raw websockets.broadcast()",
        ["fanout.py", "--capacity", "--repeat", "3"],
        ["fanout.py", "--smoke", "--capacity", "--clients", "40"],
    ),
    Bench(
        "ingest",
        "posts/s through the ingester and writer vs raw batched inserts",
        ["ingest.py"],
        ["ingest.py", "--smoke"],
    ),
    Bench(
        "catchup",
        "1,000 clients 300 events behind reconnecting at once vs a raw server",
        ["catchup.py"],
        ["catchup.py", "--smoke"],
    ),
    Bench(
        "browser",
        "first 200 posts painted; long tasks at 360 px, 4x CPU throttling",
        ["browser.py"],
        ["browser.py", "--smoke"],
    ),
    Bench(
        "render",
        "rendering a post's HTML",
        ["render.py"],
        ["render.py", "--smoke"],
    ),
]


def checks(output: str) -> list[tuple[bool, str]]:
    """The ``ok …`` / ``FAIL …`` lines a benchmark printed, in order."""
    found = []
    for line in output.splitlines():
        if line.startswith("ok "):
            found.append((True, line[3:].strip()))
        elif line.startswith("FAIL "):
            found.append((False, line[5:].strip()))
    return found


def run(bench: Bench, smoke: bool, logs: Path) -> tuple[int, float, list[tuple[bool, str]]]:
    """Run one benchmark; its exit status, seconds taken and checks (output kept in logs)."""
    argv = bench.smoke if smoke else bench.full
    log = logs / f"{bench.name}.log"
    started = time.monotonic()
    print(f"== {bench.name}: {bench.what}", flush=True)
    with open(log, "w") as out:
        proc = subprocess.run(
            [sys.executable, str(BENCH / argv[0]), *argv[1:]],
            cwd=BENCH.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        out.write(proc.stdout)
    seconds = time.monotonic() - started
    print(proc.stdout, flush=True)
    return proc.returncode, seconds, checks(proc.stdout)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="a tiny run of each (CI)")
    p.add_argument("--only", help="comma-separated names: " + ", ".join(b.name for b in BENCHES))
    args = p.parse_args()
    chosen = BENCHES
    if args.only:
        names = {n.strip() for n in args.only.split(",")}
        unknown = names - {b.name for b in BENCHES}
        if unknown:
            p.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
        chosen = [b for b in BENCHES if b.name in names]
    logs = RESULTS / f"all-{dt.datetime.now():%Y%m%d-%H%M%S}"
    logs.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str]] = []
    failed = False
    for bench in chosen:
        status, seconds, found = run(bench, args.smoke, logs)
        # A smoke run exits 0 when it ran; a full one exits 0 when its checks pass.
        ran = status == 0 or (not args.smoke and status == 1 and bool(found))
        if not ran:
            failed = True
            rows.append((bench.name, "ERROR", f"exit status {status}; see {log_name(logs, bench)}"))
            continue
        if not found:
            rows.append((bench.name, "ran", f"{seconds:.0f} s, no checks printed"))
        for ok, text in found:
            rows.append((bench.name, "ok" if ok else "FAIL", text))
            if not ok and not args.smoke:
                failed = True
    width = [max(len(r[i]) for r in rows) for i in range(2)] if rows else [0, 0]
    print("\n" + ("smoke run: " if args.smoke else "") + "every benchmark's checks")
    for name, verdict, text in rows:
        print(f"{name.ljust(width[0])}  {verdict.ljust(width[1])}  {text}")
    print(f"logs: {os.path.relpath(logs, BENCH.parent)}")
    sys.exit(1 if failed else 0)


def log_name(logs: Path, bench: Bench) -> str:
    return os.path.relpath(logs / f"{bench.name}.log", BENCH.parent)


if __name__ == "__main__":
    main()
