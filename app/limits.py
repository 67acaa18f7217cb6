"""Quotas: per-client rate limits, the request-body cap and websocket connection counts.

Rate limiting sits behind :class:`RateLimiter` so another process-shared store (Redis) can
stand in for :class:`MemoryRateLimiter` without the routes knowing. The client a quota is
counted against is ``scope["client"]``: the peer address, or — only for a peer listed in
``HASHROOM_TRUSTED_PROXIES`` — the address that proxy put in ``X-Forwarded-For`` (uvicorn's
proxy-headers middleware, installed by the app factory only then). No header is ever
believed from anyone else.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import Request
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import RateLimited

log = logging.getLogger(__name__)

# Keys the in-memory limiter remembers; the oldest are forgotten first. A forgotten key
# only means that client gets a fresh allowance: memory stays bounded whatever the traffic.
MEMORY_KEYS = 100_000


class RateLimiter(Protocol):
    """Counts hits per key; the seam a shared (Redis) implementation plugs into."""

    async def hit(self, key: str, limit: int, window: float) -> float | None:
        """Record one hit on ``key``, allowing ``limit`` hits per ``window`` seconds.

        Returns None when the hit is allowed (and counted), else the seconds to wait before
        one would be (the refused hit is not counted).
        """
        ...


class MemoryRateLimiter:
    """GCRA (a token bucket stored as one timestamp per key), in this process's memory.

    A client may burst ``limit`` hits at once, then gets one more every
    ``window / limit`` seconds. O(1) time and memory per hit; at most ``max_keys`` keys.
    """

    def __init__(self, max_keys: int = MEMORY_KEYS, clock: Any = time.monotonic) -> None:
        self._tat: OrderedDict[str, float] = OrderedDict()  # theoretical arrival time per key
        self._max_keys = max_keys
        self._clock = clock

    async def hit(self, key: str, limit: int, window: float) -> float | None:
        """See :meth:`RateLimiter.hit`."""
        now = self._clock()
        interval = window / limit
        tat = max(self._tat.get(key, now), now)
        wait = (tat - now) - (window - interval)
        if wait > 1e-6:  # not 0: float rounding must not refuse a client's first hit
            return wait
        self._tat[key] = tat + interval
        self._tat.move_to_end(key)
        while len(self._tat) > self._max_keys:
            self._tat.popitem(last=False)
        return None


# GCRA as MemoryRateLimiter does it, atomically in Redis on Redis's clock (one clock for
# every process). KEYS[1]: the key; ARGV: the emission interval and the window, in ms.
# Returns -1 when the hit is allowed (and counted), else the milliseconds to wait.
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = (tat - now) - (window - interval)
if wait > 0.001 then return math.ceil(wait) end
local new = tat + interval
redis.call('SET', KEYS[1], tostring(new), 'PX', math.ceil(new - now) + 1)
return -1
"""
REDIS_KEY_PREFIX = "hashroom:rate:"
REDIS_TIMEOUT = 0.5  # seconds; a request must not wait long on a sick Redis
REDIS_RETRY_AFTER = 2.0  # after a failure, count in memory this long before trying again


class RedisRateLimiter:
    """GCRA shared by every process through Redis (one atomic script per hit).

    When Redis cannot be reached the hit is counted by a :class:`MemoryRateLimiter` in this
    process instead (fail open to per-process limits, logged once per outage): a quota must
    not turn a Redis outage into errors for everyone.
    """

    def __init__(self, url: str, fallback: RateLimiter | None = None) -> None:
        import redis.asyncio as aioredis

        self._client = aioredis.Redis.from_url(
            url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT
        )
        self._script = self._client.register_script(GCRA_LUA)
        self.fallback = fallback or MemoryRateLimiter()
        self._down_until = 0.0
        self.failing = False

    async def hit(self, key: str, limit: int, window: float) -> float | None:
        """See :meth:`RateLimiter.hit`."""
        if time.monotonic() >= self._down_until:
            try:
                interval_ms = window * 1000 / limit
                wait_ms = await self._script(
                    keys=[REDIS_KEY_PREFIX + key], args=[interval_ms, window * 1000]
                )
            except Exception as exc:
                self._down_until = time.monotonic() + REDIS_RETRY_AFTER
                if not self.failing:
                    log.warning(
                        "rate limits: Redis unreachable (%r); counting in this process meanwhile",
                        exc,
                    )
                self.failing = True
            else:
                if self.failing:
                    log.info("rate limits: Redis is back; limits are shared again")
                self.failing = False
                return None if int(wait_ms) < 0 else int(wait_ms) / 1000
        return await self.fallback.hit(key, limit, window)


def make_rate_limiter(settings: Any) -> RateLimiter:
    """The limiter for this process's settings: shared through Redis when
    ``HASHROOM_REDIS_URL`` is set, else in this process's memory."""
    if getattr(settings, "redis_url", ""):
        return RedisRateLimiter(settings.redis_url)
    return MemoryRateLimiter()


def client_address(conn: HTTPConnection) -> str:
    """The address quotas count against (already resolved through trusted proxies)."""
    return conn.client.host if conn.client else "unknown"


@dataclass(frozen=True, slots=True)
class Quota:
    """``limit`` hits per ``window`` seconds per client for one named action (0: no limit)."""

    name: str
    setting: str  # the Settings field holding the limit
    window: float
    what: str  # for the error message: "chats created"


CHATS = Quota("chats", "rate_chats_per_hour", 3600.0, "chats created")
POSTS = Quota("posts", "rate_posts_per_minute", 60.0, "posts")
ACCOUNTS = Quota("accounts", "rate_accounts_per_hour", 3600.0, "account connections")
SIGN_INS = Quota("oauth", "rate_sign_ins_per_hour", 3600.0, "sign-ins started")
VOTES = Quota("votes", "rate_votes_per_minute", 60.0, "votes")


def _per(window: float) -> str:
    return {60.0: "minute", 3600.0: "hour"}.get(window, f"{window:g} seconds")


async def enforce(request: Request, quota: Quota) -> None:
    """Count one ``quota`` hit for the caller; 429 with ``Retry-After`` once over it."""
    limit = int(getattr(request.app.state.settings, quota.setting))
    if limit <= 0:
        return
    limiter: RateLimiter = request.app.state.rate_limiter
    wait = await limiter.hit(f"{quota.name}:{client_address(request)}", limit, quota.window)
    if wait is None:
        return
    seconds = max(1, math.ceil(wait))
    raise RateLimited(
        f"too many {quota.what} from your address: at most {limit} per {_per(quota.window)}; "
        f"try again in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )


def limit(quota: Quota) -> Any:
    """A route dependency counting ``quota`` (``dependencies=[limit(CHATS)]``)."""

    async def dependency(request: Request) -> None:
        await enforce(request, quota)

    dependency.__name__ = f"limit_{quota.name}"
    return dependency


class ConnectionSlots:
    """Open websocket connections per client address, capped (this process only)."""

    def __init__(self) -> None:
        self._open: dict[str, int] = {}

    def acquire(self, address: str, cap: int) -> bool:
        """Take a slot for ``address``; False (and nothing taken) when it holds ``cap``.
        ``cap`` 0 means no cap."""
        held = self._open.get(address, 0)
        if cap > 0 and held >= cap:
            return False
        self._open[address] = held + 1
        return True

    def release(self, address: str) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        held = self._open.get(address, 0) - 1
        if held > 0:
            self._open[address] = held
        else:
            self._open.pop(address, None)

    def held(self, address: str) -> int:
        return self._open.get(address, 0)


class BodyLimit:
    """Refuses request bodies over ``max_bytes`` with 413, declared or streamed.

    A ``Content-Length`` over the cap is refused before the app runs. A body that turns out
    bigger while being read (chunked, or a lying length) stops being read at the cap; the
    app's answer to the truncated body is replaced by the 413.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.max_bytes <= 0:
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return
        seen = 0
        over = False
        started = False

        async def counted_receive() -> Message:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:
                if not started:
                    started = True
                    await self._refuse(send)
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not over:
                raise
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {"detail": f"request body too large: send at most {self.max_bytes} bytes"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    # No "connection: close": the server then discards the rest of the body
                    # unread and the client gets this answer instead of a reset connection.
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def check_proxies(values: list[str]) -> list[str]:
    """Each entry must be an IP address or network (no names, no ``*``): a header is
    believed only from a peer we can name exactly."""
    import ipaddress

    out = []
    for value in values:
        value = value.strip()
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise ValueError(
                f"trusted_proxies: {value!r} is not an IP address or network (e.g. 10.0.0.0/8)"
            ) from exc
        out.append(value)
    return out
