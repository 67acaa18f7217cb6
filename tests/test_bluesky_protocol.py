"""Bluesky protocol: facets, rendering, tag matching, records, and the Jetstream follower
against a loopback Jetstream server (no Node needed)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import libipld
import pytest
from pydantic import ValidationError

from app.config import Settings
from app.networks.atproto_firehose import FrameError, decode_frame
from app.networks.base import AuthError, Batch, Delete, NetworkError, RemoteRejected, Upsert
from app.networks.bluesky import (
    CONTEXT_REQUESTS_PER_CYCLE,
    NO_HISTORY_NOTICE,
    AccountClient,
    BlueskySession,
    IdentityResolver,
    JetstreamFollower,
    build_facets,
    check_post_text,
    facets_for,
    length,
    matches_tag,
    read_thread,
    record_to_post,
    render_post_html,
    reply_ref,
    search_posts,
)
from tests.factories import DEV_WS_CONNECT
from tests.peers.jetstream import BLOCKED_POST, NOT_FOUND_POST, THREAD_VIEW, JetstreamServer

ALICE = "did:plc:alice000000000000000000a"
BOB = "did:plc:bob00000000000000000000b"
CAROL = "did:plc:carol0000000000000000000c"
TAG = "TheChat"


def tag_facet(text: str, tag: str) -> dict[str, Any]:
    """A tag facet computed independently: byte offsets of '#tag' in ``text``."""
    data = text.encode()
    start = data.index(f"#{tag}".encode())
    return {
        "index": {"byteStart": start, "byteEnd": start + len(f"#{tag}".encode())},
        "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": tag}],
    }


def post_record(text: str, *, facets: bool = True, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "$type": "app.bsky.feed.post",
        "text": text,
        "createdAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        **extra,
    }
    if facets:
        record["facets"] = facets_for(text)
    return record


class Ctx:
    """Records what a follower reports."""

    def __init__(self) -> None:
        self.states: list[tuple[str, str | None]] = []
        self.notices: list[str] = []

    def report(self, state: str, error: str | None = None) -> None:
        self.states.append((state, error))

    def notice(self, message: str) -> None:
        self.notices.append(message)


async def next_batch(gen: AsyncIterator[Batch], timeout: float = 5.0) -> Batch:
    return await asyncio.wait_for(anext(gen), timeout)


async def next_changes(gen: AsyncIterator[Batch], timeout: float = 5.0) -> Batch:
    """The next batch that carries changes (cursor-only batches are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            batch = await anext(gen)
            if batch.changes:
                return batch


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


@pytest.fixture
async def jetstream() -> AsyncIterator[JetstreamServer]:
    async with JetstreamServer() as server:
        server.add_account(ALICE, "alice.test")
        server.add_account(BOB, "bob.test")
        yield server


def follower(http: httpx.AsyncClient, server: JetstreamServer, **kwargs: Any) -> JetstreamFollower:
    resolver = IdentityResolver(http, plc_url=server.http_url)
    kwargs.setdefault("backoff_base", 0.05)
    kwargs.setdefault("backoff_cap", 0.2)
    return JetstreamFollower(http, server.url, TAG, resolver, connect=DEV_WS_CONNECT, **kwargs)


# --- facets -------------------------------------------------------------------------------


def test_tag_facet_uses_utf8_byte_offsets_after_emoji_and_accents() -> None:
    """Emoji and accents before a tag shift its facet by bytes, and the slice is exactly #tag."""
    text = "Café ☕️ 👩‍👩‍👧 réponse #TheChat! voilà"
    facets = facets_for(text)
    assert len(facets) == 1
    index, feature = facets[0]["index"], facets[0]["features"][0]
    assert text.encode()[index["byteStart"] : index["byteEnd"]] == b"#TheChat"
    assert feature == {"$type": "app.bsky.richtext.facet#tag", "tag": "TheChat"}
    assert index["byteStart"] > text.index("#")  # bytes, not characters


def test_facets_follow_the_official_detection_rules() -> None:
    """Tags need a leading space and a non-digit, lose trailing punctuation; links lose it too."""
    text = "Read https://example.org/wiki/Foo_(bar). #tag, #123 #a1 mail#no #️⃣ (https://x.test/p)"
    facets = facets_for(text)
    found = [
        (text.encode()[f["index"]["byteStart"] : f["index"]["byteEnd"]].decode(), f["features"][0])
        for f in facets
    ]
    assert found == [
        (
            "https://example.org/wiki/Foo_(bar)",
            {"$type": "app.bsky.richtext.facet#link", "uri": "https://example.org/wiki/Foo_(bar)"},
        ),
        ("#tag", {"$type": "app.bsky.richtext.facet#tag", "tag": "tag"}),
        ("#a1", {"$type": "app.bsky.richtext.facet#tag", "tag": "a1"}),
        ("https://x.test/p", {"$type": "app.bsky.richtext.facet#link", "uri": "https://x.test/p"}),
    ]


async def test_build_facets_links_mentions_that_resolve() -> None:
    """Mentions become facets with the DID when the handle resolves, once per handle."""
    asked: list[str] = []

    async def resolve(handle: str) -> str | None:
        asked.append(handle)
        return ALICE if handle == "alice.test" else None

    text = "ñ @alice.test and @ghost.test and @alice.test. #TheChat"
    facets = await build_facets(text, resolve)
    mentions = [f for f in facets if f["features"][0]["$type"].endswith("#mention")]
    assert [text.encode()[f["index"]["byteStart"] : f["index"]["byteEnd"]] for f in mentions] == [
        b"@alice.test",
        b"@alice.test",
    ]
    assert all(f["features"][0]["did"] == ALICE for f in mentions)
    assert sorted(asked) == ["alice.test", "ghost.test"]
    assert any(f["features"][0].get("tag") == "TheChat" for f in facets)


# --- rendering ----------------------------------------------------------------------------


def test_render_post_html_escapes_everything_and_links_facets() -> None:
    """Hostile text stays text; tag, mention and link facets become links at byte offsets."""
    text = "é <script>alert(1)</script> #TheChat @bob.test https://ex.org/?a=1&b=2\nbye"
    facets = facets_for(text) + [
        {
            "index": {
                "byteStart": text.encode().index(b"@bob"),
                "byteEnd": text.encode().index(b"@bob") + len(b"@bob.test"),
            },
            "features": [{"$type": "app.bsky.richtext.facet#mention", "did": BOB}],
        }
    ]
    html = render_post_html(text, facets)
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<a href="https://bsky.app/hashtag/TheChat" class="mention hashtag">#TheChat</a>' in html
    assert f'<a href="https://bsky.app/profile/{BOB}" class="u-url mention">@bob.test</a>' in html
    assert '<a href="https://ex.org/?a=1&amp;b=2">https://ex.org/?a=1&amp;b=2</a>' in html
    assert html.startswith("<p>é ") and html.endswith("<br>bye</p>")


def test_render_post_html_ignores_bad_facets_safely() -> None:
    """Out-of-range, overlapping, char-splitting, non-int and javascript: facets are ignored."""
    text = "👋 hi <b>there</b> #x"
    size = len(text.encode())
    link = "app.bsky.richtext.facet#link"
    bad = [
        {
            "index": {"byteStart": 0, "byteEnd": size + 5},
            "features": [{"$type": link, "uri": "https://a.example"}],
        },
        {
            "index": {"byteStart": 1, "byteEnd": 6},
            "features": [{"$type": link, "uri": "https://b.example"}],
        },
        {
            "index": {"byteStart": True, "byteEnd": 4},
            "features": [{"$type": link, "uri": "https://c.example"}],
        },
        {
            "index": {"byteStart": 5, "byteEnd": 7},
            "features": [{"$type": link, "uri": "javascript:alert(1)"}],
        },
        {
            "index": {"byteStart": 7, "byteEnd": 5},
            "features": [{"$type": link, "uri": "https://d.example"}],
        },
        {"index": {"byteStart": 5, "byteEnd": 7}, "features": "nope"},
        "not a facet",
        {
            "index": {"byteStart": 5, "byteEnd": 7},
            "features": [{"$type": link, "uri": "https://ok.example"}],
        },
        {
            "index": {"byteStart": 6, "byteEnd": 9},
            "features": [{"$type": link, "uri": "https://overlap.example"}],
        },
    ]
    html = render_post_html(text, bad)
    assert html == ('<p>👋 <a href="https://ok.example">hi</a> &lt;b&gt;there&lt;/b&gt; #x</p>')
    assert render_post_html("", bad) == ""
    assert render_post_html("a < b", "garbage") == "<p>a &lt; b</p>"


# --- tag matching -------------------------------------------------------------------------


def test_matches_tag_reads_facets_tags_field_and_text() -> None:
    """A post carries the tag by facet, by its tags field, or as a whole #tag in its text."""
    with_facet = {"text": "👩‍👩‍👧 #THECHAT", "facets": [tag_facet("👩‍👩‍👧 #THECHAT", "THECHAT")]}
    facet_only = {
        "text": "see facet",
        "facets": [
            {
                "index": {"byteStart": 0, "byteEnd": 3},
                "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "thechat"}],
            }
        ],
    }
    tags_only = {"text": "no hashtag in the text", "tags": ["TheChat"]}
    text_only = {"text": "Great answer #thechat."}
    longer = {
        "text": "#TheChatter",
        "facets": [tag_facet("#TheChatter", "TheChatter")],
        "tags": ["thechats"],
    }
    assert matches_tag(with_facet, "thechat")
    assert matches_tag(facet_only, "#TheChat")
    assert matches_tag(tags_only, "thechat")
    assert matches_tag(text_only, "TheChat")
    assert not matches_tag(longer, "TheChat")
    assert not matches_tag({"text": "I love #tagger"}, "tag")
    assert not matches_tag({"text": "https://x.example/#thechat"}, "thechat")
    assert not matches_tag("not a record", "thechat")


# --- records ------------------------------------------------------------------------------


def test_record_to_post_maps_reply_media_quote_and_extra() -> None:
    """A record becomes a RemotePost with at:// id, permalink, reply refs, media and quote."""
    parent = {"uri": f"at://{BOB}/app.bsky.feed.post/3parent", "cid": "bafyparent"}
    root = {"uri": f"at://{BOB}/app.bsky.feed.post/3root", "cid": "bafyroot"}
    blob = {"$type": "blob", "ref": {"$link": "bafkreiimage"}, "mimeType": "image/jpeg", "size": 9}
    record = post_record(
        "A1 <i>yes</i> #TheChat",
        reply={"root": root, "parent": parent},
        langs=["fr", "en"],
        embed={
            "$type": "app.bsky.embed.recordWithMedia",
            "record": {"record": {"uri": f"at://{BOB}/app.bsky.feed.post/3quoted", "cid": "bafyq"}},
            "media": {
                "$type": "app.bsky.embed.images",
                "images": [{"image": blob, "alt": "a cat"}],
            },
        },
        createdAt="2026-03-01T12:00:00.123Z",
    )
    post = record_to_post(ALICE, "3abc", "bafypost", record, pds_url="http://pds.example")
    assert post.remote_id == f"at://{ALICE}/app.bsky.feed.post/3abc"
    assert post.url == f"https://bsky.app/profile/{ALICE}/post/3abc"
    assert post.created_at == datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert post.in_reply_to == parent["uri"] and post.thread_root == root["uri"]
    assert post.language == "fr"
    assert "&lt;i&gt;" in (post.html or "") and post.text == "A1 <i>yes</i> #TheChat"
    assert post.media[0].alt == "a cat"
    assert post.media[0].url == (
        "http://pds.example/xrpc/com.atproto.sync.getBlob?did=" + ALICE + "&cid=bafkreiimage"
    )
    assert post.quote and post.quote["url"] == f"https://bsky.app/profile/{BOB}/post/3quoted"
    assert post.extra == {
        "cid": "bafypost",
        "did": ALICE,
        "rkey": "3abc",
        "reply": {"root": root, "parent": parent},
    }
    assert reply_ref(post) == {"root": root, "parent": {"uri": post.remote_id, "cid": "bafypost"}}
    no_pds = record_to_post(ALICE, "3abc", "bafypost", record)
    assert no_pds.media[0].url.startswith("https://cdn.bsky.app/img/feed_fullsize/plain/")
    assert post.author.remote_id == ALICE and post.author.handle == ALICE


def test_record_to_post_distrusts_missing_and_future_dates() -> None:
    """A missing createdAt falls back to now; one far in the future is clamped to now."""
    before = datetime.now(UTC)
    future = (before + timedelta(days=3)).isoformat()
    for created in (None, "yesterday", future):
        record = {"text": "x"} if created is None else {"text": "x", "createdAt": created}
        post = record_to_post(ALICE, "3k", None, record)
        assert before <= post.created_at <= datetime.now(UTC)


def test_length_counts_graphemes_and_limits_bytes() -> None:
    """Length is in graphemes; 300 graphemes pass unless they exceed 3000 bytes."""
    family = "👩‍👩‍👧"
    assert length(family * 3) == 3
    check_post_text("é" * 300)
    with pytest.raises(RemoteRejected, match="300"):
        check_post_text("a" * 301)
    with pytest.raises(RemoteRejected, match="3000 bytes"):
        check_post_text(family * 200)


# --- Jetstream follower -------------------------------------------------------------------


async def test_jetstream_follower_yields_tagged_posts_live(
    http: httpx.AsyncClient, jetstream: JetstreamServer
) -> None:
    """A tagged post comes out as an Upsert with cursor=time_us; others and other kinds do not."""
    ctx = Ctx()
    gen = follower(http, jetstream).follow(None, ctx)
    first = asyncio.ensure_future(next_changes(gen))
    await jetstream.wait_for_subscribers()
    jetstream.commit(BOB, "3untagged", post_record("nothing to see #other"))
    jetstream.emit(
        {
            "did": BOB,
            "kind": "identity",
            "identity": {
                "did": BOB,
                "handle": "bob.test",
                "seq": 1,
                "time": "2026-01-01T00:00:00Z",
            },
        }
    )
    jetstream.commit(BOB, "3like", {"subject": {}}, collection="app.bsky.feed.like")
    text = "😀 A1: ça va #TheChat"
    event = jetstream.commit(ALICE, "3tagged", post_record(text))
    batch = await first
    assert [type(c) for c in batch.changes] == [Upsert]
    post = batch.changes[0].post  # type: ignore[union-attr]
    assert post.remote_id == f"at://{ALICE}/app.bsky.feed.post/3tagged"
    assert post.text == text and post.extra["cid"] == event["commit"]["cid"]
    assert batch.cursor == str(event["time_us"])
    assert ("streaming", None) in ctx.states
    assert jetstream.subscriptions[0]["wantedCollections"] == ["app.bsky.feed.post"]
    await gen.aclose()


async def test_jetstream_follower_turns_deletes_into_delete(
    http: httpx.AsyncClient, jetstream: JetstreamServer
) -> None:
    """Deleting a yielded post yields Delete(at uri); deletes of unknown posts are ignored."""
    gen = follower(http, jetstream).follow(None, Ctx())
    pending = asyncio.ensure_future(next_changes(gen))
    await jetstream.wait_for_subscribers()
    jetstream.commit(ALICE, "3one", post_record("#TheChat hello"))
    await pending
    jetstream.commit(BOB, "3stranger", operation="delete")
    deleted = jetstream.commit(ALICE, "3one", operation="delete")
    batch = await next_changes(gen)
    assert batch.changes == [Delete(remote_id=f"at://{ALICE}/app.bsky.feed.post/3one")]
    assert batch.cursor == str(deleted["time_us"])
    await gen.aclose()


async def test_jetstream_follower_resumes_from_cursor_without_duplicates(
    http: httpx.AsyncClient, jetstream: JetstreamServer
) -> None:
    """A new follower given the last cursor replays what came after it, and nothing before."""
    gen = follower(http, jetstream).follow(None, Ctx())
    pending = asyncio.ensure_future(next_changes(gen))
    await jetstream.wait_for_subscribers()
    jetstream.commit(ALICE, "3a", post_record("#TheChat a"))
    first = await pending
    jetstream.commit(ALICE, "3b", post_record("#TheChat b"))
    second = await next_changes(gen)
    await gen.aclose()
    assert second.cursor is not None

    jetstream.commit(ALICE, "3c", post_record("#TheChat c (while away)"))
    resumed = follower(http, jetstream).follow(second.cursor, Ctx())
    batch = await next_changes(resumed)
    assert [c.post.remote_id for c in batch.changes] == [  # type: ignore[union-attr]
        f"at://{ALICE}/app.bsky.feed.post/3c"
    ]
    assert jetstream.subscriptions[-1]["cursor"] == [second.cursor]
    assert first.cursor != second.cursor
    await resumed.aclose()


async def test_jetstream_follower_skips_malformed_frames(
    http: httpx.AsyncClient, jetstream: JetstreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage, events without time_us or record are logged and skipped; the stream goes on."""
    gen = follower(http, jetstream).follow(None, Ctx())
    pending = asyncio.ensure_future(next_changes(gen))
    await jetstream.wait_for_subscribers()
    jetstream.send_raw("{not json")
    jetstream.send_raw(json.dumps({"did": ALICE, "kind": "commit", "commit": {}}))
    jetstream.send_raw(json.dumps([1, 2]))
    jetstream.commit(ALICE, "3norecord", operation="create", record=None)
    jetstream.send_raw(
        json.dumps(
            {
                "did": ALICE,
                "time_us": jetstream.next_time_us(),
                "kind": "commit",
                "commit": {
                    "collection": "app.bsky.feed.post",
                    "rkey": "3x",
                    "operation": "create",
                    "record": "text",
                },
            }
        )
    )
    jetstream.commit(ALICE, "3fine", post_record("#TheChat fine"))
    batch = await pending
    assert [c.post.remote_id for c in batch.changes] == [  # type: ignore[union-attr]
        f"at://{ALICE}/app.bsky.feed.post/3fine"
    ]
    assert sum("malformed jetstream frame" in r.message for r in caplog.records) >= 4
    await gen.aclose()


async def test_jetstream_follower_reconnects_after_a_drop_without_loss(
    http: httpx.AsyncClient, jetstream: JetstreamServer
) -> None:
    """After the connection is cut, the follower reconnects from its cursor and misses nothing."""
    # CAROL has no DID document: no profile arrives, so no second Upsert of a post.
    ctx = Ctx()
    gen = follower(http, jetstream).follow(None, ctx)
    pending = asyncio.ensure_future(next_changes(gen))
    await jetstream.wait_for_subscribers()
    jetstream.commit(CAROL, "3before", post_record("#TheChat before"))
    before = await pending
    await jetstream.drop()
    jetstream.commit(CAROL, "3during", post_record("#TheChat during the outage"))
    batch = await next_changes(gen)
    assert [c.post.remote_id for c in batch.changes] == [  # type: ignore[union-attr]
        f"at://{CAROL}/app.bsky.feed.post/3during"
    ]
    assert any(state == "reconnecting" for state, _ in ctx.states)
    assert jetstream.subscriptions[-1]["cursor"] == [before.cursor]
    await gen.aclose()


async def test_jetstream_follower_upserts_again_when_the_profile_arrives(
    http: httpx.AsyncClient, jetstream: JetstreamServer
) -> None:
    """A post is yielded at once with the DID as author, then again with the profile's name."""
    jetstream.add_account(ALICE, "alice.test", display_name="Alice <Liddell>")
    gen = follower(http, jetstream).follow(None, Ctx())
    pending = asyncio.ensure_future(next_changes(gen))
    await jetstream.wait_for_subscribers()
    jetstream.commit(ALICE, "3p", post_record("#TheChat who am I"))
    first = (await pending).changes[0]
    assert isinstance(first, Upsert) and first.post.author.handle == ALICE
    later = await next_changes(gen)
    assert isinstance(later.changes[0], Upsert)
    author = later.changes[0].post.author
    assert (author.name, author.handle, author.remote_id) == (
        "Alice <Liddell>",
        "@alice.test",
        ALICE,
    )
    assert later.changes[0].post.remote_id == first.post.remote_id
    await gen.aclose()


async def test_jetstream_follower_loads_history_when_signed_in(
    http: httpx.AsyncClient, jetstream: JetstreamServer
) -> None:
    """With an account, a first start loads tagged history by search (oldest first) before live."""
    jetstream.commit(BOB, "3old1", post_record("#TheChat old one"))
    jetstream.commit(BOB, "3untagged", post_record("#Other"))
    jetstream.commit(BOB, "3old2", post_record("old two", facets=False, tags=["thechat"]))
    session = BlueskySession(BOB, "bob.test", "access-token", "refresh-token", jetstream.http_url)
    account = AccountClient(http, session)
    ctx = Ctx()
    gen = follower(http, jetstream, account=account).follow(None, ctx)
    history = await next_changes(gen)
    assert [c.post.remote_id for c in history.changes] == [  # type: ignore[union-attr]
        f"at://{BOB}/app.bsky.feed.post/3old1",
        f"at://{BOB}/app.bsky.feed.post/3old2",
    ]
    assert history.changes[0].post.author.handle == "@bob.test"  # type: ignore[union-attr]
    request = jetstream.search_requests[0]
    assert request["authorization"] == "Bearer access-token"
    assert request["params"]["tag"] == ["TheChat"] and request["params"]["sort"] == ["latest"]
    assert ctx.notices == []
    await jetstream.wait_for_subscribers()
    jetstream.commit(ALICE, "3live", post_record("#thechat live"))
    live = await next_changes(gen)
    assert [c.post.remote_id for c in live.changes] == [  # type: ignore[union-attr]
        f"at://{ALICE}/app.bsky.feed.post/3live"
    ]
    await gen.aclose()


async def test_jetstream_follower_without_account_posts_the_notice_once(
    http: httpx.AsyncClient, jetstream: JetstreamServer
) -> None:
    """Without an account, the follower says history is unavailable, once, and still streams."""
    ctx = Ctx()
    old_cursor = str(int((time.time() - 3 * 86400) * 1_000_000))
    gen = follower(http, jetstream).follow(old_cursor, ctx)
    pending = asyncio.ensure_future(next_changes(gen))
    await jetstream.wait_for_subscribers()
    await jetstream.drop()
    await jetstream.wait_for_subscribers()
    jetstream.commit(ALICE, "3x", post_record("#TheChat x"))
    await pending
    assert ctx.notices == [NO_HISTORY_NOTICE]
    await gen.aclose()


# --- search errors ------------------------------------------------------------------------


async def test_search_posts_maps_errors(
    http: httpx.AsyncClient, jetstream: JetstreamServer
) -> None:
    """429 gives NetworkError with retry_after from ratelimit-reset; 401 AuthError; 400 rejected."""
    session = BlueskySession(BOB, "bob.test", "tok", "ref", jetstream.http_url)
    account = AccountClient(http, session)
    reset = int(time.time()) + 120
    jetstream.fail_next_search(
        429,
        {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
        {"ratelimit-reset": str(reset), "ratelimit-remaining": "0"},
    )
    with pytest.raises(NetworkError) as limited:
        await search_posts(account, TAG)
    assert limited.value.status == 429
    assert limited.value.retry_after is not None and 100 < limited.value.retry_after <= 120
    jetstream.fail_next_search(401, {"error": "AuthenticationRequired", "message": "Bad token"})
    with pytest.raises(AuthError):
        await search_posts(account, TAG)
    jetstream.fail_next_search(400, {"error": "InvalidRequest", "message": "bad since"})
    with pytest.raises(RemoteRejected, match=r"HTTP 400 \(InvalidRequest\)$"):
        await search_posts(account, TAG)
    jetstream.fail_next_search(502, {"error": "UpstreamFailure", "message": "down"})
    with pytest.raises(NetworkError) as upstream:
        await search_posts(account, TAG)
    assert not isinstance(upstream.value, AuthError | RemoteRejected)


# --- thread context -----------------------------------------------------------------------


def reply_record(text: str, parent: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """A reply record (no facets: the hashtag is left out) to the committed event ``parent``."""

    def ref(event: dict[str, Any]) -> dict[str, str]:
        return {"uri": uri_of(event), "cid": event["commit"]["cid"]}

    return post_record(
        text, facets=False, reply={"root": ref(root or parent), "parent": ref(parent)}
    )


def uri_of(event: dict[str, Any]) -> str:
    return f"at://{event['did']}/app.bsky.feed.post/{event['commit']['rkey']}"


class Run:
    """A follower running in the background; what it yielded, kept for assertions."""

    def __init__(self, gen: AsyncIterator[Batch]) -> None:
        self.batches: list[Batch] = []
        self._gen = gen
        self._task = asyncio.ensure_future(self._collect())

    async def _collect(self) -> None:
        async for batch in self._gen:
            self.batches.append(batch)

    @property
    def posts(self) -> list[Any]:
        return [c.post for b in self.batches for c in b.changes if isinstance(c, Upsert)]

    @property
    def uris(self) -> list[str]:
        return [p.remote_id for p in self.posts]

    async def until(self, check: Callable[[], bool], what: str, timeout: float = 8.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self._task.done():
                self._task.result()  # the follower stopped: show why
                raise AssertionError(f"the follower ended before {what}")
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._gen.aclose()


@contextlib.asynccontextmanager
async def running(gen: AsyncIterator[Batch]) -> AsyncIterator[Run]:
    run = Run(gen)
    try:
        yield run
    finally:
        await run.close()


async def test_untagged_replies_to_a_question_arrive_once_through_its_thread(
    http: httpx.AsyncClient, jetstream: JetstreamServer
) -> None:
    """Without an account, a question's thread comes from the public AppView: its untagged
    replies (nested too) are yielded once, flagged, threaded under what they answer, in
    batches that leave the cursor alone; tagged replies come from the stream only; hidden,
    blocked, hostile and misplaced entries are skipped; non-questions are never fetched."""
    chatter = jetstream.commit(ALICE, "3chat", post_record("just saying hi #TheChat"))
    jetstream.commit(BOB, "3chatreply", reply_record("hi back", chatter))
    gen = follower(http, jetstream, appview_url=jetstream.http_url, context_interval=0.15).follow(
        str(chatter["time_us"]), Ctx()
    )
    async with running(gen) as run:
        await jetstream.wait_for_subscribers()
        question = jetstream.commit(ALICE, "3q", post_record("Q1: what brings you here? #TheChat"))
        await run.until(lambda: uri_of(question) in run.uris, "the question")
        answer = jetstream.commit(BOB, "3a", reply_record("A1 curiosity", question))
        nested = jetstream.commit(CAROL, "3n", reply_record("A1 me too", answer, question))
        tagged = jetstream.commit(CAROL, "3t", reply_record("A1 tagged #TheChat", question))
        elsewhere = jetstream.commit(BOB, "3else", reply_record("not an answer", chatter))
        jetstream.thread_extras[uri_of(question)] = [
            {
                "$type": NOT_FOUND_POST,
                "uri": f"at://{BOB}/app.bsky.feed.post/3gone",
                "notFound": True,
            },
            {"$type": BLOCKED_POST, "uri": f"at://{BOB}/app.bsky.feed.post/3blk", "blocked": True},
            {"$type": THREAD_VIEW, "post": "not a view"},
            {"$type": THREAD_VIEW, "post": {"uri": uri_of(elsewhere), "record": {}}},
            [1, 2],
            None,
        ]
        await run.until(
            lambda: {uri_of(answer), uri_of(nested), uri_of(tagged)} <= set(run.uris),
            "the replies",
        )
        fetched = len(jetstream.thread_requests)
        await run.until(lambda: len(jetstream.thread_requests) >= fetched + 3, "later cycles")

        # The question comes again once its author's profile arrives; replies come once.
        assert set(run.uris) == {uri_of(question), uri_of(answer), uri_of(nested), uri_of(tagged)}
        assert [run.uris.count(uri_of(p)) for p in (answer, nested, tagged)] == [1, 1, 1]
        by_uri = {post.remote_id: post for post in run.posts}
        assert by_uri[uri_of(answer)].extra["thread_context"] is True
        assert by_uri[uri_of(answer)].in_reply_to == uri_of(question)
        assert by_uri[uri_of(answer)].author.handle == "@bob.test"  # from the post view
        assert by_uri[uri_of(nested)].extra["thread_context"] is True
        assert by_uri[uri_of(nested)].in_reply_to == uri_of(answer)
        assert "thread_context" not in by_uri[uri_of(tagged)].extra
        for batch in run.batches:
            if any(
                isinstance(c, Upsert) and c.post.extra.get("thread_context") for c in batch.changes
            ):
                assert batch.cursor is None
        assert {r["params"]["uri"][0] for r in jetstream.thread_requests} == {uri_of(question)}
        request = jetstream.thread_requests[0]
        assert request["params"]["depth"] == ["6"] and request["params"]["parentHeight"] == ["0"]
        assert request["authorization"] == "" and request["proxy"] is None


async def test_thread_context_goes_through_the_accounts_pds_with_the_proxy_header(
    http: httpx.AsyncClient, jetstream: JetstreamServer
) -> None:
    """With a signed-in account, threads are asked of the account's PDS with its token and
    the atproto-proxy header naming the AppView; questions found by history search count."""
    question = jetstream.commit(ALICE, "3q", post_record("Q1: history question #TheChat"))
    answer = jetstream.commit(BOB, "3a", reply_record("A1 from history", question))
    session = BlueskySession(BOB, "bob.test", "access-token", "refresh-token", jetstream.http_url)
    proxy = "did:web:appview.example#bsky_appview"
    gen = follower(
        http,
        jetstream,
        account=AccountClient(http, session),
        appview_url=None,
        appview_proxy=proxy,
        context_interval=0.1,
    ).follow(None, Ctx())
    async with running(gen) as run:
        await run.until(lambda: uri_of(answer) in run.uris, "the answer")
        (request, *_) = jetstream.thread_requests
        assert request["authorization"] == "Bearer access-token"
        assert request["proxy"] == proxy
        assert run.posts[-1].extra["thread_context"] is True


async def test_failing_thread_calls_never_stop_live_ingest(
    http: httpx.AsyncClient, jetstream: JetstreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A 429 (waited out until its ratelimit-reset), a 502 and broken JSON from getPostThread
    are logged and retried on later cycles; live posts keep arriving meanwhile."""
    gen = follower(http, jetstream, appview_url=jetstream.http_url, context_interval=0.1).follow(
        None, Ctx()
    )
    async with running(gen) as run:
        await jetstream.wait_for_subscribers()
        reset = math.ceil(time.time()) + 1
        jetstream.fail_next_thread(
            429,
            {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
            {"ratelimit-reset": str(reset), "ratelimit-remaining": "0"},
        )
        jetstream.fail_next_thread(502, {"error": "UpstreamFailure", "message": "down"})
        jetstream.fail_next_thread(200, "{not json")
        question = jetstream.commit(ALICE, "3q", post_record("Q2: still there? #TheChat"))
        answer = jetstream.commit(BOB, "3a", reply_record("A2 yes", question))
        await run.until(lambda: len(jetstream.thread_requests) >= 1, "the first thread call")
        live = jetstream.commit(ALICE, "3live", post_record("live while limited #TheChat"))
        await run.until(lambda: uri_of(live) in run.uris, "a live post during the failures")
        await run.until(lambda: uri_of(answer) in run.uris, "the answer after the failures")
        first, second = jetstream.thread_requests[:2]
        assert second["at"] >= reset - 0.05  # the 429's reset was honoured
        assert len(jetstream.thread_requests) >= 4
        assert run.uris.count(uri_of(answer)) == 1
        assert sum("not fetched" in r.message for r in caplog.records) == 3


async def test_thread_context_keeps_to_its_budget(
    http: httpx.AsyncClient, jetstream: JetstreamServer
) -> None:
    """Five questions: each cycle fetches at most CONTEXT_REQUESTS_PER_CYCLE threads, turns
    come round to every question, and a deleted question (NotFound) is not asked again."""
    interval = 0.5
    gen = follower(
        http, jetstream, appview_url=jetstream.http_url, context_interval=interval
    ).follow(None, Ctx())
    async with running(gen) as run:
        await jetstream.wait_for_subscribers()
        questions = [
            jetstream.commit(ALICE, f"3q{n}", post_record(f"Q{n}: question {n} #TheChat"))
            for n in range(1, 6)
        ]
        await run.until(lambda: len(run.uris) == 5, "the questions")
        jetstream.commit(ALICE, "3q5", operation="delete")
        await run.until(lambda: len(jetstream.thread_requests) >= 8, "three cycles", timeout=10)
        times = [r["at"] for r in jetstream.thread_requests]
        cycles: list[list[str]] = []
        cycle_start = 0.0
        for request, at in zip(jetstream.thread_requests, times, strict=True):
            if not cycles or at - cycle_start > interval / 2:
                cycles.append([])
                cycle_start = at
            cycles[-1].append(request["params"]["uri"][0])
        assert all(len(c) <= CONTEXT_REQUESTS_PER_CYCLE for c in cycles), cycles
        asked = [uri for c in cycles for uri in c]
        assert {uri_of(q) for q in questions[:4]} <= set(asked[:8])
        assert asked.count(uri_of(questions[4])) <= 1


def test_appview_proxy_setting_must_name_a_service() -> None:
    """HASHROOM_BLUESKY_APPVIEW_PROXY is a service DID and id, or empty; anything else is
    refused at start rather than sent to every PDS."""
    assert Settings(bluesky_appview_proxy="").bluesky_appview_proxy == ""
    own = "did:web:appview.example.org#bsky_appview"
    assert Settings(bluesky_appview_proxy=f" {own} ").bluesky_appview_proxy == own
    for bad in ("https://api.bsky.app", "did:web:api.bsky.app", "did:web:x#a#b", "did:web:x #a"):
        with pytest.raises(ValidationError, match="service DID and id"):
            Settings(bluesky_appview_proxy=bad)


def test_read_thread_keeps_to_the_tree_and_its_bounds() -> None:
    """read_thread returns answers parents first, bounded in depth and count; a gone root is
    None; garbage anywhere is ignored without raising."""

    def view(rkey: str, parent: str | None) -> dict[str, Any]:
        record: dict[str, Any] = {"$type": "app.bsky.feed.post", "text": rkey, "createdAt": "x"}
        if parent:
            ref = {"uri": parent, "cid": "bafy"}
            record["reply"] = {"root": ref, "parent": ref}
        return {"uri": f"at://{BOB}/app.bsky.feed.post/{rkey}", "cid": "bafy", "record": record}

    root_uri = f"at://{BOB}/app.bsky.feed.post/root"

    def chain(length: int) -> dict[str, Any]:
        node: dict[str, Any] = {"$type": THREAD_VIEW, "post": view("root", None), "replies": []}
        top, parent = node, root_uri
        for n in range(length):
            child = {"$type": THREAD_VIEW, "post": view(f"c{n}", parent), "replies": []}
            node["replies"].append(child)
            node, parent = child, child["post"]["uri"]
        return top

    deep = read_thread({"thread": chain(10)}, root_uri, depth=3)
    assert [p.text for p in deep or []] == ["c0", "c1", "c2"]
    wide = {"$type": THREAD_VIEW, "post": view("root", None)}
    wide["replies"] = [{"$type": THREAD_VIEW, "post": view(f"w{n}", root_uri)} for n in range(50)]
    wide["replies"].append(wide["replies"][0])  # the same post twice
    assert len(read_thread({"thread": wide}, root_uri, limit=10) or []) == 10
    assert len(read_thread({"thread": wide}, root_uri) or []) == 50
    assert read_thread({"thread": {"$type": NOT_FOUND_POST, "uri": root_uri}}, root_uri) is None
    assert read_thread({"thread": {"$type": BLOCKED_POST, "uri": root_uri}}, root_uri) is None
    for garbage in (None, [], "x", {"thread": []}, {"thread": {"replies": "x"}}):
        assert read_thread(garbage, root_uri) == []
    other = chain(1)
    assert read_thread({"thread": other}, f"at://{BOB}/app.bsky.feed.post/other") == []
    hostile = chain(1)
    hostile["replies"] += [{"$type": THREAD_VIEW, "post": {"uri": 5}}, {"$type": 7}, "s"]
    hostile["replies"][0]["replies"] = {"not": "a list"}
    assert [p.text for p in read_thread({"thread": hostile}, root_uri) or []] == ["c0"]


# --- firehose frames ----------------------------------------------------------------------


def test_decode_frame_reads_error_frames_and_refuses_malformed_ones() -> None:
    """Error frames decode to kind=error; garbage, text and blockless creates are FrameError."""
    error = libipld.encode_dag_cbor({"op": -1}) + libipld.encode_dag_cbor(
        {"error": "ConsumerTooSlow", "message": "Stream consumer too slow"}
    )
    frame = decode_frame(error)
    assert (frame.kind, frame.error, frame.message) == (
        "error",
        "ConsumerTooSlow",
        "Stream consumer too slow",
    )
    commit_without_blocks = libipld.encode_dag_cbor(
        {"op": 1, "t": "#commit"}
    ) + libipld.encode_dag_cbor(
        {
            "seq": 7,
            "repo": ALICE,
            "ops": [{"action": "create", "path": "app.bsky.feed.post/3k", "cid": None}],
        }
    )
    identity = libipld.encode_dag_cbor({"op": 1, "t": "#identity"}) + libipld.encode_dag_cbor(
        {"seq": 8, "did": ALICE, "handle": "alice.test"}
    )
    assert (decode_frame(identity).seq, decode_frame(identity).did) == (8, ALICE)
    for bad in (
        b"\xff\x00garbage",
        "text frame",
        libipld.encode_dag_cbor({"op": 1}),
        commit_without_blocks,
    ):
        with pytest.raises(FrameError):
            decode_frame(bad)


async def test_jetstream_follower_follows_every_tag_and_keeps_a_post_with_two_once(
    http: httpx.AsyncClient, jetstream: JetstreamServer
) -> None:
    """Several tags: history is one search per tag, merged so a post carrying two is yielded
    once; live, a post carrying any of them (facet, tags field or text) comes through."""
    jetstream.commit(BOB, "3one", post_record("#TheChat one"))
    jetstream.commit(BOB, "3two", post_record("#Second two"))
    jetstream.commit(BOB, "3both", post_record("#TheChat and #Second"))
    jetstream.commit(BOB, "3none", post_record("#Other"))
    session = BlueskySession(BOB, "bob.test", "access-token", "refresh-token", jetstream.http_url)
    resolver = IdentityResolver(http, plc_url=jetstream.http_url)
    gen = JetstreamFollower(
        http,
        jetstream.url,
        [TAG, "Second"],
        resolver,
        account=AccountClient(http, session),
        backoff_base=0.05,
        backoff_cap=0.2,
        connect=DEV_WS_CONNECT,
    ).follow(None, Ctx())
    history = await next_changes(gen)
    assert [c.post.remote_id for c in history.changes] == [  # type: ignore[union-attr]
        f"at://{BOB}/app.bsky.feed.post/{rkey}" for rkey in ("3one", "3two", "3both")
    ]
    assert [r["params"]["tag"] for r in jetstream.search_requests] == [["TheChat"], ["Second"]]
    await jetstream.wait_for_subscribers()
    jetstream.commit(ALICE, "3other", post_record("#Other live"))
    jetstream.commit(ALICE, "3live", post_record("live", facets=False, tags=["second"]))
    jetstream.commit(ALICE, "3both", post_record("#second and #thechat live"))
    live = [c.post.remote_id for c in (await next_changes(gen)).changes]  # type: ignore[union-attr]
    while len(live) < 2:
        live += [c.post.remote_id for c in (await next_changes(gen)).changes]  # type: ignore[union-attr]
    assert live == [f"at://{ALICE}/app.bsky.feed.post/{rkey}" for rkey in ("3live", "3both")]
    assert matches_tag(post_record("x #b"), ["a", "B"]) and not matches_tag({"text": "#c"}, "a")
    await gen.aclose()
