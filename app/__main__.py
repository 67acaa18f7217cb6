"""``python -m app``: serve Hashroom with uvicorn on HOST:PORT (default 127.0.0.1:8000).

``python -m app demo-link`` prints the demo chat's moderator link instead (it is never
logged).
"""

from __future__ import annotations

import sys

import uvicorn

from .config import get_settings


def demo_link() -> str:
    """The demo chat's moderator link (its key derives from HASHROOM_SECRET_KEY; after a
    rotation through the API, the rotated key is the one that works)."""
    from .rooms import DEMO_SLUG, demo_moderator_key

    settings = get_settings()
    base = settings.public_url.rstrip("/") or f"http://{settings.host}:{settings.port}"
    return f"{base}/c/{DEMO_SLUG}#key={demo_moderator_key(settings.secret_key)}"


def main() -> None:
    if sys.argv[1:] == ["demo-link"]:
        print(demo_link())  # noqa: T201 - the command's output
        return
    if sys.argv[1:]:
        sys.exit(f"usage: python -m app [demo-link] (unknown: {' '.join(sys.argv[1:])})")
    settings = get_settings()
    uvicorn.run(
        "app.main:app_factory",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        # The sans-I/O implementation writes frames without awaiting unless the client's
        # socket buffer is full, which the hub's fan-out relies on (see app/hub.py).
        ws="websockets-sansio",
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_interval,
        ws_max_size=64 * 1024,
        # Compression costs one deflate per frame per reader (over half the server's CPU in
        # bench/fanout.py); frames are small JSON and fan-out is the hot path, so it is off.
        ws_per_message_deflate=False,
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
