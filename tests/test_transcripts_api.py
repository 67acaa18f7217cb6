"""Transcripts against a real server: the four exports parse and agree with the room, hidden
posts stay out, and windows (start/end, or a scheduled session) select the right posts."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.factories import create_chat, host_browser, post

pytestmark = pytest.mark.timeout(60)

FORMATS = ("md", "html", "json", "csv")


def mod_client(server: Any, chat: dict[str, Any]) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {chat['moderator_key']}"}
    )


async def export(http: httpx.AsyncClient, slug: str, fmt: str, **query: str) -> httpx.Response:
    r = await http.get(f"/c/{slug}/transcript.{fmt}", params=query)
    assert r.status_code == 200, r.text
    return r


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def a_chat_with_questions(server: Any) -> dict[str, Any]:
    """Two host questions, answers by marker and by reply, and posts moderators removed."""
    chat = await create_chat(server.url)
    slug = chat["slug"]
    made: dict[str, Any] = {"chat": chat}
    async with mod_client(server, chat) as mod:
        await mod.put(f"/api/chats/{slug}/people", json={"people": [{"handle": "maya"}]})
        await mod.post(f"/api/chats/{slug}/rules", json={"kind": "keyword", "pattern": "casino"})
        maya = await host_browser(server.url, chat, "Maya")  # a host link, not a typed name
        made["q1"] = await maya.post(slug, "Q1: what do you grow?")
        made["a1"] = await post(server.url, slug, "A1: tomatoes", author="Ann")
        made["reply"] = await post(
            server.url, slug, "basil on the sill", author="Bo", in_reply_to=made["q1"]["id"]
        )
        made["q2"] = await maya.post(slug, "Q2: any pests?")
        await maya.close()
        made["a2"] = await post(server.url, slug, "A2: =SUM(1,2) aphids", author="Cy")
        made["hostile"] = await post(server.url, slug, "<script>alert(1)</script>", author="Eve")
        made["formula"] = await post(server.url, slug, "=1+1 is two", author="Fi")
        made["hidden"] = await post(server.url, slug, "secret hidden words", author="Dee")
        await mod.put(f"/api/chats/{slug}/hidden/{made['hidden']['id']}")
        made["held"] = await post(server.url, slug, "casino spam here", author="Bot")
        made["blocked"] = await post(server.url, slug, "blocked author words", author="Mallory")
        await mod.put(f"/api/chats/{slug}/blocks", json={"handle": "mallory"})
        await mod.put(f"/api/chats/{slug}/pins/{made['q2']['id']}")
    return made


async def test_exports_parse_and_agree_with_the_room(server):
    """JSON has questions with their answers and every shown post; CSV has one row per
    post; Markdown lists each question; the HTML export carries no script. Hidden, held and
    blocked posts appear in none of them."""
    made = await a_chat_with_questions(server)
    slug = made["chat"]["slug"]
    shown = [made[k] for k in ("q1", "a1", "reply", "q2", "a2", "hostile", "formula")]
    removed = ("secret hidden words", "casino spam here", "blocked author words")
    async with httpx.AsyncClient(base_url=server.url) as http:
        data = json.loads((await export(http, slug, "json")).text)
        assert [p["id"] for p in data["posts"]] == [p["id"] for p in shown]
        assert data["chat"]["slug"] == slug and data["chat"]["hashtag"] == "edchat"
        one, two = data["questions"]
        assert one["number"] == 1 and one["question"]["id"] == made["q1"]["id"]
        assert [a["id"] for a in one["answers"]] == [made["a1"]["id"], made["reply"]["id"]]
        assert one["count"] == 2 and one["question"]["is_host"] is True
        assert two["question"]["id"] == made["q2"]["id"]
        assert [a["id"] for a in two["answers"]] == [made["a2"]["id"]]
        by_id = {p["id"]: p for p in data["posts"]}
        assert by_id[made["reply"]["id"]]["answer"] == 1
        assert by_id[made["q2"]["id"]]["question"] == 2

        r = await export(http, slug, "csv")
        assert r.headers["content-type"].startswith("text/csv")
        assert f'filename="{slug}-transcript.csv"' in r.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert [int(row["id"]) for row in rows] == [p["id"] for p in shown]
        for row, made_post in zip(rows, shown, strict=True):
            assert row["author_name"] == made_post["author"]["name"]
            text = made_post["text"]
            assert row["text"] == ("'" + text if text.startswith("=") else text)
        assert rows[-1]["text"].startswith("'=1+1")  # a formula is shown, never run

        markdown = (await export(http, slug, "md")).text
        assert "### Q1" in markdown and "### Q2" in markdown
        assert "Q1: what do you grow?" in markdown and "Q2: any pests?" in markdown

        r = await export(http, slug, "html")
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["content-disposition"].startswith("attachment")
        page = r.text
        assert "<script" not in page.lower()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "Content-Security-Policy" in page and "<style>" in page
        assert page.count('class="question"') == 2

        for fmt in FORMATS:
            body = (await export(http, slug, fmt)).text
            for words in removed:
                assert words not in body, (fmt, words)
        live_page = (await http.get(f"/c/{slug}/transcript")).text
        for words in removed:
            assert words not in live_page

        r = await http.get(f"/c/{slug}/transcript.pdf")
        assert r.status_code == 404 and "md, html, json, csv" in r.json()["detail"]
        r = await http.get("/c/nope/transcript.json")
        assert r.status_code == 404


async def test_start_and_end_select_a_window(server):
    """`start`/`end` keep only posts inside the window (either bound alone works), the window
    is reported in the export, and bad windows are refused with a reason."""
    chat = await create_chat(server.url)
    slug = chat["slug"]
    before = await post(server.url, slug, "early")
    await asyncio.sleep(1.1)
    t1 = datetime.now(UTC)
    inside = await post(server.url, slug, "middle")
    await asyncio.sleep(1.1)
    t2 = datetime.now(UTC)
    after = await post(server.url, slug, "late")
    async with httpx.AsyncClient(base_url=server.url) as http:

        async def ids(**query: str) -> list[int]:
            data = json.loads((await export(http, slug, "json", **query)).text)
            return [p["id"] for p in data["posts"]]

        assert await ids(start=iso(t1), end=iso(t2)) == [inside["id"]]
        assert await ids(start=iso(t1)) == [inside["id"], after["id"]]
        assert await ids(end=iso(t1)) == [before["id"]]
        # Without an offset the time is read as UTC.
        naive = t1.astimezone(UTC).replace(tzinfo=None).isoformat()
        assert await ids(start=naive, end=iso(t2)) == [inside["id"]]
        data = json.loads((await export(http, slug, "json", start=iso(t1), end=iso(t2))).text)
        assert data["window"] == {"start": iso(t1), "end": iso(t2)}
        rows = list(
            csv.DictReader(io.StringIO((await export(http, slug, "csv", end=iso(t1))).text))
        )
        assert [int(r["id"]) for r in rows] == [before["id"]]

        page = await http.get(f"/c/{slug}/transcript", params={"start": iso(t1), "end": iso(t2)})
        assert "middle" in page.text and "early" not in page.text and "late" not in page.text

        r = await http.get(f"/c/{slug}/transcript.json", params={"start": "yesterday"})
        assert r.status_code == 422 and "ISO 8601" in r.json()["detail"]
        r = await http.get(f"/c/{slug}/transcript.json", params={"start": iso(t2), "end": iso(t1)})
        assert r.status_code == 422 and "before it starts" in r.json()["detail"]
        r = await http.get(f"/c/{slug}/transcript.json", params={"session": "2026-11-03"})
        assert r.status_code == 422 and "no schedule" in r.json()["detail"]


async def test_session_selects_one_scheduled_session(make_server):
    """`session=YYYY-MM-DD` covers that date's session in the chat's time zone, from its
    start to its end plus the tail; other dates are 404, and a session with start → 422."""
    server = make_server(HASHROOM_SCHEDULE_TAIL_MINUTES="5")
    chat = await create_chat(server.url)
    slug = chat["slug"]
    early = await post(server.url, slug, "before the session")
    await asyncio.sleep(1.1)
    zone = "Asia/Tokyo"  # the session's date is its local date there, not the UTC date
    from zoneinfo import ZoneInfo

    local_start = datetime.now(ZoneInfo(zone)).replace(microsecond=0)
    schedule = {
        "start": local_start.strftime("%Y-%m-%dT%H:%M:%S"),
        "timezone": zone,
        "duration_minutes": 30,
        "rrule": "FREQ=DAILY",
    }
    async with mod_client(server, chat) as mod:
        r = await mod.put(f"/api/chats/{slug}/schedule", json=schedule)
        assert r.status_code == 200, r.text
    during = await post(server.url, slug, "during the session")
    day = local_start.strftime("%Y-%m-%d")
    async with httpx.AsyncClient(base_url=server.url) as http:
        data = json.loads((await export(http, slug, "json", session=day)).text)
        assert [p["id"] for p in data["posts"]] == [during["id"]]
        start = local_start.astimezone(UTC)
        assert data["window"] == {
            "start": iso(start),
            "end": iso(start + timedelta(minutes=30 + 5)),
        }
        r = await export(http, slug, "md", session=day)
        assert f'filename="{slug}-transcript-{day}.md"' in r.headers["content-disposition"]

        yesterday = (local_start - timedelta(days=1)).strftime("%Y-%m-%d")
        r = await http.get(f"/c/{slug}/transcript.json", params={"session": yesterday})
        assert r.status_code == 404 and zone in r.json()["detail"]
        r = await http.get(f"/c/{slug}/transcript.json", params={"session": day, "start": "x"})
        assert r.status_code == 422 and "not both" in r.json()["detail"]
        page = await http.get(f"/c/{slug}/transcript")
        assert f'href="?session={day}"' in page.text  # the page links its sessions
        whole = json.loads((await export(http, slug, "json")).text)
        assert [p["id"] for p in whole["posts"]] == [early["id"], during["id"]]


async def test_transcript_page_groups_answers_under_questions(server):
    """The archive page shows each question with its answers, then every post, and links
    the four exports with the same window."""
    made = await a_chat_with_questions(server)
    slug = made["chat"]["slug"]
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.get(f"/c/{slug}/transcript", params={"start": "2020-01-01T00:00Z"})
    assert r.status_code == 200
    page = r.text
    q1 = page.index('id="q1"')
    q2 = page.index('id="q2"')
    log = page.index('id="log-title"')
    assert q1 < page.index("A1: tomatoes") < q2 < page.index("A2: =SUM(1,2) aphids") < log
    assert page.index("basil on the sill") < q2  # the plain reply answers Q1
    for fmt in FORMATS:
        assert f"/c/{slug}/transcript.{fmt}?start=2020-01-01T00%3A00Z" in page
    assert "&lt;script&gt;" in page and "<script>alert" not in page
