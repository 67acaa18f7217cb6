"""Bluesky post records and AppView post views as :class:`~app.networks.base.RemotePost`:
``at://`` uris and bsky.app links, whether a record carries a hashtag, media and quotes, and
the timestamps the other Bluesky modules share."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from app.text import contains_any_hashtag, tag_key

from ..atproto_identity import BSKY_PROFILE_URL, blob_cid, blob_url, fallback_author
from ..atproto_richtext import FACET_TAG, render_post_html
from ..base import Author, Media, RemotePost

NETWORK = "bluesky"
POST_COLLECTION = "app.bsky.feed.post"
CDN_FULLSIZE_URL = "https://cdn.bsky.app/img/feed_fullsize/plain/{did}/{cid}@jpeg"
CDN_THUMB_URL = "https://cdn.bsky.app/img/feed_thumbnail/plain/{did}/{cid}@jpeg"
VIDEO_PLAYLIST_URL = "https://video.bsky.app/watch/{did}/{cid}/playlist.m3u8"
VIDEO_THUMB_URL = "https://video.bsky.app/watch/{did}/{cid}/thumbnail.jpg"
POST_URL = "https://bsky.app/profile/{actor}/post/{rkey}"

# A createdAt later than this is a wrong clock or a trick to stay on top of the column.
_FUTURE_TOLERANCE = timedelta(minutes=5)


def matches_tag(record: Any, tag: str | Iterable[str]) -> bool:
    """True when a post record carries ``tag`` — or any of several (case-insensitive, '#'
    optional): a ``#tag`` facet, an entry of its ``tags`` field, or ``#tag`` written as a
    whole tag in its text (``#tagger`` does not carry ``tag``)."""
    if not isinstance(record, dict):
        return False
    keys = {tag_key(t) for t in ([tag] if isinstance(tag, str) else tag)} - {""}
    if not keys:
        return False
    facets = record.get("facets")
    for facet in facets if isinstance(facets, list) else []:
        features = facet.get("features") if isinstance(facet, dict) else None
        for feature in features if isinstance(features, list) else []:
            if (
                isinstance(feature, dict)
                and feature.get("$type") == FACET_TAG
                and isinstance(feature.get("tag"), str)
                and tag_key(feature["tag"]) in keys
            ):
                return True
    tags = record.get("tags")
    for extra in tags if isinstance(tags, list) else []:
        if isinstance(extra, str) and tag_key(extra) in keys:
            return True
    text = record.get("text")
    return isinstance(text, str) and contains_any_hashtag(text, keys)


def post_uri(did: str, rkey: str) -> str:
    """The ``at://`` uri of post ``rkey`` in ``did``'s repo (the post's remote id)."""
    return f"at://{did}/{POST_COLLECTION}/{rkey}"


def parse_post_uri(uri: Any) -> tuple[str, str] | None:
    """(did, rkey) of an ``at://did/app.bsky.feed.post/rkey`` uri, else None."""
    if not isinstance(uri, str) or not uri.startswith("at://"):
        return None
    parts = uri[5:].split("/")
    if len(parts) != 3 or parts[1] != POST_COLLECTION or not parts[0].startswith("did:"):
        return None
    if not parts[2]:
        return None
    return parts[0], parts[2]


def post_url(did: str, rkey: str) -> str:
    """The post's page on bsky.app (by DID: handles change, DIDs do not)."""
    return POST_URL.format(actor=quote(did, safe=":"), rkey=quote(rkey, safe=""))


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _created_at(record: dict[str, Any], fallback: datetime | None = None) -> datetime:
    now = datetime.now(UTC)
    created = _parse_time(record.get("createdAt")) or fallback or now
    return now if created > now + _FUTURE_TOLERANCE else created


def strong_ref(value: Any) -> dict[str, str] | None:
    if isinstance(value, dict) and isinstance(value.get("uri"), str):
        if value["uri"].startswith("at://") and isinstance(value.get("cid"), str):
            return {"uri": value["uri"], "cid": value["cid"]}
    return None


def _media(did: str, embed: Any, pds_url: str | None) -> list[Media]:
    if not isinstance(embed, dict):
        return []
    kind = embed.get("$type")
    if kind == "app.bsky.embed.recordWithMedia":
        return _media(did, embed.get("media"), pds_url)
    found = []
    if kind == "app.bsky.embed.images":
        images = embed.get("images")
        for image in images[:4] if isinstance(images, list) else []:
            if not isinstance(image, dict):
                continue
            cid = blob_cid(image.get("image"))
            if not cid:
                continue
            alt = image.get("alt") if isinstance(image.get("alt"), str) else None
            found.append(
                Media(
                    url=blob_url(did, cid, pds_url, CDN_FULLSIZE_URL),
                    preview_url=blob_url(did, cid, pds_url, CDN_THUMB_URL),
                    alt=alt or None,
                    kind="image",
                )
            )
    elif kind == "app.bsky.embed.video":
        cid = blob_cid(embed.get("video"))
        if cid:
            alt = embed.get("alt") if isinstance(embed.get("alt"), str) else None
            found.append(
                Media(
                    url=blob_url(did, cid, pds_url, VIDEO_PLAYLIST_URL),
                    preview_url=None if pds_url else blob_url(did, cid, None, VIDEO_THUMB_URL),
                    alt=alt or None,
                    kind="video",
                )
            )
    return found


def _quote(embed: Any) -> dict[str, Any] | None:
    if not isinstance(embed, dict):
        return None
    ref = None
    if embed.get("$type") == "app.bsky.embed.record":
        ref = strong_ref(embed.get("record"))
    elif embed.get("$type") == "app.bsky.embed.recordWithMedia":
        inner = embed.get("record")
        ref = strong_ref(inner.get("record")) if isinstance(inner, dict) else None
    if ref is None:
        return None
    parsed = parse_post_uri(ref["uri"])
    return {
        "uri": ref["uri"],
        "url": post_url(*parsed) if parsed else None,
        "author": None,
        "text": None,
    }


def record_to_post(
    did: str,
    rkey: str,
    cid: str | None,
    record: dict[str, Any],
    *,
    author: Author | None = None,
    handle: str | None = None,
    pds_url: str | None = None,
    indexed_at: datetime | None = None,
) -> RemotePost:
    """A post record as a :class:`RemotePost`.

    ``remote_id`` is the ``at://`` uri; ``html`` the text with its facets applied
    (:func:`render_post_html`, everything escaped); ``created_at`` the record's ``createdAt``
    (``indexed_at`` or now when missing or unreadable, now when in the future);
    ``in_reply_to``/``thread_root`` the reply's parent and root uris; media blobs link to
    ``getBlob`` on ``pds_url`` when given, else to the Bluesky CDN. ``extra`` keeps ``cid``,
    ``did``, ``rkey``, ``reply`` (root and parent uri + cid, to reply in the same thread) and
    ``tags``. Without ``author`` the DID (or ``handle``) stands in. Raises ValueError when
    ``record`` is not an object.
    """
    if not isinstance(record, dict):
        raise ValueError("a post record must be a JSON object")
    text = record.get("text") if isinstance(record.get("text"), str) else ""
    reply = record.get("reply") if isinstance(record.get("reply"), dict) else {}
    root, parent = strong_ref(reply.get("root")), strong_ref(reply.get("parent"))
    langs = record.get("langs")
    language = langs[0] if isinstance(langs, list) and langs and isinstance(langs[0], str) else None
    extra: dict[str, Any] = {"cid": cid, "did": did, "rkey": rkey}
    if root and parent:
        extra["reply"] = {"root": root, "parent": parent}
    tags = record.get("tags")
    if isinstance(tags, list):
        extra["tags"] = [t for t in tags if isinstance(t, str)][:8]
    return RemotePost(
        network=NETWORK,
        remote_id=post_uri(did, rkey),
        author=author or fallback_author(did, handle),
        created_at=_created_at(record, indexed_at),
        text=text,
        html=render_post_html(text, record.get("facets")),
        url=post_url(did, rkey),
        in_reply_to=parent["uri"] if parent else None,
        thread_root=root["uri"] if root else None,
        media=_media(did, record.get("embed"), pds_url),
        language=language[:16] if language else None,
        quote=_quote(record.get("embed")),
        extra=extra,
    )


def _author_from_view(view: Any, did: str) -> Author:
    if not isinstance(view, dict) or view.get("did") != did:
        return fallback_author(did)
    handle = view.get("handle") if isinstance(view.get("handle"), str) else None
    if handle == "handle.invalid":
        handle = None
    name = view.get("displayName") if isinstance(view.get("displayName"), str) else ""
    avatar = view.get("avatar")
    return Author(
        name=name.strip() or handle or did,
        handle=f"@{handle}" if handle else did,
        avatar_url=avatar if isinstance(avatar, str) and avatar.startswith("https://") else None,
        profile_url=BSKY_PROFILE_URL.format(did=quote(did, safe=":")),
        remote_id=did,
    )


def _view_media(embed: Any) -> list[Media]:
    """Media of an embed *view* (AppView answers carry ready CDN URLs)."""
    if not isinstance(embed, dict):
        return []
    if embed.get("$type") == "app.bsky.embed.recordWithMedia#view":
        return _view_media(embed.get("media"))
    if embed.get("$type") != "app.bsky.embed.images#view":
        return []
    found = []
    images = embed.get("images")
    for image in images[:4] if isinstance(images, list) else []:
        if isinstance(image, dict) and isinstance(image.get("fullsize"), str):
            thumb = image.get("thumb") if isinstance(image.get("thumb"), str) else None
            alt = image.get("alt") if isinstance(image.get("alt"), str) else None
            found.append(Media(url=image["fullsize"], preview_url=thumb, alt=alt or None))
    return found


def post_view_to_post(view: Any, *, pds_url: str | None = None) -> RemotePost | None:
    """An AppView ``postView`` (``{uri, cid, author, record, embed, indexedAt}``) as a
    :class:`RemotePost` with the full author; None when it is not a usable post view."""
    if not isinstance(view, dict):
        return None
    parsed = parse_post_uri(view.get("uri"))
    record = view.get("record")
    if parsed is None or not isinstance(record, dict):
        return None
    did, rkey = parsed
    cid = view.get("cid") if isinstance(view.get("cid"), str) else None
    post = record_to_post(
        did,
        rkey,
        cid,
        record,
        author=_author_from_view(view.get("author"), did),
        pds_url=pds_url,
        indexed_at=_parse_time(view.get("indexedAt")),
    )
    media = _view_media(view.get("embed"))
    if media:
        post.media = media
    return post


def rfc3339(moment: datetime) -> str:
    """``moment`` in UTC as RFC 3339 with milliseconds ("2024-05-01T12:00:00.000Z")."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
