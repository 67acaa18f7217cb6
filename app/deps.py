"""Request dependencies: the app's services and who the caller is."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from starlette.requests import HTTPConnection

from .config import Settings
from .hub import Hub
from .ingest import IngestManager
from .rooms import NotFound, Rooms
from .security import csrf_ok, key_matches

CSRF_HEADER = "x-csrf-token"

# Ids are 64-bit integer columns: anything larger names nothing, and some drivers fail on
# it instead of finding no row, so the API refuses it with a 422 before any lookup.
INT64_MAX = 2**63 - 1
RowId = Annotated[int, Path(ge=1, le=INT64_MAX, description="A row id (a positive integer).")]


def get_rooms(conn: HTTPConnection) -> Rooms:
    return conn.app.state.rooms


def get_settings_dep(conn: HTTPConnection) -> Settings:
    return conn.app.state.settings


def get_hub(conn: HTTPConnection) -> Hub:
    return conn.app.state.hub


def get_ingest(conn: HTTPConnection) -> IngestManager:
    return conn.app.state.ingest


RoomsDep = Annotated[Rooms, Depends(get_rooms)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
HubDep = Annotated[Hub, Depends(get_hub)]
IngestDep = Annotated[IngestManager, Depends(get_ingest)]


def cookie_session_used(request: Request) -> bool:
    return request.app.state.session_cookie in request.cookies


def require_csrf(request: Request) -> None:
    """Cookie-carrying writes must echo the session's CSRF token in a header.

    Requests with an ``Authorization`` header or no session cookie carry no ambient
    credentials a foreign page could ride on, so they pass.
    """
    if request.headers.get("authorization") or not cookie_session_used(request):
        return
    if not csrf_ok(request.session, request.headers.get(CSRF_HEADER)):
        raise HTTPException(
            403, "missing or stale CSRF token: reload the page and try again (X-CSRF-Token)"
        )


CsrfDep = Depends(require_csrf)


def moderator_slugs(request: Request) -> list[str]:
    return list(request.session.get("mod", []))


async def require_moderator(slug: str, request: Request, rooms: RoomsDep) -> str:
    """Allow a moderator of chat ``slug``: Bearer key (API) or moderator cookie (browser)."""
    try:
        chat = await rooms.get_chat(slug)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    auth = request.headers.get("authorization", "")
    if auth:
        scheme, _, key = auth.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise HTTPException(
                401,
                "use 'Authorization: Bearer <moderator_key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not key_matches(key.strip(), chat.moderator_key_hash):
            raise HTTPException(403, "this moderator key does not belong to this chat")
        return "key"
    if cookie_session_used(request) and slug in moderator_slugs(request):
        require_csrf(request)
        return "cookie"
    raise HTTPException(
        401,
        "moderators only: send 'Authorization: Bearer <moderator_key>' or open the moderator link",
        headers={"WWW-Authenticate": "Bearer"},
    )


ModeratorDep = Annotated[str, Depends(require_moderator)]
