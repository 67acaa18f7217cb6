"""Moderators' API: hosts and guests, blocked authors, hold-for-review rules, the review
queue, and the action log with undo. Only the hosts/guests list is public; everything else
needs the chat's moderator key or moderator cookie (with its CSRF token)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field, field_validator
from starlette.requests import HTTPConnection

from .. import text
from ..deps import ModeratorDep, RowId, SettingsDep
from ..moderation import MAX_PEOPLE, Moderation, Person, actor_label
from ..moderation import normalize_handle as _handle
from ..moderation import normalize_network as _network
from .errors import errors

router = APIRouter(
    prefix="/api/chats/{slug}",
    tags=["moderation"],
    responses=errors(400, 401, 403, 404, 409, 413, 422),
)

ACTOR_HEADER = "x-moderator-name"


def get_moderation(conn: HTTPConnection) -> Moderation:
    return conn.app.state.moderation


ModerationDep = Annotated[Moderation, Depends(get_moderation)]


async def moderator_actor(request: Request, how: ModeratorDep) -> str:
    """The caller as the action log names them: "moderator key" or "moderator link", with
    the browser session's display name, or an API client's ``X-Moderator-Name`` header."""
    if how == "cookie":
        name = request.session.get("name", "")
    else:
        name = request.headers.get(ACTOR_HEADER, "")
    return actor_label(how, name)


# A moderator of the chat in the path, as the action log names them.
ActorDep = Annotated[str, Depends(moderator_actor)]


class PersonIn(BaseModel):
    network: str = Field("*", max_length=20, description='A network name, or "*" for any.')
    handle: str = Field(max_length=300, examples=["alice@example.social"])
    role: str = Field("host", max_length=20, description="host or guest")


class PersonOutIn(BaseModel):
    network: str = Field("*", max_length=20)
    handle: str = Field(max_length=300)
    role: str | None = Field(None, max_length=20, description="Omit to remove every role.")


class PeopleIn(BaseModel):
    people: list[PersonIn] = Field(max_length=MAX_PEOPLE)


class HashtagsIn(BaseModel):
    hashtags: list[str] = Field(max_length=10, examples=[["EdChat", "EdChat2026"]])

    @field_validator("hashtags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("a chat follows at least one hashtag: the last cannot be removed")
        return text.normalize_hashtags(v, 10)


class BlockIn(BaseModel):
    network: str = Field("*", max_length=20, description='A network name, or "*" for any.')
    handle: str = Field(max_length=300)


class RuleIn(BaseModel):
    kind: str = Field(max_length=20, description="keyword or link")
    pattern: str = Field(max_length=300, examples=["casino", "spam.example"])


# -- hashtags --------------------------------------------------------------------------------


@router.put(
    "/hashtags",
    summary="Replace the hashtags followed (moderators)",
    description="The full list, in order; the first is the reply tag (what posts made "
    "through Hashroom carry). At least one tag, at most `HASHROOM_MAX_HASHTAGS_PER_CHAT`, "
    "no tag twice (compared case-insensitively). The chat's followers restart on the new "
    "list; readers get a `hashtags` frame and a notice.",
)
async def replace_hashtags(
    slug: str,
    body: HashtagsIn,
    moderation: ModerationDep,
    settings: SettingsDep,
    actor: ActorDep,
) -> dict[str, Any]:
    if len(body.hashtags) > settings.max_hashtags_per_chat:
        raise HTTPException(
            422,
            f"hashtags: {len(body.hashtags)} given; a chat follows at most "
            f"{settings.max_hashtags_per_chat}",
        )
    return await moderation.set_hashtags(slug, body.hashtags, actor)


# -- hosts and guests ------------------------------------------------------------------------


@router.get("/people", summary="The chat's hosts and guests")
async def list_people(slug: str, moderation: ModerationDep) -> dict[str, Any]:
    return {"people": await moderation.people(slug)}


@router.put(
    "/people",
    summary="Replace the hosts and guests (moderators)",
    description="Their posts are marked as the host's. Readers get a `people` frame.",
)
async def replace_people(
    slug: str, body: PeopleIn, moderation: ModerationDep, actor: ActorDep
) -> dict[str, Any]:
    people = [Person.parse(p.network, p.handle, p.role) for p in body.people]
    return await moderation.change_people(slug, actor, replace=people)


@router.post("/people", summary="Add a host or guest (moderators)")
async def add_person(
    slug: str, body: PersonIn, moderation: ModerationDep, actor: ActorDep
) -> dict[str, Any]:
    person = Person.parse(body.network, body.handle, body.role)
    return await moderation.change_people(slug, actor, add=[person])


@router.delete("/people", summary="Remove a host or guest (moderators)")
async def remove_person(
    slug: str, body: PersonOutIn, moderation: ModerationDep, actor: ActorDep
) -> dict[str, Any]:
    roles = [body.role] if body.role else ["host", "guest"]
    people = [Person.parse(body.network, body.handle, role) for role in roles]
    result = await moderation.change_people(slug, actor, remove=people)
    if not result["removed"]:
        network, handle = _network(body.network), _handle(body.handle)
        where = "" if network == "*" else f" on {network}"
        raise HTTPException(404, f"@{handle}{where} is not a host or guest of this chat")
    return result


# -- blocks ------------------------------------------------------------------------------------


@router.get("/blocks", summary="Blocked authors (moderators)")
async def list_blocks(slug: str, moderation: ModerationDep, _actor: ActorDep) -> dict[str, Any]:
    return {"blocks": await moderation.blocks(slug)}


@router.put(
    "/blocks",
    summary="Block an author (moderators)",
    description="Their posts are hidden (readers get `hide` frames) and future ones are "
    "stored hidden. `changed` is false when they were already blocked.",
)
async def block(
    slug: str, body: BlockIn, moderation: ModerationDep, actor: ActorDep
) -> dict[str, Any]:
    network, handle = _network(body.network), _handle(body.handle)
    return await moderation.block(slug, network, handle, actor)


@router.delete(
    "/blocks",
    summary="Unblock an author (moderators)",
    description="The posts the block hid are shown again (`unhide` frames).",
)
async def unblock(
    slug: str, body: BlockIn, moderation: ModerationDep, actor: ActorDep
) -> dict[str, Any]:
    network, handle = _network(body.network), _handle(body.handle)
    return await moderation.unblock(slug, network, handle, actor)


# -- rules and the review queue ----------------------------------------------------------------


@router.get("/rules", summary="Hold-for-review rules (moderators)")
async def list_rules(slug: str, moderation: ModerationDep, _actor: ActorDep) -> dict[str, Any]:
    return {"rules": await moderation.rules(slug)}


@router.post(
    "/rules",
    status_code=201,
    summary="Add a rule (moderators)",
    description="New posts matching it are held for review: stored, never sent to readers, "
    "listed in `GET …/held`. `keyword`: a word or phrase, whole words, any case. `link`: a "
    "domain (and its subdomains), or `*` for any link. Hosts' posts are never held.",
)
async def add_rule(
    slug: str, body: RuleIn, moderation: ModerationDep, actor: ActorDep
) -> dict[str, Any]:
    return await moderation.add_rule(slug, body.kind, body.pattern, actor)


@router.delete("/rules", summary="Remove a rule by kind and pattern (moderators)")
async def remove_rule(
    slug: str, body: RuleIn, moderation: ModerationDep, actor: ActorDep
) -> dict[str, Any]:
    return await moderation.remove_rule(slug, actor, kind=body.kind, pattern=body.pattern)


@router.delete("/rules/{rule_id}", summary="Remove a rule by id (moderators)")
async def remove_rule_by_id(
    slug: str, rule_id: RowId, moderation: ModerationDep, actor: ActorDep
) -> dict[str, Any]:
    return await moderation.remove_rule(slug, actor, rule_id=rule_id)


@router.get("/held", summary="Posts held for review, oldest first (moderators)")
async def list_held(slug: str, moderation: ModerationDep, _actor: ActorDep) -> dict[str, Any]:
    return {"posts": await moderation.held(slug)}


@router.post("/held/{post_id}/approve", summary="Show a held post to everyone (moderators)")
async def approve(
    slug: str, post_id: RowId, moderation: ModerationDep, actor: ActorDep
) -> dict[str, Any]:
    return await moderation.review(slug, post_id, True, actor)


@router.post("/held/{post_id}/reject", summary="Keep a held post hidden (moderators)")
async def reject(
    slug: str, post_id: RowId, moderation: ModerationDep, actor: ActorDep
) -> dict[str, Any]:
    return await moderation.review(slug, post_id, False, actor)


# -- the action log ----------------------------------------------------------------------------


@router.get("/actions", summary="What moderators did, newest first (moderators)")
async def list_actions(
    slug: str,
    moderation: ModerationDep,
    _actor: ActorDep,
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    return {"actions": await moderation.actions(slug, limit)}


@router.post(
    "/actions/{action_id}/undo",
    summary="Undo an action (moderators)",
    description="Applies the inverse change (unpin a pin, unblock a block, …). `409` when it "
    "was already undone.",
)
async def undo_action(
    slug: str, action_id: RowId, moderation: ModerationDep, actor: ActorDep
) -> dict[str, Any]:
    return await moderation.undo(slug, action_id, actor)


# -- sources -----------------------------------------------------------------------------------


@router.get(
    "/sources",
    summary="How each followed source is doing (moderators)",
    description="State, last error and, for X, the posts read this hour and session with the "
    "estimated spend (`budget`). Tokens are never included.",
)
async def list_sources(slug: str, request: Request, _actor: ActorDep) -> dict[str, Any]:
    statuses = [s for s in request.app.state.ingest.statuses() if s.get("chat") == slug]
    return {"sources": statuses}
