"""A Jetstream server for tests, with the AppView search and PLC lookups Hashroom uses.

Speaks Jetstream v1 on ``/subscribe`` (JSON text frames, ``wantedCollections`` filtering,
``cursor=<time_us>`` replay from an in-memory log, identity and account events sent to every
subscriber), ``app.bsky.feed.searchPosts`` over what it has seen (``q``, ``tag``, ``since``,
``until``, ``sort``, ``limit``, ``cursor``; a Bearer token is required, as the AppView behind a
PDS does), ``app.bsky.feed.getPostThread`` over the same posts (``uri``, ``depth``,
``parentHeight``; no token needed, as on the public AppView; a missing post is 400
``NotFound``; answers are ``threadViewPost`` trees with ``$type`` on every union member), and
answers DID documents (``GET /did:plc:…``) and profile records
(``com.atproto.repo.getRecord``) for accounts added with :meth:`JetstreamServer.add_account`.
It is also an AppView a PDS can proxy to: ``/.well-known/did.json`` is the DID document of
:attr:`JetstreamServer.appview_did` (``did:web:localhost%3APORT``) with a ``#bsky_appview``
service, so ``atproto-proxy: <appview_did>#bsky_appview`` through a real PDS lands here.

Two ways to feed it:

- pure Python: tests call :meth:`JetstreamServer.commit` / :meth:`JetstreamServer.emit`;
- relay: given ``upstream`` (a PDS URL), it reads that PDS's ``subscribeRepos`` firehose and
  re-emits it the way Jetstream does (its own DAG-CBOR/CAR decoding with libipld).

Test hooks: :meth:`send_raw` (a frame outside the protocol), :meth:`drop` (cut every
subscriber's TCP connection), :meth:`fail_next_search`, :meth:`fail_next_thread`,
:attr:`thread_extras` (more union members under a post: ``notFoundPost``, ``blockedPost``, or
anything hostile).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import libipld
from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

POST = "app.bsky.feed.post"
THREAD_VIEW = "app.bsky.feed.defs#threadViewPost"
NOT_FOUND_POST = "app.bsky.feed.defs#notFoundPost"
BLOCKED_POST = "app.bsky.feed.defs#blockedPost"
_TAG_FACET = "app.bsky.richtext.facet#tag"
_DROP = object()


def _now_iso(time_us: int) -> str:
    moment = datetime.fromtimestamp(time_us / 1_000_000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_model(value: Any) -> Any:
    """DAG-CBOR as decoded by libipld → the atproto JSON data model (links, bytes)."""
    if isinstance(value, dict):
        return {k: _json_model(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_model(v) for v in value]
    if isinstance(value, bytes):
        # A binary CIDv1 (sha-256): version 1, a one-byte codec (raw 0x55 or dag-cbor 0x71),
        # multihash 0x12 of 32 bytes.
        if (
            len(value) == 36
            and value[0] == 1
            and value[1] in (0x55, 0x71)
            and value[2:4] == b"\x12\x20"
        ):
            return {"$link": libipld.encode_cid(value)}
        return {"$bytes": base64.b64encode(value).decode().rstrip("=")}
    return value


@dataclass(eq=False)
class _Subscriber:
    connection: ServerConnection
    wanted: list[str]
    cursor: int | None
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)

    def wants(self, event: dict[str, Any]) -> bool:
        if event.get("kind") != "commit" or not self.wanted:
            return True
        collection = event.get("commit", {}).get("collection", "")
        return any(
            collection == w or (w.endswith(".*") and collection.startswith(w[:-1]))
            for w in self.wanted
        )


@dataclass
class _Account:
    did: str
    handle: str
    display_name: str | None = None


class JetstreamServer:
    """Jetstream v1 + searchPosts + PLC on one loopback port. Use ``async with``."""

    def __init__(self, *, upstream: str | None = None):
        self.upstream = upstream.rstrip("/") if upstream else None
        self.log: list[dict[str, Any]] = []
        self.subscriptions: list[dict[str, list[str]]] = []  # query of every /subscribe
        self.search_requests: list[dict[str, Any]] = []
        # Every getPostThread call: params, Authorization, atproto-proxy, wall-clock time.
        self.thread_requests: list[dict[str, Any]] = []
        self.thread_extras: dict[str, list[Any]] = {}  # post uri → extra entries in replies
        self.accounts: dict[str, _Account] = {}
        self._handles: dict[str, str] = {}
        self._subscribers: set[_Subscriber] = set()
        self._last_time_us = 0
        self._server: Server | None = None
        self._relay: asyncio.Task[None] | None = None
        self._search_failures: list[tuple[int, dict[str, Any], dict[str, str]]] = []
        self._thread_failures: list[tuple[int, str, dict[str, str]]] = []
        self._changed = asyncio.Condition()
        self.port = 0

    # --- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> JetstreamServer:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, process_request=self._http, max_size=2**22
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if self.upstream:
            self._relay = asyncio.create_task(self._run_relay())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._relay:
            self._relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay
        if self._server:
            self._server.close()
            await self._server.wait_closed()

    @property
    def url(self) -> str:
        """The ``/subscribe`` websocket endpoint."""
        return f"ws://127.0.0.1:{self.port}/subscribe"

    @property
    def http_url(self) -> str:
        """Base URL of the HTTP side (searchPosts, getPostThread, PLC, getRecord)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def appview_did(self) -> str:
        """The ``did:web`` of the AppView side (its document names ``http://localhost:PORT``)."""
        return f"did:web:localhost%3A{self.port}"

    # --- feeding -------------------------------------------------------------------------

    def next_time_us(self) -> int:
        """A fresh ``time_us``: wall-clock microseconds, strictly increasing."""
        self._last_time_us = max(time.time_ns() // 1000, self._last_time_us + 1)
        return self._last_time_us

    def emit(self, event: dict[str, Any]) -> dict[str, Any]:
        """Log ``event`` (given a ``time_us`` if it has none) and send it to subscribers."""
        event = dict(event)
        if "time_us" not in event:
            event["time_us"] = self.next_time_us()
        else:
            self._last_time_us = max(self._last_time_us, int(event["time_us"]))
        self.log.append(event)
        frame = json.dumps(event)
        for sub in list(self._subscribers):
            if sub.wants(event):
                sub.queue.put_nowait(frame)
        return event

    def commit(
        self,
        did: str,
        rkey: str,
        record: dict[str, Any] | None = None,
        *,
        operation: str = "create",
        collection: str = POST,
        cid: str | None = None,
    ) -> dict[str, Any]:
        """Emit a commit event shaped like Jetstream's (deletes carry no record or cid)."""
        commit: dict[str, Any] = {
            "rev": f"3l{self.next_time_us():x}",
            "operation": operation,
            "collection": collection,
            "rkey": rkey,
        }
        if operation != "delete":
            commit["record"] = record or {}
            commit["cid"] = cid or _fake_cid(did, rkey, record or {})
        return self.emit({"did": did, "kind": "commit", "commit": commit})

    def send_raw(self, frame: str | bytes) -> None:
        """Send a frame as is to every live subscriber (not logged, not replayed)."""
        for sub in list(self._subscribers):
            sub.queue.put_nowait(frame)

    async def drop(self) -> None:
        """Cut every subscriber's connection without a closing handshake."""
        for sub in list(self._subscribers):
            sub.queue.put_nowait(_DROP)
        for _ in range(200):
            if not self._subscribers:
                return
            await asyncio.sleep(0.01)

    async def wait_for_subscribers(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until ``count`` clients are subscribed (and past their replay)."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: len(self._subscribers) >= count)

    def add_account(self, did: str, handle: str, display_name: str | None = None) -> None:
        """Serve a DID document for ``did`` (PDS = this server) and, with ``display_name``,
        its profile record."""
        self.accounts[did] = _Account(did, handle, display_name)
        self._handles[did] = handle

    def fail_next_search(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next searchPosts call with this error instead."""
        self._search_failures.append((status, body, headers or {}))

    def fail_next_thread(
        self, status: int, body: dict[str, Any] | str, headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next getPostThread call with this instead (a str body is sent as is,
        e.g. broken JSON with status 200)."""
        text = body if isinstance(body, str) else json.dumps(body)
        self._thread_failures.append((status, text, headers or {}))

    # --- websocket side ------------------------------------------------------------------

    async def _handle(self, connection: ServerConnection) -> None:
        request = connection.request
        assert request is not None
        query = parse_qs(urlsplit(request.path).query)
        self.subscriptions.append(query)
        cursor = None
        if query.get("cursor"):
            try:
                cursor = int(query["cursor"][0])
            except ValueError:
                await connection.close(1008, "bad cursor")
                return
        sub = _Subscriber(connection, query.get("wantedCollections", []), cursor)
        # Snapshot and subscribe in one step (no await between): nothing is missed or doubled.
        replay = [e for e in self.log if cursor is not None and e["time_us"] >= cursor]
        self._subscribers.add(sub)
        async with self._changed:
            self._changed.notify_all()
        closed = asyncio.ensure_future(connection.wait_closed())
        try:
            for event in replay:
                if sub.wants(event):
                    await connection.send(json.dumps(event))
            while True:
                getter = asyncio.ensure_future(sub.queue.get())
                await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():  # the client left, or the server is closing
                    getter.cancel()
                    return
                item = getter.result()
                if item is _DROP:
                    connection.transport.abort()
                    return
                await connection.send(item)
        except ConnectionClosed:
            pass
        finally:
            closed.cancel()
            self._subscribers.discard(sub)
            async with self._changed:
                self._changed.notify_all()

    # --- HTTP side -----------------------------------------------------------------------

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path == "/subscribe":
            return None
        params = parse_qs(parts.query)
        if parts.path == "/xrpc/app.bsky.feed.searchPosts":
            return self._search(connection, request, params)
        if parts.path == "/xrpc/app.bsky.feed.getPostThread":
            return self._thread(connection, request, params)
        if parts.path == "/.well-known/did.json":
            return _json(connection, 200, self._appview_document())
        if parts.path == "/xrpc/com.atproto.repo.getRecord":
            return self._get_profile(connection, params)
        if parts.path.startswith("/did:"):
            account = self.accounts.get(parts.path[1:])
            if account is None:
                return _json(connection, 404, {"message": "DID not registered"})
            return _json(connection, 200, self._did_document(account))
        return _json(connection, 404, {"error": "NotFound", "message": "Not Found"})

    def _did_document(self, account: _Account) -> dict[str, Any]:
        return {
            "@context": ["https://www.w3.org/ns/did/v1"],
            "id": account.did,
            "alsoKnownAs": [f"at://{account.handle}"],
            "verificationMethod": [],
            "service": [
                {
                    "id": "#atproto_pds",
                    "type": "AtprotoPersonalDataServer",
                    "serviceEndpoint": self.http_url,
                }
            ],
        }

    def _get_profile(self, connection: ServerConnection, params: dict[str, list[str]]) -> Response:
        repo = params.get("repo", [""])[0]
        account = self.accounts.get(repo)
        if (
            account is None
            or account.display_name is None
            or params.get("collection", [""])[0] != "app.bsky.actor.profile"
            or params.get("rkey", [""])[0] != "self"
        ):
            return _json(
                connection,
                400,
                {"error": "RecordNotFound", "message": "Could not locate record"},
            )
        return _json(
            connection,
            200,
            {
                "uri": f"at://{repo}/app.bsky.actor.profile/self",
                "cid": _fake_cid(repo, "self", {}),
                "value": {"$type": "app.bsky.actor.profile", "displayName": account.display_name},
            },
        )

    def _search(
        self, connection: ServerConnection, request: Request, params: dict[str, list[str]]
    ) -> Response:
        auth = request.headers.get("Authorization", "")
        self.search_requests.append({"params": params, "authorization": auth})
        if not auth.startswith("Bearer ") or len(auth) <= len("Bearer "):
            return _json(
                connection, 401, {"error": "AuthMissing", "message": "Authentication Required"}
            )
        if self._search_failures:
            status, body, headers = self._search_failures.pop(0)
            response = _json(connection, status, body)
            for name, value in headers.items():
                response.headers[name] = value
            return response
        if not params.get("q"):
            return _json(
                connection,
                400,
                {"error": "InvalidRequest", "message": 'Error: Params must have the property "q"'},
            )
        try:
            limit = int(params.get("limit", ["25"])[0])
            offset = int(params.get("cursor", ["0"])[0])
            since = _parse_when(params.get("since", [None])[0])
            until = _parse_when(params.get("until", [None])[0])
        except ValueError as exc:
            return _json(connection, 400, {"error": "InvalidRequest", "message": str(exc)})
        if not 1 <= limit <= 100:
            return _json(
                connection,
                400,
                {"error": "InvalidRequest", "message": "limit must be between 1 and 100"},
            )
        tags = [t.lower() for t in params.get("tag", [])]
        terms = params["q"][0].split()
        hits = []
        for view, indexed_us in self._posts():
            record = view["record"]
            if tags and not all(t in _record_tags(record) for t in tags):
                continue
            if not tags and not all(_term_matches(term, record) for term in terms):
                continue
            if since is not None and indexed_us < since:
                continue
            if until is not None and indexed_us >= until:
                continue
            hits.append((indexed_us, view))
        hits.sort(key=lambda h: h[0], reverse=True)  # "latest" and "top" alike: newest first
        page = [view for _, view in hits[offset : offset + limit]]
        body: dict[str, Any] = {"posts": page, "hitsTotal": len(hits)}
        if offset + limit < len(hits):
            body["cursor"] = str(offset + limit)
        return _json(connection, 200, body)

    def _appview_document(self) -> dict[str, Any]:
        return {
            "@context": ["https://www.w3.org/ns/did/v1"],
            "id": self.appview_did,
            "service": [
                {
                    "id": "#bsky_appview",
                    "type": "BskyAppView",
                    "serviceEndpoint": f"http://localhost:{self.port}",
                }
            ],
        }

    def _thread(
        self, connection: ServerConnection, request: Request, params: dict[str, list[str]]
    ) -> Response:
        self.thread_requests.append(
            {
                "params": params,
                "authorization": request.headers.get("Authorization", ""),
                "proxy": request.headers.get("atproto-proxy"),
                "at": time.time(),
            }
        )
        if self._thread_failures:
            status, text, headers = self._thread_failures.pop(0)
            response = connection.respond(status, text)
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "application/json; charset=utf-8"
            for name, value in headers.items():
                response.headers[name] = value
            return response
        uri = params.get("uri", [""])[0]
        try:
            depth = int(params.get("depth", ["6"])[0])
            height = int(params.get("parentHeight", ["80"])[0])
        except ValueError as exc:
            return _json(connection, 400, {"error": "InvalidRequest", "message": str(exc)})
        if not uri or not 0 <= depth <= 1000 or not 0 <= height <= 1000:
            return _json(connection, 400, {"error": "InvalidRequest", "message": "bad params"})
        views = {view["uri"]: view for view, _ in sorted(self._posts(), key=lambda p: p[1])}
        if uri not in views:
            return _json(
                connection, 400, {"error": "NotFound", "message": f"Post not found: {uri}"}
            )
        children: dict[str, list[str]] = {}
        for view in views.values():
            parent = view["record"].get("reply", {}).get("parent", {}).get("uri")
            if parent:
                children.setdefault(parent, []).append(view["uri"])

        def down(node_uri: str, level: int) -> dict[str, Any]:
            node: dict[str, Any] = {"$type": THREAD_VIEW, "post": views[node_uri]}
            if level < depth:
                node["replies"] = [down(c, level + 1) for c in children.get(node_uri, [])]
                node["replies"] += self.thread_extras.get(node_uri, [])
            return node

        thread = down(uri, 0)
        node, steps = thread, 0
        while steps < height:
            parent = views[node["post"]["uri"]]["record"].get("reply", {}).get("parent", {})
            if parent.get("uri") not in views:
                break
            node["parent"] = {"$type": THREAD_VIEW, "post": views[parent["uri"]]}
            node, steps = node["parent"], steps + 1
        return _json(connection, 200, {"thread": thread})

    def _posts(self) -> list[tuple[dict[str, Any], int]]:
        """(postView, indexed time_us) of every post seen and not deleted, latest version."""
        posts: dict[str, tuple[dict[str, Any], int]] = {}
        for event in self.log:
            commit = event.get("commit")
            if event.get("kind") != "commit" or commit.get("collection") != POST:
                continue
            uri = f"at://{event['did']}/{POST}/{commit['rkey']}"
            if commit["operation"] == "delete":
                posts.pop(uri, None)
                continue
            first = posts.get(uri, (None, event["time_us"]))[1]
            account = self.accounts.get(event["did"])
            author: dict[str, Any] = {
                "did": event["did"],
                "handle": self._handles.get(event["did"], "handle.invalid"),
            }
            if account and account.display_name:
                author["displayName"] = account.display_name
            view = {
                "uri": uri,
                "cid": commit["cid"],
                "author": author,
                "record": commit["record"],
                "replyCount": 0,
                "repostCount": 0,
                "likeCount": 0,
                "quoteCount": 0,
                "indexedAt": _now_iso(first),
                "labels": [],
            }
            posts[uri] = (view, first)
        return list(posts.values())

    # --- relay from a PDS firehose -------------------------------------------------------

    async def _run_relay(self) -> None:
        assert self.upstream is not None
        base = self.upstream.replace("http://", "ws://").replace("https://", "wss://")
        seq: int | None = 0
        while True:
            url = f"{base}/xrpc/com.atproto.sync.subscribeRepos"
            if seq is not None:
                url += f"?cursor={seq}"
            try:
                async with connect(url, max_size=2**23) as ws:
                    async for message in ws:
                        seq = self._relay_frame(message, seq)
            except (ConnectionClosed, OSError):
                pass
            await asyncio.sleep(0.1)

    def _relay_frame(self, message: str | bytes, seq: int | None) -> int | None:
        if not isinstance(message, bytes):
            return seq
        header, body = libipld.decode_dag_cbor_multi(message)
        if header.get("op") != 1:
            return seq
        kind = header.get("t")
        if kind == "#commit":
            _, blocks = libipld.decode_car(body["blocks"]) if body.get("blocks") else ({}, {})
            for op in body.get("ops", []):
                collection, _, rkey = op["path"].partition("/")
                commit: dict[str, Any] = {
                    "rev": body.get("rev"),
                    "operation": op["action"],
                    "collection": collection,
                    "rkey": rkey,
                }
                if op["action"] != "delete":
                    commit["record"] = _json_model(blocks[op["cid"]])
                    commit["cid"] = libipld.encode_cid(op["cid"])
                self.emit({"did": body["repo"], "kind": "commit", "commit": commit})
        elif kind == "#identity":
            if body.get("handle"):
                self._handles[body["did"]] = body["handle"]
            identity = {"did": body["did"], "seq": body["seq"], "time": body["time"]}
            if body.get("handle"):
                identity["handle"] = body["handle"]
            self.emit({"did": body["did"], "kind": "identity", "identity": identity})
        elif kind == "#account":
            account = {
                "active": body.get("active", True),
                "did": body["did"],
                "seq": body["seq"],
                "time": body["time"],
            }
            self.emit({"did": body["did"], "kind": "account", "account": account})
        return body.get("seq", seq)


def _json(connection: ServerConnection, status: int, body: dict[str, Any]) -> Response:
    response = connection.respond(status, json.dumps(body))
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json; charset=utf-8"
    return response


def _fake_cid(did: str, rkey: str, record: dict[str, Any]) -> str:
    """A real CID (sha-256 of the record's DAG-CBOR) for pure-Python events."""
    digest = hashlib.sha256(libipld.encode_dag_cbor({"d": did, "k": rkey, "r": record})).digest()
    return libipld.encode_cid(bytes([1, 0x71, 0x12, 0x20]) + digest)


def _parse_when(value: str | None) -> int | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


def _record_tags(record: dict[str, Any]) -> set[str]:
    found = {t.lower() for t in record.get("tags", []) if isinstance(t, str)}
    for facet in record.get("facets", []) or []:
        for feature in facet.get("features", []):
            if feature.get("$type") == _TAG_FACET:
                found.add(str(feature.get("tag", "")).lower())
    return found


def _term_matches(term: str, record: dict[str, Any]) -> bool:
    if term.startswith("#"):
        return term[1:].lower() in _record_tags(record)
    return term.lower() in str(record.get("text", "")).lower()
