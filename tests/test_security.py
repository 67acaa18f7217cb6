"""Security guards against a real server: the moderator link, response headers, the
production secret check, moderator-only undo actions and the home form's CSRF token."""

from __future__ import annotations

import re

import httpx
import pytest
from pydantic import ValidationError
from starlette.requests import HTTPConnection

from app.config import DEV_SECRET, Settings
from app.security import Vault, csrf_ok, csrf_token, origin_allowed
from tests.factories import create_chat, post

pytestmark = pytest.mark.timeout(60)

HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


def _is_moderator_page(html: str) -> bool:
    return bool(re.search(r'<body[^>]*class="[^"]*\bis-mod\b', html))


async def test_moderator_link_with_a_wrong_key_grants_nothing(server):
    """`/c/{slug}?key=` with another chat's key (or garbage) is refused with 403 and leaves
    the browser a plain reader; the right key makes it a moderator and drops the key from
    the address."""
    one = await create_chat(server.url, "one")
    two = await create_chat(server.url, "two")
    async with httpx.AsyncClient(base_url=server.url) as browser:
        for wrong in (two["moderator_key"], "x" * 32, ""):
            r = await browser.get(f"/c/{one['slug']}", params={"key": wrong})
            assert r.status_code == 403, (wrong, r.status_code)
            assert "not valid" in r.text
            page = await browser.get(f"/c/{one['slug']}")
            assert page.status_code == 200 and not _is_moderator_page(page.text)
        r = await browser.get(f"/c/{one['slug']}", params={"key": one["moderator_key"]})
        assert r.status_code == 303 and r.headers["location"] == f"/c/{one['slug']}"
        page = await browser.get(f"/c/{one['slug']}")
        assert _is_moderator_page(page.text)
        assert not _is_moderator_page((await browser.get(f"/c/{two['slug']}")).text)


async def test_every_kind_of_response_carries_the_security_headers(server):
    """Pages, API answers, errors and static files all carry CSP (no inline script, no
    framing), nosniff, DENY framing and a same-origin referrer policy."""
    chat = await create_chat(server.url)
    async with httpx.AsyncClient(base_url=server.url) as http:
        responses = [
            await http.post("/api/chats", content=b"{"),  # before any session cookie
            await http.get("/"),
            await http.get(f"/c/{chat['slug']}"),
            await http.get(f"/api/chats/{chat['slug']}"),
            await http.get("/api/chats/nochat"),
            await http.get("/static/style.css"),
        ]
    assert [r.status_code for r in responses] == [422, 200, 200, 200, 404, 200]
    for r in responses:
        for name, value in HEADERS.items():
            assert r.headers.get(name) == value, (r.url, name, r.headers.get(name))
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, r.url
        assert "unsafe-inline" not in csp and "object-src 'none'" in csp


def test_production_refuses_the_development_secret() -> None:
    """HASHROOM_ENV=production with the built-in or a short secret does not configure; a
    long random secret does, and development accepts the built-in one."""
    for secret in (DEV_SECRET, "short-secret"):
        with pytest.raises(ValidationError, match="HASHROOM_SECRET_KEY must be set"):
            Settings(env="production", secret_key=secret)
    assert Settings(env="production", secret_key="k" * 32).secret_key == "k" * 32
    assert Settings(env="development").secret_key == DEV_SECRET


def test_a_production_server_will_not_start_with_the_development_secret(make_server):
    """The real process exits at start, naming the setting to fix, instead of serving with a
    secret anyone can read in the source."""
    with pytest.raises(RuntimeError, match="server exited early") as failed:
        make_server(HASHROOM_ENV="production", HASHROOM_SECRET_KEY=DEV_SECRET)
    assert "HASHROOM_SECRET_KEY must be set" in str(failed.value)


async def test_unpin_and_unhide_need_this_chats_moderator(server):
    """Unpinning and unhiding without a key get 401, with another chat's key 403; the pin
    and the hide stay in place."""
    one = await create_chat(server.url, "one")
    two = await create_chat(server.url, "two")
    slug = one["slug"]
    target = await post(server.url, slug, "keep me pinned and hidden")
    mine = {"Authorization": f"Bearer {one['moderator_key']}"}
    other = {"Authorization": f"Bearer {two['moderator_key']}"}
    pin_url = f"/api/chats/{slug}/pins/{target['id']}"
    hide_url = f"/api/chats/{slug}/hidden/{target['id']}"
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.put(pin_url, headers=mine)).status_code == 200
        assert (await http.put(hide_url, headers=mine)).status_code == 200
        head = (await http.get(f"/api/chats/{slug}/events")).json()["head"]
        for url in (pin_url, hide_url):
            r = await http.delete(url)
            assert r.status_code == 401 and "moderator" in r.json()["detail"]
            r = await http.delete(url, headers=other)
            assert r.status_code == 403 and "does not belong" in r.json()["detail"]
        # Nothing happened: no event was logged; the hide and then the pin are undone once.
        after = (await http.get(f"/api/chats/{slug}/events")).json()["head"]
        assert after == head
        assert (await http.delete(hide_url, headers=mine)).json()["changed"] is True
        pins = (await http.get(f"/api/chats/{slug}")).json()["pins"]
        assert [p["post"]["id"] for p in pins] == [target["id"]]
        assert (await http.delete(pin_url, headers=mine)).status_code == 204


async def test_home_form_without_its_csrf_token_creates_nothing(server):
    """The home page's create form is refused (403, reload advice) without the session's
    token or with another session's; with it the chat is created."""
    async with httpx.AsyncClient(base_url=server.url) as browser:
        home = await browser.get("/")
        token = re.search(r'name="csrf_token" value="([^"]+)"', home.text)
        assert token, "the home form carries no CSRF token"
        form = {"hashtag": "formtag", "title": "Form chat"}
        r = await browser.post("/chats", data=form)
        assert r.status_code == 403 and "reload the page" in r.text
        r = await browser.post("/chats", data={**form, "csrf_token": "forged"})
        assert r.status_code == 403
        async with httpx.AsyncClient(base_url=server.url) as stranger:
            await stranger.get("/")
            r = await stranger.post("/chats", data={**form, "csrf_token": token.group(1)})
            assert r.status_code == 403
        assert (await browser.get("/api/chats")).json() == [] or all(
            c["hashtag"] != "formtag" for c in (await browser.get("/api/chats")).json()
        )
        r = await browser.post("/chats", data={**form, "csrf_token": token.group(1)})
        assert r.status_code in (201, 303), r.text
        chats = (await browser.get("/api/chats")).json()
    assert [c["hashtag"] for c in chats] == ["formtag"]


# A token sealed by this release under the key "golden-test-key": every later release must still
# open it, or upgrading loses every stored account token and app secret.
SEALED_EARLIER = (
    "gAAAAABrFNDXavYW356JCwJ2aZLJbxWzvPEQRQX2SscpJkl0kPY-01hpI_x-GuRpfJyhQuXjNkY89B_tKGxZC8Hrf-"
    "fdDriLT78zW_aXW6J0qxxSUb6gjjk="
)


def test_secrets_sealed_by_an_earlier_release_still_open_and_a_wrong_key_says_which_setting():
    assert Vault("golden-test-key").open(SEALED_EARLIER) == {"access_token": "t0ken"}
    with pytest.raises(ValueError) as wrong:
        Vault("another-key").open(SEALED_EARLIER)
    assert str(wrong.value) == "stored secret cannot be decrypted with HASHROOM_SECRET_KEY"


def test_the_csrf_token_is_made_once_per_session_and_checked_exactly():
    session: dict = {}
    token = csrf_token(session)
    assert len(token) >= 32 and csrf_token(session) == token  # stable for the session
    assert session == {"csrf": token}
    assert csrf_ok(session, token)
    assert not csrf_ok(session, token[:-1]) and not csrf_ok(session, None)
    assert not csrf_ok({}, token)  # a session that never got one accepts nothing


def _conn(origin: str | None, host: str | None = "room.example:8000", scheme: str = "http"):
    headers = [] if host is None else [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    kind = "websocket" if scheme.startswith("ws") else "http"
    return HTTPConnection(
        {"type": kind, "scheme": scheme, "path": "/", "headers": headers, "server": None}
    )


@pytest.mark.parametrize(
    ("origin", "host", "scheme", "allowed"),
    [
        ("https://room.example:8000", "room.example:8000", "https", True),
        ("https://room.example:8000", "room.example:8000", "wss", True),
        ("http://room.example:8000", "room.example:8000", "wss", False),
        ("https://room.example:8000", "room.example:8000", "ws", False),
        ("http://xxxx", None, "http", False),  # no Host header: nothing to match
    ],
)
def test_origin_allowed_follows_the_scheme_and_host_of_the_request(origin, host, scheme, allowed):
    assert origin_allowed(_conn(origin, host, scheme), "", []) is allowed


@pytest.mark.parametrize(
    ("origin", "public_url", "extra", "allowed"),
    [
        (None, "", [], True),  # not a browser: no ambient credentials to abuse
        ("http://room.example:8000", "", [], True),  # the host it was asked for
        ("HTTP://Room.Example:8000/", "", [], True),  # case and a trailing slash
        ("http://evil.example", "", [], False),
        ("https://chat.example.org", "https://chat.example.org/some/path", [], True),
        ("https://chat.example.org", "", [], False),
        ("https://chat.example.orgX", "https://chat.example.org", [], False),
        ("https://chat.example.orgx", "https://chat.example.org", [], False),
        ("https://app.example", "", ["https://app.example/"], True),
        ("https://app.exampleX", "", ["https://app.example"], False),
        ("https://relax", "", ["HTTPS://RELAX"], True),  # only a trailing slash is dropped
    ],
)
def test_origin_allowed_matches_whole_origins_only(origin, public_url, extra, allowed):
    assert origin_allowed(_conn(origin), public_url, extra) is allowed
