"""Storing posts: an ingester's batch, a post made through an account, a room notice.

:meth:`PostStore.apply_batch` decides what each change of a batch does — a new post (screened
by :mod:`app.policy`), an edit, a pending copy reconciled, a delete — and appends the events
readers get; :mod:`app.post_rows` makes the batch's lookups and inserts together. Remote data
is bounded and cleaned here before it is stored (sizes, sanitized HTML, http(s) links only).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from . import events, policy, post_rows, text
from .config import Settings
from .errors import NotFound
from .events import Frame
from .models import Chat, Post, PostAlias, Source, utcnow
from .networks.base import Batch, Delete, RemotePost, Upsert
from .policy import Screen
from .present import Presenter, post_json
from .qa import answer_number, question_number
from .writer import Writer, note

# Mastodon allows 4 attachments and Bluesky 4 images; alt texts up to 1500 characters.
MAX_MEDIA = 16
MAX_ALT = 1500


class PostStore(Writer):
    """Posts written through the writer, and the helpers writes use to present them."""

    settings: Settings
    presenter: Presenter

    # -- helpers used inside transactions ------------------------------------------------

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
    def post_in_chat(session: Session, chat_id: int, post_id: int) -> Post:
        """The post ``post_id`` of the chat; NotFound when it is another chat's or deleted."""
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
        """The post as readers get it: its JSON and its rendered ``_post.html``."""
        data = post_json(post, is_host=self.is_host(post, hosts))
        return {"post": data, "html": self.presenter.post_html(data)}

    def post_event(self, session: Session, type_: str, post: Post, hosts: set[str]) -> Frame:
        """Append a ``type_`` event (``post``, ``update``, ``unhide``) carrying the post as
        readers see it, in the caller's transaction; returns its frame."""
        shown = self.present(post, hosts)
        return events.append(session, post.chat_id, type_, shown, post_id=post.id)

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

    def apply_batch(
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
        note(session, chat, "reply", post, account_id=parent.account_id)

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
            stored, frames = self.apply_batch(session, chat, source_id, batch.changes)
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
