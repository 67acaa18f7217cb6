"""Typed settings, read from the environment once and passed into the app factory.

Every field is documented in the README's configuration table; a test keeps the two in step.
Names are prefixed ``HASHROOM_`` except ``DATABASE_URL``, ``HOST`` and ``PORT``, which follow
the conventions of hosting platforms.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-only-insecure-secret-change-me"

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost", "[::1]"})


def is_loopback_host(host: str) -> bool:
    """True for an interface name or address on this machine only (127.0.0.0/8, ::1)."""
    host = host.strip().lower()
    return host in LOOPBACK_HOSTS or host.startswith("127.")


class Settings(BaseSettings):
    """All of Hashroom's configuration. Built once; tests build their own."""

    model_config = SettingsConfigDict(env_prefix="HASHROOM_", extra="ignore")

    env: Literal["development", "production"] = Field(
        "development", description="`production` refuses the built-in development secret."
    )
    database_url: str = Field(
        "sqlite:///./hashroom.db",
        validation_alias=AliasChoices("DATABASE_URL", "HASHROOM_DATABASE_URL"),
        description="SQLAlchemy URL. SQLite (WAL) by default; postgresql+psycopg://… works too.",
    )
    host: str = Field(
        "127.0.0.1",
        validation_alias=AliasChoices("HOST", "HASHROOM_HOST"),
        description="Interface `make run` / `python -m app` listens on.",
    )
    port: int = Field(
        8000,
        validation_alias=AliasChoices("PORT", "HASHROOM_PORT"),
        description="TCP port `make run` / `python -m app` listens on.",
    )
    secret_key: str = Field(
        DEV_SECRET,
        description="Signs cookies and encrypts stored network tokens. Required in production.",
    )
    public_url: str = Field(
        "",
        description="External base URL (e.g. https://chat.example.org). Used for OAuth "
        "redirects and as an allowed websocket Origin; empty means the request's own host.",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Extra Origins allowed to open websockets and send cookie-authenticated "
        "requests (JSON list).",
    )
    log_level: str = Field("INFO", description="Python logging level.")

    demo_enabled: bool = Field(
        True,
        description="Create and replay the bundled `demo` chat (off in production unless set).",
    )
    demo_speed: float = Field(
        3.0, gt=0, description="Demo replay speed in posts per second (it loops forever)."
    )

    ws_client_buffer: int = Field(
        512,
        ge=8,
        description="Frames buffered for one slow websocket client before it is dropped "
        "(it reconnects and resumes from its offset).",
    )
    ws_replay_limit: int = Field(
        2000,
        ge=1,
        description="A client further behind than this many events gets a fresh snapshot "
        "instead of a replay.",
    )
    ws_recent_frames: int = Field(
        600,
        ge=0,
        le=100_000,
        description="Latest frames kept in memory for each chat that has viewers: a client "
        "resuming within them, or opening the room, is served without reading the database.",
    )
    snapshot_posts: int = Field(
        60, ge=1, le=500, description="Posts in a snapshot and on the first page render."
    )
    ws_ping_interval: float = Field(
        20.0, gt=0, description="Seconds between keep-alive pings on live websockets."
    )

    ingest_batch_size: int = Field(
        100, ge=1, description="Most posts an ingester commits in one transaction."
    )
    ingest_batch_window: float = Field(
        0.05, ge=0, description="Seconds an ingester waits to fill a batch before committing."
    )
    backoff_base: float = Field(1.0, gt=0, description="First retry delay (s) after a failure.")
    backoff_cap: float = Field(60.0, gt=0, description="Longest retry delay (s).")

    native_max_graphemes: int = Field(
        500, ge=1, description="Length limit of a post in a native room, in graphemes."
    )
    max_request_text: int = Field(
        5000, ge=1, description="Hard cap on any text field accepted by the API, in characters."
    )

    schedule_lead_minutes: float = Field(
        10.0,
        ge=0,
        description="Minutes before a scheduled session that the chat's network followers "
        "start (chats without a schedule are followed all the time).",
    )
    schedule_tail_minutes: float = Field(
        30.0,
        ge=0,
        description="Minutes after a scheduled session ends that its followers keep running "
        "for late answers; a session's transcript covers them too.",
    )

    mastodon_backfill: int = Field(
        80, ge=0, description="Recent Mastodon posts fetched when a chat starts following a tag."
    )
    mastodon_poll_interval: float = Field(
        15.0, gt=0, description="Seconds between REST polls while Mastodon streaming is down."
    )
    mastodon_context_interval: float = Field(
        60.0,
        gt=0,
        description="Seconds between fetches of recent Mastodon questions' threads, for "
        "replies that leave out the hashtag.",
    )
    bluesky_jetstream_url: str = Field(
        "wss://jetstream2.us-east.bsky.network/subscribe",
        description="Default Jetstream subscribe endpoint for Bluesky sources.",
    )
    bluesky_plc_url: str = Field(
        "https://plc.directory", description="PLC directory used to resolve did:plc identities."
    )
    bluesky_appview_url: str = Field(
        "https://public.api.bsky.app",
        description="Public AppView used for profiles, and for reply threads of sources without "
        "a Bluesky account (empty disables both).",
    )
    bluesky_appview_proxy: str = Field(
        "did:web:api.bsky.app#bsky_appview",
        description="`atproto-proxy` header (service DID#id) naming the AppView a source's "
        "account's server forwards reply-thread requests to (empty: the server's default).",
    )
    bluesky_context_interval: float = Field(
        60.0,
        gt=0,
        description="Seconds between fetches of recent Bluesky questions' threads, for replies "
        "that leave out the hashtag.",
    )
    bluesky_backfill: int = Field(
        100, ge=0, description="Recent Bluesky posts fetched by search when a chat starts."
    )
    http_timeout: float = Field(15.0, gt=0, description="Timeout (s) for outgoing HTTP calls.")

    # --- outbound requests and operator access (docs/security.md) ---
    outbound_allow_hosts: list[str] = Field(
        default_factory=list,
        description="Host names (JSON list) the server may reach even though they resolve to "
        "a private or loopback address, e.g. a LAN instance. Development mode reaches any.",
    )
    outbound_max_response_bytes: int = Field(
        5 * 1024 * 1024,
        ge=1024,
        description="Largest response body (bytes, after decompression) read from another "
        "server; a longer one fails with an error saying so.",
    )
    outbound_max_frame_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        description="Largest websocket message (bytes) accepted from a streaming server or "
        "relay; a longer one closes that connection (it reconnects).",
    )
    operator_token: str = Field(
        "",
        description="Bearer token that shows per-source detail (errors, cursors) on "
        "`/healthz`; empty: nobody sees it there (moderators see their chat's).",
    )

    # --- X (formerly Twitter) ---
    x_api_url: str = Field(
        "https://api.x.com",
        description="X API v2 base URL used when a source gives no `api_url` (a compatible "
        "proxy, or a test server).",
    )
    x_authorize_url: str = Field(
        "https://x.com/i/oauth2/authorize",
        description="X's OAuth 2.0 authorization page for Sign in with X.",
    )
    x_client_id: str = Field(
        "",
        description="OAuth 2.0 client id of your X app; empty hides Sign in with X.",
    )
    x_client_secret: str = Field(
        "",
        description="OAuth 2.0 client secret of your X app (empty for a public client).",
    )
    x_backfill: int = Field(
        100, ge=0, description="Recent X posts read by search when a chat starts following."
    )
    x_poll_interval: float = Field(
        30.0,
        gt=0,
        description="Seconds between recent searches when the filtered stream is not used.",
    )
    x_stream: bool = Field(
        True, description="Use X's filtered stream when the credentials allow it."
    )
    x_budget_per_hour: int = Field(
        500, ge=0, description="Most X posts one source reads per clock hour (then it pauses)."
    )
    x_budget_per_session: int = Field(
        2000,
        ge=0,
        description="Most X posts one source reads per scheduled session, or per UTC day "
        "for chats without a schedule (then it pauses).",
    )
    x_cost_per_read: float = Field(
        0.005, ge=0, description="Estimated USD cost of one X post read, for the spend shown."
    )
    x_compliance_interval: float = Field(
        600.0,
        gt=0,
        description="Seconds between checks that the room's latest X posts still exist "
        "(deleted ones are removed).",
    )

    # --- Test hooks: inert at their defaults; tests use them to force a timing window. ---
    test_live_hold_after_history: float = Field(
        0.0,
        ge=0,
        description="Test hook (keep 0): seconds a connecting live client, its history sent, "
        "waits for another event to be committed before going live.",
    )

    # --- Hardening: post size limits, allowed hosts, HSTS --------------------------------
    max_post_text: int = Field(
        10000,
        ge=500,
        description="Longest text of a post from a network that is kept, in characters; "
        "longer text is cut and the post records it in `extra.cut`.",
    )
    max_post_html: int = Field(
        50000,
        ge=1000,
        description="Longest HTML of a post from a network that is sanitized and kept, in "
        "characters; longer markup is cut first and the post records it in `extra.cut`.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names served in production besides the host of "
        "`HASHROOM_PUBLIC_URL` and loopback (JSON list, `*.example.org` for subdomains); "
        "other `Host` headers get `400`.",
    )
    hsts_seconds: int = Field(
        31536000,
        ge=0,
        description="`Strict-Transport-Security` max-age sent in production (0 sends none).",
    )

    # Reach: notifications, calendar alarms, the installable app, the Bluesky feed generator.
    calendar_alarm_minutes: float = Field(
        10.0,
        ge=0,
        le=10080,
        description="Minutes before each session that calendar feeds ring an alarm (0: none).",
    )
    push_start_minutes: float = Field(
        10.0,
        gt=0,
        le=1440,
        description='Minutes before a session that its "starts soon" push notification is sent.',
    )
    push_contact: str = Field(
        "",
        pattern=r"^$|^(mailto:[^\s@]+@[^\s@]+|https://\S+)$",
        description="Contact (mailto: or https:) given to push services in the VAPID token; "
        "empty: HASHROOM_PUBLIC_URL when it is https.",
    )
    push_queue_size: int = Field(
        1000,
        ge=10,
        description="Push notices and messages waiting to be sent before new ones are dropped.",
    )
    push_max_tries: int = Field(
        5, ge=1, le=20, description="Attempts at delivering one push message before giving up."
    )

    # --- Quotas and limits (docs/security.md) ---
    max_body_bytes: int = Field(
        256 * 1024,
        ge=0,
        description="Largest request body accepted, in bytes; bigger ones get 413 (0: no cap).",
    )
    rate_chats_per_hour: int = Field(
        10, ge=0, description="Chats one client address may create per hour (0: no limit)."
    )
    rate_votes_per_minute: int = Field(
        60,
        ge=0,
        description="Question votes and un-votes one client address may make per minute, all "
        "rooms together (0: no limit). People behind one NAT share it.",
    )
    rate_posts_per_minute: int = Field(
        30,
        ge=0,
        description="Posts one client address may make per minute, all rooms together "
        "(0: no limit). People behind one NAT share it.",
    )
    rate_accounts_per_hour: int = Field(
        20,
        ge=0,
        description="Network account connections one client address may make per hour "
        "(0: no limit).",
    )
    rate_sign_ins_per_hour: int = Field(
        20,
        ge=0,
        description="Sign-ins (Mastodon and X OAuth starts) one client address may begin per "
        "hour (0: no limit).",
    )
    ws_per_client: int = Field(
        50,
        ge=0,
        description="Open live websockets allowed per client address, per process (0: no cap).",
    )
    max_sources_per_chat: int = Field(
        10, ge=1, le=50, description="Most network sources one chat may follow."
    )
    # Mastodon answers at most 4 tags per tag-timeline request; more are read in several.
    max_hashtags_per_chat: int = Field(
        5,
        ge=1,
        le=10,
        description="Most hashtags one chat may follow (the first is the reply tag).",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Reverse proxies (IP addresses or networks, JSON list) whose "
        "X-Forwarded-For / X-Forwarded-Proto are believed; nobody else's are.",
    )

    @field_validator("bluesky_appview_proxy")
    @classmethod
    def _proxy_names_a_service(cls, value: str) -> str:
        value = value.strip()
        did, _, service = value.partition("#")
        if value and (not did.startswith("did:") or not service or "#" in service or " " in value):
            raise ValueError("give a service DID and id, e.g. did:web:api.bsky.app#bsky_appview")
        return value

    # --- Several web processes (docs/scale-out.md) ---
    redis_url: str = Field(
        "",
        description="Redis URL (redis://host:6379/0). Set it when several web processes share "
        "one PostgreSQL database: posts reach clients of every process, rate limits are "
        "shared, and each source is followed by one process at a time. Empty: one process.",
    )
    redis_poll_interval: float = Field(
        1.0,
        gt=0,
        le=60,
        description="While Redis is unreachable, how often (s) each process reads the event "
        "log of chats it has viewers of (it returns to Redis by itself).",
    )
    redis_sweep_interval: float = Field(
        5.0,
        gt=0,
        le=300,
        description="While Redis is reachable, how often (s) each process checks its viewed "
        "chats' event logs for a message Redis never delivered (a safety net; cheap).",
    )
    process_id: str = Field(
        "",
        description="This process's name in leases and on /healthz (default hostname:pid).",
    )
    leases: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Follow each source (and send session reminders) only while holding its "
        "lease in the database, so one process of a cluster does it. `auto`: on when "
        "HASHROOM_REDIS_URL is set; off (this process always holds) otherwise.",
    )
    lease_ttl: float = Field(
        10.0,
        gt=0,
        description="How long (s) a lease lasts without a heartbeat; another process takes "
        "over a dead holder's sources within about this plus one heartbeat.",
    )
    lease_heartbeat: float = Field(
        3.0,
        gt=0,
        description="How often (s) a process renews its leases and tries free ones (under half "
        "of HASHROOM_LEASE_TTL).",
    )

    @property
    def uses_leases(self) -> bool:
        return self.leases == "on" or (self.leases == "auto" and bool(self.redis_url))

    @property
    def process_name(self) -> str:
        import os
        import socket

        return self.process_id or f"{socket.gethostname()}:{os.getpid()}"

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: list[str]) -> list[str]:
        from .limits import check_proxies

        return check_proxies(value)

    @model_validator(mode="after")
    def _refuse_dev_secret_in_production(self) -> Settings:
        if self.env == "production" and (
            self.secret_key == DEV_SECRET or len(self.secret_key) < 32
        ):
            raise ValueError(
                "HASHROOM_SECRET_KEY must be set to a random string of 32+ characters in "
                "production (python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        if self.uses_dev_secret and not is_loopback_host(self.host):
            # Anyone who knows the built-in secret (it is in the source) can forge a session
            # cookie: moderate every chat, post as every connected account.
            raise ValueError(
                f"HOST={self.host} would serve the network with the built-in development "
                "secret: set HASHROOM_SECRET_KEY to a random string (and HASHROOM_ENV="
                "production), or serve 127.0.0.1"
            )
        if self.lease_heartbeat >= self.lease_ttl / 2:
            raise ValueError(
                "HASHROOM_LEASE_HEARTBEAT must be under half of HASHROOM_LEASE_TTL, or a lease "
                "can expire between two heartbeats of a live holder"
            )
        if self.env == "production" and "demo_enabled" not in self.model_fields_set:
            self.demo_enabled = False  # the demo is opt-in in production
        return self

    @property
    def uses_dev_secret(self) -> bool:
        return self.secret_key == DEV_SECRET

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
