"""Ranked questions against a real server: votes per browser and per account, un-votes,
moderators marking answered, the ranked list, live events, restarts and transcripts."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import httpx
import pytest

from app.models import Account
from app.votes import account_voter, session_voter
from tests.factories import LiveClient, create_chat, post

pytestmark = [pytest.mark.db, pytest.mark.timeout(60)]


def mod_client(server: Any, chat: dict[str, Any]) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {chat['moderator_key']}"}
    )


async def reader(server: Any, slug: str) -> tuple[httpx.AsyncClient, str]:
    """A fresh browser that opened the room: a cookie jar and the page's CSRF token."""
    http = httpx.AsyncClient(base_url=server.url)
    page = await http.get(f"/c/{slug}")
    token = page.text.split('data-csrf="', 1)[1].split('"', 1)[0]
    return http, token


async def vote(http: httpx.AsyncClient, csrf: str, slug: str, pid: int, on: bool = True) -> Any:
    method = http.put if on else http.delete
    return await method(f"/api/chats/{slug}/questions/{pid}/vote", headers={"X-CSRF-Token": csrf})


async def a_room(server: Any) -> dict[str, Any]:
    """Two questions asked through "Ask" (Q1, Q2), a reader's "Q3:" post, and a comment."""
    chat = await create_chat(server.url)
    slug = chat["slug"]
    made: dict[str, Any] = {"chat": chat, "slug": slug}
    async with mod_client(server, chat) as mod:
        for n, text in ((1, "Q1: what do you grow?"), (2, "Q2: any pests?")):
            r = await mod.post(f"/api/chats/{slug}/questions", json={"text": text})
            assert r.status_code == 201, r.text
            made[f"q{n}"] = r.json()
    made["q3"] = await post(server.url, slug, "Q3: compost tips?", author="Ann")
    made["comment"] = await post(server.url, slug, "lovely chat", author="Bo")
    return made


async def test_one_vote_per_browser_and_unvote(server):
    """A browser's second vote changes nothing; another browser adds one; un-voting takes
    only that browser's vote away; the list says which ones this browser voted for."""
    room = await a_room(server)
    slug, q1 = room["slug"], room["q1"]["id"]
    ann, ann_csrf = await reader(server, slug)
    bo, bo_csrf = await reader(server, slug)
    try:
        first = await vote(ann, ann_csrf, slug, q1)
        assert first.status_code == 200, first.text
        assert first.json() == {"post_id": q1, "votes": 1, "voted": True}
        assert (await vote(ann, ann_csrf, slug, q1)).json()["votes"] == 1
        assert (await vote(bo, bo_csrf, slug, q1)).json()["votes"] == 2
        assert (await vote(ann, ann_csrf, slug, q1, on=False)).json() == {
            "post_id": q1,
            "votes": 1,
            "voted": False,
        }
        assert (await vote(ann, ann_csrf, slug, q1, on=False)).json()["votes"] == 1
        listed = (await bo.get(f"/api/chats/{slug}/questions")).json()["questions"]
        mine = {q["post"]["id"]: (q["votes"], q["voted"]) for q in listed}
        assert mine[q1] == (1, True)
        listed = (await ann.get(f"/api/chats/{slug}/questions")).json()["questions"]
        assert {q["post"]["id"]: q["voted"] for q in listed}[q1] is False
    finally:
        await ann.aclose()
        await bo.aclose()


async def test_vote_refusals_say_what_to_fix(server):
    """Only questions take votes (422 naming why); unknown posts are 404; a cookie-carrying
    vote without the CSRF token is 403; a moderator-only mark without credentials is 401 and
    with another chat's key 403."""
    room = await a_room(server)
    slug = room["slug"]
    other = await create_chat(server.url, hashtag="other")
    ann, csrf = await reader(server, slug)
    try:
        r = await vote(ann, csrf, slug, room["comment"]["id"])
        assert r.status_code == 422 and "not a question" in r.json()["detail"]
        assert (await vote(ann, csrf, slug, 999_999)).status_code == 404
        assert (await vote(ann, csrf, "nope", room["q1"]["id"])).status_code == 404
        r = await ann.put(f"/api/chats/{slug}/questions/{room['q1']['id']}/vote")
        assert r.status_code == 403 and "CSRF" in r.json()["detail"]
        path = f"/api/chats/{slug}/questions/{room['q1']['id']}/answered"
        async with httpx.AsyncClient(base_url=server.url) as anon:
            assert (await anon.put(path)).status_code == 401
        async with mod_client(server, other) as wrong:
            assert (await wrong.put(path)).status_code == 403
        # Nothing was counted by the refusals.
        listed = (await ann.get(f"/api/chats/{slug}/questions")).json()
        assert all(q["votes"] == 0 and not q["answered"] for q in listed["questions"])
    finally:
        await ann.aclose()


async def test_ranked_list_sorts_filters_and_counts(server):
    """sort=votes puts the most voted first (earliest first on ties), sort=time the newest
    first; state filters open/answered while counts cover every question; a comment is no
    question. Groups carry votes and answered too."""
    room = await a_room(server)
    slug = room["slug"]
    q1, q2, q3 = (room[k]["id"] for k in ("q1", "q2", "q3"))
    browsers = [await reader(server, slug) for _ in range(3)]
    try:
        for http, csrf in browsers:
            assert (await vote(http, csrf, slug, q3)).status_code == 200
        for http, csrf in browsers[:2]:
            assert (await vote(http, csrf, slug, q2)).status_code == 200
        async with mod_client(server, room["chat"]) as mod:
            r = await mod.put(f"/api/chats/{slug}/questions/{q3}/answered")
            assert r.status_code == 200 and r.json() == {
                "post_id": q3,
                "answered": True,
                "votes": 3,
            }
            again = await mod.put(f"/api/chats/{slug}/questions/{q3}/answered")
            assert again.json()["answered"] is True
        async with httpx.AsyncClient(base_url=server.url) as http:
            data = (await http.get(f"/api/chats/{slug}/questions?sort=votes")).json()
            assert [q["post"]["id"] for q in data["questions"]] == [q3, q2, q1]
            assert [q["votes"] for q in data["questions"]] == [3, 2, 0]
            assert data["counts"] == {"open": 2, "answered": 1, "all": 3}
            data = (await http.get(f"/api/chats/{slug}/questions?sort=time")).json()
            assert [q["post"]["id"] for q in data["questions"]] == [q3, q2, q1]
            data = (await http.get(f"/api/chats/{slug}/questions?sort=votes&state=open")).json()
            assert [q["post"]["id"] for q in data["questions"]] == [q2, q1]
            assert data["counts"] == {"open": 2, "answered": 1, "all": 3}
            data = (await http.get(f"/api/chats/{slug}/questions?state=answered")).json()
            assert [(q["post"]["id"], q["answered"]) for q in data["questions"]] == [(q3, True)]
            # A reader's "Q3:" is listed for ranking, but numbered groups are the hosts'.
            groups = {g["number"]: g for g in data["groups"]}
            assert (groups[2]["votes"], groups[2]["answered"], sorted(groups)) == (2, False, [1, 2])
            r = await http.get(f"/api/chats/{slug}/questions?sort=loudest")
            assert r.status_code == 422 and "sort" in r.text
    finally:
        for http, _ in browsers:
            await http.aclose()


async def test_votes_and_answered_are_live_events_and_survive_a_restart(make_server):
    """Everyone in the room gets `vote` (with the count) and `answered` events; un-marking
    sends answered=false; after a restart the counts, the marks and the browser's own vote
    are all still there."""
    server = make_server()
    room = await a_room(server)
    slug, q1 = room["slug"], room["q1"]["id"]
    live = await LiveClient.open(server.ws_url, slug)
    ann, csrf = await reader(server, slug)
    try:
        await live.until(lambda f: f["type"] == "snapshot")
        await vote(ann, csrf, slug, q1)
        frame = await live.until(lambda f: f["type"] == "vote")
        assert (frame["post_id"], frame["votes"]) == (q1, 1)
        async with mod_client(server, room["chat"]) as mod:
            await mod.put(f"/api/chats/{slug}/questions/{q1}/answered")
            frame = await live.until(lambda f: f["type"] == "answered")
            assert (frame["post_id"], frame["answered"]) == (q1, True)
            await mod.delete(f"/api/chats/{slug}/questions/{q1}/answered")
            frame = await live.until(lambda f: f["type"] == "answered")
            assert frame["answered"] is False
            await mod.put(f"/api/chats/{slug}/questions/{q1}/answered")
        await live.close()
        server.restart()
        listed = (await ann.get(f"/api/chats/{slug}/questions")).json()["questions"]
        found = {q["post"]["id"]: q for q in listed}[q1]
        assert (found["votes"], found["voted"], found["answered"]) == (1, True, True)
        # Catching up after the offset replays the events in order.
        async with httpx.AsyncClient(base_url=server.url) as http:
            events = (await http.get(f"/api/chats/{slug}/events?after=0")).json()
            kinds = [e["type"] for e in events["events"]]
            assert kinds.count("vote") == 1 and kinds.count("answered") == 3
    finally:
        await ann.aclose()


async def test_transcripts_carry_votes_and_answered(server):
    """Markdown, HTML (export and printable page), JSON and CSV all show a question's votes
    and whether it was answered."""
    room = await a_room(server)
    slug, q2 = room["slug"], room["q2"]["id"]
    browsers = [await reader(server, slug) for _ in range(2)]
    try:
        for http, csrf in browsers:
            await vote(http, csrf, slug, q2)
        async with mod_client(server, room["chat"]) as mod:
            await mod.put(f"/api/chats/{slug}/questions/{q2}/answered")
        async with httpx.AsyncClient(base_url=server.url) as http:
            data = json.loads((await http.get(f"/c/{slug}/transcript.json")).text)
            by_id = {p["id"]: p for p in data["posts"]}
            assert (by_id[q2]["votes"], by_id[q2]["answered"]) == (2, True)
            assert data["questions"][1]["question"]["votes"] == 2
            assert by_id[room["q1"]["id"]]["answered"] is False
            rows = list(
                csv.DictReader(io.StringIO((await http.get(f"/c/{slug}/transcript.csv")).text))
            )
            row = next(r for r in rows if r["id"] == str(q2))
            assert (row["votes"], row["answered"]) == ("2", "yes")
            md = (await http.get(f"/c/{slug}/transcript.md")).text
            assert "*2 votes · answered*" in md
            for path in (f"/c/{slug}/transcript.html", f"/c/{slug}/transcript"):
                page = (await http.get(path)).text
                assert "2 votes · answered" in page, path
    finally:
        for http, _ in browsers:
            await http.aclose()


def test_signed_in_account_votes_as_itself_from_every_browser():
    """A session holding a live account grant votes as that account (the same key from two
    browsers); a stale grant does not count, and then the browser's own voter id is used."""
    from app.grants import grant_account

    secret = "s" * 40
    account = Account(
        id=3, network="mastodon", instance="https://m.example", remote_id="109", secret="x"
    )
    account.owner = "owner-hash"
    one: dict[str, Any] = {}
    two: dict[str, Any] = {}
    grant_account(one, secret, account)
    grant_account(two, secret, account)
    assert session_voter(one, secret, [account]) == account_voter(secret, account)
    assert session_voter(two, secret, [account]) == session_voter(one, secret, [account])
    account.owner = "rotated"  # disconnected and reconnected: the old grants are dead
    anon = session_voter(one, secret, [account])
    assert anon != account_voter(secret, account)
    assert anon == session_voter(one, secret, [])  # the browser keeps one voter id
    assert anon != session_voter(two, secret, [])
