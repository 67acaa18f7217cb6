"""Hold-for-review rules: what a moderator may write as one, and what each one matches.

A ``keyword`` rule is a word or phrase, matched case-insensitively as whole words. A ``link``
rule is a domain: it matches links to that domain and its subdomains; ``*`` matches any link.
:class:`app.policy.Screen` applies the compiled :class:`Rule` objects to posts as they are
stored; :mod:`app.review` keeps the rules and the posts they held.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import Invalid
from .models import RoomRule
from .present import iso

RULE_KINDS = ("keyword", "link")
MAX_KEYWORD = 100

_DOMAIN = re.compile(r"(?:[\w-]+\.)+[\w-]+")


def normalize_rule(kind: str, pattern: str) -> tuple[str, str]:
    """Validate a rule; returns (kind, pattern) as stored.

    A ``keyword`` rule is a word or phrase, matched case-insensitively as whole words. A
    ``link`` rule is a domain (a URL is reduced to its host): it matches links to that domain
    and its subdomains; ``*`` matches any link.
    """
    kind = (kind or "").strip().casefold()
    if kind == "keyword":
        phrase = " ".join((pattern or "").split()).casefold()
        if not phrase:
            raise Invalid("pattern: give a word or phrase to hold posts for")
        if len(phrase) > MAX_KEYWORD:
            raise Invalid(f"pattern: keep a keyword to {MAX_KEYWORD} characters or fewer")
        return kind, phrase
    if kind == "link":
        return kind, _normalize_domain(pattern or "")
    raise Invalid(f"kind: use {' or '.join(RULE_KINDS)}")


def _normalize_domain(raw: str) -> str:
    value = raw.strip().casefold()
    if value == "*":
        return value
    if "://" in value:
        value = urlsplit(value).hostname or ""
    else:
        value = value.split("/", 1)[0].split(":", 1)[0]
    value = value.removeprefix("*.").strip(".")
    if len(value) > 253 or not _DOMAIN.fullmatch(value):
        raise Invalid("pattern: a link rule takes a domain like spam.example, or * for any link")
    return value


_ANCHOR = re.compile(r"<a\b([^>]*)>(.*?)</a>", re.S | re.I)
_HREF = re.compile(r'\bhref="([^"]*)"', re.I)
_CLASS = re.compile(r'\bclass="([^"]*)"', re.I)
_TAG = re.compile(r"<[^>]+>")
_TEXT_URL = re.compile(r"https?://[^\s<>\"']+", re.I)


def link_hosts(post_html: str, text: str) -> set[str]:
    """Hosts of the links a post carries: anchors in its (sanitized) HTML and bare URLs in its
    text. Mention and hashtag links are not counted: every Mastodon post has them."""
    hosts: set[str] = set()
    for attrs, inner in _ANCHOR.findall(post_html or ""):
        classes = set((_CLASS.search(attrs) or [None, ""])[1].split())
        label = html.unescape(_TAG.sub("", inner)).strip()
        if classes & {"mention", "hashtag"} or label.startswith(("#", "@")):
            continue
        href = _HREF.search(attrs)
        if href:
            hosts.add(_host(html.unescape(href[1])))
    for url in _TEXT_URL.findall(text or ""):
        hosts.add(_host(url))
    hosts.discard("")
    return hosts


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").rstrip(".")
    except ValueError:
        return ""


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


@dataclass(frozen=True, slots=True)
class Rule:
    """A hold-for-review rule, compiled."""

    id: int
    kind: str
    pattern: str

    def describe(self) -> str:
        return f'{self.kind} "{self.pattern}"'

    def matches(self, folded_text: str, hosts: set[str]) -> bool:
        if self.kind == "keyword":
            return _keyword_regex(self.pattern).search(folded_text) is not None
        if self.pattern == "*":
            return bool(hosts)
        return any(h == self.pattern or h.endswith("." + self.pattern) for h in hosts)


_keyword_cache: dict[str, re.Pattern[str]] = {}


def _keyword_regex(phrase: str) -> re.Pattern[str]:
    found = _keyword_cache.get(phrase)
    if found is None:
        body = r"\s+".join(re.escape(word) for word in phrase.split())
        # Whole words: "ass" must not hold "class". Edges that are not word characters
        # ("$$$", "#tag") need no boundary.
        start = r"(?<!\w)" if _is_word(phrase[0]) else ""
        end = r"(?!\w)" if _is_word(phrase[-1]) else ""
        found = re.compile(start + body + end)
        if len(_keyword_cache) > 4096:
            _keyword_cache.clear()
        _keyword_cache[phrase] = found
    return found


def rule_json(row: RoomRule) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "pattern": row.pattern,
        "created_at": iso(row.created_at),
    }
