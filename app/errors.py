"""What can go wrong in a request, in the services' own words.

Services (rooms, moderation, votes, publishing, feeds, push…) raise a :class:`DomainError`
subclass named for what went wrong; they never speak HTTP. Each class carries the status the
API answers with, and one exception handler (:func:`install`, registered by the app factory)
turns any of them into the API's error body ``{"detail": …}`` — so routes need not catch and
translate. Websocket routes keep their own close codes and catch these themselves.
"""

from __future__ import annotations

from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


class DomainError(Exception):
    """A request that cannot be served as asked, with what the API answers.

    ``detail`` is the message, or — when ``code`` or extra fields are given — an object
    ``{"code", "message", …extra}`` (e.g. the publishing ``fallbacks``). ``headers`` go out
    with the answer (``Retry-After``)."""

    status: ClassVar[int] = 400

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.extra = extra

    @property
    def detail(self) -> str | dict[str, Any]:
        """The ``detail`` of the error body."""
        if self.code is None and not self.extra:
            return self.message
        out: dict[str, Any] = {}
        if self.code is not None:
            out["code"] = self.code
        out["message"] = self.message
        out.update(self.extra)
        return out


class NotFound(DomainError, LookupError):
    """No such chat, post, account or subscription (→ 404)."""

    status = 404


class Invalid(DomainError, ValueError):
    """The request is well-formed but not acceptable (→ 422 with this message)."""

    status = 422


class Unauthorized(DomainError):
    """Credentials are missing or were refused, here or by the network (→ 401)."""

    status = 401


class Forbidden(DomainError):
    """The caller may not do this, or the network refused it by its own rules (→ 403)."""

    status = 403


class Conflict(DomainError):
    """The change cannot be made in the current state (→ 409 with this message)."""

    status = 409


class RateLimited(DomainError):
    """Too many requests, here or upstream (→ 429, with ``Retry-After``)."""

    status = 429


class UpstreamFailed(DomainError):
    """The network failed or could not be reached; never carries its body (→ 502)."""

    status = 502


class Unavailable(DomainError):
    """The feature is not available on this server (→ 503)."""

    status = 503


async def _answer(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)


def install(app: FastAPI) -> None:
    """Register the one handler that answers every :class:`DomainError`."""
    app.add_exception_handler(DomainError, _answer)
