"""Every protocol error the page can meet is shown in words, next to what caused it."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.pages import LATENCY_SCRIPT, create_room, join_key_of, join_room, say

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120)]


def test_join_errors_show_next_to_the_field_and_the_socket_stays_usable(server, new_page):
    """room_not_found by the key, wrong_password by the password, name_taken by the name."""
    alice = new_page(server.http)
    link = create_room(alice, "Locked", "Alice", password="right")
    bob = new_page(server.http)

    join_room(bob, "Bob", join_key="no-such-key")
    expect(bob.locator("#join-key-error")).to_have_text(re.compile("No open room has this join key"))

    join_room(bob, "Bob", password="wrong", join_key=join_key_of(link))
    expect(bob.locator("#join-password-error")).to_have_text("Wrong password for this room.")
    expect(bob.locator("#join-key-error")).to_be_empty()

    join_room(bob, "ALICE", password="right")
    expect(bob.locator("#join-name-error")).to_have_text(re.compile("already uses this name"))
    expect(bob.locator("#join-password-error")).to_be_empty()

    join_room(bob, "Bob", password="right")
    expect(bob.locator("#room-name")).to_have_text("Locked")


def test_share_link_errors_show_on_the_visible_form(server, new_page):
    """On a share link the key field is hidden; a dead key is reported in view, at once
    and again when someone tries to join anyway."""
    page = new_page(f"{server.http}/rooms/dead-key/")
    dead = re.compile("No open room has this join key")
    expect(page.locator("#join-key-error")).to_have_text(dead)
    join_room(page, "Bob")
    expect(page.locator("#join-key-error")).to_be_visible()
    expect(page.locator("#join-key-error")).to_have_text(dead)
    expect(page.get_by_role("button", name="Join room")).to_be_enabled()


def test_share_link_asks_for_a_password_only_when_the_room_has_one(server, new_page):
    alice = new_page(server.http)
    open_link = create_room(alice, "Open", "Alice")
    locked_link = create_room(new_page(server.http), "Locked", "Lee", password="pw")
    expect(new_page(open_link).locator("#join-form").get_by_label("Password")).to_be_hidden()
    locked = new_page(locked_link)
    expect(locked.locator("#join-form").get_by_label("Password")).to_be_visible()
    expect(locked.locator("#join-key-error")).to_be_empty()
    join_room(locked, "Bob", password="pw")
    expect(locked.locator("#room-name")).to_have_text("Locked")


def test_invalid_field_shows_the_servers_reason_next_to_that_field(server, new_page):
    """A name of only an invisible character is refused (invalid_field) beside "Your name"."""
    page = new_page(server.http)
    form = page.locator("#create-form")
    form.get_by_label("Room name").fill("Room")
    form.get_by_label("Your name").fill("\u200b")
    form.get_by_role("button", name="Create room").click()
    # As the page names the field: "Your name holds ...", not "owner_name: holds ...".
    expect(page.locator("#create-owner-error")).to_have_text(re.compile(r"^Your name \w"))
    expect(page.locator("#create-error")).to_be_empty()
    form.get_by_label("Your name").fill("Ann")
    form.get_by_role("button", name="Create room").click()
    expect(page.locator("#room-name")).to_have_text("Room")


def test_required_fields_are_asked_for_before_sending(server, new_page):
    page = new_page(server.http)
    page.get_by_role("button", name="Join room").click()
    expect(page.locator("#join-key-error")).to_have_text("Enter the room's join key.")
    expect(page.get_by_label("Join key")).to_be_focused()


def test_chat_errors_show_by_the_message_box(server_with, new_page):
    """message_too_large keeps the text for editing; a message refused for its rate waits,
    marked so, and is sent again later (tests/browser/test_answers.py)."""
    server = server_with(CHAT_MAX_CONTENT="200", CHAT_RATE_BURST="3", CHAT_RATE_SUSTAINED="0.001")
    page = new_page(server.http)
    create_room(page, "Strict", "Ann")
    long_text = "x" * 300
    say(page, long_text)
    expect(page.locator("#message-error")).to_have_text(re.compile("too long to send"))
    expect(page.get_by_label("Message", exact=True)).to_have_value(long_text)

    say(page, "one")
    expect(page.locator("#message-error")).to_be_empty()
    say(page, "two")
    expect(page.locator("#messages li .text")).to_have_text(["one", "two"])
    say(page, "three")
    expect(page.locator("#messages li.pending .note")).to_have_text(re.compile("too many messages at once"))
    expect(page.locator("#messages li .text")).to_have_text(["one", "two", "three"])
    expect(page.locator("#messages li[data-id] .text")).to_have_text(["one", "two"])
    expect(page.get_by_label("Message", exact=True)).to_have_value("")


def test_a_message_refused_while_the_box_is_in_use_can_be_put_back_or_discarded(server_with, new_page):
    """Refused while the person already types the next one, a message stayed on the page
    as "not sent" for good, with nothing to do about it."""
    server = server_with(CHAT_MAX_CONTENT="200")
    page = new_page(server.http, init_script=LATENCY_SCRIPT)  # the refusal comes 300 ms late
    create_room(page, "Strict", "Ann")
    box = page.get_by_label("Message", exact=True)
    for action in ("Put back in the box", "Discard"):
        say(page, "x" * 300)
        box.fill("the next one")
        refused = page.locator("#messages li.refused")
        expect(refused.locator(".note")).to_have_text(re.compile("not sent: .*too long to send"))
        refused.get_by_role("button", name=action).click()
        expect(refused).to_have_count(0)
        expected = "the next one\n" + "x" * 300 if action == "Put back in the box" else "the next one"
        expect(box).to_have_value(expected)
        expect(box).to_be_focused()
        box.fill("")


def test_files_are_checked_for_type_and_size_before_sending(server_with, new_page):
    """The page refuses what the server would (FILES_MAX_SIZE, FILES_ALLOWED_MIME_TYPES)."""
    server = server_with(FILES_MAX_SIZE="1000", FILES_ALLOWED_MIME_TYPES="image/png,text/html")
    page = new_page(server.http)
    create_room(page, "Files", "Ann")
    file_input = page.get_by_label("File", exact=True)
    send_file = page.get_by_role("button", name="Send file")

    file_input.set_input_files(files=[{"name": "page.html", "mimeType": "text/html", "buffer": b"<p>hi</p>"}])
    send_file.click()
    expect(page.locator("#file-error")).to_have_text(re.compile(r"text/html may not be shared here"))

    big = {"name": "big.png", "mimeType": "image/png", "buffer": b"\x89PNG" + bytes(2000)}
    file_input.set_input_files(files=[big])
    send_file.click()
    too_large = re.compile(r"too large \(2.0 KiB\); the limit is 1000 bytes")
    expect(page.locator("#file-error")).to_have_text(too_large)
    expect(page.locator("#upload")).to_be_hidden()


def test_too_many_wrong_passwords_are_rate_limited_on_the_join_form(server_with, new_page):
    server = server_with(JOIN_FAILURES_PER_MINUTE="1")
    alice = new_page(server.http)
    link = create_room(alice, "Vault", "Alice", password="right")
    bob = new_page(link)
    join_room(bob, "Bob", password="wrong")
    expect(bob.locator("#join-password-error")).to_have_text("Wrong password for this room.")
    join_room(bob, "Bob", password="wrong again")
    expect(bob.locator("#join-error")).to_have_text("Too many wrong passwords; wait a minute.")
    expect(bob.get_by_role("button", name="Join room")).to_be_enabled()


def test_too_many_rooms_from_one_address_says_how_long_to_wait(server_with, new_page):
    """Before, the page said "Wait a moment" where the wait is up to an hour (ROOMS_PER_HOUR)."""
    server = server_with(ROOMS_PER_HOUR="1")
    alice = new_page(server.http)
    create_room(alice, "First", "Alice")
    alice.get_by_role("button", name="Leave").click()
    form = alice.locator("#create-form")
    form.get_by_label("Room name").fill("Second")
    form.get_by_label("Your name").fill("Alice")
    form.get_by_role("button", name="Create room").click()
    expect(alice.locator("#create-error")).to_have_text(
        "Too many rooms from this address (at most 1 an hour); wait an hour."
    )
    expect(form.get_by_role("button", name="Create room")).to_be_enabled()


def test_a_join_without_the_password_says_the_room_needs_one(server, new_page):
    alice = new_page(server.http)
    link = create_room(alice, "Locked", "Alice", password="pw")
    bob = new_page(link)
    join_room(bob, "Bob")  # the password left empty
    expect(bob.locator("#join-password-error")).to_have_text("This room needs a password.")
    join_room(bob, "Bob", password="nope")
    expect(bob.locator("#join-password-error")).to_have_text("Wrong password for this room.")
    join_room(bob, "Bob", password="pw")
    expect(bob.locator("#room-name")).to_have_text("Locked")
