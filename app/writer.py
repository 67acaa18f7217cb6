"""The single writer of a process: one transaction at a time, its frames published in order.

:class:`Writer` serialises writes with one lock and runs each in a worker thread (the database
driver is synchronous). A write is a function of a session that returns its result and the
frames it appended to the event log; the frames are published after commit and still under
the lock, so clients see events in offset order. The writer knows no tables: what a write
does is the caller's (:mod:`app.chats`, :mod:`app.posts`, :mod:`app.pins`, …).

A transaction may also leave notes for observers (:func:`note`: a question pinned, a reply
to a post made through Hashroom) and change a chat's policy (:mod:`app.policy` marks it);
both are handed on only once the transaction committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from .db import session_scope
from .events import Frame
from .hub import Fanout, Hub, LocalFanout
from .models import Chat, Post
from .policy import CONFIG_COMMITTED

log = logging.getLogger(__name__)

T = TypeVar("T")

# session.info flag of write transactions: app.chats.chat_by_slug then locks the chat's row.
WRITING = "hashroom.writing"
# A write that lost a race on a unique constraint to another process is run again this many
# times (the second run finds the other's row: a duplicate delivery, not an error).
WRITE_RETRIES = 2


NOTES = "hashroom.notes"
NOTE_TEXT = 300  # enough for a notification's body; the room has the rest


@dataclass(frozen=True, slots=True)
class RoomNote:
    """Something outside the room may want to hear about, written by a committed write:
    ``pinned`` (a question was pinned) or ``reply`` (someone answered a post made through
    Hashroom account ``account_id``)."""

    kind: str
    chat_id: int
    slug: str
    hashtag: str
    title: str
    post_id: int
    author: str
    text: str
    account_id: int | None = None


def note(session: Session, chat: Chat, kind: str, post: Post, **extra: Any) -> None:
    """Record that something observers care about happened in this transaction; observers
    get it (as a :class:`RoomNote`) only if the transaction commits."""
    session.info.setdefault(NOTES, []).append(
        RoomNote(
            kind=kind,
            chat_id=chat.id,  # type: ignore[arg-type]
            slug=chat.slug,
            hashtag=chat.hashtag,
            title=chat.title,
            post_id=post.id,  # type: ignore[arg-type]
            author=post.author_name or post.author_handle,
            text=post.text[:NOTE_TEXT],
            **extra,
        )
    )


class Writer:
    """One process's single writer, and its readers, over ``engine``."""

    def __init__(self, engine: Engine, hub: Hub, fanout: Fanout | None = None) -> None:
        self.engine = engine
        self.hub = hub
        # Where committed frames go: this process's hub, or through Redis to every process.
        self.fanout: Fanout = fanout or LocalFanout(hub)
        self._lock = asyncio.Lock()
        # Called (synchronously, after commit) with the notes of each write; they must not
        # block: the push notifier only queues.
        self.observers: list[Callable[[list[RoomNote]], None]] = []

    async def write(self, fn: Callable[[Session], tuple[T, list[Frame]]]) -> T:
        """Run ``fn`` in one transaction (in a thread), then publish its frames in order and
        hand the transaction's notes (:class:`RoomNote`) to every observer, once it committed."""
        async with self._lock:
            for attempt in range(WRITE_RETRIES + 1):
                try:
                    result, frames, notes, config = await asyncio.to_thread(self._transaction, fn)
                    break
                except IntegrityError as exc:
                    if attempt == WRITE_RETRIES or not _lost_race(exc):
                        raise
                    log.info("write lost a race to another process; running it again")
            await self.fanout.committed(frames)
        if config:
            self.hub.forget_snapshots(config)
            await self.fanout.config_changed(config)
        if notes:
            for observer in self.observers:
                try:
                    observer(notes)
                except Exception:  # an observer's bug must not fail the write that committed
                    log.exception("room observer failed")
        return result

    def _transaction(
        self, fn: Callable[[Session], tuple[T, list[Frame]]]
    ) -> tuple[T, list[Frame], list[RoomNote], set[int]]:
        with session_scope(self.engine) as session:
            session.info[WRITING] = True
            result, frames = fn(session)
            notes = session.info.pop(NOTES, [])
        return result, frames, notes, session.info.pop(CONFIG_COMMITTED, set())

    async def read(self, fn: Callable[[Session], T]) -> T:
        """Run a read-only ``fn`` in a thread with its own session."""

        def run() -> T:
            with Session(self.engine, expire_on_commit=False) as session:
                return fn(session)

        return await asyncio.to_thread(run)


def _lost_race(exc: IntegrityError) -> bool:
    """True when ``exc`` is another process storing the same remote post first."""
    message = str(exc.orig)
    return "uq_post_remote" in message or (
        "UNIQUE constraint failed: post.chat_id, post.network, post.remote_id" in message
    )
