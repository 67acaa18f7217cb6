"""Each attack on accounts, moderator keys, hosts and defaults, tried against a real server:
it worked before the hardening, and now it is refused."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from app.config import DEV_SECRET, Settings
from app.grants import account_allowed, grant_account
from app.models import Account
from tests.factories import (
    LiveClient,
    create_chat,
    host_browser,
    host_link,
    moderator_browser,
    post,
)
from tests.peers.mastodon import MastodonPeer
from tests.server import ROOT, free_port, need_tool

pytestmark = pytest.mark.timeout(90)

TAG = "TheChat"
STRONG_SECRET = "s" * 48
PROD = {"HASHROOM_ENV": "production", "HASHROOM_SECRET_KEY": STRONG_SECRET}


async def page_csrf(http: httpx.AsyncClient) -> dict[str, str]:
    """Open the home page (which starts a session) and return its CSRF header."""
    import re

    page = await http.get("/")
    return {"X-CSRF-Token": re.search(r'data-csrf="([^"]+)"', page.text)[1]}  # type: ignore[index]


# --- accounts bound to secrets ------------------------------------------------------------


async def test_an_old_cookie_cannot_post_as_the_next_account(make_server):
    """Keep a copy of the cookie, disconnect, let someone else connect: the copy can post
    neither as the gone account nor as the new one, whose id is not the old one."""
    server = make_server(HASHROOM_MASTODON_POLL_INTERVAL="0.5")
    async with MastodonPeer(domain="a.example") as peer:
        chat = await create_chat(
            server.url, TAG, sources=[{"network": "mastodon", "instance": peer.url}]
        )
        slug = chat["slug"]
        async with httpx.AsyncClient(base_url=server.url) as mallory:
            csrf = await page_csrf(mallory)
            r = await mallory.post(
                "/api/accounts",
                json={
                    "network": "mastodon",
                    "instance": peer.url,
                    "access_token": peer.create_user_token("mallory", "read write"),
                },
                headers=csrf,
            )
            assert r.status_code == 201, r.text
            old_id = r.json()["id"]
            kept_cookie = dict(mallory.cookies)  # the copy the attacker keeps
            r = await mallory.delete(f"/api/accounts/{old_id}", headers=csrf)
            assert r.status_code == 204, r.text

        async with httpx.AsyncClient(base_url=server.url) as alice:
            csrf = await page_csrf(alice)
            r = await alice.post(
                "/api/accounts",
                json={
                    "network": "mastodon",
                    "instance": peer.url,
                    "access_token": peer.create_user_token("alice", "read write"),
                },
                headers=csrf,
            )
            assert r.status_code == 201, r.text
            new_id = r.json()["id"]
            r = await alice.post(
                f"/api/chats/{slug}/posts",
                json={"text": "A1 mine", "account_id": new_id},
                headers=csrf,
            )
            assert r.status_code == 201, r.text  # the rightful owner posts fine
        assert new_id != old_id, "an account id was handed out twice"

        async with httpx.AsyncClient(base_url=server.url, cookies=kept_cookie) as replay:
            csrf = await page_csrf(replay)
            for account_id in (old_id, new_id):
                r = await replay.post(
                    f"/api/chats/{slug}/posts",
                    json={"text": "A1 posted as someone else", "account_id": account_id},
                    headers=csrf,
                )
                assert r.status_code in (403, 404), (account_id, r.status_code, r.text)
            assert (await replay.get("/api/accounts/mine")).json() == []
        texts = [s["content"] for s in peer._statuses.values()]
        assert not any("someone else" in t for t in texts)


def test_an_account_grant_dies_with_the_account_even_if_its_id_came_back():
    """A grant is bound to the account's own random key hash, not to its id."""
    session: dict[str, Any] = {}
    gone = Account(id=7, network="mastodon", instance="i", secret="s", owner="key:aaa")
    grant_account(session, STRONG_SECRET, gone)
    assert account_allowed(session, STRONG_SECRET, gone)
    reused = Account(id=7, network="mastodon", instance="i", secret="s", owner="key:bbb")
    assert not account_allowed(session, STRONG_SECRET, reused)
    assert not account_allowed({"accounts": [7]}, STRONG_SECRET, gone)  # older cookies


def test_account_ids_are_never_reused_after_the_migration(db_url):
    """After ``alembic upgrade head`` SQLite never hands a deleted account's id out again."""
    path = db_url.removeprefix("sqlite:///")
    row = "INSERT INTO account (network, instance, handle, secret, owner, created_at) " + (
        "VALUES ('m', 'i', 'h', 's', 'o', '2026-01-01')"
    )
    with sqlite3.connect(path) as db:
        first = db.execute(row).lastrowid
        db.execute("DELETE FROM account")
        second = db.execute(row).lastrowid
    assert second == first + 1


# --- moderator keys -----------------------------------------------------------------------


async def test_rotating_the_key_revokes_the_old_key_cookies_and_host_links(server):
    """After a rotation the old key answers 403, an old moderator cookie 401, a host link
    made before it is refused; the new key works and no key ever reaches the log."""
    chat = await create_chat(server.url)
    slug, old_key = chat["slug"], chat["moderator_key"]
    assert f"/c/{slug}#key=" in chat["moderator_url"] and "?key=" not in chat["moderator_url"]
    mod = await moderator_browser(server.url, chat)
    old_host_token = await host_link(server.url, chat, "Maya")
    blocks = f"/api/chats/{slug}/blocks"
    r = await mod.http.get(blocks, headers={"X-CSRF-Token": mod.csrf})
    assert r.status_code == 200, r.text

    async with httpx.AsyncClient(base_url=server.url) as api:
        r = await api.post(f"/api/chats/{slug}/moderator-key")
        assert r.status_code == 401  # anonymous callers cannot rotate
        r = await api.post(
            f"/api/chats/{slug}/moderator-key", headers={"Authorization": f"Bearer {old_key}"}
        )
        assert r.status_code == 200, r.text
        new_key = r.json()["moderator_key"]
        assert new_key != old_key and f"#key={new_key}" in r.json()["moderator_url"]
        old = await api.get(blocks, headers={"Authorization": f"Bearer {old_key}"})
        assert old.status_code == 403
        new = await api.get(blocks, headers={"Authorization": f"Bearer {new_key}"})
        assert new.status_code == 200

    r = await mod.http.get(blocks, headers={"X-CSRF-Token": mod.csrf})
    assert r.status_code == 401, "a moderator cookie outlived the key it was made from"
    page = await mod.http.get(f"/c/{slug}")
    assert "is-mod" not in page.text
    r = await mod.http.post(
        f"/c/{slug}/host", data={"csrf_token": mod.csrf, "token": old_host_token}
    )
    assert r.status_code == 403 and "not valid" in r.text
    await mod.close()

    fresh = await moderator_browser(server.url, {**chat, "moderator_key": new_key})
    r = await fresh.http.get(blocks, headers={"X-CSRF-Token": fresh.csrf})
    assert r.status_code == 200
    await fresh.close()
    log = server.log_path.read_text(errors="replace")
    assert old_key not in log and new_key not in log


async def test_the_demo_key_is_not_logged_and_a_command_prints_it(make_server):
    """With the demo on, the log says how to get the link; `python -m app demo-link` prints
    a working one."""
    server = make_server(HASHROOM_DEMO_ENABLED="true")
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(server.port)}
    out = subprocess.run(
        [sys.executable, "-m", "app", "demo-link"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    assert out.startswith(f"{server.url}/c/demo#key=")
    key = out.split("#key=", 1)[1]
    assert key not in server.log_path.read_text(errors="replace")
    assert "demo-link" in server.log_path.read_text(errors="replace")
    async with httpx.AsyncClient(base_url=server.url) as api:
        r = await api.get("/api/chats/demo/blocks", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200


# --- hosts are people, not names ----------------------------------------------------------


async def test_a_typed_host_name_gets_no_badge_and_no_review_bypass(server):
    """In a native room, posting under a named host's name is neither marked as the host nor
    spared the hold rules; the holder of a host link is both."""
    chat = await create_chat(server.url)
    slug = chat["slug"]
    auth = {"Authorization": f"Bearer {chat['moderator_key']}"}
    async with httpx.AsyncClient(base_url=server.url, headers=auth) as mod:
        await mod.put(f"/api/chats/{slug}/people", json={"people": [{"handle": "Maya"}]})
        await mod.post(f"/api/chats/{slug}/rules", json={"kind": "keyword", "pattern": "casino"})
        reader = await LiveClient.open(server.ws_url, slug)
        await reader.next()
        impostor = await post(server.url, slug, "Q1: casino night, all welcome", author="Maya")
        assert impostor["is_host"] is False and impostor["hidden"] is True
        maya = await host_browser(server.url, chat, "Maya")
        real = await maya.post(slug, "Q2: no casino talk please", author="Somebody else")
        assert real["is_host"] is True and real["hidden"] is False
        assert real["author"]["name"] == "Maya"  # the link names its holder
        guest = await host_browser(server.url, chat, "Gus", role="guest")
        assert (await guest.post(slug, "hello"))["is_host"] is True
        frame = await reader.until(lambda f: f["type"] == "post")
        assert frame["post"]["id"] == real["id"] and "is-host" in frame["html"]
        held = (await mod.get(f"/api/chats/{slug}/held")).json()["posts"]
        assert [h["post"]["id"] for h in held] == [impostor["id"]]
        # A moderator's own session counts as vouched for too.
        own = await moderator_browser(server.url, chat)
        assert (await own.post(slug, "Q3: from the moderator", author="Rosa"))["is_host"]
        for b in (maya, guest, own):
            await b.close()
        await reader.close()


async def test_names_lose_nul_and_bidi_override_characters(server):
    """A display name cannot carry NUL or bidi controls that reorder how it reads."""
    chat = await create_chat(server.url)
    stored = await post(server.url, chat["slug"], "hi", author="\u202eMa\x00ya\u2066 ")
    assert stored["author"]["name"] == "Maya"
    r = await post(server.url, chat["slug"], "hi", author="Ann\u200f")
    assert r["author"]["name"] == "Ann"


# --- CSRF ---------------------------------------------------------------------------------


async def test_an_authorization_header_that_authenticates_nothing_does_not_skip_csrf(server):
    """A cookie-carrying write with a made-up Bearer token still needs the CSRF token; a
    real key authenticates the request by itself."""
    chat = await create_chat(server.url)
    slug = chat["slug"]
    async with httpx.AsyncClient(base_url=server.url) as browser:
        await page_csrf(browser)  # the session cookie a foreign page would ride on
        forged = {"Authorization": "Bearer anything"}
        r = await browser.post("/api/chats", json={"hashtag": "x", "title": "x"}, headers=forged)
        assert r.status_code == 403 and "CSRF" in r.json()["detail"]
        r = await browser.post(
            f"/api/chats/{slug}/posts", json={"text": "hi", "author": "A"}, headers=forged
        )
        assert r.status_code == 403
        real = {"Authorization": f"Bearer {chat['moderator_key']}"}
        r = await browser.post(
            f"/api/chats/{slug}/posts", json={"text": "hi", "author": "A"}, headers=real
        )
        assert r.status_code == 201, r.text


# --- production defaults ------------------------------------------------------------------


async def test_production_answers_only_its_own_host_names_and_sends_hsts(make_server):
    """In production an unknown Host header gets 400 (HTTP and websocket), the configured
    and loopback names are served, and HSTS is on."""
    server = make_server(**PROD, HASHROOM_ALLOWED_HOSTS='["chat.example.org"]')
    async with httpx.AsyncClient(base_url=server.url) as http:
        evil = await http.get("/healthz", headers={"Host": "rebind.evil.example"})
        assert evil.status_code == 400 and "HASHROOM_ALLOWED_HOSTS" in evil.json()["detail"]
        ok = await http.get("/healthz", headers={"Host": "chat.example.org"})
        assert ok.status_code == 200
        local = await http.get("/healthz")
        assert local.status_code == 200
        assert local.headers["strict-transport-security"] == "max-age=31536000"
        r = await http.get("/c/demo")
        assert r.status_code == 404  # the demo is off unless asked for
    with pytest.raises(InvalidStatus):
        async with connect(
            f"{server.ws_url}/api/chats/x/live", additional_headers={"Host": "evil.example"}
        ):
            pass


def test_production_turns_the_demo_off_unless_asked():
    """HASHROOM_ENV=production defaults the demo off; setting it keeps it."""
    assert Settings(env="production", secret_key=STRONG_SECRET).demo_enabled is False
    assert Settings(env="production", secret_key=STRONG_SECRET, demo_enabled=True).demo_enabled
    assert Settings(env="development").demo_enabled is True


def test_development_refuses_a_public_interface_with_the_built_in_secret(tmp_path):
    """`python -m app` with HOST=0.0.0.0 and the built-in secret exits with what to set."""
    env = {
        **os.environ,
        "HOST": "0.0.0.0",
        "PORT": str(free_port()),
        "HASHROOM_SECRET_KEY": DEV_SECRET,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
    }
    env.pop("HASHROOM_ENV", None)
    done = subprocess.run(
        [sys.executable, "-m", "app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "HASHROOM_SECRET_KEY" in done.stderr and "HOST=0.0.0.0" in done.stderr


def _public_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if address.startswith("127.") else address


async def test_the_built_in_secret_serves_loopback_only_however_started(db_url, tmp_path):
    """Started by uvicorn itself on 0.0.0.0 with the built-in secret, the app answers on
    127.0.0.1 but refuses requests that arrive on a public interface."""
    address = _public_address()
    need_tool(address is not None, "a non-loopback network interface (any LAN address)")
    port = free_port()
    env = {**os.environ, "DATABASE_URL": db_url, "HASHROOM_DEMO_ENABLED": "false"}
    env.pop("HASHROOM_SECRET_KEY", None)
    log = open(tmp_path / "uvicorn.log", "wb")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "app.main:app_factory"]
        + ["--host", "0.0.0.0", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as http:
            while True:
                try:
                    r = await http.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                    if r.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "uvicorn.log").read_text()
                await asyncio.sleep(0.2)
            outside = await http.get(f"http://{address}:{port}/healthz", timeout=5)
        assert outside.status_code == 403
        assert "HASHROOM_SECRET_KEY" in outside.json()["detail"]
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
