"""Web Push: the server's public key, and a browser's subscriptions to chats."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field

from ..deps import CsrfDep, RowId
from ..errors import Invalid
from ..push import Push, check_kinds
from .errors import errors

router = APIRouter(
    prefix="/api/push", tags=["push"], responses=errors(400, 401, 404, 413, 422, 503)
)


def _push(request: Request) -> Push:
    push: Push | None = getattr(request.app.state, "push", None)
    if push is None or push.keys is None:
        raise HTTPException(
            503,
            "push notifications are off on this server (its stored VAPID key cannot be "
            "decrypted with HASHROOM_SECRET_KEY)",
        )
    return push


PushDep = Annotated[Push, Depends(_push)]


def _device_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 200:
        raise HTTPException(
            401,
            "send the token returned when subscribing as 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token


TokenDep = Annotated[str, Depends(_device_token)]


class SubscriptionKeys(BaseModel):
    p256dh: str = Field(max_length=200)
    auth: str = Field(max_length=100)


class BrowserSubscription(BaseModel):
    """``PushSubscription.toJSON()`` as the browser returns it."""

    endpoint: str = Field(max_length=1000)
    keys: SubscriptionKeys
    expirationTime: float | None = None  # noqa: N815 - the browser's own field name


class SubscribeIn(BaseModel):
    chat: str = Field(min_length=1, max_length=64, examples=["edchat"])
    kinds: list[str] = Field(max_length=3, examples=[["starts", "pinned", "reply"]])
    subscription: BrowserSubscription


@router.get(
    "/key",
    summary="The server's VAPID public key",
    description='`{"key": …}`: the base64url P-256 public key a page passes as '
    "`applicationServerKey` to `pushManager.subscribe()`.",
)
async def public_key(push: PushDep) -> dict[str, str]:
    return {"key": push.public_key}


@router.post(
    "/subscriptions",
    status_code=201,
    summary="Ask for notifications from a chat",
    description="`kinds`: any of `starts` (the next session starts soon), `pinned` (a "
    "question was pinned) and `reply` (someone replied to a post you made from Hashroom "
    "with an account connected in this browser). Subscribing again to the same chat "
    "replaces the kinds. Returns the subscription and a `token` that lists and removes "
    "this browser's subscriptions.",
    dependencies=[CsrfDep],
)
async def subscribe(body: SubscribeIn, request: Request, push: PushDep) -> dict[str, Any]:
    try:
        kinds = check_kinds(body.kinds)
        accounts = [int(i) for i in request.session.get("accounts", [])] if "reply" in kinds else []
        row, token = await push.subscribe(
            body.chat, body.subscription.model_dump(), kinds, accounts
        )
    except ValueError as exc:  # push's checks raise plain ValueErrors
        raise Invalid(str(exc)) from exc
    return {**row, "token": token}


@router.get("/subscriptions", summary="This browser's push subscriptions")
async def my_subscriptions(push: PushDep, token: TokenDep) -> list[dict[str, Any]]:
    return await push.mine(token)


@router.delete(
    "/subscriptions/{subscription_id}",
    status_code=204,
    summary="Stop notifications from one chat",
)
async def unsubscribe(subscription_id: RowId, push: PushDep, token: TokenDep) -> Response:
    await push.remove(token, subscription_id)
    return Response(status_code=204)
