"""A message the page sent just before the connection broke is shown as pending, not lost:
after the page has rejoined on its own and caught up, it is sent again, unless what the
rejoin read back shows the server stored it. Either way everyone gets it exactly once."""

import contextlib
import json
import os
import re
import signal
import time

import pytest
from playwright.sync_api import Page, expect

from tests.browser.pages import PythonClient, create_room, join_key_of, join_room, say, stored_contents

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120)]


def delivered(page: Page) -> list[tuple[int, str]]:
    """(id, text) of every message the page shows as stored (it has a data-id), in order."""
    items = page.locator("#messages li.message[data-id]").evaluate_all(
        "items => items.map(item => [Number(item.dataset.id), item.querySelector('.text').textContent])"
    )
    return [tuple(item) for item in items]


def chat_sent(page: Page) -> list[str]:
    """The content of every ChatMessage frame the page sent, in order."""
    return [frame["content"] for frame in page.frames_sent if frame["type"] == "ChatMessage"]


def wait_until(page: Page, condition, what: str, within: float = 10) -> None:
    """Poll `condition` while Playwright keeps handling events (a route's callbacks too)."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(50)


def test_a_message_sent_to_a_frozen_server_is_pending_then_resent_once(server_with, new_page):
    # Fast presence: the killed process's seats free the names within seconds.
    server = server_with(PRESENCE_HEARTBEAT="0.5", PRESENCE_TIMEOUT="2")
    alice = new_page(server.http)
    link = create_room(alice, "Frozen", "Alice")
    bob = new_page(link)
    join_room(bob, "Bob")
    expect(alice.locator("#members li")).to_have_count(2)
    say(alice, "before")
    for page in (alice, bob):
        expect(page.locator("#messages li.message[data-id] .text")).to_have_text(["before"])
    pending = alice.locator("#messages li.message.pending")
    expect(pending).to_have_count(0)

    # Frozen: the socket stays open, so the page can send, but nothing is read or stored.
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        say(alice, "while frozen")
        wait_until(alice, lambda: len(chat_sent(alice)) == 2, "the page to send the frame")
        frozen = chat_sent(alice)[1]
        expect(alice.get_by_label("Message", exact=True)).to_have_value("")
        expect(pending.locator(".text")).to_have_text(["while frozen"])
        expect(pending.locator(".note")).to_have_text("sending…")
        alice.wait_for_timeout(500)  # and it stays so: no echo, so not shown as sent
        expect(pending).to_have_count(1)
        expect(alice.locator("#messages li.message[data-id]")).to_have_count(1)
    finally:
        server.kill()
    assert frozen not in stored_contents(server.env)  # the dead process never stored it

    expect(alice.locator("#status")).to_have_text(re.compile("Connection lost"))
    expect(pending.locator(".note")).to_have_text("not sent yet, reconnecting…")
    expect(pending.locator(".text")).to_have_text(["while frozen"])
    server.start()  # same port, same SQLite file

    # Nobody is told to reconnect: the pages do it on their own, and Alice's page resends.
    for page in (alice, bob):
        expect(page.locator("#status")).to_have_text("Reconnected to Frozen.", timeout=40_000)
    expect(pending).to_have_count(0)
    for page in (alice, bob):
        expect(page.locator("#messages li.message[data-id] .text")).to_have_text(["before", "while frozen"])
    alice.wait_for_timeout(1000)  # a second copy would have arrived by now

    shown = delivered(alice)
    assert [text for _, text in shown] == ["before", "while frozen"]
    assert delivered(bob) == shown  # the same ids: one stored message each
    expect(pending).to_have_count(0)
    assert stored_contents(server.env).count(frozen) == 1
    # Resent exactly once, as the same ciphertext, after the rejoin's catch-up (one page).
    assert chat_sent(alice)[1:] == [frozen, frozen]
    assert [frame["type"] for frame in alice.frames_sent[-3:]] == ["JoinRoom", "GetHistory", "ChatMessage"]
    assert alice.console_errors == [] and bob.console_errors == []


def test_a_message_stored_whose_echo_was_lost_is_not_resent(server_with, new_page):
    """The server stored the message, but the connection broke before its echo reached the
    page. Forced with a WebSocket route that swallows the echo and then cuts the connection:
    the rejoin's History holds the pending ciphertext, so the page sends nothing again."""
    server = server_with(PRESENCE_HEARTBEAT="0.5", PRESENCE_TIMEOUT="2")
    alice = new_page(server.http)
    sockets = []  # (page side, server side, frames the page got) of each connection
    swallowed = []
    lose_echo = False

    def route(page_side):
        server_side = page_side.connect_to_server()
        received = []
        sockets.append((page_side, server_side, received))

        def to_page(message):
            frame = json.loads(message)
            if lose_echo and frame["type"] == "ChatMessage" and frame["sender"] == "Alice":
                swallowed.append(frame)
                return
            received.append(frame)
            page_side.send(message)

        server_side.on_message(to_page)  # page to server is forwarded as it is

    # The page's reconnects carry the room's affinity hint (`?room=`).
    alice.route_web_socket(re.compile(r"/ws/(\?room=[0-9a-f]{8})?$"), route)
    alice.reload()  # the page's socket now goes through the route
    join_key = join_key_of(create_room(alice, "Lossy", "Alice"))

    with PythonClient(server.url) as bob:
        bob.join(join_key, "Bob")
        bob.say("before")
        before = bob.expect("ChatMessage", sender="Bob")
        expect(alice.locator("#messages li.message[data-id] .text")).to_have_text(["before"])

        lose_echo = True
        say(alice, "echo lost")
        stored = bob.expect("ChatMessage", sender="Alice")  # stored: the server broadcast it
        wait_until(alice, lambda: swallowed, "the echo to reach the route")
        assert swallowed == [stored]
        pending = alice.locator("#messages li.message.pending")
        expect(pending.locator(".text")).to_have_text(["echo lost"])
        expect(pending.locator(".note")).to_have_text("sending…")
        assert stored["content"] in stored_contents(server.env)

        lose_echo = False
        page_side, server_side, _ = sockets[-1]
        server_side.close()
        page_side.close()
        expect(alice.locator("#status")).to_have_text("Reconnected to Lossy.", timeout=30_000)
        expect(pending).to_have_count(0)
        expect(alice.locator("#messages li.message[data-id] .text")).to_have_text(["before", "echo lost"])
        alice.wait_for_timeout(1000)  # a resend would have been sent and echoed by now

        assert delivered(alice) == [(before["id"], "before"), (stored["id"], "echo lost")]
        # The rejoin asked for what came after "before"; its History brought the stored one.
        rejoin = [frame for frame in alice.frames_sent if frame["type"] == "JoinRoom"][-1]
        assert rejoin["since"] == before["id"]
        history = [frame for frame in sockets[-1][2] if frame["type"] == "History"]
        assert [m["content"] for m in history[0]["messages"]] == [stored["content"]]
        # No resend: one ChatMessage frame in all, the catch-up's GetHistory last.
        assert chat_sent(alice) == [stored["content"]]
        assert alice.frames_sent[-1]["type"] == "GetHistory"
        assert stored_contents(server.env).count(stored["content"]) == 1
        # Bob got it once: of all he got since, none is a chat message.
        later = []
        with contextlib.suppress(TimeoutError):
            while True:
                later.append(json.loads(bob.socket.recv(timeout=1))["type"])
        assert "ChatMessage" not in later, later
    assert alice.console_errors == []
