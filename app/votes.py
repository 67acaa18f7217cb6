"""Audience questions, ranked: readers upvote questions, moderators mark them answered.

A question is a shown post that opens with a question marker ("Q3: …") or that a moderator
pinned as a question (the "Ask" form does both). Votes and the answered mark are rows
(:class:`~app.models.QuestionVote`, :class:`~app.models.AnsweredQuestion`) written in the
same transaction as their event, so every reader sees them live and they survive restarts:

* ``vote`` — ``{"post_id", "votes"}``: the question's new vote count;
* ``answered`` — ``{"post_id", "answered"}``: marked (true) or unmarked (false).

Both changes are idempotent: voting twice, un-voting a question never voted for, marking an
answered question again change nothing and append no event.

Who votes is a *voter key*: a keyed hash of the signed-in network account (one vote per
account, whichever browser) or, for anonymous readers, of a random voter id kept in the
session cookie (one vote per browser). The raw ids never reach the database.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlmodel import Session

from . import events
from .events import Frame
from .grants import account_allowed, session_account_ids
from .models import Account, AnsweredQuestion, Pin, Post, QuestionVote
from .policy import shown, visible
from .rooms import Invalid, NotFound, Rooms

# A session names at most this many accounts (app/grants.py keeps ten); read no more.
MAX_SESSION_ACCOUNTS = 10


class NotAQuestion(Invalid):
    """The post exists but is not a question one can vote on or mark answered."""


@dataclass(frozen=True, slots=True)
class Tally:
    """A question's votes and answered state."""

    votes: int = 0
    answered: bool = False


# -- who votes --------------------------------------------------------------------------------


def _hash(secret_key: str, identity: str) -> str:
    return hmac.new(secret_key.encode(), f"voter:{identity}".encode(), hashlib.sha256).hexdigest()


def browser_voter(session: dict[str, Any], secret_key: str) -> str:
    """The voter key of this browser session, creating its voter id on first use."""
    voter_id = session.get("voter")
    if not isinstance(voter_id, str) or not voter_id:
        voter_id = secrets.token_urlsafe(18)
        session["voter"] = voter_id
    return _hash(secret_key, f"browser:{voter_id}")


def account_voter(secret_key: str, account: Account) -> str:
    """The voter key of a network account: the same from every browser it signs in on."""
    who = account.remote_id or f"{account.instance}|{account.handle}|{account.id}"
    return _hash(secret_key, f"account:{account.network}:{who}")


def session_voter(session: dict[str, Any], secret_key: str, accounts: Iterable[Account]) -> str:
    """Who votes for this session: its first signed-in account (lowest id) whose grant is
    live, else the browser itself. ``accounts`` are the rows the session names."""
    live = sorted(
        (a for a in accounts if account_allowed(session, secret_key, a)),
        key=lambda a: a.id or 0,
    )
    if live:
        return account_voter(secret_key, live[0])
    return browser_voter(session, secret_key)


def session_accounts(session: Session, ids: list[int]) -> list[Account]:
    """The account rows a session names (unchecked: pass them to :func:`session_voter`)."""
    ids = ids[:MAX_SESSION_ACCOUNTS]
    if not ids:
        return []
    return list(session.execute(select(Account).where(Account.id.in_(ids))).scalars())  # type: ignore[union-attr]


async def voter_for(
    rooms: Rooms, session: dict[str, Any], secret_key: str, *, create: bool = True
) -> str | None:
    """:func:`session_voter` for a request's session, reading the accounts it names. With
    ``create=False`` a session that never voted (no account, no voter id) gives None."""
    ids = session_account_ids(session)
    accounts = await rooms.read(lambda s: session_accounts(s, ids)) if ids else []
    if not create and not accounts and not session.get("voter"):
        return None
    return session_voter(session, secret_key, accounts)


# -- reads ------------------------------------------------------------------------------------


def question_ids(session: Session, chat_id: int) -> set[int]:
    """Ids of the chat's posts pinned as questions, now or before."""
    rows = session.execute(
        select(Pin.post_id).where(Pin.chat_id == chat_id, Pin.is_question.is_(True))  # type: ignore[arg-type, attr-defined]
    ).scalars()
    return set(rows)


def tallies(session: Session, chat_id: int) -> dict[int, Tally]:
    """Every question of the chat that has votes or is answered: post id -> :class:`Tally`."""
    counts = dict(
        session.execute(
            select(QuestionVote.post_id, func.count())
            .where(QuestionVote.chat_id == chat_id)  # type: ignore[arg-type]
            .group_by(QuestionVote.post_id)
        ).all()
    )
    answered = set(
        session.execute(
            select(AnsweredQuestion.post_id).where(AnsweredQuestion.chat_id == chat_id)  # type: ignore[arg-type]
        ).scalars()
    )
    return {pid: Tally(counts.get(pid, 0), pid in answered) for pid in counts.keys() | answered}


def voted_by(session: Session, chat_id: int, voter: str) -> set[int]:
    """The questions of the chat ``voter`` has voted for."""
    rows = session.execute(
        select(QuestionVote.post_id).where(
            QuestionVote.chat_id == chat_id,  # type: ignore[arg-type]
            QuestionVote.voter == voter,  # type: ignore[arg-type]
        )
    ).scalars()
    return set(rows)


def _count(session: Session, post_id: int) -> int:
    return int(
        session.execute(
            select(func.count()).select_from(QuestionVote).where(QuestionVote.post_id == post_id)  # type: ignore[arg-type]
        ).scalar_one()
    )


# -- writes -----------------------------------------------------------------------------------


def _question(session: Session, slug: str, post_id: int) -> tuple[int, Post]:
    """The chat's id and the shown question ``post_id``; NotFound / NotAQuestion otherwise."""
    chat = Rooms.chat_by_slug(session, slug)
    post = session.get(Post, post_id)
    if post is None or post.chat_id != chat.id or not shown(post):
        raise NotFound(f"no post {post_id} in this chat")
    if post.question_number is None and post_id not in question_ids(session, chat.id):  # type: ignore[arg-type]
        raise NotAQuestion(
            f"post {post_id} is not a question: only questions (posts opening with Q1:, Q2: … "
            "or pinned as a question) take votes"
        )
    return chat.id, post  # type: ignore[return-value]


async def set_vote(rooms: Rooms, slug: str, post_id: int, voter: str, on: bool) -> dict[str, Any]:
    """Add (``on``) or withdraw ``voter``'s vote on question ``post_id``; idempotent.
    Returns ``{"post_id", "votes", "voted"}`` as committed."""

    def fn(session: Session) -> tuple[dict[str, Any], list[Frame]]:
        chat_id, _post = _question(session, slug, post_id)
        has = post_id in voted_by(session, chat_id, voter)
        frames: list[Frame] = []
        if has != on:
            if on:
                session.add(QuestionVote(chat_id=chat_id, post_id=post_id, voter=voter))
            else:
                session.execute(
                    delete(QuestionVote).where(
                        QuestionVote.post_id == post_id,  # type: ignore[arg-type]
                        QuestionVote.voter == voter,  # type: ignore[arg-type]
                    )
                )
            session.flush()
        votes = _count(session, post_id)
        if has != on:
            payload = {"post_id": post_id, "votes": votes}
            frames.append(events.append(session, chat_id, "vote", payload, post_id=post_id))
        return {"post_id": post_id, "votes": votes, "voted": on}, frames

    return await rooms.write(fn)


async def set_answered(rooms: Rooms, slug: str, post_id: int, answered: bool) -> dict[str, Any]:
    """Mark question ``post_id`` answered (or open again); idempotent.
    Returns ``{"post_id", "answered", "votes"}``."""

    def fn(session: Session) -> tuple[dict[str, Any], list[Frame]]:
        chat_id, _post = _question(session, slug, post_id)
        row = (
            session.execute(select(AnsweredQuestion).where(AnsweredQuestion.post_id == post_id))  # type: ignore[arg-type]
            .scalars()
            .first()
        )
        frames: list[Frame] = []
        if (row is not None) != answered:
            if answered:
                session.add(AnsweredQuestion(chat_id=chat_id, post_id=post_id))
            else:
                session.delete(row)
            session.flush()
            payload = {"post_id": post_id, "answered": answered}
            frames.append(events.append(session, chat_id, "answered", payload, post_id=post_id))
        result = {"post_id": post_id, "answered": answered, "votes": _count(session, post_id)}
        return result, frames

    return await rooms.write(fn)


def top_open(session: Session, chat_id: int, limit: int) -> list[tuple[Post, int]]:
    """The chat's ``limit`` most voted open questions that readers see, with their votes:
    most votes first, then the earliest asked (the order of ``sort=votes&state=open``)."""
    pinned = question_ids(session, chat_id)
    clauses = (
        Post.chat_id == chat_id,  # type: ignore[arg-type]
        *visible(),
        Post.reposted_by_handle.is_(None),  # type: ignore[union-attr]
    )
    rows = session.execute(
        select(Post).where(
            *clauses,
            Post.question_number.is_not(None) | Post.id.in_(pinned),  # type: ignore[union-attr]
        )
    ).scalars()
    counts = tallies(session, chat_id)
    ranked = [
        (post, counts.get(post.id, Tally()).votes)  # type: ignore[arg-type]
        for post in rows
        if not counts.get(post.id, Tally()).answered  # type: ignore[arg-type]
    ]
    ranked.sort(key=lambda item: (-item[1], item[0].created_at, item[0].id))
    return ranked[:limit]
