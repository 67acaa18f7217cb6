"""Baseline for the catch-up storm: the websockets library's server replaying frames it holds.

It keeps every frame published to it in a list and, when a client connects with
``?after=X``, sends the frames after ``X`` one ``await ws.send()`` at a time, then keeps the
connection open. A client without ``after`` gets a small snapshot (the head offset and the
epoch). ``GET /healthz`` is answered 200 by the ``process_request`` hook. No database, no
framework, no hub: the floor the app's catch-up is compared with.

Protocol (all on stdio, one line each):
    stdout  ``LISTENING <port>`` once the socket is bound
    stdin   ``PUB [text]``  append the next frame (see ``--template``; the text is ignored)
                    and broadcast it
    stdin   ``QUIT`` (or end of input)  close every connection and exit
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from post_text import post_text
from raw_server import EPOCH, FrameMaker, encode, run_with_loop
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response


class Frames:
    """The frames published so far, built from captured app frames or synthetic ones."""

    def __init__(self, frame_bytes: int, template: Path | None) -> None:
        self.sent: list[str] = []
        self.captured: list[dict] = []
        self.maker = FrameMaker(frame_bytes)
        if template is not None:
            lines = template.read_text().splitlines()
            self.captured = [json.loads(line) for line in lines if line.strip()]

    def publish(self) -> str:
        """Append and return the next frame: offset = its position, epoch = the server's."""
        offset = len(self.sent) + 1
        if self.captured:
            frame = dict(self.captured[(offset - 1) % len(self.captured)])
            text = encode({**frame, "offset": offset, "epoch": EPOCH})
        else:
            text = self.maker.frame(offset, post_text(offset - 1))
        self.sent.append(text)
        return text


def health(connection: ServerConnection, request: Request) -> Response | None:
    """Answer ``GET /healthz`` (any request without an upgrade) with 200, like the app."""
    if request.path.startswith("/healthz"):
        body = b'{"status":"ok"}'
        headers = Headers(
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                # websockets closes the connection after this answer: say so.
                ("Connection", "close"),
            ]
        )
        return Response(HTTPStatus.OK, "OK", headers, body)
    return None


async def serve_until_quit(host: str, port: int, frames: Frames) -> None:
    """Serve on ``host:port``; replay after ``?after=``; append a frame per ``PUB`` line."""

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        query = parse_qs(urlsplit(ws.request.path).query)
        if "after" not in query:
            head = len(frames.sent)
            await ws.send(
                json.dumps({"type": "snapshot", "offset": head, "epoch": EPOCH, "posts": []})
            )
        else:
            after = int(query["after"][0])
            # Indexing, not a slice copy per client: frames only ever get appended.
            for i in range(after, len(frames.sent)):
                await ws.send(frames.sent[i])
        await ws.wait_closed()

    # The same accept backlog as uvicorn (2048), so a burst of handshakes is judged alike.
    async with serve(
        handler,
        host,
        port,
        compression=None,
        process_request=health,
        max_queue=64,
        backlog=2048,
        ping_interval=None,
    ) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"LISTENING {bound}", flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode():
            command = line.split(maxsplit=1)[0] if line.strip() else ""
            if command == "QUIT":
                break
            if command == "PUB":
                broadcast(server.connections, frames.publish())
        server.close()


def main() -> None:
    """Parse arguments, pick the event loop and serve until told to quit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--frame-bytes", type=int, default=2800, help="synthetic frame size")
    parser.add_argument(
        "--template",
        type=Path,
        help="file of app frames, one JSON per line, replayed in turn with offset and epoch "
        "rewritten (default: synthetic frames of --frame-bytes)",
    )
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto")
    args = parser.parse_args()
    run_with_loop(
        serve_until_quit(args.host, args.port, Frames(args.frame_bytes, args.template)),
        args.loop,
    )


if __name__ == "__main__":
    main()
