"""Each chat as a Bluesky custom feed: the did:web document, the skeleton of the chat's stored
posts (paging, hidden excluded, pinned first), and the feed record written to the reference
PDS by a moderator signed in with Bluesky, read back, and removed."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.peers.bluesky import ReferencePds
from tests.test_bluesky_room import Room, create_chat, firehose_url, start_app, tag_facet

PUBLIC = "https://feeds.hashroom.test"
SERVICE_DID = "did:web:feeds.hashroom.test"
SKELETON = "/xrpc/app.bsky.feed.getFeedSkeleton"

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pds() -> AsyncIterator[ReferencePds]:
    async with ReferencePds() as server:
        yield server


async def test_did_document_names_the_service_or_says_what_to_set(make_server: Any) -> None:
    """/.well-known/did.json is a did:web document whose id matches the public URL's host
    (a port percent-encoded) with one BskyFeedGenerator service at that URL; without a
    public URL it is 404 naming HASHROOM_PUBLIC_URL."""
    for public, did in (
        (PUBLIC, SERVICE_DID),
        ("https://Chat.Example.org:8443/", "did:web:chat.example.org%3A8443"),
    ):
        server = make_server(HASHROOM_PUBLIC_URL=public)
        async with httpx.AsyncClient(base_url=server.url) as http:
            doc = (await http.get("/.well-known/did.json")).json()
            described = (await http.get("/xrpc/app.bsky.feed.describeFeedGenerator")).json()
        assert doc["@context"][0] == "https://www.w3.org/ns/did/v1"
        assert doc["id"] == did and described == {"did": did, "feeds": []}
        (service,) = doc["service"]
        assert service == {
            "id": "#bsky_fg",
            "type": "BskyFeedGenerator",
            "serviceEndpoint": public.rstrip("/"),
        }
        server.stop()
    server = make_server()
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.get("/.well-known/did.json")
    assert r.status_code == 404 and "HASHROOM_PUBLIC_URL" in r.json()["detail"]


async def skeleton_pages(
    http: httpx.AsyncClient, feed: str, limit: int
) -> tuple[list[str], list[str | None]]:
    """Every post of the feed, following cursors; and the cursors seen."""
    uris: list[str] = []
    cursors: list[str | None] = []
    cursor: str | None = None
    for _ in range(20):
        params = {"feed": feed, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        r = await http.get(SKELETON, params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["feed"]) <= limit
        uris += [item["post"] for item in page["feed"]]
        cursor = page.get("cursor")
        cursors.append(cursor)
        if cursor is None:
            return uris, cursors
    raise AssertionError("the feed never stopped paging")


async def test_feed_skeleton_pages_through_the_chats_posts_and_publishes_to_the_pds(
    pds: ReferencePds, make_server: Any
) -> None:
    """The skeleton lists the chat's visible Bluesky posts, pinned question first, newest
    after, in pages with cursors and no repeats; hidden posts never appear; bad limits,
    cursors and feeds get XRPC errors. A moderator signed in with Bluesky publishes the
    feed record (read back from the PDS), the feed answers under its real URI, and removing
    it deletes the record."""
    server = start_app(make_server, pds, HASHROOM_PUBLIC_URL=PUBLIC)
    alice = await pds.create_account("feed-alice.test")
    host = await pds.create_account("feed-host.test")
    chat = await create_chat(
        server,
        "FeedRoom",
        {"network": "bluesky", "stream": "firehose", "url": firehose_url(pds)},
    )
    slug = chat["slug"]
    room = await Room.open(server, chat)
    q_text = "Q1 what do you read? #FeedRoom"
    question = await pds.post(host, q_text, facets=[tag_facet(q_text, "FeedRoom")])
    answers = []
    for n in range(6):
        text = f"A1 book number {n} #FeedRoom"
        answers.append(await pds.post(alice, text, facets=[tag_facet(text, "FeedRoom")]))
    shown = {uri: await room.post(uri) for uri in [question.uri, *(a.uri for a in answers)]}
    await room.close()

    mod = {"Authorization": f"Bearer {chat['moderator_key']}"}
    own_feed = f"at://{SERVICE_DID}/app.bsky.feed.generator/{slug[:15]}"
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        hidden = answers[2].uri
        r = await http.put(f"/api/chats/{slug}/hidden/{shown[hidden]['id']}", headers=mod)
        assert r.status_code == 200, r.text
        r = await http.put(f"/api/chats/{slug}/pins/{shown[question.uri]['id']}", headers=mod)
        assert r.status_code == 200, r.text

        uris, cursors = await skeleton_pages(http, own_feed, limit=2)
        newest_first = [a.uri for a in reversed(answers) if a.uri != hidden]
        assert uris == [question.uri, *newest_first]
        assert len(set(uris)) == len(uris) and hidden not in uris
        # Six posts, two a page: three full pages (each with a cursor), then an empty one.
        assert len(cursors) == 4 and cursors[-1] is None

        for params, words in (
            ({"feed": own_feed, "limit": "0"}, "limit"),
            ({"feed": own_feed, "limit": "101"}, "limit"),
            ({"feed": own_feed, "cursor": "not-a-cursor"}, "cursor"),
            ({"feed": "at://did:plc:nobody/app.bsky.feed.post/x"}, "feed"),
        ):
            r = await http.get(SKELETON, params=params)
            assert r.status_code == 400 and r.json()["error"] == "InvalidRequest", r.text
            assert words in r.json()["message"]
        r = await http.get(
            SKELETON, params={"feed": "at://did:plc:nobody/app.bsky.feed.generator/x"}
        )
        assert r.status_code == 400 and r.json()["error"] == "UnknownFeed"

    me = await pds.create_account("feed-mod.test")
    password = await pds.create_app_password(me)
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as stranger:
        r = await stranger.put(f"/api/chats/{slug}/feed", json={"account_id": 1})
        assert r.status_code == 401, r.text
    async with httpx.AsyncClient(base_url=server.url, timeout=20, follow_redirects=True) as browser:
        page = await browser.get(f"/c/{slug}", params={"key": chat["moderator_key"]})
        csrf = {"X-CSRF-Token": re.search(r'data-csrf="([^"]+)"', page.text)[1]}  # type: ignore[index]
        r = await browser.post(
            "/api/accounts",
            json={
                "network": "bluesky",
                "service": pds.pds_url,
                "identifier": "feed-mod.test",
                "app_password": password,
            },
            headers=csrf,
        )
        assert r.status_code == 201, r.text
        account_id = r.json()["id"]
        assert (await browser.get(f"/api/chats/{slug}/feed")).json() == {"feed": None}

        r = await browser.put(
            f"/api/chats/{slug}/feed", json={"account_id": account_id}, headers=csrf
        )
        assert r.status_code == 200, r.text
        feed = r.json()["feed"]
        rkey = slug[:15]
        assert feed["uri"] == f"at://{me.did}/app.bsky.feed.generator/{rkey}"
        assert feed["url"] == f"https://bsky.app/profile/{me.did}/feed/{rkey}"
        record = (await pds.get_record(feed["uri"]))["value"]
        assert record["$type"] == "app.bsky.feed.generator"
        assert record["did"] == SERVICE_DID
        assert record["displayName"] == "#FeedRoom"
        assert f"{PUBLIC}/c/{slug}" in record["description"]
        assert record["createdAt"].endswith("Z")

        described = (await browser.get("/xrpc/app.bsky.feed.describeFeedGenerator")).json()
        assert described == {"did": SERVICE_DID, "feeds": [{"uri": feed["uri"]}]}
        first = (await browser.get(SKELETON, params={"feed": feed["uri"], "limit": "3"})).json()
        assert [i["post"] for i in first["feed"]][:2] == [question.uri, answers[-1].uri]

        r = await browser.delete(
            f"/api/chats/{slug}/feed", params={"account_id": account_id}, headers=csrf
        )
        assert r.status_code == 204, r.text
        did, collection, key = feed["uri"].removeprefix("at://").split("/")
        gone = await browser.get(
            f"{pds.pds_url}/xrpc/com.atproto.repo.getRecord",
            params={"repo": did, "collection": collection, "rkey": key},
        )
        assert gone.status_code == 400 and "RecordNotFound" in gone.text
        assert (await browser.get(f"/api/chats/{slug}/feed")).json() == {"feed": None}
        r = await browser.get(SKELETON, params={"feed": feed["uri"]})
        assert r.status_code == 400 and r.json()["error"] == "UnknownFeed"
