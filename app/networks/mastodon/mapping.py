"""Mastodon statuses and accounts as :class:`~app.networks.base.RemotePost` and
:class:`~app.networks.base.Author`, plus the tolerant readers of JSON fields the other
Mastodon modules share.

Every field of a response is treated as optional: most fediverse servers implement the
Mastodon client API, each a little differently.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from app.networks.base import Author, Media, RemotePost
from app.qa import question_number
from app.text import html_to_text

NETWORK = "mastodon"

# These passes run on the event loop, before the room caps a post: the question check reads
# only the opening of a status (a marker opens it) and a quoted post keeps a preview's worth,
# so a megabyte of hostile markup costs what a normal post does.
QUESTION_PEEK = 2000
QUOTE_HTML_LIMIT = 10000


def str_or_none(value: Any) -> str | None:
    """``value`` as a non-empty string, or None (ids arrive as strings, numbers or null)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float | str):
        text = str(value).strip()
        return text or None
    return None


def dict_or_empty(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty dict."""
    return value if isinstance(value, dict) else {}


def list_or_empty(value: Any) -> list[Any]:
    """``value`` when it is a JSON array, else an empty list."""
    return value if isinstance(value, list) else []


def parse_datetime(value: Any) -> datetime | None:
    """An ISO-8601 timestamp as an aware datetime (naive ones are UTC); None when unusable."""
    text = str_or_none(value)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def domain_of(instance: str) -> str:
    """The host of ``instance``, given as a bare domain or a URL."""
    instance = instance.strip()
    if "://" in instance:
        return urlsplit(instance).netloc or instance
    return instance.strip("/")


def _handle(account: dict[str, Any], domain: str) -> str:
    """ "@user@domain" for any account: local accounts' ``acct`` lacks the domain."""
    acct = str_or_none(account.get("acct")) or str_or_none(account.get("username")) or "unknown"
    acct = acct.lstrip("@")
    if "@" not in acct and domain:
        acct = f"{acct}@{domain}"
    return "@" + acct


def parse_account(account: Any, instance: str) -> Author:
    """A Mastodon Account entity as an :class:`Author`.

    ``instance`` is the domain (or base URL) of the server that delivered it, used to complete
    local accounts' handles. ``remote_id`` is the account's ActivityPub ``uri`` when given,
    else its profile ``url`` — both the same wherever the account is seen.
    """
    data = dict_or_empty(account)
    domain = domain_of(instance)
    handle = _handle(data, domain)
    name = (
        str_or_none(data.get("display_name"))
        or str_or_none(data.get("username"))
        or handle.lstrip("@")
    )
    profile_url = str_or_none(data.get("url"))
    return Author(
        name=name,
        handle=handle,
        avatar_url=str_or_none(data.get("avatar")) or str_or_none(data.get("avatar_static")),
        profile_url=profile_url,
        remote_id=str_or_none(data.get("uri")) or profile_url,
    )


def _media(items: Any) -> list[Media]:
    media: list[Media] = []
    for item in list_or_empty(items):
        entry = dict_or_empty(item)
        # A remote attachment not yet cached locally has url null and only remote_url.
        url = str_or_none(entry.get("url")) or str_or_none(entry.get("remote_url"))
        if url is None:
            continue
        kind = str_or_none(entry.get("type")) or "unknown"
        media.append(
            Media(
                url=url,
                preview_url=str_or_none(entry.get("preview_url")),
                alt=str_or_none(entry.get("description")),
                kind=kind if kind in {"image", "video", "gifv", "audio"} else "unknown",
            )
        )
    return media


def _quote(status: dict[str, Any], domain: str) -> dict[str, Any] | None:
    """The quoted post of a 4.4+ quote (only when the quote was accepted and is embedded)."""
    quote_info = dict_or_empty(status.get("quote"))
    quoted = dict_or_empty(quote_info.get("quoted_status"))
    if quote_info.get("state") not in (None, "accepted") or not quoted:
        return None
    author = parse_account(quoted.get("account"), domain)
    return {
        "url": str_or_none(quoted.get("url")) or str_or_none(quoted.get("uri")),
        "author": author.handle,
        "text": html_to_text((str_or_none(quoted.get("content")) or "")[:QUOTE_HTML_LIMIT]),
    }


def opens_with_question(html: str) -> bool:
    """True when a status's HTML opens with a question marker ("Q1: …"). Reads only the
    opening :data:`QUESTION_PEEK` characters, so it costs the same on any size of post."""
    return question_number(html_to_text(html[:QUESTION_PEEK])) is not None


def parse_status(data: dict[str, Any], instance: str) -> RemotePost:
    """Map a Mastodon Status entity to a :class:`RemotePost`.

    ``instance`` is the domain (or base URL) of the server that delivered the status; it
    completes local accounts' handles ("@alice" → "@alice@instance").

    Guarantees: ``remote_id`` is the ActivityPub ``uri`` (falling back to ``url``), the same
    on every instance; ``local_id`` is this instance's ``id``. A boost maps to the boosted
    status itself (its uri, ids, content) with ``reposted_by`` set, and the boost's own id in
    ``extra["boost_local_id"]``. ``in_reply_to_id`` is instance-local, so it goes to
    ``extra["in_reply_to_local_id"]`` (``in_reply_to`` stays None); ``reply_to_handle`` is
    found among the mentions. ``extra["tags"]`` holds the lower-cased tag names. ``html`` is
    the server's content, unsanitized. Missing or null fields get neutral defaults.

    Raises ValueError when the status has neither ``uri``, ``url`` nor ``id``.
    """
    if not isinstance(data, dict):
        raise ValueError("a status must be a JSON object")
    domain = domain_of(instance)
    inner = data.get("reblog")
    if isinstance(inner, dict):
        post = parse_status(inner, instance)
        post.reposted_by = parse_account(data.get("account"), domain)
        boost_id = str_or_none(data.get("id"))
        if boost_id is not None:
            post.extra["boost_local_id"] = boost_id
        return post

    local_id = str_or_none(data.get("id"))
    url = str_or_none(data.get("url"))
    remote_id = str_or_none(data.get("uri")) or url
    if remote_id is None:
        if local_id is None:
            raise ValueError("status has no uri, url or id")
        remote_id = f"https://{domain}/api/v1/statuses/{local_id}"

    account = dict_or_empty(data.get("account"))
    author = parse_account(account, domain)

    extra: dict[str, Any] = {
        "tags": [
            name.lower()
            for tag in list_or_empty(data.get("tags"))
            if (name := str_or_none(dict_or_empty(tag).get("name"))) is not None
        ]
    }
    visibility = str_or_none(data.get("visibility"))
    if visibility:
        extra["visibility"] = visibility

    reply_to_handle = None
    parent_id = str_or_none(data.get("in_reply_to_id"))
    if parent_id is not None:
        extra["in_reply_to_local_id"] = parent_id
        parent_account = str_or_none(data.get("in_reply_to_account_id"))
        if parent_account is not None:
            if parent_account == str_or_none(account.get("id")):
                reply_to_handle = author.handle
            for mention in list_or_empty(data.get("mentions")):
                mention = dict_or_empty(mention)
                if str_or_none(mention.get("id")) == parent_account:
                    reply_to_handle = _handle(mention, domain)
                    break

    return RemotePost(
        network=NETWORK,
        remote_id=remote_id,
        local_id=local_id,
        author=author,
        created_at=parse_datetime(data.get("created_at")) or datetime.now(UTC),
        html=str_or_none(data.get("content")) or "",
        url=url,
        reply_to_handle=reply_to_handle,
        spoiler_text=str_or_none(data.get("spoiler_text")) or "",
        sensitive=data.get("sensitive") is True,
        media=_media(data.get("media_attachments")),
        language=str_or_none(data.get("language")),
        quote=_quote(data, domain),
        edited_at=parse_datetime(data.get("edited_at")),
        extra=extra,
    )
