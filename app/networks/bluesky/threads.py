"""Thread context for a Bluesky follower: the questions it delivered whose threads it
watches, and the background cycle that fetches their untagged replies."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from app.qa import question_number

from ..base import NetworkError, RemotePost, RemoteRejected
from .appview import read_thread

log = logging.getLogger(__name__)

# A chat asks one question every few minutes, so the last 20 cover any session; 3 thread
# fetches a cycle (one a minute by default) are a sliver of the public AppView's 3,000
# requests per 5 minutes per address.
CONTEXT_QUESTIONS = 20
CONTEXT_REQUESTS_PER_CYCLE = 3
# The question check reads only the opening of a post (a marker opens it), so a hostile
# record with megabytes of text costs what a normal post does.
QUESTION_PEEK = 2000

FetchThread = Callable[[str], Awaitable[dict[str, Any]]]


class QuestionThreads:
    """The questions whose threads a follower watches — the latest :data:`CONTEXT_QUESTIONS`,
    each for ``window`` seconds after first seen — and the cycle, run as a background task
    every ``interval`` seconds, that reads up to :data:`CONTEXT_REQUESTS_PER_CYCLE` of their
    threads (the least recently fetched) with ``fetch`` (a ``getPostThread`` answer for a
    uri). Replies carrying one of ``tags`` are left to the stream."""

    def __init__(self, fetch: FetchThread, tags: Sequence[str], *, interval: float, window: float):
        self.fetch = fetch
        self.tags = list(tags)
        self.tag = self.tags[0]  # for logs
        self.interval = interval
        self.window = window
        self._questions: OrderedDict[str, float] = OrderedDict()  # uri → first seen (monotonic)
        self.due = 0.0  # monotonic time of the next cycle
        self.task: asyncio.Task[list[RemotePost]] | None = None

    @property
    def watching(self) -> bool:
        """True while at least one question is watched."""
        return bool(self._questions)

    def remember(self, post: RemotePost) -> None:
        """Watch ``post``'s thread when it is a question (its text opens with "Q1:" …)."""
        if post.remote_id in self._questions:
            return
        if question_number(post.text[:QUESTION_PEEK]) is None:
            return
        self._questions[post.remote_id] = time.monotonic()
        while len(self._questions) > CONTEXT_QUESTIONS:
            oldest = min(self._questions, key=self._questions.__getitem__)
            del self._questions[oldest]

    def collect(self) -> list[RemotePost]:
        """Starts a cycle when one is due; returns the replies a finished one found (empty
        while none has finished). Never raises (but for cancellation)."""
        task = self.task
        if task is None:
            if self._questions and time.monotonic() >= self.due:
                self.task = asyncio.get_running_loop().create_task(self.cycle())
            return []
        if not task.done():
            return []
        self.task = None
        if task.cancelled():
            return []
        if task.exception() is not None:  # a bug, not the network: log it, keep following
            log.error("thread context for #%s failed", self.tag, exc_info=task.exception())
            return []
        return task.result()

    def cancel(self) -> None:
        """Stop a cycle under way, if any."""
        if self.task is not None:
            self.task.cancel()

    async def cycle(self) -> list[RemotePost]:
        """One thread-context cycle: the replies found under up to
        :data:`CONTEXT_REQUESTS_PER_CYCLE` watched questions (the least recently fetched).

        Network failures and malformed answers are logged and end the cycle early; the next
        comes ``interval`` seconds later, or when a 429's reset says. A question the AppView
        refuses (400, e.g. ``NotFound`` once deleted) or reports gone is forgotten.
        """
        now = time.monotonic()
        self.due = now + self.interval
        for uri, first_seen in list(self._questions.items()):
            if now - first_seen > self.window:
                del self._questions[uri]
        found: list[RemotePost] = []
        for uri in list(self._questions)[:CONTEXT_REQUESTS_PER_CYCLE]:
            if uri not in self._questions:
                continue  # pushed out by newer questions while a fetch was under way
            self._questions.move_to_end(uri)
            try:
                answer = await self.fetch(uri)
            except RemoteRejected as exc:
                log.info("thread of %s (#%s) no longer watched: %s", uri, self.tag, exc)
                self._questions.pop(uri, None)
                continue
            except NetworkError as exc:
                if exc.retry_after is not None:
                    self.due = max(self.due, time.monotonic() + exc.retry_after)
                log.warning("thread of %s (#%s) not fetched: %s", uri, self.tag, exc)
                break
            replies = read_thread(answer, uri, skip_tag=self.tags)
            if replies is None:
                log.info("thread of %s (#%s) is gone; no longer watched", uri, self.tag)
                self._questions.pop(uri, None)
                continue
            found.extend(replies)
        return found
