"""Room moderation: hosts and guests, blocked authors, hold-for-review rules, and the log of
what moderators did, with undo.

:class:`Moderation` applies moderators' changes. Each runs through :meth:`Rooms.write`: the
rows, their events and the :class:`~app.models.ModAction` record (:mod:`app.action_log`)
commit together. Undo applies the inverse change through the same functions, and marks the
record undone. What the changes mean for each stored post (who is a host, who is blocked,
what a rule holds, what readers see) is :mod:`app.policy`'s.

Handles are compared case-insensitively and without a leading ``@``; a person's network is
one of :data:`NETWORKS` or ``"*"`` for every network.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from . import events
from .action_log import (
    ACTION_VERBS,
    action_json,
    actor_label,
    describe_person,
    describe_post,
    record,
)
from .errors import Conflict, Invalid, NotFound
from .events import Frame
from .hold_rules import RULE_KINDS, Rule, link_hosts, normalize_rule, rule_json
from .models import Chat, ChatPerson, ModAction, Post, RoomRule, utcnow
from .policy import (
    ANY_NETWORK,
    BLOCKED,
    HELD_BY,
    HIDDEN_BY_BLOCK,
    HOST_ROLES,
    Screen,
    names,
    person_key,
    shown,
)
from .present import post_json
from .rooms import Rooms, chat_hashtags

NETWORKS = ("native", "demo", "mastodon", "bluesky", "x")
ROLES = HOST_ROLES
MAX_PEOPLE = 200  # hosts and guests of one chat; a panel, not a member list

# -- validation ----------------------------------------------------------------------------


def normalize_handle(raw: str) -> str:
    """``raw`` as stored and compared: trimmed, no leading '@', case-folded."""
    handle = (raw or "").strip().lstrip("@").casefold()
    if not handle:
        raise Invalid("handle: give the author's handle, like alice@example.social")
    if len(handle) > 300 or any(ch.isspace() for ch in handle):
        raise Invalid("handle: a handle has no spaces and at most 300 characters")
    return handle


def normalize_network(raw: str | None) -> str:
    """A network name from :data:`NETWORKS`, or ``"*"`` (also for an empty value)."""
    network = (raw or ANY_NETWORK).strip().casefold() or ANY_NETWORK
    if network != ANY_NETWORK and network not in NETWORKS:
        raise Invalid(f"network: use one of {', '.join(NETWORKS)}, or * for every network")
    return network


def normalize_role(raw: str) -> str:
    role = (raw or "").strip().casefold()
    if role not in ROLES:
        raise Invalid(f"role: use {' or '.join(ROLES)}")
    return role


# -- JSON -----------------------------------------------------------------------------------


def person_json(row: ChatPerson) -> dict[str, Any]:
    return {"network": row.network, "handle": row.handle, "role": row.role}


# -- moderators' changes ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Person:
    """A named host or guest."""

    network: str
    handle: str
    role: str

    @classmethod
    def parse(cls, network: str | None, handle: str, role: str) -> Person:
        return cls(normalize_network(network), normalize_handle(handle), normalize_role(role))

    def as_json(self) -> dict[str, str]:
        return {"network": self.network, "handle": self.handle, "role": self.role}


class Moderation:
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

    # -- helpers inside transactions ------------------------------------------------------

    def _visibility_frame(
        self, session: Session, post: Post, was_shown: bool, hosts: set[str]
    ) -> Frame | None:
        """The event readers need after ``post``'s visibility changed: hide, unhide or none."""
        now_shown = shown(post)
        if was_shown and not now_shown:
            return events.append(
                session, post.chat_id, "hide", {"post_id": post.id}, post_id=post.id
            )
        if now_shown and not was_shown:
            return self.rooms._post_event(session, "unhide", post, hosts)
        return None

    @staticmethod
    def _posts_by(session: Session, chat_id: int, network: str, handle: str) -> list[Post]:
        """Posts of ``chat_id`` whose author the (network, handle) entry names."""
        # Handles are compared case-folded in Python: SQLite's lower() knows only ASCII.
        rows = session.execute(
            select(Post.id, Post.network, Post.author_handle).where(
                Post.chat_id == chat_id,  # type: ignore[arg-type]
                Post.deleted.is_(False),  # type: ignore[attr-defined]
            )
        ).all()
        key = {person_key(network, handle)}
        ids = [i for i, net, h in rows if names(key, net, h)]
        if not ids:
            return []
        return list(
            session.execute(select(Post).where(Post.id.in_(ids)).order_by(Post.id))  # type: ignore[union-attr]
            .scalars()
            .all()
        )

    def _people_rows(self, session: Session, chat_id: int) -> list[ChatPerson]:
        return list(
            session.execute(
                select(ChatPerson)
                .where(
                    ChatPerson.chat_id == chat_id,  # type: ignore[arg-type]
                    ChatPerson.role.in_(ROLES),  # type: ignore[attr-defined]
                )
                .order_by(ChatPerson.role, ChatPerson.handle, ChatPerson.network)  # type: ignore[arg-type]
            )
            .scalars()
            .all()
        )

    def _people_tx(
        self, session: Session, chat: Chat, add: Iterable[Person], remove: Iterable[Person]
    ) -> tuple[list[Person], list[Person], list[Frame]]:
        """Add and remove hosts/guests; a ``people`` event carries the new list if changed."""
        rows = {
            Person(r.network, r.handle, r.role): r
            for r in self._people_rows(session, chat.id)  # type: ignore[arg-type]
        }
        removed = []
        for person in dict.fromkeys(remove):
            row = rows.pop(person, None)
            if row is not None:
                session.delete(row)
                removed.append(person)
        added = []
        for person in dict.fromkeys(add):
            if person in rows:
                continue
            if len(rows) >= MAX_PEOPLE:
                raise Invalid(f"people: a chat has at most {MAX_PEOPLE} hosts and guests")
            row = ChatPerson(chat_id=chat.id, **person.as_json())  # type: ignore[arg-type]
            session.add(row)
            rows[person] = row
            added.append(person)
        if not added and not removed:
            return [], [], []
        session.flush()
        people = [p.as_json() for p in sorted(rows, key=lambda p: (p.role, p.handle, p.network))]
        frame = events.append(session, chat.id, "people", {"people": people})  # type: ignore[arg-type]
        return added, removed, [frame]

    def _block_tx(
        self, session: Session, chat: Chat, network: str, handle: str
    ) -> tuple[bool, list[int], list[Frame]]:
        """Block an author: their shown and held posts are hidden (and flagged as hidden by
        the block, so unblocking restores exactly those); future posts are stored hidden."""
        exists = session.execute(
            select(ChatPerson.id).where(
                ChatPerson.chat_id == chat.id,  # type: ignore[arg-type]
                ChatPerson.network == network,  # type: ignore[arg-type]
                ChatPerson.handle == handle,  # type: ignore[arg-type]
                ChatPerson.role == BLOCKED,  # type: ignore[arg-type]
            )
        ).first()
        if exists is not None:
            return False, [], []
        session.add(ChatPerson(chat_id=chat.id, network=network, handle=handle, role=BLOCKED))  # type: ignore[arg-type]
        hosts = self.rooms.hosts(session, chat.id)  # type: ignore[arg-type]
        frames, hidden = [], []
        for post in self._posts_by(session, chat.id, network, handle):  # type: ignore[arg-type]
            if post.hidden:
                continue  # already hidden by a moderator: unblocking must not show it
            was = shown(post)
            post.hidden = True
            post.extra = {**post.extra, HIDDEN_BY_BLOCK: True}
            session.add(post)
            hidden.append(post.id)
            if (frame := self._visibility_frame(session, post, was, hosts)) is not None:
                frames.append(frame)
        session.flush()
        return True, hidden, frames  # type: ignore[return-value]

    def _unblock_tx(
        self, session: Session, chat: Chat, network: str, handle: str
    ) -> tuple[list[int], list[Frame]]:
        row = (
            session.execute(
                select(ChatPerson).where(
                    ChatPerson.chat_id == chat.id,  # type: ignore[arg-type]
                    ChatPerson.network == network,  # type: ignore[arg-type]
                    ChatPerson.handle == handle,  # type: ignore[arg-type]
                    ChatPerson.role == BLOCKED,  # type: ignore[arg-type]
                )
            )
            .scalars()
            .first()
        )
        if row is None:
            raise NotFound(f"{describe_person(network, handle)} is not blocked in this chat")
        session.delete(row)
        session.flush()
        remaining = Screen.load(session, chat.id)  # type: ignore[arg-type]
        hosts = self.rooms.hosts(session, chat.id)  # type: ignore[arg-type]
        frames, restored = [], []
        for post in self._posts_by(session, chat.id, network, handle):  # type: ignore[arg-type]
            if not post.extra.get(HIDDEN_BY_BLOCK):
                continue
            if remaining.blocked(post.network, post.author_handle):
                continue  # another block (e.g. on every network) still covers the author
            was = shown(post)
            post.hidden = False
            post.extra = {k: v for k, v in post.extra.items() if k != HIDDEN_BY_BLOCK}
            session.add(post)
            restored.append(post.id)
            if (frame := self._visibility_frame(session, post, was, hosts)) is not None:
                frames.append(frame)
        session.flush()
        return restored, frames  # type: ignore[return-value]

    def _review_tx(
        self, session: Session, chat: Chat, post: Post, *, held: bool, hidden: bool
    ) -> list[Frame]:
        was = shown(post)
        post.held, post.hidden = held, hidden
        session.add(post)
        session.flush()
        frame = self._visibility_frame(session, post, was, self.rooms.hosts(session, chat.id))  # type: ignore[arg-type]
        return [frame] if frame is not None else []

    def _add_rule_tx(self, session: Session, chat: Chat, kind: str, pattern: str) -> RoomRule:
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

    @staticmethod
    def _set_schedule_tx(session: Session, chat: Chat, schedule: dict[str, Any] | None) -> None:
        values = schedule or {}
        chat.schedule_start = values.get("start")
        chat.schedule_timezone = values.get("timezone")
        chat.schedule_duration_minutes = values.get("duration_minutes")
        chat.schedule_rrule = values.get("rrule")
        session.add(chat)

    # -- people ----------------------------------------------------------------------------

    async def people(self, slug: str) -> list[dict[str, Any]]:
        """The chat's hosts and guests."""

        def fn(session: Session) -> list[dict[str, Any]]:
            chat = Rooms.chat_by_slug(session, slug)
            return [person_json(r) for r in self._people_rows(session, chat.id)]  # type: ignore[arg-type]

        return await self.rooms.read(fn)

    async def change_people(
        self,
        slug: str,
        actor: str,
        *,
        add: Sequence[Person] = (),
        remove: Sequence[Person] = (),
        replace: Sequence[Person] | None = None,
    ) -> dict[str, Any]:
        """Add/remove hosts and guests, or ``replace`` the whole list. Returns the new list
        and what changed; unchanged requests record nothing."""

        def fn(session: Session) -> tuple[dict[str, Any], list[Frame]]:
            chat = Rooms.chat_by_slug(session, slug)
            to_add, to_remove = list(add), list(remove)
            if replace is not None:
                wanted = set(replace)
                current = {
                    Person(r.network, r.handle, r.role)
                    for r in self._people_rows(session, chat.id)  # type: ignore[arg-type]
                }
                to_add = [p for p in dict.fromkeys(replace) if p not in current]
                to_remove = sorted(current - wanted, key=lambda p: (p.role, p.handle))
            added, removed, frames = self._people_tx(session, chat, to_add, to_remove)
            if added or removed:
                record(
                    session,
                    chat.id,  # type: ignore[arg-type]
                    actor,
                    "people",
                    _people_target(added, removed),
                    {
                        "added": [p.as_json() for p in added],
                        "removed": [p.as_json() for p in removed],
                    },
                )
            people = [person_json(r) for r in self._people_rows(session, chat.id)]  # type: ignore[arg-type]
            result = {
                "people": people,
                "added": [p.as_json() for p in added],
                "removed": [p.as_json() for p in removed],
            }
            return result, frames

        return await self.rooms.write(fn)

    # -- blocks ----------------------------------------------------------------------------

    async def blocks(self, slug: str) -> list[dict[str, Any]]:
        def fn(session: Session) -> list[dict[str, Any]]:
            chat = Rooms.chat_by_slug(session, slug)
            rows = session.execute(
                select(ChatPerson)
                .where(
                    ChatPerson.chat_id == chat.id,  # type: ignore[arg-type]
                    ChatPerson.role == BLOCKED,  # type: ignore[arg-type]
                )
                .order_by(ChatPerson.handle)  # type: ignore[arg-type]
            ).scalars()
            return [{"network": r.network, "handle": r.handle} for r in rows]

        return await self.rooms.read(fn)

    async def block(self, slug: str, network: str, handle: str, actor: str) -> dict[str, Any]:
        """Block an author; ``changed`` is False when they already were."""

        def fn(session: Session) -> tuple[dict[str, Any], list[Frame]]:
            chat = Rooms.chat_by_slug(session, slug)
            changed, hidden, frames = self._block_tx(session, chat, network, handle)
            if changed:
                record(
                    session,
                    chat.id,  # type: ignore[arg-type]
                    actor,
                    "block",
                    describe_person(network, handle),
                    {"network": network, "handle": handle, "post_ids": hidden},
                )
            result = {"network": network, "handle": handle, "changed": changed, "hidden": hidden}
            return result, frames

        return await self.rooms.write(fn)

    async def unblock(self, slug: str, network: str, handle: str, actor: str) -> dict[str, Any]:
        """Unblock an author and show again the posts their block hid."""

        def fn(session: Session) -> tuple[dict[str, Any], list[Frame]]:
            chat = Rooms.chat_by_slug(session, slug)
            restored, frames = self._unblock_tx(session, chat, network, handle)
            record(
                session,
                chat.id,  # type: ignore[arg-type]
                actor,
                "unblock",
                describe_person(network, handle),
                {"network": network, "handle": handle, "post_ids": restored},
            )
            return {"network": network, "handle": handle, "shown": restored}, frames

        return await self.rooms.write(fn)

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
            rule = self._add_rule_tx(session, chat, kind, pattern)
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
            post = self.rooms._post_in_chat(session, chat.id, post_id)  # type: ignore[arg-type]
            if not post.held:
                raise Conflict(f"post {post_id} is not waiting for review")
            frames = self._review_tx(
                session, chat, post, held=False, hidden=post.hidden or not approve
            )
            record(session, chat.id, actor, action, describe_post(post), {"post_id": post_id})  # type: ignore[arg-type]
            return {"post_id": post_id, "approved": approve}, frames

        return await self.rooms.write(fn)

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
                _restored, frames = self._unblock_tx(session, chat, data["network"], data["handle"])
            except NotFound:
                return False, []  # unblocked since
            return True, frames
        if row.action == "unblock":
            changed, _hidden, frames = self._block_tx(
                session, chat, data["network"], data["handle"]
            )
            return changed, frames
        if row.action == "rule_add":
            rule = session.get(RoomRule, data["rule_id"])
            if rule is None or rule.chat_id != chat.id:
                return False, []
            session.delete(rule)
            return True, []
        if row.action == "rule_remove":
            self._add_rule_tx(session, chat, data["kind"], data["pattern"])
            return True, []
        if row.action == "people":
            added, removed, frames = self._people_tx(
                session,
                chat,
                add=[Person(**p) for p in data.get("removed", [])],
                remove=[Person(**p) for p in data.get("added", [])],
            )
            return bool(added or removed), frames
        if row.action in ("approve", "reject"):
            post = self.rooms._post_in_chat(session, chat.id, data["post_id"])  # type: ignore[arg-type]
            # Back to the review queue (a post hidden by a block since stays hidden).
            blocked = bool(post.extra.get(HIDDEN_BY_BLOCK))
            return True, self._review_tx(session, chat, post, held=True, hidden=blocked)
        if row.action == "schedule":
            self._set_schedule_tx(session, chat, data.get("before"))
            return True, []
        if row.action == "hashtags":
            before = list(data.get("before") or [])
            if not before or chat_hashtags(chat) == before:
                return False, []
            return True, self._set_hashtags_tx(session, chat, before)
        raise Conflict(f"action {row.id} ({row.action}) cannot be undone")


def _people_target(added: Sequence[Person], removed: Sequence[Person]) -> str:
    parts = [f"+{describe_person(p.network, p.handle)} ({p.role})" for p in added]
    parts += [f"−{describe_person(p.network, p.handle)} ({p.role})" for p in removed]
    return ", ".join(parts)


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


__all__ = [
    "ACTION_VERBS",
    "BLOCKED",
    "Conflict",
    "HELD_BY",
    "MAX_PEOPLE",
    "RULE_KINDS",
    "Moderation",
    "Person",
    "Rule",
    "Screen",
    "action_json",
    "actor_label",
    "describe_post",
    "link_hosts",
    "normalize_handle",
    "normalize_network",
    "normalize_rule",
    "record",
    "rule_json",
    "shown",
]
