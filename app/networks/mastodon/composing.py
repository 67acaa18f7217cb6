"""Composing a Mastodon post: its length as the instance counts it, the instance's limit,
and the mention a reply opens with."""

from __future__ import annotations

import re

from app.networks.base import LengthRule
from app.text import mastodon_length

from .client import InstanceInfo


def length(text: str, info: InstanceInfo) -> int:
    """``text``'s length as ``info``'s instance weighs it (URLs, mentions, graphemes)."""
    return mastodon_length(text, info.url_weight)


def length_rule(info: InstanceInfo) -> LengthRule:
    """The instance's limit and counting rule."""
    weight = info.url_weight
    return LengthRule(limit=info.max_characters, count=lambda text: mastodon_length(text, weight))


def reply_text(text: str, mention_acct: str | None) -> str:
    """``text`` with "@acct " in front, as Mastodon clients do for replies — unless the text
    already mentions that account (case-insensitive) or there is nobody to mention."""
    if not mention_acct:
        return text
    acct = mention_acct.strip().lstrip("@")
    if not acct:
        return text
    pattern = r"(?<![\w@])@" + re.escape(acct) + r"(?![\w@]|[.-]\w)"
    if re.search(pattern, text, re.IGNORECASE):
        return text
    return f"@{acct} {text}"
