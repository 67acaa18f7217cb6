"""Several hashtags per chat, against a real server: creating with a list or one tag, the
validation errors, the moderators' edit with its live frame and notice, undo, and who may
edit."""

from __future__ import annotations

import html
import re

import httpx
import pytest

from app import text
from tests.factories import LiveClient, create_chat, moderator_browser, post

pytestmark = pytest.mark.timeout(60)


async def make(base: str, **body: object) -> httpx.Response:
    payload = {"title": "Tags", "network": "native", **body}
    async with httpx.AsyncClient(base_url=base) as http:
        return await http.post("/api/chats", json=payload)


async def test_create_with_a_list_or_a_single_tag_and_every_view_has_both(server):
    """`hashtags` sets every tag (first = reply tag), `hashtag` alone is a one-item list,
    and the list, the chat and the create answer all carry `hashtag` and `hashtags`."""
    r = await make(server.url, hashtags=["#TheChat", " TheChat2026 "])
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["chat"]["hashtag"] == "TheChat"
    assert made["chat"]["hashtags"] == ["TheChat", "TheChat2026"]
    legacy = (await make(server.url, hashtag="Solo")).json()
    assert legacy["chat"]["hashtag"] == "Solo" and legacy["chat"]["hashtags"] == ["Solo"]
    both = await make(server.url, hashtag="thechat", hashtags=["TheChat", "Other"])
    assert both.status_code == 201, both.text
    assert both.json()["chat"]["hashtags"] == ["TheChat", "Other"]

    async with httpx.AsyncClient(base_url=server.url) as http:
        listed = {c["slug"]: c for c in (await http.get("/api/chats")).json()}
        one = (await http.get(f"/api/chats/{made['slug']}")).json()["chat"]
    assert listed[made["slug"]]["hashtags"] == ["TheChat", "TheChat2026"]
    assert listed[legacy["slug"]]["hashtags"] == ["Solo"]
    assert one["hashtag"] == "TheChat" and one["hashtags"] == ["TheChat", "TheChat2026"]

    # A native post carrying any of the tags gets no second tag; one with none gets the
    # reply tag.
    tagged = await post(server.url, made["slug"], "A1 yes #thechat2026")
    assert tagged["text"] == "A1 yes #thechat2026"
    plain = await post(server.url, made["slug"], "A2 no")
    assert plain["text"] == "A2 no #TheChat"


async def test_create_refuses_bad_lists_naming_the_field(make_server):
    """Duplicates (any case), invalid tags, too many, none, and a `hashtag` that is not the
    first of `hashtags` are 422s naming the field."""
    server = make_server(HASHROOM_MAX_HASHTAGS_PER_CHAT="3")
    cases = [
        ({"hashtags": ["EdChat", "edchat"]}, "hashtags", "twice"),
        ({"hashtags": ["EdChat", "bad tag"]}, "hashtags", "tag 2"),
        ({"hashtags": []}, "hashtags", ""),
        ({"hashtags": ["a1", "b1", "c1", "d1"]}, "hashtags", "at most 3"),
        ({"hashtag": "Other", "hashtags": ["EdChat", "Other"]}, "hashtags", "reply tag"),
        ({}, "hashtag", "give"),
    ]
    for body, field, words in cases:
        r = await make(server.url, **body)
        assert r.status_code == 422, (body, r.text)
        detail = r.json()["detail"]
        assert detail.startswith(f"{field}:") and words in detail, (body, detail)


async def test_moderators_edit_the_tags_live_and_can_undo(server):
    """PUT /hashtags replaces the list: readers get a `hashtags` frame and a notice, posts
    then carry the new reply tag, the last tag cannot be removed, and undo restores."""
    chat = await create_chat(server.url, "first")
    slug = chat["slug"]
    reader = await LiveClient.open(server.ws_url, slug)
    await reader.next()
    key = {"Authorization": f"Bearer {chat['moderator_key']}"}
    async with httpx.AsyncClient(base_url=server.url, headers=key) as http:
        r = await http.put(f"/api/chats/{slug}/hashtags", json={"hashtags": ["Second", "first"]})
        assert r.status_code == 200, r.text
        assert r.json() == {"hashtag": "Second", "hashtags": ["Second", "first"], "changed": True}
        frame = await reader.until(lambda f: f["type"] == "hashtags")
        assert frame["hashtag"] == "Second" and frame["hashtags"] == ["Second", "first"]
        notice = await reader.until(lambda f: f["type"] == "notice")
        assert "#Second, #first" in notice["text"]
        assert (await post(server.url, slug, "hello"))["text"] == "hello #Second"

        again = await http.put(
            f"/api/chats/{slug}/hashtags", json={"hashtags": ["Second", "first"]}
        )
        assert again.json()["changed"] is False
        for body, words in (
            ({"hashtags": []}, "last"),
            ({"hashtags": ["x1", "X1"]}, "twice"),
            ({"hashtags": ["#"]}, "empty"),
        ):
            bad = await http.put(f"/api/chats/{slug}/hashtags", json=body)
            assert bad.status_code == 422 and bad.json()["detail"].startswith("hashtags:"), bad.text
            assert words in bad.json()["detail"]

        action = (await http.get(f"/api/chats/{slug}/actions")).json()["actions"][0]
        assert action["action"] == "hashtags" and action["target"] == "#Second #first"
        r = await http.post(f"/api/chats/{slug}/actions/{action['id']}/undo")
        assert r.status_code == 200, r.text
        frame = await reader.until(lambda f: f["type"] == "hashtags")
        assert frame["hashtags"] == ["first"]
        got = (await http.get(f"/api/chats/{slug}")).json()["chat"]
        assert got["hashtag"] == "first" and got["hashtags"] == ["first"]
    await reader.close()


async def test_only_moderators_edit_the_tags(server):
    """No key → 401, another chat's key → 403, a moderator cookie needs its CSRF token."""
    one = await create_chat(server.url, "one")
    two = await create_chat(server.url, "two")
    url = f"/api/chats/{one['slug']}/hashtags"
    body = {"hashtags": ["one", "uno"]}
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.put(url, json=body)).status_code == 401
        wrong = {"Authorization": f"Bearer {two['moderator_key']}"}
        assert (await http.put(url, json=body, headers=wrong)).status_code == 403
    browser = await moderator_browser(server.url, one)
    try:
        r = await browser.http.put(url, json=body)
        assert r.status_code == 403 and "CSRF" in r.json()["detail"]
        r = await browser.http.put(url, json=body, headers={"X-CSRF-Token": browser.csrf})
        assert r.status_code == 200 and r.json()["hashtags"] == ["one", "uno"]
    finally:
        await browser.close()


def test_tag_lists_are_normalized_in_order_and_checked():
    """split_hashtags reads a form field; normalize_hashtags keeps order and refuses repeats."""
    assert text.split_hashtags(" #A, #B  C;d ") == ["#A", "#B", "C", "d"]
    assert text.normalize_hashtags(["#Édu", "b"], 5) == ["Édu", "b"]
    with pytest.raises(ValueError, match="twice"):
        text.normalize_hashtags(["Edu", "#EDU"], 5)
    with pytest.raises(ValueError, match="at most 1"):
        text.normalize_hashtags(["a", "b"], 1)
    assert text.contains_any_hashtag("hi #B!", ["a", "b"])
    assert not text.contains_any_hashtag("hi #bb", ["a", "b"])


async def test_the_no_script_form_takes_several_tags_in_one_field(server):
    """The home page form (no script) reads "#A, B" as two tags; a repeated tag is refused
    on the page, naming the tag."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        home = await http.get("/")
        token = re.search(r'name="csrf_token" value="([^"]+)"', home.text)[1]  # type: ignore[index]
        form = {"csrf_token": token, "hashtag": "#FormChat, Form_2026", "title": "Form"}
        page = await http.post("/chats", data=form)
        assert page.status_code == 201, page.text[:300]
        chats = (await http.get("/api/chats")).json()
        assert chats[0]["hashtags"] == ["FormChat", "Form_2026"]
        assert "#FormChat #Form_2026" in (await http.get("/")).text
        bad = await http.post("/chats", data={**form, "hashtag": "A1 a1"})
        assert bad.status_code == 422 and "#a1 is given twice" in html.unescape(bad.text)
