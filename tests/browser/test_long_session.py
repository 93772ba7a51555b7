"""A tab left open in a busy room stays bounded: past MESSAGES_KEPT (app.js) the oldest
messages leave the page while it shows the newest, their image previews' blob URLs are
revoked, and scrolling up reads them back as older pages. Scrolled up, it stays bounded
too, and what the person reads does not move. What the page remembers of deletes and of
a sealed room's file cards stays bounded as well. bench/long_session.py measures the
same over thousands of messages."""

import base64

import pytest
from playwright.sync_api import expect

from chatclient.crypto import encrypt
from tests.browser.pages import PythonClient, create_room, join_key_of, join_room, message_item, wait_until
from tests.browser.test_catch_up import GAP_NOTE, SOCKETS_SCRIPT, come_back, go_offline
from tests.browser.test_files import tiny_png

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120)]

KEPT = 500  # app.js, MESSAGES_KEPT
FAST = {
    "CHAT_RATE_BURST": "100000",
    "CHAT_RATE_SUSTAINED": "100000",
    "CHAT_BYTES_PER_ADDRESS_BURST": "100000000",
    "CHAT_BYTES_PER_ADDRESS_SUSTAINED": "100000000",
}

# An init script: the blob URLs the page holds (created and not revoked).
BLOBS_SCRIPT = """
window.__blobs = new Set();
const create = URL.createObjectURL, revoke = URL.revokeObjectURL;
URL.createObjectURL = (blob) => { const url = create(blob); window.__blobs.add(url); return url; };
URL.revokeObjectURL = (url) => { window.__blobs.delete(url); revoke(url); };
"""


def flood(client: PythonClient, count: int, batch: int = 200, first: int = 0, sealed: bool = False) -> None:
    """`count` messages "m0", "m1"... (from "m{first}"; `sealed`: in a sealed room, as
    join_sealed's member): `batch` in flight at a time, each batch stored."""
    for start in range(first, first + count, batch):
        sent = range(start, min(start + batch, first + count))
        for i in sent:
            client.send_sealed({"t": "text", "body": f"m{i}"}) if sealed else client.say(f"m{i}")
        for _ in sent:
            client.expect("ChatMessage")


def shown(page) -> int:
    return page.locator("#messages li.message").count()


def test_a_busy_room_keeps_the_newest_messages_and_scrolling_up_brings_the_rest_back(server_with, new_page):
    server = server_with(**FAST)
    alice = new_page(server.http)
    link = create_room(alice, "Busy", "Alice")
    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        flood(bob, KEPT + 150)
    texts = alice.locator("#messages li.message .text")
    expect(texts.last).to_have_text(f"m{KEPT + 149}")
    assert shown(alice) == KEPT
    expect(texts.first).to_have_text("m150")
    # The start of the room is no longer on the page: the button reads it back.
    expect(alice.locator("#history-start")).to_be_hidden()
    older = alice.get_by_role("button", name="Load older messages")
    while texts.first.text_content() != "m0":
        count = shown(alice)
        older.click()
        expect(texts).not_to_have_count(count)
    older.click()  # a full page held m0: the next one, empty, says it was the start
    expect(alice.locator("#history-start")).to_be_visible()
    assert texts.all_text_contents() == [f"m{i}" for i in range(KEPT + 150)]
    assert alice.console_errors == []


def test_previews_of_messages_that_left_the_page_are_revoked(server_with, new_page):
    server = server_with(**FAST)
    alice = new_page(server.http, init_script=BLOBS_SCRIPT)
    link = create_room(alice, "Pictures", "Alice")
    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        for i in range(3):
            content = base64.b64encode(tiny_png(i + 1, 2)).decode()
            bob.send(type="UploadFile", name=f"dot {i}.png", mime_type="image/png", content=content)
            bob.expect("FileUploaded")
        expect(alice.locator("#messages img.preview")).to_have_count(3)
        assert alice.evaluate("() => window.__blobs.size") == 3
        flood(bob, KEPT)
    expect(alice.locator("#messages li.message .text").last).to_have_text(f"m{KEPT - 1}")
    assert alice.evaluate("() => window.__blobs.size") == 0
    assert shown(alice) == KEPT
    expect(alice.locator("#messages li.file")).to_have_count(0)
    assert alice.console_errors == []


# The first message in view in the list, and where it is on screen (from the list's top).
FIRST_IN_VIEW = """(list) => {
  const top = list.getBoundingClientRect().top;
  const item = [...list.querySelectorAll("li.message")].find((i) => i.getBoundingClientRect().bottom > top);
  return [item.querySelector(".text").textContent, item.getBoundingClientRect().top - top];
}"""


# Scrolled nearer the list's start than its end: the tab trims the newest (trimNewest).
NEAR_THE_START = "(list) => { list.scrollTop = list.scrollHeight / 4; }"


def older_pages(page) -> int:
    """The History pages of older messages (GetHistory's answers) the page has received."""
    return sum("before" in frame for frame in page.frames_received)


def more_came_while_scrolled(
    server_with, new_page, room: str, scroll: str, more: int, init_script=None, then=None
):
    """Alice's page shows m0-m499 in `room`, she scrolls the list (`scroll`, a function of
    it in JavaScript), and Bob says `more` after them, then does `then(alice, bob)` if
    given; returns her page and the first item in view, with its offset, before they came
    (FIRST_IN_VIEW)."""
    server = server_with(**FAST)
    alice = new_page(server.http, init_script=init_script)
    link = create_room(alice, room, "Alice")
    texts = alice.locator("#messages li.message .text")
    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        flood(bob, KEPT)
        expect(texts.last).to_have_text(f"m{KEPT - 1}")
        alice.locator("#messages").evaluate(scroll)
        place = alice.locator("#messages").evaluate(FIRST_IN_VIEW)
        flood(bob, more, first=KEPT)
        expect(texts.last).to_have_text(f"m{KEPT + more - 1}")
        if then is not None:
            then(alice, bob)
    return alice, place


def test_a_tab_scrolled_up_near_the_start_keeps_its_place_and_a_marker_for_what_went(server_with, new_page):
    """Scrolled up to m125 or so of m0-m499, 300 more come: the list keeps 500, and what
    is in view stays where it is on screen. m450-m749 went, just above the newest 50,
    and a marker says so there; the list's end ("Jump to latest") shows the newest, and
    the marker's button brings the rest back."""
    alice, place = more_came_while_scrolled(server_with, new_page, "Reading", NEAR_THE_START, 300)
    texts, listing = alice.locator("#messages li.message .text"), alice.locator("#messages")
    assert shown(alice) == KEPT
    assert listing.evaluate(FIRST_IN_VIEW) == place
    gap = alice.locator("#messages li.gap")
    expect(gap).to_have_count(1)
    expect(alice.locator("#messages li.message:has(+ li.gap) .text")).to_have_text("m449")
    expect(alice.locator("#messages li.gap + li.message .text")).to_have_text("m750")
    alice.get_by_role("button", name="Jump to latest").click()
    expect(texts.last).to_be_in_viewport()
    gap.get_by_role("button", name="Show them").click()
    expect(gap).to_have_count(0, timeout=20_000)
    assert texts.all_text_contents() == [f"m{i}" for i in range(800)]
    assert alice.console_errors == []


TRIM_NOTE = "Some messages are not shown here to save memory."  # app.js, GAP_WORDS


def test_a_marker_for_what_the_tab_took_off_does_not_say_it_was_missed(server_with, new_page):
    """The marker of m450-m749, which the tab showed and took off while scrolled near the
    start, says they are not shown to save memory (not that they were missed), with a
    problem too, and after it; its messages shown are told as messages, not missed ones.
    Back online, the catch-up leaves them off: the marker still stands for m450-m749."""
    alice, _ = more_came_while_scrolled(server_with, new_page, "Trimmed", NEAR_THE_START, 300, SOCKETS_SCRIPT)
    gap = alice.locator("#messages li.gap")
    note = gap.locator(".gap-note")
    expect(note).to_have_text(TRIM_NOTE)
    go_offline(alice)
    gap.get_by_role("button", name="Show them").click()
    expect(note).to_have_text(f"{TRIM_NOTE} Not connected. Try again once reconnected.")
    come_back(alice, "Trimmed")
    wait_until(alice, lambda: older_pages(alice) == 3, "the catch-up")
    expect(alice.locator("#messages li.gap + li.message .text")).to_have_text("m750")
    expect(note).to_have_text(TRIM_NOTE)
    gap.get_by_role("button", name="Show them").click()
    expect(gap).to_have_count(0, timeout=20_000)
    expect(alice.locator("#announcements")).to_have_text("300 messages shown.")
    assert alice.locator("#messages li.message .text").all_text_contents() == [f"m{i}" for i in range(800)]
    assert alice.console_errors == []


def test_back_online_the_catch_up_leaves_what_the_tab_took_off_with_its_marker(server_with, new_page):
    """The tab, scrolled near the start, took m450-m749 off; its socket drops, and Bob
    says n1 and n2 meanwhile. Back online, the catch-up reads the room back and tells only
    n1 and n2 as missed: what the tab took off stays behind its marker, and the list keeps
    500 (the catch-up read m502-m749 in again, told 250 missed messages, and left 750)."""

    def away(alice, bob):
        go_offline(alice)
        bob.said("n1", "n2")
        come_back(alice, "Kept off")
        texts = alice.locator("#messages li.message .text")
        expect(texts.last).to_have_text("n2")
        wait_until(alice, lambda: older_pages(alice) == 3, "the catch-up's three pages")
        expect(texts).to_have_count(KEPT)
        expect(alice.locator("#announcements")).to_have_text("2 missed messages.")

    alice, _ = more_came_while_scrolled(
        server_with, new_page, "Kept off", NEAR_THE_START, 300, SOCKETS_SCRIPT, away
    )
    gap = alice.locator("#messages li.gap")
    expect(gap.locator(".gap-note")).to_have_text(TRIM_NOTE)
    expect(alice.locator("#messages li.message:has(+ li.gap) .text")).to_have_text("m449")
    expect(alice.locator("#messages li.gap + li.message .text")).to_have_text("m752")
    assert alice.console_errors == []


# The marker's button is no longer reading (or the marker is gone).
MARKER_READ = """() => {
  const button = document.querySelector("#messages li.gap button");
  return !button || button.getAttribute("aria-disabled") !== "true";
}"""


def test_a_marker_for_both_missed_and_taken_off_messages_says_they_were_missed(server_with, new_page):
    """The tab, scrolled near the start, took m450-m749 off; offline, it misses m800-m1219,
    and its catch-up (a History of 5 and three pages) leaves m800-m914 marked missed. Its
    end takes off the 305 past 500, which joins the two markers in one, from m450 to
    m1169: it says they were missed (some were never shown; it said they were taken off
    to save memory), and its button brings them all back."""

    def away(alice, bob):
        go_offline(alice)
        bob.said(*(f"m{i}" for i in range(800, 1220)))
        come_back(alice, "Both")
        wait_until(alice, lambda: older_pages(alice) == 3, "the catch-up")

    limited = lambda **settings: server_with(CHAT_HISTORY_LIMIT="5", **settings)  # noqa: E731
    alice, _ = more_came_while_scrolled(limited, new_page, "Both", NEAR_THE_START, 300, SOCKETS_SCRIPT, away)
    gap = alice.locator("#messages li.gap")
    expect(alice.locator("#messages li.message .text")).to_have_count(KEPT)
    expect(gap).to_have_count(1)
    expect(alice.locator("#messages li.message:has(+ li.gap) .text")).to_have_text("m449")
    expect(alice.locator("#messages li.gap + li.message .text")).to_have_text("m1170")
    expect(gap.locator(".gap-note")).to_have_text(GAP_NOTE)
    show = gap.get_by_role("button", name="Show them")
    while gap.count():  # three pages a click
        show.click()
        wait_until(alice, lambda: alice.evaluate(MARKER_READ), "the marker's pages", within=20)
    assert alice.locator("#messages li.message .text").all_text_contents() == [f"m{i}" for i in range(1220)]
    assert alice.console_errors == []


# An init script: a browser without CSS scroll anchoring (Safari), where the page keeps
# what is in view in place itself.
NO_SCROLL_ANCHORING = """
const supports = CSS.supports.bind(CSS);
CSS.supports = (...args) => !String(args[0]).includes("overflow-anchor") && supports(...args);
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("messages").style.overflowAnchor = "none";
});
"""


@pytest.mark.parametrize("init_script", [None, NO_SCROLL_ANCHORING], ids=["anchoring", "no-anchoring"])
def test_scrolled_up_near_the_end_the_oldest_go_and_the_view_stays(server_with, new_page, init_script):
    """Scrolled up a little from the end of m0-m499, 100 more come: the oldest 100 go,
    and what is in view stays where it is on screen (within a pixel), with the browser's
    scroll anchoring or without."""
    scroll = "(list) => { list.scrollTop = list.scrollHeight - 2 * list.clientHeight; }"
    alice, place = more_came_while_scrolled(server_with, new_page, "Reading on", scroll, 100, init_script)
    texts, listing = alice.locator("#messages li.message .text"), alice.locator("#messages")
    assert shown(alice) == KEPT
    expect(texts.first).to_have_text("m100")
    first, offset = listing.evaluate(FIRST_IN_VIEW)
    assert first == place[0] and abs(offset - place[1]) < 1
    expect(alice.locator("#messages li.gap")).to_have_count(0)
    assert alice.console_errors == []


# The list scrolled to the gap's marker: the marker at the bottom of the view, the messages
# above it in view; or the message below it at the top of the view.
TO_THE_MARKER = {
    "above": """(list) => {
      const marker = list.querySelector("li.gap");
      list.scrollTop += marker.getBoundingClientRect().bottom - list.getBoundingClientRect().bottom;
    }""",
    "below": """(list) => {
      const below = list.querySelector("li.gap + li");
      list.scrollTop += below.getBoundingClientRect().top - list.getBoundingClientRect().top;
    }""",
}


@pytest.mark.parametrize("init_script", [None, NO_SCROLL_ANCHORING], ids=["anchoring", "no-anchoring"])
@pytest.mark.parametrize("where", TO_THE_MARKER)
def test_what_a_marker_brings_back_goes_in_and_the_view_stays(server_with, new_page, where, init_script):
    """Scrolled to the marker of m450-m749 (taken off while the tab was scrolled near the
    start), above it or below it, the person presses its button: the messages go in above
    the marker, and the marker goes; what is in view stays where it is on screen (within
    a pixel), with the browser's scroll anchoring or without."""
    alice, _ = more_came_while_scrolled(server_with, new_page, "Back in", NEAR_THE_START, 300, init_script)
    listing = alice.locator("#messages")
    listing.evaluate(TO_THE_MARKER[where])
    place = listing.evaluate(FIRST_IN_VIEW)
    assert (int(place[0][1:]) < 450) == (where == "above"), place
    # A click from the page's script: nothing is scrolled into view for it.
    alice.locator("#messages li.gap button").evaluate("(button) => button.click()")
    expect(alice.locator("#messages li.gap")).to_have_count(0, timeout=20_000)
    first, offset = listing.evaluate(FIRST_IN_VIEW)
    assert first == place[0] and abs(offset - place[1]) < 1, (first, offset, place)
    assert shown(alice) == 800
    assert alice.console_errors == []


def test_a_marker_closed_from_the_keyboard_leaves_the_focus_on_the_first_message_it_brought(
    server_with, new_page
):
    """Scrolled to the marker of m450-m749, the person presses its button with the keyboard:
    once they are in and the marker goes, the focus is on m450, the first message it
    brought, to read on from there (it went to m750, below them all), and what is in view
    stays where it is on screen."""
    alice, _ = more_came_while_scrolled(server_with, new_page, "Keyboard", NEAR_THE_START, 300)
    listing = alice.locator("#messages")
    listing.evaluate(TO_THE_MARKER["above"])
    show = alice.locator("#messages li.gap").get_by_role("button", name="Show them")
    show.focus()
    place = listing.evaluate(FIRST_IN_VIEW)
    show.press("Enter")
    expect(alice.locator("#messages li.gap")).to_have_count(0, timeout=20_000)
    expect(message_item(alice, "m450")).to_be_focused()
    first, offset = listing.evaluate(FIRST_IN_VIEW)
    assert first == place[0] and abs(offset - place[1]) < 1, (first, offset, place)
    assert alice.console_errors == []


def test_a_sealed_rooms_page_keeps_the_cards_of_the_files_it_shows(server_with, new_page):
    """A file's first card leaves the page with its message (500 come after it): the page
    no longer holds it, and takes a renamed copy that comes then for the file, as a page
    that never saw the first card would. Once an older page brings the first card back,
    the copy is a message that could not be verified (every card stayed, each shared
    file's for as long as the tab was open)."""
    server = server_with(**FAST)
    alice = new_page(server.http)
    link = create_room(alice, "Sealed and busy", "Alice", sealed=True)
    texts = alice.locator("#messages li.message .text")
    with PythonClient(server.url) as bob:
        bob.join_sealed(link, "Bob")
        card = bob.upload_sealed(b"the minutes\n", "minutes.txt", "text/plain")
        bob.say_sealed(card)
        expect(texts).to_have_text(["File: minutes.txt"])
        flood(bob, KEPT, sealed=True)
        expect(texts.first).to_have_text("m0")
        bob.say_sealed(card | {"name": "agenda.txt"})
        expect(texts.last).to_have_text("File: agenda.txt")
    assert shown(alice) == KEPT
    alice.get_by_role("button", name="Load older messages").click()
    expect(texts.first).to_have_text("File: minutes.txt")
    expect(texts.last).to_have_text("This message could not be verified.")
    assert alice.console_errors == []


def test_a_page_remembers_the_newest_deletes_only(server_with, new_page):
    """Carol's History starts at a reply to m0; m0 deleted, its quote says so. After 500
    more deletes the page no longer remembers that one: the reply, edited, quotes
    "Earlier message", as on a page that never saw the delete, and a click on the quote
    finds out (every deleted id stayed, for as long as the tab was open)."""
    server = server_with(CHAT_HISTORY_LIMIT="5", **FAST)
    alice = new_page(server.http)
    link = create_room(alice, "Tidy", "Alice")
    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        quoted = bob.said("m0")["m0"]
        bob.send(type="ChatMessage", content=encrypt(bob.key, "re: m0"), reply_to=quoted)
        reply = bob.expect("ChatMessage")["id"]
        bob.said("m1", "m2", "m3", "m4")
        carol = new_page(link)
        join_room(carol, "Carol")
        quote = carol.locator("#messages .quote")
        expect(carol.locator("#messages li.message .text")).to_have_text(["re: m0", "m1", "m2", "m3", "m4"])
        expect(quote).to_have_text("Earlier message")
        bob.send(type="DeleteMessage", id=quoted)
        bob.expect("MessageDeleted")
        expect(quote).to_have_text("Deleted message")
        for i in range(KEPT):  # one at a time: the list never scrolls, and asks for no older page
            bob.send(type="DeleteMessage", id=bob.said(f"d{i}")[f"d{i}"])
            bob.expect("MessageDeleted")
        bob.send(type="EditMessage", id=reply, content=encrypt(bob.key, "re: m0, edited"))
        bob.expect("MessageEdited")
    expect(carol.locator(f'#messages li[data-id="{reply}"] .text')).to_have_text("re: m0, edited")
    expect(quote).to_have_text("Earlier message")
    quote.click()
    expect(carol.locator("#message-error")).to_have_text("That message is not in this room any more.")
    assert carol.console_errors == []
