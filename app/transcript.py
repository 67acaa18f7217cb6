"""Exports of a chat after it ends: Markdown, JSON, CSV and a self-contained HTML page.

The caller gathers the posts (hidden ones already left out) into :class:`TranscriptPost`
values; :func:`build` keeps those inside the window, orders them and groups answers under
questions with :func:`app.qa.group`. Each ``to_*`` function renders one format from the
resulting :class:`Transcript`, treating every author-supplied string as hostile:

* Markdown escapes the characters that would turn text into markup, links or raw HTML;
* CSV cells that a spreadsheet would run as a formula get a leading apostrophe;
* HTML escapes all text, re-sanitizes the post HTML, carries no script and a
  Content-Security-Policy that forbids scripts anyway.

Times are UTC, ISO 8601 with a ``Z``.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from app import qa
from app.text import find_hashtags, sanitize_html, tag_key

__all__ = [
    "CSV_HEADER",
    "Transcript",
    "TranscriptPost",
    "build",
    "ranking",
    "to_csv",
    "to_html",
    "to_json",
    "to_markdown",
]

CSV_HEADER = (
    "id",
    "created_at",
    "author_name",
    "author_handle",
    "network",
    "question",
    "answer",
    "in_reply_to_id",
    "text",
    "url",
    "votes",
    "answered",
    "hashtags",  # which of the chat's tags the post carries ("#a #b"; empty for a thread reply)
)
# Spreadsheet apps run a cell starting with these as a formula (OWASP "CSV Injection"):
# = + - @ and the tab / carriage return that some apps strip before looking.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class TranscriptPost:
    """One post as exported. ``html`` is already sanitized; ``text`` is plain text.
    ``question``/``answer`` are set by :func:`build` from the grouping; ``votes`` and
    ``answered`` are the room's ranking of a question (0 and False for other posts)."""

    id: int
    author_name: str
    author_handle: str
    network: str
    created_at: datetime  # timezone-aware
    text: str
    html: str
    url: str | None
    in_reply_to_id: int | None
    reply_to_handle: str | None
    question: int | None = None
    answer: int | None = None
    is_host: bool = False
    votes: int = 0  # the audience's upvotes, when the post is a question
    answered: bool = False  # a moderator marked the question answered


@dataclass(frozen=True, slots=True)
class Transcript:
    """A finished chat: posts in chronological order and its questions with their answers.
    The posts inside ``groups`` are the same objects as in ``posts``."""

    slug: str
    hashtag: str  # without '#'
    title: str
    description: str
    posts: list[TranscriptPost]
    groups: list[qa.QuestionGroup[TranscriptPost]]
    window_start: datetime | None
    window_end: datetime | None
    hashtags: tuple[str, ...] = ()  # every tag followed, reply tag first; () means (hashtag,)

    @property
    def tags(self) -> list[str]:
        return list(self.hashtags) or [self.hashtag]


def build(
    *,
    slug: str,
    hashtag: str,
    title: str,
    posts: Iterable[TranscriptPost],
    description: str = "",
    window: tuple[datetime, datetime] | None = None,
    pinned_question_ids: Sequence[int] = (),
    hashtags: Sequence[str] = (),
) -> Transcript:
    """Assemble a transcript.

    With ``window=(start, end)`` only posts with ``start <= created_at <= end`` are kept and
    the window is reported as given; without it the window spans the first to the last post
    (None for an empty chat). Posts are ordered by (created_at, id). ``question`` and
    ``answer`` on each post are recomputed from :func:`app.qa.group`, so every export agrees
    with the "Questions" section. Raises ValueError for naive datetimes or ``end < start``.
    """
    kept = []
    for post in posts:
        _require_aware(f"post {post.id} created_at", post.created_at)
        kept.append(post)
    if window is not None:
        start, end = window
        _require_aware("window start", start)
        _require_aware("window end", end)
        if end < start:
            raise ValueError("window end is before window start")
        kept = [p for p in kept if start <= p.created_at <= end]
    kept.sort(key=lambda p: (p.created_at, p.id))

    first_groups = qa.group(kept, pinned_question_ids)
    # Every question post is marked, including a repeat of a number, which does not head
    # its group but is still the host asking.
    questions = qa.question_posts(kept)
    answers = {answer.id: grp.number for grp in first_groups for answer in grp.answers}

    numbered = [replace(p, question=questions.get(p.id), answer=answers.get(p.id)) for p in kept]
    by_id = {p.id: p for p in numbered}
    groups = [
        qa.QuestionGroup(
            number=grp.number,
            question=by_id[grp.question.id] if grp.question is not None else None,
            answers=[by_id[a.id] for a in grp.answers],
            count=grp.count,
            current=grp.current,
        )
        for grp in first_groups
    ]
    if window is not None:
        window_start, window_end = window
    elif numbered:
        window_start, window_end = numbered[0].created_at, numbered[-1].created_at
    else:
        window_start = window_end = None
    return Transcript(
        slug=slug,
        hashtag=hashtag,
        title=title,
        description=description,
        posts=numbered,
        groups=groups,
        window_start=window_start,
        window_end=window_end,
        hashtags=tuple(hashtags),
    )


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


def _iso(moment: datetime | None, *, seconds: bool = False) -> str | None:
    if moment is None:
        return None
    utc = moment.astimezone(UTC)
    text = utc.isoformat(timespec="seconds") if seconds else utc.isoformat()
    return text.replace("+00:00", "Z")


def _marker(post: TranscriptPost) -> str:
    if post.question is not None:
        return f"Q{post.question}"
    if post.answer is not None:
        return f"A{post.answer}"
    return ""


def ranking(post: TranscriptPost) -> str:
    """A question's votes and answered state in words ("3 votes · answered"), or ""."""
    parts = []
    if post.votes:
        parts.append(f"{post.votes} vote{'' if post.votes == 1 else 's'}")
    if post.answered:
        parts.append("answered")
    return " · ".join(parts)


# ---------------------------------------------------------------------------- Markdown

# Backslash-escapable ASCII punctuation (CommonMark) that could start markup inside a line.
_MD_INLINE = re.compile(r"([\\`*_\[\]<>|~&])")
# Line starts that would open a block: headings, quotes, lists, numbered lists, rules.
_MD_BLOCK_START = re.compile(r"^(\s*)([#>+\-=]|\d+[.)])")


def _md(text: str) -> str:
    """``text`` escaped for one Markdown paragraph; newlines become hard line breaks."""
    lines = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = _MD_INLINE.sub(r"\\\1", line)
        line = _MD_BLOCK_START.sub(lambda m: m.group(1) + "\\" + m.group(2), line)
        lines.append(line)
    return "  \n  ".join(lines)


def _md_who(post: TranscriptPost) -> str:
    return f"**{_md(post.author_name)}** ({_md(post.author_handle)})"


def _tag_line(t: Transcript) -> str:
    return " ".join(f"#{tag}" for tag in t.tags)


def to_markdown(t: Transcript) -> str:
    """Title, tag and window, then "## Questions" (each question with its answers: author,
    UTC time, text), then "## Transcript", every post in order."""
    out = [f"# {_md(t.title)}", "", " ".join(f"\\#{_md(tag)}" for tag in t.tags)]
    if t.window_start is not None and t.window_end is not None:
        start, end = _iso(t.window_start, seconds=True), _iso(t.window_end, seconds=True)
        out += ["", f"{start} – {end} (UTC)"]
    if t.description:
        out += ["", _md(t.description)]

    out += ["", "## Questions"]
    if not t.groups:
        out += ["", "No questions were asked."]
    for grp in t.groups:
        out.append("")
        if grp.question is not None:
            q = grp.question
            out.append(f"### Q{grp.number}")
            out += [
                "",
                _md(q.text),
                "",
                f"Asked by {_md_who(q)} at {_iso(q.created_at, seconds=True)}",
            ]
            if ranking(q):
                out += ["", f"*{ranking(q)}*"]
        else:
            out += [f"### Q{grp.number}", "", "*The question itself is not in this transcript.*"]
        noun = "answer" if grp.count == 1 else "answers"
        out += ["", f"{grp.count} {noun}"]
        if grp.answers:
            out.append("")
        for answer in grp.answers:
            when = _iso(answer.created_at, seconds=True)
            out.append(f"- {_md_who(answer)} · {when}  \n  {_md(answer.text)}")

    out += ["", "## Transcript", ""]
    if not t.posts:
        out.append("No posts.")
    for post in t.posts:
        marker = f" · {_marker(post)}" if _marker(post) else ""
        when = _iso(post.created_at, seconds=True)
        out.append(f"- {when} · {_md_who(post)}{marker}  \n  {_md(post.text)}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------- JSON


def _post_json(post: TranscriptPost) -> dict[str, Any]:
    return {
        "id": post.id,
        "created_at": _iso(post.created_at),
        "author_name": post.author_name,
        "author_handle": post.author_handle,
        "network": post.network,
        "is_host": post.is_host,
        "question": post.question,
        "answer": post.answer,
        "in_reply_to_id": post.in_reply_to_id,
        "reply_to_handle": post.reply_to_handle,
        "text": post.text,
        "html": post.html,
        "url": post.url,
        "votes": post.votes,
        "answered": post.answered,
    }


def to_json(t: Transcript) -> str:
    """``{"chat": {slug, hashtag, hashtags, title, description}, "window": {start, end} | null,
    "questions": [{number, question: post | null, answers: [post…], count}],
    "posts": [post…]}`` where a post is the object :func:`_post_json` documents by its keys:
    id, created_at, author_name, author_handle, network, is_host, question, answer,
    in_reply_to_id, reply_to_handle, text, html, url, votes, answered."""
    window = None
    if t.window_start is not None and t.window_end is not None:
        window = {"start": _iso(t.window_start), "end": _iso(t.window_end)}
    data = {
        "chat": {
            "slug": t.slug,
            "hashtag": t.hashtag,
            "hashtags": t.tags,
            "title": t.title,
            "description": t.description,
        },
        "window": window,
        "questions": [
            {
                "number": grp.number,
                "question": _post_json(grp.question) if grp.question is not None else None,
                "answers": [_post_json(a) for a in grp.answers],
                "count": grp.count,
            }
            for grp in t.groups
        ],
        "posts": [_post_json(p) for p in t.posts],
    }
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


# ---------------------------------------------------------------------------- CSV


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    if text.startswith(_FORMULA_STARTS):
        return "'" + text
    return text


def to_csv(t: Transcript) -> str:
    """One header row (:data:`CSV_HEADER`) then one row per post, RFC 4180 quoting, CRLF
    line ends. Cells starting with = + - @ (or tab / CR) get a leading apostrophe so a
    spreadsheet shows them instead of running them. ``hashtags`` names the chat's tags the
    post carries, as the chat spells them."""
    chat_tags = {tag_key(tag): tag for tag in t.tags}
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for post in t.posts:
        row = (
            post.id,
            _iso(post.created_at),
            post.author_name,
            post.author_handle,
            post.network,
            post.question,
            post.answer,
            post.in_reply_to_id,
            post.text,
            post.url,
            post.votes,
            "yes" if post.answered else "",
            _carried(post.text, chat_tags),
        )
        writer.writerow([_cell(value) for value in row])
    return buffer.getvalue()


def _carried(post_text: str, chat_tags: dict[str, str]) -> str:
    found = {tag_key(tag) for tag in find_hashtags(post_text)}
    return " ".join(f"#{tag}" for key, tag in chat_tags.items() if key in found)


# ---------------------------------------------------------------------------- HTML

# Scripts are never needed; inline styles are the page's only styling and images may come
# from the posts' own https hosts.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; base-uri 'none'"


def _e(text: str | None) -> str:
    return html.escape(text or "", quote=True)


def _safe_url(url: str | None) -> str | None:
    if not url:
        return None
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return None
    return url if scheme in ("http", "https") else None


def _html_time(moment: datetime) -> str:
    iso = _iso(moment)
    shown = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f'<time datetime="{_e(iso)}">{shown}</time>'


def _html_post(post: TranscriptPost, *, anchor: bool) -> str:
    # Post HTML was sanitized on the way in; cleaning it again costs little and keeps this
    # file safe even if a caller passes raw network HTML.
    body = sanitize_html(post.html) if post.html else f"<p>{_e(post.text)}</p>"
    marker = _marker(post)
    chip = f'<span class="chip">{_e(marker)}</span> ' if marker else ""
    link = _safe_url(post.url)
    when = _html_time(post.created_at)
    if link:
        when = f'<a href="{_e(link)}" rel="noopener noreferrer nofollow">{when}</a>'
    reply = (
        f'<p class="reply-to">replying to {_e(post.reply_to_handle)}</p>'
        if post.reply_to_handle
        else ""
    )
    ident = f' id="post-{post.id}"' if anchor else ""
    return (
        f'<article class="post"{ident}>'
        f'<header>{chip}<strong class="author">{_e(post.author_name)}</strong> '
        f'<span class="handle">{_e(post.author_handle)}</span> · {when}</header>'
        f'{reply}<div class="content">{body}</div></article>'
    )


def to_html(t: Transcript, css: str) -> str:
    """A complete HTML document needing nothing else: ``css`` inlined in a ``<style>``, no
    scripts (and a CSP forbidding them), every text escaped, post HTML re-sanitized,
    links limited to http(s). Questions with their answers come first, then every post."""
    # "</style>" inside the stylesheet would end the element early. "<" means nothing in CSS
    # outside strings, and inside them the escape "\3c " is the same character.
    style = css.replace("<", "\\3c ")
    parts = [
        "<!doctype html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{_e(_tag_line(t))} — {_e(t.title)}</title>",
        f"<style>{style}</style>",
        "</head>",
        "<body>",
        '<header class="transcript-header">',
        f"<h1>{_e(t.title)}</h1>",
        f'<p class="tag">{_e(_tag_line(t))}</p>',
    ]
    if t.window_start is not None and t.window_end is not None:
        parts.append(
            f'<p class="window">{_html_time(t.window_start)} – {_html_time(t.window_end)}</p>'
        )
    if t.description:
        parts.append(f'<p class="description">{_e(t.description)}</p>')
    parts += ["</header>", "<main>", '<section aria-labelledby="questions-title">']
    parts.append('<h2 id="questions-title">Questions</h2>')
    if not t.groups:
        parts.append("<p>No questions were asked.</p>")
    for grp in t.groups:
        noun = "answer" if grp.count == 1 else "answers"
        parts.append(f'<section class="question" id="q{grp.number}">')
        rank = f" · {_e(ranking(grp.question))}" if grp.question and ranking(grp.question) else ""
        parts.append(f"<h3>Q{grp.number} <small>{grp.count} {noun}{rank}</small></h3>")
        if grp.question is not None:
            parts.append(_html_post(grp.question, anchor=False))
        else:
            parts.append('<p class="missing">The question itself is not in this transcript.</p>')
        if grp.answers:
            parts.append('<ol class="answers">')
            parts += [f"<li>{_html_post(a, anchor=False)}</li>" for a in grp.answers]
            parts.append("</ol>")
        parts.append("</section>")
    parts.append("</section>")
    parts.append('<section aria-labelledby="log-title">')
    parts.append('<h2 id="log-title">Transcript</h2>')
    parts.append('<ol class="log">')
    parts += [f"<li>{_html_post(p, anchor=True)}</li>" for p in t.posts]
    parts += ["</ol>", "</section>", "</main>", "</body>", "</html>"]
    return "\n".join(parts) + "\n"
