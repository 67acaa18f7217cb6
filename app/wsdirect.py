"""Writing websocket frames straight into the server's connection, without a coroutine.

The fan-out hot path sends one frame to thousands of clients. Through ASGI every send is a
coroutine (plus the server's own ``writable.wait()`` coroutine) per client per frame; here,
when the connection belongs to uvicorn's sans-I/O websocket implementation, a frame is
framed and written to the transport directly — what ``websockets.broadcast()`` does — as
long as the transport is not paused. When it is paused (the client reads slowly) the caller
falls back to the awaited ASGI path, which waits for the buffer to drain.

Anything else (another server, another implementation, a future uvicorn that renames its
attributes) simply gets ``None`` from :func:`direct_writer` and uses the ASGI path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# The attributes of uvicorn's WebSocketsSansIOProtocol this relies on.
_NEEDED = ("conn", "transport", "writable", "close_sent", "disconnected", "handshake_complete")


class Closed(ConnectionError):
    """The connection is closing or gone."""


def direct_writer(asgi_send: Any) -> Callable[[bytes], bool] | None:
    """A ``write(data) -> bool`` for the connection behind ``asgi_send``, or None.

    ``write`` returns True when the text frame was written now, False when the transport is
    paused (nothing written: send it the awaited way), and raises :class:`Closed` when the
    connection is closing.
    """
    proto = getattr(asgi_send, "__self__", None)
    if proto is None or not all(hasattr(proto, name) for name in _NEEDED):
        return None
    conn = proto.conn
    if not (hasattr(conn, "send_text") and hasattr(conn, "data_to_send")):
        return None
    transport = proto.transport
    writable = proto.writable

    def write(data: bytes) -> bool:
        if proto.disconnected or proto.close_sent or transport.is_closing():
            raise Closed("connection closed")
        if not writable.is_set():
            return False
        try:
            conn.send_text(data)
        except Exception as exc:  # websockets' InvalidState: closing underneath us
            raise Closed(str(exc)) from exc
        transport.write(b"".join(conn.data_to_send()))
        return True

    return write
