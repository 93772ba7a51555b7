"""After each rejoin the page reads the room back down to the oldest message it shows:
more missed messages than CHAT_HISTORY_LIMIT leave no gap, and what was edited, reacted
to or deleted (by its author or a moderator) while the page was away is shown as it is."""

import re
import time

import pytest
from playwright.sync_api import Page, expect

from chatclient.crypto import encrypt
from tests.browser.pages import PythonClient, create_room, join_key_of, message_texts
from tests.browser.test_moderation import admin_action, moderator  # noqa: F401 (a fixture)
from tests.browser.test_previews import refuse

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120)]

# An init script: the page's sockets, so that a test can drop the current one.
SOCKETS_SCRIPT = """
window.__sockets = [];
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(...args) { super(...args); window.__sockets.push(this); }
};
"""


def go_offline(page: Page) -> None:
    """The network goes, and the page's socket with it; the page keeps trying."""
    page.context.set_offline(True)
    page.evaluate("() => window.__sockets.at(-1).close()")
    expect(page.locator("#status")).to_have_text(re.compile("Connection lost"))


def come_back(page: Page, room: str) -> None:
    page.context.set_offline(False)
    expect(page.locator("#status")).to_have_text(f"Reconnected to {room}.", timeout=30_000)


def test_more_missed_than_the_history_limit_leaves_no_gap(server_with, new_page):
    server = server_with(CHAT_HISTORY_LIMIT="5")
    alice = new_page(server.http, init_script=SOCKETS_SCRIPT)
    link = create_room(alice, "Gap", "Alice")
    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        for i in range(1, 4):
            bob.say(f"m{i}")
        expect(alice.locator("#messages li .text")).to_have_text(["m1", "m2", "m3"])
        go_offline(alice)
        bob.said(*(f"m{i}" for i in range(4, 16)))
        come_back(alice, "Gap")
        expect(alice.locator("#messages li .text")).to_have_text([f"m{i}" for i in range(1, 16)])
    # The newest page of 100 reaches below m3: one GetHistory was enough.
    pages = [frame for frame in alice.frames_sent if frame["type"] == "GetHistory"]
    assert len(pages) == 1 and pages[0]["limit"] == 100
    assert alice.console_errors == []


def test_edits_reactions_and_deletes_made_while_away_are_shown(server, new_page, moderator):  # noqa: F811
    alice = new_page(server.http, init_script=SOCKETS_SCRIPT)
    link = create_room(alice, "Stale", "Alice")
    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        ids = bob.said("keep me", "delete me", "spam", "last")
        expect(alice.locator("#messages li .text")).to_have_text(["keep me", "delete me", "spam", "last"])

        go_offline(alice)
        edit = encrypt(bob.key, "edited while you were away")
        bob.send(type="EditMessage", id=ids["keep me"], content=edit)
        bob.expect("MessageEdited")
        bob.send(type="React", id=ids["keep me"], emoji="👍", on=True)
        bob.expect("Reactions")
        bob.send(type="DeleteMessage", id=ids["delete me"])
        bob.expect("MessageDeleted")
        admin_action(moderator, f"{server.http}/admin/chat/message/", str(ids["spam"]), "delete_messages")
        bob.expect("MessageDeleted", id=ids["spam"])
        come_back(alice, "Stale")

        expect(alice.locator("#messages li .text")).to_have_text(["edited while you were away", "last"])
        kept = alice.locator(f'#messages li[data-id="{ids["keep me"]}"]')
        expect(kept.locator(".edited")).to_have_text("edited")
        expect(kept.locator(".reaction")).to_have_text(["👍 1"])
        assert message_texts(alice) == ["edited while you were away", "last"]
    assert alice.console_errors == []


def test_the_catch_up_reads_several_pages_and_asks_a_refused_one_again_later(server_with, new_page):
    """120 missed messages past a CHAT_HISTORY_LIMIT of 5 take two pages of 100; the first
    page, refused for its rate, is asked again after a delay, not at once."""
    server = server_with(CHAT_HISTORY_LIMIT="5", CHAT_RATE_BURST="200")
    alice = new_page(server.http, init_script=SOCKETS_SCRIPT)
    asked: list[float] = []  # when each GetHistory reached the route

    def first_page(frame: dict) -> bool:
        if frame["type"] != "GetHistory":
            return False
        asked.append(time.monotonic())
        return len(asked) == 1

    refused = refuse(alice, first_page)
    link = create_room(alice, "Pages", "Alice")
    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        bob.say("m1")
        expect(alice.locator("#messages li .text")).to_have_text(["m1"])
        go_offline(alice)
        bob.said(*(f"m{i}" for i in range(2, 122)))
        come_back(alice, "Pages")
        texts = [f"m{i}" for i in range(1, 122)]
        expect(alice.locator("#messages li.message[data-id] .text")).to_have_text(texts, timeout=20_000)
    alice.wait_for_timeout(500)
    # The newest page (m22-m121), refused once, then the one that reaches m1.
    assert len(refused) == 1 and len(asked) == 3, asked
    assert asked[1] - asked[0] > 1.9  # the refused page, again after the delay
    assert alice.console_errors == []
