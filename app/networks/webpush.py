"""Web Push, the protocol: VAPID keys (RFC 8292), payload encryption (RFC 8291, ``aes128gcm``)
and one delivery to a push service (RFC 8030).

Protocol knowledge only: the caller stores keys and subscriptions, decides what to send and
passes the shared HTTP client in. ``py_vapid`` signs the JWT and ``http_ece`` encrypts; both
are the Web Push libraries' own building blocks, kept by the same maintainers as ``pywebpush``
(which would also pull in ``requests`` and send outside the app's HTTP client).
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import http_ece
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02, VapidException

# RFC 8292 §2: the JWT must expire within 24 hours; 12 leaves room for clock skew.
JWT_LIFETIME = 12 * 3600
# RFC 8291 §4: one record of at most 4096 bytes; the push service may refuse more. The
# payload is kept well under so that the padding and headers always fit.
MAX_PAYLOAD = 3000


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class VapidKeys:
    """The server's P-256 key pair. ``public`` is the uncompressed point, base64url: the
    ``applicationServerKey`` a page passes to ``pushManager.subscribe()``."""

    private_pem: str
    public: str

    @classmethod
    def generate(cls) -> VapidKeys:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return cls.from_pem(pem)

    @classmethod
    def from_pem(cls, pem: str) -> VapidKeys:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("a VAPID key must be a P-256 private key")
        point = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return cls(private_pem=pem, public=b64url(point))


@dataclass(frozen=True, slots=True)
class Subscription:
    """A browser's ``PushSubscription``: where to send, and its keys (base64url)."""

    endpoint: str
    p256dh: str
    auth: str

    def check(self) -> None:
        """Raise ValueError naming the field when the keys are not a P-256 point and a
        16-byte secret (a page sending garbage must get a 4xx, not a failed send later)."""
        try:
            point = b64url_decode(self.p256dh)
            auth = b64url_decode(self.auth)
        except (ValueError, TypeError) as exc:
            raise ValueError("keys: p256dh and auth must be base64url") from exc
        if len(point) != 65 or point[0] != 4:
            raise ValueError("keys.p256dh: expected an uncompressed P-256 point (65 bytes)")
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        except ValueError as exc:
            raise ValueError("keys.p256dh: not a point on P-256") from exc
        if len(auth) != 16:
            raise ValueError("keys.auth: expected a 16-byte secret")


def encrypt(payload: bytes, subscription: Subscription) -> bytes:
    """The ``aes128gcm`` body for ``payload`` (RFC 8291): a fresh sender key and salt each
    time, one record. Raises ValueError when the payload is over :data:`MAX_PAYLOAD`."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"push payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD}")
    sender = ec.generate_private_key(ec.SECP256R1())
    return http_ece.encrypt(
        payload,
        salt=os.urandom(16),
        private_key=sender,
        dh=b64url_decode(subscription.p256dh),
        auth_secret=b64url_decode(subscription.auth),
        version="aes128gcm",
    )


def audience(endpoint: str) -> str:
    """The JWT ``aud``: the push service's origin."""
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


def vapid_authorization(keys: VapidKeys, endpoint: str, subject: str) -> str:
    """The ``Authorization: vapid t=…, k=…`` header value for a request to ``endpoint``."""
    vapid = Vapid02.from_pem(keys.private_pem.encode())
    claims = {"aud": audience(endpoint), "exp": int(time.time()) + JWT_LIFETIME, "sub": subject}
    return vapid.sign(claims)["Authorization"]


Outcome = Literal["sent", "gone", "retry", "rejected"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a push service said. ``gone``: the subscription expired (404/410), drop it;
    ``retry``: try again later (network error, 429, 5xx), after ``retry_after`` if given;
    ``rejected``: the request itself was refused (other 4xx), retrying will not help.
    ``detail`` is our own wording, never the service's response body."""

    outcome: Outcome
    status: int | None = None
    retry_after: float | None = None
    detail: str = ""


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after", "")
    try:
        return max(0.0, min(float(raw), 3600.0))
    except ValueError:
        return None


async def deliver(
    http: httpx.AsyncClient,
    keys: VapidKeys,
    subscription: Subscription,
    message: dict[str, Any],
    *,
    subject: str,
    ttl: int,
    urgency: str = "normal",
    topic: str | None = None,
) -> Delivery:
    """Encrypt ``message`` (as JSON) for ``subscription`` and POST it to its push service
    through ``http``. Never raises for network or service errors: they become a
    :class:`Delivery`. ``topic`` lets a newer message replace an undelivered older one."""
    body = encrypt(json.dumps(message, separators=(",", ":")).encode(), subscription)
    try:
        authorization = vapid_authorization(keys, subscription.endpoint, subject)
    except VapidException:
        # py_vapid accepts only a host name or IPv4 literal as the audience, and a mailto: or
        # https: contact: nothing a retry would change.
        return Delivery("rejected", detail="cannot sign a VAPID token for this push service")
    headers = {
        "Authorization": authorization,
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
        "TTL": str(max(0, ttl)),
        "Urgency": urgency,
    }
    if topic:
        headers["Topic"] = topic
    try:
        response = await http.post(subscription.endpoint, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return Delivery("retry", detail=f"push service unreachable ({type(exc).__name__})")
    status = response.status_code
    if 200 <= status < 300:
        return Delivery("sent", status)
    if status in (404, 410):
        return Delivery("gone", status, detail="subscription expired")
    if status == 429 or status >= 500:
        return Delivery("retry", status, _retry_after(response), f"push service answered {status}")
    return Delivery("rejected", status, detail=f"push service refused the message ({status})")
