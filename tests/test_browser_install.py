"""The installable room in a real Chromium: manifest and icons, the service worker's offline
copy ("offline — will catch up", then resuming by offset), and notifications asked for only
after a click, subscribed, delivered to a push service and shown by the service worker."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.peers.push_thread import ThreadedPushService

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

# Observes (does not replace) the browser's permission prompt: counts every request.
COUNT_PERMISSION_ASKS = """
window.__permissionAsks = 0;
const ask = Notification.requestPermission.bind(Notification);
Notification.requestPermission = (...args) => {
  window.__permissionAsks += 1;
  return ask(...args);
};
"""

# Headless Chromium has no push service (Chrome's is Google's, on the internet). This stands
# in for it, as the browser's side of RFC 8030: subscribe() returns a subscription whose
# endpoint is the test's push service and whose keys the page generated; the test hands the
# private key to the push service so it can decrypt what the app sends.
FAKE_PUSH_SERVICE = """
(() => {
  const b64 = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
  let current = null;
  PushManager.prototype.getSubscription = async function () { return current; };
  PushManager.prototype.subscribe = async function (options) {
    const pair = await crypto.subtle.generateKey({name: 'ECDH', namedCurve: 'P-256'}, true,
                                                 ['deriveBits']);
    const pub = await crypto.subtle.exportKey('raw', pair.publicKey);
    const jwk = await crypto.subtle.exportKey('jwk', pair.privateKey);
    const auth = crypto.getRandomValues(new Uint8Array(16));
    const token = b64(crypto.getRandomValues(new Uint8Array(12)));
    const endpoint = `${window.__pushService}/push/${token}`;
    const json = {endpoint, expirationTime: null, keys: {p256dh: b64(pub), auth: b64(auth)}};
    window.__pushSubscription = {endpoint, d: jwk.d, auth: b64(auth),
                                 serverKey: b64(options.applicationServerKey)};
    current = {endpoint, options: {applicationServerKey: options.applicationServerKey},
               toJSON: () => json, unsubscribe: async () => { current = null; return true; }};
    return current;
  };
})();
"""


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def cached_urls(page) -> list[str]:  # type: ignore[no-untyped-def]
    return page.evaluate(
        """async () => {
            const out = [];
            for (const name of await caches.keys()) {
                for (const request of await (await caches.open(name)).keys()) out.push(request.url);
            }
            return out;
        }"""
    )


def test_the_room_installs_and_reads_offline_then_catches_up(server, new_page):
    """The room links a manifest (standalone, PNG icons, start_url the room); the service
    worker keeps the page, so with the network and server gone it reloads showing its posts
    and "offline — will catch up"; back online it resumes from its offset and shows what was
    posted meanwhile. API and live traffic are never cached. Nothing asks for permission."""
    created = httpx.post(f"{server.url}/api/chats", json={"hashtag": "OffChat", "title": "Off"})
    slug = created.json()["slug"]
    first = httpx.post(
        f"{server.url}/api/chats/{slug}/posts", json={"text": "Q1: before", "author": "Ann"}
    ).json()
    page = new_page()
    page.add_init_script(COUNT_PERMISSION_ASKS)
    page.goto(f"{server.url}/c/{slug}")
    page.wait_for_selector("#conn-state[data-state=live]")

    href = page.get_attribute("link[rel=manifest]", "href")
    manifest = httpx.get(f"{server.url}{href}")
    assert manifest.headers["content-type"].startswith("application/manifest+json")
    body = manifest.json()
    assert body["start_url"] == f"/c/{slug}" and body["display"] == "standalone"
    assert body["name"] == "#OffChat — Off"
    sizes = {icon["sizes"] for icon in body["icons"]}
    assert {"192x192", "512x512"} <= sizes
    for icon in body["icons"]:
        r = httpx.get(f"{server.url}{icon['src']}")
        assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"

    # The worker stores the page, after its files (first visit: asked by the page).
    deadline = time.monotonic() + 15
    while f"{server.url}/c/{slug}" not in cached_urls(page):
        assert time.monotonic() < deadline, "the service worker never stored the room"
        page.wait_for_timeout(100)
    second = httpx.post(
        f"{server.url}/api/chats/{slug}/posts", json={"text": "A1: live", "author": "Bo"}
    ).json()
    page.wait_for_selector(f"#post-{second['id']}")

    server.stop()
    page.context.set_offline(True)
    page.reload()
    page.wait_for_selector(f"#post-{first['id']}")
    page.wait_for_function(
        "() => document.querySelector('#conn-state').dataset.state === 'offline'"
    )
    assert page.inner_text("#conn-state") == "Offline — will catch up"

    server.start()
    meanwhile = httpx.post(
        f"{server.url}/api/chats/{slug}/posts", json={"text": "A1: while away", "author": "Cy"}
    ).json()
    page.context.set_offline(False)
    page.wait_for_selector("#conn-state[data-state=live]", timeout=20_000)
    page.wait_for_selector(f"#post-{meanwhile['id']}", timeout=20_000)
    page.wait_for_selector(f"#post-{second['id']}")
    assert page.locator(f"#post-{first['id']}").count() == 1, "no post shown twice"

    urls = cached_urls(page)
    assert any(u.endswith(f"/c/{slug}") for u in urls)
    # Only pages and versioned static files: never the API, the live stream or feeds.
    path = len(server.url)
    assert all(u[path:] == f"/c/{slug}" or u[path:].startswith("/static/") for u in urls), urls
    assert page.evaluate("window.__permissionAsks") == 0
    assert page.errors.exceptions == [], page.errors.exceptions


def test_notifications_are_asked_for_on_click_and_delivered(server, new_page):
    """Loading the room asks for nothing; "Turn on" asks (and says so when refused); with
    permission granted it subscribes, the server's "new question" push reaches the push
    service encrypted for this subscription, the service worker shows it as a notification,
    and the subscription can be turned off from the panel."""
    created = httpx.post(
        f"{server.url}/api/chats", json={"hashtag": "PingChat", "title": "Ping"}
    ).json()
    slug = created["slug"]
    with ThreadedPushService() as push:
        page = new_page()
        page.add_init_script(COUNT_PERMISSION_ASKS)
        page.add_init_script(f"window.__pushService = {json.dumps(push.url)};")
        page.add_init_script(FAKE_PUSH_SERVICE)
        page.goto(f"{server.url}/c/{slug}")
        page.wait_for_selector("#conn-state[data-state=live]")
        page.wait_for_selector("#notify-toggle")
        assert page.evaluate("window.__permissionAsks") == 0
        assert page.evaluate("Notification.permission") == "default"

        page.click("#notify-toggle")
        page.uncheck("input[name=notify-kind][value=starts]")
        page.click("#notify-on")
        page.wait_for_function("() => window.__permissionAsks === 1")
        page.wait_for_selector("#notify-status:has-text('blocked')")

        page.context.grant_permissions(["notifications"], origin=server.url)
        page.click("#notify-on")
        page.wait_for_selector("#notify-status:has-text('On:')")
        made = page.evaluate("window.__pushSubscription")
        private = ec.derive_private_key(int.from_bytes(unb64(made["d"]), "big"), ec.SECP256R1())
        key = httpx.get(f"{server.url}/api/push/key").json()["key"]
        assert made["serverKey"] == key
        push.call(push.service.adopt, made["endpoint"], private, unb64(made["auth"]), key)
        assert page.locator("#notify-list li").count() == 1
        assert "new questions" in page.text_content("#notify-list")

        asked = httpx.post(
            f"{server.url}/api/chats/{slug}/questions",
            json={"text": "Q1: tea or coffee?"},
            headers={"Authorization": f"Bearer {created['moderator_key']}"},
        )
        assert asked.status_code == 201
        (message,) = push.wait_for(1, made["endpoint"])
        assert message.payload["title"] == "New question in #PingChat"

        # Hand the decrypted message to the service worker as the browser would.
        cdp = page.context.new_cdp_session(page)
        registrations: list[dict] = []
        cdp.on(
            "ServiceWorker.workerRegistrationUpdated",
            lambda e: registrations.extend(e["registrations"]),
        )
        cdp.send("ServiceWorker.enable")
        deadline = time.monotonic() + 10
        while not registrations:
            assert time.monotonic() < deadline, "no service worker registration reported"
            page.wait_for_timeout(100)
        cdp.send(
            "ServiceWorker.deliverPushMessage",
            {
                "origin": server.url,
                "registrationId": registrations[0]["registrationId"],
                "data": json.dumps(message.payload),
            },
        )
        shown_titles = """async () => {
            const reg = await navigator.serviceWorker.ready;
            return (await reg.getNotifications()).map(n => `${n.title} | ${n.body}`);
        }"""
        deadline = time.monotonic() + 10
        while "New question in #PingChat | Q1: tea or coffee? #PingChat" not in page.evaluate(
            shown_titles
        ):
            assert time.monotonic() < deadline, page.evaluate(shown_titles)
            page.wait_for_timeout(100)

        page.click("#notify-off")
        page.wait_for_selector("#notify-status:has-text('removed')")
        assert page.locator("#notify-list li").count() == 0
        assert page.errors.exceptions == [], page.errors.exceptions
