"""The one Jinja environment: templates, filters and globals for every page and partial."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

HERE = Path(__file__).parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"

NETWORK_LABELS = {
    "native": "Hashroom",
    "demo": "Demo",
    "mastodon": "Mastodon",
    "bluesky": "Bluesky",
    "x": "X",
}


def _asset_version() -> str:
    """A short hash of the static files, so browsers refetch them after an upgrade."""
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(str(path.stat().st_mtime_ns).encode())
    return digest.hexdigest()[:10]


def initials(name: str) -> str:
    """Up to two letters for an avatar placeholder ("Zoë Ärnström" → "ZÄ")."""
    parts = [p for p in name.replace("@", " ").split() if p[:1].isalnum()]
    if not parts:
        return "?"
    if len(parts) == 1:
        return parts[0][:1].upper()
    return (parts[0][:1] + parts[-1][:1]).upper()


def avatar_hue(handle: str) -> int:
    """A stable colour per author for initials avatars."""
    return int(hashlib.md5(handle.encode(), usedforsecurity=False).hexdigest()[:4], 16) % 360


def network_label(network: str) -> str:
    """The network's display name ("bluesky" → "Bluesky"; unknown ones title-cased)."""
    return NETWORK_LABELS.get(network, network.title())


@functools.lru_cache(maxsize=64)  # a handful of networks; built for every stored post
def network_badge(network: str | None) -> Markup:
    """The small badge naming a post's network."""
    # f-strings of escaped parts: Markup.format runs string.Formatter in Python, several
    # times slower.
    label = escape(network_label(network))  # type: ignore[arg-type]
    return Markup(f'<span class="badge net net-{escape(network or "unknown")}">{label}</span>')


def at(handle: str | None) -> Markup:
    """A handle as displayed: "alice@example.social" and "@alice@example.social" both give
    "@alice@example.social"; nothing for no handle."""
    if not handle:
        return Markup("")
    return Markup(f"@{escape(handle.lstrip('@'))}")


def web_url(url: object) -> Markup:
    """``url``, escaped, when it is an http(s) link; otherwise empty.

    Only web links become hrefs: content from networks is hostile, and a javascript: URL in
    an author profile link would run in our origin.
    """
    if isinstance(url, str) and url.lower().startswith(("https://", "http://")):
        return escape(url)
    return Markup("")


def avatar_colour(handle: str | None) -> str:
    """One of eight colour classes, stable for a given handle, so a person keeps their colour
    (a class, not an inline style: the page's CSP allows no style attributes)."""
    return f"av-c{avatar_hue(handle or '?') % 8}"


def utc_text(iso: str | None) -> Markup:
    """ "2024-05-01T18:03:04.5+00:00" → "2024-05-01 18:03 UTC": readable before the script
    turns it into the viewer's local, relative time. Empty for no time."""
    if not iso:
        return Markup("")
    return Markup(f"{escape(iso[:10])} {escape(iso[11:16])} UTC")


def make_templates(*, reload: bool = True) -> Jinja2Templates:
    """The environment every page and partial renders with.

    ``reload`` re-reads a template whose file changed (for editing in development); without
    it a template is compiled once, and no render checks the file's modification time.
    """
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    env = templates.env
    env.auto_reload = reload
    env.globals["asset_version"] = _asset_version()
    env.globals["network_label"] = network_label
    env.globals["network_badge"] = network_badge
    env.globals["utc_text"] = utc_text
    env.trim_blocks = True
    env.lstrip_blocks = True
    return templates
