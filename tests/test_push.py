"""Web Push through a real server: the VAPID key, subscriptions listed and removed, and
notices ("starts soon", "new question pinned") delivered to a push service on loopback that
verifies and decrypts them; expired subscriptions dropped, failures retried."""

from __future__ import annotations

import asyncio
import base64
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.factories import create_chat, post
from tests.peers.push import PushService

pytestmark = pytest.mark.timeout(60)

FAST_RETRIES = {"HASHROOM_BACKOFF_BASE": "0.05", "HASHROOM_BACKOFF_CAP": "0.2"}


async def subscribe(
    http: httpx.AsyncClient, slug: str, sub: dict[str, Any], kinds: list[str]
) -> dict[str, Any]:
    r = await http.post(
        "/api/push/subscriptions", json={"chat": slug, "kinds": kinds, "subscription": sub}
    )
    assert r.status_code == 201, r.text
    return r.json()


async def listed(http: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    r = await http.get("/api/push/subscriptions", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()


async def test_the_key_is_made_once_and_subscriptions_are_listed_and_removed(make_server):
    """GET /api/push/key is a P-256 point that survives a restart; a browser subscribes,
    lists its subscriptions with its token, removes one; bad input gets a 4xx saying why."""
    server = make_server()
    chat = await create_chat(server.url, "pushlist")
    other = await create_chat(server.url, "pushother")
    async with PushService() as push, httpx.AsyncClient(base_url=server.url) as http:
        key = (await http.get("/api/push/key")).json()["key"]
        point = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
        assert len(point) == 65 and point[0] == 4
        server.restart()
        assert (await http.get("/api/push/key")).json()["key"] == key

        sub = push.subscribe(key)
        one = await subscribe(http, chat["slug"], sub, ["starts", "pinned"])
        two = await subscribe(http, other["slug"], sub, ["pinned"])
        assert one["token"] == two["token"], "one browser, one token"
        again = await subscribe(http, chat["slug"], sub, ["pinned"])
        assert again["id"] == one["id"] and again["kinds"] == ["pinned"]
        mine = await listed(http, one["token"])
        assert [(s["chat"], s["kinds"]) for s in mine] == [
            (chat["slug"], ["pinned"]),
            (other["slug"], ["pinned"]),
        ]
        assert await listed(http, "someone-else") == []
        assert (await http.get("/api/push/subscriptions")).status_code == 401

        auth = {"Authorization": f"Bearer {one['token']}"}
        stranger = {"Authorization": "Bearer not-the-token"}
        assert (
            await http.delete(f"/api/push/subscriptions/{one['id']}", headers=stranger)
        ).status_code == 404
        assert (
            await http.delete(f"/api/push/subscriptions/{one['id']}", headers=auth)
        ).status_code == 204
        assert [s["chat"] for s in await listed(http, one["token"])] == [other["slug"]]
        assert (
            await http.delete(f"/api/push/subscriptions/{one['id']}", headers=auth)
        ).status_code == 404

        def body(**change: Any) -> dict[str, Any]:
            return {"chat": chat["slug"], "kinds": ["pinned"], "subscription": sub, **change}

        bad = [
            (body(kinds=["everything"]), 422, "kinds"),
            (body(kinds=[]), 422, "kinds"),
            (body(subscription={**sub, "endpoint": "ftp://push.example/x"}), 422, "https"),
            (body(subscription={**sub, "endpoint": "http://push.example/x"}), 422, "https"),
            (body(subscription={**sub, "keys": {"p256dh": "AAAA", "auth": "x"}}), 422, "p256dh"),
            (body(chat="nochat"), 404, "nochat"),
        ]
        for payload, status, words in bad:
            r = await http.post("/api/push/subscriptions", json=payload)
            assert r.status_code == status and words in r.json()["detail"], (payload, r.text)


async def test_a_pinned_question_reaches_the_followers_who_asked(make_server):
    """Posting a question (and pinning a Q post) sends "new question" to subscriptions that
    asked for pinned notices, decrypted at the push service; others get nothing of it."""
    server = make_server()
    chat = await create_chat(server.url, "pushpin")
    slug = chat["slug"]
    mod = {"Authorization": f"Bearer {chat['moderator_key']}"}
    async with PushService() as push, httpx.AsyncClient(base_url=server.url) as http:
        key = (await http.get("/api/push/key")).json()["key"]
        wants = push.subscribe(key)
        only_starts = push.subscribe(key)
        await subscribe(http, slug, wants, ["pinned"])
        await subscribe(http, slug, only_starts, ["starts", "reply"])

        r = await http.post(
            f"/api/chats/{slug}/questions",
            json={"text": "Q1: <b>what</b> helps you focus?"},
            headers=mod,
        )
        assert r.status_code == 201, r.text
        (first,) = await push.wait_for(1, wants["endpoint"])
        assert first.payload["kind"] == "pinned"
        assert first.payload["title"] == "New question in #pushpin"
        assert "Q1: <b>what</b> helps you focus?" in first.payload["body"]
        assert first.payload["url"] == f"/c/{slug}#post-{r.json()['id']}"
        assert first.ttl == 1800

        q2 = await post(server.url, slug, "Q2: and after lunch?")
        assert (
            await http.put(f"/api/chats/{slug}/pins/{q2['id']}", headers=mod)
        ).status_code == 200
        got = await push.wait_for(2, wants["endpoint"])
        assert "Q2: and after lunch?" in got[1].payload["body"]
        assert push.messages_for(only_starts["endpoint"]) == []


async def test_a_session_starting_soon_is_announced_once(make_server):
    """A subscription to a chat whose next session starts within the lead time gets one
    "starts in N minutes" message, with a TTL that ends at the start."""
    server = make_server(HASHROOM_PUSH_START_MINUTES="10")
    start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=6)
    chat = await create_chat(
        server.url,
        "pushsoon",
        schedule={
            "start": start.strftime("%Y-%m-%dT%H:%M"),
            "timezone": "UTC",
            "duration_minutes": 30,
        },
    )
    later = await create_chat(
        server.url,
        "pushlater",
        schedule={
            "start": (start + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M"),
            "timezone": "UTC",
            "duration_minutes": 30,
        },
    )
    async with PushService() as push, httpx.AsyncClient(base_url=server.url) as http:
        key = (await http.get("/api/push/key")).json()["key"]
        first = push.subscribe(key)
        await subscribe(http, chat["slug"], first, ["starts"])
        (message,) = await push.wait_for(1, first["endpoint"])
        assert message.payload["kind"] == "starts"
        assert message.payload["title"] in (
            "#pushsoon starts in 5 minutes",
            "#pushsoon starts in 6 minutes",
        )
        assert message.payload["url"] == f"/c/{chat['slug']}"
        assert 60 <= message.ttl <= 6 * 60

        # A second subscriber wakes the reminder pass again: it is told, the first is not
        # told twice, and the chat three hours away tells nobody.
        await subscribe(http, later["slug"], first, ["starts"])
        second = push.subscribe(key)
        await subscribe(http, chat["slug"], second, ["starts"])
        await push.wait_for(1, second["endpoint"])
        assert len(push.messages_for(first["endpoint"])) == 1


async def test_expired_subscriptions_are_dropped_and_failures_retried(make_server):
    """A push service answering 410 gets the subscription deleted; one answering 503 twice
    gets the message on the third try."""
    server = make_server(**FAST_RETRIES)
    chat = await create_chat(server.url, "pushfail")
    slug = chat["slug"]
    mod = {"Authorization": f"Bearer {chat['moderator_key']}"}
    async with PushService() as push, httpx.AsyncClient(base_url=server.url) as http:
        key = (await http.get("/api/push/key")).json()["key"]
        gone, flaky = push.subscribe(key), push.subscribe(key)
        gone_row = await subscribe(http, slug, gone, ["pinned"])
        await subscribe(http, slug, flaky, ["pinned"])
        push.expire(gone["endpoint"])
        push.fail(flaky["endpoint"], 503, 2)
        r = await http.post(f"/api/chats/{slug}/questions", json={"text": "Q1: ok?"}, headers=mod)
        assert r.status_code == 201
        (message,) = await push.wait_for(1, flaky["endpoint"])
        assert message.payload["kind"] == "pinned"
        statuses = [a.status for a in push.state.attempts if a.token in flaky["endpoint"]]
        assert statuses == [503, 503, 201]

        deadline = asyncio.get_running_loop().time() + 10
        while await listed(http, gone_row["token"]):
            assert asyncio.get_running_loop().time() < deadline, "the 410 subscription stayed"
            await asyncio.sleep(0.05)
    with sqlite3.connect(server.database_url.removeprefix("sqlite:///")) as db:
        endpoints = [row[0] for row in db.execute("SELECT endpoint FROM pushsubscription")]
    assert endpoints == [flaky["endpoint"]]


async def test_a_reply_to_a_post_made_from_hashroom_notifies_its_author(make_server):
    """A browser that connected a Mastodon account and asked for reply notices hears about
    someone's reply to the post it made through Hashroom, once that reply reaches the room."""
    from tests.peers.mastodon import MastodonPeer
    from tests.test_mastodon_room import ENV, TAG, follow, posts_by_uri, streaming

    server = make_server(**ENV)
    async with (
        MastodonPeer(domain="a.example") as instance,
        PushService() as push,
        httpx.AsyncClient(base_url=server.url, follow_redirects=True) as browser,
    ):
        slug = await follow(server, instance)
        await streaming(instance)
        page = await browser.get(f"/c/{slug}")
        csrf = {"X-CSRF-Token": re.search(r'data-csrf="([^"]+)"', page.text)[1]}  # type: ignore[index]
        token = instance.create_user_token("alice", "read write")
        r = await browser.post(
            "/api/accounts",
            json={"network": "mastodon", "instance": instance.url, "access_token": token},
            headers=csrf,
        )
        assert r.status_code == 201, r.text
        account = r.json()
        key = (await browser.get("/api/push/key")).json()["key"]
        sub = push.subscribe(key)
        r = await browser.post(
            "/api/push/subscriptions",
            json={"chat": slug, "kinds": ["reply"], "subscription": sub},
            headers=csrf,
        )
        assert r.status_code == 201 and r.json()["replies_for_accounts"] == [account["id"]]

        made = await browser.post(
            f"/api/chats/{slug}/posts",
            json={"text": "A1 tomatoes", "account_id": account["id"]},
            headers=csrf,
        )
        assert made.status_code == 201, made.text
        (status,) = [s for s in instance.statuses() if s["account"]["username"] == "alice"]
        answer = instance.publish("bob", "A1 same here!", tags=[TAG], in_reply_to=status["id"])

        deadline = asyncio.get_running_loop().time() + 10
        while answer["uri"] not in await posts_by_uri(server.url, slug):
            assert asyncio.get_running_loop().time() < deadline, "the reply never arrived"
            await asyncio.sleep(0.05)
        (message,) = await push.wait_for(1, sub["endpoint"])
        assert message.payload["kind"] == "reply"
        assert "replied to you in #TheChat" in message.payload["title"]
        assert "A1 same here!" in message.payload["body"]
        assert message.ttl == 86400
