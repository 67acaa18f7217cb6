"""A room following X, Mastodon and Bluesky at once, in a real Chromium."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.browser import axe_violations, describe
from tests.peers.jetstream import JetstreamServer
from tests.peers.mastodon import MastodonPeer
from tests.peers.x import XPeer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

TAG = "TheChat"
CAROL = "did:plc:carolcarolcarolcarolcaro"


class Peers:
    """The three networks' test servers on one event loop in a thread: Playwright's sync
    API would otherwise block their loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.x = XPeer(keepalive=0.2)
        self.mastodon = MastodonPeer(domain="mixed.example")
        self.jetstream = JetstreamServer()
        for peer in (self.x, self.mastodon, self.jetstream):
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
        for peer in (self.x, self.mastodon, self.jetstream):
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


CONNECT = """async (body) => {
  const r = await fetch('/api/accounts', {method: 'POST', body: JSON.stringify(body),
    headers: {'content-type': 'application/json', 'X-CSRF-Token': document.body.dataset.csrf}});
  return r.status;
}"""


def test_mixed_room_badges_replies_per_network_and_counter_rules(make_server, peers, new_page):
    """Posts from X, Mastodon and Bluesky share the column with their badges; the counter
    counts X's weighted length with the X account and graphemes with the Mastodon one; a
    reply X refuses keeps the text and offers a quote post (which lands on X) and X's reply
    page; a Mastodon reply lands on the instance; a reply across networks is refused."""
    xp, mp, js = peers.x, peers.mastodon, peers.jetstream
    server = make_server(
        HASHROOM_X_API_URL=xp.url,
        HASHROOM_X_AUTHORIZE_URL=f"{xp.url}/i/oauth2/authorize",
        HASHROOM_X_CLIENT_ID=xp.client_id,
        HASHROOM_X_CLIENT_SECRET=xp.client_secret or "",
        HASHROOM_MASTODON_POLL_INTERVAL="0.5",
        HASHROOM_BLUESKY_PLC_URL=js.http_url,
        HASHROOM_BLUESKY_APPVIEW_URL="",
        HASHROOM_BACKOFF_BASE="0.2",
        HASHROOM_BACKOFF_CAP="1",
    )
    reader = peers.call(mp.create_user_token, "reader", "read")
    sources = [
        {"network": "x", "bearer_token": xp.app_bearer},
        {"network": "mastodon", "instance": mp.url, "access_token": reader},
        {"network": "bluesky", "stream": "jetstream", "url": js.url},
    ]
    created = httpx.post(
        f"{server.url}/api/chats", json={"hashtag": TAG, "title": "Mixed", "sources": sources}
    )
    assert created.status_code == 201, created.text
    slug = created.json()["slug"]
    wait(lambda: xp.stream_count and mp.stream_count, "the X and Mastodon streams")
    peers.run(js.wait_for_subscribers(1))

    x_post = peers.call(xp.publish, "bob", f"Q1 from X, what works? #{TAG}")
    peers.call(mp.publish, "dana", "A1 from Mastodon", tags=[TAG])
    text = f"A1 from Bluesky #{TAG}"
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    peers.call(
        js.commit,
        CAROL,
        "3kabc",
        {"$type": "app.bsky.feed.post", "text": text, "createdAt": now},
    )

    page = new_page()
    page.goto(f"{server.url}/c/{slug}")
    page.wait_for_selector("#conn-state[data-state=live]")
    posts = {}
    for network, words in (
        ("x", "Q1 from X"),
        ("mastodon", "A1 from Mastodon"),
        ("bluesky", "A1 from Bluesky"),
    ):
        post = page.locator("#feed article.post", has_text=words)
        post.wait_for()
        assert post.locator(f".badge.net-{network}").count() == 1, network
        posts[network] = post

    # Sign in with X at X's own page; connect a Mastodon account by token.
    page.click("#x-signin")
    page.wait_for_url(f"{xp.url}/i/oauth2/authorize?**")
    page.click("text=Authorize app")
    page.wait_for_url(f"{server.url}/c/{slug}")
    token = peers.call(mp.create_user_token, "alice", "read write")
    status = page.evaluate(
        CONNECT, {"network": "mastodon", "instance": mp.url, "access_token": token}
    )
    assert status == 201
    page.reload()
    page.wait_for_selector("#conn-state[data-state=live]")
    options = page.locator("#post-as-select option")
    labels = [options.nth(i).inner_text() for i in range(options.count())]
    assert any("(X)" in label for label in labels) and any(
        "(Mastodon)" in label for label in labels
    )

    def choose(network: str) -> None:
        value = page.locator(f"#post-as-select option[data-network={network}]").get_attribute(
            "value"
        )
        page.select_option("#post-as-select", value)

    # The counter follows the chosen account's rules: weighted on X, graphemes on Mastodon.
    choose("x")
    page.fill("#post-text", "日本語")
    page.wait_for_selector("#post-counter:has-text('265 left')")  # 280 − (6 + 1 + 8)
    assert page.get_attribute("#post-counter", "data-rule") == "x-weighted"
    choose("mastodon")
    page.wait_for_selector("#post-counter:has-text('488 left')")  # 500 − 12 graphemes
    assert page.get_attribute("#post-counter", "data-rule") == "graphemes"

    # Reply on X: refused by X's rule → plain message, text kept, two fallbacks.
    choose("x")
    posts["x"].locator(".act-reply").click()
    page.fill("#post-text", "A1 small steps")
    page.click("#post-submit")
    page.wait_for_selector("#composer-fallbacks:not([hidden])")
    assert "refused this reply" in page.inner_text("#composer-error")
    assert page.input_value("#post-text") == "A1 small steps"
    intent = httpx.URL(page.get_attribute("#fallback-intent", "href") or "")
    assert intent.host == "x.com" and intent.params["in_reply_to"] == x_post["id"]
    assert page.get_attribute("#fallback-intent", "target") == "_blank"
    page.click("#fallback-quote")
    quoted = wait(
        lambda: [t for t in xp.tweets.values() if t["text"] == f"A1 small steps #{TAG}"],
        "the quote post on X",
    )
    assert quoted[0]["referenced_tweets"] == [{"type": "quoted", "id": x_post["id"]}]
    page.locator("#feed article.post", has_text="A1 small steps").wait_for()
    wait(lambda: page.input_value("#post-text") == "", "the composer to clear")
    assert page.locator("#composer-fallbacks").is_hidden()

    # Reply on Mastodon with the Mastodon account: it lands threaded on the instance.
    choose("mastodon")
    posts["mastodon"].locator(".act-reply").click()
    page.fill("#post-text", "A1 agreed")
    page.click("#post-submit")
    mine = wait(
        lambda: [s for s in peers.call(mp.statuses) if s["account"]["username"] == "alice"],
        "the reply on the instance",
    )
    assert mine[0]["in_reply_to_id"] is not None
    # The instance has the reply before the browser has the answer; the answer clears the
    # composer, so the next message is typed only after that.
    wait(lambda: page.input_value("#post-text") == "", "the composer to clear")

    # A Bluesky post cannot be answered from an X account.
    choose("x")
    posts["bluesky"].locator(".act-reply").click()
    page.fill("#post-text", "A1 crossing over")
    page.click("#post-submit")
    page.wait_for_selector("#composer-error:has-text('bluesky account')")
    assert page.input_value("#post-text") == "A1 crossing over"

    violations = axe_violations(page)
    assert violations == [], describe(violations)
    assert page.errors.exceptions == [], page.errors.exceptions
