"""Supervision of background tasks: strong references, crash logging, graceful cancel.

asyncio keeps only weak references to tasks, so an unreferenced task can vanish mid-flight;
and an exception in a task nobody awaits is reported only at garbage collection. Every
long-lived task in Hashroom is started through :class:`Supervisor` instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class Supervisor:
    """Owns background tasks until they finish or :meth:`shutdown` cancels them."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    def start(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as task ``name`` (replacing a finished task of the same name)."""
        old = self._tasks.get(name)
        if old is not None and not old.done():
            coro.close()
            raise RuntimeError(f"task {name!r} is already running")
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks[name] = task
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        if self._tasks.get(task.get_name()) is task:
            del self._tasks[task.get_name()]
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("background task %s crashed", task.get_name(), exc_info=exc)

    def running(self) -> list[str]:
        """Names of the tasks still running."""
        return sorted(self._tasks)

    async def stop(self, name: str, grace: float = 5.0) -> None:
        """Cancel one task and wait for it (at most ``grace`` seconds)."""
        task = self._tasks.get(name)
        if task is None:
            return
        task.cancel()
        await asyncio.wait({task}, timeout=grace)

    async def shutdown(self, grace: float = 5.0) -> None:
        """Cancel every task; wait up to ``grace`` seconds for them to finish."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                log.warning("task %s did not stop within %.1fs", task.get_name(), grace)
