"""A Web Push service on loopback, for tests: it plays both the push service a browser
registers with and that browser's side of the subscription.

    async with PushService() as push:
        sub = push.subscribe(application_server_key)   # what pushManager.subscribe() returns
        ... the app POSTs to sub["endpoint"] ...
        (message,) = await push.wait_for(1)
        message.payload  # the decrypted JSON

It checks what real push services check, written from the RFCs independently of the app's
libraries:

- RFC 8030: ``POST`` to the subscription's endpoint, ``TTL`` required (400 without),
  ``Urgency``/``Topic`` optional and validated, ``201 Created`` with a ``Location``;
  an unknown or expired subscription answers ``404``/``410``.
- RFC 8292 (VAPID): ``Authorization: vapid t=<JWT>, k=<key>``; the JWT is ES256 with the
  ``k`` key, ``aud`` is this service's origin, ``exp`` in the future and at most 24 hours
  ahead, ``sub`` a ``mailto:`` or ``https:`` contact; ``k`` must be the
  ``applicationServerKey`` the subscription was made with (403 otherwise), as FCM and
  Mozilla autopush do.
- RFC 8291 / RFC 8188: ``Content-Encoding: aes128gcm``; the body is decrypted with the
  subscription's private key and auth secret (a message that does not decrypt is 400).

Switches make it misbehave: :meth:`fail` answers a status a number of times (``Retry-After``
with 429), :meth:`expire` makes a subscription answer 410 Gone.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

MAX_BODY = 4096  # RFC 8030 §7.2: push services must accept at least 4096 bytes
URGENCIES = {"very-low", "low", "normal", "high"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class PushSubscription:
    """The browser's side: its key pair and auth secret, and the server key it accepts."""

    token: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    server_key: str
    gone: bool = False

    @property
    def public(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )


@dataclass
class Message:
    """A push the service accepted, decrypted."""

    token: str
    payload: dict[str, Any]
    ttl: int
    urgency: str
    topic: str | None
    claims: dict[str, Any]


@dataclass
class Attempt:
    token: str
    status: int
    reason: str = ""


@dataclass
class _Fault:
    status: int
    times: int
    retry_after: int | None = None


@dataclass
class _State:
    subs: dict[str, PushSubscription] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    faults: dict[str, _Fault] = field(default_factory=dict)


def verify_vapid(header: str, origin: str) -> tuple[str, dict[str, Any]]:
    """Check an RFC 8292 ``Authorization`` header; returns ``(k, claims)`` or raises."""
    match = re.fullmatch(r"vapid\s+(.+)", header.strip(), re.IGNORECASE)
    if not match:
        raise Refused(401, "Authorization must use the vapid scheme")
    params: dict[str, str] = {}
    for part in match.group(1).split(","):
        name, _, value = part.strip().partition("=")
        params[name.strip().lower()] = value.strip()
    if "t" not in params or "k" not in params:
        raise Refused(401, "vapid needs t= and k=")
    try:
        head_b64, claims_b64, sig_b64 = params["t"].split(".")
        head = json.loads(unb64url(head_b64))
        claims = json.loads(unb64url(claims_b64))
        signature = unb64url(sig_b64)
        key_bytes = unb64url(params["k"])
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key_bytes)
    except (ValueError, TypeError) as exc:
        raise Refused(401, f"malformed vapid token: {exc}") from exc
    if head.get("alg") != "ES256":
        raise Refused(401, "the JWT must be ES256")
    if len(signature) != 64:
        raise Refused(401, "ES256 signatures are 64 bytes (r || s)")
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        key.verify(der, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise Refused(401, "bad JWT signature") from exc
    if claims.get("aud") != origin:
        raise Refused(401, f"aud {claims.get('aud')!r} is not {origin!r}")
    exp = claims.get("exp")
    now = time.time()
    if not isinstance(exp, int) or exp <= now:
        raise Refused(401, "the JWT has expired")
    if exp > now + 24 * 3600:
        raise Refused(401, "exp is more than 24 hours ahead")
    sub = claims.get("sub", "")
    if not (isinstance(sub, str) and (sub.startswith("mailto:") or sub.startswith("https:"))):
        raise Refused(401, "sub must be a mailto: or https: contact")
    return params["k"], claims


def decrypt(body: bytes, sub: PushSubscription) -> bytes:
    """RFC 8291 decryption of one ``aes128gcm`` record with the subscription's keys."""
    if len(body) < 21:
        raise Refused(400, "body shorter than the aes128gcm header")
    salt = body[:16]
    (rs,) = struct.unpack("!I", body[16:20])
    idlen = body[20]
    keyid = body[21 : 21 + idlen]
    ciphertext = body[21 + idlen :]
    if idlen != 65 or rs < 18:
        raise Refused(400, "keyid must be the sender's 65-byte public key")
    if len(ciphertext) > rs:
        raise Refused(400, "more than one record")
    try:
        sender = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), keyid)
    except ValueError as exc:
        raise Refused(400, "keyid is not a P-256 point") from exc
    shared = sub.private_key.exchange(ec.ECDH(), sender)
    prk_key = _hmac(sub.auth, shared)
    key_info = b"WebPush: info\x00" + sub.public + keyid
    ikm = _hmac(prk_key, key_info + b"\x01")
    prk = _hmac(salt, ikm)
    cek = _hmac(prk, b"Content-Encoding: aes128gcm\x00\x01")[:16]
    nonce = _hmac(prk, b"Content-Encoding: nonce\x00\x01")[:12]
    try:
        plain = AESGCM(cek).decrypt(nonce, ciphertext, None)
    except InvalidTag as exc:
        raise Refused(400, "payload does not decrypt with the subscription's keys") from exc
    end = len(plain.rstrip(b"\x00"))
    if end == 0 or plain[end - 1] != 2:
        raise Refused(400, "the last record must end with the 0x02 delimiter")
    return plain[: end - 1]


class PushService:
    """The push service on a free loopback port; see the module docstring."""

    def __init__(self) -> None:
        self.state = _State()
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Condition()

    # -- the browser's side --

    def subscribe(self, server_key: str) -> dict[str, Any]:
        """A new subscription for ``server_key``, shaped like ``PushSubscription.toJSON()``."""
        sub = PushSubscription(
            token=secrets.token_urlsafe(16),
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth=os.urandom(16),
            server_key=server_key,
        )
        self.state.subs[sub.token] = sub
        return {
            "endpoint": f"{self.url}/push/{sub.token}",
            "expirationTime": None,
            "keys": {"p256dh": b64url(sub.public), "auth": b64url(sub.auth)},
        }

    def adopt(
        self,
        endpoint: str,
        p256dh_private: ec.EllipticCurvePrivateKey,
        auth: bytes,
        server_key: str,
    ) -> None:
        """Register a subscription made elsewhere (a browser page) under its endpoint."""
        token = endpoint.rsplit("/", 1)[-1]
        self.state.subs[token] = PushSubscription(token, p256dh_private, auth, server_key)

    # -- switches --

    def fail(self, endpoint: str, status: int, times: int, retry_after: int | None = None) -> None:
        self.state.faults[endpoint.rsplit("/", 1)[-1]] = _Fault(status, times, retry_after)

    def expire(self, endpoint: str) -> None:
        self.state.subs[endpoint.rsplit("/", 1)[-1]].gone = True

    # -- reading --

    def messages_for(self, endpoint: str) -> list[Message]:
        token = endpoint.rsplit("/", 1)[-1]
        return [m for m in self.state.messages if m.token == token]

    async def wait_for(
        self, count: int, endpoint: str | None = None, timeout: float = 15.0
    ) -> list[Message]:
        """Wait until ``count`` messages (for ``endpoint``, if given) arrived, or fail."""

        def found() -> list[Message]:
            if endpoint is None:
                return list(self.state.messages)
            return self.messages_for(endpoint)

        async with self._arrived:
            try:
                await asyncio.wait_for(
                    self._arrived.wait_for(lambda: len(found()) >= count), timeout
                )
            except TimeoutError:
                raise AssertionError(
                    f"expected {count} push message(s) within {timeout}s, got {len(found())}; "
                    f"attempts: {[(a.status, a.reason) for a in self.state.attempts]}"
                ) from None
        return found()

    # -- the service --

    async def _receive(self, request: Request) -> Response:
        token = request.path_params["token"]
        sub = self.state.subs.get(token)
        try:
            if sub is None:
                raise Refused(404, "no such subscription")
            if sub.gone:
                raise Refused(410, "subscription expired")
            fault = self.state.faults.get(token)
            if fault is not None and fault.times > 0:
                fault.times -= 1
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
                self.state.attempts.append(Attempt(token, fault.status, "fault"))
                return Response(
                    "<html>upstream trouble <script>alert(1)</script></html>",
                    fault.status,
                    headers=headers,
                )
            k, claims = verify_vapid(request.headers.get("authorization", ""), self.url)
            if k != sub.server_key:
                raise Refused(403, "the VAPID key is not the one this subscription was made for")
            ttl_raw = request.headers.get("ttl")
            if ttl_raw is None or not ttl_raw.isdigit():
                raise Refused(400, "TTL header required")
            urgency = request.headers.get("urgency", "normal")
            if urgency not in URGENCIES:
                raise Refused(400, "bad Urgency")
            topic = request.headers.get("topic")
            if topic is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", topic):
                raise Refused(400, "Topic must be at most 32 base64url characters")
            if request.headers.get("content-encoding") != "aes128gcm":
                raise Refused(400, "Content-Encoding must be aes128gcm")
            body = await request.body()
            if len(body) > MAX_BODY:
                raise Refused(413, "payload too large")
            payload = json.loads(decrypt(body, sub))
        except Refused as exc:
            self.state.attempts.append(Attempt(token, exc.status, exc.reason))
            return Response(exc.reason, exc.status)
        self.state.attempts.append(Attempt(token, 201))
        async with self._arrived:
            self.state.messages.append(
                Message(token, payload, int(ttl_raw), urgency, topic, claims)
            )
            self._arrived.notify_all()
        return Response(status_code=201, headers={"Location": f"/message/{secrets.token_hex(8)}"})

    async def __aenter__(self) -> PushService:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        app = Starlette(routes=[Route("/push/{token}", self._receive, methods=["POST"])])
        config = uvicorn.Config(
            app, lifespan="off", log_level="warning", access_log=False, timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        deadline = time.monotonic() + 5
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the push service stopped while starting")
            if time.monotonic() > deadline:
                raise RuntimeError("the push service did not start within 5 s")
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(self._task, 5)
            except TimeoutError:
                self._task.cancel()
