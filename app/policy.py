"""The one room policy: who an author is to a room, and which posts readers see.

* **People.** A chat names hosts and guests, whose posts carry ``is_host``, and blocked
  authors, whose posts are stored hidden; each by a network (or ``"*"`` for every network)
  and a handle. :func:`person_key` is the one way such a name and a post's author are
  compared: the handle without a leading ``@``, case-folded.
* **Screening.** :class:`Screen` holds a chat's blocks and hold-for-review rules; the writer
  (:meth:`app.posts.PostStore.apply_batch`) asks it about each new post and each edit: a blocked
  author's post is stored hidden, one that trips a rule is stored *held* for review. Hosts'
  posts are never held.
* **Visibility.** :func:`shown` (a post in hand) and :func:`visible` (the same as SQL
  clauses) say whether readers see a post. The room, the wall, transcripts and their exports,
  the feed, votes and moderation all ask them.

A chat's hosts and screen are read for every stored post and change rarely:
:func:`for_chat` caches them between the writes that change them.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, select
from sqlmodel import Session

from .hold_rules import Rule, link_hosts
from .models import ChatPerson, Post, RoomRule

ANY_NETWORK = "*"
HOST_ROLES = ("host", "guest")
BLOCKED = "blocked"
# Post.extra flag: hidden because its author is blocked (unblocking shows exactly these).
HIDDEN_BY_BLOCK = "hidden_by_block"
HELD_BY = "held_by"  # Post.extra key: the rule that held the post, for the review queue

# Hosts, blocks and rules are read for every stored post; they change rarely. Changes made
# through this process's sessions drop the cache at once (see _forget below); a change made
# by another web process shows here within CONFIG_TTL seconds.
CONFIG_TTL = 5.0
CONFIG_COMMITTED = "hashroom.config_committed"  # session.info: chat ids whose config changed


# -- people ---------------------------------------------------------------------------------


def person_key(network: str, handle: str) -> str:
    """How a named person is matched: the handle without '@', case-folded, prefixed by its
    network unless it applies to every network ("*")."""
    key = handle.strip().lstrip("@").casefold()
    return key if network == ANY_NETWORK else f"{network}\t{key}"


def names(keys: Collection[str], network: str, handle: str) -> bool:
    """Whether one of ``keys`` (:func:`person_key` keys) names the author ``handle`` of a
    post on ``network``: by an entry for every network or for that one."""
    return person_key(ANY_NETWORK, handle) in keys or person_key(network, handle) in keys


def is_host(post: Post, hosts: Collection[str]) -> bool:
    """Whether ``post`` is by one of the chat's hosts or guests (``hosts``: their keys). A
    network vouches for its handles; in a native room anyone can type any name, so only posts
    made by someone the moderators vouched for (``extra.is_host``) count."""
    if post.extra.get("is_host"):
        return True
    if post.network == "native":
        return False
    return names(hosts, post.network, post.author_handle)


# -- screening ------------------------------------------------------------------------------


@dataclass(slots=True)
class Screen:
    """One chat's blocks (:func:`person_key` keys) and hold-for-review rules."""

    blocks: frozenset[str]
    rules: list[Rule]

    @classmethod
    def load(cls, session: Session, chat_id: int) -> Screen:
        """The chat's blocks and rules as ``session`` sees them (uncached)."""
        blocks = session.execute(
            select(ChatPerson.network, ChatPerson.handle).where(
                ChatPerson.chat_id == chat_id,  # type: ignore[arg-type]
                ChatPerson.role == BLOCKED,  # type: ignore[arg-type]
            )
        ).all()
        rules = session.execute(
            select(RoomRule.id, RoomRule.kind, RoomRule.pattern).where(
                RoomRule.chat_id == chat_id  # type: ignore[arg-type]
            )
        ).all()
        return cls(
            blocks=frozenset(person_key(n, h) for n, h in blocks),
            rules=[Rule(id=i, kind=k, pattern=p) for i, k, p in rules],
        )

    def blocked(self, network: str, handle: str) -> bool:
        """Whether a block names the author ``handle`` on ``network``."""
        return names(self.blocks, network, handle)

    def rule_for(self, post: Post) -> Rule | None:
        """The first rule ``post`` trips, if any."""
        if not self.rules:
            return None
        folded = f"{post.spoiler_text}\n{post.text}".casefold()
        hosts = link_hosts(post.html, post.text)
        for rule in self.rules:
            if rule.matches(folded, hosts):
                return rule
        return None

    def apply(self, post: Post, *, is_host: bool) -> None:
        """Mark a new post before it is stored: hidden when its author is blocked, held for
        review when it trips a rule (hosts' posts never are)."""
        if self.blocked(post.network, post.author_handle):
            post.hidden = True
            post.extra = {**post.extra, HIDDEN_BY_BLOCK: True}
        elif not is_host and (rule := self.rule_for(post)) is not None:
            post.held = True
            post.extra = {**post.extra, HELD_BY: rule.describe()}

    def hold_edit(self, post: Post, *, is_host: bool) -> bool:
        """An edit of a shown post that now trips a rule holds it; True when it did."""
        if is_host or (rule := self.rule_for(post)) is None:
            return False
        post.held = True
        post.extra = {**post.extra, HELD_BY: rule.describe()}
        return True


# -- visibility -----------------------------------------------------------------------------


def shown(post: Post) -> bool:
    """Whether readers see ``post``: not hidden, not held for review, not deleted."""
    return not (post.hidden or post.held or post.deleted)


def visible() -> tuple[Any, ...]:
    """The clauses of :func:`shown` for a query on ``Post``."""
    return (
        Post.hidden.is_(False),  # type: ignore[attr-defined]
        Post.deleted.is_(False),  # type: ignore[attr-defined]
        Post.held.is_(False),  # type: ignore[attr-defined]
    )


# -- each chat's policy, cached -------------------------------------------------------------


@dataclass(slots=True)
class ChatPolicy:
    """A chat's hosts and guests (:func:`person_key` keys) and its :class:`Screen`."""

    hosts: set[str]
    screen: Screen
    loaded: float


_cache: dict[tuple[str, int], ChatPolicy] = {}


def for_chat(session: Session, chat_id: int) -> ChatPolicy:
    """The chat's policy: at most CONFIG_TTL seconds old, and never older than a change
    committed (or flushed) through a session of this process."""
    key = _cache_key(session, chat_id)
    cached = _cache.get(key)
    now = time.monotonic()
    if cached is not None and now - cached.loaded < CONFIG_TTL:
        return cached
    rows = session.execute(
        select(ChatPerson.network, ChatPerson.handle).where(
            ChatPerson.chat_id == chat_id,  # type: ignore[arg-type]
            ChatPerson.role.in_(HOST_ROLES),  # type: ignore[attr-defined]
        )
    ).all()
    policy = ChatPolicy(
        hosts={person_key(network, handle) for network, handle in rows},
        screen=Screen.load(session, chat_id),
        loaded=now,
    )
    _cache[key] = policy
    return policy


def forget(chat_id: int) -> None:
    """Drop the cached policy of ``chat_id`` (another process changed it)."""
    for key in [k for k in _cache if k[1] == chat_id]:
        _cache.pop(key, None)


def _cache_key(session: Session, chat_id: int) -> tuple[str, int]:
    return (str(session.get_bind().url), chat_id)


@event.listens_for(Session, "after_flush")
def _forget(session: Session, _context: Any) -> None:
    changed = session.info.setdefault("config_chats", set())
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, ChatPerson | RoomRule):
            key = _cache_key(session, obj.chat_id)
            changed.add(key)
            _cache.pop(key, None)


@event.listens_for(Session, "after_commit")
def _forget_at_commit(session: Session) -> None:
    keys = session.info.pop("config_chats", ())
    # A read later in the same transaction may have cached uncommitted rows: drop them again.
    for key in keys:
        _cache.pop(key, None)
    # The other processes of a cluster are told after the write (Rooms.write).
    if keys:
        session.info.setdefault(CONFIG_COMMITTED, set()).update(c for _url, c in keys)


@event.listens_for(Session, "after_rollback")
def _forget_at_rollback(session: Session) -> None:
    for key in session.info.pop("config_chats", ()):
        _cache.pop(key, None)
