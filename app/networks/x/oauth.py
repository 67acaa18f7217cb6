"""X OAuth 2.0 with PKCE: the scopes asked for, the authorization address and a user's
tokens. The token requests themselves are :class:`~app.networks.x.client.XApi` methods."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

DEFAULT_AUTHORIZE_URL = "https://x.com/i/oauth2/authorize"
SCOPES = "tweet.read tweet.write users.read offline.access"
# Tokens expire after 2 hours; renew when less than this is left, so a post never races it.
REFRESH_MARGIN = 300.0


def new_pkce() -> tuple[str, str]:
    """(verifier, S256 challenge)."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(
    base: str, client_id: str, redirect_uri: str, *, state: str, code_challenge: str
) -> str:
    return (
        base
        + "?"
        + urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "scope": SCOPES,
                "state": state,
                "code_challenge": code_challenge,
                "code_challenge_method": "S256",
            }
        )
    )


@dataclass(slots=True)
class Tokens:
    """A user's OAuth 2.0 tokens; ``expires_at`` in epoch seconds."""

    access_token: str
    refresh_token: str | None
    expires_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tokens:
        return cls(
            access_token=str(data.get("access_token") or ""),
            refresh_token=data.get("refresh_token") or None,
            expires_at=float(data.get("expires_at") or 0),
        )

    def fresh(self, now: float | None = None) -> bool:
        return self.expires_at - (time.time() if now is None else now) > REFRESH_MARGIN
