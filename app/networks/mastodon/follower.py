"""Following hashtags on one Mastodon instance (:class:`MastodonFollower`): backfill,
forward paging without gaps across several tags, the live stream with its polling fallback,
retries and rate-limit waits; yields :class:`~app.networks.base.Batch` objects."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus, WebSocketException

from app.networks.base import (
    AuthError,
    Batch,
    Change,
    Delete,
    FollowContext,
    NetworkError,
    RemotePost,
    RemoteRejected,
    Upsert,
)

from ...outbound import describe_failure
from .client import PAGE_LIMIT, SAFE_PAGE, STREAMING_PATH, MastodonApi, ws_base
from .mapping import parse_status, str_or_none
from .paging import merge_pages, tag_groups
from .threads import QuestionThreads

log = logging.getLogger(__name__)

T = TypeVar("T")


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Capped exponential backoff with jitter: attempt 1 → base/2..base, doubling to cap."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class MastodonFollower:
    """Follows ``#tag`` — or several tags, a post carrying any of them — on one instance;
    implements :class:`~app.networks.base.Follower`.

    Several tags are read with ``any[]`` on the first tag's timeline, up to
    :data:`TAGS_PER_REQUEST` per request (more tags: several requests, merged without gaps),
    and streamed by subscribing the one websocket to each tag's ``hashtag`` stream; a post
    carrying two of them arrives once per stream and is yielded once.

    Cursor: an opaque JSON string ``{"min_id": "<newest timeline id seen>"}`` (ids are the
    instance's; a cursor is only valid for the instance that made it).

    - First run (cursor None): the newest ``backfill`` posts, paged back with ``max_id`` and
      yielded oldest→newest in one batch carrying the first cursor.
    - Resumed run: pages forward with ``min_id`` until caught up, one batch per page.
    - Live, with a token and ``streaming``: the hashtag websocket is opened *first*, then the
      gap since the cursor is filled from REST, then stream frames follow (``update`` →
      Upsert, ``status.update`` → Upsert with ``edited_at``, ``delete`` → Delete(local_id)).
      A dropped stream reports "reconnecting", reconnects with capped backoff + jitter and
      fills the gap from REST again. Posts seen twice in one run are yielded once.
    - Without a token (4.2+ refuses anonymous and app-token streams) or when the upgrade is
      refused: reports "polling" and pages forward every ``poll_interval`` seconds, retrying
      the stream every ``stream_retry`` seconds when a token exists. Polling sees new posts
      only, not edits or deletes.
    - Thread context, while streaming or polling: questions it delivered (a status whose text
      opens with a question marker, "Q1:") are remembered — the latest
      :data:`CONTEXT_QUESTIONS`, each for ``context_window`` seconds after first seen. Every
      ``context_interval`` seconds up to :data:`CONTEXT_REQUESTS_PER_CYCLE` of them have
      their thread fetched, and replies not yet delivered in this run are yielded with
      ``extra["thread_context"] = True`` in a batch whose cursor is None (replies are not in
      the tag timeline, so they never move it). A cycle is skipped while the rate limit is
      spent; its failures are logged and never end the run.

    REST batches carry the new cursor; stream batches carry one only when a new post moved
    it. Rate limits are respected (``X-RateLimit-Remaining: 0`` and 429 wait until reset).
    Transient failures are retried ``max_retries`` times with backoff, then raise
    NetworkError. A refused token is dropped for public reads; if reads fail without it
    too, AuthError is raised.
    """

    def __init__(
        self,
        api: MastodonApi,
        tag: str | Sequence[str],
        *,
        backfill: int = 40,
        poll_interval: float = 30.0,
        streaming: bool = True,
        backoff_cap: float = 60.0,
        backoff_base: float = 1.0,
        max_retries: int = 5,
        stream_retry: float = 300.0,
        ping_interval: float = 30.0,
        open_timeout: float = 10.0,
        max_rate_wait: float = 900.0,
        context_interval: float = 60.0,
        context_window: float = 2 * 3600.0,
        connect: Callable[..., Any],
    ):
        if context_interval <= 0:
            raise ValueError("context_interval must be positive")
        self.api = api
        self.connect = connect  # websockets' connect signature; the app passes a guarded one
        self._configured_api = api  # a run may drop a refused token; the next run retries it
        self.tags = [t.strip().lstrip("#") for t in ([tag] if isinstance(tag, str) else tag)]
        if not self.tags:
            raise ValueError("a Mastodon follower needs a hashtag")
        self.tag = self.tags[0]  # for logs
        # The tags in groups of one request each; a group's first tag goes in the path and
        # moves to the back when the instance does not know it (see _group_page).
        self._groups = tag_groups(self.tags)
        self.backfill = max(0, backfill)
        self.poll_interval = poll_interval
        self.streaming = streaming
        self.backoff_cap = backoff_cap
        self.backoff_base = min(backoff_base, backoff_cap)
        self.max_retries = max_retries
        self.stream_retry = stream_retry
        self.ping_interval = ping_interval
        self.open_timeout = open_timeout
        self.max_rate_wait = max_rate_wait
        self._min_id: str | None = None
        self._seen: OrderedDict[str, str | None] = OrderedDict()
        self._mode = "starting"
        self._ctx: FollowContext | None = None
        self._stream_problem: str | None = None  # why we are polling, shown with the state
        self.threads = QuestionThreads(context_interval, context_window)

    # -- cursor --

    @staticmethod
    def _load_cursor(cursor: str | None) -> str | None:
        if not cursor:
            return None
        try:
            data = json.loads(cursor)
        except ValueError:
            log.warning("mastodon: ignoring unreadable cursor %r", cursor[:80])
            return None
        return str_or_none(data.get("min_id")) if isinstance(data, dict) else None

    def _cursor(self) -> str | None:
        return json.dumps({"min_id": self._min_id}) if self._min_id is not None else None

    # -- state reports --

    def _report(self, state: str, error: str | None = None) -> None:
        self._mode = state
        if self._ctx is not None:
            self._ctx.report(state, error)

    def _warn(self, error: str) -> None:
        """Keep the current state, attach the latest trouble to it."""
        if self._ctx is not None:
            self._ctx.report(self._mode, error)

    # -- the run --

    async def follow(self, cursor: str | None, ctx: FollowContext) -> AsyncIterator[Batch]:
        """Yield batches from ``cursor`` on, forever (see the class docstring)."""
        self._ctx = ctx
        self.api = self._configured_api
        self._min_id = self._load_cursor(cursor)
        self._seen.clear()
        self.threads.restart()
        await self._rest(lambda api: api.instance_info())

        if self._min_id is None:
            self._report("backfilling")
            batch = await self._backfill()
            if batch is not None:
                yield batch
        else:
            self._report("catching up")
            async for batch in self._catch_up():
                yield batch

        while True:
            if self.streaming and self.api.token:
                async for batch in self._stream():
                    yield batch
            elif self.streaming:
                self._stream_problem = "no access token: Mastodon 4.2+ streams need a user token"
            retry_at = (
                time.monotonic() + self.stream_retry if self.streaming and self.api.token else None
            )
            async for batch in self._poll(retry_at):
                yield batch

    async def _backfill(self) -> Batch | None:
        """The newest ``backfill`` posts in one batch (oldest first) and the first cursor."""
        statuses: list[dict[str, Any]] = []
        max_id: str | None = None
        wanted = max(1, self.backfill)  # with 0 we still need the newest id for the cursor
        while len(statuses) < wanted:
            limit = min(PAGE_LIMIT, wanted - len(statuses))
            page, more = await self._page(max_id=max_id, limit=limit)
            if not page:
                break
            statuses.extend(page)
            max_id = str_or_none(page[-1].get("id"))
            if max_id is None or not more:
                break
        if not statuses:
            return None
        newest = str_or_none(statuses[0].get("id"))
        if newest is not None:
            self._min_id = newest
        keep = statuses[: self.backfill]
        return Batch(changes=self._upserts(reversed(keep)), cursor=self._cursor())

    async def _catch_up(self) -> AsyncIterator[Batch]:
        """Page forward from the cursor until a short page; one batch per non-empty page."""
        while True:
            # Nothing seen yet (the tags were empty): the newest page is the start.
            page, more = await self._page(min_id=self._min_id, limit=PAGE_LIMIT)
            if not page:
                return
            newest = str_or_none(page[0].get("id"))
            if newest is not None:
                self._min_id = newest
            changes = self._upserts(reversed(page))
            yield Batch(changes=changes, cursor=self._cursor())
            if newest is None or not more:
                return

    async def _page(
        self, *, min_id: str | None = None, max_id: str | None = None, limit: int = PAGE_LIMIT
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of statuses carrying any of the tags, newest first, and whether more may
        follow in that direction (a full page).

        With several request groups each is asked the same question and the answers are
        merged by id. A full group page covers only part of the range, so the merge keeps
        what every group has covered — up to the nearest edge of a full page — and the next
        call continues from there: no post is skipped, none is yielded twice.
        """
        pages: list[tuple[list[dict[str, Any]], bool]] = []
        for n in range(len(self._groups)):
            page = await self._group_page(n, min_id=min_id, max_id=max_id, limit=limit)
            pages.append((page, len(page) >= min(limit, SAFE_PAGE)))
        return merge_pages(pages, forward=min_id is not None)

    async def _group_page(
        self, n: int, *, min_id: str | None, max_id: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """Group ``n``'s page. An instance that does not know the tag in the path (404) also
        ignores the others, so each is tried first in turn; the order that worked is kept."""
        group = self._groups[n]
        for _ in range(len(group)):
            page = await self._rest(
                lambda api, g=tuple(group): api.tags_page(
                    g, min_id=min_id, max_id=max_id, limit=limit
                )
            )
            if page is not None:
                self._groups[n] = group
                return page
            group = group[1:] + group[:1]
        return []

    def _upserts(self, statuses: Any) -> list[Change]:
        changes: list[Change] = []
        for data in statuses:
            post = self._parse(data)
            if post is not None and self._fresh(post):
                self.threads.remember(post)
                changes.append(Upsert(post))
        return changes

    def _parse(self, data: Any) -> RemotePost | None:
        try:
            return parse_status(data, self.api.domain)
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning(
                "mastodon %s #%s: skipping unusable status: %s", self.api.host, self.tag, exc
            )
            return None

    def _fresh(self, post: RemotePost) -> bool:
        """True the first time a (post, version) is seen in this run."""
        version = post.edited_at.isoformat() if post.edited_at else None
        if post.remote_id in self._seen and self._seen[post.remote_id] == version:
            return False
        self._seen[post.remote_id] = version
        self._seen.move_to_end(post.remote_id)
        while len(self._seen) > 5000:  # a chat's worth; the database dedupes beyond that
            self._seen.popitem(last=False)
        return True

    # -- REST with retries --

    async def _rest(self, call: Callable[[MastodonApi], Awaitable[T]]) -> T:
        """Run ``call`` with rate-limit pacing and bounded retries of transient failures."""
        failures = 0
        while True:
            pause = self.api.throttle_delay()
            if pause > 0:
                await self._rate_wait(pause)
            try:
                return await call(self.api)
            except AuthError as exc:
                if not self.api.token:
                    raise
                # A revoked token breaks even public reads on Mastodon; carry on without it.
                log.warning(
                    "mastodon %s: token refused (%s); reading anonymously", self.api.host, exc
                )
                self.api = self.api.anonymous()
                self._warn(f"access token refused, reading without it: {exc}")
            except RemoteRejected:
                raise
            except NetworkError as exc:
                if exc.status == 429 and exc.retry_after is not None:
                    await self._rate_wait(exc.retry_after)
                    continue
                failures += 1
                if failures > self.max_retries:
                    raise
                delay = backoff_delay(failures, self.backoff_base, self.backoff_cap)
                log.warning(
                    "mastodon %s: %s; retry %d in %.1fs", self.api.host, exc, failures, delay
                )
                self._warn(str(exc))
                await asyncio.sleep(delay)

    async def _rate_wait(self, seconds: float) -> None:
        if seconds > self.max_rate_wait:
            raise NetworkError(
                f"{self.api.host} rate limit resets in {seconds:.0f}s", retry_after=seconds
            )
        # A hair past the reset: the server's window may end a moment after ours.
        seconds += 0.05
        log.info("mastodon %s: rate limited, waiting %.1fs", self.api.host, seconds)
        self._warn(f"rate limited, waiting {seconds:.0f}s")
        await asyncio.sleep(seconds)

    # -- polling --

    async def _poll(self, retry_stream_at: float | None) -> AsyncIterator[Batch]:
        """Page forward every ``poll_interval`` until ``retry_stream_at`` (never if None)."""
        self._report("polling", self._stream_problem)
        poll_at = time.monotonic()
        while True:
            if time.monotonic() >= poll_at:
                async for batch in self._catch_up():
                    yield batch
                poll_at = time.monotonic() + self.poll_interval
                if (
                    retry_stream_at is not None
                    and self.api.token
                    and time.monotonic() >= retry_stream_at
                ):
                    return
            if time.monotonic() >= self.threads.due:
                batch = await self._context_batch()
                if batch is not None:
                    yield batch
            wake = min(poll_at, self.threads.due)
            await asyncio.sleep(max(0.0, wake - time.monotonic()))

    # -- streaming --

    def _stream_url(self) -> str:
        info = self.api.info
        base = info.streaming_url if info else ws_base(self.api.base_url)
        path = urlsplit(base).path
        if not path.endswith(STREAMING_PATH):
            base = base.rstrip("/") + STREAMING_PATH
        query = {"stream": "hashtag", "tag": self.tags[0]}
        if self.api.token:
            # Some Mastodon-API servers read only the query parameter; Mastodon reads both.
            query["access_token"] = self.api.token
        return f"{base}?{urlencode(query)}"

    async def _stream(self) -> AsyncIterator[Batch]:
        """Stream until the instance refuses it or keeps failing; then return to polling."""
        failures = 0
        while self.api.token:
            try:
                async with self.connect(
                    self._stream_url(),
                    additional_headers={"Authorization": f"Bearer {self.api.token}"},
                    open_timeout=self.open_timeout,
                    ping_interval=self.ping_interval,
                    ping_timeout=self.ping_interval,
                    close_timeout=2,
                    max_size=4 * 1024 * 1024,
                ) as ws:
                    failures = 0
                    # The first tag's stream comes with the URL; the others are subscribed on
                    # the same connection (Mastodon multiplexes streams over one socket).
                    for tag in self.tags[1:]:
                        await ws.send(
                            json.dumps({"type": "subscribe", "stream": "hashtag", "tag": tag})
                        )
                    # Connected first, so nothing published from now on is missed: fill the gap.
                    async for batch in self._catch_up():
                        yield batch
                    self._report("streaming")
                    async for batch in self._frames(ws):
                        yield batch
                    reason = f"stream closed (code {ws.close_code})"
            except InvalidStatus as exc:
                status = exc.response.status_code
                reason = f"streaming refused: HTTP {status}"
                if status < 500:
                    log.warning("mastodon %s #%s: %s; polling", self.api.host, self.tag, reason)
                    self._stream_problem = reason
                    return
            except (WebSocketException, OSError, TimeoutError) as exc:
                reason = f"stream failed: {describe_failure(exc)}"
            failures += 1
            if failures > self.max_retries:
                log.warning("mastodon %s #%s: %s; polling instead", self.api.host, self.tag, reason)
                self._stream_problem = reason
                return
            delay = backoff_delay(failures, self.backoff_base, self.backoff_cap)
            log.info(
                "mastodon %s #%s: %s; reconnecting in %.1fs", self.api.host, self.tag, reason, delay
            )
            self._report("reconnecting", reason)
            await asyncio.sleep(delay)

    async def _frames(self, ws: ClientConnection) -> AsyncIterator[Batch]:
        """Batches from stream frames, and thread context when due, until the connection
        closes (cleanly or not)."""
        while True:
            if time.monotonic() >= self.threads.due:
                context = await self._context_batch()
                if context is not None:
                    yield context
            try:
                # Cancelling recv() loses no message, so waking for thread context is safe.
                async with asyncio.timeout(max(0.0, self.threads.due - time.monotonic())):
                    message = await ws.recv()
            except TimeoutError:
                continue
            except WebSocketException:
                return  # closed, cleanly or with an error code: the caller reconnects
            batch = self._frame(message)
            if batch is not None:
                yield batch

    # -- thread context --

    async def _context_batch(self) -> Batch | None:
        """One thread-context cycle (see :meth:`QuestionThreads.cycle`)."""
        return await self.threads.cycle(self.api, self._parse, self._fresh, self.tag)

    def _frame(self, message: str | bytes) -> Batch | None:
        """One stream frame → a batch, or None for frames to ignore. Never raises."""
        try:
            text = message.decode("utf-8") if isinstance(message, bytes) else message
            frame = json.loads(text)
            if not isinstance(frame, dict):
                raise ValueError(f"frame is a {type(frame).__name__}")
            event = frame.get("event")
            payload = frame.get("payload")
            if event == "delete":
                local_id = str_or_none(payload)
                if local_id is None:
                    raise ValueError("delete without an id")
                return Batch(changes=[Delete(local_id=local_id)])
            if event not in ("update", "status.update"):
                return None  # notifications, filters_changed, announcements…
            status = json.loads(payload) if isinstance(payload, str) else payload
            post = self._parse(status)
            if post is None or not self._fresh(post):
                return None
            self.threads.remember(post)
            cursor = None
            if event == "update" and post.reposted_by is None and post.local_id is not None:
                self._min_id = post.local_id
                cursor = self._cursor()
            return Batch(changes=[Upsert(post)], cursor=cursor)
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            log.warning(
                "mastodon %s #%s: skipping a malformed stream frame (%s, %d characters)",
                self.api.host,
                self.tag,
                type(exc).__name__,
                len(message),
            )
            return None
