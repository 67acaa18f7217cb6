"""Each chat as a Bluesky custom feed: the skeleton of its Bluesky posts, and the feed record
a moderator publishes in their own repository.

The skeleton holds the chat's visible Bluesky posts (hidden, held, deleted and pending ones
never), newest first, with the currently pinned questions first on the first page. It is
served for ``at://<publisher>/app.bsky.feed.generator/<key>`` when that record was published
from Hashroom, and for ``at://<this service's did:web>/app.bsky.feed.generator/<key>``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlmodel import Session

from .config import Settings
from .errors import Forbidden, Invalid, NotFound
from .models import Account, Chat, FeedRecord, Pin, Post
from .networks.feedgen import (
    GENERATOR_COLLECTION,
    Cursor,
    FeedError,
    did_web,
    feed_uri,
    generator_record,
    parse_feed_uri,
    record_key,
)
from .policy import visible
from .publishing import Accounts
from .rooms import Rooms, chat_hashtags

NETWORK = "bluesky"
BSKY_FEED_URL = "https://bsky.app/profile/{did}/feed/{rkey}"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
# A cursor before every post: year 9000 in microseconds, and any id.
TOP = Cursor((datetime(9000, 1, 1, tzinfo=UTC) - EPOCH) // MICROSECOND, 2**62)


def _micros(moment: datetime) -> int:
    """Exact microseconds since the epoch (a float timestamp would round)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // MICROSECOND


class Feeds:
    """Serves skeletons and publishes or removes feed records."""

    def __init__(self, rooms: Rooms, settings: Settings) -> None:
        self.rooms = rooms
        self.settings = settings

    def service_did(self) -> str:
        """This server's did:web; NotFound (saying what to set) without a public URL."""
        try:
            return did_web(self.settings.public_url)
        except ValueError as exc:
            raise NotFound(f"the feed generator is off: {exc}") from exc

    async def describe(self) -> dict[str, Any]:
        did = self.service_did()

        def fn(session: Session) -> list[str]:
            return list(session.execute(select(FeedRecord.uri).order_by(FeedRecord.id)).scalars())  # type: ignore[arg-type]

        return {"did": did, "feeds": [{"uri": uri} for uri in await self.rooms.read(fn)]}

    def _chat_for(self, session: Session, uri: str) -> Chat:
        publisher, rkey = parse_feed_uri(uri)
        row = session.execute(select(FeedRecord).where(FeedRecord.uri == uri)).scalars().first()  # type: ignore[arg-type]
        if row is not None:
            chat = session.get(Chat, row.chat_id)
            if chat is not None:
                return chat
        if publisher == self.service_did():
            for chat in session.execute(
                select(Chat).where(Chat.slug.startswith(rkey))  # type: ignore[attr-defined]
            ).scalars():
                if record_key(chat.slug) == rkey:
                    return chat
        raise FeedError("UnknownFeed", "feed: this server does not serve that feed")

    async def skeleton(self, uri: str, limit: int, cursor: str | None) -> dict[str, Any]:
        """One page of the feed. Raises :class:`FeedError` for an unknown feed or a bad
        cursor."""
        after = Cursor.decode(cursor)

        def fn(session: Session) -> dict[str, Any]:
            chat = self._chat_for(session, uri)
            base = (
                Post.chat_id == chat.id,
                Post.network == NETWORK,
                Post.pending.is_(False),  # type: ignore[attr-defined]
                *visible(),
            )
            pinned = list(
                session.execute(
                    select(Post)
                    .join(Pin, Pin.post_id == Post.id)  # type: ignore[arg-type]
                    .where(
                        *base,
                        Pin.unpinned_at.is_(None),  # type: ignore[union-attr]
                        Pin.is_question.is_(True),  # type: ignore[attr-defined]
                    )
                    .order_by(Pin.pinned_at.desc())  # type: ignore[attr-defined]
                ).scalars()
            )
            pinned_ids = {p.id for p in pinned}
            query = select(Post).where(*base)
            if pinned_ids:
                query = query.where(Post.id.not_in(pinned_ids))  # type: ignore[union-attr]
            if after is not None:
                moment = EPOCH + after.created_us * MICROSECOND
                query = query.where(
                    or_(
                        Post.created_at < moment,  # type: ignore[operator]
                        and_(Post.created_at == moment, Post.id < after.post_id),  # type: ignore[operator]
                    )
                )
            # The pinned questions open the first page and count towards its limit.
            lead = [] if after is not None else pinned[:limit]
            wanted = limit - len(lead)
            page = (
                list(
                    session.execute(
                        query.order_by(Post.created_at.desc(), Post.id.desc()).limit(wanted)  # type: ignore[attr-defined,union-attr]
                    ).scalars()
                )
                if wanted
                else []
            )
            out: dict[str, Any] = {
                "feed": [{"post": p.remote_id.split("#repost:")[0]} for p in lead + page]
            }
            if not wanted:
                out["cursor"] = TOP.encode()  # only pins fit: the next page starts at the top
            elif len(page) == wanted:
                last = page[-1]
                out["cursor"] = Cursor(_micros(last.created_at), last.id).encode()  # type: ignore[arg-type]
            return out

        return await self.rooms.read(fn)

    # -- publishing ------------------------------------------------------------------------

    async def published(self, slug: str) -> dict[str, Any] | None:
        def fn(session: Session) -> FeedRecord | None:
            chat = self.rooms.chat_by_slug(session, slug)
            return (
                session.execute(select(FeedRecord).where(FeedRecord.chat_id == chat.id))  # type: ignore[arg-type]
                .scalars()
                .first()
            )

        row = await self.rooms.read(fn)
        return _record_json(row) if row else None

    async def publish(
        self, slug: str, account: Account, accounts: Accounts, base_url: str
    ) -> dict[str, Any]:
        """Write the chat's feed record to ``account``'s repository (replacing any earlier
        one there) and remember it."""
        service = self.service_did()
        if account.network != NETWORK or not account.remote_id:
            raise Invalid("account_id: publish the feed with a Bluesky account")
        chat = await self.rooms.get_chat(slug)
        rkey = record_key(chat.slug)
        description = chat.description or (
            f"Posts from the #{' #'.join(chat_hashtags(chat))} chat, live on Hashroom: "
            f"{base_url}/c/{chat.slug}"
        )
        title = chat.title if len(chat.title) <= 24 else f"#{chat.hashtag}"
        record = generator_record(service, title, description)
        result = await accounts.write_record(account, GENERATOR_COLLECTION, rkey, record)
        uri = result.get("uri") if isinstance(result.get("uri"), str) else None
        uri = uri or feed_uri(account.remote_id, rkey)

        def fn(session: Session) -> tuple[FeedRecord, list[Any]]:
            row = (
                session.execute(select(FeedRecord).where(FeedRecord.chat_id == chat.id))  # type: ignore[arg-type]
                .scalars()
                .first()
            ) or FeedRecord(chat_id=chat.id, uri=uri)  # type: ignore[arg-type]
            row.uri, row.account_id = uri, account.id
            session.add(row)
            session.flush()
            return row, []

        return _record_json(await self.rooms.write(fn))

    async def remove(self, slug: str, account: Account, accounts: Accounts) -> None:
        """Delete the chat's feed record from ``account``'s repository and forget it."""
        row = await self.published(slug)
        if row is None:
            raise NotFound("this chat's feed is not published")
        publisher, rkey = parse_feed_uri(row["uri"])
        if account.remote_id != publisher:
            raise Forbidden(
                "account_id: the feed was published from another Bluesky account; use that one"
            )
        await accounts.write_record(account, GENERATOR_COLLECTION, rkey, None)

        def fn(session: Session) -> tuple[None, list[Any]]:
            found = session.get(FeedRecord, row["id"])
            if found is not None:
                session.delete(found)
            return None, []

        await self.rooms.write(fn)


def _record_json(row: FeedRecord) -> dict[str, Any]:
    publisher, rkey = parse_feed_uri(row.uri)
    return {
        "id": row.id,
        "uri": row.uri,
        "account_id": row.account_id,
        "url": BSKY_FEED_URL.format(did=publisher, rkey=rkey),
    }
