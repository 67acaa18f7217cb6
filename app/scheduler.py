"""Scheduled chats in practice: which sessions are live or coming up, and following a
scheduled chat's networks only around its sessions.

A chat with a schedule is followed from ``HASHROOM_SCHEDULE_LEAD_MINUTES`` before each
session until ``HASHROOM_SCHEDULE_TAIL_MINUTES`` after it ends, so it goes live by itself
and late answers still arrive; between sessions nothing polls or streams for it. A chat
without a schedule is followed all the time. Posts are never deleted: every session's posts
stay in the room, and its transcript is the room read through the session's window.

:class:`Scheduler` is a supervised task that reconciles the running ingesters with the ones
that should run, then sleeps until the next window opens or closes (or a schedule changes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from .config import Settings
from .ingest import IngestManager
from .models import Chat, Source
from .present import iso
from .rooms import Rooms
from .schedule import Schedule, Session, sessions

log = logging.getLogger(__name__)

# Re-plan at least this often, so a clock that jumped or a chat created by another process
# is noticed within a minute.
MAX_SLEEP = 60.0
# How far ahead a plan looks for the next window edge; beyond it the loop just re-plans.
PLAN_HORIZON = timedelta(days=2)
RETRY_AFTER_ERROR = 5.0


def schedule_of(chat: Chat | Mapping[str, Any]) -> Schedule | None:
    """The chat's schedule (from its row or its ``chat_json``), or None when it has none.

    A stored schedule that no longer validates (time zone data changed) is logged and
    treated as none, so the chat is followed all the time rather than never.
    """
    if isinstance(chat, Chat):
        raw: Mapping[str, Any] | None = None
        if chat.schedule_start:
            raw = {
                "start": chat.schedule_start,
                "timezone": chat.schedule_timezone,
                "duration_minutes": chat.schedule_duration_minutes,
                "rrule": chat.schedule_rrule,
            }
        slug = chat.slug
    else:
        raw = chat.get("schedule")
        slug = chat.get("slug")
    if not raw or not raw.get("start"):
        return None
    try:
        return Schedule.from_api(raw)
    except ValueError as exc:
        log.warning("chat %s has an unusable schedule, ignoring it: %s", slug, exc)
        return None


def follow_window(
    schedule: Schedule, now: datetime, lead: timedelta, tail: timedelta
) -> tuple[bool, datetime | None]:
    """Whether a scheduled chat should be followed at ``now``, and when that next changes
    (None when nothing changes within :data:`PLAN_HORIZON`).

    Each session is followed over [start − lead, end + tail); overlapping windows merge.
    """
    found = sessions(schedule, now - tail, now + lead + PLAN_HORIZON)
    windows: list[list[datetime]] = []
    for session in found:
        start, end = session.start - lead, session.end + tail
        if windows and start <= windows[-1][1]:
            windows[-1][1] = max(windows[-1][1], end)
        else:
            windows.append([start, end])
    active = any(start <= now < end for start, end in windows)
    edges = [edge for window in windows for edge in window if edge > now]
    return active, min(edges, default=None)


def upcoming_sessions(
    chats: Iterable[Mapping[str, Any]], now: datetime, days: float = 14
) -> list[dict[str, Any]]:
    """Sessions running at ``now`` or starting within ``days``, soonest first, for chats
    shaped like :func:`app.rooms.chat_json`. Times are UTC ISO 8601; ``local_start`` is the
    start on the host's wall clock in ``timezone``."""
    found = []
    for chat in chats:
        schedule = schedule_of(chat)
        if schedule is None:
            continue
        for session in sessions(schedule, now, now + timedelta(days=days)):
            found.append(_session_json(chat, schedule, session, now))
    found.sort(key=lambda item: (item["start"], item["slug"]))
    return found


def _session_json(
    chat: Mapping[str, Any], schedule: Schedule, session: Session, now: datetime
) -> dict[str, Any]:
    local = session.start.astimezone(schedule.zone)
    return {
        "slug": chat["slug"],
        "title": chat["title"],
        "hashtag": chat["hashtag"],
        "hashtags": chat.get("hashtags") or [chat["hashtag"]],
        "network": chat.get("network"),
        "start": iso(session.start),
        "end": iso(session.end),
        "live": session.contains(now),
        "local_start": local.strftime("%Y-%m-%dT%H:%M"),
        "timezone": schedule.timezone,
    }


def upcoming_for_page(chats: Iterable[Mapping[str, Any]], days: float = 14) -> dict[str, Any]:
    """For the home page: ``{"live": [...], "upcoming": [...]}`` as of now."""
    items = upcoming_sessions(chats, datetime.now(UTC), days)
    return {
        "live": [i for i in items if i["live"]],
        "upcoming": [i for i in items if not i["live"]],
    }


class Scheduler:
    """Starts and stops the followers of scheduled chats around their sessions."""

    def __init__(self, rooms: Rooms, ingest: IngestManager, settings: Settings) -> None:
        self.rooms = rooms
        self.ingest = ingest
        self.lead = timedelta(minutes=settings.schedule_lead_minutes)
        self.tail = timedelta(minutes=settings.schedule_tail_minutes)
        # In a cluster a source created by another process must be noticed well within a
        # lease's life, so this process can take it over if that one dies.
        self.max_sleep = min(MAX_SLEEP, settings.lease_ttl) if settings.uses_leases else MAX_SLEEP
        self._changed = asyncio.Event()
        ingest.on_scheduled = self.wake

    def wake(self) -> None:
        """Re-plan now (a chat was created with a schedule, or a schedule changed)."""
        self._changed.set()

    async def reconcile(self, now: datetime | None = None) -> float:
        """Start the followers that should run and stop the others; returns the seconds
        until the next window edge (at most :data:`MAX_SLEEP`)."""
        now = now or datetime.now(UTC)
        wanted: dict[int, tuple[Source, Chat]] = {}
        next_edge: datetime | None = None
        for source, chat in await self.rooms.sources():
            if source.network not in self.ingest.factories:
                continue
            schedule = schedule_of(chat)
            if schedule is None:
                wanted[source.id] = (source, chat)  # type: ignore[index]
                continue
            active, edge = follow_window(schedule, now, self.lead, self.tail)
            if active:
                wanted[source.id] = (source, chat)  # type: ignore[index]
            if edge is not None and (next_edge is None or edge < next_edge):
                next_edge = edge
        for source_id in list(self.ingest.ingesters):
            if source_id not in wanted:
                log.info("schedule: stopping source %s (outside its sessions)", source_id)
                await self.ingest.stop(source_id)
        for source_id, (source, chat) in wanted.items():
            if source_id not in self.ingest.ingesters and self.ingest.start_now(source, chat):
                log.info("schedule: following source %s of chat %s", source_id, chat.slug)
        if next_edge is None:
            return self.max_sleep
        return min(self.max_sleep, max(0.05, (next_edge - now).total_seconds()))

    async def run(self) -> None:
        """Reconcile, sleep until the next edge or a change, repeat. Never raises."""
        while True:
            # Cleared before planning, so a change made while planning wakes the next sleep.
            self._changed.clear()
            try:
                delay = await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("schedule: planning failed; retrying in %.0fs", RETRY_AFTER_ERROR)
                delay = RETRY_AFTER_ERROR
            try:
                await asyncio.wait_for(self._changed.wait(), delay)
            except TimeoutError:
                pass
