"""``python -m app``: serve Hashroom with uvicorn on HOST:PORT (default 127.0.0.1:8000)."""

from __future__ import annotations

import uvicorn

from .config import get_settings


def main() -> None:
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
        # X-Forwarded-For is believed only from HASHROOM_TRUSTED_PROXIES, by the app itself
        # (app/limits.py); uvicorn's own default would trust any local peer's header.
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
