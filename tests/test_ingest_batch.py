"""One ingester batch mixing every kind of change is stored as if applied one by one: rows,
frames in order with gap-free offsets, and the cursor, in one transaction."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlmodel import Session

from app import events
from app.config import Settings
from app.db import make_engine
from app.hub import Hub
from app.models import Post, PostAlias, Source
from app.networks.base import Author, Batch, Delete, RemotePost, Upsert
from app.present import Presenter
from app.rooms import Rooms, SourceSpec
from app.templating import make_templates

pytestmark = [pytest.mark.db, pytest.mark.timeout(60)]

T0 = datetime(2026, 1, 1, 18, 0, tzinfo=UTC)


def remote(n: int, text: str, **kw: object) -> RemotePost:
    return RemotePost(
        network="mastodon",
        remote_id=f"https://social.example/@ann/{n}",
        author=Author(name="Ann", handle="@ann@social.example"),
        created_at=T0 + timedelta(seconds=n),
        text=text,
        local_id=f"local-{n}",
        **kw,  # type: ignore[arg-type]
    )


async def test_a_mixed_batch_is_stored_as_if_applied_one_change_at_a_time(db_url: str) -> None:
    """New posts, a reply to a post of the same batch, a duplicate inside the batch, an edit
    of a post new in the batch, an edit and a delete of stored posts, a delete by local id:
    one row per post, aliases once, frames post/post/update/update/delete/delete in order."""
    rooms = Rooms(make_engine(db_url), Hub(), Settings(), Presenter(make_templates().env))
    try:
        chat, _key, sources = await rooms.create_chat(
            hashtag="edchat", title="t", network="mastodon", sources=[SourceSpec("mastodon")]
        )
        source_id = sources[0].id
        assert source_id is not None
        assert await rooms.store_batch(source_id, Batch([Upsert(remote(1, "Q1: old? #edchat"))]))
        first = [
            Upsert(remote(2, "new #edchat")),
            Upsert(remote(3, "A reply #edchat", in_reply_to=remote(2, "").remote_id)),
            Upsert(remote(2, "new #edchat")),  # the same delivery again: nothing
            Upsert(remote(3, "A reply, edited #edchat", edited_at=T0 + timedelta(hours=1))),
            Upsert(remote(1, "Q1: old, edited? #edchat", edited_at=T0 + timedelta(hours=1))),
            Delete(remote_id=remote(1, "").remote_id),
            Delete(local_id="local-2"),
            Upsert(remote(4, "A reply to Q1 #edchat", in_reply_to=remote(1, "").remote_id)),
        ]
        stored = await rooms.store_batch(source_id, Batch(first, cursor="c-2"))
        assert stored == 5  # new 2 and 3, the edits of 3 and 1, new 4
        with Session(rooms.engine) as session:
            log = events.read_after(session, chat.id, 1, 100)  # type: ignore[arg-type]
            frames = [json.loads(f.text) for f in log]
            posts = {
                p.remote_id.rsplit("/", 1)[1]: p
                for p in session.execute(select(Post).where(Post.chat_id == chat.id)).scalars()
            }
            aliases = sorted(
                session.execute(
                    select(PostAlias.local_id).where(PostAlias.source_id == source_id)
                ).scalars()
            )
            cursor = session.get(Source, source_id).cursor  # type: ignore[union-attr]
    finally:
        rooms.engine.dispose()
    assert [(f["type"], f["offset"]) for f in frames] == [
        ("post", 2),
        ("post", 3),
        ("update", 4),
        ("update", 5),
        ("delete", 6),
        ("delete", 7),
        ("post", 8),
    ]
    p1, p2, p3, p4 = (posts[k] for k in "1234")
    assert frames[0]["post"]["id"] == p2.id and frames[0]["post"]["text"] == "new #edchat"
    # The reply names its parent of the same batch, by id, in the row and in its frame.
    assert p3.in_reply_to_id == p2.id
    assert frames[1]["post"]["in_reply_to"] == {"id": p2.id, "handle": "@ann@social.example"}
    assert f'href="#post-{p2.id}"' in frames[1]["html"]
    assert frames[1]["post"]["text"] == "A reply #edchat"  # as first delivered
    assert frames[2]["post"]["text"] == "A reply, edited #edchat"
    assert p3.text == "A reply, edited #edchat" and p3.edited_at is not None
    assert frames[3]["post"]["id"] == p1.id and p1.text == "Q1: old, edited? #edchat"
    assert frames[4]["post_id"] == p1.id and frames[5]["post_id"] == p2.id
    assert p1.deleted and p2.deleted and not p3.deleted
    # An answer to a deleted question still numbers from it, as before.
    assert p4.in_reply_to_id == p1.id and p4.answer_number == 1
    assert aliases == ["local-1", "local-2", "local-3", "local-4"]
    assert cursor == "c-2"
