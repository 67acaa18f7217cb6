"""What reading X costs and where it resumes: the rate limit of each endpoint (its
``x-rate-limit-*`` headers), the read budget per hour and per session, and the follower's
cursor, which carries the budget's counts."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(slots=True)
class RateLimit:
    """The latest ``x-rate-limit-*`` headers seen for one endpoint."""

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None  # epoch seconds

    def wait(self, now: float | None = None) -> float:
        """Seconds to wait before the next call: until the reset when nothing remains."""
        now = time.time() if now is None else now
        if self.remaining is not None and self.remaining <= 0 and self.reset is not None:
            return max(0.0, self.reset - now)
        return 0.0


@dataclass(slots=True)
class ReadBudget:
    """Posts read per clock hour and per session, with the estimated cost.

    The counts travel in the source's cursor, so they survive restarts and are committed with
    the posts they paid for. ``session`` names the current session (a scheduled session's
    start, or the UTC day for chats without a schedule); a new name starts a new count.
    """

    per_hour: int
    per_session: int
    cost_per_read: float
    session: str = ""
    hour: str = ""
    hour_reads: int = 0
    session_reads: int = 0

    def roll(self, now: datetime, session: str) -> None:
        hour = now.strftime("%Y-%m-%dT%H")
        if hour != self.hour:
            self.hour, self.hour_reads = hour, 0
        if session != self.session:
            self.session, self.session_reads = session, 0

    def left(self) -> int:
        """Posts that may still be read now (0 when either budget is spent)."""
        return max(0, min(self.per_hour - self.hour_reads, self.per_session - self.session_reads))

    def spend(self, n: int) -> None:
        self.hour_reads += n
        self.session_reads += n

    def exhausted_by(self) -> str | None:
        if self.session_reads >= self.per_session:
            return "session"
        if self.hour_reads >= self.per_hour:
            return "hour"
        return None

    def as_json(self) -> dict[str, Any]:
        """What moderators and operators see: reads, limits and the estimated spend (USD)."""
        return {
            "hour_reads": self.hour_reads,
            "per_hour": self.per_hour,
            "session_reads": self.session_reads,
            "per_session": self.per_session,
            "estimated_cost_session": round(self.session_reads * self.cost_per_read, 4),
            "estimated_cost_hour": round(self.hour_reads * self.cost_per_read, 4),
            "cost_per_read": self.cost_per_read,
        }


@dataclass(slots=True)
class Cursor:
    """Where following resumes (``since_id``) and what the budget has spent so far."""

    since_id: str | None = None
    hour: str = ""
    hour_reads: int = 0
    session: str = ""
    session_reads: int = 0

    @classmethod
    def load(cls, raw: str | None) -> Cursor:
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
        except ValueError:
            return cls(since_id=raw if raw.isdigit() else None)
        if not isinstance(data, dict):
            return cls()
        since = data.get("since_id")
        return cls(
            since_id=since if isinstance(since, str) and since.isdigit() else None,
            hour=str(data.get("hour", ""))[:20],
            hour_reads=_int(data.get("hour_reads")),
            session=str(data.get("session", ""))[:40],
            session_reads=_int(data.get("session_reads")),
        )

    def dump(self, budget: ReadBudget) -> str:
        return json.dumps(
            {
                "since_id": self.since_id,
                "hour": budget.hour,
                "hour_reads": budget.hour_reads,
                "session": budget.session,
                "session_reads": budget.session_reads,
            },
            separators=(",", ":"),
        )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def newer(a: str | None, b: str | None) -> str | None:
    """The larger of two snowflake ids (compared as integers, never as floats)."""
    if not a:
        return b
    if not b:
        return a
    return a if int(a) >= int(b) else b
