"""Posting through a user's own network account: connect it, then post and reply as them.

Each network provides a :class:`Publisher` (protocol code lives in ``app/networks``; a
publisher adapts it). This module owns what is common: sealed credentials, who may use an
account, the hashtag and length rules, optimistic storage of the new post and the mapping of
remote errors to clear domain errors (``app.errors``). The post appears in the room at once
(``pending``) and is reconciled — same network and remote id — when it comes back through the
network's stream.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select
from sqlmodel import Session

from .errors import (
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    Unauthorized,
    UpstreamFailed,
)
from .models import Account, Chat, Post, PostAlias, Source
from .networks.base import (
    AuthError,
    LengthRule,
    NetworkError,
    RemotePost,
    RemoteRejected,
    ReplyRefused,
    ReplyTargetUnresolved,
    Upsert,
)
from .present import post_json
from .rooms import Rooms
from .security import Vault


@dataclass(slots=True)
class Connected:
    """A verified account, as a publisher reports it after checking the credentials."""

    handle: str
    instance: str
    remote_id: str | None
    secret: dict[str, Any]  # tokens etc.; sealed before storage


@dataclass(slots=True)
class Target:
    """The post being replied to, as the publisher needs it."""

    remote_id: str
    url: str | None
    author_handle: str
    network: str
    extra: dict[str, Any] = field(default_factory=dict)
    post_id: int | None = None  # the post's id in the room
    mode: str = "reply"  # "reply", or "quote" (a top-level post quoting it, where supported)
    # The ids the followed servers that delivered the post gave it, by the server's address
    # (a source's ``config["instance"]``): a reply from an account on one of them names
    # the parent by that id directly, with no search.
    local_ids: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Published:
    post: RemotePost
    secret: dict[str, Any] | None = None  # refreshed credentials to store, if they changed


log = logging.getLogger(__name__)


class Publisher(Protocol):
    """A network's posting. A publisher whose ``publish`` also accepts a target with
    ``mode="quote"`` (a top-level post quoting it) says so with a ``quotes = True``
    attribute."""

    network: str

    async def connect(self, fields: dict[str, Any]) -> Connected:
        """Verify credentials. ValueError for missing/bad fields, AuthError when refused."""
        ...

    async def length_rule(self, account: Account, secret: dict[str, Any]) -> LengthRule:
        """How this account's network counts a post, and its limit."""
        ...

    def compose(self, body: str, hashtag: str, target: Target | None) -> str:
        """The final text: the body with the hashtag appended (and any reply mention)."""
        ...

    async def publish(
        self,
        account: Account,
        secret: dict[str, Any],
        final_text: str,
        target: Target | None,
        idempotency_key: str,
    ) -> Published:
        """Post ``final_text``. AuthError, RemoteRejected or NetworkError on failure."""
        ...

    async def disconnect(self, account: Account, secret: dict[str, Any]) -> None:
        """Revoke the credentials where the network allows it (best effort)."""
        ...


# A page render waits this long at most for a network to say its post length limit.
DESCRIBE_TIMEOUT = 3.0


def derived_key(account_id: int, chat_id: int, final_text: str, target: Target | None) -> str:
    """An idempotency key for a post whose request brought none (stable for equal posts)."""
    parts = [
        str(account_id),
        str(chat_id),
        f"{target.mode}:{target.remote_id}" if target else "",
        final_text,
    ]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def local_ids(session: Session, post: Post | None) -> dict[str, str]:
    """The ids ``post`` has on the followed servers that delivered it, by server address
    (sources without an ``instance`` in their config are left out)."""
    if post is None:
        return {}
    rows = session.execute(
        select(Source.config, PostAlias.local_id)
        .join(PostAlias, PostAlias.source_id == Source.id)  # type: ignore[arg-type]
        .where(PostAlias.post_id == post.id)  # type: ignore[arg-type]
    ).all()
    out: dict[str, str] = {}
    for config, local_id in rows:
        instance = config.get("instance") if isinstance(config, dict) else None
        if isinstance(instance, str) and instance:
            out.setdefault(instance, local_id)
    return out


def key_hash(key: str) -> str:
    return "key:" + hashlib.sha256(key.encode()).hexdigest()


class Accounts:
    """Connected accounts and posting through them."""

    def __init__(self, rooms: Rooms, vault: Vault, publishers: dict[str, Publisher]) -> None:
        self.rooms = rooms
        self.vault = vault
        self.publishers = publishers

    def publisher(self, network: str) -> Publisher:
        pub = self.publishers.get(network)
        if pub is None:
            raise Invalid(
                f"network: accounts on {network!r} cannot be connected here; available: "
                + (", ".join(sorted(self.publishers)) or "none"),
            )
        return pub

    async def connect(self, network: str, fields: dict[str, Any]) -> tuple[Account, str]:
        """Verify and store an account; returns it and its API key (shown once)."""
        pub = self.publisher(network)
        try:
            connected = await pub.connect(fields)
        except ValueError as exc:
            raise Invalid(str(exc)) from exc
        except AuthError as exc:
            raise Unauthorized(f"{network} refused these credentials: {exc}") from exc
        except NetworkError as exc:
            raise UpstreamFailed(f"could not reach {network}: {exc}") from exc
        return await self.add(network, connected)

    async def add(self, network: str, connected: Connected) -> tuple[Account, str]:
        """Store an account already verified by its publisher (e.g. after an OAuth sign-in);
        returns it and its API key (shown once)."""
        key = secrets.token_urlsafe(24)
        account = Account(
            network=network,
            instance=connected.instance,
            handle=connected.handle,
            remote_id=connected.remote_id,
            secret=self.vault.seal(connected.secret),
            owner=key_hash(key),
        )

        def fn(session: Session) -> tuple[Account, list[Any]]:
            session.add(account)
            session.flush()
            return account, []

        return await self.rooms.write(fn), key

    async def get(self, account_id: int) -> Account:
        account = await self.rooms.read(lambda s: s.get(Account, account_id))
        if account is None:
            raise NotFound(f"no account {account_id}")
        return account

    async def describe(self, ids: list[int], networks: set[str]) -> list[dict[str, Any]]:
        """The accounts among ``ids`` that post to one of ``networks``, for the composer:
        ``id, network, instance, handle, limit`` (``limit`` None when the network cannot say
        within a moment; the server checks the length again when posting)."""
        rows = await self.rooms.read(
            lambda s: [a for i in ids if (a := s.get(Account, i)) is not None]
        )
        out = []
        for account in rows:
            pub = self.publishers.get(account.network)
            if pub is None or account.network not in networks:
                continue
            limit = None
            try:
                rule = await asyncio.wait_for(
                    pub.length_rule(account, self.vault.open(account.secret)), DESCRIBE_TIMEOUT
                )
                limit = rule.limit
            except (NetworkError, ValueError, TimeoutError):
                pass
            out.append(
                {
                    "id": account.id,
                    "network": account.network,
                    "instance": account.instance,
                    "handle": account.handle,
                    "limit": limit,
                }
            )
        return out

    async def disconnect(self, account: Account) -> None:
        pub = self.publishers.get(account.network)
        if pub is not None:
            try:
                await pub.disconnect(account, self.vault.open(account.secret))
            except (NetworkError, ValueError):
                pass  # revocation is best effort; the local copy is deleted regardless

        def fn(session: Session) -> tuple[None, list[Any]]:
            row = session.get(Account, account.id)
            if row is not None:
                session.delete(row)
            return None, []

        await self.rooms.write(fn)

    async def post(
        self,
        slug: str,
        account: Account,
        body: str,
        in_reply_to: int | None,
        idempotency_key: str | None,
        quote_of: int | None = None,
    ) -> dict[str, Any]:
        """Post as ``account`` in chat ``slug``; returns the stored (pending) post.

        ``quote_of`` makes a top-level post quoting that post (networks that support it).
        A reply the network refuses by its own rules answers 403 with ``detail`` =
        ``{"message", "fallbacks": {"quote_of", "intent_url"}}`` so the composer can offer
        the other ways without losing the text."""
        pub = self.publisher(account.network)
        if not body.strip():
            raise Invalid("text: the post is empty")
        if quote_of is not None and in_reply_to is not None:
            raise Invalid("quote_of: give either in_reply_to or quote_of, not both")
        if quote_of is not None and not getattr(pub, "quotes", False):
            raise Invalid(f"quote_of: quoting a post is not offered for {account.network}")
        referenced = in_reply_to if in_reply_to is not None else quote_of

        def load(session: Session) -> tuple[Chat, bool, Post | None, dict[str, str]]:
            chat = self.rooms.chat_by_slug(session, slug)
            follows = (
                session.execute(
                    select(Source.id).where(
                        Source.chat_id == chat.id,  # type: ignore[arg-type]
                        Source.network == account.network,  # type: ignore[arg-type]
                    )
                ).first()
                is not None
            )
            parent = session.get(Post, referenced) if referenced is not None else None
            return chat, follows, parent, local_ids(session, parent)

        chat, follows, parent, parent_ids = await self.rooms.read(load)
        if not follows:
            raise Invalid(
                f"account_id: this chat does not follow {account.network}; "
                "post with an account of a network it follows",
            )
        target = None
        if referenced is not None:
            name = "in_reply_to" if in_reply_to is not None else "quote_of"
            if parent is None or parent.chat_id != chat.id or parent.deleted:
                raise NotFound(f"{name}: no post {referenced} in this chat")
            if parent.network != account.network:
                raise Invalid(
                    f"{name}: that post is on {parent.network}; reply to it with a "
                    f"{parent.network} account",
                )
            target = Target(
                remote_id=parent.remote_id.split("#repost:")[0],
                url=parent.url,
                author_handle=parent.author_handle,
                network=parent.network,
                extra=parent.extra,
                post_id=parent.id,
                mode="reply" if in_reply_to is not None else "quote",
                local_ids=parent_ids,
            )
        secret = self.vault.open(account.secret)
        final = pub.compose(body.strip(), chat.hashtag, target)
        rule = await pub.length_rule(account, secret)
        length = await asyncio.to_thread(rule.count, final)  # X's counting is not cheap
        if length > rule.limit:
            raise Invalid(
                f"text: {length} characters with the hashtag, {account.network} allows "
                f"{rule.limit}; shorten it by {length - rule.limit}",
            )
        # Without a key from the client, the same account posting the same text to the same
        # target in this chat gets the same key: a retry after a lost answer (a browser
        # resending after a timeout) then returns the first post instead of a second one.
        key = idempotency_key or derived_key(account.id, chat.id, final, target)  # type: ignore[arg-type]
        try:
            result = await pub.publish(account, secret, final, target, key)
        except AuthError as exc:
            raise Unauthorized(
                f"{account.network} refused your account ({exc}); sign in again"
            ) from exc
        except ReplyRefused as exc:
            raise Forbidden(
                f"{account.network} refused this reply: {exc}. Your text is "
                "kept: post it as a quote of that post (with the hashtag), or open the "
                f"reply on {account.network}'s own site.",
                code="reply_refused",
                fallbacks={
                    "quote_of": parent.id if parent is not None else None,
                    "intent_url": exc.intent_url,
                },
            ) from exc
        except ReplyTargetUnresolved as exc:
            raise Invalid(
                f"{exc}. Your text is kept: post it without the reply link, or cancel the reply.",
                code="reply_target_unresolved",
                fallbacks={"without_reply": True},
            ) from exc
        except RemoteRejected as exc:
            raise Invalid(f"{account.network} rejected the post: {exc}") from exc
        except NetworkError as exc:
            headers = {}
            if exc.retry_after:
                headers["Retry-After"] = str(int(exc.retry_after) + 1)
                raise RateLimited(
                    f"{account.network} is rate-limiting posts; try again in "
                    f"{int(exc.retry_after) + 1} s (your draft is kept)",
                    headers=headers,
                ) from exc
            # The upstream's own answer (often an HTML error page) goes to the log only.
            log.warning("posting to %s failed: %s", account.network, exc)
            said = f"it answered HTTP {exc.status}" if exc.status else "it did not answer"
            raise UpstreamFailed(
                f"could not post to {account.network}: {said} (your draft is kept)"
            ) from exc
        if result.secret is not None:
            await self._reseal(account.id, result.secret)  # type: ignore[arg-type]
        return await self._store(chat, result.post, account.id)  # type: ignore[arg-type]

    async def write_record(
        self, account: Account, collection: str, rkey: str, record: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Put (or, with None, delete) a record in the account's own repository, on networks
        that have repositories (Bluesky). Remote errors become domain errors in our words."""
        pub = self.publisher(account.network)
        write = getattr(pub, "write_record", None)
        if write is None:
            raise Invalid(
                f"account_id: a {account.network} account cannot publish records; use Bluesky"
            )
        secret = self.vault.open(account.secret)
        try:
            result, renewed = await write(account, secret, collection, rkey, record)
        except AuthError as exc:
            raise Unauthorized(
                f"{account.network} refused your account ({exc.status or 'auth'}); sign in again",
            ) from exc
        except RemoteRejected as exc:
            raise Invalid(
                f"{account.network} refused the record (HTTP {exc.status or 400})"
            ) from exc
        except NetworkError as exc:
            raise UpstreamFailed(
                f"could not reach {account.network} (HTTP {exc.status or 'error'}); try again"
            ) from exc
        if renewed is not None:
            await self._reseal(account.id, renewed)  # type: ignore[arg-type]
        return result

    async def _reseal(self, account_id: int, secret: dict[str, Any]) -> None:
        sealed = self.vault.seal(secret)

        def fn(session: Session) -> tuple[None, list[Any]]:
            row = session.get(Account, account_id)
            if row is not None:
                row.secret = sealed
                session.add(row)
            return None, []

        await self.rooms.write(fn)

    async def _store(self, chat: Chat, rp: RemotePost, account_id: int) -> dict[str, Any]:
        rooms = self.rooms

        def fn(session: Session) -> tuple[dict[str, Any], list[Any]]:
            fresh = session.get(Chat, chat.id)
            assert fresh is not None
            existing = rooms.find_post(session, chat.id, rp.network, rp.remote_id)  # type: ignore[arg-type]
            if existing is not None:  # the stream was faster than our response
                if existing.account_id is None:
                    # Still ours: replies to it are replies to this account's post.
                    existing.account_id = account_id
                    session.add(existing)
                return post_json(existing), []
            stored, frames = rooms.apply_batch(
                session, fresh, None, [Upsert(rp)], pending=True, account_id=account_id
            )
            return post_json(stored[0]), frames

        return await self.rooms.write(fn)
