"""The live room against a real server: fan-out, resume, moderation, origins, restarts."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from app.networks.demo import load_transcript
from tests.factories import LiveClient, create_chat, eventually, post
from tests.server import OPERATOR_HEADERS

pytestmark = pytest.mark.timeout(60)


@pytest.mark.db  # also on PostgreSQL (make test-pg)
async def test_two_clients_receive_a_post_made_through_the_api(server):
    """Both connected clients get the same post frame, with the hashtag appended."""
    chat = await create_chat(server.url)
    a = await LiveClient.open(server.ws_url, chat["slug"])
    b = await LiveClient.open(server.ws_url, chat["slug"])
    assert (await a.next())["type"] == "snapshot"
    assert (await b.next())["type"] == "snapshot"
    made = await post(server.url, chat["slug"], "Hello room")
    assert made["text"] == "Hello room #edchat"
    fa = await a.until(lambda f: f["type"] == "post")
    fb = await b.until(lambda f: f["type"] == "post")
    assert fa == fb
    async with httpx.AsyncClient(base_url=server.url) as http:
        health = (await http.get("/healthz")).json()
    # Both are served by the direct write path (no coroutine per frame per client).
    assert health["clients"] == 2 and health["clients_direct"] == 2
    assert fa["post"]["id"] == made["id"] and fa["offset"] == 1
    assert fa["epoch"] == chat["chat"]["epoch"]
    assert 'id="post-' in fa["html"]
    await a.close()
    await b.close()


@pytest.mark.db  # also on PostgreSQL (make test-pg)
async def test_resume_after_offset_gets_exactly_the_missed_events(server):
    """A client reconnecting with `after` while writers race it receives every missed event
    once, in order, then live ones (test_live_windows forces a commit into the window)."""
    chat = await create_chat(server.url)
    slug = chat["slug"]
    first = await LiveClient.open(server.ws_url, slug)
    await first.next()
    for i in range(3):
        await post(server.url, slug, f"before {i}")
    seen = [await first.until(lambda f: f["type"] == "post") for _ in range(3)]
    last = seen[-1]["offset"]
    await first.close()

    for i in range(5):
        await post(server.url, slug, f"missed {i}")

    # Keep writing while the client connects; whether an event lands between subscription
    # and history read here is luck, so test_live_windows forces that case with a hook.
    async def writer() -> None:
        for i in range(20):
            await post(server.url, slug, f"racing {i}")

    writing = asyncio.create_task(writer())
    again = await LiveClient.open(server.ws_url, slug, after=last, epoch=chat["chat"]["epoch"])
    await writing
    await post(server.url, slug, "after all")
    frames = []
    while True:
        frame = await again.next()
        frames.append(frame)
        if frame["type"] == "post" and frame["post"]["text"].startswith("after all"):
            break
    offsets = [f["offset"] for f in frames]
    assert [f["type"] for f in frames] == ["post"] * len(frames)
    assert offsets == list(range(last + 1, last + 1 + len(frames))), offsets
    assert len(frames) == 5 + 20 + 1
    await again.close()


async def test_other_epoch_or_far_behind_gets_a_reset_snapshot(make_server):
    """An unknown epoch, or an offset too far behind, yields a snapshot flagged reset."""
    server = make_server(HASHROOM_WS_REPLAY_LIMIT="3")
    chat = await create_chat(server.url)
    slug = chat["slug"]
    for i in range(5):
        await post(server.url, slug, f"p{i}")
    stale = await LiveClient.open(server.ws_url, slug, after=1, epoch="not-this-one")
    snap = await stale.next()
    assert snap["type"] == "snapshot" and snap["reset"] is True and snap["offset"] == 5
    assert [p["post"]["text"] for p in snap["posts"]][0] == "p4 #edchat"
    behind = await LiveClient.open(server.ws_url, slug, after=1, epoch=chat["chat"]["epoch"])
    snap = await behind.next()
    assert snap["type"] == "snapshot" and snap["reset"] is True
    near = await LiveClient.open(server.ws_url, slug, after=3, epoch=chat["chat"]["epoch"])
    assert [(await near.next())["offset"] for _ in range(2)] == [4, 5]
    for c in (stale, behind, near):
        await c.close()


async def test_moderator_pin_and_hide_reach_every_client(server):
    """Pins and hides made with the moderator key are pushed to all clients."""
    chat = await create_chat(server.url)
    slug, key = chat["slug"], chat["moderator_key"]
    a = await LiveClient.open(server.ws_url, slug)
    b = await LiveClient.open(server.ws_url, slug)
    await a.next()
    await b.next()
    target = await post(server.url, slug, "pin me")
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=server.url, headers=auth) as http:
        assert (await http.put(f"/api/chats/{slug}/pins/{target['id']}")).status_code == 200
        assert (await http.put(f"/api/chats/{slug}/hidden/{target['id']}")).status_code == 200
        q = await http.post(f"/api/chats/{slug}/questions", json={"text": "Q1: What brings you?"})
        assert q.status_code == 201
        assert q.json()["text"] == "Q1: What brings you? #edchat"
        snapshot = (await http.get(f"/api/chats/{slug}")).json()
    for client in (a, b):
        pin = await client.until(lambda f: f["type"] == "pin")
        assert pin["post"]["id"] == target["id"]
        hide = await client.until(lambda f: f["type"] == "hide")
        assert hide["post_id"] == target["id"]
        qpin = await client.until(lambda f: f["type"] == "pin")
        assert qpin["pin"]["is_question"] is True and qpin["post"]["question"] == 1
    assert [p["post"]["question"] for p in snapshot["pins"]] == [1]  # the hidden one is gone
    await a.close()
    await b.close()


async def test_moderator_actions_refused_without_or_with_a_wrong_key(server):
    """No key → 401, another chat's key → 403; nothing changes."""
    one = await create_chat(server.url, "one")
    two = await create_chat(server.url, "two")
    target = await post(server.url, one["slug"], "x")
    url = f"/api/chats/{one['slug']}/pins/{target['id']}"
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.put(url)).status_code == 401
        wrong = {"Authorization": f"Bearer {two['moderator_key']}"}
        r = await http.put(url, headers=wrong)
        assert r.status_code == 403 and "does not belong" in r.json()["detail"]
        r = await http.put(f"/api/chats/{one['slug']}/hidden/{target['id']}", headers=wrong)
        assert r.status_code == 403
        r = await http.post(f"/api/chats/{one['slug']}/questions", json={"text": "Q9: no"})
        assert r.status_code == 401
        state = (await http.get(f"/api/chats/{one['slug']}")).json()
        events = (await http.get(f"/api/chats/{one['slug']}/events")).json()
    assert state["pins"] == []
    assert [e["type"] for e in events["events"]] == ["post"]


async def test_foreign_origin_is_refused(server):
    """A websocket upgrade from another site's page is rejected before any data flows."""
    chat = await create_chat(server.url)
    with pytest.raises(InvalidStatus) as refused:
        await LiveClient.open(server.ws_url, chat["slug"], origin="https://evil.example")
    assert refused.value.response.status_code == 403


async def test_bad_posts_get_clear_errors_and_store_nothing(server):
    """Empty, over-limit and unknown-parent posts are refused with a message; nothing stored."""
    chat = await create_chat(server.url)
    slug = chat["slug"]
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.post(f"/api/chats/{slug}/posts", json={"text": "   ", "author": "A"})
        assert r.status_code == 422 and "empty" in r.json()["detail"]
        r = await http.post(f"/api/chats/{slug}/posts", json={"text": "x" * 495, "author": "A"})
        assert r.status_code == 422 and "limit is 500" in r.json()["detail"]
        r = await http.post(f"/api/chats/{slug}/posts", json={"text": "hi", "author": ""})
        assert r.status_code == 422 and "display name" in r.json()["detail"]
        r = await http.post(
            f"/api/chats/{slug}/posts", json={"text": "hi", "author": "A", "in_reply_to": 999}
        )
        assert r.status_code == 404
        r = await http.post("/api/chats", json={"hashtag": "#no spaces", "title": "t"})
        assert r.status_code == 422 and "hashtag" in r.json()["detail"]
        r = await http.post(f"/api/chats/{slug}/posts", content=b"{not json")
        assert r.status_code == 422
        events = (await http.get(f"/api/chats/{slug}/events")).json()
    assert events["events"] == [] and events["head"] == 0


async def test_reply_carries_in_reply_to_and_grapheme_limit(server):
    """A reply links to its parent; 500 graphemes of emoji (not code points) fit."""
    chat = await create_chat(server.url)
    slug = chat["slug"]
    parent = await post(server.url, slug, "Q1: favourite tool?", author="Host")
    reply = await post(server.url, slug, "A1 a trowel", author="Ann", in_reply_to=parent["id"])
    assert reply["in_reply_to"] == {"id": parent["id"], "handle": "@host"}
    family = "👨‍👩‍👧‍👦"  # one grapheme, seven code points
    text = family * (500 - len(" #edchat"))
    made = await post(server.url, slug, text)
    assert made["text"].endswith(" #edchat")


async def test_restart_resumes_the_ingester_without_gap_or_duplicate(make_server):
    """Stop the server mid-replay; after restart the demo continues from the stored cursor."""
    server = make_server(HASHROOM_DEMO_ENABLED="true", HASHROOM_DEMO_SPEED="40")

    async def head_at_least(n: int) -> dict | None:
        async with httpx.AsyncClient(base_url=server.url) as http:
            page = (await http.get("/api/chats/demo/events?limit=1000")).json()
        return page if page["head"] >= n else None

    head = (await eventually(lambda: head_at_least(20), "20 demo events"))["head"]
    server.kill()  # a crash: no graceful shutdown
    server.start()
    page = await eventually(lambda: head_at_least(head + 20), "20 more events after restart")
    async with httpx.AsyncClient(base_url=server.url) as http:
        health = (await http.get("/healthz", headers=OPERATOR_HEADERS)).json()
    posts = [e["post"] for e in page["events"] if e["type"] == "post"]
    ids = [p["remote_id"] for p in posts]
    assert len(ids) == len(set(ids)), "a post was stored twice"
    transcript = load_transcript()
    expected = []
    for i, entry in enumerate(transcript.posts[: len(ids)]):
        if entry.repost_of is None:
            expected.append(f"demo:0:{i}")
        else:
            by = transcript.authors[entry.by].handle.casefold()
            expected.append(f"demo:0:{entry.repost_of}#repost:{by}")
    assert ids == expected, "the replay skipped or repeated posts"
    assert [e["offset"] for e in page["events"]] == list(range(1, len(page["events"]) + 1))
    assert health["ingesters"][0]["state"] in ("replaying", "starting")


def _ws_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split unmasked server-to-client websocket frames into (opcode, payload)."""
    frames, i = [], 0
    while i + 2 <= len(data):
        opcode, length = data[i] & 0x0F, data[i + 1] & 0x7F
        i += 2
        if length == 126:
            length, i = int.from_bytes(data[i : i + 2], "big"), i + 2
        elif length == 127:
            length, i = int.from_bytes(data[i : i + 8], "big"), i + 8
        frames.append((opcode, data[i : i + length]))
        i += length
    return frames


async def test_slow_client_is_dropped_without_slowing_others(make_server):
    """A client that stops reading is disconnected (1013) once its backlog overflows;
    a reading client keeps receiving every frame in order meanwhile."""
    import base64
    import os
    import socket

    server = make_server(
        HASHROOM_DEMO_ENABLED="true", HASHROOM_DEMO_SPEED="400", HASHROOM_WS_CLIENT_BUFFER="16"
    )
    # The reading client never lets its library's queue stop reading the socket, even while
    # this test is busy asking /healthz: only the stalled client may fall behind.
    fast = await LiveClient.open(server.ws_url, "demo", max_queue=None)
    snap = await fast.next()
    # A raw client with a tiny receive window that completes the handshake, then never reads.
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    stalled.sendall(
        (
            f"GET /api/chats/demo/live HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: {server.url}\r\n\r\n"
        ).encode()
    )
    offsets = [snap["offset"]]
    async with httpx.AsyncClient(base_url=server.url) as http:
        async with asyncio.timeout(45):
            while True:
                for _ in range(100):
                    offsets.append((await fast.until(lambda f: f["type"] == "post"))["offset"])
                if (await http.get("/healthz")).json()["clients"] == 1:
                    break
    assert offsets[1:] == list(range(offsets[1], offsets[1] + len(offsets) - 1))
    # Now drain the stalled socket: what was buffered, then the server's close frame.
    stalled.settimeout(15)
    data = b""
    while chunk := stalled.recv(1 << 20):
        data += chunk
    stalled.close()
    body = data.split(b"\r\n\r\n", 1)[1]
    closes = [payload for opcode, payload in _ws_frames(body) if opcode == 0x8]
    assert closes and int.from_bytes(closes[0][:2], "big") == 1013
    await fast.close()


async def test_a_client_outrun_during_replay_rereads_the_log_without_loss(make_server):
    """A client whose replay is outrun (more new events arrive than the buffer holds while it
    is still reading history) is not dropped: it re-reads the log, then follows live, every
    offset exactly once."""
    import socket

    from websockets.asyncio.client import connect

    server = make_server(
        HASHROOM_DEMO_ENABLED="true",
        HASHROOM_DEMO_SPEED="1500",
        HASHROOM_WS_CLIENT_BUFFER="8",
        HASHROOM_WS_REPLAY_LIMIT="100000",
        HASHROOM_LOG_LEVEL="DEBUG",
    )
    # History well past the kernel's socket buffers (up to 4 MB on loopback; a demo frame is
    # about 1.5 KB), so the replay really stalls on the slow reader.
    async with httpx.AsyncClient(base_url=server.url) as http:
        for _ in range(800):
            head = (await http.get("/api/chats/demo/events?limit=1")).json()["head"]
            if head >= 6000:
                break
            await asyncio.sleep(0.05)
    # A small receive window and a pause before reading: the replay stalls on the socket
    # while the demo keeps publishing, so the catch-up buffer overflows.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    conn = await connect(
        f"{server.ws_url}/api/chats/demo/live?after=0",
        origin=server.url,
        sock=sock,
        max_size=None,
        max_queue=1,
    )
    await asyncio.sleep(1.5)
    offsets: list[int] = []
    outrun = False
    async with asyncio.timeout(30):
        # The replay chases a head that moves at 1,500 events/s; read until it has caught
        # up, re-read the log and gone live, and well past where the history was.
        while len(offsets) < head + 600 or not outrun:
            frame = json.loads(await conn.recv())
            if frame["type"] != "ping":
                offsets.append(frame["offset"])
            if len(offsets) % 500 == 0:
                outrun = "re-reads the log" in server.log_path.read_text(errors="replace")
    await conn.close()
    assert offsets == list(range(1, len(offsets) + 1))
    assert outrun, "the replay was never outrun"
