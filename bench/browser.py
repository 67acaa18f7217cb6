"""Browser benchmark: the chat page's first paint, and long tasks on a throttled phone.

One run, one machine, real parts: ``python -m app`` on a free port with a fresh SQLite
database (demo off), one native chat seeded with posts through the real API, and headless
Chromium (/usr/bin/chromium) driven by Playwright. Two measurements, each beside a baseline
taken in the same run:

(a) **first paint** — navigate to ``/c/<slug>`` and time, from navigation start
    (``performance.timeOrigin``), the moment the first ``--posts`` post articles are in the DOM
    *and* a frame holding them has been painted. Baseline: the same post articles as one
    static HTML document (style sheet inlined, no script) — the floor of painting them.
    Target: ≤ 300 ms.
(b) **live column on a phone** — viewport 360×740, CPU throttled 4× through the devtools
    protocol, posts arriving at ``--rate`` per second through the real API for ``--duration``
    seconds; ``longtask`` entries are collected. Baseline: the same page with nothing arriving.
    Target: no long task over 200 ms.

    .venv/bin/python bench/browser.py            # 3 rounds of each: 200 posts; 10/s for 20 s
    .venv/bin/python bench/browser.py --smoke    # a tiny run in seconds; exit 0 unless broken
    .venv/bin/python bench/browser.py --only paint --repeat 5

Exit status: 0 PASS (or --smoke), 1 FAIL or a broken run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fanout import AppServer, free_port
from playwright.async_api import TimeoutError as PlaywrightTimeout
from playwright.async_api import async_playwright
from post_text import post_text
from results_file import save as save_results

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

TARGET_PAINT_MS = 300.0
"""The first ``--posts`` posts of a room painted within 300 ms of navigation."""
TARGET_LONG_TASK_MS = 200.0
"""At 4x CPU throttling on a 360 px phone, a live room shows no main-thread task over 200 ms."""
LONG_TASK_MS = 50.0
"""Chromium reports tasks of 50 ms and more as long tasks; the count uses the same line."""
PHONE = {
    "viewport": {"width": 360, "height": 740},
    "has_touch": True,
    "is_mobile": True,
    "device_scale_factor": 2,
}
TRACE_CATEGORIES = [
    "devtools.timeline",
    "disabled-by-default-devtools.timeline",
    "disabled-by-default-devtools.timeline.frame",
    "disabled-by-default-devtools.timeline.stack",
    "disabled-by-default-v8.cpu_profiler",
    "v8.execute",
    "blink.user_timing",
    "toplevel",
]
"""What --trace records: the devtools performance panel's set, with JavaScript sampling."""
SETTLE_SECONDS = 2.0
"""Quiet time after the page is live before the window opens: load-time work is not counted."""
MAX_POSTS_IN_FLIGHT = 16
"""Publish requests outstanding at once, as bench/fanout.py."""

# Runs before any of the page's own script (Playwright's init script). It counts the post
# articles in #feed as the parser (or a script) adds them; when the wanted number is first
# there it waits for the next animation frame — which Chromium runs only once rendering is no
# longer blocked — and takes the time in a task posted from that frame's callback, which runs
# after the frame's style, layout and paint. The task is user-blocking, so it does not queue
# behind the page's module scripts (the posts would be painted already). So `paintedAt` is the
# end of the first frame that painted all those posts, on the clock that starts at navigation.
PAINT_PROBE = """
(() => {
  const want = %d;
  const probe = (window.__paint = {
    want, domAt: null, frameAt: null, paintedAt: null, readyAt: null,
  });
  const check = () => {
    const feed = document.getElementById("feed");
    if (!feed) return;
    if (probe.domAt === null && feed.querySelectorAll(":scope > article.post").length >= want) {
      probe.domAt = performance.now();
      requestAnimationFrame(() => {
        probe.frameAt = performance.now();
        const done = () => (probe.paintedAt = performance.now());
        if (window.scheduler && scheduler.postTask) {
          scheduler.postTask(done, { priority: "user-blocking" });
        } else {
          const channel = new MessageChannel();
          channel.port1.onmessage = done;
          channel.port2.postMessage(null);
        }
      });
    }
    if (probe.readyAt === null && feed.classList.contains("is-ready")) {
      probe.readyAt = performance.now();
    }
  };
  new MutationObserver(check).observe(document, {
    childList: true, subtree: true, attributes: true, attributeFilter: ["class"],
  });
})();
"""

FCP_SEEN = "() => performance.getEntriesByName('first-contentful-paint').length > 0"

PAINT_RESULT = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const fcp = performance.getEntriesByName("first-contentful-paint")[0];
  return { ...window.__paint, fcp: fcp ? fcp.startTime : null,
           responseEnd: nav ? nav.responseEnd : null,
           domContentLoaded: nav ? nav.domContentLoadedEventEnd : null };
}"""

LONG_TASK_PROBE = """
(() => {
  window.__longtasks = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      window.__longtasks.push({ start: e.startTime, duration: e.duration });
    }
  }).observe({ type: "longtask", buffered: true });
})();
"""


# --------------------------------------------------------------------------- the app and data


async def start_app(workdir: Path, posts: int) -> AppServer:
    """The app with a first page of ``posts`` posts and no posting quota; one native chat."""
    app = AppServer(workdir)
    app.env.update(
        {
            # The first page and the snapshot hold the posts (a room's default is 60).
            "HASHROOM_SNAPSHOT_POSTS": str(posts),
            # The bench posts from one loopback address faster than a person may.
            "HASHROOM_RATE_POSTS_PER_MINUTE": "0",
        }
    )
    await app.start()
    return app


async def post_many(app: AppServer, first_seq: int, count: int, rate: float | None) -> float:
    """POST ``count`` posts, at ``rate`` per second on a fixed schedule (None: as fast as the
    server answers, a few at a time); return the seconds the sending took."""
    in_flight = asyncio.Semaphore(MAX_POSTS_IN_FLIGHT)
    sending: set[asyncio.Task[None]] = set()

    async def send(seq: int) -> None:
        try:
            await app.publish(seq, post_text(seq))
        finally:
            in_flight.release()

    began = time.monotonic()
    for i in range(count):
        if rate:
            delay = began + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await in_flight.acquire()
        sending.add(asyncio.create_task(send(first_seq + i)))
        for done in [t for t in sending if t.done()]:
            sending.discard(done)
            done.result()  # a failed post stops the run now
    await asyncio.gather(*sending)
    return time.monotonic() - began


class StaticPage:
    """One static HTML document served from a thread: the post articles and the inlined
    style sheet, no script, one request."""

    def __init__(self, html: str) -> None:
        body = html.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                if self.path != "/":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a closed browser context may hang up mid-answer; that is no finding

        self.server = Server(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def static_document(app: AppServer, posts: int) -> str:
    """The room's latest ``posts`` articles, as the first page renders them, in a bare page."""
    assert app.http is not None
    resp = await app.http.get(f"/api/chats/{app.slug}/posts", params={"limit": posts})
    resp.raise_for_status()
    articles = "\n".join(item["html"] for item in resp.json()["items"])
    css = (ROOT / "app" / "static" / "style.css").read_text()
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>static floor</title><style>{css}</style></head>"
        f'<body class="page-chat"><main id="main"><section id="feed" class="feed" role="feed">'
        f"{articles}</section></main></body></html>"
    )


# --------------------------------------------------------------------------- measurements


async def measure_paint(browser: Any, url: str, want: int, app_page: bool) -> dict[str, Any]:
    """One cold navigation (fresh context, empty cache) to ``url``; paint times in ms."""
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        await ctx.add_init_script(PAINT_PROBE % want)
        page = await ctx.new_page()
        await page.goto(url, wait_until="commit")
        # A function, not an expression: the app's CSP forbids eval.
        done = "(app) => window.__paint && window.__paint.paintedAt !== null"
        done += " && (!app || window.__paint.readyAt !== null)"
        await page.wait_for_function(done, arg=app_page, timeout=30_000)
        # First-contentful-paint is reported when the frame is presented, a little later.
        with contextlib.suppress(PlaywrightTimeout):
            await page.wait_for_function(FCP_SEEN, timeout=2_000)
        got = await page.evaluate(PAINT_RESULT)
        count = await page.evaluate("document.querySelectorAll('#feed > article.post').length")
    finally:
        await ctx.close()
    return {
        "painted_ms": got["paintedAt"],
        "dom_ms": got["domAt"],
        "frame_ms": got["frameAt"],
        "fcp_ms": got["fcp"],
        "response_end_ms": got["responseEnd"],
        "dcl_ms": got["domContentLoaded"],
        "script_ready_ms": got["readyAt"],
        "articles": count,
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)) - 1, 0)
    return ordered[min(rank, len(ordered) - 1)]


async def measure_live(
    browser: Any,
    app: AppServer,
    args: argparse.Namespace,
    first_seq: int,
    posting: bool,
    trace: Path | None = None,
) -> dict[str, Any]:
    """One throttled phone page on the room for ``--duration`` seconds, with posts arriving
    (``posting``) or not; its long tasks in that window."""
    ctx = await browser.new_context(**PHONE)
    try:
        await ctx.add_init_script(LONG_TASK_PROBE)
        page = await ctx.new_page()
        cdp = await ctx.new_cdp_session(page)
        await cdp.send("Emulation.setCPUThrottlingRate", {"rate": args.throttle})
        await page.goto(f"{app.base}/c/{app.slug}")
        await page.wait_for_selector("#feed.is-ready", timeout=60_000)
        await page.wait_for_selector("#conn-state[data-state=live]", timeout=60_000)
        if trace is not None:
            # Starting a trace stalls the page once; that stall is before the window opens.
            await browser.start_tracing(page=page, path=str(trace), categories=TRACE_CATEGORIES)
        await asyncio.sleep(args.settle)
        start = await page.evaluate("performance.now()")
        top_before = await page.evaluate(
            "Number(document.querySelector('#feed > article')?.dataset.id || 0)"
        )
        count = round(args.rate * args.duration)
        if posting:
            sent_seconds = await post_many(app, first_seq, count, args.rate)
        else:
            await asyncio.sleep(args.duration)
            sent_seconds = args.duration
        # The last post's frame reaches the page a moment after its POST is answered.
        shown = 0
        deadline = time.monotonic() + 15
        while True:
            shown = await page.evaluate(
                "(top) => Array.from(document.querySelectorAll('#feed > article'))"
                ".filter((a) => Number(a.dataset.id) > top).length",
                top_before,
            )
            if not posting or shown >= min(count, 300) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        if trace is not None:
            await browser.stop_tracing()
        end = await page.evaluate("performance.now()")
        tasks = await page.evaluate("(s) => window.__longtasks.filter((t) => t.start >= s)", start)
    finally:
        await ctx.close()
    durations = [t["duration"] for t in tasks]
    return {
        "loadavg": os.getloadavg()[0],
        "posts": count if posting else 0,
        "shown": shown,
        "window_s": (end - start) / 1000,
        "send_s": sent_seconds,
        "long_tasks": len([d for d in durations if d > LONG_TASK_MS]),
        "long_task_ms_total": sum(durations),
        "max_ms": max(durations, default=0.0),
        "p99_ms": percentile(durations, 99),
    }


# --------------------------------------------------------------------------- report


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """An aligned text table of ``rows`` (missing figures print as n/a)."""
    cells = [[title for title, _, _ in columns]]
    for r in rows:
        cells.append(
            [fmt.format(r[key]) if r.get(key) is not None else "n/a" for _, key, fmt in columns]
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


PAINT_COLUMNS = [
    ("round", "round", "{}"),
    ("page", "page", "{}"),
    ("painted ms", "painted_ms", "{:.0f}"),
    ("in DOM ms", "dom_ms", "{:.0f}"),
    ("frame ms", "frame_ms", "{:.0f}"),
    ("FCP ms", "fcp_ms", "{:.0f}"),
    ("response ms", "response_end_ms", "{:.0f}"),
    ("DCL ms", "dcl_ms", "{:.0f}"),
    ("script ready ms", "script_ready_ms", "{:.0f}"),
    ("articles", "articles", "{}"),
]
LIVE_COLUMNS = [
    ("round", "round", "{}"),
    ("page", "page", "{}"),
    ("posts", "posts", "{}"),
    ("shown", "shown", "{}"),
    ("window s", "window_s", "{:.1f}"),
    ("long tasks", "long_tasks", "{}"),
    ("p99 ms", "p99_ms", "{:.0f}"),
    ("max ms", "max_ms", "{:.0f}"),
    ("total ms", "long_task_ms_total", "{:.0f}"),
    ("load avg", "loadavg", "{:.1f}"),
]


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds of every figure."""
    row = dict(rounds[0])
    for key, value in rounds[0].items():
        values = [r[key] for r in rounds if r.get(key) is not None]
        if isinstance(value, int | float) and not isinstance(value, bool) and values:
            row[key] = statistics.median(values)
    row["round"] = "median"
    return row


def verdict(
    paint: dict[str, Any] | None, live: dict[str, Any] | None, want: int
) -> list[tuple[bool, str]]:
    """The targets against the medians; one (passed, line) per check."""
    checks: list[tuple[bool, str]] = []
    if paint is not None:
        checks.append(
            (
                paint["painted_ms"] <= TARGET_PAINT_MS,
                f"first {want} posts painted {paint['painted_ms']:.0f} ms after navigation "
                f"(target ≤ {TARGET_PAINT_MS:.0f} ms; static floor {paint['floor_ms']:.0f} ms)",
            )
        )
    if live is not None:
        checks.append(
            (
                live["max_ms"] <= TARGET_LONG_TASK_MS,
                f"longest task with posts arriving {live['max_ms']:.0f} ms "
                f"(target ≤ {TARGET_LONG_TASK_MS:.0f} ms; idle {live['idle_max_ms']:.0f} ms)",
            )
        )
        checks.append(
            (
                live["shown"] >= min(live["posts"], 300),
                f"posts shown {live['shown']:.0f} of {live['posts']:.0f} sent",
            )
        )
    return checks


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; defaults are the reference configuration."""
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--posts", type=int, default=200, help="posts on the first page (200)")
    p.add_argument("--rate", type=float, default=10.0, help="posts per second in (b) (10)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of (b)'s window (20)")
    p.add_argument("--throttle", type=float, default=4.0, help="CPU slow-down in (b) (4)")
    p.add_argument("--repeat", type=int, default=3, help="rounds of each; verdict on medians (3)")
    p.add_argument("--only", choices=["paint", "live"], help="one measurement only")
    p.add_argument("--trace", type=Path, help="write a Chromium trace of the first live round")
    p.add_argument(
        "--smoke", action="store_true", help="a tiny run in seconds; exit 0 unless broken"
    )
    p.add_argument("--json", type=Path, help="results file (default bench/results/<time>.json)")
    args = p.parse_args(argv)
    args.settle = SETTLE_SECONDS
    if args.smoke:
        args.posts, args.duration, args.repeat, args.settle = 20, 2.0, 1, 0.5
    if min(args.posts, args.rate, args.duration, args.throttle, args.repeat) <= 0:
        p.error("--posts, --rate, --duration, --throttle and --repeat must be positive")
    if args.posts > 500:
        p.error("--posts: the first page holds at most 500 posts (HASHROOM_SNAPSHOT_POSTS)")
    return args


async def run(args: argparse.Namespace) -> int:
    """Start the app, seed the room, measure, print the report, write the JSON file."""

    workdir = Path(tempfile.mkdtemp(prefix="hashroom-bench-browser-"))
    paint_rounds: list[dict[str, Any]] = []
    live_rounds: list[dict[str, Any]] = []
    failed = False
    chromium_version = ""
    app: AppServer | None = None
    static: StaticPage | None = None
    try:
        app = await start_app(workdir, args.posts)
        seeded = await post_many(app, 0, args.posts, None)
        print(f"seeded {args.posts} posts in {seeded:.1f}s", flush=True)
        static = StaticPage(await static_document(app, args.posts))
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS
            )
            chromium_version = browser.version
            room = f"{app.base}/c/{app.slug}"
            if args.only in (None, "paint"):
                # One unmeasured visit each: the server's templates and Chromium's code warm up.
                await measure_paint(browser, room, args.posts, app_page=True)
                await measure_paint(browser, static.url, args.posts, app_page=False)
                for round_no in range(1, args.repeat + 1):
                    order = ["app", "static"] if round_no % 2 else ["static", "app"]
                    for name in order:
                        url = room if name == "app" else static.url
                        r = await measure_paint(browser, url, args.posts, app_page=name == "app")
                        paint_rounds.append({"round": round_no, "page": name, **r})
                        print(f"[{round_no}] paint {name}: {r['painted_ms']:.0f} ms", flush=True)
            if args.only in (None, "live"):
                seq = args.posts
                for round_no in range(1, args.repeat + 1):
                    order = ["live", "idle"] if round_no % 2 else ["idle", "live"]
                    for name in order:
                        trace = args.trace if (round_no == 1 and name == "live") else None
                        r = await measure_live(browser, app, args, seq, name == "live", trace)
                        seq += r["posts"]
                        live_rounds.append({"round": round_no, "page": name, **r})
                        print(
                            f"[{round_no}] {name}: {r['long_tasks']} long tasks, "
                            f"max {r['max_ms']:.0f} ms, {r['shown']}/{r['posts']} shown",
                            flush=True,
                        )
            await browser.close()
    except Exception as exc:  # report what we have, then the cause
        print(f"\nrun aborted: {exc!r}", file=sys.stderr)
        print(f"logs kept in {workdir}", file=sys.stderr)
        failed = True
    finally:
        if static is not None:
            static.stop()
        if app is not None:
            await app.stop()

    paint_sum = live_sum = None
    if paint_rounds:
        by_page = {
            n: summarise([r for r in paint_rounds if r["page"] == n]) for n in ("app", "static")
        }
        print()
        print(
            f"(a) first {args.posts} posts painted, ms from navigation start "
            "(1280×800, no throttling)"
        )
        print(table(paint_rounds + list(by_page.values()), PAINT_COLUMNS))
        paint_sum = {**by_page["app"], "floor_ms": by_page["static"]["painted_ms"]}
    if live_rounds:
        by_page = {
            n: summarise([r for r in live_rounds if r["page"] == n]) for n in ("live", "idle")
        }
        print()
        print(
            f"(b) long tasks, 360×740 phone, CPU {args.throttle:g}× slower, "
            f"{args.rate:g} posts/s for {args.duration:g}s (idle: none arriving)"
        )
        print(table(live_rounds + list(by_page.values()), LIVE_COLUMNS))
        worst = max(r["max_ms"] for r in live_rounds if r["page"] == "live")
        print(f"longest task in any live round: {worst:.0f} ms")
        live_sum = {**by_page["live"], "idle_max_ms": by_page["idle"]["max_ms"]}
    checks = verdict(paint_sum, live_sum, args.posts) if not failed else []
    lines = [("ok   " if ok else "FAIL ") + text for ok, text in checks]
    passed = bool(checks) and all(ok for ok, _ in checks)
    if checks:
        print()
        print("\n".join(lines))
        basis = "same run" if args.repeat == 1 else f"medians of {args.repeat} rounds"
        print(
            "PASS" if passed else "FAIL",
            f"— {basis}" + (" (smoke run: no verdict)" if args.smoke else ""),
        )
    status = 1 if failed else 0 if (passed or args.smoke) else 1
    save_results(
        "browser",
        args,
        {
            "paint": paint_rounds,
            "live": live_rounds,
            "verdict": lines,
            "status": status,
        },
        machine={"chromium": chromium_version, "loadavg": os.getloadavg()},
    )
    if not failed:
        shutil.rmtree(workdir, ignore_errors=True)
    return status


def main() -> None:
    """Entry point."""
    sys.exit(asyncio.run(run(parse_args())))


if __name__ == "__main__":
    main()
