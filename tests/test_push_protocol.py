"""Web Push, the protocol: VAPID-signed, aes128gcm-encrypted deliveries to a push service on
loopback that verifies and decrypts them independently of the app's libraries."""

from __future__ import annotations

import httpx
import pytest

from app.networks.webpush import MAX_PAYLOAD, Subscription, VapidKeys, deliver
from tests.peers.push import PushService

pytestmark = pytest.mark.timeout(30)

CONTACT = "mailto:ops@hashroom.test"


def as_subscription(raw: dict) -> Subscription:
    return Subscription(raw["endpoint"], raw["keys"]["p256dh"], raw["keys"]["auth"])


async def test_a_delivery_verifies_and_decrypts_at_the_push_service():
    """The push service accepts the VAPID JWT (ES256, aud, exp, sub, k) and decrypts the
    payload with the subscription's own keys to exactly the JSON sent."""
    keys = VapidKeys.generate()
    async with PushService() as push, httpx.AsyncClient() as http:
        sub = as_subscription(push.subscribe(keys.public))
        sub.check()
        message = {"title": "#edchat starts in 10 minutes", "body": "Q1 – ünïcode ✓"}
        result = await deliver(http, keys, sub, message, subject=CONTACT, ttl=600, topic="starts")
        assert result.outcome == "sent" and result.status == 201
        (got,) = push.messages_for(sub.endpoint)
        assert got.payload == message
        assert got.ttl == 600 and got.topic == "starts"
        assert got.claims["aud"] == push.url and got.claims["sub"] == CONTACT


async def test_keys_survive_a_round_trip_through_pem():
    """A key pair stored as PEM signs for the same public key after loading."""
    keys = VapidKeys.generate()
    again = VapidKeys.from_pem(keys.private_pem)
    assert again.public == keys.public
    async with PushService() as push, httpx.AsyncClient() as http:
        sub = as_subscription(push.subscribe(keys.public))
        assert (await deliver(http, again, sub, {"a": 1}, subject=CONTACT, ttl=60)).outcome == (
            "sent"
        )


async def test_outcomes_for_expired_wrong_key_overloaded_and_unreachable_services():
    """410/404 mean gone, a key the subscription was not made for is rejected (403), 429 and
    5xx and network errors mean retry (with Retry-After), and no response body leaks out."""
    keys = VapidKeys.generate()
    other = VapidKeys.generate()
    async with PushService() as push, httpx.AsyncClient() as http:
        gone = as_subscription(push.subscribe(keys.public))
        push.expire(gone.endpoint)
        assert (await deliver(http, keys, gone, {}, subject=CONTACT, ttl=60)).outcome == "gone"
        missing = Subscription(push.url + "/push/nobody", gone.p256dh, gone.auth)
        assert (await deliver(http, keys, missing, {}, subject=CONTACT, ttl=60)).status == 404

        wrong = as_subscription(push.subscribe(other.public))
        refused = await deliver(http, keys, wrong, {}, subject=CONTACT, ttl=60)
        assert (refused.outcome, refused.status) == ("rejected", 403)

        busy = as_subscription(push.subscribe(keys.public))
        push.fail(busy.endpoint, 429, 1, retry_after=7)
        later = await deliver(http, keys, busy, {}, subject=CONTACT, ttl=60)
        assert (later.outcome, later.retry_after) == ("retry", 7.0)
        push.fail(busy.endpoint, 503, 1)
        down = await deliver(http, keys, busy, {}, subject=CONTACT, ttl=60)
        assert down.outcome == "retry" and "script" not in down.detail
        assert (await deliver(http, keys, busy, {}, subject=CONTACT, ttl=60)).outcome == "sent"

    closed = Subscription("http://127.0.0.1:9/push/x", busy.p256dh, busy.auth)
    async with httpx.AsyncClient() as http:
        assert (await deliver(http, keys, closed, {}, subject=CONTACT, ttl=60)).outcome == "retry"


def test_bad_subscription_keys_and_oversized_payloads_are_refused():
    """Keys that are not a P-256 point and a 16-byte secret, or a payload over the limit,
    raise ValueError naming what is wrong."""
    good = VapidKeys.generate().public
    with pytest.raises(ValueError, match="p256dh"):
        Subscription("https://push.example/x", "AAAA", "A" * 22).check()
    with pytest.raises(ValueError, match="auth"):
        Subscription("https://push.example/x", good, "AAAA").check()
    from app.networks.webpush import encrypt

    auth = "A" * 22
    with pytest.raises(ValueError, match="limit"):
        encrypt(b"x" * (MAX_PAYLOAD + 1), Subscription("https://push.example/x", good, auth))
