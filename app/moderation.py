"""Room moderation: what moderators change, each change logged, and undo.

:class:`Moderation` is the one service routes call. Its changes run through
:meth:`Rooms.write`: the rows, their events and the :class:`~app.models.ModAction` record
(:mod:`app.action_log`) commit together. It gathers

* hosts, guests and blocked authors (:mod:`app.people`),
* hold-for-review rules and the review queue (:mod:`app.review`),
* the schedule, the hashtags followed, the log of actions, and undo (here): undo applies the
  inverse change through the same functions, and marks the record undone.

What a change means for each stored post (who is a host, who is blocked, what a rule holds,
what readers see) is :mod:`app.policy`'s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from . import events
from .action_log import ACTION_VERBS, action_json, actor_label, record
from .errors import Conflict, Invalid, NotFound
from .events import Frame
from .hold_rules import Rule, link_hosts, normalize_rule
from .models import Chat, ModAction, RoomRule, utcnow
from .people import (
    MAX_PEOPLE,
    PeopleModeration,
    Person,
    block_tx,
    normalize_handle,
    normalize_network,
    people_tx,
    unblock_tx,
)
from .policy import HIDDEN_BY_BLOCK, Screen, shown
from .review import ReviewModeration, add_rule_tx, review_tx
from .rooms import Rooms, chat_hashtags


class Moderation(PeopleModeration, ReviewModeration):
    """Moderators' changes to one process's rooms, all through :class:`Rooms`' writer."""

    def __init__(
        self,
        rooms: Rooms,
        on_schedule_change: Callable[[], None] | None = None,
        on_hashtags_change: Callable[[Chat], Awaitable[Any]] | None = None,
    ) -> None:
        self.rooms = rooms
        # Called after a schedule changed (set or undone): the scheduler re-plans at once.
        self.on_schedule_change = on_schedule_change
        # Called with the chat after its hashtags changed (set or undone): the running
        # followers restart on the new list.
        self.on_hashtags_change = on_hashtags_change

    # -- schedule --------------------------------------------------------------------------

    async def set_schedule(
        self, slug: str, schedule: dict[str, Any] | None, actor: str
    ) -> dict[str, Any] | None:
        """Replace (or with None clear) the chat's schedule, already validated."""

        def fn(session: Session) -> tuple[dict[str, Any] | None, list[Frame]]:
            chat = Rooms.chat_by_slug(session, slug)
            before = _schedule_of(chat)
            if before != schedule:
                self._set_schedule_tx(session, chat, schedule)
                target = _describe_schedule(schedule)
                data = {"before": before, "after": schedule}
                record(session, chat.id, actor, "schedule", target, data)  # type: ignore[arg-type]
            return schedule, []

        saved = await self.rooms.write(fn)
        self._schedule_changed()
        return saved

    @staticmethod
    def _set_schedule_tx(session: Session, chat: Chat, schedule: dict[str, Any] | None) -> None:
        values = schedule or {}
        chat.schedule_start = values.get("start")
        chat.schedule_timezone = values.get("timezone")
        chat.schedule_duration_minutes = values.get("duration_minutes")
        chat.schedule_rrule = values.get("rrule")
        session.add(chat)

    def _schedule_changed(self) -> None:
        if self.on_schedule_change is not None:
            self.on_schedule_change()

    # -- hashtags ----------------------------------------------------------------------------

    async def set_hashtags(self, slug: str, tags: Sequence[str], actor: str) -> dict[str, Any]:
        """Replace the chat's hashtags with ``tags`` (already normalized, at least one; the
        first becomes the reply tag). Readers get a ``hashtags`` frame and a notice, the
        followers restart on the new list; an unchanged list records nothing."""
        if not tags:
            raise Invalid("hashtags: a chat follows at least one hashtag")

        def fn(session: Session) -> tuple[tuple[Chat, bool], list[Frame]]:
            chat = Rooms.chat_by_slug(session, slug)
            before = chat_hashtags(chat)
            if before == list(tags):
                return (chat, False), []
            frames = self._set_hashtags_tx(session, chat, list(tags))
            target = " ".join(f"#{tag}" for tag in tags)
            data = {"before": before, "after": list(tags)}
            record(session, chat.id, actor, "hashtags", target, data)  # type: ignore[arg-type]
            return (chat, True), frames

        chat, changed = await self.rooms.write(fn)
        if changed:
            await self._hashtags_changed(chat)
        return {"hashtag": chat.hashtag, "hashtags": chat_hashtags(chat), "changed": changed}

    @staticmethod
    def _set_hashtags_tx(session: Session, chat: Chat, tags: list[str]) -> list[Frame]:
        chat.hashtag = tags[0]
        chat.hashtags = tags
        session.add(chat)
        session.flush()
        listed = ", ".join(f"#{tag}" for tag in tags)
        return [
            events.append(session, chat.id, "hashtags", {"hashtag": tags[0], "hashtags": tags}),  # type: ignore[arg-type]
            events.append(
                session,
                chat.id,  # type: ignore[arg-type]
                "notice",
                {"text": f"This chat now follows {listed}; posts made here carry #{tags[0]}."},
            ),
        ]

    async def _hashtags_changed(self, chat: Chat) -> None:
        if self.on_hashtags_change is not None:
            await self.on_hashtags_change(chat)

    # -- the log and undo ------------------------------------------------------------------

    async def actions(self, slug: str, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` moderator actions, newest first."""

        def fn(session: Session) -> list[dict[str, Any]]:
            chat = Rooms.chat_by_slug(session, slug)
            rows = session.execute(
                select(ModAction)
                .where(ModAction.chat_id == chat.id)  # type: ignore[arg-type]
                .order_by(ModAction.id.desc())  # type: ignore[union-attr]
                .limit(limit)
            ).scalars()
            return [action_json(r) for r in rows]

        return await self.rooms.read(fn)

    async def undo(self, slug: str, action_id: int, actor: str) -> dict[str, Any]:
        """Revert a logged action by applying its inverse; the record is marked undone.

        The record is claimed first (under the writer's lock), so two concurrent undos of
        one action cannot both apply; if the inverse fails the claim is released.
        Raises :class:`Conflict` when it was already undone or cannot be undone any more.
        """

        def claim(session: Session) -> tuple[ModAction, list[Frame]]:
            chat = Rooms.chat_by_slug(session, slug)
            row = session.get(ModAction, action_id)
            if row is None or row.chat_id != chat.id:
                raise NotFound(f"no action {action_id} in this chat")
            if row.undone_at is not None:
                raise Conflict(f"action {action_id} was already undone")
            if row.action not in ACTION_VERBS:
                raise Conflict(f"action {action_id} ({row.action}) cannot be undone")
            row.undone_at = utcnow()
            row.data = {**row.data, "undone_by": actor[:200]}
            session.add(row)
            return row, []

        def release(session: Session) -> tuple[None, list[Frame]]:
            row = session.get(ModAction, action_id)
            if row is not None:
                row.undone_at = None
                row.data = {k: v for k, v in row.data.items() if k != "undone_by"}
                session.add(row)
            return None, []

        row = await self.rooms.write(claim)
        try:
            changed = await self._inverse(slug, row)
        except NotFound as exc:
            await self.rooms.write(release)
            raise Conflict(f"cannot undo action {action_id}: {exc}") from exc
        except BaseException:
            await self.rooms.write(release)
            raise
        return {"action": action_json(row), "changed": changed}

    async def _inverse(self, slug: str, row: ModAction) -> bool:
        """Apply the opposite of ``row`` through the same code paths, recording nothing."""
        data = row.data
        rooms = self.rooms
        if row.action == "pin":
            return await rooms.unpin(slug, data["post_id"])
        if row.action == "unpin":
            await rooms.pin(slug, data["post_id"], question=data.get("question"))
            return True
        if row.action in ("hide", "unhide"):
            return await rooms.set_hidden(slug, data["post_id"], row.action == "unhide")
        if row.action == "question":
            unpinned = await rooms.unpin(slug, data["post_id"])
            hidden = await rooms.set_hidden(slug, data["post_id"], True)
            return unpinned or hidden
        changed = await rooms.write(lambda session: self._inverse_tx(session, slug, row))
        if row.action == "schedule":
            self._schedule_changed()
        if row.action == "hashtags" and changed:
            await self._hashtags_changed(await rooms.get_chat(slug))
        return changed

    def _inverse_tx(self, session: Session, slug: str, row: ModAction) -> tuple[bool, list[Frame]]:
        chat = Rooms.chat_by_slug(session, slug)
        data = row.data
        if row.action == "block":
            try:
                _restored, frames = unblock_tx(
                    self.rooms, session, chat, data["network"], data["handle"]
                )
            except NotFound:
                return False, []  # unblocked since
            return True, frames
        if row.action == "unblock":
            changed, _hidden, frames = block_tx(
                self.rooms, session, chat, data["network"], data["handle"]
            )
            return changed, frames
        if row.action == "rule_add":
            rule = session.get(RoomRule, data["rule_id"])
            if rule is None or rule.chat_id != chat.id:
                return False, []
            session.delete(rule)
            return True, []
        if row.action == "rule_remove":
            add_rule_tx(session, chat, data["kind"], data["pattern"])
            return True, []
        if row.action == "people":
            added, removed, frames = people_tx(
                session,
                chat,
                add=[Person(**p) for p in data.get("removed", [])],
                remove=[Person(**p) for p in data.get("added", [])],
            )
            return bool(added or removed), frames
        if row.action in ("approve", "reject"):
            post = self.rooms.post_in_chat(session, chat.id, data["post_id"])  # type: ignore[arg-type]
            # Back to the review queue (a post hidden by a block since stays hidden).
            blocked = bool(post.extra.get(HIDDEN_BY_BLOCK))
            return True, review_tx(self.rooms, session, chat, post, held=True, hidden=blocked)
        if row.action == "schedule":
            self._set_schedule_tx(session, chat, data.get("before"))
            return True, []
        if row.action == "hashtags":
            before = list(data.get("before") or [])
            if not before or chat_hashtags(chat) == before:
                return False, []
            return True, self._set_hashtags_tx(session, chat, before)
        raise Conflict(f"action {row.id} ({row.action}) cannot be undone")


def _schedule_of(chat: Chat) -> dict[str, Any] | None:
    if not chat.schedule_start:
        return None
    return {
        "start": chat.schedule_start,
        "timezone": chat.schedule_timezone,
        "duration_minutes": chat.schedule_duration_minutes,
        "rrule": chat.schedule_rrule,
    }


def _describe_schedule(schedule: dict[str, Any] | None) -> str:
    if schedule is None:
        return "cleared"
    rule = f", {schedule['rrule']}" if schedule.get("rrule") else ""
    return f"{schedule['start']} {schedule['timezone']}, {schedule['duration_minutes']} min{rule}"


# Names routes, tests and older callers import from here; each is owned by the module it
# comes from (app.people, app.hold_rules, app.action_log, app.policy).
__all__ = [
    "MAX_PEOPLE",
    "Conflict",
    "Moderation",
    "Person",
    "Rule",
    "Screen",
    "action_json",
    "actor_label",
    "link_hosts",
    "normalize_handle",
    "normalize_network",
    "normalize_rule",
    "record",
    "shown",
]
