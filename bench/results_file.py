"""Where each benchmark writes its full results: one JSON file under bench/results/ (or
``--json``), with the same envelope — when, the command, the machine, the arguments."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def save(
    name: str,
    args: argparse.Namespace,
    body: dict[str, Any],
    machine: dict[str, Any] | None = None,
) -> Path:
    """Write ``body`` with the envelope to ``args.json`` or bench/results/<name>-<time>.json
    (``machine`` adds to the machine facts), print where, and return the path."""
    out = getattr(args, "json", None) or RESULTS / f"{name}-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    envelope = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            **(machine or {}),
        },
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    out.write_text(json.dumps({**envelope, **body}, indent=2))
    print(f"results: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return out
