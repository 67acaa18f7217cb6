"""X (formerly Twitter) API v2: recent search, the filtered stream, posting and OAuth 2.0.

Protocol knowledge only. :class:`XApi` (:mod:`.client`) speaks the documented endpoints
through an injected ``httpx.AsyncClient``; :func:`map_tweet` (:mod:`.mapping`) turns a post
with its ``includes`` into a :class:`~app.networks.base.RemotePost`; :class:`XFollower`
(:mod:`.follower`) follows a hashtag by recent search (and the filtered stream when the
credentials allow it) within a :class:`ReadBudget` (:mod:`.budget`, with the rate limits and
the cursor). :mod:`.composing` builds queries, rule tags and the length rule (weighted by
:mod:`app.networks.x_text`); :mod:`.oauth` holds the PKCE flow's pieces and :class:`Tokens`.

Facts this package rests on (docs.x.com):

- Ids are strings (64-bit snowflakes: never round-trip them through floats). A response has
  ``data`` (a post or a list), ``includes`` (``users``, ``tweets``, ``media``) beside it and
  ``meta`` (``newest_id``, ``oldest_id``, ``result_count``, ``next_token``); an empty search
  page has only ``meta``. Entity offsets count Unicode code points, like Python strings.
- Rate limits come as ``x-rate-limit-limit`` / ``-remaining`` / ``-reset`` (epoch seconds);
  a 429 means wait until the reset.
- The filtered stream is newline-delimited JSON with a blank keep-alive line about every 20
  seconds; a silence much longer than that is a dead connection. An app holds one stream
  connection; rules (``value`` + ``tag``) live on the app, not on the connection.
- Reading is paid per post read (repeat reads of a post within a UTC day are free), so every
  read goes through the budget and the follower stops itself before running up a bill.
- Since 2026-02-23 a reply through the API is refused (403) unless the author of the post
  replied to mentioned or quoted the replier: :class:`ReplyRestricted`.

Nothing here echoes an upstream body: errors are described by their status and our words.
"""

from ..base import NetworkError
from .budget import Cursor, RateLimit, ReadBudget, newer
from .client import (
    CONNECTED,
    DEFAULT_API_URL,
    EXPANSIONS,
    FIELDS,
    KEEPALIVE,
    KEEPALIVE_TIMEOUT,
    MAX_BODY,
    MAX_LINE,
    MAX_RESULTS,
    MAX_RULE,
    MEDIA_FIELDS,
    TWEET_FIELDS,
    USER_FIELDS,
    ReplyRestricted,
    SearchPage,
    StreamNotAllowed,
    XApi,
)
from .composing import RULE_TAG_PREFIX, build_query, length_rule, reply_intent_url, rule_tag
from .follower import MAX_BILLED_IDS, RATE_WAIT_CAP, XFollower
from .mapping import (
    NETWORK,
    WEB_URL,
    Includes,
    author_of,
    map_page,
    map_tweet,
    permalink,
    plain_text,
    render_html,
)
from .oauth import DEFAULT_AUTHORIZE_URL, REFRESH_MARGIN, SCOPES, Tokens, authorize_url, new_pkce

__all__ = [
    "CONNECTED",
    "DEFAULT_API_URL",
    "DEFAULT_AUTHORIZE_URL",
    "EXPANSIONS",
    "FIELDS",
    "KEEPALIVE",
    "KEEPALIVE_TIMEOUT",
    "MAX_BILLED_IDS",
    "MAX_BODY",
    "MAX_LINE",
    "MAX_RESULTS",
    "MAX_RULE",
    "MEDIA_FIELDS",
    "NETWORK",
    "RATE_WAIT_CAP",
    "REFRESH_MARGIN",
    "RULE_TAG_PREFIX",
    "SCOPES",
    "TWEET_FIELDS",
    "USER_FIELDS",
    "WEB_URL",
    "Cursor",
    "Includes",
    "NetworkError",
    "RateLimit",
    "ReadBudget",
    "ReplyRestricted",
    "SearchPage",
    "StreamNotAllowed",
    "Tokens",
    "XApi",
    "XFollower",
    "author_of",
    "authorize_url",
    "build_query",
    "length_rule",
    "map_page",
    "map_tweet",
    "newer",
    "new_pkce",
    "permalink",
    "plain_text",
    "reply_intent_url",
    "render_html",
    "rule_tag",
]
