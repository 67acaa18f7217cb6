"""Moderation, transcripts, the wall and the calendar in a real Chromium: the moderator
panel's block and undo, the printable archive, the projector wall, local session times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.browser import AXE_JS, axe_violations, describe

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]


def make_chat(server: Any, hashtag: str, **extra: Any) -> dict[str, Any]:
    r = httpx.post(f"{server.url}/api/chats", json={"hashtag": hashtag, "title": hashtag, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def say(server: Any, slug: str, text: str, author: str, **extra: Any) -> dict[str, Any]:
    r = httpx.post(
        f"{server.url}/api/chats/{slug}/posts", json={"text": text, "author": author, **extra}
    )
    assert r.status_code == 201, r.text
    return r.json()


def as_moderator(chat: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {chat['moderator_key']}"}


def test_moderator_blocks_from_the_panel_by_keyboard_and_undoes_it(server, new_page):
    """Blocking an author in the panel (keyboard only) removes their posts from another
    reader's column; Undo in the action log brings them back."""
    chat = make_chat(server, "blockchat")
    slug = chat["slug"]
    spam = [say(server, slug, f"spam {i}", "Mallory") for i in range(2)]
    say(server, slug, "A1: a real answer", "Ann")
    reader = new_page()
    reader.goto(f"{server.url}/c/{slug}")
    reader.wait_for_selector("#conn-state[data-state=live]")
    assert reader.locator("#feed article.post").count() == 3

    mod = new_page()
    mod.goto(chat["moderator_url"])
    mod.wait_for_selector("#mod-panel[data-ready]")
    # Keyboard only: open the section from its summary, fill the form, submit with Enter.
    mod.focus("#mod-blocks-section > summary")
    mod.keyboard.press("Enter")
    mod.focus("#mod-block-handle")
    mod.keyboard.type("@Mallory")
    mod.keyboard.press("Enter")
    mod.wait_for_selector("#mod-status:has-text('Blocked @mallory; 2 posts hidden.')")
    for item in spam:
        reader.wait_for_selector(f"#post-{item['id']}", state="detached")
    assert reader.locator("#feed article.post").count() == 1
    assert "@mallory" in mod.inner_text("#mod-blocks")
    assert mod.evaluate("() => document.activeElement.id") == "mod-block-handle"

    mod.click("#mod-log-section > summary")
    first = mod.locator("#mod-log li").first
    assert "Blocked @mallory" in first.inner_text()
    assert "moderator link" in first.inner_text()
    first.get_by_role("button", name="Undo").click()
    mod.wait_for_selector("#mod-log li.is-undone")
    for item in spam:
        reader.wait_for_selector(f"#post-{item['id']}")
    assert reader.locator("#feed article.post").count() == 3
    assert mod.locator("#mod-blocks li").count() == 0
    assert mod.errors.exceptions == [] and reader.errors.exceptions == []  # type: ignore[attr-defined]


def test_held_post_waits_in_the_panel_until_approved(server, new_page):
    """A post tripping a rule is never shown to a reader until the moderator approves it
    from the review queue."""
    chat = make_chat(server, "heldchat")
    slug = chat["slug"]
    httpx.post(
        f"{server.url}/api/chats/{slug}/rules",
        json={"kind": "keyword", "pattern": "lottery"},
        headers=as_moderator(chat),
    )
    reader = new_page()
    reader.goto(f"{server.url}/c/{slug}")
    reader.wait_for_selector("#conn-state[data-state=live]")
    held = say(server, slug, "Win the lottery now", "Bot")
    clean = say(server, slug, "hello", "Ann")
    reader.wait_for_selector(f"#post-{clean['id']}")
    assert reader.locator(f"#post-{held['id']}").count() == 0

    mod = new_page()
    mod.goto(chat["moderator_url"])
    item = mod.locator(f"#mod-held li[data-post-id='{held['id']}']")
    item.wait_for()
    assert mod.locator("#mod-held-section").get_attribute("open") is not None
    assert 'keyword "lottery"' in item.inner_text()
    item.get_by_role("button", name="Approve").click()
    reader.wait_for_selector(f"#post-{held['id']}")
    mod.wait_for_selector("#mod-held-empty:not([hidden])")


def test_transcript_groups_answers_and_prints_without_controls(server, new_page):
    """The archive shows each question with its answers; in print the tools and site bar
    disappear while the questions stay."""
    chat = make_chat(server, "archive")
    slug = chat["slug"]
    httpx.put(
        f"{server.url}/api/chats/{slug}/people",
        json={"people": [{"handle": "maya"}]},
        headers=as_moderator(chat),
    )
    q1 = say(server, slug, "Q1: best compost?", "Maya")
    say(server, slug, "A1: leaves", "Ann")
    say(server, slug, "coffee grounds", "Bo", in_reply_to=q1["id"])
    say(server, slug, "Q2: worst pest?", "Maya")
    say(server, slug, "A2: slugs", "Cy")
    page = new_page(timezone_id="Australia/Sydney")
    page.goto(f"{server.url}/c/{slug}/transcript")
    assert page.locator("#q1 ol.answers > li").count() == 2
    assert page.locator("#q2 ol.answers > li").count() == 1
    assert "A1: leaves" in page.inner_text("#q1") and "coffee grounds" in page.inner_text("#q1")
    assert page.locator(".log > li").count() == 5
    # Times are shown on the reader's clock (Sydney is never on UTC).
    shown = page.locator("#q1 time").first
    assert shown.inner_text() != shown.get_attribute("title")
    assert page.locator(".tr-tools").is_visible()
    page.emulate_media(media="print")
    assert not page.locator(".tr-tools").is_visible()
    assert not page.locator(".site-bar").is_visible()
    assert page.locator("#q1").is_visible() and page.locator("#q2 .post").first.is_visible()
    colour = page.evaluate("() => getComputedStyle(document.body).color")
    assert colour == "rgb(0, 0, 0)"


def test_wall_shows_the_question_large_and_posts_arrive_after_a_restart(server, new_page):
    """The wall puts the pinned question in large type on a dark screen, adds new posts
    live, follows the next question, and carries on after the server restarts."""
    chat = make_chat(server, "wallchat")
    slug = chat["slug"]
    mod = httpx.Client(base_url=server.url, headers=as_moderator(chat))
    q1 = mod.post(f"/api/chats/{slug}/questions", json={"text": "Q1: favourite tree?"}).json()
    page = new_page(viewport={"width": 1280, "height": 720})
    page.goto(f"{server.url}/c/{slug}/wall")
    page.wait_for_selector("#wall-conn[data-state=live]")
    assert page.inner_text("#wall-q-text") == "Q1: favourite tree?"
    size = page.evaluate(
        "() => parseFloat(getComputedStyle(document.getElementById('wall-q-text')).fontSize)"
    )
    assert size >= 48, size
    assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") == "rgb(0, 0, 0)"
    assert page.locator("button, input, textarea, form").count() == 0

    answer = say(server, slug, "A1: the oak by the river", "Ann")
    page.wait_for_selector(f"#wall-post-{answer['id']}")
    assert page.inner_text(f"#wall-post-{answer['id']} .wall-text") == "A1: the oak by the river"

    q2 = mod.post(f"/api/chats/{slug}/questions", json={"text": "Q2: and shrubs?"}).json()
    page.wait_for_function(
        "() => document.getElementById('wall-q-text').textContent === 'Q2: and shrubs?'"
    )
    mod.delete(f"/api/chats/{slug}/pins/{q2['id']}")
    page.wait_for_function(
        f"() => document.getElementById('wall-q-text').dataset.postId === '{q1['id']}'"
    )

    for i in range(10):
        say(server, slug, f"filler {i}", "Bo")
    page.wait_for_function(
        "() => document.querySelector('#wall-feed li .wall-text').textContent === 'filler 9'"
    )
    assert page.locator("#wall-feed > li").count() == 8

    server.restart()
    page.wait_for_selector("#wall-conn[data-state=live]", timeout=20_000)
    late = say(server, slug, "after the restart", "Cy")
    page.wait_for_selector(f"#wall-post-{late['id']}", timeout=15_000)
    mod.close()
    assert page.errors.exceptions == []  # type: ignore[attr-defined]


def test_home_lists_sessions_in_the_viewers_time_zone(server, new_page):
    """Upcoming sessions show on the home page in the browser's own zone, with how soon they
    start; a session running now says "live now"."""
    new_york = ZoneInfo("America/New_York")
    start_local = (datetime.now(new_york) + timedelta(days=3)).replace(
        hour=19, minute=0, second=0, microsecond=0
    )
    make_chat(
        server,
        "nychat",
        schedule={
            "start": start_local.strftime("%Y-%m-%dT%H:%M"),
            "timezone": "America/New_York",
            "duration_minutes": 60,
        },
    )
    now = datetime.now(UTC) - timedelta(minutes=5)
    make_chat(
        server,
        "livechat",
        schedule={
            "start": now.strftime("%Y-%m-%dT%H:%M"),
            "timezone": "UTC",
            "duration_minutes": 60,
        },
    )
    page = new_page(timezone_id="Australia/Sydney")
    page.goto(server.url)
    sydney = start_local.astimezone(ZoneInfo("Australia/Sydney"))
    expected = f"{sydney:%a} {sydney.day} {sydney:%b}, {sydney:%H:%M}"
    item = page.locator(".session-item[data-slug='nychat']")
    shown = ".session-item[data-slug='nychat'] time"
    page.wait_for_function(f'() => !document.querySelector("{shown}").textContent.includes("UTC")')
    assert expected in item.locator("time").inner_text(), (expected, item.inner_text())
    assert item.locator(".session-status").inner_text().startswith("starts in ")
    live = page.locator(".session-item[data-slug='livechat'] .session-status")
    assert live.inner_text() == "live now"
    # Live sessions come first.
    assert page.locator(".session-item").first.get_attribute("data-slug") == "livechat"
    assert page.locator("a[href='/calendar.ics']").count() == 1


def _axe_within(page: Any, selector: str) -> list[dict[str, Any]]:
    page.evaluate(AXE_JS.read_text())
    return page.evaluate(
        """async (selector) => {
            const r = await axe.run(document.querySelector(selector), {runOnly: {type: 'tag',
                values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}});
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}));
        }""",
        selector,
    )


def test_new_pages_and_the_panel_have_no_axe_violations(server, new_page):
    """axe-core finds no WCAG A/AA violations on the home page with sessions, the wall, the
    transcript, and the moderator panel with every section open."""
    start = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    chat = make_chat(
        server,
        "axechat",
        schedule={"start": start, "timezone": "Europe/Paris", "duration_minutes": 60},
    )
    slug = chat["slug"]
    q = httpx.post(
        f"{server.url}/api/chats/{slug}/questions",
        json={"text": "Q1: anything?"},
        headers=as_moderator(chat),
    ).json()
    say(server, slug, "A1: something", "Ann", in_reply_to=q["id"])
    for path in ("/", f"/c/{slug}/wall", f"/c/{slug}/transcript"):
        page = new_page()
        page.goto(f"{server.url}{path}")
        page.wait_for_load_state("networkidle")
        violations = axe_violations(page)
        assert violations == [], f"{path}: {describe(violations)}"

    page = new_page()
    page.goto(chat["moderator_url"])
    page.wait_for_selector("#mod-panel[data-ready]")
    page.evaluate(
        "() => document.querySelectorAll('#mod-panel details').forEach(d => d.open = true)"
    )
    violations = _axe_within(page, "#mod-panel")
    assert violations == [], describe(violations)
