"""One guarded way out: every HTTP request and websocket connection the server makes.

A chat source, an account or a document fetched along the way (an instance's announced
streaming URL, a ``did:web`` document, a PDS endpoint, a redirect) can name any host, so
everything leaving the server passes the same checks:

- :func:`check_url` — what a person typed: a known scheme, one spelling per host (IP
  addresses only as canonical literals: ``2130706433``, ``0x7f000001``, ``0177.0.0.1`` and
  ``127.1`` are refused, a trailing dot is dropped), no login or fragment. Raises ValueError
  naming the field, which the API answers as a 422.
- :func:`make_http_client` — the app's one ``httpx.AsyncClient``. Its transport resolves each
  host name once, refuses the connection unless every address is globally routable, and
  connects to the address it checked (the TLS name and ``Host`` stay the host name), so a
  second DNS answer cannot differ. Redirect hops open their connections the same way.
  Response bodies are cut off at ``max_response_bytes`` (after decompression).
- :func:`make_ws_connect` — the one websocket ``connect``: the same resolution and check,
  the same pinned address, frames capped at ``max_frame_bytes``, no proxy from the
  environment.

Development mode (:attr:`OutboundPolicy.allow_private`) may reach loopback and private
networks, as the tests and a local instance need; in production an operator names the
private hosts that may be reached (``HASHROOM_OUTBOUND_ALLOW_HOSTS``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit

import certifi
import httpcore
import httpx
from websockets.asyncio.client import connect as _ws_connect

from .config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
DEFAULT_PORTS = {"https": 443, "http": 80, "wss": 443, "ws": 80}
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
# A last label of digits or 0x… makes a URL parser read the host as an IPv4 address in one
# of its odd spellings (decimal, octal, hex, short); only the canonical form is accepted.
_NUMERIC_LABEL_RE = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
# A name resolving to more addresses than this is tried on the first ones only.
MAX_ADDRESSES = 8
# Networks Python's ``is_global`` lets through but that reach a private network anyway.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_SIXTOFOUR = ipaddress.ip_network("2002::/16")


# Request extensions for a long-lived stream read piece by piece (``http.stream(...,
# extensions=STREAMING)``): the caller bounds each piece itself, so the total is not capped.
# The connection is guarded all the same.
STREAMING: dict[str, Any] = {"hashroom.outbound_stream": True}


class RefusedAddress(OSError):
    """The destination is not a public address (and not allowed by name)."""


class ResponseTooLarge(httpx.TransportError):
    """A response body went past the configured cap; the rest was not read."""


@dataclass(frozen=True)
class OutboundPolicy:
    """Where the server may connect and how much it reads back."""

    allow_private: bool = False
    allow_hosts: frozenset[str] = field(default_factory=frozenset)
    max_response_bytes: int = 5 * 1024 * 1024
    max_frame_bytes: int = 8 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundPolicy:
        """The policy of ``settings``: private networks only in development."""
        return cls(
            allow_private=settings.env != "production",
            allow_hosts=frozenset(
                _normal_host(h) for h in settings.outbound_allow_hosts if h.strip()
            ),
            max_response_bytes=settings.outbound_max_response_bytes,
            max_frame_bytes=settings.outbound_max_frame_bytes,
        )

    def host_allowed(self, host: str) -> bool:
        """True when ``host`` may resolve to any address (development, or named by the
        operator)."""
        return self.allow_private or _normal_host(host) in self.allow_hosts


def _normal_host(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host[:-1] if host.endswith(".") else host


def is_public_address(ip: IPAddress) -> bool:
    """True only for a globally routable unicast address.

    Refused: loopback, private, link-local, CGNAT (100.64/10), unique-local, ``0.0.0.0/8``,
    multicast, reserved and documentation ranges, IPv4-mapped and IPv4-compatible IPv6, and
    6to4 / Teredo / NAT64 addresses embedding an address that is not public.
    """
    if ip.version == 6:
        assert isinstance(ip, ipaddress.IPv6Address)
        if ip.scope_id or ip.ipv4_mapped is not None or int(ip) >> 32 == 0:
            return False
        if ip in _NAT64_LOCAL:
            return False
        if ip in _NAT64:
            return is_public_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip in _SIXTOFOUR and ip.sixtofour is not None:
            return is_public_address(ip.sixtofour)
        if ip.teredo is not None:
            server, client = ip.teredo
            return is_public_address(server) and is_public_address(client)
        if ip.is_site_local:
            return False
    return bool(
        ip.is_global
        and not (
            ip.is_private
            or ip.is_loopback
            or ip.is_link_local
            or ip.is_multicast
            or ip.is_reserved
            or ip.is_unspecified
        )
    )


def _is_loopback_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(
    raw: Any,
    field: str,
    *,
    secure: str,
    plain: str,
    policy: OutboundPolicy,
    example: str,
    max_length: int = 500,
) -> SplitResult:
    """``urlsplit`` of a checked address with a lower-case scheme and one spelling of the host
    (IDNA, canonical IP literal, IPv6 in brackets, no trailing dot, default port dropped).

    ``plain`` (``http``/``ws``) is accepted only for this machine in development or for a host
    the operator allowed. Addresses that are not public are refused here already when they
    are literals (or ``localhost``); names are checked again when connecting. Raises
    ValueError naming ``field``; never anything else.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(f"{field}: give an address, e.g. {example}")
    text = raw.strip()
    if len(text) > max_length:
        raise ValueError(f"{field}: the address is too long (at most {max_length} characters)")
    try:
        parts = urlsplit(text)
        port = parts.port
        host = parts.hostname or ""
    except ValueError as exc:
        raise ValueError(f"{field}: this is not a valid address, e.g. {example}") from exc
    scheme = parts.scheme.lower()
    if scheme not in (secure, plain):
        raise ValueError(f"{field}: use a {secure}:// address, e.g. {example}")
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise ValueError(f"{field}: the address has no host name, e.g. {example}")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise ValueError(f"{field}: give the address without a login or #fragment")
    if "%" in host:
        raise ValueError(f"{field}: IPv6 zone identifiers are not accepted")
    ip: IPAddress | None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is None:
        if ":" in host:
            raise ValueError(f"{field}: {host!r} is not a valid IPv6 address")
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError as exc:
            raise ValueError(f"{field}: this is not a valid host name") from exc
        if len(host) > 253 or not _HOST_RE.match(host):
            raise ValueError(f"{field}: {host!r} is not a valid host name")
        if _NUMERIC_LABEL_RE.match(host.rsplit(".", 1)[-1]):
            raise ValueError(
                f"{field}: {host!r} is not a valid host name (write an IP address as four "
                "decimal numbers, e.g. 192.0.2.10)"
            )
    elif ip.version == 6:
        if ip.ipv4_mapped is not None:
            raise ValueError(f"{field}: give an IPv4 address as four decimal numbers")
        host = ip.compressed
    allowed = policy.host_allowed(host)
    named = _normal_host(host) in policy.allow_hosts
    if scheme == plain and not (named or (policy.allow_private and _is_loopback_name(host))):
        raise ValueError(
            f"{field}: use {secure}:// ({plain}:// is only accepted for a server on this "
            "machine in development, or a host the operator allows)"
        )
    if not allowed and (_is_loopback_name(host) or (ip is not None and not is_public_address(ip))):
        raise ValueError(f"{field}: {host} is not a public address; use a public server")
    shown = f"[{host}]" if ip is not None and ip.version == 6 else host
    if port is not None and port != DEFAULT_PORTS.get(scheme):
        shown = f"{shown}:{port}"
    return parts._replace(scheme=scheme, netloc=shown)


async def resolve(host: str, port: int, policy: OutboundPolicy) -> list[str]:
    """The addresses to connect to for ``host``, each one checked against ``policy``.

    The name is resolved once; the caller connects to these addresses, never to the name,
    so a second DNS answer cannot change where the connection goes. Raises
    :class:`RefusedAddress` when any address is not public (a name mixing public and private
    answers is refused, not filtered) and OSError when the name does not resolve.
    """
    host = _normal_host(host)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal.compressed]
    else:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))[:MAX_ADDRESSES]
        if not addresses:
            raise OSError(f"{host} has no address")
    if not policy.host_allowed(host):
        for address in addresses:
            if not is_public_address(ipaddress.ip_address(address.split("%")[0])):
                raise RefusedAddress(f"refused: {host} is not a public address")
    return addresses


# --- HTTP --------------------------------------------------------------------------------


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting to checked addresses only (see :func:`resolve`).

    httpcore starts TLS with the request's host name after ``connect_tcp``, so certificates
    are still checked against the name, not the address.
    """

    def __init__(self, policy: OutboundPolicy) -> None:
        self.policy = policy
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await resolve(host, port, self.policy)
        except RefusedAddress as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}") from exc
        error: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not an outbound destination")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _CappedStream(httpx.AsyncByteStream):
    """A response body, decompressed here and cut off past ``limit`` bytes.

    Decompressing here (rather than in httpx) is what lets the cap bound the decoded size:
    a small gzip body may inflate a thousandfold.
    """

    def __init__(self, raw: httpx.AsyncByteStream, limit: int, encoding: str) -> None:
        self.raw = raw
        self.limit = limit
        self.decoder: Any = None
        if encoding == "gzip":
            self.decoder = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            self.decoder = zlib.decompressobj()

    def _too_large(self) -> ResponseTooLarge:
        return ResponseTooLarge(f"the response is larger than {self.limit} bytes")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self.raw:
            if self.decoder is not None:
                try:
                    # max_length bounds the memory one small chunk may inflate into.
                    chunk = self.decoder.decompress(chunk, self.limit - seen + 1)
                except zlib.error as exc:
                    raise httpx.DecodingError("the response is not validly compressed") from exc
                if self.decoder.unconsumed_tail:
                    raise self._too_large()
            seen += len(chunk)
            if seen > self.limit:
                raise self._too_large()
            if chunk:
                yield chunk

    async def aclose(self) -> None:
        await self.raw.aclose()


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over :class:`_GuardedBackend`, with capped response bodies.

    No proxy from the environment: a proxy would connect for us, unchecked.
    """

    def __init__(self, policy: OutboundPolicy, *, retries: int = 0) -> None:
        self.policy = policy
        self._pool = httpcore.AsyncConnectionPool(
            # httpx's own default trust store (certifi), as before the guard.
            ssl_context=ssl.create_default_context(cafile=certifi.where()),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            retries=retries,
            network_backend=_GuardedBackend(policy),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if request.extensions.get("hashroom.outbound_stream"):
            return response
        limit = self.policy.max_response_bytes
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            await response.aclose()
            raise ResponseTooLarge(f"the response is larger than {limit} bytes", request=request)
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip", "deflate", ""):
            await response.aclose()
            raise httpx.DecodingError(f"unsupported content encoding {encoding[:20]!r}")
        assert isinstance(response.stream, httpx.AsyncByteStream)
        headers = [(k, v) for k, v in response.headers.raw if k.lower() != b"content-encoding"]
        if encoding in ("gzip", "deflate"):
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        return httpx.Response(
            status_code=response.status_code,
            headers=headers,
            stream=_CappedStream(response.stream, limit, encoding),
            extensions=response.extensions,
        )


def make_http_client(
    policy: OutboundPolicy, *, timeout: float, user_agent: str
) -> httpx.AsyncClient:
    """The app's shared HTTP client: guarded transport, redirects followed (each hop opens
    its connection through the same guard), no proxy or certificates from the environment."""
    return httpx.AsyncClient(
        transport=GuardedTransport(policy),
        timeout=timeout,
        headers={"User-Agent": user_agent, "Accept-Encoding": "gzip, deflate"},
        follow_redirects=True,
        max_redirects=5,
        trust_env=False,
    )


# --- websockets --------------------------------------------------------------------------

WsConnect = Callable[..., Any]
"""Signature of :func:`websockets.asyncio.client.connect`; use as ``async with
ws_connect(url, **options) as ws``. Made by :func:`make_ws_connect`."""


# The guard overrides the one method websockets opens every TCP connection with; a release
# that renames it must fail loudly here rather than leave connections unguarded.
if not callable(getattr(_ws_connect, "open_tcp_connection", None)):
    raise ImportError("websockets.asyncio.client.connect lacks open_tcp_connection()")


class _GuardedConnect(_ws_connect):
    """websockets' ``connect``, opening each connection (redirects too) to a checked address.

    The TLS name and ``Host`` header stay the URL's host name; only the TCP destination is
    pinned. Connection options given by the caller for each attempt are kept as given, so
    websockets still follows a redirect to another origin (which is then checked in turn).
    """

    policy: OutboundPolicy

    async def open_tcp_connection(self) -> Any:
        given = self.create_connection_kwargs
        host, port = self.ws_uri.host, self.ws_uri.port
        addresses = await resolve(host, port, self.policy)
        error: Exception | None = None
        try:
            for address in addresses:
                self.create_connection_kwargs = {**given, "host": address, "port": port}
                try:
                    return await super().open_tcp_connection()
                except OSError as exc:
                    error = exc
        finally:
            self.create_connection_kwargs = given
        assert error is not None
        raise error


def make_ws_connect(policy: OutboundPolicy) -> WsConnect:
    """The app's websocket ``connect``: guarded like :func:`make_http_client`, frames capped
    at ``policy.max_frame_bytes`` (or the caller's smaller ``max_size``).

    Raises :class:`RefusedAddress` (an OSError) for a destination that is not public.
    """

    class GuardedConnect(_GuardedConnect):
        pass

    GuardedConnect.policy = policy

    def ws_connect(uri: str, **options: Any) -> Any:
        wanted = options.pop("max_size", None)
        cap = policy.max_frame_bytes
        options["max_size"] = cap if wanted is None else min(wanted, cap)
        options["proxy"] = None
        return GuardedConnect(uri, **options)

    return ws_connect


# --- describing failures -----------------------------------------------------------------


def describe_failure(exc: BaseException) -> str:
    """What went wrong with an outbound request or connection, in words safe to show anyone.

    Built from the kind of failure and the status code only: never from a body, a reason
    phrase or a header value the other server chose (see "Error reporting" in
    docs/security.md).
    """
    if isinstance(exc, RefusedAddress | ResponseTooLarge):
        return str(exc)
    if isinstance(exc, httpx.ConnectError) and str(exc).startswith("refused: "):
        return str(exc)
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timed out"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return f"HTTP {status}"
    if isinstance(exc, httpx.TooManyRedirects):
        return "too many redirects"
    if isinstance(exc, httpx.DecodingError):
        return "the response could not be decoded"
    if isinstance(exc, httpx.ConnectError | ConnectionError | socket.gaierror):
        return "cannot connect"
    if isinstance(exc, httpx.HTTPError | OSError):
        return f"connection failed ({type(exc).__name__})"
    return type(exc).__name__
