"""The room in a real Chromium: live posts, replying with the tag, moderator pins, safety."""

from __future__ import annotations

import re

import pytest

from tests.browser import axe_violations, describe

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]


@pytest.fixture
def demo_server(make_server):  # type: ignore[no-untyped-def]
    return make_server(HASHROOM_DEMO_ENABLED="true", HASHROOM_DEMO_SPEED="25")


def test_demo_posts_arrive_live_and_hostile_posts_never_run(demo_server, new_page):
    """Posts stream into /c/demo without reload; the demo's script payloads do nothing."""
    page = new_page()
    page.goto(f"{demo_server.url}/c/demo")
    page.wait_for_selector("#conn-state[data-state=live]")
    first = page.locator("#feed article.post").count()
    page.wait_for_function(
        f"() => document.querySelectorAll('#feed article.post').length > {first + 10}",
        timeout=20_000,
    )
    # Let the whole transcript (with its <script>, onerror=, javascript: payloads) play.
    page.wait_for_function(
        "() => document.querySelectorAll('#feed article.post').length >= 60", timeout=30_000
    )
    assert page.errors.dialogs == [], page.errors.dialogs
    assert page.errors.exceptions == [], page.errors.exceptions
    assert page.locator("#feed script").count() == 0
    assert page.locator("#feed [onerror], #feed [onload], #feed iframe").count() == 0
    hrefs = page.eval_on_selector_all("#feed a[href]", "els => els.map(e => e.href)")
    assert hrefs and all(h.startswith(("http://", "https://")) for h in hrefs)
    assert page.evaluate("() => window.__xss === undefined")


def test_reply_gets_the_hashtag_and_renders_as_a_reply(server, new_page):
    """Reply from the composer: the post appears with the tag and 'replying to'."""
    import httpx

    created = httpx.post(
        f"{server.url}/api/chats", json={"hashtag": "PlantChat", "title": "Plants"}
    ).json()
    slug = created["slug"]
    parent = httpx.post(
        f"{server.url}/api/chats/{slug}/posts", json={"text": "Q1: sun or shade?", "author": "Maya"}
    ).json()
    page = new_page()
    page.goto(f"{server.url}/c/{slug}")
    page.wait_for_selector("#conn-state[data-state=live]")
    page.click(f"#post-{parent['id']} .act-reply")
    assert "@maya" in page.inner_text("#reply-target")
    page.fill("#author", "Zoë")
    page.fill("#post-text", "A1 shade, always 🌿")
    counter = page.inner_text("#post-counter")
    assert re.search(r"\d", counter)
    page.click("#post-submit")
    reply = page.locator("#feed article.post.is-reply").first
    reply.wait_for()
    assert "#PlantChat" in reply.inner_text()
    assert "Zoë" in reply.inner_text()
    assert reply.get_attribute("data-reply-to") == str(parent["id"])
    assert page.input_value("#post-text") == ""
    # The name is remembered for the next visit (signed cookie + local storage).
    page.reload()
    assert page.input_value("#author") == "Zoë"


def test_over_limit_post_is_refused_and_draft_kept(server, new_page):
    """Too long → a clear error, nothing posted, the text stays in the composer."""
    import httpx

    slug = httpx.post(f"{server.url}/api/chats", json={"hashtag": "t", "title": "T"}).json()["slug"]
    page = new_page()
    page.goto(f"{server.url}/c/{slug}")
    page.wait_for_selector("#conn-state[data-state=live]")
    page.fill("#author", "Sam")
    long_text = "word " * 120
    page.fill("#post-text", long_text)
    assert page.get_attribute("#post-counter", "data-state") == "over"
    page.click("#post-submit")
    page.wait_for_selector("#composer-error:not(:empty)")
    assert page.input_value("#post-text") == long_text
    assert page.locator("#feed article.post").count() == 0


def test_moderator_pin_updates_other_viewers_live(server, new_page):
    """A moderator (via the moderator link) pins a post; a lurker's pinned bar updates."""
    import httpx

    created = httpx.post(
        f"{server.url}/api/chats", json={"hashtag": "ModChat", "title": "M"}
    ).json()
    slug = created["slug"]
    target = httpx.post(
        f"{server.url}/api/chats/{slug}/posts", json={"text": "Q2: what now?", "author": "Host"}
    ).json()
    lurker = new_page()
    lurker.goto(f"{server.url}/c/{slug}")
    lurker.wait_for_selector("#conn-state[data-state=live]")
    assert lurker.locator(".mod-only .act-pin").first.is_hidden()
    mod = new_page()
    mod.goto(created["moderator_url"])
    assert mod.url.endswith(f"/c/{slug}")  # the key left the address bar
    mod.wait_for_selector("body.is-mod")
    assert "#key" not in mod.url and created["moderator_key"] not in server.log()
    mod.wait_for_selector("#conn-state[data-state=live]")
    mod.click(f"#post-{target['id']} .act-pin")
    lurker.wait_for_selector(f"#pin-list .pin[data-post-id='{target['id']}']")
    assert "Q2: what now?" in lurker.inner_text("#pins")
    mod.click(f"#pin-list .act-unpin[data-post-id='{target['id']}']")
    lurker.wait_for_selector(f"#pin-list .pin[data-post-id='{target['id']}']", state="detached")
    # Past questions stay reachable.
    assert "Q2: what now?" in (lurker.text_content("#past-list") or "")


def test_lurker_needs_no_sign_in_and_sees_no_controls(demo_server, new_page):
    """The room reads without a name; moderator buttons are absent for non-moderators."""
    page = new_page()
    page.goto(f"{demo_server.url}/c/demo")
    page.wait_for_selector("#feed article.post")
    assert not page.locator("body.is-mod").count()
    assert page.locator(".act-pin:visible, .act-hide:visible").count() == 0


@pytest.mark.parametrize("path", ["/", "/c/demo"])
def test_core_pages_have_no_axe_violations(demo_server, new_page, path):
    """axe-core finds no WCAG A/AA violations on the home and chat pages."""
    page = new_page()
    page.goto(f"{demo_server.url}{path}")
    page.wait_for_load_state("networkidle")
    violations = axe_violations(page)
    assert violations == [], describe(violations)


def test_api_reference_renders_offline_under_the_csp(server, new_page):
    """/docs shows the OpenAPI operations from the vendored Swagger UI, no CSP violations."""
    page = new_page()
    page.goto(f"{server.url}/docs")
    page.wait_for_selector(".opblock", timeout=15_000)
    paths = page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.textContent)")
    assert any("/api/chats/{slug}/posts" in p.replace("\u200b", "") for p in paths), paths
    assert not [m for m in page.errors.console if "Content Security Policy" in m]
    assert page.errors.exceptions == []
