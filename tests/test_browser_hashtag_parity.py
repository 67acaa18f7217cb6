"""The composer's hashtag rules (app/static/hashtag.js) agree with the server's
(app/text.py) on one shared table of cases, run in a real Chromium.

The browser appends the chat's tag while you type, the server appends it again if missing: if
the two disagree, a post can end up with the tag twice or a counter can lie. The expected
values are whatever app/text.py answers, so the table needs no answers written by hand and a
change to either side that the other does not follow fails here.
"""

from __future__ import annotations

import pytest

from app import text

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

# (text, tag): plain and unicode tags, case and normalisation, tags inside URLs, tags that are
# not tags (digits only, glued to a word or after / = ), marks and emoji, trailing space.
CASES: list[tuple[str, str]] = [
    ("Hello #edchat", "edchat"),
    ("Hello #EdChat", "edchat"),
    ("Hello #edchat2026 and #edchat", "edchat"),
    ("no tag here", "edchat"),
    ("#edchat at the start", "edchat"),
    ("A1: my answer #EDCHAT.", "edchat"),
    ("(#edchat) in brackets", "edchat"),
    ("#edchat, #other; #third!", "third"),
    ("see https://example.org/page#edchat", "edchat"),
    ("see https://example.org/a_(b)#frag and #edchat", "edchat"),
    ("https://example.org/#edchat?x=1", "edchat"),
    ("email me at a#edchat", "edchat"),
    ("path/#edchat and x=#edchat", "edchat"),
    ("#123 is a number, #2026chat is a tag", "2026chat"),
    ("#123", "123"),
    ("Café #café", "CAFÉ"),
    ("decomposed #cafe\u0301", "café"),
    ("#Straße", "STRASSE"),
    ("Greek #ΚΑΛΗΜΕΡΑ", "καλημερα"),
    ("日本語 #日本語タグ です", "日本語タグ"),
    ("emoji first 🌱#edchat", "edchat"),
    ("emoji after #edchat🌱", "edchat"),
    ("under_score #ed_chat", "ed_chat"),
    ("dash #ed-chat", "ed"),
    ("double ##edchat", "edchat"),
    ("trailing spaces   ", "edchat"),
    ("line one\nline two #edchat\n", "edchat"),
    ("tab\t#edchat", "edchat"),
    ("#edchatter is longer", "edchat"),
    ("mark first #\u0301edchat", "edchat"),
    ("arabic #مرحبا", "مرحبا"),
    ("devanagari #नमस्ते", "नमस्ते"),
    ("a URL at the end https://example.org/x", "edchat"),
    ("two #a #b #c", "b"),
]


def python_answers() -> list[dict[str, object]]:
    rows = []
    for body, tag in CASES:
        try:
            appended: str | None = text.append_hashtag(body, tag)
        except ValueError:
            appended = None
        rows.append(
            {
                "find": text.find_hashtags(body),
                "contains": text.contains_hashtag(body, tag),
                "key": text.tag_key(tag),
                "append": appended,
            }
        )
    return rows


def test_hashtag_js_agrees_with_the_server_on_every_case(server, new_page):
    page = new_page()
    page.goto(f"{server.url}/")
    cases = [{"text": body, "tag": tag} for body, tag in CASES]
    browser_rows = page.evaluate(
        """async (cases) => {
            const h = await import("/static/hashtag.js");
            return cases.map(({ text, tag }) => ({
                find: h.findHashtags(text),
                contains: h.containsHashtag(text, tag),
                key: h.tagKey(tag),
                append: h.withHashtag(text, tag),
            }));
        }""",
        cases,
    )
    expected = python_answers()
    differences = []
    for (body, tag), want, got in zip(CASES, expected, browser_rows, strict=True):
        for field in ("find", "contains", "key"):
            if want[field] != got[field]:
                differences.append(
                    f"{field}({body!r}, {tag!r}): server {want[field]!r}, browser {got[field]!r}"
                )
        # The server refuses an invalid tag or empty text; where it appends, so must the page.
        if want["append"] is not None and want["append"] != got["append"]:
            differences.append(
                f"append({body!r}, {tag!r}): server {want['append']!r}, browser {got['append']!r}"
            )
    assert not differences, "\n".join(differences)
    assert sum(1 for row in expected if row["find"]) >= 25  # the table exercises real tags
