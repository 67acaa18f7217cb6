"""Writing websocket frames straight into the server's connection, without a coroutine.

The fan-out hot path sends one frame to thousands of clients. Through ASGI every send is a
coroutine (plus the server's own ``writable.wait()`` coroutine) per client per frame, and the
websocket library frames the message again for each client. Here, when the connection
belongs to uvicorn's sans-I/O websocket implementation, the frame's bytes — built once per
event (:attr:`app.events.Frame.wire`: server frames are unmasked and no compression is
negotiated, so the bytes are the same for every client) — go to the transport directly, as
long as it is not paused. When it is paused (the client reads slowly) the caller falls back
to the awaited ASGI path, which waits for the buffer to drain.

Anything else (another server, another implementation, a negotiated extension, a future
uvicorn that renames its attributes) simply gets ``None`` from :func:`direct_writer` and
uses the ASGI path.
"""

from __future__ import annotations

from typing import Any

from websockets.protocol import OPEN

# The attributes of uvicorn's WebSocketsSansIOProtocol this relies on.
_NEEDED = ("conn", "transport", "writable", "close_sent", "disconnected", "handshake_complete")
# And of its websockets sans-I/O connection.
_CONN_NEEDED = ("state", "extensions", "expect_continuation_frame", "writes", "data_to_send")


class Closed(ConnectionError):
    """The connection is closing or gone."""


class DirectWriter:
    """Writes prebuilt frames (``wire`` bytes) into one client's transport."""

    __slots__ = ("_proto", "_conn", "_transport", "_writable")

    def __init__(self, proto: Any) -> None:
        self._proto = proto
        self._conn = proto.conn
        self._transport = proto.transport
        self._writable = proto.writable

    def write(self, wire: bytes) -> bool:
        """Write complete frame bytes now: True when written, False when the transport is
        paused (nothing written: send the awaited way, or :meth:`drained` first).

        Raises :class:`Closed` when the connection is closing or no longer plainly open.
        """
        proto, conn = self._proto, self._conn
        if proto.disconnected or proto.close_sent or self._transport.is_closing():
            raise Closed("connection closed")
        if conn.state is not OPEN or conn.expect_continuation_frame or conn.extensions:
            # Closing, mid-message or with an extension that rewrites frames: not ours to
            # bypass. (Extensions are off in app/__main__.py; this guards other setups.)
            raise Closed("connection not plainly open")
        if not self._writable.is_set():
            return False
        if conn.writes:
            # Something the protocol queued itself (a pong, say) goes out first, in order.
            self._transport.write(b"".join(conn.data_to_send()))
        self._transport.write(wire)
        return True

    async def drained(self) -> None:
        """Wait until the transport takes writes again (returns at once when it does)."""
        await self._writable.wait()


def direct_writer(asgi_send: Any) -> DirectWriter | None:
    """A :class:`DirectWriter` for the connection behind ``asgi_send``, or None."""
    proto = getattr(asgi_send, "__self__", None)
    if proto is None or not all(hasattr(proto, name) for name in _NEEDED):
        return None
    conn = proto.conn
    if not all(hasattr(conn, name) for name in _CONN_NEEDED):
        return None
    if conn.extensions:
        return None
    return DirectWriter(proto)
