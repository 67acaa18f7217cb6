"""Web Push notifications: the server's VAPID keys, browsers' subscriptions to chats, and a
supervised sender that never blocks the room.

Three kinds of notice, each asked for per chat:

- ``starts``: a scheduled chat's next session starts within ``HASHROOM_PUSH_START_MINUTES``;
- ``pinned``: a moderator pinned a question;
- ``reply``: someone replied to a post the subscriber made through Hashroom.

The room hands over its notes after each committed write (:attr:`Rooms.observers`); they are
queued (bounded, dropped with a warning when full, never awaited by the room), fanned out to
the chat's subscriptions and delivered by a few workers. A failed delivery is retried with
capped exponential backoff; a subscription the push service calls expired (404/410) is
deleted.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import delete, select
from sqlmodel import Session

from .config import Settings
from .errors import NotFound, Unavailable
from .leases import SCHEDULER, Leases, run_while_holding
from .models import Chat, PushKey, PushSubscription
from .networks.webpush import Subscription, VapidKeys, deliver
from .outbound import OutboundPolicy, check_url
from .rooms import RoomNote, Rooms
from .schedule import next_session
from .scheduler import schedule_of
from .security import Vault
from .tasks import Supervisor

log = logging.getLogger(__name__)

KINDS = ("starts", "pinned", "reply")
# How long a push service should keep trying to reach an offline device: a session reminder
# is useless once the session started; a pinned question is stale after half an hour; a reply
# is still worth seeing the next day.
TTL = {"pinned": 1800, "reply": 86400}
# A few concurrent deliveries keep one slow push service from delaying the others without
# opening hundreds of connections at once.
WORKERS = 4
# One browser subscribing to more chats than this is a script, not a person.
MAX_PER_DEVICE = 50
# The session reminder loop wakes at least this often (a schedule may have changed).
STARTS_POLL = 30.0


class PushUnavailable(Unavailable, RuntimeError):
    """The stored VAPID key cannot be opened (HASHROOM_SECRET_KEY changed)."""


def device_token(secret_key: str, endpoint: str) -> str:
    """The token a browser uses to list and remove its subscriptions: derived from its
    endpoint, so re-subscribing the same browser finds its earlier subscriptions."""
    return hmac.new(
        b"hashroom-push:" + secret_key.encode(), endpoint.encode(), hashlib.sha256
    ).hexdigest()


def owner_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_kinds(raw: Any) -> list[str]:
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"kinds: give a non-empty list drawn from {', '.join(KINDS)}")
    kinds = []
    for kind in raw:
        if kind not in KINDS:
            raise ValueError(f"kinds: {kind!r} is not one of {', '.join(KINDS)}")
        if kind not in kinds:
            kinds.append(kind)
    return kinds


def check_endpoint(raw: Any, *, policy: OutboundPolicy) -> str:
    """A push endpoint the server may POST to, checked by the outbound policy: https (http
    only on this machine in development), no local or private address in production.
    Raises ValueError naming the field."""
    parts = check_url(
        raw,
        "subscription.endpoint",
        secure="https",
        plain="http",
        policy=policy,
        example="https://fcm.googleapis.com/fcm/send/…",
        max_length=1000,
    )
    return parts.geturl()


def subscription_json(row: PushSubscription, chat: Chat | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "chat": chat.slug if chat else None,
        "title": chat.title if chat else None,
        "hashtag": chat.hashtag if chat else None,
        "kinds": row.kinds,
        "replies_for_accounts": row.account_ids,
        "created_at": row.created_at.isoformat() if row.created_at else None,
    }


@dataclass(slots=True)
class Job:
    """One message to one subscription; ``tries`` counts failed attempts so far."""

    subscription_id: int
    sub: Subscription
    message: dict[str, Any]
    ttl: int
    topic: str
    tries: int = 0


@dataclass
class PushStats:
    sent: int = 0
    retried: int = 0
    expired: int = 0
    failed: int = 0
    dropped: int = 0
    last_error: str | None = None
    by_kind: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "retried": self.retried,
            "expired": self.expired,
            "failed": self.failed,
            "dropped": self.dropped,
            "last_error": self.last_error,
        }


class Push:
    """Keys, subscriptions and the sender. :meth:`start` loads (or creates) the key pair and
    starts the supervised tasks."""

    def __init__(
        self,
        rooms: Rooms,
        vault: Vault,
        http: httpx.AsyncClient,
        settings: Settings,
        supervisor: Supervisor,
        policy: OutboundPolicy,
    ) -> None:
        self.rooms = rooms
        self.vault = vault
        self.http = http
        self.settings = settings
        self.supervisor = supervisor
        self.keys: VapidKeys | None = None
        self.stats = PushStats()
        self.policy = policy
        self.contact = settings.push_contact or _contact_from(settings.public_url)
        self.lead = timedelta(minutes=settings.push_start_minutes)
        self._notes: asyncio.Queue[RoomNote] = asyncio.Queue(settings.push_queue_size)
        self._jobs: asyncio.Queue[Job] = asyncio.Queue(settings.push_queue_size)
        self._timers: set[asyncio.TimerHandle] = set()
        self._wake = asyncio.Event()
        self.leases: Leases | None = None  # set by the app in a cluster (app/leases.py)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Load or create the VAPID keys, then run the dispatcher, workers and reminders.
        With keys that cannot be opened, push stays off (logged) and nothing is deleted."""
        try:
            self.keys = await self.rooms.read(self._load_keys)
            if self.keys is None:
                self.keys = await self.rooms.write(self._create_keys)
        except PushUnavailable as exc:
            log.error("push notifications are off: %s", exc)
            return
        self.rooms.observers.append(self.on_notes)
        self.supervisor.start("push-dispatch", self._dispatch_loop())
        for n in range(WORKERS):
            self.supervisor.start(f"push-worker-{n}", self._worker_loop())
        # Once per cluster: only the holder of the scheduler lease sends reminders.
        self.supervisor.start(
            "push-starts", run_while_holding(self.leases, SCHEDULER, self._starts_loop)
        )

    def stop_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def _load_keys(self, session: Session) -> VapidKeys | None:
        row = session.execute(select(PushKey).order_by(PushKey.id)).scalars().first()  # type: ignore[arg-type]
        if row is None:
            return None
        try:
            return VapidKeys.from_pem(self.vault.open(row.private_key)["pem"])
        except ValueError as exc:
            raise PushUnavailable(str(exc)) from exc

    def _create_keys(self, session: Session) -> tuple[VapidKeys, list[Any]]:
        # Another process may have created them meanwhile: the first row wins everywhere.
        existing = self._load_keys(session)
        if existing is not None:
            return existing, []
        keys = VapidKeys.generate()
        session.add(
            PushKey(private_key=self.vault.seal({"pem": keys.private_pem}), public_key=keys.public)
        )
        return keys, []

    @property
    def public_key(self) -> str:
        if self.keys is None:
            raise PushUnavailable(
                "push notifications are off on this server (its stored VAPID key cannot be "
                "decrypted with HASHROOM_SECRET_KEY)"
            )
        return self.keys.public

    # -- subscriptions -----------------------------------------------------------------

    async def subscribe(
        self,
        slug: str,
        raw: dict[str, Any],
        kinds: list[str],
        account_ids: list[int],
    ) -> tuple[dict[str, Any], str]:
        """Store (or update) this browser's subscription to ``slug``; returns it and the
        device token. Raises ValueError for bad input, NotFound for an unknown chat."""
        self.public_key  # noqa: B018 - refuses early when push is off
        endpoint = check_endpoint(raw.get("endpoint"), policy=self.policy)
        keys = raw.get("keys") if isinstance(raw.get("keys"), dict) else {}
        p256dh, auth = keys.get("p256dh"), keys.get("auth")
        if not isinstance(p256dh, str) or not isinstance(auth, str):
            raise ValueError("subscription.keys: give p256dh and auth, as the browser returns them")
        if len(p256dh) > 200 or len(auth) > 100:
            raise ValueError("subscription.keys: p256dh or auth is too long")
        Subscription(endpoint, p256dh, auth).check()
        token = device_token(self.settings.secret_key, endpoint)
        owner = owner_of(token)

        def fn(session: Session) -> tuple[dict[str, Any], list[Any]]:
            chat = self.rooms.chat_by_slug(session, slug)
            row = session.execute(
                select(PushSubscription).where(
                    PushSubscription.owner == owner,  # type: ignore[arg-type]
                    PushSubscription.chat_id == chat.id,  # type: ignore[arg-type]
                )
            ).scalar_one_or_none()
            if row is None:
                count = len(
                    session.execute(
                        select(PushSubscription.id).where(PushSubscription.owner == owner)  # type: ignore[arg-type]
                    ).all()
                )
                if count >= MAX_PER_DEVICE:
                    raise ValueError(
                        f"this browser already follows {count} chats; remove some first"
                    )
                row = PushSubscription(chat_id=chat.id, owner=owner, endpoint=endpoint)  # type: ignore[arg-type]
            row.endpoint, row.p256dh, row.auth = endpoint, p256dh, auth
            row.kinds = kinds
            row.account_ids = sorted(set(account_ids))[-10:]
            session.add(row)
            session.flush()
            return subscription_json(row, chat), []

        out = await self.rooms.write(fn)
        if "starts" in kinds:
            self._wake.set()
        return out, token

    async def mine(self, token: str) -> list[dict[str, Any]]:
        owner = owner_of(token)

        def fn(session: Session) -> list[dict[str, Any]]:
            rows = session.execute(
                select(PushSubscription, Chat)
                .join(Chat, Chat.id == PushSubscription.chat_id)  # type: ignore[arg-type]
                .where(PushSubscription.owner == owner)  # type: ignore[arg-type]
                .order_by(PushSubscription.id)  # type: ignore[arg-type]
            ).all()
            return [subscription_json(row, chat) for row, chat in rows]

        return await self.rooms.read(fn)

    async def remove(self, token: str, subscription_id: int) -> None:
        """Delete one of this device's subscriptions; NotFound when it has no such one."""
        owner = owner_of(token)

        def fn(session: Session) -> tuple[None, list[Any]]:
            row = session.get(PushSubscription, subscription_id)
            if row is None or not hmac.compare_digest(row.owner, owner):
                raise NotFound(f"no push subscription {subscription_id} for this browser")
            session.delete(row)
            return None, []

        await self.rooms.write(fn)

    # -- notices -------------------------------------------------------------------------

    def on_notes(self, notes: list[RoomNote]) -> None:
        """Queue the room's notes. Never blocks: a full queue drops them, with a warning."""
        for note in notes:
            try:
                self._notes.put_nowait(note)
            except asyncio.QueueFull:
                self.stats.dropped += 1
                log.warning("push: queue full, dropping a %s notice for %s", note.kind, note.slug)

    async def _dispatch_loop(self) -> None:
        while True:
            note = await self._notes.get()
            try:
                await self.dispatch(note)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("push: could not dispatch a %s notice", note.kind)

    async def dispatch(self, note: RoomNote) -> int:
        """Queue one message per subscription that asked for ``note``; returns how many."""

        def fn(session: Session) -> list[PushSubscription]:
            return list(
                session.execute(
                    select(PushSubscription).where(PushSubscription.chat_id == note.chat_id)  # type: ignore[arg-type]
                ).scalars()
            )

        rows = [
            row
            for row in await self.rooms.read(fn)
            if note.kind in row.kinds
            and (note.kind != "reply" or note.account_id in row.account_ids)
        ]
        message = _message(note)
        for row in rows:
            self._queue(
                Job(
                    row.id,
                    _sub(row),
                    message,
                    TTL.get(note.kind, 3600),
                    f"{note.kind}-{note.chat_id}",
                )  # type: ignore[arg-type]
            )
        return len(rows)

    def _queue(self, job: Job) -> None:
        try:
            self._jobs.put_nowait(job)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            log.warning("push: send queue full, dropping a message")

    async def _worker_loop(self) -> None:
        while True:
            job = await self._jobs.get()
            try:
                await self.send(job)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("push: delivery crashed")

    async def send(self, job: Job) -> str:
        """Deliver one job; on a temporary failure schedule a retry with capped backoff;
        drop the subscription when it expired. Returns the outcome."""
        assert self.keys is not None
        result = await deliver(
            self.http,
            self.keys,
            job.sub,
            job.message,
            subject=self.contact,
            ttl=job.ttl,
            topic=job.topic,
        )
        kind = job.message.get("kind", "")
        if result.outcome == "sent":
            self.stats.sent += 1
            self.stats.by_kind[kind] = self.stats.by_kind.get(kind, 0) + 1
        elif result.outcome == "gone":
            self.stats.expired += 1
            await self._drop(job.subscription_id)
        elif result.outcome == "retry" and job.tries + 1 < self.settings.push_max_tries:
            job.tries += 1
            self.stats.retried += 1
            self.stats.last_error = result.detail
            delay = min(
                self.settings.backoff_cap, self.settings.backoff_base * 2 ** (job.tries - 1)
            )
            delay = max(delay * random.uniform(0.8, 1.2), result.retry_after or 0.0)
            delay = min(delay, self.settings.backoff_cap)
            self._later(delay, job)
        else:
            self.stats.failed += 1
            self.stats.last_error = result.detail
            log.warning(
                "push: giving up on a message to subscription %s: %s",
                job.subscription_id,
                result.detail,
            )
        return result.outcome

    def _later(self, delay: float, job: Job) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            self._queue(job)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    async def _drop(self, subscription_id: int) -> None:
        def fn(session: Session) -> tuple[None, list[Any]]:
            session.execute(delete(PushSubscription).where(PushSubscription.id == subscription_id))  # type: ignore[arg-type]
            return None, []

        await self.rooms.write(fn)
        log.info("push: subscription %s expired at its push service; removed", subscription_id)

    # -- session reminders ----------------------------------------------------------------

    async def _starts_loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.remind(datetime.now(UTC))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("push: session reminders failed; retrying")
            try:
                await asyncio.wait_for(self._wake.wait(), STARTS_POLL)
            except TimeoutError:
                pass

    async def remind(self, now: datetime) -> int:
        """Queue "starts soon" for every subscription whose chat's next session starts within
        the lead time and that was not told about that session yet; returns how many."""
        lead = self.lead

        def fn(session: Session) -> tuple[list[Job], list[Any]]:
            rows = session.execute(
                select(PushSubscription, Chat).join(Chat, Chat.id == PushSubscription.chat_id)  # type: ignore[arg-type]
            ).all()
            jobs = []
            # Expanded once per chat, however many subscribe to it.
            next_of: dict[int, Any] = {}
            for row, chat in rows:
                if "starts" not in row.kinds:
                    continue
                if chat.id not in next_of:
                    schedule = schedule_of(chat)
                    next_of[chat.id] = next_session(schedule, now) if schedule else None  # type: ignore[index]
                upcoming = next_of[chat.id]  # type: ignore[index]
                if upcoming is None or upcoming.start - now > lead:
                    continue
                told = row.notified_start
                if told is not None and told.replace(tzinfo=told.tzinfo or UTC) == upcoming.start:
                    continue
                row.notified_start = upcoming.start
                session.add(row)
                minutes = max(1, round((upcoming.start - now).total_seconds() / 60))
                message = {
                    "kind": "starts",
                    "title": f"#{chat.hashtag} starts in {minutes} minute{'s' * (minutes != 1)}",
                    "body": chat.title,
                    "url": f"/c/{chat.slug}",
                    "tag": f"starts-{chat.slug}",
                    "start": upcoming.start.isoformat(),
                }
                ttl = max(60, int((upcoming.start - now).total_seconds()))
                jobs.append(Job(row.id, _sub(row), message, ttl, f"starts-{chat.id}"))  # type: ignore[arg-type]
            return jobs, []

        jobs = await self.rooms.write(fn)
        for job in jobs:
            self._queue(job)
        return len(jobs)


def _sub(row: PushSubscription) -> Subscription:
    return Subscription(row.endpoint, row.p256dh, row.auth)


def _contact_from(public_url: str) -> str:
    if public_url.startswith("https://"):
        return public_url.rstrip("/")
    # RFC 8292 asks for a contact; without a public https address there is none to give.
    return "mailto:push@localhost"


def _message(note: RoomNote) -> dict[str, Any]:
    """What the service worker shows. Plain text only: the worker renders no HTML."""
    if note.kind == "pinned":
        title = f"New question in #{note.hashtag}"
    else:
        title = f"{note.author} replied to you in #{note.hashtag}"
    return {
        "kind": note.kind,
        "title": title[:200],
        "body": note.text,
        "url": f"/c/{note.slug}#post-{note.post_id}",
        "tag": f"{note.kind}-{note.slug}-{note.post_id}",
    }
