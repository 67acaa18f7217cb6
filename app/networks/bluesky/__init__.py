"""Bluesky (AT Protocol): follow a hashtag live, load its history, post as a signed-in account.

Reading
    Two live transports share one behaviour (:class:`JetstreamFollower`,
    :class:`FirehoseFollower`): they read every new ``app.bsky.feed.post`` on the network and
    keep those carrying the tag (:func:`matches_tag`: a ``#tag`` facet, the ``tags`` field, or
    ``#tag`` written in the text). Creates and updates become :class:`Upsert`, deletes of posts
    this follower has yielded (or was told about through ``known_ids``) become :class:`Delete`.
    The cursor is Jetstream's ``time_us`` or the firehose ``seq`` of the last event read,
    as a string. Drops are retried inside the follower with capped, jittered backoff; a
    malformed frame is logged and skipped.

History
    Neither stream can go back further than its replay window (about a day), and nothing
    can be replayed for a chat that just started. A follower given a signed-in
    :class:`AccountClient` loads recent posts with ``app.bsky.feed.searchPosts`` (through the
    account's PDS, which forwards to its AppView) when it starts without a cursor and after an
    outage longer than the replay window. Without an account it posts a notice instead, once.

Replies without the hashtag
    Answers to a host's question often leave the tag out, so no stream filter sees them. The
    follower remembers the questions it delivered (a post opening with a question marker,
    :func:`app.qa.question_number`) for ``context_window`` seconds, at most
    :data:`CONTEXT_QUESTIONS`, and every ``context_interval`` seconds fetches up to
    :data:`CONTEXT_REQUESTS_PER_CYCLE` of their threads with ``app.bsky.feed.getPostThread``
    (:func:`get_post_thread`): through the signed-in account's PDS with an ``atproto-proxy``
    header naming the AppView when the source has an account, else from a public AppView.
    Untagged replies found there (:func:`read_thread`) are yielded once, flagged
    ``extra["thread_context"] = True``, in a batch whose cursor is None (they are not part of
    the stream's position). The fetch runs beside the stream, never in its way; failures are
    logged and the next cycle tries again.

Authors never hold up a post
    A post is yielded at once with the author the resolver has cached, or with the DID as a
    stand-in. The follower then looks the author up in the background
    (:class:`IdentityResolver`) and, when the profile arrives, yields the waiting posts again
    as :class:`Upsert` with the full author (display name, handle, avatar) in a later batch.

Writing
    :func:`publish` creates a post (facets with UTF-8 byte offsets, reply root and parent) as
    the account of an :class:`AccountClient`, which keeps and renews its session.

Modules
    :mod:`.mapping` (records and post views → posts, ``at://`` uris, :func:`matches_tag`),
    :mod:`.appview` (search and threads), :mod:`.publishing` (limits, :func:`reply_ref`,
    :func:`publish`), :mod:`.follower` (what both transports share), :mod:`.jetstream` and
    :mod:`.firehose` (one transport each), :mod:`.threads` (the questions' thread context).
    Sessions, identities, rich text and firehose frames live beside the package in the
    ``app.networks.atproto_*`` modules.
"""

from ..atproto_identity import Identity, IdentityResolver
from ..atproto_richtext import (
    FACET_LINK,
    FACET_MENTION,
    FACET_TAG,
    build_facets,
    facets_for,
    render_post_html,
)
from ..atproto_session import (
    DEFAULT_SERVICE,
    AccountClient,
    BlueskySession,
    create_session,
    refresh_session,
    resolve_handle,
    resolve_pds,
    sign_in,
)
from .appview import (
    DEFAULT_APPVIEW_PROXY,
    GET_POST_THREAD,
    THREAD_DEPTH,
    THREAD_POSTS_LIMIT,
    THREAD_VIEW,
    SearchPage,
    get_post_thread,
    read_thread,
    search_posts,
)
from .firehose import FIREHOSE_REPLAY_WINDOW, FirehoseFollower, firehose_position
from .follower import (
    CURSOR_INTERVAL,
    JETSTREAM_REPLAY_WINDOW,
    LOOKUP_CONCURRENCY,
    NO_HISTORY_NOTICE,
    SEEN_LIMIT,
    WAITING_LIMIT,
)
from .jetstream import JetstreamFollower, jetstream_position
from .mapping import (
    CDN_FULLSIZE_URL,
    CDN_THUMB_URL,
    NETWORK,
    POST_COLLECTION,
    POST_URL,
    VIDEO_PLAYLIST_URL,
    VIDEO_THUMB_URL,
    matches_tag,
    parse_post_uri,
    post_uri,
    post_url,
    post_view_to_post,
    record_to_post,
)
from .publishing import (
    LENGTH_RULE,
    MAX_BYTES,
    MAX_GRAPHEMES,
    MAX_LANGS,
    check_post_text,
    length,
    publish,
    reply_ref,
)
from .threads import CONTEXT_QUESTIONS, CONTEXT_REQUESTS_PER_CYCLE, QUESTION_PEEK

__all__ = [
    "AccountClient",
    "BlueskySession",
    "CDN_FULLSIZE_URL",
    "CDN_THUMB_URL",
    "CONTEXT_QUESTIONS",
    "CONTEXT_REQUESTS_PER_CYCLE",
    "CURSOR_INTERVAL",
    "DEFAULT_APPVIEW_PROXY",
    "DEFAULT_SERVICE",
    "FACET_LINK",
    "FACET_MENTION",
    "FACET_TAG",
    "FIREHOSE_REPLAY_WINDOW",
    "FirehoseFollower",
    "GET_POST_THREAD",
    "Identity",
    "IdentityResolver",
    "JETSTREAM_REPLAY_WINDOW",
    "JetstreamFollower",
    "LENGTH_RULE",
    "LOOKUP_CONCURRENCY",
    "MAX_BYTES",
    "MAX_GRAPHEMES",
    "MAX_LANGS",
    "NETWORK",
    "NO_HISTORY_NOTICE",
    "POST_COLLECTION",
    "POST_URL",
    "QUESTION_PEEK",
    "SEEN_LIMIT",
    "SearchPage",
    "THREAD_DEPTH",
    "THREAD_POSTS_LIMIT",
    "THREAD_VIEW",
    "VIDEO_PLAYLIST_URL",
    "VIDEO_THUMB_URL",
    "WAITING_LIMIT",
    "build_facets",
    "check_post_text",
    "create_session",
    "facets_for",
    "firehose_position",
    "get_post_thread",
    "jetstream_position",
    "length",
    "matches_tag",
    "parse_post_uri",
    "post_uri",
    "post_url",
    "post_view_to_post",
    "publish",
    "read_thread",
    "record_to_post",
    "refresh_session",
    "render_post_html",
    "reply_ref",
    "resolve_handle",
    "resolve_pds",
    "search_posts",
    "sign_in",
]
