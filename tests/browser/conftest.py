"""Browser tests: headless Debian Chromium driven by Playwright, against apps served on 127.0.0.1.

``live_server(app)`` serves an ASGI app with uvicorn on a free loopback port and returns its base
URL. ``browser_page`` is a fresh page (own cookies) that records console messages and Content
Security Policy violations; ``screenshot(name)`` saves a PNG under the test's temporary folder
(pytest keeps the last runs' folders, so they are there to look at after a run).

Chromium comes from Debian (``/usr/bin/chromium``, installed by .ci/run), not from Playwright's
own download. Without it the tests are skipped on a developer's machine; under CI=true they fail,
as the PostgreSQL tests do when their server is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("DAWA_CHROMIUM", "/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"CI=true but the browser tests cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser():
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and not shutil.which(CHROMIUM):
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"Playwright for Python is not installed ({exc}); pip install -e '.[dev]'")
    with sync_playwright() as pw:
        # As root (containers, CI) Chromium's sandbox cannot start; Playwright passes
        # --no-sandbox by default, which is what a throwaway test browser needs.
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


class PageLog:
    """What the page said on its console and which CSP rules it broke."""

    def __init__(self):
        self.console: list[str] = []
        self.errors: list[str] = []

    @property
    def csp_violations(self) -> list[str]:
        return [m for m in self.console + self.errors if "Content Security Policy" in m]


# Runs in every document before its own scripts: a CSP violation shows up as a console line
# even where the browser reports it only as an event.
_CSP_LISTENER = """
window.__cspViolations = 0;
document.addEventListener('securitypolicyviolation', function (e) {
  window.__cspViolations += 1;
  console.error('Content Security Policy violation: ' + e.violatedDirective + ' ' + e.blockedURI);
});
"""


@pytest.fixture
def browser_page(browser, tmp_path):
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    context.add_init_script(_CSP_LISTENER)
    page = context.new_page()
    log = PageLog()
    page.on("console", lambda msg: log.console.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: log.errors.append(str(err)))
    page.dawa_log = log  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        try:  # what the page looked like when the test ended, pass or fail
            page.screenshot(path=str(tmp_path / "screenshots" / "last.png"), full_page=True)
        except Exception:  # noqa: BLE001 - a crashed page has nothing to show
            pass
        context.close()


@pytest.fixture
def screenshot(browser_page, tmp_path):
    """``screenshot("ar-home")`` saves the page as screenshots/ar-home.png in the test's tmp_path, or in
    the folder DAWA_SCREENSHOTS names, to keep them for review."""
    kept = os.environ.get("DAWA_SCREENSHOTS")
    folder = Path(kept) if kept else tmp_path / "screenshots"

    def take(name: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        browser_page.screenshot(path=str(path), full_page=True)
        return path

    return take


class _Server:
    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def live_server():
    """``base_url = live_server(app)``: serve ``app`` on 127.0.0.1 until the test ends."""
    servers: list[_Server] = []

    def serve(app) -> str:
        server = _Server(app)
        servers.append(server)
        return server.start()

    yield serve
    for server in servers:
        server.stop()
