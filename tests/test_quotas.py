"""Quotas against a real server: each unlimited-use attack now meets a 4xx that says why."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.factories import LiveClient, create_chat


def _chat(n: int) -> dict[str, str]:
    return {"hashtag": f"quota{n}", "title": f"quota {n}", "network": "native"}


async def test_chat_creation_is_rate_limited_with_retry_after(make_server) -> None:
    """The fourth chat within the hour from one address is a 429 with Retry-After."""
    server = make_server(HASHROOM_RATE_CHATS_PER_HOUR="3")
    async with httpx.AsyncClient(base_url=server.url) as http:
        codes = [(await http.post("/api/chats", json=_chat(n))).status_code for n in range(3)]
        assert codes == [201, 201, 201]
        refused = await http.post("/api/chats", json=_chat(4))
        listed = (await http.get("/api/chats")).json()
    assert refused.status_code == 429, refused.text
    assert 1 <= int(refused.headers["retry-after"]) <= 3600
    assert "chats created" in refused.json()["detail"]
    assert len(listed) == 3


async def test_home_form_shares_the_chat_quota(make_server) -> None:
    """Creating chats through the no-script form counts against the same quota (429)."""
    server = make_server(HASHROOM_RATE_CHATS_PER_HOUR="1")
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.post("/api/chats", json=_chat(1))).status_code == 201
        home = await http.get("/")
        token = home.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        form = {"csrf_token": token, "hashtag": "formtag", "title": "form"}
        refused = await http.post("/chats", data=form, headers={"accept": "application/json"})
    assert refused.status_code == 429, refused.text
    assert "retry-after" in refused.headers


async def test_posting_is_rate_limited_per_client(make_server) -> None:
    """Past the per-minute post quota a client gets 429 + Retry-After, in any room."""
    server = make_server(HASHROOM_RATE_POSTS_PER_MINUTE="5")
    a = (await create_chat(server.url, "posta"))["slug"]
    b = (await create_chat(server.url, "postb"))["slug"]
    async with httpx.AsyncClient(base_url=server.url) as http:
        for n in range(5):
            slug = a if n % 2 else b
            r = await http.post(f"/api/chats/{slug}/posts", json={"text": f"hi {n}", "author": "x"})
            assert r.status_code == 201, r.text
        refused = await http.post(f"/api/chats/{a}/posts", json={"text": "one more"})
        stored = (await http.get(f"/api/chats/{a}/posts")).json()["items"]
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) >= 1
    assert len(stored) == 2 and "one more" not in str(stored)


async def test_account_connection_is_rate_limited(make_server) -> None:
    """Connecting accounts (even failing attempts) is limited per client: 429 after the quota."""
    server = make_server(HASHROOM_RATE_ACCOUNTS_PER_HOUR="2")
    body = {"network": "mastodon", "instance": "not a host", "access_token": "x"}
    async with httpx.AsyncClient(base_url=server.url) as http:
        codes = [(await http.post("/api/accounts", json=body)).status_code for _ in range(3)]
    assert codes[:2] != [429, 429] and codes[2] == 429, codes


async def test_oauth_start_is_rate_limited(make_server) -> None:
    """Starting Mastodon sign-ins is limited per client: a 429 page with Retry-After."""
    server = make_server(HASHROOM_RATE_SIGN_INS_PER_HOUR="2")
    async with httpx.AsyncClient(base_url=server.url) as http:
        answers = [
            await http.get("/auth/mastodon/start", params={"instance": "not a host"})
            for _ in range(3)
        ]
    assert [a.status_code for a in answers] == [400, 400, 429]
    assert "retry-after" in answers[2].headers
    assert "sign-ins started" in answers[2].text


async def test_forwarded_for_is_ignored_without_trusted_proxies(make_server) -> None:
    """A client cannot dodge the quota by sending a new X-Forwarded-For each time."""
    server = make_server(HASHROOM_RATE_CHATS_PER_HOUR="2")
    async with httpx.AsyncClient(base_url=server.url) as http:
        codes = [
            (
                await http.post(
                    "/api/chats", json=_chat(n), headers={"x-forwarded-for": f"203.0.113.{n}"}
                )
            ).status_code
            for n in range(4)
        ]
    assert codes == [201, 201, 429, 429]


async def test_trusted_proxy_forwarded_for_sets_the_client(make_server) -> None:
    """Behind a trusted proxy, each forwarded client has its own quota; spoofed hops left of
    the proxy's entry do not count."""
    server = make_server(HASHROOM_RATE_CHATS_PER_HOUR="1", HASHROOM_TRUSTED_PROXIES='["127.0.0.1"]')
    async with httpx.AsyncClient(base_url=server.url) as http:

        async def create(n: int, forwarded: str) -> int:
            headers = {"x-forwarded-for": forwarded}
            return (await http.post("/api/chats", json=_chat(n), headers=headers)).status_code

        assert await create(1, "198.51.100.1") == 201
        assert await create(2, "198.51.100.2") == 201
        assert await create(3, "198.51.100.1") == 429
        # The client's own spoofed entry comes first; the proxy appends the real address.
        assert await create(4, "198.51.100.9, 198.51.100.1") == 429


async def test_big_body_is_413(server) -> None:
    """A body over the cap is refused with 413, declared or streamed in chunks."""
    big = b'{"text": "' + b"a" * (300 * 1024) + b'"}'

    async def chunks():  # no Content-Length: the server counts as it reads
        for i in range(0, len(big), 16 * 1024):
            yield big[i : i + 16 * 1024]

    slug = (await create_chat(server.url, "bigbody"))["slug"]
    url = f"/api/chats/{slug}/posts"
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=server.url) as http:
        declared = await http.post(url, content=big, headers=headers)
        streamed = await http.post(url, content=chunks(), headers=headers)
        still = await http.get("/healthz")
    assert declared.status_code == 413, declared.text
    assert "at most 262144 bytes" in declared.json()["detail"]
    assert streamed.status_code == 413, streamed.text
    assert still.status_code == 200


async def test_websocket_connections_per_client_are_capped(make_server) -> None:
    """Past the per-address cap a live handshake is refused with 429; closing one frees a slot."""
    server = make_server(HASHROOM_WS_PER_CLIENT="3")
    slug = (await create_chat(server.url, "wscap"))["slug"]
    clients = [await LiveClient.open(server.ws_url, slug) for _ in range(3)]
    for client in clients:
        await client.until(lambda f: f["type"] == "snapshot")
    with pytest.raises(InvalidStatus) as refused:
        await LiveClient.open(server.ws_url, slug)
    assert refused.value.response.status_code == 429
    assert b"too many live connections" in refused.value.response.body
    await clients.pop().close()
    deadline = asyncio.get_running_loop().time() + 10
    while True:  # the server frees the slot once it sees the close
        try:
            again = await LiveClient.open(server.ws_url, slug)
            break
        except InvalidStatus:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("slot not freed 10 s after a client left") from None
            await asyncio.sleep(0.1)
    await again.until(lambda f: f["type"] == "snapshot")
    for client in [*clients, again]:
        await client.close()


async def test_sources_per_chat_are_capped(make_server) -> None:
    """A chat asking for more sources than the cap is a 422 naming the cap; nothing is made."""
    server = make_server(HASHROOM_MAX_SOURCES_PER_CHAT="2")
    sources = [{"network": "mastodon", "instance": f"i{n}.example"} for n in range(3)]
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.post("/api/chats", json={**_chat(1), "sources": sources})
        listed = (await http.get("/api/chats")).json()
    assert r.status_code == 422
    assert "at most 2" in r.json()["detail"]
    assert listed == []


async def test_memory_limiter_allows_a_burst_then_one_per_interval() -> None:
    """GCRA: ``limit`` hits at once, then one per window/limit; the wait it names is exact."""
    from app.limits import MemoryRateLimiter

    now = [1000.0]
    limiter = MemoryRateLimiter(max_keys=2, clock=lambda: now[0])
    assert [await limiter.hit("a", 3, 60) for _ in range(3)] == [None, None, None]
    wait = await limiter.hit("a", 3, 60)
    assert wait == pytest.approx(20.0)
    now[0] += 19.9
    assert await limiter.hit("a", 3, 60) == pytest.approx(0.1)
    now[0] += 0.1
    assert await limiter.hit("a", 3, 60) is None
    assert await limiter.hit("b", 3, 60) is None  # another client is counted apart
    await limiter.hit("c", 3, 60)  # a third key: the least recent ("a") is forgotten
    assert await limiter.hit("a", 3, 60) is None


async def test_redis_limiter_is_shared_by_processes_and_fails_open(tmp_path) -> None:
    """Two limiters on one Redis (as two processes) count together; with Redis gone a hit is
    counted in memory instead of failing, and sharing resumes when Redis is back."""
    from app.limits import RedisRateLimiter
    from tests.cluster import RedisServer

    redis = RedisServer(tmp_path / "redis.log").start()
    try:
        a, b = RedisRateLimiter(redis.url), RedisRateLimiter(redis.url)
        assert [await a.hit("posts:1.2.3.4", 3, 60) for _ in range(2)] == [None, None]
        assert await b.hit("posts:1.2.3.4", 3, 60) is None
        wait = await b.hit("posts:1.2.3.4", 3, 60)
        assert wait is not None and 19 < wait <= 20.01  # the fourth hit, counted across both
        assert await a.hit("posts:5.6.7.8", 3, 60) is None  # another client apart

        redis.stop()
        assert await a.hit("posts:1.2.3.4", 3, 60) is None  # memory: a fresh allowance
        assert a.failing
        redis.start()
        a._down_until = 0  # skip the wait before trying Redis again
        assert await a.hit("posts:9.9.9.9", 1, 60) is None
        assert not a.failing and await a.hit("posts:9.9.9.9", 1, 60) is not None
    finally:
        redis.stop()
