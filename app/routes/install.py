"""The installable app: web app manifests (the whole site, and one per room so a room added to
a phone's home screen opens that room) and the service worker, served from the root so it
may control every page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse

from ..deps import RoomsDep
from ..templating import STATIC_DIR

router = APIRouter(tags=["app"], include_in_schema=False)

MANIFEST_TYPE = "application/manifest+json"
THEME = "#0a58a8"


def _icons(version: str) -> list[dict[str, str]]:
    base = "/static/icons"
    return [
        {"src": f"{base}/icon-192.png?v={version}", "sizes": "192x192", "type": "image/png"},
        {"src": f"{base}/icon-512.png?v={version}", "sizes": "512x512", "type": "image/png"},
        {
            "src": f"{base}/icon-maskable-512.png?v={version}",
            "sizes": "512x512",
            "type": "image/png",
            "purpose": "maskable",
        },
    ]


def manifest(
    name: str, short_name: str, start_url: str, description: str, version: str
) -> dict[str, Any]:
    return {
        "id": start_url,
        "name": name,
        "short_name": short_name,
        "description": description,
        "start_url": start_url,
        "scope": "/",
        # Standalone: the room fills the screen without the browser's bars, and the phone's
        # own status bar stays (people check the time during a chat).
        "display": "standalone",
        "background_color": "#ffffff",
        "theme_color": THEME,
        "icons": _icons(version),
    }


def _version(request: Request) -> str:
    return request.app.state.templates.env.globals["asset_version"]


@router.get("/manifest.webmanifest")
async def site_manifest(request: Request) -> JSONResponse:
    body = manifest(
        "Hashroom", "Hashroom", "/", "Follow hashtag chats live, in one column.", _version(request)
    )
    return JSONResponse(body, media_type=MANIFEST_TYPE)


@router.get("/c/{slug}/manifest.webmanifest")
async def room_manifest(slug: str, request: Request, rooms: RoomsDep) -> JSONResponse:
    chat = await rooms.get_chat(slug)
    body = manifest(
        f"#{chat.hashtag} — {chat.title}"[:100],
        f"#{chat.hashtag}"[:30],
        f"/c/{chat.slug}",
        chat.description[:300] or f"The #{chat.hashtag} chat, live.",
        _version(request),
    )
    return JSONResponse(body, media_type=MANIFEST_TYPE)


@router.get("/sw.js")
async def service_worker() -> FileResponse:
    # Browsers check for a new worker on navigation; no-cache makes that check reach us.
    return FileResponse(
        STATIC_DIR / "sw.js",
        media_type="text/javascript",
        headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/"},
    )
