"""Chat schedules: validation, sessions in the host's wall time across DST, the ICS feed."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest
from dateutil.rrule import rrulestr

from app.schedule import (
    ChatCalendarEntry,
    Schedule,
    ScheduleError,
    Session,
    calendar_ics,
    live_session,
    next_session,
    sessions,
)

SYDNEY = ZoneInfo("Australia/Sydney")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def sydney_weekly() -> Schedule:
    """Tuesdays 19:00 in Sydney, first on 2026-09-22 (before AEDT starts on 2026-10-04)."""
    return Schedule.from_api(
        {
            "start": "2026-09-22T19:00",
            "timezone": "Australia/Sydney",
            "duration_minutes": 60,
            "rrule": "FREQ=WEEKLY;BYDAY=TU",
        }
    )


def test_sydney_weekly_keeps_local_time_across_dst_start() -> None:
    """A weekly 19:00 Sydney chat stays 19:00 local while UTC moves an hour at AEDT start."""
    found = sessions(sydney_weekly(), utc(2026, 9, 20), utc(2026, 10, 21))
    local = [s.start.astimezone(SYDNEY) for s in found]
    assert [(d.month, d.day, d.hour, d.minute) for d in local] == [
        (9, 22, 19, 0),
        (9, 29, 19, 0),
        (10, 6, 19, 0),
        (10, 13, 19, 0),
        (10, 20, 19, 0),
    ]
    assert [s.start for s in found] == [
        utc(2026, 9, 22, 9),  # AEST, UTC+10
        utc(2026, 9, 29, 9),
        utc(2026, 10, 6, 8),  # AEDT, UTC+11
        utc(2026, 10, 13, 8),
        utc(2026, 10, 20, 8),
    ]
    assert all(s.end - s.start == timedelta(minutes=60) for s in found)
    assert all(s.start.tzinfo is UTC for s in found)


def test_us_weekly_keeps_local_time_across_dst_end() -> None:
    """A weekly 19:00 New York chat stays 19:00 local while UTC moves at the 2026-11-01 end."""
    schedule = Schedule(
        start=datetime(2026, 10, 22, 19, 0),
        timezone="America/New_York",
        duration_minutes=90,
        rrule="FREQ=WEEKLY;BYDAY=TH",
    )
    found = sessions(schedule, utc(2026, 10, 20), utc(2026, 11, 14))
    assert [s.start for s in found] == [
        utc(2026, 10, 22, 23),  # EDT, UTC-4
        utc(2026, 10, 29, 23),
        utc(2026, 11, 6, 0),  # EST, UTC-5: 19:00 on the 5th is midnight UTC
        utc(2026, 11, 13, 0),
    ]
    local = [s.start.astimezone(NEW_YORK) for s in found]
    assert [d.utcoffset() for d in local] == [timedelta(hours=h) for h in (-4, -4, -5, -5)]
    assert [(d.month, d.day, d.hour) for d in local] == [
        (10, 22, 19),
        (10, 29, 19),
        (11, 5, 19),
        (11, 12, 19),
    ]


def test_every_two_weeks() -> None:
    """INTERVAL=2 yields every other Thursday at the same local time."""
    schedule = Schedule.from_api(
        {
            "start": "2026-12-03T18:30",
            "timezone": "Europe/Paris",
            "duration_minutes": 45,
            "rrule": "FREQ=WEEKLY;INTERVAL=2;BYDAY=TH",
        }
    )
    found = sessions(schedule, utc(2026, 12, 1), utc(2027, 1, 20))
    paris = [s.start.astimezone(ZoneInfo("Europe/Paris")) for s in found]
    assert [(d.month, d.day) for d in paris] == [(12, 3), (12, 17), (12, 31), (1, 14)]
    assert {(d.hour, d.minute, d.strftime("%a")) for d in paris} == {(18, 30, "Thu")}


def test_daily() -> None:
    """FREQ=DAILY yields one session a day, all in the window."""
    schedule = Schedule.from_api(
        {
            "start": "2026-12-01T08:00",
            "timezone": "UTC",
            "duration_minutes": 30,
            "rrule": "FREQ=DAILY",
        }
    )
    found = sessions(schedule, utc(2026, 12, 3), utc(2026, 12, 8))
    assert [s.start for s in found] == [utc(2026, 12, d, 8) for d in range(3, 8)]


def test_one_off_chat() -> None:
    """Without a rule there is exactly one session, at start."""
    schedule = Schedule.from_api(
        {"start": "2026-12-01T19:00", "timezone": "Asia/Tokyo", "duration_minutes": 60}
    )
    assert sessions(schedule, utc(2026, 1, 1), utc(2027, 1, 1)) == [
        Session(utc(2026, 12, 1, 10), utc(2026, 12, 1, 11))
    ]
    assert sessions(schedule, utc(2026, 12, 1, 11), utc(2027, 1, 1)) == []


def test_sessions_include_one_already_running() -> None:
    """A session that began before ``after`` but has not ended is included."""
    found = sessions(sydney_weekly(), utc(2026, 10, 6, 8, 30), utc(2026, 10, 6, 8, 45))
    assert found == [Session(utc(2026, 10, 6, 8), utc(2026, 10, 6, 9))]
    assert sessions(sydney_weekly(), utc(2026, 10, 6, 9), utc(2026, 10, 6, 10)) == []


def test_live_and_next_session() -> None:
    """live_session covers start ≤ now < end; next_session is the first starting after now."""
    schedule = sydney_weekly()
    start = utc(2026, 10, 6, 8)
    assert live_session(schedule, start - timedelta(seconds=1)) is None
    assert live_session(schedule, start) == Session(start, start + timedelta(hours=1))
    assert live_session(schedule, start + timedelta(minutes=59)) is not None
    assert live_session(schedule, start + timedelta(hours=1)) is None
    assert next_session(schedule, start - timedelta(minutes=5)).start == start
    assert next_session(schedule, start).start == utc(2026, 10, 13, 8)
    assert next_session(schedule, utc(2026, 1, 1)).start == utc(2026, 9, 22, 9)


def test_next_session_none_when_series_ends() -> None:
    """A series with COUNT or UNTIL has no next session after its last one."""
    schedule = Schedule.from_api(
        {
            "start": "2026-12-01T19:00",
            "timezone": "UTC",
            "duration_minutes": 60,
            "rrule": "FREQ=WEEKLY;COUNT=2",
        }
    )
    assert next_session(schedule, utc(2026, 12, 2)).start == utc(2026, 12, 8, 19)
    assert next_session(schedule, utc(2026, 12, 9)) is None
    one_off = Schedule.from_api(
        {"start": "2026-12-01T19:00", "timezone": "UTC", "duration_minutes": 60}
    )
    assert next_session(one_off, utc(2026, 12, 2)) is None


def test_dst_gap_shifts_forward_and_fold_takes_first() -> None:
    """Nonexistent local times move forward by the gap; ambiguous ones take the first instant."""
    gap = Schedule.from_api(
        {
            "start": "2027-03-13T02:30",
            "timezone": "America/New_York",
            "duration_minutes": 30,
            "rrule": "FREQ=DAILY;COUNT=3",
        }
    )
    starts = [s.start for s in sessions(gap, utc(2027, 3, 1), utc(2027, 3, 20))]
    # 13th: 02:30 EST; 14th: 02:30 does not exist, read as 03:30 EDT; 15th: 02:30 EDT.
    assert starts == [utc(2027, 3, 13, 7, 30), utc(2027, 3, 14, 7, 30), utc(2027, 3, 15, 6, 30)]
    assert starts[1].astimezone(NEW_YORK).hour == 3

    fold = Schedule.from_api(
        {
            "start": "2026-10-31T01:30",
            "timezone": "America/New_York",
            "duration_minutes": 30,
            "rrule": "FREQ=DAILY;COUNT=3",
        }
    )
    starts = [s.start for s in sessions(fold, utc(2026, 10, 1), utc(2026, 11, 5))]
    # 1st November 01:30 happens twice; the first (EDT, UTC-4) is used.
    assert starts == [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]


@pytest.mark.parametrize(
    ("data", "field", "fragment"),
    [
        (
            {"start": "2026-12-01T19:00", "timezone": "Mars/Olympus", "duration_minutes": 60},
            "timezone",
            "IANA time zone name",
        ),
        (
            {"start": "2026-12-01T19:00", "timezone": "EST5EDT ", "duration_minutes": 60},
            "timezone",
            "surrounding spaces",
        ),
        (
            {"start": "2026-12-01T19:00", "timezone": "../../etc/passwd", "duration_minutes": 60},
            "timezone",
            "not a known time zone",
        ),
        (
            {"start": "2026-12-01T19:00Z", "timezone": "UTC", "duration_minutes": 60},
            "start",
            "must not carry a UTC offset",
        ),
        (
            {"start": "next tuesday", "timezone": "UTC", "duration_minutes": 60},
            "start",
            "2026-12-01T19:00",
        ),
        (
            {"start": "2026-02-30T19:00", "timezone": "UTC", "duration_minutes": 60},
            "start",
            "not a real date",
        ),
        ({"timezone": "UTC", "duration_minutes": 60}, "start", "is required"),
        (
            {"start": "2026-12-01T19:00", "timezone": "UTC", "duration_minutes": 0},
            "duration_minutes",
            "between 1 and 1440",
        ),
        (
            {"start": "2026-12-01T19:00", "timezone": "UTC", "duration_minutes": 1441},
            "duration_minutes",
            "between 1 and 1440",
        ),
        (
            {"start": "2026-12-01T19:00", "timezone": "UTC", "duration_minutes": "an hour"},
            "duration_minutes",
            "whole number",
        ),
        (
            {"start": "2026-12-01T19:00", "timezone": "UTC", "duration_minutes": 60, "x": 1},
            "x",
            "unknown field",
        ),
        (
            {
                "start": "2026-12-01T19:00",
                "timezone": "UTC",
                "duration_minutes": 60,
                "rrule": "every tuesday",
            },
            "rrule",
            "is not NAME=VALUE",
        ),
        (
            {
                "start": "2026-12-01T19:00",
                "timezone": "UTC",
                "duration_minutes": 60,
                "rrule": "BYDAY=TU",
            },
            "rrule",
            "FREQ is required",
        ),
        (
            {
                "start": "2026-12-01T19:00",
                "timezone": "UTC",
                "duration_minutes": 60,
                "rrule": "FREQ=WEEKLY;BYDAY=XX",
            },
            "rrule",
            "BYDAY takes MO",
        ),
        (
            {
                "start": "2026-12-01T19:00",
                "timezone": "UTC",
                "duration_minutes": 60,
                "rrule": "FREQ=MINUTELY",
            },
            "rrule",
            "not supported",
        ),
        (
            {
                "start": "2026-12-01T19:00",
                "timezone": "UTC",
                "duration_minutes": 60,
                "rrule": "FREQ=WEEKLY;COUNT=3;UNTIL=20270101",
            },
            "rrule",
            "COUNT or UNTIL",
        ),
        (
            {
                "start": "2026-12-01T19:00",
                "timezone": "UTC",
                "duration_minutes": 60,
                "rrule": "FREQ=WEEKLY;BYDAY=TH",
            },
            "rrule",
            "first session would be 2026-12-03T19:00 (Thursday)",
        ),
        (
            {
                "start": "2026-12-01T19:00",
                "timezone": "UTC",
                "duration_minutes": 60,
                "rrule": "DTSTART:20261201T190000\nRRULE:FREQ=WEEKLY",
            },
            "rrule",
            "without DTSTART",
        ),
        (
            {
                "start": "2026-12-01T19:00",
                "timezone": "UTC",
                "duration_minutes": 60,
                "rrule": "FREQ=WEEKLY;UNTIL=20261101",
            },
            "rrule",
            "produces no session",
        ),
    ],
)
def test_invalid_schedules_say_what_to_fix(data: dict, field: str, fragment: str) -> None:
    """Bad schedule input raises a ValueError naming the field and what to change."""
    with pytest.raises(ScheduleError) as caught:
        Schedule.from_api(data)
    assert isinstance(caught.value, ValueError)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30",
        "FREQ=MONTHLY;BYMONTHDAY=31;BYMONTH=4,6",
        "FREQ=MONTHLY;BYDAY=6MO",
        "FREQ=MONTHLY;BYDAY=1MO;BYMONTHDAY=20",
        "FREQ=MONTHLY;BYDAY=MO;BYSETPOS=6",
    ],
)
def test_impossible_rules_are_refused_quickly(rule: str) -> None:
    """Rules that never occur are refused up front instead of searching to year 9999."""
    began = time.perf_counter()
    with pytest.raises(ScheduleError) as caught:
        Schedule(datetime(2026, 12, 1, 19), "UTC", 60, rule)
    assert caught.value.field == "rrule"
    assert time.perf_counter() - began < 0.2


def test_from_api_normalises_and_round_trips() -> None:
    """ "RRULE:" prefixes, case and digit strings are accepted; to_api gives the stored form."""
    schedule = Schedule.from_api(
        {
            "start": "2026-12-01T19:00",
            "timezone": "Australia/Sydney",
            "duration_minutes": "60",
            "rrule": "RRULE:freq=weekly;byday=TU",
        }
    )
    assert schedule.rrule == "FREQ=WEEKLY;BYDAY=TU"
    assert schedule.to_api() == {
        "start": "2026-12-01T19:00",
        "timezone": "Australia/Sydney",
        "duration_minutes": 60,
        "rrule": "FREQ=WEEKLY;BYDAY=TU",
    }
    assert Schedule.from_api(schedule.to_api()) == schedule
    assert Schedule.from_api({**schedule.to_api(), "rrule": ""}).rrule is None


def test_monthly_by_position() -> None:
    """ "Second Tuesday of the month" expands in local time."""
    schedule = Schedule.from_api(
        {
            "start": "2026-12-08T20:00",
            "timezone": "Europe/London",
            "duration_minutes": 60,
            "rrule": "FREQ=MONTHLY;BYDAY=2TU",
        }
    )
    found = sessions(schedule, utc(2026, 12, 1), utc(2027, 4, 1))
    london = [s.start.astimezone(ZoneInfo("Europe/London")) for s in found]
    assert [(d.month, d.day, d.hour) for d in london] == [
        (12, 8, 20),
        (1, 12, 20),
        (2, 9, 20),
        (3, 9, 20),
    ]


def test_naive_window_is_refused() -> None:
    """Naive datetimes are refused rather than guessed at."""
    with pytest.raises(ValueError, match="timezone-aware"):
        sessions(sydney_weekly(), datetime(2026, 10, 1), utc(2026, 11, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        live_session(sydney_weekly(), datetime(2026, 10, 1))


def feed_entries() -> list[ChatCalendarEntry]:
    return [
        ChatCalendarEntry(
            slug="plants",
            hashtag="plantchat",
            title="Small-space gardening",
            description="Balconies, windowsills, rooftops.",
            url="/c/plants",
            schedule=sydney_weekly(),
        ),
        ChatCalendarEntry(
            slug="nyc",
            hashtag="nycchat",
            title="City talk",
            description="",
            url="https://rooms.example/c/nyc",
            schedule=Schedule(datetime(2026, 10, 22, 19), "America/New_York", 60, "FREQ=WEEKLY"),
        ),
        ChatCalendarEntry(
            slug="past",
            hashtag="oldchat",
            title="Finished",
            description="",
            url="/c/past",
            schedule=Schedule(datetime(2026, 1, 5, 19), "UTC", 60),
        ),
        ChatCalendarEntry(
            slug="unscheduled",
            hashtag="whenever",
            title="No schedule",
            description="",
            url="/c/unscheduled",
            schedule=None,
        ),
    ]


def parse_feed(data: bytes) -> icalendar.Calendar:
    cal = icalendar.Calendar.from_ical(data)
    assert cal["VERSION"] == "2.0"
    return cal


def test_ics_feed_structure() -> None:
    """The feed parses back with a TZID'd DTSTART, DURATION, RRULE and a VTIMEZONE per zone."""
    data = calendar_ics(feed_entries(), now=utc(2026, 9, 1), base_url="https://hashroom.example/")
    cal = parse_feed(data)
    assert "Hashroom" in str(cal["PRODID"])
    assert str(cal["X-WR-CALNAME"])
    events = cal.walk("VEVENT")
    assert [str(e["UID"]) for e in events] == [
        "chat-plants@hashroom.example",
        "chat-nyc@hashroom.example",
    ]
    plants, nyc = events
    assert plants["DTSTART"].params["TZID"] == "Australia/Sydney"
    assert nyc["DTSTART"].params["TZID"] == "America/New_York"
    assert plants.decoded("DTSTART") == datetime(2026, 9, 22, 19, tzinfo=SYDNEY)
    assert plants.decoded("DURATION") == timedelta(hours=1)
    assert plants["RRULE"].to_ical() == b"FREQ=WEEKLY;BYDAY=TU"
    assert str(plants["SUMMARY"]) == "#plantchat — Small-space gardening"
    assert str(plants["URL"]) == "https://hashroom.example/c/plants"
    assert "Balconies" in str(plants["DESCRIPTION"])
    assert str(nyc["URL"]) == "https://rooms.example/c/nyc"
    assert {tz["TZID"] for tz in cal.walk("VTIMEZONE")} == {"Australia/Sydney", "America/New_York"}
    assert cal.get_missing_tzids() == set()
    # Stable per chat: the same input gives the same bytes.
    again = calendar_ics(feed_entries(), now=utc(2026, 9, 1), base_url="https://hashroom.example/")
    assert again == data


def test_ics_expands_to_the_same_sessions() -> None:
    """Expanding each VEVENT's RRULE in its local zone with dateutil matches sessions()."""
    entries = feed_entries()[:2]
    cal = parse_feed(calendar_ics(entries, now=utc(2026, 9, 1), base_url="https://x.example/"))
    window = (utc(2026, 9, 1), utc(2027, 5, 1))
    for entry, event in zip(entries, cal.walk("VEVENT"), strict=True):
        dtstart = event.decoded("DTSTART")
        zone = dtstart.tzinfo
        rule = rrulestr(event["RRULE"].to_ical().decode(), dtstart=dtstart.replace(tzinfo=None))
        duration = event.decoded("DURATION")
        local_window = [w.astimezone(zone).replace(tzinfo=None) for w in window]
        expanded = []
        for local in rule.between(local_window[0] - duration, local_window[1], inc=True):
            start = local.replace(tzinfo=zone).astimezone(UTC)
            expanded.append(Session(start, start + duration))
        assert entry.schedule is not None
        ours = sessions(entry.schedule, *window)
        assert len(ours) > 25
        assert expanded == ours


def test_ics_until_is_utc_and_series_end_respected() -> None:
    """UNTIL is written in UTC (RFC 5545 with a TZID'd DTSTART) and bounds the same series."""
    schedule = Schedule(
        datetime(2026, 9, 22, 19), "Australia/Sydney", 60, "FREQ=WEEKLY;UNTIL=20261020"
    )
    entry = ChatCalendarEntry("s", "tag", "T", "", "/c/s", schedule)
    cal = parse_feed(calendar_ics([entry], now=utc(2026, 9, 1), base_url="https://x.example/"))
    (event,) = cal.walk("VEVENT")
    until = event["RRULE"]["UNTIL"][0]
    assert until.utcoffset() == timedelta(0)
    # The bare date means "through that local day": 2026-10-20 23:59:59 AEDT.
    assert until == datetime(2026, 10, 20, 12, 59, 59, tzinfo=UTC)
    found = sessions(schedule, utc(2026, 9, 1), utc(2027, 1, 1))
    assert found[-1].start.astimezone(SYDNEY).date().isoformat() == "2026-10-20"
    assert len(found) == 5


def test_ics_leaves_out_finished_and_far_chats() -> None:
    """Chats with nothing live or upcoming within the horizon are not in the feed."""
    far = ChatCalendarEntry(
        "far", "far", "Far", "", "/c/far", Schedule(datetime(2027, 6, 1, 19), "UTC", 60)
    )
    data = calendar_ics(
        [*feed_entries(), far], now=utc(2026, 9, 1), horizon_days=90, base_url="https://x/"
    )
    uids = [str(e["UID"]) for e in parse_feed(data).walk("VEVENT")]
    assert uids == ["chat-plants@x", "chat-nyc@x"]
    data = calendar_ics([far], now=utc(2026, 9, 1), horizon_days=365, base_url="https://x/")
    assert [str(e["UID"]) for e in parse_feed(data).walk("VEVENT")] == ["chat-far@x"]
    empty = parse_feed(calendar_ics([], now=utc(2026, 9, 1), base_url="https://x/"))
    assert empty.walk("VEVENT") == [] and empty.walk("VTIMEZONE") == []
