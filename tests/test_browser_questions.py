"""Ranked questions in a real Chromium: two readers voting at once see each other's votes
live, moderators mark questions answered, and the panel sorts, filters and counts."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.browser import axe_violations, describe

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def new_room(server: Any) -> dict[str, Any]:
    r = httpx.post(f"{server.url}/api/chats", json={"hashtag": "RankChat", "title": "Ranking"})
    assert r.status_code == 201, r.text
    return r.json()


def ask(server: Any, room: dict[str, Any], text: str) -> dict[str, Any]:
    r = httpx.post(
        f"{server.url}/api/chats/{room['slug']}/questions",
        json={"text": text},
        headers={"Authorization": f"Bearer {room['moderator_key']}"},
    )
    assert r.status_code == 201, r.text
    return r.json()


def open_questions(page: Any, url: str) -> Any:
    page.goto(url)
    page.wait_for_selector("#conn-state[data-state=live]")
    page.click("#questions-toggle")
    page.wait_for_selector("#questions-list .q-entry")
    return page


def votes_of(page: Any, post_id: int) -> str:
    return page.inner_text(f"#questions-list button[data-vote='{post_id}'] .q-votes")


def wait_votes(page: Any, post_id: int, n: int) -> None:
    page.wait_for_function(
        f"() => (document.querySelector(\"#questions-list button[data-vote='{post_id}'] "
        f".q-votes\") || {{}}).textContent === '{n}'",
        timeout=10_000,
    )


def order(page: Any) -> list[int]:
    return page.eval_on_selector_all(
        "#questions-list .q-entry", "els => els.map(e => Number(e.dataset.postId))"
    )


def test_two_browsers_voting_at_once_both_see_the_count_live(server, new_page):
    """Two readers upvote the second question at the same moment: each sees 2 votes, the
    question moves to the top, and when one takes the vote back the other sees 1."""
    room = new_room(server)
    q1 = ask(server, room, "Q1: what are you reading?")
    q2 = ask(server, room, "Q2: paper or screen?")
    url = f"{server.url}/c/{room['slug']}"
    ann = open_questions(new_page(), url)
    bo = open_questions(new_page(), url)
    assert order(ann) == [q1["id"], q2["id"]]  # no votes yet: the earliest asked first

    # Both clicks are sent before either answer is awaited.
    ann.locator(f"button[data-vote='{q2['id']}']").dispatch_event("click")
    bo.locator(f"button[data-vote='{q2['id']}']").dispatch_event("click")
    for page in (ann, bo):
        wait_votes(page, q2["id"], 2)
        page.wait_for_function(
            f"() => document.querySelector('#questions-list .q-entry').dataset.postId === "
            f"'{q2['id']}'",
            timeout=10_000,
        )
        button = page.locator(f"button[data-vote='{q2['id']}']")
        assert button.get_attribute("aria-pressed") == "true"
        assert "yours included" in button.get_attribute("aria-label")
    assert votes_of(ann, q1["id"]) == "0"

    ann.locator(f"button[data-vote='{q2['id']}']").click()
    wait_votes(bo, q2["id"], 1)
    wait_votes(ann, q2["id"], 1)
    assert ann.get_attribute(f"button[data-vote='{q2['id']}']", "aria-pressed") == "false"
    assert bo.get_attribute(f"button[data-vote='{q2['id']}']", "aria-pressed") == "true"

    # After a reload each browser still knows its own vote.
    bo = open_questions(bo, url)
    assert bo.get_attribute(f"button[data-vote='{q2['id']}']", "aria-pressed") == "true"
    assert ann.errors.exceptions == [] and bo.errors.exceptions == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_moderator_marks_answered_and_readers_filter(server, new_page, scheme):
    """The moderator marks Q1 answered: a reader sees the badge live, the Open filter hides
    it, the Answered filter shows it, the counts follow; Reopen undoes it. Readers see no
    marking control; the panel is axe-clean for both."""
    room = new_room(server)
    q1 = ask(server, room, "Q1: first question?")
    q2 = ask(server, room, "Q2: second question?")
    mod = new_page(color_scheme=scheme)
    mod.goto(room["moderator_url"])
    mod.wait_for_selector("body.is-mod")
    open_questions(mod, f"{server.url}/c/{room['slug']}")
    reader = open_questions(new_page(color_scheme=scheme), f"{server.url}/c/{room['slug']}")
    assert reader.locator("#questions-list .q-mark").count() == 0

    mark = mod.locator(f"button[data-answered='{q1['id']}']")
    assert mark.inner_text() == "Mark answered"
    mark.click()
    mod.wait_for_selector(f"button[data-answered='{q1['id']}'][aria-pressed='true']")
    entry = f"#questions-list .q-entry[data-post-id='{q1['id']}']"
    reader.wait_for_selector(f"{entry} .badge.answered", timeout=10_000)

    reader.click("button.q-state[data-state='open']")
    assert order(reader) == [q2["id"]]
    assert reader.inner_text("button.q-state[data-state='open'] .q-state-count") == "1"
    assert reader.inner_text("button.q-state[data-state='answered'] .q-state-count") == "1"
    reader.click("button.q-state[data-state='answered']")
    assert order(reader) == [q1["id"]]
    for page in (reader, mod):
        violations = axe_violations(page)
        assert violations == [], describe(violations)

    mod.locator(f"button[data-answered='{q1['id']}']").click()
    reader.wait_for_function(
        "() => document.querySelectorAll('#questions-list .q-entry').length === 0",
        timeout=10_000,
    )
    reader.click("button.q-state[data-state='all']")
    assert order(reader) == [q1["id"], q2["id"]]
    r = httpx.get(f"{server.url}/api/chats/{room['slug']}/questions?state=answered")
    assert r.json()["questions"] == []


def test_wall_lists_the_top_open_questions_live(server, new_page):
    """``/c/{slug}/wall?top=2`` lists the two most voted open questions; a vote reorders the
    list live and a question marked answered leaves it."""
    room = new_room(server)
    slug = room["slug"]
    q1 = ask(server, room, "Q1: first?")
    q2 = ask(server, room, "Q2: second?")
    q3 = ask(server, room, "Q3: third?")
    page = new_page(viewport={"width": 1280, "height": 720})
    page.goto(f"{server.url}/c/{slug}/wall?top=2")
    page.wait_for_selector("#wall-conn[data-state=live]")
    ids = (
        "Array.from(document.querySelectorAll('#wall-top-list li'), li => li.dataset.postId).join()"
    )
    listed = f"() => {ids}"
    assert page.evaluate(listed) == f"{q1['id']},{q2['id']}"
    with httpx.Client(base_url=server.url) as voter:
        assert voter.put(f"/api/chats/{slug}/questions/{q3['id']}/vote").status_code == 200
    page.wait_for_function(f"() => {ids} === '{q3['id']},{q1['id']}'", timeout=10_000)
    assert page.inner_text("#wall-top-list li .wall-top-votes") == "▲ 1"
    r = httpx.put(
        f"{server.url}/api/chats/{slug}/questions/{q3['id']}/answered",
        headers={"Authorization": f"Bearer {room['moderator_key']}"},
    )
    assert r.status_code == 200
    page.wait_for_function(f"() => {ids} === '{q1['id']},{q2['id']}'", timeout=10_000)
    assert page.locator("button, input, textarea, form").count() == 0
    assert page.errors.exceptions == []
    assert httpx.get(f"{server.url}/c/{slug}/wall?top=99").status_code == 422
