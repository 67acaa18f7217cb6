"""``GET /healthz``: is the database answering, and how is each ingester doing."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..db import check

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Health: database and ingesters")
async def healthz(request: Request) -> JSONResponse:
    state = request.app.state
    db_ok = await asyncio.to_thread(check, state.engine)
    body = {
        "status": "ok" if db_ok else "degraded",
        "database": "ok" if db_ok else "unreachable",
        "ingesters": state.ingest.statuses(),
        "clients": state.hub.count(),
        "clients_direct": state.hub.count_direct(),
    }
    return JSONResponse(body, status_code=200 if db_ok else 503)
