"""``create_app(settings)``: wires the services, routes and middleware. No logic lives here."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .catchup import CatchUp
from .config import Settings, get_settings
from .db import make_engine
from .errors import Invalid
from .errors import install as install_errors
from .feeds import Feeds
from .guard import RequestGuard
from .hub import Fanout, Hub, LocalFanout
from .ingest import FollowerFactory, IngestManager
from .leases import Leases
from .limits import BodyLimit, ConnectionSlots, make_rate_limiter
from .models import Chat, Source
from .moderation import Moderation
from .outbound import OutboundPolicy, make_http_client, make_ws_connect
from .policy import forget as forget_policy
from .present import Presenter
from .publishing import Accounts, Publisher
from .push import Push
from .rooms import DEMO_SLUG, Rooms, chat_hashtags
from .routes import accounts, api, auth_mastodon, auth_x, health, live, pages, transcripts, wall
from .routes import calendar as calendar_routes
from .routes import feed as feed_routes
from .routes import install as install_routes
from .routes import moderation as moderation_routes
from .routes import push as push_routes
from .routes import votes as votes_routes
from .scheduler import Scheduler, upcoming_for_page
from .security import Vault
from .sources import install_all
from .tasks import Supervisor
from .templating import STATIC_DIR, make_templates

log = logging.getLogger("hashroom")

SESSION_COOKIE = "hashroom"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
    "media-src 'self' https:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class SecurityHeaders:
    """Adds CSP and friends to every HTTP response (plain ASGI: no per-request task), and
    ``Strict-Transport-Security`` when ``hsts_seconds`` is set (production)."""

    def __init__(self, app: ASGIApp, hsts_seconds: int = 0) -> None:
        self.app = app
        self.extra: list[tuple[bytes, bytes]] = [
            (b"content-security-policy", CSP.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
            (b"x-frame-options", b"DENY"),
        ]
        if hsts_seconds:
            self.extra.append((b"strict-transport-security", f"max-age={hsts_seconds}".encode()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


@lru_cache(maxsize=1)
def _transcript() -> Any:
    from .networks.demo import load_transcript

    return load_transcript()


def follower_factories(settings: Settings, http: httpx.AsyncClient) -> dict[str, FollowerFactory]:
    """Which networks this process can follow, and how to build a follower for a source."""
    factories: dict[str, FollowerFactory] = {}
    if settings.demo_enabled:
        from .networks.demo import DemoFollower

        def demo(source: Source, chat: Chat) -> Any:
            return DemoFollower(_transcript(), chat_hashtags(chat), settings.demo_speed)

        factories["demo"] = demo
    return factories


async def _validate_schedule(raw: dict[str, Any]) -> dict[str, Any]:
    from .schedule import Schedule

    try:
        schedule = Schedule.from_api(raw)
    except ValueError as exc:
        raise Invalid(str(exc) if str(exc).startswith("schedule") else f"schedule.{exc}") from exc
    return schedule.to_api()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application for ``settings`` (default: from the environment)."""
    settings = settings or get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Everything the server fetches goes through this client or app.state.ws_connect
        # (app/outbound.py): checked destinations, pinned addresses, capped sizes.
        http = make_http_client(
            app.state.outbound,
            timeout=settings.http_timeout,
            user_agent="Hashroom/0.1 (+https://github.com/hashroom)",
        )
        engine = make_engine(settings.database_url)
        hub = Hub(recent_limit=settings.ws_recent_frames)
        templates = app.state.templates
        supervisor = Supervisor()
        fanout: Fanout = LocalFanout(hub)
        redis_fanout = None
        if settings.redis_url:
            from .fanout_redis import RedisFanout

            fanout = redis_fanout = RedisFanout(
                settings.redis_url, hub, engine, settings, supervisor
            )

            def config_changed_elsewhere(chat_id: int) -> None:
                forget_policy(chat_id)
                hub.forget_snapshots({chat_id})

            redis_fanout.on_config = config_changed_elsewhere
            redis_fanout.start()
        rooms = Rooms(engine, hub, settings, Presenter(templates.env), fanout)
        app.state.catchup = CatchUp(rooms, hub)
        leases = Leases(engine, settings, supervisor)
        leases.start()
        app.state.leases = leases
        ingest = IngestManager(
            rooms, supervisor, settings, follower_factories(settings, http), leases
        )
        app.state.engine = engine
        app.state.hub = hub
        app.state.fanout = fanout
        app.state.rooms = rooms
        app.state.supervisor = supervisor
        app.state.ingest = ingest
        app.state.scheduler = scheduler = Scheduler(rooms, ingest, settings)

        async def hashtags_changed(chat: Chat) -> None:
            await ingest.restart_chat(chat)
            if redis_fanout is not None:  # the lease holder may be another process
                await redis_fanout.sources_changed(chat.id)  # type: ignore[arg-type]

        async def restart_followers(chat_id: int) -> None:
            chat = await rooms.read(lambda session: session.get(Chat, chat_id))
            if chat is not None:
                await ingest.restart_chat(chat)

        def sources_changed_elsewhere(chat_id: int) -> None:
            name = f"restart-chat-{chat_id}"
            if name not in supervisor.running():  # one in flight reads the newest row
                supervisor.start(name, restart_followers(chat_id))

        if redis_fanout is not None:
            redis_fanout.on_sources = sources_changed_elsewhere
        app.state.moderation = Moderation(
            rooms, on_schedule_change=scheduler.wake, on_hashtags_change=hashtags_changed
        )
        app.state.http = http
        app.state.accounts = Accounts(rooms, app.state.vault, app.state.publishers)
        app.state.feeds = Feeds(rooms, settings)
        app.state.push = push = Push(
            rooms, app.state.vault, http, settings, supervisor, app.state.outbound
        )
        push.leases = leases
        await push.start()
        for hook in app.state.startup_hooks:
            await hook(app)
        if settings.demo_enabled:
            await rooms.ensure_demo()
            base = settings.public_url.rstrip("/") or f"http://{settings.host}:{settings.port}"
            # The key is never logged (logs travel further than the operator's terminal).
            log.info(
                "demo chat live at %s/c/%s — print its moderator link with "
                "`python -m app demo-link`",
                base,
                DEMO_SLUG,
            )
        started = await ingest.start_all()
        log.info("started %d ingester(s)", started)
        # Scheduled chats are followed around their sessions only (app/scheduler.py).
        supervisor.start("scheduler", scheduler.run())
        supervisor.start("keep-alive", hub.keep_alive(settings.ws_ping_interval))
        try:
            yield
        finally:
            push.stop_timers()
            await supervisor.shutdown()
            if settings.redis_url:
                await redis_fanout.close()
            await http.aclose()
            engine.dispose()

    app = FastAPI(
        title="Hashroom",
        summary="Follow a hashtag chat live: one room, one column, replies that carry the tag.",
        version="0.1.0",
        lifespan=lifespan,
        # FastAPI's own /docs pages load Swagger UI from a CDN with an inline script; Hashroom
        # serves a vendored copy (works offline, keeps the no-inline-script CSP).
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.templates = make_templates(reload=settings.env == "development")
    app.state.templates.env.globals["upcoming_sessions"] = upcoming_for_page
    app.state.templates.env.globals["max_hashtags"] = settings.max_hashtags_per_chat
    app.state.session_cookie = SESSION_COOKIE
    app.state.source_builders = {}
    app.state.vault = Vault(settings.secret_key)
    app.state.publishers: dict[str, Publisher] = {}
    app.state.accounts = None
    app.state.publish_via_account = accounts.publish_via_account
    app.state.validate_schedule = _validate_schedule
    app.state.outbound = OutboundPolicy.from_settings(settings)
    app.state.ws_connect = make_ws_connect(app.state.outbound)
    app.state.startup_hooks = []
    app.state.rate_limiter = make_rate_limiter(settings)
    app.state.ws_slots = ConnectionSlots()

    install_all(app, settings)
    # Sign-in routes of the networks that have them (their sources check what they accept).
    app.include_router(auth_mastodon.router)
    app.include_router(auth_x.router)

    install_errors(app)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
        return JSONResponse(
            {
                "detail": "; ".join(parts) or "invalid request",
                "errors": [
                    {"loc": list(e.get("loc", ())), "msg": str(e.get("msg")), "type": e.get("type")}
                    for e in exc.errors()
                ],
            },
            status_code=422,
        )

    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key,
        session_cookie=SESSION_COOKIE,
        same_site="lax",
        https_only=settings.env == "production",
        max_age=60 * 60 * 24 * 365,
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        SecurityHeaders, hsts_seconds=settings.hsts_seconds if settings.env == "production" else 0
    )
    # Live websockets go straight to their handler from here (it must see the server's own
    # send); everything else continues into the framework.
    app.add_middleware(live.LiveRoute, root=app)
    # Unknown Host headers and off-loopback requests with the built-in secret are refused
    # before anything else runs (it passes ``send`` through untouched).
    app.add_middleware(RequestGuard, settings=settings)
    if settings.trusted_proxies:
        # Outermost: rewrites scope["client"] (and scheme) from X-Forwarded-* for these peers
        # only, so the guard and the quotas see the real client; send passes through untouched.
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)

    @app.get("/docs", include_in_schema=False)
    async def api_docs(request: Request) -> Any:
        return app.state.templates.TemplateResponse(request, "api_docs.html", {})

    app.include_router(health.router)
    app.include_router(api.router)
    app.include_router(accounts.router)
    app.include_router(push_routes.router)
    app.include_router(feed_routes.router)
    app.include_router(install_routes.router)
    app.include_router(moderation_routes.router)
    app.include_router(transcripts.router)
    app.include_router(votes_routes.router)
    app.include_router(calendar_routes.router)
    app.include_router(wall.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory app.main:app_factory``."""
    return create_app(get_settings())
