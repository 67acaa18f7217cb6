"""What a Mastodon response says besides its data: the rate-limit headers
(``X-RateLimit-Remaining``, ``X-RateLimit-Reset``, ``Retry-After``) read into delays, and the
error name of a refusal, the only part of an error body ever shown."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from .mapping import parse_datetime, str_or_none

# Below this an X-RateLimit-Reset number is a delay in seconds, not an epoch (2001-09-09).
_EPOCH_FLOOR = 1_000_000_000


def parse_reset(value: str | None, *, now: float | None = None) -> float | None:
    """The moment a rate-limit window resets, as Unix time (seconds); None when unreadable.

    Accepts Mastodon's ISO-8601 timestamp ("2024-05-01T12:05:00.123456Z"), epoch seconds
    ("1714565100", as other servers send) and, for small numbers, a delay in seconds.
    """
    text = str_or_none(value)
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        moment = parse_datetime(text)
        return moment.timestamp() if moment else None
    if number != number or number < 0:  # NaN or negative
        return None
    if number < _EPOCH_FLOOR:
        return (time.time() if now is None else now) + number
    return number


def retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait after a 429: until ``X-RateLimit-Reset``, else ``Retry-After``."""
    now = time.time() if now is None else now
    reset = parse_reset(headers.get("x-ratelimit-reset"), now=now)
    if reset is not None:
        return max(0.0, reset - now)
    after = str_or_none(headers.get("retry-after"))
    if after is not None:
        try:
            return max(0.0, float(after))
        except ValueError:
            pass
        try:
            moment = parsedate_to_datetime(after)  # Retry-After may be an HTTP-date
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return max(0.0, moment.timestamp() - now)
    return None


def throttle_delay(headers: Mapping[str, str], *, now: float | None = None) -> float:
    """Seconds to hold the next request: > 0 only when ``X-RateLimit-Remaining`` is 0."""
    remaining = str_or_none(headers.get("x-ratelimit-remaining"))
    try:
        if remaining is None or float(remaining) > 0:
            return 0.0
    except ValueError:
        return 0.0
    return retry_after(headers, now=now) or 0.0


# An error *name* (OAuth's "invalid_grant", "access_denied") says what failed in words the
# server cannot use to smuggle anything else; free-text descriptions and bodies are never
# shown (a body is whatever answered, see docs/security.md).
_ERROR_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


def error_name(value: Any) -> str | None:
    """``value`` when it is shaped like a protocol error name, else None."""
    return value if isinstance(value, str) and _ERROR_NAME_RE.match(value) else None


def error_text(response: httpx.Response) -> str:
    """The ``error`` string of a JSON error body, for deciding (never for showing)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    return str_or_none(body.get("error")) or "" if isinstance(body, dict) else ""


def error_message(response: httpx.Response) -> str:
    """The status code and, when the body is a JSON object naming one, the error name."""
    name = None
    if "json" in response.headers.get("content-type", ""):
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            name = error_name(body.get("error"))
    return f"HTTP {response.status_code} ({name})" if name else f"HTTP {response.status_code}"
