"""The log of what moderators did: one :class:`~app.models.ModAction` row per change, written
in the change's own transaction, and how each row reads in the moderators' log.

:data:`ACTION_VERBS` is also the list of actions that can be undone (see
:meth:`app.moderation.Moderation.undo`).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from .models import ModAction, Post
from .policy import ANY_NETWORK, person_key
from .present import iso
from .text import clean_name

ACTION_VERBS = {
    "pin": "Pinned",
    "unpin": "Unpinned",
    "hide": "Hid",
    "unhide": "Showed again",
    "question": "Asked",
    "block": "Blocked",
    "unblock": "Unblocked",
    "rule_add": "Added the rule",
    "rule_remove": "Removed the rule",
    "people": "Changed hosts and guests:",
    "approve": "Approved",
    "reject": "Rejected",
    "schedule": "Changed the schedule:",
    "hashtags": "Changed the hashtags to",
}


def record(
    session: Session, chat_id: int, actor: str, action: str, target: str, data: dict[str, Any]
) -> ModAction:
    """Log a moderator's change in the caller's transaction."""
    row = ModAction(
        chat_id=chat_id, actor=actor[:200], action=action, target=target[:500], data=data
    )
    session.add(row)
    return row


def describe_post(post: Post) -> str:
    """A short label for the log: 'post 12 by @ann: “Q1: what…”'."""
    words = " ".join(post.text.split())
    quote = words if len(words) <= 60 else words[:59] + "…"
    return f"post {post.id} by @{person_key(ANY_NETWORK, post.author_handle)}: “{quote}”"


def describe_person(network: str, handle: str) -> str:
    return f"@{handle}" + ("" if network == ANY_NETWORK else f" on {network}")


def actor_label(how: str, name: str | None = None) -> str:
    """Who did it, for the log: "moderator key" / "moderator link", and a name if given."""
    base = "moderator key" if how == "key" else "moderator link"
    name = clean_name(name or "")[:60]
    return f"{base} ({name})" if name else base


def action_json(row: ModAction) -> dict[str, Any]:
    verb = ACTION_VERBS.get(row.action, row.action)
    return {
        "id": row.id,
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "summary": f"{verb} {row.target}".strip(),
        "data": {k: v for k, v in row.data.items() if k != "undone_by"},
        "created_at": iso(row.created_at),
        "undone_at": iso(row.undone_at),
        "undone_by": row.data.get("undone_by"),
        "undoable": row.undone_at is None and row.action in ACTION_VERBS,
    }
