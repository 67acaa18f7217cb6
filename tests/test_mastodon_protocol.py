"""The Mastodon module against a loopback Mastodon: parsing, REST, streaming, OAuth, faults."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.networks.base import (
    AuthError,
    Batch,
    Delete,
    NetworkError,
    RemotePost,
    RemoteRejected,
    Upsert,
)
from app.networks.mastodon import (
    InstanceInfo,
    MastodonApi,
    MastodonFollower,
    length,
    length_rule,
    new_pkce,
    parse_reset,
    parse_status,
    reply_text,
    retry_after,
    throttle_delay,
)
from tests.factories import DEV_WS_CONNECT
from tests.peers.mastodon import MastodonPeer

TAG = "TheChat"


# --- helpers -----------------------------------------------------------------------------


class Ctx:
    """A FollowContext that remembers what it was told."""

    def __init__(self) -> None:
        self.reports: list[tuple[str, str | None]] = []
        self.notices: list[str] = []

    def report(self, state: str, error: str | None = None) -> None:
        self.reports.append((state, error))

    def notice(self, message: str) -> None:
        self.notices.append(message)

    @property
    def states(self) -> list[str]:
        return [state for state, _ in self.reports]

    @property
    def errors(self) -> list[str]:
        return [error for _, error in self.reports if error]


class Run:
    """A follower running in a task, its batches collected."""

    def __init__(self, follower: MastodonFollower, cursor: str | None) -> None:
        self.ctx = Ctx()
        self.batches: list[Batch] = []
        self.task = asyncio.create_task(self._consume(follower, cursor))

    async def _consume(self, follower: MastodonFollower, cursor: str | None) -> None:
        async for batch in follower.follow(cursor, self.ctx):
            self.batches.append(batch)

    @property
    def posts(self) -> list[RemotePost]:
        return [c.post for b in self.batches for c in b.changes if isinstance(c, Upsert)]

    @property
    def uris(self) -> list[str]:
        return [p.remote_id for p in self.posts]

    @property
    def cursor(self) -> str | None:
        cursors = [b.cursor for b in self.batches if b.cursor is not None]
        return cursors[-1] if cursors else None

    async def until(self, predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.task.done():
                self.task.result()
                raise AssertionError(f"follower ended while waiting for {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; reports={self.ctx.reports}")
            await asyncio.sleep(0.01)


@asynccontextmanager
async def running(follower: MastodonFollower, cursor: str | None = None) -> AsyncIterator[Run]:
    run = Run(follower, cursor)
    try:
        yield run
    finally:
        run.task.cancel()
        with suppress(asyncio.CancelledError):
            await run.task


def follower_for(
    peer: MastodonPeer, client: httpx.AsyncClient, token: str | None = None, **options: Any
) -> MastodonFollower:
    settings: dict[str, Any] = {
        "backfill": 20,
        "poll_interval": 0.05,
        "backoff_cap": 0.2,
        "backoff_base": 0.05,
        "stream_retry": 0.5,
        "open_timeout": 2.0,
        "connect": DEV_WS_CONNECT,
        **options,
    }
    return MastodonFollower(MastodonApi(client, peer.url, token), TAG, **settings)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=2.0) as http:
        yield http


@pytest.fixture
async def peer() -> AsyncIterator[MastodonPeer]:
    async with MastodonPeer(domain="a.example") as server:
        yield server


def status_payload(**overrides: Any) -> dict[str, Any]:
    """A Status as mastodon.social serves it (trimmed of fields we ignore)."""
    data: dict[str, Any] = {
        "id": "113568237812345678",
        "created_at": "2024-11-28T16:03:11.123Z",
        "in_reply_to_id": "113568230000000001",
        "in_reply_to_account_id": "109302",
        "sensitive": True,
        "spoiler_text": "Spoilers for Q3",
        "visibility": "public",
        "language": "en",
        "uri": "https://a.example/users/alice/statuses/113568237812345678",
        "url": "https://a.example/@alice/113568237812345678",
        "edited_at": "2024-11-28T16:05:00.000Z",
        "content": (
            '<p><span class="h-card" translate="no"><a href="https://b.example/@bob" '
            'class="u-url mention">@<span>bob</span></a></span> A3 yes '
            '<a href="https://a.example/tags/thechat" class="mention hashtag" rel="tag">'
            "#<span>TheChat</span></a><script>alert(1)</script></p>"
        ),
        "reblog": None,
        "account": {
            "id": "1",
            "username": "alice",
            "acct": "alice",
            "display_name": "Alice A.",
            "url": "https://a.example/@alice",
            "uri": "https://a.example/users/alice",
            "avatar": "https://a.example/avatars/alice.png",
        },
        "media_attachments": [
            {
                "id": "22",
                "type": "image",
                "url": "https://a.example/media/1.png",
                "preview_url": "https://a.example/media/1s.png",
                "remote_url": None,
                "description": "A chart of answers",
            },
            {"id": "23", "type": "gifv", "url": None, "remote_url": "https://c.example/2.mp4"},
        ],
        "mentions": [
            {"id": "5", "username": "carol", "acct": "carol", "url": "https://a.example/@carol"},
            {
                "id": "109302",
                "username": "bob",
                "acct": "bob@b.example",
                "url": "https://b.example/@bob",
            },
        ],
        "tags": [{"name": "TheChat", "url": "https://a.example/tags/thechat"}],
        "emojis": [],
        "card": None,
        "poll": None,
    }
    data.update(overrides)
    return data


# --- parsing -----------------------------------------------------------------------------


def test_parse_status_maps_every_field() -> None:
    """A full Status maps to RemotePost: ids, author handle with domain, CW, media, reply."""
    post = parse_status(status_payload(), "a.example")
    assert post.network == "mastodon"
    assert post.remote_id == "https://a.example/users/alice/statuses/113568237812345678"
    assert post.local_id == "113568237812345678"
    assert post.url == "https://a.example/@alice/113568237812345678"
    assert post.author.name == "Alice A."
    assert post.author.handle == "@alice@a.example"
    assert post.author.avatar_url == "https://a.example/avatars/alice.png"
    assert post.author.profile_url == "https://a.example/@alice"
    assert post.author.remote_id == "https://a.example/users/alice"
    assert "<script>" in (post.html or "")  # passed through: the room sanitizes
    assert post.spoiler_text == "Spoilers for Q3"
    assert post.sensitive is True
    assert post.language == "en"
    assert post.created_at == datetime(2024, 11, 28, 16, 3, 11, 123000, tzinfo=UTC)
    assert post.edited_at == datetime(2024, 11, 28, 16, 5, tzinfo=UTC)
    assert [(m.url, m.preview_url, m.alt, m.kind) for m in post.media] == [
        (
            "https://a.example/media/1.png",
            "https://a.example/media/1s.png",
            "A chart of answers",
            "image",
        ),
        ("https://c.example/2.mp4", None, None, "gifv"),
    ]
    assert post.in_reply_to is None
    assert post.extra["in_reply_to_local_id"] == "113568230000000001"
    assert post.reply_to_handle == "@bob@b.example"
    assert post.extra["tags"] == ["thechat"]
    assert post.reposted_by is None


def test_parse_boost_is_the_boosted_post() -> None:
    """A reblog maps to the inner status (its uri) with reposted_by set to the booster."""
    inner = status_payload(in_reply_to_id=None, in_reply_to_account_id=None)
    boost = {
        "id": "113568299999999999",
        "uri": "https://b.example/users/bob/statuses/113568299999999999/activity",
        "url": None,
        "content": "",
        "account": {"id": "7", "username": "bob", "acct": "bob@b.example", "display_name": ""},
        "reblog": inner,
        "tags": [],
    }
    post = parse_status(boost, "a.example")
    assert post.remote_id == inner["uri"]
    assert post.local_id == inner["id"]
    assert post.author.handle == "@alice@a.example"
    assert post.reposted_by is not None
    assert post.reposted_by.handle == "@bob@b.example"
    assert post.reposted_by.name == "bob"  # empty display_name falls back to username
    assert post.extra["boost_local_id"] == "113568299999999999"


def test_parse_remote_author_keeps_their_domain() -> None:
    """A remote author's acct already has a domain; the delivering instance's is not added."""
    data = status_payload(
        account={
            "id": "9",
            "username": "dan",
            "acct": "dan@d.example",
            "url": "https://d.example/@dan",
        }
    )
    post = parse_status(data, "https://a.example")
    assert post.author.handle == "@dan@d.example"
    assert post.author.remote_id == "https://d.example/@dan"


def test_parse_tolerates_missing_and_null_fields() -> None:
    """Statuses from other server software with nulls and gaps still parse; no id fails."""
    sparse = {
        "id": 42,
        "uri": "https://p.example/objects/9b2",
        "created_at": None,
        "content": None,
        "account": None,
        "tags": None,
        "media_attachments": [None, {"type": "image"}],
        "mentions": None,
        "sensitive": None,
        "spoiler_text": None,
        "in_reply_to_id": "abc",
        "in_reply_to_account_id": None,
    }
    post = parse_status(sparse, "p.example")
    assert post.remote_id == "https://p.example/objects/9b2"
    assert post.local_id == "42"
    assert post.html == ""
    assert post.author.handle == "@unknown@p.example"
    assert post.media == []
    assert post.extra["tags"] == []
    assert post.sensitive is False and post.spoiler_text == ""
    assert post.extra["in_reply_to_local_id"] == "abc" and post.reply_to_handle is None
    assert post.created_at.tzinfo is not None
    with pytest.raises(ValueError):
        parse_status({"content": "<p>no ids</p>"}, "p.example")


def test_parse_reset_accepts_iso_and_epoch() -> None:
    """X-RateLimit-Reset parses as ISO-8601 (Mastodon), epoch seconds, or a small delay."""
    assert parse_reset("2024-05-01T12:05:00.019685Z") == pytest.approx(
        datetime(2024, 5, 1, 12, 5, 0, 19685, tzinfo=UTC).timestamp()
    )
    assert parse_reset("1714565100") == 1714565100.0
    assert parse_reset("30", now=1000.0) == 1030.0
    assert parse_reset("soon") is None
    assert parse_reset("") is None
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC).timestamp()
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "2024-05-01T12:00:30Z"}
    assert retry_after(headers, now=now) == pytest.approx(30.0)
    assert throttle_delay(headers, now=now) == pytest.approx(30.0)
    assert throttle_delay({**headers, "x-ratelimit-remaining": "12"}, now=now) == 0.0
    assert retry_after({"retry-after": "7"}, now=now) == 7.0
    assert retry_after({}, now=now) is None


def test_length_and_reply_text() -> None:
    """Length weighs URLs by the instance's url_weight; replies get '@acct ' once."""
    info = InstanceInfo(
        domain="a.example", title="A", streaming_url="wss://a.example", url_weight=23
    )
    text = "A1 see https://example.org/a/very/long/path/indeed #TheChat"
    assert length(text, info) == len("A1 see ") + 23 + len(" #TheChat")
    rule = length_rule(InstanceInfo("a.example", "A", "wss://a.example", max_characters=1000))
    assert rule.limit == 1000 and rule.count("héllo") == 5
    assert reply_text("A1 yes", "bob@b.example") == "@bob@b.example A1 yes"
    assert reply_text("A1 yes", "@bob") == "@bob A1 yes"
    assert reply_text("@Bob@B.example A1 yes", "bob@b.example") == "@Bob@B.example A1 yes"
    assert reply_text("@bobby A1", "bob") == "@bob @bobby A1"
    assert reply_text("A1", None) == "A1"


# --- REST --------------------------------------------------------------------------------


async def test_instance_info_v2_and_v1_fallback(client: httpx.AsyncClient) -> None:
    """Instance info comes from /api/v2/instance, or /api/v1/instance on older servers."""
    async with MastodonPeer(domain="a.example", max_characters=1500, url_weight=30) as peer:
        info = await MastodonApi(client, peer.url).instance_info()
        assert info.domain == "a.example"
        assert info.streaming_url == peer.ws_url
        assert (info.max_characters, info.url_weight) == (1500, 30)
    async with MastodonPeer(domain="old.example", instance_v2=False) as old:
        info = await MastodonApi(client, old.url).instance_info()
        assert info.domain == "old.example"
        assert info.streaming_url == old.ws_url
        assert info.max_characters == 500
        assert [r.path for r in old.requests] == ["/api/v2/instance", "/api/v1/instance"]


async def test_tag_page_paging_and_unknown_tag(
    peer: MastodonPeer, client: httpx.AsyncClient
) -> None:
    """Tag pages are newest first with string ids; max_id/min_id page; unknown tag is empty."""
    ids = [peer.publish("bob", f"A{i}", tags=[TAG])["id"] for i in range(5)]
    peer.publish("bob", "other", tags=["elsewhere"])
    peer.publish("bob", "quiet", tags=[TAG], visibility="unlisted")
    api = MastodonApi(client, peer.url)
    page = await api.tag_page(TAG, limit=3)
    assert [s["id"] for s in page] == ids[:1:-1]
    assert all(isinstance(s["id"], str) for s in page)
    older = await api.tag_page(TAG, max_id=page[-1]["id"], limit=3)
    assert [s["id"] for s in older] == [ids[1], ids[0]]
    newer = await api.tag_page(TAG.lower(), min_id=ids[0], limit=2)
    assert [s["id"] for s in newer] == [ids[2], ids[1]]  # immediately newer, newest first
    assert await api.tag_page(TAG, min_id=ids[-1]) == []
    assert await api.tag_page("neverused") == []
    assert peer.requests[-1].status == 404
    empty = await client.get(f"{peer.url}/api/v1/timelines/tag/{TAG}", params={"min_id": ids[-1]})
    full = await client.get(f"{peer.url}/api/v1/timelines/tag/{TAG}")
    assert "link" not in empty.headers
    assert 'rel="next"' in full.headers["link"] and 'rel="prev"' in full.headers["link"]


async def test_errors_map_to_network_exceptions(
    peer: MastodonPeer, client: httpx.AsyncClient
) -> None:
    """401/422/429/5xx/malformed/timeout/refused map to AuthError/RemoteRejected/NetworkError,
    with messages naming the status, never the instance's own wording."""
    token = peer.create_user_token("alice")
    with pytest.raises(AuthError, match="answered HTTP 401$"):
        await MastodonApi(client, peer.url, "bogus").tag_page(TAG)
    app_token = peer.create_app_token()
    with pytest.raises(AuthError, match="answered HTTP 422$"):
        await MastodonApi(client, peer.url, app_token).post_status("hi")
    api = MastodonApi(client, peer.url, token)
    with pytest.raises(RemoteRejected, match=r"refused it \(HTTP 422\)$") as rejected:
        await api.post_status("x" * 501)
    assert rejected.value.status == 422 and "character limit" not in str(rejected.value)
    peer.faults.rate_limit(0, 2.0)
    with pytest.raises(NetworkError) as limited:
        await api.instance_info()
    assert limited.value.status == 429
    assert limited.value.retry_after is not None and 1.0 < limited.value.retry_after <= 2.0
    peer.faults.rate_limit(300, 0)
    peer.faults.server_error(1, status=503)
    with pytest.raises(NetworkError, match="503") as failed:
        await api.instance_info()
    assert failed.value.status == 503 and not isinstance(failed.value, AuthError | RemoteRejected)
    peer.faults.malformed_json(1)
    with pytest.raises(NetworkError, match="not JSON"):
        await api.tag_page(TAG)
    peer.faults.slow(0.5)
    async with httpx.AsyncClient(timeout=0.2) as impatient:
        with pytest.raises(NetworkError, match="timed out"):
            await MastodonApi(impatient, peer.url).instance_info()
    peer.faults.slow(0)
    with pytest.raises(NetworkError, match="failed"):
        await MastodonApi(client, "http://127.0.0.1:9").instance_info()


async def test_post_status_is_idempotent(peer: MastodonPeer, client: httpx.AsyncClient) -> None:
    """Posting twice with one Idempotency-Key makes one status and returns it both times."""
    api = MastodonApi(client, peer.url, peer.create_user_token("alice"))
    await api.instance_info()
    first = await api.post_status("A1 yes #TheChat", idempotency_key="k-1", language="en")
    again = await api.post_status("A1 yes #TheChat", idempotency_key="k-1", language="en")
    assert first.post.local_id == again.post.local_id
    assert first.post.remote_id == again.post.remote_id
    assert first.post.author.handle == "@alice@a.example"
    assert first.post.extra["tags"] == ["thechat"]
    assert 'class="mention hashtag"' in (first.post.html or "")
    assert len(peer.statuses()) == 1
    posts = peer.requests_to("/api/v1/statuses")
    assert [r.headers.get("idempotency-key") for r in posts] == ["k-1", "k-1"]
    assert posts[0].form()["status"] == "A1 yes #TheChat"
    other = await api.post_status("A2 #TheChat", idempotency_key="k-2", spoiler_text="cw")
    assert other.post.local_id != first.post.local_id and other.post.spoiler_text == "cw"


async def test_boost_fetched_from_the_server_is_the_original(
    peer: MastodonPeer, client: httpx.AsyncClient
) -> None:
    """A boost read over the API maps to the boosted post; boosts stay out of tag pages."""
    original = peer.publish("host", "Q1 hello", tags=[TAG])
    boost = peer.boost(original["id"], by="fan")
    api = MastodonApi(client, peer.url)
    post = await api.get_status(boost["id"])
    assert post.remote_id == original["uri"] and post.local_id == original["id"]
    assert post.author.handle == "@host@a.example"
    assert post.reposted_by is not None and post.reposted_by.handle == "@fan@a.example"
    assert [s["id"] for s in await api.tag_page(TAG)] == [original["id"]]


async def test_reply_resolves_parent_on_posters_instance(client: httpx.AsyncClient) -> None:
    """A reply to a post from another instance uses the poster's instance's local id."""
    async with MastodonPeer(domain="a.example") as a, MastodonPeer(domain="b.example") as b:
        question = a.publish("host", "Q1 what brings you here?", tags=[TAG])
        api = MastodonApi(client, b.url, b.create_user_token("bob"))
        await api.instance_info()
        local_id = await api.resolve_status(question["uri"])
        assert local_id is not None and local_id != question["id"]
        search = b.requests_to("/api/v2/search")[-1]
        assert search.query == {
            "q": question["uri"],
            "resolve": "true",
            "type": "statuses",
            "limit": "5",
        }
        text = reply_text("A1 curiosity #TheChat", "host@a.example")
        reply = await api.post_status(text, in_reply_to_id=local_id, idempotency_key="r1")
        assert reply.post.extra["in_reply_to_local_id"] == local_id
        assert reply.post.reply_to_handle == "@host@a.example"
        with pytest.raises(RemoteRejected, match="404"):
            await api.post_status("A2", in_reply_to_id="1", idempotency_key="r2")
        assert (reply.post.html or "").count("u-url mention") == 1
        assert await api.resolve_status("https://a.example/users/host/statuses/1") is None
        with pytest.raises(AuthError):
            await MastodonApi(client, b.url).resolve_status(question["uri"])


async def test_oauth_authorization_code_with_pkce(
    peer: MastodonPeer, client: httpx.AsyncClient
) -> None:
    """Register, authorize (page + button), exchange with PKCE, verify, revoke."""
    api = MastodonApi(client, peer.url)
    redirect = "http://127.0.0.1:1/auth/mastodon/callback"
    app = await api.register_app("Hashroom", redirect, website="https://hashroom.example")
    verifier, challenge = new_pkce()
    assert 43 <= len(verifier) <= 128
    url = api.authorize_url(app.client_id, redirect, state="st8", code_challenge=challenge)
    page = await client.get(url)
    assert page.status_code == 200 and ">Authorize</button>" in page.text
    form = dict(parse_qs(urlsplit(url).query))
    approved = await client.post(
        f"{peer.url}/oauth/authorize", data={k: v[0] for k, v in form.items()}
    )
    assert approved.status_code == 302
    location = urlsplit(approved.headers["location"])
    assert location.path == "/auth/mastodon/callback"
    query = parse_qs(location.query)
    assert query["state"] == ["st8"]
    code = query["code"][0]
    with pytest.raises(AuthError, match="invalid_grant"):
        await api.exchange_code(app.client_id, app.client_secret, code, redirect, "wrong" * 10)
    # The code was spent by the failed attempt, as Doorkeeper does: authorize again.
    approved = await client.post(
        f"{peer.url}/oauth/authorize", data={k: v[0] for k, v in form.items()}
    )
    code = parse_qs(urlsplit(approved.headers["location"]).query)["code"][0]
    token = await api.exchange_code(app.client_id, app.client_secret, code, redirect, verifier)
    assert token.token_type == "Bearer" and "write:statuses" in token.scope
    me = await MastodonApi(client, peer.url, token.access_token).verify_credentials()
    assert me.handle == "@alice@a.example"
    await api.revoke(app.client_id, app.client_secret, token.access_token)
    with pytest.raises(AuthError, match="HTTP 401"):
        await MastodonApi(client, peer.url, token.access_token).verify_credentials()
    app_token = await api.app_token(app.client_id, app.client_secret)
    with pytest.raises(AuthError):
        await MastodonApi(client, peer.url, app_token.access_token).verify_credentials()


# --- following ---------------------------------------------------------------------------


async def test_first_run_backfills_newest_posts_bounded(
    peer: MastodonPeer, client: httpx.AsyncClient
) -> None:
    """A first run yields the newest `backfill` posts oldest→newest, then a cursor."""
    published = [peer.publish("bob", f"A{i}", tags=[TAG]) for i in range(50)]
    follower = follower_for(peer, client, backfill=45, streaming=False)
    async with running(follower) as run:
        await run.until(lambda: len(run.posts) >= 45, "the backfill")
        assert run.uris == [s["uri"] for s in published[5:]]
        assert json.loads(run.batches[0].cursor or "{}") == {"min_id": published[-1]["id"]}
        pages = [r.query for r in peer.requests_to("/api/v1/timelines/tag/")][:2]
        assert pages[0] == {"limit": "40"} and pages[1]["max_id"] == published[10]["id"]


async def test_live_posts_arrive_through_the_stream(
    peer: MastodonPeer, client: httpx.AsyncClient
) -> None:
    """With a user token the follower streams: new posts arrive as stream batches."""
    token = peer.create_user_token("watcher")
    old = peer.publish("bob", "before", tags=[TAG])
    async with running(follower_for(peer, client, token)) as run:
        await run.until(
            lambda: (
                peer.stream_count == 1
                and run.uris == [old["uri"]]
                and "streaming" in run.ctx.states
            ),
            "the stream",
        )
        rest_calls = len(peer.requests_to("/api/v1/timelines/tag/"))
        new = peer.publish("carol", "A1 live!", tags=[TAG])
        peer.publish("carol", "other tag", tags=["nope"])
        await run.until(lambda: new["uri"] in run.uris, "the live post")
        assert run.uris == [old["uri"], new["uri"]]
        assert len(peer.requests_to("/api/v1/timelines/tag/")) == rest_calls  # not polled
        assert json.loads(run.batches[-1].cursor or "{}") == {"min_id": new["id"]}
        assert run.posts[-1].author.handle == "@carol@a.example"
        upgrade = peer.requests_to("/api/v1/streaming")[0]
        assert upgrade.kind == "websocket"
        assert upgrade.query == {"stream": "hashtag", "tag": TAG, "access_token": token}
        assert upgrade.headers["authorization"] == f"Bearer {token}"


async def test_stream_drop_fills_the_gap_from_rest(
    peer: MastodonPeer, client: httpx.AsyncClient
) -> None:
    """Posts published while the stream is down arrive after reconnecting, none lost or doubled."""
    token = peer.create_user_token("watcher")
    async with running(follower_for(peer, client, token)) as run:
        await run.until(lambda: peer.stream_count == 1, "the stream")
        first = peer.publish("bob", "A1", tags=[TAG])
        await run.until(lambda: first["uri"] in run.uris, "the first post")
        timeline_calls = len(peer.requests_to("/api/v1/timelines/tag/"))
        assert peer.faults.drop_stream() == 1
        # Nobody is connected now: only the REST gap-fill can deliver these.
        gap = [peer.publish("bob", f"A{i}", tags=[TAG]) for i in range(2, 5)]
        await run.until(lambda: all(s["uri"] in run.uris for s in gap), "the gap")
        await run.until(lambda: peer.stream_count == 1, "the new stream")
        after = peer.publish("bob", "A5", tags=[TAG])
        await run.until(lambda: after["uri"] in run.uris, "the post after reconnecting")
        assert "reconnecting" in run.ctx.states
        assert len(peer.requests_to("/api/v1/timelines/tag/")) > timeline_calls
        assert run.uris == [first["uri"], *(s["uri"] for s in gap), after["uri"]]


async def test_resume_from_cursor_yields_only_newer_posts(
    peer: MastodonPeer, client: httpx.AsyncClient
) -> None:
    """A saved cursor resumes forward over several pages, oldest→newest, without repeats."""
    seen = [peer.publish("bob", f"A{i}", tags=[TAG]) for i in range(3)]
    async with running(follower_for(peer, client, streaming=False)) as run:
        await run.until(lambda: len(run.posts) == 3, "the backfill")
        cursor = run.cursor
    assert cursor is not None
    newer = [peer.publish("bob", f"B{i}", tags=[TAG]) for i in range(45)]
    async with running(follower_for(peer, client, streaming=False), cursor) as run:
        await run.until(lambda: len(run.posts) >= 45, "the newer posts")
        await asyncio.sleep(0.15)  # a few polls more: nothing repeats
        assert run.uris == [s["uri"] for s in newer]
        assert not set(run.uris) & {s["uri"] for s in seen}
        assert json.loads(run.cursor or "{}") == {"min_id": newer[-1]["id"]}


async def test_rate_limit_429_is_waited_out(peer: MastodonPeer, client: httpx.AsyncClient) -> None:
    """A 429 with an ISO-8601 reset makes the follower wait until the reset, then carry on."""
    post = peer.publish("bob", "A1", tags=[TAG])
    peer.faults.rate_limit(0, 1.0)
    started = time.monotonic()
    async with running(follower_for(peer, client, streaming=False)) as run:
        await run.until(lambda: run.uris == [post["uri"]], "the post", timeout=4)
        assert time.monotonic() - started >= 1.0
        assert peer.requests[0].status == 429
        assert [r.status for r in peer.requests].count(429) == 1  # waited, did not hammer
        assert any("rate limited" in e for e in run.ctx.errors)


async def test_remaining_zero_is_respected_before_429(
    peer: MastodonPeer, client: httpx.AsyncClient
) -> None:
    """X-RateLimit-Remaining: 0 makes the follower pause until the reset without a 429."""
    post = peer.publish("bob", "A1", tags=[TAG])
    peer.faults.rate_limit(1, 1.0)
    started = time.monotonic()
    async with running(follower_for(peer, client, streaming=False)) as run:
        await run.until(lambda: run.uris == [post["uri"]], "the post", timeout=4)
        assert time.monotonic() - started >= 1.0
        assert all(r.status != 429 for r in peer.requests)


async def test_server_errors_and_malformed_json_are_retried(
    peer: MastodonPeer, client: httpx.AsyncClient
) -> None:
    """5xx answers and truncated JSON are retried with backoff; the posts still arrive."""
    post = peer.publish("bob", "A1", tags=[TAG])
    peer.faults.server_error(2, status=502, path="/api/v1/timelines")
    peer.faults.malformed_json(1, path="/api/v1/timelines")
    async with running(follower_for(peer, client, streaming=False)) as run:
        await run.until(lambda: run.uris == [post["uri"]], "the post")
        statuses = [r.status for r in peer.requests_to("/api/v1/timelines/tag/")][:4]
        assert statuses == [502, 502, 200, 200]
        assert any("502" in e for e in run.ctx.errors)
        assert any("not JSON" in e for e in run.ctx.errors)


async def test_persistent_failure_raises_network_error(
    peer: MastodonPeer, client: httpx.AsyncClient
) -> None:
    """When the instance keeps failing, follow() raises NetworkError for the ingester."""
    peer.faults.server_error(100, status=500)
    follower = follower_for(peer, client, max_retries=2)
    with pytest.raises(NetworkError, match="500"):
        async for _ in follower.follow(None, Ctx()):
            pass
    assert len(peer.requests) == 3


async def test_without_token_the_follower_polls(
    peer: MastodonPeer, client: httpx.AsyncClient
) -> None:
    """No token: no websocket is tried, the state is "polling", new posts still arrive."""
    async with running(follower_for(peer, client)) as run:
        await run.until(lambda: "polling" in run.ctx.states, "polling")
        assert "user token" in (dict(run.ctx.reports)["polling"] or "")
        post = peer.publish("bob", "A1", tags=[TAG])
        await run.until(lambda: run.uris == [post["uri"]], "the polled post")
        assert run.batches[-1].cursor is not None
        assert peer.requests_to("/api/v1/streaming") == []
        assert "streaming" not in run.ctx.states


async def test_refused_streams_fall_back_to_polling(
    peer: MastodonPeer, client: httpx.AsyncClient
) -> None:
    """An app token (401 on upgrade, as 4.2+) or a refusing instance leads to polling."""
    async with running(follower_for(peer, client, peer.create_app_token())) as run:
        await run.until(lambda: "polling" in run.ctx.states, "polling with an app token")
        assert "HTTP 401" in (dict(run.ctx.reports)["polling"] or "")
        post = peer.publish("bob", "A1", tags=[TAG])
        await run.until(lambda: post["uri"] in run.uris, "the polled post")
    peer.faults.refuse_streaming = True
    token = peer.create_user_token("watcher")
    async with running(follower_for(peer, client, token, stream_retry=0.2)) as run:
        await run.until(lambda: "polling" in run.ctx.states, "polling when refused")
        peer.faults.refuse_streaming = False
        await run.until(lambda: "streaming" in run.ctx.states, "streaming on a later retry")
        post = peer.publish("bob", "A2", tags=[TAG])
        await run.until(lambda: post["uri"] in run.uris, "the streamed post")


async def test_revoked_token_keeps_reading_publicly(
    peer: MastodonPeer, client: httpx.AsyncClient
) -> None:
    """A revoked token ends the stream; public reads go on without it and posts still arrive."""
    token = peer.create_user_token("watcher")
    async with running(follower_for(peer, client, token)) as run:
        await run.until(lambda: peer.stream_count == 1, "the stream")
        peer.revoke_token(token)
        await run.until(lambda: "polling" in run.ctx.states, "polling after revocation")
        post = peer.publish("bob", "A1", tags=[TAG])
        await run.until(lambda: post["uri"] in run.uris, "the post read anonymously")
        assert any("refused" in e for e in run.ctx.errors)


async def test_revoked_token_raises_when_reads_need_it(client: httpx.AsyncClient) -> None:
    """If the instance only serves tag timelines to users, a revoked token is an AuthError."""
    async with MastodonPeer(domain="closed.example", public_timelines=False) as peer:
        token = peer.create_user_token("watcher")
        peer.publish("bob", "A1", tags=[TAG])
        peer.revoke_token(token)
        with pytest.raises(AuthError):
            async for _ in follower_for(peer, client, token).follow(None, Ctx()):
                pass


async def test_two_instances_yield_the_same_remote_id(client: httpx.AsyncClient) -> None:
    """A post seen on its own instance and federated to another has one remote_id."""
    async with MastodonPeer(domain="a.example") as a, MastodonPeer(domain="b.example") as b:
        follow_a = follower_for(a, client, a.create_user_token("wa"))
        follow_b = follower_for(b, client, b.create_user_token("wb"))
        async with running(follow_a) as run_a, running(follow_b) as run_b:
            await run_a.until(lambda: a.stream_count == 1, "stream on a")
            await run_b.until(lambda: b.stream_count == 1, "stream on b")
            original = a.publish("alice", "A1 hello from a", tags=[TAG])
            copy_on_b = b.federate(original)
            await run_a.until(lambda: len(run_a.posts) == 1, "the post on a")
            await run_b.until(lambda: len(run_b.posts) == 1, "the post on b")
            on_a, on_b = run_a.posts[0], run_b.posts[0]
            assert on_a.remote_id == on_b.remote_id == original["uri"]
            assert (on_a.local_id, on_b.local_id) == (original["id"], copy_on_b["id"])
            assert on_a.local_id != on_b.local_id
            assert on_a.author.handle == on_b.author.handle == "@alice@a.example"


async def test_stream_edits_and_deletes(peer: MastodonPeer, client: httpx.AsyncClient) -> None:
    """status.update becomes an Upsert with edited_at; delete becomes Delete(local_id)."""
    async with running(follower_for(peer, client, peer.create_user_token("w"))) as run:
        await run.until(lambda: peer.stream_count == 1, "the stream")
        post = peer.publish("bob", "A1 typo", tags=[TAG])
        await run.until(lambda: len(run.posts) == 1, "the post")
        peer.edit(post["id"], "A1 fixed")
        await run.until(lambda: len(run.posts) == 2, "the edit")
        edited = run.posts[1]
        assert edited.remote_id == post["uri"] and edited.edited_at is not None
        assert "A1 fixed" in (edited.html or "")
        assert run.batches[-1].cursor is None  # an edit does not move the cursor
        peer.delete(post["id"])
        await run.until(lambda: isinstance(run.batches[-1].changes[0], Delete), "the delete")
        assert run.batches[-1].changes == [Delete(local_id=post["id"])]


async def test_malformed_stream_frames_are_skipped(
    peer: MastodonPeer, client: httpx.AsyncClient
) -> None:
    """Garbage, unknown events and broken payloads are skipped; the stream keeps going."""
    async with running(follower_for(peer, client, peer.create_user_token("w"))) as run:
        await run.until(lambda: peer.stream_count == 1, "the stream")
        for junk in (
            "not json",
            "[]",
            '{"event": "update", "payload": "{broken"}',
            '{"event": "update", "payload": "{\\"content\\": \\"no ids\\"}"}',
            '{"event": "delete", "payload": null}',
            '{"event": "notification", "payload": "{}"}',
            '{"event": "filters_changed"}',
        ):
            peer.send_raw_frame(junk)
        post = peer.publish("bob", "A1 still here", tags=[TAG])
        await run.until(lambda: run.uris == [post["uri"]], "the post after junk")
        assert peer.stream_count == 1
        assert "reconnecting" not in run.ctx.states


# --- thread context ----------------------------------------------------------------------


def context_requests(peer: MastodonPeer) -> list[str]:
    """Paths of the thread-context requests the peer received, in order."""
    return [r.path for r in peer.requests_to("/api/v1/statuses/") if r.path.endswith("/context")]


async def test_status_context_lists_the_visible_thread_in_order(
    peer: MastodonPeer, client: httpx.AsyncClient
) -> None:
    """status_context gives ancestors oldest first, descendants depth first, hides private
    replies, and an unknown status has an empty context."""
    question = peer.publish("host", "Q1: favourite editor?", tags=[TAG])
    first = peer.publish("bob", "A1 vim", in_reply_to=question["id"])
    nested = peer.publish("carol", "A1 same", in_reply_to=first["id"])
    second = peer.publish("dan", "A1 emacs", in_reply_to=question["id"], visibility="unlisted")
    peer.publish("eve", "A1 secret", in_reply_to=question["id"], visibility="private")
    api = MastodonApi(client, peer.url)

    whole = await api.status_context(question["id"])
    assert whole["ancestors"] == []
    assert [s["id"] for s in whole["descendants"]] == [first["id"], nested["id"], second["id"]]
    middle = await api.status_context(first["id"])
    assert [s["id"] for s in middle["ancestors"]] == [question["id"]]
    assert [s["id"] for s in middle["descendants"]] == [nested["id"]]
    assert await api.status_context("999") == {"ancestors": [], "descendants": []}
    assert context_requests(peer)[-1] == "/api/v1/statuses/999/context"
    assert peer.requests[-1].status == 404


async def test_untagged_reply_to_a_question_arrives_once_through_thread_context(
    peer: MastodonPeer, client: httpx.AsyncClient
) -> None:
    """While streaming, a reply to a question without the hashtag is yielded from the
    question's thread, flagged, once, without touching the cursor; tagged replies still
    come from the stream and are not repeated."""
    token = peer.create_user_token("watcher")
    question = peer.publish("host", "Q1: what brings you here?", tags=[TAG])
    follower = follower_for(peer, client, token, context_interval=0.2)
    async with running(follower) as run:
        await run.until(
            lambda: peer.stream_count == 1 and run.uris == [question["uri"]], "the stream"
        )
        cursor = run.cursor
        reply = peer.publish("bob", "A1 curiosity", in_reply_to=question["id"])
        nested = peer.publish("carol", "A1 me too", in_reply_to=reply["id"])
        tagged = peer.publish("dan", "A1 tagged", tags=[TAG], in_reply_to=question["id"])
        await run.until(
            lambda: {reply["uri"], nested["uri"], tagged["uri"]} <= set(run.uris), "the replies"
        )
        fetched = len(context_requests(peer))
        await run.until(lambda: len(context_requests(peer)) >= fetched + 3, "later cycles")

        assert sorted(run.uris) == sorted(
            [question["uri"], reply["uri"], nested["uri"], tagged["uri"]]
        )
        by_uri = {post.remote_id: post for post in run.posts}
        assert by_uri[reply["uri"]].extra["thread_context"] is True
        assert by_uri[reply["uri"]].extra["in_reply_to_local_id"] == question["id"]
        assert by_uri[nested["uri"]].extra["thread_context"] is True
        assert "thread_context" not in by_uri[tagged["uri"]].extra
        for batch in run.batches:
            if any(
                isinstance(c, Upsert) and c.post.extra.get("thread_context") for c in batch.changes
            ):
                assert batch.cursor is None
        assert json.loads(run.cursor or "{}") == {"min_id": tagged["id"]}
        assert cursor is not None and json.loads(cursor) == {"min_id": question["id"]}
        assert set(context_requests(peer)) == {f"/api/v1/statuses/{question['id']}/context"}


async def test_thread_context_is_fetched_for_questions_only(
    peer: MastodonPeer, client: httpx.AsyncClient
) -> None:
    """While polling, a non-question's untagged reply is never fetched (no context request);
    a question posted later in the same run has its untagged reply fetched."""
    chatter = peer.publish("bob", "just saying hi", tags=[TAG])
    peer.publish("carol", "hi back", in_reply_to=chatter["id"])
    follower = follower_for(peer, client, context_interval=0.1)
    async with running(follower) as run:
        await run.until(lambda: run.uris == [chatter["uri"]], "the backfill")
        await asyncio.sleep(0.5)  # several context cycles
        assert context_requests(peer) == []
        assert run.uris == [chatter["uri"]]

        question = peer.publish("host", "Q2: and now?", tags=[TAG])
        answer = peer.publish("carol", "A2 now", in_reply_to=question["id"])
        await run.until(lambda: answer["uri"] in run.uris, "the answer")
        assert set(context_requests(peer)) == {f"/api/v1/statuses/{question['id']}/context"}
        assert "polling" in run.ctx.states and "streaming" not in run.ctx.states


async def test_thread_context_failures_are_skipped(
    peer: MastodonPeer, client: httpx.AsyncClient
) -> None:
    """Failing context requests are logged and retried next cycle; following goes on."""
    question = peer.publish("host", "Q1: ready?", tags=[TAG])
    reply = peer.publish("bob", "A1 yes", in_reply_to=question["id"])
    path = f"/api/v1/statuses/{question['id']}/context"
    peer.faults.server_error(2, status=503, path=path)
    peer.faults.malformed_json(1, path=path)
    follower = follower_for(peer, client, context_interval=0.1, max_retries=0)
    async with running(follower) as run:
        await run.until(lambda: reply["uri"] in run.uris, "the reply after failures")
        assert [r.status for r in peer.requests_to(path)][:4] == [503, 503, 200, 200]
        later = peer.publish("bob", "A1 tagged", tags=[TAG])
        await run.until(lambda: later["uri"] in run.uris, "a post after the failures")
        assert run.uris.count(reply["uri"]) == 1


# --- several tags ------------------------------------------------------------------------


async def test_several_tags_are_read_with_any_and_streamed_once(
    peer: MastodonPeer, client: httpx.AsyncClient
) -> None:
    """Two tags: the timeline is read as `tag/first?any[]=second`, the stream subscribes to
    both, and a status carrying both (two stream frames) is yielded once."""
    token = peer.create_user_token("watcher")
    first = peer.publish("bob", "A1 one", tags=[TAG])
    second = peer.publish("bob", "A2 two", tags=["Second"])
    both = peer.publish("bob", "A3 both", tags=[TAG, "Second"])
    peer.publish("bob", "elsewhere", tags=["Third"])
    follower = MastodonFollower(
        MastodonApi(client, peer.url, token),
        [TAG, "Second"],
        backfill=20,
        backoff_cap=0.2,
        backoff_base=0.05,
        open_timeout=2.0,
        connect=DEV_WS_CONNECT,
    )
    async with running(follower) as run:
        await run.until(lambda: "streaming" in run.ctx.states, "the stream")
        assert run.uris == [first["uri"], second["uri"], both["uri"]]
        query = peer.requests_to("/api/v1/timelines/tag/")[0]
        assert query.path.endswith(f"/tag/{TAG}") and query.query["any[]"] == "Second"
        rest_calls = len(peer.requests_to("/api/v1/timelines/tag/"))
        live_both = peer.publish("carol", "A4 both", tags=["Second", TAG])
        live_second = peer.publish("carol", "A5 second only", tags=["Second"])
        await run.until(lambda: live_second["uri"] in run.uris, "the second tag's stream")
        await asyncio.sleep(0.1)  # the duplicate frame of A4 has come and gone
        assert run.uris[3:] == [live_both["uri"], live_second["uri"]]
        assert len(peer.requests_to("/api/v1/timelines/tag/")) == rest_calls  # streamed


async def test_a_first_tag_the_instance_never_saw_does_not_hide_the_others(
    peer: MastodonPeer, client: httpx.AsyncClient
) -> None:
    """Mastodon answers 404 for an unknown path tag and ignores `any[]` then: the follower
    puts another tag first and finds the posts."""
    posts = [peer.publish("bob", f"A{i}", tags=[TAG]) for i in range(3)]
    follower = MastodonFollower(
        MastodonApi(client, peer.url),
        ["BrandNew2026", TAG],
        streaming=False,
        poll_interval=0.05,
        connect=DEV_WS_CONNECT,
    )
    async with running(follower) as run:
        await run.until(lambda: len(run.posts) == 3, "the known tag's posts")
        assert run.uris == [s["uri"] for s in posts]
        later = peer.publish("bob", "new tag used", tags=["BrandNew2026"])
        await run.until(lambda: later["uri"] in run.uris, "the new tag's first post")


async def test_more_tags_than_one_request_takes_are_paged_without_gaps(
    peer: MastodonPeer, client: httpx.AsyncClient
) -> None:
    """Five tags need two requests per page (4 per request); forward paging over both
    yields every post once, in order, and the cursor ends at the newest."""
    tags = ["t1", "t2", "t3", "t4", "t5"]
    start = peer.publish("bob", "start", tags=["t5"])
    follower_args: dict[str, Any] = {"streaming": False, "poll_interval": 0.05}
    api = MastodonApi(client, peer.url)
    async with running(MastodonFollower(api, tags, connect=DEV_WS_CONNECT, **follower_args)) as run:
        await run.until(lambda: run.uris == [start["uri"]], "the backfill")
        cursor = run.cursor
    newer = [peer.publish("bob", f"B{i}", tags=[tags[0] if i % 3 else tags[4]]) for i in range(70)]
    follower = MastodonFollower(api, tags, connect=DEV_WS_CONNECT, **follower_args)
    async with running(follower, cursor) as run:
        await run.until(lambda: len(run.posts) >= 70, "the newer posts")
        await asyncio.sleep(0.15)  # a few polls more: nothing repeats
        assert run.uris == [s["uri"] for s in newer]
        assert json.loads(run.cursor or "{}") == {"min_id": newer[-1]["id"]}
    asked = peer.requests_to("/api/v1/timelines/tag/")
    # t1?any[]=t2…t4 (the record keeps the last any[]), then t5 alone.
    assert any(r.path.endswith("/t1") and r.query.get("any[]") == "t4" for r in asked)
    assert any(r.path.endswith("/t5") and "any[]" not in r.query for r in asked)
