"""``WS /api/chats/{slug}/live``: replay after the client's offset, then live, no gap, no dup.

Order matters: the client is subscribed to the hub *first* (frames buffer in its backlog),
then history is read from the database and sent, then the backlog is drained, dropping
offsets already sent. A frame committed while we were reading is thus either in the history
or in the backlog — never in neither.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import events
from ..catchup import CatchUp
from ..deps import INT64_MAX
from ..events import Frame, encode
from ..hub import Subscriber
from ..limits import ConnectionSlots, client_address
from ..rooms import NotFound, Rooms
from ..security import origin_allowed
from ..wsdirect import direct_writer

log = logging.getLogger(__name__)

REPLAY_PAGE = 500
CLOSE_TOO_SLOW = 1013  # "try again later": the client resumes from its offset
CLOSE_TRY_LATER = 1013
DENY_RETRY = 30  # seconds a refused client is told to wait; the page retries with backoff
# Refusals before the handshake completes. Servers that can answer an upgrade with an HTTP
# response (uvicorn can) send the status and a JSON message; others close with the code.
CLOSE_POLICY = 1008
CLOSE_NO_CHAT = 4404
HOLD_POLL = 0.02  # how often the test hook looks for a new commit

_closers: set[asyncio.Task[None]] = set()  # strong refs to in-flight close calls


LIVE_PATH = re.compile(r"/api/chats/([^/]+)/live")


class LiveRoute:
    """ASGI middleware that hands ``/api/chats/{slug}/live`` websockets to :func:`live`
    directly, ahead of the session, error and routing layers of the framework.

    Those layers do nothing for this endpoint (it reads no cookie, answers no HTTP, raises
    nothing they would handle), yet each would stay on the stack of every open connection
    — memory at ten thousand of them — and cost time on every handshake of a reconnect
    storm. It sits inside the request guard and the proxy-headers middleware (see
    app/main.py), so unknown hosts are refused and the client address is the real one; the
    handler still checks the Origin, the address quota and the chat.
    """

    def __init__(self, app: ASGIApp, root: Any) -> None:
        self.app = app
        self.root = root  # the application whose ``state`` the handler reads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            match = LIVE_PATH.fullmatch(scope["path"])
            if match is not None:
                scope["app"] = self.root
                scope["path_params"] = {"slug": match.group(1)}
                # The server's own send: the hub writes frames through it (app/wsdirect.py).
                scope["hashroom.raw_send"] = send
                await live(WebSocket(scope, receive, send))
                return
        await self.app(scope, receive, send)


async def live(websocket: WebSocket) -> None:
    """The live endpoint (reached through :class:`LiveRoute`)."""
    slug: str = websocket.path_params["slug"]
    state = websocket.app.state
    settings = state.settings
    if not origin_allowed(websocket, settings.public_url, settings.allowed_origins):
        log.info("refused websocket from foreign origin %s", websocket.headers.get("origin"))
        await _refuse(websocket, 403, CLOSE_POLICY, "foreign origin: open the room on this site")
        return
    try:
        after = _int_param(websocket.query_params.get("after"))
    except ValueError:
        await _refuse(websocket, 400, CLOSE_POLICY, "after must be a non-negative integer")
        return
    client_epoch = websocket.query_params.get("epoch")
    catchup: CatchUp = state.catchup
    try:
        chat_id = await catchup.chat_id(slug)
    except NotFound:
        await _refuse(websocket, 404, CLOSE_NO_CHAT, f"no chat {slug!r}")
        return
    address = client_address(websocket)
    slots: ConnectionSlots = state.ws_slots
    if not slots.acquire(address, settings.ws_per_client):
        log.info("refused websocket from %s: %d already open", address, slots.held(address))
        await _deny(
            websocket,
            f"too many live connections from your address: at most {settings.ws_per_client}; "
            "close other tabs and try again",
        )
        return
    try:
        await _serve(websocket, chat_id, slug, after, client_epoch)
    finally:
        slots.release(address)


async def _deny(websocket: WebSocket, message: str) -> None:
    """Refuse the handshake with 429 and a reason (a bare close where the server cannot)."""
    try:
        await websocket.send_denial_response(
            JSONResponse({"detail": message}, 429, headers={"Retry-After": str(DENY_RETRY)})
        )
    except RuntimeError:
        await websocket.close(code=CLOSE_TRY_LATER, reason="too many connections")


async def _serve(
    websocket: WebSocket, chat_id: int, slug: str, after: int | None, client_epoch: str | None
) -> None:
    """Replay, then live, until the client leaves or is dropped."""
    state = websocket.app.state
    settings = state.settings
    rooms: Rooms = state.rooms
    await websocket.accept()
    raw_send = websocket.scope["hashroom.raw_send"]

    def send(text: str):  # type: ignore[no-untyped-def]
        return raw_send({"type": "websocket.send", "text": text})

    closing: list[asyncio.Task[None]] = []

    def on_drop(sub: Subscriber) -> None:
        log.info("dropping websocket client of %s: %s", slug, sub.close_reason)
        state.hub.remove(sub)  # stop buffering for it at once
        task = asyncio.get_running_loop().create_task(
            _close(websocket, CLOSE_TOO_SLOW, "too slow, resume from your offset")
        )
        _closers.add(task)
        task.add_done_callback(_closers.discard)
        closing.append(task)

    sub = Subscriber(
        chat_id,
        send,
        limit=settings.ws_client_buffer,
        on_drop=on_drop,
        write_now=direct_writer(raw_send),
    )
    try:
        with state.hub.subscribe(sub):
            # Before reading history: every frame past what the log then holds must reach
            # the hub, also when another process commits it (app/fanout_redis.py).
            async with state.fanout.watching(chat_id):
                await _catch_up(
                    state.catchup,
                    rooms,
                    sub,
                    chat_id,
                    after,
                    client_epoch,
                    settings.ws_replay_limit,
                    settings.test_live_hold_after_history,
                )
                while not await sub.go_live():
                    # Events arrived faster than we could replay: read the log again from here.
                    log.debug(
                        "client of %s re-reads the log after offset %d", slug, sub.last_offset
                    )
                    sub.start_buffering()
                    await _replay(state.catchup, sub, chat_id)
                await _hold(websocket, sub)
                if closing:
                    # Let the close frame follow what the client still has to read; a client
                    # that never reads again is reaped by the protocol's ping timeout.
                    await asyncio.wait(closing, timeout=3 * settings.ws_ping_interval)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass


async def _catch_up(
    catchup: CatchUp,
    rooms: Rooms,
    sub: Subscriber,
    chat_id: int,
    after: int | None,
    client_epoch: str | None,
    replay_limit: int,
    hold: float = 0.0,
) -> None:
    """Send a snapshot, or the events after ``after``; with ``hold`` (a test hook) then wait
    until another event is committed, so tests can make one land in the connect window.

    The chat's recent frames and snapshot come from memory when this process holds them
    (app/catchup.py); otherwise from the database, as they are for a client further behind.
    """
    catchup.stats["clients"] += 1
    recent = await catchup.recent(chat_id)
    if recent is not None:
        head, epoch = recent.head, recent.epoch
    else:
        head, epoch = await catchup.read(lambda s: events.head(s, chat_id))
    resumable = (
        after is not None
        and (client_epoch is None or client_epoch == epoch)
        and after <= head
        and head - after <= replay_limit
    )
    if resumable:
        sub.last_offset = after  # type: ignore[assignment]
        if recent is not None and recent.covers(sub.last_offset):
            await sub.send_frames(recent.after(sub.last_offset))
        else:
            await _replay(catchup, sub, chat_id)
    elif recent is not None:
        await sub.send_frames([await catchup.snapshot(chat_id, recent, reset=after is not None)])
        # A snapshot built for an earlier client: the frames since it follow from memory.
        if recent.covers(sub.last_offset):
            await sub.send_frames(recent.after(sub.last_offset))
        elif sub.last_offset < recent.head:
            await _replay(catchup, sub, chat_id)
    else:
        # Read after this client subscribed: every later frame is in its backlog.
        offset, payload = await catchup.build_snapshot(chat_id)
        frame = encode({**payload, "reset": after is not None})
        await sub.send_frames([Frame(chat_id=chat_id, offset=offset, text=frame)])
    if hold:
        await _hold_for_commit(rooms, chat_id, sub.last_offset, hold)


async def _hold_for_commit(rooms: Rooms, chat_id: int, offset: int, seconds: float) -> None:
    """Wait until the chat's log passes ``offset`` (at most ``seconds``)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        head, _ = await rooms.read(lambda s: events.head(s, chat_id))
        if head > offset:
            return
        await asyncio.sleep(HOLD_POLL)


async def _replay(catchup: CatchUp, sub: Subscriber, chat_id: int) -> None:
    """Send every logged event after the subscriber's last offset, in order."""
    while True:
        frames = await catchup.read(
            lambda s: events.read_after(s, chat_id, sub.last_offset, REPLAY_PAGE)
        )
        await sub.send_frames(frames)
        if len(frames) < REPLAY_PAGE:
            return


async def _hold(websocket: WebSocket, sub: Subscriber) -> None:
    """Keep the connection until the client leaves or is dropped (dropping closes the
    socket, which ends the wait). Pings come from the hub's one keep-alive timer."""
    while not sub.closed:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        # Clients have nothing to say on this socket; anything they send is ignored.


async def _refuse(websocket: WebSocket, status: int, code: int, reason: str) -> None:
    """Refuse an upgrade: HTTP ``status`` with ``{"detail": reason}`` where the server can
    answer that way, else accept-less close ``code``."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse({"detail": reason}, status_code=status))
    else:
        await websocket.close(code=code, reason=reason)


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    try:
        await websocket.close(code=code, reason=reason)
    except Exception:  # already gone, or a stuck reader: the ping timeout reaps it
        pass


def _int_param(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if len(value) > 20:  # int() of a huge digit string is quadratic; no offset is that long
        raise ValueError(value)
    n = int(value)
    if n < 0 or n > INT64_MAX:
        raise ValueError(value)
    return n
