"""X API v2 over HTTP (:class:`XApi`): recent search, post lookup, the filtered stream and
its rules, the signed-in user, posting and the OAuth token requests; every answer turned into
posts or the errors of :mod:`app.networks.base` (X's own errors added here), described by
status in our words, never by echoing a body."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from app.outbound import STREAMING

from ..base import AuthError, Author, NetworkError, RemotePost, RemoteRejected, ReplyRefused
from .budget import RateLimit
from .mapping import author_of, map_page
from .oauth import Tokens

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.x.com"
EXPANSIONS = (
    "author_id,referenced_tweets.id,referenced_tweets.id.author_id,in_reply_to_user_id,"
    "attachments.media_keys"
)
TWEET_FIELDS = (
    "author_id,created_at,conversation_id,in_reply_to_user_id,referenced_tweets,entities,"
    "lang,note_tweet,attachments"
)
USER_FIELDS = "name,username,profile_image_url"
MEDIA_FIELDS = "url,preview_image_url,alt_text,type"
FIELDS = {
    "expansions": EXPANSIONS,
    "tweet.fields": TWEET_FIELDS,
    "user.fields": USER_FIELDS,
    "media.fields": MEDIA_FIELDS,
}
MAX_RESULTS = 100  # recent search allows 10–100 per page
# The stream sends a keep-alive line every 20 s and X's guide says to reconnect when nothing
# arrived for that long; real heartbeats land a little late, so allow a margin.
KEEPALIVE_TIMEOUT = 30.0
# A single stream line is one post with its includes: a few KB. Anything past this is not a
# post, and buffering it unbounded would let a broken peer exhaust memory.
MAX_LINE = 1_000_000
MAX_BODY = 5_000_000
# Rules are at most 1,024 characters (Basic access: 512); a hashtag query is far shorter.
MAX_RULE = 512
# Markers :meth:`XApi.stream` yields besides posts (never part of X's own messages).
CONNECTED: dict[str, Any] = {"hashroom": "connected"}
KEEPALIVE: dict[str, Any] = {"hashroom": "keepalive"}


class ReplyRestricted(ReplyRefused):
    """X refused a reply: the author of the parent did not mention or quote the replier."""


class StreamNotAllowed(NetworkError):
    """The filtered stream cannot be used: the access level lacks it, or the app's single
    connection is held elsewhere (``TooManyConnections``)."""


def _describe(status: int) -> str:
    return {
        400: "X refused the request as invalid",
        401: "X refused the token",
        403: "X refused access for these credentials",
        404: "X does not know this resource",
        429: "X is rate-limiting these credentials",
    }.get(status, f"X answered HTTP {status}")


def _problem(response: httpx.Response) -> dict[str, Any]:
    """The parsed problem body, for *our* decisions only (never shown to users)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(response: httpx.Response, now: float | None = None) -> float | None:
    reset = response.headers.get("x-rate-limit-reset")
    if reset is not None:
        try:
            return max(1.0, float(reset) - (now if now is not None else time.time()))
        except ValueError:
            pass
    after = response.headers.get("retry-after")
    if after is not None:
        with contextlib.suppress(ValueError):
            return max(1.0, float(after))
    return None


@dataclass(slots=True)
class SearchPage:
    posts: list[RemotePost]
    newest_id: str | None
    next_token: str | None
    result_count: int


class XApi:
    """X API v2 calls with one token (the app's bearer token, or a user's access token)."""

    def __init__(self, http: httpx.AsyncClient, api_url: str, token: str | None = None) -> None:
        self.http = http
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.rates: dict[str, RateLimit] = {}

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _note_rate(self, key: str, response: httpx.Response) -> None:
        h = response.headers
        if "x-rate-limit-remaining" not in h:
            return
        try:
            self.rates[key] = RateLimit(
                limit=int(h.get("x-rate-limit-limit", "0")) or None,
                remaining=int(h["x-rate-limit-remaining"]),
                reset=float(h.get("x-rate-limit-reset", "0")) or None,
            )
        except ValueError:
            pass

    def rate(self, key: str) -> RateLimit:
        return self.rates.get(key) or RateLimit()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        data: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        rate_key: str | None = None,
        ok: Iterable[int] = (200, 201),
    ) -> tuple[int, dict[str, Any]]:
        headers = {} if data is not None else self._headers()
        try:
            response = await self.http.request(
                method,
                f"{self.api_url}{path}",
                params=params,
                json=json_body,
                data=data,
                headers=headers,
                auth=auth,  # type: ignore[arg-type]
            )
        except httpx.HTTPError as exc:
            raise NetworkError(f"cannot reach X ({type(exc).__name__})") from exc
        if rate_key:
            self._note_rate(rate_key, response)
        if len(response.content) > MAX_BODY:
            raise NetworkError("X sent an oversized answer")
        status = response.status_code
        if status in ok:
            body = _problem(response)
            return status, body
        if status == 401:
            raise AuthError(_describe(401), status=401)
        if status == 429:
            raise NetworkError(_describe(429), retry_after=_retry_after(response), status=429)
        if status == 403:
            raise Forbidden(_describe(403), status=403, problem=_problem(response))
        if status in (400, 404):
            raise RemoteRejected(_describe(status), status=status)
        raise NetworkError(_describe(status), status=status)

    # reading

    async def search_recent(
        self,
        query: str,
        *,
        since_id: str | None = None,
        next_token: str | None = None,
        max_results: int = MAX_RESULTS,
    ) -> SearchPage:
        """One page of ``GET /2/tweets/search/recent``, newest first."""
        params: dict[str, Any] = {"query": query, "max_results": max(10, min(100, max_results))}
        params.update(FIELDS)
        if since_id:
            params["since_id"] = since_id
        if next_token:
            params["next_token"] = next_token
        _, body = await self._call(
            "GET", "/2/tweets/search/recent", params=params, rate_key="search"
        )
        meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
        newest = meta.get("newest_id")
        token = meta.get("next_token")
        count = meta.get("result_count")
        return SearchPage(
            posts=map_page(body),
            newest_id=newest if isinstance(newest, str) and newest.isdigit() else None,
            next_token=token if isinstance(token, str) and token else None,
            result_count=count if isinstance(count, int) else 0,
        )

    async def lookup(self, ids: list[str]) -> tuple[list[RemotePost], set[str]]:
        """``GET /2/tweets?ids=`` (≤ 100): the posts found, and the ids X no longer has."""
        ids = [i for i in ids if i.isdigit()][:100]
        if not ids:
            return [], set()
        params = {"ids": ",".join(ids), **FIELDS}
        _, body = await self._call("GET", "/2/tweets", params=params, rate_key="lookup")
        posts = map_page(body)
        gone = set()
        for err in body.get("errors") or []:
            if not isinstance(err, dict):
                continue
            rid = err.get("resource_id") or err.get("value")
            kind = str(err.get("type", ""))
            if isinstance(rid, str) and rid in ids and kind.endswith("resource-not-found"):
                gone.add(rid)
        return posts, gone

    # filtered stream rules

    async def rules(self) -> list[dict[str, Any]]:
        _, body = await self._call("GET", "/2/tweets/search/stream/rules", rate_key="rules")
        data = body.get("data")
        return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []

    async def add_rule(self, value: str, tag: str) -> str:
        """Add one rule; its id (an existing identical rule's id when X says duplicate)."""
        status, body = await self._call(
            "POST",
            "/2/tweets/search/stream/rules",
            json_body={"add": [{"value": value[:MAX_RULE], "tag": tag}]},
            rate_key="rules",
        )
        data = body.get("data")
        if isinstance(data, list) and data and isinstance(data[0].get("id"), str):
            return data[0]["id"]
        for err in body.get("errors") or []:
            if isinstance(err, dict) and isinstance(err.get("id"), str):
                return err["id"]  # DuplicateRule names the existing rule
        raise RemoteRejected("X did not accept the stream rule")

    async def delete_rules(self, ids: list[str]) -> None:
        if ids:
            await self._call(
                "POST",
                "/2/tweets/search/stream/rules",
                json_body={"delete": {"ids": ids}},
                rate_key="rules",
            )

    async def stream(
        self, keepalive_timeout: float = KEEPALIVE_TIMEOUT
    ) -> AsyncIterator[dict[str, Any]]:
        """The filtered stream: :data:`CONNECTED` once X accepted the connection, then one
        dict per post and :data:`KEEPALIVE` per keep-alive line (so a quiet stream still
        lets the caller do periodic work). A silence longer than ``keepalive_timeout``
        raises NetworkError (the connection is dead)."""
        url = f"{self.api_url}/2/tweets/search/stream"
        timeout = httpx.Timeout(keepalive_timeout)
        try:
            async with self.http.stream(
                "GET",
                url,
                params=FIELDS,
                headers=self._headers(),
                timeout=timeout,
                extensions=STREAMING,  # a stream for hours: MAX_LINE bounds each line instead
            ) as response:
                self._note_rate("stream", response)
                if response.status_code != 200:
                    await response.aread()
                    if response.status_code == 401:
                        raise AuthError(_describe(401), status=401)
                    if response.status_code == 403:
                        raise StreamNotAllowed(
                            "these credentials may not use the filtered stream", status=403
                        )
                    if response.status_code == 429:
                        if _problem(response).get("connection_issue") == "TooManyConnections":
                            raise StreamNotAllowed(
                                "this app's one stream connection is in use elsewhere",
                                status=429,
                            )
                        raise NetworkError(
                            "X is rate-limiting stream connections",
                            retry_after=_retry_after(response),
                            status=429,
                        )
                    raise NetworkError(_describe(response.status_code), status=response.status_code)
                yield CONNECTED  # the caller fills the gap before reading on
                buffer = b""
                # The read timeout is the keep-alive watchdog: X writes a line at least every
                # ~20 s, so no bytes for ``keepalive_timeout`` means the connection is dead.
                async for chunk in response.aiter_raw():
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        line = line.strip()
                        if not line:
                            yield KEEPALIVE
                            continue
                        try:
                            item = json.loads(line)
                        except ValueError:
                            log.info("x stream: skipped a line that is not JSON")
                            continue
                        if isinstance(item, dict):
                            yield item
                    if len(buffer) > MAX_LINE:
                        raise NetworkError("X sent an oversized stream line")
                raise NetworkError("X closed the stream")
        except httpx.ReadTimeout:
            raise NetworkError(f"no keep-alive from X for {keepalive_timeout:.0f} s") from None
        except httpx.HTTPError as exc:
            raise NetworkError(f"stream connection failed ({type(exc).__name__})") from exc

    # users and posting

    async def me(self) -> Author:
        """Whose token this is (``GET /2/users/me``)."""
        _, body = await self._call(
            "GET", "/2/users/me", params={"user.fields": USER_FIELDS}, rate_key="me"
        )
        data = body.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise NetworkError("X did not say whose token this is")
        return author_of(data, data["id"])

    async def post_tweet(
        self,
        text: str,
        *,
        in_reply_to: str | None = None,
        quote_id: str | None = None,
    ) -> str:
        """``POST /2/tweets``; the new post's id. ReplyRestricted when X refuses the reply."""
        body: dict[str, Any] = {"text": text}
        if in_reply_to:
            body["reply"] = {"in_reply_to_tweet_id": in_reply_to}
        if quote_id:
            body["quote_tweet_id"] = quote_id
        try:
            _, answer = await self._call("POST", "/2/tweets", json_body=body, rate_key="post")
        except Forbidden as exc:
            if in_reply_to:
                raise ReplyRestricted(
                    "X only lets you reply through an app when the author mentioned or quoted you",
                    status=403,
                ) from exc
            raise RemoteRejected("X refused the post for this account", status=403) from exc
        data = answer.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise NetworkError("X did not return the new post")
        return data["id"]

    # OAuth 2.0 tokens

    async def _token_call(
        self, form: dict[str, str], client_id: str, client_secret: str | None
    ) -> Tokens:
        # Confidential clients authenticate with HTTP Basic; public clients send client_id.
        auth = (client_id, client_secret) if client_secret else None
        if not client_secret:
            form = {**form, "client_id": client_id}
        try:
            _, body = await self._call("POST", "/2/oauth2/token", data=form, auth=auth)
        except RemoteRejected as exc:  # 400 invalid_grant: a used code or refresh token
            raise AuthError("X refused the authorization", status=exc.status) from exc
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise NetworkError("X sent no access token")
        expires = body.get("expires_in")
        refresh = body.get("refresh_token")
        return Tokens(
            access_token=token,
            refresh_token=refresh if isinstance(refresh, str) else None,
            expires_at=time.time() + (float(expires) if isinstance(expires, int | float) else 7200),
        )

    async def exchange_code(
        self, client_id: str, client_secret: str | None, code: str, redirect_uri: str, verifier: str
    ) -> Tokens:
        return await self._token_call(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
            client_id,
            client_secret,
        )

    async def refresh(
        self, client_id: str, client_secret: str | None, refresh_token: str
    ) -> Tokens:
        return await self._token_call(
            {"grant_type": "refresh_token", "refresh_token": refresh_token},
            client_id,
            client_secret,
        )

    async def revoke(
        self, client_id: str, client_secret: str | None, token: str, hint: str = "access_token"
    ) -> None:
        form = {"token": token, "token_type_hint": hint}
        if not client_secret:
            form["client_id"] = client_id
        auth = (client_id, client_secret) if client_secret else None
        await self._call("POST", "/2/oauth2/revoke", data=form, auth=auth)


class Forbidden(NetworkError):
    """X answered 403; ``problem`` is its parsed body, for our decisions only (never shown)."""

    def __init__(self, message: str, *, status: int, problem: dict[str, Any]) -> None:
        super().__init__(message, status=status)
        self.problem = problem
