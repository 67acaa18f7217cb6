"""Ingest throughput: the real ingester and room writer beside raw batched inserts.

One run, one machine, one process. Per database (SQLite, and PostgreSQL when reachable) and
per round:

- *app*: a fresh migrated database, one room with one source, and the real
  :class:`app.ingest.Ingester` running a synthetic Bluesky-like follower that yields batches
  of new posts as fast as it is asked (300-character texts with the room's tag, a share of
  replies — some to posts in the same batch, some to posts outside the room — and a share of
  re-delivered duplicates, some inside the same batch). Every batch goes through
  ``Rooms.store_batch``: dedupe, rows, event log, cursor, one commit, frames published.
  Timed from the follower's first batch to the last commit.
- *raw*: the rows the app stored in that round (post row + event row per post) inserted
  again into a fresh database of the same schema with the bare driver — ``sqlite3`` or
  ``psycopg`` ``executemany`` — in batches of the same size, one commit per batch, with the
  app's SQLite pragmas (WAL, ``synchronous=NORMAL``).

Reported: stored posts per second, CPU (this process: user + system, every thread) per
stored post, and app/raw. The app's rows are checked: each post stored once, one event per
post with gap-free offsets, the source's cursor at the last batch.

    .venv/bin/python bench/ingest.py                   # SQLite + PostgreSQL, 3 rounds
    .venv/bin/python bench/ingest.py --db sqlite --posts 50000 --batch 500
    .venv/bin/python bench/ingest.py --profile         # one app round under cProfile
    .venv/bin/python bench/ingest.py --smoke           # a few seconds; exits 0 when it ran

Exit status: 0 when every target was met (or ``--smoke`` ran), 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from results_file import save as save_results

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from post_text import post_text  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlmodel import Session  # noqa: E402

from app.config import Settings  # noqa: E402
from app.db import _sqlite_pragmas, make_engine  # noqa: E402
from app.hub import Hub  # noqa: E402
from app.ingest import Ingester  # noqa: E402
from app.models import Chat, Event, Post, Source  # noqa: E402
from app.networks.base import Author, Batch, FollowContext, RemotePost, Upsert  # noqa: E402
from app.networks.bluesky import record_to_post  # noqa: E402
from app.present import Presenter  # noqa: E402
from app.rooms import Rooms, SourceSpec  # noqa: E402
from app.templating import make_templates  # noqa: E402

TARGET_POSTS_PER_S = 10_000
"""The committed figure: stored posts per second through the whole ingest path on SQLite."""
TARGET_RATIO = 0.25
"""The app must store at least a quarter of what bare batched inserts of its rows manage:
dedupe, sanitizing, rendering and the event log cost something, but not 4x the I/O."""
PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_NAME = "hashroom_bench_ingest"
TAG = "benchtag"
AUTHORS = 200
"""Distinct authors in the stream: a busy tag has many, a few of them very active."""


# --------------------------------------------------------------------------- the stream


def plan_stream(
    posts: int, batch: int, replies: float, duplicates: float, seed: int = 7
) -> list[list[tuple[int, int | None]]]:
    """Batches of deliveries, each ``(post number, parent number or None)``; a number seen
    before is a re-delivery. Deterministic for a seed, so every round stores the same rows.

    Replies go to a recent post (often in the same batch) or, one in six, to a post outside
    the room (parent number -1); duplicates re-deliver a recent post."""
    rng = random.Random(seed)
    out: list[list[tuple[int, int | None]]] = []
    current: list[tuple[int, int | None]] = []
    n = 0
    while n < posts:
        if n and rng.random() < duplicates:
            current.append((rng.randrange(max(0, n - batch), n), None))
        else:
            parent: int | None = None
            if n and rng.random() < replies:
                parent = -1 if rng.random() < 1 / 6 else rng.randrange(max(0, n - 500), n)
            current.append((n, parent))
            n += 1
        if len(current) == batch:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def _did(i: int) -> str:
    return f"did:plc:bench{i:020d}"


def make_post(n: int, parent: int | None) -> RemotePost:
    """Post ``n`` as the Bluesky adapter turns a record into one (facets, cid, did, rkey)."""
    who = n * 7919 % AUTHORS  # a spread of authors, deterministic
    body = post_text(n)
    tag_at = len(body.encode()) - len(TAG) - 1
    record: dict[str, Any] = {
        "text": body,
        "createdAt": "2026-01-01T18:00:00.000Z",
        "langs": ["en"],
        "facets": [
            {
                "index": {"byteStart": tag_at, "byteEnd": tag_at + len(TAG) + 1},
                "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": TAG}],
            }
        ],
    }
    if parent is not None:
        pdid, prkey = (_did(999_999), "outside") if parent < 0 else (_did(0), f"p{parent:08d}")
        ref = {"uri": f"at://{pdid}/app.bsky.feed.post/{prkey}", "cid": "bafyparent"}
        record["reply"] = {"root": ref, "parent": ref}
    author = Author(
        name=f"Bench Author {who}",
        handle=f"@author{who}.bsky.social",
        avatar_url=f"https://cdn.bsky.app/img/avatar/plain/{_did(who)}/bafkavatar{who}@jpeg",
        profile_url=f"https://bsky.app/profile/{_did(who)}",
        remote_id=_did(who),
    )
    # Every post lives in one repo here so a reply's parent uri is simply derived.
    return record_to_post(_did(0), f"p{n:08d}", f"bafycid{n}", record, author=author)


class SyntheticFollower:
    """Yields the planned batches as fast as the ingester takes them. The posts are built
    beforehand (a new object per delivery, as a network gives): parsing is the network
    adapter's cost, not the ingest path's."""

    def __init__(self, plan: list[list[tuple[int, int | None]]]) -> None:
        self.batches = [
            Batch(
                changes=[Upsert(make_post(n, parent)) for n, parent in deliveries],
                cursor=f"bench-{i + 1}",
            )
            for i, deliveries in enumerate(plan)
        ]
        self.first_batch_at: float | None = None

    async def follow(self, cursor: str | None, ctx: FollowContext) -> AsyncIterator[Batch]:
        ctx.report("streaming")
        for batch in self.batches:
            if self.first_batch_at is None:
                self.first_batch_at = time.perf_counter()
            yield batch


# --------------------------------------------------------------------------- databases


class Databases:
    """Fresh migrated databases on demand: copies of one migrated template."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.workdir = workdir
        self.made: list[str] = []
        self.template = ""

    def __enter__(self) -> Databases:
        from tests.server import migrate

        if self.kind == "sqlite":
            self.template = str(self.workdir / "template.db")
            migrate(f"sqlite:///{self.template}")
        else:
            self.template = PG_NAME
            self._admin(f'DROP DATABASE IF EXISTS "{PG_NAME}" WITH (FORCE)')
            self._admin(f'CREATE DATABASE "{PG_NAME}"')
            migrate(self._url(PG_NAME))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.kind == "postgresql":
            for name in [*self.made, PG_NAME]:
                self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @staticmethod
    def _admin(sql: str) -> None:
        import psycopg

        plain = PG_BASE.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(plain, autocommit=True, connect_timeout=3) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    @staticmethod
    def _url(name: str) -> str:
        return PG_BASE.rsplit("/", 1)[0] + f"/{name}"

    def fresh(self, label: str) -> str:
        """A new database holding only the schema; returns its SQLAlchemy URL."""
        if self.kind == "sqlite":
            path = self.workdir / f"{label}.db"
            shutil.copyfile(self.template, path)
            return f"sqlite:///{path}"
        name = f"{PG_NAME}_{label}"
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{PG_NAME}"')
        self.made.append(name)
        return self._url(name)


def pg_reachable() -> bool:
    try:
        Databases._admin("SELECT 1")
        return True
    except Exception:
        return False


# --------------------------------------------------------------------------- the app path


async def run_app(url: str, plan: list[list[tuple[int, int | None]]], batch: int) -> dict[str, Any]:
    """Ingest the planned stream through the real ingester; timings and checks."""
    settings = Settings(ingest_batch_size=batch)
    engine = make_engine(url)
    try:
        rooms = Rooms(engine, Hub(), settings, Presenter(make_templates().env))
        chat, _key, sources = await rooms.create_chat(
            hashtag=TAG, title="Bench", network="bluesky", sources=[SourceSpec("bluesky")]
        )
        follower = SyntheticFollower(plan)
        ingester = Ingester(rooms, sources[0], chat, lambda s, c: follower, settings)
        cpu0 = time.process_time()
        await ingester.run_once(follower, None)
        done = time.perf_counter()
        cpu = time.process_time() - cpu0
        assert follower.first_batch_at is not None
        wall = done - follower.first_batch_at
        with Session(engine) as session:
            posts = session.execute(
                select(func.count()).select_from(Post).where(Post.chat_id == chat.id)
            ).scalar_one()
            distinct = session.execute(
                select(func.count(func.distinct(Post.remote_id))).where(Post.chat_id == chat.id)
            ).scalar_one()
            offsets = list(
                session.execute(
                    select(Event.offset).where(Event.chat_id == chat.id).order_by(Event.offset)
                ).scalars()
            )
            cursor = session.get(Source, sources[0].id).cursor  # type: ignore[union-attr]
            head = session.get(Chat, chat.id).last_offset  # type: ignore[union-attr]
    finally:
        engine.dispose()
    expected = len({n for b in plan for n, _ in b})
    problems = []
    if posts != expected or distinct != expected:
        problems.append(f"{posts} posts ({distinct} distinct), expected {expected}")
    if offsets != list(range(1, expected + 1)) or head != expected:
        problems.append(f"events not gap-free 1..{expected} (head {head})")
    if cursor != f"bench-{len(plan)}":
        problems.append(f"cursor {cursor!r}")
    return {
        "posts": posts,
        "deliveries": sum(len(b) for b in plan),
        "seconds": wall,
        "cpu_s": cpu,
        "problems": problems,
        "chat_id": chat.id,
    }


# --------------------------------------------------------------------------- the baseline

Rows = tuple[list[str], list[tuple[Any, ...]]]


def _connect(kind: str, url: str) -> Any:
    if kind == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        _sqlite_pragmas(conn, None)  # the app's own: WAL, synchronous=NORMAL, foreign keys
        return conn
    import psycopg

    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1))


def _read(kind: str, conn: Any, table: str, column: str, chat_id: int) -> Rows:
    """Rows of ``table`` whose ``column`` is ``chat_id``, as stored, in id order, without
    their ids (column names, values; JSON values wrapped for psycopg to send back)."""
    mark = "?" if kind == "sqlite" else "%s"
    cur = conn.execute(f"SELECT * FROM {table} WHERE {column} = {mark} ORDER BY id", (chat_id,))
    names = [d[0] for d in cur.description]
    keep = [i for i, c in enumerate(names) if c != "id"]
    wrap: Any = lambda v: v  # noqa: E731
    if kind != "sqlite":
        from psycopg.types.json import Jsonb

        wrap = lambda v: Jsonb(v) if isinstance(v, dict | list) else v  # noqa: E731
    return [names[i] for i in keep], [tuple(wrap(r[i]) for i in keep) for r in cur.fetchall()]


def _insert(kind: str, table: str, cols: list[str]) -> str:
    mark = "?" if kind == "sqlite" else "%s"
    names = ", ".join(f'"{c}"' for c in cols)
    return f"INSERT INTO {table} ({names}) VALUES ({', '.join([mark] * len(cols))})"


def run_raw(
    kind: str, app_url: str, raw_url: str, chat_id: int, batch_sizes: list[int]
) -> dict[str, Any]:
    """Insert the app's rows again with the bare driver, batch by batch (as the app
    committed them: each batch's new posts and their events), one commit per batch."""
    with contextlib.closing(_connect(kind, app_url)) as conn:
        chat = _read(kind, conn, "chat", "id", chat_id)
        post_cols, posts = _read(kind, conn, "post", "chat_id", chat_id)
        event_cols, events = _read(kind, conn, "event", "chat_id", chat_id)
    post_sql, event_sql = _insert(kind, "post", post_cols), _insert(kind, "event", event_cols)
    conn = _connect(kind, raw_url)
    # The chat row as the app stored it: the rows' foreign keys point at it.
    conn.execute(_insert(kind, "chat", chat[0]), chat[1][0])
    conn.commit()
    try:
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        i = 0
        for size in batch_sizes:
            if size == 0:
                continue
            cur = conn.cursor()
            cur.executemany(post_sql, posts[i : i + size])
            cur.executemany(event_sql, events[i : i + size])
            conn.commit()
            i += size
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    finally:
        conn.close()
    return {"posts": len(posts), "seconds": wall, "cpu_s": cpu, "problems": []}


def stored_per_batch(plan: list[list[tuple[int, int | None]]]) -> list[int]:
    """New posts in each planned batch (what each of the app's commits stored)."""
    seen: set[int] = set()
    sizes = []
    for deliveries in plan:
        new = {n for n, _ in deliveries if n not in seen}
        seen |= new
        sizes.append(len(new))
    return sizes


# --------------------------------------------------------------------------- profiling


class _ProfiledThread:
    """A one-thread executor whose thread runs under its own cProfile profiler: the room
    writer's transactions run in ``asyncio.to_thread``, which cProfile alone does not see."""

    def __init__(self) -> None:
        self.profile = cProfile.Profile()
        self.pool = ThreadPoolExecutor(max_workers=1, initializer=self.profile.enable)

    def stop(self) -> cProfile.Profile:
        self.pool.submit(self.profile.disable).result()
        self.pool.shutdown()
        return self.profile


async def profile_app(url: str, plan: list[list[tuple[int, int | None]]], batch: int) -> str:
    """One app round with both threads (event loop and writer) profiled; the top by own time."""
    loop = asyncio.get_running_loop()
    writer = _ProfiledThread()
    loop.set_default_executor(writer.pool)
    main = cProfile.Profile()
    main.enable()
    try:
        result = await run_app(url, plan, batch)
    finally:
        main.disable()
    stats = pstats.Stats(main, stream=(buf := io.StringIO()))
    stats.add(writer.stop())
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)
    return f"{result['posts']} posts stored under the profiler\n{buf.getvalue()}"


# --------------------------------------------------------------------------- main


def median_of(results: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in results)


def summarise(kind: str, name: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["posts"] / r["seconds"] for r in results]
    cpu = [1e6 * r["cpu_s"] / r["posts"] for r in results]
    return {
        "db": kind,
        "path": name,
        "rounds": len(results),
        "posts": results[0]["posts"],
        "posts_per_s": statistics.median(rates),
        "posts_per_s_rounds": rates,
        "cpu_us_per_post": statistics.median(cpu),
        "problems": [p for r in results for p in r["problems"]],
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'db':<11} {'path':<5} {'rounds':>6} {'posts':>7} {'posts/s':>9} "
        f"{'CPU µs/post':>12}  rounds posts/s"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        each = " ".join(f"{x:,.0f}" for x in r["posts_per_s_rounds"])
        lines.append(
            f"{r['db']:<11} {r['path']:<5} {r['rounds']:>6} {r['posts']:>7,} "
            f"{r['posts_per_s']:>9,.0f} {r['cpu_us_per_post']:>12,.0f}  {each}"
        )
    return "\n".join(lines)


async def bench_db(
    kind: str, args: argparse.Namespace, workdir: Path, plan: list[list[tuple[int, int | None]]]
) -> tuple[list[dict[str, Any]], str | None]:
    """Rounds of app then raw on ``kind``; their summaries (and the profile, if asked)."""
    sizes = stored_per_batch(plan)
    app: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []
    profile = None
    with Databases(kind, workdir) as dbs:
        for n in range(1, args.repeat + 1):
            url = dbs.fresh(f"app{n}")
            print(f"[{kind} {n}] app: {len(plan)} batches of {args.batch} …", flush=True)
            app.append(await run_app(url, plan, args.batch))
            print(f"[{kind} {n}] raw: the same rows, executemany …", flush=True)
            raw.append(run_raw(kind, url, dbs.fresh(f"raw{n}"), app[-1]["chat_id"], sizes))
        if args.profile:
            print(f"[{kind}] app under cProfile …", flush=True)
            profile = await profile_app(dbs.fresh("profile"), plan, args.batch)
    return [summarise(kind, "app", app), summarise(kind, "raw", raw)], profile


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--posts", type=int, default=10_000, help="new posts per round (10,000)")
    p.add_argument(
        "--batch",
        type=int,
        default=Settings().ingest_batch_size,
        help="changes per batch, the follower's and the ingester's (the app's default)",
    )
    p.add_argument("--replies", type=float, default=0.2, help="share of replies (0.2)")
    p.add_argument("--duplicates", type=float, default=0.05, help="share re-delivered (0.05)")
    p.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--repeat", type=int, default=3, help="rounds per database (3)")
    p.add_argument("--profile", action="store_true", help="also profile one app round")
    p.add_argument("--smoke", action="store_true", help="a tiny run in a few seconds")
    p.add_argument("--json", type=Path, help="results file (default bench/results/<time>.json)")
    args = p.parse_args(argv)
    if args.smoke:
        args.posts, args.batch, args.repeat = 300, 50, 1
    if min(args.posts, args.batch, args.repeat) <= 0:
        p.error("--posts, --batch and --repeat must be positive")
    return args


async def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="hashroom-bench-ingest-"))
    plan = plan_stream(args.posts, args.batch, args.replies, args.duplicates)
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    if args.db == "both" and not pg_reachable():
        print(f"PostgreSQL at {PG_BASE} not reachable: SQLite only", file=sys.stderr)
        kinds = ["sqlite"]
    summaries: list[dict[str, Any]] = []
    profiles: dict[str, str] = {}
    load0 = os.getloadavg()[0]
    try:
        for kind in kinds:
            rows, profile = await bench_db(kind, args, workdir, plan)
            summaries += rows
            if profile:
                profiles[kind] = profile
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    load1 = os.getloadavg()[0]
    deliveries = sum(len(b) for b in plan)
    print()
    print(table(summaries))
    print(
        f"{args.posts:,} posts in {len(plan)} batches of {args.batch} ({deliveries:,} deliveries: "
        f"{args.replies:.0%} replies, {args.duplicates:.0%} re-delivered); medians of "
        f"{args.repeat} round(s); load average {load0:.2f} -> {load1:.2f}"
    )
    checks: list[tuple[bool, str]] = []
    for kind in kinds:
        app, raw = (
            next(s for s in summaries if s["db"] == kind and s["path"] == p) for p in ("app", "raw")
        )
        ratio = app["posts_per_s"] / raw["posts_per_s"]
        checks.append(
            (ratio >= TARGET_RATIO, f"{kind}: app/raw = {ratio:.2f} (target ≥ {TARGET_RATIO})")
        )
        if kind == "sqlite":
            checks.append(
                (
                    app["posts_per_s"] >= TARGET_POSTS_PER_S,
                    f"{kind}: {app['posts_per_s']:,.0f} posts/s (target ≥ {TARGET_POSTS_PER_S:,})",
                )
            )
        checks.append(
            (not app["problems"], f"{kind}: rows checked " + ("; ".join(app["problems"]) or "ok"))
        )
    for ok, text in checks:
        print(("ok   " if ok else "FAIL ") + text)
    for kind, text in profiles.items():
        print(f"\n== profile ({kind}) ==\n{text}")
    passed = all(ok for ok, _ in checks)
    save_results(
        "ingest",
        args,
        {
            "summaries": summaries,
            "checks": [t for _, t in checks],
            "passed": passed,
            "profiles": profiles,
        },
    )
    if args.smoke:  # a smoke run proves the bench runs and the rows are right, not the speed
        return 0 if all(not s["problems"] for s in summaries) else 1
    return 0 if passed else 1


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(run(parse_args())))


if __name__ == "__main__":
    main()
