"""After each rejoin the page reads the room back down to the oldest message it shows:
more missed messages than CHAT_HISTORY_LIMIT leave no gap, and what was edited, reacted
to or deleted (by its author or a moderator) while the page was away is shown as it is.
Missed messages past its pages are marked where they are missing, with a button that
shows them."""

import json
import re
import time

import pytest
from playwright.sync_api import Page, expect

from chatclient.crypto import encrypt
from tests.browser.pages import PythonClient, create_room, join_key_of, message_texts
from tests.browser.test_moderation import admin_action, moderator  # noqa: F401 (a fixture)
from tests.browser.test_previews import SOCKET, refuse

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120)]

# An init script: the page's sockets, so that a test can drop the current one.
SOCKETS_SCRIPT = """
window.__sockets = [];
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(...args) { super(...args); window.__sockets.push(this); }
};
"""


GAP_NOTE = "Messages you missed are not shown here."  # app.js


def go_offline(page: Page) -> None:
    """The network goes, and the page's socket with it; the page keeps trying."""
    page.context.set_offline(True)
    page.evaluate("() => window.__sockets.at(-1).close()")
    expect(page.locator("#status")).to_have_text(re.compile("Connection lost"))


def come_back(page: Page, room: str) -> None:
    page.context.set_offline(False)
    expect(page.locator("#status")).to_have_text(f"Reconnected to {room}.", timeout=30_000)


def alice_in_a_room(server_with, new_page, room: str, **settings: str):
    """A server with `settings`, and Alice's page (its sockets watched) in a room she
    created; returns the server, her page and the room's link."""
    server = server_with(**settings)
    alice = new_page(server.http, init_script=SOCKETS_SCRIPT)
    return server, alice, create_room(alice, room, "Alice")


def away_and_back(alice, bob, link: str, room: str, last: int, swallowed: list | None = None) -> None:
    """Bob says m1-m3 in Alice's room, then m4 to m{last} while her page is offline, and
    her page is back in the room; with `swallowed`, the first GetHistory it then sends
    (its catch-up's first page) is kept there, never answered."""
    first_three(alice, bob, link)
    if swallowed is not None:
        holding(alice, swallowed, lambda frame: frame["type"] == "GetHistory" and not swallowed)
    away(alice, bob, last)
    come_back(alice, room)


def away(alice, bob, last: int) -> dict[str, int]:
    """Alice's page goes offline, and meanwhile Bob says m4 to m{last}; returns their ids."""
    go_offline(alice)
    return bob.said(*(f"m{i}" for i in range(4, last + 1)))


def test_more_missed_than_the_history_limit_leaves_no_gap(server_with, new_page):
    server, alice, link = alice_in_a_room(server_with, new_page, "Gap", CHAT_HISTORY_LIMIT="5")
    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        for i in range(1, 4):
            bob.say(f"m{i}")
        expect(alice.locator("#messages li .text")).to_have_text(["m1", "m2", "m3"])
        away(alice, bob, 15)
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


def shown_ids(page: Page) -> list[int]:
    ids = page.locator("#messages li.message[data-id]").evaluate_all("(l) => l.map((i) => i.dataset.id)")
    return [int(i) for i in ids]


def holding(page: Page, held: list[dict], holds) -> None:
    """Route the page's sockets so that the frames `holds` picks are never sent on: they
    are kept in `held`, and the page waits for their answers."""

    def route(page_side):
        server_side = page_side.connect_to_server()

        def from_page(message):
            frame = json.loads(message)
            if holds(frame):
                held.append(frame)
            else:
                server_side.send(message)

        page_side.on_message(from_page)
        server_side.on_message(page_side.send)

    page.route_web_socket(SOCKET, route)


def first_three(alice, bob, link: str) -> dict[str, int]:
    """Bob joins Alice's room and says m1-m3, which her page shows; returns their ids."""
    bob.join(join_key_of(link), "Bob")
    ids = bob.said("m1", "m2", "m3")
    expect(alice.locator("#messages li.message .text")).to_have_text(["m1", "m2", "m3"])
    return ids


def test_a_catch_up_that_stops_short_marks_the_gap_and_its_button_shows_the_rest(server_with, new_page):
    """418 missed past a CHAT_HISTORY_LIMIT of 5: the catch-up's three pages reach m122,
    and m4-m121 are left out. A marker says so where they are missing; its button reads
    them in two pages (the first refused for its rate, asked again later), puts them in
    above it in id order, and goes. A message deleted meanwhile stays out, and a reply
    to one in the gap is not taken for a reply to a deleted one."""
    server = server_with(CHAT_HISTORY_LIMIT="5", CHAT_RATE_BURST="500")
    alice = new_page(server.http, init_script=SOCKETS_SCRIPT)
    ids: dict[str, int] = {}
    # The first page of the gap, once.
    refused = refuse(alice, lambda frame: frame.get("before", 0) == ids.get("m122") and not refused)
    link = create_room(alice, "Asleep", "Alice")
    with PythonClient(server.url) as bob:
        ids.update(first_three(alice, bob, link))
        ids.update(away(alice, bob, 420))
        bob.send(type="DeleteMessage", id=ids["m50"])
        bob.expect("MessageDeleted")
        bob.send(type="ChatMessage", content=encrypt(bob.key, "re: m10"), reply_to=ids["m10"])
        ids["re: m10"] = bob.expect("ChatMessage")["id"]
        come_back(alice, "Asleep")

        texts = alice.locator("#messages li.message .text")
        after = [f"m{i}" for i in range(122, 421)] + ["re: m10"]
        expect(texts).to_have_text(["m1", "m2", "m3", *after], timeout=20_000)
        gap = alice.locator("#messages li.gap")
        expect(gap).to_have_count(1)
        expect(gap).to_contain_text(GAP_NOTE)
        expect(alice.locator("#messages li.message:has(+ li.gap) .text")).to_have_text("m3")
        expect(alice.locator("#messages li.gap + li .text")).to_have_text("m122")
        told = alice.locator("#announcements")
        expect(told).to_have_text(re.compile("^Some messages you missed are not shown"))
        reply = alice.locator(f'#messages li[data-id="{ids["re: m10"]}"] .quote')
        expect(reply).to_have_text("Earlier message")

        before_fill = len([frame for frame in alice.frames_sent if frame["type"] == "GetHistory"])
        show = gap.get_by_role("button", name="Show them")
        show.focus()
        show.press("Enter")  # a real button: the keyboard reaches it
        missed = [f"m{i}" for i in range(1, 421) if i != 50]
        expect(texts).to_have_text([*missed, "re: m10"], timeout=20_000)
        expect(gap).to_have_count(0)
        expect(told).to_have_text("117 missed messages shown.")
        expect(reply).to_have_text("Bob: m10")
    shown = shown_ids(alice)
    assert shown == sorted(set(shown))
    # Down from m122: m21-m121 but m50 (refused once, asked again after a delay), then m1-m20.
    pages = [frame for frame in alice.frames_sent if frame["type"] == "GetHistory"][before_fill:]
    assert [page["before"] for page in pages] == [ids["m122"], ids["m122"], ids["m21"]]
    assert len(refused) == 1
    assert alice.console_errors == []


def test_a_sealed_rooms_gap_is_read_and_opened_like_its_other_messages(server_with, new_page):
    server = server_with(CHAT_HISTORY_LIMIT="5", CHAT_RATE_BURST="400")
    alice = new_page(server.http, init_script=SOCKETS_SCRIPT)
    link = create_room(alice, "Sealed gap", "Alice", sealed=True)
    with PythonClient(server.url) as bob:
        bob.join_sealed(link, "Bob")
        for i in range(1, 4):
            bob.say_sealed({"t": "text", "body": f"s{i}"})
        expect(alice.locator("#messages li .text")).to_have_text(["s1", "s2", "s3"])
        go_offline(alice)
        for i in range(4, 321):
            bob.say_sealed({"t": "text", "body": f"s{i}"})
        come_back(alice, "Sealed gap")
        # History s316-s320, then three pages down to s21: s4-s20 are left out.
        texts = alice.locator("#messages li.message .text")
        expect(texts).to_have_text(["s1", "s2", "s3", *(f"s{i}" for i in range(21, 321))], timeout=20_000)
        alice.locator("#messages li.gap").get_by_role("button", name="Show them").click()
        expect(texts).to_have_text([f"s{i}" for i in range(1, 321)], timeout=20_000)
        expect(alice.locator("#messages li.gap")).to_have_count(0)
    assert alice.locator("#messages li.message.chat-text").count() == 320
    assert alice.console_errors == []


def test_a_gap_the_page_trims_down_to_goes_and_older_pages_read_it(server_with, new_page):
    """Messages coming in at the bottom take the oldest past 500 off the page: once m1-m3
    above the gap are gone, so is its marker, and the missed m4-m120 are older messages."""
    server, alice, link = alice_in_a_room(
        server_with, new_page, "Trimmed", CHAT_HISTORY_LIMIT="5", CHAT_RATE_BURST="700"
    )
    with PythonClient(server.url) as bob:
        first_three(alice, bob, link)
        texts = alice.locator("#messages li.message .text")
        away(alice, bob, 420)
        come_back(alice, "Trimmed")
        expect(alice.locator("#messages li.message:has(+ li.gap) .text")).to_have_text("m3", timeout=20_000)
        expect(texts).to_have_count(303)
        bob.said(*(f"m{i}" for i in range(421, 621)))
        expect(texts).to_have_text([f"m{i}" for i in range(121, 621)], timeout=20_000)
        expect(alice.locator("#messages li.gap")).to_have_count(0)
        alice.get_by_role("button", name="Load older messages").click()
        expect(texts.first).to_have_text("m71")
    assert shown_ids(alice) == sorted(set(shown_ids(alice)))
    assert alice.console_errors == []


def test_a_catch_up_cut_short_by_another_drop_marks_its_gap_and_the_next_one_fills_it(server_with, new_page):
    """The socket drops again while the catch-up's first page is unanswered: m4-m15, past
    the rejoin's History, are marked missing (the next rejoin's `since` is above them),
    and the next catch-up, which reads them, takes the marker away."""
    server, alice, link = alice_in_a_room(server_with, new_page, "Twice", CHAT_HISTORY_LIMIT="5")
    swallowed: list[dict] = []  # never answered: the catch-up waits for it
    with PythonClient(server.url) as bob:
        away_and_back(alice, bob, link, "Twice", 20, swallowed)
        texts = alice.locator("#messages li.message .text")
        expect(texts).to_have_text(["m1", "m2", "m3", *(f"m{i}" for i in range(16, 21))])
        go_offline(alice)
        gap = alice.locator("#messages li.gap")
        expect(alice.locator("#messages li.message:has(+ li.gap) .text")).to_have_text("m3")
        come_back(alice, "Twice")
        expect(texts).to_have_text([f"m{i}" for i in range(1, 21)])
        expect(gap).to_have_count(0)
    assert len(swallowed) == 1
    assert alice.console_errors == []


def test_a_quote_into_a_gap_shows_its_message_once_the_page_holding_it_is_in(server_with, new_page):
    """The reply's quote of m120, in a gap of m4-m121: the gap's first page (down from
    m122) brings m120, which is shown then, while the next page is still unanswered
    (the page showed it only once the whole gap was read)."""
    server = server_with(CHAT_HISTORY_LIMIT="5", CHAT_RATE_BURST="500")
    alice = new_page(server.http, init_script=SOCKETS_SCRIPT)
    ids: dict[str, int] = {}
    held: list[dict] = []  # the gap's second page: never answered

    link = create_room(alice, "Quoted", "Alice")
    with PythonClient(server.url) as bob:
        ids.update(first_three(alice, bob, link))
        holding(alice, held, lambda f: f["type"] == "GetHistory" and f["before"] == ids.get("m22"))
        ids.update(away(alice, bob, 420))
        bob.send(type="ChatMessage", content=encrypt(bob.key, "re: m120"), reply_to=ids["m120"])
        ids["re"] = bob.expect("ChatMessage")["id"]
        come_back(alice, "Quoted")
        expect(alice.locator("#messages li.gap")).to_have_count(1, timeout=20_000)
        alice.locator(f'#messages li[data-id="{ids["re"]}"] .quote').click()
        target = alice.locator(f'#messages li.message[data-id="{ids["m120"]}"]')
        expect(target).to_have_class(re.compile(r"\bhighlight\b"), timeout=10_000)
        expect(target).to_be_focused()
        assert held and alice.locator("#messages li.gap").count() == 1
    assert alice.console_errors == []


def test_show_them_reads_three_pages_a_click_and_the_marker_stays_for_the_rest(server_with, new_page):
    """A gap of m4-m370 (667 missed past a History of 5 and the catch-up's 300): one click
    reads three pages (m71-m370), as a catch-up does, leaving the socket's other reads
    to previews and downloads; the marker stays above them, and the next click reads the
    rest and takes it away (the page read the whole gap at once, however long)."""
    server, alice, link = alice_in_a_room(
        server_with, new_page, "Long away", CHAT_HISTORY_LIMIT="5", CHAT_RATE_BURST="800"
    )
    with PythonClient(server.url) as bob:
        away_and_back(alice, bob, link, "Long away", 670)
        texts = alice.locator("#messages li.message .text")
        show = alice.locator("#messages li.gap").get_by_role("button", name="Show them")
        expect(texts).to_have_count(3 + 300, timeout=20_000)
        asked = len([f for f in alice.frames_sent if f["type"] == "GetHistory"])
        show.click()
        expect(alice.locator("#messages li.message:has(+ li.gap) .text")).to_have_text("m3", timeout=20_000)
        expect(alice.locator("#messages li.gap + li.message .text")).to_have_text("m71")
        expect(show).not_to_have_attribute("aria-disabled", "true")
        assert len([f for f in alice.frames_sent if f["type"] == "GetHistory"]) == asked + 3
        show.click()
        expect(alice.locator("#messages li.gap")).to_have_count(0, timeout=20_000)
    assert shown_ids(alice) == sorted(set(shown_ids(alice)))
    assert message_texts(alice)[:6] == ["m1", "m2", "m3", "m4", "m5", "m6"]
    assert alice.console_errors == []


def test_quotes_of_messages_a_gap_turns_out_not_to_hold_say_they_were_deleted(server_with, new_page):
    """Replies to m300 and m10, both deleted while the page was away, quote "Earlier
    message" while the gap (m4-m372) holds them. The first click reads m300's part of it
    and narrows it: m300's quote says it was deleted; the second closes it, and m10's does
    (they said "Earlier message" for good)."""
    server, alice, link = alice_in_a_room(
        server_with, new_page, "Gone meanwhile", CHAT_HISTORY_LIMIT="5", CHAT_RATE_BURST="800"
    )
    with PythonClient(server.url) as bob:
        first_three(alice, bob, link)
        ids = away(alice, bob, 670)
        bob.answered_then_deleted(ids, "m300", "m10")
        come_back(alice, "Gone meanwhile")
        gap = alice.locator("#messages li.gap")
        expect(gap).to_have_count(1, timeout=20_000)
        quotes = alice.locator("#messages .quote")
        expect(quotes).to_have_text(["Earlier message", "Earlier message"])
        show = gap.get_by_role("button", name="Show them")
        show.click()
        expect(alice.locator("#messages li.gap + li.message .text")).to_have_text("m72", timeout=20_000)
        expect(quotes).to_have_text(["Deleted message", "Earlier message"])
        show.click()
        expect(gap).to_have_count(0, timeout=20_000)
        expect(quotes).to_have_text(["Deleted message", "Deleted message"])
    assert alice.console_errors == []


def test_show_them_pressed_while_offline_says_not_connected_until_the_page_is_back(server_with, new_page):
    """Pressed with the socket down, the button reads nothing and its marker says why; once
    the page is in the room again that is over (it said so for good), and it reads them."""
    server, alice, link = alice_in_a_room(
        server_with, new_page, "Offline click", CHAT_HISTORY_LIMIT="5", CHAT_RATE_BURST="500"
    )
    with PythonClient(server.url) as bob:
        away_and_back(alice, bob, link, "Offline click", 420)
        gap = alice.locator("#messages li.gap")
        note = gap.locator(".gap-note")
        expect(note).to_have_text(GAP_NOTE, timeout=20_000)
        go_offline(alice)
        gap.get_by_role("button", name="Show them").click()
        expect(note).to_have_text(f"{GAP_NOTE} Not connected. Try again once reconnected.")
        come_back(alice, "Offline click")
        expect(note).to_have_text(GAP_NOTE)
        gap.get_by_role("button", name="Show them").click()
        expect(gap).to_have_count(0, timeout=20_000)
    assert message_texts(alice) == [f"m{i}" for i in range(1, 421)]
    assert alice.console_errors == []


def test_a_marker_pressed_while_another_gap_is_read_is_read_next(server_with, new_page):
    """A gap of m4-m120 is being read (its page refused for its rate until the test says,
    then asked again) when the next catch-up leaves another, of m421-m430: pressed then,
    that marker says it waits, and is read once the first gap is (the click was lost)."""
    server = server_with(CHAT_HISTORY_LIMIT="5", CHAT_RATE_BURST="800")
    alice = new_page(server.http, init_script=SOCKETS_SCRIPT)
    ids: dict[str, int] = {}
    # From the second drop: its catch-up until the first gap is pressed, and the first
    # gap's pages until the second one is.
    pressed = {"armed": False, "first": False, "second": False}

    def held(frame: dict) -> bool:
        if not pressed["armed"] or frame["type"] != "GetHistory":
            return False
        catch_up = frame["before"] == 2**53 - 1 and not pressed["first"]
        return catch_up or (frame["before"] <= ids["m121"] and not pressed["second"])

    refuse(alice, held)
    link = create_room(alice, "Two gaps", "Alice")
    with PythonClient(server.url) as bob:
        ids.update(first_three(alice, bob, link))
        ids.update(away(alice, bob, 420))
        come_back(alice, "Two gaps")
        gaps = alice.locator("#messages li.gap")
        expect(gaps).to_have_count(1, timeout=20_000)
        pressed["armed"] = True
        go_offline(alice)
        ids.update(bob.said(*(f"m{i}" for i in range(421, 731))))
        come_back(alice, "Two gaps")
        gaps.get_by_role("button", name="Show them").click()
        expect(gaps.first.locator(".gap-note")).to_have_text("Showing the messages you missed…")
        pressed["first"] = True
        expect(gaps).to_have_count(2, timeout=20_000)
        expect(alice.locator("#messages li.message:has(+ li.gap) .text")).to_have_text(["m3", "m420"])
        second = gaps.nth(1)
        second.get_by_role("button", name="Show them").click()
        expect(second.locator(".gap-note")).to_have_text("Waiting to show the messages you missed…")
        pressed["second"] = True
        expect(gaps).to_have_count(0, timeout=30_000)
    assert message_texts(alice) == [f"m{i}" for i in range(1, 731)]
    # The second gap's page went once the first gap's last one was in.
    pages = [frame["before"] for frame in alice.frames_sent if frame["type"] == "GetHistory"]
    assert pages[-1] == ids["m431"] and pages[-2] == ids["m21"]
    assert alice.console_errors == []


def test_exactly_the_history_limit_missed_and_the_catch_up_cut_short_marks_no_gap(server_with, new_page):
    """m4-m8, exactly the rejoin's History (CHAT_HISTORY_LIMIT 5), and the socket drops
    while the catch-up's first page is unanswered: nothing can be between m3 and m4, so
    no marker says that missed messages are not shown (one did, over an empty hole)."""
    server, alice, link = alice_in_a_room(server_with, new_page, "Just five", CHAT_HISTORY_LIMIT="5")
    swallowed: list[dict] = []  # never answered: the catch-up waits for it
    with PythonClient(server.url) as bob:
        away_and_back(alice, bob, link, "Just five", 8, swallowed)
        texts = alice.locator("#messages li.message .text")
        expect(texts).to_have_text([f"m{i}" for i in range(1, 9)])
        go_offline(alice)
        assert alice.locator("#messages li.gap").count() == 0
        expect(alice.locator("#announcements")).not_to_have_text(re.compile("not shown"))
        come_back(alice, "Just five")
        expect(texts).to_have_text([f"m{i}" for i in range(1, 9)])
    assert len(swallowed) == 1
    assert alice.console_errors == []
