"""Browser journeys: Debian's Chromium driven by Playwright against a live portal.

The server is uvicorn in a thread over the test's instance; the browser is /usr/bin/chromium
(``make test`` installs Debian's chromium and a CJK font; Playwright never downloads one).
Screenshots of each journey's steps are kept under ``test-artifacts/e2e/``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from tests.components import conftest as _components

# The component fixtures (registry, people, approved spec) are shared with the journeys.
registry = _components.registry
cast = _components.cast
approved_spec = _components.approved_spec

CHROMIUM = os.environ.get("YUANJIAN_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
# Flags the closed network here needs (no background calls home), as root, headless.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live(app) -> Iterator[str]:
    """The portal served by uvicorn on a loopback port; its base URL."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "the portal did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    t.join(10)


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium under Playwright (one per test session)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield b
    b.close()
    pw.stop()


@dataclass
class Journey:
    """A logged-in browser page of one user, with numbered screenshots."""

    page: object
    name: str
    base: str
    step: int = 0

    def go(self, path: str) -> None:
        """Open a portal path."""
        self.page.goto(self.base + path)  # type: ignore[attr-defined]

    def shot(self, label: str) -> Path:
        """Keep a screenshot of the page as a test artifact."""
        self.step += 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{self.step:02d}-{label}.png"
        self.page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
        return path


@pytest.fixture
def journey(browser, live: str, request: pytest.FixtureRequest):
    """Open a logged-in page: ``journey(username, password)``."""
    contexts = []

    def open_as(username: str, password: str, label: str | None = None) -> Journey:
        ctx = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{live}/login")
        page.fill("#username", username)
        page.fill("#password", password)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/login" not in url)
        name = f"{request.node.name}-{label or username}"
        return Journey(page, name, live)

    yield open_as
    for ctx in contexts:
        ctx.close()
