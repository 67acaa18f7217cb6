"""Schedules against a real server: iCalendar feeds, sessions in the host's local time across
daylight-saving changes, moderators setting schedules, and followers of a scheduled chat that
start before each session and stop after it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import icalendar
import pytest
from dateutil.rrule import rrulestr

from app.config import Settings
from app.db import make_engine
from app.hub import Hub
from app.present import Presenter
from app.rooms import Rooms, SourceSpec
from app.schedule import Schedule
from app.templating import make_templates
from tests.factories import create_chat
from tests.server import OPERATOR_HEADERS

pytestmark = pytest.mark.timeout(60)

NEW_YORK = ZoneInfo("America/New_York")
# A weekly Tuesday chat that started before the 2026-11-01 change from EDT to EST.
TUESDAYS = {
    "start": "2026-10-20T19:00",
    "timezone": "America/New_York",
    "duration_minutes": 60,
    "rrule": "FREQ=WEEKLY;BYDAY=TU",
}


def events_of(body: bytes) -> list[icalendar.Event]:
    calendar = icalendar.Calendar.from_ical(body)
    return [c for c in calendar.walk() if c.name == "VEVENT"]


async def test_feeds_parse_and_list_only_scheduled_chats(server):
    """/calendar.ics holds one VEVENT per scheduled chat (local start with TZID, RRULE,
    room URL); /c/{slug}/calendar.ics holds that chat only, or nothing when unscheduled."""
    sydney = (date.today() + timedelta(days=3)).isoformat() + "T10:30"
    weekly = await create_chat(server.url, "tuechat", schedule=TUESDAYS)
    once = await create_chat(
        server.url,
        "sydchat",
        schedule={"start": sydney, "timezone": "Australia/Sydney", "duration_minutes": 45},
    )
    plain = await create_chat(server.url, "plainchat")
    await create_chat(server.url, hashtags=["twochat", "TwoChat2026"], schedule=TUESDAYS)
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.get("/calendar.ics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/calendar")
        found = {str(e["uid"]): e for e in events_of(r.content)}
        assert set(found) == {
            "chat-tuechat@127.0.0.1",
            "chat-sydchat@127.0.0.1",
            "chat-twochat@127.0.0.1",
        }
        # A chat following several tags names them all.
        assert str(found["chat-twochat@127.0.0.1"]["summary"]).startswith("#twochat #TwoChat2026 —")
        tue = found["chat-tuechat@127.0.0.1"]
        start = tue.decoded("dtstart")
        assert start == datetime(2026, 10, 20, 19, 0, tzinfo=NEW_YORK)
        assert str(start.tzinfo) == "America/New_York"
        assert tue["rrule"]["FREQ"] == ["WEEKLY"] and tue["rrule"]["BYDAY"] == ["TU"]
        assert tue.decoded("duration") == timedelta(minutes=60)
        assert str(tue["summary"]) == "#tuechat — #tuechat test"
        assert str(tue["url"]) == f"{server.url}/c/{weekly['slug']}"
        syd = found["chat-sydchat@127.0.0.1"]
        assert syd.decoded("dtstart").hour == 10 and "rrule" not in syd

        one = await http.get(f"/c/{once['slug']}/calendar.ics")
        assert [str(e["uid"]) for e in events_of(one.content)] == ["chat-sydchat@127.0.0.1"]
        none = await http.get(f"/c/{plain['slug']}/calendar.ics")
        assert none.status_code == 200 and events_of(none.content) == []
        assert (await http.get("/c/nope/calendar.ics")).status_code == 404


async def test_a_weekly_chat_keeps_its_local_time_across_daylight_saving(server):
    """A Tuesday 19:00 New York chat is at 23:00 UTC before 2026-11-01 and at 00:00 UTC on
    Wednesday after, in the sessions API and in the feed as calendar apps expand it."""
    await create_chat(server.url, "tuechat", schedule=TUESDAYS)
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.get("/api/sessions", params={"from": "2026-10-25T00:00Z", "days": 14})
        sessions = r.json()["sessions"]
        feed = (await http.get("/calendar.ics")).content
    assert [(s["start"], s["local_start"]) for s in sessions] == [
        ("2026-10-27T23:00:00Z", "2026-10-27T19:00"),
        ("2026-11-04T00:00:00Z", "2026-11-03T19:00"),
    ]
    assert [s["end"] for s in sessions] == ["2026-10-28T00:00:00Z", "2026-11-04T01:00:00Z"]
    assert all(s["timezone"] == "America/New_York" and not s["live"] for s in sessions)

    (event,) = events_of(feed)
    start = event.decoded("dtstart")
    rule = rrulestr(event["rrule"].to_ical().decode(), dtstart=start.replace(tzinfo=None))
    local = rule.between(datetime(2026, 10, 26), datetime(2026, 11, 4))
    in_utc = [moment.replace(tzinfo=NEW_YORK).astimezone(UTC) for moment in local]
    assert in_utc == [datetime(2026, 10, 27, 23, tzinfo=UTC), datetime(2026, 11, 4, 0, tzinfo=UTC)]


async def test_moderators_set_replace_and_clear_a_schedule(server):
    """PUT /schedule validates and stores a schedule, replaces it, clears it with null;
    bad bodies get the field named; readers cannot change it."""
    chat = await create_chat(server.url, "sched")
    slug = chat["slug"]
    url = f"/api/chats/{slug}/schedule"
    auth = {"Authorization": f"Bearer {chat['moderator_key']}"}
    async with httpx.AsyncClient(base_url=server.url, headers=auth) as http:

        async def stored() -> Any:
            return (await http.get(f"/api/chats/{slug}")).json()["chat"]["schedule"]

        r = await http.put(url, json=TUESDAYS)
        assert r.status_code == 200 and r.json()["schedule"] == TUESDAYS
        assert await stored() == TUESDAYS
        assert len(events_of((await http.get(f"/c/{slug}/calendar.ics")).content)) == 1

        daily = {"start": "2027-01-05T08:00", "timezone": "Europe/Paris", "duration_minutes": 30}
        await http.put(url, json=daily)
        assert await stored() == {**daily, "rrule": None}

        r = await http.put(url, json={**daily, "timezone": "Mars/Olympus"})
        assert r.status_code == 422 and "timezone" in r.json()["detail"]
        r = await http.put(url, json={**TUESDAYS, "start": "2026-10-21T19:00"})
        assert r.status_code == 422 and "not an occurrence" in r.json()["detail"]
        r = await http.put(url, content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and "JSON" in r.json()["detail"]
        r = await http.put(url, json=[1, 2])
        assert r.status_code == 422 and "expected an object" in r.json()["detail"]
        assert await stored() == {**daily, "rrule": None}

        r = await http.put(url, content=b"null", headers={"Content-Type": "application/json"})
        assert r.status_code == 200 and r.json()["schedule"] is None
        assert await stored() is None
        assert events_of((await http.get("/calendar.ics")).content) == []
    async with httpx.AsyncClient(base_url=server.url) as anon:
        assert (await anon.put(url, json=TUESDAYS)).status_code == 401


async def _create_followed_chat(db_url: str, hashtag: str, schedule: dict[str, Any]) -> None:
    """A chat following the demo network, made the way the app makes one (no API creates
    demo-network chats)."""
    settings = Settings(database_url=db_url)
    engine = make_engine(db_url)
    rooms = Rooms(engine, Hub(), settings, Presenter(make_templates().env))
    try:
        await rooms.create_chat(
            hashtag=hashtag,
            title=hashtag,
            network="demo",
            sources=[SourceSpec(network="demo")],
            schedule=Schedule.from_api(schedule).to_api(),
        )
    finally:
        engine.dispose()


def _session_at(start: datetime) -> dict[str, Any]:
    return {
        "start": start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "timezone": "UTC",
        "duration_minutes": 1,
    }


async def test_followers_start_before_a_session_and_stop_after_it(db_url, make_server):
    """With a 15 s lead and a 6 s tail, a chat whose session starts in 30 s begins following
    15 s before it, a chat whose session ends in 10 s stops 6 s after that, and a chat
    without a schedule follows throughout."""
    now = datetime.now(UTC).replace(microsecond=0)
    soon_start = now + timedelta(seconds=30)
    ending_end = now + timedelta(seconds=10)
    await _create_followed_chat(db_url, "soon", _session_at(soon_start))
    await _create_followed_chat(db_url, "ending", _session_at(ending_end - timedelta(minutes=1)))
    server = make_server(
        HASHROOM_DEMO_ENABLED="true",
        HASHROOM_DEMO_SPEED="20",
        HASHROOM_SCHEDULE_LEAD_MINUTES="0.25",
        HASHROOM_SCHEDULE_TAIL_MINUTES="0.1",
    )

    async with httpx.AsyncClient(base_url=server.url) as http:

        async def following() -> set[str]:
            health = await http.get("/healthz", headers=OPERATOR_HEADERS)
            return {i["chat"] for i in health.json()["ingesters"]}

        async def post_count(slug: str) -> int:
            chats = (await http.get("/api/chats")).json()
            return next(c["post_count"] for c in chats if c["slug"] == slug)

        assert await following() == {"demo", "ending"}, "a follower ran outside its window"
        started = stopped = None
        deadline = time.monotonic() + 40
        while (started is None or stopped is None) and time.monotonic() < deadline:
            current = await following()
            moment = datetime.now(UTC)
            assert "demo" in current
            if started is None and "soon" in current:
                started = moment
            if stopped is None and "ending" not in current:
                stopped = moment
            await asyncio.sleep(0.1)
        assert started is not None and stopped is not None
        lead_edge = soon_start - timedelta(seconds=15)
        tail_edge = ending_end + timedelta(seconds=6)
        assert lead_edge - timedelta(seconds=0.5) <= started < soon_start, started
        assert tail_edge - timedelta(seconds=0.5) <= stopped <= tail_edge + timedelta(seconds=3)

        # The stopped chat keeps its posts and gets no new ones; the started one fills up.
        kept = await post_count("ending")
        assert kept > 0
        await asyncio.sleep(1.0)
        assert await post_count("ending") == kept
        assert await post_count("soon") > 0


def test_follow_windows_merge_and_name_their_next_edge():
    """Sessions closer than lead + tail make one following window; the next change is the
    nearest window edge after now."""
    from app.scheduler import follow_window

    daily = Schedule.from_api(
        {
            "start": "2026-01-01T10:00",
            "timezone": "UTC",
            "duration_minutes": 60,
            "rrule": "FREQ=DAILY",
        }
    )
    lead, tail = timedelta(minutes=10), timedelta(minutes=30)
    at = lambda h, m=0: datetime(2026, 3, 2, h, m, tzinfo=UTC)  # noqa: E731
    assert follow_window(daily, at(9, 40), lead, tail) == (False, at(9, 50))
    assert follow_window(daily, at(9, 50), lead, tail) == (True, at(11, 30))
    assert follow_window(daily, at(11, 29), lead, tail) == (True, at(11, 30))
    assert follow_window(daily, at(11, 30), lead, tail) == (False, at(9, 50) + timedelta(days=1))
    # Windows of consecutive days overlap when lead + tail exceed the gap: no stop between.
    long = timedelta(hours=12)
    active, edge = follow_window(daily, at(12), long, long)
    assert active is True and edge is not None and edge > at(12) + timedelta(days=1)


async def test_feeds_ring_an_alarm_before_each_session_and_link_to_the_room(make_server):
    """Each VEVENT carries a DISPLAY VALARM HASHROOM_CALENDAR_ALARM_MINUTES before it (10 by
    default, none at 0) naming the room's address, and its URL is the room."""
    for env, minutes in (
        ({}, 10),
        ({"HASHROOM_CALENDAR_ALARM_MINUTES": "5"}, 5),
        (
            {"HASHROOM_CALENDAR_ALARM_MINUTES": "0"},
            0,
        ),
    ):
        server = make_server(**env)
        chat = await create_chat(server.url, f"alarm{minutes}", schedule=TUESDAYS)
        room = f"{server.url}/c/{chat['slug']}"
        async with httpx.AsyncClient(base_url=server.url) as http:
            body = (await http.get(f"/c/{chat['slug']}/calendar.ics")).content
        (event,) = events_of(body)
        assert str(event["url"]) == room
        alarms = [c for c in event.walk() if c.name == "VALARM"]
        if minutes == 0:
            assert alarms == [], "an alarm of 0 minutes means no alarm"
            continue
        (alarm,) = alarms
        assert str(alarm["action"]) == "DISPLAY"
        assert alarm.decoded("trigger") == timedelta(minutes=-minutes)
        assert room in str(alarm["description"])
        server.stop()
