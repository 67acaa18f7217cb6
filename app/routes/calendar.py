"""When chats happen: a chat's schedule (moderators set it), the sessions coming up, and
iCalendar feeds of every scheduled chat or of one."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response

from ..deps import RoomsDep, SettingsDep
from ..moderation import Moderation
from ..rooms import chat_json
from ..schedule import ChatCalendarEntry, calendar_ics
from ..scheduler import schedule_of, upcoming_sessions
from .errors import errors
from .moderation import ActorDep
from .transcripts import parse_moment

router = APIRouter(responses=errors(404, 422))

ICS_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"description": "An iCalendar feed.", "content": {"text/calendar": {}}}
}

ICS_TYPE = "text/calendar; charset=utf-8"
MAX_DAYS = 366


@router.put(
    "/api/chats/{slug}/schedule",
    tags=["api"],
    summary="Set or clear a chat's schedule (moderators)",
    responses=errors(401, 403),
    description='Body: `{"start": "2026-12-01T19:00", "timezone": "America/New_York", '
    '"duration_minutes": 60, "rrule": "FREQ=WEEKLY;BYDAY=TU"}` (`rrule` optional), or '
    "`null` to clear it. A chat following a network with a schedule is followed only "
    "around its sessions.",
)
async def put_schedule(slug: str, request: Request, actor: ActorDep) -> dict[str, Any]:
    try:
        raw = json.loads(await request.body() or b"")
    except ValueError as exc:
        raise HTTPException(
            422, "send a JSON schedule object, or null to clear the schedule"
        ) from exc
    if raw is not None and not isinstance(raw, dict):
        raise HTTPException(
            422,
            "schedule: expected an object with start, timezone, "
            "duration_minutes and rrule, or null",
        )
    state = request.app.state
    schedule = await state.validate_schedule(raw) if raw is not None else None
    moderation: Moderation = state.moderation
    return {"schedule": await moderation.set_schedule(slug, schedule, actor)}


@router.get(
    "/api/sessions",
    tags=["api"],
    summary="Sessions live now or coming up",
    description="Sessions of every scheduled chat that are running at `from` (default now) "
    "or start within `days` of it, soonest first. Times are UTC; `local_start` is the start "
    "on the host's clock in `timezone`.",
)
async def list_sessions(
    rooms: RoomsDep,
    days: float = Query(14, gt=0, le=MAX_DAYS),
    start: str | None = Query(None, alias="from", max_length=40),
) -> dict[str, Any]:
    now = parse_moment("from", start) if start else datetime.now(UTC)
    return {"sessions": upcoming_sessions(await rooms.list_chats(), now, days)}


def _base_url(request: Request, settings: Any) -> str:
    return settings.public_url.rstrip("/") or str(request.base_url).rstrip("/")


def _ics(entries: list[ChatCalendarEntry], request: Request, settings: Any, name: str) -> Response:
    body = calendar_ics(
        entries,
        now=datetime.now(UTC),
        base_url=_base_url(request, settings) + "/",
        name=name,
        alarm_minutes=settings.calendar_alarm_minutes,
    )
    return Response(body, media_type=ICS_TYPE)


def _entry(chat: dict[str, Any]) -> ChatCalendarEntry:
    return ChatCalendarEntry(
        slug=chat["slug"],
        hashtag=chat["hashtag"],
        hashtags=tuple(chat.get("hashtags") or ()),
        title=chat["title"],
        description=chat["description"],
        url=f"c/{chat['slug']}",
        schedule=schedule_of(chat),
    )


@router.get(
    "/calendar.ics",
    tags=["calendar"],
    summary="Calendar feed of every scheduled chat",
    response_class=Response,
    responses=ICS_RESPONSE,
)
async def all_chats_ics(request: Request, rooms: RoomsDep, settings: SettingsDep) -> Response:
    chats = await rooms.list_chats()
    return _ics([_entry(c) for c in chats], request, settings, "Hashroom chats")


@router.get(
    "/c/{slug}/calendar.ics",
    tags=["calendar"],
    summary="Calendar feed of one chat",
    response_class=Response,
    responses=ICS_RESPONSE,
)
async def chat_ics(slug: str, request: Request, rooms: RoomsDep, settings: SettingsDep) -> Response:
    chat = chat_json(await rooms.get_chat(slug))
    # A chat without a schedule gets an empty but valid calendar: a subscription made while
    # it had one keeps working.
    entry = _entry(chat)
    return _ics([entry], request, settings, f"{entry.tag_line} — {chat['title']}")
