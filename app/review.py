"""Hold-for-review rules of a chat and the posts they held.

A rule (:mod:`app.hold_rules`) holds each new post that trips it, and each edit of a shown
post that does (:class:`app.policy.Screen`); held posts never reach readers until a
moderator approves them. Rejecting keeps a post hidden; undo puts a reviewed post back in
the queue. Removing a rule leaves the posts it held in the queue.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from .action_log import describe_post, record
from .errors import Conflict, NotFound
from .events import Frame
from .hold_rules import normalize_rule, rule_json
from .models import Chat, Post, RoomRule
from .people import visibility_frame
from .policy import HELD_BY, shown
from .present import post_json
from .rooms import Rooms

# -- inside a write transaction ---------------------------------------------------------------


def review_tx(
    rooms: Rooms, session: Session, chat: Chat, post: Post, *, held: bool, hidden: bool
) -> list[Frame]:
    """Set a post's ``held`` and ``hidden`` marks; the hide or unhide frame readers need."""
    was = shown(post)
    post.held, post.hidden = held, hidden
    session.add(post)
    session.flush()
    frame = visibility_frame(rooms, session, post, was, rooms.hosts(session, chat.id))  # type: ignore[arg-type]
    return [frame] if frame is not None else []


def add_rule_tx(session: Session, chat: Chat, kind: str, pattern: str) -> RoomRule:
    """The chat's rule (kind, pattern), added unless it exists."""
    existing = (
        session.execute(
            select(RoomRule).where(
                RoomRule.chat_id == chat.id,  # type: ignore[arg-type]
                RoomRule.kind == kind,  # type: ignore[arg-type]
                RoomRule.pattern == pattern,  # type: ignore[arg-type]
            )
        )
        .scalars()
        .first()
    )
    if existing is not None:
        return existing
    rule = RoomRule(chat_id=chat.id, kind=kind, pattern=pattern)  # type: ignore[arg-type]
    session.add(rule)
    session.flush()
    return rule


# -- moderators' changes ----------------------------------------------------------------------


class ReviewModeration:
    """Moderators' changes to rules and the review queue, through :class:`Rooms`' writer."""

    rooms: Rooms

    # -- rules -----------------------------------------------------------------------------

    async def rules(self, slug: str) -> list[dict[str, Any]]:
        def fn(session: Session) -> list[dict[str, Any]]:
            chat = Rooms.chat_by_slug(session, slug)
            rows = session.execute(
                select(RoomRule).where(RoomRule.chat_id == chat.id).order_by(RoomRule.id)  # type: ignore[arg-type]
            ).scalars()
            return [rule_json(r) for r in rows]

        return await self.rooms.read(fn)

    async def add_rule(self, slug: str, kind: str, pattern: str, actor: str) -> dict[str, Any]:
        """Add a rule (validated by :func:`normalize_rule`); an existing one is returned."""
        kind, pattern = normalize_rule(kind, pattern)

        def fn(session: Session) -> tuple[dict[str, Any], list[Frame]]:
            chat = Rooms.chat_by_slug(session, slug)
            before = session.execute(
                select(RoomRule.id).where(
                    RoomRule.chat_id == chat.id,  # type: ignore[arg-type]
                    RoomRule.kind == kind,  # type: ignore[arg-type]
                    RoomRule.pattern == pattern,  # type: ignore[arg-type]
                )
            ).first()
            rule = add_rule_tx(session, chat, kind, pattern)
            if before is None:
                record(
                    session,
                    chat.id,  # type: ignore[arg-type]
                    actor,
                    "rule_add",
                    f'{kind} "{pattern}"',
                    {"rule_id": rule.id, "kind": kind, "pattern": pattern},
                )
            return {"rule": rule_json(rule), "changed": before is None}, []

        return await self.rooms.write(fn)

    async def remove_rule(
        self,
        slug: str,
        actor: str,
        *,
        rule_id: int | None = None,
        kind: str | None = None,
        pattern: str | None = None,
    ) -> dict[str, Any]:
        """Remove a rule by id, or by kind and pattern. Posts it held stay in the queue."""
        if rule_id is None:
            kind, pattern = normalize_rule(kind or "", pattern or "")

        def fn(session: Session) -> tuple[dict[str, Any], list[Frame]]:
            chat = Rooms.chat_by_slug(session, slug)
            query = select(RoomRule).where(RoomRule.chat_id == chat.id)  # type: ignore[arg-type]
            if rule_id is not None:
                query = query.where(RoomRule.id == rule_id)  # type: ignore[arg-type]
            else:
                query = query.where(RoomRule.kind == kind, RoomRule.pattern == pattern)  # type: ignore[arg-type]
            rule = session.execute(query).scalars().first()
            if rule is None:
                what = f"rule {rule_id}" if rule_id is not None else f'{kind} rule "{pattern}"'
                raise NotFound(f"no {what} in this chat")
            data = rule_json(rule)
            session.delete(rule)
            record(
                session,
                chat.id,  # type: ignore[arg-type]
                actor,
                "rule_remove",
                f'{rule.kind} "{rule.pattern}"',
                {"rule_id": rule.id, "kind": rule.kind, "pattern": rule.pattern},
            )
            return {"rule": data}, []

        return await self.rooms.write(fn)

    # -- the review queue ------------------------------------------------------------------

    async def held(self, slug: str) -> list[dict[str, Any]]:
        """Posts waiting for review, oldest first, with the rule that held each."""

        def fn(session: Session) -> list[dict[str, Any]]:
            chat = Rooms.chat_by_slug(session, slug)
            hosts = self.rooms.hosts(session, chat.id)  # type: ignore[arg-type]
            rows = session.execute(
                select(Post)
                .where(
                    Post.chat_id == chat.id,  # type: ignore[arg-type]
                    Post.held.is_(True),  # type: ignore[attr-defined]
                    Post.hidden.is_(False),  # type: ignore[attr-defined]
                    Post.deleted.is_(False),  # type: ignore[attr-defined]
                )
                .order_by(Post.id)  # type: ignore[arg-type]
            ).scalars()
            return [
                {
                    "post": post_json(p, is_host=self.rooms.is_host(p, hosts)),
                    "held_by": p.extra.get(HELD_BY, ""),
                }
                for p in rows
            ]

        return await self.rooms.read(fn)

    async def review(self, slug: str, post_id: int, approve: bool, actor: str) -> dict[str, Any]:
        """Approve (show to everyone) or reject (keep hidden) a held post."""
        action = "approve" if approve else "reject"

        def fn(session: Session) -> tuple[dict[str, Any], list[Frame]]:
            chat = Rooms.chat_by_slug(session, slug)
            post = self.rooms.post_in_chat(session, chat.id, post_id)  # type: ignore[arg-type]
            if not post.held:
                raise Conflict(f"post {post_id} is not waiting for review")
            frames = review_tx(
                self.rooms, session, chat, post, held=False, hidden=post.hidden or not approve
            )
            record(session, chat.id, actor, action, describe_post(post), {"post_id": post_id})  # type: ignore[arg-type]
            return {"post_id": post_id, "approved": approve}, frames

        return await self.rooms.write(fn)
