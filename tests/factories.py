"""Builders for test data through the public API, and a small websocket client."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from app.outbound import OutboundPolicy, make_ws_connect

# The app's guarded websocket connect as development mode builds it (loopback allowed), for
# protocol tests that construct followers themselves.
DEV_WS_CONNECT = make_ws_connect(OutboundPolicy(allow_private=True))


async def create_chat(base: str, hashtag: str = "edchat", **extra: Any) -> dict[str, Any]:
    """A chat following ``hashtag`` (or ``hashtags=[…]`` in ``extra``)."""
    body = {"title": f"#{hashtag} test", "network": "native", **extra}
    if "hashtags" not in extra:
        body["hashtag"] = hashtag
    async with httpx.AsyncClient(base_url=base) as http:
        r = await http.post("/api/chats", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def post(
    base: str, slug: str, text: str, author: str = "Tess", in_reply_to: int | None = None
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base) as http:
        r = await http.post(
            f"/api/chats/{slug}/posts",
            json={"text": text, "author": author, "in_reply_to": in_reply_to},
        )
    assert r.status_code == 201, r.text
    return r.json()


async def signed_in_browser(base: str, slug: str, kind: str, secret: str) -> Browser:
    """A cookie-keeping client that handed ``secret`` over the way a link's script does:
    ``kind`` "key" (a moderator key) or "host" (a host link's token)."""
    http = httpx.AsyncClient(base_url=base, follow_redirects=True)
    path = f"/c/{slug}/{'moderate' if kind == 'key' else 'host'}"
    form = await http.get(path)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)[1]  # type: ignore[index]
    page = await http.post(
        path, data={"csrf_token": token, "key" if kind == "key" else "token": secret}
    )
    assert page.status_code == 200 and str(page.url).endswith(f"/c/{slug}"), page.text[:500]
    return Browser(http, re.search(r'data-csrf="([^"]+)"', page.text)[1])  # type: ignore[index]


async def moderator_browser(base: str, chat: dict[str, Any]) -> Browser:
    """A browser session that opened the chat's moderator link."""
    return await signed_in_browser(base, chat["slug"], "key", chat["moderator_key"])


async def host_link(base: str, chat: dict[str, Any], name: str, role: str = "host") -> str:
    """A host link for ``name``, made with the chat's moderator key; returns its token."""
    async with httpx.AsyncClient(base_url=base) as http:
        r = await http.post(
            f"/api/chats/{chat['slug']}/host-links",
            json={"name": name, "role": role},
            headers={"Authorization": f"Bearer {chat['moderator_key']}"},
        )
    assert r.status_code == 201, r.text
    return r.json()["host_url"].split("#host=", 1)[1]


async def host_browser(base: str, chat: dict[str, Any], name: str, role: str = "host") -> Browser:
    """A browser session that opened a host link for ``name``."""
    token = await host_link(base, chat, name, role)
    return await signed_in_browser(base, chat["slug"], "host", token)


class Browser:
    """A cookie-keeping HTTP client and its page's CSRF token, like a signed-in tab."""

    def __init__(self, http: httpx.AsyncClient, csrf: str) -> None:
        self.http = http
        self.csrf = csrf

    async def post(self, slug: str, text: str, **fields: Any) -> dict[str, Any]:
        """Post in chat ``slug`` from this browser; returns the stored post."""
        r = await self.http.post(
            f"/api/chats/{slug}/posts",
            json={"text": text, **fields},
            headers={"X-CSRF-Token": self.csrf},
        )
        assert r.status_code == 201, r.text
        return r.json()

    async def close(self) -> None:
        await self.http.aclose()


class LiveClient:
    """A websocket client of one room that records every frame it receives."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.frames: list[dict[str, Any]] = []

    @classmethod
    async def open(
        cls,
        ws_base: str,
        slug: str,
        origin: str | None = None,
        max_queue: int | None = 16,
        **params: Any,
    ) -> LiveClient:
        query = "&".join(f"{k}={v}" for k, v in params.items() if v is not None)
        url = f"{ws_base}/api/chats/{slug}/live" + (f"?{query}" if query else "")
        origin = origin or ws_base.replace("ws://", "http://")
        conn = await connect(url, origin=origin, max_size=None, max_queue=max_queue)  # type: ignore[arg-type]
        return cls(conn)

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next non-ping frame."""
        while True:
            frame = json.loads(await asyncio.wait_for(self.conn.recv(), timeout))
            if frame["type"] != "ping":
                self.frames.append(frame)
                return frame

    async def until(self, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        """Read frames until one satisfies ``predicate``; return it."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(
                    f"no matching frame; got types {[f['type'] for f in self.frames]}"
                )
            frame = await self.next(remaining)
            if predicate(frame):
                return frame

    async def close(self) -> None:
        await self.conn.close()


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 8.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
