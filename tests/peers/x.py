"""An X API v2 server on loopback, for tests: the documented endpoints over real HTTP.

    async with XPeer() as peer:
        bearer = peer.app_bearer
        post = peer.publish("bob", "Q1 hello #TheChat")
        ... talk to peer.url ...

What it speaks (as docs.x.com describes it):

- App-only ``Authorization: Bearer`` tokens and OAuth 2.0 user tokens; 401 for unknown ones.
- ``GET /2/tweets/search/recent`` — ``query`` (``#tag`` terms, ``-is:retweet``), ``since_id``,
  ``max_results`` 10–100 (400 otherwise), ``next_token`` paging, newest first; ``data``,
  ``includes`` (``users``, ``tweets``, ``media``) as asked by ``expansions``, ``meta``
  (``newest_id``, ``oldest_id``, ``result_count``, ``next_token``); an empty page has only
  ``meta``. ``x-rate-limit-limit/remaining/reset`` (epoch seconds) and 429 when spent.
- ``GET /2/tweets?ids=`` — found posts in ``data``, deleted ones as ``errors`` of type
  ``…/resource-not-found``.
- ``GET``/``POST /2/tweets/search/stream/rules`` (``add`` with ``value``+``tag``, ``delete``
  with ``ids``; duplicates reported) and ``GET /2/tweets/search/stream``: NDJSON lines with
  ``data``, ``includes``, ``matching_rules``; a blank ``\\r\\n`` keep-alive every
  ``keepalive`` seconds; one connection per app (429 ``TooManyConnections``); 403 for
  credentials without stream access.
- ``POST /2/tweets`` (user token, ``tweet.write``): ``text`` (weighted length ≤ 280),
  ``reply.in_reply_to_tweet_id`` refused with 403 unless the parent's author mentioned or
  quoted the replier (the February 2026 rule), ``quote_tweet_id``.
- ``GET /2/users/me``; ``GET``/``POST /i/oauth2/authorize`` (an "Authorize app" page);
  ``POST /2/oauth2/token`` (``authorization_code`` with PKCE S256, ``refresh_token``, both
  rotating the refresh token; 2-hour access tokens), ``POST /2/oauth2/revoke``.

Every request is recorded in :attr:`XPeer.requests`; ids are 19-digit strings.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from app.networks.x_text import weighted_length

SEARCH_LIMIT = 450  # per 15 minutes per app
PROBLEM = "https://api.twitter.com/2/problems/"


def _problem(
    status: int, title: str, detail: str, kind: str = "about:blank", **extra: Any
) -> JSONResponse:
    body = {"title": title, "detail": detail, "type": kind, "status": status, **extra}
    return JSONResponse(body, status_code=status)


@dataclass
class _Token:
    kind: str  # "app" | "user"
    user_id: str | None = None
    app: str = "app1"
    expires_at: float = 0.0
    scopes: set[str] = field(default_factory=set)


@dataclass
class _Rule:
    id: str
    value: str
    tag: str | None
    app: str


class _Stream:
    def __init__(self, app: str) -> None:
        self.app = app
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.params: dict[str, str] = {}


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: bytes


class XPeer:
    """X's API on a free loopback port; ``async with`` starts and stops it."""

    def __init__(
        self,
        *,
        keepalive: float = 0.2,
        stream_allowed: bool = True,
        client_id: str = "hashroom-client",
        client_secret: str | None = "hashroom-secret",
        login_as: str = "alice",
    ) -> None:
        self.keepalive = keepalive
        self.stream_allowed = stream_allowed
        self.client_id = client_id
        self.client_secret = client_secret
        self.login_as = login_as
        self.requests: list[RecordedRequest] = []
        self.users: dict[str, dict[str, Any]] = {}  # by id
        self.tweets: dict[str, dict[str, Any]] = {}  # by id
        self.media: dict[str, dict[str, Any]] = {}
        self.deleted: set[str] = set()
        self.tokens: dict[str, _Token] = {}
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> user id
        self.codes: dict[str, dict[str, Any]] = {}
        self.rules: dict[str, _Rule] = {}
        self.streams: set[_Stream] = set()
        self.stall = False  # True: the stream sends nothing, not even keep-alives
        self.search_remaining = SEARCH_LIMIT
        self.search_reset = time.time() + 900
        self.rate_limit_next = 0  # the next n searches answer 429
        self.idempotent: dict[str, str] = {}
        self._seq = 1_800_000_000_000_000_000
        self.app_bearer = self.create_app_token()
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle --

    async def __aenter__(self) -> XPeer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(
            self._app(),
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
            if time.monotonic() > deadline:
                raise RuntimeError("the X peer did not start within 5 s")
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.drop_streams()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(self._task, 5)
            except TimeoutError:
                self._task.cancel()

    # -- test controls --

    def _next_id(self) -> str:
        self._seq += 1_000_003
        return str(self._seq)

    def user(self, username: str, name: str | None = None) -> dict[str, Any]:
        for u in self.users.values():
            if u["username"] == username:
                return u
        uid = self._next_id()
        u = {
            "id": uid,
            "username": username,
            "name": name or username.title(),
            "profile_image_url": f"https://pbs.example/{username}_normal.jpg",
        }
        self.users[uid] = u
        return u

    def create_app_token(self, app: str = "app1") -> str:
        token = "AAAA" + secrets.token_urlsafe(30)
        self.tokens[token] = _Token(kind="app", app=app, expires_at=float("inf"))
        return token

    def create_user_token(self, username: str, expires_in: float = 7200) -> str:
        token = secrets.token_urlsafe(30)
        self.tokens[token] = _Token(
            kind="user",
            user_id=self.user(username)["id"],
            expires_at=time.time() + expires_in,
            scopes={"tweet.read", "tweet.write", "users.read", "offline.access"},
        )
        return token

    def publish(
        self,
        username: str,
        text: str,
        *,
        reply_to: str | None = None,
        quote: str | None = None,
        media: list[dict[str, Any]] | None = None,
        note: str | None = None,
        lang: str = "en",
        retweet_of: str | None = None,
    ) -> dict[str, Any]:
        """A new post by ``username`` (entities computed from the text), sent to streams."""
        author = self.user(username)
        tid = self._next_id()
        full = note if note is not None else text
        tweet: dict[str, Any] = {
            "id": tid,
            "text": full[:280] if note is not None else text,
            "author_id": author["id"],
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "conversation_id": tid,
            "lang": lang,
            "edit_history_tweet_ids": [tid],
        }
        refs = []
        if retweet_of:
            original = self.tweets[retweet_of]
            orig_user = self.users[original["author_id"]]["username"]
            tweet["text"] = f"RT @{orig_user}: {original['text']}"[:280]
            refs.append({"type": "retweeted", "id": retweet_of})
        if reply_to:
            parent = self.tweets[reply_to]
            tweet["conversation_id"] = parent["conversation_id"]
            tweet["in_reply_to_user_id"] = parent["author_id"]
            refs.append({"type": "replied_to", "id": reply_to})
        if quote:
            refs.append({"type": "quoted", "id": quote})
        if refs:
            tweet["referenced_tweets"] = refs
        ents = self._entities(tweet["text"])
        if media:
            keys = []
            for item in media:
                key = f"3_{self._next_id()}"
                self.media[key] = {"media_key": key, "type": item.get("type", "photo"), **item}
                keys.append(key)
            tweet["attachments"] = {"media_keys": keys}
            link = f"https://t.co/{secrets.token_urlsafe(6)}"
            start = len(tweet["text"]) + 1
            tweet["text"] += " " + link
            ents.setdefault("urls", []).append(
                {
                    "start": start,
                    "end": start + len(link),
                    "url": link,
                    "expanded_url": f"https://x.com/{username}/status/{tid}/photo/1",
                    "display_url": "pic.x.com/abc",
                    "media_key": keys[0],
                }
            )
        if ents:
            tweet["entities"] = ents
        if note is not None:
            tweet["note_tweet"] = {"text": note, "entities": self._entities(note)}
        self.tweets[tid] = tweet
        self._fan_out(tweet)
        return tweet

    def delete(self, tweet_id: str) -> None:
        self.tweets.pop(tweet_id, None)
        self.deleted.add(tweet_id)

    def drop_streams(self) -> int:
        n = len(self.streams)
        for s in list(self.streams):
            s.queue.put_nowait(None)
        return n

    @property
    def stream_count(self) -> int:
        return len(self.streams)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    # -- model --

    @staticmethod
    def _entities(text: str) -> dict[str, Any]:
        """Hashtags, mentions and URLs with code-point offsets, as X computes them; URLs are
        shortened to t.co in ``text`` by the caller's choice (here: kept, with a display URL)."""
        ents: dict[str, Any] = {}
        for m in re.finditer(r"(?<![\w&])#(\w+)", text):
            ents.setdefault("hashtags", []).append(
                {"start": m.start(), "end": m.end(), "tag": m[1]}
            )
        for m in re.finditer(r"(?<!\w)@(\w{1,15})", text):
            ents.setdefault("mentions", []).append(
                {"start": m.start(), "end": m.end(), "username": m[1]}
            )
        for m in re.finditer(r"https://t\.co/[\w-]+", text):
            ents.setdefault("urls", []).append(
                {
                    "start": m.start(),
                    "end": m.end(),
                    "url": m[0],
                    "expanded_url": "https://example.org/a/very/long/path?ref=x",
                    "display_url": "example.org/a/very/long/…",
                }
            )
        return ents

    def _matches(self, tweet: dict[str, Any], query: str) -> bool:
        """X's operators as far as a hashtag chat uses them: terms ANDed by spaces, a
        parenthesised group of ``OR``-ed terms, ``#tag``, ``-is:retweet``, plain words."""
        tags = {h["tag"].casefold() for h in (tweet.get("entities") or {}).get("hashtags", [])}
        note = tweet.get("note_tweet")
        if note:
            tags |= {h["tag"].casefold() for h in (note.get("entities") or {}).get("hashtags", [])}
        is_rt = any(r["type"] == "retweeted" for r in tweet.get("referenced_tweets", []))

        def term_holds(term: str) -> bool:
            if term == "-is:retweet":
                return not is_rt
            if term.startswith("#"):
                return term[1:].casefold() in tags
            return term.casefold() in tweet["text"].casefold()

        groups = re.findall(r"\(([^()]*)\)", query)
        rest = re.sub(r"\([^()]*\)", " ", query)
        for group in groups:
            alternatives = [t.strip() for t in re.split(r"\s+OR\s+", group.strip())]
            if not any(term_holds(t) for t in alternatives if t):
                return False
        return all(term_holds(term) for term in rest.split())

    def _render(self, tweets: list[dict[str, Any]], request: Request) -> dict[str, Any]:
        q = request.query_params
        fields = set((q.get("tweet.fields") or "").split(","))
        expansions = set((q.get("expansions") or "").split(","))
        base = {"id", "text", "edit_history_tweet_ids"}
        out = []
        users: dict[str, Any] = {}
        refd: dict[str, Any] = {}
        media: dict[str, Any] = {}

        def shape(t: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in t.items() if k in base | fields}

        for t in tweets:
            out.append(shape(t))
            if "author_id" in expansions:
                users[t["author_id"]] = self.users[t["author_id"]]
            if "referenced_tweets.id" in expansions:
                for r in t.get("referenced_tweets", []):
                    ref = self.tweets.get(r["id"])
                    if ref is not None:
                        refd[ref["id"]] = shape(ref)
                        if "referenced_tweets.id.author_id" in expansions:
                            users[ref["author_id"]] = self.users[ref["author_id"]]
            if "in_reply_to_user_id" in expansions and t.get("in_reply_to_user_id"):
                users[t["in_reply_to_user_id"]] = self.users[t["in_reply_to_user_id"]]
            if "attachments.media_keys" in expansions:
                for key in (t.get("attachments") or {}).get("media_keys", []):
                    media[key] = self.media[key]
        body: dict[str, Any] = {"data": out}
        includes: dict[str, Any] = {}
        if users:
            includes["users"] = list(users.values())
        if refd:
            includes["tweets"] = list(refd.values())
        if media:
            includes["media"] = list(media.values())
        if includes:
            body["includes"] = includes
        return body

    def _fan_out(self, tweet: dict[str, Any]) -> None:
        for stream in list(self.streams):
            matched = [
                {"id": r.id, "tag": r.tag}
                for r in self.rules.values()
                if r.app == stream.app and self._matches(tweet, r.value)
            ]
            if not matched:
                continue
            body = self._render_for_stream(tweet, stream)
            body["matching_rules"] = matched
            stream.queue.put_nowait(json.dumps(body).encode() + b"\r\n")

    def _render_for_stream(self, tweet: dict[str, Any], stream: _Stream) -> dict[str, Any]:
        fake = _FakeQuery(stream.params)
        body = self._render([tweet], fake)  # type: ignore[arg-type]
        body["data"] = body["data"][0]
        return body

    # -- HTTP --

    def _auth(self, request: Request) -> _Token | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer":
            return None
        found = self.tokens.get(token)
        if found is None or found.expires_at < time.time():
            return None
        return found

    def _unauthorized(self) -> JSONResponse:
        return _problem(401, "Unauthorized", "Unauthorized")

    def _rate_headers(self) -> dict[str, str]:
        return {
            "x-rate-limit-limit": str(SEARCH_LIMIT),
            "x-rate-limit-remaining": str(max(0, self.search_remaining)),
            "x-rate-limit-reset": str(int(self.search_reset)),
        }

    async def _search(self, request: Request) -> Response:
        if self._auth(request) is None:
            return self._unauthorized()
        if time.time() >= self.search_reset:
            self.search_remaining, self.search_reset = SEARCH_LIMIT, time.time() + 900
        if self.rate_limit_next > 0:
            self.rate_limit_next -= 1
            headers = {**self._rate_headers(), "x-rate-limit-remaining": "0"}
            headers["x-rate-limit-reset"] = str(int(time.time()) + 1)
            return JSONResponse(
                {
                    "title": "Too Many Requests",
                    "detail": "Too Many Requests",
                    "type": "about:blank",
                    "status": 429,
                },
                status_code=429,
                headers=headers,
            )
        self.search_remaining -= 1
        q = request.query_params
        query = q.get("query", "")
        try:
            max_results = int(q.get("max_results", "10"))
        except ValueError:
            max_results = 0
        if not query or not 10 <= max_results <= 100:
            return _problem(
                400,
                "Invalid Request",
                "One or more parameters to your request was invalid.",
                f"{PROBLEM}invalid-request",
            )
        since = int(q["since_id"]) if q.get("since_id") else 0
        matching = sorted(
            (t for t in self.tweets.values() if int(t["id"]) > since and self._matches(t, query)),
            key=lambda t: int(t["id"]),
            reverse=True,
        )
        start = int(q["next_token"], 16) if q.get("next_token") else 0
        page = matching[start : start + max_results]
        meta: dict[str, Any] = {"result_count": len(page)}
        if page:
            meta["newest_id"] = page[0]["id"]
            meta["oldest_id"] = page[-1]["id"]
            body = self._render(page, request)
        else:
            body = {}
        if start + max_results < len(matching):
            meta["next_token"] = format(start + max_results, "x")
        body["meta"] = meta
        return JSONResponse(body, headers=self._rate_headers())

    async def _lookup(self, request: Request) -> Response:
        if self._auth(request) is None:
            return self._unauthorized()
        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        found = [self.tweets[i] for i in ids if i in self.tweets]
        body = self._render(found, request) if found else {}
        errors = [
            {
                "value": i,
                "detail": f"Could not find tweet with ids: [{i}].",
                "title": "Not Found Error",
                "resource_type": "tweet",
                "parameter": "ids",
                "resource_id": i,
                "type": f"{PROBLEM}resource-not-found",
            }
            for i in ids
            if i not in self.tweets
        ]
        if errors:
            body["errors"] = errors
        return JSONResponse(body)

    async def _rules(self, request: Request) -> Response:
        token = self._auth(request)
        if token is None or token.kind != "app":
            return (
                self._unauthorized()
                if token is None
                else _problem(
                    403,
                    "Unsupported Authentication",
                    "Authenticating with OAuth 2.0 User Context is forbidden for this endpoint.",
                    f"{PROBLEM}unsupported-authentication",
                )
            )
        if request.method == "GET":
            data = [
                {"id": r.id, "value": r.value, **({"tag": r.tag} if r.tag else {})}
                for r in self.rules.values()
                if r.app == token.app
            ]
            meta = {"sent": datetime.now(UTC).isoformat(), "result_count": len(data)}
            return JSONResponse({"data": data, "meta": meta} if data else {"meta": meta})
        body = json.loads(await request.body() or b"{}")
        if "add" in body:
            created, errors = [], []
            for item in body["add"]:
                dup = next(
                    (
                        r
                        for r in self.rules.values()
                        if r.app == token.app and r.value == item["value"]
                    ),
                    None,
                )
                if dup is not None:
                    errors.append(
                        {
                            "value": item["value"],
                            "id": dup.id,
                            "title": "DuplicateRule",
                            "type": f"{PROBLEM}duplicate-rules",
                        }
                    )
                    continue
                rule = _Rule(
                    id=self._next_id(), value=item["value"], tag=item.get("tag"), app=token.app
                )
                self.rules[rule.id] = rule
                created.append({"value": rule.value, "tag": rule.tag, "id": rule.id})
            out: dict[str, Any] = {
                "meta": {
                    "sent": datetime.now(UTC).isoformat(),
                    "summary": {
                        "created": len(created),
                        "not_created": len(errors),
                        "valid": len(created),
                        "invalid": 0,
                    },
                }
            }
            if created:
                out["data"] = created
            if errors:
                out["errors"] = errors
            return JSONResponse(out, status_code=201 if created else 200)
        if "delete" in body:
            ids = body["delete"].get("ids", [])
            deleted = [i for i in ids if i in self.rules and self.rules[i].app == token.app]
            for i in deleted:
                del self.rules[i]
            return JSONResponse(
                {
                    "meta": {
                        "sent": datetime.now(UTC).isoformat(),
                        "summary": {
                            "deleted": len(deleted),
                            "not_deleted": len(ids) - len(deleted),
                        },
                    }
                }
            )
        return _problem(
            400, "Invalid Request", "add or delete required", f"{PROBLEM}invalid-request"
        )

    async def _stream(self, request: Request) -> Response:
        token = self._auth(request)
        if token is None:
            return self._unauthorized()
        if not self.stream_allowed or token.kind != "app":
            return _problem(
                403,
                "Client Forbidden",
                "When authenticating requests to the Twitter API v2 endpoints, you must use keys "
                "and tokens from a Twitter developer App that is attached to a Project.",
                f"{PROBLEM}client-forbidden",
                reason="client-not-enrolled",
            )
        if any(s.app == token.app for s in self.streams):
            return _problem(
                429,
                "ConnectionException",
                "This stream is currently at the maximum allowed connection limit.",
                f"{PROBLEM}streaming-connection",
                connection_issue="TooManyConnections",
            )
        stream = _Stream(token.app)
        stream.params = dict(request.query_params)
        self.streams.add(stream)

        async def body() -> Any:
            try:
                while True:
                    try:
                        item = await asyncio.wait_for(stream.queue.get(), self.keepalive)
                    except TimeoutError:
                        if not self.stall:
                            yield b"\r\n"
                        continue
                    if item is None:
                        return
                    if not self.stall:
                        yield item
            finally:
                self.streams.discard(stream)

        return StreamingResponse(body(), media_type="application/json")

    async def _me(self, request: Request) -> Response:
        token = self._auth(request)
        if token is None:
            return self._unauthorized()
        if token.kind != "user":
            return _problem(
                403,
                "Unsupported Authentication",
                "Authenticating with OAuth 2.0 Application-Only is forbidden for this endpoint.",
                f"{PROBLEM}unsupported-authentication",
            )
        return JSONResponse({"data": self.users[token.user_id]})  # type: ignore[index]

    async def _tweets(self, request: Request) -> Response:
        return await (self._lookup if request.method == "GET" else self._create)(request)

    async def _create(self, request: Request) -> Response:
        token = self._auth(request)
        if token is None:
            return self._unauthorized()
        if token.kind != "user" or "tweet.write" not in token.scopes:
            return _problem(
                403, "Unsupported Authentication", "user context with tweet.write required"
            )
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _problem(400, "Invalid Request", "body is not JSON", f"{PROBLEM}invalid-request")
        text = body.get("text", "")
        if not isinstance(text, str) or not text or weighted_length(text) > 280:
            return _problem(
                400, "Invalid Request", "text too long or empty", f"{PROBLEM}invalid-request"
            )
        me = self.users[token.user_id]  # type: ignore[index]
        reply = (body.get("reply") or {}).get("in_reply_to_tweet_id")
        if reply:
            parent = self.tweets.get(reply)
            if parent is None:
                return _problem(
                    400, "Invalid Request", "parent not found", f"{PROBLEM}invalid-request"
                )
            mentioned = {
                m["username"].casefold() for m in (parent.get("entities") or {}).get("mentions", [])
            }
            quoted_me = any(
                r["type"] == "quoted" and self.tweets.get(r["id"], {}).get("author_id") == me["id"]
                for r in parent.get("referenced_tweets", [])
            )
            own = parent["author_id"] == me["id"]
            if not (own or quoted_me or me["username"].casefold() in mentioned):
                return _problem(
                    403,
                    "Forbidden",
                    "Reply to this conversation is not allowed because you have not been "
                    "mentioned or otherwise engaged by the author of the post you are replying to.",
                )
        quote = body.get("quote_tweet_id")
        if quote and quote not in self.tweets:
            return _problem(
                400, "Invalid Request", "quoted post not found", f"{PROBLEM}invalid-request"
            )
        tweet = self.publish(me["username"], text, reply_to=reply, quote=quote)
        return JSONResponse(
            {
                "data": {
                    "id": tweet["id"],
                    "text": tweet["text"],
                    "edit_history_tweet_ids": [tweet["id"]],
                }
            },
            status_code=201,
        )

    # OAuth 2.0

    def _client_ok(self, request: Request, form: dict[str, str]) -> bool:
        auth = request.headers.get("authorization", "")
        if self.client_secret:
            if not auth.startswith("Basic "):
                return False
            cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            return cid == self.client_id and secret == self.client_secret
        return form.get("client_id") == self.client_id

    async def _authorize(self, request: Request) -> Response:
        q = dict(request.query_params) if request.method == "GET" else dict(await request.form())
        if q.get("client_id") != self.client_id or q.get("code_challenge_method") != "S256":
            return HTMLResponse("<p>Something went wrong: invalid client or PKCE.</p>", 400)
        if request.method == "GET":
            hidden = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in q.items())
            return HTMLResponse(
                f'<form method="post">{hidden}<p>Hashroom wants to access your X account '
                f"(@{self.login_as}): {q.get('scope')}</p><button>Authorize app</button></form>"
            )
        code = secrets.token_urlsafe(20)
        self.codes[code] = {
            "user_id": self.user(self.login_as)["id"],
            "challenge": q["code_challenge"],
            "redirect_uri": q["redirect_uri"],
            "scopes": set(q.get("scope", "").split()),
        }
        return RedirectResponse(
            q["redirect_uri"] + "?" + urlencode({"state": q.get("state", ""), "code": code}), 302
        )

    def _issue(self, user_id: str, scopes: set[str], expires_in: int = 7200) -> dict[str, Any]:
        token = secrets.token_urlsafe(30)
        self.tokens[token] = _Token(
            kind="user", user_id=user_id, expires_at=time.time() + expires_in, scopes=scopes
        )
        out = {
            "token_type": "bearer",
            "expires_in": expires_in,
            "access_token": token,
            "scope": " ".join(sorted(scopes)),
        }
        if "offline.access" in scopes:
            refresh = secrets.token_urlsafe(30)
            self.refresh_tokens[refresh] = user_id
            out["refresh_token"] = refresh
        return out

    token_lifetime = 7200

    async def _token(self, request: Request) -> Response:
        form = dict(await request.form())
        if not self._client_ok(request, form):
            return JSONResponse(
                {
                    "error": "unauthorized_client",
                    "error_description": "Missing valid authorization header",
                },
                401,
            )
        grant = form.get("grant_type")
        if grant == "authorization_code":
            code = self.codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            challenge = (
                base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
                .rstrip(b"=")
                .decode()
            )
            if (
                code is None
                or code["challenge"] != challenge
                or code["redirect_uri"] != form.get("redirect_uri")
            ):
                return JSONResponse(
                    {
                        "error": "invalid_request",
                        "error_description": "Value passed for the authorization code was invalid.",
                    },
                    400,
                )
            return JSONResponse(self._issue(code["user_id"], code["scopes"], self.token_lifetime))
        if grant == "refresh_token":
            user_id = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if user_id is None:
                return JSONResponse(
                    {
                        "error": "invalid_request",
                        "error_description": "Value passed for the token was invalid.",
                    },
                    400,
                )
            return JSONResponse(
                self._issue(
                    user_id,
                    {"tweet.read", "tweet.write", "users.read", "offline.access"},
                    self.token_lifetime,
                )
            )
        return JSONResponse({"error": "unsupported_grant_type"}, 400)

    async def _revoke(self, request: Request) -> Response:
        form = dict(await request.form())
        if not self._client_ok(request, form):
            return JSONResponse({"error": "unauthorized_client"}, 401)
        token = form.get("token", "")
        self.tokens.pop(token, None)
        self.refresh_tokens.pop(token, None)
        return JSONResponse({"revoked": True})

    def _app(self) -> Starlette:
        peer = self

        async def record(request: Request, handler: Any) -> Response:
            body = await request.body()
            peer.requests.append(
                RecordedRequest(request.method, request.url.path, dict(request.query_params), body)
            )
            return await handler(request)

        def route(path: str, handler: Any, methods: list[str]) -> Route:
            async def endpoint(request: Request) -> Response:
                return await record(request, handler)

            return Route(path, endpoint, methods=methods)

        return Starlette(
            routes=[
                route("/2/tweets/search/recent", self._search, ["GET"]),
                route("/2/tweets/search/stream/rules", self._rules, ["GET", "POST"]),
                route("/2/tweets/search/stream", self._stream, ["GET"]),
                route("/2/tweets", self._tweets, ["GET", "POST"]),
                route("/2/users/me", self._me, ["GET"]),
                route("/i/oauth2/authorize", self._authorize, ["GET", "POST"]),
                route("/2/oauth2/token", self._token, ["POST"]),
                route("/2/oauth2/revoke", self._revoke, ["POST"]),
            ]
        )


class _FakeQuery:
    """The stream's query parameters, shaped like a request for :meth:`XPeer._render`."""

    def __init__(self, params: dict[str, str]) -> None:
        self.query_params = params
