"""The README's pictures of a conversation, taken from a real room at desktop and phone
width; the test also checks that the page fits the phone's width with the menu open.

`make screenshots` writes them to docs/screenshots/ (SCREENSHOTS_DIR); otherwise they
go to the test's temporary folder and are only checked.
"""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.pages import ClientThread, create_room, join_room, say

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(150)]

SIZES = {
    "desktop": {"viewport": {"width": 1100, "height": 760}},
    "phone": {"viewport": {"width": 375, "height": 740}, "is_mobile": True, "has_touch": True},
}


def message(page, text: str):
    return page.locator("#messages li.message").filter(has=page.locator(".text", has_text=text))


@pytest.mark.parametrize("size", SIZES)
def test_a_conversation_as_the_readme_shows_it(size, server, new_page, tmp_path):
    folder = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path)
    alice = new_page(server.http, **SIZES[size])
    link = create_room(alice, "Friday plans", "Alice", description="Who brings what", sealed=True)
    bob = new_page(link, **SIZES[size])
    join_room(bob, "Bob")

    say(alice, "Who is bringing snacks on Friday? @Bob")
    say(bob, "Cookies and fruit")
    message(alice, "Cookies").get_by_role("button", name="Message actions").click()
    alice.get_by_role("menuitem", name="Reply").click()
    say(alice, "Perfect, I bring the drinks")
    message(bob, "Cookies").get_by_role("button", name="Message actions").click()
    bob.get_by_role("menuitem", name="Edit").click()
    say(bob, "Cookies, fruit and a cake")
    for page, emoji in ((alice, "👍"), (bob, "👍"), (bob, "🎉")):
        message(page, "drinks").get_by_role("button", name="Message actions").click()
        page.get_by_role("menuitem", name="React").click()
        page.locator("#emoji-picker").get_by_role("button", name=emoji, exact=True).click()
    expect(message(alice, "drinks").locator("button.reaction")).to_have_text(["👍 2", "🎉 1"])
    expect(message(alice, "Cookies, fruit").locator(".edited")).to_have_text("edited")
    expect(message(bob, "snacks")).to_have_class(re.compile(r"\bmentions-me\b"))

    runner = ClientThread()
    try:
        carol = runner.connect(server.url)
        runner.run(carol.join_room(link, "Carol"))
        runner.run(carol.typing())
        expect(alice.locator("#typing")).to_have_text("Carol is typing…")
        if size == "desktop":
            alice.screenshot(path=folder / "conversation-desktop.png")
            alice.emulate_media(color_scheme="dark")  # the system's dark scheme
            alice.screenshot(path=folder / "conversation-desktop-dark.png")
            assert (folder / "conversation-desktop-dark.png").stat().st_size > 10_000
            alice.emulate_media(color_scheme="light")
    finally:
        runner.stop()

    # With the menu open on a phone nothing leaves the screen sideways.
    message(bob, "drinks").get_by_role("button", name="Message actions").click()
    menu = bob.get_by_role("menu")
    expect(menu).to_be_visible()
    width = SIZES[size]["viewport"]["width"]
    box = menu.bounding_box()
    assert box is not None and 0 <= box["x"] and box["x"] + box["width"] <= width
    assert bob.evaluate("document.documentElement.scrollWidth") <= width
    picture = folder / ("conversation-phone-menu.png" if size == "phone" else "conversation-desktop.png")
    if size == "phone":
        bob.screenshot(path=picture)
    for page in (alice, bob):
        assert page.console_errors == []
    assert picture.stat().st_size > 10_000
