"""Request dependencies: the app's services and who the caller is."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy import select
from starlette.requests import HTTPConnection

from .config import Settings
from .errors import Forbidden, Unauthorized
from .grants import is_moderator
from .hub import Hub
from .ingest import IngestManager
from .models import Account
from .publishing import key_hash
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


def _bearer(request: Request) -> str | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


async def bearer_authenticates(request: Request) -> bool:
    """True when the request's Bearer token is the moderator key of the chat in its path or
    the key of a connected account."""
    key = _bearer(request)
    if key is None:
        return False
    rooms: Rooms = request.app.state.rooms
    slug = request.path_params.get("slug")
    if slug:
        try:
            chat = await rooms.get_chat(slug)
        except NotFound:
            chat = None
        if chat is not None and key_matches(key, chat.moderator_key_hash):
            return True
    owner = key_hash(key)
    return await rooms.read(
        lambda s: (
            s.execute(select(Account.id).where(Account.owner == owner)).first()  # type: ignore[arg-type]
            is not None
        )
    )


def _check_csrf_token(request: Request) -> None:
    if not csrf_ok(request.session, request.headers.get(CSRF_HEADER)):
        raise Forbidden("missing or stale CSRF token: reload the page and try again (X-CSRF-Token)")


async def require_csrf(request: Request) -> None:
    """Cookie-carrying writes must echo the session's CSRF token in a header.

    Requests without the session cookie carry no ambient credentials a foreign page could
    ride on, so they pass; so do requests whose ``Authorization`` actually authenticates
    (a moderator or account key): any other header, even one naming nothing, does not
    excuse a cookie-carrying request from the token.
    """
    if not cookie_session_used(request):
        return
    if await bearer_authenticates(request):
        return
    _check_csrf_token(request)


CsrfDep = Depends(require_csrf)


def secret_key(conn: HTTPConnection) -> str:
    return conn.app.state.settings.secret_key


async def require_moderator(slug: str, request: Request, rooms: RoomsDep) -> str:
    """Allow a moderator of chat ``slug``: Bearer key (API) or a live moderator grant in the
    session cookie (browser; see app/grants.py)."""
    chat = await rooms.get_chat(slug)
    auth = request.headers.get("authorization", "")
    if auth:
        key = _bearer(request)
        if key is None:
            raise Unauthorized(
                "use 'Authorization: Bearer <moderator_key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not key_matches(key, chat.moderator_key_hash):
            raise Forbidden("this moderator key does not belong to this chat")
        return "key"
    if cookie_session_used(request) and is_moderator(request.session, secret_key(request), chat):
        _check_csrf_token(request)
        return "cookie"
    raise Unauthorized(
        "moderators only: send 'Authorization: Bearer <moderator_key>' or open the moderator link",
        headers={"WWW-Authenticate": "Bearer"},
    )


ModeratorDep = Annotated[str, Depends(require_moderator)]
