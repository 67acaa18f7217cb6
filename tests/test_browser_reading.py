"""Reading a fast chat in a real Chromium: pause and slow mode, display settings, keys,
per-viewer filters and views, questions, and a long room that stays small in memory."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.browser import axe_violations, describe
from tests.seed import (
    Seeded,
    add_posts,
    author,
    numbered_posts,
    remote_post,
    seed_history,
    seed_room,
)
from tests.server import ServerProcess, migrate

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]


@dataclass(frozen=True)
class Site:
    """One server for the whole module (each test makes its own rooms) and its database."""

    url: str
    db_url: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("reading")
    db_url = f"sqlite:///{tmp / 'hashroom.db'}"
    migrate(db_url)
    server = ServerProcess(db_url, tmp / "server.log").start()
    yield Site(server.url, db_url)
    server.stop()


ARTICLES = "#feed article.post"
SHOWN = "#feed article.post:not([hidden])"


def new_room(site: Site, hashtag: str = "ReadChat") -> dict[str, Any]:
    r = httpx.post(f"{site.url}/api/chats", json={"hashtag": hashtag, "title": "Reading"})
    assert r.status_code == 201, r.text
    return r.json()


def post(site: Site, slug: str, text: str, who: str = "Tess") -> dict[str, Any]:
    r = httpx.post(f"{site.url}/api/chats/{slug}/posts", json={"text": text, "author": who})
    assert r.status_code == 201, r.text
    return r.json()


def open_room(new_page: Any, site: Site, slug: str, query: str = "", **context: Any) -> Any:
    page = new_page(**context)
    page.goto(f"{site.url}/c/{slug}{query}")
    page.wait_for_selector("#conn-state[data-state=live]")
    return page


def count(page: Any, selector: str = ARTICLES) -> int:
    return page.locator(selector).count()


def wait_count(page: Any, n: int, selector: str = ARTICLES) -> None:
    page.wait_for_function(
        f"() => document.querySelectorAll({selector!r}).length === {n}", timeout=10_000
    )


def top_of(page: Any, selector: str) -> float:
    return page.eval_on_selector(selector, "el => el.getBoundingClientRect().top")


def scroll_to_middle(page: Any, selector: str) -> None:
    page.eval_on_selector(selector, "el => el.scrollIntoView({block: 'center'})")
    page.wait_for_timeout(100)  # the scroll handler runs on the next frame


def test_pause_holds_new_posts_and_reveal_keeps_the_viewport(site, new_page):
    """Paused or scrolled down, posts wait behind the pill; revealing them moves nothing in view."""
    room = new_room(site)
    slug = room["slug"]
    ids = [post(site, slug, f"Earlier post {i}")["id"] for i in range(30)]
    page = open_room(new_page, site, slug, viewport={"width": 390, "height": 700})
    assert count(page) == 30

    page.click("#tools-toggle")  # on a phone the reading controls sit in the menu
    page.click("#pause-toggle")
    assert page.get_attribute("#pause-toggle", "aria-pressed") == "true"
    page.keyboard.press("Escape")
    page.wait_for_selector("#tools", state="hidden")
    post(site, slug, "Held one")
    unwanted = post(site, slug, "Held, then hidden by a moderator")
    post(site, slug, "Held two")
    page.wait_for_function("() => document.title.startsWith('(3)')")
    # Changes to held posts apply while they wait: a hidden one is gone from the count.
    r = httpx.put(
        f"{site.url}/api/chats/{slug}/hidden/{unwanted['id']}",
        headers={"Authorization": f"Bearer {room['moderator_key']}"},
    )
    assert r.status_code == 200, r.text
    page.wait_for_function("() => document.title.startsWith('(2)')")
    assert page.inner_text("#new-posts-label") == "2 new posts"
    assert count(page) == 30  # nothing was pushed into the column

    # Scrolled into the column: revealing inserts above the reader without moving them.
    reference = f"#post-{ids[12]}"
    scroll_to_middle(page, reference)
    before = top_of(page, reference)
    page.click("#new-posts")
    wait_count(page, 32)
    assert abs(top_of(page, reference) - before) <= 2
    assert page.locator("#new-posts").is_hidden()
    assert page.locator(f"#post-{unwanted['id']}").count() == 0

    # Resumed but still scrolled away: smart pause keeps holding, nothing moves.
    page.keyboard.press("p")
    assert page.get_attribute("#pause-toggle", "aria-pressed") == "false"
    post(site, slug, "Arrives while scrolled")
    page.wait_for_selector("#new-posts:not([hidden])")
    assert page.inner_text("#new-posts-label") == "1 new post"
    assert count(page) == 32
    assert abs(top_of(page, reference) - before) <= 2

    # Back at the top the column is live again and shows what waited.
    page.evaluate("() => window.scrollTo(0, 0)")
    wait_count(page, 33)
    assert "Arrives while scrolled" in page.inner_text(f"{ARTICLES} >> nth=0")


def test_typing_in_the_composer_holds_new_posts(site, new_page):
    """While the reader writes a post, new posts wait; leaving the composer shows them."""
    slug = new_room(site)["slug"]
    post(site, slug, "First")
    page = open_room(new_page, site, slug)
    page.fill("#author", "Reader")
    page.click("#post-text")
    page.keyboard.type("Half a thought")
    post(site, slug, "Arrives while typing")
    page.wait_for_selector("#new-posts:not([hidden])")
    assert page.inner_text("#new-posts-label") == "1 new post"
    assert count(page) == 1
    page.click("h1")  # leave the composer
    wait_count(page, 2)
    assert page.input_value("#post-text") == "Half a thought"


def test_slow_mode_reveals_posts_at_the_set_pace(site, new_page):
    """With 'one a second', three posts that arrive together appear a second apart."""
    slug = new_room(site)["slug"]
    page = open_room(new_page, site, slug)
    page.click("#display-toggle")
    page.select_option("#speed", "1")
    page.click("#display-toggle")
    page.evaluate(
        """() => {
            window.__shown = [];
            new MutationObserver((records) => {
                for (const r of records) for (const n of r.addedNodes)
                    if (n.matches && n.matches('article.post'))
                        window.__shown.push(performance.now());
            }).observe(document.getElementById('feed'), {childList: true});
        }"""
    )
    for i in range(3):
        post(site, slug, f"Quick post {i}")
    page.wait_for_function("() => window.__shown.length === 3", timeout=10_000)
    shown = page.evaluate("() => window.__shown")
    gaps = [b - a for a, b in zip(shown, shown[1:], strict=False)]
    assert all(gap >= 900 for gap in gaps), gaps
    assert all(gap < 2000 for gap in gaps), gaps


def test_font_size_and_theme_persist_across_reload(site, new_page):
    """Text size and dark theme are applied at once, remembered, and set before scripts run."""
    slug = new_room(site)["slug"]
    post(site, slug, "Hello")
    page = open_room(new_page, site, slug)
    page.click("#display-toggle")
    page.check("#display-panel input[name=font][value=l]")
    page.check("#display-panel input[name=theme][value=dark]")
    assert page.evaluate("() => getComputedStyle(document.documentElement).fontSize") == "18px"
    dark_bg = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert dark_bg == "rgb(18, 20, 23)"

    # The head script applies both before chat.js (a module) has even run.
    page.route(re.compile(r".*/static/chat\.js.*"), lambda route: route.abort())
    page.reload()
    assert page.get_attribute("html", "data-font") == "l"
    assert page.get_attribute("html", "data-theme") == "dark"
    assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") == dark_bg
    page.unroute(re.compile(r".*/static/chat\.js.*"))
    page.reload()
    page.wait_for_selector("#conn-state[data-state=live]")
    page.click("#display-toggle")
    assert page.is_checked("#display-panel input[name=theme][value=dark]")
    page.check("#display-panel input[name=theme][value=system]")
    assert page.get_attribute("html", "data-theme") is None


def test_keyboard_shortcuts_move_reply_pause_compose_and_help(site, new_page):
    """j/k move, r replies, p pauses, / writes, ? lists the keys; none fire while typing."""
    slug = new_room(site)["slug"]
    for who in ("Ada", "Ben", "Cleo"):
        post(site, slug, f"Hello from {who}", who)
    page = open_room(new_page, site, slug)
    first, second = (page.locator(ARTICLES).nth(i).get_attribute("id") for i in range(2))
    focused = "() => document.activeElement.id"
    page.keyboard.press("j")
    assert page.evaluate(focused) == first
    page.keyboard.press("j")
    assert page.evaluate(focused) == second
    page.keyboard.press("k")
    assert page.evaluate(focused) == first

    page.keyboard.press("r")
    assert page.evaluate(focused) == "post-text"
    assert "@cleo" in page.inner_text("#reply-target")
    page.keyboard.type("jkp?")  # typed into the field: no shortcut fires
    assert page.input_value("#post-text") == "jkp?"
    assert page.get_attribute("#pause-toggle", "aria-pressed") == "false"
    assert not page.evaluate("() => document.getElementById('keys-dialog').open")
    page.keyboard.press("Escape")
    assert page.locator("#reply-target").is_hidden()

    page.locator(ARTICLES).first.focus()
    page.keyboard.press("p")
    assert page.get_attribute("#pause-toggle", "aria-pressed") == "true"
    page.keyboard.press("p")
    assert page.get_attribute("#pause-toggle", "aria-pressed") == "false"
    page.keyboard.press("/")
    assert page.evaluate(focused) == "post-text"

    page.locator(ARTICLES).first.focus()
    page.keyboard.press("?")
    dialog = page.locator("#keys-dialog")
    assert page.evaluate("() => document.getElementById('keys-dialog').open")
    assert "pause or resume" in dialog.inner_text()
    page.keyboard.press("Escape")
    assert not page.evaluate("() => document.getElementById('keys-dialog').open")
    # The same list is on the page itself.
    assert "pause or resume" in (page.text_content(".shortcuts") or "")


@pytest.fixture
def busy_room(site: Site) -> Seeded:
    """A room with a host, reposts, an in-room reply, a reply elsewhere and keyword posts."""
    maya, bob, eve, zoe = (author(n) for n in ("Maya", "Bob", "Eve", "Zoe"))
    posts = [
        remote_post(1, "Q1: what did you plant first?", maya, is_host=True),
        remote_post(2, "A1: tomatoes, obviously", bob),
        remote_post(3, "A1: herbs on the sill", eve),
        remote_post(4, "A1: tomatoes, obviously", bob, reposted_by=zoe),
        remote_post(5, "Same here, herbs first", zoe, reply_to="seed:3"),
        remote_post(6, "Agreed with that other thread", eve, reply_to="elsewhere:99"),
        remote_post(7, "Spoiler! The lemon tree survives", zoe),
        remote_post(8, "No spoilers in this one", maya, is_host=True),
        remote_post(9, "Q2: biggest mistake?", maya, is_host=True),
        remote_post(10, "A2: overwatering", bob),
    ]
    return seed_room(site.db_url, posts, hashtag="gardens")


def shown_texts(page: Any) -> list[str]:
    return page.eval_on_selector_all(
        SHOWN, "els => els.map(e => e.querySelector('.post-content').textContent.trim())"
    )


def test_filters_hide_mute_and_are_shared_by_address(site, busy_room, new_page):
    """Hide reposts/outside replies, mute an author (post menu) and a word: saved and in the URL."""
    page = open_room(new_page, site, busy_room.slug)
    assert count(page, SHOWN) == 10
    page.click("#filters-toggle")
    page.check("#hide-reposts")
    page.check("#hide-replies")
    page.fill("#words-input", "spoiler")
    page.press("#words-input", "Enter")
    page.click("#filters-toggle")
    bob_post = page.locator(f"{ARTICLES}[data-author='@bob']").first
    bob_post.locator(".act-more").click()
    page.click("#post-menu [data-action=mute]")

    texts = shown_texts(page)
    assert not any("obviously" in t for t in texts)  # bob muted, and zoe's repost of bob
    assert not any("other thread" in t for t in texts)  # reply to a post outside the room
    assert any("herbs first" in t for t in texts)  # an in-room reply stays
    assert not any(t.startswith("Spoiler!") for t in texts)  # whole word, any case
    assert any("No spoilers" in t for t in texts)  # "spoilers" is another word
    assert count(page, SHOWN) == 5
    assert page.inner_text("#filter-note-text") == "5 posts hidden by your filters."
    assert page.inner_text("#filters-count") == "4"

    query = page.evaluate("() => location.search")
    assert "hide=reposts,replies" in query
    assert "mute=@bob" in query
    assert "words=spoiler" in query

    page.reload()
    page.wait_for_selector("#feed.is-ready")
    assert count(page, SHOWN) == 5
    # A fresh browser with the shared address sees the same view.
    other = new_page()
    other.goto(f"{site.url}/c/{busy_room.slug}{query}")
    other.wait_for_selector("#feed.is-ready")
    assert shown_texts(other) == texts
    other.click("#filters-toggle")
    assert other.is_checked("#hide-reposts")
    assert "@bob" in other.inner_text("[data-list-of=mute]")


def test_allowlist_shows_only_chosen_people(site, busy_room, new_page):
    """?only=@maya,@zoe shows their posts (and reposts) only; removing the list shows all."""
    page = open_room(new_page, site, busy_room.slug, "?only=@maya,@zoe")
    authors = page.eval_on_selector_all(SHOWN, "els => els.map(e => e.dataset.author)")
    assert set(authors) == {"@maya", "@zoe", "@bob"}  # @bob only through zoe's repost
    assert count(page, f"{SHOWN}[data-author='@bob']:not(.is-repost)") == 0
    page.click("#filters-toggle")
    page.click("[data-list-of=only] button[aria-label*='@zoe']")
    assert set(page.eval_on_selector_all(SHOWN, "els => els.map(e => e.dataset.author)")) == {
        "@maya"
    }
    page.click("#filters-clear")
    assert count(page, SHOWN) == 10
    assert page.evaluate("() => location.search") == ""


def test_hosts_only_view_follows_people_changes(site, busy_room, new_page):
    """'Hosts only' shows the host's posts; a moderator naming a guest marks theirs live."""
    page = open_room(new_page, site, busy_room.slug)
    page.click("#hosts-toggle")
    assert set(page.eval_on_selector_all(SHOWN, "els => els.map(e => e.dataset.author)")) == {
        "@maya"
    }
    assert page.inner_text("#view-text") == "Showing hosts only"
    assert "view=hosts" in page.evaluate("() => location.search")

    r = httpx.post(
        f"{site.url}/api/chats/{busy_room.slug}/people",
        json={"handle": "@Eve", "role": "guest"},
        headers={"Authorization": f"Bearer {busy_room.moderator_key}"},
    )
    assert r.status_code in (200, 201), r.text
    page.wait_for_selector(f"{SHOWN}[data-author='@eve'].is-host")
    assert page.locator(f"{ARTICLES}[data-author='@eve'] .badge.host").count() == 2
    assert set(page.eval_on_selector_all(SHOWN, "els => els.map(e => e.dataset.author)")) == {
        "@maya",
        "@eve",
    }
    page.click("#view-clear")
    assert count(page, SHOWN) == 10


def test_long_room_keeps_a_bounded_column_and_heap(site, new_page):
    """20,000 posts: paging back keeps ≤ 300 articles and a flat JS heap; the latest return."""
    slug = seed_history(site.db_url, 20_000).slug
    page = open_room(new_page, site, slug, viewport={"width": 800, "height": 900})
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")

    def heap() -> float:
        cdp.send("HeapProfiler.collectGarbage")
        metrics = cdp.send("Performance.getMetrics")["metrics"]
        return next(m["value"] for m in metrics if m["name"] == "JSHeapUsedSize")

    def scroll_back(pages: int) -> None:
        for _ in range(pages):
            oldest = page.eval_on_selector(f"{ARTICLES}:last-child", "e => Number(e.dataset.id)")
            page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
            page.wait_for_function(
                f"() => Number(document.querySelector('#feed article.post:last-child')"
                f".dataset.id) < {oldest}",
                timeout=10_000,
            )
            assert count(page) <= 300

    scroll_back(12)
    first_heap = heap()
    scroll_back(24)
    assert count(page) <= 300
    assert heap() - first_heap < 4_000_000
    numbers = page.eval_on_selector_all(
        ARTICLES, "els => els.map(e => Number(e.innerText.match(/Post (\\d+)/)[1]))"
    )
    # 60 + 36 × 50 posts deep: really paged back, and the newest were unloaded from the top.
    assert numbers[-1] < 18_500
    assert numbers[0] < 19_000
    assert numbers == sorted(numbers, reverse=True)
    assert len(set(numbers)) == len(numbers) == numbers[0] - numbers[-1] + 1  # no gap

    # Scrolling back up loads the unloaded posts again, in order, without a gap.
    for _ in range(4):
        newest = page.eval_on_selector(ARTICLES, "e => Number(e.dataset.id)")
        page.evaluate("() => window.scrollTo(0, 0)")
        page.wait_for_function(
            f"() => Number(document.querySelector('#feed article.post').dataset.id) > {newest}",
            timeout=10_000,
        )
        assert count(page) <= 300
    numbers = page.eval_on_selector_all(
        ARTICLES, "els => els.map(e => Number(e.innerText.match(/Post (\\d+)/)[1]))"
    )
    assert len(set(numbers)) == len(numbers) == numbers[0] - numbers[-1] + 1
    assert page.locator("#newer").is_visible()
    page.click("#jump-latest")
    page.wait_for_function(
        "() => document.querySelector('#feed article.post').innerText.includes('Post 20000 ')"
    )
    assert page.locator("#newer").is_hidden()
    texts = page.eval_on_selector_all(
        ARTICLES, "els => els.slice(0, 5).map(e => e.querySelector('.post-content').innerText)"
    )
    assert [t.split()[1] for t in texts] == ["20000", "19999", "19998", "19997", "19996"]


def ask(site: Site, room: dict[str, Any], text: str) -> dict[str, Any]:
    r = httpx.post(
        f"{site.url}/api/chats/{room['slug']}/questions",
        json={"text": text},
        headers={"Authorization": f"Bearer {room['moderator_key']}"},
    )
    assert r.status_code == 201, r.text
    return r.json()


def test_answer_button_prefixes_the_pinned_question_number(site, new_page):
    """With Q3 pinned, the composer's 'A3:' button starts the draft with the answer prefix."""
    room = new_room(site)
    page = open_room(new_page, site, room["slug"])
    assert page.locator("#answer-prefix").is_hidden()
    ask(site, room, "Q3: What grows in deep shade?")
    page.wait_for_selector("#answer-prefix:not([hidden])")
    assert page.inner_text("#answer-prefix-text") == "A3:"
    page.fill("#post-text", "ferns, and more ferns")
    page.click("#answer-prefix")
    assert page.input_value("#post-text") == "A3: ferns, and more ferns"
    assert page.evaluate("() => document.activeElement.id") == "post-text"
    page.fill("#post-text", "A2: moss")  # a wrong prefix is replaced, not doubled
    page.click("#answer-prefix")
    assert page.input_value("#post-text") == "A3: moss"
    page.fill("#author", "Reader")
    page.click("#post-submit")
    reply = page.locator(f"{ARTICLES}.is-answer").first
    reply.wait_for()
    assert reply.get_attribute("data-answer") == "3"


def test_questions_view_counts_answers_and_filters_the_column(site, new_page):
    """Questions lists each question with its answer count; choosing one shows only its answers."""
    room = new_room(site)
    slug = room["slug"]
    ask(site, room, "Q1: Where do you grow?")
    for who in ("Ada", "Ben", "Cleo"):
        post(site, slug, f"A1: on a balcony, says {who}", who)
    post(site, slug, "Just lurking tonight", "Dev")
    ask(site, room, "Q2: Best tool?")
    post(site, slug, "A2: a good trowel", "Ada")
    page = open_room(new_page, site, slug)
    page.click("#questions-toggle")
    page.wait_for_selector("#questions-list .q-item[data-q='2']")
    items = page.locator("#questions-list .q-item")
    assert "3 answers" in items.nth(0).inner_text()
    assert "1 answer" in items.nth(1).inner_text()
    assert items.nth(1).get_attribute("aria-current") == "true"

    items.nth(0).click()
    shown = page.eval_on_selector_all(SHOWN, "els => els.map(e => e.innerText)")
    assert len(shown) == 4 and "Q1: Where do you grow?" in shown[-1]
    assert page.inner_text("#view-text").startswith("Showing answers to Q1")
    assert "q=1" in page.evaluate("() => location.search")

    # Counts follow the live room (refreshed at most every few seconds).
    page.click("#questions-toggle")
    post(site, slug, "A2: gloves, honestly", "Ben")
    page.wait_for_function(
        "() => (document.querySelector(\"#questions-list .q-item[data-q='2']\") || {})"
        ".innerText?.includes('2 answers')",
        timeout=8_000,
    )
    assert count(page, SHOWN) == 4  # the new answer is to Q2: not in this view
    page.click("#view-clear")
    assert count(page, SHOWN) == 8
    assert "q=" not in page.evaluate("() => location.search")


def test_far_behind_reader_gets_a_count_then_the_latest(make_server, db_url, new_page):
    """Past 2,000 waiting posts only the count is kept; the pill then loads the latest."""
    server = make_server(HASHROOM_WS_REPLAY_LIMIT="5000")
    room = seed_room(db_url, numbered_posts(5), hashtag="flood")
    page = new_page()
    page.goto(f"{server.url}/c/{room.slug}")
    page.wait_for_selector("#conn-state[data-state=live]")
    page.keyboard.press("p")
    # 2,100 posts land while this reader's socket is away; it resumes by replaying them all.
    page.evaluate("() => window.dispatchEvent(new Event('offline'))")
    add_posts(db_url, room, numbered_posts(2100, first=6))
    page.evaluate("() => window.dispatchEvent(new Event('online'))")
    page.wait_for_function(
        "() => document.getElementById('new-posts-label').textContent === '2,100 new posts'",
        timeout=15_000,
    )
    assert count(page) == 5
    page.click("#new-posts")
    page.wait_for_function(
        "() => document.querySelector('#feed article.post').innerText.includes('Post 2105 ')"
    )
    assert count(page) == 60
    assert page.locator("#new-posts").is_hidden()
    assert page.get_attribute("#pause-toggle", "aria-pressed") == "true"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_reading_controls_have_no_axe_violations(site, busy_room, new_page, scheme):
    """axe finds no WCAG A/AA violations with each panel, the post menu and the dialog open."""
    page = open_room(new_page, site, busy_room.slug, color_scheme=scheme)
    page.click("#filters-toggle")
    page.locator(f"{ARTICLES} .act-more").first.click()
    page.fill("#mute-input", "@eve")
    page.press("#mute-input", "Enter")
    for toggle in ("#filters-toggle", "#display-toggle", "#questions-toggle"):
        if page.get_attribute(toggle, "aria-expanded") != "true":
            page.click(toggle)
        page.wait_for_timeout(50)
        violations = axe_violations(page)
        assert violations == [], f"{toggle}: {describe(violations)}"
    page.click("#hosts-toggle")
    page.keyboard.press("?")
    violations = axe_violations(page)
    assert violations == [], describe(violations)
