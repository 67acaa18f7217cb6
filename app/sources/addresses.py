"""Checking the addresses people give for instances, relays and services.

A source or an account makes the server connect wherever its address points, so addresses
are checked before use: a known scheme, a valid host name, no login or fragment, plain
``http``/``ws`` only for a server on this machine (tests, development), and in production no
loopback or private addresses at all (nobody may point Hashroom at its own network).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import SplitResult, urlsplit

_HOST_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
DEFAULT_PORTS = {"https": 443, "http": 80, "wss": 443, "ws": 80}


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    ip = _ip(host)
    return ip is not None and ip.is_loopback


def check_address(
    raw: Any,
    field: str,
    *,
    secure: str,
    plain: str,
    allow_local: bool,
    example: str,
    max_length: int = 500,
) -> SplitResult:
    """``urlsplit`` of a checked address, with a lower-case scheme and a normalised host
    (IDNA, IPv6 in brackets, default port dropped). Raises ValueError naming ``field``."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(f"{field}: give an address, e.g. {example}")
    text = raw.strip()
    if len(text) > max_length:
        raise ValueError(f"{field}: the address is too long")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{field}: {text!r} is not a valid address") from exc
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in (secure, plain):
        raise ValueError(f"{field}: use a {secure}:// address, e.g. {example}")
    if not host:
        raise ValueError(f"{field}: {text!r} has no host name")
    if parts.username or parts.password or parts.fragment:
        raise ValueError(f"{field}: give the address without a login or #fragment")
    ip = _ip(host)
    if ip is None:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError as exc:
            raise ValueError(f"{field}: {host!r} is not a valid host name") from exc
        if not _HOST_RE.match(host):
            raise ValueError(f"{field}: {host!r} is not a valid host name")
    local = is_loopback(host)
    if scheme == plain and not local:
        raise ValueError(
            f"{field}: use {secure}:// ({plain}:// is only accepted for a server on this machine)"
        )
    if not allow_local and (
        local or (ip is not None and (ip.is_private or ip.is_link_local or ip.is_reserved))
    ):
        raise ValueError(f"{field}: {host} is a local or private address; use a public one")
    shown = f"[{host}]" if ip is not None and ip.version == 6 else host
    if port is not None and port != DEFAULT_PORTS.get(scheme):
        shown = f"{shown}:{port}"
    return parts._replace(scheme=scheme, netloc=shown)
