"""Who a chat names: its hosts and guests, and the authors it blocks.

Moderators name people by a network (or ``"*"`` for every network) and a handle, compared
case-insensitively and without a leading ``@`` (see :mod:`app.policy`). Hosts and guests
change what readers see next to posts (``is_host``, a ``people`` frame with the whole list);
a block hides the author's posts now and stores their future ones hidden, and unblocking
shows again exactly the posts the block hid.

The ``*_tx`` functions run inside a :meth:`Rooms.write` transaction and return the frames
readers need; :class:`PeopleModeration` wraps them in writes that log the change, and
undo (:mod:`app.moderation`) applies them in reverse.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from . import events
from .action_log import describe_person, record
from .errors import Invalid, NotFound
from .events import Frame
from .models import Chat, ChatPerson, Post
from .policy import (
    ANY_NETWORK,
    BLOCKED,
    HIDDEN_BY_BLOCK,
    HOST_ROLES,
    Screen,
    names,
    person_key,
    shown,
)
from .rooms import Rooms

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


# -- inside a write transaction ---------------------------------------------------------------


def visibility_frame(
    rooms: Rooms, session: Session, post: Post, was_shown: bool, hosts: set[str]
) -> Frame | None:
    """The event readers need after ``post``'s visibility changed: hide, unhide or none."""
    now_shown = shown(post)
    if was_shown and not now_shown:
        return events.append(session, post.chat_id, "hide", {"post_id": post.id}, post_id=post.id)
    if now_shown and not was_shown:
        return rooms.post_event(session, "unhide", post, hosts)
    return None


def posts_by(session: Session, chat_id: int, network: str, handle: str) -> list[Post]:
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


def people_rows(session: Session, chat_id: int) -> list[ChatPerson]:
    """The chat's hosts and guests, by role, handle and network."""
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


def people_tx(
    session: Session, chat: Chat, add: Iterable[Person], remove: Iterable[Person]
) -> tuple[list[Person], list[Person], list[Frame]]:
    """Add and remove hosts/guests; a ``people`` event carries the new list if changed."""
    rows = {
        Person(r.network, r.handle, r.role): r
        for r in people_rows(session, chat.id)  # type: ignore[arg-type]
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


def block_tx(
    rooms: Rooms, session: Session, chat: Chat, network: str, handle: str
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
    hosts = rooms.hosts(session, chat.id)  # type: ignore[arg-type]
    frames, hidden = [], []
    for post in posts_by(session, chat.id, network, handle):  # type: ignore[arg-type]
        if post.hidden:
            continue  # already hidden by a moderator: unblocking must not show it
        was = shown(post)
        post.hidden = True
        post.extra = {**post.extra, HIDDEN_BY_BLOCK: True}
        session.add(post)
        hidden.append(post.id)
        if (frame := visibility_frame(rooms, session, post, was, hosts)) is not None:
            frames.append(frame)
    session.flush()
    return True, hidden, frames  # type: ignore[return-value]


def unblock_tx(
    rooms: Rooms, session: Session, chat: Chat, network: str, handle: str
) -> tuple[list[int], list[Frame]]:
    """Unblock an author and show again the posts their block hid (unless another block
    still covers them); NotFound when the entry is not blocked."""
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
    hosts = rooms.hosts(session, chat.id)  # type: ignore[arg-type]
    frames, restored = [], []
    for post in posts_by(session, chat.id, network, handle):  # type: ignore[arg-type]
        if not post.extra.get(HIDDEN_BY_BLOCK):
            continue
        if remaining.blocked(post.network, post.author_handle):
            continue  # another block (e.g. on every network) still covers the author
        was = shown(post)
        post.hidden = False
        post.extra = {k: v for k, v in post.extra.items() if k != HIDDEN_BY_BLOCK}
        session.add(post)
        restored.append(post.id)
        if (frame := visibility_frame(rooms, session, post, was, hosts)) is not None:
            frames.append(frame)
    session.flush()
    return restored, frames  # type: ignore[return-value]


# -- moderators' changes ----------------------------------------------------------------------


class PeopleModeration:
    """Moderators' changes to hosts, guests and blocks, through :class:`Rooms`' writer."""

    rooms: Rooms

    # -- people ----------------------------------------------------------------------------

    async def people(self, slug: str) -> list[dict[str, Any]]:
        """The chat's hosts and guests."""

        def fn(session: Session) -> list[dict[str, Any]]:
            chat = Rooms.chat_by_slug(session, slug)
            return [person_json(r) for r in people_rows(session, chat.id)]  # type: ignore[arg-type]

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
                    for r in people_rows(session, chat.id)  # type: ignore[arg-type]
                }
                to_add = [p for p in dict.fromkeys(replace) if p not in current]
                to_remove = sorted(current - wanted, key=lambda p: (p.role, p.handle))
            added, removed, frames = people_tx(session, chat, to_add, to_remove)
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
            people = [person_json(r) for r in people_rows(session, chat.id)]  # type: ignore[arg-type]
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
            changed, hidden, frames = block_tx(self.rooms, session, chat, network, handle)
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
            restored, frames = unblock_tx(self.rooms, session, chat, network, handle)
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


def _people_target(added: Sequence[Person], removed: Sequence[Person]) -> str:
    parts = [f"+{describe_person(p.network, p.handle)} ({p.role})" for p in added]
    parts += [f"−{describe_person(p.network, p.handle)} ({p.role})" for p in removed]
    return ", ".join(parts)
