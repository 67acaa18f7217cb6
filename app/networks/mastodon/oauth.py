"""Mastodon OAuth: the registered application, the granted token, the scopes asked for and
the PKCE pair of the authorization-code flow. The requests themselves are
:class:`~app.networks.mastodon.client.MastodonApi` methods."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass

# read:accounts for verify_credentials, read:search for resolving a status to reply to it
# (both are checked by Mastodon's controllers), read/write:statuses for following and posting.
DEFAULT_SCOPES = "read:statuses read:accounts read:search write:statuses"
OOB_REDIRECT = "urn:ietf:wg:oauth:2.0:oob"


@dataclass(frozen=True, slots=True)
class AppCredentials:
    """An OAuth application registered on one instance (cache it per instance)."""

    client_id: str
    client_secret: str
    name: str = ""
    redirect_uri: str = ""
    scopes: str = ""


@dataclass(frozen=True, slots=True)
class OAuthToken:
    """An access token granted by ``/oauth/token``."""

    access_token: str
    token_type: str = "Bearer"
    scope: str = ""
    created_at: int | None = None


def new_pkce() -> tuple[str, str]:
    """A fresh PKCE pair: (verifier, S256 challenge). Keep the verifier until the callback."""
    verifier = secrets.token_urlsafe(64)  # 86 unreserved characters, within RFC 7636's 43–128
    return verifier, pkce_challenge(verifier)


def pkce_challenge(verifier: str) -> str:
    """The S256 challenge of ``verifier``: base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
