"""When a chat happens: a start in the host's local time, a duration, an optional RFC 5545
recurrence rule, and the sessions and calendar feed that follow from them.

Recurrences are expanded in the host's *wall time* and each occurrence is then converted to
UTC through ``zoneinfo``: a weekly 19:00 Sydney chat stays at 19:00 in Sydney when daylight
saving starts or ends, and its UTC time moves instead. Expanding the rule in UTC would drift
the chat by an hour twice a year.

Local times that do not exist or exist twice follow RFC 5545 (section 3.3.5) and PEP 495's
``fold=0``, so this module and calendar apps agree on every instant:

* in a DST gap (02:30 on a spring-forward night), the time is read with the offset from
  before the gap, which lands the same length of time later on the clock (03:30);
* in a fold (01:30 on a fall-back night), the first of the two instants is used.

Rules are limited to what a recurring chat needs — ``FREQ`` (DAILY, WEEKLY, MONTHLY,
YEARLY), ``INTERVAL``, ``COUNT`` or ``UNTIL``, ``BYDAY``, ``BYMONTHDAY``, ``BYMONTH``,
``BYSETPOS``, ``WKST`` — and combinations that can never occur are refused up front, because
the expander would otherwise search up to the year 9999 before giving up.
"""

from __future__ import annotations

import calendar as _calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
from dateutil.rrule import rrule as DateutilRule
from dateutil.rrule import rrulestr

__all__ = [
    "ChatCalendarEntry",
    "Schedule",
    "ScheduleError",
    "Session",
    "calendar_ics",
    "live_session",
    "next_session",
    "sessions",
]

API_FIELDS = ("start", "timezone", "duration_minutes", "rrule")
MAX_DURATION_MINUTES = 1440  # one day: longer than any chat, and keeps sessions countable
# Start years are bounded so calendar time zone data stays small and expansion stays cheap.
MIN_YEAR, MAX_YEAR = 1970, 2200
MAX_INTERVAL = 1000  # every 1000 days/weeks/…: anything rarer is not a series
ALLOWED_FREQS = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
ALLOWED_PARTS = frozenset(
    {"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYSETPOS", "WKST"}
)
# Calendar apps keep expanding a rule forever, so the feed's VTIMEZONE covers transitions
# this many years past the horizon (apps that know the IANA name use their own data anyway).
VTIMEZONE_YEARS_AHEAD = 10

_START_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2}))?")
_UNTIL_RE = re.compile(r"(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})(Z?))?")
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_BYDAY_RE = re.compile(r"([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)")


class ScheduleError(ValueError):
    """A schedule field is invalid. ``field`` names it (one of :data:`API_FIELDS`); the
    message says what to fix and is fit to show to the person who typed it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class Session:
    """One occurrence of a chat: ``start`` ≤ t < ``end``, both timezone-aware UTC."""

    start: datetime
    end: datetime

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


@dataclass(frozen=True)
class Schedule:
    """A validated chat schedule. Construction raises :class:`ScheduleError` when invalid.

    ``start`` is the first session's local wall time in ``timezone``: a naive datetime, or a
    string "YYYY-MM-DDTHH:MM[:SS]" that is parsed (microseconds are dropped). ``rrule`` is
    stored normalised: upper case, no "RRULE:" prefix, or None for a one-off chat. When
    ``rrule`` is set, ``start`` must be its first occurrence (RFC 5545 leaves a DTSTART
    outside its rule undefined, and calendar apps disagree on it).
    """

    start: datetime
    timezone: str
    duration_minutes: int
    rrule: str | None = None
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _local_rule: str | None = field(init=False, repr=False, compare=False)
    _ics_rule: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalised values are set once, here
        set_(self, "start", _check_start(self.start))
        set_(self, "_zone", _check_zone(self.timezone))
        set_(self, "duration_minutes", _check_duration(self.duration_minutes))
        rule = _normalise_rule(self.rrule)
        set_(self, "rrule", rule)
        local_rule = ics_rule = None
        if rule is not None:
            local_rule, ics_rule = _check_rule(rule, self.start, self._zone)
        set_(self, "_local_rule", local_rule)
        set_(self, "_ics_rule", ics_rule)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Schedule:
        """Build from JSON-like data, e.g. a request body or the chat row's columns::

            {"start": "2026-12-01T19:00", "timezone": "Australia/Sydney",
             "duration_minutes": 60, "rrule": "FREQ=WEEKLY;BYDAY=TU"}

        ``rrule`` may be absent, null or empty. ``duration_minutes`` may be an integer or a
        string of digits (HTML forms). Unknown keys are refused so typos do not pass
        silently. Raises :class:`ScheduleError` (a ``ValueError``) naming the field.
        """
        if not isinstance(data, Mapping):
            raise ScheduleError("schedule", "expected an object with " + ", ".join(API_FIELDS))
        unknown = sorted(set(data) - set(API_FIELDS))
        if unknown:
            raise ScheduleError(
                unknown[0], f"unknown field; a schedule has {', '.join(API_FIELDS)}"
            )
        for name, hint in (
            ("start", 'local date and time, like "2026-12-01T19:00"'),
            ("timezone", 'an IANA time zone name, like "Europe/Paris"'),
            ("duration_minutes", "a whole number of minutes, like 60"),
        ):
            if data.get(name) in (None, ""):
                raise ScheduleError(name, f"is required ({hint})")
        duration = data["duration_minutes"]
        if isinstance(duration, str) and duration.strip().isdigit():
            duration = int(duration.strip())
        return cls(
            start=data["start"],
            timezone=data["timezone"],
            duration_minutes=duration,
            rrule=data.get("rrule"),
        )

    def to_api(self) -> dict[str, Any]:
        """The inverse of :meth:`from_api`; the values fit the chat row's schedule columns."""
        fmt = "%Y-%m-%dT%H:%M:%S" if self.start.second else "%Y-%m-%dT%H:%M"
        return {
            "start": self.start.strftime(fmt),
            "timezone": self.timezone,
            "duration_minutes": self.duration_minutes,
            "rrule": self.rrule,
        }

    @property
    def zone(self) -> ZoneInfo:
        return self._zone

    @property
    def duration(self) -> timedelta:
        return timedelta(minutes=self.duration_minutes)

    def first_session(self) -> Session:
        return self._session(self.start)

    def _session(self, local: datetime) -> Session:
        start = local.replace(tzinfo=self._zone).astimezone(UTC)
        return Session(start=start, end=start + self.duration)

    def _rule(self) -> DateutilRule | None:
        if self._local_rule is None:
            return None
        return rrulestr(self._local_rule, dtstart=self.start)

    def _local(self, moment: datetime) -> datetime:
        return moment.astimezone(self._zone).replace(tzinfo=None)


def _check_start(value: Any) -> datetime:
    hint = 'give the local date and time in the chat\'s time zone, like "2026-12-01T19:00"'
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise ScheduleError("start", f"must not carry a UTC offset; {hint}")
        parsed = value
    elif isinstance(value, str):
        match = _START_RE.fullmatch(value.strip())
        if not match:
            if re.search(r"(Z|[+-]\d{2}:?\d{2})$", value.strip()):
                raise ScheduleError("start", f"must not carry a UTC offset; {hint}")
            raise ScheduleError("start", f"{value!r} is not a date and time; {hint}")
        try:
            parsed = datetime(*(int(part or 0) for part in match.groups()))
        except ValueError as exc:
            raise ScheduleError("start", f"{value!r} is not a real date or time ({exc})") from exc
    else:
        raise ScheduleError("start", hint)
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise ScheduleError("start", f"the year must be between {MIN_YEAR} and {MAX_YEAR}")
    return parsed.replace(microsecond=0)


def _check_zone(name: Any) -> ZoneInfo:
    hint = 'use an IANA time zone name like "Europe/Paris", "America/New_York" or "UTC"'
    if not isinstance(name, str) or not name.strip():
        raise ScheduleError("timezone", f"is required; {hint}")
    if name != name.strip():
        raise ScheduleError("timezone", f"{name!r} has surrounding spaces; {hint}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ScheduleError("timezone", f"{name!r} is not a known time zone; {hint}") from exc


def _check_duration(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScheduleError("duration_minutes", "must be a whole number of minutes, like 60")
    if not 1 <= value <= MAX_DURATION_MINUTES:
        raise ScheduleError(
            "duration_minutes", f"must be between 1 and {MAX_DURATION_MINUTES} (one day)"
        )
    return value


def _normalise_rule(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ScheduleError("rrule", 'must be text like "FREQ=WEEKLY;BYDAY=TU"')
    rule = value.strip()
    if rule.upper().startswith("RRULE:"):
        rule = rule[len("RRULE:") :].strip()
    return rule.upper().rstrip(";") or None


def _parse_parts(rule: str) -> dict[str, str]:
    example = 'e.g. "FREQ=WEEKLY;BYDAY=TU" or "FREQ=WEEKLY;INTERVAL=2;BYDAY=TH"'
    if "\n" in rule or "\r" in rule or ":" in rule:
        raise ScheduleError("rrule", f"give one rule without DTSTART or other lines, {example}")
    parts: dict[str, str] = {}
    for item in rule.split(";"):
        key, sep, val = item.partition("=")
        key, val = key.strip(), val.strip()
        if not sep or not key or not val:
            raise ScheduleError("rrule", f"{item!r} is not NAME=VALUE; {example}")
        if key in parts:
            raise ScheduleError("rrule", f"{key} is given twice")
        if key not in ALLOWED_PARTS:
            raise ScheduleError(
                "rrule", f"{key} is not supported here; use {', '.join(sorted(ALLOWED_PARTS))}"
            )
        parts[key] = val
    if "FREQ" not in parts:
        raise ScheduleError("rrule", f"FREQ is required, {example}")
    if parts["FREQ"] not in ALLOWED_FREQS:
        raise ScheduleError(
            "rrule",
            f"FREQ={parts['FREQ']} is not supported; a chat repeats "
            f"{', '.join(ALLOWED_FREQS[:-1])} or {ALLOWED_FREQS[-1]}",
        )
    if "COUNT" in parts and "UNTIL" in parts:
        raise ScheduleError("rrule", "give COUNT or UNTIL, not both (RFC 5545)")
    return parts


def _int_list(parts: dict[str, str], key: str, high: int, *, signed: bool = False) -> list[int]:
    """The numbers of rule part ``key``: 1..``high``, or also -``high``..-1 when ``signed``."""
    if key not in parts:
        return []
    values = []
    for item in parts[key].split(","):
        try:
            number = int(item)
        except ValueError:
            raise ScheduleError("rrule", f"{key} takes numbers, not {item!r}") from None
        size = abs(number) if signed else number
        if not 1 <= size <= high:
            span = f"1 to {high} or -1 to -{high}" if signed else f"1 to {high}"
            raise ScheduleError("rrule", f"{key}={number} is out of range ({span})")
        values.append(number)
    return values


def _check_feasible(parts: dict[str, str]) -> None:
    """Refuse rules that can never produce a date: the expander would search to year 9999."""
    freq = parts["FREQ"]
    months = _int_list(parts, "BYMONTH", 12)
    monthdays = _int_list(parts, "BYMONTHDAY", 31, signed=True)
    setpos = _int_list(parts, "BYSETPOS", 366, signed=True)
    if len(_int_list(parts, "INTERVAL", MAX_INTERVAL)) > 1:
        raise ScheduleError("rrule", "INTERVAL takes one number")
    if len(_int_list(parts, "COUNT", 100_000)) > 1:
        raise ScheduleError("rrule", "COUNT takes one number")
    if "WKST" in parts and parts["WKST"] not in _WEEKDAYS:
        raise ScheduleError("rrule", f"WKST takes one of {', '.join(_WEEKDAYS)}")

    ordinals: list[int] = []
    weekdays: set[str] = set()
    for item in parts["BYDAY"].split(",") if "BYDAY" in parts else ():
        match = _BYDAY_RE.fullmatch(item)
        if not match:
            raise ScheduleError(
                "rrule",
                f"BYDAY takes MO, TU, WE, TH, FR, SA, SU (or 1TU, -1FR …), not {item!r}",
            )
        weekdays.add(match.group(2))
        if match.group(1):
            ordinals.append(int(match.group(1)))
    if ordinals:
        if freq not in ("MONTHLY", "YEARLY"):
            raise ScheduleError("rrule", "numbered BYDAY (like 2TU) needs FREQ=MONTHLY or YEARLY")
        limit = 5 if freq == "MONTHLY" or months else 53
        if any(o == 0 or abs(o) > limit for o in ordinals):
            raise ScheduleError("rrule", f"numbered BYDAY must be 1 to {limit} or -1 to -{limit}")
    if weekdays and monthdays:
        raise ScheduleError("rrule", "BYDAY and BYMONTHDAY together are not supported")
    if monthdays:
        longest = max(
            29 if month == 2 else _calendar.monthrange(2001, month)[1]
            for month in (months or range(1, 13))
        )
        if min(abs(day) for day in monthdays) > longest:
            raise ScheduleError("rrule", "BYMONTHDAY never falls in the chosen months")
    if setpos:
        if freq not in ("MONTHLY", "YEARLY") or not weekdays or ordinals:
            raise ScheduleError(
                "rrule", "BYSETPOS needs FREQ=MONTHLY or YEARLY and plain BYDAY days (like MO,TU)"
            )
        # Every month holds at least four of each weekday and every year 52, so positions
        # up to these counts always exist and the rule always produces dates.
        if freq == "MONTHLY":
            per_period = 4 * len(weekdays)
        else:
            per_period = len(weekdays) * (4 * len(set(months)) if months else 52)
        if max(abs(position) for position in setpos) > per_period:
            raise ScheduleError("rrule", f"BYSETPOS can be at most {per_period} for this rule")


def _until_local(value: str, zone: ZoneInfo) -> datetime:
    match = _UNTIL_RE.fullmatch(value)
    if not match:
        raise ScheduleError("rrule", "UNTIL takes a date like 20271231 or 20271231T235959Z")
    y, mo, d, h, mi, s, utc = match.groups()
    try:
        if h is None:
            # A bare date includes that whole local day.
            return datetime.combine(date(int(y), int(mo), int(d)), time(23, 59, 59))
        moment = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s))
    except ValueError as exc:
        raise ScheduleError("rrule", f"UNTIL={value} is not a real date ({exc})") from exc
    if utc:
        return moment.replace(tzinfo=UTC).astimezone(zone).replace(tzinfo=None)
    return moment


def _check_rule(rule: str, start: datetime, zone: ZoneInfo) -> tuple[str, str]:
    """Validate ``rule`` against ``start``; return (rule for local expansion, rule for ICS).

    dateutil needs UNTIL in the same form as DTSTART (naive local wall time), while RFC 5545
    wants UTC when DTSTART has a TZID, so the two renderings differ only in UNTIL.
    """
    parts = _parse_parts(rule)
    _check_feasible(parts)
    local_parts = dict(parts)
    ics_parts = dict(parts)
    if "UNTIL" in parts:
        until = _until_local(parts["UNTIL"], zone)
        local_parts["UNTIL"] = until.strftime("%Y%m%dT%H%M%S")
        ics_parts["UNTIL"] = until.replace(tzinfo=zone).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    local_rule = ";".join(f"{k}={v}" for k, v in local_parts.items())
    ics_rule = ";".join(f"{k}={v}" for k, v in ics_parts.items())
    try:
        expanded = rrulestr(local_rule, dtstart=start)
        first = expanded.after(start, inc=True)
    except (ValueError, TypeError, KeyError) as exc:
        raise ScheduleError("rrule", f"not a valid RFC 5545 rule ({exc})") from exc
    if first is None:
        raise ScheduleError("rrule", "the rule produces no session at or after start")
    if first != start:
        raise ScheduleError(
            "rrule",
            f"start {start:%Y-%m-%dT%H:%M} ({start:%A}) is not an occurrence of the rule; "
            f"its first session would be {first:%Y-%m-%dT%H:%M} ({first:%A}): "
            "set start to the first session",
        )
    return local_rule, ics_rule


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


def sessions(schedule: Schedule, after: datetime, before: datetime) -> list[Session]:
    """Sessions overlapping [``after``, ``before``): every session with ``end > after`` and
    ``start < before``, in start order — including one that started before ``after`` and is
    still running. ``after``/``before`` must be timezone-aware."""
    _require_aware("after", after)
    _require_aware("before", before)
    if before <= after:
        return []
    rule = schedule._rule()
    if rule is None:
        candidates = [schedule.start]
    else:
        # Widen the local window: the wall-clock range of a UTC window shifts by the zone's
        # offset change, and a session may have started up to one duration earlier.
        slack = timedelta(days=1)
        low = schedule._local(after - schedule.duration) - slack
        high = schedule._local(before) + slack
        candidates = rule.between(low, high, inc=True)
    found = (schedule._session(local) for local in candidates)
    return [s for s in found if s.end > after and s.start < before]


def next_session(schedule: Schedule, now: datetime) -> Session | None:
    """The first session starting strictly after ``now`` (aware), or None when the schedule
    has no more. A session running at ``now`` is :func:`live_session`'s, not this one's."""
    _require_aware("now", now)
    rule = schedule._rule()
    if rule is None:
        first = schedule.first_session()
        return first if first.start > now else None
    # Start a day early in wall time so offset changes cannot skip a session.
    for local in rule.xafter(schedule._local(now) - timedelta(days=1), inc=True):
        session = schedule._session(local)
        if session.start > now:
            return session
    return None


def live_session(schedule: Schedule, now: datetime) -> Session | None:
    """The session running at ``now`` (start ≤ now < end), or None. Should sessions overlap
    (a duration longer than the gap between them), the latest started wins."""
    _require_aware("now", now)
    running = [s for s in sessions(schedule, now, now + timedelta(seconds=1)) if s.contains(now)]
    return running[-1] if running else None


@dataclass(frozen=True, slots=True)
class ChatCalendarEntry:
    """One chat for the calendar feed. ``url`` is the room's page, absolute or relative to
    the feed's ``base_url``; ``hashtag`` has no '#'. Chats without a schedule are skipped."""

    slug: str
    hashtag: str
    title: str
    description: str
    url: str
    schedule: Schedule | None
    hashtags: tuple[str, ...] = ()  # every tag followed, reply tag first; () means (hashtag,)

    @property
    def tag_line(self) -> str:
        """ "#a #b": every tag the chat follows."""
        return " ".join(f"#{tag}" for tag in self.hashtags or (self.hashtag,))


def calendar_ics(
    chats: list[ChatCalendarEntry],
    *,
    now: datetime,
    horizon_days: int = 90,
    base_url: str,
    name: str = "Hashroom chats",
    alarm_minutes: float = 10,
) -> bytes:
    """An iCalendar feed (RFC 5545) of ``chats``, ready to serve as ``text/calendar``.

    One VEVENT per chat that is live or starts within ``horizon_days`` of ``now``
    (finished one-offs and ended series are left out). Each VEVENT carries DTSTART in the
    host's zone (``TZID``), DURATION and the RRULE, so calendar apps expand the series
    themselves in local time, right across DST; one VTIMEZONE per zone used is included.
    UID is ``chat-{slug}@{host of base_url}``: stable per chat, distinct between servers.
    SUMMARY is "#tag — title" ("#a #b — title" with several tags); DESCRIPTION the
    description and the room's address; URL the room, so every occurrence links back to
    it. A VALARM (DISPLAY) rings ``alarm_minutes`` before each occurrence; 0 leaves the
    alarm out.
    """
    _require_aware("now", now)
    horizon_end = now + timedelta(days=horizon_days)
    host = urlsplit(base_url).hostname or "hashroom"

    cal = icalendar.Calendar()
    cal.add("prodid", "-//Hashroom//Chat schedule//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", name)
    cal.add(
        "x-published-ttl", icalendar.vDuration(timedelta(hours=6))
    )  # how often subscribers should refresh

    earliest: date | None = None
    for chat in chats:
        schedule = chat.schedule
        if schedule is None:
            continue
        if not sessions(schedule, now, horizon_end):
            continue
        room_url = urljoin(base_url, chat.url)
        event = icalendar.Event()
        event.add("uid", f"chat-{chat.slug}@{host}")
        event.add("dtstamp", now.astimezone(UTC))
        event.add("dtstart", schedule.start.replace(tzinfo=schedule.zone))
        event.add("duration", schedule.duration)
        if schedule._ics_rule is not None:
            event.add("rrule", icalendar.vRecur.from_ical(schedule._ics_rule))
        event.add("summary", f"{chat.tag_line} — {chat.title}")
        description = f"{chat.description}\n\n{room_url}" if chat.description else room_url
        event.add("description", description)
        event.add("url", room_url)
        if alarm_minutes > 0:
            alarm = icalendar.Alarm()
            alarm.add("action", "DISPLAY")
            alarm.add(
                "description", f"{chat.tag_line} starts in {alarm_minutes:g} minutes: {room_url}"
            )
            alarm.add("trigger", timedelta(minutes=-alarm_minutes))
            event.add_component(alarm)
        cal.add_component(event)
        if earliest is None or schedule.start.date() < earliest:
            earliest = schedule.start.date()

    if earliest is not None:
        cal.add_missing_timezones(
            first_date=earliest - timedelta(days=1),
            last_date=date(horizon_end.year + VTIMEZONE_YEARS_AHEAD, 1, 1),
        )
    return cal.to_ical()
