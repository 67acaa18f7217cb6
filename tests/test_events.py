"""The event log under concurrent writers, on SQLite and on PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, SQLModel, create_engine
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode
from websockets.streams import StreamReader

from app import events
from app.db import make_engine, session_scope
from app.models import Chat, Event
from tests.server import need_tool

PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _new_chat(engine: Engine, slug: str) -> int:
    with session_scope(engine) as s:
        chat = Chat(slug=slug, hashtag=slug, title=slug, epoch="e1", moderator_key_hash="x")
        s.add(chat)
        s.flush()
        return chat.id  # type: ignore[return-value]


@pytest.fixture
def sqlite_engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    """A fresh schema in the local PostgreSQL, dropped afterwards."""
    schema = f"hr_events_{secrets.token_hex(4)}"
    admin = create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError:
        admin.dispose()
        need_tool(False, f"a PostgreSQL server at {PG_URL} (trust auth, database `test`)")
    engine = create_engine(
        PG_URL, connect_args={"options": f"-csearch_path={schema}"}, pool_size=10
    )
    SQLModel.metadata.create_all(engine)
    yield engine
    engine.dispose()
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _hammer(engine: Engine, chat_id: int, writers: int, per_writer: int) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(writers)

    def work(n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_writer):
                with session_scope(engine) as s:
                    events.append(s, chat_id, "post", {"writer": n, "i": i})
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def _assert_gap_free(engine: Engine, chat_id: int, expected: int) -> None:
    with Session(engine) as s:
        offsets = (
            s.execute(select(Event.offset).where(Event.chat_id == chat_id).order_by(Event.offset))
            .scalars()
            .all()
        )
        head, _ = events.head(s, chat_id)
    assert offsets == list(range(1, expected + 1))
    assert head == expected


@pytest.mark.parametrize("engine_name", ["sqlite_engine", "pg_engine"])
def test_offsets_are_gap_free_under_concurrent_writers(engine_name, request):
    """Eight threads appending at once yield offsets 1..N, each exactly once."""
    engine = request.getfixturevalue(engine_name)
    one = _new_chat(engine, "one")
    two = _new_chat(engine, "two")
    _hammer(engine, one, writers=8, per_writer=25)
    _hammer(engine, two, writers=4, per_writer=10)
    _assert_gap_free(engine, one, 200)
    _assert_gap_free(engine, two, 40)


@pytest.mark.parametrize("engine_name", ["sqlite_engine", "pg_engine"])
def test_rolled_back_change_leaves_no_hole(engine_name, request):
    """An event appended in a transaction that fails takes its offset back with it."""
    engine = request.getfixturevalue(engine_name)
    chat_id = _new_chat(engine, "c")
    with session_scope(engine) as s:
        events.append(s, chat_id, "post", {"n": 1})
    with pytest.raises(RuntimeError), session_scope(engine) as s:
        events.append(s, chat_id, "post", {"n": 2})
        raise RuntimeError("the row write failed")
    with session_scope(engine) as s:
        frame = events.append(s, chat_id, "post", {"n": 3})
    assert frame.offset == 2
    _assert_gap_free(engine, chat_id, 2)


def test_frames_carry_offset_epoch_type_and_are_read_back_in_order(sqlite_engine):
    """read_after returns the exact frames written, after the given offset only."""
    chat_id = _new_chat(sqlite_engine, "c")
    written = []
    for i in range(5):
        with session_scope(sqlite_engine) as s:
            written.append(events.append(s, chat_id, "post", {"n": i}))
    with Session(sqlite_engine) as s:
        got = events.read_after(s, chat_id, 2, 10)
    assert [f.text for f in got] == [f.text for f in written[2:]]
    import json

    first = json.loads(got[0].text)
    assert (first["type"], first["offset"], first["epoch"], first["n"]) == ("post", 3, "e1", 2)


def test_a_frame_is_compact_utf8_json_stamped_with_its_time_and_cannot_change(sqlite_engine):
    """One frame object is shared by every client of a chat: its text is compact JSON with
    UTF-8 kept as is (not ``\\u`` escapes), it carries the time it was appended, and nobody
    holding it can change it."""
    chat_id = _new_chat(sqlite_engine, "frames")
    before = time.time()
    with session_scope(sqlite_engine) as s:
        frame = events.append(s, chat_id, "notice", {"text": "Café 🌱"})
    after = time.time()
    assert '"text":"Café 🌱"' in frame.text
    assert _parse_wire(frame.wire) == frame.text
    payload = json.loads(frame.text)
    assert payload["type"] == "notice" and payload["offset"] == frame.offset == 1
    assert before <= payload["ts"] <= after
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.text = "{}"  # type: ignore[misc]


def _parse_wire(wire: bytes) -> str:
    """Read ``wire`` back with the websockets library's own frame parser, as a client does:
    exactly one final, unmasked text frame, nothing left over."""
    reader = StreamReader()
    reader.feed_data(wire)
    reader.feed_eof()
    parser = WsFrame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        parsed = done.value
    else:
        raise AssertionError("incomplete frame")
    assert parsed.opcode is Opcode.TEXT and parsed.fin
    assert reader.at_eof(), "bytes after the frame"
    return bytes(parsed.data).decode()


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_the_shared_wire_frame_parses_at_every_length_boundary(size):
    """One frame's bytes are written unchanged to every client, so they must be a valid
    server frame whatever the length (7-bit, 16-bit and 64-bit length forms)."""
    text = "é" * (size // 2) + "x" * (size % 2)
    assert _parse_wire(events.wire_frame(text.encode())) == text
    frame = events.Frame(chat_id=1, offset=1, text=text)
    assert _parse_wire(frame.wire) == text
