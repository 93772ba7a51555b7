"""What a person writes and reads around the message box: a draft kept while editing, a
reply never taking an edit's text, the message menu and the emoji picker staying with
their message, right-to-left names and texts in their order, and a file just over the
size limit told so truly."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.pages import (
    WIDTHS,
    PythonClient,
    act_on,
    activate,
    create_room,
    join_key_of,
    message_item,
    open_message_menu,
    say,
)
from tests.browser.test_files import pick

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(180)]

DRAFT = "half a thought, not sent yet"


def frames(page, kind: str) -> list[dict]:
    return [frame for frame in page.frames_sent if frame["type"] == kind]


def alice_and_bob_talk(alice, bob: PythonClient) -> None:
    """Alice's page creates a standard room, Bob (a Python client) joins it and says
    "from Bob", then Alice says "from Alice"."""
    link = create_room(alice, "Drafts", "Alice")
    bob.join(join_key_of(link), "Bob")
    bob.say("from Bob")
    expect(message_item(alice, "from Bob")).to_have_count(1)
    say(alice, "from Alice")
    expect(alice.locator("#messages li.message[data-id] .text")).to_have_text(["from Bob", "from Alice"])


def with_a_draft(alice, bob: PythonClient):
    """After `alice_and_bob_talk`, Alice has DRAFT in the message box: the box, and the
    line above it that says what it is for."""
    alice_and_bob_talk(alice, bob)
    box = alice.get_by_label("Message", exact=True)
    box.fill(DRAFT)
    return box, alice.locator("#composer-context")


# --- The draft and the edit ------------------------------------------------------------


def test_editing_sets_the_draft_aside_and_gives_it_back(server, new_page):
    alice = new_page(server.http)
    with PythonClient(server.url) as bob:
        box, context = with_a_draft(alice, bob)

        # Edit, then Escape: the draft comes back, not an empty box.
        act_on(alice, "from Alice", "Edit")
        expect(box).to_have_value("from Alice")
        expect(context).to_contain_text("Editing your message")
        box.press("Escape")
        expect(context).to_be_hidden()
        expect(box).to_have_value(DRAFT)

        # Cancel does the same.
        act_on(alice, "from Alice", "Edit")
        expect(box).to_have_value("from Alice")
        activate(alice, context.get_by_role("button", name="Cancel"))
        expect(box).to_have_value(DRAFT)

        # An edit saved: the draft comes back once the server has the edit.
        act_on(alice, "from Alice", "Edit")
        box.fill("from Alice, fixed")
        box.press("Enter")
        expect(message_item(alice, "from Alice, fixed").locator(".meta .edited")).to_have_text("edited")
        expect(context).to_be_hidden()
        expect(box).to_have_value(DRAFT)
        assert len(frames(alice, "EditMessage")) == 1 and len(frames(alice, "ChatMessage")) == 1

        # A reply being written, then an edit: Escape gives back the draft, still a reply.
        act_on(alice, "from Bob", "Reply")
        expect(context).to_contain_text("Replying to Bob: from Bob")
        expect(box).to_have_value(DRAFT)
        act_on(alice, "from Alice, fixed", "Edit")
        expect(box).to_have_value("from Alice, fixed")
        box.press("Escape")
        expect(box).to_have_value(DRAFT)
        expect(context).to_contain_text("Replying to Bob: from Bob")
        box.press("Enter")
        expect(box).to_have_value("")
        expect(context).to_be_hidden()
        sent = message_item(alice, DRAFT)
        expect(sent.locator(".quote")).to_have_text("Bob: from Bob")
        bob_id = int(message_item(alice, "from Bob").get_attribute("data-id"))
        assert frames(alice, "ChatMessage")[-1]["reply_to"] == bob_id
        assert alice.console_errors == []


def test_reply_chosen_while_editing_leaves_the_edit_and_replies_with_the_draft(server, new_page):
    alice = new_page(server.http)
    with PythonClient(server.url) as bob:
        box, context = with_a_draft(alice, bob)
        act_on(alice, "from Alice", "Edit")
        expect(box).to_have_value("from Alice")
        box.fill("from Alice, half edited")

        act_on(alice, "from Bob", "Reply")
        expect(context).to_contain_text("Replying to Bob: from Bob")
        expect(box).to_have_value(DRAFT)  # the draft set aside, not the edit's text
        box.press("Enter")
        expect(message_item(alice, DRAFT).locator(".quote")).to_have_text("Bob: from Bob")
        expect(box).to_have_value("")
        assert frames(alice, "EditMessage") == []
        expect(message_item(alice, "from Alice").locator(".meta .edited")).to_have_count(0)
        assert alice.console_errors == []


# --- The message menu and the emoji picker ---------------------------------------------

# Whether a popup sits by its button, as the page placed it: 4 px below or above it.
BY_ITS_BUTTON = """([popup, button]) => {
  const p = popup.getBoundingClientRect();
  const b = button.getBoundingClientRect();
  return Math.abs(p.top - (b.bottom + 4)) < 1 || Math.abs(p.bottom - (b.top - 4)) < 1;
}"""


def by_its_button(page, popup, button) -> bool:
    return page.evaluate(BY_ITS_BUTTON, [popup.element_handle(), button.element_handle()])


def scroll_list(page, script: str) -> None:
    """Scroll the message list (`script` gets it as `l`), then let its scroll event come."""
    page.locator("#messages").evaluate(f"l => {{ {script}; }}")
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")


@pytest.mark.parametrize("width", list(WIDTHS))
def test_menu_and_picker_stay_with_their_message_and_close_when_it_goes(width, server, new_page):
    alice = new_page(server.http, **WIDTHS[width])
    link = create_room(alice, "Scrolling", "Alice")
    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        for n in range(1, 13):
            bob.say(f"message {n}\nwith a second line\nand a third")
        expect(alice.locator("#messages li.message")).to_have_count(12)
    item = message_item(alice, "message 8\nwith a second line\nand a third")
    button = item.get_by_role("button", name="Message actions")
    menu = alice.locator("#message-menu")
    picker = alice.locator("#emoji-picker")

    for popup in (menu, picker):
        item.evaluate("li => li.scrollIntoView({ block: 'center' })")
        if popup == menu:
            open_message_menu(alice, item)
        else:
            activate(alice, open_message_menu(alice, item).get_by_role("menuitem", name="React"))
        expect(popup).to_be_visible()
        assert by_its_button(alice, popup, button)
        # A little scrolling: the popup moves with the message.
        scroll_list(alice, "l.scrollTop += 40")
        expect(popup).to_be_visible()
        assert by_its_button(alice, popup, button)
        # The message scrolled out of sight: the popup closes.
        scroll_list(alice, "l.scrollTop = 0")
        expect(popup).to_be_hidden()
        expect(button).to_have_attribute("aria-expanded", "false")

    # Focus leaving the picker closes it: Shift+Tab before its first emoji...
    item.evaluate("li => li.scrollIntoView({ block: 'center' })")
    activate(alice, open_message_menu(alice, item).get_by_role("menuitem", name="React"))
    first = picker.get_by_role("button").first
    expect(first).to_be_focused()
    alice.keyboard.press("Shift+Tab")
    expect(picker).to_be_hidden()
    # ... or Tab past its last button; a click on its label stays in it.
    activate(alice, open_message_menu(alice, item).get_by_role("menuitem", name="React"))
    picker.locator("label").click()
    expect(picker.get_by_label("Any emoji")).to_be_focused()
    expect(picker).to_be_visible()
    alice.keyboard.press("Tab")
    expect(picker.get_by_role("button", name="Add", exact=True)).to_be_focused()
    alice.keyboard.press("Tab")
    expect(picker).to_be_hidden()
    # Focus moving to another control (the message box) closes the menu too.
    open_message_menu(alice, item)
    alice.get_by_label("Message", exact=True).focus()
    expect(menu).to_be_hidden()
    # The "⋯" button still toggles its menu.
    open_message_menu(alice, item)
    activate(alice, button)
    expect(menu).to_be_hidden()
    assert alice.console_errors == []


# --- Right-to-left names and texts -----------------------------------------------------

# The box (left, right) of the first text of `needle` under `root` as laid out: where a
# right-to-left run put it.
BOX_OF = """([root, needle]) => {
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const at = node.data.indexOf(needle);
    if (at < 0) continue;
    const range = document.createRange();
    range.setStart(node, at);
    range.setEnd(node, at + needle.length);
    const box = range.getBoundingClientRect();
    return [box.left, box.right];
  }
  return null;
}"""


def box_of(page, root, needle: str) -> tuple[float, float]:
    box = page.evaluate(BOX_OF, [root.element_handle(), needle])
    assert box, f"{needle!r} not in {root}"
    return box


def reads_left_to_right(page, root, *needles: str) -> None:
    """Each of `needles` is shown to the left of the next one."""
    boxes = [box_of(page, root, needle) for needle in needles]
    for i in range(len(needles) - 1):
        (_, right), (left, _) = boxes[i], boxes[i + 1]
        assert right <= left + 0.5, f"{needles[i]!r} is not left of {needles[i + 1]!r}: {boxes}"


def test_a_room_named_and_described_right_to_left_reads_so(server, new_page):
    """The room's name and description take the direction of their own text: a Hebrew
    name's "!" ends it on the left, not before it on the right as the page's would. In
    the status line and the tab's title the name is isolated from the words around it."""
    alice = new_page(server.http, viewport={"width": 1280, "height": 800})
    create_room(alice, "שיחה!", "Alice", description="ברוכים הבאים!")
    reads_left_to_right(alice, alice.locator("#room-name"), "!", "שיחה")
    reads_left_to_right(alice, alice.locator("#room-description"), "!", "הבאים", "ברוכים")
    status = alice.locator("#status")
    expect(status).to_have_text("In room שיחה! as Alice.")
    reads_left_to_right(alice, status, "In room", "!", "שיחה", " as ", "Alice")
    # A title is plain text: the name between FSI and PDI, as a <bdi> would isolate it.
    expect(alice).to_have_title("\u2068שיחה!\u2069 · Encrypted chat rooms")


def test_right_to_left_names_and_texts_keep_their_order(server, new_page):
    alice = new_page(server.http, viewport={"width": 1280, "height": 800})
    link = create_room(alice, "Talk", "Alice")
    with (
        PythonClient(server.url) as david,
        PythonClient(server.url) as sarah,
        PythonClient(server.url) as ron,
    ):
        david.join(join_key_of(link), "דוד")
        sarah.join(join_key_of(link), "שרה!")
        ron.join(join_key_of(link), "רון")
        david.say("שלום, עולם!")
        item = message_item(alice, "שלום, עולם!")
        expect(item).to_have_count(1)
        message_id = int(item.get_attribute("data-id"))

        # The sender line reads "דוד 04:20 AM", never "04:20 דוד AM".
        sender_right = item.locator(".sender").evaluate("n => n.getBoundingClientRect().right")
        time_left = item.locator("time").evaluate("n => n.getBoundingClientRect().left")
        assert sender_right <= time_left + 0.5, (sender_right, time_left)
        # The text is right to left: its "!" ends it, on the left.
        text = item.locator(".text")
        expect(text).to_have_attribute("dir", "auto")
        reads_left_to_right(alice, text, "!", "עולם", "שלום")
        # A name that ends in "!" keeps it on its left in the member list.
        member = alice.locator("#members li").filter(has_text="שרה")
        reads_left_to_right(alice, member, "!", "שרה")

        # The reply line: "Replying to דוד: !םלוע ,םולש", the name first.
        act_on(alice, "שלום, עולם!", "Reply")
        context = alice.locator("#composer-context-text")
        expect(context).to_have_text("Replying to דוד: שלום, עולם!")
        reads_left_to_right(alice, context, "Replying", "דוד", "!", "שלום")
        alice.keyboard.press("Escape")

        # Who is typing, in the order they started.
        typing = alice.locator("#typing")
        for client, shown in (
            (david, "דוד is typing…"),
            (sarah, "דוד and שרה! are typing…"),
            (ron, "דוד, שרה! and רון are typing…"),
        ):
            client.send(type="Typing")
            expect(typing).to_have_text(shown)
        reads_left_to_right(alice, typing, "דוד", "שרה", "רון", "are typing")

        # Who reacted, on hover, in the order the chip names them.
        for client in (david, sarah):
            client.send(type="React", id=message_id, emoji="👍", on=True)
        chip = item.locator("button.reaction")
        expect(chip).to_have_attribute("data-names", re.compile(r"^\S+, \S+$"))
        names = chip.get_attribute("data-names").split(", ")
        chip.hover()
        tooltip = item.locator(".reaction-names")
        expect(tooltip).to_be_visible()
        expect(tooltip).to_have_text(", ".join(names))
        reads_left_to_right(alice, tooltip, *(name.rstrip("!") for name in names))
    assert alice.console_errors == []


# --- Files -----------------------------------------------------------------------------


def test_a_file_just_over_the_limit_is_told_in_bytes(server_with, new_page):
    server = server_with(FILES_MAX_SIZE="2048")
    alice = new_page(server.http)
    create_room(alice, "Files", "Alice")
    error = alice.locator("#file-error")

    # One byte over: "2.0 KiB" against "2.0 KiB" would say nothing true.
    pick(alice, "notes.txt", "text/plain", b"x" * 2049)
    expect(error).to_have_text("This file is too large (2,049 bytes); the limit is 2,048 bytes.")
    # Well over: the rounded sizes tell them apart.
    pick(alice, "notes.txt", "text/plain", b"x" * 4096)
    expect(error).to_have_text("This file is too large (4.0 KiB); the limit is 2.0 KiB.")
    assert frames(alice, "UploadFile") == []
    assert alice.console_errors == []
