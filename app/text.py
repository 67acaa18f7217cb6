"""Text rules: hashtags, lengths, sanitizing network HTML and rendering plain text.

Pure functions, no I/O. Everything a network delivers is hostile HTML: it goes through
:func:`sanitize_html` before it is stored or shown; plain text goes through
:func:`render_text`, whose output is already sanitized.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Iterator
from html.parser import HTMLParser

import grapheme
import nh3

MAX_HASHTAG_LENGTH = 100

# Characters that end a hashtag when they come right before its '#'. Mastodon refuses a tag
# glued to a word, to '/' and '=' (URL paths, query strings) and to ')' (markdown links).
_NOT_BEFORE_TAG = frozenset("/=)")

# A URL as people type it: an http(s) scheme then anything up to whitespace or markup
# delimiters. Trailing punctuation is trimmed afterwards (see _trim_url), the way Mastodon
# and twitter-text leave "see https://example.org." with the full stop outside the link.
_URL_RE = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)
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


def _trim_url(url: str) -> str:
    """Drop trailing punctuation and closing brackets that have no opening one in the URL."""
    while url:
        last = url[-1]
        if last in _URL_TRAILING:
            url = url[:-1]
        elif last in _BRACKETS and url.count(last) > url.count(_BRACKETS[last]):
            url = url[:-1]
        else:
            break
    return url


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
    i = text.find("#")
    while i != -1:
        if any(a <= i < b for a, b in skip):
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


# --- lengths ------------------------------------------------------------------------------


def count_graphemes(text: str) -> int:
    """Length as a reader sees it: an emoji ZWJ sequence, a flag, a letter with its
    combining marks each count 1."""
    return grapheme.length(text)


def mastodon_length(text: str, url_weight: int = 23) -> int:
    """Length as Mastodon weighs it: each http(s) URL counts ``url_weight``, a mention
    ``@user@domain`` counts as ``@user``, everything else in grapheme clusters."""
    urls = _url_spans(text)
    pieces: list[str] = []
    pos = 0
    for m in _MENTION_RE.finditer(text):
        if m.start() < pos or any(a < m.end() and m.start() < b for a, b in urls):
            continue
        pieces.append(_weigh_urls(text[pos : m.start()], urls, pos, url_weight))
        pieces.append("@" + m.group(1))
        pos = m.end()
    pieces.append(_weigh_urls(text[pos:], urls, pos, url_weight))
    return count_graphemes("".join(pieces))


def _weigh_urls(chunk: str, urls: list[tuple[int, int]], offset: int, weight: int) -> str:
    """``chunk`` (at ``offset`` in the text) with each URL replaced by ``weight`` letters."""
    out = []
    pos = 0
    for a, b in urls:
        a, b = a - offset, b - offset
        if b <= 0 or a >= len(chunk):
            continue
        out.append(chunk[pos:a])
        out.append("x" * weight)
        pos = b
    out.append(chunk[pos:])
    return "".join(out)


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
    for m in _MENTION_RE.finditer(line):
        if any(a < m.end() and m.start() < b for a, b, _ in marks):
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


class _TextCollector(HTMLParser):
    """Collects text content, turning line breaks and block ends into newlines."""

    _BLOCK_END = {"p": "\n\n", "blockquote": "\n\n", "pre": "\n\n", "ul": "\n", "ol": "\n"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0  # depth inside script/style, in case unsanitized markup gets here

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCK_END:
            self.parts.append(self._BLOCK_END[tag])

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """The readable text of (sanitized) HTML, entities decoded: ``<br>`` is a newline,
    paragraphs are separated by a blank line, surrounding whitespace is trimmed."""
    collector = _TextCollector()
    collector.feed(markup)
    collector.close()
    text = "".join(collector.parts)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    text = re.sub(r"\n\n[ \t]+", "\n\n", text)
    return text.strip()
