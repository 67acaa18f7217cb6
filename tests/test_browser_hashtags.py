"""A room following two tags on two networks, in a real Chromium: both tags in the header,
both networks' posts in the column, and a moderator's tag change live for every reader."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.peers.jetstream import JetstreamServer
from tests.peers.mastodon import MastodonPeer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

CAROL = "did:plc:carolcarolcarolcarolcaro"


class Peers:
    """A Mastodon peer and a Jetstream on one event loop in a thread: Playwright's sync API
    would otherwise block their loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.mastodon = MastodonPeer(domain="tags.example")
        self.jetstream = JetstreamServer()
        for peer in (self.mastodon, self.jetstream):
            self.run(peer.__aenter__())
        self.call(self.jetstream.add_account, CAROL, "carol.test", "Carol")

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the peers' loop (their state and queues belong to it)."""

        async def inner() -> Any:
            return fn(*args, **kwargs)

        return self.run(inner())

    def close(self) -> None:
        for peer in (self.mastodon, self.jetstream):
            self.run(peer.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def peers() -> Iterator[Peers]:
    p = Peers()
    yield p
    p.close()


def wait(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def tags_shown(page: Any) -> list[str]:
    return page.locator("#room-tags .room-tag").all_inner_texts()


def test_two_tag_room_from_two_networks_and_a_live_tag_edit(make_server, peers, new_page):
    """#TheChat on Mastodon and #Second on Bluesky fill one column; the header, home list,
    title and wall show both tags; a moderator adds #Third in the panel and every reader's
    header (and the wall) shows it at once, then a Mastodon post tagged only #Third arrives."""
    mp, js = peers.mastodon, peers.jetstream
    server = make_server(
        HASHROOM_MASTODON_POLL_INTERVAL="0.5",
        HASHROOM_BLUESKY_PLC_URL=js.http_url,
        HASHROOM_BLUESKY_APPVIEW_URL="",
        HASHROOM_BACKOFF_BASE="0.2",
        HASHROOM_BACKOFF_CAP="1",
    )
    reader_token = peers.call(mp.create_user_token, "reader", "read")
    sources = [
        {"network": "mastodon", "instance": mp.url, "access_token": reader_token},
        {"network": "bluesky", "stream": "jetstream", "url": js.url},
    ]
    created = httpx.post(
        f"{server.url}/api/chats",
        json={"hashtags": ["TheChat", "Second"], "title": "Two tags", "sources": sources},
    )
    assert created.status_code == 201, created.text
    made = created.json()
    slug = made["slug"]
    wait(lambda: mp.stream_count, "the Mastodon stream")
    peers.run(js.wait_for_subscribers(1))

    peers.call(mp.publish, "dana", "Q1 from Mastodon", tags=["TheChat"])
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    record = {"$type": "app.bsky.feed.post", "text": "A1 from Bluesky #Second", "createdAt": now}
    peers.call(js.commit, CAROL, "3kabc", record)

    home = new_page()
    home.goto(server.url)
    assert home.locator(f"li[data-slug='{slug}'] .chat-tag").inner_text() == "#TheChat #Second"

    page = new_page()
    page.goto(f"{server.url}/c/{slug}")
    page.wait_for_selector("#conn-state[data-state=live]")
    assert tags_shown(page) == ["#TheChat", "#Second"]
    assert page.title().startswith("#TheChat #Second · Two tags")
    for network, words in (("mastodon", "Q1 from Mastodon"), ("bluesky", "A1 from Bluesky")):
        post = page.locator("#feed article.post", has_text=words)
        post.wait_for()
        assert post.locator(f".badge.net-{network}").count() == 1, network

    wall = new_page()
    wall.goto(f"{server.url}/c/{slug}/wall")
    assert wall.inner_text("#wall-tags") == "#TheChat #Second"
    wall.wait_for_selector("#wall-conn[data-state=live]")

    mod = new_page()
    mod.goto(made["moderator_url"])
    mod.wait_for_selector("#mod-panel[data-ready=true]")
    mod.click("#mod-tags-section summary")
    assert mod.input_value("#mod-tags-input") == "TheChat Second"
    mod.fill("#mod-tags-input", "TheChat, Second, thechat")
    mod.click("#mod-tags-form button[type=submit]")
    mod.wait_for_selector("#mod-tags-error:has-text('twice')")
    mod.fill("#mod-tags-input", "TheChat Second Third")
    mod.click("#mod-tags-form button[type=submit]")
    mod.wait_for_selector("#mod-status:has-text('Now following')")

    page.wait_for_selector("#room-tags .room-tag:has-text('#Third')")
    assert tags_shown(page) == ["#TheChat", "#Second", "#Third"]
    page.locator(".notice", has_text="now follows #TheChat, #Second, #Third").wait_for()
    wall.wait_for_selector("#wall-tags:has-text('#TheChat #Second #Third')")
    wait(
        lambda: any("third" in s.tags for s in list(mp._streams)),
        "the restarted Mastodon follower's #Third stream",
    )
    peers.call(mp.publish, "erin", "A1 tagged only with the new tag", tags=["Third"])
    page.locator("#feed article.post", has_text="only with the new tag").wait_for()
    assert page.title().startswith("#TheChat #Second #Third")
