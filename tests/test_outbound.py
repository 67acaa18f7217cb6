"""Outbound requests: the SSRF attacks of a public instance, tried and refused.

Each attack runs against a production-mode server (``HASHROOM_ENV=production``, a strong
secret) and a real loopback server that would answer (:mod:`tests.peers.trap`); the proof
is that the trap saw no connection, or that what it answered never reached the attacker.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosedError

from app.networks.atproto_identity import IdentityError, fetch_did_document
from app.outbound import (
    OutboundPolicy,
    RefusedAddress,
    check_url,
    is_public_address,
    make_http_client,
    make_ws_connect,
    resolve,
)
from tests.peers.trap import MARKER, Answer, TrapServer, gzip_bomb, json_answer, marker_page
from tests.server import OPERATOR_HEADERS

pytestmark = pytest.mark.timeout(60)

PRODUCTION = {
    "HASHROOM_ENV": "production",
    "HASHROOM_SECRET_KEY": "x9" * 32,
    "HASHROOM_BACKOFF_BASE": "0.1",
    "HASHROOM_BACKOFF_CAP": "0.5",
    "HASHROOM_MASTODON_POLL_INTERVAL": "0.5",
}
# Production, but the operator lets the server reach "localhost" (a LAN instance, say): the
# first hop of an attack can then be a trap, and what it points on to must still be refused.
LAN = {**PRODUCTION, "HASHROOM_OUTBOUND_ALLOW_HOSTS": '["localhost"]'}
PROD_POLICY = OutboundPolicy()
TAG = "TrapTag"
APP_PASSWORD = "abcd-efgh-ijkl-mnop"


def instance_answer(streaming: str | None = None) -> Answer:
    """A minimal Mastodon /api/v2/instance document."""
    urls = {"streaming": streaming} if streaming else {}
    return json_answer({"domain": "trap.example", "title": "Trap", "configuration": {"urls": urls}})


async def create(base: str, source: dict[str, Any]) -> httpx.Response:
    body = {"hashtag": TAG, "title": "trap", "network": source["network"], "sources": [source]}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        return await http.post("/api/chats", json=body)


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 15.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def private_name() -> str:
    """A host name (not a literal) that this machine resolves to a non-public address."""
    for name in (socket.gethostname(), "localhost.localdomain", "ip6-localhost"):
        try:
            infos = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
        except OSError:
            continue
        if name != "localhost" and all(
            not is_public_address(ipaddress.ip_address(i[4][0])) for i in infos
        ):
            return name
    pytest.fail("no host name here resolves to a private address (check /etc/hosts)")


# --- host spellings ------------------------------------------------------------------------

LOOPBACK_SPELLINGS = [
    "https://2130706433:{port}",
    "https://127.1:{port}",
    "https://0x7f000001:{port}",
    "https://0x7f.0.0.1:{port}",
    "https://0177.0.0.1:{port}",
    "https://0:{port}",
    "https://localhost:{port}",
    "https://localhost.:{port}",
    "https://LOCALHOST:{port}",
    "https://127.0.0.1:{port}",
    "https://[::1]:{port}",
    "https://[::ffff:127.0.0.1]:{port}",
    "https://[::ffff:7f00:1]:{port}",
    "https://[::127.0.0.1]:{port}",
    "https://0.0.0.0:{port}",
    "https://10.0.0.1:{port}",
    "https://100.64.0.1:{port}",
    "https://169.254.169.254:{port}",
    "https://[fd00::1]:{port}",
    "https://[fe80::1]:{port}",
    "https://[2002:7f00:1::]:{port}",
    "https://[64:ff9b::7f00:1]:{port}",
    "https://224.0.0.1:{port}",
    "https://192.0.2.1:{port}",
    "https://app.localhost:{port}",
]


@pytest.mark.parametrize("spelling", LOOPBACK_SPELLINGS)
def test_check_url_refuses_every_spelling_of_a_private_host(spelling: str) -> None:
    """Every spelling of loopback/private/odd IPv4 is a ValueError naming the field."""
    with pytest.raises(ValueError, match=r"^instance: "):
        check_url(
            spelling.format(port=8443),
            "instance",
            secure="https",
            plain="http",
            policy=PROD_POLICY,
            example="https://mastodon.social",
        )


def test_check_url_normalises_what_it_accepts() -> None:
    """Case, trailing dot, IDNA, default port and IPv6 spelling are normalised to one form."""

    def norm(raw: str, policy: OutboundPolicy = PROD_POLICY) -> str:
        parts = check_url(
            raw, "f", secure="https", plain="http", policy=policy, example="https://x.example"
        )
        return parts.geturl()

    assert norm("HTTPS://Mastodon.Social.:443/") == "https://mastodon.social/"
    assert norm("https://bücher.example") == "https://xn--bcher-kva.example"
    assert norm("https://[2001:4860:0:0::8888]:8443") == "https://[2001:4860::8888]:8443"
    assert norm("https://8.8.8.8") == "https://8.8.8.8"
    allowed = OutboundPolicy(allow_hosts=frozenset({"lan-instance"}))
    assert norm("http://LAN-Instance.:3000", allowed) == "http://lan-instance:3000"
    dev = OutboundPolicy(allow_private=True)
    assert norm("http://127.0.0.1:8000", dev) == "http://127.0.0.1:8000"
    with pytest.raises(ValueError, match="use https://"):
        norm("http://8.8.8.8", dev)


@pytest.mark.parametrize(
    "raw",
    [
        "https://[::1",
        "https://exa mple.com",
        "https://host:99999",
        "https://host:-1",
        "https://user:pw@host.example",
        "https://host.example#x",
        "https://-bad-.example",
        "https://[fe80::1%25eth0]",
        "ftp://host.example",
        "https://" + "a" * 300 + ".example",
        "https://",
    ],
)
def test_malformed_addresses_are_value_errors_naming_the_field(raw: str) -> None:
    """A malformed address is a ValueError naming the field, never another exception."""
    with pytest.raises(ValueError, match=r"^instance: "):
        check_url(
            raw,
            "instance",
            secure="https",
            plain="http",
            policy=PROD_POLICY,
            example="https://mastodon.social",
        )


def test_public_address_table() -> None:
    """Only globally routable unicast addresses count as public."""
    public = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2002:0808:0808::1"]
    private = [
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "169.254.169.254",
        "0.0.0.0", "0.1.2.3", "224.0.0.1", "240.0.0.1", "255.255.255.255", "192.0.2.1",
        "198.18.0.1", "::1", "::", "fc00::1", "fe80::1", "fec0::1", "::ffff:8.8.8.8",
        "::8.8.8.8", "2002:7f00:0001::1", "2002:0a00:0001::1", "64:ff9b::a00:1",
        "64:ff9b:1::1", "2001:db8::1", "ff02::1",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo with client 127.0.0.1
    ]  # fmt: skip
    assert all(is_public_address(ipaddress.ip_address(a)) for a in public), public
    leaked = [a for a in private if is_public_address(ipaddress.ip_address(a))]
    assert not leaked, leaked


# --- attacks on a production server ----------------------------------------------------------


async def test_ssrf_spellings_never_reach_loopback(make_server) -> None:
    """POST /api/chats with loopback in any spelling: 422 naming `instance`, trap untouched."""
    server = make_server(**PRODUCTION)
    async with TrapServer() as trap:
        trap.answers["/api/v2/instance"] = instance_answer()
        for spelling in LOOPBACK_SPELLINGS[:12]:
            url = spelling.format(port=trap.port)
            response = await create(server.url, {"network": "mastodon", "instance": url})
            assert response.status_code == 422, (url, response.text)
            assert "instance" in response.json()["detail"], (url, response.text)
            plain = url.replace("https://", "http://")
            response = await create(server.url, {"network": "mastodon", "instance": plain})
            assert response.status_code == 422, (plain, response.text)
        assert trap.connections == 0, trap.paths


async def test_a_name_resolving_to_a_private_address_is_refused(make_server) -> None:
    """A host name whose DNS answer is private is refused when connecting; nothing connects."""
    name = private_name()
    server = make_server(**PRODUCTION)
    async with TrapServer("0.0.0.0") as trap:
        trap.answers["/api/v2/instance"] = instance_answer()
        response = await create(
            server.url, {"network": "mastodon", "instance": f"https://{name}:{trap.port}"}
        )
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert "instance:" in detail and "not a public address" in detail, detail
        assert trap.connections == 0
    with pytest.raises(RefusedAddress):
        await resolve(name, 443, PROD_POLICY)


async def test_a_redirect_to_loopback_is_refused(make_server) -> None:
    """An allowed instance redirecting to 127.0.0.1: the second hop is never contacted."""
    server = make_server(**LAN)
    async with TrapServer() as inner, TrapServer() as first:
        inner.answers["/api/v2/instance"] = instance_answer()
        first.answers["/api/v2/instance"] = Answer(
            302, b"", headers=(("Location", f"{inner.url}/api/v2/instance"),)
        )
        instance = f"http://localhost:{first.port}"
        response = await create(server.url, {"network": "mastodon", "instance": instance})
        assert response.status_code == 422, response.text
        assert "not a public address" in response.json()["detail"]
        assert first.paths == ["/api/v2/instance"]
        assert inner.connections == 0


async def test_a_streaming_url_announced_on_loopback_is_never_opened(make_server) -> None:
    """An instance announcing a loopback streaming URL: the follower refuses to connect."""
    server = make_server(**LAN)
    async with TrapServer() as streaming, TrapServer() as instance:
        announced = f"ws://127.0.0.1:{streaming.port}"
        instance.answers["/api/v2/instance"] = instance_answer(streaming=announced)
        instance.answers[f"/api/v1/timelines/tag/{TAG}"] = json_answer([])
        source = {
            "network": "mastodon",
            "instance": f"http://localhost:{instance.port}",
            "access_token": "a-token-the-trap-accepts",
        }
        response = await create(server.url, source)
        assert response.status_code == 201, response.text
        slug = response.json()["slug"]

        async def refused() -> bool:
            async with httpx.AsyncClient(base_url=server.url) as http:
                health = (await http.get("/healthz", headers=OPERATOR_HEADERS)).json()
            return any(
                i["chat"] == slug and "not a public address" in (i["last_error"] or "")
                for i in health["ingesters"]
            )

        await eventually(refused, "the follower to report the refused streaming address")
        assert streaming.connections == 0


async def test_a_pds_endpoint_on_loopback_is_refused(make_server) -> None:
    """A DID document naming a loopback PDS: connecting the account never contacts it."""
    did = "did:plc:abcdefghijklmnopqrstuvwx"
    async with TrapServer() as pds, TrapServer() as plc:
        plc.answers[f"/{did}"] = json_answer(
            {
                "id": did,
                "alsoKnownAs": ["at://trap.example"],
                "service": [
                    {
                        "id": "#atproto_pds",
                        "type": "AtprotoPersonalDataServer",
                        "serviceEndpoint": pds.url,
                    }
                ],
            }
        )
        server = make_server(**LAN, HASHROOM_BLUESKY_PLC_URL=f"http://localhost:{plc.port}")
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            response = await http.post(
                "/api/accounts",
                json={
                    "network": "bluesky",
                    "identifier": did,
                    "app_password": "abcd-efgh-ijkl-mnop",
                },
            )
        assert 400 <= response.status_code < 500 or response.status_code == 502, response.text
        assert "not a public address" in response.text, response.text
        assert plc.paths == [f"/{did}"]
        assert pds.connections == 0


async def test_did_web_on_loopback_is_refused() -> None:
    """did:web pointing at loopback: the app's client refuses before connecting."""
    async with (
        TrapServer() as trap,
        make_http_client(PROD_POLICY, timeout=5, user_agent="test") as http,
    ):
        trap.answers["/.well-known/did.json"] = json_answer({"id": "x"})
        for host in ("localhost", "127.0.0.1", private_name()):
            did = f"did:web:{host}%3A{trap.port}"
            with pytest.raises(IdentityError, match="not a public address"):
                await fetch_did_document(http, did, "https://plc.directory")
        assert trap.connections == 0


async def test_the_guarded_websocket_connect_refuses_loopback() -> None:
    """The app's websocket connect never opens a loopback stream in production."""
    ws_connect = make_ws_connect(PROD_POLICY)
    async with TrapServer() as trap:
        for url in (f"ws://127.0.0.1:{trap.port}", f"wss://localhost:{trap.port}/subscribe"):
            with pytest.raises(RefusedAddress):
                async with ws_connect(url, open_timeout=2):
                    pass
        assert trap.connections == 0


# --- errors that tell, not leak ----------------------------------------------------------------


async def test_upstream_bodies_never_reach_api_oauth_healthz_or_logs(make_server) -> None:
    """A trap answering with a marker: API error, OAuth page, /healthz and logs never show it."""
    server = make_server(**LAN)
    async with TrapServer() as trap:
        base = f"http://localhost:{trap.port}"
        # 1. API error: an HTML error page, then a 200 that is not JSON.
        trap.answers["/api/v2/instance"] = marker_page(500)
        response = await create(server.url, {"network": "mastodon", "instance": base})
        assert response.status_code == 422 and "HTTP 500" in response.text, response.text
        assert MARKER not in response.text
        trap.answers["/api/v2/instance"] = marker_page(200)
        response = await create(server.url, {"network": "mastodon", "instance": base})
        assert response.status_code == 422 and "not JSON" in response.text, response.text
        assert MARKER not in response.text
        # 2. The OAuth problem page: app registration answered with the marker as an error.
        trap.answers["/api/v1/apps"] = json_answer({"error": f"{MARKER} failed"}, 422)
        async with httpx.AsyncClient(base_url=server.url) as http:
            page = await http.get("/auth/mastodon/start", params={"instance": base})
        assert page.status_code == 502 and "HTTP 422" in page.text, page.text
        assert MARKER not in page.text
        # 3. A running follower whose timeline fails with the marker.
        trap.answers["/api/v2/instance"] = instance_answer()
        trap.answers[f"/api/v1/timelines/tag/{TAG}"] = marker_page(503)
        response = await create(server.url, {"network": "mastodon", "instance": base})
        assert response.status_code == 201, response.text
        slug, key = response.json()["slug"], response.json()["moderator_key"]

        async def failing() -> dict[str, Any] | None:
            async with httpx.AsyncClient(base_url=server.url) as http:
                health = (await http.get("/healthz", headers=OPERATOR_HEADERS)).json()
            return next(
                (i for i in health["ingesters"] if i["chat"] == slug and i["last_error"]), None
            )

        ingester = await eventually(failing, "the follower's error on /healthz")
        assert "503" in ingester["last_error"] and MARKER not in ingester["last_error"]
        async with httpx.AsyncClient(base_url=server.url) as http:
            public = await http.get("/healthz")
            status = await http.get(
                f"/api/chats/{slug}/status", headers={"Authorization": f"Bearer {key}"}
            )
        assert MARKER not in public.text and "ingesters" not in public.json(), public.text
        assert status.status_code == 200 and "503" in status.text and MARKER not in status.text
    assert MARKER not in server.log_text(), "an upstream body reached the server log"


async def test_healthz_detail_is_for_the_operator_and_moderators(make_server) -> None:
    """Public /healthz: aggregates only; the operator token and the moderator key see detail."""
    server = make_server(**LAN)
    async with TrapServer() as trap:
        trap.answers["/api/v2/instance"] = instance_answer()
        trap.answers[f"/api/v1/timelines/tag/{TAG}"] = json_answer([])
        created = await create(
            server.url, {"network": "mastodon", "instance": f"http://localhost:{trap.port}"}
        )
        assert created.status_code == 201, created.text
        slug, key = created.json()["slug"], created.json()["moderator_key"]
        async with httpx.AsyncClient(base_url=server.url) as http:
            public = (await http.get("/healthz")).json()
            assert set(public) == {
                "status",
                "database",
                "sources",
                "clients",
                "clients_direct",
                "catchup",
                "fanout",
            }
            assert set(public["fanout"]) <= {"mode", "connected"}  # no URL, no error text
            assert set(public["catchup"]) == {"clients", "database_reads"}  # counts only
            assert public["sources"]["total"] == 1
            operator = (await http.get("/healthz", headers=OPERATOR_HEADERS)).json()
            assert [i["chat"] for i in operator["ingesters"]] == [slug]
            wrong = await http.get("/healthz", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 403 and "operator token" in wrong.json()["detail"]
            anonymous = await http.get(f"/api/chats/{slug}/status")
            assert anonymous.status_code == 401
            mine = await http.get(
                f"/api/chats/{slug}/status", headers={"Authorization": f"Bearer {key}"}
            )
            assert mine.status_code == 200 and [s["chat"] for s in mine.json()["sources"]] == [slug]


# --- sizes ---------------------------------------------------------------------------------------


async def test_oversized_and_inflating_bodies_are_cut_off(make_server) -> None:
    """A body past the cap, declared or gzip-inflated, fails with a clear error, not memory."""
    server = make_server(**LAN, HASHROOM_OUTBOUND_MAX_RESPONSE_BYTES="65536")
    async with TrapServer() as trap:
        base = f"http://localhost:{trap.port}"
        trap.answers["/api/v2/instance"] = json_answer({"title": "x" * 200_000})
        response = await create(server.url, {"network": "mastodon", "instance": base})
        assert response.status_code == 422, response.text
        assert "larger than 65536 bytes" in response.json()["detail"]
        trap.answers["/api/v2/instance"] = gzip_bomb(50 * 1024 * 1024)
        assert len(trap.answers["/api/v2/instance"].body) < 100_000
        response = await create(server.url, {"network": "mastodon", "instance": base})
        assert response.status_code == 422, response.text
        assert "larger than 65536 bytes" in response.json()["detail"]


async def test_an_oversized_websocket_frame_closes_the_stream() -> None:
    """A frame past the cap closes the connection with 1009 (message too big)."""

    async def handler(ws: Any) -> None:
        await ws.send(json.dumps({"ok": True}))
        await ws.send("x" * 20_000)
        await asyncio.sleep(5)

    policy = OutboundPolicy(allow_private=True, max_frame_bytes=4096)
    async with serve(handler, "127.0.0.1", 0, max_size=None) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        async with make_ws_connect(policy)(f"ws://127.0.0.1:{port}", max_size=2**23) as ws:
            assert json.loads(await ws.recv()) == {"ok": True}
            with pytest.raises(ConnectionClosedError) as closed:
                await ws.recv()
        assert closed.value.rcvd is None and closed.value.sent is not None
        assert closed.value.sent.code == 1009
