"""The API's error body, declared once so the OpenAPI document shows what clients get."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    """Every error answer of the API: what went wrong and what to change."""

    detail: str = Field(
        examples=["after: Input should be less than or equal to 9223372036854775807"]
    )


class FieldError(BaseModel):
    """One invalid field: where it is (``["query", "after"]``) and what is wrong with it."""

    loc: list[str | int]
    msg: str
    type: str | None = None


class ValidationErrorOut(ErrorOut):
    """A 422: ``detail`` sums it up; ``errors`` lists each field when the schema caught it."""

    errors: list[FieldError] = Field(default_factory=list)


_WHY = {
    400: "The body could not be read as JSON.",
    401: "No credentials: send `Authorization: Bearer <moderator_key>` or use the moderator "
    "link's cookie.",
    409: "The change conflicts with the current state (already decided, already undone…).",
    403: "The credentials do not grant this (another chat's key, a stale CSRF token…).",
    404: "No such chat or item.",
    413: "The request body is over `HASHROOM_MAX_BODY_BYTES`.",
    422: "Invalid input; `detail` names the field and what to fix.",
    429: "Over a per-client quota; `Retry-After` says how many seconds to wait.",
    502: "The network refused or failed; `detail` says how (never its body).",
    503: "Not available on this server.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for routes that may answer ``codes``, each with the error body."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {
            "model": ValidationErrorOut if code == 422 else ErrorOut,
            "description": _WHY[code],
        }
        if code == 429:
            entry["headers"] = {
                "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
            }
        out[code] = entry
    return out
