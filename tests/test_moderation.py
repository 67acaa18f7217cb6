"""Room moderation against a real server: hosts and guests, blocks, hold-for-review rules,
the action log with undo, the Q/A grouping API, and who may do what."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories import LiveClient, create_chat, host_browser, moderator_browser, post

pytestmark = pytest.mark.timeout(60)


def mod_client(server: Any, chat: dict[str, Any]) -> httpx.AsyncClient:
    """An API client holding the chat's moderator key."""
    return httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {chat['moderator_key']}"}
    )


async def visible_ids(http: httpx.AsyncClient, slug: str) -> set[int]:
    items = (await http.get(f"/api/chats/{slug}/posts?limit=500")).json()["items"]
    return {item["post"]["id"] for item in items}


async def latest_action(http: httpx.AsyncClient, slug: str, kind: str) -> dict[str, Any]:
    action = (await http.get(f"/api/chats/{slug}/actions")).json()["actions"][0]
    assert action["action"] == kind, action
    return action


async def undo(http: httpx.AsyncClient, slug: str, kind: str) -> dict[str, Any]:
    """Undo the newest action (which must be ``kind``); a second undo must be refused."""
    action = await latest_action(http, slug, kind)
    assert action["undoable"] is True
    r = await http.post(f"/api/chats/{slug}/actions/{action['id']}/undo")
    assert r.status_code == 200, r.text
    again = await http.post(f"/api/chats/{slug}/actions/{action['id']}/undo")
    assert again.status_code == 409 and "already undone" in again.json()["detail"]
    return r.json()


async def test_people_are_marked_as_hosts_and_readers_get_a_people_frame(server):
    """PUT/POST/DELETE people change who counts as host (per network or any) and push the
    new list to readers as a `people` frame."""
    chat = await create_chat(server.url)
    slug = chat["slug"]
    reader = await LiveClient.open(server.ws_url, slug)
    await reader.next()
    async with mod_client(server, chat) as http:
        r = await http.put(
            f"/api/chats/{slug}/people",
            json={
                "people": [
                    {"handle": "@Maya", "role": "host"},
                    {"handle": "Guesty", "role": "guest", "network": "mastodon"},
                ]
            },
        )
        assert r.status_code == 200, r.text
        frame = await reader.until(lambda f: f["type"] == "people")
        assert frame["people"] == [
            {"network": "mastodon", "handle": "guesty", "role": "guest"},
            {"network": "*", "handle": "maya", "role": "host"},
        ]
        assert frame["offset"] == 1 and frame["epoch"] == chat["chat"]["epoch"]

        maya = await host_browser(server.url, chat, "Maya")
        host_post = await maya.post(slug, "Q1: hello all")
        assert host_post["is_host"] is True
        await maya.close()
        # Typing a host's name is not being the host.
        impostor = await post(server.url, slug, "Q9: trust me", author="Maya")
        assert impostor["is_host"] is False
        # The guest is named on Mastodon only; a native author of that name is nobody.
        other = await post(server.url, slug, "hi", author="Guesty")
        assert other["is_host"] is False
        live = await reader.until(lambda f: f["type"] == "post")
        assert live["post"]["is_host"] is True and "is-host" in live["html"]

        r = await http.post(f"/api/chats/{slug}/people", json={"handle": "ann", "role": "guest"})
        assert r.json()["added"] == [{"network": "*", "handle": "ann", "role": "guest"}]
        frame = await reader.until(lambda f: f["type"] == "people")
        assert {"network": "*", "handle": "ann", "role": "guest"} in frame["people"]

        r = await http.request("DELETE", f"/api/chats/{slug}/people", json={"handle": "@ANN"})
        assert r.status_code == 200 and len(r.json()["removed"]) == 1
        frame = await reader.until(lambda f: f["type"] == "people")
        assert [p["handle"] for p in frame["people"]] == ["guesty", "maya"]
        r = await http.request("DELETE", f"/api/chats/{slug}/people", json={"handle": "ann"})
        assert r.status_code == 404 and "not a host or guest" in r.json()["detail"]

        bad = await http.post(f"/api/chats/{slug}/people", json={"handle": "x", "role": "boss"})
        assert bad.status_code == 422 and "role" in bad.json()["detail"]
        bad = await http.post(
            f"/api/chats/{slug}/people", json={"handle": "x", "network": "myspace"}
        )
        assert bad.status_code == 422 and "network" in bad.json()["detail"]
        bad = await http.post(f"/api/chats/{slug}/people", json={"handle": "  @ "})
        assert bad.status_code == 422 and "handle" in bad.json()["detail"]

    async with httpx.AsyncClient(base_url=server.url) as anon:
        public = (await anon.get(f"/api/chats/{slug}/people")).json()["people"]
    assert [p["handle"] for p in public] == ["guesty", "maya"]
    await reader.close()


async def test_block_hides_past_and_future_posts_and_unblock_restores_them(server):
    """Blocking hides the author's posts for every reader (`hide` frames) and stores their
    new posts hidden; unblocking shows exactly those again (`unhide` frames)."""
    chat = await create_chat(server.url)
    slug = chat["slug"]
    m1 = await post(server.url, slug, "first spam", author="Mallory")
    ann = await post(server.url, slug, "A1: useful", author="Ann")
    m2 = await post(server.url, slug, "second spam", author="Mallory")
    reader = await LiveClient.open(server.ws_url, slug)
    await reader.next()
    async with mod_client(server, chat) as http:
        # A moderator hid one post before the block: unblocking must leave it hidden.
        await http.put(f"/api/chats/{slug}/hidden/{m1['id']}")
        await reader.until(lambda f: f["type"] == "hide")

        r = await http.put(f"/api/chats/{slug}/blocks", json={"handle": "@MALLORY"})
        assert r.status_code == 200, r.text
        assert r.json() == {
            "network": "*",
            "handle": "mallory",
            "changed": True,
            "hidden": [m2["id"]],
        }
        hide = await reader.until(lambda f: f["type"] == "hide")
        assert hide["post_id"] == m2["id"]
        again = await http.put(f"/api/chats/{slug}/blocks", json={"handle": "mallory"})
        assert again.json()["changed"] is False

        future = await post(server.url, slug, "third spam", author="Mallory")
        assert future["hidden"] is True
        marker = await post(server.url, slug, "A1: still here", author="Ann")
        frame = await reader.until(lambda f: f["type"] == "post")
        assert frame["post"]["id"] == marker["id"], "a blocked author's post reached readers"
        assert await visible_ids(http, slug) == {ann["id"], marker["id"]}
        events = (await http.get(f"/api/chats/{slug}/events")).json()["events"]
        assert "third spam" not in str(events)
        assert (await http.get(f"/api/chats/{slug}/blocks")).json()["blocks"] == [
            {"network": "*", "handle": "mallory"}
        ]

        r = await http.request("DELETE", f"/api/chats/{slug}/blocks", json={"handle": "mallory"})
        assert r.status_code == 200 and sorted(r.json()["shown"]) == [m2["id"], future["id"]]
        shown = [await reader.until(lambda f: f["type"] == "unhide") for _ in range(2)]
        assert sorted(f["post"]["id"] for f in shown) == [m2["id"], future["id"]]
        assert "third spam" in shown[1]["html"] or "third spam" in shown[0]["html"]
        assert await visible_ids(http, slug) == {ann["id"], marker["id"], m2["id"], future["id"]}
        r = await http.request("DELETE", f"/api/chats/{slug}/blocks", json={"handle": "mallory"})
        assert r.status_code == 404 and "not blocked" in r.json()["detail"]

        # A block on one network leaves the same handle elsewhere alone.
        r = await http.put(
            f"/api/chats/{slug}/blocks", json={"handle": "ann", "network": "bluesky"}
        )
        assert r.json()["hidden"] == []
    await reader.close()


async def test_rules_hold_matching_posts_until_a_moderator_approves(server):
    """Keyword and link rules hold new posts: readers never receive them (live, /posts or
    /events) until approved; rejected ones stay hidden; hosts are never held."""
    chat = await create_chat(server.url)
    slug = chat["slug"]
    reader = await LiveClient.open(server.ws_url, slug)
    await reader.next()
    async with mod_client(server, chat) as http:
        r = await http.post(
            f"/api/chats/{slug}/rules", json={"kind": "keyword", "pattern": "Casino"}
        )
        assert r.status_code == 201 and r.json()["rule"]["pattern"] == "casino"
        r = await http.post(
            f"/api/chats/{slug}/rules",
            json={"kind": "link", "pattern": "https://spam.example/whatever"},
        )
        assert r.json()["rule"]["pattern"] == "spam.example"
        bad = await http.post(f"/api/chats/{slug}/rules", json={"kind": "regex", "pattern": "x"})
        assert bad.status_code == 422 and "kind" in bad.json()["detail"]
        bad = await http.post(f"/api/chats/{slug}/rules", json={"kind": "link", "pattern": "no"})
        assert bad.status_code == 422 and "domain" in bad.json()["detail"]
        await http.put(f"/api/chats/{slug}/people", json={"people": [{"handle": "maya"}]})

        casino = await post(server.url, slug, "Win big at the CASINO tonight", author="Spammer")
        link = await post(server.url, slug, "deals: https://www.spam.example/x", author="Bot")
        fine = await post(server.url, slug, "Occasionally I visit casinos.example", author="Ann")
        maya = await host_browser(server.url, chat, "Maya")
        host = await maya.post(slug, "Q1: no casino talk please")
        await maya.close()
        frames = [await reader.until(lambda f: f["type"] == "post") for _ in range(2)]
        assert [f["post"]["id"] for f in frames] == [fine["id"], host["id"]]
        assert casino["hidden"] is True and link["hidden"] is True

        held = (await http.get(f"/api/chats/{slug}/held")).json()["posts"]
        assert [h["post"]["id"] for h in held] == [casino["id"], link["id"]]
        assert held[0]["held_by"] == 'keyword "casino"'
        assert held[1]["held_by"] == 'link "spam.example"'
        assert await visible_ids(http, slug) == {fine["id"], host["id"]}
        events = (await http.get(f"/api/chats/{slug}/events")).json()["events"]
        assert "CASINO" not in str(events) and "spam.example" not in str(events)

        r = await http.post(f"/api/chats/{slug}/held/{casino['id']}/approve")
        assert r.status_code == 200, r.text
        shown = await reader.until(lambda f: f["type"] == "unhide")
        assert shown["post"]["id"] == casino["id"] and shown["post"]["hidden"] is False
        r = await http.post(f"/api/chats/{slug}/held/{link['id']}/reject")
        assert r.status_code == 200
        again = await http.post(f"/api/chats/{slug}/held/{link['id']}/reject")
        assert again.status_code == 409 and "not waiting for review" in again.json()["detail"]
        assert (await http.get(f"/api/chats/{slug}/held")).json()["posts"] == []
        assert await visible_ids(http, slug) == {fine["id"], host["id"], casino["id"]}
    await reader.close()


async def test_every_action_is_logged_and_each_kind_can_be_undone_once(server):
    """Pin, unpin, hide, unhide, question, block, unblock, rule add/remove, people, approve,
    reject and schedule are logged with who did them; undo reverts each; twice → 409."""
    chat = await create_chat(server.url)
    slug = chat["slug"]
    p = await post(server.url, slug, "Q1: a question?", author="Maya")
    m = await post(server.url, slug, "spam", author="Mallory")
    async with mod_client(server, chat) as http:
        http.headers["X-Moderator-Name"] = "Rosa"

        async def pins() -> list[int]:
            return [x["post"]["id"] for x in (await http.get(f"/api/chats/{slug}")).json()["pins"]]

        await http.put(f"/api/chats/{slug}/pins/{p['id']}")
        action = await latest_action(http, slug, "pin")
        assert action["actor"] == "moderator key (Rosa)"
        assert action["summary"].startswith(f"Pinned post {p['id']} by @maya")
        await undo(http, slug, "pin")
        assert await pins() == []

        await http.put(f"/api/chats/{slug}/pins/{p['id']}")
        await http.delete(f"/api/chats/{slug}/pins/{p['id']}")
        await undo(http, slug, "unpin")
        assert await pins() == [p["id"]]

        await http.put(f"/api/chats/{slug}/hidden/{m['id']}")
        await undo(http, slug, "hide")
        assert m["id"] in await visible_ids(http, slug)
        await http.put(f"/api/chats/{slug}/hidden/{m['id']}")
        await http.delete(f"/api/chats/{slug}/hidden/{m['id']}")
        await undo(http, slug, "unhide")
        assert m["id"] not in await visible_ids(http, slug)

        q = (await http.post(f"/api/chats/{slug}/questions", json={"text": "Q2: next?"})).json()
        await undo(http, slug, "question")
        assert q["id"] not in await visible_ids(http, slug) and q["id"] not in await pins()

        await http.put(f"/api/chats/{slug}/blocks", json={"handle": "maya"})
        assert p["id"] not in await visible_ids(http, slug)
        await undo(http, slug, "block")
        assert p["id"] in await visible_ids(http, slug)
        await http.put(f"/api/chats/{slug}/blocks", json={"handle": "maya"})
        await http.request("DELETE", f"/api/chats/{slug}/blocks", json={"handle": "maya"})
        await undo(http, slug, "unblock")
        assert p["id"] not in await visible_ids(http, slug)
        await http.request("DELETE", f"/api/chats/{slug}/blocks", json={"handle": "maya"})

        await http.post(f"/api/chats/{slug}/rules", json={"kind": "keyword", "pattern": "buy"})
        await undo(http, slug, "rule_add")
        assert (await http.get(f"/api/chats/{slug}/rules")).json()["rules"] == []
        await http.post(f"/api/chats/{slug}/rules", json={"kind": "keyword", "pattern": "buy"})
        await http.request(
            "DELETE", f"/api/chats/{slug}/rules", json={"kind": "keyword", "pattern": "buy"}
        )
        await undo(http, slug, "rule_remove")
        rules = (await http.get(f"/api/chats/{slug}/rules")).json()["rules"]
        assert [(r["kind"], r["pattern"]) for r in rules] == [("keyword", "buy")]

        await http.post(f"/api/chats/{slug}/people", json={"handle": "ann", "role": "guest"})
        await http.put(f"/api/chats/{slug}/people", json={"people": [{"handle": "maya"}]})
        await undo(http, slug, "people")
        people = (await http.get(f"/api/chats/{slug}/people")).json()["people"]
        assert people == [{"network": "*", "handle": "ann", "role": "guest"}]

        held = await post(server.url, slug, "buy now", author="Bot")
        await http.post(f"/api/chats/{slug}/held/{held['id']}/approve")
        assert held["id"] in await visible_ids(http, slug)
        await undo(http, slug, "approve")
        assert held["id"] not in await visible_ids(http, slug)
        queue = (await http.get(f"/api/chats/{slug}/held")).json()["posts"]
        assert [h["post"]["id"] for h in queue] == [held["id"]]
        await http.post(f"/api/chats/{slug}/held/{held['id']}/reject")
        assert (await http.get(f"/api/chats/{slug}/held")).json()["posts"] == []
        await undo(http, slug, "reject")
        queue = (await http.get(f"/api/chats/{slug}/held")).json()["posts"]
        assert [h["post"]["id"] for h in queue] == [held["id"]]

        schedule = {"start": "2026-12-01T19:00", "timezone": "UTC", "duration_minutes": 60}
        await http.put(f"/api/chats/{slug}/schedule", json=schedule)
        await http.put(
            f"/api/chats/{slug}/schedule",
            content=b"null",
            headers={"Content-Type": "application/json"},
        )
        await undo(http, slug, "schedule")
        assert (await http.get(f"/api/chats/{slug}")).json()["chat"]["schedule"] == {
            **schedule,
            "rrule": None,
        }

        log = (await http.get(f"/api/chats/{slug}/actions?limit=1000")).json()["actions"]
        kinds = {a["action"] for a in log}
        assert kinds >= {
            "pin",
            "unpin",
            "hide",
            "unhide",
            "question",
            "block",
            "unblock",
            "rule_add",
            "rule_remove",
            "people",
            "approve",
            "reject",
            "schedule",
        }
        assert all(a["actor"] == "moderator key (Rosa)" for a in log)
        undone = [a for a in log if a["undone_at"]]
        assert len(undone) == 13 and all(a["undone_by"] == "moderator key (Rosa)" for a in undone)
        r = await http.post(f"/api/chats/{slug}/actions/99999/undo")
        assert r.status_code == 404


async def test_questions_api_groups_answers_under_host_questions(server):
    """GET /questions groups answers (explicit markers and plain replies) under the hosts'
    questions, and marks the pinned question current."""
    chat = await create_chat(server.url)
    slug = chat["slug"]
    async with mod_client(server, chat) as http:
        await http.put(f"/api/chats/{slug}/people", json={"people": [{"handle": "maya"}]})
        maya = await host_browser(server.url, chat, "Maya")
        q1 = await maya.post(slug, "Q1: favourite tool?")
        q2 = await maya.post(slug, "Q2: favourite plant?")
        await maya.close()
        a1 = await post(server.url, slug, "A1: a trowel", author="Ann")
        reply = await post(server.url, slug, "my hands!", author="Bo", in_reply_to=q1["id"])
        a2 = await post(server.url, slug, "A2 basil", author="Cy")
        await post(server.url, slug, "Q3: not a host question", author="Dee")
        await http.put(f"/api/chats/{slug}/pins/{q1['id']}")
    async with httpx.AsyncClient(base_url=server.url) as anon:
        groups = (await anon.get(f"/api/chats/{slug}/questions")).json()["groups"]
    assert [g["number"] for g in groups] == [1, 2]
    one, two = groups
    assert one["question"]["id"] == q1["id"] and one["current"] is True
    assert [a["id"] for a in one["answers"]] == [a1["id"], reply["id"]] and one["count"] == 2
    assert two["question"]["id"] == q2["id"] and two["current"] is False
    assert [a["id"] for a in two["answers"]] == [a2["id"]]
    assert one["question"]["is_host"] is True and one["answers"][0]["author"]["name"] == "Ann"


async def test_moderation_is_refused_to_everyone_else(server):
    """No key → 401, another chat's key → 403, a moderator cookie without its CSRF token →
    403; with the token the log names the moderator link and the display name."""
    one = await create_chat(server.url, "one")
    two = await create_chat(server.url, "two")
    slug = one["slug"]
    target = await post(server.url, slug, "x")
    calls = [
        ("PUT", "people", {"people": []}),
        ("POST", "people", {"handle": "a"}),
        ("DELETE", "people", {"handle": "a"}),
        ("GET", "blocks", None),
        ("PUT", "blocks", {"handle": "a"}),
        ("DELETE", "blocks", {"handle": "a"}),
        ("GET", "rules", None),
        ("POST", "rules", {"kind": "keyword", "pattern": "a"}),
        ("DELETE", "rules", {"kind": "keyword", "pattern": "a"}),
        ("DELETE", "rules/1", None),
        ("GET", "held", None),
        ("POST", f"held/{target['id']}/approve", None),
        ("POST", f"held/{target['id']}/reject", None),
        ("GET", "actions", None),
        ("POST", "actions/1/undo", None),
        ("PUT", "schedule", None),
        ("PUT", "hashtags", {"hashtags": ["a"]}),
    ]
    wrong = {"Authorization": f"Bearer {two['moderator_key']}"}
    async with httpx.AsyncClient(base_url=server.url) as http:
        for method, path, body in calls:
            url = f"/api/chats/{slug}/{path}"
            r = await http.request(method, url, json=body)
            assert r.status_code == 401, (method, path, r.status_code)
            assert "moderators only" in r.json()["detail"]
            r = await http.request(method, url, json=body, headers=wrong)
            assert r.status_code == 403, (method, path, r.status_code)

    signed_in = await moderator_browser(server.url, one)
    browser, token = signed_in.http, signed_in.csrf
    try:
        # Posting under a name remembers it in the session, and the log uses it.
        r = await browser.post(
            f"/api/chats/{slug}/posts",
            json={"text": "hi", "author": "Rosa"},
            headers={"X-CSRF-Token": token},
        )
        assert r.status_code == 201, r.text
        url = f"/api/chats/{slug}/blocks"
        r = await browser.put(url, json={"handle": "mallory"})
        assert r.status_code == 403 and "CSRF" in r.json()["detail"]
        r = await browser.put(url, json={"handle": "mallory"}, headers={"X-CSRF-Token": token})
        assert r.status_code == 200, r.text
        log = (
            await browser.get(f"/api/chats/{slug}/actions", headers={"X-CSRF-Token": token})
        ).json()["actions"]
    finally:
        await signed_in.close()
    assert log[0]["action"] == "block" and log[0]["actor"] == "moderator link (Rosa)"


def test_rules_match_whole_words_and_real_links_only():
    """Keyword rules match whole words in any case; link rules see real links (with their
    subdomains) but not the mention and hashtag links every Mastodon post carries."""
    from app.moderation import Rule, link_hosts, normalize_rule

    mastodon = (
        '<p><span class="h-card"><a href="https://m.example/@ann" class="u-url mention">'
        '@<span>ann</span></a></span> look <a href="https://m.example/tags/edchat" '
        'class="mention hashtag" rel="tag">#<span>edchat</span></a></p>'
    )
    assert link_hosts(mastodon, "@ann look #edchat") == set()
    linked = mastodon + '<p><a href="https://shop.spam.example/x?a=1&amp;b=2">offer</a></p>'
    assert link_hosts(linked, "") == {"shop.spam.example"}
    assert link_hosts("", "see http://Bare.example/path, ok") == {"bare.example"}

    def rule(kind: str, pattern: str) -> Rule:
        kind, pattern = normalize_rule(kind, pattern)
        return Rule(id=1, kind=kind, pattern=pattern)

    spam = rule("link", "*.Spam.Example")
    assert spam.pattern == "spam.example"
    assert spam.matches("", {"shop.spam.example"}) and not spam.matches("", {"notspam.example"})
    assert rule("link", "*").matches("", {"a.example"}) and not rule("link", "*").matches("", set())
    words = rule("keyword", "  Free   Money ")
    assert words.pattern == "free money"
    assert words.matches("get free\nmoney now".casefold(), set())
    assert not words.matches("carefree money", set())
    assert rule("keyword", "$$$").matches("win$$$now", set())
    assert not rule("keyword", "ass").matches("a class act", set())
