"""Bluesky against the official reference PDS: firehose and Jetstream following, publishing,
session renewal. One PDS serves the whole module; each test uses its own tag and accounts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.networks.base import Batch, Delete, NetworkError, Upsert
from app.networks.bluesky import (
    AccountClient,
    BlueskySession,
    FirehoseFollower,
    IdentityResolver,
    JetstreamFollower,
    publish,
    record_to_post,
    reply_ref,
    search_posts,
    sign_in,
)
from tests.factories import DEV_WS_CONNECT
from tests.peers.bluesky import PdsAccount, ReferencePds
from tests.peers.jetstream import JetstreamServer

pytestmark = [pytest.mark.pds, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pds() -> AsyncIterator[ReferencePds]:
    async with ReferencePds() as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client


class Ctx:
    """Records what a follower reports; ``streaming`` is set each time it (re)connects."""

    def __init__(self) -> None:
        self.states: list[tuple[str, str | None]] = []
        self.notices: list[str] = []
        self.streaming = asyncio.Event()

    def report(self, state: str, error: str | None = None) -> None:
        self.states.append((state, error))
        if state == "streaming" and error is None:
            self.streaming.set()

    def notice(self, message: str) -> None:
        self.notices.append(message)


def tag_facet(text: str, tag: str) -> dict[str, Any]:
    """A tag facet computed here, independently of the app: UTF-8 offsets of '#tag'."""
    start = text.encode().index(f"#{tag}".encode())
    return {
        "index": {"byteStart": start, "byteEnd": start + len(f"#{tag}".encode())},
        "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": tag}],
    }


class Reader:
    """Reads a follower's changes; a post Upserted again (its author's profile arrived) is
    counted once."""

    def __init__(self, gen: AsyncIterator[Batch]):
        self.gen = gen
        self.seen: set[tuple[str, str | None]] = set()
        self.last_cursor: str | None = None

    async def take(self, count: int, timeout: float = 10.0) -> list[Any]:
        changes: list[Any] = []
        async with asyncio.timeout(timeout):
            while len(changes) < count:
                batch = await anext(self.gen)
                self.last_cursor = batch.cursor or self.last_cursor
                for change in batch.changes:
                    key = (type(change).__name__, _id(change))
                    if key not in self.seen:
                        self.seen.add(key)
                        changes.append(change)
        return changes


def _id(change: Any) -> str | None:
    return change.post.remote_id if isinstance(change, Upsert) else change.remote_id


async def post_the_set(
    pds: ReferencePds, alice: PdsAccount, bob: PdsAccount, tag: str
) -> list[str]:
    """Post the three tagged shapes and an untagged post; return the tagged uris in order."""
    plain = f"Q1 is up #{tag}"
    first = await pds.post(alice, plain, facets=[tag_facet(plain, tag)])
    await pds.post(
        bob,
        "no tag here, only #something_else",
        facets=[tag_facet("no tag here, only #something_else", "something_else")],
    )
    emoji = f"👩‍👩‍👧 Ça répond: A1 #{tag.upper()}"
    second = await pds.post(bob, emoji, facets=[tag_facet(emoji, tag.upper())])
    third = await pds.post(alice, "A2 with the tag only in tags", tags=[tag])
    return [first.uri, second.uri, third.uri]


async def test_firehose_follower_reads_tagged_posts_and_deletes(
    pds: ReferencePds, http: httpx.AsyncClient
) -> None:
    """On the PDS firehose: facet, emoji-prefixed and tags-only posts come out; others do not."""
    alice = await pds.create_account("fh-alice.test")
    bob = await pds.create_account("fh-bob.test")
    resolver = IdentityResolver(http, plc_url=pds.plc_url)
    follower = FirehoseFollower(
        http, pds.pds_url, "FireTag", resolver, backoff_base=0.05, connect=DEV_WS_CONNECT
    )
    gen = follower.follow("0", Ctx())
    reader = Reader(gen)
    uris = await post_the_set(pds, alice, bob, "FireTag")
    changes = await reader.take(3)
    assert [c.post.remote_id for c in changes] == uris
    assert all(isinstance(c, Upsert) for c in changes)
    assert "👩‍👩‍👧" in changes[1].post.text
    rkey = uris[0].rsplit("/", 1)[1]
    await pds.delete(alice, rkey)
    (deleted,) = await reader.take(1)
    assert deleted == Delete(remote_id=uris[0])
    await gen.aclose()


async def test_firehose_follower_resumes_from_cursor_without_duplicates(
    pds: ReferencePds, http: httpx.AsyncClient
) -> None:
    """A follower restarted from the last cursor yields only what came after it."""
    alice = await pds.create_account("fh-resume.test")
    resolver = IdentityResolver(http, plc_url=pds.plc_url)
    first = FirehoseFollower(
        http, pds.pds_url, "ResumeTag", resolver, connect=DEV_WS_CONNECT
    ).follow("0", Ctx())
    one = await pds.post(alice, "#ResumeTag one", facets=[tag_facet("#ResumeTag one", "ResumeTag")])
    cursor = None
    async with asyncio.timeout(10):
        while cursor is None:
            batch = await anext(first)
            if any(_id(c) == one.uri for c in batch.changes):
                cursor = batch.cursor
    await first.aclose()
    two = await pds.post(alice, "#ResumeTag two", facets=[tag_facet("#ResumeTag two", "ResumeTag")])
    second = FirehoseFollower(
        http, pds.pds_url, "ResumeTag", resolver, connect=DEV_WS_CONNECT
    ).follow(cursor, Ctx())
    async with asyncio.timeout(10):
        batch = await anext(second)
        while not batch.changes:
            batch = await anext(second)
    assert [_id(c) for c in batch.changes] == [two.uri]
    assert int(batch.cursor or 0) > int(cursor or 0)
    await second.aclose()


async def test_firehose_future_cursor_restarts_live_and_profile_follows(
    pds: ReferencePds, http: httpx.AsyncClient
) -> None:
    """FutureCursor drops the cursor and goes live; the author's profile arrives in an Upsert."""
    alice = await pds.create_account("fh-future.test")
    await pds.set_profile(alice, "Alice <Future>")
    resolver = IdentityResolver(http, plc_url=pds.plc_url)
    ctx = Ctx()
    gen = FirehoseFollower(
        http, pds.pds_url, "FutureTag", resolver, backoff_base=0.05, connect=DEV_WS_CONNECT
    ).follow("99999999", ctx)
    reading = asyncio.ensure_future(anext(gen))
    async with asyncio.timeout(10):
        while not any(s == "reconnecting" and "FutureCursor" in (e or "") for s, e in ctx.states):
            await asyncio.sleep(0.02)
        ctx.streaming.clear()
        await ctx.streaming.wait()
    text = "#FutureTag live again"
    posted = await pds.post(alice, text, facets=[tag_facet(text, "FutureTag")])
    async with asyncio.timeout(10):
        batch = await reading
        while not batch.changes:
            batch = await anext(gen)
        first = batch.changes[0]
        assert isinstance(first, Upsert) and first.post.remote_id == posted.uri
        assert first.post.author.handle == alice.did  # at once, before any lookup
        profile = None
        while profile is None:
            for change in (await anext(gen)).changes:
                if isinstance(change, Upsert) and change.post.remote_id == posted.uri:
                    profile = change.post.author
    assert (profile.name, profile.handle) == ("Alice <Future>", "@fh-future.test")
    await gen.aclose()


async def test_jetstream_follower_via_relay_with_search_history(
    pds: ReferencePds, http: httpx.AsyncClient
) -> None:
    """Through a Jetstream relay of the PDS: history by search first, then live posts, deletes."""
    alice = await pds.create_account("js-alice.test")
    bob = await pds.create_account("js-bob.test")
    early_text = "#JetTag posted before we started"
    early = await pds.post(alice, early_text, facets=[tag_facet(early_text, "JetTag")])
    async with JetstreamServer(upstream=pds.pds_url) as jetstream:
        session = await sign_in(
            http,
            "js-bob.test",
            await pds.create_app_password(bob),
            service=pds.pds_url,
            plc_url=pds.plc_url,
        )
        account = AccountClient(http, session)
        resolver = IdentityResolver(http, plc_url=pds.plc_url)
        async with asyncio.timeout(10):  # the relay has caught up with the early post
            while not any(e.get("commit", {}).get("rkey") == early.rkey for e in jetstream.log):
                await asyncio.sleep(0.02)
        follower = JetstreamFollower(
            http,
            jetstream.url,
            "JetTag",
            resolver,
            account=account,
            search_service=jetstream.http_url,
            connect=DEV_WS_CONNECT,
        )
        gen = follower.follow(None, Ctx())
        reader = Reader(gen)
        (history,) = await reader.take(1)
        assert history.post.remote_id == early.uri
        assert history.post.author.handle == "@js-alice.test"
        assert jetstream.search_requests[0]["authorization"] == f"Bearer {session.access_jwt}"
        await jetstream.wait_for_subscribers()
        uris = await post_the_set(pds, alice, bob, "JetTag")
        changes = await reader.take(3)
        assert [c.post.remote_id for c in changes] == uris
        await pds.delete(bob, uris[1].rsplit("/", 1)[1])
        (deleted,) = await reader.take(1)
        assert deleted == Delete(remote_id=uris[1])
        await gen.aclose()


async def test_publish_reply_lands_with_byte_exact_facets_and_thread(
    pds: ReferencePds, http: httpx.AsyncClient
) -> None:
    """publish() makes a reply the PDS stores with #tag/mention facets and the right root/parent."""
    host = await pds.create_account("pub-host.test")
    guest = await pds.create_account("pub-guest.test")
    me = await pds.create_account("pub-me.test")
    root_text = "Q1 of tonight #PubTag"
    root = await pds.post(host, root_text, facets=[tag_facet(root_text, "PubTag")])
    root_ref = {"uri": root.uri, "cid": root.cid}
    answer = await pds.post(guest, "A1 #PubTag", reply={"root": root_ref, "parent": root_ref})
    parent = record_to_post(guest.did, answer.rkey, answer.cid, answer.record)

    session = await sign_in(
        http,
        "pub-me.test",
        await pds.create_app_password(me),
        service=pds.pds_url,
        plc_url=pds.plc_url,
    )
    client = AccountClient(http, session)
    text = "🎉 Très bien @pub-host.test! #PubTag https://example.org/x."
    made = await publish(client, text, reply_to=reply_ref(parent), langs=["fr"])

    stored = await pds.get_record(made.remote_id)
    value = stored["value"]
    assert stored["cid"] == made.extra["cid"]
    assert value["text"] == text and value["langs"] == ["fr"]
    assert value["reply"] == {"root": root_ref, "parent": {"uri": answer.uri, "cid": answer.cid}}
    slices = {
        f["features"][0]["$type"].rsplit("#", 1)[1]: text.encode()[
            f["index"]["byteStart"] : f["index"]["byteEnd"]
        ]
        for f in value["facets"]
    }
    assert slices == {
        "tag": b"#PubTag",
        "mention": b"@pub-host.test",
        "link": b"https://example.org/x",
    }
    mention = next(f for f in value["facets"] if f["features"][0]["$type"].endswith("#mention"))
    assert mention["features"][0]["did"] == host.did
    assert made.in_reply_to == answer.uri and made.thread_root == root.uri
    assert value["createdAt"].endswith("Z")


async def test_account_client_renews_the_session_instead_of_signing_in_again(
    pds: ReferencePds,
) -> None:
    """An expired access token is renewed with refreshSession; createSession runs only once."""
    calls: list[str] = []

    async def count(request: httpx.Request) -> None:
        calls.append(request.url.path.rsplit("/", 1)[-1])

    account = await pds.create_account("sess-me.test")
    password = await pds.create_app_password(account)
    async with httpx.AsyncClient(timeout=10.0, event_hooks={"request": [count]}) as http:
        session = await sign_in(
            http, "sess-me.test", password, service=pds.pds_url, plc_url=pds.plc_url
        )
        stored: list[BlueskySession] = []
        expired = replace(session, access_jwt=ReferencePds.expired_copy(session.access_jwt))
        # The PDS itself says ExpiredToken (no early renewal): the client renews and retries.
        client = AccountClient(http, expired, on_session=stored.append, refresh_margin=None)
        first = await publish(client, "renewed on demand #SessTag")
        # Renewal ahead of expiry, from the token's own exp claim.
        ahead = AccountClient(
            http,
            replace(
                client.session, access_jwt=ReferencePds.expired_copy(client.session.access_jwt)
            ),
        )
        second = await publish(ahead, "renewed ahead #SessTag")
    assert calls.count("com.atproto.server.createSession") == 1
    assert calls.count("com.atproto.server.refreshSession") == 2
    assert calls.count("com.atproto.repo.createRecord") == 3  # one refused as expired, two made
    assert len(stored) == 1 and stored[0].access_jwt != expired.access_jwt
    for made in (first, second):
        assert (await pds.get_record(made.remote_id))["value"]["text"] == made.text


async def test_search_through_a_pds_without_appview_fails_cleanly(
    pds: ReferencePds, http: httpx.AsyncClient
) -> None:
    """searchPosts via a PDS with no AppView raises NetworkError; the follower streams anyway."""
    me = await pds.create_account("nosearch.test")
    session = await sign_in(
        http,
        "nosearch.test",
        await pds.create_app_password(me),
        service=pds.pds_url,
        plc_url=pds.plc_url,
    )
    account = AccountClient(http, session)
    resolver = IdentityResolver(http, plc_url=pds.plc_url)
    ctx = Ctx()
    gen = FirehoseFollower(
        http, pds.pds_url, "NoSearch", resolver, account=account, connect=DEV_WS_CONNECT
    ).follow(None, ctx)
    reading = asyncio.ensure_future(anext(gen))
    async with asyncio.timeout(10):
        while not any((e or "").startswith("history search failed") for _, e in ctx.states):
            await asyncio.sleep(0.02)
    text = "#NoSearch still live"
    posted = await pds.post(me, text, facets=[tag_facet(text, "NoSearch")])
    async with asyncio.timeout(10):
        batch = await reading
        while not batch.changes:
            batch = await anext(gen)
    assert _id(batch.changes[0]) == posted.uri
    with pytest.raises(NetworkError):
        await search_posts(account, "NoSearch")
    await gen.aclose()
