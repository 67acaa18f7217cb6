"""Domain errors: services raise them (never HTTP), and the one handler answers each with the
API's error body — status, ``detail`` and headers — on a real server."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app import errors
from tests.factories import create_chat

pytestmark = pytest.mark.timeout(60)

APP = Path(__file__).resolve().parent.parent / "app"
HTTP_EXCEPTIONS = {"fastapi", "fastapi.exceptions", "starlette.exceptions"}


def http_exception_uses(path: Path) -> list[str]:
    """Where ``path`` imports or names an HTTPException (``line: what``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module in HTTP_EXCEPTIONS:
            found += [
                f"{node.lineno}: from {node.module} import {a.name}"
                for a in node.names
                if a.name == "HTTPException"
            ]
        elif isinstance(node, ast.Attribute) and node.attr == "HTTPException":
            found.append(f"{node.lineno}: .HTTPException")
    return found


def test_no_module_outside_the_routes_speaks_http_errors():
    services = [p for p in APP.rglob("*.py") if "routes" not in p.relative_to(APP).parts]
    assert len(services) > 20 and APP / "publishing.py" in services
    leaks = {str(p.relative_to(APP)): uses for p in services if (uses := http_exception_uses(p))}
    assert leaks == {}, f"raise a domain error from app/errors.py instead: {leaks}"


def test_the_guard_sees_an_http_exception(tmp_path: Path):
    """The guard above must catch both spellings, or it proves nothing."""
    one = tmp_path / "one.py"
    one.write_text("from fastapi import HTTPException\n")
    two = tmp_path / "two.py"
    two.write_text("import fastapi\n\ndef f():\n    raise fastapi.HTTPException(404)\n")
    assert http_exception_uses(one) and http_exception_uses(two)


def test_service_errors_keep_their_old_classes():
    """Callers that catch rooms.NotFound, rooms.Invalid or moderation.Conflict (or the
    builtins they extend) keep working."""
    from app import moderation, push, rooms, votes

    assert rooms.NotFound is errors.NotFound and issubclass(rooms.NotFound, LookupError)
    assert rooms.Invalid is errors.Invalid and issubclass(rooms.Invalid, ValueError)
    assert moderation.Conflict is errors.Conflict
    assert issubclass(votes.NotAQuestion, errors.Invalid)
    assert issubclass(push.PushUnavailable, errors.Unavailable)
    assert {c.status for c in errors.DomainError.__subclasses__()} >= {
        401,
        403,
        404,
        409,
        422,
        429,
        502,
        503,
    }


async def test_the_handler_answers_with_detail_code_extra_fields_and_headers():
    app = FastAPI()
    errors.install(app)

    @app.get("/refused")
    async def refused() -> None:
        raise errors.Forbidden(
            "x refused this reply",
            code="reply_refused",
            fallbacks={"quote_of": 7, "intent_url": None},
        )

    @app.get("/slow-down")
    async def slow_down() -> None:
        raise errors.RateLimited("try again in 3 s", headers={"Retry-After": "3"})

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        r = await http.get("/refused")
        assert r.status_code == 403
        assert r.content == (
            b'{"detail":{"code":"reply_refused","message":"x refused this reply",'
            b'"fallbacks":{"quote_of":7,"intent_url":null}}}'
        )
        r = await http.get("/slow-down")
        assert r.status_code == 429 and r.headers["retry-after"] == "3"
        assert r.content == b'{"detail":"try again in 3 s"}'


async def test_domain_errors_reach_clients_through_the_one_handler(server: Any):
    chat = await create_chat(server.url, "errs")
    slug = chat["slug"]
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.get("/api/chats/no-such-chat")  # rooms → NotFound
        assert r.status_code == 404
        assert r.content == b'{"detail":"no chat with slug \'no-such-chat\'"}'

        r = await http.get(f"/api/chats/{slug}/blocks")  # deps → Unauthorized, with its header
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["detail"].startswith("moderators only")

        other = await create_chat(server.url, "errs2")
        wrong = {"Authorization": f"Bearer {other['moderator_key']}"}
        r = await http.get(f"/api/chats/{slug}/blocks", headers=wrong)  # deps → Forbidden
        assert r.status_code == 403
        assert r.content == b'{"detail":"this moderator key does not belong to this chat"}'

        mine = {"Authorization": f"Bearer {chat['moderator_key']}"}
        r = await http.post(  # moderation → Invalid, no longer translated by the route
            f"/api/chats/{slug}/people", json={"handle": "  @ ", "role": "host"}, headers=mine
        )
        assert r.status_code == 422, r.text
        assert r.json() == {"detail": "handle: give the author's handle, like alice@example.social"}

        r = await http.put(f"/api/chats/{slug}/pins/999999", headers=mine)  # rooms → NotFound
        assert r.status_code == 404
        assert r.content == b'{"detail":"no post 999999 in this chat"}'
