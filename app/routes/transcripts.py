"""Questions with their answers, live (``GET /api/chats/{slug}/questions``) and after the
chat: the transcript page ``/c/{slug}/transcript`` and its exports (``.md``, ``.html``,
``.json``, ``.csv``), optionally for a time window or one scheduled session.

Both read the room as readers see it: hidden, held and deleted posts are left out, and so
are reposts (a boost repeats a post already in the room). Replies in a chat's threads that
dropped the hashtag are included whenever a network adapter delivered them into the room:
the transcript is the room, not a hashtag search. Grouping is :func:`app.qa.group`; the
exports are :mod:`app.transcript`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlmodel import Session

from .. import qa, transcript, votes
from ..deps import RoomsDep, SettingsDep
from ..models import Chat, Pin, Post
from ..policy import visible
from ..present import post_json
from ..rooms import Rooms, chat_hashtags
from ..schedule import sessions
from ..scheduler import schedule_of
from ..templating import STATIC_DIR
from .errors import errors

router = APIRouter(responses=errors(404, 422))

EXPORTS = {
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
}
# Past sessions offered as links on a scheduled chat's transcript page.
SESSION_LINKS = 12
SESSION_LOOKBACK = timedelta(days=400)


@dataclass(frozen=True, slots=True)
class _QAItem:
    """A post as :func:`app.qa.group` reads it, carrying its client JSON along."""

    id: int
    text: str
    in_reply_to_id: int | None
    is_host: bool
    created_at: datetime
    json: dict[str, Any]


@dataclass(slots=True)
class RoomRead:
    """A consistent read of a room: the chat, its shown posts (oldest first) and the ids of
    its currently pinned posts (oldest pin first)."""

    chat: Chat
    posts: list[Post]
    hosts: set[str]
    pinned: list[int]
    tallies: dict[int, votes.Tally]  # votes and answered state of the questions that have any
    pinned_questions: set[int]  # posts pinned as questions, now or before


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; they are stored as UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def read_room(rooms: Rooms, slug: str) -> RoomRead:
    def fn(session: Session) -> RoomRead:
        chat = Rooms.chat_by_slug(session, slug)
        posts = (
            session.execute(
                select(Post)
                .where(
                    Post.chat_id == chat.id,  # type: ignore[arg-type]
                    *visible(),
                    Post.reposted_by_handle.is_(None),  # type: ignore[union-attr]
                )
                .order_by(Post.created_at, Post.id)  # type: ignore[arg-type]
            )
            .scalars()
            .all()
        )
        pinned = (
            session.execute(
                select(Pin.post_id)
                .where(Pin.chat_id == chat.id, Pin.unpinned_at.is_(None))  # type: ignore[arg-type, union-attr]
                .order_by(Pin.pinned_at, Pin.id)  # type: ignore[arg-type]
            )
            .scalars()
            .all()
        )
        hosts = rooms.hosts(session, chat.id)  # type: ignore[arg-type]
        return RoomRead(
            chat=chat,
            posts=list(posts),
            hosts=hosts,
            pinned=list(pinned),
            tallies=votes.tallies(session, chat.id),  # type: ignore[arg-type]
            pinned_questions=votes.question_ids(session, chat.id),  # type: ignore[arg-type]
        )

    return await rooms.read(fn)


# -- live grouping ---------------------------------------------------------------------------


QUESTION_SORTS = ("votes", "time")
QUESTION_STATES = ("open", "answered", "all")


@router.get(
    "/api/chats/{slug}/questions",
    tags=["api"],
    summary="Questions: ranked by the audience, with their answers",
    description="`questions`: every shown question (a post opening with Q1:, Q2: … or pinned "
    "as a question) as `{post, number, votes, voted, answered, answers, current}`, "
    "filtered by `state` (open, answered or all) and ordered by `sort`: `votes` (most first, "
    "then the earliest asked) or `time` (the newest first). `voted` says whether this "
    "browser's (or signed-in account's) vote is on it. `counts`: `{open, answered, all}` "
    "whatever the filter. `groups`: `[{number, question: post | null, answers: [post…], "
    "count, current, votes, answered}]` over every shown post, ordered by question number; "
    "`current` marks the question readers are on: the latest pinned question, else the "
    "latest asked.",
)
async def questions(
    slug: str,
    request: Request,
    rooms: RoomsDep,
    sort: Literal["votes", "time"] = Query("votes"),
    state: Literal["open", "answered", "all"] = Query("all"),
) -> dict[str, Any]:
    room = await read_room(rooms, slug)
    secret = request.app.state.settings.secret_key
    voter = await votes.voter_for(rooms, request.session, secret, create=False)
    mine: set[int] = set()
    if voter is not None:
        chat_id = room.chat.id
        mine = await rooms.read(lambda s: votes.voted_by(s, chat_id, voter))  # type: ignore[arg-type]
    items = []
    for post in room.posts:
        is_host = rooms.is_host(post, room.hosts)
        items.append(
            _QAItem(
                id=post.id,  # type: ignore[arg-type]
                text=post.text,
                in_reply_to_id=post.in_reply_to_id,
                is_host=is_host,
                created_at=_aware(post.created_at),
                json=post_json(post, is_host=is_host),
            )
        )
    groups = qa.group(items, room.pinned)
    by_number = {g.question.id: g for g in groups if g.question is not None}
    none = votes.Tally()
    ranked = []
    for item in items:
        group = by_number.get(item.id)
        if group is None and item.id not in room.pinned_questions:
            if item.json.get("question") is None:
                continue
        tally = room.tallies.get(item.id, none)
        ranked.append(
            {
                "post": item.json,
                "number": group.number if group else item.json.get("question"),
                "votes": tally.votes,
                "voted": item.id in mine,
                "answered": tally.answered,
                "answers": group.count if group else 0,
                "current": bool(group and group.current),
                "_at": item.created_at,
            }
        )
    counts = {
        "open": sum(1 for q in ranked if not q["answered"]),
        "answered": sum(1 for q in ranked if q["answered"]),
        "all": len(ranked),
    }
    if state != "all":
        ranked = [q for q in ranked if q["answered"] == (state == "answered")]
    if sort == "votes":
        ranked.sort(key=lambda q: (-q["votes"], q["_at"], q["post"]["id"]))
    else:
        ranked.sort(key=lambda q: (q["_at"], q["post"]["id"]), reverse=True)
    for q in ranked:
        del q["_at"]
    return {
        "questions": ranked,
        "counts": counts,
        "groups": [
            {
                "number": g.number,
                "question": g.question.json if g.question is not None else None,
                "answers": [a.json for a in g.answers],
                "count": g.count,
                "current": g.current,
                "votes": room.tallies.get(g.question.id, none).votes if g.question else 0,
                "answered": room.tallies.get(g.question.id, none).answered if g.question else False,
            }
            for g in groups
        ],
    }


# -- windows ---------------------------------------------------------------------------------


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def parse_moment(name: str, value: str) -> datetime:
    """An ISO 8601 date-time from the query; without an offset it is read as UTC."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise HTTPException(
            422, f"{name}: {value!r} is not an ISO 8601 date and time, like 2026-11-03T19:00Z"
        ) from exc
    moment = _aware(moment)
    if not EARLIEST <= moment <= LATEST:  # date arithmetic near year 1 or 9999 overflows
        raise HTTPException(
            422, f"{name}: give a date between {EARLIEST.year} and {LATEST.year - 1}"
        )
    return moment


def session_window(chat: Chat, day: str, tail: timedelta) -> tuple[datetime, datetime]:
    """The window of a scheduled chat's session(s) on local date ``day``: from the first
    start to the last end plus ``tail`` (late answers, as long as followers keep running)."""
    schedule = schedule_of(chat)
    if schedule is None:
        raise HTTPException(422, "session: this chat has no schedule; use start and end instead")
    try:
        local_day = date.fromisoformat(day.strip())
    except ValueError as exc:
        raise HTTPException(422, f"session: {day!r} is not a date like 2026-11-03") from exc
    zone = schedule.zone
    day_start = datetime.combine(local_day, time(0), tzinfo=zone).astimezone(UTC)
    day_end = datetime.combine(local_day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    found = [s for s in sessions(schedule, day_start, day_end) if day_start <= s.start < day_end]
    if not found:
        raise HTTPException(
            404, f"session: this chat has no session on {local_day} ({schedule.timezone})"
        )
    return found[0].start, found[-1].end + tail


def past_sessions(chat: Chat, now: datetime) -> list[dict[str, str]]:
    """The chat's latest sessions that have started, newest first, as page links."""
    schedule = schedule_of(chat)
    if schedule is None:
        return []
    found = sessions(schedule, now - SESSION_LOOKBACK, now)[-SESSION_LINKS:]
    links = []
    for item in reversed(found):
        local = item.start.astimezone(schedule.zone)
        links.append(
            {
                "date": local.strftime("%Y-%m-%d"),
                "label": local.strftime("%a %d %b %Y, %H:%M ") + schedule.timezone,
                "start": item.start.isoformat().replace("+00:00", "Z"),
            }
        )
    return links


@dataclass(slots=True)
class Built:
    transcript: transcript.Transcript
    chat: Chat
    suffix: str  # for file names: "", "-2026-11-03", "-window"


async def build_transcript(
    rooms: Rooms,
    tail: timedelta,
    slug: str,
    start: str | None,
    end: str | None,
    session: str | None,
) -> Built:
    room = await read_room(rooms, slug)
    chat = room.chat
    lower = upper = None
    suffix = ""
    if session:
        if start or end:
            raise HTTPException(422, "give either session or start/end, not both")
        lower, upper = session_window(chat, session, tail)
        suffix = f"-{session.strip()}"
    else:
        if start:
            lower = parse_moment("start", start)
        if end:
            upper = parse_moment("end", end)
        if lower and upper and upper < lower:
            raise HTTPException(422, "end: the window ends before it starts")
        if lower or upper:
            suffix = "-window"
    posts = [
        transcript.TranscriptPost(
            id=p.id,  # type: ignore[arg-type]
            author_name=p.author_name,
            author_handle=p.author_handle,
            network=p.network,
            created_at=_aware(p.created_at),
            text=p.text,
            html=p.html,
            url=p.url,
            in_reply_to_id=p.in_reply_to_id,
            reply_to_handle=p.reply_to_handle,
            is_host=rooms.is_host(p, room.hosts),
            votes=room.tallies.get(p.id, votes.Tally()).votes,  # type: ignore[arg-type]
            answered=room.tallies.get(p.id, votes.Tally()).answered,  # type: ignore[arg-type]
        )
        for p in room.posts
    ]
    window = None
    if lower and upper:
        window = (lower, upper)
    elif lower:
        posts = [p for p in posts if p.created_at >= lower]
    elif upper:
        posts = [p for p in posts if p.created_at <= upper]
    built = transcript.build(
        slug=chat.slug,
        hashtag=chat.hashtag,
        hashtags=chat_hashtags(chat),
        title=chat.title,
        description=chat.description,
        posts=posts,
        window=window,
        pinned_question_ids=room.pinned,
    )
    return Built(transcript=built, chat=chat, suffix=suffix)


def _tail(settings: Any) -> timedelta:
    return timedelta(minutes=settings.schedule_tail_minutes)


# -- pages and exports -----------------------------------------------------------------------


@router.get("/c/{slug}/transcript", response_class=HTMLResponse, include_in_schema=False)
async def transcript_page(
    slug: str,
    request: Request,
    rooms: RoomsDep,
    settings: SettingsDep,
    start: str | None = Query(None, max_length=40),
    end: str | None = Query(None, max_length=40),
    session: str | None = Query(None, max_length=20),
) -> HTMLResponse:
    built = await build_transcript(rooms, _tail(settings), slug, start, end, session)
    query = str(request.url.query)
    return request.app.state.templates.TemplateResponse(
        request,
        "transcript.html",
        {
            "t": built.transcript,
            "ranking": transcript.ranking,
            "chat": built.chat,
            "query": f"?{query}" if query else "",
            "sessions": past_sessions(built.chat, datetime.now(UTC)),
            "selected_session": (session or "").strip(),
            "form": {
                "start": _form_value(start),
                "end": _form_value(end),
            },
        },
    )


def _form_value(value: str | None) -> str:
    """A query time as a datetime-local input value (UTC wall time), or ""."""
    if not value:
        return ""
    try:
        moment = _aware(datetime.fromisoformat(value.strip()))
    except ValueError:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


@router.get(
    "/c/{slug}/transcript.{fmt}",
    tags=["transcripts"],
    summary="Export a transcript",
    description="`fmt` is md, html (self-contained, no scripts), json (questions with their "
    "answers, and every post) or csv (one row per post). Optional window: `start` and/or "
    "`end` (ISO 8601; UTC when no offset is given), or `session=YYYY-MM-DD` for a scheduled "
    "chat's session on that date in the chat's time zone (until "
    "`HASHROOM_SCHEDULE_TAIL_MINUTES` after it ends).",
)
async def transcript_export(
    slug: str,
    fmt: str,
    rooms: RoomsDep,
    settings: SettingsDep,
    start: str | None = Query(None, max_length=40),
    end: str | None = Query(None, max_length=40),
    session: str | None = Query(None, max_length=20),
) -> Response:
    if fmt not in EXPORTS:
        raise HTTPException(404, f"no transcript format {fmt!r}; use one of {', '.join(EXPORTS)}")
    built = await build_transcript(rooms, _tail(settings), slug, start, end, session)
    t = built.transcript
    if fmt == "md":
        body = transcript.to_markdown(t)
    elif fmt == "html":
        body = transcript.to_html(t, _export_css())
    elif fmt == "json":
        body = transcript.to_json(t)
    else:
        body = transcript.to_csv(t)
    name = f"{built.chat.slug}-transcript{built.suffix}.{fmt}"
    return Response(
        body,
        media_type=EXPORTS[fmt],
        # A download: the HTML export's inline stylesheet is meant for a file opened on its
        # own, not for this site's Content-Security-Policy.
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@lru_cache(maxsize=1)
def _export_css() -> str:
    """The transcript page's own stylesheet, inlined into the HTML export."""
    return (STATIC_DIR / "transcript.css").read_text(encoding="utf-8")
