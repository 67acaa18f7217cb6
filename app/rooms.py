"""Every change to a room goes through here: the row and its event in one transaction.

:class:`Rooms` is the single writer of a process. Writes are serialised by one lock and run
in a worker thread (the database driver is synchronous); frames are published to the hub
after commit and still under the lock, so clients see events in offset order. Ingesters hand
over whole batches, so a busy chat costs one transaction per batch, not one per post.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from . import events, policy, post_rows, text
from .action_log import describe_post, record
from .config import Settings
from .db import session_scope
from .errors import Invalid, NotFound
from .events import Frame
from .hub import Fanout, Hub, LocalFanout
from .models import (
    Chat,
    ModAction,
    Pin,
    Post,
    PostAlias,
    Source,
    utcnow,
)
from .networks.base import Author, Batch, Delete, RemotePost, Upsert
from .policy import CONFIG_COMMITTED, HIDDEN_BY_BLOCK, Screen
from .present import Presenter, pin_json, post_json
from .qa import answer_number, question_number
from .security import hash_key, new_epoch, new_moderator_key

log = logging.getLogger(__name__)

T = TypeVar("T")

DEMO_SLUG = "demo"
# session.info flag of write transactions: Rooms.chat_by_slug then locks the chat's row.
WRITING = "hashroom.writing"
# A write that lost a race on a unique constraint to another process is run again this many
# times (the second run finds the other's row: a duplicate delivery, not an error).
WRITE_RETRIES = 2


@dataclass(slots=True)
class SourceSpec:
    """A source to follow, as given at chat creation (validated by the network module)."""

    network: str
    config: dict[str, Any] = field(default_factory=dict)
    secret: str | None = None  # already sealed by the caller


@dataclass(slots=True)
class Snapshot:
    offset: int
    epoch: str
    posts: list[dict[str, Any]]  # {"post": …, "html": …}, newest first
    pins: list[dict[str, Any]]  # {"pin": …, "post": …, "html": …}
    past_questions: list[dict[str, Any]]


# Mastodon allows 4 attachments and Bluesky 4 images; alt texts up to 1500 characters.
MAX_MEDIA = 16
MAX_ALT = 1500


def slugify(tag: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", tag.casefold()).strip("-")
    return slug[:48] or "chat"


def demo_moderator_key(secret_key: str) -> str:
    """The demo chat's moderator key, derived from the secret so it can be shown every start."""
    return hmac.new(secret_key.encode(), b"hashroom-demo-moderator", hashlib.sha256).hexdigest()[
        :32
    ]


NOTES = "hashroom.notes"
NOTE_TEXT = 300  # enough for a notification's body; the room has the rest


@dataclass(frozen=True, slots=True)
class RoomNote:
    """Something outside the room may want to hear about, written by a committed write:
    ``pinned`` (a question was pinned) or ``reply`` (someone answered a post made through
    Hashroom account ``account_id``)."""

    kind: str
    chat_id: int
    slug: str
    hashtag: str
    title: str
    post_id: int
    author: str
    text: str
    account_id: int | None = None


class Rooms:
    """The single writer and the consistent readers of rooms."""

    def __init__(
        self,
        engine: Engine,
        hub: Hub,
        settings: Settings,
        presenter: Presenter,
        fanout: Fanout | None = None,
    ) -> None:
        self.engine = engine
        self.hub = hub
        # Where committed frames go: this process's hub, or through Redis to every process.
        self.fanout: Fanout = fanout or LocalFanout(hub)
        self.settings = settings
        self.presenter = presenter
        self._lock = asyncio.Lock()
        # Called (synchronously, after commit) with the notes of each write; they must not
        # block: the push notifier only queues.
        self.observers: list[Callable[[list[RoomNote]], None]] = []

    # -- plumbing -------------------------------------------------------------------------

    async def write(self, fn: Callable[[Session], tuple[T, list[Frame]]]) -> T:
        """Run ``fn`` in one transaction (in a thread), then publish its frames in order and
        hand the transaction's notes (:class:`RoomNote`) to every observer, once it committed."""
        async with self._lock:
            for attempt in range(WRITE_RETRIES + 1):
                try:
                    result, frames, notes, config = await asyncio.to_thread(self._transaction, fn)
                    break
                except IntegrityError as exc:
                    if attempt == WRITE_RETRIES or not _lost_race(exc):
                        raise
                    log.info("write lost a race to another process; running it again")
            await self.fanout.committed(frames)
        if config:
            self.hub.forget_snapshots(config)
            await self.fanout.config_changed(config)
        if notes:
            for observer in self.observers:
                try:
                    observer(notes)
                except Exception:  # an observer's bug must not fail the write that committed
                    log.exception("room observer failed")
        return result

    def _transaction(
        self, fn: Callable[[Session], tuple[T, list[Frame]]]
    ) -> tuple[T, list[Frame], list[RoomNote], set[int]]:
        with session_scope(self.engine) as session:
            session.info[WRITING] = True
            result, frames = fn(session)
            notes = session.info.pop(NOTES, [])
        return result, frames, notes, session.info.pop(CONFIG_COMMITTED, set())

    @staticmethod
    def _note(session: Session, chat: Chat, kind: str, post: Post, **extra: Any) -> None:
        """Record that something observers care about happened in this transaction."""
        session.info.setdefault(NOTES, []).append(
            RoomNote(
                kind=kind,
                chat_id=chat.id,  # type: ignore[arg-type]
                slug=chat.slug,
                hashtag=chat.hashtag,
                title=chat.title,
                post_id=post.id,  # type: ignore[arg-type]
                author=post.author_name or post.author_handle,
                text=post.text[:NOTE_TEXT],
                **extra,
            )
        )

    async def read(self, fn: Callable[[Session], T]) -> T:
        """Run a read-only ``fn`` in a thread with its own session."""

        def run() -> T:
            with Session(self.engine, expire_on_commit=False) as session:
                return fn(session)

        return await asyncio.to_thread(run)

    # -- helpers used inside transactions ------------------------------------------------

    @staticmethod
    def chat_by_slug(session: Session, slug: str) -> Chat:
        """The chat named ``slug``. In a write transaction its row is locked until commit
        (PostgreSQL; SQLite takes its database write lock): writes to one chat from several
        processes then run one after the other, so a check-then-insert (a pin, a vote) sees
        the other's committed row."""
        query = select(Chat).where(Chat.slug == slug)
        if session.info.get(WRITING):
            if session.get_bind().dialect.name == "sqlite":
                # SQLite has no row locks and starts a transaction's write lock at its first
                # write: take it now, before the checks (a no-op UPDATE does).
                session.execute(
                    update(Chat).where(Chat.slug == slug).values(last_offset=Chat.last_offset)
                )
            else:
                query = query.with_for_update()
        chat = session.exec(query).scalars().first()  # type: ignore[call-overload]
        if chat is None:
            raise NotFound(f"no chat with slug {slug!r}")
        return chat

    @staticmethod
    def find_post(session: Session, chat_id: int, network: str, remote_id: str) -> Post | None:
        """The stored post with this network identity in the chat, if any (the dedupe key)."""
        return (
            session.execute(
                select(Post).where(
                    Post.chat_id == chat_id,  # type: ignore[arg-type]
                    Post.network == network,  # type: ignore[arg-type]
                    Post.remote_id == remote_id,  # type: ignore[arg-type]
                )
            )
            .scalars()
            .first()
        )

    @staticmethod
    def _post_in_chat(session: Session, chat_id: int, post_id: int) -> Post:
        post = session.get(Post, post_id)
        if post is None or post.chat_id != chat_id or post.deleted:
            raise NotFound(f"no post {post_id} in this chat")
        return post

    def hosts(self, session: Session, chat_id: int) -> set[str]:
        """The chat's named hosts and guests, as :func:`app.policy.person_key` keys (cached)."""
        return policy.for_chat(session, chat_id).hosts

    def screen(self, session: Session, chat_id: int) -> Screen:
        """The chat's blocks and hold rules (cached)."""
        return policy.for_chat(session, chat_id).screen

    @staticmethod
    def is_host(post: Post, hosts: set[str]) -> bool:
        """Whether ``post`` is by one of the chat's hosts or guests (:func:`app.policy.is_host`)."""
        return policy.is_host(post, hosts)

    def present(self, post: Post, hosts: set[str]) -> dict[str, Any]:
        data = post_json(post, is_host=self.is_host(post, hosts))
        return {"post": data, "html": self.presenter.post_html(data)}

    def _post_event(self, session: Session, type_: str, post: Post, hosts: set[str]) -> Frame:
        shown = self.present(post, hosts)
        return events.append(session, post.chat_id, type_, shown, post_id=post.id)

    # -- chats ----------------------------------------------------------------------------

    async def create_chat(
        self,
        *,
        hashtag: str,
        title: str,
        hashtags: Sequence[str] | None = None,
        description: str = "",
        network: str = "native",
        sources: Sequence[SourceSpec] = (),
        schedule: dict[str, Any] | None = None,
        slug: str | None = None,
        moderator_key: str | None = None,
    ) -> tuple[Chat, str, list[Source]]:
        """Create a chat; returns it, its moderator key (shown once) and its sources.

        ``hashtags``, when given, is every tag followed and its first is the reply tag;
        otherwise the chat follows ``hashtag`` alone. Raises ValueError on a bad list."""
        tags = text.normalize_hashtags(hashtags or [hashtag], self.settings.max_hashtags_per_chat)
        tag = tags[0]
        key = moderator_key or new_moderator_key()

        def fn(session: Session) -> tuple[tuple[Chat, str, list[Source]], list[Frame]]:
            base = slug or slugify(tag)
            candidate, n = base, 1
            while session.execute(select(Chat.id).where(Chat.slug == candidate)).first():  # type: ignore[arg-type]
                n += 1
                candidate = f"{base}-{n}"
            chat = Chat(
                slug=candidate,
                hashtag=tag,
                hashtags=tags,
                title=title.strip(),
                description=description.strip(),
                network=network,
                epoch=new_epoch(),
                moderator_key_hash=hash_key(key),
            )
            if schedule:
                chat.schedule_start = schedule.get("start")
                chat.schedule_timezone = schedule.get("timezone")
                chat.schedule_duration_minutes = schedule.get("duration_minutes")
                chat.schedule_rrule = schedule.get("rrule")
            session.add(chat)
            session.flush()
            rows = []
            for spec in sources:
                src = Source(
                    chat_id=chat.id, network=spec.network, config=spec.config, secret=spec.secret
                )
                session.add(src)
                rows.append(src)
            session.flush()
            return (chat, key, rows), []

        return await self.write(fn)

    async def ensure_demo(self) -> Chat:
        """Create the bundled demo chat (following the demo replay) unless it exists."""

        def exists(session: Session) -> Chat | None:
            return session.execute(select(Chat).where(Chat.slug == DEMO_SLUG)).scalars().first()  # type: ignore[arg-type]

        chat = await self.read(exists)
        if chat is not None:
            return chat
        from .networks.demo import load_transcript

        transcript = load_transcript()
        try:
            chat, _key, _ = await self._create_demo(transcript)
        except IntegrityError:  # another process of the cluster created it just now
            found = await self.read(exists)
            if found is None:
                raise
            return found
        return chat

    async def _create_demo(self, transcript: Any) -> tuple[Chat, str, list[Source]]:
        return await self.create_chat(
            hashtag=transcript.hashtag,
            title=transcript.title,
            description=transcript.description,
            network="demo",
            sources=[SourceSpec(network="demo")],
            slug=DEMO_SLUG,
            moderator_key=demo_moderator_key(self.settings.secret_key),
        )

    # -- posts ----------------------------------------------------------------------------

    def _bounded(self, rp: RemotePost) -> tuple[str, str, dict[str, int]]:
        """The post's HTML and text cut to the configured sizes before any pass over them
        (sanitizing costs grow faster than the input on hostile markup), and the original
        sizes of what was cut."""
        cut: dict[str, int] = {}
        raw_html, raw_text = rp.html or "", rp.text or ""
        if len(raw_html) > self.settings.max_post_html:
            cut["html"] = len(raw_html)
            raw_html = raw_html[: self.settings.max_post_html]
        if len(raw_text) > self.settings.max_post_text:
            cut["text"] = len(raw_text)
            raw_text = raw_text[: self.settings.max_post_text]
        return raw_html, raw_text, cut

    def _build_post(self, chat: Chat, rp: RemotePost, parent: Any) -> Post:
        """An unsaved post from ``rp`` (:func:`app.post_rows.new_post`). ``parent`` is the
        stored post it replies to, if any — anything with its ``id``, ``author_handle`` and
        ``question_number``."""
        raw_html, raw_text, cut = self._bounded(rp)
        html = text.sanitize_html(raw_html) if raw_html else text.render_text(raw_text)
        plain = raw_text or text.html_to_text(html)
        if len(plain) > self.settings.max_post_text:
            cut.setdefault("text", len(plain))
            plain = plain[: self.settings.max_post_text]
        parent_id = None
        reply_to_handle = rp.reply_to_handle
        if parent is not None:
            # Networks that name the parent only by reference (Bluesky) learn its
            # author here, for the "replying to @…" line.
            parent_id, reply_to_handle = parent.id, reply_to_handle or parent.author_handle
        extra = dict(rp.extra)
        if cut:
            extra["cut"] = cut  # original sizes, so readers and moderators know it was cut
        answer = answer_number(plain)
        if answer is None and parent_id is not None:
            answer = parent.question_number
        return post_rows.new_post(
            chat_id=chat.id,
            network=rp.network,
            remote_id=rp.remote_id,
            url=_http_only(rp.url),
            author_name=text.clean_name(rp.author.name)[:200]
            or text.clean_name(rp.author.handle)[:200],
            author_handle=text.clean_name(rp.author.handle)[:300],
            author_avatar=_http_only(rp.author.avatar_url),
            author_url=_http_only(rp.author.profile_url),
            author_remote_id=rp.author.remote_id,
            text=plain,
            html=html,
            spoiler_text=(rp.spoiler_text or "")[:1000],
            sensitive=rp.sensitive,
            media=[
                {
                    "url": u,
                    "preview_url": _http_only(m.preview_url),
                    "alt": (m.alt or "")[:MAX_ALT] if m.alt is not None else None,
                    "kind": m.kind,
                }
                for m in rp.media[:MAX_MEDIA]
                if (u := _http_only(m.url))
            ],
            quote=_clean_quote(rp.quote),
            language=rp.language,
            in_reply_to_remote=rp.in_reply_to,
            in_reply_to_id=parent_id,
            reply_to_handle=reply_to_handle,
            thread_root_remote=rp.thread_root,
            reposted_by_name=text.clean_name(rp.reposted_by.name)[:200] if rp.reposted_by else None,
            reposted_by_handle=rp.reposted_by.handle if rp.reposted_by else None,
            question_number=question_number(plain),
            answer_number=answer,
            hidden=False,
            held=False,
            deleted=False,
            pending=False,
            account_id=None,
            extra=extra,
            created_at=rp.created_at,
            edited_at=rp.edited_at,
            stored_at=utcnow(),
        )

    def _apply_batch(
        self,
        session: Session,
        chat: Chat,
        source_id: int | None,
        changes: Sequence[Upsert | Delete],
        *,
        pending: bool = False,
        account_id: int | None = None,
    ) -> tuple[list[Post], list[Frame]]:
        """Store ``changes`` for ``chat``: insert new posts, apply edits, reconcile pending
        copies, mark deletes; returns the posts written and their frames.

        The outcome — rows, frames and their order, notes — is that of applying the changes
        one after the other; the batch's lookups and inserts are merely made together
        (:mod:`app.post_rows`). ``pending``/``account_id`` mark new posts as optimistic
        copies of a post just made through a network account; the network's own delivery
        later reconciles them.
        """
        hosts = self.hosts(session, chat.id)  # type: ignore[arg-type]
        screen = self.screen(session, chat.id)  # type: ignore[arg-type]
        upserts = [c.post for c in changes if isinstance(c, Upsert)]
        for rp in upserts:
            if rp.reposted_by is not None:
                # A repost is its own item in the column ("reposted by …"), keyed so that
                # the same boost seen on several instances is still stored once.
                rp.remote_id = f"{rp.remote_id}#repost:{rp.reposted_by.handle.casefold()}"
        chat_id: int = chat.id  # type: ignore[assignment]
        known = post_rows.stored_posts(session, chat_id, (rp.remote_id for rp in upserts))
        parents = post_rows.reply_parents(
            session, chat_id, (rp.in_reply_to for rp in upserts if rp.in_reply_to)
        )
        for post in known.values():  # the loaded copy shows edits made earlier in the batch
            if getattr(parents.get(post.remote_id), "id", None) == post.id:
                parents[post.remote_id] = post
        aliased: set[str] = set()
        if source_id is not None:
            local_ids = [rp.local_id for rp in upserts if rp.local_id]
            aliased = post_rows.known_aliases(session, source_id, local_ids)
        unsaved: list[Post] = []  # new posts not inserted yet
        aliases: list[tuple[str, Post]] = []  # aliases not inserted yet
        # Each event in order: a new post to present once it has its id, or a ready payload.
        slots: list[Post | tuple[str, dict[str, Any], int | None]] = []
        stored: list[Post] = []

        def insert_unsaved() -> None:
            post_rows.insert_posts(session, unsaved)
            unsaved.clear()

        def alias(local_id: str | None, post: Post) -> None:
            if source_id is not None and local_id and local_id not in aliased:
                aliased.add(local_id)
                aliases.append((local_id, post))

        def parent_of(rp: RemotePost) -> Any:
            parent = parents.get(rp.in_reply_to) if rp.in_reply_to else None
            if parent is not None and parent.id is None:
                insert_unsaved()  # a reply to a post of this batch names its id
            return parent

        for change in changes:
            if isinstance(change, Delete):
                insert_unsaved()
                if source_id is not None:
                    post_rows.insert_aliases(session, source_id, aliases)
                    aliases.clear()
                post = self._find_deleted(session, chat_id, source_id, change)
                if post is None or post.deleted:
                    continue
                post.deleted = True
                session.add(post)
                known[(post.network, post.remote_id)] = post
                slots.append(("delete", {"post_id": post.id}, post.id))
                continue
            rp = change.post
            existing = known.get((rp.network, rp.remote_id))
            if existing is None:
                post = self._build_post(chat, rp, parent_of(rp))
                post.pending = pending
                post.account_id = account_id
                screen.apply(post, is_host=self.is_host(post, hosts))
                unsaved.append(post)
                known[(rp.network, rp.remote_id)] = post
                parents.setdefault(rp.remote_id, post)
                alias(rp.local_id, post)
                if policy.shown(post):  # blocked and held posts never reach readers
                    slots.append(post)
                stored.append(post)
                continue
            alias(rp.local_id, existing)
            fresh = self._build_post(chat, rp, parent_of(rp))
            better_author = _better_author(fresh, existing)
            changed = existing.pending or (
                not existing.deleted
                and (fresh.html != existing.html or _edited_later(fresh, existing) or better_author)
            )
            if not changed:
                continue  # a duplicate delivery (another instance, a replayed stream)
            if post_rows.is_unsaved(existing):  # new in this batch: change a loaded copy
                insert_unsaved()
                existing = session.get(Post, existing.id)
                assert existing is not None
                known[(rp.network, rp.remote_id)] = existing
                if getattr(parents.get(rp.remote_id), "id", None) == existing.id:
                    parents[rp.remote_id] = existing
            for attr in (
                "html",
                "text",
                "spoiler_text",
                "sensitive",
                "media",
                "quote",
                "language",
                "url",
                "edited_at",
                "question_number",
                "answer_number",
            ):
                setattr(existing, attr, getattr(fresh, attr))
            if better_author:
                for attr in ("author_name", "author_handle", "author_avatar", "author_url"):
                    setattr(existing, attr, getattr(fresh, attr) or getattr(existing, attr))
            was_shown = policy.shown(existing)
            existing.pending = False
            existing.extra = {**existing.extra, **fresh.extra}
            held = was_shown and screen.hold_edit(existing, is_host=self.is_host(existing, hosts))
            session.add(existing)
            if held:  # an edit that trips a rule goes back for review
                slots.append(("hide", {"post_id": existing.id}, existing.id))
            elif policy.shown(existing):
                slots.append(("update", self.present(existing, hosts), existing.id))
            stored.append(existing)
        insert_unsaved()
        if source_id is not None:
            post_rows.insert_aliases(session, source_id, aliases)
        items: list[tuple[str, dict[str, Any], int | None]] = []
        for slot in slots:
            if isinstance(slot, Post):
                items.append(("post", self.present(slot, hosts), slot.id))
                self._note_reply(session, chat, slot, parents.get(slot.in_reply_to_remote or ""))
            else:
                items.append(slot)
        return stored, events.append_many(session, chat_id, items)

    def _note_reply(self, session: Session, chat: Chat, post: Post, parent: Any) -> None:
        """Tell observers of a reply to a post made through a Hashroom account; ``parent``
        is the post replied to (anything with ``account_id`` and ``author_handle``)."""
        if post.in_reply_to_id is None or post.pending or parent is None:
            return
        if parent.account_id is None or parent.account_id == post.account_id:
            return
        if post.author_handle.casefold() == parent.author_handle.casefold():
            return  # answering yourself is not news
        self._note(session, chat, "reply", post, account_id=parent.account_id)

    @staticmethod
    def _find_deleted(
        session: Session, chat_id: int, source_id: int | None, change: Delete
    ) -> Post | None:
        if change.remote_id:
            return (
                session.execute(
                    select(Post).where(Post.chat_id == chat_id, Post.remote_id == change.remote_id)  # type: ignore[arg-type]
                )
                .scalars()
                .first()
            )
        if change.local_id and source_id is not None:
            post_id = session.execute(
                select(PostAlias.post_id).where(
                    PostAlias.source_id == source_id,  # type: ignore[arg-type]
                    PostAlias.local_id == change.local_id,  # type: ignore[arg-type]
                )
            ).scalar()
            return session.get(Post, post_id) if post_id is not None else None
        return None

    async def store_batch(self, source_id: int, batch: Batch) -> int:
        """Store an ingester's batch and its cursor in one transaction. Returns posts stored."""

        def fn(session: Session) -> tuple[int, list[Frame]]:
            source = session.get(Source, source_id)
            if source is None:
                raise NotFound(f"source {source_id} is gone")
            chat = session.get(Chat, source.chat_id)
            assert chat is not None
            stored, frames = self._apply_batch(session, chat, source_id, batch.changes)
            if batch.cursor is not None:
                source.cursor = batch.cursor
                session.add(source)
            return len(stored), frames

        return await self.write(fn)

    async def add_notice(self, chat_id: int, message: str) -> None:
        """Tell a room's readers something (e.g. that history is unavailable)."""

        def fn(session: Session) -> tuple[None, list[Frame]]:
            return None, [events.append(session, chat_id, "notice", {"text": message[:500]})]

        await self.write(fn)

    async def add_native_post(
        self,
        slug: str,
        body: str,
        author: str,
        in_reply_to: int | None = None,
        *,
        vouched: bool = False,
    ) -> dict[str, Any]:
        """Post in a native room as ``author``; the reply tag is appended unless the text
        already carries one of the chat's tags.
        ``vouched``: the poster is a moderator or holds a host link (Host badge, and the
        hold-for-review rules do not apply)."""
        return await self._native(slug, body, author, in_reply_to, pin=False, vouched=vouched)

    async def rotate_moderator_key(self, slug: str) -> tuple[Chat, str]:
        """Give chat ``slug`` a new moderator key (returned, shown once). The old key, every
        moderator cookie and every host link made from it stop working at once."""
        key = new_moderator_key()

        def fn(session: Session) -> tuple[Chat, list[Frame]]:
            chat = self.chat_by_slug(session, slug)
            chat.moderator_key_hash = hash_key(key)
            session.add(chat)
            session.flush()
            return chat, []

        return await self.write(fn), key

    async def ask_question(
        self, slug: str, body: str, author: str, *, actor: str | None = None
    ) -> dict[str, Any]:
        """Post a host question and pin it, in one transaction (logged as ``actor``'s)."""
        return await self._native(slug, body, author, None, pin=True, actor=actor)

    async def _native(
        self,
        slug: str,
        body: str,
        author: str,
        in_reply_to: int | None,
        *,
        pin: bool,
        actor: str | None = None,
        vouched: bool = False,
    ) -> dict[str, Any]:
        author = text.clean_name(author)
        if not author:
            raise Invalid("author: give a display name")
        if len(author) > 60:
            raise Invalid("author: keep the display name to 60 characters or fewer")
        if not body.strip():
            raise Invalid("text: the post is empty")

        def fn(session: Session) -> tuple[dict[str, Any], list[Frame]]:
            chat = self.chat_by_slug(session, slug)
            if chat.network not in ("native", "demo") and not pin:
                raise Invalid(
                    "this room follows another network: connect an account to post "
                    "(POST /api/accounts), then post with account_id"
                )
            final = body.strip()
            if not text.contains_any_hashtag(final, chat_hashtags(chat)):
                final = text.append_hashtag(final, chat.hashtag)
            length = text.count_graphemes(final)
            limit = self.settings.native_max_graphemes
            if length > limit:
                raise Invalid(
                    f"text: {length} characters with the hashtag, the limit is {limit}; "
                    f"shorten it by {length - limit}"
                )
            parent: Post | None = None
            if in_reply_to is not None:
                parent = self._post_in_chat(session, chat.id, in_reply_to)  # type: ignore[arg-type]
            handle = _native_handle(author)
            rp = RemotePost(
                network="native",
                remote_id=f"native:{chat.id}:{new_epoch()}",
                author=Author(name=author, handle=handle),
                created_at=datetime.now(UTC),
                text=final,
                in_reply_to=parent.remote_id if parent else None,
                reply_to_handle=parent.author_handle if parent else None,
                extra={"is_host": True} if pin or vouched else {},
            )
            stored, frames = self._apply_batch(session, chat, None, [Upsert(rp)])
            post = stored[0]
            if pin:
                pin_row = Pin(chat_id=chat.id, post_id=post.id, is_question=True)  # type: ignore[arg-type]
                session.add(pin_row)
                session.flush()
                frames.append(self._pin_event(session, pin_row, post))
                self._log(session, actor, "question", post)
                self._note(session, chat, "pinned", post)
            hosts = self.hosts(session, chat.id)  # type: ignore[arg-type]
            return post_json(post, is_host=self.is_host(post, hosts)), frames

        return await self.write(fn)

    # -- moderation ------------------------------------------------------------------------

    @staticmethod
    def _log(
        session: Session, actor: str | None, action: str, post: Post, **data: Any
    ) -> ModAction | None:
        """Log a moderator's change to ``post`` in its transaction; nothing without an actor
        (undo applies inverses unlogged)."""
        if actor is None:
            return None
        return record(
            session, post.chat_id, actor, action, describe_post(post), {"post_id": post.id, **data}
        )

    def _pin_event(self, session: Session, pin: Pin, post: Post) -> Frame:
        hosts = self.hosts(session, pin.chat_id)
        pdata = post_json(post, is_host=self.is_host(post, hosts))
        payload = pin_json(pin)
        return events.append(
            session,
            pin.chat_id,
            "pin",
            {
                "pin": payload,
                "post": pdata,
                "html": self.presenter.pin_html(payload, pdata),
                "post_html": self.presenter.post_html(pdata),
            },
            post_id=post.id,
        )

    async def pin(
        self, slug: str, post_id: int, *, question: bool | None = None, actor: str | None = None
    ) -> dict[str, Any]:
        """Pin a post (idempotent: pinning a pinned post changes nothing)."""

        def fn(session: Session) -> tuple[dict[str, Any], list[Frame]]:
            chat = self.chat_by_slug(session, slug)
            post = self._post_in_chat(session, chat.id, post_id)  # type: ignore[arg-type]
            current = self._current_pin(session, chat.id, post_id)  # type: ignore[arg-type]
            if current is not None:
                return pin_json(current), []
            is_q = question if question is not None else post.question_number is not None
            pin = Pin(chat_id=chat.id, post_id=post_id, is_question=is_q)  # type: ignore[arg-type]
            session.add(pin)
            session.flush()
            self._log(session, actor, "pin", post, question=is_q)
            if is_q:
                self._note(session, chat, "pinned", post)
            return pin_json(pin), [self._pin_event(session, pin, post)]

        return await self.write(fn)

    @staticmethod
    def _current_pin(session: Session, chat_id: int, post_id: int) -> Pin | None:
        return (
            session.execute(
                select(Pin).where(
                    Pin.chat_id == chat_id,  # type: ignore[arg-type]
                    Pin.post_id == post_id,  # type: ignore[arg-type]
                    Pin.unpinned_at.is_(None),  # type: ignore[union-attr]
                )
            )
            .scalars()
            .first()
        )

    async def unpin(self, slug: str, post_id: int, *, actor: str | None = None) -> bool:
        """Unpin; False when the post was not pinned. The pin row stays as history."""

        def fn(session: Session) -> tuple[bool, list[Frame]]:
            chat = self.chat_by_slug(session, slug)
            pin = self._current_pin(session, chat.id, post_id)  # type: ignore[arg-type]
            if pin is None:
                return False, []
            pin.unpinned_at = utcnow()
            session.add(pin)
            post = session.get(Post, post_id)
            if post is not None:
                self._log(session, actor, "unpin", post, question=pin.is_question)
            frame = events.append(
                session,
                chat.id,  # type: ignore[arg-type]
                "unpin",
                {"pin": pin_json(pin), "post_id": post_id},
                post_id=post_id,
            )
            return True, [frame]

        return await self.write(fn)

    async def set_hidden(
        self, slug: str, post_id: int, hidden: bool, *, actor: str | None = None
    ) -> bool:
        """Hide (or show again) a post room-wide. False when nothing changed. A post held
        for review stays held when shown again here."""

        def fn(session: Session) -> tuple[bool, list[Frame]]:
            chat = self.chat_by_slug(session, slug)
            post = self._post_in_chat(session, chat.id, post_id)  # type: ignore[arg-type]
            if post.hidden == hidden:
                return False, []
            post.hidden = hidden
            # A moderator's own decision replaces a block's: unblocking must not touch it.
            post.extra = {k: v for k, v in post.extra.items() if k != HIDDEN_BY_BLOCK}
            session.add(post)
            session.flush()
            self._log(session, actor, "hide" if hidden else "unhide", post)
            if hidden:
                frame = events.append(
                    session, chat.id, "hide", {"post_id": post_id}, post_id=post_id
                )  # type: ignore[arg-type]
            elif post.held:
                return True, []
            else:
                frame = self._post_event(session, "unhide", post, self.hosts(session, chat.id))  # type: ignore[arg-type]
            return True, [frame]

        return await self.write(fn)

    # -- reads ------------------------------------------------------------------------------

    async def snapshot(self, slug_or_id: str | int, limit: int | None = None) -> Snapshot:
        """The room's latest visible posts and pins, with the offset they reflect.

        The head offset is read *before* the rows, so the snapshot may include a change newer
        than its offset; clients apply events idempotently, so that change arriving again
        live is harmless, whereas reading it the other way round could lose one.
        """
        n = limit or self.settings.snapshot_posts

        def fn(session: Session) -> Snapshot:
            if isinstance(slug_or_id, int):
                chat = session.get(Chat, slug_or_id)
                if chat is None:
                    raise NotFound("chat is gone")
            else:
                chat = self.chat_by_slug(session, slug_or_id)
            offset, epoch = events.head(session, chat.id)  # type: ignore[arg-type]
            hosts = self.hosts(session, chat.id)  # type: ignore[arg-type]
            posts = (
                session.execute(
                    select(Post)
                    .where(Post.chat_id == chat.id, *policy.visible())  # type: ignore[arg-type]
                    .order_by(Post.id.desc())  # type: ignore[union-attr]
                    .limit(n)
                )
                .scalars()
                .all()
            )
            pins, past = self._pins(session, chat.id, hosts)  # type: ignore[arg-type]
            return Snapshot(
                offset=offset,
                epoch=epoch,
                posts=[self.present(p, hosts) for p in posts],
                pins=pins,
                past_questions=past,
            )

        return await self.read(fn)

    async def posts_before(self, slug: str, before: int | None, limit: int) -> list[dict[str, Any]]:
        """Visible posts older than post id ``before`` (or the newest), newest first."""

        def fn(session: Session) -> list[dict[str, Any]]:
            chat = self.chat_by_slug(session, slug)
            hosts = self.hosts(session, chat.id)  # type: ignore[arg-type]
            query = select(Post).where(Post.chat_id == chat.id, *policy.visible())  # type: ignore[arg-type]
            if before is not None:
                query = query.where(Post.id < before)  # type: ignore[arg-type, operator]
            rows = session.execute(query.order_by(Post.id.desc()).limit(limit)).scalars().all()  # type: ignore[union-attr]
            return [self.present(p, hosts) for p in rows]

        return await self.read(fn)

    def _pins(
        self, session: Session, chat_id: int, hosts: set[str]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        rows = session.execute(
            select(Pin, Post)
            .join(Post, Post.id == Pin.post_id)  # type: ignore[arg-type]
            .where(Pin.chat_id == chat_id, Post.deleted.is_(False))  # type: ignore[arg-type, attr-defined]
            .order_by(Pin.pinned_at)  # type: ignore[arg-type]
        ).all()
        current, past = [], []
        for pin, post in rows:
            pdata = post_json(post, is_host=self.is_host(post, hosts))
            payload = pin_json(pin)
            item = {"pin": payload, "post": pdata, "html": self.presenter.pin_html(payload, pdata)}
            if pin.unpinned_at is None and not post.hidden:
                current.append(item)
            if pin.is_question:
                past.append(item)
        return current, past

    async def events_after(self, slug: str, after: int, limit: int) -> tuple[Chat, list[Frame]]:
        def fn(session: Session) -> tuple[Chat, list[Frame]]:
            chat = self.chat_by_slug(session, slug)
            return chat, events.read_after(session, chat.id, after, limit)  # type: ignore[arg-type]

        return await self.read(fn)

    async def get_chat(self, slug: str) -> Chat:
        return await self.read(lambda s: self.chat_by_slug(s, slug))

    async def list_chats(self) -> list[dict[str, Any]]:
        def fn(session: Session) -> list[dict[str, Any]]:
            stats = (
                select(
                    Post.chat_id,
                    func.count(Post.id).label("n"),
                    func.max(Post.created_at).label("last"),
                )
                .where(*policy.visible())
                .group_by(Post.chat_id)
                .subquery()
            )
            rows = session.execute(
                select(Chat, stats.c.n, stats.c.last)
                .outerjoin(stats, stats.c.chat_id == Chat.id)
                .order_by(Chat.created_at.desc())  # type: ignore[union-attr]
            ).all()
            return [chat_json(c, n or 0, last) for c, n, last in rows]

        return await self.read(fn)

    async def source_cursor(self, source_id: int) -> str | None:
        def fn(session: Session) -> str | None:
            source = session.get(Source, source_id)
            if source is None:
                raise NotFound(f"source {source_id} is gone")
            return source.cursor

        return await self.read(fn)

    async def sources(self) -> list[tuple[Source, Chat]]:
        def fn(session: Session) -> list[tuple[Source, Chat]]:
            rows = session.execute(
                select(Source, Chat)
                .join(Chat, Chat.id == Source.chat_id)  # type: ignore[arg-type]
                .where(Source.enabled.is_(True))  # type: ignore[attr-defined]
            ).all()
            return [(s, c) for s, c in rows]

        return await self.read(fn)

    async def source_networks(self, chat_id: int) -> list[str]:
        """The networks a chat follows (each once, in the order its sources were added)."""

        def fn(session: Session) -> list[str]:
            rows = session.execute(
                select(Source.network)
                .where(Source.chat_id == chat_id)  # type: ignore[arg-type]
                .order_by(Source.id)  # type: ignore[arg-type]
            ).scalars()
            return list(dict.fromkeys(rows))

        return await self.read(fn)


def chat_json(
    chat: Chat, post_count: int = 0, last_post_at: datetime | None = None
) -> dict[str, Any]:
    from .present import iso

    schedule = None
    if chat.schedule_start:
        schedule = {
            "start": chat.schedule_start,
            "timezone": chat.schedule_timezone,
            "duration_minutes": chat.schedule_duration_minutes,
            "rrule": chat.schedule_rrule,
        }
    return {
        "slug": chat.slug,
        "hashtag": chat.hashtag,
        "hashtags": chat_hashtags(chat),
        "title": chat.title,
        "description": chat.description,
        "network": chat.network,
        "epoch": chat.epoch,
        "offset": chat.last_offset,
        "created_at": iso(chat.created_at),
        "post_count": post_count,
        "last_post_at": iso(last_post_at),
        "schedule": schedule,
    }


def chat_hashtags(chat: Chat | Mapping[str, Any]) -> list[str]:
    """Every tag ``chat`` follows (a row or its ``chat_json``), reply tag first. A row
    written before the list existed follows its one tag."""
    if isinstance(chat, Chat):
        tags, tag = chat.hashtags, chat.hashtag
    else:
        tags, tag = chat.get("hashtags"), chat.get("hashtag")
    return list(tags) if tags else [tag] if tag else []


def _lost_race(exc: IntegrityError) -> bool:
    """True when ``exc`` is another process storing the same remote post first."""
    message = str(exc.orig)
    return "uq_post_remote" in message or (
        "UNIQUE constraint failed: post.chat_id, post.network, post.remote_id" in message
    )


def _better_author(fresh: Post, existing: Post) -> bool:
    """True when a later delivery names the author better than the stored copy.

    Networks that deliver before a profile is known (a Bluesky firehose gives only a DID)
    send the post again once it is. Other differences — e.g. each Mastodon instance proxies
    avatars through its own media cache — must not cause updates back and forth.
    """

    def placeholder(p: Post) -> bool:
        return p.author_handle.startswith(("did:", "@did:")) or p.author_name in (
            p.author_handle,
            p.author_remote_id,
        )

    if placeholder(existing) and not placeholder(fresh):
        return True
    return bool(fresh.author_avatar and not existing.author_avatar)


def _edited_later(fresh: Post, existing: Post) -> bool:
    if fresh.edited_at is None:
        return False
    if existing.edited_at is None:
        return True
    a, b = fresh.edited_at, existing.edited_at
    if a.tzinfo is None:
        a = a.replace(tzinfo=UTC)
    if b.tzinfo is None:
        b = b.replace(tzinfo=UTC)
    return a > b


def _http_only(url: str | None) -> str | None:
    """Keep only http(s) URLs from remote data (no javascript:, data:, …)."""
    if url and url.lower().startswith(("https://", "http://")) and len(url) <= 1000:
        return url
    return None


def _clean_quote(quote: dict[str, Any] | None) -> dict[str, Any] | None:
    if not quote:
        return None
    return {
        "url": _http_only(quote.get("url")),
        "author": str(quote.get("author") or "")[:300],
        "text": str(quote.get("text") or "")[:3000],
    }


def _native_handle(author: str) -> str:
    return "@" + (re.sub(r"[^\w]+", "", author.casefold())[:30] or "guest")
