"""Leases: jobs that one process of a cluster does at a time, held in the database.

A lease is a row (``name``, ``holder``, ``expires_at``). A process takes a free or expired
lease with one conditional ``UPDATE`` (or the first ``INSERT``), and its heartbeat renews
every lease it holds every ``lease_heartbeat`` seconds. A holder that dies stops renewing, so
its leases expire after ``lease_ttl`` seconds and the next heartbeat of another process that
wants them takes over (within TTL + one heartbeat). A holder that cannot renew in time —
database unreachable, event loop stalled — treats the lease as lost and stops the job before
another process may start it, so the job never runs twice at once.

Expiry is compared with each process's own clock: keep clocks in step (NTP) to well under
the TTL. Leases named here: ``source:<id>`` (following one source; the demo replay is one)
and ``scheduler`` (the session reminders of app/push.py). With leases off (one process),
:meth:`Leases.holding` returns at once and nothing touches the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from .config import Settings
from .models import Lease
from .tasks import Supervisor

log = logging.getLogger(__name__)

SCHEDULER = "scheduler"


def source_lease(source_id: int) -> str:
    return f"source:{source_id}"


@dataclass(slots=True, eq=False)
class _Want:
    held: asyncio.Event = field(default_factory=asyncio.Event)
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    valid_until: float = 0.0  # monotonic: past it, the lease may be someone else's


class Leases:
    """This process's leases: wanted ones are tried, held ones renewed, by one heartbeat."""

    def __init__(self, engine: Engine, settings: Settings, supervisor: Supervisor) -> None:
        self.engine = engine
        self.enabled = settings.uses_leases
        self.holder = settings.process_name
        self.ttl = settings.lease_ttl
        self.heartbeat = settings.lease_heartbeat
        self.supervisor = supervisor
        self._wants: dict[str, _Want] = {}
        self._wake = asyncio.Event()
        self.last_error: str | None = None

    def start(self) -> None:
        if self.enabled:
            self.supervisor.start("leases", self._run())

    @asynccontextmanager
    async def holding(self, name: str) -> AsyncIterator[asyncio.Event]:
        """Wait until this process holds lease ``name``; yield an event that is set if the
        lease is lost (stop the job then). Leaving the block gives the lease back."""
        if not self.enabled:
            yield asyncio.Event()  # one process: it always holds, and never loses
            return
        if name in self._wants:
            raise RuntimeError(f"lease {name!r} is already wanted by this process")
        want = self._wants[name] = _Want()
        self._wake.set()
        try:
            await want.held.wait()
            yield want.lost
        finally:
            del self._wants[name]
            if want.held.is_set() and not want.lost.is_set():
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self._release, name)

    async def until_lost(self, name: str) -> None:
        """Return once lease ``name`` (held) is lost: taken away at a heartbeat, or simply
        not renewed in time — also when the heartbeat itself has stopped."""
        want = self._wants[name]
        while not want.lost.is_set():
            remaining = want.valid_until - time.monotonic()
            if remaining <= 0:
                self._lose(name, want, "not renewed in time")
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(want.lost.wait(), remaining)

    def held(self) -> list[str]:
        return sorted(n for n, w in self._wants.items() if w.held.is_set())

    async def table(self) -> list[dict[str, Any]]:
        """Every lease of the cluster: who holds it and for how long yet (for /healthz)."""

        def fn() -> list[dict[str, Any]]:
            with Session(self.engine) as session:
                rows = session.execute(select(Lease).order_by(Lease.name)).scalars().all()  # type: ignore[arg-type]
            now = datetime.now(UTC)
            return [
                {
                    "name": row.name,
                    "holder": row.holder,
                    "expires_in": round((_aware(row.expires_at) - now).total_seconds(), 1),
                }
                for row in rows
            ]

        return await asyncio.to_thread(fn)

    # -- the heartbeat --------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            # A heartbeat stuck on the database must not let a lease run out unnoticed.
            beat = asyncio.ensure_future(self.beat())
            while not beat.done():
                await asyncio.wait({beat}, timeout=self.heartbeat / 2)
                self._expire_overdue()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.heartbeat)

    async def beat(self) -> None:
        """Renew what is held, try what is wanted; give up what could not be renewed in
        time. Never raises (errors are logged and kept in :attr:`last_error`)."""
        started = time.monotonic()
        held = [n for n, w in self._wants.items() if w.held.is_set()]
        wanted = [n for n, w in self._wants.items() if not w.held.is_set()]
        try:
            kept, taken = await asyncio.to_thread(self._beat, held, wanted)
            ok = True
            self.last_error = None
        except Exception as exc:
            if self.last_error is None:
                log.warning("leases: heartbeat failed: %r", exc)
            self.last_error = repr(exc)
            kept, taken, ok = set(), set(), False
        for name, want in list(self._wants.items()):
            if want.held.is_set():
                if ok and name in kept:
                    want.valid_until = started + self.ttl
                elif ok and name in held:
                    self._lose(name, want, "another process holds it now")
            elif name in taken:
                log.info("leases: %s now holds %s", self.holder, name)
                want.valid_until = started + self.ttl
                want.held.set()
        self._expire_overdue()

    def _expire_overdue(self) -> None:
        """Not renewed in time: what we held may be someone else's from now on."""
        now = time.monotonic()
        for name, want in list(self._wants.items()):
            if want.held.is_set() and want.valid_until <= now:
                self._lose(name, want, "not renewed in time")

    @staticmethod
    def _lose(name: str, want: _Want, why: str) -> None:
        log.warning("leases: lost %s (%s); stopping that job", name, why)
        want.held.clear()
        want.lost.set()

    def _beat(self, held: list[str], wanted: list[str]) -> tuple[set[str], set[str]]:
        now = datetime.now(UTC)
        until = now + timedelta(seconds=self.ttl)
        kept: set[str] = set()
        taken: set[str] = set()
        with Session(self.engine) as session:
            if held:
                session.execute(
                    update(Lease)
                    .where(Lease.name.in_(held), Lease.holder == self.holder)  # type: ignore[attr-defined, arg-type]
                    .values(expires_at=until)
                )
                kept = set(
                    session.execute(
                        select(Lease.name).where(
                            Lease.name.in_(held),  # type: ignore[attr-defined]
                            Lease.holder == self.holder,  # type: ignore[arg-type]
                        )
                    ).scalars()
                )
                session.commit()
            for name in wanted:
                if self._take(session, name, now, until):
                    taken.add(name)
        return kept, taken

    def _take(self, session: Session, name: str, now: datetime, until: datetime) -> bool:
        """One attempt at lease ``name``: True when this process holds it now."""
        try:
            result = session.execute(
                update(Lease)
                .where(
                    Lease.name == name,  # type: ignore[arg-type]
                    (Lease.expires_at < now) | (Lease.holder == self.holder),  # type: ignore[arg-type, operator]
                )
                .values(holder=self.holder, expires_at=until, acquired_at=now)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                session.commit()
                return True
            exists = session.execute(select(Lease.name).where(Lease.name == name)).first()  # type: ignore[arg-type]
            if exists is not None:
                session.commit()
                return False
            session.execute(
                insert(Lease).values(
                    name=name, holder=self.holder, expires_at=until, acquired_at=now
                )
            )
            session.commit()
            return True
        except IntegrityError:  # another process inserted it first
            session.rollback()
            return False

    def _release(self, name: str) -> None:
        with Session(self.engine) as session:
            session.execute(
                delete(Lease).where(Lease.name == name, Lease.holder == self.holder)  # type: ignore[arg-type]
            )
            session.commit()


async def run_while_holding(
    leases: Leases | None,
    name: str,
    job: Callable[[], Awaitable[Any]],
    on_standby: Callable[[], None] = lambda: None,
    on_hold: Callable[[], None] = lambda: None,
) -> None:
    """Run ``job()`` only while this process holds lease ``name``: wait for it, run, and on
    a loss cancel the job at once and wait again (the job resumes from what it stored).
    Returns when the job returns; without leases just runs the job."""
    if leases is None or not leases.enabled:
        await job()
        return
    while True:
        on_standby()
        async with leases.holding(name) as lost:
            on_hold()
            run = asyncio.ensure_future(job())
            lost_wait = asyncio.ensure_future(leases.until_lost(name))
            try:
                await asyncio.wait({run, lost_wait}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (run, lost_wait):
                    task.cancel()
                await asyncio.gather(run, lost_wait, return_exceptions=True)
            if not lost.is_set():
                run.result()  # raises what the job raised (the supervisor logs it)
                return


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were stored as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
