"""Host questions and participant answers in a hashtag chat: "Q1: …" / "A1: …".

Recognition looks only at the *start* of a post, after any leading @mentions, #hashtags,
whitespace, emoji and opening punctuation ("📣 Q2: …", "@host A2 …", "#chat Q3 - …"). Numbers
run from 0 to 99 ("Q0" is the customary introductions question).

Edge choices, each pinned by a row of the table in ``tests/test_qa.py``:

* The compact forms ``Q1`` / ``A1`` may be followed by a delimiter (``:`` ``.`` ``)`` ``]``
  ``/`` ``,`` or a dash followed by a space) or by a space and text that does not start with
  a digit, so ``Q1 2024 results`` and ``A1 10 minutes`` are not questions/answers, while
  ``A1 steak sauce`` *is* answer 1 (that ambiguity is accepted).
* ``:`` ``.`` and ``/`` followed directly by a digit are times, decimals and fractions
  (``A 2:30 start``, ``A 2.5 hour drive``, ``A 5/10 night``), never delimiters.
* A dash only delimits when a space (or the end) follows it: ``A1 - yes`` is an answer,
  ``A 10-minute walk`` and ``Q1-Q2 roadmap`` are not.
* Because "A" is an English word, the spaced form ``A 1`` needs a delimiter (``:`` ``.``
  ``)`` ``/`` or a dash and a space); so do the spelled-out forms ``Question 3:``,
  ``Answer 1:`` and ``Ans 1:``. ``Q 1 text`` needs none: "Q" is not a word.
* A letter after the number marks a multi-part answer (``A1a:``, ``A1b)``) and counts for
  the number alone; it needs a delimiter, so ``A1c was 6.8`` (a blood test, common in
  health chats) and ``Q10k`` are not recognised.
* The whole text may be just the marker (``Q1``, ``A1``): the question or answer is then in
  an attached image.

Grouping (:func:`group`) works on anything shaped like :class:`QAPost`, so callers can pass
their own post objects and get them back inside each :class:`QuestionGroup`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

__all__ = [
    "QALike",
    "QAPost",
    "QuestionGroup",
    "answer_number",
    "group",
    "question_number",
    "question_posts",
    "thread_answer",
]

# Leading tokens skipped before the marker: mentions (Mastodon "@a@b.social", Bluesky
# "@a.bsky.social", X "@a") and hashtags, each taken whole so "#Q1" is a tag, not a question.
_LEADING_TOKEN = re.compile(r"[@#][\w.\-]*(?:@[\w.\-]+)?")
# Opening punctuation people put before a marker ("**Q1:**", "[Q1]", "- Q1", "> A1").
_LEADING_PUNCT = frozenset("*_>•·|[(\"'“‘«「【,:;.~-–—")
# Emoji, symbols, joiners and variation selectors ("📣", "➡️", "👇🏽").
_SKIPPED_CATEGORIES = frozenset({"So", "Sk", "Sm", "Cf", "Mn", "Me", "Co", "Cs"})

_NUMBER = r"(?P<n>[0-9]{1,2})"
_SUB = r"(?P<sub>[a-z])"
# A delimiter after the number. A digit right after ':' '.' '/' means a time, a decimal or a
# fraction; a dash counts only when a space (or the end) follows.
_DELIM = r"[ \t]*(?::(?![0-9])|\.(?![0-9])|\)|\]|/(?![0-9])|,|[-–—](?=\s|$))"
# The spaced "A 1" form: brief delimiters only (no comma: "A 1, 2, 3 countdown").
_DELIM_STRICT = r"[ \t]*(?::(?![0-9])|\.(?![0-9])|\)|\]|/(?![0-9])|[-–—](?=\s|$))"
# No delimiter: a space then text that does not start with a digit, or the end of the post.
_BARE = r"(?:(?=\s+[^\s0-9])|\s*$)"

_QUESTION_PATTERNS = (
    # "Q1: …", "Q 1 …", "q2) …", "Q1a: …"
    re.compile(rf"q[ \t]?#?{_NUMBER}(?:{_SUB}{_DELIM}|(?:{_DELIM}|{_BARE}))", re.IGNORECASE),
    # "Question 3: …", "Question #3 - …"
    re.compile(rf"question[ \t]*#?{_NUMBER}{_SUB}?{_DELIM}", re.IGNORECASE),
)
_ANSWER_PATTERNS = (
    # "A1: …", "A1 …", "a1) …", "A1a: …"
    re.compile(rf"a{_NUMBER}(?:{_SUB}{_DELIM}|(?:{_DELIM}|{_BARE}))", re.IGNORECASE),
    # "A 1: …" (never "A 10-minute walk")
    re.compile(rf"a[ \t]+{_NUMBER}{_SUB}?{_DELIM_STRICT}", re.IGNORECASE),
    # "Answer 1: …", "Ans 2 - …"
    re.compile(rf"(?:answer|ans)[ \t]*#?{_NUMBER}{_SUB}?{_DELIM}", re.IGNORECASE),
)


# Markers open a post: only this many leading characters are walked in Python to find one,
# so a post of a million spaces costs microseconds, not a pass per character.
MARKER_WINDOW = 1000


def _marker_start(text: str) -> int:
    """Index of the first character after leading mentions, tags, spaces, emoji, openers
    (looking no further than :data:`MARKER_WINDOW` characters)."""
    i, size = 0, min(len(text), MARKER_WINDOW)
    while i < size:
        ch = text[i]
        if ch in "@#":
            match = _LEADING_TOKEN.match(text, i)
            i = match.end() if match and match.end() > i + 1 else i + 1
        elif ch.isspace() or ch in _LEADING_PUNCT:
            i += 1
        elif unicodedata.category(ch) in _SKIPPED_CATEGORIES:
            i += 1
        else:
            break
    return i


def _first_number(patterns: tuple[re.Pattern[str], ...], text: str) -> int | None:
    start = _marker_start(text)
    for pattern in patterns:
        match = pattern.match(text, start)
        if match:
            return int(match.group("n"))
    return None


def question_number(text: str) -> int | None:
    """The question number when ``text`` opens with a question marker ("Q1:", "Question 3:"),
    else None. Only the start of the post is looked at; see the module docstring for the
    accepted forms and the edge choices."""
    return _first_number(_QUESTION_PATTERNS, text)


def answer_number(text: str) -> int | None:
    """The answer number when ``text`` opens with an answer marker ("A1:", "@host A2 …",
    "Answer 1:", "A1b)"), else None. Multi-part answers count for their number."""
    return _first_number(_ANSWER_PATTERNS, text)


class QALike(Protocol):
    """What grouping reads from a post; :class:`QAPost` and the transcript's posts fit."""

    @property
    def id(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def in_reply_to_id(self) -> int | None: ...
    @property
    def is_host(self) -> bool: ...
    @property
    def created_at(self) -> datetime: ...


P = TypeVar("P", bound=QALike)


@dataclass(frozen=True, slots=True)
class QAPost:
    """The minimum of a post that question/answer grouping needs."""

    id: int
    text: str
    in_reply_to_id: int | None  # id of the post this one replies to, in the same room
    is_host: bool
    created_at: datetime  # timezone-aware


@dataclass(slots=True)
class QuestionGroup(Generic[P]):
    """One question and its answers.

    ``question`` is the earliest post asking it, or None when answers arrived for a question
    that was never seen (answers still group under their number). ``answers`` are in
    chronological order; ``count == len(answers)``. ``current`` marks the one group readers
    are on now.
    """

    number: int
    question: P | None
    answers: list[P]
    count: int
    current: bool = False


def thread_answer(post: QALike, question_by_post_id: Mapping[int, int]) -> int | None:
    """The question ``post`` answers, or None.

    An explicit marker wins ("A2: …" answers 2 wherever it is posted). Otherwise a direct
    reply to a question post (a key of ``question_by_post_id``, mapping question post id to
    its number) answers that question, unless the reply is by a host (hosts thread their
    next question or a comment under the last one) or itself opens with a question marker.
    Replies to replies are conversation, not answers.
    """
    explicit = answer_number(post.text)
    if explicit is not None:
        return explicit
    if post.is_host or post.in_reply_to_id is None:
        return None
    if question_number(post.text) is not None:
        return None
    return question_by_post_id.get(post.in_reply_to_id)


def _chronological(post: QALike) -> tuple[datetime, int]:
    return (post.created_at, post.id)


def question_posts(posts: Iterable[QALike]) -> dict[int, int]:
    """Which posts are questions: post id -> question number.

    A question post opens with a question marker and is written by a host (``is_host``) —
    or by anyone when no post in ``posts`` is flagged as a host's.
    """
    posts = list(posts)
    hosts_known = any(post.is_host for post in posts)
    found = {}
    for post in posts:
        if hosts_known and not post.is_host:
            continue
        number = question_number(post.text)
        if number is not None:
            found[post.id] = number
    return found


def group(posts: Iterable[P], pinned_question_ids: Sequence[int] = ()) -> list[QuestionGroup[P]]:
    """Group answers under their questions, ordered by question number.

    Questions are the :func:`question_posts`. When one number is asked twice (a repost, a
    correction), the earliest post heads the group; replies to either count as answers.
    Answers: every other post :func:`thread_answer` assigns a number to, in chronological
    order (created_at, then id).

    ``current``: ``pinned_question_ids`` lists the room's pinned post ids, oldest pin first;
    the last of them that is a question post makes its group current. With no such pin, the
    most recently posted question is current. With no question at all, no group is.
    """
    ordered = sorted(posts, key=_chronological)
    question_by_post_id = question_posts(ordered)

    first_question: dict[int, P] = {}
    latest_question: P | None = None
    answers: dict[int, list[P]] = {}
    for post in ordered:
        if post.id in question_by_post_id:
            first_question.setdefault(question_by_post_id[post.id], post)
            latest_question = post
            continue
        number = thread_answer(post, question_by_post_id)
        if number is not None:
            answers.setdefault(number, []).append(post)

    current: int | None = None
    for post_id in reversed(pinned_question_ids):
        if post_id in question_by_post_id:
            current = question_by_post_id[post_id]
            break
    if current is None and latest_question is not None:
        current = question_by_post_id[latest_question.id]

    groups = []
    for number in sorted(first_question.keys() | answers.keys()):
        found = answers.get(number, [])
        groups.append(
            QuestionGroup(
                number=number,
                question=first_question.get(number),
                answers=found,
                count=len(found),
                current=number == current,
            )
        )
    return groups
