"""The post and pin partials render every corpus entry to the same bytes as the golden file."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from app.present import Presenter
from app.templating import make_templates
from tests.render_corpus import GOLDEN

GOLDEN_DATA = json.loads(GOLDEN.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def presenter() -> Presenter:
    return Presenter(make_templates().env)


def test_corpus_covers_every_network_and_part() -> None:
    """The golden corpus keeps the variety it was written for (a trimmed file fails here)."""
    posts = [entry["post"] for entry in GOLDEN_DATA["posts"]]
    networks = Counter(p["network"] for p in posts)
    for network in ("native", "demo", "mastodon", "bluesky", "x"):
        assert networks[network] >= 5, network
    for part in ("media", "quote", "in_reply_to", "reposted_by", "spoiler_text", "sensitive"):
        assert sum(1 for p in posts if p[part]) >= 3, part
    for flag in ("edited_at", "pending", "hidden", "is_host", "question", "answer", "language"):
        assert any(p[flag] for p in posts), flag
    assert len(posts) >= 60
    assert len(GOLDEN_DATA["pins"]) >= 10


@pytest.mark.parametrize("entry", GOLDEN_DATA["posts"], ids=lambda e: e["name"])
def test_post_html_is_byte_identical(presenter: Presenter, entry: dict) -> None:
    """``post_html`` renders the stored post exactly as the golden HTML, byte for byte."""
    assert presenter.post_html(entry["post"]) == entry["html"]


@pytest.mark.parametrize("entry", GOLDEN_DATA["pins"], ids=lambda e: e["name"])
def test_pin_html_is_byte_identical(presenter: Presenter, entry: dict) -> None:
    """``pin_html`` renders the stored pin exactly as the golden HTML, byte for byte."""
    assert presenter.pin_html(entry["pin"], entry["post"]) == entry["html"]


def test_post_html_is_the_same_on_a_second_render(presenter: Presenter) -> None:
    """Rendering does not depend on what was rendered before (no state leaks between posts)."""
    entries = GOLDEN_DATA["posts"]
    first = [presenter.post_html(e["post"]) for e in entries]
    again = [presenter.post_html(e["post"]) for e in reversed(entries)]
    assert first == list(reversed(again))
