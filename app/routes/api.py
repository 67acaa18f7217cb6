"""The JSON API: chats, posts, events, pins, questions, hiding."""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field, field_validator, model_validator

from .. import text
from ..deps import INT64_MAX, CsrfDep, IngestDep, RoomsDep, RowId, SettingsDep
from ..errors import Invalid
from ..grants import grant_moderator, host_link_token, is_moderator, vouched_host
from ..limits import CHATS, POSTS, limit
from ..rooms import SourceSpec, chat_json
from ..security import key_matches
from .errors import errors
from .moderation import ActorDep

router = APIRouter(prefix="/api", tags=["api"], responses=errors(400, 404, 413, 422))

CREATABLE_NETWORKS = {"native"}


class SourceIn(BaseModel):
    """A place to follow the chat's hashtag (network-specific fields are checked there)."""

    model_config = {"extra": "allow"}
    network: str = Field(max_length=20)


# The schema's bound on a hashtag list; HASHROOM_MAX_HASHTAGS_PER_CHAT (at most this) is
# checked on create and on edit.
HASHTAGS_BOUND = 10


def _tags(values: list[str]) -> list[str]:
    return text.normalize_hashtags(values, HASHTAGS_BOUND)


class ChatIn(BaseModel):
    hashtag: str | None = Field(
        None,
        min_length=1,
        max_length=101,
        examples=["EdChat"],
        description="The reply tag. Optional with `hashtags`; if both are given, "
        "it must be the first of `hashtags`.",
    )
    hashtags: list[str] | None = Field(
        None,
        min_length=1,
        max_length=HASHTAGS_BOUND,
        examples=[["EdChat", "EdChat2026"]],
        description="Every tag the chat follows, in order; the first is the reply tag.",
    )
    title: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    network: str = Field("native", max_length=20)
    # The schema's bound; HASHROOM_MAX_SOURCES_PER_CHAT (at most this) is checked on create.
    sources: list[SourceIn] | None = Field(None, max_length=50)
    schedule: dict[str, Any] | None = None

    @field_validator("hashtag")
    @classmethod
    def _tag(cls, v: str | None) -> str | None:
        return None if v is None else text.normalize_hashtag(v)

    @field_validator("hashtags")
    @classmethod
    def _tag_list(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _tags(v)

    @model_validator(mode="after")
    def _one_reply_tag(self) -> ChatIn:
        if self.hashtags is None:
            if self.hashtag is None:
                raise ValueError("hashtag: give `hashtag` or `hashtags`")
            self.hashtags = [self.hashtag]
        elif self.hashtag is None:
            self.hashtag = self.hashtags[0]
        elif text.tag_key(self.hashtag) != text.tag_key(self.hashtags[0]):
            raise ValueError(
                f"hashtags: the first tag (#{self.hashtags[0]}) is the reply tag and must be "
                f"`hashtag` (#{self.hashtag}), or leave `hashtag` out"
            )
        return self

    @property
    def tags(self) -> list[str]:
        """Every tag, reply tag first (set by the validators)."""
        return self.hashtags or [self.hashtag or ""]

    @property
    def reply_tag(self) -> str:
        return self.tags[0]

    @field_validator("title")
    @classmethod
    def _title(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("title is empty")
        return v.strip()


class PostIn(BaseModel):
    text: str = Field(max_length=100_000)
    author: str = Field("", max_length=60)
    in_reply_to: int | None = Field(None, ge=1, le=INT64_MAX)
    account_id: int | None = Field(None, ge=1, le=INT64_MAX)
    quote_of: int | None = Field(
        None,
        ge=1,
        le=INT64_MAX,
        description="Post quoting this post instead of replying (X, with account_id).",
    )


class QuestionIn(BaseModel):
    text: str = Field(max_length=100_000)
    author: str = Field("Host", max_length=60)


def check_length(value: str, limit: int) -> None:
    """Refuse oversized input before any work is done on it."""
    if len(value) > limit:
        raise HTTPException(
            422, f"text: {len(value)} characters is far over any limit; keep it under {limit}"
        )


def site_url(request: Request, settings: Any) -> str:
    return settings.public_url.rstrip("/") or str(request.base_url).rstrip("/")


def moderator_url(request: Request, settings: Any, slug: str, key: str) -> str:
    """The moderator link. The key rides in the fragment, which browsers never send: it stays
    out of access logs, proxies and referrers; the page's script hands it over in a POST and
    clears it from the address bar (without scripts, /c/{slug}/moderate takes it in a form)."""
    return f"{site_url(request, settings)}/c/{slug}#key={key}"


async def create_chat_from(
    body: ChatIn, request: Request, rooms: Any, ingest: Any, settings: Any
) -> dict[str, Any]:
    """Shared by the API and the no-script form: validate, create, start its followers."""
    specs: list[SourceSpec] = []
    network = body.network
    builders = request.app.state.source_builders
    if len(body.tags) > settings.max_hashtags_per_chat:
        raise Invalid(
            f"hashtags: {len(body.tags)} given; a chat follows at most "
            f"{settings.max_hashtags_per_chat}",
        )
    if body.sources and len(body.sources) > settings.max_sources_per_chat:
        raise Invalid(
            f"sources: {len(body.sources)} given; a chat may follow at most "
            f"{settings.max_sources_per_chat}",
        )
    if body.sources:
        for src in body.sources:
            builder = builders.get(src.network)
            if builder is None:
                raise Invalid(f"sources: network {src.network!r} is not supported here")
            try:
                specs.append(await builder(src.model_dump(), body.reply_tag))
            except ValueError as exc:
                raise Invalid(f"sources: {exc}") from exc
        network = specs[0].network if network == "native" and specs else network
    elif network not in CREATABLE_NETWORKS:
        builder = builders.get(network)
        if builder is None:
            raise Invalid(
                f"network {network!r} is not available; use one of: "
                + ", ".join(sorted(CREATABLE_NETWORKS | set(builders))),
            )
        try:
            specs.append(await builder({"network": network}, body.reply_tag))
        except ValueError as exc:
            raise Invalid(f"network: {exc}") from exc
    schedule = None
    if body.schedule is not None:
        schedule = await request.app.state.validate_schedule(body.schedule)
    try:
        chat, key, sources = await rooms.create_chat(
            hashtag=body.reply_tag,
            hashtags=body.tags,
            title=body.title,
            description=body.description,
            network=network,
            sources=specs,
            schedule=schedule,
        )
    except ValueError as exc:  # the text checks (app/text.py) raise plain ValueErrors
        raise Invalid(str(exc)) from exc
    for source in sources:
        ingest.start(source, chat)
    if request.app.state.session_cookie in request.cookies:
        grant_moderator(request.session, settings.secret_key, chat)
    return {
        "slug": chat.slug,
        "moderator_key": key,
        "moderator_url": moderator_url(request, settings, chat.slug, key),
        "chat": chat_json(chat),
    }


@router.get("/chats", summary="List chats")
async def list_chats(rooms: RoomsDep) -> list[dict[str, Any]]:
    return await rooms.list_chats()


@router.post(
    "/chats",
    status_code=201,
    summary="Create a chat",
    description="Returns the chat's `slug` and its `moderator_key` — the key is shown only here.",
    dependencies=[CsrfDep, Depends(limit(CHATS))],
    responses=errors(403, 429),
)
async def create_chat(
    body: ChatIn, request: Request, rooms: RoomsDep, ingest: IngestDep, settings: SettingsDep
) -> dict[str, Any]:
    return await create_chat_from(body, request, rooms, ingest, settings)


@router.get("/chats/{slug}", summary="A chat and its current pins")
async def get_chat(slug: str, rooms: RoomsDep) -> dict[str, Any]:
    snap = await rooms.snapshot(slug, limit=1)
    chat = await rooms.get_chat(slug)
    return {
        "chat": chat_json(chat),
        "pins": [{"pin": p["pin"], "post": p["post"]} for p in snap.pins],
        "past_questions": [{"pin": p["pin"], "post": p["post"]} for p in snap.past_questions],
    }


@router.get(
    "/chats/{slug}/posts",
    summary="Visible posts, newest first",
    description="Pages backwards with `before` (a post id). Each item has the post and its "
    "rendered `html` (the same partial as live frames).",
)
async def list_posts(
    slug: str,
    rooms: RoomsDep,
    before: int | None = Query(None, ge=1, le=INT64_MAX),
    limit: int = Query(50, ge=1, le=500),
) -> dict[str, Any]:
    items = await rooms.posts_before(slug, before, limit)
    return {"items": items, "more": len(items) == limit}


@router.get("/chats/{slug}/events", summary="Events after an offset, in order")
async def list_events(
    slug: str,
    rooms: RoomsDep,
    after: int = Query(0, ge=0, le=INT64_MAX),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    chat, frames = await rooms.events_after(slug, after, limit)
    return {
        "epoch": chat.epoch,
        "head": chat.last_offset,
        "events": [json.loads(f.text) for f in frames],
    }


@router.post(
    "/chats/{slug}/posts",
    status_code=201,
    summary="Post in a room",
    description="The chat's hashtag is appended unless the text already has it as a whole tag.",
    dependencies=[CsrfDep, Depends(limit(POSTS))],
    responses=errors(403, 429, 502, 503),
)
async def create_post(
    slug: str, body: PostIn, request: Request, rooms: RoomsDep, settings: SettingsDep
) -> dict[str, Any]:
    check_length(body.text, settings.max_request_text)
    if body.account_id is not None:
        publish = request.app.state.publish_via_account
        if publish is None:
            raise HTTPException(422, "account_id: posting through network accounts is not set up")
        return await publish(request, slug, body)
    author = body.author or request.session.get("name", "")
    vouched = None
    if _may_be_vouched(request):
        vouched = await vouched_poster(request, await rooms.get_chat(slug))
    if vouched is not None and vouched.get("name"):
        author = vouched["name"]  # a host link names its holder; the form cannot rename them
    try:
        post = await rooms.add_native_post(
            slug, body.text, author, body.in_reply_to, vouched=vouched is not None
        )
    except ValueError as exc:  # the text checks (app/text.py) raise plain ValueErrors
        raise Invalid(str(exc)) from exc
    if request.app.state.session_cookie in request.cookies:
        request.session["name"] = text.clean_name(author)
    return post


def _may_be_vouched(request: Request) -> bool:
    """Whether the request carries anything :func:`vouched_poster` could accept (a Bearer
    key or the session cookie): without either, the chat need not be read first."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    has_key = scheme.lower() == "bearer" and bool(key.strip())
    return has_key or request.app.state.session_cookie in request.cookies


async def vouched_poster(request: Request, chat: Any) -> dict[str, str] | None:
    """Who the moderators vouched for behind this request, or None for anyone else: a
    moderator (key or cookie; ``{}``, they post under the name they type) or the holder of a
    live host link (``{name, role}``)."""
    secret = request.app.state.settings.secret_key
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if (
        scheme.lower() == "bearer"
        and key.strip()
        and key_matches(key.strip(), chat.moderator_key_hash)
    ):
        return {}
    if request.app.state.session_cookie not in request.cookies:
        return None
    if is_moderator(request.session, secret, chat):
        return {}
    return vouched_host(request.session, secret, chat)


@router.put(
    "/chats/{slug}/pins/{post_id}", summary="Pin a post (moderators)", responses=errors(401, 403)
)
async def pin_post(slug: str, post_id: RowId, rooms: RoomsDep, actor: ActorDep) -> dict[str, Any]:
    return {"pin": await rooms.pin(slug, post_id, actor=actor)}


@router.delete(
    "/chats/{slug}/pins/{post_id}",
    status_code=204,
    summary="Unpin a post (moderators)",
    responses=errors(401, 403),
)
async def unpin_post(slug: str, post_id: RowId, rooms: RoomsDep, actor: ActorDep) -> Response:
    changed = await rooms.unpin(slug, post_id, actor=actor)
    if not changed:
        raise HTTPException(404, f"post {post_id} is not pinned")
    return Response(status_code=204)


@router.post(
    "/chats/{slug}/questions",
    status_code=201,
    summary="Post a host question and pin it (moderators)",
    responses=errors(401, 403),
)
async def ask_question(
    slug: str, body: QuestionIn, rooms: RoomsDep, settings: SettingsDep, actor: ActorDep
) -> dict[str, Any]:
    check_length(body.text, settings.max_request_text)
    try:
        return await rooms.ask_question(slug, body.text, body.author or "Host", actor=actor)
    except ValueError as exc:  # the text checks (app/text.py) raise plain ValueErrors
        raise Invalid(str(exc)) from exc


@router.put(
    "/chats/{slug}/hidden/{post_id}",
    summary="Hide a post room-wide (moderators)",
    responses=errors(401, 403),
)
async def hide_post(slug: str, post_id: RowId, rooms: RoomsDep, actor: ActorDep) -> dict[str, Any]:
    changed = await rooms.set_hidden(slug, post_id, True, actor=actor)
    return {"post_id": post_id, "hidden": True, "changed": changed}


@router.delete(
    "/chats/{slug}/hidden/{post_id}",
    summary="Show a hidden post again (moderators)",
    responses=errors(401, 403),
)
async def unhide_post(
    slug: str, post_id: RowId, rooms: RoomsDep, actor: ActorDep
) -> dict[str, Any]:
    changed = await rooms.set_hidden(slug, post_id, False, actor=actor)
    return {"post_id": post_id, "hidden": False, "changed": changed}


class HostLinkIn(BaseModel):
    name: str = Field(min_length=1, max_length=60, examples=["Sam (host)"])
    role: Literal["host", "guest"] = "host"


@router.post(
    "/chats/{slug}/moderator-key",
    summary="Rotate the moderator key (moderators)",
    responses=errors(401, 403),
    description="Makes a new moderator key and returns it with its link (shown only here). "
    "The old key, every moderator cookie made from it and every host link stop working.",
)
async def rotate_moderator_key(
    slug: str, request: Request, rooms: RoomsDep, settings: SettingsDep, actor: ActorDep
) -> dict[str, Any]:
    chat, key = await rooms.rotate_moderator_key(slug)
    if actor.startswith("moderator link"):  # the browser that rotated stays a moderator
        grant_moderator(request.session, settings.secret_key, chat)
    return {
        "slug": chat.slug,
        "moderator_key": key,
        "moderator_url": moderator_url(request, settings, chat.slug, key),
    }


@router.post(
    "/chats/{slug}/host-links",
    status_code=201,
    summary="Make a host link (moderators)",
    responses=errors(401, 403),
    description="A link that vouches for one person as a host or guest of this native room: "
    "their posts carry the badge, under the name given here, and skip the hold-for-review "
    "rules. It works until the moderator key is rotated.",
)
async def make_host_link(
    slug: str,
    body: HostLinkIn,
    request: Request,
    rooms: RoomsDep,
    settings: SettingsDep,
    _actor: ActorDep,
) -> dict[str, Any]:
    name = text.clean_name(body.name)
    if not name:
        raise HTTPException(422, "name: give the host's display name")
    chat = await rooms.get_chat(slug)
    token = host_link_token(settings.secret_key, chat, name, body.role)
    return {
        "name": name,
        "role": body.role,
        "host_url": f"{site_url(request, settings)}/c/{chat.slug}#host={token}",
    }
