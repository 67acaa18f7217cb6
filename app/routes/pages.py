"""Server-rendered pages. Each is readable before its script runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import ValidationError

from .. import text
from ..deps import IngestDep, RoomsDep, SettingsDep
from ..errors import DomainError
from ..grants import (
    grant_host,
    grant_moderator,
    is_moderator,
    read_host_link,
)
from ..limits import CHATS, enforce
from ..rooms import chat_hashtags
from ..security import csrf_ok, csrf_token, key_matches
from .accounts import session_accounts
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


FORM_FIELDS = (
    "hashtag",
    "title",
    "description",
    "follow_mastodon",
    "mastodon_instances",
    "follow_bluesky",
    "bluesky_stream",
    "bluesky_url",
    "bluesky_identifier",
    "follow_x",
)


def sources_from_form(form: Any) -> list[dict[str, Any]]:
    """The ``sources`` of the API from the home page form's fields."""
    sources: list[dict[str, Any]] = []
    if form.get("follow_mastodon"):
        instances = [line.strip() for line in str(form.get("mastodon_instances", "")).splitlines()]
        instances = [i for i in instances if i][:10]
        if not instances:
            raise ValueError("Mastodon: give at least one instance, e.g. mastodon.social")
        token = str(form.get("mastodon_token", "")).strip()
        for n, instance in enumerate(instances):
            source: dict[str, Any] = {"network": "mastodon", "instance": instance}
            if token and n == 0:
                source["access_token"] = token
            sources.append(source)
    if form.get("follow_bluesky"):
        source = {"network": "bluesky", "stream": str(form.get("bluesky_stream") or "jetstream")}
        if url := str(form.get("bluesky_url", "")).strip():
            source["url"] = url
        identifier = str(form.get("bluesky_identifier", "")).strip()
        password = str(form.get("bluesky_app_password", "")).strip()
        if identifier or password:
            if not (identifier and password):
                raise ValueError("Bluesky: give both the handle and an app password, or neither")
            source["identifier"], source["app_password"] = identifier, password
        sources.append(source)
    if form.get("follow_x"):
        token = str(form.get("x_bearer_token", "")).strip()
        if not token:
            raise ValueError("X: give your app's bearer token (X reading is paid, by you)")
        sources.append({"network": "x", "bearer_token": token})
    return sources


@router.post("/chats", response_class=HTMLResponse)
async def create_chat_form(
    request: Request, rooms: RoomsDep, ingest: IngestDep, settings: SettingsDep
) -> Response:
    """The home page's form. Answers JSON to its script (``Accept: application/json``) and
    a page without one."""
    form = await request.form()
    wants_json = "application/json" in request.headers.get("accept", "")
    if not csrf_ok(request.session, str(form.get("csrf_token", ""))):
        raise HTTPException(403, "stale form: reload the page and submit again")
    error = None
    created = None
    status, headers = 422, {}
    try:
        await enforce(request, CHATS)
        # One field takes every tag, separated by spaces or commas; the first is the reply tag.
        tags = text.split_hashtags(str(form.get("hashtag", "")))
        body = ChatIn(
            hashtag=None if tags else "",
            hashtags=tags or None,
            title=str(form.get("title", "")),
            description=str(form.get("description", "")),
            sources=sources_from_form(form) or None,
        )
        created = await create_chat_from(body, request, rooms, ingest, settings)
    except ValidationError as exc:
        error = "; ".join(
            f"{'.'.join(str(x) for x in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
    except ValueError as exc:
        error = str(exc)
    except DomainError as exc:
        error = exc.message
        if exc.status == 429:  # over the quota: say when to come back, like the API
            status, headers = 429, dict(exc.headers)
    status = 201 if created else status
    if wants_json:
        return JSONResponse(created if created else {"detail": error}, status, headers)
    chats = await rooms.list_chats()
    return _templates(request).TemplateResponse(
        request,
        "home.html",
        {
            "chats": chats,
            "csrf_token": csrf_token(request.session),
            "created": created,
            "error": error,
            "form": {k: form.get(k, "") for k in FORM_FIELDS},
        },
        status_code=status,
        headers=headers,
    )


@router.get("/c/{slug}", response_class=HTMLResponse)
async def chat_page(
    slug: str, request: Request, rooms: RoomsDep, settings: SettingsDep, key: str | None = None
) -> Any:
    chat = await rooms.get_chat(slug)
    if key is not None:
        # A moderator link of the older form (key in the query): take it, then drop the key
        # from the address bar. Links made now carry the key in the fragment instead.
        if not key_matches(key, chat.moderator_key_hash):
            raise HTTPException(403, "this moderator link is not valid for this chat")
        grant_moderator(request.session, settings.secret_key, chat)
        return RedirectResponse(f"/c/{slug}", status_code=303)
    snap = await rooms.snapshot(slug)
    is_mod = is_moderator(request.session, settings.secret_key, chat)
    # The networks this room follows; those with a publisher take posts from users' accounts.
    networks = await rooms.source_networks(chat.id)  # type: ignore[arg-type]
    postable = {n for n in networks if n in request.app.state.publishers}
    accounts = request.app.state.accounts
    mine = [a.id for a in await session_accounts(request)]
    return _templates(request).TemplateResponse(
        request,
        "chat.html",
        {
            "chat": {
                "slug": chat.slug,
                "hashtag": chat.hashtag,
                "hashtags": chat_hashtags(chat),
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
            "push_minutes": f"{settings.push_start_minutes:g}",
        },
    )


async def _chat_or_404(rooms: Any, slug: str) -> Any:
    return await rooms.get_chat(slug)


def _enter_page(request: Request, chat: Any, kind: str, error: str | None, status: int) -> Any:
    return _templates(request).TemplateResponse(
        request,
        "enter.html",
        {"chat": chat, "kind": kind, "error": error, "csrf_token": csrf_token(request.session)},
        status_code=status,
    )


@router.get("/c/{slug}/moderate", response_class=HTMLResponse)
async def moderate_form(slug: str, request: Request, rooms: RoomsDep) -> Any:
    """Where a moderator link's key is handed over: the chat page's script posts it here;
    without scripts this form takes it (paste the part after ``#key=``)."""
    return _enter_page(request, await _chat_or_404(rooms, slug), "key", None, 200)


@router.post("/c/{slug}/moderate", response_class=HTMLResponse)
async def moderate_sign_in(
    slug: str, request: Request, rooms: RoomsDep, settings: SettingsDep
) -> Any:
    chat = await _chat_or_404(rooms, slug)
    form = await request.form()
    if not csrf_ok(request.session, str(form.get("csrf_token", ""))):
        return _enter_page(request, chat, "key", "Stale form: reload the page and try again.", 403)
    key = str(form.get("key", "")).strip().removeprefix("#").removeprefix("key=")
    if not key or not key_matches(key, chat.moderator_key_hash):
        return _enter_page(
            request, chat, "key", "This moderator key is not valid for this chat.", 403
        )
    grant_moderator(request.session, settings.secret_key, chat)
    return RedirectResponse(f"/c/{slug}", status_code=303)


@router.get("/c/{slug}/host", response_class=HTMLResponse)
async def host_form(slug: str, request: Request, rooms: RoomsDep) -> Any:
    """Where a host link's token is handed over (as for the moderator link)."""
    return _enter_page(request, await _chat_or_404(rooms, slug), "host", None, 200)


@router.post("/c/{slug}/host", response_class=HTMLResponse)
async def host_sign_in(slug: str, request: Request, rooms: RoomsDep, settings: SettingsDep) -> Any:
    chat = await _chat_or_404(rooms, slug)
    form = await request.form()
    if not csrf_ok(request.session, str(form.get("csrf_token", ""))):
        return _enter_page(request, chat, "host", "Stale form: reload the page and try again.", 403)
    token = str(form.get("token", "")).strip().removeprefix("#").removeprefix("host=")
    person = read_host_link(settings.secret_key, chat, token)
    if person is None:
        return _enter_page(
            request,
            chat,
            "host",
            "This host link is not valid for this chat (the moderator key may have changed: "
            "ask a moderator for a new link).",
            403,
        )
    grant_host(request.session, settings.secret_key, chat, person)
    request.session["name"] = person["name"]
    return RedirectResponse(f"/c/{slug}", status_code=303)
