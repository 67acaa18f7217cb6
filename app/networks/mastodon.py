"""Mastodon: read a hashtag (REST + streaming websocket), post, resolve, sign in with OAuth.

Protocol knowledge only. Everything here speaks the documented Mastodon client API, which most
fediverse servers also implement, so every field of a response is treated as optional.

Public surface:

- :func:`parse_status` — a Status entity → :class:`~app.networks.base.RemotePost`.
- :func:`parse_reset`, :func:`retry_after`, :func:`throttle_delay` — rate-limit headers.
- :class:`MastodonApi` — one instance's HTTP API over an injected ``httpx.AsyncClient``.
- :class:`MastodonFollower` — follows one hashtag: backfill, forward paging, live stream,
  polling fallback; yields :class:`~app.networks.base.Batch` objects.
- :func:`length`, :func:`length_rule`, :func:`reply_text` — composing posts.
- :func:`new_pkce` — PKCE verifier and S256 challenge for the OAuth authorization-code flow.

Ids: a status has a ``uri`` (its ActivityPub id, the same on every instance: our ``remote_id``)
and an ``id`` (per instance, opaque: our ``local_id``). Ids are never compared or cast to int;
"newest" always means "first in the server's newest-first page".
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import random
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus, WebSocketException

from app.networks.base import (
    AuthError,
    Author,
    Batch,
    Change,
    Delete,
    FollowContext,
    LengthRule,
    Media,
    NetworkError,
    PublishResult,
    RemotePost,
    RemoteRejected,
    Upsert,
)
from app.qa import question_number
from app.text import html_to_text, mastodon_length

from ..outbound import describe_failure

log = logging.getLogger(__name__)

NETWORK = "mastodon"

DEFAULT_MAX_CHARACTERS = 500  # Mastodon's default; forks and admins change it
DEFAULT_URL_WEIGHT = 23  # Mastodon's characters_reserved_per_url
PAGE_LIMIT = 40  # the most a tag timeline page may hold
# Every Mastodon-API server honours pages of 20 (the documented default); some cap `limit`
# there, so a page of 20 or more may not be the last one even when we asked for 40.
SAFE_PAGE = 20
# Mastodon's tag timeline reads at most 4 tags per request (TagFeed::LIMIT_PER_MODE: the
# path's tag and `any[]` together); a chat with more is read in several requests.
TAGS_PER_REQUEST = 4
# read:accounts for verify_credentials, read:search for resolving a status to reply to it
# (both are checked by Mastodon's controllers), read/write:statuses for following and posting.
DEFAULT_SCOPES = "read:statuses read:accounts read:search write:statuses"
OOB_REDIRECT = "urn:ietf:wg:oauth:2.0:oob"
STREAMING_PATH = "/api/v1/streaming"
# Thread context: replies to a question often drop the hashtag, so the tag timeline never
# shows them; the questions' threads are fetched instead. A chat asks one question every few
# minutes, so the last 20 cover any session; 3 requests a cycle (one a minute by default) use
# about 5% of Mastodon's 300-requests-per-5-minutes budget.
CONTEXT_QUESTIONS = 20
CONTEXT_REQUESTS_PER_CYCLE = 3
# These passes run on the event loop, before the room caps a post: the question check reads
# only the opening of a status (a marker opens it) and a quoted post keeps a preview's worth,
# so a megabyte of hostile markup costs what a normal post does.
QUESTION_PEEK = 2000
QUOTE_HTML_LIMIT = 10000

T = TypeVar("T")


# --- parsing -----------------------------------------------------------------------------


def _str(value: Any) -> str | None:
    """``value`` as a non-empty string, or None (ids arrive as strings, numbers or null)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float | str):
        text = str(value).strip()
        return text or None
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def parse_datetime(value: Any) -> datetime | None:
    """An ISO-8601 timestamp as an aware datetime (naive ones are UTC); None when unusable."""
    text = _str(value)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _domain_of(instance: str) -> str:
    """The host of ``instance``, given as a bare domain or a URL."""
    instance = instance.strip()
    if "://" in instance:
        return urlsplit(instance).netloc or instance
    return instance.strip("/")


def _handle(account: dict[str, Any], domain: str) -> str:
    """ "@user@domain" for any account: local accounts' ``acct`` lacks the domain."""
    acct = _str(account.get("acct")) or _str(account.get("username")) or "unknown"
    acct = acct.lstrip("@")
    if "@" not in acct and domain:
        acct = f"{acct}@{domain}"
    return "@" + acct


def parse_account(account: Any, instance: str) -> Author:
    """A Mastodon Account entity as an :class:`Author`.

    ``instance`` is the domain (or base URL) of the server that delivered it, used to complete
    local accounts' handles. ``remote_id`` is the account's ActivityPub ``uri`` when given,
    else its profile ``url`` — both the same wherever the account is seen.
    """
    data = _dict(account)
    domain = _domain_of(instance)
    handle = _handle(data, domain)
    name = _str(data.get("display_name")) or _str(data.get("username")) or handle.lstrip("@")
    profile_url = _str(data.get("url"))
    return Author(
        name=name,
        handle=handle,
        avatar_url=_str(data.get("avatar")) or _str(data.get("avatar_static")),
        profile_url=profile_url,
        remote_id=_str(data.get("uri")) or profile_url,
    )


def _media(items: Any) -> list[Media]:
    media: list[Media] = []
    for item in _list(items):
        entry = _dict(item)
        # A remote attachment not yet cached locally has url null and only remote_url.
        url = _str(entry.get("url")) or _str(entry.get("remote_url"))
        if url is None:
            continue
        kind = _str(entry.get("type")) or "unknown"
        media.append(
            Media(
                url=url,
                preview_url=_str(entry.get("preview_url")),
                alt=_str(entry.get("description")),
                kind=kind if kind in {"image", "video", "gifv", "audio"} else "unknown",
            )
        )
    return media


def _quote(status: dict[str, Any], domain: str) -> dict[str, Any] | None:
    """The quoted post of a 4.4+ quote (only when the quote was accepted and is embedded)."""
    quote_info = _dict(status.get("quote"))
    quoted = _dict(quote_info.get("quoted_status"))
    if quote_info.get("state") not in (None, "accepted") or not quoted:
        return None
    author = parse_account(quoted.get("account"), domain)
    return {
        "url": _str(quoted.get("url")) or _str(quoted.get("uri")),
        "author": author.handle,
        "text": html_to_text((_str(quoted.get("content")) or "")[:QUOTE_HTML_LIMIT]),
    }


def opens_with_question(html: str) -> bool:
    """True when a status's HTML opens with a question marker ("Q1: …"). Reads only the
    opening :data:`QUESTION_PEEK` characters, so it costs the same on any size of post."""
    return question_number(html_to_text(html[:QUESTION_PEEK])) is not None


def parse_status(data: dict[str, Any], instance: str) -> RemotePost:
    """Map a Mastodon Status entity to a :class:`RemotePost`.

    ``instance`` is the domain (or base URL) of the server that delivered the status; it
    completes local accounts' handles ("@alice" → "@alice@instance").

    Guarantees: ``remote_id`` is the ActivityPub ``uri`` (falling back to ``url``), the same
    on every instance; ``local_id`` is this instance's ``id``. A boost maps to the boosted
    status itself (its uri, ids, content) with ``reposted_by`` set, and the boost's own id in
    ``extra["boost_local_id"]``. ``in_reply_to_id`` is instance-local, so it goes to
    ``extra["in_reply_to_local_id"]`` (``in_reply_to`` stays None); ``reply_to_handle`` is
    found among the mentions. ``extra["tags"]`` holds the lower-cased tag names. ``html`` is
    the server's content, unsanitized. Missing or null fields get neutral defaults.

    Raises ValueError when the status has neither ``uri``, ``url`` nor ``id``.
    """
    if not isinstance(data, dict):
        raise ValueError("a status must be a JSON object")
    domain = _domain_of(instance)
    inner = data.get("reblog")
    if isinstance(inner, dict):
        post = parse_status(inner, instance)
        post.reposted_by = parse_account(data.get("account"), domain)
        boost_id = _str(data.get("id"))
        if boost_id is not None:
            post.extra["boost_local_id"] = boost_id
        return post

    local_id = _str(data.get("id"))
    url = _str(data.get("url"))
    remote_id = _str(data.get("uri")) or url
    if remote_id is None:
        if local_id is None:
            raise ValueError("status has no uri, url or id")
        remote_id = f"https://{domain}/api/v1/statuses/{local_id}"

    account = _dict(data.get("account"))
    author = parse_account(account, domain)

    extra: dict[str, Any] = {
        "tags": [
            name.lower()
            for tag in _list(data.get("tags"))
            if (name := _str(_dict(tag).get("name"))) is not None
        ]
    }
    visibility = _str(data.get("visibility"))
    if visibility:
        extra["visibility"] = visibility

    reply_to_handle = None
    parent_id = _str(data.get("in_reply_to_id"))
    if parent_id is not None:
        extra["in_reply_to_local_id"] = parent_id
        parent_account = _str(data.get("in_reply_to_account_id"))
        if parent_account is not None:
            if parent_account == _str(account.get("id")):
                reply_to_handle = author.handle
            for mention in _list(data.get("mentions")):
                mention = _dict(mention)
                if _str(mention.get("id")) == parent_account:
                    reply_to_handle = _handle(mention, domain)
                    break

    return RemotePost(
        network=NETWORK,
        remote_id=remote_id,
        local_id=local_id,
        author=author,
        created_at=parse_datetime(data.get("created_at")) or datetime.now(UTC),
        html=_str(data.get("content")) or "",
        url=url,
        reply_to_handle=reply_to_handle,
        spoiler_text=_str(data.get("spoiler_text")) or "",
        sensitive=data.get("sensitive") is True,
        media=_media(data.get("media_attachments")),
        language=_str(data.get("language")),
        quote=_quote(data, domain),
        edited_at=parse_datetime(data.get("edited_at")),
        extra=extra,
    )


# --- rate limits -------------------------------------------------------------------------

# Below this an X-RateLimit-Reset number is a delay in seconds, not an epoch (2001-09-09).
_EPOCH_FLOOR = 1_000_000_000


def parse_reset(value: str | None, *, now: float | None = None) -> float | None:
    """The moment a rate-limit window resets, as Unix time (seconds); None when unreadable.

    Accepts Mastodon's ISO-8601 timestamp ("2024-05-01T12:05:00.123456Z"), epoch seconds
    ("1714565100", as other servers send) and, for small numbers, a delay in seconds.
    """
    text = _str(value)
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        moment = parse_datetime(text)
        return moment.timestamp() if moment else None
    if number != number or number < 0:  # NaN or negative
        return None
    if number < _EPOCH_FLOOR:
        return (time.time() if now is None else now) + number
    return number


def retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait after a 429: until ``X-RateLimit-Reset``, else ``Retry-After``."""
    now = time.time() if now is None else now
    reset = parse_reset(headers.get("x-ratelimit-reset"), now=now)
    if reset is not None:
        return max(0.0, reset - now)
    after = _str(headers.get("retry-after"))
    if after is not None:
        try:
            return max(0.0, float(after))
        except ValueError:
            pass
        try:
            moment = parsedate_to_datetime(after)  # Retry-After may be an HTTP-date
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return max(0.0, moment.timestamp() - now)
    return None


def throttle_delay(headers: Mapping[str, str], *, now: float | None = None) -> float:
    """Seconds to hold the next request: > 0 only when ``X-RateLimit-Remaining`` is 0."""
    remaining = _str(headers.get("x-ratelimit-remaining"))
    try:
        if remaining is None or float(remaining) > 0:
            return 0.0
    except ValueError:
        return 0.0
    return retry_after(headers, now=now) or 0.0


# --- HTTP API ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """What a client needs to know about an instance."""

    domain: str  # the accounts' domain ("@alice@domain"); may differ from the web host
    title: str
    streaming_url: str  # ws:// or wss:// base of the streaming server, without the path
    max_characters: int = DEFAULT_MAX_CHARACTERS
    url_weight: int = DEFAULT_URL_WEIGHT  # characters_reserved_per_url
    version: str = ""


@dataclass(frozen=True, slots=True)
class AppCredentials:
    """An OAuth application registered on one instance (cache it per instance)."""

    client_id: str
    client_secret: str
    name: str = ""
    redirect_uri: str = ""
    scopes: str = ""


@dataclass(frozen=True, slots=True)
class OAuthToken:
    """An access token granted by ``/oauth/token``."""

    access_token: str
    token_type: str = "Bearer"
    scope: str = ""
    created_at: int | None = None


def new_pkce() -> tuple[str, str]:
    """A fresh PKCE pair: (verifier, S256 challenge). Keep the verifier until the callback."""
    verifier = secrets.token_urlsafe(64)  # 86 unreserved characters, within RFC 7636's 43–128
    return verifier, pkce_challenge(verifier)


def pkce_challenge(verifier: str) -> str:
    """The S256 challenge of ``verifier``: base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _ws_base(url: str) -> str:
    """``url`` with an http(s) scheme turned into ws(s); already-ws URLs pass through."""
    parts = urlsplit(url)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme or "wss")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


class MastodonApi:
    """One instance's client API over an injected ``httpx.AsyncClient``.

    ``base_url`` is the instance's web address ("https://mastodon.social"; a bare domain gets
    https). ``token`` is an OAuth bearer token, if any. Every method raises:

    - :class:`AuthError` on 401/403 (and refused OAuth grants), message from the body's
      ``error``;
    - :class:`RemoteRejected` on 422 (validation, e.g. too long);
    - :class:`NetworkError` on 429 (``retry_after`` from ``X-RateLimit-Reset``), other 4xx,
      5xx, timeouts, connection errors and malformed JSON — ``status`` set when there was one.

    The client's own timeout applies. Rate-limit headers of the last response are kept so
    callers can pace themselves (:meth:`throttle_delay`).
    """

    def __init__(self, client: httpx.AsyncClient, base_url: str, token: str | None = None):
        base_url = base_url.strip().rstrip("/")
        if "://" not in base_url:
            base_url = "https://" + base_url
        self.client = client
        self.base_url = base_url
        self.host = urlsplit(base_url).netloc
        self.token = token or None
        self.info: InstanceInfo | None = None  # set by instance_info()
        self._rate_headers: dict[str, str] = {}
        self._rate_seen_at = 0.0

    def anonymous(self) -> MastodonApi:
        """The same instance and client without the token (public endpoints only)."""
        api = MastodonApi(self.client, self.base_url, None)
        api.info = self.info
        return api

    @property
    def domain(self) -> str:
        """The accounts' domain: from the instance info once fetched, else the web host."""
        return self.info.domain if self.info else self.host

    async def _accounts_domain(self) -> str:
        """The accounts' domain, fetching the instance info once if needed (the web host
        when the instance will not say)."""
        if self.info is None:
            try:
                await self.instance_info()
            except NetworkError as exc:
                if isinstance(exc, AuthError):
                    raise
                log.warning(
                    "mastodon %s: no instance info (%s); using the web host", self.host, exc
                )
        return self.domain

    def throttle_delay(self) -> float:
        """Seconds to wait before the next request, from the last response's headers."""
        return throttle_delay(self._rate_headers)

    # -- plumbing --

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        json_body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        refused: frozenset[int] = frozenset({401, 403}),
    ) -> httpx.Response:
        all_headers = {"Accept": "application/json", **(headers or {})}
        if auth and self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        url = self.base_url + path
        where = f"{method} {self.host}{path}"
        try:
            response = await self.client.request(
                method, url, params=params, data=data, json=json_body, headers=all_headers
            )
        except httpx.TimeoutException as exc:
            raise NetworkError(f"{where} timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise NetworkError(f"{where} failed: {describe_failure(exc)}") from exc

        if "x-ratelimit-remaining" in response.headers:
            self._rate_headers = {
                key: response.headers[key]
                for key in ("x-ratelimit-remaining", "x-ratelimit-reset", "retry-after")
                if key in response.headers
            }
        status = response.status_code
        if status < 400:
            return response
        message = f"{where} answered {_error_message(response)}"
        if status in refused:
            raise AuthError(message, status=status)
        if status == 422:
            # Mastodon answers 422 "This method requires an authenticated user" when a user
            # token is needed (no token, or an app token): a credentials problem, not content.
            # The description is read to decide, never shown (docs/security.md).
            if "authenticated user" in _error_text(response).lower():
                raise AuthError(message, status=status)
            raise RemoteRejected(
                f"{self.host} refused it ({_error_message(response)})", status=status
            )
        if status == 429:
            raise NetworkError(message, status=status, retry_after=retry_after(response.headers))
        raise NetworkError(message, status=status)

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            where = f"{response.request.method} {response.request.url.path}"
            raise NetworkError(
                f"{where} answered HTTP {response.status_code}, not JSON",
                status=response.status_code,
            ) from exc

    def _object(self, response: httpx.Response) -> dict[str, Any]:
        body = self._json(response)
        if not isinstance(body, dict):
            raise NetworkError(
                f"{response.request.url.path} returned {type(body).__name__}, expected an object",
                status=response.status_code,
            )
        return body

    # -- reading --

    async def instance_info(self) -> InstanceInfo:
        """The instance's limits and streaming host, from ``/api/v2/instance`` (4.0+) or, when
        that is missing (404/410), ``/api/v1/instance``. Defaults fill absent fields."""
        try:
            body = self._object(await self._request("GET", "/api/v2/instance"))
            v2 = True
        except NetworkError as exc:
            if isinstance(exc, AuthError) or exc.status not in (404, 410):
                raise
            body = self._object(await self._request("GET", "/api/v1/instance"))
            v2 = False
        config = _dict(body.get("configuration"))
        statuses = _dict(config.get("statuses"))
        if v2:
            streaming = _str(_dict(config.get("urls")).get("streaming"))
            domain = _str(body.get("domain"))
        else:
            streaming = _str(_dict(body.get("urls")).get("streaming_api"))
            domain = _str(body.get("uri"))
        max_chars = _positive(statuses.get("max_characters")) or _positive(
            body.get("max_toot_chars")  # Pleroma, Akkoma and glitch-soc before 3.4.2
        )
        info = InstanceInfo(
            domain=_domain_of(domain) if domain else self.host,
            title=_str(body.get("title")) or self.host,
            streaming_url=_ws_base(streaming or self.base_url),
            max_characters=max_chars or DEFAULT_MAX_CHARACTERS,
            url_weight=_positive(statuses.get("characters_reserved_per_url")) or DEFAULT_URL_WEIGHT,
            version=_str(body.get("version")) or "",
        )
        self.info = info
        return info

    async def tag_page(
        self,
        tag: str,
        *,
        min_id: str | None = None,
        max_id: str | None = None,
        since_id: str | None = None,
        limit: int = PAGE_LIMIT,
    ) -> list[dict[str, Any]]:
        """One page of ``GET /api/v1/timelines/tag/:tag`` — raw Status dicts, **newest first**
        as the server sends them (reverse to process oldest→newest).

        ``max_id``: strictly older; ``min_id``: the page immediately newer (forward paging
        without gaps); ``since_id``: newer, but the newest page. An unknown tag (404) is an
        empty page. Non-object entries are dropped.
        """
        page = await self.tags_page(
            [tag], min_id=min_id, max_id=max_id, since_id=since_id, limit=limit
        )
        return page or []

    async def tags_page(
        self,
        tags: Sequence[str],
        *,
        min_id: str | None = None,
        max_id: str | None = None,
        since_id: str | None = None,
        limit: int = PAGE_LIMIT,
    ) -> list[dict[str, Any]] | None:
        """One page of statuses carrying any of ``tags`` (at most :data:`TAGS_PER_REQUEST`):
        ``GET /api/v1/timelines/tag/:first?any[]=second&any[]=…``, newest first, paged as
        :meth:`tag_page`. None when the server does not know the first tag (404): Mastodon
        then ignores ``any[]`` as well, so the caller should put another tag first.
        """
        if not 1 <= len(tags) <= TAGS_PER_REQUEST:
            raise ValueError(f"a tag timeline request takes 1 to {TAGS_PER_REQUEST} tags")
        params: dict[str, Any] = {"limit": max(1, min(limit, PAGE_LIMIT))}
        for key, value in (("min_id", min_id), ("max_id", max_id), ("since_id", since_id)):
            if value is not None:
                params[key] = value
        if len(tags) > 1:
            params["any[]"] = [tag.lstrip("#") for tag in tags[1:]]
        path = "/api/v1/timelines/tag/" + quote(tags[0].lstrip("#"), safe="")
        try:
            response = await self._request("GET", path, params=params)
        except NetworkError as exc:
            if exc.status == 404 and not isinstance(exc, AuthError):
                return None
            raise
        body = self._json(response)
        if not isinstance(body, list):
            raise NetworkError(
                f"tag timeline of {self.host} returned {type(body).__name__}, expected a list",
                status=response.status_code,
            )
        return [item for item in body if isinstance(item, dict)]

    async def get_status(self, local_id: str) -> RemotePost:
        """``GET /api/v1/statuses/:id`` on this instance."""
        path = "/api/v1/statuses/" + quote(local_id, safe="")
        status = self._object(await self._request("GET", path))
        return parse_status(status, await self._accounts_domain())

    async def status_context(self, local_id: str) -> dict[str, list[dict[str, Any]]]:
        """``GET /api/v1/statuses/:id/context`` — ``{"ancestors": [...], "descendants": [...]}``
        as raw Status dicts in the server's order (ancestors oldest first, descendants in
        thread order). Only statuses visible to the token (or the public) are listed. A
        status that is gone or invisible (404) has an empty context; non-object entries are
        dropped."""
        path = "/api/v1/statuses/" + quote(local_id, safe="") + "/context"
        try:
            response = await self._request("GET", path)
        except NetworkError as exc:
            if exc.status == 404 and not isinstance(exc, AuthError):
                return {"ancestors": [], "descendants": []}
            raise
        body = self._object(response)
        return {
            key: [item for item in _list(body.get(key)) if isinstance(item, dict)]
            for key in ("ancestors", "descendants")
        }

    async def resolve_status(self, uri: str) -> str | None:
        """This instance's local id for the status with ActivityPub ``uri`` (or url), fetching
        it from its origin if needed (``/api/v2/search?resolve=true``; needs a user token).
        None when the instance cannot find it."""
        params = {"q": uri, "resolve": "true", "type": "statuses", "limit": 5}
        try:
            response = await self._request("GET", "/api/v2/search", params=params)
        except NetworkError as exc:
            if exc.status == 404 and not isinstance(exc, AuthError):
                return None
            raise
        for item in _list(self._object(response).get("statuses")):
            item = _dict(item)
            if uri in (_str(item.get("uri")), _str(item.get("url"))):
                return _str(item.get("id"))
        return None

    async def verify_credentials(self) -> Author:
        """The account the token belongs to (AuthError for app tokens or revoked ones)."""
        if not self.token:
            raise AuthError(f"{self.host}: no access token")
        body = self._object(await self._request("GET", "/api/v1/accounts/verify_credentials"))
        return parse_account(body, await self._accounts_domain())

    # -- writing --

    async def post_status(
        self,
        text: str,
        in_reply_to_id: str | None = None,
        visibility: str = "public",
        idempotency_key: str | None = None,
        language: str | None = None,
        spoiler_text: str = "",
    ) -> PublishResult:
        """Publish ``text`` as the token's account (``POST /api/v1/statuses``).

        ``in_reply_to_id`` must be an id on *this* instance (see :meth:`resolve_status`).
        Pass the same ``idempotency_key`` when retrying: the instance then returns the first
        status instead of posting twice. Too long, otherwise invalid, or replying to a status
        the instance cannot find → RemoteRejected.
        """
        if not self.token:
            raise AuthError(f"{self.host}: posting needs a user access token")
        body: dict[str, Any] = {"status": text, "visibility": visibility}
        if in_reply_to_id:
            body["in_reply_to_id"] = in_reply_to_id
        if language:
            body["language"] = language
        if spoiler_text:
            body["spoiler_text"] = spoiler_text
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        try:
            response = await self._request(
                "POST", "/api/v1/statuses", json_body=body, headers=headers
            )
        except NetworkError as exc:
            if exc.status == 404 and not isinstance(exc, AuthError):
                # The status replied to is gone (or invisible to this account).
                raise RemoteRejected(str(exc), status=404) from exc
            raise
        status = self._object(response)
        return PublishResult(post=parse_status(status, await self._accounts_domain()))

    # -- OAuth --

    async def register_app(
        self,
        client_name: str,
        redirect_uri: str,
        scopes: str = DEFAULT_SCOPES,
        website: str | None = None,
    ) -> AppCredentials:
        """Register an OAuth application (``POST /api/v1/apps``)."""
        form = {"client_name": client_name, "redirect_uris": redirect_uri, "scopes": scopes}
        if website:
            form["website"] = website
        body = self._object(await self._request("POST", "/api/v1/apps", data=form, auth=False))
        client_id, client_secret = _str(body.get("client_id")), _str(body.get("client_secret"))
        if not client_id or not client_secret:
            raise NetworkError(f"{self.host}/api/v1/apps returned no client credentials")
        return AppCredentials(
            client_id=client_id,
            client_secret=client_secret,
            name=_str(body.get("name")) or client_name,
            redirect_uri=_str(body.get("redirect_uri")) or redirect_uri,
            scopes=scopes,
        )

    def authorize_url(
        self,
        client_id: str,
        redirect_uri: str,
        *,
        state: str,
        code_challenge: str,
        scopes: str = DEFAULT_SCOPES,
    ) -> str:
        """Where to send the user's browser to approve the app (PKCE S256)."""
        query = urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "scope": scopes,
                "state": state,
                "code_challenge": code_challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{self.base_url}/oauth/authorize?{query}"

    async def exchange_code(
        self,
        client_id: str,
        client_secret: str,
        code: str,
        redirect_uri: str,
        code_verifier: str | None = None,
    ) -> OAuthToken:
        """Trade an authorization code for a user token (``POST /oauth/token``).
        A refused code, client or verifier raises AuthError."""
        form = {
            "grant_type": "authorization_code",
            "client_id": client_id,
            "client_secret": client_secret,
            "code": code,
            "redirect_uri": redirect_uri,
        }
        if code_verifier:
            form["code_verifier"] = code_verifier
        return await self._token(form)

    async def app_token(
        self, client_id: str, client_secret: str, scopes: str = "read:statuses"
    ) -> OAuthToken:
        """An app-only token (``client_credentials``): reads public data, cannot stream on 4.2+."""
        form = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
            "scope": scopes,
        }
        return await self._token(form)

    async def _token(self, form: dict[str, str]) -> OAuthToken:
        response = await self._request(
            "POST", "/oauth/token", data=form, auth=False, refused=frozenset({400, 401, 403})
        )
        body = self._object(response)
        token = _str(body.get("access_token"))
        if not token:
            raise NetworkError(f"{self.host}/oauth/token returned no access_token")
        created = body.get("created_at")
        return OAuthToken(
            access_token=token,
            token_type=_str(body.get("token_type")) or "Bearer",
            scope=_str(body.get("scope")) or "",
            created_at=created if isinstance(created, int) else None,
        )

    async def revoke(self, client_id: str, client_secret: str, token: str) -> None:
        """Revoke ``token`` (``POST /oauth/revoke``); revoking an unknown token succeeds."""
        form = {"client_id": client_id, "client_secret": client_secret, "token": token}
        await self._request("POST", "/oauth/revoke", data=form, auth=False)


def _positive(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, str) and value.isdigit() and int(value) > 0:
        return int(value)
    return None


# An error *name* (OAuth's "invalid_grant", "access_denied") says what failed in words the
# server cannot use to smuggle anything else; free-text descriptions and bodies are never
# shown (a body is whatever answered, see docs/security.md).
_ERROR_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


def error_name(value: Any) -> str | None:
    """``value`` when it is shaped like a protocol error name, else None."""
    return value if isinstance(value, str) and _ERROR_NAME_RE.match(value) else None


def _error_text(response: httpx.Response) -> str:
    """The ``error`` string of a JSON error body, for deciding (never for showing)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    return _str(body.get("error")) or "" if isinstance(body, dict) else ""


def _error_message(response: httpx.Response) -> str:
    """The status code and, when the body is a JSON object naming one, the error name."""
    name = None
    if "json" in response.headers.get("content-type", ""):
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            name = error_name(body.get("error"))
    return f"HTTP {response.status_code} ({name})" if name else f"HTTP {response.status_code}"


# --- composing ---------------------------------------------------------------------------


def length(text: str, info: InstanceInfo) -> int:
    """``text``'s length as ``info``'s instance weighs it (URLs, mentions, graphemes)."""
    return mastodon_length(text, info.url_weight)


def length_rule(info: InstanceInfo) -> LengthRule:
    """The instance's limit and counting rule."""
    weight = info.url_weight
    return LengthRule(limit=info.max_characters, count=lambda text: mastodon_length(text, weight))


def reply_text(text: str, mention_acct: str | None) -> str:
    """``text`` with "@acct " in front, as Mastodon clients do for replies — unless the text
    already mentions that account (case-insensitive) or there is nobody to mention."""
    if not mention_acct:
        return text
    acct = mention_acct.strip().lstrip("@")
    if not acct:
        return text
    pattern = r"(?<![\w@])@" + re.escape(acct) + r"(?![\w@]|[.-]\w)"
    if re.search(pattern, text, re.IGNORECASE):
        return text
    return f"@{acct} {text}"


# --- following ---------------------------------------------------------------------------


def _id_order(status_id: str) -> tuple[int, str]:
    """Sort key of a status id. Ids are opaque strings, but Mastodon's are decimal numbers
    without leading zeros, for which (length, text) is numeric order."""
    return (len(status_id), status_id)


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Capped exponential backoff with jitter: attempt 1 → base/2..base, doubling to cap."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class _StreamUnavailable(Exception):
    """The instance refused the streaming upgrade: fall back to polling for a while."""


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
        self._groups = [
            self.tags[i : i + TAGS_PER_REQUEST] for i in range(0, len(self.tags), TAGS_PER_REQUEST)
        ]
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
        self.context_interval = context_interval
        self.context_window = context_window
        # Questions whose threads to watch: local id → monotonic time first seen. Ordered by
        # when each was last fetched, so the requests of a cycle go round-robin.
        self._questions: OrderedDict[str, float] = OrderedDict()
        self._context_due = 0.0

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
        return _str(data.get("min_id")) if isinstance(data, dict) else None

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
        self._questions.clear()
        self._context_due = time.monotonic() + self.context_interval
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
            max_id = _str(page[-1].get("id"))
            if max_id is None or not more:
                break
        if not statuses:
            return None
        newest = _str(statuses[0].get("id"))
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
            newest = _str(page[0].get("id"))
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
        if len(pages) == 1:
            return pages[0]
        merged: dict[str, dict[str, Any]] = {}
        for page, _full in pages:
            for status in page:
                if (sid := _str(status.get("id"))) is not None:
                    merged.setdefault(sid, status)
        ids = sorted(merged, key=_id_order, reverse=True)
        full = [page for page, is_full in pages if is_full and page]
        if full and min_id is not None:  # forward: up to the lowest newest id of a full page
            edge = min(_id_order(_str(p[0].get("id")) or "") for p in full)
            ids = [i for i in ids if _id_order(i) <= edge]
        elif full:  # newest or backward: down to the highest oldest id of a full page
            edge = max(_id_order(_str(p[-1].get("id")) or "") for p in full)
            ids = [i for i in ids if _id_order(i) >= edge]
        return [merged[i] for i in ids], bool(full)

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
                self._remember_question(post)
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
            if time.monotonic() >= self._context_due:
                batch = await self._context_batch()
                if batch is not None:
                    yield batch
            wake = min(poll_at, self._context_due)
            await asyncio.sleep(max(0.0, wake - time.monotonic()))

    # -- streaming --

    def _stream_url(self) -> str:
        info = self.api.info
        base = info.streaming_url if info else _ws_base(self.api.base_url)
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
            if time.monotonic() >= self._context_due:
                context = await self._context_batch()
                if context is not None:
                    yield context
            try:
                # Cancelling recv() loses no message, so waking for thread context is safe.
                async with asyncio.timeout(max(0.0, self._context_due - time.monotonic())):
                    message = await ws.recv()
            except TimeoutError:
                continue
            except WebSocketException:
                return  # closed, cleanly or with an error code: the caller reconnects
            batch = self._frame(message)
            if batch is not None:
                yield batch

    # -- thread context --

    def _remember_question(self, post: RemotePost) -> None:
        """Watch ``post``'s thread when it is a question (see the class docstring)."""
        if post.local_id is None or post.local_id in self._questions:
            return
        if not opens_with_question(post.html):
            return
        self._questions[post.local_id] = time.monotonic()
        while len(self._questions) > CONTEXT_QUESTIONS:
            oldest = min(self._questions, key=self._questions.__getitem__)
            del self._questions[oldest]

    async def _context_batch(self) -> Batch | None:
        """One thread-context cycle: undelivered replies to watched questions, or None.

        Never raises NetworkError or malformed-data errors: they are logged and the cycle
        ends early; the next one comes ``context_interval`` seconds later.
        """
        now = time.monotonic()
        self._context_due = now + self.context_interval
        for local_id, first_seen in list(self._questions.items()):
            if now - first_seen > self.context_window:
                del self._questions[local_id]
        changes: list[Change] = []
        for local_id in list(self._questions)[:CONTEXT_REQUESTS_PER_CYCLE]:
            if self.api.throttle_delay() > 0:
                log.info("mastodon %s: rate limit spent, thread context waits", self.api.host)
                break
            self._questions.move_to_end(local_id)
            try:
                context = await self.api.status_context(local_id)
            except NetworkError as exc:
                log.warning(
                    "mastodon %s #%s: thread of %s not fetched: %s",
                    self.api.host,
                    self.tag,
                    local_id,
                    exc,
                )
                break
            for data in context["descendants"]:
                post = self._parse(data)
                if post is not None and self._fresh(post):
                    post.extra["thread_context"] = True
                    changes.append(Upsert(post))
        return Batch(changes=changes) if changes else None

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
                local_id = _str(payload)
                if local_id is None:
                    raise ValueError("delete without an id")
                return Batch(changes=[Delete(local_id=local_id)])
            if event not in ("update", "status.update"):
                return None  # notifications, filters_changed, announcements…
            status = json.loads(payload) if isinstance(payload, str) else payload
            post = self._parse(status)
            if post is None or not self._fresh(post):
                return None
            self._remember_question(post)
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
