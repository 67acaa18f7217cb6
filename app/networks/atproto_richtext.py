"""Bluesky rich text: finding facets in plain text and rendering text + facets as HTML.

A Bluesky post is plain text plus *facets*: ``{"index": {"byteStart", "byteEnd"}, "features":
[...]}`` where the index counts **UTF-8 bytes** (start inclusive, end exclusive), so an emoji or
an accent before a facet moves it by several bytes, not one. Detection follows the rules of the
official client (``@atproto/api`` rich-text detection) so a post Hashroom makes looks the same
as one made in the Bluesky app:

- ``#tag`` after the start of the text or whitespace; ``#`` or full-width ``＃``; the tag runs
  to the next whitespace, needs one character that is neither an ASCII digit nor punctuation,
  loses trailing punctuation and may be at most 64 UTF-16 units long. The index covers
  ``#tag``; the feature's ``tag`` has no ``#``.
- ``http(s)://…`` links after the start, whitespace or ``(``, without one trailing ``.,;:!?``
  and without a final ``)`` that has no ``(``. (Bare domains are not linked: telling a domain
  from a typo needs the public suffix list.)
- ``@handle`` mentions after the start, whitespace or ``(``, shaped like a domain name; the
  feature needs the account's DID, so mentions are only made by :func:`build_facets`, which
  resolves them and leaves out those that do not resolve.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

FACET = "app.bsky.richtext.facet"
FACET_TAG = "app.bsky.richtext.facet#tag"
FACET_LINK = "app.bsky.richtext.facet#link"
FACET_MENTION = "app.bsky.richtext.facet#mention"

# The official client refuses longer tags (counted in UTF-16 units, '#' excluded).
MAX_TAG_UTF16 = 64
# The lexicon's limit on a tag feature's value; longer ones in received posts are ignored.
MAX_TAG_FEATURE_LENGTH = 640

PROFILE_URL = "https://bsky.app/profile/{actor}"
HASHTAG_URL = "https://bsky.app/hashtag/{tag}"

# Zero-width and invisible characters that end a tag, as in the official client.
_TAG_BREAKERS = frozenset("\u00ad\u2060\u200a\u200b\u200c\u200d\u20e2")
_TAG_SIGNS = frozenset("#＃")
_LINK_RE = re.compile(r"(?:^|(?<=[\s(]))(https?://\S+)", re.IGNORECASE)
_MENTION_RE = re.compile(r"(?:^|(?<=[\s(]))@([a-zA-Z0-9.-]*[a-zA-Z0-9])(?![a-zA-Z0-9_])")
# atproto handle syntax: domain labels of 1–63 characters, a last label starting with a letter.
_HANDLE_RE = re.compile(
    r"([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
)
_LINK_TRAILING = ".,;:!?"

ResolveHandle = Callable[[str], Awaitable[str | None]]


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P")


def _utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


def _byte_offsets(text: str) -> list[int]:
    """``offsets[i]`` is the UTF-8 byte offset of character ``i`` (and of the end at len)."""
    offsets = [0]
    total = 0
    for ch in text:
        total += len(ch.encode("utf-8", "surrogatepass"))
        offsets.append(total)
    return offsets


def _tag_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, tag) in characters for each ``#tag``; ``end`` is after the tag."""
    spans = []
    n = len(text)
    for i, ch in enumerate(text):
        if ch not in _TAG_SIGNS or (i and not text[i - 1].isspace()):
            continue
        j = i + 1
        while j < n and not text[j].isspace() and text[j] not in _TAG_BREAKERS:
            j += 1
        body = text[i + 1 : j]
        if not body or body[0] == "\ufe0f":  # "#️⃣" is the keycap emoji, not a tag
            continue
        if not any(c not in "0123456789" and not _is_punct(c) for c in body):
            continue
        tag = body.rstrip()
        while tag and _is_punct(tag[-1]):
            tag = tag[:-1]
        if not tag or _utf16_len(tag) > MAX_TAG_UTF16:
            continue
        spans.append((i, i + 1 + len(tag), tag))
    return spans


def _link_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, uri) in characters for each http(s) link."""
    spans = []
    for m in _LINK_RE.finditer(text):
        uri = m.group(1)
        if uri[-1] in _LINK_TRAILING:
            uri = uri[:-1]
        if uri.endswith(")") and "(" not in uri:
            uri = uri[:-1]
        if not urlsplit(uri).netloc:
            continue
        spans.append((m.start(1), m.start(1) + len(uri), uri))
    return spans


def _mention_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, handle) in characters for each ``@handle``; the span includes the '@'."""
    return [
        (m.start(), m.end(), m.group(1).lower())
        for m in _MENTION_RE.finditer(text)
        if _HANDLE_RE.fullmatch(m.group(1)) and len(m.group(1)) <= 253
    ]


def _facet(offsets: list[int], start: int, end: int, feature: dict[str, Any]) -> dict[str, Any]:
    return {
        "index": {"byteStart": offsets[start], "byteEnd": offsets[end]},
        "features": [feature],
    }


def _assemble(text: str, spans: list[tuple[int, int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Facets for ``spans`` in text order, dropping any that overlaps an earlier one."""
    offsets = _byte_offsets(text)
    facets = []
    end_of_last = -1
    for start, end, feature in sorted(spans, key=lambda s: (s[0], s[1])):
        if start < end_of_last:
            continue
        facets.append(_facet(offsets, start, end, feature))
        end_of_last = end
    return facets


def facets_for(text: str) -> list[dict[str, Any]]:
    """Tag and link facets for ``text``, in text order, with UTF-8 byte offsets.

    Mentions need a DID and are left to :func:`build_facets`. Guarantees for every facet:
    ``text.encode()[byteStart:byteEnd]`` is exactly ``#tag`` (tag facets) or the link text,
    and no two facets overlap.
    """
    spans: list[tuple[int, int, dict[str, Any]]] = [
        (a, b, {"$type": FACET_TAG, "tag": tag}) for a, b, tag in _tag_spans(text)
    ]
    spans += [(a, b, {"$type": FACET_LINK, "uri": uri}) for a, b, uri in _link_spans(text)]
    return _assemble(text, spans)


async def build_facets(text: str, resolve_handle: ResolveHandle | None) -> list[dict[str, Any]]:
    """Tag, link and mention facets for ``text``, in text order, UTF-8 byte offsets.

    ``resolve_handle(handle)`` returns the account's DID or None; a mention whose handle does
    not resolve (or any mention when ``resolve_handle`` is None) stays plain text. Each handle
    is resolved once per call.
    """
    spans: list[tuple[int, int, dict[str, Any]]] = [
        (a, b, {"$type": FACET_TAG, "tag": tag}) for a, b, tag in _tag_spans(text)
    ]
    spans += [(a, b, {"$type": FACET_LINK, "uri": uri}) for a, b, uri in _link_spans(text)]
    if resolve_handle is not None:
        dids: dict[str, str | None] = {}
        for a, b, handle in _mention_spans(text):
            if handle not in dids:
                dids[handle] = await resolve_handle(handle)
            did = dids[handle]
            if did and did.startswith("did:"):
                spans.append((a, b, {"$type": FACET_MENTION, "did": did}))
    return _assemble(text, spans)


# --- rendering ----------------------------------------------------------------------------


def _is_char_boundary(data: bytes, i: int) -> bool:
    return i == len(data) or (data[i] & 0xC0) != 0x80


def _index(facet: Any, size: int, data: bytes) -> tuple[int, int] | None:
    """The facet's (start, end) when it is well formed and lands on characters of ``data``."""
    if not isinstance(facet, dict) or not isinstance(facet.get("index"), dict):
        return None
    start, end = facet["index"].get("byteStart"), facet["index"].get("byteEnd")
    if type(start) is not int or type(end) is not int:  # bool is an int: refuse it too
        return None
    if not 0 <= start < end <= size:
        return None
    if not (_is_char_boundary(data, start) and _is_char_boundary(data, end)):
        return None
    return start, end


def _target(features: Any, tag_url: Callable[[str], str]) -> tuple[str, str] | None:
    """(href, kind) for the first usable feature: an http(s) link, a DID mention, a tag."""
    if not isinstance(features, list):
        return None
    for feature in features:
        if not isinstance(feature, dict):
            continue
        kind = feature.get("$type")
        if kind == FACET_LINK:
            uri = feature.get("uri")
            if isinstance(uri, str) and urlsplit(uri).scheme.lower() in ("http", "https"):
                if urlsplit(uri).netloc:
                    return uri, "link"
        elif kind == FACET_MENTION:
            did = feature.get("did")
            if isinstance(did, str) and did.startswith("did:") and len(did) <= 2048:
                return PROFILE_URL.format(actor=quote(did, safe=":")), "mention"
        elif kind == FACET_TAG:
            tag = feature.get("tag")
            if isinstance(tag, str) and 0 < len(tag) <= MAX_TAG_FEATURE_LENGTH:
                return tag_url(tag), "tag"
    return None


def _escape(chunk: bytes) -> str:
    text = chunk.decode("utf-8", "replace")
    return html.escape(text).replace("\r\n", "\n").replace("\n", "<br>")


def _default_tag_url(tag: str) -> str:
    return HASHTAG_URL.format(tag=quote(tag.lstrip("#"), safe=""))


_CLASSES = {"link": None, "mention": "u-url mention", "tag": "mention hashtag"}


def render_post_html(text: str, facets: Any, *, tag_url: Callable[[str], str] | None = None) -> str:
    """Post text and its facets as one HTML paragraph, every character of the text escaped.

    Links become ``<a href>`` to their URI (http/https only), mentions link to the account's
    profile, tags to ``tag_url(tag)`` (default: the tag's page on bsky.app); newlines become
    ``<br>``. Facets are applied by UTF-8 byte offsets. A facet that is malformed, out of range,
    splits a character, overlaps an earlier one or has no usable feature is ignored: its text is
    shown plain. Empty text gives "".
    """
    if not isinstance(text, str) or not text:
        return ""
    data = text.encode("utf-8", "surrogatepass")
    make_tag_url = tag_url or _default_tag_url
    marks: list[tuple[int, int, str, str]] = []
    for facet in facets if isinstance(facets, list) else []:
        index = _index(facet, len(data), data)
        target = _target(facet.get("features"), make_tag_url) if index else None
        if index and target:
            marks.append((index[0], index[1], target[0], target[1]))
    marks.sort(key=lambda m: (m[0], m[1]))
    out = []
    pos = 0
    for start, end, href, kind in marks:
        if start < pos:  # overlaps the previous facet
            continue
        out.append(_escape(data[pos:start]))
        cls = _CLASSES[kind]
        cls_attr = f' class="{cls}"' if cls else ""
        out.append(f'<a href="{html.escape(href)}"{cls_attr}>{_escape(data[start:end])}</a>')
        pos = end
    out.append(_escape(data[pos:]))
    return "<p>" + "".join(out) + "</p>"
