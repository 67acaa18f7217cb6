"""Mastodon: read a hashtag (REST + streaming websocket), post, resolve, sign in with OAuth.

Protocol knowledge only. Everything here speaks the documented Mastodon client API, which most
fediverse servers also implement, so every field of a response is treated as optional.

- :mod:`.mapping` — a Status entity → :class:`~app.networks.base.RemotePost`
  (:func:`parse_status`), an Account → :class:`~app.networks.base.Author`.
- :mod:`.responses` — rate-limit headers (:func:`parse_reset`, :func:`retry_after`,
  :func:`throttle_delay`) and the error names shown from refusals.
- :mod:`.client` — :class:`MastodonApi`, one instance's HTTP API over an injected
  ``httpx.AsyncClient``, and :class:`InstanceInfo`.
- :mod:`.oauth` — :class:`AppCredentials`, :class:`OAuthToken`, :func:`new_pkce` (PKCE
  verifier and S256 challenge for the OAuth authorization-code flow).
- :mod:`.composing` — :func:`length`, :func:`length_rule`, :func:`reply_text`.
- :mod:`.follower` — :class:`MastodonFollower`, which follows hashtags: backfill, forward
  paging (:mod:`.paging` merges several tags' pages), live stream, polling fallback, thread
  context (:mod:`.threads`); yields :class:`~app.networks.base.Batch` objects.

Ids: a status has a ``uri`` (its ActivityPub id, the same on every instance: our ``remote_id``)
and an ``id`` (per instance, opaque: our ``local_id``). Ids are never compared or cast to int;
"newest" always means "first in the server's newest-first page".
"""

from .client import (
    DEFAULT_MAX_CHARACTERS,
    DEFAULT_URL_WEIGHT,
    PAGE_LIMIT,
    SAFE_PAGE,
    STREAMING_PATH,
    TAGS_PER_REQUEST,
    InstanceInfo,
    MastodonApi,
)
from .composing import length, length_rule, reply_text
from .follower import MastodonFollower, backoff_delay
from .mapping import (
    NETWORK,
    QUESTION_PEEK,
    QUOTE_HTML_LIMIT,
    opens_with_question,
    parse_account,
    parse_datetime,
    parse_status,
)
from .oauth import (
    DEFAULT_SCOPES,
    OOB_REDIRECT,
    AppCredentials,
    OAuthToken,
    new_pkce,
    pkce_challenge,
)
from .responses import error_name, parse_reset, retry_after, throttle_delay
from .threads import CONTEXT_QUESTIONS, CONTEXT_REQUESTS_PER_CYCLE

__all__ = [
    "CONTEXT_QUESTIONS",
    "CONTEXT_REQUESTS_PER_CYCLE",
    "DEFAULT_MAX_CHARACTERS",
    "DEFAULT_SCOPES",
    "DEFAULT_URL_WEIGHT",
    "NETWORK",
    "OOB_REDIRECT",
    "PAGE_LIMIT",
    "QUESTION_PEEK",
    "QUOTE_HTML_LIMIT",
    "SAFE_PAGE",
    "STREAMING_PATH",
    "TAGS_PER_REQUEST",
    "AppCredentials",
    "InstanceInfo",
    "MastodonApi",
    "MastodonFollower",
    "OAuthToken",
    "backoff_delay",
    "error_name",
    "length",
    "length_rule",
    "new_pkce",
    "opens_with_question",
    "parse_account",
    "parse_datetime",
    "parse_reset",
    "parse_status",
    "pkce_challenge",
    "reply_text",
    "retry_after",
    "throttle_delay",
]
