"""Moderator keys, CSRF, Origin checks and encryption of stored network tokens.

Moderator keys are shown once and stored only as SHA-256 hashes (they are 192-bit random, so
a fast hash is enough). Network tokens are encrypted with Fernet under a key derived from
``HASHROOM_SECRET_KEY``: a stolen database alone does not yield usable tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken
from starlette.requests import HTTPConnection


def new_moderator_key() -> str:
    return secrets.token_urlsafe(24)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_matches(key: str, key_hash: str) -> bool:
    """Constant-time check of a presented moderator key against its stored hash."""
    return hmac.compare_digest(hash_key(key), key_hash)


def new_epoch() -> str:
    return secrets.token_hex(8)


class Vault:
    """Encrypts and decrypts secrets at rest (tokens, app secrets)."""

    def __init__(self, secret_key: str) -> None:
        digest = hashlib.sha256(b"hashroom-vault:" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, data: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(data).encode()).decode()

    def open(self, token: str) -> dict[str, Any]:
        """Decrypt ``token``; raises ``ValueError`` when it was sealed under another key."""
        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as exc:
            raise ValueError("stored secret cannot be decrypted with HASHROOM_SECRET_KEY") from exc


def csrf_token(session: dict[str, Any]) -> str:
    """The session's CSRF token, created on first use."""
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(24)
        session["csrf"] = token
    return token


def csrf_ok(session: dict[str, Any], presented: str | None) -> bool:
    expected = session.get("csrf")
    return bool(expected and presented and hmac.compare_digest(expected, presented))


def origin_allowed(conn: HTTPConnection, public_url: str, extra: list[str]) -> bool:
    """True when the request's Origin is this site (or explicitly allowed).

    Browsers always send Origin on websocket upgrades; non-browser clients may omit it and are
    let through (they hold no ambient credentials a foreign page could abuse).
    """
    origin = conn.headers.get("origin")
    if origin is None:
        return True
    origin = origin.rstrip("/").lower()
    allowed = {o.rstrip("/").lower() for o in extra}
    if public_url:
        parts = urlsplit(public_url)
        allowed.add(f"{parts.scheme}://{parts.netloc}".lower())
    host = conn.headers.get("host", "")
    scheme = "https" if conn.url.scheme in ("https", "wss") else "http"
    allowed.add(f"{scheme}://{host}".lower())
    return origin in allowed
