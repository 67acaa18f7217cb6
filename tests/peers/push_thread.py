"""The push service peer on its own event loop in a thread, for the synchronous browser tests."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from tests.peers.push import Message, PushService


class ThreadedPushService:
    """``with ThreadedPushService() as push:`` — :class:`PushService` running in a thread;
    its methods are called on that loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.service = PushService()

    def _run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> ThreadedPushService:
        self.thread.start()
        self._run(self.service.__aenter__())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._run(self.service.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    @property
    def url(self) -> str:
        return self.service.url

    def call(self, fn: Any, *args: Any) -> Any:
        """Run a plain method of the service on its loop."""

        async def run() -> Any:
            return fn(*args)

        return self._run(run())

    def wait_for(self, count: int, endpoint: str, timeout: float = 15.0) -> list[Message]:
        return self._run(self.service.wait_for(count, endpoint, timeout), timeout + 5)
