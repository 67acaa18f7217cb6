"""Sign in with Mastodon in a real Chromium: OAuth at the instance, reply, sign out, safety."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.browser import axe_violations, describe
from tests.peers.mastodon import MastodonPeer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

TAG = "TheChat"
ENV = {
    "HASHROOM_MASTODON_POLL_INTERVAL": "0.5",
    "HASHROOM_BACKOFF_BASE": "0.2",
    "HASHROOM_BACKOFF_CAP": "1",
}
HOSTILE = (
    "A2 <script>window.__xss = 1; alert('s')</script>"
    "<img src=x onerror=\"window.__xss = 2; alert('i')\">"
    "<a href=\"javascript:window.__xss = 3; alert('j')\">click me</a>"
)


class PeerThread:
    """A MastodonPeer serving from its own event loop in a thread: the browser API used here
    is synchronous and would otherwise block the peer's loop."""

    def __init__(self, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.peer = MastodonPeer(**options)
        self._run(self.peer.__aenter__())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the peer's loop (its state and queues belong to that loop)."""

        async def inner() -> Any:
            return fn(*args, **kwargs)

        return self._run(inner())

    def close(self) -> None:
        self._run(self.peer.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def mastodon() -> Iterator[PeerThread]:
    peer = PeerThread(domain="a.example", login_as="alice")
    yield peer
    peer.close()


def wait(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def cookie_texts(page: Any) -> list[str]:
    """Every cookie of the page's context, with signed-session payloads base64-decoded."""
    texts = []
    for cookie in page.context.cookies():
        texts.append(cookie["value"])
        head = cookie["value"].split(".")[0]
        try:
            texts.append(base64.b64decode(head + "=" * (-len(head) % 4)).decode("utf-8", "replace"))
        except ValueError:
            pass
    return texts


def test_sign_in_reply_and_sign_out_in_the_browser(make_server, mastodon, new_page):
    """Sign in at the instance's own authorize page, land back signed in (the token never
    reaches the page or its cookies), reply from the composer — the status lands on the
    instance with the tag and shows in the room — then sign out, which revokes the token.
    A hostile remote status never runs script."""
    server = make_server(**ENV)
    peer = mastodon.peer
    reader = mastodon.call(peer.create_user_token, "reader", "read")
    question = mastodon.call(peer.publish, "bob", "Q1 favourite plant?", tags=[TAG])
    src = {"network": "mastodon", "instance": peer.url, "access_token": reader}
    created = httpx.post(
        f"{server.url}/api/chats", json={"hashtag": TAG, "title": "Plants", "sources": [src]}
    )
    assert created.status_code == 201, created.text
    slug = created.json()["slug"]
    wait(lambda: peer.stream_count, "the room's stream")

    page = new_page()
    page.goto(f"{server.url}/c/{slug}")
    page.wait_for_selector("#conn-state[data-state=live]")
    q1 = page.locator("#feed article.post", has_text="Q1 favourite plant?")
    q1.wait_for()
    assert "public" in page.inner_text("#post-as-note")

    page.click("#mastodon-signin")
    page.fill("#mastodon-instance", peer.url)
    page.click("#mastodon-continue")
    page.wait_for_url(f"{peer.url}/oauth/authorize?**")
    assert "Authorization required" in page.content()
    page.click("text=Authorize")
    page.wait_for_url(f"{server.url}/c/{slug}")
    page.wait_for_selector("#conn-state[data-state=live]")
    assert (
        page.locator("#post-as-select option:checked").inner_text().startswith("@alice@a.example")
    )
    assert page.input_value("#account-id")
    assert page.locator("#author").is_hidden()  # posting as the account needs no name

    tokens = mastodon.call(
        lambda: [t.value for t in peer._tokens.values() if t.username == "alice"]
    )
    assert len(tokens) == 1
    token = tokens[0]
    assert token not in page.content()
    assert token not in page.evaluate("() => document.cookie")
    assert not [text for text in cookie_texts(page) if token in text]
    assert [r.query.get("code_challenge_method") for r in peer.requests_to("/oauth/authorize")][
        0
    ] == "S256"

    page.click(f"#post-{q1.get_attribute('data-id')} .act-reply")
    page.fill("#post-text", "A1 a fern, always")
    page.click("#post-submit")
    mine = wait(
        lambda: [s for s in mastodon.call(peer.statuses) if s["account"]["username"] == "alice"],
        "the reply on the instance",
    )
    assert len(mine) == 1 and mine[0]["in_reply_to_id"] == question["id"]
    assert mine[0]["visibility"] == "public"
    sent = peer.requests_to("/api/v1/statuses")[-1].form()["status"]
    assert sent == "@bob@a.example A1 a fern, always #TheChat"
    reply = page.locator("#feed article.post.is-reply", has_text="A1 a fern, always")
    reply.wait_for()
    page.wait_for_selector("#feed article.post.is-reply:not(.is-pending)")
    assert reply.count() == 1
    assert reply.get_attribute("data-reply-to") == q1.get_attribute("data-id")
    assert page.input_value("#post-text") == ""

    # A question the instance lost without the room hearing (its delete came while the
    # stream was down; polling sees no deletes): the reply cannot land, the text stays and
    # "Post without the reply link" posts it plainly.
    gone = mastodon.call(peer.publish, "bob", "Q2 soon gone?", tags=[TAG])
    q2 = page.locator("#feed article.post", has_text="Q2 soon gone?")
    q2.wait_for()
    mastodon.call(lambda: peer._statuses.pop(gone["id"]))
    page.click(f"#post-{q2.get_attribute('data-id')} .act-reply")
    page.fill("#post-text", "A2 it was a cactus")
    page.click("#post-submit")
    page.wait_for_selector("#fallback-plain:visible")
    assert "no longer has the post you are replying to" in page.inner_text("#composer-error")
    assert page.input_value("#post-text") == "A2 it was a cactus"
    assert page.locator("#fallback-quote").is_hidden()
    page.click("#fallback-plain")
    plain = page.locator("#feed article.post", has_text="A2 it was a cactus")
    plain.wait_for()
    assert plain.get_attribute("data-reply-to") is None
    assert page.locator("#reply-target").is_hidden() and page.input_value("#post-text") == ""
    assert page.locator("#composer-fallbacks").is_hidden()
    last = [s for s in mastodon.call(peer.statuses) if "A2 it was a cactus" in s["content"]]
    assert len(last) == 1 and last[0]["in_reply_to_id"] is None

    violations = axe_violations(page)
    assert violations == [], describe(violations)

    mastodon.call(peer.publish, "mallory", HOSTILE, tags=[TAG])
    page.locator("#feed article.post", has_text="click me").wait_for()
    assert page.errors.dialogs == [], page.errors.dialogs
    assert page.errors.exceptions == [], page.errors.exceptions
    assert page.evaluate("() => window.__xss === undefined")
    assert page.locator("#feed script, #feed [onerror]").count() == 0

    page.click("#sign-out")
    page.wait_for_selector("#post-as-status:has-text('Signed out')")
    wait(lambda: peer.requests_to("/oauth/revoke"), "the token's revocation")
    assert mastodon.call(lambda: peer._tokens[token].revoked)
    assert page.locator("#post-as-select option").count() == 0
    page.reload()
    assert page.locator("#post-as-select option").count() == 0
    assert page.locator("#mastodon-signin").is_visible()
