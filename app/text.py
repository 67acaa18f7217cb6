"""Text rules: hashtags, lengths, sanitizing network HTML and rendering plain text.

Pure functions, no I/O. Everything a network delivers is hostile HTML: it goes through
:func:`sanitize_html` before it is stored or shown; plain text goes through
:func:`render_text`, whose output is already sanitized.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator

import grapheme
import nh3

MAX_HASHTAG_LENGTH = 100

# Characters that end a hashtag when they come right before its '#'. Mastodon refuses a tag
# glued to a word, to '/' and '=' (URL paths, query strings) and to ')' (markdown links).
_NOT_BEFORE_TAG = frozenset("/=)")

# A URL as people type it: an http(s) scheme then anything up to whitespace or markup
# delimiters. Trailing punctuation is trimmed afterwards (see _trim_url), the way Mastodon
# and twitter-text leave "see https://example.org." with the full stop outside the link.
# A URL is at most MAX_URL characters (browsers and servers stop far earlier): a megabyte
# of "https://a/)))…" is then one short link and plain text, not a megabyte to trim.
MAX_URL = 4096
_URL_RE = re.compile(rf"https?://[^\s<>\"]{{1,{MAX_URL}}}", re.IGNORECASE)
_URL_TRAILING = ".,:;!?'\"*"
_BRACKETS = {")": "(", "]": "[", "}": "{"}

# Mastodon's mention shape: @user or @user@domain, not glued to a word, '/' or '='.
_MENTION_RE = re.compile(
    r"(?<![=/\w])@([a-z0-9_]+(?:[.-]+[a-z0-9_]+)*)(?:@(\w+(?:[.-]+\w+)*))?",
    re.IGNORECASE,
)

LINK_REL = "nofollow noopener noreferrer"
LINK_TARGET = "_blank"

ALLOWED_TAGS = frozenset(
    {"p", "br", "span", "a", "del", "pre", "code", "em", "strong", "b", "i", "u", "ul", "ol"}
    | {"li", "blockquote"}
)
# The classes Mastodon itself emits: microformats for mentions, tag links, and the
# invisible/ellipsis spans that shorten long links (the page's CSS must hide .invisible).
ALLOWED_CLASSES = frozenset({"h-card", "u-url", "mention", "hashtag", "invisible", "ellipsis"})
# Elements whose content is code, a nested document or a form control, never readable
# text: they are dropped with everything inside, not unwrapped.
_DROP_WITH_CONTENT = frozenset(
    {"script", "style", "template", "iframe", "frame", "frameset", "object", "applet"}
    | {"noscript", "noembed", "noframes", "textarea", "select", "title", "xmp", "svg", "math"}
    | {"head"}
)

_CLEANER = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    clean_content_tags=set(_DROP_WITH_CONTENT),
    # "*": nothing on every tag; without it ammonia's defaults keep `lang` and `title`.
    attributes={"a": {"href"}, "*": set()},
    allowed_classes={"a": set(ALLOWED_CLASSES), "span": set(ALLOWED_CLASSES)},
    link_rel=LINK_REL,
    set_tag_attribute_values={"a": {"target": LINK_TARGET}},
    url_schemes={"http", "https"},
    # Relative links in remote content point nowhere useful and "//host" or "/\host" forms
    # are classic filter bypasses: only absolute http(s) URLs survive.
    url_relative="deny",
    strip_comments=True,
)


# --- hashtags -----------------------------------------------------------------------------


def _is_tag_char(ch: str) -> bool:
    """Letters (with their combining marks), decimal digits and underscore."""
    if ch == "_":
        return True
    cat = unicodedata.category(ch)
    return cat[0] in "LM" or cat == "Nd"


def normalize_hashtag(raw: str) -> str:
    """Return the hashtag as stored: no '#', surrounding whitespace removed, case as typed.

    Raises ValueError saying what to fix when it is empty, too long, all digits, or holds
    anything but letters, digits and underscore.
    """
    tag = raw.strip()
    if tag.startswith("#"):
        tag = tag[1:].strip()
    # One spelling per tag: a decomposed "é" typed on one keyboard equals the composed one.
    tag = unicodedata.normalize("NFC", tag)
    if not tag:
        raise ValueError("hashtag is empty")
    if len(tag) > MAX_HASHTAG_LENGTH:
        raise ValueError(f"hashtag is longer than {MAX_HASHTAG_LENGTH} characters")
    if not all(_is_tag_char(ch) for ch in tag) or unicodedata.category(tag[0])[0] == "M":
        raise ValueError("hashtag may contain only letters, digits and underscore")
    if all(unicodedata.category(ch) == "Nd" for ch in tag):
        raise ValueError("hashtag needs at least one letter or underscore, not only digits")
    return tag


def tag_key(tag: str) -> str:
    """The key two spellings of one hashtag share ("#EdChat" and "edchat" give "edchat")."""
    tag = tag.strip()
    if tag.startswith("#"):
        tag = tag[1:]
    return unicodedata.normalize("NFC", tag).casefold()


# How a form field separates several tags: spaces, commas, semicolons.
_TAG_SEPARATORS = re.compile(r"[\s,;]+")


def split_hashtags(raw: str) -> list[str]:
    """The tags typed in one text field ("#A, #B C" gives ["#A", "#B", "C"]), unchecked."""
    return [part for part in _TAG_SEPARATORS.split(raw) if part]


def normalize_hashtags(raw: Iterable[str], limit: int) -> list[str]:
    """Return the tags as stored, in order, each through :func:`normalize_hashtag`.

    Raises ValueError naming the tag at fault when one is invalid, when two are the same
    tag (compared by :func:`tag_key`), when there are none, or more than ``limit``.
    """
    tags: list[str] = []
    seen: dict[str, str] = {}
    for n, item in enumerate(raw, 1):
        try:
            tag = normalize_hashtag(item)
        except ValueError as exc:
            raise ValueError(f"tag {n} ({str(item)[:40]!r}): {exc}") from exc
        key = tag_key(tag)
        if key in seen:
            raise ValueError(f"#{tag} is given twice (as #{seen[key]} and #{tag})")
        seen[key] = tag
        tags.append(tag)
    if not tags:
        raise ValueError("give at least one hashtag")
    if len(tags) > limit:
        raise ValueError(f"{len(tags)} hashtags given; a chat follows at most {limit}")
    return tags


def contains_any_hashtag(text: str, tags: Iterable[str]) -> bool:
    """True iff ``text`` carries at least one of ``tags`` as a whole tag (any case)."""
    keys = {tag_key(tag) for tag in tags}
    return any(tag_key(found) in keys for found in find_hashtags(text))


def _trim_url(url: str) -> str:
    """Drop trailing punctuation and closing brackets that have no opening one in the URL.

    Linear: the brackets are counted once and the counts kept as the end moves left (a
    recount per character made ``http://a))))…`` quadratic)."""
    closes = {c: url.count(c) for c in _BRACKETS}
    opens = {c: url.count(o) for c, o in _BRACKETS.items()}
    end = len(url)
    while end:
        last = url[end - 1]
        if last in _URL_TRAILING:
            end -= 1
        elif last in _BRACKETS and closes[last] > opens[last]:
            closes[last] -= 1
            end -= 1
        else:
            break
    return url[:end]


def _url_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each http(s) URL in ``text``, trailing punctuation excluded."""
    spans = []
    for m in _URL_RE.finditer(text):
        url = _trim_url(m.group())
        if len(url) > len(url.split("://", 1)[0]) + 3:  # something after the scheme
            spans.append((m.start(), m.start() + len(url)))
    return spans


def _hashtag_spans(text: str, skip: list[tuple[int, int]]) -> Iterator[tuple[int, int, str]]:
    """(start, end, tag) for each '#tag' in ``text`` outside the ``skip`` spans (URLs)."""
    n = len(text)
    k = 0  # ``skip`` is sorted and ``i`` only grows: one pointer keeps this linear
    i = text.find("#")
    while i != -1:
        while k < len(skip) and skip[k][1] <= i:
            k += 1
        if k < len(skip) and skip[k][0] <= i:
            i = text.find("#", i + 1)
            continue
        prev = text[i - 1] if i else ""
        j = i + 1
        while j < n and _is_tag_char(text[j]):
            j += 1
        tag = text[i + 1 : j]
        ok_before = not prev or not (_is_tag_char(prev) or prev in _NOT_BEFORE_TAG)
        if (
            ok_before
            and tag
            and unicodedata.category(tag[0])[0] != "M"
            and not all(unicodedata.category(ch) == "Nd" for ch in tag)
        ):
            yield i, j, tag
        i = text.find("#", max(j, i + 1))


def find_hashtags(text: str) -> list[str]:
    """The hashtags written in ``text`` (without '#', as typed), ignoring URL fragments."""
    text = unicodedata.normalize("NFC", text)
    return [tag for _, _, tag in _hashtag_spans(text, _url_spans(text))]


def contains_hashtag(text: str, tag: str) -> bool:
    """True iff ``text`` carries ``#tag`` as a whole tag, compared case-insensitively."""
    key = tag_key(tag)
    return any(tag_key(found) == key for found in find_hashtags(text))


def append_hashtag(text: str, tag: str) -> str:
    """Return ``text`` carrying ``#tag``: unchanged if it already does, else with it appended.

    The tag goes after the text with its trailing whitespace removed and one space, so a
    final URL stays a valid URL; inner whitespace and newlines are kept. Raises ValueError
    on empty text or an invalid tag.
    """
    tag = normalize_hashtag(tag)
    if not text.strip():
        raise ValueError("text is empty")
    if contains_hashtag(text, tag):
        return text
    return f"{text.rstrip()} #{tag}"


# --- names ------------------------------------------------------------------------------

# Dropped from every display name: control characters (NUL included) and the bidi marks,
# embeddings, overrides and isolates, which can make a name read as another one
# ("\u202eevil" shows as "live") or hide what follows it.
_NAME_DROP = dict.fromkeys(
    [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x061C, 0x200E, 0x200F]
    + [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
)


def clean_name(name: str) -> str:
    """``name`` without control or bidi-control characters, its whitespace runs made one
    space and the ends trimmed."""
    return " ".join(name.split()).translate(_NAME_DROP).strip()


# --- lengths ------------------------------------------------------------------------------


def count_graphemes(text: str) -> int:
    """Length as a reader sees it: an emoji ZWJ sequence, a flag, a letter with its
    combining marks each count 1."""
    return grapheme.length(text)


def mastodon_length(text: str, url_weight: int = 23) -> int:
    """Length as Mastodon weighs it: each http(s) URL counts ``url_weight``, a mention
    ``@user@domain`` counts as ``@user``, everything else in grapheme clusters."""
    urls = _url_spans(text)
    marks = [(a, b, "x" * url_weight) for a, b in urls]
    k = 0
    for m in _MENTION_RE.finditer(text):
        while k < len(urls) and urls[k][1] <= m.start():
            k += 1
        if k < len(urls) and urls[k][0] < m.end():
            continue  # an "@" inside a URL is part of the URL
        marks.append((m.start(), m.end(), "@" + m.group(1)))
    marks.sort()
    pieces: list[str] = []
    pos = 0
    for a, b, replacement in marks:
        pieces.append(text[pos:a])
        pieces.append(replacement)
        pos = b
    pieces.append(text[pos:])
    return count_graphemes("".join(pieces))


# --- HTML ---------------------------------------------------------------------------------


def sanitize_html(markup: str) -> str:
    """Return ``markup`` reduced to Mastodon's safe subset, fit to place inside a page.

    Only the tags in :data:`ALLOWED_TAGS` survive (others are unwrapped, scripts, styles,
    frames and embedded documents are dropped with their content); links keep only absolute
    http(s) ``href`` and get ``rel="nofollow noopener noreferrer" target="_blank"``; ``class``
    keeps only the tokens in :data:`ALLOWED_CLASSES`; every other attribute goes.
    """
    return _CLEANER.clean(markup)


def _link(url: str, inner_html: str, css_class: str | None = None) -> str:
    cls = f' class="{css_class}"' if css_class else ""
    return (
        f'<a href="{html.escape(url)}"{cls} rel="{LINK_REL}" target="{LINK_TARGET}">'
        f"{inner_html}</a>"
    )


def _render_line(line: str, tag_url: Callable[[str], str] | None) -> str:
    """One line of plain text as HTML: URLs, #tags and @mentions marked up, the rest escaped."""
    urls = _url_spans(line)
    marks: list[tuple[int, int, str]] = []
    for a, b in urls:
        url = line[a:b]
        marks.append((a, b, _link(url, html.escape(url))))
    for a, b, tag in _hashtag_spans(line, urls):
        label = f"#<span>{html.escape(tag)}</span>"
        if tag_url is None:
            marks.append((a, b, f'<span class="hashtag">{label}</span>'))
            continue
        href = tag_url(tag)
        if not _URL_RE.fullmatch(href):
            raise ValueError(f"tag_url must return an absolute http(s) URL, got {href!r}")
        marks.append((a, b, _link(href, label, "mention hashtag")))
    marks.sort()
    taken = [(a, b) for a, b, _ in marks]  # sorted, disjoint: one pointer keeps this linear
    k = 0
    for m in _MENTION_RE.finditer(line):
        while k < len(taken) and taken[k][1] <= m.start():
            k += 1
        if k < len(taken) and taken[k][0] < m.end():
            continue
        marks.append(
            (m.start(), m.end(), f'<span class="h-card mention">{html.escape(m[0])}</span>')
        )
    marks.sort()
    out = []
    pos = 0
    for a, b, markup in marks:
        out.append(html.escape(line[pos:a]))
        out.append(markup)
        pos = b
    out.append(html.escape(line[pos:]))
    return "".join(out)


def render_text(text: str, tag_url: Callable[[str], str] | None = None) -> str:
    """Plain text as safe HTML, the way Mastodon formats a plain-text post.

    Everything is escaped; http(s) URLs become links, ``#tags`` become tag links to
    ``tag_url(tag)`` (an absolute http(s) URL; without ``tag_url`` a ``span.hashtag``),
    ``@user`` / ``@user@domain`` become ``span.h-card`` mentions. Blank lines separate
    ``<p>`` paragraphs, single newlines become ``<br>``. The result is already what
    :func:`sanitize_html` returns for it. Empty text gives "".
    """
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    paragraphs = [p.strip("\n") for p in re.split(r"\n[ \t]*\n", text.strip("\n"))]
    rendered = [
        "<p>" + "<br>".join(_render_line(line, tag_url) for line in p.split("\n")) + "</p>"
        for p in paragraphs
        if p.strip()
    ]
    return sanitize_html("".join(rendered))


# html_to_text first reduces markup to these block tags with nh3 (html5ever: linear on any
# input, unlike html.parser, which rescans unclosed "<a " runs and took 80 s on 100 KB).
_TEXT_CLEANER = nh3.Cleaner(
    tags={"p", "br", "blockquote", "pre", "ul", "ol", "li"},
    clean_content_tags=set(_DROP_WITH_CONTENT),
    attributes={},
    url_schemes=set(),
    strip_comments=True,
    link_rel=None,
)
# After that cleaner every "<" starts a bare tag such as "<p>", "</li>" or "<br>".
_TAG_RE = re.compile(r"<(/?)([a-z]+)[^>]{0,20}>")
_BLOCK_END = {"p": "\n\n", "blockquote": "\n\n", "pre": "\n\n", "ul": "\n", "ol": "\n"}


def _tag_text(m: re.Match[str]) -> str:
    closing, tag = m.group(1), m.group(2)
    if not closing:
        return "\n" if tag in ("br", "li") else ""
    return _BLOCK_END.get(tag, "")


def html_to_text(markup: str) -> str:
    """The readable text of HTML, entities decoded: ``<br>`` is a newline, paragraphs are
    separated by a blank line, surrounding whitespace is trimmed. Scripts, styles and other
    non-text elements are dropped with their content. Linear in the size of ``markup``."""
    reduced = _TEXT_CLEANER.clean(markup)
    text = html.unescape(_TAG_RE.sub(_tag_text, reduced))
    # Trailing blanks of each line go, then runs of blank lines collapse to one, and a
    # paragraph's leading blanks go: line by line, never a regex that can backtrack.
    lines = [line.rstrip(" \t") for line in text.split("\n")]
    out: list[str] = []
    blank = 0
    for line in lines:
        if not line:
            blank += 1
            continue
        if blank and out:
            out.append("")  # one blank line between paragraphs, however many there were
            line = line.lstrip(" \t")
        out.append(line)
        blank = 0
    return "\n".join(out).strip()
