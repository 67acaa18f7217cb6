"""Live websocket edges against a real server: the connect window forced open, refusals with
their status and message, idle pings, and the demo ingester's cursor committed with its posts."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.factories import LiveClient, create_chat, eventually, post

pytestmark = pytest.mark.timeout(60)


async def test_a_post_committed_while_a_client_connects_reaches_it(make_server):
    """An event committed after a client's history was read but before it went live is
    delivered (the hub subscription precedes the history read): the hook holds the
    connection in exactly that window until the post commits."""
    server = make_server(HASHROOM_TEST_LIVE_HOLD_AFTER_HISTORY="20")
    chat = await create_chat(server.url)
    slug, epoch = chat["slug"], chat["chat"]["epoch"]
    for i in range(3):
        await post(server.url, slug, f"before {i}")

    fresh = await LiveClient.open(server.ws_url, slug)
    snap = await fresh.next()
    assert snap["type"] == "snapshot" and snap["offset"] == 3
    made = await post(server.url, slug, "in the window")  # the server is holding now
    frame = await fresh.until(lambda f: f["type"] == "post")
    assert (frame["offset"], frame["post"]["id"]) == (4, made["id"])

    resuming = await LiveClient.open(server.ws_url, slug, after=2, epoch=epoch)
    assert [(await resuming.next())["offset"] for _ in range(2)] == [3, 4]  # the replay
    made = await post(server.url, slug, "in the replay window")
    frame = await resuming.until(lambda f: f["type"] == "post")
    assert (frame["offset"], frame["post"]["id"]) == (5, made["id"])
    assert (await fresh.until(lambda f: f["type"] == "post"))["offset"] == 5
    for client in (fresh, resuming):
        await client.close()


async def _refusal(url: str, origin: str) -> tuple[int, str]:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, origin=origin):  # type: ignore[arg-type]
            pass
    response = refused.value.response
    return response.status_code, json.loads(bytes(response.body))["detail"]


async def test_refused_upgrades_say_why(server):
    """A foreign Origin gets 403, an unknown chat 404 and a bad `after` 400, each with a
    message; the room's own Origin (or none, for non-browser clients) is let in."""
    chat = await create_chat(server.url)
    live = f"{server.ws_url}/api/chats/{chat['slug']}/live"
    status, detail = await _refusal(live, "https://evil.example")
    assert status == 403 and "foreign origin" in detail
    status, detail = await _refusal(live.replace(chat["slug"], "nochat"), server.url)
    assert status == 404 and "nochat" in detail
    status, detail = await _refusal(f"{live}?after=-1", server.url)
    assert status == 400 and "after must be a non-negative integer" in detail
    status, detail = await _refusal(f"{live}?after=x", server.url)
    assert status == 400
    async with connect(live, origin=server.url) as ws:  # type: ignore[arg-type]
        assert json.loads(await ws.recv())["type"] == "snapshot"
    async with connect(live) as ws:  # no Origin header at all
        assert json.loads(await ws.recv())["type"] == "snapshot"


async def test_an_idle_connection_gets_pings_between_posts(make_server):
    """With nothing to send, the server pings every HASHROOM_WS_PING_INTERVAL seconds;
    a post still arrives in between, and the pings carry no offset."""
    server = make_server(HASHROOM_WS_PING_INTERVAL="0.2")
    chat = await create_chat(server.url)
    async with connect(f"{server.ws_url}/api/chats/{chat['slug']}/live", origin=server.url) as ws:
        assert json.loads(await ws.recv())["type"] == "snapshot"
        kinds = []
        async with asyncio.timeout(10):
            while kinds.count("ping") < 2:
                kinds.append(json.loads(await ws.recv())["type"])
            await post(server.url, chat["slug"], "between pings")
            while "post" not in kinds:
                frame = json.loads(await ws.recv())
                kinds.append(frame["type"])
                assert frame["type"] in ("ping", "post"), frame
                if frame["type"] == "ping":
                    assert set(frame) == {"type"}
        assert kinds[:2] == ["ping", "ping"]


def _demo_state(db_url: str) -> tuple[str | None, int]:
    """(the demo source's stored cursor, posts in the demo room), read from the file."""
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as db:
        (cursor,) = db.execute(
            "SELECT cursor FROM source JOIN chat ON chat.id = source.chat_id "
            "WHERE chat.slug = 'demo'"
        ).fetchone()
        (count,) = db.execute(
            "SELECT count(*) FROM post JOIN chat ON chat.id = post.chat_id WHERE chat.slug = 'demo'"
        ).fetchone()
    return cursor, count


async def test_the_demo_cursor_is_committed_with_its_posts(make_server, db_url):
    """After a crash the stored cursor names exactly the next post (it is committed in the
    same transaction as the posts), and the restarted ingester carries on from it."""
    server = make_server(HASHROOM_DEMO_ENABLED="true", HASHROOM_DEMO_SPEED="40")

    async def stored() -> int:
        async with httpx.AsyncClient(base_url=server.url) as http:
            head = (await http.get("/api/chats/demo/events?limit=1")).json()["head"]
        return head if head >= 10 else 0

    await eventually(stored, "10 demo events")
    server.kill()
    cursor, count = _demo_state(db_url)
    assert cursor == f"0:{count}", (cursor, count)
    server.start()

    async def more() -> bool:
        return _demo_state(db_url)[1] >= count + 10

    await eventually(more, "10 more demo posts after the restart")
    server.kill()
    cursor, after = _demo_state(db_url)
    assert cursor == f"0:{after}", (cursor, after)
