"""The page's address is the room's share link while in it, whatever the room: a creator
who reloads comes back to the room, and nothing of a room left before stays in the
address (a sealed room's secret least of all). And what the page cannot send while its
socket is down (a reaction, a delete) is said, not silently dropped."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.pages import act_on, create_room, expect_members, join_room, say, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120)]


def test_a_standard_rooms_creator_who_reloads_comes_back_to_the_room_as_its_owner(server, new_page):
    """Before, the address stayed `/`: a reload showed an empty lobby, and without the
    share link copied beforehand there was no way back into the room, nor its ownership."""
    alice = new_page(server.http)
    link = create_room(alice, "Standard", "Alice")
    assert alice.url == link and "#" not in link
    say(alice, "before the reload")
    alice.reload()
    expect(alice.get_by_label("Join key")).to_have_value(re.compile(".+"))
    # Filled in: the name this tab had in the room, so joining resumes that participant.
    expect(alice.locator("#join-name")).to_have_value("Alice")
    join_room(alice, "Alice")
    expect(alice.locator("#room-name")).to_have_text("Standard")
    expect(alice.locator("#messages li .text")).to_have_text(["before the reload"])
    expect(alice.locator("#share")).to_be_visible()  # the owner's share panel: owner again
    assert alice.url == link


def test_leaving_a_sealed_room_for_another_leaves_none_of_its_secret_in_the_address(server, new_page):
    """Before, the address kept the first room's whole link while the page was in the
    second: copying the address to invite people there handed out the first's secret."""
    alice = new_page(server.http)
    sealed = create_room(alice, "Secret", "Alice", sealed=True)
    secret = sealed.split("#k=")[1]
    alice.get_by_role("button", name="Leave").click()
    expect(alice.locator("#lobby")).to_be_visible()
    standard = create_room(alice, "Open", "Alice")
    assert alice.url == standard and secret not in alice.url


def test_a_reaction_or_a_delete_without_a_socket_says_so(server, new_page):
    alice = new_page(server.http)
    create_room(alice, "Offline", "Alice")
    say(alice, "react to me")
    expect(alice.locator("#messages li .text")).to_have_text(["react to me"])
    sockets = []

    def route(page_side) -> None:
        sockets.append(page_side)
        server_side = page_side.connect_to_server()
        page_side.on_message(server_side.send)
        server_side.on_message(page_side.send)

    alice.route_web_socket(re.compile(r"/ws/"), route)
    alice.reload()
    join_room(alice, "Alice")
    expect_members(alice, "Alice (you)")
    alice.context.set_offline(True)  # no new socket opens
    sockets[0].close()
    expect(alice.locator("#status")).to_contain_text("Connection lost")
    act_on(alice, "react to me", "React")
    alice.get_by_role("dialog", name="Add a reaction").get_by_role("button", name="👍", exact=True).click()
    expect(alice.locator("#message-error")).to_have_text("Not connected. Try again once reconnected.")
    alice.context.set_offline(False)
    wait_until(alice, lambda: len(sockets) > 1, "a new socket")
    expect(alice.locator("#status")).not_to_contain_text("Connection lost")
    alice.context.set_offline(True)
    sockets[-1].close()
    expect(alice.locator("#status")).to_contain_text("Connection lost")
    act_on(alice, "react to me", "Delete")
    alice.locator("dialog#confirm-delete").get_by_role("button", name="Delete message").click()
    expect(alice.locator("#message-error")).to_have_text("Not connected. Try again once reconnected.")
    expect(alice.locator("#messages li .text")).to_have_text(["react to me"])
    assert alice.console_errors == []
