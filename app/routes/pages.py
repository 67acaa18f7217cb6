"""Server-rendered pages. Each is readable before its script runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from ..deps import IngestDep, RoomsDep, SettingsDep, moderator_slugs
from ..rooms import NotFound
from ..security import csrf_ok, csrf_token, key_matches
from .api import ChatIn, create_chat_from

router = APIRouter(include_in_schema=False)


def _templates(request: Request) -> Any:
    return request.app.state.templates


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, rooms: RoomsDep) -> HTMLResponse:
    chats = await rooms.list_chats()
    return _templates(request).TemplateResponse(
        request,
        "home.html",
        {"chats": chats, "csrf_token": csrf_token(request.session), "created": None},
    )


@router.post("/chats", response_class=HTMLResponse)
async def create_chat_form(
    request: Request,
    rooms: RoomsDep,
    ingest: IngestDep,
    settings: SettingsDep,
    hashtag: str = Form(""),
    title: str = Form(""),
    description: str = Form(""),
    network: str = Form("native"),
    csrf_token_field: str = Form("", alias="csrf_token"),
) -> HTMLResponse:
    """The no-script fallback of the home page's form."""
    if not csrf_ok(request.session, csrf_token_field):
        raise HTTPException(403, "stale form: reload the page and submit again")
    error = None
    created = None
    try:
        body = ChatIn(hashtag=hashtag, title=title, description=description, network=network)
        created = await create_chat_from(body, request, rooms, ingest, settings)
        request.session["mod"] = sorted({*moderator_slugs(request), created["slug"]})
    except ValidationError as exc:
        error = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
    except HTTPException as exc:
        error = str(exc.detail)
    chats = await rooms.list_chats()
    return _templates(request).TemplateResponse(
        request,
        "home.html",
        {
            "chats": chats,
            "csrf_token": csrf_token(request.session),
            "created": created,
            "error": error,
            "form": {"hashtag": hashtag, "title": title, "description": description},
        },
        status_code=201 if created else 422,
    )


@router.get("/c/{slug}", response_class=HTMLResponse)
async def chat_page(
    slug: str, request: Request, rooms: RoomsDep, settings: SettingsDep, key: str | None = None
) -> Any:
    try:
        chat = await rooms.get_chat(slug)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    if key is not None:
        # The moderator link: remember the role in the signed cookie, then drop the key from
        # the address bar (and from history, referrers and screenshots).
        if not key_matches(key, chat.moderator_key_hash):
            raise HTTPException(403, "this moderator link is not valid for this chat")
        request.session["mod"] = sorted({*moderator_slugs(request), slug})
        return RedirectResponse(f"/c/{slug}", status_code=303)
    snap = await rooms.snapshot(slug)
    is_mod = slug in moderator_slugs(request)
    # The networks this room follows; those with a publisher take posts from users' accounts.
    networks = await rooms.source_networks(chat.id)  # type: ignore[arg-type]
    postable = {n for n in networks if n in request.app.state.publishers}
    accounts = request.app.state.accounts
    mine = request.session.get("accounts", [])
    return _templates(request).TemplateResponse(
        request,
        "chat.html",
        {
            "chat": {
                "slug": chat.slug,
                "hashtag": chat.hashtag,
                "title": chat.title,
                "description": chat.description,
                "network": chat.network,
                "epoch": snap.epoch,
                "offset": snap.offset,
                "limit": settings.native_max_graphemes,
                "can_post": chat.network in ("native", "demo") or bool(postable),
            },
            "networks": networks,
            "accounts": await accounts.describe(mine, postable) if accounts and mine else [],
            "posts": snap.posts,
            "pins": snap.pins,
            "past_questions": snap.past_questions,
            "is_moderator": is_mod,
            "display_name": request.session.get("name", ""),
            "csrf_token": csrf_token(request.session),
        },
    )
