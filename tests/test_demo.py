"""The bundled demo transcript and the follower that replays it."""

from __future__ import annotations

import json
import re
import time
from contextlib import aclosing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.networks.base import Batch, Upsert
from app.networks.demo import DemoFollower, Transcript, load_transcript, parse_cursor
from app.text import contains_hashtag, html_to_text, sanitize_html

QUESTION = re.compile(r"^Q(\d+)\s*[:.)\-—–]")
FAST = 10_000.0  # posts per second: a whole loop of the transcript takes a few milliseconds


class Ctx:
    """Records what the follower tells the ingester."""

    def __init__(self) -> None:
        self.states: list[tuple[str, str | None]] = []
        self.notices: list[str] = []

    def report(self, state: str, error: str | None = None) -> None:
        self.states.append((state, error))

    def notice(self, message: str) -> None:
        self.notices.append(message)


@pytest.fixture(scope="module")
def transcript() -> Transcript:
    return load_transcript()


async def take(follower: DemoFollower, cursor: str | None, n: int) -> list[Batch]:
    batches = []
    async with aclosing(follower.follow(cursor, Ctx())) as stream:
        async for batch in stream:
            batches.append(batch)
            if len(batches) == n:
                break
    return batches


def post_of(batch: Batch):
    assert len(batch.changes) == 1
    change = batch.changes[0]
    assert isinstance(change, Upsert)
    return change.post


# --- the transcript -----------------------------------------------------------------------


def test_transcript_shape(transcript: Transcript) -> None:
    """The bundled chat has ≥ 80 posts, one host, 8+ participants and non-ASCII names."""
    assert len(transcript.posts) >= 80
    assert transcript.hashtag == "hashroomdemo"
    assert [a.key for a in transcript.authors.values() if a.is_host] == [transcript.host.key]
    assert len(transcript.authors) - 1 >= 8
    assert sum(not a.name.isascii() for a in transcript.authors.values()) >= 3
    assert all(a.avatar is None for a in transcript.authors.values())


def test_transcript_has_five_questions_in_varied_formats(transcript: Transcript) -> None:
    """The host asks Q1…Q5 in order, written in more than one format."""
    questions = [
        (p.text or "")
        for p in transcript.posts
        if p.author == transcript.host.key and QUESTION.match(p.text or "")
    ]
    assert [int(QUESTION.match(q)[1]) for q in questions] == [1, 2, 3, 4, 5]
    assert len({q[2] for q in questions}) >= 4  # ':', '.', ' ', ')' …


def test_transcript_has_answers_replies_and_reposts(transcript: Transcript) -> None:
    """Answers with and without prefixes, threaded replies and reposts are all present."""
    texts = [p.text or html_to_text(p.html or "") for p in transcript.posts]
    assert sum(bool(re.match(r"A\d:", t)) for t in texts) >= 10
    assert sum(bool(re.match(r"A\d ", t)) for t in texts) >= 5
    replies = [p for p in transcript.posts if p.reply_to is not None]
    assert len(replies) >= 60
    assert any(transcript.posts[p.reply_to].reply_to is not None for p in replies)  # nesting
    assert sum(p.repost_of is not None for p in transcript.posts) >= 3
    assert any("@" in t and re.search(r"@\w+@\w", t) for t in texts)
    assert any("#permaculture" in t for t in texts)
    assert any("https://" in t for t in texts)


def test_transcript_has_varied_emoji(transcript: Transcript) -> None:
    """ZWJ sequences, flags and skin tones appear, so grapheme handling is exercised."""
    blob = json.dumps([p.text or p.html for p in transcript.posts], ensure_ascii=False)
    assert "\u200d" in blob  # zero-width joiner sequences (families, farmer…)
    assert re.search("[\U0001f1e6-\U0001f1ff]{2}", blob)  # regional-indicator flags
    assert re.search("[\U0001f3fb-\U0001f3ff]", blob)  # skin-tone modifiers


def test_transcript_carries_hostile_payloads(transcript: Transcript) -> None:
    """The demo ships real attack markup, and sanitizing leaves none of it."""
    raw = " ".join(p.html for p in transcript.posts if p.html)
    for payload in (
        "<script>",
        "onerror=",
        'href="javascript:',
        "<svg onload=",
        "<iframe",
        "style=",
    ):
        assert payload in raw, payload
    for post in transcript.posts:
        if post.html:
            clean = sanitize_html(post.html).lower()
            assert "<script" not in clean and "javascript:" not in clean
            assert "onerror" not in clean and "<iframe" not in clean and "style=" not in clean


def test_every_post_carries_the_chat_tag(transcript: Transcript) -> None:
    """After substitution every post carries the room's hashtag, as a real chat would."""
    follower = DemoFollower(transcript, "GardenChat", FAST)
    for i in range(len(transcript.posts)):
        post = follower.build_post(0, i)
        text = html_to_text(sanitize_html(post.html)) if post.html else post.text
        assert contains_hashtag(text, "gardenchat"), (i, text)
        assert "{tag}" not in text


@pytest.mark.parametrize(
    ("posts", "message"),
    [
        ([{"author": "h", "text": "a"}, {"author": "h", "text": "b", "reply_to": 1}], "post 1"),
        ([{"author": "h", "text": "a", "reply_to": 3}], "post 0"),
        ([{"author": "h", "text": "a"}, {"author": "h", "text": "b", "reply_to": -1}], "post 1"),
        ([{"author": "h", "text": "a"}, {"repost_of": 2, "by": "h"}], "post 1"),
        ([{"author": "h", "text": "a"}, {"repost_of": 0, "by": "nobody"}], "post 1"),
        (
            [
                {"author": "h", "text": "a"},
                {"repost_of": 0, "by": "h"},
                {"repost_of": 1, "by": "h"},
            ],
            "post 2",
        ),
        ([{"author": "h", "text": "a"}, {"author": "x", "text": "b"}], "post 1"),
        ([{"author": "h", "text": "a", "html": "<p>a</p>"}], "post 0"),
        ([{"author": "h"}], "post 0"),
        ([{"author": "h", "text": "a", "pause": 0}], "post 0"),
    ],
)
def test_load_transcript_names_bad_post(tmp_path: Path, posts: list, message: str) -> None:
    """Broken references, unknown authors or bad content raise ValueError naming the post."""
    path = tmp_path / "chat.json"
    doc = {"title": "t", "authors": {"h": {"name": "H", "handle": "@h", "is_host": True}}}
    path.write_text(json.dumps({**doc, "posts": posts}), encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_transcript(path)


def test_load_transcript_needs_one_host(tmp_path: Path) -> None:
    """A transcript without exactly one host is refused."""
    path = tmp_path / "chat.json"
    doc = {"authors": {"a": {"name": "A", "handle": "@a"}}, "posts": [{"author": "a", "text": "x"}]}
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ValueError, match="exactly one host"):
        load_transcript(path)


# --- the follower -------------------------------------------------------------------------


async def test_follower_yields_posts_in_order(transcript: Transcript) -> None:
    """Batches carry one post each, in transcript order, with the next post's cursor."""
    follower = DemoFollower(transcript, "GardenChat", FAST)
    batches = await take(follower, None, 12)
    assert [b.cursor for b in batches] == [f"0:{i + 1}" for i in range(12)]
    posts = [post_of(b) for b in batches]
    first = transcript.posts[0]
    assert posts[0].remote_id == "demo:0:0"
    assert posts[0].network == "demo"
    assert posts[0].author.handle == transcript.authors[first.author].handle == "@maya"
    assert posts[0].extra == {"is_host": True}
    assert posts[0].text == first.text.replace("{tag}", "GardenChat")
    assert "#GardenChat" in posts[0].text and posts[0].html is None
    assert all(p.created_at.tzinfo is not None for p in posts)
    for i, (entry, post) in enumerate(zip(transcript.posts, posts, strict=False)):
        if entry.repost_of is None:
            assert post.remote_id == f"demo:0:{i}"
        if entry.author and entry.author != transcript.host.key:
            assert post.extra == {}


async def test_follower_reports_replaying() -> None:
    """The follower tells the ingester it is replaying before the first post."""
    ctx = Ctx()
    follower = DemoFollower(load_transcript(), "t", FAST)
    async with aclosing(follower.follow(None, ctx)) as stream:
        await anext(stream)
    assert ctx.states[0] == ("replaying", None)


async def test_follower_gives_replies_and_html(transcript: Transcript) -> None:
    """Replies point at their parent in the same loop; HTML posts keep HTML, tag filled in."""
    i = next(i for i, p in enumerate(transcript.posts) if p.html and p.reply_to is not None)
    entry = transcript.posts[i]
    follower = DemoFollower(transcript, "GardenChat", FAST, clock=lambda: datetime(2030, 1, 1))
    post = follower.build_post(3, i)
    parent = transcript.posts[entry.reply_to]
    assert post.in_reply_to == f"demo:3:{entry.reply_to}"
    assert post.reply_to_handle == transcript.authors[parent.author].handle
    assert post.thread_root is not None and post.thread_root.startswith("demo:3:")
    assert post.html == entry.html.replace("{tag}", "GardenChat") and post.text == ""
    assert post.created_at == datetime(2030, 1, 1)


async def test_follower_delivers_reposts_as_the_original(transcript: Transcript) -> None:
    """A repost is the original post (id, author, content) with reposted_by set."""
    i = next(i for i, p in enumerate(transcript.posts) if p.repost_of is not None)
    entry = transcript.posts[i]
    original = transcript.posts[entry.repost_of]
    follower = DemoFollower(transcript, "GardenChat", FAST)
    post = follower.build_post(2, i)
    assert post.remote_id == f"demo:2:{entry.repost_of}"
    assert post.local_id == f"demo:2:{i}"
    assert post.author.handle == transcript.authors[original.author].handle
    assert post.reposted_by is not None
    assert post.reposted_by.handle == transcript.authors[entry.by].handle
    assert (post.text or post.html) == (original.text or original.html).replace(
        "{tag}", "GardenChat"
    )


async def test_follower_resumes_from_cursor_without_gap_or_duplicate(
    transcript: Transcript,
) -> None:
    """Take 5, restart from the returned cursor: the next post is the 6th, nothing repeats."""
    follower = DemoFollower(transcript, "t", FAST)
    first = await take(follower, None, 5)
    assert first[-1].cursor == "0:5"
    resumed = await take(follower, first[-1].cursor, 5)
    straight = await take(follower, None, 10)
    ids = [post_of(b).remote_id for b in first + resumed]
    assert ids[5] == "demo:0:5"
    assert ids == [post_of(b).remote_id for b in straight]
    assert len(set(ids)) == 10


async def test_follower_loops_forever_with_new_ids(transcript: Transcript) -> None:
    """After the last post the replay starts over as loop 1, with fresh remote ids."""
    n = len(transcript.posts)
    follower = DemoFollower(transcript, "t", FAST)
    batches = await take(follower, f"0:{n - 2}", 4)
    assert [b.cursor for b in batches] == [f"0:{n - 1}", "1:0", "1:1", "1:2"]
    assert [post_of(b).remote_id for b in batches] == [
        f"demo:0:{n - 2}",
        f"demo:0:{n - 1}",
        "demo:1:0",
        "demo:1:1",
    ]
    whole = await take(follower, "7:0", n + 1)
    assert post_of(whole[-1]).remote_id == "demo:8:0"
    replies = [post_of(b) for b in whole if post_of(b).in_reply_to]
    assert replies and all(p.in_reply_to.startswith("demo:7:") for p in replies)


def test_parse_cursor() -> None:
    """Cursors parse as loop:index; past the end moves to the next loop; junk is refused."""
    assert parse_cursor(None, 10) == (0, 0)
    assert parse_cursor("3:4", 10) == (3, 4)
    assert parse_cursor("3:10", 10) == (4, 0)
    assert parse_cursor("3:99", 10) == (4, 0)
    for bad in ("", "3", "a:b", "-1:0", "1:2:3", " 1:2"):
        with pytest.raises(ValueError, match="loop:index"):
            parse_cursor(bad, 10)


def test_follower_refuses_non_positive_speed(transcript: Transcript) -> None:
    """A zero or negative speed is a configuration error, refused up front."""
    with pytest.raises(ValueError, match="positive"):
        DemoFollower(transcript, "t", 0)


async def test_follower_paces_at_speed(transcript: Transcript) -> None:
    """Posts arrive at about ``speed`` per second, stretched by each post's pause."""
    speed = 100.0
    n = 20
    expected = sum(p.pause for p in transcript.posts[:n]) / speed
    follower = DemoFollower(transcript, "t", speed)
    start = time.monotonic()
    await take(follower, None, n)
    elapsed = time.monotonic() - start
    assert expected * 0.9 <= elapsed <= expected * 1.5 + 0.15, (expected, elapsed)


async def test_follower_honours_pause(transcript: Transcript) -> None:
    """A post with a long pause (the host's question) waits that much longer."""
    i = next(i for i, p in enumerate(transcript.posts) if p.pause >= 3)
    speed = 50.0
    follower = DemoFollower(transcript, "t", speed)
    stamps = []
    async with aclosing(follower.follow(f"0:{i - 1}", Ctx())) as stream:
        async for _ in stream:
            stamps.append(time.monotonic())
            if len(stamps) == 2:
                break
    gap = stamps[1] - stamps[0]
    want = transcript.posts[i].pause / speed
    assert want * 0.9 <= gap <= want + 0.1, (want, gap)


def test_created_at_defaults_to_now_utc(transcript: Transcript) -> None:
    """Without a clock, posts are stamped with the current UTC time."""
    before = datetime.now(UTC)
    post = DemoFollower(transcript, "t", FAST).build_post(0, 0)
    assert before <= post.created_at <= datetime.now(UTC)
    assert post.created_at.utcoffset().total_seconds() == 0


def test_several_tags_take_turns_and_every_post_carries_one(transcript: Transcript) -> None:
    """With several tags each post carries one of them, and every tag is used."""
    tags = ["OneChat", "TwoChat"]
    follower = DemoFollower(transcript, tags, speed=1000)
    used = set()
    for i in range(len(transcript.posts)):
        post = follower.build_post(0, i)
        content = post.text or html_to_text(sanitize_html(post.html or ""))
        carried = [tag for tag in tags if contains_hashtag(content, tag)]
        assert carried, f"post {i} carries none of {tags}"
        used.update(carried)
    assert used == set(tags)
