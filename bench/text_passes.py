"""Passes over hostile post text: the earlier implementations beside today's, in one run.

The baseline rows run the passes as they were before they were made linear (kept below,
verbatim in behaviour); the current rows run app/text.py, app/qa.py and the wall's trim. Each
row is the best of three runs on the same input.

    .venv/bin/python bench/text_passes.py              # 20 KB inputs for both, 1 MB for today's
    .venv/bin/python bench/text_passes.py --size 50000
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import text  # noqa: E402
from app.networks.mastodon import opens_with_question  # noqa: E402
from app.routes.wall import wall_text  # noqa: E402

# --- the earlier passes (baseline) -------------------------------------------------------


class _OldCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in ("br", "li"):
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def old_html_to_text(markup: str) -> str:
    collector = _OldCollector()
    collector.feed(markup)
    collector.close()
    out = "".join(collector.parts)
    out = re.sub(r"[ \t]+\n", "\n", out)
    out = re.sub(r"\n{3,}", "\n\n", out)
    return re.sub(r"\n\n[ \t]+", "\n\n", out).strip()


_BRACKETS = {")": "(", "]": "[", "}": "{"}


def old_trim_url(url: str) -> str:
    while url:
        last = url[-1]
        if last in ".,:;!?'\"*":
            url = url[:-1]
        elif last in _BRACKETS and url.count(last) > url.count(_BRACKETS[last]):
            url = url[:-1]
        else:
            break
    return url


def old_wall_text(value: str, hashtag: str) -> str:
    trimmed = re.sub(rf"\s*#{re.escape(hashtag)}\s*$", "", value, flags=re.IGNORECASE).strip()
    return trimmed or value


# --- inputs and passes -------------------------------------------------------------------


def inputs(size: int) -> dict[str, str]:
    return {
        "spaces": " " * size + "x",
        "unclosed tags": "<a " * (size // 3),
        "url then brackets": "https://a.example/" + ")" * size,
    }


PASSES: list[tuple[str, Callable[[str], object], Callable[[str], object], str]] = [
    ("html_to_text", old_html_to_text, text.html_to_text, "unclosed tags"),
    ("html_to_text", old_html_to_text, text.html_to_text, "spaces"),
    ("question check", lambda s: old_html_to_text(s), opens_with_question, "unclosed tags"),
    ("trailing brackets", old_trim_url, lambda s: text._url_spans(s), "url then brackets"),
    (
        "wall trim",
        lambda s: old_wall_text(s, "edchat"),
        lambda s: wall_text({"text": s}, "edchat"),
        "spaces",
    ),
]


def best_ms(fn: Callable[[str], object], data: str, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn(data)
        best = min(best, (time.perf_counter() - start) * 1000)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000, help="baseline input size")
    args = parser.parse_args()
    small, large = inputs(args.size), inputs(1_000_000)
    print(
        f"{'pass':18} {'input':18} {'baseline ' + str(args.size):>16} {'now (same)':>11} "  # noqa: T201
        f"{'now 1 MB':>9}"
    )
    for name, old, new, shape in PASSES:
        before = best_ms(old, small[shape], runs=1)
        after = best_ms(new, small[shape])
        after_mb = best_ms(new, large[shape])
        print(  # noqa: T201
            f"{name:18} {shape:18} {before:13.1f} ms {after:8.1f} ms {after_mb:6.1f} ms"
        )


if __name__ == "__main__":
    main()
