"""The official AT Protocol reference PDS (``@atproto/dev-env``) run from Python tests.

``async with ReferencePds() as pds:`` starts ``node pds.mjs`` (a PDS and a PLC directory on
free ports, data under a private TMPDIR), and stops it and removes its data afterwards. The
helpers talk to the PDS over plain XRPC, so they depend on nothing in ``app``.

Install once with ``bash tests/peers/bluesky/install.sh`` (Node 20 + npm). When Node or the
installed packages are missing the test is skipped with that hint — except when ``CI=true``,
where it fails.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

HERE = Path(__file__).resolve().parent
INSTALL_HINT = "run `bash tests/peers/bluesky/install.sh` (needs Node 20 + npm)"
START_DEADLINE = 60.0
# @atproto/dev-env signs session tokens with this development secret (HS256).
DEV_JWT_SECRET = b"jwt-secret"
POST = "app.bsky.feed.post"


def require_reference_pds() -> str:
    """The ``node`` executable, or skip (fail on CI) when the reference PDS is not installed."""
    node = shutil.which("node")
    installed = (HERE / "node_modules" / "@atproto" / "dev-env" / "package.json").is_file()
    if node and installed:
        return node
    missing = "node" if not node else "tests/peers/bluesky/node_modules"
    message = f"reference Bluesky PDS unavailable ({missing} missing): {INSTALL_HINT}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class PdsAccount:
    """An account made on the reference PDS, with its current session tokens."""

    did: str
    handle: str
    password: str
    access_jwt: str
    refresh_jwt: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_jwt}"}


@dataclass
class PdsPost:
    """A record created through :meth:`ReferencePds.post`."""

    uri: str
    cid: str
    rkey: str
    record: dict[str, Any]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class ReferencePds:
    """A running reference PDS + PLC directory. ``pds_url``/``plc_url`` once started."""

    def __init__(self) -> None:
        self.pds_url = ""
        self.plc_url = ""
        self.http: httpx.AsyncClient | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._tmp: str | None = None
        self._stderr: list[str] = []
        self._stderr_task: asyncio.Task[None] | None = None
        self._count = 0

    async def __aenter__(self) -> ReferencePds:
        node = require_reference_pds()
        self._tmp = tempfile.mkdtemp(prefix="hashroom-pds-")
        env = {**os.environ, "TMPDIR": self._tmp, "LOG_ENABLED": "false"}
        try:
            self._process = await asyncio.create_subprocess_exec(
                node,
                str(HERE / "pds.mjs"),
                cwd=HERE,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            self._stderr_task = asyncio.create_task(self._drain_stderr())
            urls = await asyncio.wait_for(self._read_urls(), START_DEADLINE)
        except BaseException:
            await self._stop()
            raise
        self.pds_url, self.plc_url = urls["pds"], urls["plc"]
        self.http = httpx.AsyncClient(timeout=15.0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.http is not None:
            await self.http.aclose()
        await self._stop()

    async def _drain_stderr(self) -> None:
        assert self._process and self._process.stderr
        async for line in self._process.stderr:
            self._stderr.append(line.decode(errors="replace"))
            del self._stderr[:-50]

    async def _read_urls(self) -> dict[str, str]:
        assert self._process and self._process.stdout
        while True:
            line = await self._process.stdout.readline()
            if not line:
                raise RuntimeError("reference PDS exited early:\n" + "".join(self._stderr))
            with contextlib.suppress(json.JSONDecodeError):
                data = json.loads(line)
                if isinstance(data, dict) and "pds" in data and "plc" in data:
                    return data

    async def _stop(self) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError, BrokenPipeError, ConnectionResetError):
                if process.stdin:
                    process.stdin.close()
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._stderr_task is not None:
            self._stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stderr_task
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # --- XRPC helpers ----------------------------------------------------------------------

    async def xrpc(
        self,
        method: str,
        nsid: str,
        *,
        account: PdsAccount | None = None,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Call the PDS; raises AssertionError with the server's answer on failure."""
        assert self.http is not None
        response = await self.http.request(
            method,
            f"{self.pds_url}/xrpc/{nsid}",
            params=params,
            json=body,
            headers=account.auth if account else None,
        )
        assert response.status_code == 200, f"{nsid}: {response.status_code} {response.text}"
        return response.json() if response.content else {}

    async def create_account(self, handle: str) -> PdsAccount:
        """A new account (``handle`` must end in ``.test``) with a signed-in session."""
        assert handle.endswith(".test"), "the reference PDS only serves .test handles"
        self._count += 1
        password = f"pw-{self._count}-{handle}"
        data = await self.xrpc(
            "POST",
            "com.atproto.server.createAccount",
            body={"handle": handle, "email": f"{self._count}@example.test", "password": password},
        )
        return PdsAccount(
            did=data["did"],
            handle=data["handle"],
            password=password,
            access_jwt=data["accessJwt"],
            refresh_jwt=data["refreshJwt"],
        )

    async def create_app_password(self, account: PdsAccount, name: str = "hashroom") -> str:
        """A new app password for ``account``."""
        data = await self.xrpc(
            "POST", "com.atproto.server.createAppPassword", account=account, body={"name": name}
        )
        return data["password"]

    async def post(
        self,
        account: PdsAccount,
        text: str,
        facets: list[dict[str, Any]] | None = None,
        tags: list[str] | None = None,
        reply: dict[str, Any] | None = None,
    ) -> PdsPost:
        """Create an ``app.bsky.feed.post`` record as ``account`` (createRecord)."""
        record: dict[str, Any] = {
            "$type": POST,
            "text": text,
            "createdAt": datetime.now(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
        }
        if facets is not None:
            record["facets"] = facets
        if tags is not None:
            record["tags"] = tags
        if reply is not None:
            record["reply"] = reply
        data = await self.xrpc(
            "POST",
            "com.atproto.repo.createRecord",
            account=account,
            body={"repo": account.did, "collection": POST, "record": record},
        )
        return PdsPost(
            uri=data["uri"], cid=data["cid"], rkey=data["uri"].rsplit("/", 1)[1], record=record
        )

    async def delete(self, account: PdsAccount, rkey: str) -> None:
        """Delete post ``rkey`` of ``account`` (deleteRecord)."""
        await self.xrpc(
            "POST",
            "com.atproto.repo.deleteRecord",
            account=account,
            body={"repo": account.did, "collection": POST, "rkey": rkey},
        )

    async def set_profile(self, account: PdsAccount, display_name: str) -> None:
        """Write the account's ``app.bsky.actor.profile/self`` record."""
        await self.xrpc(
            "POST",
            "com.atproto.repo.putRecord",
            account=account,
            body={
                "repo": account.did,
                "collection": "app.bsky.actor.profile",
                "rkey": "self",
                "record": {"$type": "app.bsky.actor.profile", "displayName": display_name},
            },
        )

    async def get_record(self, uri: str) -> dict[str, Any]:
        """``{uri, cid, value}`` of the record at ``uri`` (com.atproto.repo.getRecord)."""
        did, collection, rkey = uri.removeprefix("at://").split("/")
        return await self.xrpc(
            "GET",
            "com.atproto.repo.getRecord",
            params={"repo": did, "collection": collection, "rkey": rkey},
        )

    @staticmethod
    def expired_copy(access_jwt: str) -> str:
        """``access_jwt`` with its expiry moved into the past, signed like the dev PDS signs
        (so the PDS answers ``ExpiredToken``, exactly as for a token that aged out)."""
        header_b64, payload_b64, _ = access_jwt.split(".")
        payload = json.loads(base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4)))
        payload["iat"] = int(time.time()) - 7300
        payload["exp"] = int(time.time()) - 100
        signing_input = f"{header_b64}.{_b64url(json.dumps(payload).encode())}"
        signature = hmac.new(DEV_JWT_SECRET, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64url(signature)}"
