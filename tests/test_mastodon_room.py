"""Mastodon end to end: a real server follows a loopback Mastodon, and posts through it."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from typing import Any

import httpx
import pytest

from tests.factories import LiveClient, create_chat, eventually
from tests.peers.mastodon import MastodonPeer
from tests.server import OPERATOR_HEADERS

pytestmark = pytest.mark.timeout(60)

TAG = "TheChat"
ENV = {
    "HASHROOM_MASTODON_POLL_INTERVAL": "0.5",
    "HASHROOM_BACKOFF_BASE": "0.2",
    "HASHROOM_BACKOFF_CAP": "1",
    "HASHROOM_INGEST_BATCH_WINDOW": "0.02",
}
HOSTILE = (
    'Q1 go <script>alert("s")</script><img src=x onerror="alert(1)">'
    '<a href="javascript:alert(2)">look</a> <b onclick="alert(3)">bold</b>'
)


async def events(base: str, slug: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base) as http:
        r = await http.get(f"/api/chats/{slug}/events", params={"after": 0, "limit": 1000})
    assert r.status_code == 200, r.text
    return r.json()["events"]


async def posts_by_uri(base: str, slug: str) -> dict[str, dict[str, Any]]:
    """The room's visible posts, keyed by remote id (the status uri)."""
    async with httpx.AsyncClient(base_url=base) as http:
        r = await http.get(f"/api/chats/{slug}/posts", params={"limit": 500})
    assert r.status_code == 200, r.text
    return {item["post"]["remote_id"]: item["post"] for item in r.json()["items"]}


def post_uris(evts: list[dict[str, Any]]) -> list[str]:
    return [e["post"]["remote_id"] for e in evts if e["type"] == "post"]


async def follow(server: Any, *peers: MastodonPeer, token: bool = True) -> str:
    """A chat following #TheChat on ``peers`` (with a reader's token: streaming); its slug."""
    sources = [
        {"network": "mastodon", "instance": p.url}
        | ({"access_token": p.create_user_token("reader", "read")} if token else {})
        for p in peers
    ]
    chat = await create_chat(server.url, TAG, sources=sources)
    assert chat["chat"]["network"] == "mastodon"
    return chat["slug"]


async def streaming(peer: MastodonPeer, n: int = 1) -> None:
    async def check() -> bool:
        return peer.stream_count >= n

    await eventually(check, f"{n} stream(s) open on {peer.domain}")


async def test_backfill_live_gap_free_stream_cut_edit_and_delete(make_server):
    """Tagged statuses from before the chat are backfilled; new ones arrive live; a cut
    stream loses nothing; edits update and deletes remove posts live; each uri stored once."""
    server = make_server(**ENV)
    async with MastodonPeer(domain="a.example") as peer:
        old = [peer.publish("bob", f"Q{i} earlier", tags=[TAG]) for i in (1, 2)]
        peer.publish("bob", "not tagged")
        peer.publish("bob", "quiet", tags=[TAG], visibility="unlisted")
        slug = await follow(server, peer)
        live = await LiveClient.open(server.ws_url, slug)
        await live.next()  # snapshot
        await eventually(lambda: _has(server, slug, [s["uri"] for s in old]), "backfilled statuses")
        await streaming(peer)

        fresh = peer.publish("carol", "A1 live", tags=[TAG])
        frame = await live.until(
            lambda f: f["type"] == "post" and f["post"]["remote_id"] == fresh["uri"]
        )
        assert "A1 live" in frame["post"]["text"]

        # Cut the stream and publish while it is down: the REST catch-up fills the gap.
        assert peer.faults.drop_stream() == 1
        missed = [peer.publish("dan", f"A{i} while cut", tags=[TAG]) for i in (2, 3)]
        got = set()
        while not {s["uri"] for s in missed} <= got:
            f = await live.until(lambda f: f["type"] == "post")
            got.add(f["post"]["remote_id"])
        await streaming(peer)

        peer.edit(fresh["id"], "<p>A1 live, edited</p>")
        update = await live.until(lambda f: f["type"] == "update")
        assert update["post"]["id"] == frame["post"]["id"]
        assert "edited" in update["post"]["text"] and update["post"]["edited_at"]

        peer.delete(missed[0]["id"])
        gone = await live.until(lambda f: f["type"] == "delete")
        posts = await posts_by_uri(server.url, slug)
        assert missed[0]["uri"] not in posts
        assert gone["post_id"] not in {p["id"] for p in posts.values()}
        await live.close()

        uris = post_uris(await events(server.url, slug))
        assert sorted(uris) == sorted({*uris}), "a status was stored twice"
        assert set(uris) == {*(s["uri"] for s in old), fresh["uri"], *(s["uri"] for s in missed)}


async def _has(server: Any, slug: str, uris: list[str]) -> bool:
    return set(uris) <= set(await posts_by_uri(server.url, slug))


async def test_restart_resumes_from_the_cursor_without_duplicates(make_server):
    """A crash and restart resumes from the stored cursor (forward paging, no new backfill):
    statuses published while down arrive, and no status appears twice."""
    server = make_server(**ENV)
    async with MastodonPeer(domain="a.example") as peer:
        before = [peer.publish("bob", f"Q{i}", tags=[TAG]) for i in (1, 2)]
        slug = await follow(server, peer)
        await eventually(lambda: _has(server, slug, [s["uri"] for s in before]), "backfill")
        await streaming(peer)

        server.kill()
        down = [peer.publish("bob", f"A{i} while down", tags=[TAG]) for i in (1, 2, 3)]
        seen = len(peer.requests)
        await asyncio.to_thread(server.start)
        wanted = [s["uri"] for s in before + down]
        await eventually(lambda: _has(server, slug, wanted), "statuses published while down")

        uris = post_uris(await events(server.url, slug))
        assert sorted(uris) == sorted(wanted)
        pages = [r for r in peer.requests[seen:] if r.path.startswith("/api/v1/timelines/tag/")]
        assert pages and all("min_id" in r.query for r in pages), [r.query for r in pages]


async def test_rate_limit_is_waited_out_and_reported_on_healthz(make_server):
    """Without a token the room polls; a 429 with an ISO-8601 reset is waited out (shown on
    /healthz meanwhile) and the status published during it still arrives."""
    server = make_server(**ENV)
    async with MastodonPeer(domain="a.example") as peer:
        first = peer.publish("bob", "Q1", tags=[TAG])
        slug = await follow(server, peer, token=False)
        await eventually(lambda: _has(server, slug, [first["uri"]]), "backfill")
        peer.faults.rate_limit(0, reset_in_s=2.0)
        limited_at = time.time()
        later = peer.publish("bob", "A1 after the limit", tags=[TAG])

        async def health() -> dict[str, Any] | None:
            async with httpx.AsyncClient() as http:
                body = (await http.get(f"{server.url}/healthz", headers=OPERATOR_HEADERS)).json()
            ingester = body["ingesters"][0]
            return ingester if "rate limit" in (ingester["last_error"] or "") else None

        ingester = await health() or await eventually(health, "the rate limit on /healthz")
        assert ingester["network"] == "mastodon" and ingester["state"] == "polling"
        assert any(r.status == 429 for r in peer.requests)
        await eventually(lambda: _has(server, slug, [later["uri"]]), "the status after reset")
        assert time.time() - limited_at >= 1.5  # it waited for the reset, not around it


async def test_a_status_seen_on_two_instances_is_stored_once(make_server):
    """Following the tag on two instances: a status federated from one to the other has the
    same uri on both and is stored once; replies link to their parent across instances."""
    server = make_server(**ENV)
    async with (
        MastodonPeer(domain="a.example") as a,
        MastodonPeer(domain="b.example") as b,
    ):
        slug = await follow(server, a, b)
        await streaming(a)
        await streaming(b)
        question = a.publish("bob", "Q1 two places", tags=[TAG])
        b.federate(question)
        answer = b.publish("erin", "A1 from b", tags=[TAG])
        reply = a.publish("carol", "A1 threaded", tags=[TAG], in_reply_to=question["id"])
        wanted = [question["uri"], answer["uri"], reply["uri"]]
        await eventually(lambda: _has(server, slug, wanted), "statuses from both instances")
        # b's copy of the question came before erin's answer on b's stream: already handled.
        uris = post_uris(await events(server.url, slug))
        assert uris.count(question["uri"]) == 1
        assert not [e for e in await events(server.url, slug) if e["type"] == "update"]
        posts = await posts_by_uri(server.url, slug)
        assert posts[reply["uri"]]["in_reply_to"]["id"] == posts[question["uri"]]["id"]
        assert posts[reply["uri"]]["in_reply_to"]["handle"] == "@bob@a.example"


async def test_untagged_reply_to_a_question_joins_the_room_and_transcript(make_server):
    """A reply to the host's question that leaves out the hashtag is fetched from the
    question's thread: it shows in the room threaded under the question and is listed in the
    transcript among that question's answers."""
    server = make_server(**ENV, HASHROOM_MASTODON_CONTEXT_INTERVAL="0.3")
    async with MastodonPeer(domain="a.example") as peer:
        slug = await follow(server, peer)
        await streaming(peer)
        question = peer.publish("host", "Q1: what are you reading?", tags=[TAG])
        await eventually(lambda: _has(server, slug, [question["uri"]]), "the question")
        reply = peer.publish("bob", "A1 a long novel", in_reply_to=question["id"])
        assert reply["tags"] == []  # only the question's thread can deliver it
        await eventually(lambda: _has(server, slug, [reply["uri"]]), "the untagged reply")

        posts = await posts_by_uri(server.url, slug)
        assert posts[reply["uri"]]["in_reply_to"]["id"] == posts[question["uri"]]["id"]
        async with httpx.AsyncClient(base_url=server.url) as http:
            r = await http.get(f"/c/{slug}/transcript.json")
        assert r.status_code == 200, r.text
        groups = {g["number"]: g for g in r.json()["questions"]}
        assert groups[1]["question"]["id"] == posts[question["uri"]]["id"]
        assert [a["id"] for a in groups[1]["answers"]] == [posts[reply["uri"]]["id"]]
        assert "a long novel" in groups[1]["answers"][0]["text"]
        assert peer.requests_to(f"/api/v1/statuses/{question['id']}/context")


async def test_remote_status_is_mapped_fully_and_hostile_html_is_sanitized(make_server):
    """CW, sensitive media with alt text, language and permalink survive; script, event
    handlers and javascript: links do not — in the JSON and in the rendered HTML."""
    server = make_server(**ENV)
    async with MastodonPeer(domain="a.example") as peer:
        slug = await follow(server, peer)
        await streaming(peer)
        status = peer.publish(
            "mallory",
            HOSTILE,
            tags=[TAG],
            spoiler_text="spoilers <b>ahead</b>",
            media=[{"url": "https://a.example/m/1.png", "description": "A chart"}],
            language="de",
        )
        await eventually(lambda: _has(server, slug, [status["uri"]]), "the hostile status")
        evts = [e for e in await events(server.url, slug) if e["type"] == "post"]
        frame = evts[-1]
        post = frame["post"]
        assert post["spoiler_text"] == "spoilers <b>ahead</b>"  # escaped when rendered
        assert post["sensitive"] is True
        assert post["media"][0]["alt"] == "A chart"
        assert post["language"] == "de"
        assert post["url"] == status["url"]
        assert post["author"]["handle"] == "@mallory@a.example"
        for html in (post["html"], frame["html"]):
            lowered = html.lower()
            assert "<script" not in lowered and "javascript:" not in lowered
            assert "onerror" not in lowered and "onclick" not in lowered
        assert "Q1 go" in post["text"] and post["question"] == 1
        assert '<details class="cw">' in frame["html"] and "&lt;b&gt;ahead" in frame["html"]


async def test_posting_through_a_personal_token(make_server):
    """POST /api/accounts with a token, then post and reply as that account: the status lands
    on the user's own instance with the tag, public, once per Idempotency-Key; it shows at
    once as pending and is reconciled when it comes back through the followed instance."""
    server = make_server(**ENV)
    async with (
        MastodonPeer(domain="a.example") as a,  # the instance the chat follows
        MastodonPeer(domain="b.example", max_characters=80) as b,  # the user's own
    ):
        slug = await follow(server, a)
        await streaming(a)
        question = a.publish("bob", "Q1 what do you grow?", tags=[TAG])
        await eventually(lambda: _has(server, slug, [question["uri"]]), "the question")
        token = b.create_user_token("alice", "read write")
        live = await LiveClient.open(server.ws_url, slug)
        await live.next()

        async with httpx.AsyncClient(base_url=server.url) as http:
            r = await http.post(
                "/api/accounts",
                json={"network": "mastodon", "instance": b.url, "access_token": "nope"},
            )
            assert r.status_code == 401, r.text
            r = await http.post(
                "/api/accounts",
                json={"network": "mastodon", "instance": b.url, "access_token": token},
            )
            assert r.status_code == 201, r.text
            account = r.json()
            assert account["handle"] == "@alice@b.example" and account["key"]
            assert token not in r.text
            auth = {"Authorization": f"Bearer {account['key']}"}
            body = {"text": "A1 tomatoes", "account_id": account["id"]}

            r = await http.post(f"/api/chats/{slug}/posts", json=body)
            assert r.status_code == 403, r.text  # not this caller's account

            key = {"Idempotency-Key": "retry-me-1"}
            r = await http.post(f"/api/chats/{slug}/posts", json=body, headers=auth | key)
            assert r.status_code == 201, r.text
            made = r.json()
            assert made["pending"] is True and made["text"].startswith("A1 tomatoes #TheChat")
            pending = await live.until(lambda f: f["type"] == "post")
            assert pending["post"]["id"] == made["id"] and pending["post"]["pending"] is True
            again = await http.post(f"/api/chats/{slug}/posts", json=body, headers=auth | key)
            assert again.status_code == 201 and again.json()["id"] == made["id"]
            sent = b.requests_to("/api/v1/statuses")
            assert [r.headers.get("idempotency-key") for r in sent] == ["retry-me-1"] * 2
            assert sent[0].form()["visibility"] == "public"
            assert sent[0].form()["status"] == "A1 tomatoes #TheChat"
            mine = [s for s in b.statuses() if s["account"]["username"] == "alice"]
            assert len(mine) == 1

            # The status reaches the followed instance and its stream: reconciled in place.
            a.federate(mine[0])
            done = await live.until(lambda f: f["type"] == "update")
            assert done["post"]["id"] == made["id"] and done["post"]["pending"] is False
            uris = post_uris(await events(server.url, slug))
            assert uris.count(mine[0]["uri"]) == 1

            # No key sent: a resend of the same post (a browser retrying) still posts once.
            resend = {**body, "text": "A2 basil"}
            first = await http.post(f"/api/chats/{slug}/posts", json=resend, headers=auth)
            second = await http.post(f"/api/chats/{slug}/posts", json=resend, headers=auth)
            assert first.status_code == second.status_code == 201, second.text
            assert first.json()["id"] == second.json()["id"]
            assert len([s for s in b.statuses() if "A2 basil" in s["content"]]) == 1

            # A reply: the target is resolved on the user's own instance, its author mentioned.
            room = await posts_by_uri(server.url, slug)
            reply = {**body, "text": "A1 peppers", "in_reply_to": room[question["uri"]]["id"]}
            r = await http.post(f"/api/chats/{slug}/posts", json=reply, headers=auth)
            assert r.status_code == 201, r.text
            assert r.json()["in_reply_to"]["id"] == room[question["uri"]]["id"]
            assert b.requests_to("/api/v2/search")[-1].query["resolve"] == "true"
            status = b.statuses()[-1]
            assert status["account"]["username"] == "alice"
            assert b.status(status["in_reply_to_id"])["uri"] == question["uri"]
            assert b.requests_to("/api/v1/statuses")[-1].form()["status"] == (
                "@bob@a.example A1 peppers #TheChat"
            )

            # Too long for b's 80 characters: refused before anything is sent.
            sent_before = len(b.requests_to("/api/v1/statuses"))
            long = {**body, "text": "x" * 75}
            r = await http.post(f"/api/chats/{slug}/posts", json=long, headers=auth)
            assert r.status_code == 422 and "80" in r.json()["detail"], r.text
            assert len(b.requests_to("/api/v1/statuses")) == sent_before

            # A revoked token: a clear 401 that says what to do.
            b.revoke_token(token)
            r = await http.post(f"/api/chats/{slug}/posts", json=body, headers=auth)
            assert r.status_code == 401, r.text
            assert "sign in again" in r.json()["detail"]
        await live.close()


async def test_bad_sources_are_refused_with_a_clear_message(make_server):
    """Plain http to a remote host, a path, an unreachable instance or a refused token → 422
    naming the problem; the stored token never appears in any answer."""
    server = make_server(**ENV)
    async with MastodonPeer(domain="a.example") as peer:
        token = peer.create_user_token("reader", "read")
        cases = {
            "http://mastodon.example": "https://",
            f"{peer.url}/about": "without a path",
            "https://127.0.0.1:1": "does not answer",
        }
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            for instance, message in cases.items():
                src = {"network": "mastodon", "instance": instance}
                r = await http.post(
                    "/api/chats", json={"hashtag": TAG, "title": "T", "sources": [src]}
                )
                assert r.status_code == 422 and message in r.json()["detail"], (instance, r.text)
            src = {"network": "mastodon", "instance": peer.url, "access_token": "wrong"}
            r = await http.post("/api/chats", json={"hashtag": TAG, "title": "T", "sources": [src]})
            assert r.status_code == 422 and "access_token" in r.json()["detail"], r.text
            src = {**src, "access_token": token}
            r = await http.post("/api/chats", json={"hashtag": TAG, "title": "T", "sources": [src]})
            assert r.status_code == 201, r.text
            slug = r.json()["slug"]
            for path in ("/api/chats", f"/api/chats/{slug}", f"/c/{slug}", "/healthz"):
                assert token not in (await http.get(path)).text
        assert token not in json.dumps(await events(server.url, slug))


async def test_oauth_sign_in_is_bound_to_the_browser_that_started_it(make_server):
    """The callback accepts only the state its own session started, once; the app is
    registered once per instance; `next` stays on this site; secrets are stored sealed."""
    server = make_server(**ENV)
    async with MastodonPeer(domain="a.example", login_as="alice") as peer:
        start = {"instance": peer.url, "next": "//evil.example/x"}
        async with (
            httpx.AsyncClient(base_url=server.url) as browser,
            httpx.AsyncClient(base_url=server.url) as stranger,
            httpx.AsyncClient() as instance,
        ):
            r = await browser.get("/auth/mastodon/start", params=start)
            assert r.status_code == 303, r.text
            authorize = r.headers["location"]
            assert authorize.startswith(f"{peer.url}/oauth/authorize?")
            params = dict(httpx.URL(authorize).params)
            assert params["code_challenge_method"] == "S256" and params["state"]
            assert params["redirect_uri"] == f"{server.url}/auth/mastodon/callback"
            # The user approves at the instance, which sends the browser back with a code.
            r = await instance.post(f"{peer.url}/oauth/authorize", data=params)
            assert r.status_code == 302, r.text
            callback = r.headers["location"]

            r = await stranger.get(callback)
            assert r.status_code == 400 and "not started in this browser" in r.text
            r = await browser.get(callback)
            assert r.status_code == 303 and r.headers["location"] == "/"
            mine = (await browser.get("/api/accounts/mine")).json()
            assert [a["handle"] for a in mine] == ["@alice@a.example"]
            assert (await stranger.get("/api/accounts/mine")).json() == []
            r = await browser.get(callback)
            assert r.status_code == 400  # a state works once

            r = await browser.get("/auth/mastodon/start", params=start)
            assert r.status_code == 303
            assert len(peer.requests_to("/api/v1/apps")) == 1  # registration cached

            r = await browser.get(
                "/auth/mastodon/start", params={"instance": "http://remote.example"}
            )
            assert r.status_code == 400 and "https://" in r.text

        token = next(t.value for t in peer._tokens.values() if t.username == "alice")
        app_secret = next(iter(peer._apps.values())).client_secret
        path = server.database_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as db:
            stored = db.execute("SELECT secret FROM account").fetchall()
            stored += db.execute("SELECT client_secret FROM oauthapp").fetchall()
        assert len(stored) == 2
        assert all(token not in s and app_secret not in s for (s,) in stored)


async def test_a_status_published_while_the_stream_opens_is_not_lost(make_server):
    """The stream is opened before the gap since the cursor is read: a status published
    while the instance is accepting the upgrade (too early for the stream) arrives through
    the REST catch-up, on the first connection and on a reconnection."""
    server = make_server(**ENV)
    async with MastodonPeer(domain="a.example") as peer:
        first = peer.publish("bob", "Q1 before the chat", tags=[TAG])
        opening: list[dict[str, Any]] = []

        def publish_now() -> None:
            opening.append(peer.publish("eve", f"A{len(opening) + 1} at the opening", tags=[TAG]))

        peer.faults.before_next_stream(publish_now)
        slug = await follow(server, peer)
        await streaming(peer)
        assert len(opening) == 1, "the peer never saw the stream open"
        wanted = [first["uri"], opening[0]["uri"]]
        await eventually(lambda: _has(server, slug, wanted), "the status of the opening")

        peer.faults.before_next_stream(publish_now)
        assert peer.faults.drop_stream() == 1

        async def reopened() -> bool:
            return len(opening) == 2

        await eventually(reopened, "the stream to reopen")
        await eventually(lambda: _has(server, slug, [opening[1]["uri"]]), "the reopening's status")
        live = peer.publish("carol", "A3 streamed", tags=[TAG])
        await eventually(lambda: _has(server, slug, [live["uri"]]), "a streamed status")
        uris = post_uris(await events(server.url, slug))
        assert sorted(uris) == sorted({*uris}), "a status was stored twice"


async def test_a_follower_that_gives_up_is_restarted(make_server):
    """When the instance fails longer than the follower retries, the follower ends with an
    error and the ingester starts it again after a backoff: the backlog still arrives."""
    server = make_server(**ENV)
    async with MastodonPeer(domain="a.example") as peer:
        earlier = peer.publish("bob", "Q1 waiting", tags=[TAG])
        # One failure for the token check at creation, six for the follower's first try
        # (one call and five retries), one more after its restart.
        peer.faults.server_error(8, status=502, path="/api/v1/timelines/tag")
        slug = await follow(server, peer)
        await eventually(
            lambda: _has(server, slug, [earlier["uri"]]), "the backlog after a restart", 30
        )
        tag_calls = [r for r in peer.requests if r.path.startswith("/api/v1/timelines/tag")]
        assert sum(r.status == 502 for r in tag_calls) == 8
        async with httpx.AsyncClient(base_url=server.url) as http:
            health = (await http.get("/healthz", headers=OPERATOR_HEADERS)).json()
        assert health["ingesters"][0]["restarts"] >= 1


async def test_posting_errors_keep_the_draft_and_say_what_to_do(make_server):
    """Posting through an account: a chat that does not follow the network → 422; the
    instance rate-limiting → 429 with Retry-After; the instance failing → 502; the instance
    rejecting the status → 422. The upstream's own error text is never shown, and nothing
    is stored in the room for any of them."""
    server = make_server(**ENV)
    async with (
        MastodonPeer(domain="a.example") as a,
        MastodonPeer(domain="b.example") as b,
    ):
        slug = await follow(server, a)
        native = await create_chat(server.url, "NativeOnly")
        token = b.create_user_token("alice", "read write")
        async with httpx.AsyncClient(base_url=server.url) as http:
            r = await http.post(
                "/api/accounts",
                json={"network": "mastodon", "instance": b.url, "access_token": token},
            )
            assert r.status_code == 201, r.text
            account = r.json()
            auth = {"Authorization": f"Bearer {account['key']}"}
            body = {"text": "A1 hello", "account_id": account["id"]}
            head = (await http.get(f"/api/chats/{slug}/events")).json()["head"]

            r = await http.post(f"/api/chats/{native['slug']}/posts", json=body, headers=auth)
            assert r.status_code == 422 and "does not follow mastodon" in r.json()["detail"]

            b.faults.rate_limit(0, reset_in_s=30)
            r = await http.post(f"/api/chats/{slug}/posts", json=body, headers=auth)
            assert r.status_code == 429, r.text
            assert 1 <= int(r.headers["retry-after"]) <= 31
            assert "try again in" in r.json()["detail"] and "draft is kept" in r.json()["detail"]
            assert "Too many requests" not in r.text
            b.faults.rate_limit(300, reset_in_s=0)

            b.faults.server_error(50, status=503, path="/api/v1/statuses")
            r = await http.post(f"/api/chats/{slug}/posts", json=body, headers=auth)
            assert r.status_code == 502, r.text
            assert "could not post to mastodon" in r.json()["detail"]
            assert "<html" not in r.text and "Service Temporarily" not in r.text, r.text
            b.faults._errors.clear()

            b.max_characters = 12  # the instance lowered its limit since we last asked
            r = await http.post(f"/api/chats/{slug}/posts", json=body, headers=auth)
            assert r.status_code == 422, r.text
            assert "mastodon rejected the post" in r.json()["detail"]

            after = (await http.get(f"/api/chats/{slug}/events")).json()["head"]
            assert after == head, "a failed post was stored"
            assert not [s for s in b.statuses() if "A1 hello" in s["content"]]


async def connect_account(http: httpx.AsyncClient, peer: MastodonPeer, token: str) -> dict:
    """Connects a Mastodon account by personal token; its JSON (with ``key``)."""
    r = await http.post(
        "/api/accounts",
        json={"network": "mastodon", "instance": peer.url, "access_token": token},
    )
    assert r.status_code == 201, r.text
    return r.json()


async def test_a_reply_uses_the_id_the_accounts_own_instance_gave_the_status(make_server):
    """The status replied to came into the room through the account's own instance (a
    followed source there, which knows it under a local id of its own): the reply names that
    id directly and never searches — so it lands even with a token that may not search."""
    server = make_server(**ENV)
    async with (
        MastodonPeer(domain="a.example") as a,  # followed, and the replier's own instance
        MastodonPeer(domain="c.example") as c,  # where the question was written
    ):
        slug = await follow(server, a)
        await streaming(a)
        origin = c.publish("bob", "Q1 where do you grow?", tags=[TAG])
        local = a.federate(origin)  # a's copy: same uri, a's own id
        assert local["id"] != origin["id"]
        await eventually(lambda: _has(server, slug, [origin["uri"]]), "the question")
        # A token without read:search: resolving would be refused (403).
        token = a.create_user_token("alice", "read:accounts read:statuses write:statuses")
        async with httpx.AsyncClient(base_url=server.url) as http:
            account = await connect_account(http, a, token)
            room = await posts_by_uri(server.url, slug)
            body = {
                "text": "A1 balcony",
                "account_id": account["id"],
                "in_reply_to": room[origin["uri"]]["id"],
            }
            auth = {"Authorization": f"Bearer {account['key']}"}
            r = await http.post(f"/api/chats/{slug}/posts", json=body, headers=auth)
            assert r.status_code == 201, r.text
            assert r.json()["in_reply_to"]["id"] == room[origin["uri"]]["id"]
        assert a.requests_to("/api/v2/search") == []
        mine = [s for s in a.statuses() if s["account"]["username"] == "alice"]
        assert len(mine) == 1 and mine[0]["in_reply_to_id"] == local["id"]


async def test_an_unresolvable_reply_target_offers_posting_without_the_link(make_server):
    """The account's instance cannot find the status replied to (its origin is down): 422
    with code ``reply_target_unresolved`` and the fallback, nothing posted or stored; the
    same text then posts fine without ``in_reply_to``."""
    server = make_server(**ENV)
    async with MastodonPeer(domain="b.example") as b:
        async with MastodonPeer(domain="a.example") as a:
            slug = await follow(server, a)
            await streaming(a)
            question = a.publish("bob", "Q1 seeds or seedlings?", tags=[TAG])
            await eventually(lambda: _has(server, slug, [question["uri"]]), "the question")
        token = b.create_user_token("alice", "read write")
        async with httpx.AsyncClient(base_url=server.url) as http:
            account = await connect_account(http, b, token)
            room = await posts_by_uri(server.url, slug)
            body = {"text": "A1 seedlings", "account_id": account["id"]}
            auth = {"Authorization": f"Bearer {account['key']}"}
            head = (await http.get(f"/api/chats/{slug}/events")).json()["head"]
            reply = {**body, "in_reply_to": room[question["uri"]]["id"]}
            r = await http.post(f"/api/chats/{slug}/posts", json=reply, headers=auth)
            assert r.status_code == 422, r.text
            detail = r.json()["detail"]
            assert detail["code"] == "reply_target_unresolved"
            assert detail["fallbacks"] == {"without_reply": True}
            assert "without the reply link" in detail["message"]
            assert b.requests_to("/api/v2/search")[-1].query["resolve"] == "true"
            assert not b.requests_to("/api/v1/statuses")
            assert (await http.get(f"/api/chats/{slug}/events")).json()["head"] == head

            r = await http.post(f"/api/chats/{slug}/posts", json=body, headers=auth)
            assert r.status_code == 201, r.text
            assert r.json()["in_reply_to"] is None
        posted = b.statuses()
        assert len(posted) == 1 and posted[0]["in_reply_to_id"] is None


async def test_a_two_tag_room_stores_a_status_with_both_tags_once_and_follows_an_added_tag_live(
    make_server,
):
    """A room following two tags stores each status once (one with both tags arrives on
    both streams), and a tag a moderator adds while it runs is followed at once."""
    server = make_server(**ENV)
    async with MastodonPeer(domain="a.example") as peer:
        token = peer.create_user_token("reader", "read")
        chat = await create_chat(
            server.url,
            hashtags=[TAG, "Second"],
            sources=[{"network": "mastodon", "instance": peer.url, "access_token": token}],
        )
        slug = chat["slug"]
        earlier = peer.publish("bob", "Q1 both, earlier", tags=[TAG, "Second"])
        await streaming(peer)
        live = await LiveClient.open(server.ws_url, slug)
        await live.next()
        both = peer.publish("carol", "A1 both", tags=["Second", TAG])
        second = peer.publish("carol", "A1 second only", tags=["Second"])
        await live.until(lambda f: f["type"] == "post" and f["post"]["remote_id"] == second["uri"])
        stored = await posts_by_uri(server.url, slug)
        assert {earlier["uri"], both["uri"], second["uri"]} <= set(stored)
        assert post_uris(await events(server.url, slug)).count(both["uri"]) == 1

        key = {"Authorization": f"Bearer {chat['moderator_key']}"}
        async with httpx.AsyncClient(base_url=server.url, headers=key) as http:
            r = await http.put(
                f"/api/chats/{slug}/hashtags", json={"hashtags": [TAG, "Second", "Third"]}
            )
            assert r.status_code == 200, r.text
        await live.until(lambda f: f["type"] == "hashtags")

        async def resubscribed() -> bool:
            return any("third" in s.tags for s in peer._streams)

        await eventually(resubscribed, "the restarted follower's stream on #Third")
        third = peer.publish("dan", "A2 third", tags=["Third"])
        await live.until(lambda f: f["type"] == "post" and f["post"]["remote_id"] == third["uri"])
        uris = post_uris(await events(server.url, slug))
        assert len(uris) == len(set(uris)), "a status was stored or announced twice"
        await live.close()
