"""What a browser session may do, held as secrets the server can take back.

The session cookie is signed, so nobody can forge one, but it lives for a year and a copy
of it keeps working wherever it went. So it never holds a bare permission ("account 3",
"moderator of #edchat"); it holds a grant derived from server-side state with the app
secret, which stops matching the moment that state changes:

* an **account grant** is derived from the account's own random key hash: deleting the
  account (disconnecting it) revokes every browser's grant at once, and an account that
  later gets a similar row never matches an old grant;
* a **moderator grant** is derived from the chat's current moderator key hash: rotating the
  key revokes every moderator cookie made from the old key (and every host link);
* a **host grant** (a host link a moderator handed out) names the person the moderators
  vouched for, and carries the moderator grant current when it was made.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from .models import Account, Chat

# Most accounts and host links one browser session keeps (oldest dropped first).
MAX_ACCOUNTS = 10
MAX_HOSTS = 20


def _derive(secret_key: str, purpose: str, value: str) -> str:
    mac = hmac.new(secret_key.encode(), f"{purpose}:{value}".encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


# --- accounts -------------------------------------------------------------------------------


def account_grant(secret_key: str, account: Account) -> str:
    """The secret a browser holds to post as ``account``; dies with the account row."""
    return _derive(secret_key, f"account:{account.id}", account.owner)


def grant_account(session: dict[str, Any], secret_key: str, account: Account) -> None:
    """Let this browser session post as ``account``."""
    grants = {k: v for k, v in _accounts(session).items() if k != str(account.id)}
    grants[str(account.id)] = account_grant(secret_key, account)
    session["accounts"] = dict(list(grants.items())[-MAX_ACCOUNTS:])


def account_allowed(session: dict[str, Any], secret_key: str, account: Account) -> bool:
    """True when this session holds the live grant of ``account``."""
    held = _accounts(session).get(str(account.id))
    return bool(held) and hmac.compare_digest(held, account_grant(secret_key, account))


def session_account_ids(session: dict[str, Any]) -> list[int]:
    """The account ids this session claims (check each with :func:`account_allowed`)."""
    return [int(k) for k in _accounts(session) if k.isdigit()]


def forget_account(session: dict[str, Any], account_id: int) -> None:
    session["accounts"] = {k: v for k, v in _accounts(session).items() if k != str(account_id)}


def _accounts(session: dict[str, Any]) -> dict[str, str]:
    held = session.get("accounts")
    # Older cookies held a bare list of ids: they grant nothing now.
    return {str(k): str(v) for k, v in held.items()} if isinstance(held, dict) else {}


# --- moderators -----------------------------------------------------------------------------


def moderator_grant(secret_key: str, chat: Chat) -> str:
    """The secret a moderator's browser holds for ``chat``; changes when the key rotates."""
    return _derive(secret_key, f"moderator:{chat.id}", chat.moderator_key_hash)


def grant_moderator(session: dict[str, Any], secret_key: str, chat: Chat) -> None:
    grants = _mods(session)
    grants[chat.slug] = moderator_grant(secret_key, chat)
    session["mod"] = grants


def is_moderator(session: dict[str, Any], secret_key: str, chat: Chat) -> bool:
    held = _mods(session).get(chat.slug)
    return bool(held) and hmac.compare_digest(held, moderator_grant(secret_key, chat))


def _mods(session: dict[str, Any]) -> dict[str, str]:
    held = session.get("mod")
    return {str(k): str(v) for k, v in held.items()} if isinstance(held, dict) else {}


# --- hosts ----------------------------------------------------------------------------------


def _host_serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt="hashroom-host-link")


def host_link_token(secret_key: str, chat: Chat, name: str, role: str) -> str:
    """A host link's token: names ``name`` as ``role`` (host or guest) in ``chat`` until the
    chat's moderator key rotates."""
    payload = {"c": chat.id, "n": name, "r": role, "g": moderator_grant(secret_key, chat)}
    return _host_serializer(secret_key).dumps(payload)


def read_host_link(secret_key: str, chat: Chat, token: str) -> dict[str, str] | None:
    """The vouched-for person in a host link token (``name``, ``role``), or None when the
    token is forged, for another chat, or made before the key rotated."""
    try:
        payload = _host_serializer(secret_key).loads(token)
    except BadSignature:
        return None
    if not isinstance(payload, dict) or payload.get("c") != chat.id:
        return None
    if not hmac.compare_digest(str(payload.get("g", "")), moderator_grant(secret_key, chat)):
        return None
    return {"name": str(payload.get("n", "")), "role": str(payload.get("r", "host"))}


def grant_host(
    session: dict[str, Any], secret_key: str, chat: Chat, person: dict[str, str]
) -> None:
    hosts = {k: v for k, v in _hosts(session).items() if k != chat.slug}
    hosts[chat.slug] = {**person, "g": moderator_grant(secret_key, chat)}
    session["host"] = dict(list(hosts.items())[-MAX_HOSTS:])


def vouched_host(session: dict[str, Any], secret_key: str, chat: Chat) -> dict[str, str] | None:
    """The person this session was vouched for as in ``chat`` (a live host link), or None."""
    held = _hosts(session).get(chat.slug)
    if not held or not hmac.compare_digest(
        str(held.get("g", "")), moderator_grant(secret_key, chat)
    ):
        return None
    return {"name": str(held.get("name", "")), "role": str(held.get("role", "host"))}


def _hosts(session: dict[str, Any]) -> dict[str, dict[str, str]]:
    held = session.get("host")
    return dict(held) if isinstance(held, dict) else {}
