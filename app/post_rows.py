"""Posts written a batch at a time: unsaved ``Post`` objects, the batch's lookups, bulk inserts.

An ingester's batch is stored in one transaction (app/posts.py decides what each change
does). Doing it post by post cost a dedupe SELECT, a parent SELECT, an alias SELECT and an
ORM flush each; here each of those is one statement per batch: ``… IN (…)`` lookups, and
new rows inserted together with their ids returned in order (SQLAlchemy's
"insertmanyvalues"). New posts are built as the ORM builds a loaded row — without running
the model's constructor, which cost more than everything else done to a post — so they are
real :class:`~app.models.Post` objects that are not in the session.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import insert, inspect, select
from sqlalchemy.orm import instrumentation
from sqlmodel import Session

from .models import Post, PostAlias

# Bound parameters per IN list: far below every driver's limit (SQLite's is 32,766).
IN_CHUNK = 500

_POST = Post.__table__  # type: ignore[attr-defined]
_ALIAS = PostAlias.__table__  # type: ignore[attr-defined]
POST_COLUMNS = tuple(c.name for c in _POST.columns if c.name != "id")
_manager = instrumentation.manager_of_class(Post)


def new_post(**values: Any) -> Post:
    """An unsaved post holding ``values``, which must name every column but ``id``."""
    missing = set(POST_COLUMNS) - values.keys()
    if missing:
        raise TypeError(f"new_post needs {sorted(missing)}")
    post = _manager.new_instance()
    post.__dict__.update(values, id=None)
    return post


def is_unsaved(post: Post) -> bool:
    """True for a post from :func:`new_post` (inserted or not): the session does not track
    it, so later changes must go through a loaded copy."""
    return bool(inspect(post).transient)


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(values), IN_CHUNK):
        yield values[i : i + IN_CHUNK]


def stored_posts(
    session: Session, chat_id: int, remote_ids: Iterable[str]
) -> dict[tuple[str, str], Post]:
    """The chat's stored posts with these remote ids, by ``(network, remote_id)`` (the dedupe
    key), loaded in the session so changes to them are saved."""
    found: dict[tuple[str, str], Post] = {}
    for chunk in _chunks(sorted(set(remote_ids))):
        rows = session.execute(
            select(Post).where(Post.chat_id == chat_id, Post.remote_id.in_(chunk))  # type: ignore[arg-type, attr-defined]
        ).scalars()
        for post in rows:
            found[(post.network, post.remote_id)] = post
    return found


def reply_parents(session: Session, chat_id: int, remote_ids: Iterable[str]) -> dict[str, Any]:
    """The chat's posts with these remote ids (of any network; the first stored when several),
    by remote id: rows with ``id``, ``author_handle``, ``question_number``, ``account_id``."""
    found: dict[str, Any] = {}
    for chunk in _chunks(sorted(set(remote_ids))):
        rows = session.execute(
            select(
                Post.id, Post.remote_id, Post.author_handle, Post.question_number, Post.account_id
            )  # type: ignore[call-overload]
            .where(Post.chat_id == chat_id, Post.remote_id.in_(chunk))  # type: ignore[arg-type, attr-defined]
            .order_by(Post.id)  # type: ignore[arg-type]
        ).all()
        for row in rows:
            found.setdefault(row.remote_id, row)
    return found


def known_aliases(session: Session, source_id: int, local_ids: Iterable[str]) -> set[str]:
    """Which of ``local_ids`` the source already has an alias for."""
    found: set[str] = set()
    for chunk in _chunks(sorted(set(local_ids))):
        found.update(
            session.execute(
                select(PostAlias.local_id).where(
                    PostAlias.source_id == source_id,  # type: ignore[arg-type]
                    PostAlias.local_id.in_(chunk),  # type: ignore[attr-defined]
                )
            ).scalars()
        )
    return found


def insert_posts(session: Session, posts: list[Post]) -> None:
    """Insert unsaved posts in one statement, in order; each gets its ``id``."""
    if not posts:
        return
    rows = [{c: post.__dict__[c] for c in POST_COLUMNS} for post in posts]
    ids = session.execute(
        insert(_POST).returning(_POST.c.id, sort_by_parameter_order=True), rows
    ).scalars()
    for post, post_id in zip(posts, ids, strict=True):
        post.__dict__["id"] = post_id


def insert_aliases(session: Session, source_id: int, aliases: list[tuple[str, Post]]) -> None:
    """Insert ``(local_id, post)`` aliases of ``source_id``; the posts must have ids."""
    if aliases:
        session.execute(
            insert(_ALIAS),
            [{"source_id": source_id, "local_id": lid, "post_id": p.id} for lid, p in aliases],
        )
