"""Each chat as a Bluesky custom feed: the feed generator's DID document and XRPC methods, and
moderators publishing or removing a chat's feed record."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ..deps import INT64_MAX, ModeratorDep, SettingsDep
from ..feeds import Feeds
from ..networks.feedgen import FeedError, check_limit, did_document
from .accounts import accounts_service, usable_account
from .errors import errors

router = APIRouter(tags=["feed"], responses=errors(422))


class XrpcErrorOut(BaseModel):
    """The error body XRPC clients (Bluesky AppViews) expect."""

    error: str
    message: str | None = None


def _feeds(request: Request) -> Feeds:
    return request.app.state.feeds


def _xrpc_error(exc: FeedError) -> JSONResponse:
    return JSONResponse({"error": exc.error, "message": exc.message}, status_code=400)


@router.get(
    "/.well-known/did.json",
    summary="The feed generator's DID document (did:web)",
    responses=errors(404),
)
async def did_json(settings: SettingsDep) -> dict[str, Any]:
    try:
        return did_document(settings.public_url)
    except ValueError as exc:
        raise HTTPException(404, f"the feed generator is off: {exc}") from exc


@router.get(
    "/xrpc/app.bsky.feed.describeFeedGenerator",
    summary="The feed generator's DID and the feeds published from this server",
    responses=errors(404),
)
async def describe(request: Request) -> dict[str, Any]:
    return await _feeds(request).describe()


@router.get(
    "/xrpc/app.bsky.feed.getFeedSkeleton",
    summary="A chat's Bluesky posts as a feed skeleton",
    responses={
        **errors(404),
        400: {"model": XrpcErrorOut, "description": "An XRPC error (`error`, `message`)."},
    },
    description="`feed`: the feed record's at:// URI; `limit` 1–100 (default 50); `cursor` "
    "from the previous page. The pinned questions come first, then the newest posts; "
    "hidden and held posts never appear.",
)
async def skeleton(
    request: Request,
    feed: str = Query(..., max_length=600),
    limit: str | None = Query(None, max_length=10),
    cursor: str | None = Query(None, max_length=200),
) -> Any:
    try:
        return await _feeds(request).skeleton(feed, check_limit(limit), cursor)
    except FeedError as exc:
        return _xrpc_error(exc)


class FeedPublishIn(BaseModel):
    account_id: int = Field(ge=1, le=INT64_MAX)


@router.get(
    "/api/chats/{slug}/feed",
    tags=["api"],
    summary="Whether the chat's feed is published",
    responses=errors(404),
)
async def feed_status(slug: str, request: Request) -> dict[str, Any]:
    return {"feed": await _feeds(request).published(slug)}


@router.put(
    "/api/chats/{slug}/feed",
    tags=["api"],
    summary="Publish the chat as a Bluesky feed (moderators, with a Bluesky account)",
    responses=errors(400, 401, 403, 404, 409, 413, 422, 502, 503),
    description="Writes an `app.bsky.feed.generator` record (the chat's title and "
    "description) to the repository of `account_id`, a Bluesky account connected in this "
    "browser or sent with its key. Needs `HASHROOM_PUBLIC_URL`.",
)
async def publish_feed(
    slug: str, body: FeedPublishIn, request: Request, _actor: ModeratorDep, settings: SettingsDep
) -> dict[str, Any]:
    account = await usable_account(request, body.account_id)
    base = settings.public_url.rstrip("/") or str(request.base_url).rstrip("/")
    return {"feed": await _feeds(request).publish(slug, account, accounts_service(request), base)}


@router.delete(
    "/api/chats/{slug}/feed",
    tags=["api"],
    status_code=204,
    summary="Remove the chat's Bluesky feed record (moderators)",
    responses=errors(401, 403, 404, 409, 422, 502, 503),
)
async def remove_feed(
    slug: str,
    request: Request,
    _actor: ModeratorDep,
    account_id: int = Query(..., ge=1, le=INT64_MAX),
) -> Response:
    account = await usable_account(request, account_id)
    await _feeds(request).remove(slug, account, accounts_service(request))
    return Response(status_code=204)
