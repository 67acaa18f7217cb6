"""AT Protocol XRPC calls, sign-in sessions and the signed-in account's client.

Sign-in uses an *app password*: :func:`create_session` on the account's PDS returns an access
token (about 2 hours) and a refresh token (about 90 days). ``createSession`` is rate limited
(30 per 5 minutes, 300 per day per account), so :class:`AccountClient` keeps the session and
renews it with ``refreshSession`` when the access token expires, never by signing in again.

Errors map onto :mod:`app.networks.base`: refused credentials → :class:`AuthError`, a refused
request (400 ``InvalidRequest`` and other 4xx) → :class:`RemoteRejected` with the server's
message, 429 → :class:`NetworkError` with ``retry_after`` (from the ``ratelimit-reset`` header,
epoch seconds), 5xx, timeouts and connection failures → :class:`NetworkError`.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from app.networks.atproto_identity import IdentityError, fetch_did_document, pds_endpoint
from app.networks.base import AuthError, NetworkError, RemoteRejected
from app.outbound import describe_failure

log = logging.getLogger(__name__)

DEFAULT_SERVICE = "https://bsky.social"

# Error names the PDS uses (with HTTP 400 or 401) when the token, not the request, is at fault.
_TOKEN_ERRORS = frozenset(
    {
        "ExpiredToken",
        "InvalidToken",
        "AuthMissing",
        "AuthenticationRequired",
        "AccountTakedown",
        "AccountDeactivated",
        "AuthFactorTokenRequired",
    }
)
# Renew a little before the access token's ``exp`` so a request does not race the expiry.
REFRESH_MARGIN = 60.0


@dataclass(frozen=True, slots=True)
class BlueskySession:
    """A signed-in account: its tokens, identity and the PDS that serves it."""

    did: str
    handle: str
    access_jwt: str
    refresh_jwt: str
    service: str  # the account's PDS, e.g. https://morel.us-east.host.bsky.network

    def to_dict(self) -> dict[str, str]:
        """The session as the JSON the PDS returns (for storing, encrypted)."""
        return {
            "did": self.did,
            "handle": self.handle,
            "accessJwt": self.access_jwt,
            "refreshJwt": self.refresh_jwt,
            "service": self.service,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlueskySession:
        """Rebuild a session stored with :meth:`to_dict`. Raises ValueError if incomplete."""
        try:
            return cls(
                did=str(data["did"]),
                handle=str(data["handle"]),
                access_jwt=str(data["accessJwt"]),
                refresh_jwt=str(data["refreshJwt"]),
                service=str(data["service"]).rstrip("/"),
            )
        except KeyError as exc:
            raise ValueError(f"stored Bluesky session lacks {exc.args[0]}") from exc


_ERROR_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


def _error_name(response: httpx.Response) -> str:
    """The XRPC error name of a failed response ("ExpiredToken"), or "".

    Only a name shaped like one is taken: the free-text ``message`` and any other body are
    never shown or logged (whatever answered wrote them; see docs/security.md).
    """
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ""
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, str) and _ERROR_NAME_RE.match(error) else ""


def _failure(response: httpx.Response) -> str:
    """ "HTTP 400 (InvalidRequest)": the status and the error name, if any."""
    name = _error_name(response)
    return f"HTTP {response.status_code} ({name})" if name else f"HTTP {response.status_code}"


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds until the rate limit resets: ``ratelimit-reset`` is epoch seconds."""
    reset = response.headers.get("ratelimit-reset")
    if reset:
        try:
            return max(0.0, float(reset) - time.time())
        except ValueError:
            pass
    retry = response.headers.get("retry-after")
    if retry:
        try:
            return max(0.0, float(retry))
        except ValueError:
            return None
    return None


def is_expired_token(response: httpx.Response) -> bool:
    """True when the PDS says the access token expired (HTTP 400 or 401, ``ExpiredToken``)."""
    return response.status_code in (400, 401) and _error_name(response) == "ExpiredToken"


def raise_for_xrpc(response: httpx.Response, what: str) -> None:
    """Raise the :mod:`app.networks.base` error matching a failed XRPC response."""
    status = response.status_code
    if status < 400:
        return
    error = _error_name(response)
    detail = f"{what}: {_failure(response)}"
    if status == 429:
        raise NetworkError(f"{what}: rate limited", retry_after=_retry_after(response), status=429)
    if status >= 500:
        raise NetworkError(detail, status=status)
    if status in (401, 403) or error in _TOKEN_ERRORS:
        raise AuthError(detail, status=status)
    raise RemoteRejected(detail, status=status)


async def xrpc(
    http: httpx.AsyncClient,
    method: str,
    service: str,
    nsid: str,
    *,
    params: dict[str, Any] | None = None,
    body: dict[str, Any] | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Send one XRPC request; transport failures and timeouts become :class:`NetworkError`.

    ``headers`` are sent besides the token (e.g. ``atproto-proxy``). The response is returned
    whatever its status: callers decide (see :func:`raise_for_xrpc`).
    """
    headers = dict(headers or {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = f"{service.rstrip('/')}/xrpc/{nsid}"
    try:
        return await http.request(method, url, params=params, json=body, headers=headers)
    except httpx.TimeoutException as exc:
        raise NetworkError(f"{nsid}: timed out talking to {service}") from exc
    except httpx.HTTPError as exc:
        raise NetworkError(f"{nsid}: cannot reach {service}: {describe_failure(exc)}") from exc


def json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    """The JSON object of an XRPC answer; :class:`NetworkError` when it is not JSON or not an
    object (a server answering garbage is a failure to retry, not a refusal)."""
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NetworkError(f"{what}: the server sent invalid JSON") from exc
    if not isinstance(data, dict):
        raise NetworkError(f"{what}: the server sent {type(data).__name__}, not an object")
    return data


async def resolve_handle(http: httpx.AsyncClient, service: str, handle: str) -> str | None:
    """The DID ``handle`` points to, asked of ``service`` (``com.atproto.identity.resolveHandle``);
    None when the service says it does not resolve."""
    handle = handle.lstrip("@").strip().lower()
    response = await xrpc(
        http, "GET", service, "com.atproto.identity.resolveHandle", params={"handle": handle}
    )
    if response.status_code == 400:
        return None
    raise_for_xrpc(response, "resolveHandle")
    did = json_object(response, "resolveHandle").get("did")
    return did if isinstance(did, str) and did.startswith("did:") else None


async def resolve_pds(
    http: httpx.AsyncClient,
    identifier: str,
    *,
    service: str = DEFAULT_SERVICE,
    plc_url: str = "https://plc.directory",
) -> str:
    """The PDS URL serving ``identifier`` (a handle or a DID).

    A handle is resolved to a DID by ``service``; the DID document (PLC directory for
    ``did:plc``, ``/.well-known/did.json`` for ``did:web``) names the PDS. Raises
    :class:`AuthError` when the handle is unknown, :class:`NetworkError` when a lookup fails.
    """
    identifier = identifier.strip().lstrip("@")
    did = identifier if identifier.startswith("did:") else None
    if did is None:
        did = await resolve_handle(http, service, identifier)
        if did is None:
            raise AuthError(f"no Bluesky account is called {identifier!r}")
    try:
        document = await fetch_did_document(http, did, plc_url)
    except IdentityError as exc:
        raise NetworkError(f"cannot find the server of {identifier}: {exc}") from exc
    pds = pds_endpoint(document)
    if pds is None:
        raise NetworkError(f"{identifier} has no PDS in its DID document")
    return pds


def _session_from(data: dict[str, Any], service: str, what: str) -> BlueskySession:
    for key in ("did", "handle", "accessJwt", "refreshJwt"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise NetworkError(f"{what}: the server's answer lacks {key}")
    # An entryway (bsky.social) signs in for many PDSes: its answer names the real one.
    pds = pds_endpoint(data["didDoc"]) if isinstance(data.get("didDoc"), dict) else None
    return BlueskySession(
        did=data["did"],
        handle=data["handle"],
        access_jwt=data["accessJwt"],
        refresh_jwt=data["refreshJwt"],
        service=(pds or service).rstrip("/"),
    )


async def create_session(
    http: httpx.AsyncClient, service: str, identifier: str, app_password: str
) -> BlueskySession:
    """Sign in with an app password (``com.atproto.server.createSession``).

    Raises :class:`AuthError` for a wrong identifier or password, :class:`NetworkError` with
    ``retry_after`` when sign-ins are rate limited. Call it once per account and keep the
    session: it is limited to 30 per 5 minutes.
    """
    response = await xrpc(
        http,
        "POST",
        service,
        "com.atproto.server.createSession",
        body={"identifier": identifier.strip().lstrip("@"), "password": app_password},
    )
    raise_for_xrpc(response, "sign-in")
    return _session_from(json_object(response, "sign-in"), service, "sign-in")


async def refresh_session(http: httpx.AsyncClient, session: BlueskySession) -> BlueskySession:
    """New tokens for ``session`` (``com.atproto.server.refreshSession`` with the refresh token).

    Raises :class:`AuthError` when the refresh token is expired or revoked: sign in again.
    """
    response = await xrpc(
        http,
        "POST",
        session.service,
        "com.atproto.server.refreshSession",
        token=session.refresh_jwt,
    )
    if response.status_code in (400, 401):
        raise AuthError(f"Bluesky session ended ({_failure(response)}): sign in again", status=401)
    raise_for_xrpc(response, "refreshSession")
    data = json_object(response, "refreshSession")
    return _session_from(data, session.service, "refreshSession")


async def sign_in(
    http: httpx.AsyncClient,
    identifier: str,
    app_password: str,
    *,
    service: str = DEFAULT_SERVICE,
    plc_url: str = "https://plc.directory",
) -> BlueskySession:
    """Find the account's PDS (:func:`resolve_pds`) and sign in there (:func:`create_session`)."""
    pds = await resolve_pds(http, identifier, service=service, plc_url=plc_url)
    return await create_session(http, pds, identifier, app_password)


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim (epoch seconds) of a JWT, read without verifying it; None if absent."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


SessionListener = Callable[[BlueskySession], Awaitable[None] | None]


class AccountClient:
    """XRPC calls as one signed-in account, renewing its session as needed.

    The access token is renewed with ``refreshSession`` when less than ``refresh_margin``
    seconds of it are left (None: only on demand), and when the PDS answers ``ExpiredToken``
    (the request is then sent once more). Concurrent callers share one renewal.
    ``on_session`` is called with every new session so it can be stored.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        session: BlueskySession,
        *,
        on_session: SessionListener | None = None,
        refresh_margin: float | None = REFRESH_MARGIN,
    ):
        self.http = http
        self._session = session
        self._on_session = on_session
        self._refresh_margin = refresh_margin
        self._lock = asyncio.Lock()

    @property
    def session(self) -> BlueskySession:
        return self._session

    @property
    def did(self) -> str:
        return self._session.did

    @property
    def service(self) -> str:
        return self._session.service

    async def refresh(self, stale: BlueskySession | None = None) -> BlueskySession:
        """Renew the session, unless another caller already replaced ``stale``."""
        async with self._lock:
            if stale is not None and self._session is not stale:
                return self._session
            self._session = await refresh_session(self.http, self._session)
            log.info("renewed the Bluesky session of %s", self._session.handle)
            if self._on_session is not None:
                result = self._on_session(self._session)
                if inspect.isawaitable(result):
                    await result
            return self._session

    async def _current(self) -> BlueskySession:
        session = self._session
        if self._refresh_margin is None:
            return session
        exp = jwt_expiry(session.access_jwt)
        if exp is not None and exp - time.time() < self._refresh_margin:
            session = await self.refresh(session)
        return session

    async def call(
        self,
        method: str,
        nsid: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        service: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One XRPC call with the account's token; returns the JSON answer.

        ``service`` overrides where the call goes (default: the account's PDS, which proxies
        ``app.bsky.*`` queries to its AppView, or to the service an ``atproto-proxy`` entry
        of ``headers`` names). Raises as :func:`raise_for_xrpc` describes.
        """
        session = await self._current()
        target = service or session.service

        async def send(token: str) -> httpx.Response:
            return await xrpc(
                self.http,
                method,
                target,
                nsid,
                params=params,
                body=body,
                token=token,
                headers=headers,
            )

        response = await send(session.access_jwt)
        if is_expired_token(response):
            session = await self.refresh(session)
            response = await send(session.access_jwt)
        raise_for_xrpc(response, nsid)
        return json_object(response, nsid)

    async def get(
        self,
        nsid: str,
        params: dict[str, Any] | None = None,
        *,
        service: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """An XRPC query (GET) as this account."""
        return await self.call("GET", nsid, params=params, service=service, headers=headers)

    async def post(self, nsid: str, body: dict[str, Any]) -> dict[str, Any]:
        """An XRPC procedure (POST with a JSON body) as this account, on its PDS."""
        return await self.call("POST", nsid, body=body)

    async def resolve_handle(self, handle: str) -> str | None:
        """The DID of ``handle``, asked of the account's PDS; None if it does not resolve."""
        return await resolve_handle(self.http, self._session.service, handle)
