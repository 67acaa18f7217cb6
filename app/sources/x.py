"""X in the app: chat sources, the follower factory, the publisher and Sign in with X.

- **Sources** — ``{"network": "x", "bearer_token": "…", "api_url"?, "reposts"?}``. The
  operator's (or a moderator's) own app bearer token: X reading is paid, so it is never
  Hashroom's. The token is checked when the chat is created (a refused or powerless token is
  a 422 naming the field), sealed with the :class:`~app.security.Vault` into
  ``Source.secret`` and never returned. ``api_url`` defaults to ``HASHROOM_X_API_URL``.
- **Following** — :class:`~app.networks.x.XFollower` within a per-source
  :class:`~app.networks.x.ReadBudget` (``HASHROOM_X_BUDGET_PER_HOUR`` and
  ``…_PER_SESSION``; a session is the scheduled session being followed, or the UTC day for a
  chat without a schedule). Its reads and estimated spend show on the moderators' source
  list and the operator view of ``/healthz``; when spent, the room is told and reading stops.
- **Posting** — :class:`XPublisher`: OAuth 2.0 user tokens (from Sign in with X, or
  ``POST /api/accounts {"network": "x", "access_token", "refresh_token"?, "expires_in"?}``),
  renewed before their 2-hour expiry and sealed again; replies X refuses (the
  February 2026 rule) come back as :class:`~app.networks.base.ReplyRefused` with X's web
  reply link, and the composer offers a quote post instead.
- **Sign-in** — :mod:`app.routes.auth_x` (mounted by the app factory).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlmodel import Session

from ..config import Settings
from ..models import Account, Chat, Post, Source
from ..networks import x
from ..networks.base import AuthError, Author, LengthRule, NetworkError, RemotePost
from ..outbound import OutboundPolicy, check_url
from ..publishing import Connected, Published, Target
from ..rooms import Rooms, SourceSpec, chat_hashtags
from ..schedule import sessions
from ..scheduler import schedule_of
from ..security import Vault
from ..text import append_hashtag

log = logging.getLogger(__name__)

NETWORK = x.NETWORK
MAX_TOKEN_LENGTH = 1000  # bearer tokens are ~110 characters; anything huge is a paste error
# A post repeated with the same Idempotency-Key within this many seconds is made once: X's
# POST /2/tweets has no idempotency key of its own.
IDEMPOTENCY_TTL = 600.0
# Latest tokens per account kept in memory, so concurrent posts share one renewal (X rotates
# refresh tokens: a second renewal with the same one would fail).
TOKEN_CACHE_SIZE = 1000
# Deletes reach the room for the latest posts the compliance check looks up again.
KNOWN_IDS = 500


def normalize_api_url(raw: Any, *, policy: OutboundPolicy) -> str:
    """The API base, ``https://host[:port]`` (``http`` for loopback in development only);
    ValueError naming the ``api_url`` field."""
    parts = check_url(
        raw,
        "api_url",
        secure="https",
        plain="http",
        policy=policy,
        example="https://api.x.com",
        max_length=300,
    )
    if parts.query or parts.path not in ("", "/"):
        raise ValueError("api_url: give the API's address without a path, e.g. https://api.x.com")
    return f"{parts.scheme}://{parts.netloc}"


def _token(raw: Any, field: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(
            f"{field}: give the token (X developer portal → your app → Keys and tokens)"
        )
    value = raw.strip()
    if value.lower().startswith("bearer "):
        value = value[7:].strip()
    if len(value) > MAX_TOKEN_LENGTH or any(c.isspace() for c in value):
        raise ValueError(f"{field}: this does not look like an X token")
    return value


def session_key(chat: Chat, settings: Settings, now: datetime | None = None) -> str:
    """The session a budget counts for: the scheduled session whose follow window holds
    ``now``, else the UTC day."""
    now = now or datetime.now(UTC)
    schedule = schedule_of(chat)
    if schedule is not None:
        lead = timedelta(minutes=settings.schedule_lead_minutes)
        tail = timedelta(minutes=settings.schedule_tail_minutes)
        found = sessions(schedule, now - tail, now + lead)
        if found:
            return found[0].start.strftime("%Y-%m-%dT%H:%MZ")
    return now.strftime("%Y-%m-%d")


def source_key(source: Source) -> str:
    """A stable, non-secret name for the source's stream rule."""
    return f"source-{source.id}"


# --- posting -----------------------------------------------------------------------------


class XPublisher:
    """Posts as a signed-in X account (implements :class:`app.publishing.Publisher`).

    An account's sealed secret holds its OAuth 2.0 tokens (``access_token``,
    ``refresh_token``, ``expires_at``). A renewed pair goes back in :attr:`Published.secret`.
    """

    network = NETWORK
    quotes = True

    def __init__(self, http: httpx.AsyncClient, settings: Settings) -> None:
        self.http = http
        self.settings = settings
        self._tokens: OrderedDict[int, x.Tokens] = OrderedDict()
        self._locks: dict[int, asyncio.Lock] = {}
        self._recent: dict[tuple[int, str], tuple[float, asyncio.Future[Published]]] = {}

    def _api(self, token: str | None = None) -> x.XApi:
        return x.XApi(self.http, self.settings.x_api_url, token)

    async def connect(self, fields: dict[str, Any]) -> Connected:
        """Check an OAuth 2.0 user token (``access_token``; ``refresh_token`` and
        ``expires_in`` let Hashroom renew it)."""
        token = _token(fields.get("access_token"), "access_token")
        refresh = fields.get("refresh_token")
        if refresh is not None:
            refresh = _token(refresh, "refresh_token")
        expires_in = fields.get("expires_in", 7200)
        if not isinstance(expires_in, int | float) or not 0 < expires_in <= 86400 * 365:
            raise ValueError("expires_in: give the token's lifetime in seconds, e.g. 7200")
        author = await self._api(token).me()
        return Connected(
            handle=author.handle,
            instance=self.settings.x_api_url,
            remote_id=author.remote_id,
            secret=x.Tokens(token, refresh, time.time() + float(expires_in)).to_dict(),
        )

    async def length_rule(self, account: Account, secret: dict[str, Any]) -> LengthRule:
        """280 weighted characters (URLs 23, CJK and emoji 2)."""
        return x.length_rule()

    def compose(self, body: str, hashtag: str, target: Target | None) -> str:
        """The body with the hashtag appended; X threads a reply by reference."""
        return append_hashtag(body, hashtag)

    async def _fresh(self, account: Account, secret: dict[str, Any]) -> tuple[x.Tokens, bool]:
        """Tokens with time left (renewed when under ``REFRESH_MARGIN``); True if renewed."""
        key = account.id or 0
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            tokens = self._tokens.get(key) or x.Tokens.from_dict(secret)
            if tokens.fresh():
                return tokens, False
            if not tokens.refresh_token or not self.settings.x_client_id:
                if tokens.expires_at > time.time():
                    return tokens, False
                raise AuthError("the X sign-in has expired")
            tokens = await self._api().refresh(
                self.settings.x_client_id,
                self.settings.x_client_secret or None,
                tokens.refresh_token,
            )
            self._tokens[key] = tokens
            self._tokens.move_to_end(key)
            while len(self._tokens) > TOKEN_CACHE_SIZE:
                self._tokens.popitem(last=False)
            return tokens, True

    async def publish(
        self,
        account: Account,
        secret: dict[str, Any],
        final_text: str,
        target: Target | None,
        idempotency_key: str,
    ) -> Published:
        """``POST /2/tweets``; a reply names its parent, a quote its quoted post. A call
        repeating one made in the last ``IDEMPOTENCY_TTL`` seconds (or still running) gets the
        first call's answer. Raises AuthError, ReplyRefused, RemoteRejected or NetworkError."""
        key = (account.id or 0, idempotency_key)
        now = time.monotonic()
        for old in [k for k, (expires, _) in self._recent.items() if expires < now]:
            del self._recent[old]
        if key in self._recent:
            return await asyncio.shield(self._recent[key][1])
        made: asyncio.Future[Published] = asyncio.get_running_loop().create_future()
        self._recent[key] = (now + IDEMPOTENCY_TTL, made)
        try:
            result = await self._publish(account, secret, final_text, target)
        except asyncio.CancelledError:
            del self._recent[key]
            made.cancel()
            raise
        except Exception as exc:
            del self._recent[key]  # a failed post may be tried again
            made.set_exception(exc)
            made.exception()
            raise
        made.set_result(result)
        return result

    async def _publish(
        self, account: Account, secret: dict[str, Any], final_text: str, target: Target | None
    ) -> Published:
        tokens, renewed = await self._fresh(account, secret)
        reply = target.remote_id if target is not None and target.mode == "reply" else None
        quote = target.remote_id if target is not None and target.mode == "quote" else None
        try:
            new_id = await self._api(tokens.access_token).post_tweet(
                final_text, in_reply_to=reply, quote_id=quote
            )
        except x.ReplyRestricted as exc:
            exc.intent_url = x.reply_intent_url(reply or "", final_text)
            raise
        except AuthError:
            self._tokens.pop(account.id or 0, None)
            raise
        username = account.handle.lstrip("@")
        post = RemotePost(
            network=NETWORK,
            remote_id=new_id,
            author=Author(
                name=username,
                handle=account.handle,
                profile_url=f"{x.WEB_URL}/{username}",
                remote_id=account.remote_id,
            ),
            created_at=datetime.now(UTC),
            text=final_text,
            url=x.permalink(new_id, username),
            in_reply_to=reply,
            reply_to_handle=target.author_handle if reply and target else None,
            quote=(
                {"url": target.url, "author": target.author_handle, "text": ""}
                if quote and target
                else None
            ),
            local_id=new_id,
        )
        return Published(post=post, secret=tokens.to_dict() if renewed else None)

    async def disconnect(self, account: Account, secret: dict[str, Any]) -> None:
        """Revoke the refresh and access tokens (needs the app's client id)."""
        tokens = self._tokens.pop(account.id or 0, None) or x.Tokens.from_dict(secret)
        client_id = self.settings.x_client_id
        if not client_id:
            return
        api = self._api()
        if tokens.refresh_token:
            await api.revoke(
                client_id,
                self.settings.x_client_secret or None,
                tokens.refresh_token,
                "refresh_token",
            )
        if tokens.access_token:
            await api.revoke(client_id, self.settings.x_client_secret or None, tokens.access_token)


# --- wiring ------------------------------------------------------------------------------


def install(app: FastAPI, settings: Settings) -> None:
    """Register the X source builder, follower factory and publisher."""
    vault: Vault = app.state.vault
    policy: OutboundPolicy = app.state.outbound

    async def build_source(raw: dict[str, Any], hashtag: str) -> SourceSpec:
        token = _token(raw.get("bearer_token"), "bearer_token")
        api_url = settings.x_api_url
        if raw.get("api_url"):
            api_url = normalize_api_url(raw["api_url"], policy=policy)
        reposts = raw.get("reposts", False)
        if not isinstance(reposts, bool):
            raise ValueError("reposts: true or false")
        api = x.XApi(app.state.http, api_url, token)
        # The rules list costs no post reads; a search (at most 10 reads) only when the
        # credentials cannot use the stream.
        try:
            await api.rules()
        except AuthError as exc:
            raise ValueError("bearer_token: X refused this token") from exc
        except NetworkError as exc:
            if exc.status != 403:
                raise ValueError(f"api_url: could not check the token with X ({exc})") from exc
            try:
                await api.search_recent(x.build_query(hashtag), max_results=10)
            except AuthError as inner:
                raise ValueError("bearer_token: X refused this token") from inner
            except NetworkError as inner:
                if inner.status == 403:
                    raise ValueError(
                        "bearer_token: this app's access level cannot search recent posts; "
                        "check its plan in the X developer portal"
                    ) from inner
                raise ValueError(f"api_url: could not check the token with X ({inner})") from inner
        config: dict[str, Any] = {"api_url": api_url}
        if reposts:
            config["reposts"] = True
        return SourceSpec(
            network=NETWORK, config=config, secret=vault.seal({"bearer_token": token})
        )

    async def follower(source: Source, chat: Chat) -> x.XFollower:
        rooms: Rooms = app.state.rooms

        def load(db: Session) -> list[str]:
            ids = db.execute(
                select(Post.remote_id)
                .where(
                    Post.chat_id == chat.id,  # type: ignore[arg-type]
                    Post.network == NETWORK,  # type: ignore[arg-type]
                    Post.deleted.is_(False),  # type: ignore[attr-defined]
                )
                .order_by(Post.id.desc())  # type: ignore[union-attr]
                .limit(KNOWN_IDS)
            ).scalars()
            return [i for i in ids if i.isdigit()][::-1]

        known = await rooms.read(load)
        token = None
        if source.secret:
            try:
                token = vault.open(source.secret).get("bearer_token")
            except ValueError as exc:
                log.warning("x source %s: token unreadable: %s", source.id, exc)
        api = x.XApi(app.state.http, str(source.config.get("api_url") or settings.x_api_url), token)
        budget = x.ReadBudget(
            per_hour=settings.x_budget_per_hour,
            per_session=settings.x_budget_per_session,
            cost_per_read=settings.x_cost_per_read,
        )
        return x.XFollower(
            api,
            chat_hashtags(chat),
            budget,
            session=lambda: session_key(chat, settings),
            rule_tag=x.rule_tag(source_key(source)),
            stream=settings.x_stream,
            reposts=bool(source.config.get("reposts")),
            backfill=settings.x_backfill,
            poll_interval=settings.x_poll_interval,
            compliance_interval=settings.x_compliance_interval,
            known_ids=known,
            backoff_base=settings.backoff_base,
            backoff_cap=settings.backoff_cap,
        )

    async def startup(app: FastAPI) -> None:
        app.state.ingest.factories[NETWORK] = follower
        app.state.publishers[NETWORK] = XPublisher(app.state.http, settings)

    app.state.source_builders[NETWORK] = build_source
    app.state.startup_hooks.append(startup)
    app.state.templates.env.globals["x_signin"] = bool(settings.x_client_id)
    if not hasattr(app.state, "length_rules"):
        app.state.length_rules = {}
    app.state.length_rules[NETWORK] = x.length_rule()
