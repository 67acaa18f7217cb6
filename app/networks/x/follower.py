"""Following a chat's hashtags on X (:class:`XFollower`): backfill and polling by recent
search, the filtered stream with its rule and gap fill, compliance deletes, all within the
read budget (paused with a notice when it is spent)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime

from ..base import AuthError, Batch, Delete, FollowContext, NetworkError, RemotePost, Upsert
from .budget import Cursor, ReadBudget, newer
from .client import (
    CONNECTED,
    KEEPALIVE,
    KEEPALIVE_TIMEOUT,
    MAX_RESULTS,
    Forbidden,
    StreamNotAllowed,
    XApi,
)
from .composing import build_query
from .mapping import map_page

log = logging.getLogger(__name__)

# Ids remembered as read today, for X's free repeat reads; past this, reads count again
# (an overestimate, never an underestimate).
MAX_BILLED_IDS = 200_000
# Search windows are 15 minutes; never sleep longer than one on a single header.
RATE_WAIT_CAP = 900.0


def _delay(attempt: int, base: float, cap: float) -> float:
    ceiling = min(cap, base * (2 ** min(attempt, 20)))
    return random.uniform(min(base / 2, ceiling), ceiling)


class XFollower:
    """Follows a chat's hashtags on X (any of them: one ``(#a OR #b)`` query) within a read
    budget (implements ``Follower``).

    1. Backfill (no cursor): the latest ``backfill`` posts by recent search, within budget.
    2. Live: the filtered stream when ``stream`` is on and the credentials allow it — one
       rule tagged ``rule_tag`` — with a recent-search gap fill from ``since_id`` after every
       (re)connect and a capped backoff between attempts; otherwise recent search every
       ``poll_interval`` seconds, waiting out ``x-rate-limit-reset`` and 429s.
    3. Every ``compliance_interval`` seconds the latest posts are looked up again and those X
       no longer has are deleted from the room.
    4. When the budget is spent the room gets a notice, the stream is closed, and reading
       resumes only when a new hour or session gives budget back.

    Cursor: JSON with ``since_id`` and the budget counts (:class:`Cursor`).
    """

    def __init__(
        self,
        api: XApi,
        hashtag: str | Sequence[str],
        budget: ReadBudget,
        *,
        session: Callable[[], str],
        rule_tag: str,
        stream: bool = True,
        reposts: bool = False,
        backfill: int = 100,
        poll_interval: float = 30.0,
        compliance_interval: float = 600.0,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        known_ids: list[str] | None = None,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        on_budget: Callable[[ReadBudget], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        pause_check: float = 60.0,
    ) -> None:
        self.api = api
        self.hashtags = [hashtag] if isinstance(hashtag, str) else list(hashtag)
        self.hashtag = self.hashtags[0]
        self.query = build_query(self.hashtags, reposts=reposts)
        self.budget = budget
        self.session = session
        self.rule_tag = rule_tag
        self.use_stream = stream
        self.backfill = backfill
        self.poll_interval = poll_interval
        self.compliance_interval = compliance_interval
        self.keepalive_timeout = keepalive_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.on_budget = on_budget
        self.clock = clock
        self.pause_check = pause_check  # how often a paused follower checks for a new hour
        # Recent ids, oldest first: the compliance check looks these up again.
        self.known: OrderedDict[str, None] = OrderedDict(
            (i, None) for i in (known_ids or [])[-500:]
        )
        self.rule_id: str | None = None
        self._ctx: FollowContext | None = None
        self._billed_day = ""
        self._billed: set[str] = set()  # ids read today (their repeat reads are free)
        self._next_check = time.monotonic() + compliance_interval

    # -- budget --

    def _roll(self) -> None:
        self.budget.roll(self.clock(), self.session())
        self._show_budget()

    def _show_budget(self) -> None:
        if self.on_budget is not None:
            self.on_budget(self.budget)
        if self._ctx is not None:
            self._ctx.detail({"budget": self.budget.as_json()})

    def _remember(self, posts: list[RemotePost]) -> None:
        for p in posts:
            self.known[p.remote_id] = None
            self.known.move_to_end(p.remote_id)
        while len(self.known) > 500:
            self.known.popitem(last=False)

    async def _pause(self, ctx: FollowContext) -> None:
        """Wait until the budget gives reads back (next hour, or next session)."""
        which = self.budget.exhausted_by()
        spent = self.budget.as_json()
        if which == "hour":
            message = (
                f"X reading is paused: this room's budget of {self.budget.per_hour} posts per "
                "hour is spent (about "
                f"${spent['estimated_cost_hour']:.2f}). It resumes at the next full hour and "
                "catches up then."
            )
        else:
            message = (
                f"X reading is paused: this room's budget of {self.budget.per_session} posts "
                "for this session is spent (about "
                f"${spent['estimated_cost_session']:.2f}). An operator can raise "
                "HASHROOM_X_BUDGET_PER_SESSION."
            )
        ctx.notice(message)
        ctx.report(f"paused: {which} budget spent")
        while self.budget.left() <= 0:
            await asyncio.sleep(self.pause_check)
            self._roll()

    # -- reading --

    async def _search(
        self, since_id: str | None, limit: int
    ) -> tuple[list[RemotePost], str | None]:
        """Posts newer than ``since_id``, oldest first, and the newest id seen: pages are
        fetched (newest first) until ``limit`` posts have been read or none are left. Waits
        out the search rate limit and 429s."""
        found: list[RemotePost] = []
        newest = None
        token = None
        while len(found) < limit:
            wait = self.api.rate("search").wait()
            if wait > 0:
                await asyncio.sleep(min(wait, RATE_WAIT_CAP))
            try:
                page = await self.api.search_recent(
                    self.query,
                    since_id=since_id,
                    next_token=token,
                    max_results=max(10, min(MAX_RESULTS, limit - len(found))),
                )
            except NetworkError as exc:
                if exc.status != 429:
                    raise
                # Wait out the window X named (or a minute), then ask again.
                await asyncio.sleep(min(exc.retry_after or 60.0, RATE_WAIT_CAP))
                continue
            newest = newer(newest, page.newest_id)
            found.extend(page.posts)
            token = page.next_token
            if not token:
                break
        # Everything X returned is paid for (pages hold at least 10), so all of it is kept
        # and counted, even past ``limit``.
        found.reverse()
        return found, newest

    def _charge(self, ids: Iterable[str]) -> None:
        """Count reads as X bills them: a post read again within the same UTC day is free."""
        day = self.clock().strftime("%Y-%m-%d")
        if day != self._billed_day:
            self._billed_day, self._billed = day, set()
        fresh = {i for i in ids if i not in self._billed}
        if len(self._billed) < MAX_BILLED_IDS:
            self._billed |= fresh
        self.budget.spend(len(fresh))

    def _batch(self, posts: list[RemotePost], cursor: Cursor) -> Batch:
        self._charge(p.extra.get("repost_id") or p.remote_id for p in posts)
        self._remember(posts)
        self._show_budget()
        return Batch(changes=[Upsert(p) for p in posts], cursor=cursor.dump(self.budget))

    async def _catch_up(self, cursor: Cursor, limit: int) -> Batch:
        posts, newest = await self._search(cursor.since_id, limit)
        cursor.since_id = newer(cursor.since_id, newest)
        for p in posts:
            cursor.since_id = newer(cursor.since_id, p.remote_id)
        return self._batch(posts, cursor)

    async def _compliance(self) -> list[Delete]:
        if time.monotonic() < self._next_check or not self.known:
            return []
        self._next_check = time.monotonic() + self.compliance_interval
        recent = list(self.known)[-100:]
        # Looking up posts already read today is free; others cost a read each, so only as
        # many of those as the budget allows are looked up.
        today = self._billed_day == self.clock().strftime("%Y-%m-%d")
        free = [i for i in recent if today and i in self._billed]
        paid = [i for i in recent if not (today and i in self._billed)]
        allowed = self.budget.left()
        ids = free + (paid[-allowed:] if allowed > 0 else [])
        if not ids:
            return []
        try:
            found, gone = await self.api.lookup(ids)
        except NetworkError as exc:
            log.info("x: compliance lookup failed: %s", exc)
            return []
        self._charge(p.remote_id for p in found)
        for rid in gone:
            self.known.pop(rid, None)
        return [Delete(remote_id=rid) for rid in sorted(gone)]

    async def follow(self, cursor: str | None, ctx: FollowContext) -> AsyncIterator[Batch]:
        """Batches from ``cursor`` on, forever (see the class docstring)."""
        self._ctx = ctx
        state = Cursor.load(cursor)
        self.budget.hour, self.budget.hour_reads = state.hour, state.hour_reads
        self.budget.session, self.budget.session_reads = state.session, state.session_reads
        self._roll()
        if state.since_id is None:
            ctx.report("loading recent posts")
            limit = min(self.backfill, self.budget.left())
            if limit > 0:
                yield await self._catch_up(state, limit)
        stream_ok = self.use_stream
        attempt = 0
        try:
            while True:
                self._roll()
                if self.budget.left() <= 0:
                    await self._drop_rule()
                    await self._pause(ctx)
                    continue
                deletes = await self._compliance()
                if deletes:
                    yield Batch(changes=list(deletes), cursor=state.dump(self.budget))
                if stream_ok:
                    try:
                        async with contextlib.aclosing(self._stream(state, ctx)) as batches:
                            async for batch in batches:
                                attempt = 0
                                yield batch
                    except StreamNotAllowed as exc:
                        # No stream for these credentials, or the app's one connection is
                        # held by another chat: poll instead, and drop our rule, whose
                        # matches X would otherwise deliver (and bill) on that connection.
                        stream_ok = False
                        await self._drop_rule()
                        ctx.report("polling", f"{exc}; polling recent search instead")
                        continue
                    except AuthError:
                        raise
                    except NetworkError as exc:
                        delay = _delay(attempt, self.backoff_base, self.backoff_cap)
                        if exc.retry_after:
                            delay = max(delay, min(exc.retry_after, RATE_WAIT_CAP))
                        attempt += 1
                        ctx.report("reconnecting", str(exc))
                        await asyncio.sleep(delay)
                    continue
                ctx.report("polling")
                batch = await self._catch_up(state, self.budget.left())
                if batch.changes:
                    yield batch
                else:
                    yield Batch(changes=[], cursor=state.dump(self.budget))
                await asyncio.sleep(max(self.poll_interval, self.api.rate("search").wait()))
        finally:
            await self._drop_rule()

    async def _ensure_rule(self) -> None:
        rules = await self.api.rules()
        mine = [r for r in rules if r.get("tag") == self.rule_tag]
        keep = [r for r in mine if r.get("value") == self.query]
        stale = [str(r["id"]) for r in mine if r not in keep and isinstance(r.get("id"), str)]
        if stale:
            await self.api.delete_rules(stale)
        if keep:
            self.rule_id = str(keep[0]["id"])
        else:
            self.rule_id = await self.api.add_rule(self.query, self.rule_tag)

    async def _drop_rule(self) -> None:
        """Remove this chat's rule (a stopped chat must not keep paying for stream reads)."""
        if self.rule_id is None:
            return
        rule_id, self.rule_id = self.rule_id, None
        try:
            await asyncio.shield(asyncio.wait_for(self.api.delete_rules([rule_id]), 5.0))
        except (NetworkError, TimeoutError, asyncio.CancelledError) as exc:
            log.info("x: could not remove stream rule %s: %s", rule_id, exc)

    async def _stream(self, state: Cursor, ctx: FollowContext) -> AsyncIterator[Batch]:
        if self.rule_id is None:
            try:
                await self._ensure_rule()
            except Forbidden as exc:
                raise StreamNotAllowed(
                    "these credentials may not manage filtered stream rules", status=403
                ) from exc
        async with contextlib.aclosing(self.api.stream(self.keepalive_timeout)) as items:
            async for item in items:
                if item is KEEPALIVE:
                    deletes = await self._compliance()
                    if deletes:
                        yield Batch(changes=list(deletes), cursor=state.dump(self.budget))
                    continue
                if item is CONNECTED:
                    # Connected. Posts made while no stream was open (first start, a drop, a
                    # pause) only come from search: fill the gap from the cursor now.
                    ctx.report("streaming")
                    self._roll()
                    batch = await self._catch_up(state, self.budget.left())
                    if batch.changes:
                        yield batch
                    continue
                tags = {
                    r.get("tag") for r in item.get("matching_rules") or [] if isinstance(r, dict)
                }
                if self.rule_tag not in tags:
                    continue  # another chat's rule on the same app
                # A post can reach us twice around a (re)connect: by the gap fill and the stream.
                posts = [p for p in map_page(item) if p.remote_id not in self.known]
                for p in posts:
                    state.since_id = newer(state.since_id, p.remote_id)
                self._roll()
                if posts:
                    yield self._batch(posts, state)
                if self.budget.left() <= 0:
                    return  # closes the stream; the loop pauses
                deletes = await self._compliance()
                if deletes:
                    yield Batch(changes=list(deletes), cursor=state.dump(self.budget))
