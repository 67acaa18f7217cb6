"""Which requests the server answers at all, before any route runs.

* In production the ``Host`` header must name this site: the host of
  ``HASHROOM_PUBLIC_URL``, one of ``HASHROOM_ALLOWED_HOSTS`` or loopback (health checks on
  the machine itself). A page on an attacker's domain that re-points its DNS at this server
  (DNS rebinding) then gets ``400``, not the app.
* With the built-in development secret, only connections that arrived on a loopback
  interface are served, however the server was started (``uvicorn --host 0.0.0.0``
  included): anyone can forge a session cookie signed with a secret printed in the source.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from .config import Settings, is_loopback_host


def allowed_host_patterns(settings: Settings) -> list[str]:
    """The host names (lower case, ``*.`` prefix for subdomains) served in production."""
    names = [h.strip().lower().rstrip(".") for h in settings.allowed_hosts if h.strip()]
    if settings.public_url:
        host = urlsplit(settings.public_url).hostname
        if host:
            names.append(host.lower().rstrip("."))
    return names


def host_name(header: str) -> str:
    """The name part of a Host header: no port, no trailing dot, brackets kept off IPv6."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    name = header.rsplit(":", 1)[0] if header.count(":") == 1 else header
    return name.rstrip(".")


def host_allowed(name: str, patterns: list[str]) -> bool:
    if is_loopback_host(name):
        return True
    for pattern in patterns:
        if pattern == "*" or name == pattern:
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    return False


class RequestGuard:
    """Plain ASGI middleware (HTTP and websocket) applying the two rules above."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.production = settings.env == "production"
        self.patterns = allowed_host_patterns(settings)
        self.loopback_only = settings.uses_dev_secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self.loopback_only:
            server = scope.get("server") or ("127.0.0.1", 0)
            if server[0] and not is_loopback_host(str(server[0])):
                await _refuse(
                    scope,
                    receive,
                    send,
                    403,
                    "this server runs with the built-in development secret and answers on "
                    "loopback only: set HASHROOM_SECRET_KEY (and HASHROOM_ENV=production)",
                )
                return
        if self.production:
            headers = dict(scope.get("headers") or [])
            name = host_name(headers.get(b"host", b"").decode("latin-1"))
            if not host_allowed(name, self.patterns):
                await _refuse(
                    scope,
                    receive,
                    send,
                    400,
                    f"unknown host {name[:100]!r}: this server answers to the host of "
                    "HASHROOM_PUBLIC_URL and HASHROOM_ALLOWED_HOSTS",
                )
                return
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    if scope["type"] == "websocket":
        await receive()  # the websocket.connect message
        await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
        return
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
