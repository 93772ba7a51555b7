"""The page survives a server restart: it says so, rejoins with `since`, loses nothing."""

import re

import pytest
from playwright.sync_api import expect

from chatclient.client import affinity_hint
from chatclient.crypto import decrypt
from tests.browser.pages import (
    PythonClient,
    create_room,
    expect_members,
    join_key_of,
    join_room,
    say,
)
from tests.e2e.servers import manage

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120)]


def test_page_reconnects_after_restart_and_shows_missed_messages_once(server_with, new_page):
    # Fast presence, so a participant the old process could not sign out frees its name quickly.
    server = server_with(PRESENCE_HEARTBEAT="0.5", PRESENCE_TIMEOUT="2")
    alice = new_page(server.http)
    link = create_room(alice, "Sturdy", "Alice")
    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        bob.say("before")
        before = bob.expect("ChatMessage", sender="Bob")
        expect(alice.locator("#messages li .text")).to_have_text(["before"])

        # The page may not reconnect before Bob has spoken: keep it offline meanwhile.
        alice.context.set_offline(True)
        server.stop()
        expect(alice.locator("#status")).to_have_text(re.compile("Connection lost. Reconnecting"))
    server.start()

    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        bob.say("missed one")
        bob.say("missed two")
        bob.expect("ChatMessage", sender="Bob")
        bob.expect("ChatMessage", sender="Bob")
        expect(alice.locator("#status")).to_have_text(re.compile("Connection lost"))
        # Typed while down: queued as not sent yet (it was refused, to type again), and
        # sent once the page is back.
        say(alice, "typed offline")
        expect(alice.get_by_label("Message", exact=True)).to_have_value("")
        expect(alice.locator("#messages li.pending .note")).to_have_text("not sent yet, reconnecting…")
        expect(alice.locator("#message-error")).to_be_empty()
        alice.context.set_offline(False)

        expect(alice.locator("#status")).to_have_text("Reconnected to Sturdy.", timeout=30000)
        queued = bob.expect("ChatMessage", sender="Alice")
        assert decrypt(bob.key, queued["content"]) == "typed offline"
        expect(alice.locator("#messages li .text")).to_have_text(
            ["before", "missed one", "missed two", "typed offline"]
        )
        expect(alice.locator("#messages li.pending")).to_have_count(0)
        # Alice came back as herself (her participant_token), so she keeps her place
        # before Bob, who joined anew.
        expect_members(alice, "Alice (you)", "Bob")
        rejoin = [frame for frame in alice.frames_sent if frame["type"] == "JoinRoom"][-1]
        assert rejoin["participant_token"] and rejoin["since"] == before["id"]
        say(alice, "back again")
        received = bob.expect("ChatMessage", sender="Alice")
        assert decrypt(bob.key, received["content"]) == "back again"
        bob.say("live after")
        expect(alice.locator("#messages li .text")).to_have_text(
            ["before", "missed one", "missed two", "typed offline", "back again", "live after"]
        )
    # The page rejoined with `since` and the owner token of the room it created.
    joins = [frame for frame in alice.frames_sent if frame["type"] == "JoinRoom"]
    created = next(frame for frame in alice.frames_sent if frame["type"] == "CreateRoom")
    assert created and joins and all(join["since"] == before["id"] for join in joins)
    assert all(join["owner_token"] and join["name"] == "Alice" for join in joins)
    expect(alice.get_by_label("Share link")).to_have_value(link)
    # The creator's first socket could carry no affinity hint; the reconnects carry the room's.
    queries = [url.partition("/ws/")[2] for url in alice.socket_urls]
    hint = affinity_hint(join_key_of(link))
    assert queries[0] == "" and queries[1:] and set(queries[1:]) == {f"?room={hint}"}


def test_a_page_whose_seat_was_swept_while_it_lived_comes_back_by_itself(server_with, new_page):
    """The server's process stalled past PRESENCE_TIMEOUT and another swept the page's
    seat as a ghost (here: its row marked left, as the sweep does). The heartbeat closes
    the page's socket with 1012; the page reconnects and resumes its seat."""
    server = server_with(PRESENCE_HEARTBEAT="0.5", PRESENCE_TIMEOUT="2")
    alice = new_page(server.http)
    link = create_room(alice, "Stalled", "Alice")
    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        expect_members(alice, "Alice (you)", "Bob")
        code = "from django.utils import timezone\nfrom chat.models import Participant\n"
        code += "Participant.objects.filter(name='Alice').update(left_at=timezone.now())"
        manage(server.env, "shell", "-c", code)
        # (A real sweep tells the room Alice left, and then that she is back; this one
        # was written to the database alone, so Bob, whose join listed her, is told neither.)
        expect(alice.locator("#status")).to_have_text("Reconnected to Stalled.", timeout=15000)
        expect_members(alice, "Alice (you)", "Bob")
        rejoin = [frame for frame in alice.frames_sent if frame["type"] == "JoinRoom"][-1]
        assert rejoin["participant_token"] and len(alice.socket_urls) == 2
        say(alice, "still here")
        received = bob.expect("ChatMessage", sender="Alice")
        assert decrypt(bob.key, received["content"]) == "still here"


@pytest.mark.parametrize("sealed", [False, True], ids=["standard", "sealed"])
def test_page_rejoins_after_the_server_process_is_killed(sealed, server_with, new_page):
    """SIGKILL leaves the page's seat behind as a ghost; the page rejoins once it is swept
    (a sealed room's pages keep their keys across the rejoin)."""
    server = server_with(PRESENCE_HEARTBEAT="0.5", PRESENCE_TIMEOUT="2")
    alice = new_page(server.http)
    link = create_room(alice, "Crash", "Alice", sealed=sealed)
    bob = new_page(link)
    join_room(bob, "Bob")
    say(bob, "first")
    expect(alice.locator("#messages li .text")).to_have_text(["first"])

    server.kill()
    expect(alice.locator("#status")).to_have_text(re.compile("Connection lost"))
    server.start()
    for page in (alice, bob):
        expect(page.locator("#status")).to_have_text(re.compile(r"^Reconnected to Crash\.$"), timeout=40_000)
    say(alice, "after the crash")
    for page in (alice, bob):
        expect(page.locator("#messages li .text")).to_have_text(["first", "after the crash"])
    expect(bob.locator("#members li")).to_have_count(2)


@pytest.mark.parametrize(("sealed", "password"), [(False, "pw"), (True, "")], ids=["standard", "sealed"])
def test_a_page_whose_name_was_taken_while_away_asks_for_another(sealed, password, server_with, new_page):
    """Alice's seat was swept while her page was offline, and Carol joined as "Alice".
    The page's rejoin is refused name_taken: retried while a ghost could hold the name
    (PRESENCE_TIMEOUT + PRESENCE_HEARTBEAT), then the page goes back to its join form,
    filled in as before, to pick another name."""
    server = server_with(PRESENCE_HEARTBEAT="0.5", PRESENCE_TIMEOUT="2")
    alice = new_page(server.http)
    link = create_room(alice, "Crowded", "Alice", password=password, sealed=sealed)
    alice.context.set_offline(True)
    code = "from django.utils import timezone\nfrom chat.models import Participant\n"
    code += "Participant.objects.filter(name='Alice').update(left_at=timezone.now())"
    manage(server.env, "shell", "-c", code)
    with PythonClient(server.url) as carol:
        if sealed:
            carol.join_sealed(link, "Alice")
        else:
            carol.join(join_key_of(link), "Alice", password)
        alice.context.set_offline(False)

        expect(alice.locator("#join-name-error")).to_have_text(
            "Pick another name to join the room again.", timeout=20_000
        )
        expect(alice.locator("#room")).to_be_hidden()
        taken = "Someone else in the room now uses the name Alice."
        expect(alice.locator("#lobby-error")).to_have_text(taken)
        rejoins = [frame for frame in alice.frames_sent if frame.get("participant_token")]
        assert len(rejoins) >= 2, "the refusal was retried while a ghost could hold the name"
        form = alice.locator("#join-form")
        expect(form.get_by_label("Join key")).to_have_value(link)
        expect(form.get_by_label("Password")).to_have_value(password)
        expect(form.get_by_label("Your name")).to_be_focused()
        expect(form.get_by_label("Your name")).to_have_value("Alice")

        form.get_by_label("Your name").fill("Alice again")
        form.get_by_role("button", name="Join room").click()
        expect(alice.locator("#room-name")).to_have_text("Crowded")
        carol.expect("ParticipantJoined", name="Alice again")
        if sealed:
            carol.say_sealed({"t": "text", "body": "hello, other Alice"})
        else:
            carol.say("hello, other Alice")
        expect(alice.locator("#messages li .text")).to_have_text(["hello, other Alice"])


def test_a_message_typed_offline_goes_back_in_the_box_when_the_room_is_gone(server_with, new_page):
    """Queued while the connection was down, it was thrown away with the room when the
    rejoin found the room closed: it goes back in the message box instead."""
    server = server_with()
    alice = new_page(server.http)
    create_room(alice, "Brief", "Alice")
    alice.context.set_offline(True)
    server.stop()
    expect(alice.locator("#status")).to_have_text(re.compile("Connection lost. Reconnecting"))
    say(alice, "typed offline")
    expect(alice.locator("#messages li.pending .note")).to_have_text("not sent yet, reconnecting…")
    code = "from django.utils import timezone\nfrom chat.models import Room\n"
    code += "Room.objects.update(closed_at=timezone.now())"
    manage(server.env, "shell", "-c", code)
    server.start()
    alice.context.set_offline(False)
    expect(alice.locator("#lobby")).to_be_visible(timeout=30000)
    expect(alice.get_by_label("Message", exact=True)).to_have_value("typed offline")
