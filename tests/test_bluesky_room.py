"""Bluesky in the room, end to end: the app as a subprocess following the official reference
PDS (its firehose, or Jetstream relaying it), posting through a signed-in account, backfill,
restarts, and a room that follows Mastodon and Bluesky at once."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.config import DEV_SECRET
from app.networks.bluesky import NO_HISTORY_NOTICE
from app.outbound import OutboundPolicy
from app.security import Vault
from app.sources.bluesky import normalize_service, normalize_stream_url
from tests.browser import CHROMIUM, LAUNCH_ARGS, PageErrors, axe_violations, describe
from tests.factories import LiveClient
from tests.peers.bluesky import PdsAccount, ReferencePds
from tests.peers.jetstream import JetstreamServer
from tests.peers.mastodon import MastodonPeer
from tests.server import ServerProcess, free_port, need_tool

pytestmark = pytest.mark.timeout(60)
# One reference PDS serves the module; async tests share its event loop.
on_pds_loop = pytest.mark.asyncio(loop_scope="module")

POST = "app.bsky.feed.post"
# A 1×1 transparent PNG, for an image embed.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pds() -> AsyncIterator[ReferencePds]:
    async with ReferencePds() as server:
        yield server


def start_app(make_server: Callable[..., ServerProcess], pds: ReferencePds, **env: str) -> Any:
    """The app, resolving identities on the PDS's PLC directory, with no AppView (unless
    ``env`` names one)."""
    settings = {
        "HASHROOM_BLUESKY_PLC_URL": pds.plc_url,
        "HASHROOM_BLUESKY_APPVIEW_URL": "",
        "HASHROOM_BLUESKY_APPVIEW_PROXY": "",
        "HASHROOM_BACKOFF_BASE": "0.05",
        "HASHROOM_BACKOFF_CAP": "0.5",
    }
    return make_server(**(settings | env))


def firehose_url(pds: ReferencePds) -> str:
    return pds.pds_url.replace("http://", "ws://") + "/xrpc/com.atproto.sync.subscribeRepos"


def tag_facet(text: str, tag: str) -> dict[str, Any]:
    """A tag facet computed here, independently of the app: UTF-8 offsets of '#tag'."""
    start = text.encode().index(f"#{tag}".encode())
    return {
        "index": {"byteStart": start, "byteEnd": start + len(f"#{tag}".encode())},
        "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": tag}],
    }


async def create_chat(server: Any, hashtag: str, *sources: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        r = await http.post(
            "/api/chats", json={"hashtag": hashtag, "title": f"#{hashtag}", "sources": sources}
        )
    assert r.status_code == 201, r.text
    return r.json()


async def create_record(pds: ReferencePds, account: PdsAccount, record: dict[str, Any]) -> Any:
    data = await pds.xrpc(
        "POST",
        "com.atproto.repo.createRecord",
        account=account,
        body={"repo": account.did, "collection": POST, "record": {"$type": POST, **record}},
    )
    return data


class Room:
    """What one live client shows: posts by id, kept up to date from its frames."""

    def __init__(self, client: LiveClient) -> None:
        self.client = client
        self.posts: dict[int, dict[str, Any]] = {}
        self.html: dict[int, str] = {}
        self.notices: list[str] = []

    @classmethod
    async def open(cls, server: Any, chat: dict[str, Any]) -> Room:
        """Replays the room from its first event (notices are not part of a snapshot)."""
        epoch = chat["chat"]["epoch"]
        return cls(await LiveClient.open(server.ws_url, chat["slug"], after=0, epoch=epoch))

    def apply(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "snapshot":
            for item in frame["posts"]:
                self.posts[item["post"]["id"]] = item["post"]
                self.html[item["post"]["id"]] = item["html"]
        elif kind in ("post", "update", "unhide"):
            self.posts[frame["post"]["id"]] = frame["post"]
            self.html[frame["post"]["id"]] = frame["html"]
        elif kind in ("delete", "hide"):
            self.posts.pop(frame["post_id"], None)
        elif kind == "notice":
            self.notices.append(frame["text"])

    async def wait(self, predicate: Callable[[Room], Any], timeout: float = 15.0) -> Any:
        """Apply frames until ``predicate(self)`` is truthy; returns its value."""
        async with asyncio.timeout(timeout):
            while not (found := predicate(self)):
                self.apply(await self.client.next(timeout))
        return found

    def by_uri(self, uri: str) -> dict[str, Any] | None:
        return next((p for p in self.posts.values() if p["remote_id"] == uri), None)

    async def post(self, uri: str, check: Callable[[dict[str, Any]], bool] = bool) -> Any:
        """Wait for the post ``uri`` to be shown (and to satisfy ``check``)."""
        return await self.wait(lambda r: (p := r.by_uri(uri)) is not None and check(p) and p)

    async def close(self) -> None:
        await self.client.close()


async def post_the_set(
    pds: ReferencePds, alice: PdsAccount, bob: PdsAccount, tag: str
) -> tuple[list[str], str]:
    """Tagged posts of three shapes and one without the tag; the tagged uris and the other."""
    plain = f"Q1 is up #{tag}"
    first = await pds.post(alice, plain, facets=[tag_facet(plain, tag)])
    untagged = await pds.post(bob, "no tag here, only #elsewhere")
    emoji = f"👩‍👩‍👧 Ça répond: A1 #{tag.upper()}"
    second = await pds.post(bob, emoji, facets=[tag_facet(emoji, tag.upper())])
    third = await pds.post(alice, "A2 with the tag only in tags", tags=[tag])
    return [first.uri, second.uri, third.uri], untagged.uri


@pytest.mark.pds
@on_pds_loop
async def test_firehose_room_shows_tagged_posts_threads_quotes_images_and_deletes(
    pds: ReferencePds, make_server: Any
) -> None:
    """Following the PDS firehose: tagged posts (facet, emoji first, tags only) appear live
    with their authors, replies thread, quotes and image alt texts show, others stay out, a
    delete removes the post; without an account the room says history is unavailable."""
    server = start_app(make_server, pds)
    alice = await pds.create_account("room-alice.test")
    bob = await pds.create_account("room-bob.test")
    await pds.set_profile(alice, "Alice <b>Host</b>")
    chat = await create_chat(
        server, "FireRoom", {"network": "bluesky", "stream": "firehose", "url": firehose_url(pds)}
    )
    assert chat["chat"]["network"] == "bluesky"
    room = await Room.open(server, chat)
    await room.wait(lambda r: NO_HISTORY_NOTICE in r.notices)  # the stream is connected

    uris, untagged = await post_the_set(pds, alice, bob, "FireRoom")
    for uri in uris:
        await room.post(uri)
    first = await room.post(uris[0], lambda p: p["author"]["name"] == "Alice <b>Host</b>")
    assert first["author"]["handle"] == "@room-alice.test" and first["network"] == "bluesky"
    assert "Alice &lt;b&gt;Host&lt;/b&gt;" in room.html[first["id"]]
    assert 'class="badge net net-bluesky"' in room.html[first["id"]]
    assert "👩‍👩‍👧" in room.by_uri(uris[1])["text"]
    assert room.by_uri(uris[2])["text"] == "A2 with the tag only in tags"

    q_ref = {"uri": uris[0], "cid": (await pds.get_record(uris[0]))["cid"]}
    reply_text = "A1 small groups #FireRoom"
    reply = await pds.post(
        bob,
        reply_text,
        facets=[tag_facet(reply_text, "FireRoom")],
        reply={"root": q_ref, "parent": q_ref},
    )

    async def quote_post(text: str, ref: dict[str, str]) -> dict[str, Any]:
        return await create_record(
            pds,
            bob,
            {
                "text": text,
                "facets": [tag_facet(text, "FireRoom")],
                "embed": {"$type": "app.bsky.embed.record", "record": ref},
                "createdAt": "2024-05-01T10:00:00.000Z",
            },
        )

    quote = await quote_post("This question! #FireRoom", q_ref)  # quoted post in the room
    outside = await pds.get_record(untagged)  # quoted post only on its author's PDS
    quote_out = await quote_post(
        "Seen elsewhere #FireRoom", {"uri": untagged, "cid": outside["cid"]}
    )
    blob = (
        await pds.http.post(
            f"{pds.pds_url}/xrpc/com.atproto.repo.uploadBlob",
            content=PNG,
            headers={**alice.auth, "Content-Type": "image/png"},
        )
    ).json()["blob"]
    image_text = "My answer in a picture #FireRoom"
    image = await create_record(
        pds,
        alice,
        {
            "text": image_text,
            "facets": [tag_facet(image_text, "FireRoom")],
            "embed": {
                "$type": "app.bsky.embed.images",
                "images": [{"image": blob, "alt": "A whiteboard saying <yes>"}],
            },
            "createdAt": "2024-05-01T10:00:01.000Z",
        },
    )
    threaded = await room.post(reply.uri)
    assert threaded["in_reply_to"]["id"] == first["id"]
    assert threaded["in_reply_to"]["handle"] == "@room-alice.test"
    quoting = await room.post(quote["uri"])
    assert quoting["quote"]["text"] == "Q1 is up #FireRoom"
    assert quoting["quote"]["author"] == "Alice <b>Host</b>"
    assert "Q1 is up #FireRoom" in room.html[quoting["id"]]
    assert "Alice &lt;b&gt;Host&lt;/b&gt;" in room.html[quoting["id"]]
    quoting = await room.post(quote_out["uri"])
    assert quoting["quote"]["text"] == "no tag here, only #elsewhere"
    assert "room-bob.test" in quoting["quote"]["author"]
    assert quoting["quote"]["url"].startswith("https://bsky.app/profile/did:plc:")
    pictured = await room.post(image["uri"])
    (media,) = pictured["media"]
    assert media["alt"] == "A whiteboard saying <yes>" and media["kind"] == "image"
    assert 'alt="A whiteboard saying &lt;yes&gt;"' in room.html[pictured["id"]]

    await pds.delete(bob, uris[1].rsplit("/", 1)[1])
    deleted = room.by_uri(uris[1])["id"]
    await room.wait(lambda r: any(f["type"] == "delete" for f in r.client.frames))
    frame = next(f for f in room.client.frames if f["type"] == "delete")
    assert frame["post_id"] == deleted and room.by_uri(uris[1]) is None
    assert room.by_uri(untagged) is None
    assert not any(p["remote_id"] == untagged for p in room.posts.values())
    await room.close()


@pytest.mark.pds
@on_pds_loop
async def test_jetstream_room_backfills_by_search_then_follows_the_relay(
    pds: ReferencePds, make_server: Any
) -> None:
    """A Jetstream source signed in with an app password shows earlier posts (searchPosts
    through the signed-in session) at creation, then live posts relayed from the PDS."""
    alice = await pds.create_account("jsroom-alice.test")
    bob = await pds.create_account("jsroom-bob.test")
    early_text = "Posted before the chat existed #JetRoom"
    early = await pds.post(alice, early_text, facets=[tag_facet(early_text, "JetRoom")])
    password = await pds.create_app_password(bob)
    async with JetstreamServer(upstream=pds.pds_url) as jetstream:
        async with asyncio.timeout(10):  # the relay has caught up with the early post
            while not any(e.get("commit", {}).get("rkey") == early.rkey for e in jetstream.log):
                await asyncio.sleep(0.02)
        server = start_app(make_server, pds)
        chat = await create_chat(
            server,
            "JetRoom",
            {
                "network": "bluesky",
                "stream": "jetstream",
                "url": jetstream.url,
                "search_service": jetstream.http_url,
                "service": pds.pds_url,
                "identifier": "jsroom-bob.test",
                "app_password": password,
            },
        )
        room = await Room.open(server, chat)
        backfilled = await room.post(early.uri)
        assert backfilled["text"] == early_text
        assert backfilled["author"]["handle"] == "@jsroom-alice.test"
        (search,) = jetstream.search_requests
        assert search["authorization"].startswith("Bearer ") and search["params"]["tag"] == [
            "JetRoom"
        ]

        uris, untagged = await post_the_set(pds, alice, bob, "JetRoom")
        for uri in uris:
            await room.post(uri)
        await pds.delete(alice, uris[0].rsplit("/", 1)[1])
        gone = room.by_uri(uris[0])["id"]
        await room.wait(lambda r: r.by_uri(uris[0]) is None)
        assert any(f["type"] == "delete" and f["post_id"] == gone for f in room.client.frames)
        assert room.by_uri(untagged) is None and NO_HISTORY_NOTICE not in room.notices
        await room.close()


def jwt_claims(authorization: str) -> dict[str, Any]:
    """The claims of a ``Bearer`` JWT, unverified (the test only reads who made it for whom)."""
    payload = authorization.removeprefix("Bearer ").split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.mark.pds
@on_pds_loop
async def test_untagged_answer_reaches_the_room_through_the_accounts_pds(
    pds: ReferencePds, make_server: Any
) -> None:
    """An answer that dropped the hashtag appears threaded under its question: the question's
    thread is asked of the signed-in account's PDS, which (told by the atproto-proxy header)
    forwards it with a service token to the AppView; the answer is stored once."""
    alice = await pds.create_account("ctx-alice.test")
    bob = await pds.create_account("ctx-bob.test")
    password = await pds.create_app_password(bob)
    async with JetstreamServer(upstream=pds.pds_url) as jetstream:
        server = start_app(
            make_server,
            pds,
            HASHROOM_BLUESKY_APPVIEW_PROXY=f"{jetstream.appview_did}#bsky_appview",
            HASHROOM_BLUESKY_CONTEXT_INTERVAL="0.3",
        )
        chat = await create_chat(
            server,
            "CtxRoom",
            {
                "network": "bluesky",
                "stream": "jetstream",
                "url": jetstream.url,
                "service": pds.pds_url,
                "identifier": "ctx-bob.test",
                "app_password": password,
            },
        )
        room = await Room.open(server, chat)
        await jetstream.wait_for_subscribers()
        text = "Q1: which editor do you use? #CtxRoom"
        question = await pds.post(alice, text, facets=[tag_facet(text, "CtxRoom")])
        asked = await room.post(question.uri)
        ref = {"uri": question.uri, "cid": question.cid}
        answer = await pds.post(bob, "A1 a plain one, no tag", reply={"root": ref, "parent": ref})
        shown = await room.post(answer.uri)
        assert shown["in_reply_to"]["id"] == asked["id"]
        assert shown["text"] == "A1 a plain one, no tag"

        request = jetstream.thread_requests[0]
        assert request["params"]["uri"] == [question.uri]
        claims = jwt_claims(request["authorization"])  # minted by the PDS, not by Hashroom
        assert claims["iss"].startswith(bob.did) and claims["aud"] == jetstream.appview_did
        assert claims["lxm"] == "app.bsky.feed.getPostThread"
        count = len(jetstream.thread_requests)
        async with asyncio.timeout(10):  # later cycles find the answer again
            while len(jetstream.thread_requests) < count + 2:
                await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=server.url) as http:
            items = (await http.get(f"/api/chats/{chat['slug']}/posts")).json()["items"]
        uris = [i["post"]["remote_id"] for i in items]
        assert sorted(uris) == sorted([question.uri, answer.uri])
        await room.close()


@pytest.mark.pds
@on_pds_loop
async def test_restart_resumes_from_the_cursor_without_duplicates(
    pds: ReferencePds, make_server: Any
) -> None:
    """A post made while the server is down arrives after the restart (the stored firehose
    cursor is used), the post seen before is not stored or announced again, and deleting it
    still removes it (the restarted follower is told the room's post ids)."""
    server = start_app(make_server, pds)
    alice = await pds.create_account("restart-alice.test")
    chat = await create_chat(
        server,
        "RestartRoom",
        {"network": "bluesky", "stream": "firehose", "url": firehose_url(pds)},
    )
    slug = chat["slug"]
    room = await Room.open(server, chat)
    await room.wait(lambda r: NO_HISTORY_NOTICE in r.notices)
    text = "before the restart #RestartRoom"
    before = await pds.post(alice, text, facets=[tag_facet(text, "RestartRoom")])
    await room.post(before.uri, lambda p: p["author"]["handle"] == "@restart-alice.test")
    await room.close()
    server.stop()

    text = "while the server was down #RestartRoom"
    during = await pds.post(alice, text, facets=[tag_facet(text, "RestartRoom")])
    server.start()
    room = await Room.open(server, chat)
    await room.post(during.uri)
    first_id = room.by_uri(before.uri)["id"]
    await pds.delete(alice, before.rkey)
    await room.wait(lambda r: r.by_uri(before.uri) is None)
    async with httpx.AsyncClient(base_url=server.url) as http:
        items = (await http.get(f"/api/chats/{slug}/posts")).json()["items"]
        events = (await http.get(f"/api/chats/{slug}/events", params={"limit": 1000})).json()
    assert [i["post"]["remote_id"] for i in items] == [during.uri]
    announced = [e["post"]["remote_id"] for e in events["events"] if e["type"] == "post"]
    assert sorted(announced) == sorted([before.uri, during.uri])
    deletes = [e["post_id"] for e in events["events"] if e["type"] == "delete"]
    assert deletes == [first_id]
    await room.close()


def stored_account_secret(database_url: str, account_id: int) -> dict[str, Any]:
    with sqlite3.connect(database_url.removeprefix("sqlite:///")) as db:
        (sealed,) = db.execute("SELECT secret FROM account WHERE id = ?", (account_id,)).fetchone()
    return Vault(DEV_SECRET).open(sealed)


def replace_account_secret(database_url: str, account_id: int, secret: dict[str, Any]) -> None:
    with sqlite3.connect(database_url.removeprefix("sqlite:///")) as db:
        db.execute(
            "UPDATE account SET secret = ? WHERE id = ?",
            (Vault(DEV_SECRET).seal(secret), account_id),
        )


@pytest.mark.pds
@on_pds_loop
async def test_reply_from_hashroom_lands_on_the_pds_threaded_with_facets(
    pds: ReferencePds, make_server: Any
) -> None:
    """Signed in with an app password (only the session is stored, renewed when expired), a
    reply posted through Hashroom lands on the PDS with byte-exact facets, the right root and
    parent, shows at once as pending and is reconciled when the firehose delivers it."""
    # A wider batch window: the pending copy is stored before the stream's copy arrives.
    server = start_app(make_server, pds, HASHROOM_INGEST_BATCH_WINDOW="0.3")
    host = await pds.create_account("reply-host.test")
    guest = await pds.create_account("reply-guest.test")
    me = await pds.create_account("reply-me.test")
    chat = await create_chat(
        server, "ReplyRoom", {"network": "bluesky", "stream": "firehose", "url": firehose_url(pds)}
    )
    slug = chat["slug"]
    room = await Room.open(server, chat)
    await room.wait(lambda r: NO_HISTORY_NOTICE in r.notices)
    q_text = "Q1 what helps? #ReplyRoom"
    q = await pds.post(host, q_text, facets=[tag_facet(q_text, "ReplyRoom")])
    q_ref = {"uri": q.uri, "cid": q.cid}
    a = await pds.post(
        guest, "A1 sleep #ReplyRoom", tags=["ReplyRoom"], reply={"root": q_ref, "parent": q_ref}
    )
    answer = await room.post(a.uri)

    password = await pds.create_app_password(me)
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        refused = await http.post(
            "/api/accounts",
            json={
                "network": "bluesky",
                "service": pds.pds_url,
                "identifier": "reply-me.test",
                "app_password": "aaaa-bbbb-cccc-dddd",
            },
        )
        assert refused.status_code == 401, refused.text
        main_password = await http.post(
            "/api/accounts",
            json={"network": "bluesky", "identifier": "reply-me.test", "app_password": me.password},
        )
        assert main_password.status_code == 422 and "app password" in main_password.json()["detail"]
        r = await http.post(
            "/api/accounts",
            json={
                "network": "bluesky",
                "service": pds.pds_url,
                "identifier": "@Reply-Me.test",
                "app_password": password,
                "langs": ["fr"],
            },
        )
        assert r.status_code == 201, r.text
        account = r.json()
        assert account["handle"] == "@reply-me.test" and account["instance"] == pds.pds_url
        stored = stored_account_secret(server.database_url, account["id"])
        assert password not in json.dumps(stored) and stored["did"] == me.did
        # Age the access token: the next post must renew the session, not sign in again.
        expired = ReferencePds.expired_copy(stored["accessJwt"])
        replace_account_secret(server.database_url, account["id"], {**stored, "accessJwt": expired})

        text = "🎉 Très bien @reply-host.test! More: https://example.org/x."
        sent = {"text": text, "account_id": account["id"], "in_reply_to": answer["id"]}
        auth = {"Authorization": f"Bearer {account['key']}", "Idempotency-Key": "reply-1"}
        made, again = await asyncio.gather(  # a double submit makes one post
            http.post(f"/api/chats/{slug}/posts", json=sent, headers=auth),
            http.post(f"/api/chats/{slug}/posts", json=sent, headers=auth),
        )
        assert made.status_code == again.status_code == 201, (made.text, again.text)
        pending = made.json()
        assert again.json()["id"] == pending["id"]
        too_long = await http.post(
            f"/api/chats/{slug}/posts",
            json={"text": "é" * 295, "account_id": account["id"]},
            headers={"Authorization": f"Bearer {account['key']}"},
        )
    assert pending["pending"] is True and pending["network"] == "bluesky"
    assert pending["in_reply_to"]["id"] == answer["id"]
    assert too_long.status_code == 422 and "300" in too_long.json()["detail"]

    final = text + " #ReplyRoom"
    record = await pds.get_record(pending["remote_id"])
    value = record["value"]
    assert value["text"] == final and value["langs"] == ["fr"]
    assert value["reply"] == {"root": q_ref, "parent": {"uri": a.uri, "cid": a.cid}}
    slices = {
        f["features"][0]["$type"].rsplit("#", 1)[1]: final.encode()[
            f["index"]["byteStart"] : f["index"]["byteEnd"]
        ]
        for f in value["facets"]
    }
    assert slices == {
        "tag": b"#ReplyRoom",
        "mention": b"@reply-host.test",
        "link": b"https://example.org/x",
    }
    mention = next(f for f in value["facets"] if f["features"][0]["$type"].endswith("#mention"))
    assert mention["features"][0]["did"] == host.did

    reconciled = await room.post(pending["remote_id"], lambda p: p["pending"] is False)
    assert reconciled["id"] == pending["id"]
    shown = [
        f for f in room.client.frames if f.get("post", {}).get("remote_id") == pending["remote_id"]
    ]
    assert shown[0]["type"] == "post" and shown[0]["post"]["pending"] is True
    assert [p["remote_id"] for p in room.posts.values()].count(pending["remote_id"]) == 1
    mine = await pds.xrpc(
        "GET", "com.atproto.repo.listRecords", params={"repo": me.did, "collection": POST}
    )
    assert [r["uri"] for r in mine["records"]] == [pending["remote_id"]]
    renewed = stored_account_secret(server.database_url, account["id"])
    # (An access token renewed within the second it was issued may equal the first one.)
    assert renewed["accessJwt"] != expired
    assert renewed["refreshJwt"] != stored["refreshJwt"] and renewed["langs"] == ["fr"]

    async with httpx.AsyncClient(base_url=server.url) as http:
        gone = await http.delete(
            f"/api/accounts/{account['id']}", headers={"Authorization": f"Bearer {account['key']}"}
        )
    assert gone.status_code == 204
    ended = await pds.http.post(
        f"{pds.pds_url}/xrpc/com.atproto.server.refreshSession",
        headers={"Authorization": f"Bearer {renewed['refreshJwt']}"},
    )
    assert ended.status_code in (400, 401), ended.text  # signing out ended the session
    await room.close()


@pytest.mark.pds
@on_pds_loop
async def test_one_room_follows_mastodon_and_bluesky(pds: ReferencePds, make_server: Any) -> None:
    """A chat with a Mastodon and a Bluesky source shows posts from both, each with its badge."""
    carol = await pds.create_account("mixed-carol.test")
    async with MastodonPeer(domain="mixed.example") as peer:
        toot = peer.publish("dana", "A1 from the fediverse", tags=["MixRoom"])
        server = start_app(make_server, pds)
        chat = await create_chat(
            server,
            "MixRoom",
            {
                "network": "mastodon",
                "instance": peer.url,
                "access_token": peer.create_user_token("reader"),
            },
            {"network": "bluesky", "stream": "firehose", "url": firehose_url(pds)},
        )
        room = await Room.open(server, chat)
        await room.wait(lambda r: NO_HISTORY_NOTICE in r.notices)
        text = "A1 from the atmosphere #MixRoom"
        sky = await pds.post(carol, text, facets=[tag_facet(text, "MixRoom")])
        from_bluesky = await room.post(sky.uri)
        from_mastodon = await room.post(toot["uri"])
        await room.close()
    assert (from_mastodon["network"], from_bluesky["network"]) == ("mastodon", "bluesky")
    assert "net-mastodon" in room.html[from_mastodon["id"]]
    assert "net-bluesky" in room.html[from_bluesky["id"]]


@on_pds_loop
async def test_bad_bluesky_sources_and_sign_ins_are_refused_clearly(make_server: Any) -> None:
    """Wrong stream kinds, non-loopback ws://, http URLs, firehose paths, dead streams and
    main passwords get a 422 naming the field to fix."""
    server = make_server()
    dead = f"ws://127.0.0.1:{free_port()}/subscribe"
    cases = [
        ({"stream": "rss"}, "stream: use one of jetstream, firehose"),
        ({"url": "https://jetstream.example/subscribe"}, "url: use a wss:// address"),
        ({"url": "ws://jetstream.example/subscribe"}, "only accepted for a server on this machine"),
        ({"stream": "firehose"}, "url: a firehose source needs its address"),
        ({"stream": "firehose", "url": "wss://relay.example/feed"}, "subscribeRepos"),
        ({"url": "wss://jetstream.example/subscribe?cursor=1"}, "without a query"),
        ({"url": dead}, "url: cannot open the stream"),
        ({"url": dead, "identifier": "alice.example", "app_password": "hunter2"}, "app_password"),
    ]
    async with httpx.AsyncClient(base_url=server.url) as http:
        for fields, message in cases:
            r = await http.post(
                "/api/chats",
                json={
                    "hashtag": "Bad",
                    "title": "Bad",
                    "sources": [{"network": "bluesky", **fields}],
                },
            )
            assert r.status_code == 422 and message in r.json()["detail"], (fields, r.text)
        r = await http.post(
            "/api/accounts",
            json={"network": "bluesky", "identifier": "alice@example.org", "app_password": "x"},
        )
        assert r.status_code == 422 and "identifier" in r.json()["detail"]


PRODUCTION_POLICY = OutboundPolicy()
DEV_POLICY = OutboundPolicy(allow_private=True)


def test_stream_and_service_addresses_are_normalised() -> None:
    """Bare hosts get their endpoint path; private addresses are refused in production."""
    assert normalize_stream_url("wss://js.example", "jetstream", policy=PRODUCTION_POLICY) == (
        "wss://js.example/subscribe"
    )
    assert normalize_stream_url("WSS://Relay.Example/", "firehose", policy=PRODUCTION_POLICY) == (
        "wss://relay.example/xrpc/com.atproto.sync.subscribeRepos"
    )
    assert normalize_stream_url("ws://localhost:8/subscribe", "jetstream", policy=DEV_POLICY) == (
        "ws://localhost:8/subscribe"
    )
    for address in ("wss://10.0.0.5/subscribe", "ws://127.0.0.1/subscribe"):
        with pytest.raises(ValueError, match="not a public address|use wss:"):
            normalize_stream_url(address, "jetstream", policy=PRODUCTION_POLICY)
    assert normalize_service("https://pds.example/", "service", policy=PRODUCTION_POLICY) == (
        "https://pds.example"
    )
    with pytest.raises(ValueError, match="without a path"):
        normalize_service("https://pds.example/xrpc", "service", policy=PRODUCTION_POLICY)


def pds_call(pds: ReferencePds, method: str, nsid: str, token: str = "", **kw: Any) -> Any:
    """A synchronous XRPC call to the PDS (the browser test runs outside the event loop)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.request(method, f"{pds.pds_url}/xrpc/{nsid}", headers=headers, timeout=10, **kw)
    assert r.status_code == 200, f"{nsid}: {r.status_code} {r.text}"
    return r.json()


@pytest.mark.pds
@pytest.mark.browser
@on_pds_loop
async def test_sign_in_with_bluesky_in_the_composer_and_reply(
    pds: ReferencePds, make_server: Any
) -> None:
    """In Chromium: the composer's "Sign in with Bluesky" form shows a refused app password
    clearly, signs in with a good one (which never reaches the page or its cookies), and a
    reply posted from the composer lands on the PDS threaded and shows in the room."""
    need_tool(Path(CHROMIUM).exists(), "apt-get install -y chromium")
    server = start_app(make_server, pds)
    # Playwright's synchronous API runs its own loop: it gets a thread of its own, and this
    # module's loop keeps serving the PDS meanwhile.
    await asyncio.to_thread(sign_in_and_reply, pds, server)


def sign_in_and_reply(pds: ReferencePds, server: Any) -> None:
    from playwright.sync_api import sync_playwright

    accounts = {}
    for name in ("web-host", "web-me"):
        accounts[name] = pds_call(
            pds,
            "POST",
            "com.atproto.server.createAccount",
            json={
                "handle": f"{name}.test",
                "email": f"{name}@example.test",
                "password": f"pw-{name}",
            },
        )
    me = accounts["web-me"]
    password = pds_call(
        pds, "POST", "com.atproto.server.createAppPassword", me["accessJwt"], json={"name": "web"}
    )["password"]
    created = httpx.post(
        f"{server.url}/api/chats",
        json={
            "hashtag": "WebRoom",
            "title": "Web room",
            "sources": [{"network": "bluesky", "stream": "firehose", "url": firehose_url(pds)}],
        },
        timeout=20,
    )
    assert created.status_code == 201, created.text
    slug = created.json()["slug"]
    for _ in range(100):  # the room's stream is connected once it has posted its notice
        events = httpx.get(f"{server.url}/api/chats/{slug}/events").json()["events"]
        if any(e["type"] == "notice" for e in events):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the room's stream did not connect")
    host = accounts["web-host"]
    q_text = "Q1 which browser? #WebRoom"
    q = pds_call(
        pds,
        "POST",
        "com.atproto.repo.createRecord",
        host["accessJwt"],
        json={
            "repo": host["did"],
            "collection": POST,
            "record": {
                "$type": POST,
                "text": q_text,
                "facets": [tag_facet(q_text, "WebRoom")],
                "createdAt": "2024-05-01T10:00:00.000Z",
            },
        },
    )

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS
        )
        page = browser.new_context(locale="de-DE").new_page()
        page.set_default_timeout(10_000)
        errors = PageErrors()
        errors.attach(page)
        page.goto(f"{server.url}/c/{slug}")
        q1 = page.locator("#feed article.post", has_text="Q1 which browser?")
        q1.wait_for()
        page.click("#bluesky-signin")
        page.fill("#bluesky-identifier", "web-me.test")
        page.click("#bluesky-signin-panel summary")
        page.fill("#bluesky-service", pds.pds_url)
        page.fill("#bluesky-password", "aaaa-bbbb-cccc-dddd")
        violations = axe_violations(page)
        assert violations == [], describe(violations)
        page.click("#bluesky-continue")
        page.wait_for_selector("#post-as-error:has-text('Could not sign in')")
        page.fill("#bluesky-password", password)
        page.press("#bluesky-password", "Enter")
        page.wait_for_selector("#post-as-status:has-text('Signed in as @web-me.test')")
        assert (
            page.locator("#post-as-select option:checked").inner_text() == "@web-me.test (Bluesky)"
        )
        assert page.locator("#bluesky-signin-panel").is_hidden()
        assert password not in page.content()
        assert not [c for c in page.context.cookies() if password in c["value"]]

        page.click(f"#post-{q1.get_attribute('data-id')} .act-reply")
        page.fill("#post-text", "A1 this one")
        page.click("#post-submit")
        reply = page.locator("#feed article.post.is-reply:not(.is-pending)", has_text="A1 this one")
        reply.wait_for()
        assert reply.get_attribute("data-reply-to") == q1.get_attribute("data-id")
        records = pds_call(
            pds,
            "GET",
            "com.atproto.repo.listRecords",
            params={"repo": me["did"], "collection": POST},
        )["records"]
        (record,) = records
        assert record["value"]["text"] == "A1 this one #WebRoom"
        assert record["value"]["reply"]["parent"] == {"uri": q["uri"], "cid": q["cid"]}
        assert record["value"]["langs"] == ["de-DE"]
        assert errors.exceptions == [], errors.exceptions
        browser.close()
