"""Starting a chat that follows Mastodon from the home page, with and without the script."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.peers.mastodon import MastodonPeer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

TAG = "FormChat"


@pytest.fixture
def peer() -> Iterator[MastodonPeer]:
    """A Mastodon test server on loopback, run in its own thread with its own event loop
    (the sync Playwright API owns this thread's loop)."""
    import asyncio

    started = threading.Event()
    stop = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        async with MastodonPeer(domain="form.example") as p:
            box["peer"] = p
            started.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert started.wait(20), "the Mastodon test server did not start"
    yield box["peer"]
    stop.set()
    thread.join(10)


def _wait_for_post(base: str, slug: str, text: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = httpx.get(f"{base}/api/chats/{slug}/posts").json()["items"]
        for item in items:
            if text in item["post"]["text"]:
                return item["post"]
        time.sleep(0.2)
    raise AssertionError(f"no post containing {text!r} in {slug}")


def test_form_starts_a_chat_following_mastodon(make_server, new_page, peer):
    """With the script: tick Mastodon, give the instance; the new room follows the tag there."""
    server = make_server(HASHROOM_MASTODON_POLL_INTERVAL="0.5", HASHROOM_BACKOFF_BASE="0.2")
    peer.publish("bob", "Q1 from the fediverse", tags=[TAG])
    page = new_page()
    page.goto(server.url)
    page.fill("#f-hashtag", TAG)
    page.fill("#f-title", "Form chat")
    page.check("#f-follow-mastodon")
    page.fill("#f-mastodon-instances", peer.url)
    page.click("#start-submit")
    page.wait_for_selector("#created:not([hidden])")
    slug = page.get_attribute("#created-room-link", "href").rsplit("/", 1)[1]
    chat = httpx.get(f"{server.url}/api/chats/{slug}").json()["chat"]
    assert chat["network"] == "mastodon"
    post = _wait_for_post(server.url, slug, "Q1 from the fediverse")
    assert post["network"] == "mastodon"


def test_form_reports_a_bad_instance_next_to_the_field(server, new_page):
    """A Mastodon source without an instance gets a clear message; nothing is created."""
    page = new_page()
    page.goto(server.url)
    page.fill("#f-hashtag", "Nope")
    page.fill("#f-title", "Nope")
    page.check("#f-follow-mastodon")
    page.click("#start-submit")
    page.wait_for_selector("#start-error:not(:empty)")
    assert "instance" in page.inner_text("#start-error")
    assert httpx.get(f"{server.url}/api/chats").json() == []


def test_form_without_script_follows_mastodon(make_server, new_page, peer):
    """Without JavaScript the same form posts to /chats and the page shows the moderator link."""
    server = make_server(HASHROOM_MASTODON_POLL_INTERVAL="0.5")
    page = new_page(java_script_enabled=False)
    page.goto(server.url)
    page.fill("#f-hashtag", TAG)
    page.fill("#f-title", "No script")
    page.check("#f-follow-mastodon")
    page.fill("#f-mastodon-instances", peer.url)
    page.click("#start-submit")
    page.wait_for_selector("#created:not([hidden])")
    link = page.input_value("#created-url")
    assert re.search(r"/c/formchat#key=", link)  # in the fragment: never in a log
    assert httpx.get(f"{server.url}/api/chats/formchat").json()["chat"]["network"] == "mastodon"
