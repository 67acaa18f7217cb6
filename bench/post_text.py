"""The text of a benchmark post: a sequence number a reader can find again, padded to size.

Every published post carries its own sequence number, so a reader can tell a lost post from a
duplicated one without trusting the server's offsets (those are what is being checked).
"""

from __future__ import annotations

import re

TEXT_CHARS = 300
"""Length of a post's text: a typical chat answer, a little over two lines of a column."""

_FILLER = (
    "thanks everyone for joining tonight, my take on this one is that small teams ship "
    "better when the feedback loop is short and the chat keeps moving, so keep the answers "
    "coming and tag them so the room sees them all "
)
SEQ_MARK = re.compile(r"bench post (\d+) ")
"""Finds the sequence mark in a text, or in a whole encoded frame."""


def post_text(seq: int, chars: int = TEXT_CHARS) -> str:
    """Return a plain one-line text of exactly ``chars`` characters that carries ``seq``.

    It starts with neither "Q" nor "A" followed by a digit, so no question/answer numbering
    applies, and it ends with the room's tag like a real chat reply.
    """
    head = f"bench post {seq:06d} "
    tail = " #benchtag"
    room = max(chars - len(head) - len(tail), 0)
    body = (_FILLER * (room // len(_FILLER) + 1))[:room].rstrip()
    return (head + body).ljust(chars - len(tail), ".") + tail


def parse_seq(text: str) -> int | None:
    """Return the sequence number written by :func:`post_text`, or None if there is none."""
    match = SEQ_MARK.search(text)
    return int(match.group(1)) if match else None
