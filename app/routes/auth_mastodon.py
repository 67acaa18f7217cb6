"""Sign in with Mastodon: OAuth authorization code with PKCE, the token kept server-side.

``GET /auth/mastodon/start?instance=…&next=/c/slug`` registers Hashroom on the instance once
(cached per instance and redirect URI in :class:`~app.models.OAuthApp`, the client secret
sealed), remembers a fresh ``state`` and PKCE verifier in this browser's session (sealed too)
and sends the browser to the instance's ``/oauth/authorize``.

``GET /auth/mastodon/callback`` accepts only the ``state`` this session started, trades the
code (with the verifier) for a token, checks whose it is, stores the account with the token
sealed in ``Account.secret`` and lets this browser session post with it. The token never
reaches the page, a cookie or a log line. Then back to ``next`` — a path on this site only.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from ..errors import RateLimited
from ..grants import forget_account
from ..limits import SIGN_INS, enforce
from ..models import Account, OAuthApp
from ..networks.base import AuthError, NetworkError
from ..networks.mastodon.client import MastodonApi
from ..networks.mastodon.oauth import DEFAULT_SCOPES, AppCredentials, new_pkce
from ..networks.mastodon.responses import error_name
from ..publishing import Connected
from ..security import csrf_token
from ..sources.mastodon import NETWORK, normalize_instance
from .accounts import remember, session_accounts

log = logging.getLogger(__name__)

router = APIRouter(prefix="/auth/mastodon", include_in_schema=False)

APP_NAME = "Hashroom"
SESSION_KEY = "mastodon_oauth"
# A sign-in takes a user a minute or two at their instance; a quarter of an hour is generous
# and keeps a leaked state useless soon after.
FLOW_TTL = 15 * 60
# Sign-ins started in other tabs stay valid, up to a few.
MAX_FLOWS = 4

_registering: dict[str, asyncio.Lock] = {}

_PROBLEM_PAGE = """{% extends "base.html" %}
{% block title %}Sign in with Mastodon · Hashroom{% endblock %}
{% block content %}
<section class="auth-problem" aria-labelledby="problem-heading">
  <h1 id="problem-heading">Sign in with Mastodon did not work</h1>
  <p class="form-error" role="alert">{{ message }}</p>
  <p><a class="button" href="{{ back }}">Back to the room</a></p>
</section>
{% endblock %}"""


def safe_next(value: str | None) -> str:
    """``value`` when it is a path on this site ("/c/slug"), else "/": never another host."""
    if (
        not value
        or not value.startswith("/")
        or value.startswith(("//", "/\\"))
        or any(c in value for c in "\\\r\n\t")
        or len(value) > 500
    ):
        return "/"
    return value


def _base_url(request: Request) -> str:
    public = request.app.state.settings.public_url.rstrip("/")
    return public or str(request.base_url).rstrip("/")


def callback_url(request: Request) -> str:
    """The redirect URI registered with instances (stable for a given public address)."""
    return f"{_base_url(request)}/auth/mastodon/callback"


def _problem(request: Request, status: int, message: str, back: str = "/") -> HTMLResponse:
    template = request.app.state.templates.env.from_string(_PROBLEM_PAGE)
    page = template.render(message=message, back=back, csrf_token=csrf_token(request.session))
    return HTMLResponse(page, status_code=status)


def _flows(request: Request) -> dict[str, dict[str, Any]]:
    """Sign-ins this session started and has not finished (expired ones dropped)."""
    sealed = request.session.get(SESSION_KEY)
    if not sealed:
        return {}
    try:
        flows = request.app.state.vault.open(sealed)
    except ValueError:
        return {}
    now = time.time()
    return {
        state: flow
        for state, flow in flows.items()
        if isinstance(flow, dict) and now - float(flow.get("at", 0)) < FLOW_TTL
    }


def _save_flows(request: Request, flows: dict[str, dict[str, Any]]) -> None:
    if not flows:
        request.session.pop(SESSION_KEY, None)
        return
    newest = sorted(flows.items(), key=lambda item: item[1]["at"])[-MAX_FLOWS:]
    request.session[SESSION_KEY] = request.app.state.vault.seal(dict(newest))


async def registered_app(request: Request, instance: str, redirect_uri: str) -> AppCredentials:
    """Hashroom's app on ``instance``: from the cache, else registered now (once per process
    even when several sign-ins start at the same moment)."""
    state = request.app.state
    rooms, vault = state.rooms, state.vault

    def load(session: Session) -> OAuthApp | None:
        return (
            session.execute(
                select(OAuthApp).where(
                    OAuthApp.instance == instance,  # type: ignore[arg-type]
                    OAuthApp.redirect_uri == redirect_uri,  # type: ignore[arg-type]
                )
            )
            .scalars()
            .first()
        )

    lock = _registering.setdefault(f"{instance} {redirect_uri}", asyncio.Lock())
    async with lock:
        row = await rooms.read(load)
        if row is not None:
            try:
                secret = vault.open(row.client_secret)["client_secret"]
                return AppCredentials(row.client_id, secret, APP_NAME, redirect_uri, DEFAULT_SCOPES)
            except (ValueError, KeyError):
                log.warning("mastodon %s: cached app unreadable; registering again", instance)
        creds = await MastodonApi(state.http, instance).register_app(
            APP_NAME, redirect_uri, DEFAULT_SCOPES, website=_base_url(request)
        )
        sealed = vault.seal({"client_secret": creds.client_secret})

        def save(session: Session) -> tuple[None, list[Any]]:
            existing = load(session)
            if existing is None:
                existing = OAuthApp(instance=instance, redirect_uri=redirect_uri, client_id="")
            existing.client_id = creds.client_id
            existing.client_secret = sealed
            session.add(existing)
            return None, []

        try:
            await rooms.write(save)
        except IntegrityError:
            # Another process registered at the same moment; its registration works too.
            log.info("mastodon %s: app registered concurrently", instance)
        return creds


@router.get("/start")
async def start(
    request: Request,
    instance: str = Query("", max_length=300),
    next: str = Query("/", max_length=500),  # noqa: A002 - the conventional parameter name
) -> Response:
    """Send the browser to the user's instance to approve Hashroom."""
    back = safe_next(next)
    try:
        await enforce(request, SIGN_INS)  # each start may register an app on an instance
    except RateLimited as exc:  # a sign-in page, not the API's JSON body
        page = _problem(request, exc.status, exc.message, back)
        page.headers.update(exc.headers)
        return page
    try:
        base = normalize_instance(instance, policy=request.app.state.outbound)
    except ValueError as exc:
        return _problem(request, 400, str(exc).removeprefix("instance: "), back)
    redirect_uri = callback_url(request)
    try:
        app = await registered_app(request, base, redirect_uri)
    except NetworkError as exc:
        log.warning("mastodon %s: app registration failed: %s", base, exc)
        return _problem(
            request,
            502,
            f"Could not register Hashroom with {base}: {exc}. Check the address.",
            back,
        )
    verifier, challenge = new_pkce()
    state = secrets.token_urlsafe(32)
    flows = _flows(request)
    flows[state] = {"instance": base, "verifier": verifier, "next": back, "at": time.time()}
    _save_flows(request, flows)
    url = MastodonApi(request.app.state.http, base).authorize_url(
        app.client_id, redirect_uri, state=state, code_challenge=challenge
    )
    return RedirectResponse(url, status_code=303)


@router.get("/callback")
async def callback(
    request: Request,
    code: str = Query("", max_length=1000),
    state: str = Query("", max_length=200),
    error: str = Query("", max_length=200),
) -> Response:
    """Finish the sign-in this session started; back to the room, signed in."""
    flows = _flows(request)
    flow = None
    for key in list(flows):
        if state and hmac.compare_digest(key, state):
            flow = flows.pop(key)
    _save_flows(request, flows)
    if flow is None:
        return _problem(
            request,
            400,
            "This sign-in was not started in this browser, or it took too long. "
            "Start again from the room.",
        )
    back, instance = flow["next"], flow["instance"]
    if error:
        # The error name only ("access_denied"): the description is the instance's free text.
        reason = error_name(error) or "no reason given"
        return _problem(request, 403, f"{instance} did not authorize Hashroom ({reason}).", back)
    if not code:
        return _problem(request, 400, f"{instance} sent no authorization code.", back)
    redirect_uri = callback_url(request)
    http = request.app.state.http
    try:
        app = await registered_app(request, instance, redirect_uri)
        token = await MastodonApi(http, instance).exchange_code(
            app.client_id, app.client_secret, code, redirect_uri, flow["verifier"]
        )
    except AuthError as exc:
        return _problem(request, 400, f"{instance} refused the sign-in: {exc}", back)
    except NetworkError as exc:
        return _problem(request, 502, f"Could not reach {instance}: {exc}", back)
    user_api = MastodonApi(http, instance, token.access_token)
    try:
        author = await user_api.verify_credentials()
    except NetworkError as exc:
        return _problem(request, 502, f"{instance} did not say who you are: {exc}", back)
    accounts = request.app.state.accounts
    account, _key = await accounts.add(
        NETWORK,
        Connected(
            handle=author.handle,
            instance=instance,
            remote_id=author.remote_id,
            secret={
                "access_token": token.access_token,
                "client_id": app.client_id,
                "client_secret": app.client_secret,
            },
        ),
    )
    await forget_older(request, account)
    remember(request, account)
    return RedirectResponse(back, status_code=303)


async def forget_older(request: Request, account: Account) -> None:
    """Signing in again as the same person replaces this session's older copy (whose token
    is revoked), so "Post as" lists each account once."""
    accounts = request.app.state.accounts
    for older in await session_accounts(request):
        same = (older.network, older.instance, older.handle) == (
            account.network,
            account.instance,
            account.handle,
        )
        if same and older.id != account.id:
            await accounts.disconnect(older)
            forget_account(request.session, older.id)  # type: ignore[arg-type]
