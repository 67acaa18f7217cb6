"""Baseline for the fan-out benchmark: the websockets library's own server and ``broadcast()``.

It sends frames shaped and sized like Hashroom's ``post`` frames, one per ``PUB`` line read on
standard input, so the same publisher drives it and the app at the same rate. Nothing else runs
in it: no database, no framework, no per-client queue. That is the floor the app is compared with.

Protocol (all on stdio, one line each):
    stdout  ``LISTENING <port>`` once the socket is bound
    stdin   ``PUB <text>``  encode one post frame with that text, stamp ``ts``, broadcast it
    stdin   ``QUIT`` (or end of input)  close every connection and exit
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from post_text import SEQ_MARK
from websockets.asyncio.server import ServerConnection, broadcast, serve

EPOCH = "raw"


def encode(frame: dict[str, Any]) -> str:
    """Compact JSON with UTF-8 kept as is: the encoding Hashroom uses for its frames."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


_MARKUP = (
    '<div class="post-main"><header class="post-head"><span class="post-author">'
    '<span class="post-name">bench</span> <span class="post-handle">@bench</span></span> '
    '<span class="net net-native" title="native">native</span> <time class="rel-time" '
    'datetime="2024-01-01T00:00:00Z">00:00</time></header><footer class="post-actions">'
    '<button type="button" class="act act-reply" data-handle="bench">Reply</button></footer>'
)
"""Filler for synthetic frames: markup, so it compresses about as well as a real post does."""


class FrameMaker:
    """Builds ``post`` frames of one size: from a captured app frame, or synthetic.

    A captured frame is the most faithful baseline: same fields, same bytes, same
    compressibility. Only ``offset``, ``ts`` and the post's sequence mark change per frame.
    """

    def __init__(self, frame_bytes: int, template: str | None = None) -> None:
        self.frame_bytes = frame_bytes
        self.template: dict[str, Any] | None = None
        self.mark = ""
        if template:
            self.template = json.loads(template)
            found = SEQ_MARK.search(self.template["post"]["text"])
            if found is None:
                raise ValueError("template frame has no bench sequence mark in post.text")
            self.mark = found.group(0)

    def frame(self, offset: int, text: str) -> str:
        """Return the frame for ``text`` with ``ts`` = now (standing in for the commit time)."""
        if self.template is None:
            return self._synthetic(offset, text)
        frame = dict(self.template, offset=offset, ts=time.time())
        found = SEQ_MARK.search(text)
        encoded = encode(frame)
        return encoded.replace(self.mark, found.group(0)) if found else encoded

    def _synthetic(self, offset: int, text: str) -> str:
        frame: dict[str, Any] = {
            "type": "post",
            "offset": offset,
            "epoch": EPOCH,
            "ts": time.time(),
            "post": {
                "id": offset,
                "network": "native",
                "remote_id": f"native-{offset}",
                "url": None,
                "author": {"name": "bench", "handle": "bench", "avatar": None, "url": None},
                "html": f"<p>{text}</p>",
                "text": text,
                "spoiler_text": "",
                "sensitive": False,
                "media": [],
                "quote": None,
                "language": None,
                "created_at": "2024-01-01T00:00:00Z",
                "edited_at": None,
                "in_reply_to": None,
                "reposted_by": None,
                "question": None,
                "answer": None,
                "hidden": False,
                "pending": False,
            },
            "html": f'<article class="post" id="post-{offset}">',
        }
        head = frame["html"]
        encoded = encode(frame)
        room = self.frame_bytes - len(encoded.encode())
        filler = _MARKUP * (max(room, 0) // len(_MARKUP) + 1)
        while room > 0:
            # JSON escapes each '"' of the markup, so trim until the encoded frame fits.
            frame["html"] = head + filler[:room]
            encoded = encode(frame)
            over = len(encoded.encode()) - self.frame_bytes
            if over <= 0:
                break
            room -= over
        short = self.frame_bytes - len(encoded.encode())
        if room > 0 and short > 0:
            frame["html"] += " " * short
            encoded = encode(frame)
        return encoded


async def serve_until_quit(
    host: str, port: int, maker: FrameMaker, compression: str | None
) -> None:
    """Serve websockets on ``host:port`` and broadcast one frame per ``PUB`` line until QUIT."""

    async def handler(ws: ServerConnection) -> None:
        # Like the app, a reader's first frame is a snapshot; the bench waits for it.
        await ws.send(json.dumps({"type": "snapshot", "offset": 0, "epoch": EPOCH, "posts": []}))
        await ws.wait_closed()

    # The same accept backlog as uvicorn (2048), so bursts of handshakes are judged alike.
    async with serve(
        handler, host, port, compression=compression, max_queue=64, backlog=2048
    ) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"LISTENING {bound}", flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        offset = 0
        while line := (await reader.readline()).decode():
            command, _, rest = line.rstrip("\n").partition(" ")
            if command == "QUIT":
                break
            if command == "PUB":
                offset += 1
                broadcast(server.connections, maker.frame(offset, rest))
        server.close()


def main() -> None:
    """Parse arguments, pick the event loop and serve until told to quit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--frame-bytes", type=int, default=2800, help="synthetic frame size")
    parser.add_argument(
        "--template", help="file holding one app post frame to replay instead of synthetic ones"
    )
    parser.add_argument(
        "--compression",
        choices=["none", "deflate"],
        default="none",
        help="permessage-deflate costs one compression per client per frame; off by default",
    )
    parser.add_argument(
        "--loop",
        choices=["auto", "asyncio", "uvloop"],
        default="auto",
        help="auto = uvloop when installed, as uvicorn does",
    )
    args = parser.parse_args()
    template = Path(args.template).read_text() if args.template else None
    coro = serve_until_quit(
        args.host,
        args.port,
        FrameMaker(args.frame_bytes, template),
        None if args.compression == "none" else "deflate",
    )
    run_with_loop(coro, args.loop)


def run_with_loop(coro: Any, loop: str) -> None:
    """Run ``coro`` on uvloop when asked (or when ``auto`` and installed), else plain asyncio."""
    if loop in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise
        else:
            uvloop.run(coro)
            return
    asyncio.run(coro)


if __name__ == "__main__":
    main()
