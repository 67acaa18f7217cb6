"""Database tables. Alembic migrations create them; a test proves the two agree.

Times are stored as timezone-aware UTC. JSON columns hold network specifics that are read
whole and never queried into.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kw))


class Chat(SQLModel, table=True):
    """A room following one or more hashtags. ``hashtags`` is the ordered list followed;
    its first entry is ``hashtag``, the reply tag that posts made here carry.
    ``last_offset`` is the head of its event log."""

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(max_length=64, unique=True, index=True)
    hashtag: str = Field(max_length=100, index=True)  # without '#', as the creator typed it
    # Every tag followed, reply tag first (without '#'); kept in step with ``hashtag`` by
    # app/chats.py (creation) and app/moderation.py (changes), both through the one writer.
    hashtags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    title: str = Field(max_length=200)
    description: str = Field(default="", max_length=2000)
    network: str = Field(default="native", max_length=20)  # primary network: native | demo | …
    epoch: str = Field(max_length=32)
    last_offset: int = Field(default=0)
    moderator_key_hash: str = Field(max_length=128)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    # Schedule (all optional): RFC 5545 recurrence in the host's time zone.
    schedule_start: str | None = Field(default=None, max_length=32)  # local "YYYY-MM-DDTHH:MM"
    schedule_timezone: str | None = Field(default=None, max_length=64)
    schedule_duration_minutes: int | None = Field(default=None)
    schedule_rrule: str | None = Field(default=None, max_length=500)


class Source(SQLModel, table=True):
    """Where a chat's posts come from: one network endpoint, with its resumable cursor."""

    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(foreign_key="chat.id", index=True)
    network: str = Field(max_length=20)
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    secret: str | None = Field(default=None, max_length=4000)  # encrypted token, if any
    cursor: str | None = Field(default=None, max_length=500)
    enabled: bool = Field(default=True)
    created_at: datetime = _ts(nullable=False, default=utcnow)


class Post(SQLModel, table=True):
    """A post in a room. ``html`` is already sanitized; the raw network HTML is never stored."""

    __table_args__ = (
        UniqueConstraint("chat_id", "network", "remote_id", name="uq_post_remote"),
        Index("ix_post_chat_created", "chat_id", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(foreign_key="chat.id", index=True)
    network: str = Field(max_length=20)
    remote_id: str = Field(max_length=500)
    url: str | None = Field(default=None, max_length=1000)
    author_name: str = Field(max_length=200)
    author_handle: str = Field(max_length=300)
    author_avatar: str | None = Field(default=None, max_length=1000)
    author_url: str | None = Field(default=None, max_length=1000)
    author_remote_id: str | None = Field(default=None, max_length=300)
    text: str = Field(default="")
    html: str = Field(default="")
    spoiler_text: str = Field(default="", max_length=1000)
    sensitive: bool = Field(default=False)
    media: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    quote: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    language: str | None = Field(default=None, max_length=20)
    in_reply_to_remote: str | None = Field(default=None, max_length=500)
    in_reply_to_id: int | None = Field(default=None, index=True)
    reply_to_handle: str | None = Field(default=None, max_length=300)
    thread_root_remote: str | None = Field(default=None, max_length=500)
    reposted_by_name: str | None = Field(default=None, max_length=200)
    reposted_by_handle: str | None = Field(default=None, max_length=300)
    question_number: int | None = Field(default=None)
    answer_number: int | None = Field(default=None)
    hidden: bool = Field(default=False)  # hidden room-wide by a moderator (or a block)
    held: bool = Field(default=False)  # held for review by a room rule
    deleted: bool = Field(default=False)
    pending: bool = Field(default=False)  # optimistic copy of a post made through a network
    account_id: int | None = Field(default=None)  # Hashroom account that posted it, if any
    extra: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts(nullable=False, default=utcnow)
    edited_at: datetime | None = _ts(nullable=True)
    stored_at: datetime = _ts(nullable=False, default=utcnow)


class PostAlias(SQLModel, table=True):
    """A post's id on one source (e.g. a Mastodon instance's own status id), for deletes."""

    __table_args__ = (UniqueConstraint("source_id", "local_id", name="uq_alias_local"),)

    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="source.id", index=True)
    local_id: str = Field(max_length=200)
    post_id: int = Field(foreign_key="post.id", index=True)


class Event(SQLModel, table=True):
    """One change to a room. ``offset`` is gap-free per chat; ``frame`` is the exact JSON text
    sent to websocket clients, encoded once when the event is written."""

    __table_args__ = (UniqueConstraint("chat_id", "offset", name="uq_event_offset"),)

    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(foreign_key="chat.id")
    offset: int
    type: str = Field(max_length=20)
    post_id: int | None = Field(default=None)
    frame: str
    created_at: datetime = _ts(nullable=False, default=utcnow)


class Pin(SQLModel, table=True):
    """A post pinned by a moderator. Unpinning keeps the row (past questions stay listed)."""

    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(foreign_key="chat.id", index=True)
    post_id: int = Field(foreign_key="post.id")
    is_question: bool = Field(default=False)
    pinned_at: datetime = _ts(nullable=False, default=utcnow)
    unpinned_at: datetime | None = _ts(nullable=True)


class ModAction(SQLModel, table=True):
    """Who did what to a room, and when; ``undone_at`` once reverted."""

    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(foreign_key="chat.id", index=True)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=40)
    target: str = Field(default="", max_length=500)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts(nullable=False, default=utcnow)
    undone_at: datetime | None = _ts(nullable=True)


class ChatPerson(SQLModel, table=True):
    """A chat's named hosts, guests and blocked authors, by network handle."""

    __table_args__ = (UniqueConstraint("chat_id", "network", "handle", "role", name="uq_person"),)

    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(foreign_key="chat.id", index=True)
    network: str = Field(default="*", max_length=20)  # "*" matches every network
    handle: str = Field(max_length=300)  # compared case-insensitively, without leading '@'
    role: str = Field(max_length=20)  # host | guest | blocked


class RoomRule(SQLModel, table=True):
    """A moderator's rule: posts matching ``pattern`` are held for review."""

    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(foreign_key="chat.id", index=True)
    kind: str = Field(max_length=20)  # keyword | link
    pattern: str = Field(max_length=300)
    created_at: datetime = _ts(nullable=False, default=utcnow)


class Account(SQLModel, table=True):
    """A network account Hashroom may post through. Tokens are encrypted with the app secret.

    Ids are never handed out twice (AUTOINCREMENT on SQLite, a sequence on PostgreSQL): an
    id named anywhere after a disconnect must not come to mean somebody else's account."""

    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    network: str = Field(max_length=20)
    instance: str = Field(max_length=300)  # Mastodon instance URL / Bluesky PDS URL
    handle: str = Field(default="", max_length=300)
    remote_id: str | None = Field(default=None, max_length=300)  # account id / DID
    secret: str = Field(max_length=8000)  # encrypted JSON: tokens, refresh tokens, …
    owner: str = Field(default="", max_length=100)  # browser session id that connected it
    created_at: datetime = _ts(nullable=False, default=utcnow)


class OAuthApp(SQLModel, table=True):
    """An app registration on a Mastodon instance, cached per instance and redirect URI."""

    __table_args__ = (UniqueConstraint("instance", "redirect_uri", name="uq_oauth_app"),)

    id: int | None = Field(default=None, primary_key=True)
    instance: str = Field(max_length=300)
    redirect_uri: str = Field(max_length=1000)
    client_id: str = Field(max_length=300)
    client_secret: str = Field(max_length=4000)  # encrypted
    created_at: datetime = _ts(nullable=False, default=utcnow)


class PushKey(SQLModel, table=True):
    """The server's VAPID key pair for Web Push, generated once. The private key is sealed
    with the app secret; subscriptions are bound to the public key, so it never changes."""

    id: int | None = Field(default=None, primary_key=True)
    private_key: str = Field(max_length=4000)  # sealed PEM
    public_key: str = Field(max_length=200)  # base64url uncompressed point
    created_at: datetime = _ts(nullable=False, default=utcnow)


class PushSubscription(SQLModel, table=True):
    """A browser's push subscription to one chat, and which notices it wants.

    ``owner`` is the hash of the device token the browser was given, which lists and removes
    its subscriptions; ``account_ids`` are the Hashroom accounts whose posts' replies it
    hears about; ``notified_start`` is the session start it was last told about.
    """

    __table_args__ = (UniqueConstraint("owner", "chat_id", name="uq_push_owner_chat"),)

    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(foreign_key="chat.id", index=True)
    owner: str = Field(max_length=64, index=True)
    endpoint: str = Field(max_length=1000)
    p256dh: str = Field(max_length=200)
    auth: str = Field(max_length=100)
    kinds: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    account_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    notified_start: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts(nullable=False, default=utcnow)


class FeedRecord(SQLModel, table=True):
    """A chat's Bluesky feed, published as an ``app.bsky.feed.generator`` record in a
    moderator's repo (``uri``); removing the record deletes the row."""

    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(foreign_key="chat.id", unique=True)
    account_id: int | None = Field(default=None)
    uri: str = Field(max_length=500, index=True)
    created_at: datetime = _ts(nullable=False, default=utcnow)


class QuestionVote(SQLModel, table=True):
    """One reader's upvote of a question. ``voter`` is a keyed hash of who voted (a signed-in
    account, else the browser's session voter id), so one voter counts once per question."""

    __table_args__ = (UniqueConstraint("post_id", "voter", name="uq_vote_voter"),)

    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(foreign_key="chat.id", index=True)
    post_id: int = Field(foreign_key="post.id", index=True)
    voter: str = Field(max_length=64)
    created_at: datetime = _ts(nullable=False, default=utcnow)


class AnsweredQuestion(SQLModel, table=True):
    """A question a moderator marked answered; undoing the mark deletes the row."""

    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(foreign_key="chat.id", index=True)
    post_id: int = Field(foreign_key="post.id", unique=True)
    answered_at: datetime = _ts(nullable=False, default=utcnow)


class Lease(SQLModel, table=True):
    """A job one process of a cluster does at a time (following source 7: ``source:7``),
    held by ``holder`` until ``expires_at`` unless its heartbeat renews it (app/leases.py)."""

    name: str = Field(primary_key=True, max_length=200)
    holder: str = Field(max_length=200)
    expires_at: datetime = _ts(nullable=False)
    acquired_at: datetime = _ts(nullable=False, default=utcnow)
