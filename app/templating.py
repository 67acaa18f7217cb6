"""The one Jinja environment: templates, filters and globals for every page and partial."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi.templating import Jinja2Templates

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


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    env = templates.env
    env.globals["asset_version"] = _asset_version()
    env.globals["network_label"] = lambda n: NETWORK_LABELS.get(n, n.title())
    env.filters["initials"] = initials
    env.filters["avatar_hue"] = avatar_hue
    env.trim_blocks = True
    env.lstrip_blocks = True
    return templates
