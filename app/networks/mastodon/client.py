"""One Mastodon instance's client API over HTTP (:class:`MastodonApi`): instance info,
the tag timeline, statuses and their threads, search, posting and the OAuth requests; every
failure translated into the errors of :mod:`app.networks.base`.

Ids: a status has a ``uri`` (its ActivityPub id, the same on every instance: our ``remote_id``)
and an ``id`` (per instance, opaque: our ``local_id``). Ids are never compared or cast to int;
"newest" always means "first in the server's newest-first page".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import httpx

from app.networks.base import (
    AuthError,
    Author,
    NetworkError,
    PublishResult,
    RemotePost,
    RemoteRejected,
)

from ...outbound import describe_failure
from .mapping import (
    dict_or_empty,
    domain_of,
    list_or_empty,
    parse_account,
    parse_status,
    str_or_none,
)
from .oauth import DEFAULT_SCOPES, AppCredentials, OAuthToken
from .responses import error_message, error_text, retry_after, throttle_delay

log = logging.getLogger(__name__)

DEFAULT_MAX_CHARACTERS = 500  # Mastodon's default; forks and admins change it
DEFAULT_URL_WEIGHT = 23  # Mastodon's characters_reserved_per_url
PAGE_LIMIT = 40  # the most a tag timeline page may hold
# Every Mastodon-API server honours pages of 20 (the documented default); some cap `limit`
# there, so a page of 20 or more may not be the last one even when we asked for 40.
SAFE_PAGE = 20
# Mastodon's tag timeline reads at most 4 tags per request (TagFeed::LIMIT_PER_MODE: the
# path's tag and `any[]` together); a chat with more is read in several requests.
TAGS_PER_REQUEST = 4
STREAMING_PATH = "/api/v1/streaming"


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """What a client needs to know about an instance."""

    domain: str  # the accounts' domain ("@alice@domain"); may differ from the web host
    title: str
    streaming_url: str  # ws:// or wss:// base of the streaming server, without the path
    max_characters: int = DEFAULT_MAX_CHARACTERS
    url_weight: int = DEFAULT_URL_WEIGHT  # characters_reserved_per_url
    version: str = ""


def ws_base(url: str) -> str:
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
        message = f"{where} answered {error_message(response)}"
        if status in refused:
            raise AuthError(message, status=status)
        if status == 422:
            # Mastodon answers 422 "This method requires an authenticated user" when a user
            # token is needed (no token, or an app token): a credentials problem, not content.
            # The description is read to decide, never shown (docs/security.md).
            if "authenticated user" in error_text(response).lower():
                raise AuthError(message, status=status)
            raise RemoteRejected(
                f"{self.host} refused it ({error_message(response)})", status=status
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
        config = dict_or_empty(body.get("configuration"))
        statuses = dict_or_empty(config.get("statuses"))
        if v2:
            streaming = str_or_none(dict_or_empty(config.get("urls")).get("streaming"))
            domain = str_or_none(body.get("domain"))
        else:
            streaming = str_or_none(dict_or_empty(body.get("urls")).get("streaming_api"))
            domain = str_or_none(body.get("uri"))
        max_chars = _positive(statuses.get("max_characters")) or _positive(
            body.get("max_toot_chars")  # Pleroma, Akkoma and glitch-soc before 3.4.2
        )
        info = InstanceInfo(
            domain=domain_of(domain) if domain else self.host,
            title=str_or_none(body.get("title")) or self.host,
            streaming_url=ws_base(streaming or self.base_url),
            max_characters=max_chars or DEFAULT_MAX_CHARACTERS,
            url_weight=_positive(statuses.get("characters_reserved_per_url")) or DEFAULT_URL_WEIGHT,
            version=str_or_none(body.get("version")) or "",
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
            key: [item for item in list_or_empty(body.get(key)) if isinstance(item, dict)]
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
        for item in list_or_empty(self._object(response).get("statuses")):
            item = dict_or_empty(item)
            if uri in (str_or_none(item.get("uri")), str_or_none(item.get("url"))):
                return str_or_none(item.get("id"))
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
        client_id, client_secret = (
            str_or_none(body.get("client_id")),
            str_or_none(body.get("client_secret")),
        )
        if not client_id or not client_secret:
            raise NetworkError(f"{self.host}/api/v1/apps returned no client credentials")
        return AppCredentials(
            client_id=client_id,
            client_secret=client_secret,
            name=str_or_none(body.get("name")) or client_name,
            redirect_uri=str_or_none(body.get("redirect_uri")) or redirect_uri,
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
        token = str_or_none(body.get("access_token"))
        if not token:
            raise NetworkError(f"{self.host}/oauth/token returned no access_token")
        created = body.get("created_at")
        return OAuthToken(
            access_token=token,
            token_type=str_or_none(body.get("token_type")) or "Bearer",
            scope=str_or_none(body.get("scope")) or "",
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
