"""Connecting clients served from memory: the recent frames and cached snapshot of a chat
that has viewers (app/catchup.py), against a real server and real websocket clients."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.factories import LiveClient, create_chat, post

pytestmark = pytest.mark.timeout(90)


async def _catchup(server: Any) -> dict[str, int]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        return (await http.get("/healthz")).json()["catchup"]


def _texts(snapshot: dict[str, Any]) -> list[str]:
    return [item["post"]["text"] for item in snapshot["posts"]]


@pytest.mark.db  # also on PostgreSQL (make test-pg)
async def test_new_viewers_of_a_watched_chat_are_served_without_database_reads(server):
    """Once a chat has a viewer, thirty more opening the room at once get the same snapshot
    (with every post) while the database is read at most a few times, not once per client;
    a post made after the snapshot was built still reaches a newcomer, exactly once, right
    after the snapshot."""
    chat = await create_chat(server.url)
    slug = chat["slug"]
    for i in range(5):
        await post(server.url, slug, f"early {i}")
    first = await LiveClient.open(server.ws_url, slug)
    snap = await first.next()
    assert snap["type"] == "snapshot" and snap["offset"] == 5
    before = await _catchup(server)

    crowd = await asyncio.gather(*(LiveClient.open(server.ws_url, slug) for _ in range(30)))
    snaps = [await c.next() for c in crowd]
    after = await _catchup(server)
    assert after["clients"] - before["clients"] == 30
    # A snapshot lives a second; a slow machine may rebuild it once or twice meanwhile.
    assert after["database_reads"] - before["database_reads"] <= 3, (before, after)
    for s in snaps:
        assert s["type"] == "snapshot" and s["reset"] is False and s["offset"] == 5
        assert _texts(s) == _texts(snap)
        assert [t.split(" #")[0] for t in _texts(s)] == [f"early {i}" for i in range(4, -1, -1)]

    # The cached snapshot is now older than the chat: a newcomer gets it, then the post.
    made = await post(server.url, slug, "late")
    await first.until(lambda f: f["type"] == "post")
    late = await LiveClient.open(server.ws_url, slug)
    frames = [await late.next(), await late.next()]
    assert frames[0]["type"] == "snapshot"
    if frames[0]["offset"] == 5:  # the cached one (not yet a second old)
        assert frames[1]["type"] == "post" and frames[1]["offset"] == 6
        assert frames[1]["post"]["id"] == made["id"]
    else:  # rebuilt: the post is in it, and nothing is sent twice
        assert frames[0]["offset"] == 6 and _texts(frames[0])[0].startswith("late")
        assert frames[1]["type"] != "post" or frames[1]["offset"] > 6
    for c in (first, late, *crowd):
        await c.close()


@pytest.mark.db  # also on PostgreSQL (make test-pg)
async def test_a_resume_within_the_recent_frames_reads_nothing_and_misses_nothing(server):
    """A client that dropped and comes back with its offset gets exactly the frames it
    missed, in order, from memory, while another viewer keeps the chat watched."""
    chat = await create_chat(server.url)
    slug, epoch = chat["slug"], chat["chat"]["epoch"]
    watcher = await LiveClient.open(server.ws_url, slug)
    await watcher.next()
    for i in range(3):
        await post(server.url, slug, f"seen {i}")
    leaver = await LiveClient.open(server.ws_url, slug)
    # A snapshot (perhaps the one cached at offset 0, then the three posts after it).
    seen = (await leaver.next())["offset"]
    while seen < 3:
        seen = (await leaver.next())["offset"]
    assert seen == 3
    await leaver.close()
    for i in range(7):
        await post(server.url, slug, f"missed {i}")
    for _ in range(7 + 3):
        await watcher.until(lambda f: f["type"] == "post")
    before = await _catchup(server)
    back = await LiveClient.open(server.ws_url, slug, after=seen, epoch=epoch)
    missed = [await back.next() for _ in range(7)]
    after = await _catchup(server)
    assert [f["offset"] for f in missed] == list(range(seen + 1, seen + 8))
    assert [f["post"]["text"].split(" #")[0] for f in missed] == [f"missed {i}" for i in range(7)]
    assert after["database_reads"] == before["database_reads"]
    await post(server.url, slug, "live again")
    live = await back.next()
    assert live["offset"] == seen + 8 and live["post"]["text"].startswith("live again")
    await back.close()
    await watcher.close()


async def test_a_chat_nobody_watched_is_read_afresh(server):
    """When the last viewer leaves, the chat's frames stop being kept: posts made while
    nobody watched are in the next viewer's snapshot, and one frame further back than the
    frames kept is replayed from the log."""
    chat = await create_chat(server.url)
    slug = chat["slug"]
    a = await LiveClient.open(server.ws_url, slug)
    await a.next()
    await post(server.url, slug, "while watched")
    await a.until(lambda f: f["type"] == "post")
    await a.close()
    await asyncio.sleep(0.3)  # the server notices the close
    await post(server.url, slug, "while nobody watched")
    b = await LiveClient.open(server.ws_url, slug)
    snap = await b.next()
    assert snap["offset"] == 2
    assert [t.split(" #")[0] for t in _texts(snap)] == ["while nobody watched", "while watched"]
    c = await LiveClient.open(server.ws_url, slug, after=0, epoch=chat["chat"]["epoch"])
    replay = [await c.next(), await c.next()]
    assert [f["offset"] for f in replay] == [1, 2]
    for x in (b, c):
        await x.close()


async def test_recent_frames_are_bounded_and_older_resumes_come_from_the_log(make_server):
    """With room for 4 frames in memory, a client 10 behind still gets all 10 in order (the
    log is read for it)."""
    server = make_server(HASHROOM_WS_RECENT_FRAMES="4")
    chat = await create_chat(server.url)
    slug, epoch = chat["slug"], chat["chat"]["epoch"]
    watcher = await LiveClient.open(server.ws_url, slug)
    await watcher.next()
    for i in range(10):
        await post(server.url, slug, f"p{i}")
    for _ in range(10):
        await watcher.until(lambda f: f["type"] == "post")
    before = await _catchup(server)
    late = await LiveClient.open(server.ws_url, slug, after=0, epoch=epoch)
    frames = [await late.next() for _ in range(10)]
    after = await _catchup(server)
    assert [f["offset"] for f in frames] == list(range(1, 11))
    assert after["database_reads"] > before["database_reads"]
    near = await LiveClient.open(server.ws_url, slug, after=7, epoch=epoch)
    assert [(await near.next())["offset"] for _ in range(3)] == [8, 9, 10]
    assert (await _catchup(server))["database_reads"] == after["database_reads"]
    for x in (watcher, late, near):
        await x.close()
