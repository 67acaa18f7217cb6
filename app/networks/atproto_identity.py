"""Who a DID is: handle, PDS and profile, looked up without ever holding up a stream.

A DID document (``did:plc`` from the PLC directory, ``did:web`` from the host's
``/.well-known/did.json``) names the account's handle (``alsoKnownAs: ["at://handle"]``) and its
PDS (the ``#atproto_pds`` service). The profile (display name, avatar) is the
``app.bsky.actor.profile`` record with rkey ``self`` in the account's repo, or the AppView's
``app.bsky.actor.getProfile`` when one is configured and reachable (it also checks that the
handle really points back to the DID; the DID document alone is the account's own claim).

:class:`IdentityResolver` caches answers with a TTL in a bounded LRU, shares concurrent lookups
of one DID, and remembers failures briefly so a broken DID is not asked again at every post.
:meth:`IdentityResolver.author` never raises: when nothing can be learnt it returns the
fallback author (the DID itself), so callers can always show a post.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx

from app.networks.base import Author
from app.outbound import describe_failure

log = logging.getLogger(__name__)

PROFILE_COLLECTION = "app.bsky.actor.profile"
BSKY_PROFILE_URL = "https://bsky.app/profile/{did}"
GET_BLOB_URL = "{pds}/xrpc/com.atproto.sync.getBlob?did={did}&cid={cid}"
CDN_AVATAR_URL = "https://cdn.bsky.app/img/avatar/plain/{did}/{cid}@jpeg"
# atproto's did:web names a host, optionally with a port (":" written %3A); no paths.
_WEB_HOST_RE = re.compile(r"[a-zA-Z0-9.-]+(:[0-9]{1,5})?")


class IdentityError(Exception):
    """A DID document could not be fetched or is not valid for the DID."""


@dataclass(frozen=True, slots=True)
class Identity:
    """What a DID document says: the claimed handle and the PDS endpoint (either may be
    missing)."""

    did: str
    handle: str | None
    pds: str | None


def blob_url(did: str, cid: str, pds: str | None, cdn: str = CDN_AVATAR_URL) -> str:
    """A browser URL for blob ``cid`` of ``did``: ``getBlob`` on the PDS when known, else the
    Bluesky CDN pattern ``cdn`` (with ``{did}`` and ``{cid}``)."""
    if pds:
        return GET_BLOB_URL.format(pds=pds.rstrip("/"), did=quote(did, safe=":"), cid=cid)
    return cdn.format(did=quote(did, safe=":"), cid=quote(cid, safe=""))


def blob_cid(blob: Any) -> str | None:
    """The CID of a blob reference (``{"ref": {"$link": cid}}`` or the legacy ``{"cid": cid}``)."""
    if not isinstance(blob, dict):
        return None
    ref = blob.get("ref")
    if isinstance(ref, dict) and isinstance(ref.get("$link"), str):
        return ref["$link"]
    if isinstance(blob.get("cid"), str):
        return blob["cid"]
    return None


def fallback_author(did: str, handle: str | None = None) -> Author:
    """The author shown before (or instead of) the profile: the handle if known, else the DID."""
    return Author(
        name=handle or did,
        handle=f"@{handle}" if handle else did,
        profile_url=BSKY_PROFILE_URL.format(did=quote(did, safe=":")),
        remote_id=did,
    )


def _http_url(value: Any) -> str | None:
    if isinstance(value, str) and urlsplit(value).scheme in ("http", "https"):
        if urlsplit(value).netloc:
            return value.rstrip("/")
    return None


def pds_endpoint(document: dict[str, Any]) -> str | None:
    """The ``#atproto_pds`` service endpoint of a DID document (an http(s) URL), if any."""
    services = document.get("service")
    if not isinstance(services, list):
        return None
    for service in services:
        if not isinstance(service, dict):
            continue
        sid = service.get("id")
        if isinstance(sid, str) and (sid == "#atproto_pds" or sid.endswith("#atproto_pds")):
            return _http_url(service.get("serviceEndpoint"))
    return None


def handle_of(document: dict[str, Any]) -> str | None:
    """The first ``at://handle`` of a DID document's ``alsoKnownAs``, lower-cased."""
    aka = document.get("alsoKnownAs")
    if not isinstance(aka, list):
        return None
    for entry in aka:
        if isinstance(entry, str) and entry.startswith("at://") and len(entry) > 5:
            handle = entry[5:].strip().lower()
            if handle and "/" not in handle:
                return handle
    return None


def did_document_url(did: str, plc_url: str) -> str:
    """Where the DID document of ``did`` lives. Raises IdentityError for other DID methods."""
    if did.startswith("did:plc:"):
        return f"{plc_url.rstrip('/')}/{quote(did, safe=':')}"
    if did.startswith("did:web:"):
        host = unquote(did[len("did:web:") :])
        if not _WEB_HOST_RE.fullmatch(host):
            raise IdentityError(f"bad did:web {did!r}")
        scheme = "http" if host.split(":")[0] in ("localhost", "127.0.0.1") else "https"
        return f"{scheme}://{host}/.well-known/did.json"
    raise IdentityError(f"unsupported DID method in {did!r}")


async def fetch_did_document(http: httpx.AsyncClient, did: str, plc_url: str) -> dict[str, Any]:
    """The DID document of ``did``, checked to be about that DID. Raises IdentityError."""
    url = did_document_url(did, plc_url)
    try:
        response = await http.get(url)
    except httpx.HTTPError as exc:
        raise IdentityError(
            f"cannot fetch the DID document of {did}: {describe_failure(exc)}"
        ) from exc
    if response.status_code != 200:
        raise IdentityError(f"DID document of {did}: HTTP {response.status_code}")
    try:
        document = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IdentityError(f"DID document of {did} is not JSON") from exc
    if not isinstance(document, dict) or document.get("id") != did:
        raise IdentityError(f"the document served for {did} is about another DID")
    return document


class IdentityResolver:
    """DID → :class:`Identity` and :class:`Author`, cached (TTL, bounded LRU).

    ``plc_url`` is the PLC directory; ``appview_url`` (optional) an AppView asked for profiles
    first. Lookups use ``timeout`` seconds at most per request.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        plc_url: str,
        appview_url: str | None = None,
        ttl: float = 3600.0,
        *,
        max_entries: int = 10_000,
        failure_ttl: float = 120.0,
        timeout: float = 5.0,
    ):
        self.http = http
        self.plc_url = plc_url.rstrip("/")
        self.appview_url = appview_url.rstrip("/") if appview_url else None
        self.ttl = ttl
        self.failure_ttl = failure_ttl
        self.max_entries = max_entries
        self.timeout = timeout
        self._identities: OrderedDict[str, tuple[float, Identity]] = OrderedDict()
        self._authors: OrderedDict[str, tuple[float, Author, bool]] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[Author]] = {}

    # --- cache ---------------------------------------------------------------------------

    def _get(self, cache: OrderedDict[str, Any], did: str) -> Any:
        entry = cache.get(did)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del cache[did]
            return None
        cache.move_to_end(did)
        return entry

    def _put(self, cache: OrderedDict[str, Any], did: str, entry: tuple[Any, ...]) -> None:
        cache[did] = entry
        cache.move_to_end(did)
        while len(cache) > self.max_entries:
            cache.popitem(last=False)

    def cached_author(self, did: str) -> Author | None:
        """The author of ``did`` if a *successful* lookup is cached, else None. Never waits."""
        entry = self._get(self._authors, did)
        return entry[1] if entry and entry[2] else None

    def cached_identity(self, did: str) -> Identity | None:
        """The identity of ``did`` if cached, else None. Never waits."""
        entry = self._get(self._identities, did)
        return entry[1] if entry else None

    def forget(self, did: str) -> None:
        """Drop what is cached about ``did`` (its handle or profile changed)."""
        self._identities.pop(did, None)
        self._authors.pop(did, None)

    # --- lookups -------------------------------------------------------------------------

    async def identity(self, did: str) -> Identity:
        """Handle and PDS of ``did`` from its DID document. Raises IdentityError."""
        entry = self._get(self._identities, did)
        if entry:
            return entry[1]
        document = await asyncio.wait_for(
            fetch_did_document(self.http, did, self.plc_url), self.timeout
        )
        found = Identity(did=did, handle=handle_of(document), pds=pds_endpoint(document))
        self._put(self._identities, did, (time.monotonic() + self.ttl, found))
        return found

    async def pds_for(self, did: str) -> str | None:
        """The PDS of ``did``, or None when unknown."""
        try:
            return (await self.identity(did)).pds
        except (IdentityError, TimeoutError):
            return None

    async def author(self, did: str) -> Author:
        """The author ``did`` is shown as: display name, handle, avatar. Never raises.

        Concurrent calls for one DID share one lookup; a failed lookup yields the fallback
        author and is remembered for ``failure_ttl`` seconds.
        """
        entry = self._get(self._authors, did)
        if entry:
            return entry[1]
        task = self._inflight.get(did)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._lookup(did))
            self._inflight[did] = task
            task.add_done_callback(lambda _t, d=did: self._inflight.pop(d, None))
        return await asyncio.shield(task)

    async def _lookup(self, did: str) -> Author:
        try:
            author = await self._appview_author(did) or await self._pds_author(did)
        except Exception as exc:  # a lookup must never break the stream that asked
            log.info("no profile for %s: %s", did, exc)
            author = None
        if author is None:
            handle = None
            cached = self.cached_identity(did)
            if cached:
                handle = cached.handle
            self._put(
                self._authors,
                did,
                (time.monotonic() + self.failure_ttl, fallback_author(did, handle), False),
            )
            return fallback_author(did, handle)
        self._put(self._authors, did, (time.monotonic() + self.ttl, author, True))
        return author

    async def _appview_author(self, did: str) -> Author | None:
        if not self.appview_url:
            return None
        try:
            response = await asyncio.wait_for(
                self.http.get(
                    f"{self.appview_url}/xrpc/app.bsky.actor.getProfile", params={"actor": did}
                ),
                self.timeout,
            )
            data = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, TimeoutError, ValueError) as exc:
            log.debug("AppView profile of %s unavailable: %s", did, exc)
            return None
        if not isinstance(data, dict) or data.get("did") != did:
            return None
        handle = data.get("handle") if isinstance(data.get("handle"), str) else None
        if handle == "handle.invalid":  # the AppView found the handle does not point back
            handle = None
        name = data.get("displayName") if isinstance(data.get("displayName"), str) else ""
        return Author(
            name=name.strip() or handle or did,
            handle=f"@{handle}" if handle else did,
            avatar_url=_http_url(data.get("avatar")),
            profile_url=BSKY_PROFILE_URL.format(did=quote(did, safe=":")),
            remote_id=did,
        )

    async def _pds_author(self, did: str) -> Author | None:
        found = await self.identity(did)
        name = ""
        avatar = None
        if found.pds:
            record = await self._profile_record(found.pds, did)
            if record:
                if isinstance(record.get("displayName"), str):
                    name = record["displayName"].strip()
                cid = blob_cid(record.get("avatar"))
                if cid:
                    avatar = blob_url(did, cid, found.pds)
        if not (found.handle or name or avatar):
            return None
        return Author(
            name=name or found.handle or did,
            handle=f"@{found.handle}" if found.handle else did,
            avatar_url=avatar,
            profile_url=BSKY_PROFILE_URL.format(did=quote(did, safe=":")),
            remote_id=did,
        )

    async def _profile_record(self, pds: str, did: str) -> dict[str, Any] | None:
        try:
            response = await asyncio.wait_for(
                self.http.get(
                    f"{pds}/xrpc/com.atproto.repo.getRecord",
                    params={"repo": did, "collection": PROFILE_COLLECTION, "rkey": "self"},
                ),
                self.timeout,
            )
        except (httpx.HTTPError, TimeoutError) as exc:
            log.debug("profile record of %s unavailable: %s", did, exc)
            return None
        if response.status_code != 200:
            return None  # 400 RecordNotFound: the account never set a profile
        try:
            value = response.json().get("value")
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, dict) else None
