"""The seam between networks and the room: normalised posts, stream batches, the interfaces.

A network adapter *follows* a hashtag and yields :class:`Batch` objects, each carrying the
changes it saw (:class:`Upsert`, :class:`Delete`) and the cursor to resume from *after* those
changes. The ingester commits the changes and the cursor in one transaction, so a restart
resumes exactly after the last committed batch: no gap, no duplicate.

Adapters raise on failure (:class:`NetworkError` and subclasses, or anything else); the
ingester owns retries, backoff and health reporting. Adapters may handle transient trouble
internally (e.g. fall back from streaming to polling) and say so through
:meth:`FollowContext.report`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Author:
    """Who wrote a post, as the network names them."""

    name: str
    handle: str  # shown with the post: "@alice@example.social", "@alice.bsky.social", "alice"
    avatar_url: str | None = None
    profile_url: str | None = None
    remote_id: str | None = None  # account id / DID, when the network has one


@dataclass(frozen=True, slots=True)
class Media:
    """An attachment shown as a thumbnail; ``alt`` is the author's description."""

    url: str
    preview_url: str | None = None
    alt: str | None = None
    kind: str = "image"  # image | video | gifv | audio | unknown


@dataclass(slots=True)
class RemotePost:
    """A post as a network delivered it, before it is stored.

    ``remote_id`` is stable across every place the post can be seen (the ActivityPub ``uri``
    on Mastodon, the ``at://`` uri on Bluesky). ``html`` is the network's content, *hostile*:
    the room sanitizes it before storing. Give ``html`` when the network speaks HTML, else
    give ``text`` and the room renders it (links, tags, mentions).
    """

    network: str
    remote_id: str
    author: Author
    created_at: datetime  # timezone-aware
    text: str = ""
    html: str | None = None
    url: str | None = None  # permalink to the original
    in_reply_to: str | None = None  # remote_id of the parent, if known
    reply_to_handle: str | None = None  # "@bob" for the "replying to" line
    thread_root: str | None = None  # remote_id of the thread's first post, if known
    reposted_by: Author | None = None  # set when this delivery is a repost/boost
    spoiler_text: str = ""
    sensitive: bool = False
    media: list[Media] = field(default_factory=list)
    language: str | None = None
    quote: dict[str, Any] | None = None  # {"url", "author", "text"} of a quoted post
    edited_at: datetime | None = None
    local_id: str | None = None  # id on the instance/source that delivered it (for deletes)
    extra: dict[str, Any] = field(default_factory=dict)  # network specifics (cid, tags, …)


@dataclass(frozen=True, slots=True)
class Upsert:
    """A new post, or a new version of one already seen (an edit)."""

    post: RemotePost


@dataclass(frozen=True, slots=True)
class Delete:
    """A post was deleted. Give ``remote_id`` when known, else the source's ``local_id``."""

    remote_id: str | None = None
    local_id: str | None = None


Change = Upsert | Delete


@dataclass(frozen=True, slots=True)
class Batch:
    """Changes to commit together, and the cursor that resumes after them (None: unchanged)."""

    changes: list[Change]
    cursor: str | None = None


class NetworkError(Exception):
    """A failure talking to a network; ``retry_after`` (s) when the network said when."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = None
    ):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class AuthError(NetworkError):
    """The credentials were refused (revoked token, wrong app password)."""


class RemoteRejected(NetworkError):
    """The network refused the content itself (e.g. 422 too long); retrying will not help."""


class ReplyRefused(RemoteRejected):
    """The network refused a reply by a rule of its own (not the content): the user may post
    another way. ``intent_url`` opens the network's own web composer as that reply."""

    def __init__(self, message: str, *, intent_url: str | None = None, status: int | None = None):
        super().__init__(message, status=status)
        self.intent_url = intent_url


class ReplyTargetUnresolved(RemoteRejected):
    """The account's own server cannot find the post replied to (deleted, private, or its
    origin unreachable): the text can still be posted, without the reply link."""


class FollowContext(Protocol):
    """What a following adapter may tell the ingester while it runs."""

    def report(self, state: str, error: str | None = None) -> None:
        """Set the human-readable state shown on /healthz ("streaming", "polling", …)."""

    def notice(self, message: str) -> None:
        """Tell the room something its readers should know (shown once in the column)."""

    def detail(self, info: dict[str, Any]) -> None:
        """Operator-facing facts about the source (e.g. a read budget), shown to moderators
        and in the operator view of /healthz; replaces what was given before."""


class Follower(Protocol):
    """Follows one hashtag on one source. Built by the network module from a source config."""

    def follow(self, cursor: str | None, ctx: FollowContext) -> AsyncIterator[Batch]:
        """Yield batches from ``cursor`` on, forever. Raise to have the ingester back off."""
        ...


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What a network returned for a post Hashroom made on a user's behalf."""

    post: RemotePost


@dataclass(frozen=True, slots=True)
class LengthRule:
    """How a network counts a post's length. ``count`` returns the weighed length."""

    limit: int
    count: Callable[[str], int]
