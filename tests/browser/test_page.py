"""The page itself: CSP, static files in both servers, keyboard, phone width, labels."""

import re
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from chat.errors import ErrorCode
from tests.browser.pages import create_room, expect_members, join_room, say
from tests.e2e.servers import manage

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120)]


def fetch(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers, response.read()


def test_page_has_a_strict_csp_and_makes_no_external_request(server, new_page):
    status, headers, body = fetch(f"{server.http}/rooms/abc/")
    assert status == 200
    policy = headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "'self'" in directives["connect-src"] and "blob:" in directives["img-src"]
    assert b"<script>" not in body  # data arrives as json_script, code as a module file

    requests = []
    opened = new_page(server.http)
    opened.on("request", lambda request: requests.append(request.url))
    opened.reload()
    create_room(opened, "Local only", "Ann")
    assert requests and all(url.startswith((server.http, server.url)) for url in requests), requests
    assert opened.console_errors == []


@pytest.mark.parametrize("command", ["serve", "runserver"])
def test_static_files_are_served_by_both_servers(server_with, command):
    """`make serve` (uvicorn, DEBUG off) and `make run` (daphne, DEBUG on) both serve the app."""
    server = server_with(command=command, DJANGO_DEBUG="1" if command == "runserver" else "0")
    status, headers, body = fetch(f"{server.http}/static/chat/app.js")
    assert status == 200 and b"JoinRoom" in body
    assert "javascript" in headers["Content-Type"]
    status, _, body = fetch(server.http)
    assert status == 200 and b'src="/static/chat/app.js"' in body


def test_the_app_runs_from_hashed_files_after_collectstatic(sqlite_env, servers, new_page):
    """Production after `collectstatic`: the page, and every module it imports, by hashed name."""
    manage(sqlite_env, "collectstatic", "--noinput")
    (server,) = servers(sqlite_env)
    page = new_page(server.http)
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.reload()
    create_room(page, "Hashed", "Ann")
    say(page, "from hashed modules")
    expect(page.locator("#messages li .text")).to_have_text(["from hashed modules"])
    static = [url for url in requests if "/static/" in url]
    modules = len(list((Path(__file__).parents[2] / "chat" / "static" / "chat").glob("*.js")))
    assert len(static) == modules + 1, static  # app.css and every module
    assert all(re.search(r"\.[0-9a-f]{12}\.(js|css)$", url) for url in static), static
    assert page.console_errors == []


def test_keyboard_alone_creates_a_room_and_chats(server, new_page):
    """Tab through labelled fields, Enter submits; in the room Enter sends."""
    page = new_page(server.http)
    for _ in range(5):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "create-name":
            break
    expect(page.get_by_label("Room name")).to_be_focused()
    page.keyboard.type("Keys")
    page.keyboard.press("Tab")
    page.keyboard.type("Only the keyboard")
    page.keyboard.press("Tab")  # Password: left empty
    page.keyboard.press("Tab")
    expect(page.locator("#create-form").get_by_label("Your name")).to_be_focused()
    page.keyboard.type("Kim")
    page.keyboard.press("Enter")
    expect(page.locator("#room-name")).to_have_text("Keys")
    expect(page.get_by_label("Message", exact=True)).to_be_focused()
    page.keyboard.type("typed")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("and sent")
    page.keyboard.press("Enter")
    expect(page.locator("#messages li .text")).to_have_text(["typed\nand sent"])
    # back over the message's actions, the list, its buttons and the share link to Leave
    for _ in range(12):
        page.keyboard.press("Shift+Tab")
        if page.evaluate("document.activeElement.id") == "leave":
            break
    expect(page.get_by_role("button", name="Leave")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Create room")).to_be_visible()


def test_copy_button_copies_the_share_link(server, browser):
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.goto(server.http)
    link = create_room(page, "Share me", "Ann")
    page.get_by_role("button", name="Copy link").click()
    expect(page.locator("#copy-status")).to_have_text("Link copied.")
    assert page.evaluate("navigator.clipboard.readText()") == link
    context.close()


def test_phone_width_has_no_horizontal_scroll(server, new_page):
    """At 375 px wide, long names and unbroken text wrap instead of widening the page."""
    phone = {"viewport": {"width": 375, "height": 740}, "is_mobile": True, "has_touch": True}
    alice = new_page(server.http, **phone)
    assert alice.evaluate("document.documentElement.scrollWidth") <= 375
    link = create_room(alice, "R" * 100, "A" * 50, description="D" * 400)
    bob = new_page(link, **phone)
    join_room(bob, "B" * 50)
    say(bob, "unbroken" * 60)
    for page in (alice, bob):
        expect(page.locator("#messages li .text")).to_have_text(["unbroken" * 60])
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        controls = [page.get_by_label("Message", exact=True)]
        controls += [page.get_by_role("button", name=name, exact=True) for name in ("Send", "Leave")]
        for control in controls:
            bounds = control.bounding_box()
            assert bounds and bounds["x"] >= 0 and bounds["x"] + bounds["width"] <= 375, control
    expect_members(bob, "A" * 50, f"{'B' * 50} (you)")


def test_every_control_has_a_visible_label(server, new_page):
    page = new_page(server.http)
    for label in ("Room name", "Description", "Your name", "Sealed room (the server never sees the key)"):
        expect(page.locator("#create-form").get_by_label(label, exact=True)).to_be_visible()
    for label in ("Join key or invitation link", "Password", "Your name"):
        expect(page.locator("#join-form").get_by_label(label, exact=True)).to_be_visible()
    expect(page.locator("#create-form").get_by_label("Password", exact=True)).to_be_visible()
    create_room(page, "Labels", "Ann")
    expect(page.get_by_label("Message", exact=True)).to_be_visible()
    for name in ("Send", "Leave", "Copy link", "Send file"):
        expect(page.get_by_role("button", name=name, exact=True)).to_be_visible()
    expect(page.get_by_role("log")).to_have_attribute("aria-live", re.compile("polite"))
    # A sealed room's link without its fragment asks for the whole link, labelled.
    sealed = new_page(server.http)
    bare = create_room(sealed, "Sealed labels", "Ann", sealed=True).split("#")[0]
    other = new_page(bare)
    expect(other.get_by_label("Whole link", exact=True)).to_be_visible()
    expect(other.get_by_role("button", name="Use this link", exact=True)).to_be_visible()


def test_every_error_code_of_the_server_has_words_on_the_page(server, new_page):
    """chat.errors.ErrorCode is the server's list; the page must say each in its own words
    (invalid_field and forbidden show the server's message, which names the reason)."""
    page = new_page(server.http)
    shown = page.evaluate(
        """async (codes) => {
            const { humanError } = await import("/static/chat/errors.js");
            const say = (code) => humanError({ code, message: "SERVER SAYS" });
            return Object.fromEntries(codes.map((code) => [code, say(code)]));
        }""",
        [code.value for code in ErrorCode],
    )
    server_worded = {"invalid_field", "forbidden"}
    for code, text in shown.items():
        assert text and (text == "SERVER SAYS") == (code in server_worded), (code, text)
