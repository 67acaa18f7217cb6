"""The room on a phone in a real Chromium (360×640 and 320 px, touch, mobile): the column
comes first, the composer is a bar at the bottom that opens in place, the tools sit behind
one menu button, every control is a full touch target, nothing scrolls sideways, both
themes are axe-clean, and posting from the bar works."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.browser import axe_violations, describe

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

PHONE = {
    "viewport": {"width": 360, "height": 640},
    "has_touch": True,
    "is_mobile": True,
    "device_scale_factor": 2,
}
LONG_URL = "https://example.com/" + "averyveryverylongpathsegment" * 6 + "?q=" + "x" * 60
LONG_WORD = "Pneumono" + "ultramicroscopicsilicovolcano" * 4 + "coniosis"

# Links inside running text keep the text's size: WCAG 2.5.8 exempts inline targets, and a
# 44 px line would break the paragraph. Every other control must be 44×44 px.
TARGETS_JS = """() => {
  const inText = (el) => el.closest('.post-content, .quote p, .hint, .panel-note');
  const out = [];
  const seen = new Set();
  const sel = 'a[href], button, input, select, textarea, summary, [tabindex]:not([tabindex="-1"])';
  for (let el of document.querySelectorAll(sel)) {
    if (el.tagName === 'A' && inText(el)) continue;
    if (el.type === 'hidden') continue;
    // A checkbox or radio is tapped through its label.
    const label = el.closest('label');
    if ((el.type === 'checkbox' || el.type === 'radio') && label) el = label;
    if (seen.has(el)) continue;
    seen.add(el);
    if (!el.checkVisibility({visibilityProperty: true, opacityProperty: false})) continue;
    const r = el.getBoundingClientRect();
    if (r.width <= 1 && r.height <= 1) continue; // visually hidden text for screen readers
    if (r.width < 43.5 || r.height < 43.5) {
      const text = (el.textContent || '').trim().slice(0, 30);
      const size = `${Math.round(r.width)}x${Math.round(r.height)}`;
      out.push(`${el.tagName.toLowerCase()}#${el.id}.${el.className} "${text}" ${size}`);
    }
  }
  return out;
}"""


def new_room(server: Any, title: str = "Plants and their people") -> dict[str, Any]:
    r = httpx.post(
        f"{server.url}/api/chats",
        json={"hashtag": "PlantChat", "title": title, "description": "Weekly houseplant chat."},
    )
    assert r.status_code == 201, r.text
    return r.json()


def post(
    server: Any, room: dict[str, Any], text: str, author: str = "Maya", **extra: Any
) -> dict[str, Any]:
    r = httpx.post(
        f"{server.url}/api/chats/{room['slug']}/posts",
        json={"text": text, "author": author, **extra},
    )
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


def seeded(server: Any) -> dict[str, Any]:
    """A room with a long pinned question and a handful of posts, one with a very long URL."""
    room = new_room(server)
    ask(server, room, "Q1: Which plant would you give a beginner who forgets to water for weeks?")
    first = post(server, room, "A snake plant, honestly.", author="Zo")
    for i in range(4):
        post(server, room, f"Post {i}: agreed.", author=f"Person{i}", in_reply_to=first["id"])
    post(server, room, f"Look: {LONG_URL} and {LONG_WORD}", author="Linky")
    return room


def open_phone(new_page: Any, url: str, scheme: str = "light", width: int = 360) -> Any:
    page = new_page(**{**PHONE, "viewport": {"width": width, "height": 640}}, color_scheme=scheme)
    page.goto(url)
    page.wait_for_selector("#conn-state[data-state=live]")
    page.wait_for_selector("#feed article.post")
    return page


def box(page: Any, selector: str) -> dict[str, float]:
    result = page.locator(selector).first.bounding_box()
    assert result is not None, f"{selector} is not rendered"
    return result


def open_menu(page: Any) -> None:
    page.tap("#tools-toggle")
    page.wait_for_selector("#tools.is-open")
    assert page.get_attribute("#tools-toggle", "aria-expanded") == "true"


def test_first_post_above_the_fold_and_composer_bar_opens_in_place(server, new_page):
    """At 360×640 the first post shows without scrolling under a compact pinned question;
    the composer is a one-line bar at the bottom that opens on focus with the tag hint and
    the counter, and neither opening it nor the keyboard moves the column."""
    room = seeded(server)
    page = open_phone(new_page, f"{server.url}/c/{room['slug']}")
    assert page.evaluate("() => window.scrollY") == 0
    bar = box(page, ".composer-wrap")
    assert abs(bar["y"] + bar["height"] - 640) < 1, bar
    assert bar["height"] < 80, bar  # one line
    first = box(page, "#feed article.post")
    pins = box(page, "#pins")
    assert pins["y"] + pins["height"] <= first["y"] + 1
    assert first["y"] + 60 < bar["y"], (first, bar)  # the post's head and first line show
    assert pins["height"] <= 80, pins  # the question on two lines at most
    assert "Q1" in page.inner_text("#pins")
    assert page.locator("#author").is_hidden()
    assert page.locator("#composer-hint").is_hidden()

    page.tap("#post-text")
    page.wait_for_selector(".composer-wrap.is-open")
    for selector in ("#author", "#composer-hint", "#post-counter", "#post-preview"):
        assert page.locator(selector).is_visible(), selector
    assert "#PlantChat" in page.inner_text("#composer-hint")
    assert "#PlantChat" in page.inner_text("#post-preview")
    page.keyboard.type("Hello")
    assert page.inner_text("#post-counter").endswith("left")
    assert box(page, "#feed article.post")["y"] == first["y"]

    # The on-screen keyboard takes the lower half: the bar rides above it, the column stays.
    page.set_viewport_size({"width": 360, "height": 340})
    page.wait_for_function(
        "() => Math.abs(document.querySelector('.composer-wrap').getBoundingClientRect().bottom"
        " - window.visualViewport.height) < 1"
    )
    assert box(page, "#feed article.post")["y"] == first["y"]
    text = box(page, "#post-text")
    assert 0 <= text["y"] and text["y"] + text["height"] <= 340
    assert page.evaluate("() => document.activeElement.id") == "post-text"

    # Done writing: a tap on the column folds the bar back to one line.
    page.set_viewport_size({"width": 360, "height": 640})
    page.tap("#feed article.post .post-content")
    page.wait_for_selector(".composer-wrap:not(.is-open)")
    assert box(page, ".composer-wrap")["height"] < 80


def test_posting_and_replying_from_the_phone_bar(server, new_page):
    """A reply started from a post shows its target in the bar; the post goes out and comes
    back into the column through the websocket with the tag."""
    room = new_room(server)
    parent = post(server, room, "Q1: sun or shade?")
    page = open_phone(new_page, f"{server.url}/c/{room['slug']}")
    page.tap(f"#post-{parent['id']} .act-reply")
    page.wait_for_selector(".composer-wrap.is-open")
    assert page.locator("#reply-target").is_visible()
    assert "@maya" in page.inner_text("#reply-target")
    page.fill("#author", "Zoë")
    page.fill("#post-text", "A1 shade, from my phone 📱")
    page.tap("#post-submit")
    reply = page.locator("#feed article.post.is-reply").first
    reply.wait_for()
    assert "from my phone" in reply.inner_text()
    assert "#PlantChat" in reply.inner_text()
    assert reply.get_attribute("data-reply-to") == str(parent["id"])
    assert page.input_value("#post-text") == ""

    # Post straight from the one-line bar: the button stays put under the finger.
    page.tap("#post-text")
    page.keyboard.type("Second one, sent from the folded bar")
    page.tap("#feed article.post .post-content")
    page.wait_for_selector(".composer-wrap:not(.is-open)")
    page.tap("#post-submit")
    page.wait_for_selector("#feed article.post:has-text('sent from the folded bar')")
    assert page.errors.exceptions == []


def test_tool_menu_is_a_disclosure_holding_the_tools(server, new_page):
    """One menu button (aria-expanded, aria-controls) opens the tools; Escape and Close shut
    it and give focus back; a moderator finds asking, moderation and export there; at desktop
    width the tools are back in the page and the button is gone."""
    room = seeded(server)
    ask(server, room, "Q2: And for a dark hallway?")
    page = new_page(**PHONE)
    page.goto(room["moderator_url"])
    page.wait_for_selector("body.is-mod")
    page.wait_for_selector("#conn-state[data-state=live]")
    toggle = page.locator("#tools-toggle")
    assert toggle.get_attribute("aria-controls") == "tools"
    assert toggle.get_attribute("aria-expanded") == "false"
    tools = ("#questions-toggle", "#filters-toggle", "#display-toggle", "#ask-text", "#mod-panel")
    for selector in tools:
        assert page.locator(selector).is_hidden(), selector

    open_menu(page)
    in_menu = ("#past-questions", "#tools .room-desc", "#tools a[href$='/transcript']")
    for selector in (*tools, *in_menu):
        assert page.locator(selector).is_visible(), selector
    # The theme is one of the tools.
    page.tap("#display-toggle")
    page.tap("#display-panel input[name=theme][value=dark]")
    assert page.get_attribute("html", "data-theme") == "dark"
    page.keyboard.press("Escape")
    page.wait_for_selector("#tools", state="hidden")
    assert toggle.get_attribute("aria-expanded") == "false"
    assert page.evaluate("() => document.activeElement.id") == "tools-toggle"

    open_menu(page)
    page.tap("#tools-close")
    page.wait_for_selector("#tools", state="hidden")
    assert page.evaluate("() => document.activeElement.id") == "tools-toggle"

    # Both pinned questions: the latest shows; the arrow opens them all.
    assert page.locator("#pin-list .pin:visible").count() == 1
    assert "Q2" in page.inner_text("#pins")
    page.tap("#pins-expand")
    assert page.get_attribute("#pins-expand", "aria-expanded") == "true"
    assert page.locator("#pin-list .pin:visible").count() == 2

    # Wider than a phone: everything is back where the desktop page has it.
    page.set_viewport_size({"width": 1024, "height": 768})
    page.wait_for_function(
        "() => document.querySelector('#pins').nextElementSibling?.id === 'past-questions'"
    )
    assert toggle.is_hidden()
    for selector in ("#questions-toggle", "#ask-text", "#mod-panel", ".room-head .room-desc"):
        assert page.locator(selector).is_visible(), selector
    assert page.locator("#pin-list .pin:visible").count() == 2


def test_every_control_is_a_touch_target(server, new_page):
    """Every visible control is at least 44×44 px at 360 px: the column, the open composer,
    and the menu with its panels and the moderation sections open."""
    room = seeded(server)
    page = new_page(**PHONE)
    page.goto(room["moderator_url"])
    page.wait_for_selector("body.is-mod")
    page.wait_for_selector("#conn-state[data-state=live]")
    assert page.locator("#feed .post-context a").count() == 4  # "replying to @zo" links
    assert page.evaluate(TARGETS_JS) == []
    page.tap("#post-text")
    page.wait_for_selector(".composer-wrap.is-open")
    assert page.evaluate(TARGETS_JS) == []
    page.keyboard.press("Tab")  # out of the composer, onto the page
    open_menu(page)
    for toggle in ("#questions-toggle", "#filters-toggle", "#display-toggle"):
        page.tap(toggle)
        assert page.evaluate(TARGETS_JS) == [], toggle
    page.evaluate("() => document.querySelectorAll('#tools details').forEach(d => d.open = true)")
    assert page.evaluate(TARGETS_JS) == []


@pytest.mark.parametrize("width", [320, 360])
def test_nothing_scrolls_sideways(server, new_page, width):
    """A post with a very long URL and a very long word wraps: the page is never wider than
    the screen, with the menu and the composer open too."""
    room = seeded(server)
    page = open_phone(new_page, f"{server.url}/c/{room['slug']}", width=width)
    wide = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    assert page.locator(f"#feed a[href='{LONG_URL}']").count() == 1
    assert page.evaluate(wide) <= 0
    page.tap("#post-text")
    assert page.evaluate(wide) <= 0
    page.keyboard.press("Tab")
    open_menu(page)
    page.tap("#filters-toggle")
    assert page.evaluate(wide) <= 0


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_phone_layout_is_axe_clean(server, new_page, scheme):
    """axe-core finds nothing in either theme: the column, the open composer, the open menu."""
    room = seeded(server)
    page = new_page(**PHONE, color_scheme=scheme)
    page.goto(room["moderator_url"])
    page.wait_for_selector("body.is-mod")
    page.wait_for_selector("#conn-state[data-state=live]")
    page.wait_for_load_state("networkidle")
    assert axe_violations(page) == [], describe(axe_violations(page))
    page.tap("#post-text")
    page.wait_for_selector(".composer-wrap.is-open")
    violations = axe_violations(page)
    assert violations == [], describe(violations)
    page.keyboard.press("Tab")
    open_menu(page)
    page.tap("#questions-toggle")
    violations = axe_violations(page)
    assert violations == [], describe(violations)
