"""The browser app against a real `serve`: create, share, join, chat, members, safety."""

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.pages import create_room, expect_members, join_room, say, stored_contents

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120)]

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "aes_gcm.json").read_text())
XSS = "<img src=x onerror=alert(1)>"


def test_create_share_join_chat_and_leave(server, sqlite_env, new_page):
    """Two people chat through the share link; members update live; only ciphertext is stored."""
    alice = new_page(server.http)
    link = create_room(alice, "Team room", "Alice", password="s3cret", description="Plans for Friday")
    expect(alice.locator("#room-description")).to_have_text("Plans for Friday")
    expect_members(alice, "Alice (you)")
    assert link.startswith(f"{server.http}/rooms/")

    bob = new_page(link)
    expect(bob.get_by_role("button", name="Create room")).to_be_hidden()
    expect(bob.get_by_label("Join key")).to_be_hidden()
    join_room(bob, "Bob", password="s3cret")
    expect(bob.locator("#room-name")).to_have_text("Team room")
    expect_members(bob, "Alice", "Bob (you)")
    expect_members(alice, "Alice (you)", "Bob")

    say(alice, "Hello Bob")
    expect(bob.locator("#messages li .text")).to_have_text(["Hello Bob"])
    expect(bob.locator("#messages li .sender")).to_have_text(["Alice"])
    expect(bob.locator("#messages li time")).to_have_text([re.compile(r"\d")])

    box = bob.get_by_label("Message", exact=True)
    box.fill("first line")
    box.press("Shift+Enter")
    box.type("second line")
    expect(box).to_have_value("first line\nsecond line")  # Shift+Enter did not send
    box.press("Enter")
    expect(box).to_have_value("")
    expect(alice.locator("#messages li .text")).to_have_text(["Hello Bob", "first line\nsecond line"])

    stored = stored_contents(sqlite_env)
    assert len(stored) == 2
    assert not any("Hello" in content or "line" in content for content in stored)

    bob.get_by_role("button", name="Leave").click()
    expect(bob.get_by_role("button", name="Join room")).to_be_visible()
    expect_members(alice, "Alice (you)")
    assert alice.console_errors == [] and bob.console_errors == []
