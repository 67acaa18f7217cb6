"""Transcript exports: Markdown, JSON, CSV and self-contained HTML, with hostile content."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest

from app.transcript import CSV_HEADER, TranscriptPost, build, to_csv, to_html, to_json, to_markdown

T0 = datetime(2026, 12, 1, 19, 0, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def tp(
    id: int,
    text: str,
    *,
    name: str = "Zoë",
    handle: str = "@zoe@garden.example",
    reply_to: int | None = None,
    host: bool = False,
    html: str | None = None,
    url: str | None = None,
    minute: int | None = None,
) -> TranscriptPost:
    return TranscriptPost(
        id=id,
        author_name=name,
        author_handle=handle,
        network="mastodon",
        created_at=T0 + timedelta(minutes=id if minute is None else minute),
        text=text,
        html=html if html is not None else f"<p>{text}</p>",
        url=url if url is not None else f"https://garden.example/@x/{id}",
        in_reply_to_id=reply_to,
        reply_to_handle="@maya" if reply_to else None,
        is_host=host,
    )


def chat_posts() -> list[TranscriptPost]:
    maya = {"name": "Maya", "handle": "@maya@garden.example", "host": True}
    return [
        tp(1, "Welcome! Intros first.", **maya),
        tp(2, "Q1: What are you growing right now?", **maya),
        tp(3, "A1: Basil and chives", reply_to=2),
        tp(4, "Shiso and mini tomatoes", name="Aiko", handle="@aiko", reply_to=2),
        tp(5, "Q2: What is your biggest challenge?", **maya),
        tp(6, "A2: Slugs.\nSo many slugs.", name="Liam", handle="@liam"),
        tp(
            7,
            '=HYPERLINK("https://evil.example","click")',
            name="+Mallory",
            handle="@mallory",
            html=f"<p>{HOSTILE}formula</p>",
            url="javascript:alert(1)",
        ),
        tp(8, "-1 for slugs", name="@everyone", handle="@liam"),
        tp(9, f"A2: {HOSTILE} & [link](javascript:x) **bold**", name=HOSTILE, handle="@m"),
    ]


def sample():
    return build(
        slug="plants",
        hashtag="plantchat",
        title="Small-space <gardening>",
        description="Balconies & rooftops",
        posts=list(reversed(chat_posts())),
    )


def test_build_orders_posts_and_groups_answers() -> None:
    """build orders posts by time, groups answers (threaded ones too) and marks Q/A numbers."""
    t = sample()
    assert [p.id for p in t.posts] == list(range(1, 10))
    assert [(g.number, g.question.id, [a.id for a in g.answers]) for g in t.groups] == [
        (1, 2, [3, 4]),
        (2, 5, [6, 9]),
    ]
    marks = {p.id: (p.question, p.answer) for p in t.posts}
    assert marks[2] == (1, None) and marks[4] == (None, 1) and marks[9] == (None, 2)
    assert marks[1] == (None, None) and marks[7] == (None, None)
    # The groups hold the same numbered post objects as the log.
    assert t.groups[0].answers[1] is t.posts[3]
    assert (t.window_start, t.window_end) == (t.posts[0].created_at, t.posts[-1].created_at)


def test_build_window_filters_posts() -> None:
    """A window keeps only posts inside it (both ends included) and is reported as given."""
    start, end = T0 + timedelta(minutes=2), T0 + timedelta(minutes=5)
    t = build(slug="p", hashtag="t", title="T", posts=chat_posts(), window=(start, end))
    assert [p.id for p in t.posts] == [2, 3, 4, 5]
    assert (t.window_start, t.window_end) == (start, end)
    with pytest.raises(ValueError, match="before window start"):
        build(slug="p", hashtag="t", title="T", posts=[], window=(end, start))
    with pytest.raises(ValueError, match="timezone-aware"):
        build(slug="p", hashtag="t", title="T", posts=[], window=(datetime(2026, 1, 1), end))


def test_markdown_lists_questions_answers_and_log() -> None:
    """Markdown has the title, tag, window, each question with its answers, then every post."""
    md = to_markdown(sample())
    assert md.startswith("# Small-space \\<gardening\\>\n")
    assert "\\#plantchat" in md
    assert "2026-12-01T19:01:00Z – 2026-12-01T19:09:00Z (UTC)" in md
    questions_part, log_part = md.split("## Transcript")
    assert "## Questions" in questions_part
    for text in ("Q1: What are you growing right now?", "Q2: What is your biggest challenge?"):
        assert text in questions_part
    q1_part, q2_part = questions_part.split("### Q2")
    assert "A1: Basil and chives" in q1_part and "Shiso and mini tomatoes" in q1_part
    assert "2 answers" in q1_part and "2026-12-01T19:04:00Z" in q1_part
    assert "A2: Slugs.  \n  So many slugs." in q2_part
    assert "Slugs" not in q1_part
    assert log_part.count("\n- 2026-12-01T") == 9


def test_markdown_escapes_hostile_text() -> None:
    """Markup in author text cannot become raw HTML, links or emphasis in the Markdown."""
    md = to_markdown(sample())
    assert not re.search(r"(?<!\\)<", md), "every < is backslash-escaped"
    assert "\\<script\\>" in md
    assert "\\[link\\](javascript:x)" in md
    assert "\\*\\*bold\\*\\*" in md
    assert "Balconies \\& rooftops" in md


def test_json_lists_questions_with_answers() -> None:
    """JSON loads back with chat, window, questions (question, answers, count) and posts."""
    data = json.loads(to_json(sample()))
    assert data["chat"] == {
        "slug": "plants",
        "hashtag": "plantchat",
        "hashtags": ["plantchat"],
        "title": "Small-space <gardening>",
        "description": "Balconies & rooftops",
    }
    assert data["window"] == {"start": "2026-12-01T19:01:00Z", "end": "2026-12-01T19:09:00Z"}
    assert [q["number"] for q in data["questions"]] == [1, 2]
    q1, q2 = data["questions"]
    assert q1["question"]["text"] == "Q1: What are you growing right now?"
    assert [a["id"] for a in q1["answers"]] == [3, 4] and q1["count"] == 2
    assert [a["author_name"] for a in q2["answers"]] == ["Liam", HOSTILE]
    assert len(data["posts"]) == 9
    assert data["posts"][3] == {
        "id": 4,
        "created_at": "2026-12-01T19:04:00Z",
        "author_name": "Aiko",
        "author_handle": "@aiko",
        "network": "mastodon",
        "is_host": False,
        "question": None,
        "answer": 1,
        "in_reply_to_id": 2,
        "reply_to_handle": "@maya",
        "text": "Shiso and mini tomatoes",
        "html": "<p>Shiso and mini tomatoes</p>",
        "url": "https://garden.example/@x/4",
        "votes": 0,
        "answered": False,
    }


def test_json_empty_chat() -> None:
    """An empty chat exports with no window, no questions and no posts."""
    data = json.loads(to_json(build(slug="e", hashtag="e", title="E", posts=[])))
    assert data["window"] is None and data["questions"] == [] and data["posts"] == []


def test_csv_rows_match_posts_and_parse_back() -> None:
    """CSV has the header and one row per post, and parses back intact (newlines, quotes)."""
    t = sample()
    rows = list(csv.reader(io.StringIO(to_csv(t), newline="")))
    assert tuple(rows[0]) == CSV_HEADER
    assert len(rows) - 1 == len(t.posts)
    by_id = {row[0]: dict(zip(CSV_HEADER, row, strict=True)) for row in rows[1:]}
    assert by_id["6"]["text"] == "A2: Slugs.\nSo many slugs."
    assert by_id["6"]["answer"] == "2" and by_id["6"]["question"] == ""
    assert by_id["2"]["question"] == "1"
    assert by_id["4"]["in_reply_to_id"] == "2"
    assert by_id["4"]["created_at"] == "2026-12-01T19:04:00Z"
    assert by_id["9"]["author_name"] == HOSTILE


def test_csv_guards_formula_injection() -> None:
    """Cells starting with = + - @ get a leading apostrophe; other cells are unchanged."""
    rows = list(csv.reader(io.StringIO(to_csv(sample()), newline="")))
    by_id = {row[0]: dict(zip(CSV_HEADER, row, strict=True)) for row in rows[1:]}
    assert by_id["7"]["text"] == '\'=HYPERLINK("https://evil.example","click")'
    assert by_id["7"]["author_name"] == "'+Mallory"
    assert by_id["7"]["author_handle"] == "'@mallory"
    assert by_id["8"]["text"] == "'-1 for slugs"
    assert by_id["8"]["author_name"] == "'@everyone"
    assert by_id["3"]["text"] == "A1: Basil and chives"
    for row in rows[1:]:
        assert not any(cell[:1] in ("=", "+", "-", "@", "\t", "\r") for cell in row), row


def test_csv_guards_cells_starting_with_tab_or_carriage_return() -> None:
    """A cell starting with a tab or carriage return (which some spreadsheets strip before
    looking for a formula) gets the leading apostrophe too."""
    posts = [
        tp(1, "\t=1+2", name="\t@tab"),
        tp(2, "\r=cmd|' /C calc'!A0", name="\r+cr"),
        tp(3, "plain \t inside", name="Ann"),
    ]
    t = build(slug="p", hashtag="t", title="T", posts=posts)
    rows = list(csv.reader(io.StringIO(to_csv(t), newline="")))
    by_id = {row[0]: dict(zip(CSV_HEADER, row, strict=True)) for row in rows[1:]}
    assert by_id["1"]["text"] == "'\t=1+2" and by_id["1"]["author_name"] == "'\t@tab"
    assert by_id["2"]["text"] == "'\r=cmd|' /C calc'!A0" and by_id["2"]["author_name"] == "'\r+cr"
    assert by_id["3"]["text"] == "plain \t inside"


class _Collector(HTMLParser):
    """Collects start tags and attribute names of an HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs


def test_html_is_self_contained_and_safe() -> None:
    """HTML inlines the CSS, has no script or handlers, escapes text, re-sanitizes post HTML."""
    page = to_html(sample(), css="body { color: #123456 } </style><script>alert(1)</script>")
    parsed = _Collector()
    parsed.feed(page)
    assert "script" not in parsed.tags and "iframe" not in parsed.tags
    assert not [name for name, _ in parsed.attrs if name.startswith("on")]
    assert not [v for n, v in parsed.attrs if n in ("href", "src") and v and "javascript" in v]
    assert parsed.tags.count("style") == 1
    assert "body { color: #123456 }" in page
    assert "<link" not in page and "<script" not in page.lower()
    assert ("http-equiv", "Content-Security-Policy") in parsed.attrs
    csp = [value for name, value in parsed.attrs if name == "content" and "default-src" in value]
    assert csp and "default-src 'none'" in csp[0] and "script-src" not in csp[0]
    assert "<h1>Small-space &lt;gardening&gt;</h1>" in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page  # author name, text
    assert "formula" in page  # the sanitized post HTML is kept


def test_html_lists_questions_then_log() -> None:
    """HTML shows each question with its answers, then every post with an anchor."""
    page = to_html(sample(), css="")
    questions, log = page.split('id="log-title"')
    q1 = questions.split('id="q2"')[0]
    assert "Q1: What are you growing right now?" in q1
    assert "A1: Basil and chives" in q1 and "Shiso and mini tomatoes" in q1
    assert "2 answers" in q1
    assert len(re.findall(r'<article class="post" id="post-\d+">', log)) == 9
    assert 'href="https://garden.example/@x/3"' in page


def test_every_format_names_every_tag_of_a_several_tag_chat() -> None:
    """A chat following several tags shows them all in Markdown, JSON and HTML, reply tag
    first."""
    t = build(
        slug="plants",
        hashtag="plantchat",
        hashtags=["plantchat", "Balcony_2026"],
        title="Plants",
        posts=[*chat_posts(), tp(20, "A1 both #Balcony_2026 #PLANTCHAT", minute=20)],
    )
    assert "\\#plantchat \\#Balcony\\_2026" in to_markdown(t)
    chat = json.loads(to_json(t))["chat"]
    assert chat["hashtag"] == "plantchat" and chat["hashtags"] == ["plantchat", "Balcony_2026"]
    page = to_html(t, "")
    assert '<p class="tag">#plantchat #Balcony_2026</p>' in page
    rows = list(csv.DictReader(io.StringIO(to_csv(t), newline="")))
    carried = {row["id"]: row["hashtags"] for row in rows}
    assert carried["20"] == "#plantchat #Balcony_2026" and carried["1"] == ""
    assert "<title>#plantchat #Balcony_2026 — Plants</title>" in page
