"""What Hashroom writes to X: the search and stream-rule query for a chat's hashtags,
the tag that marks a chat's rule, the post length rule (weighted, :mod:`app.networks.x_text`)
and the web reply intent."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlencode

from ..base import LengthRule
from ..x_text import MAX_WEIGHTED_LENGTH, weighted_length
from .mapping import WEB_URL

RULE_TAG_PREFIX = "hashroom:"


def build_query(hashtags: str | Sequence[str], *, reposts: bool = False) -> str:
    """The search / rule query for a chat: any of its hashtags (``(#a OR #b)``), reposts
    left out unless wanted."""
    tags = [hashtags] if isinstance(hashtags, str) else list(hashtags)
    terms = " OR ".join(f"#{tag}" for tag in tags)
    return (f"({terms})" if len(tags) > 1 else terms) + ("" if reposts else " -is:retweet")


def rule_tag(key: str) -> str:
    return f"{RULE_TAG_PREFIX}{key}"


def length_rule() -> LengthRule:
    return LengthRule(limit=MAX_WEIGHTED_LENGTH, count=weighted_length)


def reply_intent_url(tweet_id: str, text: str) -> str:
    """X's web "reply" intent: opens the composer on x.com as a reply, with ``text``."""
    return f"{WEB_URL}/intent/post?" + urlencode({"in_reply_to": tweet_id, "text": text})
