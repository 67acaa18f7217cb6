"""Sign in with X: OAuth 2.0 authorization code with PKCE, the tokens kept server-side.

``GET /auth/x/start?next=/c/slug`` remembers a fresh ``state`` and PKCE verifier in this
browser's session (sealed) and sends the browser to X's authorization page with the scopes
``tweet.read tweet.write users.read offline.access`` (``offline.access`` brings the refresh
token that keeps posting possible past the access token's 2 hours).

``GET /auth/x/callback`` accepts only a ``state`` this session started, trades the code (with
the verifier) for tokens, asks X whose they are, stores the account with the tokens sealed in
``Account.secret`` and lets this browser session post with it. Tokens never reach the page, a
cookie or a log line. Needs ``HASHROOM_X_CLIENT_ID`` (and the secret for a confidential app).
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..errors import RateLimited
from ..limits import SIGN_INS, enforce
from ..networks import x
from ..networks.base import AuthError, NetworkError
from ..publishing import Connected
from ..security import csrf_token
from .accounts import remember
from .auth_mastodon import forget_older, safe_next

router = APIRouter(prefix="/auth/x", include_in_schema=False)

SESSION_KEY = "x_oauth"
FLOW_TTL = 15 * 60  # a sign-in takes a minute or two; a leaked state is useless soon after
MAX_FLOWS = 4

_PROBLEM_PAGE = """{% extends "base.html" %}
{% block title %}Sign in with X · Hashroom{% endblock %}
{% block content %}
<section class="auth-problem" aria-labelledby="problem-heading">
  <h1 id="problem-heading">Sign in with X did not work</h1>
  <p class="form-error" role="alert">{{ message }}</p>
  <p><a class="button" href="{{ back }}">Back to the room</a></p>
</section>
{% endblock %}"""


def callback_url(request: Request) -> str:
    """The redirect URI to register with the X app (stable for a given public address)."""
    public = request.app.state.settings.public_url.rstrip("/")
    return f"{public or str(request.base_url).rstrip('/')}/auth/x/callback"


def _problem(request: Request, status: int, message: str, back: str = "/") -> HTMLResponse:
    template = request.app.state.templates.env.from_string(_PROBLEM_PAGE)
    page = template.render(message=message, back=back, csrf_token=csrf_token(request.session))
    return HTMLResponse(page, status_code=status)


def _flows(request: Request) -> dict[str, dict[str, Any]]:
    sealed = request.session.get(SESSION_KEY)
    if not sealed:
        return {}
    try:
        flows = request.app.state.vault.open(sealed)
    except ValueError:
        return {}
    now = time.time()
    return {
        k: v
        for k, v in flows.items()
        if isinstance(v, dict) and now - float(v.get("at", 0)) < FLOW_TTL
    }


def _save_flows(request: Request, flows: dict[str, dict[str, Any]]) -> None:
    if not flows:
        request.session.pop(SESSION_KEY, None)
        return
    newest = sorted(flows.items(), key=lambda item: item[1]["at"])[-MAX_FLOWS:]
    request.session[SESSION_KEY] = request.app.state.vault.seal(dict(newest))


@router.get("/start")
async def start(
    request: Request,
    next: str = Query("/", max_length=500),  # noqa: A002 - the conventional parameter name
) -> Response:
    """Send the browser to X to approve Hashroom."""
    settings = request.app.state.settings
    back = safe_next(next)
    try:
        await enforce(request, SIGN_INS)
    except RateLimited as exc:  # a sign-in page, not the API's JSON body
        page = _problem(request, exc.status, exc.message, back)
        page.headers.update(exc.headers)
        return page
    if not settings.x_client_id:
        return _problem(
            request,
            503,
            "Sign in with X is not set up on this server (the operator sets HASHROOM_X_CLIENT_ID).",
            back,
        )
    verifier, challenge = x.new_pkce()
    state = secrets.token_urlsafe(32)
    flows = _flows(request)
    flows[state] = {"verifier": verifier, "next": back, "at": time.time()}
    _save_flows(request, flows)
    url = x.authorize_url(
        settings.x_authorize_url,
        settings.x_client_id,
        callback_url(request),
        state=state,
        code_challenge=challenge,
    )
    return RedirectResponse(url, status_code=303)


@router.get("/callback")
async def callback(
    request: Request,
    code: str = Query("", max_length=2000),
    state: str = Query("", max_length=200),
    error: str = Query("", max_length=200),
) -> Response:
    """Finish the sign-in this session started; back to the room, signed in."""
    settings = request.app.state.settings
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
    back = flow["next"]
    if error:
        # X's own error text is not shown: only whether access was denied.
        denied = error == "access_denied"
        return _problem(
            request,
            403,
            "You did not authorize Hashroom on X." if denied else "X did not authorize Hashroom.",
            back,
        )
    if not code:
        return _problem(request, 400, "X sent no authorization code.", back)
    api = x.XApi(request.app.state.http, settings.x_api_url)
    try:
        tokens = await api.exchange_code(
            settings.x_client_id,
            settings.x_client_secret or None,
            code,
            callback_url(request),
            flow["verifier"],
        )
        author = await x.XApi(request.app.state.http, settings.x_api_url, tokens.access_token).me()
    except AuthError:
        return _problem(request, 400, "X refused the sign-in; start again from the room.", back)
    except NetworkError as exc:
        return _problem(request, 502, f"Could not reach X: {exc}", back)
    accounts = request.app.state.accounts
    account, _key = await accounts.add(
        x.NETWORK,
        Connected(
            handle=author.handle,
            instance=settings.x_api_url,
            remote_id=author.remote_id,
            secret=tokens.to_dict(),
        ),
    )
    await forget_older(request, account)
    remember(request, account)
    return RedirectResponse(back, status_code=303)
