"""The page's conversations (PROTOCOL.md, "Conversations"): the message menu, replies,
edits, deletes, reactions, typing, unread messages, mentions, older history and resuming.
Every test runs at a desktop and a phone width."""

import re
import time

import pytest
from playwright.sync_api import expect

from tests.browser.pages import (
    VISIBILITY_SCRIPT,
    WIDTHS,
    ClientThread,
    PythonClient,
    act_on,
    activate,
    create_room,
    expect_members,
    join_key_of,
    join_room,
    message_item,
    open_message_menu,
    say,
    set_visibility,
)
from tests.browser.test_files import file_items, pick

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(180)]

ALL_ACTIONS = ["Reply", "Edit", "Delete", "React"]
EMOJI = ["👍", "❤️", "😂", "🎉", "😮", "😢", "🙏", "👀"]
# Longer than a quote's 80 characters, with no space around the cut.
LONG = "Can we meet on Friday at noon to go over the launch plan, and then the budget for next year as well?"
# The room's name isolated (FSI ... PDI), so that one written right to left keeps its place.
TITLE = "\u2068{}\u2069 · Encrypted chat rooms"

# window.Notification replaced by a recorder: permission "granted" once asked for.
NOTIFICATION_SCRIPT = """
window.__notifications = [];
window.__permissionAsks = 0;
let permission = "default";
class RecordingNotification {
  constructor(title, options = {}) {
    window.__notifications.push({ title: String(title), body: options.body ?? null });
    this.onclick = null;
  }
  static get permission() { return permission; }
  static requestPermission(callback) {
    window.__permissionAsks += 1;
    permission = "granted";
    if (typeof callback === "function") callback(permission);
    return Promise.resolve(permission);
  }
  close() {}
  addEventListener() {}
  removeEventListener() {}
}
window.Notification = RecordingNotification;
"""


@pytest.fixture(params=list(WIDTHS))
def width(request) -> dict:
    """The context options of one width: pass them to new_page."""
    return WIDTHS[request.param]


def two_in_a_room(server, new_page, width, room="Talk", sealed=False, **bob_options):
    """Alice creates the room (its owner), Bob joins through the share link."""
    alice = new_page(server.http, **width)
    link = create_room(alice, room, "Alice", sealed=sealed)
    bob = new_page(link, **width, **bob_options)
    join_room(bob, "Bob")
    expect_members(alice, "Alice (you)", "Bob")
    return alice, bob, link


def frames(page, kind: str) -> list[dict]:
    return [frame for frame in page.frames_sent if frame["type"] == kind]


def received(page, kind: str) -> list[dict]:
    return [frame for frame in page.frames_received if frame["type"] == kind]


def id_of(item) -> int:
    """The stored message's id (one's own shows before it is stored, with none yet)."""
    expect(item).to_have_attribute("data-id", re.compile(r"^\d+$"))
    return int(item.get_attribute("data-id"))


def menu_actions(page, item) -> list[str]:
    """The actions the message's menu offers (its visible items); the menu is closed again."""
    menu = open_message_menu(page, item)
    expect(menu.get_by_role("menuitem").first).to_be_focused()
    actions = menu.get_by_role("menuitem").all_inner_texts()
    page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    return [action.strip() for action in actions]


def chip(page, text: str, emoji: str):
    return message_item(page, text).locator(".reactions button.reaction").filter(has_text=emoji)


def until(page, script: str, within: float = 15) -> None:
    """Poll `script` (a function) in the page until it is true. (wait_for_function evals
    its predicate, which the page's Content-Security-Policy forbids.)"""
    deadline = time.monotonic() + within
    while not page.evaluate(script):
        assert time.monotonic() < deadline, f"still false after {within} s: {script}"
        page.wait_for_timeout(50)


def at_bottom(page) -> None:
    bottom = "() => { const l = document.getElementById('messages');"
    until(page, bottom + " return l.scrollHeight - l.scrollTop - l.clientHeight < 4; }")


def test_message_menu_offers_only_allowed_actions_and_works_by_keyboard(width, server_with, new_page):
    """Edit on one's own text messages only (within the edit window), Delete on one's own
    or (the owner) on any, Reply and React on all; the menu opens, moves and closes by keyboard."""
    server = server_with(CHAT_EDIT_WINDOW="600")
    alice, bob, _ = two_in_a_room(server, new_page, width)
    say(alice, "from Alice")
    say(bob, "from Bob")
    pick(alice, "notes.txt", "text/plain", b"some notes\n")
    for page in (alice, bob):
        expect(page.locator("#messages li.message")).to_have_count(3)
        expect(file_items(page)).to_have_count(1)
        button = message_item(page, "from Alice").get_by_role("button", name="Message actions")
        expect(button).to_have_attribute("aria-haspopup", "menu")
        expect(button).to_have_class(re.compile(r"\bmessage-actions\b"))

    assert menu_actions(alice, message_item(alice, "from Alice")) == ALL_ACTIONS
    assert menu_actions(alice, message_item(alice, "from Bob")) == ["Reply", "Delete", "React"]  # the owner
    assert menu_actions(alice, file_items(alice)) == ["Reply", "Delete", "React"]  # a file: no Edit
    assert menu_actions(bob, message_item(bob, "from Bob")) == ALL_ACTIONS
    assert menu_actions(bob, message_item(bob, "from Alice")) == ["Reply", "React"]
    assert menu_actions(bob, file_items(bob)) == ["Reply", "React"]

    # By keyboard: Enter opens it on the first item, the arrows move, Escape goes back.
    menu = bob.locator("#message-menu")
    button = message_item(bob, "from Bob").get_by_role("button", name="Message actions")
    button.focus()
    button.press("Enter")
    expect(menu).to_be_visible()
    expect(menu).to_have_attribute("role", "menu")
    item = {action: menu.get_by_role("menuitem", name=action, exact=True) for action in ALL_ACTIONS}
    expect(item["Reply"]).to_be_focused()
    bob.keyboard.press("ArrowDown")
    expect(item["Edit"]).to_be_focused()
    bob.keyboard.press("ArrowDown")
    expect(item["Delete"]).to_be_focused()
    bob.keyboard.press("ArrowUp")
    expect(item["Edit"]).to_be_focused()
    bob.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    expect(button).to_be_focused()
    # And an item chosen by keyboard acts: Edit puts the text in the box.
    button.press("Enter")
    expect(item["Reply"]).to_be_focused()
    bob.keyboard.press("ArrowDown")
    bob.keyboard.press("Enter")
    expect(menu).to_be_hidden()
    expect(bob.get_by_label("Message", exact=True)).to_have_value("from Bob")
    context = bob.locator("#composer-context")
    expect(context).to_contain_text("Editing your message")
    activate(bob, context.get_by_role("button", name="Cancel"))
    expect(context).to_be_hidden()

    # The owner deletes a file message: gone from every page.
    activate(
        alice, open_message_menu(alice, file_items(alice)).get_by_role("menuitem", name="Delete", exact=True)
    )
    activate(alice, alice.locator("#confirm-delete").get_by_role("button", name="Delete message"))
    for page in (alice, bob):
        expect(file_items(page)).to_have_count(0)
        expect(page.locator("#messages li.message .text")).to_have_text(["from Alice", "from Bob"])

    # Past the edit window (the page's clock 20 minutes on), one's message is no longer editable.
    bob.clock.install()
    bob.clock.fast_forward("20:00")
    assert menu_actions(bob, message_item(bob, "from Bob")) == ["Reply", "Delete", "React"]
    box = bob.get_by_label("Message", exact=True)
    box.focus()
    box.press("ArrowUp")
    expect(context).to_be_hidden()
    expect(box).to_have_value("")
    for page in (alice, bob):
        assert page.dialogs == [] and page.console_errors == []


@pytest.mark.parametrize("sealed", [False, True], ids=["standard", "sealed"])
def test_reply_edit_delete_and_react(width, sealed, server, new_page):
    alice, bob, link = two_in_a_room(server, new_page, width, sealed=sealed)
    for text in (LONG, "second from Bob", "third from Bob"):
        say(bob, text)
    expect(alice.locator("#messages li.message .text")).to_have_text(
        [LONG, "second from Bob", "third from Bob"]
    )
    original_id = id_of(message_item(alice, LONG))
    box = alice.get_by_label("Message", exact=True)
    context = alice.locator("#composer-context")

    # Reply: the bar says to whom; Cancel drops it; sending carries reply_to.
    act_on(alice, LONG, "Reply")
    expect(context).to_be_visible()
    expect(context).to_contain_text(f"Replying to Bob: {LONG[:20]}")
    activate(alice, context.get_by_role("button", name="Cancel"))
    expect(context).to_be_hidden()
    act_on(alice, LONG, "Reply")
    expect(context).to_contain_text("Replying to Bob")
    say(alice, "Yes, noon works")
    expect(context).to_be_hidden()
    chat = frames(alice, "ChatMessage")
    assert len(chat) == 1 and chat[0]["reply_to"] == original_id
    assert "noon works" not in chat[0]["content"]
    for page in (alice, bob):
        reply = message_item(page, "Yes, noon works")
        quote = reply.locator(".quote")
        expect(quote).to_have_text(re.compile(rf"^Bob: {re.escape(LONG[:80])}…?$"))
        assert quote.evaluate("q => q.tagName") == "BUTTON"
        assert reply.evaluate("li => Boolean(li.querySelector('.quote ~ .text'))")  # the quote comes first
        activate(page, quote)
        original = message_item(page, LONG)
        expect(original).to_have_class(re.compile(r"\bhighlight\b"))
        expect(original).to_be_focused()
        expect(original).to_be_in_viewport()
    reply_id = id_of(message_item(alice, "Yes, noon works"))

    # Edit from the menu: the text comes into the box, Enter sends EditMessage.
    act_on(alice, "Yes, noon works", "Edit")
    expect(box).to_have_value("Yes, noon works")
    expect(context).to_contain_text("Editing your message")
    box.fill("Yes, noon works for me")
    box.press("Enter")
    expect(context).to_be_hidden()
    expect(box).to_have_value("")
    edits = frames(alice, "EditMessage")
    assert [edit["id"] for edit in edits] == [reply_id] and "noon" not in edits[0]["content"]
    assert len(frames(alice, "ChatMessage")) == 1  # an edit, not a new message
    for page in (alice, bob):
        edited = message_item(page, "Yes, noon works for me")
        expect(edited.locator(".meta .edited")).to_have_text("edited")
        expect(edited.locator(".quote")).to_have_count(1)
        expect(page.locator("#messages li.message")).to_have_count(4)

    # ArrowUp in the empty box edits one's last own text message.
    bob_box = bob.get_by_label("Message", exact=True)
    bob_box.focus()
    bob_box.press("ArrowUp")
    expect(bob_box).to_have_value("third from Bob")
    expect(bob.locator("#composer-context")).to_contain_text("Editing your message")
    bob_box.fill("third from Bob, corrected")
    bob_box.press("Enter")
    for page in (alice, bob):
        expect(message_item(page, "third from Bob, corrected").locator(".meta .edited")).to_have_text(
            "edited"
        )
    expect(message_item(alice, "third from Bob")).to_have_count(0)

    # Delete one's own message: a modal dialog; Cancel keeps it, confirming removes it everywhere.
    act_on(bob, "second from Bob", "Delete")
    dialog = bob.locator("dialog#confirm-delete")
    expect(dialog).to_be_visible()
    assert dialog.evaluate("d => d.open && d.matches(':modal')")
    activate(bob, dialog.get_by_role("button", name="Cancel"))
    expect(dialog).to_be_hidden()
    expect(message_item(bob, "second from Bob")).to_have_count(1)
    second_id = id_of(message_item(bob, "second from Bob"))
    act_on(bob, "second from Bob", "Delete")
    activate(bob, dialog.get_by_role("button", name="Delete message"))
    expect(dialog).to_be_hidden()
    for page in (alice, bob):
        expect(message_item(page, "second from Bob")).to_have_count(0)
    assert [frame["id"] for frame in frames(bob, "DeleteMessage")] == [second_id]
    # The owner deletes someone else's message.
    act_on(alice, "third from Bob, corrected", "Delete")
    activate(alice, alice.locator("dialog#confirm-delete").get_by_role("button", name="Delete message"))
    for page in (alice, bob):
        expect(page.locator("#messages li.message .text")).to_have_text([LONG, "Yes, noon works for me"])

    # React: a picker of common emoji; a chip counts, names, and toggles one's own.
    act_on(alice, LONG, "React")
    picker = alice.get_by_role("dialog", name="Add a reaction")
    expect(picker).to_be_visible()
    expect(alice.locator("#emoji-picker")).to_be_visible()
    for emoji in EMOJI:
        expect(picker.get_by_role("button", name=emoji, exact=True)).to_be_visible()
    activate(alice, picker.get_by_role("button", name="👍", exact=True))
    expect(picker).to_be_hidden()
    for page, pressed in ((alice, "true"), (bob, "false")):
        thumbs = chip(page, LONG, "👍")
        expect(thumbs).to_have_text(re.compile(r"^👍\s*1$"))
        expect(thumbs).to_have_attribute("data-names", "Alice")
        expect(thumbs).to_have_attribute("title", re.compile("Alice"))
        if pressed == "true":
            expect(thumbs).to_have_attribute("aria-pressed", "true")
        else:
            expect(thumbs).not_to_have_attribute("aria-pressed", "true")
    activate(bob, chip(bob, LONG, "👍"))
    for page in (alice, bob):
        expect(chip(page, LONG, "👍")).to_have_text(re.compile(r"^👍\s*2$"))
        expect(chip(page, LONG, "👍")).to_have_attribute("data-names", "Alice, Bob")
        expect(chip(page, LONG, "👍")).to_have_attribute("title", re.compile("Alice, Bob"))
    expect(chip(bob, LONG, "👍")).to_have_attribute("aria-pressed", "true")
    activate(alice, chip(alice, LONG, "👍"))  # takes Alice's back
    for page in (alice, bob):
        expect(chip(page, LONG, "👍")).to_have_text(re.compile(r"^👍\s*1$"))
        expect(chip(page, LONG, "👍")).to_have_attribute("data-names", "Bob")
    expect(chip(alice, LONG, "👍")).not_to_have_attribute("aria-pressed", "true")
    reacts = frames(alice, "React")
    assert [(r["id"], r["emoji"], r["on"]) for r in reacts] == [
        (original_id, "👍", True),
        (original_id, "👍", False),
    ]

    # Any emoji, typed; something that is not one is refused in the picker, in words,
    # and not sent (the server would refuse it: tests/chat/test_protocol.py).
    act_on(bob, "Yes, noon works for me", "React")
    bob_picker = bob.get_by_role("dialog", name="Add a reaction")
    bob_picker.get_by_label("Any emoji").fill("🦄")
    activate(bob, bob_picker.get_by_role("button", name="Add", exact=True))
    for page in (alice, bob):
        expect(chip(page, "Yes, noon works for me", "🦄")).to_have_text(re.compile(r"^🦄\s*1$"))
    act_on(bob, "Yes, noon works for me", "React")
    bob_picker.get_by_label("Any emoji").fill("abc")
    activate(bob, bob_picker.get_by_role("button", name="Add", exact=True))
    expect(bob_picker.locator("#emoji-any-error")).to_contain_text("one emoji")
    bob_picker.get_by_label("Any emoji").press("Escape")
    assert {r["emoji"] for r in frames(bob, "React")} == {"👍", "🦄"}
    expect(message_item(alice, "Yes, noon works for me").locator(".reactions button.reaction")).to_have_count(
        1
    )

    # Someone joining later gets all of it from History: the reply, the edit, the reactions.
    carol = new_page(link, **width)
    join_room(carol, "Carol")
    expect(carol.locator("#messages li.message .text")).to_have_text([LONG, "Yes, noon works for me"])
    reply = message_item(carol, "Yes, noon works for me")
    expect(reply.locator(".quote")).to_have_text(re.compile(rf"^Bob: {re.escape(LONG[:80])}…?$"))
    expect(reply.locator(".meta .edited")).to_have_text("edited")
    expect(chip(carol, LONG, "👍")).to_have_text(re.compile(r"^👍\s*1$"))
    expect(chip(carol, LONG, "👍")).to_have_attribute("data-names", "Bob")
    expect(chip(carol, "Yes, noon works for me", "🦄")).to_have_text(re.compile(r"^🦄\s*1$"))
    for page in (alice, bob, carol):
        assert page.dialogs == [] and page.console_errors == []


def test_typing_is_shown_and_cleared_by_the_typists_message(width, server, new_page):
    alice, bob, link = two_in_a_room(server, new_page, width)
    typing = alice.locator("#typing")
    expect(typing).to_have_text("")
    box = bob.get_by_label("Message", exact=True)
    started = time.monotonic()
    box.press_sequentially("hel")
    expect(typing).to_have_text("Bob is typing…")
    expect(bob.locator("#typing")).to_have_text("")  # never oneself
    box.press_sequentially("lo there")
    expect(alice.locator("#typing")).to_have_text("Bob is typing…")
    # At most one every 3 s (11 keys typed: one frame, unless this machine took 3 s for them).
    assert 1 <= len(frames(bob, "Typing")) <= 1 + (time.monotonic() - started) // 3
    assert frames(bob, "Typing")[0] == {"type": "Typing"}
    box.press("Enter")
    expect(alice.locator("#messages li.message .text")).to_have_text(["hello there"])
    expect(typing).to_have_text("")

    thread = ClientThread()
    try:
        clients = {}
        for name in ("Carol", "Dan", "Eve", "Fred"):
            clients[name] = thread.connect(server.url)
            thread.run(clients[name].join_room(link, name))
        expect(alice.locator("#members li")).to_have_count(6)
        for name, shown in (
            ("Carol", "Carol is typing…"),
            ("Dan", "Carol and Dan are typing…"),
            ("Eve", "Carol, Dan and Eve are typing…"),
            ("Fred", "Carol, Dan and 2 others are typing…"),
        ):
            thread.run(clients[name].typing())
            expect(typing).to_have_text(shown)
        thread.run(clients["Carol"].send("done typing"))
        expect(typing).to_have_text("Dan, Eve and Fred are typing…")
        thread.run(clients["Dan"].leave())
        expect(typing).to_have_text("Eve and Fred are typing…")
        expect(bob.locator("#typing")).to_have_text("Eve and Fred are typing…")
    finally:
        thread.stop()
    assert alice.console_errors == [] and bob.console_errors == []


def test_unread_divider_title_count_and_jump_to_latest(width, server_with, new_page):
    server = server_with(CHAT_RATE_BURST="200")
    alice = new_page(server.http, init_script=VISIBILITY_SCRIPT, **width)
    link = create_room(alice, "Unread", "Alice")
    expect(alice).to_have_title(TITLE.format("Unread"))
    bob = new_page(link, **width)
    join_room(bob, "Bob")
    say(bob, "one")
    expect(alice.locator("#messages li.message .text")).to_have_text(["one"])

    # Hidden: the title counts the others' new messages; visible again, it does not.
    set_visibility(alice, "hidden")
    say(bob, "two")
    expect(alice).to_have_title(f"(1) {TITLE.format('Unread')}")
    say(bob, "three")
    expect(alice).to_have_title(f"(2) {TITLE.format('Unread')}")
    set_visibility(alice, "visible")
    expect(alice).to_have_title(TITLE.format("Unread"))

    # Bob leaves and comes back: a divider sits right before the first message he missed.
    expect(bob.locator("#messages li.unread-divider")).to_have_count(0)
    bob.get_by_role("button", name="Leave").click()
    expect_members(alice, "Alice (you)")
    say(alice, "four")
    say(alice, "five")
    expect(alice.locator("#messages li.message .text")).to_have_text(["one", "two", "three", "four", "five"])
    join_room(bob, "Bob")
    expect(bob.locator("#messages li.message .text")).to_have_text(["one", "two", "three", "four", "five"])
    divider = bob.locator("#messages li.unread-divider")
    expect(divider).to_have_count(1)
    expect(divider).to_have_text("New messages")
    expect(bob.locator("#messages li.unread-divider + li.message .text")).to_have_text("four")

    # After a reload too (what was read is kept in localStorage).
    bob.reload()
    expect(bob.get_by_role("button", name="Join room")).to_be_visible()
    expect_members(alice, "Alice (you)")
    say(alice, "six")
    join_room(bob, "Bob")
    expect(bob.locator("#messages li.message .text")).to_have_text(
        ["one", "two", "three", "four", "five", "six"]
    )
    expect(divider).to_have_count(1)
    expect(bob.locator("#messages li.unread-divider + li.message .text")).to_have_text("six")

    # Scrolled up, "Jump to latest" shows (and stays through new messages); it goes back down.
    for n in range(30):
        say(alice, f"line {n}")
    expect(message_item(bob, "line 29")).to_have_count(1)
    jump = bob.locator("#jump-latest")
    at_bottom(bob)
    expect(jump).to_be_hidden()
    bob.locator("#messages").evaluate("list => list.scrollTo(0, 0)")
    expect(jump).to_be_visible()
    expect(jump).to_have_accessible_name("Jump to latest")
    say(alice, "line 30")
    expect(message_item(bob, "line 30")).to_have_count(1)
    expect(jump).to_be_visible()
    assert bob.locator("#messages").evaluate("list => list.scrollTop") < 4  # the page kept the place
    activate(bob, jump)
    at_bottom(bob)
    expect(jump).to_be_hidden()
    assert alice.console_errors == [] and bob.console_errors == []


def test_mentions_complete_highlight_and_notify(width, server, new_page):
    alice, bob, link = two_in_a_room(
        server, new_page, width, room="Mentions", init_script=VISIBILITY_SCRIPT + NOTIFICATION_SCRIPT
    )
    assert bob.evaluate("window.__permissionAsks") == 0  # never asked on load
    with PythonClient(server.url) as boris, PythonClient(server.url) as carl:
        boris.join(join_key_of(link), "Boris")
        carl.join(join_key_of(link), "Carl")
        expect(alice.locator("#members li")).to_have_count(4)

        box = alice.get_by_label("Message", exact=True)
        mentions = alice.locator("#mention-list")
        box.press_sequentially("@Bo")
        expect(mentions).to_be_visible()
        expect(mentions).to_have_attribute("role", "listbox")
        expect(mentions.get_by_role("option")).to_have_text(["Bob", "Boris"])
        box.press("Enter")  # the first option
        expect(box).to_have_value("@Bob ")
        expect(mentions).to_be_hidden()
        assert frames(alice, "ChatMessage") == []  # Enter completed, it did not send
        box.press_sequentially("look here")
        box.press("Enter")
        expect(box).to_have_value("")
        box.press_sequentially("and @Bor")
        expect(mentions.get_by_role("option")).to_have_text(["Boris"])
        box.press("Tab")
        expect(box).to_have_value("and @Boris ")
        expect(box).to_be_focused()
        box.press_sequentially("too")
        box.press("Enter")
        box.press_sequentially("@Al")  # not oneself
        expect(mentions).to_be_hidden()
        box.fill("")

        for page in (alice, bob):
            expect(page.locator("#messages li.message .text")).to_have_text(
                ["@Bob look here", "and @Boris too"]
            )
        mentioned = message_item(bob, "@Bob look here")
        expect(mentioned).to_have_class(re.compile(r"\bmentions-me\b"))
        expect(mentioned.locator(".text mark.mention")).to_have_text("@Bob")
        expect(message_item(bob, "and @Boris too")).not_to_have_class(re.compile(r"\bmentions-me\b"))
        expect(message_item(alice, "@Bob look here")).not_to_have_class(re.compile(r"\bmentions-me\b"))
        boris.say("hey @bob, lunch?")  # any case
        expect(message_item(bob, "hey @bob, lunch?")).to_have_class(re.compile(r"\bmentions-me\b"))
        expect(message_item(bob, "hey @bob, lunch?").locator("mark.mention")).to_have_text("@bob")

        # Notifications: asked for only on the button; then a mention in a hidden tab notifies.
        assert bob.evaluate("window.__permissionAsks") == 0
        activate(bob, bob.get_by_role("button", name="Notify me of mentions"))
        until(bob, "() => window.__permissionAsks === 1")
        expect(bob.locator("#notify")).to_have_count(1)
        set_visibility(bob, "hidden")
        carl.say("nothing for Bob")
        expect(message_item(bob, "nothing for Bob")).to_have_count(1)
        assert bob.evaluate("window.__notifications") == []
        carl.say("@Bob are you there?")
        until(bob, "() => window.__notifications.length > 0")
        expect(message_item(bob, "@Bob are you there?")).to_have_count(1)
        notes = bob.evaluate("window.__notifications")
        assert len(notes) == 1, notes
        assert "are you there" in f"{notes[0]['title']} {notes[0]['body']}", notes
        assert bob.evaluate("window.__permissionAsks") == 1
        set_visibility(bob, "visible")
    # Only present members are offered: Boris and Carl have left.
    expect(alice.locator("#members li")).to_have_count(2)
    box.press_sequentially("@Bo")
    expect(mentions.get_by_role("option")).to_have_text(["Bob"])
    box.fill("")
    assert alice.console_errors == [] and bob.console_errors == []


def test_the_start_of_the_room_shows_at_once_when_nothing_is_older(server_with, new_page):
    """A new room, and a join whose History holds fewer than CHAT_HISTORY_LIMIT messages
    (or none: it is left out), have nothing older to load: the page shows the start of
    the room and asks for no older page. A History of the whole limit may have more
    behind it: the button stays, and an empty page then shows the start."""
    server = server_with(CHAT_HISTORY_LIMIT="3")
    alice = new_page(server.http)
    link = create_room(alice, "Short", "Alice")
    bob = new_page(link)
    join_room(bob, "Bob")  # an empty room: no History
    say(alice, "one")
    say(alice, "two")
    carol = new_page(link)
    join_room(carol, "Carol")  # a History of two
    expect(carol.locator("#messages li.message .text")).to_have_text(["one", "two"])
    for page in (alice, bob, carol):
        expect(page.locator("#history-start")).to_have_text("Start of the room")
        expect(page.get_by_role("button", name="Load older messages")).to_be_hidden()
        page.locator("#messages").evaluate("list => { list.scrollTop = 0; }")

    say(alice, "three")
    dave = new_page(link)
    join_room(dave, "Dave")  # a History of three, the limit
    expect(dave.locator("#messages li.message .text")).to_have_text(["one", "two", "three"])
    expect(dave.locator("#history-start")).to_be_hidden()
    activate(dave, dave.get_by_role("button", name="Load older messages"))
    expect(dave.locator("#history-start")).to_be_visible()
    assert [len(frames(page, "GetHistory")) for page in (alice, bob, carol, dave)] == [0, 0, 0, 1]


def test_older_history_loads_on_request_and_for_a_quoted_message(width, server_with, new_page):
    server = server_with(CHAT_HISTORY_LIMIT="5", CHAT_RATE_BURST="200")
    thread = ClientThread()
    try:
        py = thread.connect(server.url)
        room = thread.run(py.create_room("Long room", owner_name="Py"))
        sent = [thread.run(py.send(f"old {n}")) for n in range(1, 61)]
        thread.run(py.send("answer to the first", reply_to=sent[0].id))
    finally:
        thread.stop()
    texts = [f"old {n}" for n in range(1, 61)] + ["answer to the first"]

    alice = new_page(room.share_link, **width)
    join_room(alice, "Alice")
    shown = alice.locator("#messages li.message .text")
    expect(shown).to_have_text(texts[-5:])
    load = alice.get_by_role("button", name="Load older messages")
    expect(load).to_be_visible()
    expect(alice.locator("#history-start")).to_be_hidden()
    activate(alice, load)
    expect(shown).to_have_text(texts[-55:])
    activate(alice, load)
    expect(shown).to_have_text(texts)
    # The second page held the room's first message (6 of the 50 asked for): the start
    # shows at once, without a third, empty page.
    expect(load).to_be_hidden()
    expect(alice.locator("#history-start")).to_be_visible()
    expect(alice.locator("#history-start")).to_have_text("Start of the room")
    expect(shown).to_have_text(texts)
    asks = frames(alice, "GetHistory")
    assert [(ask["before"], ask.get("limit")) for ask in asks] == [(sent[-4].id, 50), (sent[6].id, 50)]

    # A quote of a message not loaded yet: the page loads older history until it is there.
    bob = new_page(room.share_link, **width)
    join_room(bob, "Bob")
    expect(bob.locator("#messages li.message .text")).to_have_text(texts[-5:])
    quote = message_item(bob, "answer to the first").locator(".quote")
    expect(quote).to_have_count(1)
    activate(bob, quote)
    first = message_item(bob, "old 1")
    expect(first).to_have_class(re.compile(r"\bhighlight\b"))
    expect(first).to_be_focused()
    expect(first).to_be_in_viewport()
    expect(bob.locator("#messages li.message .text")).to_have_text(texts)
    assert id_of(first) == sent[0].id
    # Once the original is on the page, the quote shows its start, in both pages.
    for page in (alice, bob):
        expect(message_item(page, "answer to the first").locator(".quote")).to_have_text("Py: old 1")
    asks = frames(bob, "GetHistory")
    assert asks[0]["before"] == sent[-4].id and all(1 <= ask.get("limit", 50) <= 100 for ask in asks)
    assert [ask["before"] for ask in asks] == sorted({ask["before"] for ask in asks}, reverse=True)
    assert alice.console_errors == [] and bob.console_errors == []


def test_a_late_joiners_quote_of_a_deleted_message_says_so(width, server_with, new_page):
    """History leaves a deleted message out, so a reply to it arrives without it. A reply to
    a message the page would hold (newer than its oldest) says the original is deleted;
    one to a message older than what the page loaded stays "Earlier message"."""
    server = server_with(CHAT_HISTORY_LIMIT="4")
    thread = ClientThread()
    try:
        py = thread.connect(server.url)
        room = thread.run(py.create_room("Deleted quotes", owner_name="Py"))
        oldest = thread.run(py.send("before the window"))
        for n in range(3):
            thread.run(py.send(f"filler {n}"))
        gone = thread.run(py.send("soon gone"))
        thread.run(py.send("answer to the gone one", reply_to=gone.id))
        thread.run(py.send("answer to the oldest", reply_to=oldest.id))
        thread.run(py.delete_message(gone.id))
    finally:
        thread.stop()

    bob = new_page(room.share_link, **width)
    join_room(bob, "Bob")
    expect(bob.locator("#messages li.message .text")).to_have_text(
        ["filler 1", "filler 2", "answer to the gone one", "answer to the oldest"]
    )
    expect(message_item(bob, "answer to the gone one").locator(".quote")).to_have_text("Deleted message")
    expect(message_item(bob, "answer to the oldest").locator(".quote")).to_have_text("Earlier message")
    # The oldest comes with an older page, and its quote then shows it.
    activate(bob, bob.get_by_role("button", name="Load older messages"))
    expect(message_item(bob, "answer to the oldest").locator(".quote")).to_have_text("Py: before the window")
    expect(message_item(bob, "answer to the gone one").locator(".quote")).to_have_text("Deleted message")
    assert bob.console_errors == []


def test_quotes_of_messages_older_pages_turn_out_not_to_hold_say_they_were_deleted(server_with, new_page):
    """Replies to m0 and m25, both deleted before Carol came, quote "Earlier message" in
    her History. An older page (m1-m51, full) reads past m25 without it: its quote says
    it was deleted; the next, empty, reaches the start of the room, and m0's does."""
    server = server_with(CHAT_HISTORY_LIMIT="3", CHAT_RATE_BURST="200")
    alice = new_page(server.http)
    link = create_room(alice, "Older", "Alice")
    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        ids = bob.said(*(f"m{i}" for i in range(52)))
        bob.answered_then_deleted(ids, "m0", "m25")
        bob.said("last")
    carol = new_page(link)
    join_room(carol, "Carol")
    quotes = carol.locator("#messages .quote")
    expect(carol.locator("#messages li.message .text")).to_have_text(["re: m0", "re: m25", "last"])
    expect(quotes).to_have_text(["Earlier message", "Earlier message"])
    older = carol.get_by_role("button", name="Load older messages")
    older.click()
    expect(carol.locator("#messages li.message .text").first).to_have_text("m1")
    expect(quotes).to_have_text(["Earlier message", "Deleted message"])
    older.click()
    expect(carol.locator("#history-start")).to_be_visible()
    expect(quotes).to_have_text(["Deleted message", "Deleted message"])
    assert len(frames(carol, "GetHistory")) == 2
    assert carol.console_errors == []


def test_a_page_resumes_as_its_participant_and_yields_to_another_tab(width, server_with, new_page):
    """After a drop the page rejoins with its participant_token and can still edit its
    earlier message; when another connection takes the participant over (4003), the page
    says so and does not come back."""
    server = server_with(PRESENCE_HEARTBEAT="0.5", PRESENCE_TIMEOUT="2")
    alice, bob, link = two_in_a_room(server, new_page, width, room="Resume")
    say(bob, "before the drop")
    expect(alice.locator("#messages li.message .text")).to_have_text(["before the drop"])
    message_id = id_of(message_item(bob, "before the drop"))
    token = received(bob, "RoomJoined")[0]["participant_token"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)

    server.stop()
    expect(bob.locator("#status")).to_have_text(re.compile("Connection lost"))
    server.start()
    for page in (alice, bob):
        expect(page.locator("#status")).to_have_text("Reconnected to Resume.", timeout=40_000)
    rejoin = frames(bob, "JoinRoom")[-1]
    assert rejoin["participant_token"] == token and rejoin["name"] == "Bob"
    assert received(bob, "RoomJoined")[-1]["participant_token"] == token  # it never changes
    expect(bob.locator("#members li").filter(has_text="Bob (you)")).to_have_count(1)
    expect(alice.locator("#members li")).to_have_count(2)

    act_on(bob, "before the drop", "Edit")
    box = bob.get_by_label("Message", exact=True)
    expect(box).to_have_value("before the drop")
    box.fill("edited after the drop")
    box.press("Enter")
    for page in (alice, bob):
        expect(message_item(page, "edited after the drop").locator(".meta .edited")).to_have_text("edited")
    assert [frame["id"] for frame in received(bob, "MessageEdited")] == [message_id]
    assert received(bob, "Error") == []

    # Another connection resumes Bob's participant: the page's is closed with 4003.
    thread = ClientThread()
    try:
        other = thread.connect(server.url)
        thread.run(other.join_room(link, "Bob", participant_token=token))
        expect(bob.locator("#lobby-error")).to_have_text("You opened this room in another tab or window.")
        expect(bob.locator("#room")).to_be_hidden()
        joins = len(frames(bob, "JoinRoom"))
        # The others saw nobody leave or join; the new connection holds Bob's rights.
        thread.run(other.edit(message_id, "edited from the other tab"))
        expect(message_item(alice, "edited from the other tab")).to_have_count(1)
        thread.run(other.send("the other tab speaks"))
        expect(message_item(alice, "the other tab speaks")).to_have_count(1)
        expect(alice.locator("#members li")).to_have_count(2)
        expect(alice.locator("#members li").filter(has_text="Bob")).to_have_count(1)
        assert len(frames(bob, "JoinRoom")) == joins  # the page did not come back
        expect(bob.locator("#lobby-error")).to_have_text("You opened this room in another tab or window.")
    finally:
        thread.stop()
    assert alice.console_errors == [] and bob.console_errors == []


def test_the_creator_who_reloads_and_joins_again_is_the_owner_again(width, server, new_page):
    """The page keeps the owner token of a room it created (sessionStorage, this tab): after
    a reload it joins again through the share link with it, and has the owner's share
    panel and rights on the others' messages. Another tab on the link does not."""
    alice, bob, link = two_in_a_room(server, new_page, width, room="Owned")
    owner_token = received(alice, "RoomCreated")[0]["owner_token"]
    say(bob, "from Bob")
    expect(message_item(alice, "from Bob")).to_have_count(1)
    assert menu_actions(alice, message_item(alice, "from Bob")) == ["Reply", "Delete", "React"]

    alice.goto(link)  # a reload, on the room's own page
    join_room(alice, "Alice")
    expect(alice.locator("#room-name")).to_have_text("Owned")
    assert frames(alice, "JoinRoom")[-1]["owner_token"] == owner_token
    expect(alice.locator("#share")).to_be_visible()
    expect(message_item(alice, "from Bob")).to_have_count(1)  # the History
    assert menu_actions(alice, message_item(alice, "from Bob")) == ["Reply", "Delete", "React"]
    act_on(alice, "from Bob", "Delete")
    activate(alice, alice.locator("dialog#confirm-delete").get_by_role("button", name="Delete message"))
    expect(message_item(bob, "from Bob")).to_have_count(0)  # the server agreed: an owner's delete

    # Bob's tab never created the room: no token, no share panel.
    assert all(frame["owner_token"] is None for frame in frames(bob, "JoinRoom"))
    expect(bob.locator("#share")).to_be_hidden()
    assert alice.console_errors == [] and bob.console_errors == []
