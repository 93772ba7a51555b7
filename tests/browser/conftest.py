"""Browser tests: Debian's chromium, driven by Playwright, against real server processes.

Without /usr/bin/chromium (or the playwright package) they are skipped and the run
says so; with BROWSER_TESTS_REQUIRED=1 (set by .ci/run) they fail instead. Playwright
never downloads a browser here: it only launches the one the system has.
"""

import json
import os
from pathlib import Path

import pytest

from tests.e2e.conftest import servers, sqlite_env  # noqa: F401 (fixtures used here)

# Debian's package; CHROMIUM_PATH points elsewhere (or nowhere, to see the skip).
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browser_unavailable() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found: browser tests not run (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed: browser tests not run"
    return None


def pytest_collection_modifyitems(config, items):
    reason = browser_unavailable()
    if reason is None:
        return
    if os.environ.get("BROWSER_TESTS_REQUIRED") == "1":
        raise pytest.UsageError(f"BROWSER_TESTS_REQUIRED=1 but {reason}")
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def browser():
    """One headless chromium per test module; each test opens its own contexts."""
    from playwright.sync_api import expect, sync_playwright

    # A bound for a loaded two-core CI machine, not a wait: expect() returns as soon as it holds.
    expect.set_options(timeout=15_000)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def server(sqlite_env, servers):  # noqa: F811
    """A production-like `serve` (uvicorn, DEBUG off) on a fresh SQLite database."""
    return servers(sqlite_env)[0]


@pytest.fixture
def server_with(sqlite_env, servers):  # noqa: F811
    """`server_with(CHAT_MAX_CONTENT="200", ...)`: a `serve` with these settings."""
    return lambda command="serve", **settings: servers({**sqlite_env, **settings}, command=command)[0]


@pytest.fixture
def new_page(browser):
    """Open pages, each in its own context (its own cookies, like another person)."""
    contexts = []

    def open_page(url: str, init_script: str | None = None, **options):
        context = browser.new_context(**options)
        contexts.append(context)
        if init_script is not None:  # runs in every document of the context, before its scripts
            context.add_init_script(init_script)
        page = context.new_page()
        page.dialogs = []  # every alert() the page fires; XSS tests expect none
        page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
        page.console_errors = []
        page.on("pageerror", lambda error: page.console_errors.append(str(error)))
        page.frames_sent = []  # every WebSocket frame the page sent, decoded
        page.frames_received = []  # every WebSocket frame the page received, decoded
        page.socket_urls = []  # the address of every WebSocket the page opened

        def opened(socket) -> None:
            page.socket_urls.append(socket.url)
            socket.on("framesent", lambda payload: page.frames_sent.append(json.loads(payload)))
            socket.on("framereceived", lambda payload: page.frames_received.append(json.loads(payload)))

        page.on("websocket", opened)
        page.goto(url)
        return page

    yield open_page
    for context in contexts:
        context.close()
