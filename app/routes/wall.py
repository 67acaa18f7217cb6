"""``/c/{slug}/wall``: the room for a projector — the current question large, the newest
posts flowing under it, live over the same websocket as the chat page."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from .. import votes
from ..deps import RoomsDep
from ..present import post_json
from ..rooms import chat_hashtags

router = APIRouter(include_in_schema=False)

# Posts on the wall at once: what a room can read from the back before the next arrives.
WALL_POSTS = 8
# The most voted open questions a wall may list (?top=N): more would not fit beside posts.
MAX_TOP = 5


def wall_text(post: dict[str, Any], hashtags: str | Sequence[str]) -> str:
    """What the wall shows of a post: its text without a trailing hashtag of the chat's
    (every post has one; on a projector it is noise), or only its content warning."""
    if post.get("spoiler_text"):
        return f"Content warning: {post['spoiler_text']}"
    text = post.get("text") or ""
    # String operations, not a regex: "\s*#tag\s*$" retried its leading "\s*" at every
    # blank of a long run of spaces (quadratic; a 100 KB post stalled the page for seconds).
    body = text.rstrip()
    for tag in [hashtags] if isinstance(hashtags, str) else hashtags:
        suffix = f"#{tag}"
        if body[-len(suffix) :].casefold() == suffix.casefold():
            return body[: -len(suffix)].strip() or text
    return text.strip() or text


def current_question(pins: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The post readers are on: the newest pinned question, else the newest pin."""
    for item in reversed(pins):
        if item["pin"]["is_question"]:
            return item["post"]
    return pins[-1]["post"] if pins else None


@router.get("/c/{slug}/wall", response_class=HTMLResponse)
async def wall(
    slug: str,
    request: Request,
    rooms: RoomsDep,
    top: int = Query(0, ge=0, le=MAX_TOP, description="List the N most voted open questions."),
) -> HTMLResponse:
    chat = await rooms.get_chat(slug)
    snap = await rooms.snapshot(slug, limit=WALL_POSTS)
    question = current_question(snap.pins)
    tags = chat_hashtags(chat)
    ranked = []
    if top:
        chat_id = chat.id
        ranked = await rooms.read(lambda s: votes.top_open(s, chat_id, top))  # type: ignore[arg-type]
    return request.app.state.templates.TemplateResponse(
        request,
        "wall.html",
        {
            "chat": chat,
            "hashtags": tags,
            "offset": snap.offset,
            "epoch": snap.epoch,
            "posts": [
                {"post": item["post"], "text": wall_text(item["post"], tags)} for item in snap.posts
            ],
            # The wall falls back to an earlier pinned question when the current one goes.
            "pins": [
                {"is_question": p["pin"]["is_question"], "post": p["post"]} for p in snap.pins
            ],
            "question": question,
            "question_text": wall_text(question, tags) if question else "",
            "wall_posts": WALL_POSTS,
            "top": top,
            "top_questions": [
                {"post": post_json(p), "votes": n, "text": wall_text(post_json(p), tags)}
                for p, n in ranked
            ],
        },
    )
