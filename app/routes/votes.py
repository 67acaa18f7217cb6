"""Ranking questions: readers' votes and the moderators' "answered" mark (see app/votes.py).
The ranked list itself is ``GET /api/chats/{slug}/questions`` (app/routes/transcripts.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from .. import votes
from ..deps import CsrfDep, RoomsDep, RowId
from ..limits import VOTES, limit
from .errors import errors
from .moderation import ActorDep

router = APIRouter(prefix="/api/chats/{slug}/questions/{post_id}", tags=["questions"])


class VoteOut(BaseModel):
    """A question's vote count after the change, and whether the caller's vote is on it."""

    post_id: int
    votes: int
    voted: bool


class AnsweredOut(BaseModel):
    """A question's answered state after the change, with its vote count."""

    post_id: int
    answered: bool
    votes: int


async def _vote(request: Request, rooms: Any, slug: str, post_id: int, on: bool) -> dict[str, Any]:
    voter = await votes.voter_for(rooms, request.session, request.app.state.settings.secret_key)
    assert voter is not None  # created when missing
    return await votes.set_vote(rooms, slug, post_id, voter, on)


_VOTE_DOC = (
    "One vote per signed-in network account, else one per browser (a voter id kept in the "
    "session cookie; a client without the cookie gets one with the answer). Idempotent. "
    "Only questions take votes (posts opening with Q1:, Q2: … or pinned as a question): "
    "any other post answers 422. Everyone in the room sees a `vote` event with the new count."
)


@router.put(
    "/vote",
    summary="Upvote a question",
    description=_VOTE_DOC,
    dependencies=[CsrfDep, Depends(limit(VOTES))],
    responses=errors(403, 404, 422, 429),
)
async def vote(slug: str, post_id: RowId, request: Request, rooms: RoomsDep) -> VoteOut:
    return VoteOut(**await _vote(request, rooms, slug, post_id, True))


@router.delete(
    "/vote",
    summary="Withdraw your vote on a question",
    description=_VOTE_DOC,
    dependencies=[CsrfDep, Depends(limit(VOTES))],
    responses=errors(403, 404, 422, 429),
)
async def unvote(slug: str, post_id: RowId, request: Request, rooms: RoomsDep) -> VoteOut:
    return VoteOut(**await _vote(request, rooms, slug, post_id, False))


_ANSWERED_DOC = (
    "Moderators only (moderator key or moderator cookie with its CSRF token). Idempotent; "
    "everyone in the room sees an `answered` event."
)


@router.put(
    "/answered",
    summary="Mark a question answered (moderators)",
    description=_ANSWERED_DOC,
    responses=errors(401, 403, 404, 422),
)
async def mark_answered(
    slug: str, post_id: RowId, rooms: RoomsDep, _actor: ActorDep
) -> AnsweredOut:
    return AnsweredOut(**await votes.set_answered(rooms, slug, post_id, True))


@router.delete(
    "/answered",
    summary="Open an answered question again (moderators)",
    description=_ANSWERED_DOC,
    responses=errors(401, 403, 404, 422),
)
async def unmark_answered(
    slug: str, post_id: RowId, rooms: RoomsDep, _actor: ActorDep
) -> AnsweredOut:
    return AnsweredOut(**await votes.set_answered(rooms, slug, post_id, False))
