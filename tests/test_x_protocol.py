"""X API v2 protocol code against the loopback X server: search, stream, budget, posting."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from app.networks import x
from app.networks.base import AuthError, Batch, Delete, Upsert
from app.networks.x_text import weighted_length
from tests.peers.x import XPeer

pytestmark = pytest.mark.timeout(30)

TAG = "TheChat"


class Ctx:
    """A FollowContext that records what the follower said."""

    def __init__(self) -> None:
        self.states: list[tuple[str, str | None]] = []
        self.notices: list[str] = []
        self.details: list[dict[str, Any]] = []

    def report(self, state: str, error: str | None = None) -> None:
        self.states.append((state, error))

    def notice(self, message: str) -> None:
        self.notices.append(message)

    def detail(self, info: dict[str, Any]) -> None:
        self.details.append(info)


async def take(it: AsyncIterator[Batch], want: int, timeout: float = 10.0) -> list[Any]:
    """Changes from ``it`` until ``want`` have arrived; fails at the deadline."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < want:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"only {len(got)} of {want} changes within {timeout}s")
        batch = await asyncio.wait_for(anext(it), left)
        got.extend(batch.changes)
    return got


def follower(api: x.XApi, **kw: Any) -> x.XFollower:
    budget = x.ReadBudget(
        per_hour=kw.pop("per_hour", 1000),
        per_session=kw.pop("per_session", 5000),
        cost_per_read=0.005,
    )
    return x.XFollower(
        api,
        kw.pop("tags", TAG),
        budget,
        session=lambda: "s1",
        rule_tag=x.rule_tag("chat-1"),
        poll_interval=kw.pop("poll_interval", 0.2),
        keepalive_timeout=kw.pop("keepalive_timeout", 1.0),
        backoff_base=0.05,
        backoff_cap=0.2,
        **kw,
    )


async def test_recent_search_pages_since_id_and_maps_posts_fully():
    """Backfill pages through next_token oldest-first; the cursor's since_id is the newest
    string id; authors, display URLs, note_tweet text, media alt, replies and quotes map."""
    async with XPeer() as peer, httpx.AsyncClient() as http:
        q = peer.publish("host", f"Q1 what helps? #{TAG} @carol")
        for i in range(12):
            peer.publish("bob", f"A1 answer {i} #{TAG} https://t.co/abc{i}")
        peer.publish("bob", "no tag here")
        long = "A1 " + "long words " * 40 + f"#{TAG}"
        note = peer.publish("dan", long[:270], note=long)
        pic = peer.publish(
            "erin",
            f"A1 a picture #{TAG}",
            media=[{"url": "https://pbs.example/p.jpg", "alt_text": "a whiteboard"}],
        )
        reply = peer.publish("carol", f"A1 yes #{TAG}", reply_to=q["id"])
        quote = peer.publish("frank", f"Quoting this #{TAG}", quote=q["id"])

        f = follower(x.XApi(http, peer.url, peer.app_bearer), stream=False, backfill=100)
        it = f.follow(None, Ctx())
        batch = await anext(it)
        posts = {c.post.remote_id: c.post for c in batch.changes}
        assert len(posts) == 17
        ids = [c.post.remote_id for c in batch.changes]
        assert ids == sorted(ids, key=int), "backfill must be oldest first"
        assert x.Cursor.load(batch.cursor).since_id == quote["id"]
        assert len(peer.requests_to("/2/tweets/search/recent")) == 1  # one page of 100

        first = posts[q["id"]]
        assert first.author.handle == "@host" and first.author.profile_url == "https://x.com/host"
        assert first.url == f"https://x.com/host/status/{q['id']}"
        assert 'href="https://x.com/carol"' in (first.html or "")
        linked = next(p for p in posts.values() if "answer 0" in p.text)
        assert ">example.org/a/very/long/…</a>" in (linked.html or "")
        assert "https://example.org/a/very/long/path?ref=x" in linked.text
        assert posts[note["id"]].text.startswith(long[:-10].strip()[:200])
        assert len(posts[note["id"]].text) > 280
        assert posts[pic["id"]].media[0].alt == "a whiteboard"
        assert "pic.x.com" not in (posts[pic["id"]].html or "")
        assert posts[reply["id"]].in_reply_to == q["id"]
        assert posts[reply["id"]].reply_to_handle == "@host"
        assert posts[reply["id"]].thread_root == q["id"]
        assert posts[quote["id"]].quote and posts[quote["id"]].quote["author"] == "Host"
        assert "Q1 what helps?" in posts[quote["id"]].quote["text"]
        await it.aclose()

        # Paging: small pages follow next_token; since_id asks only for newer posts.
        api = x.XApi(http, peer.url, peer.app_bearer)
        page = await api.search_recent(f"#{TAG} -is:retweet", max_results=10)
        assert page.next_token and page.result_count == 10
        rest = await api.search_recent(f"#{TAG} -is:retweet", next_token=page.next_token)
        assert rest.result_count == 7 and rest.next_token is None
        assert api.rate("search").limit == 450 and api.rate("search").remaining is not None
        newer = await api.search_recent(f"#{TAG}", since_id=quote["id"])
        assert newer.posts == [] and newer.newest_id is None


async def test_polling_waits_out_429_and_resumes_from_since_id():
    """A 429 with x-rate-limit-reset is waited out; polling resumes after the cursor and
    never returns a post twice."""
    async with XPeer() as peer, httpx.AsyncClient() as http:
        old = peer.publish("bob", f"Q1 #{TAG}")
        api = x.XApi(http, peer.url, peer.app_bearer)
        cursor = x.Cursor(since_id=old["id"]).dump(x.ReadBudget(10, 10, 0.005))
        f = follower(api, stream=False)
        it = f.follow(cursor, Ctx())
        new = peer.publish("carol", f"A1 #{TAG}")
        peer.rate_limit_next = 1
        got = await take(it, 1)
        assert [c.post.remote_id for c in got] == [new["id"]]
        assert any(
            r.query.get("since_id") == old["id"]
            for r in peer.requests_to("/2/tweets/search/recent")
        )
        with pytest.raises(x.NetworkError) as err:  # the raw call reports the wait
            peer.rate_limit_next = 1
            await api.search_recent(f"#{TAG}")
        assert err.value.status == 429 and err.value.retry_after is not None
        await it.aclose()


async def test_stream_rule_keepalive_reconnect_gap_fill_and_rule_cleanup():
    """The follower adds one tagged rule, streams posts, treats missing keep-alives as a dead
    connection, reconnects with a gap fill from search, and removes its rule when stopped."""
    async with XPeer(keepalive=0.1) as peer, httpx.AsyncClient() as http:
        peer.publish("bob", f"Q1 #{TAG}")
        ctx = Ctx()
        f = follower(x.XApi(http, peer.url, peer.app_bearer), keepalive_timeout=0.8)
        it = f.follow(None, ctx)
        await take(it, 1)  # backfill
        live = asyncio.ensure_future(take(it, 1))
        deadline = time.monotonic() + 5
        while peer.stream_count == 0:
            assert time.monotonic() < deadline, "no stream opened"
            await asyncio.sleep(0.02)
        assert [(r.value, r.tag) for r in peer.rules.values()] == [
            (f"#{TAG} -is:retweet", "hashroom:chat-1")
        ]
        other = peer.publish("zed", "#OtherTag")  # matches no rule of ours
        post = peer.publish("carol", f"A1 live #{TAG}")
        got = await live
        assert [c.post.remote_id for c in got] == [post["id"]] and other["id"] != post["id"]

        peer.stall = True  # no keep-alives: the follower must notice and reconnect
        nxt = asyncio.ensure_future(take(it, 1, timeout=8))
        await asyncio.sleep(0.05)
        missed = peer.publish("dan", f"A2 during the stall #{TAG}")
        deadline = time.monotonic() + 5
        while not any(s == "reconnecting" for s, _ in ctx.states):
            assert time.monotonic() < deadline, f"the dead stream went unnoticed: {ctx.states}"
            await asyncio.sleep(0.02)
        peer.stall = False
        got = await nxt
        assert [c.post.remote_id for c in got] == [missed["id"]]
        await it.aclose()
        assert peer.rules == {}, "the chat's rule must be removed when it stops following"


async def test_stream_silence_is_a_dead_connection():
    """A stream that stops sending keep-alive lines is abandoned within the timeout."""
    async with XPeer(keepalive=0.1) as peer, httpx.AsyncClient() as http:
        api = x.XApi(http, peer.url, peer.app_bearer)
        stream = api.stream(keepalive_timeout=0.5)
        assert await anext(stream) is x.CONNECTED
        assert await anext(stream) is x.KEEPALIVE
        peer.stall = True
        started = time.monotonic()
        with pytest.raises(x.NetworkError, match="keep-alive"):
            await anext(stream)
        assert time.monotonic() - started < 3


async def test_stream_not_allowed_falls_back_to_polling():
    """Credentials without stream access poll recent search instead, and say so."""
    async with XPeer(stream_allowed=False) as peer, httpx.AsyncClient() as http:
        ctx = Ctx()
        f = follower(x.XApi(http, peer.url, peer.app_bearer))
        it = f.follow(None, ctx)
        post = peer.publish("carol", f"A1 #{TAG}")
        got = await take(it, 1)
        assert [c.post.remote_id for c in got] == [post["id"]]
        nxt = peer.publish("carol", f"A2 #{TAG}")
        got = await take(it, 1)
        assert [c.post.remote_id for c in got if isinstance(c, Upsert)] == [nxt["id"]]
        assert any(s == "polling" and e and "stream" in e for s, e in ctx.states)
        await it.aclose()


async def test_budget_pauses_with_a_notice_resumes_next_hour_and_survives_restarts():
    """When the hourly budget is spent the follower tells the room and stops reading until
    the clock reaches the next hour, then catches up; the cursor carries the counts, so a
    restart within the hour stays paused."""
    async with XPeer() as peer, httpx.AsyncClient() as http:
        for i in range(13):
            peer.publish("bob", f"A{i} #{TAG}")
        ctx = Ctx()
        seen: list[dict[str, Any]] = []
        hour = [datetime(2026, 12, 5, 16, 30, tzinfo=UTC)]
        f = follower(
            x.XApi(http, peer.url, peer.app_bearer),
            per_hour=10,
            stream=False,
            on_budget=lambda b: seen.append(b.as_json()),
            clock=lambda: hour[0],
            pause_check=0.05,
        )
        it = f.follow(None, ctx)
        batch = await anext(it)
        assert len(batch.changes) == 10  # the latest 10: one page, the budget
        cur = x.Cursor.load(batch.cursor)
        assert cur.hour_reads == 10 and cur.session_reads == 10 and cur.hour == "2026-12-05T16"
        pending = asyncio.ensure_future(take(it, 3))
        deadline = time.monotonic() + 5
        while not ctx.notices:
            assert time.monotonic() < deadline, "no budget notice"
            await asyncio.sleep(0.02)
        assert "paused" in ctx.notices[0] and "10 posts per hour" in ctx.notices[0]
        assert ctx.states[-1][0] == "paused: hour budget spent"
        assert seen[-1]["estimated_cost_hour"] == 0.05
        searches = len(peer.requests_to("/2/tweets/search/recent"))
        assert not pending.done()
        later = [peer.publish("bob", f"B{i} #{TAG}") for i in range(3)]

        hour[0] = datetime(2026, 12, 5, 17, 0, tzinfo=UTC)  # a new hour gives budget back
        got = await pending
        assert [c.post.remote_id for c in got] == [t["id"] for t in later]
        assert len(peer.requests_to("/2/tweets/search/recent")) > searches
        assert seen[-1]["hour_reads"] == 3 and seen[-1]["session_reads"] == 13
        await it.aclose()

        again = follower(
            x.XApi(http, peer.url, peer.app_bearer),
            per_hour=10,
            stream=False,
            clock=lambda: datetime(2026, 12, 5, 16, 45, tzinfo=UTC),
        )
        ctx2 = Ctx()
        it2 = again.follow(batch.cursor, ctx2)
        pending = asyncio.ensure_future(anext(it2))
        deadline = time.monotonic() + 5
        while not ctx2.notices:
            assert time.monotonic() < deadline, "a restart must keep the spent budget"
            await asyncio.sleep(0.02)
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
        await it2.aclose()


async def test_compliance_check_deletes_posts_x_no_longer_has():
    """Posts deleted on X vanish: the periodic lookup turns their absence into deletes, and
    re-reading posts already read today costs no budget."""
    async with XPeer() as peer, httpx.AsyncClient() as http:
        keep = peer.publish("bob", f"Q1 #{TAG}")
        gone = peer.publish("bob", f"A1 #{TAG}")
        f = follower(x.XApi(http, peer.url, peer.app_bearer), stream=False, compliance_interval=0.1)
        it = f.follow(None, Ctx())
        await take(it, 2)
        peer.delete(gone["id"])
        deadline = time.monotonic() + 5
        deletes: list[Delete] = []
        while not deletes:
            assert time.monotonic() < deadline, "deleted post never reported"
            batch = await asyncio.wait_for(anext(it), 5)
            deletes = [c for c in batch.changes if isinstance(c, Delete)]
        assert [d.remote_id for d in deletes] == [gone["id"]] and keep["id"] != gone["id"]
        assert len(peer.requests_to("/2/tweets")) >= 1
        # Looking a post up again the same UTC day is free on X, and free in the budget.
        assert f.budget.hour_reads == 2
        await it.aclose()


async def test_oauth_pkce_refresh_post_reply_restriction_and_revoke():
    """Code + PKCE yields a 2-hour token and a refresh token; refresh rotates it; posting
    works, a reply to an author who did not mention us is refused as ReplyRestricted, a
    quote is allowed; revoked tokens are refused."""
    async with XPeer() as peer, httpx.AsyncClient() as http:
        verifier, challenge = x.new_pkce()
        url = x.authorize_url(
            f"{peer.url}/i/oauth2/authorize",
            peer.client_id,
            "http://127.0.0.1/cb",
            state="s",
            code_challenge=challenge,
        )
        assert "scope=tweet.read+tweet.write+users.read+offline.access" in url
        page = await http.get(url)
        assert "Authorize app" in page.text
        form = dict(httpx.URL(url).params)
        r = await http.post(f"{peer.url}/i/oauth2/authorize", data=form)
        code = httpx.URL(r.headers["location"]).params["code"]
        api = x.XApi(http, peer.url)
        with pytest.raises(AuthError):
            await api.exchange_code(
                peer.client_id,
                peer.client_secret,
                code,
                "http://127.0.0.1/cb",
                "wrong-verifier" * 4,
            )
        r = await http.post(f"{peer.url}/i/oauth2/authorize", data=form)
        code = httpx.URL(r.headers["location"]).params["code"]
        tokens = await api.exchange_code(
            peer.client_id, peer.client_secret, code, "http://127.0.0.1/cb", verifier
        )
        assert tokens.refresh_token and 7000 < tokens.expires_at - time.time() <= 7200
        renewed = await api.refresh(peer.client_id, peer.client_secret, tokens.refresh_token)
        assert renewed.refresh_token != tokens.refresh_token
        with pytest.raises(AuthError):  # refresh tokens rotate: the old one is spent
            await api.refresh(peer.client_id, peer.client_secret, tokens.refresh_token)

        user = x.XApi(http, peer.url, renewed.access_token)
        me = await user.me()
        assert me.handle == "@alice"
        new_id = await user.post_tweet(f"Hello #{TAG}")
        assert peer.tweets[new_id]["text"] == f"Hello #{TAG}"
        stranger = peer.publish("bob", f"Q1 #{TAG}")
        with pytest.raises(x.ReplyRestricted):
            await user.post_tweet("A1 me", in_reply_to=stranger["id"])
        asked = peer.publish("bob", f"Q2 @alice? #{TAG}")
        ok = await user.post_tweet("A2 yes", in_reply_to=asked["id"])
        assert peer.tweets[ok]["referenced_tweets"] == [{"type": "replied_to", "id": asked["id"]}]
        quoted = await user.post_tweet(f"A1 me #{TAG}", quote_id=stranger["id"])
        assert peer.tweets[quoted]["referenced_tweets"] == [
            {"type": "quoted", "id": stranger["id"]}
        ]
        await x.XApi(http, peer.url).revoke(
            peer.client_id, peer.client_secret, renewed.access_token
        )
        with pytest.raises(AuthError):
            await user.me()


def test_weighted_length_follows_twitter_text():
    """URLs weigh 23, CJK and emoji 2, Latin 1 (the library's rules, not hand-written)."""
    assert weighted_length("a" * 280) == 280
    assert weighted_length("日本語") == 6
    assert weighted_length("👍🏽") == 2
    assert weighted_length("see https://example.org/" + "x" * 80) == 4 + 23
    assert x.length_rule().limit == 280


def test_hostile_text_is_escaped_and_bad_entities_are_ignored():
    """Post text is escaped; entities out of range or overlapping never break the markup."""
    text = "<script>alert(1)</script> #tag"
    html = x.render_html(
        text,
        {
            "hashtags": [
                {"start": 26, "end": 30, "tag": "tag"},
                {"start": 2, "end": 999, "tag": "x"},
            ],
            "urls": [{"start": 0, "end": 5, "expanded_url": "javascript:alert(1)"}],
        },
    )
    assert "<script>" not in html and "&lt;script&gt;" in html and "javascript" not in html
    assert '<span class="hashtag">#<span>tag</span></span>' in html


def test_weighted_length_works_without_setuptools():
    """Without pkg_resources (no setuptools) the library still loads through the shim."""
    code = (
        "import sys; sys.modules['pkg_resources'] = None\n"
        "from app.networks.x_text import weighted_length\n"
        "print(weighted_length('日本 https://example.org/' + 'x' * 60))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "28"


async def test_a_second_follower_on_the_same_app_polls_and_keeps_no_rule():
    """X allows one stream per app: a second chat with the same app polls instead, removes
    its rule (so the first connection is not billed for it) and still gets its posts."""
    async with XPeer(keepalive=0.1) as peer, httpx.AsyncClient() as http:
        first = follower(x.XApi(http, peer.url, peer.app_bearer))
        it1 = first.follow(None, Ctx())

        async def drain() -> None:
            async for _ in it1:
                pass

        pending = asyncio.ensure_future(drain())
        deadline = time.monotonic() + 5
        while peer.stream_count == 0:
            assert time.monotonic() < deadline, "no stream opened"
            await asyncio.sleep(0.02)
        budget = x.ReadBudget(per_hour=100, per_session=100, cost_per_read=0.005)
        ctx = Ctx()
        second = x.XFollower(
            x.XApi(http, peer.url, peer.app_bearer),
            "Other",
            budget,
            session=lambda: "s1",
            rule_tag=x.rule_tag("chat-2"),
            poll_interval=0.2,
            backoff_base=0.05,
            backoff_cap=0.2,
        )
        peer.publish("bob", "Q1 #Other")
        it2 = second.follow(None, ctx)
        await take(it2, 1)  # the backfill
        post = peer.publish("bob", "A1 #Other")
        got = await take(it2, 1)
        assert [c.post.remote_id for c in got] == [post["id"]]
        assert any(s == "polling" and e and "in use" in e for s, e in ctx.states), ctx.states
        assert [r.tag for r in peer.rules.values()] == ["hashroom:chat-1"]
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
        await it2.aclose()


def test_weighted_length_is_linear_on_hostile_text():
    """Texts that make twitter-text's URL pattern backtrack (long dotted runs) are counted
    in time linear in their size, and ordinary posts count exactly as the library does."""
    from twitter_text import parse_tweet

    for text in (
        "hello 日本 https://example.com/a.b.c?x=1 😀👍🏽 #tag @bob",
        "see www.example.org/path and example.com.",
        "line\n\nbreak  two   spaces http://t.co/abc 👨‍👩‍👧",
    ):
        assert weighted_length(text) == parse_tweet(text).weightedLength
    small, big = "a." * 500, "a." * 2500
    started = time.perf_counter()
    weighted_length(small)
    t_small = time.perf_counter() - started
    started = time.perf_counter()
    weighted_length(big)
    t_big = time.perf_counter() - started
    # Five times the text may take about five times as long, not 125 times (cubic).
    assert t_big < max(12 * t_small, 0.05), (t_small, t_big)
    assert t_big < 2.0


async def test_several_tags_are_one_or_query_and_a_post_with_both_arrives_once():
    """Two tags search and stream as `(#A OR #B) -is:retweet`: posts with either tag arrive,
    a post carrying both arrives once, other tags stay out."""
    async with XPeer(keepalive=0.1) as peer, httpx.AsyncClient() as http:
        old_a = peer.publish("bob", f"Q1 #{TAG}")
        old_b = peer.publish("bob", "A1 #Second")
        peer.publish("bob", "A1 #Elsewhere")
        f = follower(x.XApi(http, peer.url, peer.app_bearer), tags=[TAG, "Second"])
        query = f"(#{TAG} OR #Second) -is:retweet"
        assert f.query == query == x.build_query([TAG, "Second"])
        assert x.build_query(TAG) == f"#{TAG} -is:retweet"
        it = f.follow(None, Ctx())
        got = await take(it, 2)
        assert sorted(c.post.remote_id for c in got) == sorted([old_a["id"], old_b["id"]])
        search = peer.requests_to("/2/tweets/search/recent")[0]
        assert search.query["query"] == query
        live = asyncio.ensure_future(take(it, 2))
        deadline = time.monotonic() + 5
        while peer.stream_count == 0:
            assert time.monotonic() < deadline, "no stream opened"
            await asyncio.sleep(0.02)
        assert [r.value for r in peer.rules.values()] == [query]
        both = peer.publish("carol", f"A2 #Second #{TAG}")
        only_b = peer.publish("carol", "A3 #second")
        got = await live
        assert [c.post.remote_id for c in got] == [both["id"], only_b["id"]]
        await it.aclose()
