"""Thread context for a Mastodon follower: the questions it delivered whose threads it
watches, and one fetch cycle of their replies. Replies to a question often drop the hashtag,
so the tag timeline never shows them; the questions' threads are read instead."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from app.networks.base import Batch, Change, NetworkError, RemotePost, Upsert

from .client import MastodonApi
from .mapping import opens_with_question

log = logging.getLogger(__name__)

# A chat asks one question every few minutes, so the last 20 cover any session; 3 requests a
# cycle (one a minute by default) use about 5% of Mastodon's 300-requests-per-5-minutes budget.
CONTEXT_QUESTIONS = 20
CONTEXT_REQUESTS_PER_CYCLE = 3


class QuestionThreads:
    """The questions whose threads to watch: the latest :data:`CONTEXT_QUESTIONS`, each for
    ``window`` seconds after first seen; every ``interval`` seconds a cycle fetches up to
    :data:`CONTEXT_REQUESTS_PER_CYCLE` of them, round-robin."""

    def __init__(self, interval: float, window: float):
        self.interval = interval
        self.window = window
        # Local id → monotonic time first seen. Ordered by when each was last fetched, so the
        # requests of a cycle go round-robin.
        self._questions: OrderedDict[str, float] = OrderedDict()
        self.due = 0.0  # monotonic time of the next cycle

    def restart(self) -> None:
        """Forget every question; the first cycle comes ``interval`` seconds from now."""
        self._questions.clear()
        self.due = time.monotonic() + self.interval

    def remember(self, post: RemotePost) -> None:
        """Watch ``post``'s thread when it is a question (its text opens with "Q1:" …)."""
        if post.local_id is None or post.local_id in self._questions:
            return
        if not opens_with_question(post.html):
            return
        self._questions[post.local_id] = time.monotonic()
        while len(self._questions) > CONTEXT_QUESTIONS:
            oldest = min(self._questions, key=self._questions.__getitem__)
            del self._questions[oldest]

    async def cycle(
        self,
        api: MastodonApi,
        parse: Callable[[Any], RemotePost | None],
        fresh: Callable[[RemotePost], bool],
        tag: str,
    ) -> Batch | None:
        """One thread-context cycle: the replies to watched questions that ``parse`` reads
        and ``fresh`` has not seen, marked ``extra["thread_context"]``, or None.

        Never raises NetworkError or malformed-data errors: they are logged and the cycle
        ends early; the next one comes ``interval`` seconds later. A cycle stops while the
        rate limit is spent.
        """
        now = time.monotonic()
        self.due = now + self.interval
        for local_id, first_seen in list(self._questions.items()):
            if now - first_seen > self.window:
                del self._questions[local_id]
        changes: list[Change] = []
        for local_id in list(self._questions)[:CONTEXT_REQUESTS_PER_CYCLE]:
            if api.throttle_delay() > 0:
                log.info("mastodon %s: rate limit spent, thread context waits", api.host)
                break
            self._questions.move_to_end(local_id)
            try:
                context = await api.status_context(local_id)
            except NetworkError as exc:
                log.warning(
                    "mastodon %s #%s: thread of %s not fetched: %s", api.host, tag, local_id, exc
                )
                break
            for data in context["descendants"]:
                post = parse(data)
                if post is not None and fresh(post):
                    post.extra["thread_context"] = True
                    changes.append(Upsert(post))
        return Batch(changes=changes) if changes else None
