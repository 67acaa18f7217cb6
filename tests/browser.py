"""Real Chromium through Playwright (sync API), for tests of the pages.

Chromium comes from the system (`apt-get install -y chromium`), never from Playwright's own
download. Without it the browser tests skip with that instruction — except on CI, where a
missing browser is a failure.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server import need_tool

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE_JS = Path(__file__).parent / "vendor" / "axe.min.js"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run browser tests last: while Playwright's sync API is open it leaves its event loop
    marked as running in this thread, so async tests after it could not start their loops."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the whole session."""
    need_tool(Path(CHROMIUM).exists(), "apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield b
        b.close()


class PageErrors:
    """Console errors, uncaught exceptions and dialogs (alert() from injected script) seen."""

    def __init__(self) -> None:
        self.console: list[str] = []
        self.exceptions: list[str] = []
        self.dialogs: list[str] = []

    def attach(self, page: Any) -> None:
        page.on("console", lambda m: self.console.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.exceptions.append(str(e)))

        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)


@pytest.fixture
def new_page(browser: Any) -> Iterator[Any]:
    """Factory: ``new_page()`` opens a page in a fresh context (own cookies); errors recorded
    on ``page.errors``."""
    contexts: list[Any] = []

    def factory(**context_options: Any) -> Any:
        ctx = browser.new_context(**context_options)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(10_000)
        page.errors = PageErrors()  # type: ignore[attr-defined]
        page.errors.attach(page)  # type: ignore[attr-defined]
        return page

    yield factory
    for ctx in contexts:
        ctx.close()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Run the vendored axe-core on the page; return its violations (WCAG 2 A/AA rules)."""
    # Evaluated through the devtools protocol, so the page's CSP (no inline script) allows it.
    page.evaluate(AXE_JS.read_text())
    result = page.evaluate(
        """async () => {
            const r = await axe.run(document, {runOnly: {type: 'tag',
                values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}});
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}));
        }"""
    )
    return result


def describe(violations: list[dict[str, Any]]) -> str:
    return json.dumps(violations, indent=1)
