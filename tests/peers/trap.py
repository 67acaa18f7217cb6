"""A loopback HTTP server that counts every TCP connection it accepts, for outbound tests.

It stands in for whatever an attacker points the server at (its own loopback, a private
service): a test arranges answers that would leak if read back (:data:`MARKER`), then
asserts either that the trap saw no connection at all, or that the marker never reached the
user. Plain HTTP/1.1 with ``Connection: close``; any path without an answer gets 404.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from dataclasses import dataclass
from typing import Any

MARKER = "SECRET-INTERNAL-7f3a9c"
MAX_HEAD = 64 * 1024


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def json_answer(data: Any, status: int = 200) -> Answer:
    return Answer(status, json.dumps(data).encode())


def marker_page(status: int = 500) -> Answer:
    """An HTML error page carrying :data:`MARKER`, as an internal admin page might."""
    body = f"<html><body><h1>Internal</h1><p>{MARKER} db=10.0.0.5 pw=hunter2</p></body></html>"
    return Answer(status, body.encode(), "text/html")


def gzip_bomb(inflated: int) -> Answer:
    """A gzip body of a few KB that inflates to ``inflated`` bytes of JSON-ish spaces."""
    return Answer(200, gzip.compress(b" " * inflated), headers=(("Content-Encoding", "gzip"),))


class TrapServer:
    """``async with TrapServer(host) as trap``: ``trap.port``, ``trap.connections``,
    ``trap.paths`` (request paths in order) and ``trap.answers[path] = Answer(...)``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.connections = 0
        self.paths: list[str] = []
        self.answers: dict[str, Answer] = {}
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> TrapServer:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def answer_for(self, path: str) -> Answer:
        bare = path.split("?", 1)[0]
        return self.answers.get(bare) or Answer(404, b'{"error":"Record not found"}')

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.close()  # e.g. a TLS ClientHello: counted, never answered
            return
        lines = head[:MAX_HEAD].decode("latin-1").split("\r\n")
        method, path = (lines[0].split(" ") + ["", ""])[:2]
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length" and value.strip().isdigit():
                length = int(value.strip())
        if length:
            await reader.readexactly(min(length, MAX_HEAD))
        self.paths.append(path)
        answer = self.answer_for(path)
        extra = "".join(f"{k}: {v}\r\n" for k, v in answer.headers)
        writer.write(
            (
                f"HTTP/1.1 {answer.status} X\r\nContent-Type: {answer.content_type}\r\n"
                f"Content-Length: {len(answer.body)}\r\n{extra}Connection: close\r\n\r\n"
            ).encode()
            + (answer.body if method != "HEAD" else b"")
        )
        try:
            await writer.drain()
        finally:
            writer.close()
