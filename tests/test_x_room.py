"""X end to end: a real server follows the loopback X API, posts through it, signs in."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.factories import LiveClient, create_chat
from tests.peers.x import XPeer
from tests.server import OPERATOR_HEADERS

pytestmark = pytest.mark.timeout(60)

TAG = "TheChat"


def env(peer: XPeer, **extra: str) -> dict[str, str]:
    return {
        "HASHROOM_X_API_URL": peer.url,
        "HASHROOM_X_AUTHORIZE_URL": f"{peer.url}/i/oauth2/authorize",
        "HASHROOM_X_CLIENT_ID": peer.client_id,
        "HASHROOM_X_CLIENT_SECRET": peer.client_secret or "",
        "HASHROOM_X_POLL_INTERVAL": "0.3",
        "HASHROOM_BACKOFF_BASE": "0.2",
        "HASHROOM_BACKOFF_CAP": "1",
        "HASHROOM_INGEST_BATCH_WINDOW": "0.02",
        **extra,
    }


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 10.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def posts(base: str, slug: str) -> dict[str, dict[str, Any]]:
    """The room's visible posts, keyed by remote id."""
    async with httpx.AsyncClient(base_url=base) as http:
        r = await http.get(f"/api/chats/{slug}/posts", params={"limit": 500})
    assert r.status_code == 200, r.text
    return {i["post"]["remote_id"]: {**i["post"], "html": i["html"]} for i in r.json()["items"]}


async def follow(server: Any, peer: XPeer) -> dict[str, Any]:
    source = {"network": "x", "bearer_token": peer.app_bearer, "api_url": peer.url}
    return await create_chat(server.url, TAG, sources=[source])


async def test_bad_tokens_are_refused_and_good_ones_sealed_never_returned(make_server):
    """A refused bearer token is a 422 naming the field, a bad api_url too; an accepted one
    is stored sealed and appears in no API answer, page or event."""
    async with XPeer() as peer:
        server = make_server(**env(peer))
        async with httpx.AsyncClient(base_url=server.url) as http:
            for source, field in (
                ({"network": "x", "bearer_token": "wrong"}, "bearer_token"),
                ({"network": "x"}, "bearer_token"),
                ({"network": "x", "bearer_token": "a b"}, "bearer_token"),
                (
                    {
                        "network": "x",
                        "bearer_token": peer.app_bearer,
                        "api_url": "http://x.example",
                    },
                    "api_url",
                ),
            ):
                r = await http.post(
                    "/api/chats", json={"hashtag": TAG, "title": "T", "sources": [source]}
                )
                assert r.status_code == 422 and field in r.json()["detail"], r.text
            chat = await follow(server, peer)
            slug = chat["slug"]
            for path in ("/api/chats", f"/api/chats/{slug}", f"/c/{slug}", "/healthz"):
                assert peer.app_bearer not in (await http.get(path)).text
            r = await http.get(
                f"/api/chats/{slug}/sources",
                headers={"Authorization": f"Bearer {chat['moderator_key']}"},
            )
            assert r.status_code == 200 and peer.app_bearer not in r.text
            r = await http.post(
                "/api/length", json={"network": "x", "text": "日本 https://example.org/" + "x" * 60}
            )
            assert r.json() == {"length": 28, "limit": 280}
            r = await http.post("/api/length", json={"network": "mastodon", "text": "hi"})
            assert r.status_code == 422 and "graphemes" in r.text
            home = await http.get("/")
            csrf = re.search(r'data-csrf="([^"]+)"', home.text)[1]  # type: ignore[index]
            form = {"hashtag": "Other", "title": "T", "follow_x": "1", "csrf_token": csrf}
            r = await http.post("/chats", data=form)
            assert r.status_code == 422 and "bearer token" in r.text
        path = server.database_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as db:
            (secret,) = db.execute("SELECT secret FROM source").fetchone()
        assert secret and peer.app_bearer not in secret


async def test_room_backfills_streams_threads_and_removes_deleted_posts(make_server):
    """Posts from before the chat are backfilled, new ones stream in live with their
    thread, quotes and display URLs; posts deleted on X vanish; the budget shows on
    /healthz and to moderators; the rule goes away with the server."""
    async with XPeer(keepalive=0.2) as peer:
        server = make_server(**env(peer, HASHROOM_X_COMPLIANCE_INTERVAL="0.5"))
        q1 = peer.publish("host", f"Q1 what helps? #{TAG}")
        chat = await follow(server, peer)
        slug = chat["slug"]
        live = await LiveClient.open(server.ws_url, slug)
        await live.next()
        await eventually(lambda: _has(server, slug, [q1["id"]]), "the backfilled question")
        await eventually(lambda: asyncio.sleep(0, peer.stream_count == 1), "a stream")
        assert [r.tag for r in peer.rules.values()] == ["hashroom:source-1"]

        a1 = peer.publish(
            "carol",
            f"A1 small groups <script>x</script> https://t.co/abc #{TAG}",
            reply_to=q1["id"],
        )
        frame = await live.until(
            lambda f: f["type"] == "post" and f["post"]["remote_id"] == a1["id"]
        )
        assert frame["post"]["network"] == "x"
        assert frame["post"]["in_reply_to"]["id"] is not None and frame["post"]["answer"] == 1
        assert "<script>" not in frame["html"] and "example.org/a/very/long/…" in frame["html"]
        assert f"https://x.com/carol/status/{a1['id']}" in frame["html"]

        gone = peer.publish("dan", f"A1 oops #{TAG}")
        await live.until(lambda f: f["type"] == "post" and f["post"]["remote_id"] == gone["id"])
        peer.delete(gone["id"])
        await live.until(lambda f: f["type"] == "delete", timeout=10)
        assert gone["id"] not in await posts(server.url, slug)

        async with httpx.AsyncClient(base_url=server.url) as http:
            health = (await http.get("/healthz", headers=OPERATOR_HEADERS)).json()
            (ing,) = [i for i in health["ingesters"] if i["network"] == "x"]
            assert ing["state"] == "streaming" and ing["budget"]["session_reads"] >= 3
            assert ing["budget"]["estimated_cost_session"] == pytest.approx(
                ing["budget"]["session_reads"] * 0.005
            )
            r = await http.get(f"/api/chats/{slug}/sources")
            assert r.status_code == 401
            r = await http.get(
                f"/api/chats/{slug}/sources",
                headers={"Authorization": f"Bearer {chat['moderator_key']}"},
            )
            assert r.json()["sources"][0]["budget"]["per_hour"] == 500
        await live.close()
        await asyncio.to_thread(server.stop)  # the peer shares this loop: keep it answering
        assert peer.rules == {}, "the chat's stream rule must be removed when following stops"


async def _has(server: Any, slug: str, ids: list[str]) -> bool:
    return set(ids) <= set(await posts(server.url, slug))


async def test_budget_reached_pauses_reading_with_a_notice_in_the_room(make_server):
    """With a budget of 12 posts per hour the room gets the latest 12, a notice, and the
    source pauses after the one search that spent it."""
    async with XPeer(stream_allowed=False) as peer:
        server = make_server(**env(peer, HASHROOM_X_BUDGET_PER_HOUR="12"))
        for i in range(15):
            peer.publish("bob", f"A{i} #{TAG}")
        chat = await follow(server, peer)
        # From offset 0: the source may have spent its budget (and posted the notice) before
        # this client connects, and a snapshot carries posts, not notices.
        live = await LiveClient.open(server.ws_url, chat["slug"], after=0)
        notice = await live.until(lambda f: f["type"] == "notice")
        assert "paused" in json.dumps(notice) and "12 posts per hour" in json.dumps(notice)

        async def twelve() -> bool:
            return len(await posts(server.url, chat["slug"])) == 12

        await eventually(twelve, "the latest 12 posts the budget allows")

        async def paused() -> bool:
            async with httpx.AsyncClient(base_url=server.url) as http:
                health = (await http.get("/healthz", headers=OPERATOR_HEADERS)).json()
            return health["ingesters"][0]["state"] == "paused: hour budget spent"

        await eventually(paused, "the source to pause")
        assert len(peer.requests_to("/2/tweets/search/recent")) == 1  # the backfill only
        await live.close()


async def test_posting_hashtag_idempotency_reply_restriction_fallbacks_and_reconcile(make_server):
    """An X account posts with the hashtag appended and weighted length checked; a retried
    request posts once; a refused reply answers 403 with both fallbacks; the quote fallback
    posts; the optimistic post settles when it comes back through the stream."""
    async with XPeer(keepalive=0.2) as peer:
        server = make_server(**env(peer))
        chat = await follow(server, peer)
        slug = chat["slug"]
        stranger = peer.publish("bob", f"Q1 who is here? #{TAG}")
        await eventually(lambda: _has(server, slug, [stranger["id"]]), "the question")
        await eventually(lambda: asyncio.sleep(0, peer.stream_count == 1), "a stream")
        token = peer.create_user_token("alice")
        async with httpx.AsyncClient(base_url=server.url) as http:
            r = await http.post("/api/accounts", json={"network": "x", "access_token": "nope"})
            assert r.status_code == 401, r.text
            r = await http.post("/api/accounts", json={"network": "x", "access_token": token})
            assert r.status_code == 201, r.text
            account = r.json()
            assert account["handle"] == "@alice" and token not in r.text
            auth = {"Authorization": f"Bearer {account['key']}"}

            r = await http.post(
                f"/api/chats/{slug}/posts",
                headers=auth,
                json={"text": "日本" * 140, "account_id": account["id"]},
            )
            assert r.status_code == 422 and "280" in r.json()["detail"], r.text

            body = {"text": "Hello all", "account_id": account["id"]}
            headers = {**auth, "Idempotency-Key": "k1"}
            first = await http.post(f"/api/chats/{slug}/posts", headers=headers, json=body)
            again = await http.post(f"/api/chats/{slug}/posts", headers=headers, json=body)
            assert first.status_code == 201 and again.status_code == 201, first.text
            assert first.json()["id"] == again.json()["id"]
            made = [t for t in peer.tweets.values() if t["text"] == f"Hello all #{TAG}"]
            assert len(made) == 1
            await eventually(
                lambda: _settled(server, slug, made[0]["id"]), "the optimistic post to settle"
            )

            room = await posts(server.url, slug)
            parent = room[stranger["id"]]["id"]
            reply = {"text": "A1 me", "account_id": account["id"], "in_reply_to": parent}
            r = await http.post(f"/api/chats/{slug}/posts", headers=auth, json=reply)
            assert r.status_code == 403, r.text
            detail = r.json()["detail"]
            assert "refused this reply" in detail["message"] and "kept" in detail["message"]
            assert detail["fallbacks"]["quote_of"] == parent
            intent = httpx.URL(detail["fallbacks"]["intent_url"])
            assert intent.host == "x.com" and intent.params["in_reply_to"] == stranger["id"]
            assert intent.params["text"] == f"A1 me #{TAG}"
            assert "Forbidden" not in r.text and "engaged" not in r.text  # X's words stay out

            quote = {"text": "A1 me", "account_id": account["id"], "quote_of": parent}
            r = await http.post(f"/api/chats/{slug}/posts", headers=auth, json=quote)
            assert r.status_code == 201, r.text
            quoted = next(t for t in peer.tweets.values() if t["text"] == f"A1 me #{TAG}")
            assert quoted["referenced_tweets"] == [{"type": "quoted", "id": stranger["id"]}]

            asked = peer.publish("bob", f"Q2 @alice what say you? #{TAG}")
            await eventually(lambda: _has(server, slug, [asked["id"]]), "the second question")
            room = await posts(server.url, slug)
            reply = {
                "text": "A2 this",
                "account_id": account["id"],
                "in_reply_to": room[asked["id"]]["id"],
            }
            r = await http.post(f"/api/chats/{slug}/posts", headers=auth, json=reply)
            assert r.status_code == 201, r.text
            assert r.json()["in_reply_to"]["id"] == room[asked["id"]]["id"]


async def _settled(server: Any, slug: str, remote_id: str) -> bool:
    post = (await posts(server.url, slug)).get(remote_id)
    return bool(post) and not post["pending"] and post["author"]["name"] == "Alice"


async def test_sign_in_with_x_refreshes_before_expiry_and_sign_out_revokes(make_server):
    """Sign in with X (PKCE, scopes) stores the tokens sealed; a token near its expiry is
    renewed before posting and the renewal stored; signing out revokes it on X."""
    async with XPeer(keepalive=0.2) as peer:
        peer.token_lifetime = 120  # inside the renewal margin: the first post renews it
        server = make_server(**env(peer))
        chat = await follow(server, peer)
        slug = chat["slug"]
        async with httpx.AsyncClient(base_url=server.url) as browser, httpx.AsyncClient() as xcom:
            r = await browser.get("/auth/x/start", params={"next": f"/c/{slug}"})
            assert r.status_code == 303, r.text
            authorize = httpx.URL(r.headers["location"])
            assert str(authorize).startswith(f"{peer.url}/i/oauth2/authorize?")
            params = dict(authorize.params)
            assert params["scope"] == "tweet.read tweet.write users.read offline.access"
            assert params["code_challenge_method"] == "S256"
            assert params["redirect_uri"] == f"{server.url}/auth/x/callback"
            r = await xcom.post(f"{peer.url}/i/oauth2/authorize", data=params)
            r = await browser.get(r.headers["location"])
            assert r.status_code == 303 and r.headers["location"] == f"/c/{slug}", r.text
            (mine,) = (await browser.get("/api/accounts/mine")).json()
            assert mine["handle"] == "@alice" and mine["network"] == "x"

            page = await browser.get(f"/c/{slug}")
            csrf = re.search(r'data-csrf="([^"]+)"', page.text)[1]  # type: ignore[index]
            assert "Sign in with X" in page.text
            before = set(peer.tokens)
            r = await browser.post(
                f"/api/chats/{slug}/posts",
                headers={"X-CSRF-Token": csrf},
                json={"text": "Morning", "account_id": mine["id"]},
            )
            assert r.status_code == 201, r.text
            assert len(peer.requests_to("/2/oauth2/token")) == 2  # the code, then one renewal
            renewed = set(peer.tokens) - before
            assert len(renewed) == 1
            path = server.database_url.removeprefix("sqlite:///")
            with sqlite3.connect(path) as db:
                (sealed,) = db.execute("SELECT secret FROM account").fetchone()
            assert all(t not in sealed for t in renewed)

            r = await browser.delete(f"/api/accounts/{mine['id']}", headers={"X-CSRF-Token": csrf})
            assert r.status_code == 204, r.text
            assert renewed.isdisjoint(peer.tokens), "sign-out must revoke the token on X"
            assert len(peer.requests_to("/2/oauth2/revoke")) == 2
