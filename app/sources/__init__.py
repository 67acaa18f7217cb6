"""Networks plugged into the app: one module per network, adapting its protocol module
(``app/networks/<name>.py``) to sources, followers, publishers and sign-in routes.

Each module exposes ``install(app, settings)``, called by :func:`app.main.create_app`. It may
add to ``app.state.source_builders`` (validate a chat's source config and seal its secrets),
append to ``app.state.startup_hooks`` (coroutines run in the lifespan once ``app.state.http``,
``app.state.ingest`` and ``app.state.publishers`` exist, to register follower factories and
publishers). Sign-in routes live in ``app/routes/auth_<name>.py``; the app factory mounts
them, so a source module never imports a router (which would import it back).
"""

from __future__ import annotations

import importlib
import logging

from fastapi import FastAPI

from ..config import Settings

log = logging.getLogger(__name__)

NETWORK_MODULES = ("mastodon", "bluesky", "x")


def install_all(app: FastAPI, settings: Settings) -> list[str]:
    """Install every network module present; returns their names."""
    installed = []
    for name in NETWORK_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        module.install(app, settings)
        installed.append(name)
    return installed
