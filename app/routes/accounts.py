"""Connected network accounts: ``POST /api/accounts`` and posting through them."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field

from ..deps import CsrfDep, RowId
from ..errors import NotFound, Unavailable
from ..grants import account_allowed, forget_account, grant_account, session_account_ids
from ..limits import ACCOUNTS, limit
from ..models import Account
from ..publishing import Accounts, key_hash
from .errors import errors

router = APIRouter(prefix="/api", tags=["accounts"], responses=errors(400, 403, 404, 413, 422, 503))


class AccountIn(BaseModel):
    """Network-specific fields ride along: Mastodon `instance` + `access_token`; Bluesky
    `service` (optional) + `identifier` + `app_password`; X `access_token` (OAuth 2.0 user
    token) + `refresh_token` and `expires_in` (optional)."""

    model_config = {"extra": "allow"}
    network: str = Field(max_length=20)


def account_json(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "network": account.network,
        "instance": account.instance,
        "handle": account.handle,
    }


def accounts_service(request: Request) -> Accounts:
    """The app's account service; Unavailable (503) until the lifespan has made it."""
    accounts = request.app.state.accounts
    if accounts is None:
        raise Unavailable("accounts are not available on this server")
    return accounts


def may_use(request: Request, account: Account) -> bool:
    """The account's API key as a Bearer token, or a browser session holding the account's
    live grant (see app/grants.py: it dies with the account)."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        return hmac.compare_digest(key_hash(key.strip()), account.owner)
    return account_allowed(request.session, _secret(request), account)


def _secret(request: Request) -> str:
    return request.app.state.settings.secret_key


async def usable_account(request: Request, account_id: int) -> Account:
    account = await accounts_service(request).get(account_id)
    if not may_use(request, account):
        raise HTTPException(
            403,
            "account_id: this account is not yours — send its key as "
            "'Authorization: Bearer <account key>' or connect it in this browser",
        )
    return account


async def session_accounts(request: Request) -> list[Account]:
    """The accounts this browser session holds live grants for, oldest first."""
    out = []
    for account_id in session_account_ids(request.session):
        try:
            account = await accounts_service(request).get(account_id)
        except (NotFound, Unavailable):  # disconnected: its grant died with it
            continue
        if account_allowed(request.session, _secret(request), account):
            out.append(account)
    return out


def remember(request: Request, account: Account) -> None:
    """Let this browser session use the account (its grant, in the signed session cookie)."""
    grant_account(request.session, _secret(request), account)


@router.post(
    "/accounts",
    status_code=201,
    summary="Connect a network account",
    description="Verifies the credentials with the network, stores them encrypted, and "
    "returns the account `id` and its `key` (shown only here; send it as a Bearer token "
    "when posting with `account_id`).",
    dependencies=[CsrfDep, Depends(limit(ACCOUNTS))],
    responses=errors(429, 502),
)
async def connect_account(body: AccountIn, request: Request) -> dict[str, Any]:
    fields = body.model_dump()
    account, key = await accounts_service(request).connect(body.network, fields)
    if request.app.state.session_cookie in request.cookies:
        remember(request, account)
    return {**account_json(account), "key": key}


@router.get("/accounts/mine", summary="Accounts this browser session may post with")
async def my_accounts(request: Request) -> list[dict[str, Any]]:
    return [account_json(account) for account in await session_accounts(request)]


@router.delete(
    "/accounts/{account_id}",
    status_code=204,
    summary="Disconnect an account (revokes its token where the network allows)",
    dependencies=[CsrfDep],
)
async def disconnect_account(account_id: RowId, request: Request) -> Response:
    account = await usable_account(request, account_id)
    await accounts_service(request).disconnect(account)
    forget_account(request.session, account_id)
    return Response(status_code=204)


async def publish_via_account(request: Request, slug: str, body: Any) -> dict[str, Any]:
    """``POST /api/chats/{slug}/posts`` with ``account_id``: post as that account."""
    account = await usable_account(request, body.account_id)
    return await accounts_service(request).post(
        slug,
        account,
        body.text,
        body.in_reply_to,
        request.headers.get("idempotency-key"),
        quote_of=getattr(body, "quote_of", None),
    )


class LengthIn(BaseModel):
    network: str = Field(max_length=20)
    text: str = Field(max_length=5000)


@router.post(
    "/length",
    summary="A post's length as a network counts it",
    description="For the composer's counter where counting needs the network's own library "
    "(X: weighted characters). `{length, limit}`; changes nothing.",
)
async def post_length(body: LengthIn, request: Request) -> dict[str, Any]:
    rules = getattr(request.app.state, "length_rules", {})
    rule = rules.get(body.network)
    if rule is None:
        raise HTTPException(
            422, f"network: no server-side counter for {body.network!r}; count graphemes"
        )
    # A thread: counting X's way costs up to a few tenths of a second for 5,000 characters.
    return {"length": await asyncio.to_thread(rule.count, body.text), "limit": rule.limit}
