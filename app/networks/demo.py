"""The offline demo network: replays a bundled chat transcript forever, paced like a live chat.

The transcript (``app/data/demo_chat.json``) is written with a ``{tag}`` placeholder where
the chat's hashtag goes, so the same replay works for whatever tag the demo room follows.
Each pass over the transcript is a *loop*; post ``i`` of loop ``n`` has the remote id
``demo:n:i``, so every loop brings new posts and the cursor ``"n:i"`` names the next post
to play. Hostile HTML in the transcript is deliberate: it shows the room's sanitizer at work.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from app.networks.base import Author, Batch, FollowContext, RemotePost, Upsert

NETWORK = "demo"
PLACEHOLDER = "{tag}"
_CURSOR_RE = re.compile(r"(\d+):(\d+)")


@dataclass(frozen=True, slots=True)
class DemoAuthor:
    """A transcript participant."""

    key: str
    name: str
    handle: str
    avatar: str | None = None
    is_host: bool = False


@dataclass(frozen=True, slots=True)
class DemoPost:
    """One transcript entry: a post (``author`` + ``text`` or ``html``), or a repost of an
    earlier post (``repost_of`` + ``by``). ``pause`` stretches the wait before it."""

    author: str | None = None
    text: str | None = None
    html: str | None = None
    reply_to: int | None = None
    repost_of: int | None = None
    by: str | None = None
    pause: float = 1.0


@dataclass(frozen=True, slots=True)
class Transcript:
    """A validated chat transcript: parents and reposted posts always come earlier."""

    title: str
    description: str
    hashtag: str
    authors: dict[str, DemoAuthor]
    posts: list[DemoPost]

    @property
    def host(self) -> DemoAuthor:
        return next(a for a in self.authors.values() if a.is_host)


def load_transcript(path: str | Path | None = None) -> Transcript:
    """Read and validate a transcript (default: the bundled one).

    Raises ValueError naming the faulty post index when a post has no content or two kinds
    of content, names an unknown author, or has a ``reply_to``/``repost_of`` that does not
    point at an earlier, original (non-repost) post.
    """
    if path is None:
        raw = resources.files("app").joinpath("data", "demo_chat.json").read_text("utf-8")
    else:
        raw = Path(path).read_text(encoding="utf-8")
    return parse_transcript(json.loads(raw))


def parse_transcript(data: dict[str, Any]) -> Transcript:
    """Validate a transcript already decoded from JSON; see :func:`load_transcript`."""
    if not isinstance(data, dict):
        raise ValueError("transcript must be a JSON object")
    raw_authors = data.get("authors")
    if not isinstance(raw_authors, dict) or not raw_authors:
        raise ValueError("transcript needs a non-empty 'authors' object")
    authors: dict[str, DemoAuthor] = {}
    for key, a in raw_authors.items():
        if not isinstance(a, dict) or not a.get("name") or not a.get("handle"):
            raise ValueError(f"author {key!r} needs a name and a handle")
        authors[key] = DemoAuthor(
            key=key,
            name=str(a["name"]),
            handle=str(a["handle"]),
            avatar=a.get("avatar"),
            is_host=bool(a.get("is_host", False)),
        )
    hosts = [a.key for a in authors.values() if a.is_host]
    if len(hosts) != 1:
        raise ValueError(f"transcript needs exactly one host author, found {len(hosts)}")

    raw_posts = data.get("posts")
    if not isinstance(raw_posts, list) or not raw_posts:
        raise ValueError("transcript needs a non-empty 'posts' list")
    posts = [_parse_post(i, p, authors, raw_posts) for i, p in enumerate(raw_posts)]
    return Transcript(
        title=str(data.get("title", "")),
        description=str(data.get("description", "")),
        hashtag=str(data.get("hashtag", "")),
        authors=authors,
        posts=posts,
    )


def _parse_post(i: int, p: Any, authors: dict[str, DemoAuthor], raw_posts: list[Any]) -> DemoPost:
    if not isinstance(p, dict):
        raise ValueError(f"post {i}: must be an object")

    def earlier_original(field: str) -> int | None:
        target = p.get(field)
        if target is None:
            return None
        if not isinstance(target, int) or isinstance(target, bool) or not 0 <= target < i:
            raise ValueError(f"post {i}: {field}={target!r} must be the index of an earlier post")
        if isinstance(raw_posts[target], dict) and "repost_of" in raw_posts[target]:
            raise ValueError(f"post {i}: {field}={target} points at a repost, not a post")
        return target

    pause = p.get("pause", 1.0)
    if not isinstance(pause, int | float) or isinstance(pause, bool) or pause <= 0:
        raise ValueError(f"post {i}: pause must be a positive number")

    repost_of = earlier_original("repost_of")
    if repost_of is not None:
        if p.get("by") not in authors:
            raise ValueError(f"post {i}: repost 'by' must name a known author")
        if any(k in p for k in ("text", "html", "reply_to")):
            raise ValueError(f"post {i}: a repost carries no text, html or reply_to")
        return DemoPost(repost_of=repost_of, by=p["by"], pause=float(pause))

    if p.get("author") not in authors:
        raise ValueError(f"post {i}: unknown author {p.get('author')!r}")
    text, markup = p.get("text"), p.get("html")
    if (text is None) == (markup is None):
        raise ValueError(f"post {i}: give exactly one of 'text' or 'html'")
    content = text if text is not None else markup
    if not isinstance(content, str) or not content.strip():
        raise ValueError(f"post {i}: content must be a non-empty string")
    return DemoPost(
        author=p["author"],
        text=text,
        html=markup,
        reply_to=earlier_original("reply_to"),
        pause=float(pause),
    )


def parse_cursor(cursor: str | None, length: int) -> tuple[int, int]:
    """``(loop, index)`` of the next post to play; None starts at ``(0, 0)``.

    An index past the end (the transcript got shorter) moves on to the next loop.
    Raises ValueError on anything that is not ``"loop:index"``.
    """
    if cursor is None:
        return 0, 0
    m = _CURSOR_RE.fullmatch(cursor)
    if not m:
        raise ValueError(f"demo cursor must look like 'loop:index', got {cursor!r}")
    loop, index = int(m[1]), int(m[2])
    if index >= length:
        return loop + 1, 0
    return loop, index


def _now() -> datetime:
    return datetime.now(UTC)


class DemoFollower:
    """Replays a transcript as a live hashtag stream, ``speed`` posts per second on average.
    With several tags, original post ``i`` carries tag ``i mod n``: the room shows posts
    arriving under each of its tags.

    Implements the Follower protocol: one batch per post, each with the cursor of the post
    after it, so a restart resumes with no gap and no duplicate.
    """

    def __init__(
        self,
        transcript: Transcript,
        hashtag: str | Sequence[str],
        speed: float,
        clock: Callable[[], datetime] = _now,
    ):
        if speed <= 0:
            raise ValueError("demo speed must be positive (posts per second)")
        self.transcript = transcript
        self.hashtags = [hashtag] if isinstance(hashtag, str) else list(hashtag)
        if not self.hashtags:
            raise ValueError("the demo needs a hashtag")
        self.hashtag = self.hashtags[0]
        self.speed = speed
        self.clock = clock

    async def follow(self, cursor: str | None, ctx: FollowContext) -> AsyncIterator[Batch]:
        """Yield one batch per transcript post from ``cursor`` on, looping forever."""
        posts = self.transcript.posts
        loop, index = parse_cursor(cursor, len(posts))
        ctx.report("replaying")
        clock = asyncio.get_running_loop().time
        due = clock()
        while True:
            # Deadlines rather than plain sleeps keep the average pace when the consumer is
            # slow; a consumer that fell far behind does not get a burst to catch up.
            due = max(due, clock() - 1 / self.speed) + posts[index].pause / self.speed
            await asyncio.sleep(max(0.0, due - clock()))
            post = self.build_post(loop, index)
            loop, index = (loop, index + 1) if index + 1 < len(posts) else (loop + 1, 0)
            yield Batch(changes=[Upsert(post)], cursor=f"{loop}:{index}")

    def build_post(self, loop: int, index: int) -> RemotePost:
        """The post transcript entry ``index`` becomes on pass ``loop``.

        A repost is delivered the way networks deliver boosts: the original post (same
        remote id, author and content) with ``reposted_by`` set; ``local_id`` is the id of
        this delivery.
        """
        entry = self.transcript.posts[index]
        original_index = entry.repost_of if entry.repost_of is not None else index
        original = self.transcript.posts[original_index]
        assert original.author is not None  # guaranteed by parse_transcript
        author = self.transcript.authors[original.author]
        reply_to = original.reply_to

        post = RemotePost(
            network=NETWORK,
            remote_id=self._remote_id(loop, original_index),
            local_id=self._remote_id(loop, index),
            author=_author(author),
            created_at=self.clock(),
            text=self._fill(original.text, original_index) if original.text is not None else "",
            html=self._fill(original.html, original_index) if original.html is not None else None,
            language="en",
            extra={"is_host": True} if author.is_host else {},
        )
        if reply_to is not None:
            parent = self.transcript.posts[reply_to]
            assert parent.author is not None
            post.in_reply_to = self._remote_id(loop, reply_to)
            post.reply_to_handle = self.transcript.authors[parent.author].handle
            post.thread_root = self._remote_id(loop, self._root(reply_to))
        if entry.repost_of is not None:
            assert entry.by is not None
            post.reposted_by = _author(self.transcript.authors[entry.by])
        return post

    def _root(self, index: int) -> int:
        while (parent := self.transcript.posts[index].reply_to) is not None:
            index = parent
        return index

    def _fill(self, content: str, index: int) -> str:
        return content.replace(PLACEHOLDER, self.hashtags[index % len(self.hashtags)])

    @staticmethod
    def _remote_id(loop: int, index: int) -> str:
        return f"{NETWORK}:{loop}:{index}"


def _author(a: DemoAuthor) -> Author:
    return Author(name=a.name, handle=a.handle, avatar_url=a.avatar, remote_id=f"demo:{a.key}")
