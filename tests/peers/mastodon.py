"""A Mastodon server on loopback, for tests: the documented client API over real HTTP and
websockets, with switches to make it misbehave the ways real instances do.

    async with MastodonPeer(domain="a.example") as peer:
        token = peer.create_user_token("alice")
        status = peer.publish("bob", "A1 yes", tags=["TheChat"])
        ... talk to peer.url ...

What it speaks (as docs.joinmastodon.org describes it):

- ``GET /api/v2/instance`` (``configuration.urls.streaming`` points at this server as
  ``ws://``), ``GET /api/v1/instance``;
- ``GET /api/v1/timelines/tag/:tag`` — newest first, ``any[]`` (up to 4 tags with the
  path's), ``max_id``/``since_id``/``min_id``,
  ``limit`` (default 20, max 40), ``local``/``remote``/``only_media``; ``Link`` header
  (next/prev) only on non-empty pages; unknown tag → 404; string snowflake-like ids;
- ``GET /api/v1/streaming`` websocket (``stream=hashtag&tag=``, subscribe/unsubscribe
  frames): frames ``{"stream", "event", "payload"}`` with the payload a JSON *string*, a bare
  id for ``delete``; needs a user token (header, ``access_token`` parameter or
  ``Sec-WebSocket-Protocol``) like 4.2+; ``GET /api/v1/streaming/health``;
- ``POST /api/v1/statuses`` (form or JSON, ``Idempotency-Key``, 422 over the limit),
  ``GET /api/v1/statuses/:id``, ``GET /api/v1/statuses/:id/context`` (ancestors oldest
  first, descendants in thread order, public and unlisted ones only), ``GET /api/v2/search``
  (``resolve=true`` fetches a status from another running peer by uri),
  ``GET /api/v1/accounts/verify_credentials``;
- ``POST /api/v1/apps``, ``GET``/``POST /oauth/authorize`` (a page with one "Authorize"
  button), ``POST /oauth/token`` (authorization_code with PKCE S256, client_credentials),
  ``POST /oauth/revoke``;
- ``X-RateLimit-Limit/Remaining/Reset`` (ISO-8601) on API responses.

Statuses carry real Mastodon HTML (hashtag anchors, h-card mentions, invisible URL spans).
Every request is recorded in :attr:`MastodonPeer.requests`.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import html
import json
import re
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import grapheme
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

# Running peers by domain: the little fediverse that `resolve=true` and `federate` reach.
_PEERS: dict[str, MastodonPeer] = {}

OOB = "urn:ietf:wg:oauth:2.0:oob"
RATE_LIMIT = 300  # Mastodon's default: 300 requests per 5 minutes
RATE_WINDOW = 300.0

INVALID_TOKEN = "The access token is invalid"
REVOKED_TOKEN = "The access token was revoked"
NEEDS_USER = "This method requires an authenticated user"
OUT_OF_SCOPE = "This action is outside the authorized scopes"
NOT_FOUND = "Record not found"
# A web-push public key in the shape apps receive; nothing here sends pushes.
VAPID_KEY = (
    "BCk-QqERU0q-CfYZjcuB6lnyyOYfJ2AifKqfeGIm7Z-HiTU5T9eTG5GxVA0_OH5mMlI4UkkDTpaZwozy0TzdZ2M="
)


def _now_iso(moment: float | None = None) -> str:
    """Mastodon's timestamp shape: "2024-05-01T12:05:00.123Z"."""
    dt = datetime.fromtimestamp(time.time() if moment is None else moment, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _reset_iso(moment: float) -> str:
    """X-RateLimit-Reset as Mastodon sends it, with microseconds."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


# --- requests and faults -----------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request as the peer received it."""

    kind: str  # "http" or "websocket"
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    status: int | None = None  # HTTP status sent (None for accepted websockets)

    def form(self) -> dict[str, str]:
        """The body as form fields, or as JSON when it is JSON."""
        if self.headers.get("content-type", "").startswith("application/json"):
            data = json.loads(self.body or b"{}")
            return {k: str(v) for k, v in data.items()}
        return dict(parse_qsl(self.body.decode("utf-8", "replace")))


@dataclass
class _Countdown:
    remaining: int
    status: int = 503
    path: str | None = None

    def take(self, path: str) -> bool:
        if self.remaining <= 0 or (self.path is not None and not path.startswith(self.path)):
            return False
        self.remaining -= 1
        return True


class Faults:
    """Switches that make the peer misbehave. Counters apply to HTTP ``/api/`` requests."""

    def __init__(self, peer: MastodonPeer):
        self._peer = peer
        self.refuse_streaming = False  # reject every streaming upgrade with 403
        self.delay = 0.0
        self._on_upgrade: list[Callable[[], Any]] = []
        self._errors: list[_Countdown] = []
        self._malformed: list[_Countdown] = []
        self._limit_until = 0.0
        self._limit_left = 0

    def drop_stream(self) -> int:
        """Close every open streaming connection now (code 1012). Returns how many."""
        return self._peer._drop_streams(code=1012, reason="service restart")

    def before_next_stream(self, action: Callable[[], Any]) -> None:
        """Run ``action`` when the next streaming upgrade arrives, before it is accepted:
        what it publishes reaches REST readers but not that stream (it is not open yet)."""
        self._on_upgrade.append(action)

    def rate_limit(self, n_requests: int, reset_in_s: float) -> None:
        """Allow ``n_requests`` more API requests, then answer 429 until ``reset_in_s``
        seconds from now; responses count down ``X-RateLimit-Remaining`` meanwhile."""
        self._limit_left = n_requests
        self._limit_until = time.time() + reset_in_s

    def server_error(self, n: int, status: int = 503, path: str | None = None) -> None:
        """The next ``n`` API requests (under ``path``, if given) fail with ``status``."""
        self._errors.append(_Countdown(n, status, path))

    def malformed_json(self, n: int, path: str | None = None) -> None:
        """The next ``n`` API requests (under ``path``) get 200 with truncated JSON."""
        self._malformed.append(_Countdown(n, 200, path))

    def slow(self, seconds: float) -> None:
        """Delay every HTTP response by ``seconds`` (0 to stop)."""
        self.delay = seconds

    # -- used by the middleware --

    def rate_state(self, now: float) -> tuple[int, float] | None:
        """(remaining, reset) while a limit is active, else None."""
        if now >= self._limit_until:
            return None
        return self._limit_left, self._limit_until


class _Middleware:
    """Records requests, applies faults and adds rate-limit headers (pure ASGI)."""

    def __init__(self, app: Any, peer: MastodonPeer):
        self.app = app
        self.peer = peer

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        record = RecordedRequest(
            kind=scope["type"],
            method=scope.get("method", "GET"),
            path=scope["path"],
            query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))),
            headers=headers,
        )
        self.peer.requests.append(record)
        if scope["type"] == "websocket":

            async def send_ws(message: dict[str, Any]) -> None:
                if message["type"] == "websocket.http.response.start":
                    record.status = message["status"]
                await send(message)

            await self.app(scope, receive, send_ws)
            return

        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        record.body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": record.body, "more_body": False}
            return await receive()

        faults = self.peer.faults
        if faults.delay:
            await asyncio.sleep(faults.delay)
        path = scope["path"]
        api = path.startswith("/api/") and not path.startswith("/api/v1/streaming")
        extra: list[tuple[bytes, bytes]] = []
        if api:
            now = time.time()
            state = faults.rate_state(now)
            if state is None:
                limit, remaining, reset = RATE_LIMIT, RATE_LIMIT - 1, now + RATE_WINDOW
            else:
                limit, (remaining, reset) = RATE_LIMIT, state
                if remaining <= 0:
                    response = _error(429, "Too many requests")
                    response.headers["X-RateLimit-Limit"] = str(limit)
                    response.headers["X-RateLimit-Remaining"] = "0"
                    response.headers["X-RateLimit-Reset"] = _reset_iso(reset)
                    record.status = 429
                    await response(scope, replay, send)
                    return
                remaining -= 1
                faults._limit_left = remaining
            extra = [
                (b"x-ratelimit-limit", str(limit).encode()),
                (b"x-ratelimit-remaining", str(remaining).encode()),
                (b"x-ratelimit-reset", _reset_iso(reset).encode()),
            ]
            for countdown in faults._errors:
                if countdown.take(path):
                    response = _server_error(countdown.status)
                    record.status = countdown.status
                    await response(scope, replay, send)
                    return
            for countdown in faults._malformed:
                if countdown.take(path):
                    response = Response(
                        b'[{"id": "1080', media_type="application/json", status_code=200
                    )
                    record.status = 200
                    await response(scope, replay, send)
                    return

        async def send_http(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        await self.app(scope, replay, send_http)


def _server_error(status: int) -> Response:
    if status == 500:
        return _error(500, "We're sorry, but something went wrong on our end.")
    reason = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Timeout"}
    text = reason.get(status, "Error")
    body = f"<html><head><title>{status} {text}</title></head><body><h1>{text}</h1></body></html>"
    return HTMLResponse(body, status_code=status)


# --- text --------------------------------------------------------------------------------

_URL_RE = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)
_MENTION_RE = re.compile(
    r"(?<![\w/=@])@([a-z0-9_]+(?:[.-][a-z0-9_]+)*)(?:@([a-z0-9-]+(?:\.[a-z0-9-]+)+))?",
    re.IGNORECASE,
)
_TOKEN_RE = re.compile(
    r"(?P<url>https?://[^\s<>\"]+)"
    r"|(?<![\w/=)#])#(?P<tag>\w*[^\W\d_]\w*)"
    r"|(?<![\w/=@])@(?P<user>[a-z0-9_]+(?:[.-][a-z0-9_]+)*)(?:@(?P<domain>[a-z0-9-]+(?:\.[a-z0-9-]+)+))?",
    re.IGNORECASE,
)


def weighed_length(text: str, url_weight: int) -> int:
    """The length Mastodon checks: URLs weigh ``url_weight``, "@u@domain" counts as "@u",
    the rest counts in grapheme clusters."""
    text = _URL_RE.sub("x" * url_weight, text)
    text = _MENTION_RE.sub(lambda m: "@" + m.group(1), text)
    return grapheme.length(text)


def _url_html(url: str) -> str:
    """A link the way Mastodon renders one: scheme hidden, long paths ellipsised."""
    scheme, _, rest = url.partition("://")
    prefix = html.escape(scheme + "://")
    if len(rest) > 30:
        shown = (
            f'<span class="ellipsis">{html.escape(rest[:30])}</span>'
            f'<span class="invisible">{html.escape(rest[30:])}</span>'
        )
    else:
        shown = f'<span class="">{html.escape(rest)}</span><span class="invisible"></span>'
    return (
        f'<a href="{html.escape(url)}" target="_blank" rel="nofollow noopener" translate="no">'
        f'<span class="invisible">{prefix}</span>{shown}</a>'
    )


def _tag_html(domain: str, name: str) -> str:
    return (
        f'<a href="https://{domain}/tags/{html.escape(name.lower())}" class="mention hashtag" '
        f'rel="tag">#<span>{html.escape(name)}</span></a>'
    )


def _mention_html(account: dict[str, Any]) -> str:
    return (
        f'<span class="h-card" translate="no"><a href="{html.escape(account["url"])}" '
        f'class="u-url mention">@<span>{html.escape(account["username"])}</span></a></span>'
    )


# --- the peer ----------------------------------------------------------------------------


@dataclass
class _Token:
    value: str
    username: str | None  # None: an app token (client_credentials)
    scopes: set[str]
    client_id: str | None = None
    revoked: bool = False

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or scope.split(":")[0] in self.scopes


@dataclass
class _App:
    client_id: str
    client_secret: str
    name: str
    redirect_uris: list[str]
    scopes: set[str]
    website: str | None


@dataclass(eq=False)
class _Stream:
    ws: WebSocket
    token: str
    tags: set[str]
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    close_code: int = 1000
    close_reason: str = ""


class MastodonPeer:
    """A Mastodon instance on a free loopback port; ``async with`` starts and stops it."""

    def __init__(
        self,
        domain: str = "a.example",
        *,
        title: str | None = None,
        max_characters: int = 500,
        url_weight: int = 23,
        instance_v2: bool = True,
        public_timelines: bool = True,
        login_as: str = "alice",
    ):
        self.domain = domain
        self.title = title or f"Test instance {domain}"
        self.max_characters = max_characters
        self.url_weight = url_weight
        self.instance_v2 = instance_v2  # False: an older server without /api/v2/instance
        self.public_timelines = public_timelines  # False: tag timelines need a user
        self.login_as = login_as  # who is "signed in" on the /oauth/authorize page
        self.faults = Faults(self)
        self.requests: list[RecordedRequest] = []
        self.url = ""
        self.ws_url = ""
        self._accounts: dict[str, dict[str, Any]] = {}  # by acct ("alice", "bob@b.example")
        self._statuses: dict[str, dict[str, Any]] = {}  # by local id
        self._known_tags: set[str] = set()  # lower-case names ever used (else 404)
        self._tokens: dict[str, _Token] = {}
        self._apps: dict[str, _App] = {}
        self._codes: dict[str, dict[str, Any]] = {}
        self._idempotency: dict[tuple[str, str], str] = {}
        self._streams: set[_Stream] = set()
        self._last_id = 0
        self._id_salt = int(hashlib.sha256(domain.encode()).hexdigest(), 16) % 2**15
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle --

    async def __aenter__(self) -> MastodonPeer:
        if self.domain in _PEERS:
            raise RuntimeError(f"a peer for {self.domain} is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}"
        config = uvicorn.Config(
            _Middleware(self._app(), self),
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        deadline = time.monotonic() + 5
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the Mastodon peer stopped while starting")
            if time.monotonic() > deadline:
                raise RuntimeError("the Mastodon peer did not start within 5 s")
            await asyncio.sleep(0.01)
        _PEERS[self.domain] = self
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        _PEERS.pop(self.domain, None)
        self._drop_streams(code=1001, reason="server shutting down")
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(self._task, 5)
            except TimeoutError:
                self._task.cancel()

    # -- test controls --

    def add_account(
        self, username: str, display_name: str | None = None, avatar: str | None = None
    ) -> dict[str, Any]:
        """The local account ``username`` (created on first use). Returns the Account."""
        account = self._local_account(username)
        if display_name is not None:
            account["display_name"] = display_name
        if avatar is not None:
            account["avatar"] = account["avatar_static"] = avatar
        return copy.deepcopy(account)

    def create_user_token(self, username: str, scopes: str = "read write") -> str:
        """A user access token for the local account ``username``."""
        self._local_account(username)
        token = _Token(secrets.token_urlsafe(32), username, set(scopes.split()))
        self._tokens[token.value] = token
        return token.value

    def create_app_token(self, scopes: str = "read") -> str:
        """An app-only token (as client_credentials gives): no user behind it."""
        token = _Token(secrets.token_urlsafe(32), None, set(scopes.split()))
        self._tokens[token.value] = token
        return token.value

    def revoke_token(self, token: str) -> None:
        """Revoke ``token`` and close the streams it opened, as Mastodon does."""
        if token in self._tokens:
            self._tokens[token].revoked = True
        for stream in list(self._streams):
            if stream.token == token:
                self._close_stream(stream, 1008, "token revoked")

    def publish(
        self,
        author: str,
        content_html: str,
        tags: list[str] | tuple[str, ...] = (),
        in_reply_to: str | None = None,
        spoiler_text: str = "",
        media: list[dict[str, Any] | str] | None = None,
        visibility: str = "public",
        *,
        language: str | None = "en",
        sensitive: bool | None = None,
    ) -> dict[str, Any]:
        """A local status by ``author`` (username), as if posted from the web UI.

        ``content_html`` becomes the paragraph text (hostile HTML is kept as is); an anchor
        for each of ``tags`` is appended unless the content already links it. Replying to
        ``in_reply_to`` (a local id) mentions its author first, as clients do. Media items
        are URLs or dicts with ``url``, ``description``, ``type``, ``preview_url``. The status
        appears in tag timelines and streams unless it is not public.
        """
        account = self._local_account(author)
        parent = self._statuses.get(in_reply_to) if in_reply_to else None
        if in_reply_to and parent is None:
            raise KeyError(f"no status {in_reply_to} on {self.domain}")
        body = content_html
        if body.startswith("<p>") and body.endswith("</p>"):
            body = body[3:-4]
        mentions: list[dict[str, Any]] = []
        if parent is not None and parent["account"]["id"] != account["id"]:
            mentions.append(self._accounts[parent["account"]["acct"]])
            body = _mention_html(mentions[0]) + " " + body
        for name in tags:
            if f"/tags/{name.lower()}" not in body.lower():
                body += " " + _tag_html(self.domain, name)
        attachments = [self._attachment(item) for item in media or []]
        status = self._new_status(
            account,
            content=f"<p>{body}</p>",
            tags=list(tags),
            mentions=mentions,
            parent=parent,
            spoiler_text=spoiler_text,
            sensitive=bool(spoiler_text) if sensitive is None else sensitive,
            media=attachments,
            visibility=visibility,
            language=language,
        )
        return copy.deepcopy(status)

    def edit(self, status_id: str, content_html: str) -> dict[str, Any]:
        """Edit a status's content (tags stay linked); streams get ``status.update``."""
        status = self._statuses[status_id]
        body = content_html[3:-4] if content_html.startswith("<p>") else content_html
        for tag in status["tags"]:
            if f"/tags/{tag['name'].lower()}" not in body.lower():
                body += " " + _tag_html(self.domain, tag["name"])
        status["content"] = f"<p>{body}</p>"
        status["edited_at"] = _now_iso()
        self._fan_out("status.update", status)
        return copy.deepcopy(status)

    def delete(self, status_id: str) -> None:
        """Delete a status (and boosts of it); tag streams get ``delete`` with the bare id."""
        status = self._statuses.pop(status_id)
        for other_id, other in list(self._statuses.items()):
            if other["reblog"] and other["reblog"]["id"] == status_id:
                del self._statuses[other_id]
        self._fan_out("delete", status)

    def boost(self, status_id: str, by: str) -> dict[str, Any]:
        """``by`` (local username) boosts a status. Boosts are not in tag timelines."""
        original = self._statuses[status_id]
        account = self._local_account(by)
        new_id = self._next_id()
        boost = self._entity(
            new_id,
            account,
            content="",
            uri=f"https://{self.domain}/users/{account['username']}/statuses/{new_id}/activity",
            url=None,
            visibility=original["visibility"],
        )
        boost["reblog"] = original
        self._statuses[new_id] = boost
        return copy.deepcopy(boost)

    def federate(self, status: dict[str, Any]) -> dict[str, Any]:
        """Receive a status from another instance: same ``uri``, a new local id, its author
        as a remote account. A known uri is updated instead (an edit arriving). Returns the
        local Status."""
        for local in self._statuses.values():
            if local["uri"] == status["uri"] and not local["reblog"]:
                if status.get("edited_at") and status.get("edited_at") != local["edited_at"]:
                    local["content"] = status.get("content") or ""
                    local["edited_at"] = status["edited_at"]
                    self._fan_out("status.update", local)
                return copy.deepcopy(local)
        origin = urlsplit(status["uri"]).netloc
        account = self._remote_account(status["account"], origin)
        if status.get("reblog"):
            inner = self.federate(status["reblog"])
            new_id = self._next_id()
            boost = self._entity(new_id, account, content="", uri=status["uri"], url=None)
            boost["reblog"] = self._statuses[inner["id"]]
            self._statuses[new_id] = boost
            return copy.deepcopy(boost)
        parent = None
        origin_peer = _PEERS.get(origin)
        if status.get("in_reply_to_id") and origin_peer is not None:
            origin_parent = origin_peer._statuses.get(status["in_reply_to_id"])
            if origin_parent is not None:
                parent = self._by_uri(origin_parent["uri"])
        mentions = [self._remote_account(m, origin) for m in status.get("mentions") or []]
        new_status = self._new_status(
            account,
            content=status.get("content") or "",
            tags=[t["name"] for t in status.get("tags") or []],
            mentions=mentions,
            parent=parent,
            spoiler_text=status.get("spoiler_text") or "",
            sensitive=bool(status.get("sensitive")),
            media=[{**m, "id": self._next_id()} for m in status.get("media_attachments") or []],
            visibility=status.get("visibility") or "public",
            language=status.get("language"),
            uri=status["uri"],
            url=status.get("url"),
            created_at=status.get("created_at"),
            edited_at=status.get("edited_at"),
        )
        return copy.deepcopy(new_status)

    def send_raw_frame(self, text: str) -> None:
        """Send ``text`` as-is to every open stream (for malformed-frame tests)."""
        for stream in list(self._streams):
            stream.queue.put_nowait(text)

    def status(self, status_id: str) -> dict[str, Any]:
        """A stored Status by local id (a copy)."""
        return copy.deepcopy(self._statuses[status_id])

    def statuses(self) -> list[dict[str, Any]]:
        """Every stored Status, oldest first (copies)."""
        return [copy.deepcopy(s) for s in self._statuses.values()]

    def requests_to(self, path_prefix: str) -> list[RecordedRequest]:
        """Recorded requests whose path starts with ``path_prefix``."""
        return [r for r in self.requests if r.path.startswith(path_prefix)]

    @property
    def stream_count(self) -> int:
        """Streaming connections open right now."""
        return len(self._streams)

    # -- model --

    def _next_id(self) -> str:
        # Mastodon's ids: milliseconds since the epoch shifted 16 bits, plus a per-server
        # sequence hash in the low bits — so two servers never hand out the same ids.
        candidate = (int(time.time() * 1000) << 16) + self._id_salt
        self._last_id = max(candidate, self._last_id + 1)
        return str(self._last_id)

    def _local_account(self, username: str) -> dict[str, Any]:
        if username not in self._accounts:
            self._accounts[username] = {
                "id": self._next_id(),
                "username": username,
                "acct": username,
                "display_name": username.capitalize(),
                "locked": False,
                "bot": False,
                "discoverable": True,
                "group": False,
                "created_at": _now_iso(),
                "note": "<p></p>",
                "url": f"https://{self.domain}/@{username}",
                "uri": f"https://{self.domain}/users/{username}",
                "avatar": f"https://{self.domain}/avatars/{username}.png",
                "avatar_static": f"https://{self.domain}/avatars/{username}.png",
                "header": f"https://{self.domain}/headers/original/missing.png",
                "header_static": f"https://{self.domain}/headers/original/missing.png",
                "followers_count": 0,
                "following_count": 0,
                "statuses_count": 0,
                "last_status_at": None,
                "emojis": [],
                "fields": [],
            }
        return self._accounts[username]

    def _remote_account(self, account: dict[str, Any], origin: str) -> dict[str, Any]:
        acct = account.get("acct") or account["username"]
        if "@" not in acct:
            acct = f"{acct}@{origin}"
        if acct.endswith("@" + self.domain):
            return self._local_account(acct.split("@")[0])
        if acct not in self._accounts:
            self._accounts[acct] = {**copy.deepcopy(account), "id": self._next_id(), "acct": acct}
        return self._accounts[acct]

    def _attachment(self, item: dict[str, Any] | str) -> dict[str, Any]:
        data = {"url": item} if isinstance(item, str) else item
        return {
            "id": self._next_id(),
            "type": data.get("type", "image"),
            "url": data["url"],
            "preview_url": data.get("preview_url", data["url"]),
            "remote_url": None,
            "preview_remote_url": None,
            "text_url": None,
            "meta": {},
            "description": data.get("description"),
            "blurhash": None,
        }

    def _entity(
        self,
        status_id: str,
        account: dict[str, Any],
        *,
        content: str,
        uri: str,
        url: str | None,
        visibility: str = "public",
    ) -> dict[str, Any]:
        return {
            "id": status_id,
            "created_at": _now_iso(),
            "in_reply_to_id": None,
            "in_reply_to_account_id": None,
            "sensitive": False,
            "spoiler_text": "",
            "visibility": visibility,
            "language": None,
            "uri": uri,
            "url": url,
            "replies_count": 0,
            "reblogs_count": 0,
            "favourites_count": 0,
            "edited_at": None,
            "content": content,
            "reblog": None,
            "application": None,
            "account": account,
            "media_attachments": [],
            "mentions": [],
            "tags": [],
            "emojis": [],
            "card": None,
            "poll": None,
        }

    def _new_status(
        self,
        account: dict[str, Any],
        *,
        content: str,
        tags: list[str],
        mentions: list[dict[str, Any]],
        parent: dict[str, Any] | None,
        spoiler_text: str,
        sensitive: bool,
        media: list[dict[str, Any]],
        visibility: str,
        language: str | None,
        uri: str | None = None,
        url: str | None = None,
        created_at: str | None = None,
        edited_at: str | None = None,
        application: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        status_id = self._next_id()
        local = uri is None
        username = account["username"]
        status = self._entity(
            status_id,
            account,
            content=content,
            uri=uri or f"https://{self.domain}/users/{username}/statuses/{status_id}",
            url=url if not local else f"https://{self.domain}/@{username}/{status_id}",
            visibility=visibility,
        )
        seen: dict[str, str] = {}
        for name in tags:
            seen.setdefault(name.lower(), name)
        status.update(
            {
                "created_at": created_at or status["created_at"],
                "edited_at": edited_at,
                "in_reply_to_id": parent["id"] if parent else None,
                "in_reply_to_account_id": parent["account"]["id"] if parent else None,
                "sensitive": sensitive,
                "spoiler_text": spoiler_text,
                "language": language,
                "media_attachments": media,
                "application": application,
                "mentions": [
                    {"id": m["id"], "username": m["username"], "url": m["url"], "acct": m["acct"]}
                    for m in mentions
                ],
                "tags": [
                    {"name": name, "url": f"https://{self.domain}/tags/{key}"}
                    for key, name in seen.items()
                ],
            }
        )
        account["statuses_count"] += 1
        account["last_status_at"] = status["created_at"][:10]
        self._known_tags.update(seen)
        self._statuses[status_id] = status
        self._fan_out("update", status)
        return status

    def _by_uri(self, uri: str) -> dict[str, Any] | None:
        for status in self._statuses.values():
            if not status["reblog"] and uri in (status["uri"], status["url"]):
                return status
        return None

    def _in_tag(self, status: dict[str, Any], tag: str) -> bool:
        return (
            status["reblog"] is None
            and status["visibility"] == "public"
            and any(t["name"].lower() == tag for t in status["tags"])
        )

    # -- streaming fan-out --

    def _fan_out(self, event: str, status: dict[str, Any]) -> None:
        if status["reblog"] is not None or status["visibility"] != "public":
            return
        names = {t["name"].lower() for t in status["tags"]}
        payload = status["id"] if event == "delete" else json.dumps(status)
        for stream in list(self._streams):
            # One frame per subscribed stream the status is in: a status carrying two
            # followed tags reaches a multiplexed connection twice, as on Mastodon.
            for tag in sorted(stream.tags & names):
                frame = {"stream": ["hashtag", tag], "event": event, "payload": payload}
                stream.queue.put_nowait(json.dumps(frame))

    def _close_stream(self, stream: _Stream, code: int, reason: str) -> None:
        self._streams.discard(stream)
        stream.close_code, stream.close_reason = code, reason
        stream.queue.put_nowait(None)

    def _drop_streams(self, code: int, reason: str) -> int:
        streams = list(self._streams)
        for stream in streams:
            self._close_stream(stream, code, reason)
        return len(streams)

    # -- HTTP helpers --

    def _token(self, request: Request | WebSocket) -> tuple[_Token | None, str | None]:
        """(token, error): no credentials → (None, None); refused → (None, message)."""
        header = request.headers.get("authorization", "")
        value = None
        if header:
            scheme, _, rest = header.partition(" ")
            value = rest.strip() if scheme.lower() == "bearer" else ""
        if value is None:
            value = request.query_params.get("access_token")
        if value is None and isinstance(request, WebSocket):
            value = request.headers.get("sec-websocket-protocol")
        if value is None:
            return None, None
        token = self._tokens.get(value)
        if token is None:
            return None, INVALID_TOKEN
        if token.revoked:
            return None, REVOKED_TOKEN
        return token, None

    def _user(self, request: Request, *scopes: str) -> tuple[_Token | None, Response | None]:
        """The user token of ``request`` holding one of ``scopes``, or the refusal to send."""
        token, error = self._token(request)
        if error or token is None:
            return None, _error(401, error or INVALID_TOKEN)
        if token.username is None:
            return None, _error(422, NEEDS_USER)
        if not any(token.allows(scope) for scope in scopes):
            return None, _error(403, OUT_OF_SCOPE)
        return token, None

    async def _fields(self, request: Request) -> dict[str, Any]:
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                data = await request.json()
            except ValueError:
                return {}
            return data if isinstance(data, dict) else {}
        form = await request.form()
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            if key.endswith("[]"):
                fields.setdefault(key[:-2], []).append(value)
            else:
                fields[key] = value
        return fields

    # -- the app --

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/v2/instance", self._instance_v2),
                Route("/api/v1/instance", self._instance_v1),
                Route("/api/v1/timelines/tag/{tag}", self._tag_timeline),
                Route("/api/v1/streaming/health", self._health),
                WebSocketRoute("/api/v1/streaming", self._streaming),
                Route("/api/v1/statuses", self._post_status, methods=["POST"]),
                Route("/api/v1/statuses/{id}", self._get_status),
                Route("/api/v1/statuses/{id}/context", self._status_context),
                Route("/api/v2/search", self._search),
                Route("/api/v1/accounts/verify_credentials", self._verify_credentials),
                Route("/api/v1/apps", self._register_app, methods=["POST"]),
                Route("/oauth/authorize", self._authorize, methods=["GET", "POST"]),
                Route("/oauth/token", self._oauth_token, methods=["POST"]),
                Route("/oauth/revoke", self._oauth_revoke, methods=["POST"]),
            ]
        )

    def _check_token(self, request: Request) -> Response | None:
        """Public endpoints still refuse a bad token, as Doorkeeper does."""
        _, error = self._token(request)
        return _error(401, error) if error else None

    async def _instance_v2(self, request: Request) -> Response:
        if not self.instance_v2:
            return _error(404, NOT_FOUND)
        if refused := self._check_token(request):
            return refused
        return JSONResponse(
            {
                "domain": self.domain,
                "title": self.title,
                "version": "4.3.0",
                "source_url": "https://github.com/mastodon/mastodon",
                "description": "A loopback instance for tests.",
                "usage": {"users": {"active_month": len(self._accounts)}},
                "thumbnail": {"url": f"https://{self.domain}/packs/media/images/preview.png"},
                "languages": ["en"],
                "configuration": {
                    "urls": {"streaming": self.ws_url, "status": None},
                    "accounts": {"max_featured_tags": 10, "max_pinned_statuses": 5},
                    "statuses": {
                        "max_characters": self.max_characters,
                        "max_media_attachments": 4,
                        "characters_reserved_per_url": self.url_weight,
                    },
                    "media_attachments": {"image_size_limit": 16777216},
                    "polls": {"max_options": 4, "max_characters_per_option": 50},
                    "translation": {"enabled": False},
                },
                "registrations": {"enabled": False, "approval_required": False, "message": None},
                "api_versions": {"mastodon": 2},
                "contact": {"email": f"admin@{self.domain}", "account": None},
                "rules": [],
            }
        )

    async def _instance_v1(self, request: Request) -> Response:
        if refused := self._check_token(request):
            return refused
        return JSONResponse(
            {
                "uri": self.domain,
                "title": self.title,
                "short_description": "A loopback instance for tests.",
                "description": "",
                "email": f"admin@{self.domain}",
                "version": "4.3.0" if self.instance_v2 else "3.5.3",
                "urls": {"streaming_api": self.ws_url},
                "stats": {"user_count": len(self._accounts), "status_count": len(self._statuses)},
                "languages": ["en"],
                "registrations": False,
                "approval_required": False,
                "invites_enabled": False,
                "configuration": {
                    "statuses": {
                        "max_characters": self.max_characters,
                        "max_media_attachments": 4,
                        "characters_reserved_per_url": self.url_weight,
                    }
                },
                "contact_account": None,
                "rules": [],
            }
        )

    async def _tag_timeline(self, request: Request) -> Response:
        if refused := self._check_token(request):
            return refused
        if not self.public_timelines:
            token, _ = self._token(request)
            if token is None or token.username is None:
                return _error(422, NEEDS_USER)
        tag = request.path_params["tag"].lower()
        if tag not in self._known_tags:
            return _error(404, NOT_FOUND)
        params = request.query_params
        try:
            limit = int(params.get("limit", "20"))
        except ValueError:
            limit = 20
        limit = max(1, min(limit, 40))

        def bound(name: str) -> int | None:
            value = params.get(name)
            return int(value) if value and value.isdigit() else None

        max_id, min_id, since_id = bound("max_id"), bound("min_id"), bound("since_id")
        truthy = ("true", "1")
        # TagFeed: the path's tag and `any[]` together, at most 4 (LIMIT_PER_MODE); names
        # the server never saw match nothing. An unknown path tag was a 404 above: `any[]`
        # is not consulted then.
        wanted = list(dict.fromkeys([tag, *(t.lower() for t in params.getlist("any[]"))]))[:4]
        items = [s for s in self._statuses.values() if any(self._in_tag(s, t) for t in wanted)]
        if params.get("local") in truthy:
            items = [s for s in items if "@" not in s["account"]["acct"]]
        if params.get("remote") in truthy:
            items = [s for s in items if "@" in s["account"]["acct"]]
        if params.get("only_media") in truthy:
            items = [s for s in items if s["media_attachments"]]
        items.sort(key=lambda s: int(s["id"]))
        if max_id is not None:
            items = [s for s in items if int(s["id"]) < max_id]
        if min_id is not None:
            page = [s for s in items if int(s["id"]) > min_id][:limit]
        else:
            if since_id is not None:
                items = [s for s in items if int(s["id"]) > since_id]
            page = items[-limit:]
        page.reverse()  # newest first, always
        response = JSONResponse(page)
        if page:
            base = f"{str(request.base_url).rstrip('/')}/api/v1/timelines/tag/{tag}"
            response.headers["Link"] = (
                f'<{base}?max_id={page[-1]["id"]}>; rel="next", '
                f'<{base}?min_id={page[0]["id"]}>; rel="prev"'
            )
        return response

    async def _health(self, request: Request) -> Response:
        return PlainTextResponse("OK")

    async def _streaming(self, ws: WebSocket) -> None:
        if self.faults.refuse_streaming:
            await ws.send_denial_response(_error(403, "Streaming is disabled on this server"))
            return
        token, error = self._token(ws)
        if token is None:
            await ws.send_denial_response(_error(401, error or "Missing access token"))
            return
        if token.username is None or not token.allows("read:statuses"):
            # Since 4.2 streams need a user token with read:statuses.
            await ws.send_denial_response(
                _error(401, "Error: Access token does not have the required scopes")
            )
            return
        tags: set[str] = set()
        stream_name = ws.query_params.get("stream")
        if stream_name is not None:
            tag = ws.query_params.get("tag", "").lower()
            if stream_name not in ("hashtag", "hashtag:local") or not tag:
                await ws.send_denial_response(_error(400, "Unknown stream type"))
                return
            tags.add(tag)
        while self.faults._on_upgrade:
            self.faults._on_upgrade.pop(0)()
        offered = ws.headers.get("sec-websocket-protocol")
        await ws.accept(subprotocol=offered if offered == token.value else None)
        stream = _Stream(ws=ws, token=token.value, tags=tags)
        self._streams.add(stream)
        reader = asyncio.create_task(self._read_stream(stream))
        try:
            while True:
                frame = await stream.queue.get()
                if frame is None:
                    break
                await ws.send_text(frame)
            await ws.close(stream.close_code, stream.close_reason)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client went away
        finally:
            self._streams.discard(stream)
            reader.cancel()

    async def _read_stream(self, stream: _Stream) -> None:
        """Subscribe/unsubscribe frames from the client; a disconnect ends the stream."""
        try:
            while True:
                text = await stream.ws.receive_text()
                try:
                    message = json.loads(text)
                except ValueError:
                    continue
                if not isinstance(message, dict) or message.get("stream") != "hashtag":
                    continue
                tag = str(message.get("tag", "")).lower()
                if message.get("type") == "subscribe" and tag:
                    stream.tags.add(tag)
                elif message.get("type") == "unsubscribe":
                    stream.tags.discard(tag)
        except (WebSocketDisconnect, RuntimeError):
            self._streams.discard(stream)
            stream.queue.put_nowait(None)

    async def _post_status(self, request: Request) -> Response:
        token, refused = self._user(request, "write:statuses")
        if refused:
            return refused
        assert token is not None and token.username is not None
        account = self._local_account(token.username)
        key = request.headers.get("idempotency-key")
        if key and (token.username, key) in self._idempotency:
            existing = self._statuses.get(self._idempotency[(token.username, key)])
            if existing is not None:
                return JSONResponse(existing)
        fields = await self._fields(request)
        text = str(fields.get("status") or "")
        spoiler = str(fields.get("spoiler_text") or "")
        visibility = str(fields.get("visibility") or "public")
        if visibility not in ("public", "unlisted", "private", "direct"):
            return _error(422, "Validation failed: Visibility is not included in the list")
        if fields.get("media_ids"):
            return _error(422, "Validation failed: Media ids are invalid")
        if not text.strip():
            return _error(422, "Validation failed: Text can't be blank")
        if weighed_length(text, self.url_weight) + grapheme.length(spoiler) > self.max_characters:
            return _error(
                422, f"Validation failed: Text character limit of {self.max_characters} exceeded"
            )
        parent = None
        if fields.get("in_reply_to_id"):
            parent = self._statuses.get(str(fields["in_reply_to_id"]))
            if parent is None:
                return _error(404, "The post you are trying to reply to does not appear to exist.")
        content, tags, mentions = self._render(text)
        app = self._apps.get(token.client_id or "")
        status = self._new_status(
            account,
            content=content,
            tags=tags,
            mentions=mentions,
            parent=parent,
            spoiler_text=spoiler,
            sensitive=bool(spoiler) or str(fields.get("sensitive")).lower() in ("true", "1"),
            media=[],
            visibility=visibility,
            language=str(fields["language"]) if fields.get("language") else None,
            application={"name": app.name, "website": app.website} if app else None,
        )
        if key:
            self._idempotency[(token.username, key)] = status["id"]
        return JSONResponse(status)

    def _render(self, text: str) -> tuple[str, list[str], list[dict[str, Any]]]:
        """Plain text → Mastodon HTML, plus the tags and mentioned accounts it carries."""
        tags: list[str] = []
        mentions: list[dict[str, Any]] = []

        def token_html(match: re.Match[str]) -> str:
            if match.group("url"):
                url = match.group("url").rstrip(".,:;!?'\")")
                return _url_html(url) + html.escape(match.group("url")[len(url) :])
            if match.group("tag"):
                tags.append(match.group("tag"))
                return _tag_html(self.domain, match.group("tag"))
            user, domain = match.group("user"), match.group("domain")
            account = self._mentionable(user, domain)
            if account is None:
                return html.escape(match.group(0))
            if account not in mentions:
                mentions.append(account)
            return _mention_html(account)

        def line_html(line: str) -> str:
            out, pos = [], 0
            for match in _TOKEN_RE.finditer(line):
                out.append(html.escape(line[pos : match.start()]))
                out.append(token_html(match))
                pos = match.end()
            out.append(html.escape(line[pos:]))
            return "".join(out)

        paragraphs = re.split(r"\n\s*\n", text.strip())
        content = "".join(
            "<p>" + "<br />".join(line_html(line) for line in para.split("\n")) + "</p>"
            for para in paragraphs
        )
        return content, tags, mentions

    def _mentionable(self, user: str, domain: str | None) -> dict[str, Any] | None:
        if domain is None or domain.lower() == self.domain:
            return self._accounts.get(user)
        acct = f"{user}@{domain.lower()}"
        if acct in self._accounts:
            return self._accounts[acct]
        origin = _PEERS.get(domain.lower())
        if origin is not None and user in origin._accounts:
            return self._remote_account(origin._accounts[user], domain.lower())
        return None

    async def _get_status(self, request: Request) -> Response:
        if refused := self._check_token(request):
            return refused
        status = self._statuses.get(request.path_params["id"])
        if status is None or status["visibility"] not in ("public", "unlisted"):
            return _error(404, NOT_FOUND)
        return JSONResponse(status)

    async def _status_context(self, request: Request) -> Response:
        if refused := self._check_token(request):
            return refused
        status = self._statuses.get(request.path_params["id"])
        if status is None or status["reblog"] or not _visible(status):
            return _error(404, NOT_FOUND)
        ancestors: list[dict[str, Any]] = []
        parent = self._statuses.get(status["in_reply_to_id"] or "")
        while parent is not None and parent not in ancestors:
            ancestors.insert(0, parent)
            parent = self._statuses.get(parent["in_reply_to_id"] or "")
        children: dict[str, list[dict[str, Any]]] = {}
        for other in sorted(self._statuses.values(), key=lambda s: int(s["id"])):
            if other["in_reply_to_id"] and not other["reblog"]:
                children.setdefault(other["in_reply_to_id"], []).append(other)
        descendants: list[dict[str, Any]] = []

        def walk(node_id: str) -> None:
            # Depth first, each level oldest first: the order Mastodon lists a thread in.
            for child in children.get(node_id, []):
                descendants.append(child)
                walk(child["id"])

        walk(status["id"])
        return JSONResponse(
            {
                "ancestors": [s for s in ancestors if _visible(s)],
                "descendants": [s for s in descendants if _visible(s)],
            }
        )

    async def _search(self, request: Request) -> Response:
        params = request.query_params
        token, error = self._token(request)
        if error:
            return _error(401, error)
        resolve = params.get("resolve") in ("true", "1")
        if resolve and (token is None or token.username is None):
            return _error(
                401,
                "Search queries that resolve remote resources are not supported without "
                "authentication",
            )
        if token is not None and not token.allows("read:search"):
            return _error(403, OUT_OF_SCOPE)
        query = params.get("q", "").strip()
        kind = params.get("type")
        statuses: list[dict[str, Any]] = []
        if query.startswith("https://") and kind in (None, "statuses"):
            found = self._by_uri(query)
            if found is None and resolve:
                origin = _PEERS.get(urlsplit(query).netloc)
                remote = origin._by_uri(query) if origin is not None else None
                if remote is not None and remote["visibility"] in ("public", "unlisted"):
                    found = self._statuses[self.federate(remote)["id"]]
            if found is not None and found["visibility"] in ("public", "unlisted"):
                statuses.append(found)
        return JSONResponse({"accounts": [], "statuses": statuses, "hashtags": []})

    async def _verify_credentials(self, request: Request) -> Response:
        token, refused = self._user(request, "read:accounts", "profile")  # profile: 4.3+
        if refused:
            return refused
        assert token is not None and token.username is not None
        account = copy.deepcopy(self._local_account(token.username))
        account["source"] = {
            "privacy": "public",
            "sensitive": False,
            "language": "en",
            "note": "",
            "fields": [],
        }
        return JSONResponse(account)

    async def _register_app(self, request: Request) -> Response:
        fields = await self._fields(request)
        name = str(fields.get("client_name") or "").strip()
        redirect = fields.get("redirect_uris") or ""
        uris = redirect if isinstance(redirect, list) else str(redirect).split()
        if not name:
            return _error(422, "Validation failed: Application name can't be blank")
        if not uris:
            return _error(422, "Validation failed: Redirect URI can't be blank")
        for uri in uris:
            if uri != OOB and urlsplit(uri).scheme == "":
                return _error(422, "Validation failed: Redirect URI must be an absolute URI.")
        scopes = set(str(fields.get("scopes") or "read").split())
        app = _App(
            client_id=secrets.token_urlsafe(32),
            client_secret=secrets.token_urlsafe(32),
            name=name,
            redirect_uris=uris,
            scopes=scopes,
            website=str(fields["website"]) if fields.get("website") else None,
        )
        self._apps[app.client_id] = app
        return JSONResponse(
            {
                "id": self._next_id(),
                "name": app.name,
                "website": app.website,
                "scopes": sorted(scopes),
                "redirect_uri": "\n".join(uris),
                "redirect_uris": uris,
                "client_id": app.client_id,
                "client_secret": app.client_secret,
                "client_secret_expires_at": 0,
                "vapid_key": VAPID_KEY,
            }
        )

    async def _authorize(self, request: Request) -> Response:
        params: dict[str, str] = dict(request.query_params)
        if request.method == "POST":
            params = {k: str(v) for k, v in (await request.form()).items()}
        app = self._apps.get(params.get("client_id", ""))
        if app is None:
            return _oauth_page(
                "Client authentication failed due to unknown client, no client authentication "
                "included, or unsupported authentication method.",
                400,
            )
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in app.redirect_uris:
            return _oauth_page("The redirect uri included is not valid.", 400)
        if params.get("response_type") != "code":
            return _oauth_page("The authorization server does not support this response type.", 400)
        scopes = set(params.get("scope", "read").split())
        if not scopes or not all(_scope_within(s, app.scopes) for s in scopes):
            return _oauth_page("The requested scope is invalid, unknown, or malformed.", 400)
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method")
        if challenge and method != "S256":
            return _oauth_page("The code challenge method must be S256.", 400)
        if request.method == "GET":
            hidden = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                for k, v in params.items()
            )
            body = (
                f"<h1>Authorization required</h1><p><strong>{html.escape(app.name)}</strong> "
                f"would like to access your account @{html.escape(self.login_as)}"
                f"@{html.escape(self.domain)} ({html.escape(' '.join(sorted(scopes)))}).</p>"
                f'<form method="post" action="/oauth/authorize">{hidden}'
                f'<button type="submit">Authorize</button></form>'
            )
            return _oauth_page(body, 200, raw=True)
        self._local_account(self.login_as)
        code = secrets.token_urlsafe(32)
        self._codes[code] = {
            "client_id": app.client_id,
            "redirect_uri": redirect_uri,
            "scopes": scopes,
            "username": self.login_as,
            "challenge": challenge,
            "expires": time.time() + 600,
        }
        if redirect_uri == OOB:
            body = f"<h1>Authorization code</h1><input readonly value='{html.escape(code)}'>"
            return _oauth_page(body, 200, raw=True)
        query = {"code": code}
        if params.get("state"):
            query["state"] = params["state"]
        joiner = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(redirect_uri + joiner + urlencode(query), status_code=302)

    def _client(self, fields: dict[str, Any], request: Request) -> _App | None:
        client_id = str(fields.get("client_id") or "")
        secret = str(fields.get("client_secret") or "")
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:]).decode()
            except ValueError:
                return None
            client_id, _, secret = decoded.partition(":")
        app = self._apps.get(client_id)
        if app is None or not secrets.compare_digest(app.client_secret, secret):
            return None
        return app

    async def _oauth_token(self, request: Request) -> Response:
        fields = await self._fields(request)
        grant = fields.get("grant_type")
        if grant not in ("authorization_code", "client_credentials"):
            return _oauth_error(
                400,
                "unsupported_grant_type",
                "The authorization grant type is not supported by the authorization server.",
            )
        app = self._client(fields, request)
        if app is None:
            return _oauth_error(
                401,
                "invalid_client",
                "Client authentication failed due to unknown client, no client authentication "
                "included, or unsupported authentication method.",
            )
        if grant == "client_credentials":
            scopes = set(str(fields.get("scope") or "read").split())
            if not all(_scope_within(s, app.scopes) for s in scopes):
                return _oauth_error(
                    400, "invalid_scope", "The requested scope is invalid, unknown, or malformed."
                )
            token = _Token(secrets.token_urlsafe(32), None, scopes, app.client_id)
        else:
            grant_refused = _oauth_error(
                400,
                "invalid_grant",
                "The provided authorization grant is invalid, expired, revoked, does not match "
                "the redirection URI used in the authorization request, or was issued to another "
                "client.",
            )
            code = self._codes.pop(str(fields.get("code") or ""), None)
            if (
                code is None
                or code["expires"] < time.time()
                or code["client_id"] != app.client_id
                or code["redirect_uri"] != fields.get("redirect_uri")
            ):
                return grant_refused
            if code["challenge"]:
                verifier = str(fields.get("code_verifier") or "")
                digest = hashlib.sha256(verifier.encode()).digest()
                expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
                if not verifier or not secrets.compare_digest(expected, code["challenge"]):
                    return grant_refused
            token = _Token(
                secrets.token_urlsafe(32), code["username"], code["scopes"], app.client_id
            )
        self._tokens[token.value] = token
        return JSONResponse(
            {
                "access_token": token.value,
                "token_type": "Bearer",
                "scope": " ".join(sorted(token.scopes)),
                "created_at": int(time.time()),
            }
        )

    async def _oauth_revoke(self, request: Request) -> Response:
        fields = await self._fields(request)
        app = self._client(fields, request)
        token = self._tokens.get(str(fields.get("token") or ""))
        if app is None or (token is not None and token.client_id not in (None, app.client_id)):
            return _oauth_error(
                403, "unauthorized_client", "You are not authorized to revoke this token"
            )
        if token is not None:
            self.revoke_token(token.value)
        return JSONResponse({})


def _visible(status: dict[str, Any]) -> bool:
    """Whether anyone may read ``status`` (private and direct ones need a follower)."""
    return status["visibility"] in ("public", "unlisted")


def _scope_within(scope: str, granted: set[str]) -> bool:
    return scope in granted or scope.split(":")[0] in granted


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def _oauth_page(body: str, status: int, *, raw: bool = False) -> HTMLResponse:
    content = body if raw else f"<h1>An error has occurred</h1><p>{html.escape(body)}</p>"
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Mastodon</title></head><body><main>{content}</main></body></html>"
    )
    return HTMLResponse(page, status_code=status)
