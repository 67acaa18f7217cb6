"""X posts as :class:`~app.networks.base.RemotePost`: a post with the ``includes`` beside
it (users, quoted and replied-to posts, media), its text rendered to HTML and to plain text
from the entities (offsets count code points, like Python strings)."""

from __future__ import annotations

import contextlib
import html
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..base import Author, Media, RemotePost

NETWORK = "x"
WEB_URL = "https://x.com"


@dataclass(slots=True)
class Includes:
    """``includes`` of a response, indexed by id."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    tweets: dict[str, dict[str, Any]] = field(default_factory=dict)
    media: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, body: dict[str, Any]) -> Includes:
        inc = body.get("includes") if isinstance(body.get("includes"), dict) else {}
        return cls(
            users=_index(inc.get("users"), "id"),
            tweets=_index(inc.get("tweets"), "id"),
            media=_index(inc.get("media"), "media_key"),
        )


def _index(items: Any, key: str) -> dict[str, dict[str, Any]]:
    if not isinstance(items, list):
        return {}
    return {str(i[key]): i for i in items if isinstance(i, dict) and isinstance(i.get(key), str)}


def _parse_time(value: Any) -> datetime:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return datetime.now(UTC)


def author_of(user: dict[str, Any] | None, user_id: str | None) -> Author:
    """An :class:`Author` from an ``includes.users`` entry (or a placeholder by id)."""
    if not user:
        return Author(name="", handle=f"user {user_id or '?'}", remote_id=user_id)
    username = str(user.get("username") or "")[:100]
    avatar = user.get("profile_image_url")
    return Author(
        name=str(user.get("name") or username)[:200],
        handle=f"@{username}" if username else f"user {user.get('id')}",
        avatar_url=avatar if isinstance(avatar, str) else None,
        profile_url=f"{WEB_URL}/{username}" if username else None,
        remote_id=str(user.get("id") or user_id or "") or None,
    )


def permalink(tweet_id: str, username: str | None) -> str:
    return f"{WEB_URL}/{username or 'i/web'}/status/{tweet_id}"


def _text_and_entities(tweet: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A long post's full text lives in ``note_tweet``; ``text`` is its first 280."""
    note = tweet.get("note_tweet")
    if isinstance(note, dict) and isinstance(note.get("text"), str):
        ents = note.get("entities") if isinstance(note.get("entities"), dict) else {}
        return note["text"], ents
    ents = tweet.get("entities") if isinstance(tweet.get("entities"), dict) else {}
    return str(tweet.get("text") or ""), ents


def render_html(text: str, entities: dict[str, Any]) -> str:
    """The post as HTML: links shown by their display URL and pointing at the expanded URL,
    hashtags and mentions marked up, media links (shown as attachments) dropped, everything
    else escaped. Linear in the text; entities that overlap or fall outside it are ignored."""
    marks: list[tuple[int, int, str]] = []
    for url in entities.get("urls") or []:
        if not isinstance(url, dict):
            continue
        start, end = url.get("start"), url.get("end")
        if not isinstance(start, int) or not isinstance(end, int):
            continue
        if url.get("media_key"):
            marks.append((start, end, ""))
            continue
        href = url.get("expanded_url") or url.get("url")
        shown = url.get("display_url") or href
        if not isinstance(href, str) or not href.startswith(("https://", "http://")):
            continue
        marks.append(
            (
                start,
                end,
                f'<a href="{html.escape(href)}" rel="nofollow noopener noreferrer" '
                f'target="_blank">{html.escape(str(shown))}</a>',
            )
        )
    for tag in entities.get("hashtags") or []:
        if isinstance(tag, dict) and isinstance(tag.get("start"), int):
            name = html.escape(str(tag.get("tag", "")))
            marks.append(
                (
                    tag["start"],
                    tag.get("end", 0),
                    f'<span class="hashtag">#<span>{name}</span></span>',
                )
            )
    for mention in entities.get("mentions") or []:
        if isinstance(mention, dict) and isinstance(mention.get("start"), int):
            name = html.escape(str(mention.get("username", "")))
            marks.append(
                (
                    mention["start"],
                    mention.get("end", 0),
                    f'<a href="{WEB_URL}/{name}" class="u-url mention" rel="nofollow noopener '
                    f'noreferrer" target="_blank">@<span>{name}</span></a>',
                )
            )
    marks.sort(key=lambda m: m[0])
    out: list[str] = []
    pos = 0
    for start, end, markup in marks:
        if not isinstance(end, int) or start < pos or end <= start or end > len(text):
            continue  # overlapping or out of range: keep the plain text
        out.append(html.escape(text[pos:start]))
        out.append(markup)
        pos = end
    out.append(html.escape(text[pos:]))
    body = "".join(out).strip().replace("\n", "<br>")
    return f"<p>{body}</p>" if body else ""


def plain_text(text: str, entities: dict[str, Any]) -> str:
    """The text with t.co links replaced by their expanded URLs (media links dropped)."""
    subs = []
    for url in entities.get("urls") or []:
        if (
            isinstance(url, dict)
            and isinstance(url.get("start"), int)
            and isinstance(url.get("end"), int)
        ):
            subs.append(
                (
                    url["start"],
                    url["end"],
                    ""
                    if url.get("media_key")
                    else str(url.get("expanded_url") or url.get("url") or ""),
                )
            )
    subs.sort()
    out, pos = [], 0
    for start, end, value in subs:
        if start < pos or end > len(text):
            continue
        out.append(text[pos:start])
        out.append(value)
        pos = end
    out.append(text[pos:])
    return "".join(out).strip()


def map_tweet(tweet: dict[str, Any], inc: Includes) -> RemotePost | None:
    """A post from ``data`` with its ``includes``; None when it has no usable id.

    A repost maps to the original post with ``reposted_by`` set; a quote carries the quoted
    post's author and text; a reply names its parent (``replied_to``) and the thread's first
    post (``conversation_id``).
    """
    tweet_id = tweet.get("id")
    if not isinstance(tweet_id, str) or not tweet_id.isdigit():
        return None
    refs = {
        r.get("type"): str(r.get("id"))
        for r in tweet.get("referenced_tweets") or []
        if isinstance(r, dict) and isinstance(r.get("id"), str)
    }
    author_id = str(tweet.get("author_id") or "")
    author = author_of(inc.users.get(author_id), author_id)
    if "retweeted" in refs:
        original = inc.tweets.get(refs["retweeted"])
        if original is None:
            return None
        post = map_tweet(original, inc)
        if post is not None:
            post.reposted_by = author
            post.extra["repost_id"] = tweet_id
        return post
    text, entities = _text_and_entities(tweet)
    media = []
    attachments = tweet.get("attachments") if isinstance(tweet.get("attachments"), dict) else {}
    for key in attachments.get("media_keys") or []:
        item = inc.media.get(str(key))
        if not item:
            continue
        url = item.get("url") or item.get("preview_image_url")
        if isinstance(url, str):
            kind = {"photo": "image", "video": "video", "animated_gif": "gifv"}.get(
                str(item.get("type")), "unknown"
            )
            alt = item.get("alt_text")
            media.append(
                Media(
                    url=url,
                    preview_url=item.get("preview_image_url") or url,
                    alt=alt if isinstance(alt, str) else None,
                    kind=kind,
                )
            )
    quote = None
    if "quoted" in refs:
        quoted = inc.tweets.get(refs["quoted"])
        q_user = inc.users.get(str(quoted.get("author_id"))) if quoted else None
        q_author = author_of(q_user, str(quoted.get("author_id")) if quoted else None)
        q_text, q_ents = _text_and_entities(quoted) if quoted else ("", {})
        quote = {
            "url": permalink(refs["quoted"], (q_user or {}).get("username")),
            "author": q_author.name or q_author.handle if quoted else "",
            "text": plain_text(q_text, q_ents)[:1000],
        }
    reply_to_handle = None
    reply_user = inc.users.get(str(tweet.get("in_reply_to_user_id") or ""))
    if reply_user and reply_user.get("username"):
        reply_to_handle = f"@{reply_user['username']}"
    username = (inc.users.get(author_id) or {}).get("username")
    conversation = tweet.get("conversation_id")
    lang = tweet.get("lang")
    return RemotePost(
        network=NETWORK,
        remote_id=tweet_id,
        author=author,
        created_at=_parse_time(tweet.get("created_at")),
        text=plain_text(text, entities),
        html=render_html(text, entities),
        url=permalink(tweet_id, username),
        in_reply_to=refs.get("replied_to"),
        reply_to_handle=reply_to_handle,
        thread_root=conversation
        if isinstance(conversation, str) and conversation != tweet_id
        else None,
        media=media,
        language=lang if isinstance(lang, str) and lang not in ("und", "zxx") else None,
        quote=quote,
        local_id=tweet_id,
        extra={"author_id": author_id} if author_id else {},
    )


def map_page(body: dict[str, Any]) -> list[RemotePost]:
    """Every post of a response's ``data`` (a list or one post), mapped with its includes."""
    data = body.get("data")
    items = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
    inc = Includes.of(body)
    return [p for t in items if isinstance(t, dict) and (p := map_tweet(t, inc)) is not None]
