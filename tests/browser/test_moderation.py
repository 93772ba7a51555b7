"""What the page shows when a moderator acts in the admin of the same server process."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.pages import create_room, join_room, say
from tests.e2e.servers import manage

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def moderator(sqlite_env, server, new_page):
    """A staff user's page, logged in to /admin/ on the same server (one process, so the
    in-memory layer reaches the chat sockets)."""
    manage(
        {**sqlite_env, "DJANGO_SUPERUSER_PASSWORD": "a-long-moderator-password"},
        *("createsuperuser", "--noinput", "--username", "mod", "--email", "mod@example.org"),
    )
    page = new_page(f"{server.http}/admin/login/")
    page.get_by_label("Username").fill("mod")
    page.get_by_label("Password").fill("a-long-moderator-password")
    page.get_by_role("button", name="Log in").click()
    expect(
        page.get_by_role("link", name="Log out").or_(page.get_by_role("button", name="Log out"))
    ).to_be_visible()
    return page


def admin_action(page, changelist: str, row_link: str, action: str) -> None:
    """Tick the row whose link reads `row_link` and run the action, as a moderator would."""
    page.goto(changelist)
    row = page.locator("#result_list tbody tr").filter(
        has=page.get_by_role("link", name=row_link, exact=True)
    )
    row.locator("input.action-select").check()
    page.locator("select[name=action]").select_option(action)
    page.get_by_role("button", name="Go").click()
    expect(page.locator(".messagelist .success")).to_be_visible()


def test_removed_deleted_and_closed_are_shown_in_words(server, new_page, moderator):
    """MessageDeleted removes the message; kicked and room_closed say what happened, and a
    removed name is kept out (forbidden, with the server's reason)."""
    alice = new_page(server.http)
    link = create_room(alice, "Moderated", "Alice")
    bob = new_page(link)
    join_room(bob, "Bob")
    say(bob, "keep this")
    say(bob, "spam")
    expect(alice.locator("#messages li .text")).to_have_text(["keep this", "spam"])

    spam_id = alice.locator("#messages li").nth(1).get_attribute("data-id")
    admin_action(moderator, f"{server.http}/admin/chat/message/", spam_id, "delete_messages")
    for page in (alice, bob):
        expect(page.locator("#messages li .text")).to_have_text(["keep this"])

    admin_action(moderator, f"{server.http}/admin/chat/participant/?q=Bob", "Bob", "remove_from_room")
    expect(bob.locator("#lobby-error")).to_have_text("An administrator removed you from the room.")
    expect(bob.get_by_role("button", name="Join room")).to_be_visible()
    expect(alice.locator("#members li")).to_have_text(["Alice (you)"])
    join_room(bob, "Bob")
    expect(bob.locator("#join-error")).to_have_text("You were removed from this room; try again later.")

    admin_action(moderator, f"{server.http}/admin/chat/room/", "Moderated", "close_rooms")
    expect(alice.locator("#lobby-error")).to_have_text("An administrator closed this room.")
    expect(alice.locator("#room")).to_be_hidden()
    # The socket closed with 4000; the page's new one works, and the key is dead now.
    alice.locator("#join-form").get_by_label("Join key").fill(link.rstrip("/").rsplit("/", 1)[1])
    alice.locator("#join-form").get_by_label("Your name").fill("Alice")
    alice.get_by_role("button", name="Join room").click()
    expect(alice.locator("#join-key-error")).to_have_text(re.compile("No open room has this join key"))
    assert alice.dialogs == [] and bob.dialogs == []


def test_a_sealed_rooms_whole_link_finds_the_room_without_its_secret_leaving_the_page(
    server, new_page, moderator
):
    """The admin's search finds a room by its share link (production.md, Moderation); a
    sealed room's whole link holds its secret after `#`, which the search form sent in
    its query string (the server's access log, every row's link) though the server never
    reads it."""
    alice = new_page(server.http)
    link = create_room(alice, "Quiet", "Alice", sealed=True)
    secret = link.partition("#k=")[2]
    asked: list[str] = []
    moderator.on("request", lambda request: asked.append(request.url))
    moderator.goto(f"{server.http}/admin/chat/room/")
    moderator.locator("#searchbar").fill(link)
    moderator.locator("#searchbar").press("Enter")
    expect(moderator.locator("#result_list tbody tr")).to_have_count(1)
    expect(moderator.get_by_role("link", name="Quiet", exact=True)).to_be_visible()
    assert any("q=" in url for url in asked), asked
    assert not [url for url in asked if secret in url or "%23" in url], asked
    assert secret not in moderator.content()
