"""The per-chat event log: every change to a room, in order, with a gap-free offset.

``append`` must run inside the transaction that writes the row it describes. It bumps
``chat.last_offset`` with ``UPDATE … RETURNING``: on PostgreSQL that row lock serialises
writers of the same chat until commit, and SQLite has a single writer, so offsets are gap-free
and become visible in order. (A database sequence would not do: two transactions can draw 5
and 6 and commit 6 first, and a reader that saw 6 would skip 5 forever.)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlmodel import Session

from .models import Chat, Event


def wire_frame(payload: bytes) -> bytes:
    """``payload`` as one complete, unmasked websocket text frame (RFC 6455 section 5.2).

    Frames a server sends are not masked and carry no per-connection state (no compression
    is negotiated: see app/__main__.py), so these bytes can be written as they are to every
    client of a chat.
    """
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


@dataclass(frozen=True, slots=True)
class Frame:
    """An event as clients receive it, encoded once: the JSON text, and ``wire``, the whole
    websocket frame that carries it (shared by every client; see :func:`wire_frame`)."""

    chat_id: int
    offset: int
    text: str
    epoch: str = ""  # known when the frame was just appended (what other processes check)
    wire: bytes = b""

    def __post_init__(self) -> None:
        if not self.wire:
            object.__setattr__(self, "wire", wire_frame(self.text.encode()))


def encode(payload: dict[str, Any]) -> str:
    """Compact JSON, UTF-8 kept as is (smaller frames than ASCII escapes)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)


def append(
    session: Session,
    chat_id: int,
    type_: str,
    payload: dict[str, Any],
    *,
    post_id: int | None = None,
) -> Frame:
    """Append one event to ``chat_id``'s log in the caller's transaction; return its frame."""
    row = session.execute(
        update(Chat)
        .where(Chat.id == chat_id)  # type: ignore[arg-type]
        .values(last_offset=Chat.last_offset + 1)
        .returning(Chat.last_offset, Chat.epoch)
    ).one()
    offset, epoch = row
    text = encode({"type": type_, "offset": offset, "epoch": epoch, "ts": time.time(), **payload})
    session.add(Event(chat_id=chat_id, offset=offset, type=type_, post_id=post_id, frame=text))
    return Frame(chat_id=chat_id, offset=offset, text=text, epoch=epoch)


def append_many(
    session: Session, chat_id: int, items: list[tuple[str, dict[str, Any], int | None]]
) -> list[Frame]:
    """Append ``items`` — ``(type, payload, post_id)`` each, in order — to ``chat_id``'s log
    in the caller's transaction; return their frames. The same events, offsets and frames
    as calling :func:`append` for each in turn, with one offset bump and one insert."""
    if not items:
        return []
    row = session.execute(
        update(Chat)
        .where(Chat.id == chat_id)  # type: ignore[arg-type]
        .values(last_offset=Chat.last_offset + len(items))
        .returning(Chat.last_offset, Chat.epoch)
    ).one()
    head, epoch = row
    frames: list[Frame] = []
    rows: list[dict[str, Any]] = []
    for offset, (type_, payload, post_id) in enumerate(items, head - len(items) + 1):
        text = encode(
            {"type": type_, "offset": offset, "epoch": epoch, "ts": time.time(), **payload}
        )
        frames.append(Frame(chat_id=chat_id, offset=offset, text=text, epoch=epoch))
        rows.append(
            {
                "chat_id": chat_id,
                "offset": offset,
                "type": type_,
                "post_id": post_id,
                "frame": text,
            }
        )
    session.execute(insert(Event.__table__), rows)  # type: ignore[attr-defined]
    return frames


def read_after(session: Session, chat_id: int, after: int, limit: int) -> list[Frame]:
    """Events with offset > ``after``, in order, at most ``limit``."""
    rows = session.execute(
        select(Event.offset, Event.frame)
        .where(Event.chat_id == chat_id, Event.offset > after)  # type: ignore[arg-type]
        .order_by(Event.offset)  # type: ignore[arg-type]
        .limit(limit)
    ).all()
    return [Frame(chat_id=chat_id, offset=o, text=f) for o, f in rows]


def heads(session: Session, chat_ids: list[int]) -> dict[int, tuple[int, str]]:
    """Several chats' latest offsets and epochs in one query (chats that are gone are left
    out)."""
    rows = session.execute(
        select(Chat.id, Chat.last_offset, Chat.epoch).where(Chat.id.in_(chat_ids))  # type: ignore[union-attr]
    ).all()
    return {chat_id: (offset, epoch) for chat_id, offset, epoch in rows}


def head(session: Session, chat_id: int) -> tuple[int, str]:
    """The chat's latest offset and its epoch, as committed."""
    offset, epoch = session.execute(
        select(Chat.last_offset, Chat.epoch).where(Chat.id == chat_id)  # type: ignore[arg-type]
    ).one()
    return offset, epoch
