"""Mastodon in the app: chat sources, the follower factory, the publisher and sign-in.

- **Sources** — ``{"network": "mastodon", "instance": "https://example.social",
  "access_token": "…"}`` (token optional). The instance is checked (it must answer
  ``/api/v2/instance``; a given token must be accepted) and the token is sealed with the
  :class:`~app.security.Vault` into ``Source.secret``; no API ever returns it. A chat may
  follow its hashtag on several instances: the same status arrives with the same ``uri`` and
  the room stores it once.
- **Following** — :class:`~app.networks.mastodon.follower.MastodonFollower` per source, wrapped in
  :class:`ReplyLinker` so replies carry their parent's ``uri`` (see there).
- **Posting** — :class:`MastodonPublisher`: posts public statuses on the user's *own*
  instance, replies to the target by the id that instance gave it (when it delivered the
  post to the room) or resolved there by ``uri``, revokes OAuth tokens on sign-out.
- **Sign-in** — the OAuth routes in :mod:`app.routes.auth_mastodon` (mounted by the app
  factory), which check the instance with :func:`normalize_instance`.

Instance addresses: ``https://host[:port]`` or a bare domain. Plain ``http://`` is accepted
only for a server on this machine in development; in production every connection goes to a
public address only (:mod:`app.outbound`), so a chat creator cannot point the server at the
operator's own network.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlmodel import Session

from ..config import Settings
from ..models import Account, Chat, Post, PostAlias, Source
from ..networks.base import (
    AuthError,
    Batch,
    FollowContext,
    LengthRule,
    NetworkError,
    RemotePost,
    RemoteRejected,
    ReplyTargetUnresolved,
    Upsert,
)
from ..networks.mastodon.client import (
    DEFAULT_MAX_CHARACTERS,
    DEFAULT_URL_WEIGHT,
    InstanceInfo,
    MastodonApi,
)
from ..networks.mastodon.composing import length_rule, reply_text
from ..networks.mastodon.follower import MastodonFollower
from ..outbound import OutboundPolicy, check_url
from ..publishing import Connected, Published, Target
from ..rooms import Rooms, SourceSpec, chat_hashtags
from ..security import Vault
from ..text import append_hashtag

log = logging.getLogger(__name__)

NETWORK = "mastodon"
MAX_TOKEN_LENGTH = 2000  # Mastodon tokens are 43 characters; anything huge is a paste error
# Instance limits change rarely (an admin edits them); an hour keeps the composer's counter
# right without asking the instance before every post.
INSTANCE_INFO_TTL = 3600.0
# A failed lookup is retried after this long, not on every post.
INSTANCE_INFO_RETRY = 60.0
# Replies whose parent is not in the room yet cost one status lookup each; remember the
# answers (also the misses) so a busy thread does not repeat them.
PARENT_CACHE_SIZE = 4000
PARENT_LOOKUP_TIMEOUT = 5.0


# --- instance addresses ------------------------------------------------------------------


def normalize_instance(raw: Any, *, policy: OutboundPolicy) -> str:
    """The instance's base URL, ``scheme://host[:port]``, from what a user typed.

    Accepts a bare domain ("mastodon.social" → https) or an https URL without path, query or
    login; ``http://`` only for loopback in development. Addresses ``policy`` refuses are
    refused here when they are literals (app/outbound.py checks names when connecting).
    Raises ValueError naming the ``instance`` field.
    """
    text = raw.strip() if isinstance(raw, str) else raw
    if isinstance(text, str) and text and "://" not in text:
        text = "https://" + text.lstrip("@/")
    parts = check_url(
        text,
        "instance",
        secure="https",
        plain="http",
        policy=policy,
        example="https://mastodon.social",
        max_length=300,
    )
    if parts.query:
        raise ValueError("instance: give only the instance's address, e.g. https://mastodon.social")
    if parts.path not in ("", "/"):
        raise ValueError(
            "instance: give the instance's address without a path, e.g. https://mastodon.social"
        )
    return f"{parts.scheme}://{parts.netloc}"


def _token_field(raw: dict[str, Any], *, required: bool) -> str | None:
    value = raw.get("access_token")
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValueError(
                "access_token: give a token (Preferences → Development on your instance)"
            )
        return None
    if not isinstance(value, str):
        raise ValueError("access_token: must be a string")
    value = value.strip()
    if len(value) > MAX_TOKEN_LENGTH or any(c.isspace() for c in value):
        raise ValueError("access_token: this does not look like a Mastodon access token")
    return value


# --- following ---------------------------------------------------------------------------


class ReplyLinker:
    """A :class:`MastodonFollower` whose replies name their parent by ``uri``.

    A Mastodon status names its parent only by an instance-local id
    (``extra["in_reply_to_local_id"]``). Before a batch goes to the room, each reply gets
    ``in_reply_to`` = the parent's ``uri``, found (1) in the room, through the ids this source
    delivered before (``PostAlias``), else (2) by asking the instance for that status. Answers,
    misses included, are cached; a failed or rate-limited lookup leaves the reply unlinked
    ("replying to @handle" still shows) rather than holding up the stream.
    """

    def __init__(self, follower: MastodonFollower, rooms: Rooms, source_id: int) -> None:
        self.follower = follower
        self.rooms = rooms
        self.source_id = source_id
        self._parents: OrderedDict[str, str | None] = OrderedDict()

    async def follow(self, cursor: str | None, ctx: FollowContext) -> AsyncIterator[Batch]:
        """The follower's batches, with reply parents linked (see the class docstring)."""
        async for batch in self.follower.follow(cursor, ctx):
            for change in batch.changes:
                if isinstance(change, Upsert):
                    await self._link(change.post)
            yield batch

    async def _link(self, post: RemotePost) -> None:
        local_id = post.extra.get("in_reply_to_local_id")
        if post.in_reply_to or not isinstance(local_id, str):
            return
        if local_id in self._parents:
            self._parents.move_to_end(local_id)
            uri = self._parents[local_id]
        else:
            uri = await self._known_parent(local_id) or await self._ask_instance(local_id)
            self._parents[local_id] = uri
            while len(self._parents) > PARENT_CACHE_SIZE:
                self._parents.popitem(last=False)
        if uri:
            post.in_reply_to = uri

    async def _known_parent(self, local_id: str) -> str | None:
        def fn(session: Session) -> str | None:
            return session.execute(
                select(Post.remote_id)
                .join(PostAlias, PostAlias.post_id == Post.id)  # type: ignore[arg-type]
                .where(
                    PostAlias.source_id == self.source_id,  # type: ignore[arg-type]
                    PostAlias.local_id == local_id,  # type: ignore[arg-type]
                )
            ).scalar()

        remote_id = await self.rooms.read(fn)
        return remote_id.split("#repost:")[0] if remote_id else None

    async def _ask_instance(self, local_id: str) -> str | None:
        api = self.follower.api
        if api.throttle_delay() > 0:
            return None  # the rate limit is better spent on the timeline itself
        try:
            parent = await asyncio.wait_for(api.get_status(local_id), PARENT_LOOKUP_TIMEOUT)
        except (NetworkError, ValueError, TimeoutError) as exc:
            log.info("mastodon %s: parent status %s not found: %s", api.host, local_id, exc)
            return None
        return parent.remote_id


# --- posting -----------------------------------------------------------------------------


class MastodonPublisher:
    """Posts as a user on their own instance (implements :class:`app.publishing.Publisher`).

    Account secrets hold ``access_token`` and, for accounts made by signing in,
    ``client_id``/``client_secret`` (needed to revoke the token on sign-out).
    """

    network = NETWORK

    def __init__(self, http: httpx.AsyncClient, *, policy: OutboundPolicy) -> None:
        self.http = http
        self.policy = policy
        self._info: dict[str, tuple[float, InstanceInfo | None]] = {}

    async def instance_info(self, instance: str) -> InstanceInfo | None:
        """The instance's limits, cached; None when it cannot be reached right now."""
        cached = self._info.get(instance)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            info: InstanceInfo | None = await MastodonApi(self.http, instance).instance_info()
            self._info[instance] = (now + INSTANCE_INFO_TTL, info)
        except NetworkError as exc:
            log.warning("mastodon %s: no instance info: %s", instance, exc)
            info = cached[1] if cached is not None else None
            self._info[instance] = (now + INSTANCE_INFO_RETRY, info)
        return info

    async def connect(self, fields: dict[str, Any]) -> Connected:
        """Check a personal access token (``instance`` + ``access_token``)."""
        instance = normalize_instance(fields.get("instance"), policy=self.policy)
        token = _token_field(fields, required=True)
        author = await MastodonApi(self.http, instance, token).verify_credentials()
        return Connected(
            handle=author.handle,
            instance=instance,
            remote_id=author.remote_id,
            secret={"access_token": token},
        )

    async def length_rule(self, account: Account, secret: dict[str, Any]) -> LengthRule:
        """The user's instance's limit; Mastodon's defaults while it cannot be reached (the
        post itself then fails with a clear error)."""
        info = await self.instance_info(account.instance)
        if info is None:
            info = InstanceInfo(
                domain=urlsplit(account.instance).netloc,
                title="",
                streaming_url="",
                max_characters=DEFAULT_MAX_CHARACTERS,
                url_weight=DEFAULT_URL_WEIGHT,
            )
        return length_rule(info)

    def compose(self, body: str, hashtag: str, target: Target | None) -> str:
        """The body with the hashtag appended and, for a reply, "@author" in front."""
        text = append_hashtag(body, hashtag)
        return reply_text(text, target.author_handle) if target is not None else text

    async def publish(
        self,
        account: Account,
        secret: dict[str, Any],
        final_text: str,
        target: Target | None,
        idempotency_key: str,
    ) -> Published:
        """A public status on the account's instance; a reply goes to the target as that
        instance knows it: the id it gave the status when it delivered it to the room (a
        followed source on the same instance), else resolved by ``uri`` (fetching it from its
        origin if needed). ReplyTargetUnresolved when the instance cannot find it."""
        api = MastodonApi(self.http, account.instance, secret.get("access_token"))
        parent_id = None
        if target is not None:
            parent_id = target.local_ids.get(account.instance)
            if parent_id is None:
                parent_id = await api.resolve_status(target.remote_id)
            if parent_id is None and target.url and target.url != target.remote_id:
                parent_id = await api.resolve_status(target.url)
            if parent_id is None:
                raise ReplyTargetUnresolved(
                    f"{api.host} cannot find the post you are replying to (it may be deleted, "
                    "not public, or its server unreachable from your instance)"
                )
        try:
            result = await api.post_status(
                final_text,
                in_reply_to_id=parent_id,
                visibility="public",  # unlisted posts never appear in hashtag timelines
                idempotency_key=idempotency_key,
            )
        except RemoteRejected as exc:
            if parent_id is not None and exc.status == 404:
                raise ReplyTargetUnresolved(
                    f"{api.host} no longer has the post you are replying to"
                ) from exc
            raise
        post = result.post
        if target is not None:
            post.in_reply_to = target.remote_id  # the room links the pending copy at once
        return Published(post=post)

    async def disconnect(self, account: Account, secret: dict[str, Any]) -> None:
        """Revoke the token of a signed-in account (personal tokens stay with their owner)."""
        token = secret.get("access_token")
        client_id, client_secret = secret.get("client_id"), secret.get("client_secret")
        if token and client_id and client_secret:
            await MastodonApi(self.http, account.instance).revoke(client_id, client_secret, token)


# --- wiring ------------------------------------------------------------------------------


def install(app: FastAPI, settings: Settings) -> None:
    """Register the Mastodon source builder, follower factory and publisher."""
    vault: Vault = app.state.vault
    policy: OutboundPolicy = app.state.outbound

    async def build_source(raw: dict[str, Any], hashtag: str) -> SourceSpec:
        instance = normalize_instance(raw.get("instance"), policy=policy)
        token = _token_field(raw, required=False)
        http: httpx.AsyncClient = app.state.http
        try:
            info = await MastodonApi(http, instance).instance_info()
        except NetworkError as exc:
            raise ValueError(
                f"instance: {instance} does not answer as a Mastodon server ({exc})"
            ) from exc
        if token is not None:
            try:
                await MastodonApi(http, instance, token).tag_page(hashtag, limit=1)
            except AuthError as exc:
                raise ValueError(f"access_token: {info.domain} refused the token ({exc})") from exc
            except NetworkError as exc:
                log.warning("mastodon %s: could not check the token yet: %s", instance, exc)
        return SourceSpec(
            network=NETWORK,
            config={"instance": instance, "domain": info.domain},
            secret=vault.seal({"access_token": token}) if token else None,
        )

    def follower(source: Source, chat: Chat) -> ReplyLinker:
        token = None
        if source.secret:
            try:
                token = vault.open(source.secret).get("access_token")
            except ValueError as exc:
                log.warning("mastodon source %s: reading without its token: %s", source.id, exc)
        api = MastodonApi(app.state.http, str(source.config.get("instance", "")), token)
        inner = MastodonFollower(
            api,
            chat_hashtags(chat),
            backfill=settings.mastodon_backfill,
            poll_interval=settings.mastodon_poll_interval,
            context_interval=settings.mastodon_context_interval,
            backoff_base=settings.backoff_base,
            backoff_cap=settings.backoff_cap,
            connect=app.state.ws_connect,
        )
        return ReplyLinker(inner, app.state.rooms, source.id)  # type: ignore[arg-type]

    async def startup(app: FastAPI) -> None:
        app.state.ingest.factories[NETWORK] = follower
        app.state.publishers[NETWORK] = MastodonPublisher(app.state.http, policy=policy)

    app.state.source_builders[NETWORK] = build_source
    app.state.startup_hooks.append(startup)
