"""What both live Bluesky transports share (:class:`LiveFollower`): matching the hashtags,
authors looked up in the background, history from search, the cursor, reconnects with
backoff, and the thread context of questions (:mod:`.threads`)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import WebSocketException

from app.outbound import describe_failure
from app.text import tag_key

from ..atproto_identity import IdentityResolver, fallback_author
from ..atproto_session import AccountClient
from ..base import Author, Batch, Change, Delete, FollowContext, NetworkError, RemotePost, Upsert
from .appview import DEFAULT_APPVIEW_PROXY, get_post_thread, search_posts
from .mapping import matches_tag, post_uri, record_to_post
from .threads import QuestionThreads

log = logging.getLogger(__name__)

NO_HISTORY_NOTICE = (
    "History before the live stream is not available: sign in with a Bluesky account to load "
    "earlier posts."
)
# Jetstream keeps about 36 hours; start history search well inside that.
JETSTREAM_REPLAY_WINDOW = 24 * 3600.0
# A restart re-reads what came after the last committed cursor; committing it every few
# seconds even when nothing matched keeps that re-read short on a busy network.
CURSOR_INTERVAL = 10.0
# Remembered (uri → cid) of posts yielded, to turn deletes into Delete and drop redeliveries.
SEEN_LIMIT = 50_000
# Posts waiting for their author's profile, and concurrent profile lookups.
WAITING_LIMIT = 2_000
LOOKUP_CONCURRENCY = 8


class Malformed(Exception):
    """A frame that cannot be understood; it is logged and skipped."""


class Reconnect(Exception):
    """The server asked us to go away (an error frame); reconnect, maybe from elsewhere."""

    def __init__(self, reason: str, *, drop_cursor: bool = False):
        super().__init__(reason)
        self.drop_cursor = drop_cursor


@dataclass(slots=True)
class Position:
    """Where the stream is: the last event read, and what the ingester last got as cursor."""

    value: int | None
    committed: int | None
    event_at: float  # monotonic time of the last event read (for outage length)
    event_time: datetime | None  # the network's time of that event, when known
    yielded_at: float


def _ws_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"not a websocket or http(s) URL: {url!r}")
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))


def with_query(url: str, params: list[tuple[str, str]]) -> str:
    """``url`` with ``params`` in its query, replacing any of the same names there."""
    parts = urlsplit(url)
    names = {name for name, _ in params}
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in names] + params
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential delay capped at ``cap``, jittered over its upper half."""
    ceiling = min(cap, base * (2 ** min(attempt, 30)))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class LiveFollower:
    """What both live transports share: matching, authors, history, cursor and reconnects."""

    transport = "stream"
    replay_window = JETSTREAM_REPLAY_WINDOW
    max_frame = 2**21

    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        tag: str | Sequence[str],
        resolver: IdentityResolver,
        *,
        account: AccountClient | None = None,
        search_service: str | None = None,
        backfill_limit: int = 100,
        known_ids: Iterable[str] = (),
        replay_window: float | None = None,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        cursor_interval: float = CURSOR_INTERVAL,
        open_timeout: float = 10.0,
        appview_url: str | None = None,
        appview_proxy: str | None = DEFAULT_APPVIEW_PROXY,
        context_interval: float = 60.0,
        context_window: float = 2 * 3600.0,
        connect: Callable[..., Any],
    ):
        """Follow ``tag`` (with or without '#'), or every one of a list of tags (a post
        carrying any of them), on the stream at ``url``.

        ``resolver`` names authors (looked up in the background, see the package docstring).
        ``account`` (a signed-in :class:`AccountClient`) enables history search, at most
        ``backfill_limit`` posts, sent to ``search_service`` when given (else the account's
        PDS). ``known_ids`` are remote ids of posts already in the room, so their deletes
        are reported after a restart. ``replay_window`` (s) is how far back the stream can
        replay; a longer outage searches history. Reconnects wait ``backoff_base`` doubling
        up to ``backoff_cap`` seconds, jittered. With nothing matching, the cursor still
        moves forward every ``cursor_interval`` seconds (a batch with no changes). ``connect``
        opens the websocket (the signature of websockets' ``connect``).

        Thread context (package docstring) asks ``account``'s PDS (or ``search_service``),
        with ``appview_proxy`` as its ``atproto-proxy`` header, or without an account the
        public AppView at ``appview_url``; with neither it is off. Questions are watched for
        ``context_window`` seconds, their threads fetched every ``context_interval`` seconds.
        """
        if context_interval <= 0:
            raise ValueError("context_interval must be positive")
        self.http = http
        self.connect = connect  # websockets' connect signature; the app passes a guarded one
        self.url = _ws_url(url)
        self.tags = [t.strip().lstrip("#") for t in ([tag] if isinstance(tag, str) else tag)]
        if not self.tags or not all(tag_key(t) for t in self.tags):
            raise ValueError("a Bluesky follower needs a hashtag")
        self.tag = self.tags[0]  # for logs
        self.resolver = resolver
        self.account = account
        self.search_service = search_service
        self.backfill_limit = max(0, backfill_limit)
        if replay_window is not None:
            self.replay_window = replay_window
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.cursor_interval = cursor_interval
        self.open_timeout = open_timeout
        self._seen: OrderedDict[str, str | None] = OrderedDict((uri, None) for uri in known_ids)
        self._trim_seen()
        self._noticed = False
        self._waiting: dict[str, list[RemotePost]] = {}
        self._waiting_count = 0
        self._lookups: dict[str, asyncio.Task[Author]] = {}
        self._resolved: list[tuple[str, Author]] = []
        self._lookup_slots = asyncio.Semaphore(LOOKUP_CONCURRENCY)
        self.appview_url = appview_url.rstrip("/") if appview_url else None
        self.appview_proxy = appview_proxy or None
        self.threads = QuestionThreads(
            self._fetch_thread, self.tags, interval=context_interval, window=context_window
        )
        self._threaded: OrderedDict[str, None] = OrderedDict()  # uris found in threads

    # --- to implement per transport --------------------------------------------------------

    def _connect_url(self, position: Position) -> str:
        raise NotImplementedError

    def _read(self, message: str | bytes, position: Position) -> tuple[list[Change], bool]:
        """Changes in one message and whether history should be searched now."""
        raise NotImplementedError

    def _parse_cursor(self, cursor: str | None) -> int | None:
        if cursor is None or cursor == "":
            return None
        try:
            value = int(cursor)
        except ValueError:
            log.warning("ignoring unreadable %s cursor %r", self.transport, cursor)
            return None
        return value if value >= 0 else None

    def _history_since(self, position: Position) -> datetime | None:
        return position.event_time

    def _cursor_too_old(self, value: int) -> bool:
        return False

    # --- the loop ------------------------------------------------------------------------

    async def follow(self, cursor: str | None, ctx: FollowContext) -> AsyncIterator[Batch]:
        """Yield batches from ``cursor`` on, forever; reconnects on drops, never gives up."""
        value = self._parse_cursor(cursor)
        now = time.monotonic()
        position = Position(value, value, now, None, now)
        want_history = value is None or self._cursor_too_old(value)
        attempt = 0
        self.threads.due = now + self.threads.interval
        try:
            while True:
                error = None
                try:
                    async with self.connect(
                        self._connect_url(position),
                        open_timeout=self.open_timeout,
                        max_size=self.max_frame,
                        user_agent_header="Hashroom",
                    ) as ws:
                        ctx.report("streaming")
                        if want_history:
                            want_history = False
                            async for batch in self._history(ctx, self._history_since(position)):
                                yield batch
                        async for batch in self._stream(ws, position, ctx):
                            attempt = 0
                            yield batch
                        error = "the server closed the stream"
                except Reconnect as exc:
                    error = str(exc)
                    if exc.drop_cursor:
                        position.value = position.committed = None
                        want_history = True
                except (WebSocketException, OSError, TimeoutError) as exc:
                    error = describe_failure(exc)
                log.info("%s stream for #%s interrupted: %s", self.transport, self.tag, error)
                ctx.report("reconnecting", error)
                if time.monotonic() - position.event_at > self.replay_window:
                    want_history = True  # the stream cannot replay all we missed
                await asyncio.sleep(_backoff(attempt, self.backoff_base, self.backoff_cap))
                attempt += 1
        finally:
            for task in self._lookups.values():
                task.cancel()
            self.threads.cancel()

    async def _stream(
        self, ws: ClientConnection, position: Position, ctx: FollowContext
    ) -> AsyncIterator[Batch]:
        while True:
            busy = self._lookups or self._resolved or self.threads.task is not None
            wait = 0.2 if busy else self.cursor_interval
            if self.threads.watching:
                wait = min(wait, max(0.01, self.threads.due - time.monotonic()))
            try:
                message: str | bytes | None = await asyncio.wait_for(ws.recv(), wait)
            except TimeoutError:
                message = None
            changes: list[Change] = []
            if message is not None:
                wants_history = False
                try:
                    changes, wants_history = self._read(message, position)
                except Reconnect:
                    raise
                except Malformed as exc:
                    log.warning("skipped a malformed %s frame: %s", self.transport, exc)
                except Exception:  # one hostile event must not stop the room's stream
                    log.exception("skipped a %s frame that could not be handled", self.transport)
                if wants_history:
                    async for batch in self._history(ctx, None):
                        yield batch
            changes.extend(self._take_resolved())
            now = time.monotonic()
            cursor = None
            moved = position.value is not None and position.value != position.committed
            if moved and (changes or now - position.yielded_at >= self.cursor_interval):
                cursor = str(position.value)
                position.committed = position.value
            if changes or cursor is not None:
                position.yielded_at = now
                yield Batch(changes=changes, cursor=cursor)
            thread = self._thread_changes()
            if thread:
                yield Batch(changes=thread)  # not part of the stream: the cursor stays

    # --- records -------------------------------------------------------------------------

    def _trim_seen(self) -> None:
        while len(self._seen) > SEEN_LIMIT:
            self._seen.popitem(last=False)

    def _on_record(
        self, did: str, rkey: str, action: str, cid: str | None, record: Any
    ) -> Change | None:
        """The change one post operation brings to the room, if any."""
        uri = post_uri(did, rkey)
        if action == "delete":
            if uri in self._seen:
                del self._seen[uri]
                return Delete(remote_id=uri)
            return None
        if not isinstance(record, dict):
            raise Malformed(f"{action} of {uri} without a record")
        threaded = uri in self._threaded
        if not matches_tag(record, self.tags) and not (threaded and action == "update"):
            if action == "update" and uri in self._seen:
                del self._seen[uri]  # edited to drop the tag: it leaves the room
                return Delete(remote_id=uri)
            return None
        if uri in self._seen and cid is not None and self._seen[uri] == cid:
            return None  # the same version delivered again
        self._seen[uri] = cid
        self._seen.move_to_end(uri)
        self._trim_seen()
        identity = self.resolver.cached_identity(did)
        author = self.resolver.cached_author(did)
        post = record_to_post(
            did,
            rkey,
            cid,
            record,
            author=author or fallback_author(did, identity.handle if identity else None),
            pds_url=identity.pds if identity else None,
        )
        if threaded:
            post.extra["thread_context"] = True
        else:
            self._remember_question(post)
        if author is None:
            self._wait_for_author(did, post)
        return Upsert(post)

    def _wait_for_author(self, did: str, post: RemotePost) -> None:
        if self._waiting_count >= WAITING_LIMIT:
            return  # keeps the stand-in author; better than unbounded memory
        self._waiting.setdefault(did, []).append(post)
        self._waiting_count += 1
        if did not in self._lookups:
            task = asyncio.get_running_loop().create_task(self._look_up(did))
            self._lookups[did] = task

    async def _look_up(self, did: str) -> Author:
        try:
            async with self._lookup_slots:
                author = await self.resolver.author(did)
            self._resolved.append((did, author))
            return author
        finally:
            self._lookups.pop(did, None)

    def _take_resolved(self) -> list[Change]:
        changes: list[Change] = []
        resolved, self._resolved = self._resolved, []
        for did, author in resolved:
            posts = self._waiting.pop(did, [])
            self._waiting_count -= len(posts)
            for post in posts:
                if author != post.author and post.remote_id in self._seen:
                    changes.append(Upsert(replace(post, author=author)))
        return changes

    # --- thread context --------------------------------------------------------------------

    @property
    def context_enabled(self) -> bool:
        """True when threads can be fetched: a signed-in account or a public AppView."""
        return self.account is not None or self.appview_url is not None

    def _remember_question(self, post: RemotePost) -> None:
        """Watch ``post``'s thread when it is a question (see the package docstring)."""
        if self.context_enabled:
            self.threads.remember(post)

    async def _fetch_thread(self, uri: str) -> dict[str, Any]:
        """The ``getPostThread`` answer for ``uri``, asked as the account or of the AppView."""
        return await get_post_thread(
            self.http,
            uri,
            account=self.account,
            service=self.search_service if self.account else self.appview_url,
            proxy=self.appview_proxy,
        )

    def _thread_changes(self) -> list[Change]:
        """Starts a thread-context cycle when one is due; returns the replies of a finished
        one that the room has not had yet, flagged. Never raises (but for cancellation)."""
        changes: list[Change] = []
        for post in self.threads.collect():
            cid = post.extra.get("cid")
            if post.remote_id in self._seen and self._seen[post.remote_id] in (None, cid):
                continue  # delivered already (or in the room since before a restart)
            self._seen[post.remote_id] = cid
            self._seen.move_to_end(post.remote_id)
            self._threaded[post.remote_id] = None
            self._threaded.move_to_end(post.remote_id)
            post.extra["thread_context"] = True
            changes.append(Upsert(post))
        self._trim_seen()
        while len(self._threaded) > SEEN_LIMIT:
            self._threaded.popitem(last=False)
        return changes

    # --- history -------------------------------------------------------------------------

    async def _history(self, ctx: FollowContext, since: datetime | None) -> AsyncIterator[Batch]:
        """Recent posts from search, oldest first, in one batch (cursor unchanged)."""
        if self.account is None:
            if not self._noticed:
                self._noticed = True
                ctx.notice(NO_HISTORY_NOTICE)
            return
        if self.backfill_limit == 0:
            return
        ctx.report("loading history")
        found: dict[str, RemotePost] = {}
        tag = self.tag
        try:
            # One search per tag (searchPosts takes a single query); a post carrying two of
            # them is found twice and kept once, by its uri.
            for tag in self.tags:
                cursor, taken = None, 0
                while taken < self.backfill_limit:
                    page = await search_posts(
                        self.account,
                        tag,
                        since=since,
                        cursor=cursor,
                        limit=min(100, self.backfill_limit - taken),
                        service=self.search_service,
                    )
                    taken += len(page.posts)
                    for post in page.posts:
                        found.setdefault(post.remote_id, post)
                    if not page.posts or not page.cursor or page.cursor == cursor:
                        break
                    cursor = page.cursor
        except (NetworkError, ValueError) as exc:
            log.warning("history search for #%s failed: %s", tag, exc)
            ctx.report("streaming", f"history search failed: {exc}")
            if not found:
                return
        posts = sorted(found.values(), key=lambda p: p.created_at)[-self.backfill_limit :]
        for post in posts:
            self._seen[post.remote_id] = post.extra.get("cid")
            self._remember_question(post)
        self._trim_seen()
        ctx.report("streaming")
        if posts:
            yield Batch(changes=[Upsert(p) for p in posts], cursor=None)
