"""X (formerly Twitter) API v2: recent search, the filtered stream, posting and OAuth 2.0.

Protocol knowledge only. :class:`XApi` speaks the documented endpoints through an injected
``httpx.AsyncClient``; :func:`map_tweet` turns a post with its ``includes`` into a
:class:`~app.networks.base.RemotePost`; :class:`XFollower` follows a hashtag by recent search
(and the filtered stream when the credentials allow it) within a :class:`ReadBudget`.

Facts this module rests on (docs.x.com):

- Ids are strings (64-bit snowflakes: never round-trip them through floats). A response has
  ``data`` (a post or a list), ``includes`` (``users``, ``tweets``, ``media``) beside it and
  ``meta`` (``newest_id``, ``oldest_id``, ``result_count``, ``next_token``); an empty search
  page has only ``meta``. Entity offsets count Unicode code points, like Python strings.
- Rate limits come as ``x-rate-limit-limit`` / ``-remaining`` / ``-reset`` (epoch seconds);
  a 429 means wait until the reset.
- The filtered stream is newline-delimited JSON with a blank keep-alive line about every 20
  seconds; a silence much longer than that is a dead connection. An app holds one stream
  connection; rules (``value`` + ``tag``) live on the app, not on the connection.
- Reading is paid per post read (repeat reads of a post within a UTC day are free), so every
  read goes through the budget and the follower stops itself before running up a bill.
- Since 2026-02-23 a reply through the API is refused (403) unless the author of the post
  replied to mentioned or quoted the replier: :class:`ReplyRestricted`.

Nothing here echoes an upstream body: errors are described by their status and our words.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import html
import json
import logging
import random
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx

from app.outbound import STREAMING

from .base import (
    AuthError,
    Author,
    Batch,
    Delete,
    FollowContext,
    LengthRule,
    Media,
    NetworkError,
    RemotePost,
    RemoteRejected,
    ReplyRefused,
    Upsert,
)
from .x_text import MAX_WEIGHTED_LENGTH, weighted_length

log = logging.getLogger(__name__)

NETWORK = "x"
DEFAULT_API_URL = "https://api.x.com"
DEFAULT_AUTHORIZE_URL = "https://x.com/i/oauth2/authorize"
WEB_URL = "https://x.com"
SCOPES = "tweet.read tweet.write users.read offline.access"

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
# Tokens expire after 2 hours; renew when less than this is left, so a post never races it.
REFRESH_MARGIN = 300.0
RULE_TAG_PREFIX = "hashroom:"
# Markers :meth:`XApi.stream` yields besides posts (never part of X's own messages).
CONNECTED: dict[str, Any] = {"hashroom": "connected"}
KEEPALIVE: dict[str, Any] = {"hashroom": "keepalive"}
# Ids remembered as read today, for X's free repeat reads; past this, reads count again
# (an overestimate, never an underestimate).
MAX_BILLED_IDS = 200_000
# Search windows are 15 minutes; never sleep longer than one on a single header.
RATE_WAIT_CAP = 900.0


# --- errors ------------------------------------------------------------------------------


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


# --- rate limits and the read budget ------------------------------------------------------


@dataclass(slots=True)
class RateLimit:
    """The latest ``x-rate-limit-*`` headers seen for one endpoint."""

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None  # epoch seconds

    def wait(self, now: float | None = None) -> float:
        """Seconds to wait before the next call: until the reset when nothing remains."""
        now = time.time() if now is None else now
        if self.remaining is not None and self.remaining <= 0 and self.reset is not None:
            return max(0.0, self.reset - now)
        return 0.0


@dataclass(slots=True)
class ReadBudget:
    """Posts read per clock hour and per session, with the estimated cost.

    The counts travel in the source's cursor, so they survive restarts and are committed with
    the posts they paid for. ``session`` names the current session (a scheduled session's
    start, or the UTC day for chats without a schedule); a new name starts a new count.
    """

    per_hour: int
    per_session: int
    cost_per_read: float
    session: str = ""
    hour: str = ""
    hour_reads: int = 0
    session_reads: int = 0

    def roll(self, now: datetime, session: str) -> None:
        hour = now.strftime("%Y-%m-%dT%H")
        if hour != self.hour:
            self.hour, self.hour_reads = hour, 0
        if session != self.session:
            self.session, self.session_reads = session, 0

    def left(self) -> int:
        """Posts that may still be read now (0 when either budget is spent)."""
        return max(0, min(self.per_hour - self.hour_reads, self.per_session - self.session_reads))

    def spend(self, n: int) -> None:
        self.hour_reads += n
        self.session_reads += n

    def exhausted_by(self) -> str | None:
        if self.session_reads >= self.per_session:
            return "session"
        if self.hour_reads >= self.per_hour:
            return "hour"
        return None

    def as_json(self) -> dict[str, Any]:
        """What moderators and operators see: reads, limits and the estimated spend (USD)."""
        return {
            "hour_reads": self.hour_reads,
            "per_hour": self.per_hour,
            "session_reads": self.session_reads,
            "per_session": self.per_session,
            "estimated_cost_session": round(self.session_reads * self.cost_per_read, 4),
            "estimated_cost_hour": round(self.hour_reads * self.cost_per_read, 4),
            "cost_per_read": self.cost_per_read,
        }


@dataclass(slots=True)
class Cursor:
    """Where following resumes (``since_id``) and what the budget has spent so far."""

    since_id: str | None = None
    hour: str = ""
    hour_reads: int = 0
    session: str = ""
    session_reads: int = 0

    @classmethod
    def load(cls, raw: str | None) -> Cursor:
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
        except ValueError:
            return cls(since_id=raw if raw.isdigit() else None)
        if not isinstance(data, dict):
            return cls()
        since = data.get("since_id")
        return cls(
            since_id=since if isinstance(since, str) and since.isdigit() else None,
            hour=str(data.get("hour", ""))[:20],
            hour_reads=_int(data.get("hour_reads")),
            session=str(data.get("session", ""))[:40],
            session_reads=_int(data.get("session_reads")),
        )

    def dump(self, budget: ReadBudget) -> str:
        return json.dumps(
            {
                "since_id": self.since_id,
                "hour": budget.hour,
                "hour_reads": budget.hour_reads,
                "session": budget.session,
                "session_reads": budget.session_reads,
            },
            separators=(",", ":"),
        )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def newer(a: str | None, b: str | None) -> str | None:
    """The larger of two snowflake ids (compared as integers, never as floats)."""
    if not a:
        return b
    if not b:
        return a
    return a if int(a) >= int(b) else b


# --- mapping -----------------------------------------------------------------------------


@dataclass(slots=True)
class Includes:
    """``includes`` of a response, indexed by id."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    tweets: dict[str, dict[str, Any]] = field(default_factory=dict)
    media: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, body: dict[str, Any]) -> Includes:
        inc = body.get("includes") if isinstance(body.get("includes"), dict) else {}
        return cls(
            users=_index(inc.get("users"), "id"),
            tweets=_index(inc.get("tweets"), "id"),
            media=_index(inc.get("media"), "media_key"),
        )


def _index(items: Any, key: str) -> dict[str, dict[str, Any]]:
    if not isinstance(items, list):
        return {}
    return {str(i[key]): i for i in items if isinstance(i, dict) and isinstance(i.get(key), str)}


def _parse_time(value: Any) -> datetime:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return datetime.now(UTC)


def author_of(user: dict[str, Any] | None, user_id: str | None) -> Author:
    """An :class:`Author` from an ``includes.users`` entry (or a placeholder by id)."""
    if not user:
        return Author(name="", handle=f"user {user_id or '?'}", remote_id=user_id)
    username = str(user.get("username") or "")[:100]
    avatar = user.get("profile_image_url")
    return Author(
        name=str(user.get("name") or username)[:200],
        handle=f"@{username}" if username else f"user {user.get('id')}",
        avatar_url=avatar if isinstance(avatar, str) else None,
        profile_url=f"{WEB_URL}/{username}" if username else None,
        remote_id=str(user.get("id") or user_id or "") or None,
    )


def permalink(tweet_id: str, username: str | None) -> str:
    return f"{WEB_URL}/{username or 'i/web'}/status/{tweet_id}"


def _text_and_entities(tweet: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A long post's full text lives in ``note_tweet``; ``text`` is its first 280."""
    note = tweet.get("note_tweet")
    if isinstance(note, dict) and isinstance(note.get("text"), str):
        ents = note.get("entities") if isinstance(note.get("entities"), dict) else {}
        return note["text"], ents
    ents = tweet.get("entities") if isinstance(tweet.get("entities"), dict) else {}
    return str(tweet.get("text") or ""), ents


def render_html(text: str, entities: dict[str, Any]) -> str:
    """The post as HTML: links shown by their display URL and pointing at the expanded URL,
    hashtags and mentions marked up, media links (shown as attachments) dropped, everything
    else escaped. Linear in the text; entities that overlap or fall outside it are ignored."""
    marks: list[tuple[int, int, str]] = []
    for url in entities.get("urls") or []:
        if not isinstance(url, dict):
            continue
        start, end = url.get("start"), url.get("end")
        if not isinstance(start, int) or not isinstance(end, int):
            continue
        if url.get("media_key"):
            marks.append((start, end, ""))
            continue
        href = url.get("expanded_url") or url.get("url")
        shown = url.get("display_url") or href
        if not isinstance(href, str) or not href.startswith(("https://", "http://")):
            continue
        marks.append(
            (
                start,
                end,
                f'<a href="{html.escape(href)}" rel="nofollow noopener noreferrer" '
                f'target="_blank">{html.escape(str(shown))}</a>',
            )
        )
    for tag in entities.get("hashtags") or []:
        if isinstance(tag, dict) and isinstance(tag.get("start"), int):
            name = html.escape(str(tag.get("tag", "")))
            marks.append(
                (
                    tag["start"],
                    tag.get("end", 0),
                    f'<span class="hashtag">#<span>{name}</span></span>',
                )
            )
    for mention in entities.get("mentions") or []:
        if isinstance(mention, dict) and isinstance(mention.get("start"), int):
            name = html.escape(str(mention.get("username", "")))
            marks.append(
                (
                    mention["start"],
                    mention.get("end", 0),
                    f'<a href="{WEB_URL}/{name}" class="u-url mention" rel="nofollow noopener '
                    f'noreferrer" target="_blank">@<span>{name}</span></a>',
                )
            )
    marks.sort(key=lambda m: m[0])
    out: list[str] = []
    pos = 0
    for start, end, markup in marks:
        if not isinstance(end, int) or start < pos or end <= start or end > len(text):
            continue  # overlapping or out of range: keep the plain text
        out.append(html.escape(text[pos:start]))
        out.append(markup)
        pos = end
    out.append(html.escape(text[pos:]))
    body = "".join(out).strip().replace("\n", "<br>")
    return f"<p>{body}</p>" if body else ""


def plain_text(text: str, entities: dict[str, Any]) -> str:
    """The text with t.co links replaced by their expanded URLs (media links dropped)."""
    subs = []
    for url in entities.get("urls") or []:
        if (
            isinstance(url, dict)
            and isinstance(url.get("start"), int)
            and isinstance(url.get("end"), int)
        ):
            subs.append(
                (
                    url["start"],
                    url["end"],
                    ""
                    if url.get("media_key")
                    else str(url.get("expanded_url") or url.get("url") or ""),
                )
            )
    subs.sort()
    out, pos = [], 0
    for start, end, value in subs:
        if start < pos or end > len(text):
            continue
        out.append(text[pos:start])
        out.append(value)
        pos = end
    out.append(text[pos:])
    return "".join(out).strip()


def map_tweet(tweet: dict[str, Any], inc: Includes) -> RemotePost | None:
    """A post from ``data`` with its ``includes``; None when it has no usable id.

    A repost maps to the original post with ``reposted_by`` set; a quote carries the quoted
    post's author and text; a reply names its parent (``replied_to``) and the thread's first
    post (``conversation_id``).
    """
    tweet_id = tweet.get("id")
    if not isinstance(tweet_id, str) or not tweet_id.isdigit():
        return None
    refs = {
        r.get("type"): str(r.get("id"))
        for r in tweet.get("referenced_tweets") or []
        if isinstance(r, dict) and isinstance(r.get("id"), str)
    }
    author_id = str(tweet.get("author_id") or "")
    author = author_of(inc.users.get(author_id), author_id)
    if "retweeted" in refs:
        original = inc.tweets.get(refs["retweeted"])
        if original is None:
            return None
        post = map_tweet(original, inc)
        if post is not None:
            post.reposted_by = author
            post.extra["repost_id"] = tweet_id
        return post
    text, entities = _text_and_entities(tweet)
    media = []
    attachments = tweet.get("attachments") if isinstance(tweet.get("attachments"), dict) else {}
    for key in attachments.get("media_keys") or []:
        item = inc.media.get(str(key))
        if not item:
            continue
        url = item.get("url") or item.get("preview_image_url")
        if isinstance(url, str):
            kind = {"photo": "image", "video": "video", "animated_gif": "gifv"}.get(
                str(item.get("type")), "unknown"
            )
            alt = item.get("alt_text")
            media.append(
                Media(
                    url=url,
                    preview_url=item.get("preview_image_url") or url,
                    alt=alt if isinstance(alt, str) else None,
                    kind=kind,
                )
            )
    quote = None
    if "quoted" in refs:
        quoted = inc.tweets.get(refs["quoted"])
        q_user = inc.users.get(str(quoted.get("author_id"))) if quoted else None
        q_author = author_of(q_user, str(quoted.get("author_id")) if quoted else None)
        q_text, q_ents = _text_and_entities(quoted) if quoted else ("", {})
        quote = {
            "url": permalink(refs["quoted"], (q_user or {}).get("username")),
            "author": q_author.name or q_author.handle if quoted else "",
            "text": plain_text(q_text, q_ents)[:1000],
        }
    reply_to_handle = None
    reply_user = inc.users.get(str(tweet.get("in_reply_to_user_id") or ""))
    if reply_user and reply_user.get("username"):
        reply_to_handle = f"@{reply_user['username']}"
    username = (inc.users.get(author_id) or {}).get("username")
    conversation = tweet.get("conversation_id")
    lang = tweet.get("lang")
    return RemotePost(
        network=NETWORK,
        remote_id=tweet_id,
        author=author,
        created_at=_parse_time(tweet.get("created_at")),
        text=plain_text(text, entities),
        html=render_html(text, entities),
        url=permalink(tweet_id, username),
        in_reply_to=refs.get("replied_to"),
        reply_to_handle=reply_to_handle,
        thread_root=conversation
        if isinstance(conversation, str) and conversation != tweet_id
        else None,
        media=media,
        language=lang if isinstance(lang, str) and lang not in ("und", "zxx") else None,
        quote=quote,
        local_id=tweet_id,
        extra={"author_id": author_id} if author_id else {},
    )


def map_page(body: dict[str, Any]) -> list[RemotePost]:
    """Every post of a response's ``data`` (a list or one post), mapped with its includes."""
    data = body.get("data")
    items = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
    inc = Includes.of(body)
    return [p for t in items if isinstance(t, dict) and (p := map_tweet(t, inc)) is not None]


def build_query(hashtags: str | Sequence[str], *, reposts: bool = False) -> str:
    """The search / rule query for a chat: any of its hashtags (``(#a OR #b)``), reposts
    left out unless wanted."""
    tags = [hashtags] if isinstance(hashtags, str) else list(hashtags)
    terms = " OR ".join(f"#{tag}" for tag in tags)
    return (f"({terms})" if len(tags) > 1 else terms) + ("" if reposts else " -is:retweet")


def rule_tag(key: str) -> str:
    return f"{RULE_TAG_PREFIX}{key}"


def length_rule() -> LengthRule:
    return LengthRule(limit=MAX_WEIGHTED_LENGTH, count=weighted_length)


def reply_intent_url(tweet_id: str, text: str) -> str:
    """X's web "reply" intent: opens the composer on x.com as a reply, with ``text``."""
    return f"{WEB_URL}/intent/post?" + urlencode({"in_reply_to": tweet_id, "text": text})


# --- OAuth 2.0 ---------------------------------------------------------------------------


def new_pkce() -> tuple[str, str]:
    """(verifier, S256 challenge)."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(
    base: str, client_id: str, redirect_uri: str, *, state: str, code_challenge: str
) -> str:
    return (
        base
        + "?"
        + urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "scope": SCOPES,
                "state": state,
                "code_challenge": code_challenge,
                "code_challenge_method": "S256",
            }
        )
    )


@dataclass(slots=True)
class Tokens:
    """A user's OAuth 2.0 tokens; ``expires_at`` in epoch seconds."""

    access_token: str
    refresh_token: str | None
    expires_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tokens:
        return cls(
            access_token=str(data.get("access_token") or ""),
            refresh_token=data.get("refresh_token") or None,
            expires_at=float(data.get("expires_at") or 0),
        )

    def fresh(self, now: float | None = None) -> bool:
        return self.expires_at - (time.time() if now is None else now) > REFRESH_MARGIN


# --- the API -----------------------------------------------------------------------------


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
            raise _Forbidden(_describe(403), status=403, problem=_problem(response))
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
        except _Forbidden as exc:
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


class _Forbidden(NetworkError):
    def __init__(self, message: str, *, status: int, problem: dict[str, Any]) -> None:
        super().__init__(message, status=status)
        self.problem = problem


# --- following ---------------------------------------------------------------------------


def _delay(attempt: int, base: float, cap: float) -> float:
    ceiling = min(cap, base * (2 ** min(attempt, 20)))
    return random.uniform(min(base / 2, ceiling), ceiling)


class XFollower:
    """Follows a chat's hashtags on X (any of them: one ``(#a OR #b)`` query) within a read
    budget (implements ``Follower``).

    1. Backfill (no cursor): the latest ``backfill`` posts by recent search, within budget.
    2. Live: the filtered stream when ``stream`` is on and the credentials allow it — one
       rule tagged ``rule_tag`` — with a recent-search gap fill from ``since_id`` after every
       (re)connect and a capped backoff between attempts; otherwise recent search every
       ``poll_interval`` seconds, waiting out ``x-rate-limit-reset`` and 429s.
    3. Every ``compliance_interval`` seconds the latest posts are looked up again and those X
       no longer has are deleted from the room.
    4. When the budget is spent the room gets a notice, the stream is closed, and reading
       resumes only when a new hour or session gives budget back.

    Cursor: JSON with ``since_id`` and the budget counts (:class:`Cursor`).
    """

    def __init__(
        self,
        api: XApi,
        hashtag: str | Sequence[str],
        budget: ReadBudget,
        *,
        session: Callable[[], str],
        rule_tag: str,
        stream: bool = True,
        reposts: bool = False,
        backfill: int = 100,
        poll_interval: float = 30.0,
        compliance_interval: float = 600.0,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        known_ids: list[str] | None = None,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        on_budget: Callable[[ReadBudget], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        pause_check: float = 60.0,
    ) -> None:
        self.api = api
        self.hashtags = [hashtag] if isinstance(hashtag, str) else list(hashtag)
        self.hashtag = self.hashtags[0]
        self.query = build_query(self.hashtags, reposts=reposts)
        self.budget = budget
        self.session = session
        self.rule_tag = rule_tag
        self.use_stream = stream
        self.backfill = backfill
        self.poll_interval = poll_interval
        self.compliance_interval = compliance_interval
        self.keepalive_timeout = keepalive_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.on_budget = on_budget
        self.clock = clock
        self.pause_check = pause_check  # how often a paused follower checks for a new hour
        # Recent ids, oldest first: the compliance check looks these up again.
        self.known: OrderedDict[str, None] = OrderedDict(
            (i, None) for i in (known_ids or [])[-500:]
        )
        self.rule_id: str | None = None
        self._ctx: FollowContext | None = None
        self._billed_day = ""
        self._billed: set[str] = set()  # ids read today (their repeat reads are free)
        self._next_check = time.monotonic() + compliance_interval

    # -- budget --

    def _roll(self) -> None:
        self.budget.roll(self.clock(), self.session())
        self._show_budget()

    def _show_budget(self) -> None:
        if self.on_budget is not None:
            self.on_budget(self.budget)
        if self._ctx is not None:
            self._ctx.detail({"budget": self.budget.as_json()})

    def _remember(self, posts: list[RemotePost]) -> None:
        for p in posts:
            self.known[p.remote_id] = None
            self.known.move_to_end(p.remote_id)
        while len(self.known) > 500:
            self.known.popitem(last=False)

    async def _pause(self, ctx: FollowContext) -> None:
        """Wait until the budget gives reads back (next hour, or next session)."""
        which = self.budget.exhausted_by()
        spent = self.budget.as_json()
        if which == "hour":
            message = (
                f"X reading is paused: this room's budget of {self.budget.per_hour} posts per "
                "hour is spent (about "
                f"${spent['estimated_cost_hour']:.2f}). It resumes at the next full hour and "
                "catches up then."
            )
        else:
            message = (
                f"X reading is paused: this room's budget of {self.budget.per_session} posts "
                "for this session is spent (about "
                f"${spent['estimated_cost_session']:.2f}). An operator can raise "
                "HASHROOM_X_BUDGET_PER_SESSION."
            )
        ctx.notice(message)
        ctx.report(f"paused: {which} budget spent")
        while self.budget.left() <= 0:
            await asyncio.sleep(self.pause_check)
            self._roll()

    # -- reading --

    async def _search(
        self, since_id: str | None, limit: int
    ) -> tuple[list[RemotePost], str | None]:
        """Posts newer than ``since_id``, oldest first, and the newest id seen: pages are
        fetched (newest first) until ``limit`` posts have been read or none are left. Waits
        out the search rate limit and 429s."""
        found: list[RemotePost] = []
        newest = None
        token = None
        while len(found) < limit:
            wait = self.api.rate("search").wait()
            if wait > 0:
                await asyncio.sleep(min(wait, RATE_WAIT_CAP))
            try:
                page = await self.api.search_recent(
                    self.query,
                    since_id=since_id,
                    next_token=token,
                    max_results=max(10, min(MAX_RESULTS, limit - len(found))),
                )
            except NetworkError as exc:
                if exc.status != 429:
                    raise
                # Wait out the window X named (or a minute), then ask again.
                await asyncio.sleep(min(exc.retry_after or 60.0, RATE_WAIT_CAP))
                continue
            newest = newer(newest, page.newest_id)
            found.extend(page.posts)
            token = page.next_token
            if not token:
                break
        # Everything X returned is paid for (pages hold at least 10), so all of it is kept
        # and counted, even past ``limit``.
        found.reverse()
        return found, newest

    def _charge(self, ids: Iterable[str]) -> None:
        """Count reads as X bills them: a post read again within the same UTC day is free."""
        day = self.clock().strftime("%Y-%m-%d")
        if day != self._billed_day:
            self._billed_day, self._billed = day, set()
        fresh = {i for i in ids if i not in self._billed}
        if len(self._billed) < MAX_BILLED_IDS:
            self._billed |= fresh
        self.budget.spend(len(fresh))

    def _batch(self, posts: list[RemotePost], cursor: Cursor) -> Batch:
        self._charge(p.extra.get("repost_id") or p.remote_id for p in posts)
        self._remember(posts)
        self._show_budget()
        return Batch(changes=[Upsert(p) for p in posts], cursor=cursor.dump(self.budget))

    async def _catch_up(self, cursor: Cursor, limit: int) -> Batch:
        posts, newest = await self._search(cursor.since_id, limit)
        cursor.since_id = newer(cursor.since_id, newest)
        for p in posts:
            cursor.since_id = newer(cursor.since_id, p.remote_id)
        return self._batch(posts, cursor)

    async def _compliance(self) -> list[Delete]:
        if time.monotonic() < self._next_check or not self.known:
            return []
        self._next_check = time.monotonic() + self.compliance_interval
        recent = list(self.known)[-100:]
        # Looking up posts already read today is free; others cost a read each, so only as
        # many of those as the budget allows are looked up.
        today = self._billed_day == self.clock().strftime("%Y-%m-%d")
        free = [i for i in recent if today and i in self._billed]
        paid = [i for i in recent if not (today and i in self._billed)]
        allowed = self.budget.left()
        ids = free + (paid[-allowed:] if allowed > 0 else [])
        if not ids:
            return []
        try:
            found, gone = await self.api.lookup(ids)
        except NetworkError as exc:
            log.info("x: compliance lookup failed: %s", exc)
            return []
        self._charge(p.remote_id for p in found)
        for rid in gone:
            self.known.pop(rid, None)
        return [Delete(remote_id=rid) for rid in sorted(gone)]

    async def follow(self, cursor: str | None, ctx: FollowContext) -> AsyncIterator[Batch]:
        """Batches from ``cursor`` on, forever (see the class docstring)."""
        self._ctx = ctx
        state = Cursor.load(cursor)
        self.budget.hour, self.budget.hour_reads = state.hour, state.hour_reads
        self.budget.session, self.budget.session_reads = state.session, state.session_reads
        self._roll()
        if state.since_id is None:
            ctx.report("loading recent posts")
            limit = min(self.backfill, self.budget.left())
            if limit > 0:
                yield await self._catch_up(state, limit)
        stream_ok = self.use_stream
        attempt = 0
        try:
            while True:
                self._roll()
                if self.budget.left() <= 0:
                    await self._drop_rule()
                    await self._pause(ctx)
                    continue
                deletes = await self._compliance()
                if deletes:
                    yield Batch(changes=list(deletes), cursor=state.dump(self.budget))
                if stream_ok:
                    try:
                        async with contextlib.aclosing(self._stream(state, ctx)) as batches:
                            async for batch in batches:
                                attempt = 0
                                yield batch
                    except StreamNotAllowed as exc:
                        # No stream for these credentials, or the app's one connection is
                        # held by another chat: poll instead, and drop our rule, whose
                        # matches X would otherwise deliver (and bill) on that connection.
                        stream_ok = False
                        await self._drop_rule()
                        ctx.report("polling", f"{exc}; polling recent search instead")
                        continue
                    except AuthError:
                        raise
                    except NetworkError as exc:
                        delay = _delay(attempt, self.backoff_base, self.backoff_cap)
                        if exc.retry_after:
                            delay = max(delay, min(exc.retry_after, RATE_WAIT_CAP))
                        attempt += 1
                        ctx.report("reconnecting", str(exc))
                        await asyncio.sleep(delay)
                    continue
                ctx.report("polling")
                batch = await self._catch_up(state, self.budget.left())
                if batch.changes:
                    yield batch
                else:
                    yield Batch(changes=[], cursor=state.dump(self.budget))
                await asyncio.sleep(max(self.poll_interval, self.api.rate("search").wait()))
        finally:
            await self._drop_rule()

    async def _ensure_rule(self) -> None:
        rules = await self.api.rules()
        mine = [r for r in rules if r.get("tag") == self.rule_tag]
        keep = [r for r in mine if r.get("value") == self.query]
        stale = [str(r["id"]) for r in mine if r not in keep and isinstance(r.get("id"), str)]
        if stale:
            await self.api.delete_rules(stale)
        if keep:
            self.rule_id = str(keep[0]["id"])
        else:
            self.rule_id = await self.api.add_rule(self.query, self.rule_tag)

    async def _drop_rule(self) -> None:
        """Remove this chat's rule (a stopped chat must not keep paying for stream reads)."""
        if self.rule_id is None:
            return
        rule_id, self.rule_id = self.rule_id, None
        try:
            await asyncio.shield(asyncio.wait_for(self.api.delete_rules([rule_id]), 5.0))
        except (NetworkError, TimeoutError, asyncio.CancelledError) as exc:
            log.info("x: could not remove stream rule %s: %s", rule_id, exc)

    async def _stream(self, state: Cursor, ctx: FollowContext) -> AsyncIterator[Batch]:
        if self.rule_id is None:
            try:
                await self._ensure_rule()
            except _Forbidden as exc:
                raise StreamNotAllowed(
                    "these credentials may not manage filtered stream rules", status=403
                ) from exc
        async with contextlib.aclosing(self.api.stream(self.keepalive_timeout)) as items:
            async for item in items:
                if item is KEEPALIVE:
                    deletes = await self._compliance()
                    if deletes:
                        yield Batch(changes=list(deletes), cursor=state.dump(self.budget))
                    continue
                if item is CONNECTED:
                    # Connected. Posts made while no stream was open (first start, a drop, a
                    # pause) only come from search: fill the gap from the cursor now.
                    ctx.report("streaming")
                    self._roll()
                    batch = await self._catch_up(state, self.budget.left())
                    if batch.changes:
                        yield batch
                    continue
                tags = {
                    r.get("tag") for r in item.get("matching_rules") or [] if isinstance(r, dict)
                }
                if self.rule_tag not in tags:
                    continue  # another chat's rule on the same app
                # A post can reach us twice around a (re)connect: by the gap fill and the stream.
                posts = [p for p in map_page(item) if p.remote_id not in self.known]
                for p in posts:
                    state.since_id = newer(state.since_id, p.remote_id)
                self._roll()
                if posts:
                    yield self._batch(posts, state)
                if self.budget.left() <= 0:
                    return  # closes the stream; the loop pauses
                deletes = await self._compliance()
                if deletes:
                    yield Batch(changes=list(deletes), cursor=state.dump(self.budget))
