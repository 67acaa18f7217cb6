"""Rendering a post's HTML: µs per ``Presenter.post_html`` beside ``json.dumps`` of the same post.

One run, one process. Every stored post is rendered once, and its HTML travels in the live
frame beside the post's JSON; so the baseline is the other per-post cost of that frame,
``json.dumps`` of the same post dict, measured in the same run on the same inputs. (A bare
``str.format`` of a few fields would be a floor no template can reach; ``json.dumps`` walks
and escapes every field like a renderer does, in C.)

Two inputs: the golden corpus of tests/render_golden.json (68 varied posts and 10 pins: every
network, media, quotes, replies, warnings, hostile markup) and a typical chat post (a
300-character native reply, no media). Each round renders every input ``--loops`` times;
figures are medians over ``--rounds`` rounds. The run also checks that every corpus entry
renders to exactly its golden HTML.

    .venv/bin/python bench/render.py                  # 7 rounds
    .venv/bin/python bench/render.py --rounds 15 --loops 400
    .venv/bin/python bench/render.py --smoke          # a second; exits 0 when it ran

Exit status: 0 when every check passed (or ``--smoke`` ran and the HTML matched), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from post_text import post_text  # noqa: E402

from app.models import Post  # noqa: E402
from app.present import Presenter, post_json  # noqa: E402
from app.templating import make_templates  # noqa: E402

GOLDEN = ROOT / "tests" / "render_golden.json"

TARGET_RATIO = 10.0
"""Rendering a post may cost at most 10x ``json.dumps`` of it. With the post partial rendered
through Jinja macros and nested-dict lookups it cost 18-20x (about half the CPU of storing a
post); the target keeps the gain of making the partial straight-line (more than 2x)."""


def typical_post() -> dict[str, Any]:
    """A plain 300-character native chat reply, as the room hands it to the presenter."""
    post = Post(
        id=1234,
        chat_id=1,
        network="native",
        remote_id="native-1234",
        author_name="Tess Tester",
        author_handle="tess",
        text=post_text(1234),
        created_at=datetime(2026, 11, 28, 9, 30, 5, 123456),
    )
    return post_json(post)


def per_call_us(fn: Callable[[Any], object], items: list[Any], loops: int) -> float:
    """µs per call of ``fn`` over ``items``, each called ``loops`` times."""
    start = time.perf_counter()
    for _ in range(loops):
        for item in items:
            fn(item)
    return (time.perf_counter() - start) * 1e6 / (loops * len(items))


def measure(
    rows: dict[str, tuple[Callable[[Any], object], list[Any]]], rounds: int, loops: int
) -> dict[str, list[float]]:
    """Per row, µs per call in each round; rows interleave within a round, so load hits all."""
    samples: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(rounds):
        for name, (fn, items) in rows.items():
            samples[name].append(per_call_us(fn, items, loops))
    return samples


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7, help="rounds; figures are medians")
    p.add_argument("--loops", type=int, default=200, help="renders of each input per round")
    p.add_argument("--smoke", action="store_true", help="a tiny run: proves the bench runs")
    args = p.parse_args()
    if args.smoke:
        args.rounds, args.loops = 3, 5
    if min(args.rounds, args.loops) <= 0:
        p.error("--rounds and --loops must be positive")

    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    presenter = Presenter(make_templates().env)
    posts = [entry["post"] for entry in golden["posts"]]
    pins = [(entry["pin"], entry["post"]) for entry in golden["pins"]]
    # As many renders of the typical post as of the corpus per round: a round of a single
    # post lasts a few ms, too short to ride out this machine's noise.
    typical = [typical_post()] * len(posts)

    mismatched = [e["name"] for e in golden["posts"] if presenter.post_html(e["post"]) != e["html"]]
    mismatched += [
        e["name"] for e in golden["pins"] if presenter.pin_html(e["pin"], e["post"]) != e["html"]
    ]

    rows: dict[str, tuple[Callable[[Any], object], list[Any]]] = {
        "post_html  corpus": (presenter.post_html, posts),
        "json.dumps corpus": (json.dumps, posts),
        "post_html  typical": (presenter.post_html, typical),
        "json.dumps typical": (json.dumps, typical),
        "pin_html   corpus": (lambda pair: presenter.pin_html(*pair), pins),
        "json.dumps pins": (lambda pair: json.dumps(pair[1]), pins),
    }
    samples = measure(rows, args.rounds, args.loops)
    median = {name: statistics.median(values) for name, values in samples.items()}

    print(
        f"python {platform.python_version()}, {os.cpu_count()} cores, load "
        f"{os.getloadavg()[0]:.2f}; {len(posts)} corpus posts, {len(pins)} pins; "
        f"{args.rounds} rounds x {args.loops} loops"
    )
    print(f"{'what':20} {'median µs':>10} {'min µs':>8} {'max µs':>8}")
    for name, values in samples.items():
        print(f"{name:20} {median[name]:10.2f} {min(values):8.2f} {max(values):8.2f}")
    print()

    checks: list[tuple[bool, str]] = []
    checks.append(
        (
            not mismatched,
            f"rendered HTML identical to tests/render_golden.json "
            f"({len(posts) + len(pins) - len(mismatched)}/{len(posts) + len(pins)} entries"
            + (f"; differ: {', '.join(mismatched[:5])}" if mismatched else "")
            + ")",
        )
    )
    for label, render, base in (
        ("corpus", "post_html  corpus", "json.dumps corpus"),
        ("typical post", "post_html  typical", "json.dumps typical"),
    ):
        ratio = median[render] / median[base]
        checks.append(
            (
                ratio <= TARGET_RATIO,
                f"post_html/json.dumps, {label} = {ratio:.1f}x "
                f"({median[render]:.1f} µs vs {median[base]:.1f} µs; target ≤ {TARGET_RATIO:g}x)",
            )
        )
    for ok, text in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {text}")

    if args.smoke:  # a smoke run proves the bench runs and the bytes match, not the speed
        sys.exit(0 if not mismatched else 1)
    sys.exit(0 if all(ok for ok, _ in checks) else 1)


if __name__ == "__main__":
    main()
