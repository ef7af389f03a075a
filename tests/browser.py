"""Pages in a real headless Chromium (Debian's ``chromium`` driven by Playwright).

Playwright's own browser download does not work on these machines, so it is told to use
the system's Chromium (``TREU_CHROMIUM``, else ``chromium`` on the PATH). Where there is
none, browser tests are skipped with a loud message; ``.ci/run`` sets
``TREU_REQUIRE_BROWSER=1``, which turns that skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu"]


def chromium_path() -> str:
    """The Chromium to drive, or a skip (a failure under ``TREU_REQUIRE_BROWSER=1``)."""
    path = os.environ.get("TREU_CHROMIUM") or shutil.which("chromium")
    missing = None
    if not path or not os.access(path, os.X_OK):
        missing = "no Chromium (install Debian's chromium or set TREU_CHROMIUM)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "Playwright is not installed (make install)"
    if missing is not None:
        message = f"BROWSER TESTS NOT RUN: {missing}"
        if os.environ.get("TREU_REQUIRE_BROWSER") == "1":
            pytest.fail(message + " — TREU_REQUIRE_BROWSER=1 requires them")
        pytest.skip(message)
    assert path is not None
    return path


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free local port, in a thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


@dataclass
class PageLog:
    """What a page did besides rendering: requests that left this machine (refused),
    uncaught script errors, console errors, and answers of 400 and above."""

    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


@contextmanager
def browser_page(base_url: str) -> Iterator[tuple[Any, PageLog]]:
    """A fresh Chromium page that may only talk to ``base_url``: any other request is
    aborted and recorded, so a page that needs the internet fails its test."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    log = PageLog()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()

            def route(route: Any) -> None:
                url = route.request.url
                if url.startswith(base_url + "/") or url == base_url:
                    route.continue_()
                else:
                    log.outside.append(url)
                    route.abort()

            page.route("**/*", route)
            page.on("pageerror", lambda error: log.errors.append(str(error)))
            page.on(
                "console",
                lambda message: (
                    log.console.append(message.text) if message.type == "error" else None
                ),
            )
            page.on(
                "response",
                lambda response: (
                    log.failed.append(f"{response.status} {response.url}")
                    if response.status >= 400
                    else None
                ),
            )
            yield page, log
        finally:
            browser.close()


ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
"""Screenshots of the main pages, for people to look at (not committed)."""


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot of ``page`` as ``test-artifacts/<name>.png``."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def axe_violations(page: Any, *, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
    """What axe-core (the copy inside the ``axe-playwright-python`` wheel: nothing is
    fetched) finds on ``page`` at ``impacts``: one line per violation and element."""
    import axe_playwright_python

    script = (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text()
    page.evaluate(script)
    results = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {node['target']}"
        for v in results["violations"]
        if v["impact"] in impacts
        for node in v["nodes"]
    ]
