"""Bluesky in the app: chat sources, the follower factory, the publisher and sign-in.

- **Sources** — ``{"network": "bluesky", "stream": "jetstream" | "firehose", "url": …}``.
  ``url`` is the full subscribe endpoint: a Jetstream ``wss://host/subscribe`` (default
  ``HASHROOM_BLUESKY_JETSTREAM_URL``) or a repo firehose
  ``wss://host/xrpc/com.atproto.sync.subscribeRepos`` (a relay or a PDS). Loading posts from
  before the stream started needs a Bluesky account: give ``identifier`` (handle) and
  ``app_password`` (and ``service`` when the handle is not resolved by bsky.social). The
  source signs in once and keeps only the session, sealed in ``Source.secret``; search goes
  through the account's PDS, or to ``search_service`` when given (an AppView of your own).
  Without an account the room says that history before the live stream is not available.
- **Replies without the hashtag** — the follower fetches recent questions' threads
  (``getPostThread``) every ``HASHROOM_BLUESKY_CONTEXT_INTERVAL`` seconds: through the
  account's PDS (or ``search_service``) with ``HASHROOM_BLUESKY_APPVIEW_PROXY`` as its
  ``atproto-proxy`` header, or, for a source without an account, from the public AppView
  ``HASHROOM_BLUESKY_APPVIEW_URL``.
- **Following** — :class:`~app.networks.bluesky.JetstreamFollower` or
  :class:`~app.networks.bluesky.FirehoseFollower`, told the chat's latest Bluesky post ids so
  their deletes still reach the room after a restart, and wrapped in :class:`QuoteFiller` so a
  quote post shows what it quotes. Authors come from one shared, cached
  :class:`~app.networks.bluesky.IdentityResolver`, looked up in the background.
- **Posting** — :class:`BlueskyPublisher`: sign in with a handle and an *app password*
  (``POST /api/accounts {"network": "bluesky", "identifier", "app_password", "service"?,
  "langs"?}``), then post and reply with facets, as that account, on its own PDS.

Why only the session is stored, never the app password: the refresh token (valid about 90
days, renewed with every refresh) is all it takes to keep posting, and ``createSession`` is
limited to 30 sign-ins per 5 minutes per account, so signing in again for each post would both
keep a reusable password on disk and run into that limit. A lost session means the person
signs in again; a stolen database yields no password.

Addresses: ``wss://`` and ``https://``; plain ``ws://`` / ``http://`` only for a server on
this machine in development. In production every connection goes to a public address only
(:mod:`app.outbound`): the stream, the sign-in service, the search service, PDS endpoints
and ``did:web`` documents alike.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlmodel import Session
from websockets.exceptions import InvalidHandshake, InvalidURI, WebSocketException

from ..config import Settings
from ..models import Account, Chat, Post, Source
from ..networks import bluesky
from ..networks.atproto_session import xrpc
from ..networks.base import (
    AuthError,
    Author,
    Batch,
    FollowContext,
    Follower,
    LengthRule,
    NetworkError,
    RemotePost,
    RemoteRejected,
    Upsert,
)
from ..networks.shared_stream import SharedStreams
from ..outbound import OutboundPolicy, WsConnect, check_url, describe_failure
from ..publishing import Connected, Published, Target
from ..rooms import Rooms, SourceSpec, chat_hashtags
from ..security import Vault
from ..text import append_hashtag

log = logging.getLogger(__name__)

NETWORK = bluesky.NETWORK
STREAMS = ("jetstream", "firehose")
FIREHOSE_PATH = "/xrpc/com.atproto.sync.subscribeRepos"
JETSTREAM_PATH = "/subscribe"
# Deletes of posts stored before a restart still reach the room: the follower is told the
# chat's latest Bluesky post ids. Older posts than these are rarely deleted mid-chat.
KNOWN_IDS = 5000
# Creating a chat checks that its stream answers; a dead address is better refused at once.
PROBE_TIMEOUT = 5.0
# Sessions are sealed into Source.secret (a 4000-character column).
MAX_SEALED = 4000
# Quoted posts are looked up while the batch waits, so each lookup is short and remembered.
QUOTE_TIMEOUT = 2.0
QUOTE_CACHE_SIZE = 2000
# A post repeated with the same Idempotency-Key within this many seconds is made once.
IDEMPOTENCY_TTL = 600.0
# Signed-in clients kept in memory, so concurrent posts by one account share one renewal.
CLIENT_CACHE_SIZE = 1000
# Bluesky app passwords look like "abcd-efgh-ijkl-mnop"; anything else may be a main password,
# which must never be sent anywhere.
_APP_PASSWORD_RE = re.compile(r"^[a-z0-9]{4}(-[a-z0-9]{4}){3}$")
_HANDLE_RE = re.compile(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_DID_RE = re.compile(r"^did:(plc|web):[a-zA-Z0-9._:%-]{1,2000}$")
_LANG_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,4}$")


# --- addresses and fields ----------------------------------------------------------------


def _address(raw: Any, field: str, *, secure: str, plain: str, policy: OutboundPolicy) -> Any:
    example = f"{secure}://bsky.social" if secure == "https" else f"{secure}://host{JETSTREAM_PATH}"
    return check_url(raw, field, secure=secure, plain=plain, policy=policy, example=example)


def normalize_stream_url(raw: Any, stream: str, *, policy: OutboundPolicy) -> str:
    """The subscribe endpoint of a ``stream`` ("jetstream" or "firehose") from what was typed.

    ``wss://`` (``ws://`` for loopback only). A Jetstream address without a path gets
    ``/subscribe``; a firehose address must be the ``subscribeRepos`` endpoint (a bare host
    gets it added). Hashroom adds the query itself, so none may be given. Raises ValueError
    naming the ``url`` field.
    """
    parts = _address(raw, "url", secure="wss", plain="ws", policy=policy)
    if parts.query:
        raise ValueError(
            "url: give the endpoint without a query; Hashroom adds wantedCollections and cursor"
        )
    path = parts.path.rstrip("/")
    if stream == "jetstream":
        path = path or JETSTREAM_PATH
    elif not path:
        path = FIREHOSE_PATH
    elif not path.endswith(FIREHOSE_PATH):
        raise ValueError(f"url: a firehose address ends in {FIREHOSE_PATH}")
    return parts._replace(path=path).geturl()


def normalize_service(raw: Any, field: str, *, policy: OutboundPolicy) -> str:
    """An XRPC service's base URL, ``https://host[:port]`` (``http`` for loopback only)."""
    parts = _address(raw, field, secure="https", plain="http", policy=policy)
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(
            f"{field}: give the server's address without a path, e.g. https://bsky.social"
        )
    return f"{parts.scheme}://{parts.netloc}"


def _identifier(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("identifier: give your Bluesky handle, e.g. alice.bsky.social")
    value = raw.strip().lstrip("@")
    if value.startswith("did:"):
        if not _DID_RE.match(value):
            raise ValueError("identifier: this is not a valid DID")
        return value
    value = value.lower()
    if "@" in value:
        raise ValueError("identifier: give your handle (alice.bsky.social), not your email")
    if len(value) > 253 or not _HANDLE_RE.match(value):
        raise ValueError(f"identifier: {value!r} is not a Bluesky handle (like alice.bsky.social)")
    return value


def _app_password(raw: Any) -> str:
    value = raw.strip().lower() if isinstance(raw, str) else ""
    if not _APP_PASSWORD_RE.match(value):
        raise ValueError(
            "app_password: use an app password (Bluesky → Settings → Privacy and security → "
            "App passwords), shaped like xxxx-xxxx-xxxx-xxxx — never your main password"
        )
    return value


def _langs(raw: Any) -> list[str]:
    if raw is None or raw == "":
        return []
    values = [raw] if isinstance(raw, str) else raw
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError('langs: give a list of language tags, e.g. ["en"]')
    langs = list(dict.fromkeys(v.strip() for v in values if v.strip()))
    if len(langs) > bluesky.MAX_LANGS or not all(_LANG_RE.match(v) for v in langs):
        raise ValueError(
            f'langs: at most {bluesky.MAX_LANGS} language tags such as "en" or "pt-BR"'
        )
    return langs


async def _sign_in(
    http: httpx.AsyncClient, fields: dict[str, Any], settings: Settings, *, policy: OutboundPolicy
) -> bluesky.BlueskySession:
    """Sign in with ``identifier`` + ``app_password`` (+ ``service``); ValueError for bad
    fields or a refused request, AuthError for refused credentials, NetworkError otherwise."""
    identifier = _identifier(fields.get("identifier"))
    password = _app_password(fields.get("app_password"))
    service = bluesky.DEFAULT_SERVICE
    if fields.get("service"):
        service = normalize_service(fields["service"], "service", policy=policy)
    try:
        return await bluesky.sign_in(
            http, identifier, password, service=service, plc_url=settings.bluesky_plc_url
        )
    except RemoteRejected as exc:  # e.g. 400 InvalidRequest: a malformed identifier
        raise ValueError(f"identifier: Bluesky refused the sign-in: {exc}") from exc


async def _probe(ws_connect: WsConnect, url: str) -> None:
    """Open the stream once, so a wrong address is refused when the chat is created."""
    try:
        async with ws_connect(url, open_timeout=PROBE_TIMEOUT, user_agent_header="Hashroom"):
            pass
    except (OSError, TimeoutError, InvalidURI, InvalidHandshake, WebSocketException) as exc:
        raise ValueError(f"url: cannot open the stream at {url} ({describe_failure(exc)})") from exc


# --- following ---------------------------------------------------------------------------


class QuoteFiller:
    """A Bluesky follower whose quote posts name the quoted post's author and text.

    A post record quotes by reference only (``at://`` uri + cid). Before a batch goes to the
    room, each quote is filled from the room itself when the quoted post is there, else from
    the quoted author's PDS (``com.atproto.repo.getRecord``), all lookups of a batch together
    and at most ``QUOTE_TIMEOUT`` seconds; answers, misses included, are remembered. A quote
    that cannot be filled keeps its link to the original.
    """

    def __init__(
        self,
        follower: Follower,
        rooms: Rooms,
        chat_id: int,
        http: httpx.AsyncClient,
        resolver: bluesky.IdentityResolver,
    ) -> None:
        self.follower = follower
        self.rooms = rooms
        self.chat_id = chat_id
        self.http = http
        self.resolver = resolver
        self._quotes: OrderedDict[str, dict[str, str] | None] = OrderedDict()

    async def follow(self, cursor: str | None, ctx: FollowContext) -> AsyncIterator[Batch]:
        """The follower's batches, with quotes filled (see the class docstring)."""
        async for batch in self.follower.follow(cursor, ctx):
            posts = [
                c.post
                for c in batch.changes
                if isinstance(c, Upsert) and c.post.quote and not c.post.quote.get("text")
            ]
            if posts:
                await self._fill(posts)
            yield batch

    async def _fill(self, posts: list[RemotePost]) -> None:
        wanted = {p.quote["uri"] for p in posts if p.quote and p.quote.get("uri")}
        missing = [uri for uri in wanted if uri not in self._quotes]
        if missing:
            found = await self._from_room(missing)
            remote = [uri for uri in missing if uri not in found]
            if remote:
                try:
                    async with asyncio.timeout(QUOTE_TIMEOUT):
                        answers = await asyncio.gather(*(self._from_pds(u) for u in remote))
                    found.update(zip(remote, answers, strict=True))
                except TimeoutError:
                    log.info("quoted posts not loaded within %.0f s", QUOTE_TIMEOUT)
            for uri in missing:
                if uri in found:
                    self._remember(uri, found[uri])
        for post in posts:
            uri = post.quote.get("uri") if post.quote else None
            quoted = self._quotes.get(uri) if uri else None
            if quoted and post.quote:
                post.quote = {**post.quote, **quoted}

    def _remember(self, uri: str, quoted: dict[str, str] | None) -> None:
        self._quotes[uri] = quoted
        self._quotes.move_to_end(uri)
        while len(self._quotes) > QUOTE_CACHE_SIZE:
            self._quotes.popitem(last=False)

    async def _from_room(self, uris: list[str]) -> dict[str, dict[str, str] | None]:
        def fn(session: Session) -> dict[str, dict[str, str] | None]:
            rows = session.execute(
                select(Post.remote_id, Post.author_name, Post.author_handle, Post.text).where(
                    Post.chat_id == self.chat_id,  # type: ignore[arg-type]
                    Post.network == NETWORK,  # type: ignore[arg-type]
                    Post.remote_id.in_(uris),  # type: ignore[attr-defined]
                )
            ).all()
            return {r[0]: {"author": r[1] or r[2], "text": r[3]} for r in rows}

        return await self.rooms.read(fn)

    async def _from_pds(self, uri: str) -> dict[str, str] | None:
        parsed = bluesky.parse_post_uri(uri)
        if parsed is None:
            return None
        did, rkey = parsed
        pds = await self.resolver.pds_for(did)
        if pds is None:
            return None
        try:
            response = await self.http.get(
                f"{pds}/xrpc/com.atproto.repo.getRecord",
                params={"repo": did, "collection": bluesky.POST_COLLECTION, "rkey": rkey},
            )
            value = response.json().get("value") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            log.info("quoted post %s not loaded: %s", uri, exc)
            return None
        if not isinstance(value, dict) or not isinstance(value.get("text"), str):
            return None
        author = self.resolver.cached_author(did)
        identity = self.resolver.cached_identity(did)
        if author is not None:
            name = author.name
        elif identity is not None and identity.handle:
            name = f"@{identity.handle}"
        else:
            name = did
        return {"author": name, "text": value["text"]}


# --- posting -----------------------------------------------------------------------------


class BlueskyPublisher:
    """Posts as a signed-in Bluesky account (implements :class:`app.publishing.Publisher`).

    An account's sealed secret holds the session (``did``, ``handle``, ``accessJwt``,
    ``refreshJwt``, ``service`` = its PDS) and the post languages (``langs``), never the app
    password (see the module docstring). A renewed session is handed back in
    :attr:`Published.secret` to be sealed again.
    """

    network = NETWORK

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: Settings,
        resolver: bluesky.IdentityResolver,
        *,
        policy: OutboundPolicy,
    ) -> None:
        self.http = http
        self.settings = settings
        self.resolver = resolver
        self.policy = policy
        self._clients: OrderedDict[int, bluesky.AccountClient] = OrderedDict()
        self._recent: dict[tuple[int, str], tuple[float, asyncio.Future[Published]]] = {}

    async def connect(self, fields: dict[str, Any]) -> Connected:
        """Sign in with ``identifier`` (handle or DID) and ``app_password`` on the account's
        own PDS (found from its DID document); ``service`` resolves the handle (default
        bsky.social); ``langs`` (optional) tags the account's posts."""
        langs = _langs(fields.get("langs"))
        session = await _sign_in(self.http, fields, self.settings, policy=self.policy)
        return Connected(
            handle=f"@{session.handle}",
            instance=session.service,
            remote_id=session.did,
            secret={**session.to_dict(), "langs": langs},
        )

    async def length_rule(self, account: Account, secret: dict[str, Any]) -> LengthRule:
        """300 graphemes, the same everywhere on Bluesky."""
        return bluesky.LENGTH_RULE

    def compose(self, body: str, hashtag: str, target: Target | None) -> str:
        """The body with the hashtag appended. A reply is threaded by reference, so it needs
        no leading mention."""
        return append_hashtag(body, hashtag)

    def _client(self, account: Account, secret: dict[str, Any]) -> bluesky.AccountClient:
        try:
            session = bluesky.BlueskySession.from_dict(secret)
        except (ValueError, TypeError) as exc:
            raise AuthError(f"the stored Bluesky session is unreadable ({exc})") from exc
        key = account.id or 0
        client = self._clients.get(key)
        if client is None or client.did != session.did:
            client = bluesky.AccountClient(self.http, session)
            self._clients[key] = client
        self._clients.move_to_end(key)
        while len(self._clients) > CLIENT_CACHE_SIZE:
            self._clients.popitem(last=False)
        return client

    async def publish(
        self,
        account: Account,
        secret: dict[str, Any],
        final_text: str,
        target: Target | None,
        idempotency_key: str,
    ) -> Published:
        """Create the post on the account's PDS (``createRecord``) with facets for its tags,
        links and mentions; a reply names its parent and the thread's root (uri + cid, from
        the stored post). Raises AuthError, RemoteRejected or NetworkError.

        ``createRecord`` has no idempotency key of its own: a call repeating one made in the
        last ``IDEMPOTENCY_TTL`` seconds (or still running) gets the first call's answer.
        """
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
            made.exception()  # marked as retrieved: nobody else may be waiting
            raise
        made.set_result(result)
        return result

    async def _publish(
        self, account: Account, secret: dict[str, Any], final_text: str, target: Target | None
    ) -> Published:
        client = self._client(account, secret)
        before = client.session
        reply = None
        if target is not None:
            parent = RemotePost(
                network=NETWORK,
                remote_id=target.remote_id,
                author=Author(name=target.author_handle, handle=target.author_handle),
                created_at=datetime.now(UTC),
                extra=target.extra,
            )
            try:
                reply = bluesky.reply_ref(parent)
            except ValueError as exc:
                raise RemoteRejected(f"cannot reply to this post: {exc}") from exc
        langs = [lang for lang in secret.get("langs") or [] if isinstance(lang, str)]
        try:
            post = await bluesky.publish(client, final_text, reply_to=reply, langs=langs)
        except ValueError as exc:
            raise RemoteRejected(str(exc)) from exc
        except AuthError:
            self._clients.pop(account.id or 0, None)
            raise
        known = self.resolver.cached_author(client.did)
        if known is not None:
            post.author = known
        renewed = None
        if client.session != before:
            renewed = {**client.session.to_dict(), "langs": langs}
        return Published(post=post, secret=renewed)

    async def write_record(
        self,
        account: Account,
        secret: dict[str, Any],
        collection: str,
        rkey: str,
        record: dict[str, Any] | None,
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Put ``record`` at ``collection/rkey`` in the account's repo (``putRecord``), or
        delete it when ``record`` is None (``deleteRecord``). Returns the PDS's answer and
        the renewed secret, if the session was renewed. Raises as :meth:`publish`."""
        client = self._client(account, secret)
        before = client.session
        body: dict[str, Any] = {"repo": client.did, "collection": collection, "rkey": rkey}
        try:
            if record is None:
                result = await client.post("com.atproto.repo.deleteRecord", body)
            else:
                result = await client.post("com.atproto.repo.putRecord", {**body, "record": record})
        except AuthError:
            self._clients.pop(account.id or 0, None)
            raise
        renewed = None
        if client.session != before:
            renewed = {**client.session.to_dict(), "langs": secret.get("langs") or []}
        return result, renewed

    async def disconnect(self, account: Account, secret: dict[str, Any]) -> None:
        """End the session on the PDS (``deleteSession`` with the refresh token)."""
        self._clients.pop(account.id or 0, None)
        try:
            session = bluesky.BlueskySession.from_dict(secret)
        except (ValueError, TypeError):
            return
        response = await xrpc(
            self.http,
            "POST",
            session.service,
            "com.atproto.server.deleteSession",
            token=session.refresh_jwt,
        )
        if response.status_code >= 400:
            log.info(
                "bluesky: deleteSession for %s answered %s", session.handle, response.status_code
            )


# --- wiring ------------------------------------------------------------------------------


def install(app: FastAPI, settings: Settings) -> None:
    """Register the Bluesky source builder, follower factory and publisher."""
    vault: Vault = app.state.vault
    policy: OutboundPolicy = app.state.outbound
    OPERATOR = OutboundPolicy(allow_private=True)  # noqa: N806 - a constant of this install
    state: dict[str, bluesky.IdentityResolver] = {}

    # One upstream connection per relay URL, whatever the number of chats reading it; each
    # upstream is opened through the app's guarded connect.
    def guarded(*args: Any, **kwargs: Any) -> Any:
        return app.state.ws_connect(*args, **kwargs)

    streams = {
        "jetstream": SharedStreams(bluesky.jetstream_position, guarded),
        "firehose": SharedStreams(bluesky.firehose_position, guarded),
    }
    app.state.bluesky_streams = streams
    # The sign-in form's counter needs the limit before any account is listed.
    app.state.templates.env.globals["bluesky_max_graphemes"] = bluesky.MAX_GRAPHEMES

    async def build_source(raw: dict[str, Any], hashtag: str) -> SourceSpec:
        stream = raw.get("stream") or "jetstream"
        if stream not in STREAMS:
            raise ValueError(f"stream: use one of {', '.join(STREAMS)}")
        if raw.get("url"):
            url = normalize_stream_url(raw["url"], stream, policy=policy)
        elif stream == "jetstream":
            # The operator's own setting: spelled out here, checked when connecting.
            url = normalize_stream_url(settings.bluesky_jetstream_url, stream, policy=OPERATOR)
        else:
            raise ValueError(
                f"url: a firehose source needs its address, e.g. wss://host{FIREHOSE_PATH}"
            )
        config: dict[str, Any] = {"stream": stream, "url": url}
        if raw.get("search_service"):
            config["search_service"] = normalize_service(
                raw["search_service"], "search_service", policy=policy
            )
        signs_in = bool(raw.get("identifier") or raw.get("app_password"))
        if signs_in:  # the fields are checked before anything is sent anywhere
            _identifier(raw.get("identifier"))
            _app_password(raw.get("app_password"))
        await _probe(app.state.ws_connect, url)  # before signing in: sign-ins are rate limited
        secret = None
        if signs_in:
            try:
                session = await _sign_in(app.state.http, raw, settings, policy=policy)
            except AuthError as exc:
                raise ValueError(f"app_password: Bluesky refused this sign-in ({exc})") from exc
            except NetworkError as exc:
                raise ValueError(f"identifier: could not sign in to Bluesky ({exc})") from exc
            config["handle"] = f"@{session.handle}"
            secret = vault.seal({"session": session.to_dict()})
            if len(secret) > MAX_SEALED:
                raise ValueError("identifier: this server's session tokens are too large to store")
        return SourceSpec(network=NETWORK, config=config, secret=secret)

    def keep_session(source_id: int) -> Any:
        async def store(session: bluesky.BlueskySession) -> None:
            sealed = vault.seal({"session": session.to_dict()})

            def fn(db: Session) -> tuple[None, list[Any]]:
                row = db.get(Source, source_id)
                if row is not None:
                    row.secret = sealed
                    db.add(row)
                return None, []

            await app.state.rooms.write(fn)

        return store

    async def follower(source: Source, chat: Chat) -> QuoteFiller:
        rooms: Rooms = app.state.rooms

        def load(db: Session) -> tuple[str | None, list[str]]:
            row = db.get(Source, source.id)
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
            # Oldest first: the follower forgets from the front when it must.
            return (row.secret if row else source.secret), list(ids)[::-1]

        sealed, known = await rooms.read(load)
        account = None
        if sealed:  # the latest session, renewed since the source was loaded perhaps
            try:
                session = bluesky.BlueskySession.from_dict(vault.open(sealed)["session"])
                account = bluesky.AccountClient(
                    app.state.http,
                    session,
                    on_session=keep_session(source.id),  # type: ignore[arg-type]
                )
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("bluesky source %s: searching without its account: %s", source.id, exc)
        config = source.config
        kind = (
            bluesky.FirehoseFollower
            if config.get("stream") == "firehose"
            else bluesky.JetstreamFollower
        )
        inner = kind(
            app.state.http,
            str(config.get("url") or settings.bluesky_jetstream_url),
            chat_hashtags(chat),
            state["resolver"],
            account=account,
            search_service=config.get("search_service"),
            backfill_limit=settings.bluesky_backfill,
            known_ids=known,
            backoff_base=settings.backoff_base,
            backoff_cap=settings.backoff_cap,
            appview_url=settings.bluesky_appview_url or None,
            appview_proxy=settings.bluesky_appview_proxy or None,
            context_interval=settings.bluesky_context_interval,
            connect=streams[kind.transport].connect,
        )
        return QuoteFiller(inner, rooms, chat.id, app.state.http, state["resolver"])  # type: ignore[arg-type]

    async def startup(app: FastAPI) -> None:
        resolver = bluesky.IdentityResolver(
            app.state.http,
            plc_url=settings.bluesky_plc_url,
            appview_url=settings.bluesky_appview_url or None,
        )
        state["resolver"] = resolver
        app.state.ingest.factories[NETWORK] = follower
        app.state.publishers[NETWORK] = BlueskyPublisher(
            app.state.http, settings, resolver, policy=policy
        )

    app.state.source_builders[NETWORK] = build_source
    app.state.startup_hooks.append(startup)
