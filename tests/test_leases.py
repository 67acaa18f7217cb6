"""Leases on a real database, two Leases objects standing for two processes: one holder at a
time, takeover after a silent holder's lease runs out, at once after a graceful release."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.config import Settings
from app.db import make_engine
from app.leases import Leases, run_while_holding
from app.tasks import Supervisor

pytestmark = [pytest.mark.db, pytest.mark.timeout(60)]

TTL, BEAT = 1.0, 0.2


def process(engine, name: str) -> tuple[Leases, Supervisor]:  # type: ignore[no-untyped-def]
    settings = Settings(
        leases="on", process_id=name, lease_ttl=TTL, lease_heartbeat=BEAT, redis_url=""
    )
    supervisor = Supervisor()
    return Leases(engine, settings, supervisor), supervisor


async def test_one_holder_then_takeover_after_silence_and_after_release(db_url: str) -> None:
    """B waits while A holds; when A stops renewing (a crash) B holds within TTL + a beat;
    when B gives the lease back, A takes it at its next heartbeat."""
    engine = make_engine(db_url)
    a, sup_a = process(engine, "a")
    b, sup_b = process(engine, "b")
    runs: list[str] = []

    def job(name: str):  # type: ignore[no-untyped-def]
        async def run() -> None:
            runs.append(name)
            await asyncio.Event().wait()  # follows until cancelled

        return run

    try:
        a.start()
        sup_a.start("job", run_while_holding(a, "source:1", job("a")))
        while runs != ["a"]:
            await asyncio.sleep(0.02)
        b.start()
        sup_b.start("job", run_while_holding(b, "source:1", job("b")))
        await asyncio.sleep(3 * TTL)
        assert runs == ["a"], "B must not run the job while A renews its lease"
        assert [row["holder"] for row in await b.table()] == ["a"]

        await sup_a.stop("leases")  # A stops renewing but never says so: a crash
        crashed = time.monotonic()
        while runs[-1] != "b":
            await asyncio.sleep(0.02)
            assert time.monotonic() - crashed < TTL + 3 * BEAT + 1, "B did not take over"
        # A's own job stopped when its lease ran out unrenewed, before B could start.
        await asyncio.sleep(BEAT)
        assert a.held() == [] and b.held() == ["source:1"]

        a.start()  # A is back and wants it again; B gives it back by stopping
        await sup_b.stop("job")
        released = time.monotonic()
        while runs[-1] != "a":
            await asyncio.sleep(0.02)
        assert time.monotonic() - released < 2 * BEAT + 0.5
        assert [row["holder"] for row in await a.table()] == ["a"]
    finally:
        await sup_a.shutdown()
        await sup_b.shutdown()
        engine.dispose()


async def test_without_leases_the_job_just_runs(db_url: str) -> None:
    """One process (leases off): the job starts at once and the table stays empty."""
    engine = make_engine(db_url)
    settings = Settings(redis_url="")
    leases = Leases(engine, settings, Supervisor())
    ran = asyncio.Event()

    async def job() -> None:
        ran.set()

    await asyncio.wait_for(run_while_holding(leases, "source:1", job), 1)
    assert ran.is_set() and not leases.enabled and await leases.table() == []
    engine.dispose()
