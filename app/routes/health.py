"""``GET /healthz`` and a chat's source status.

Anyone may ask whether the server is alive: the public answer carries liveness and
aggregate counts only. Per-source detail (state, last error, posts stored) is for the
operator (``Authorization: Bearer <HASHROOM_OPERATOR_TOKEN>``) on ``/healthz``, and for a
chat's moderators on ``GET /api/chats/{slug}/status``: an error can name hosts and accounts
the public need not see.
"""

from __future__ import annotations

import asyncio
import hmac
from collections import Counter
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from ..db import check
from ..deps import ModeratorDep
from .errors import errors

router = APIRouter(tags=["health"], responses=errors(403))


def operator_authenticated(request: Request) -> bool:
    """True for ``Authorization: Bearer <operator token>`` when a token is configured.

    Raises 403 for a Bearer token that is not it, so a typo is not mistaken for the public
    view; other ``Authorization`` headers (or none) get the public view.
    """
    expected = request.app.state.settings.operator_token
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer" or not given.strip():
        return False
    if hmac.compare_digest(given.strip().encode(), expected.encode()):
        return True
    raise HTTPException(403, "this is not the operator token (HASHROOM_OPERATOR_TOKEN)")


@router.get("/healthz", summary="Health: database and ingesters")
async def healthz(request: Request) -> JSONResponse:
    """Liveness and aggregate state; per-source detail for the operator (see module)."""
    operator = operator_authenticated(request)
    state = request.app.state
    db_ok = await asyncio.to_thread(check, state.engine)
    statuses = state.ingest.statuses()
    fanout = state.fanout.status()
    body: dict[str, Any] = {
        "status": "ok" if db_ok else "degraded",
        "database": "ok" if db_ok else "unreachable",
        "sources": {
            "total": len(statuses),
            "states": dict(Counter(s["state"] for s in statuses)),
            "with_errors": sum(1 for s in statuses if s["last_error"]),
        },
        "clients": state.hub.count(),
        "clients_direct": state.hub.count_direct(),
        # Clients served since start, and the database reads all of them needed (a chat
        # with viewers serves new ones from memory: app/catchup.py).
        "catchup": dict(state.catchup.stats),
        "fanout": {
            "mode": fanout["mode"],
            **({"connected": fanout["connected"]} if "connected" in fanout else {}),
        },
    }
    if operator:
        body["ingesters"] = statuses
        body["process"] = state.settings.process_name
        body["fanout"] = fanout
        if state.leases.enabled:
            # The cluster's view from the database: which process follows which source.
            body["leases"] = await state.leases.table()
    return JSONResponse(body, status_code=200 if db_ok else 503)


@router.get(
    "/api/chats/{slug}/status",
    summary="The chat's sources: state, last error, posts stored (moderators)",
    responses=errors(401, 404),
)
async def chat_status(slug: str, request: Request, _moderator: ModeratorDep) -> dict[str, Any]:
    """Each source of chat ``slug`` as its ingester sees it; moderators of the chat only."""
    statuses = [s for s in request.app.state.ingest.statuses() if s["chat"] == slug]
    return {"chat": slug, "sources": statuses}
