"""What a screen reader is told, and where keyboard focus goes: the message log's live
announcements, the page's hidden announcements, and focus kept on the page (never
dropped to its body) when what had it is disabled, hidden or removed."""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.pages import (
    PythonClient,
    act_on,
    create_room,
    join_key_of,
    join_room,
    message_item,
    open_message_menu,
    say,
    wait_until,
)
from tests.browser.test_catch_up import SOCKETS_SCRIPT, come_back, go_offline
from tests.browser.test_files import file_items, tiny_png

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120)]

# An init script: the text of every node added to the message log (role=log,
# aria-relevant=additions) that a screen reader would be handed, in window.__announced:
# not while the log is aria-busy, and not inside an aria-hidden part.
ANNOUNCED_SCRIPT = """
window.__announced = [];
document.addEventListener("DOMContentLoaded", () => {
  const log = document.getElementById("messages");
  let busy = log.getAttribute("aria-busy") === "true";
  new MutationObserver((records) => {
    records.forEach((record, i) => {
      if (record.type === "attributes") {
        // The value after this change: the next change's old value, or the current one.
        const next = records.slice(i + 1).find((later) => later.type === "attributes");
        busy = (next ? next.oldValue : log.getAttribute("aria-busy")) === "true";
        return;
      }
      if (busy || record.target.closest("[aria-hidden=true]")) return;
      for (const node of record.addedNodes) {
        if (node.nodeType === Node.ELEMENT_NODE && node.matches("[aria-hidden=true]")) continue;
        const text = node.textContent.replace(/\\s+/g, " ").trim();
        if (text) window.__announced.push(text);
      }
    });
  }).observe(log, {
    childList: true, subtree: true, attributes: true, attributeFilter: ["aria-busy"], attributeOldValue: true,
  });
});
"""


def announced(page: Page) -> list[str]:
    """What the message log announced since the last call."""
    return page.evaluate("() => window.__announced.splice(0)")


def test_history_older_pages_and_a_catch_up_are_told_in_one_line_not_read_out(server_with, new_page):
    server = server_with(CHAT_HISTORY_LIMIT="5", CHAT_RATE_BURST="200")
    alice = new_page(server.http)
    link = create_room(alice, "Quiet", "Alice")
    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        bob.said(*(f"m{i}" for i in range(1, 9)))
        carol = new_page(link, init_script=ANNOUNCED_SCRIPT + SOCKETS_SCRIPT)
        join_room(carol, "Carol")
        texts = carol.locator("#messages li.message .text")
        expect(texts).to_have_text([f"m{i}" for i in range(4, 9)])
        assert announced(carol) == []
        expect(carol.locator("#messages")).to_have_attribute("aria-busy", "false")
        expect(carol.locator("#announcements")).to_have_text("5 earlier messages.")

        carol.get_by_role("button", name="Load older messages").click()
        expect(texts).to_have_text([f"m{i}" for i in range(1, 9)])
        assert announced(carol) == []
        expect(carol.locator("#announcements")).to_have_text("3 older messages.")

        # A message said now is read out, alone.
        bob.say("live")
        expect(texts.last).to_have_text("live")
        [live] = announced(carol)
        assert live.startswith("Bob") and "live" in live

        # More missed than the rejoin's History holds: it and the catch-up, one count.
        go_offline(carol)
        bob.said(*(f"m{i}" for i in range(9, 17)))
        come_back(carol, "Quiet")
        shown = [f"m{i}" for i in range(1, 9)] + ["live"] + [f"m{i}" for i in range(9, 17)]
        expect(texts).to_have_text(shown)
        assert announced(carol) == []
        expect(carol.locator("#announcements")).to_have_text("8 missed messages.")
    assert carol.console_errors == []


def test_a_sealed_room_read_once_its_link_is_pasted_is_told_in_one_line(server, new_page):
    alice = new_page(server.http)
    link = create_room(alice, "Sealed", "Alice", sealed=True)
    say(alice, "one")
    say(alice, "two")
    expect(alice.locator("#messages li.message[data-id]")).to_have_count(2)
    bob = new_page(link.split("#")[0], init_script=ANNOUNCED_SCRIPT)
    join_room(bob, "Bob")
    expect(bob.locator("#messages li.locked")).to_have_count(2)
    assert announced(bob) == []
    expect(bob.locator("#announcements")).to_have_text("2 earlier messages.")
    bob.get_by_label("Whole link").fill(link)
    bob.get_by_role("button", name="Use this link").click()
    expect(bob.locator("#messages li .text")).to_have_text(["one", "two"])
    assert announced(bob) == []
    expect(bob.locator("#announcements")).to_have_text("2 sealed messages opened.")
    assert bob.console_errors == []


def test_unchanged_reactions_add_nothing_and_a_toggled_chip_keeps_the_focus(server, new_page):
    alice = new_page(server.http, init_script=ANNOUNCED_SCRIPT + SOCKETS_SCRIPT)
    link = create_room(alice, "Chips", "Alice")
    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        bob.say("hello")
        message_id = bob.expect("ChatMessage")["id"]

        def bob_reacts(emoji: str, on: bool = True) -> None:
            bob.send(type="React", id=message_id, emoji=emoji, on=on)
            bob.expect("Reactions")

        bob_reacts("👍")
        bob_reacts("❤️")
        chips = alice.locator("#messages button.reaction")
        expect(chips).to_have_text(["👍 1", "❤️ 1"])
        announced(alice)

        # A reconnect's catch-up reads the reactions again: nothing changed, nothing added.
        go_offline(alice)
        come_back(alice, "Chips")
        wait_until(
            alice, lambda: any("before" in frame for frame in alice.frames_received), "the catch-up's page"
        )
        bob_reacts("😂")  # after the catch-up's page: shown once that page is
        expect(chips).to_have_text(["👍 1", "❤️ 1", "😂 1"])
        added = announced(alice)
        assert len(added) == 1 and added[0].startswith("😂 1"), added

        # The chip toggled by keyboard keeps the focus, on and off.
        thumbs = chips.filter(has_text="👍")
        thumbs.focus()
        alice.keyboard.press("Enter")
        expect(thumbs).to_have_text("👍 2")
        expect(thumbs).to_be_focused()
        alice.keyboard.press("Enter")
        expect(thumbs).to_have_text("👍 1")
        expect(thumbs).to_be_focused()
        # One toggled off that goes gives the focus to a neighbour: Alice's 👍 alone is the
        # newest, last, so the chip before it.
        alice.keyboard.press("Enter")
        expect(thumbs).to_have_text("👍 2")
        bob_reacts("👍", on=False)
        expect(chips).to_have_text(["❤️ 1", "😂 1", "👍 1"])
        expect(thumbs).to_be_focused()
        alice.keyboard.press("Enter")
        expect(chips).to_have_text(["❤️ 1", "😂 1"])
        expect(chips.last).to_be_focused()
    assert alice.console_errors == []


def test_ones_own_message_is_read_out_once(server, new_page):
    """Not as the "sending…" placeholder and then again as the message stored."""
    alice = new_page(server.http, init_script=ANNOUNCED_SCRIPT)
    create_room(alice, "Once", "Alice")
    say(alice, "mine")
    expect(alice.locator("#messages li.message[data-id] .text")).to_have_text(["mine"])
    added = announced(alice)
    assert len(added) == 1 and added[0].startswith("Alice") and added[0].endswith("mine⋯"), added


def test_who_joins_leaves_and_types_is_told(server, new_page):
    alice = new_page(server.http)
    link = create_room(alice, "Presence", "Alice")
    told = alice.locator("#announcements")
    typing = alice.locator("#typing")
    expect(typing).to_have_attribute("aria-live", "polite")
    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        expect(told).to_have_text("Bob joined.")
        # Each Typing (one per 3 s) keeps the line as it is: it is not read out again.
        alice.evaluate("""() => {
            window.__typingChanges = 0;
            new MutationObserver(() => window.__typingChanges++)
                .observe(document.getElementById("typing"), { childList: true, subtree: true });
        }""")
        bob.send(type="Typing")
        expect(typing).to_have_text("Bob is typing…")
        alice.evaluate("() => { window.__typingChanges = 0; }")
        alice.wait_for_timeout(3200)
        bob.send(type="Typing")
        wait_until(
            alice, lambda: sum(f["type"] == "Typing" for f in alice.frames_received) == 2, "the second Typing"
        )
        alice.wait_for_timeout(200)
        assert alice.evaluate("() => window.__typingChanges") == 0
    expect(told).to_have_text("Bob left.")
    # Not for oneself, nor for those already there on joining.
    carol = new_page(link)
    join_room(carol, "Carol")
    expect(told).to_have_text("Carol joined.")
    expect(carol.locator("#members li")).to_have_count(2)
    expect(carol.locator("#announcements")).to_be_empty()


def test_the_reply_or_edit_line_is_read_with_the_message_box(server, new_page):
    alice = new_page(server.http)
    create_room(alice, "Context", "Alice")
    say(alice, "first")
    box = alice.get_by_label("Message", exact=True)
    hint = "Enter sends, Shift+Enter starts a new line, @ mentions, ↑ edits your last message."
    expect(box).to_have_accessible_description(hint)
    act_on(alice, "first", "Reply")
    expect(box).to_be_focused()
    expect(box).to_have_accessible_description(f"Replying to Alice: first {hint}")
    box.press("Escape")
    expect(alice.locator("#composer-context")).to_be_hidden()
    expect(box).to_have_accessible_description(hint)
    box.press("ArrowUp")
    expect(box).to_have_accessible_description(f"Editing your message {hint}")
    box.press("Escape")
    expect(box).to_have_accessible_description(hint)


def actions_of(page: Page, text: str):
    return message_item(page, text).get_by_role("button", name="Message actions")


def test_the_focus_in_a_deleted_message_goes_to_a_neighbour(server, new_page):
    alice = new_page(server.http)
    link = create_room(alice, "Deletes", "Alice")
    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        ids = bob.said("one", "two", "three", "four")
        texts = alice.locator("#messages li.message .text")
        expect(texts).to_have_text(["one", "two", "three", "four"])

        # Deleted by keyboard through the menu and the confirmation: the next message's button.
        actions_of(alice, "two").focus()
        alice.keyboard.press("Enter")
        expect(alice.get_by_role("menuitem", name="Reply")).to_be_focused()
        alice.keyboard.press("ArrowDown")
        expect(alice.get_by_role("menuitem", name="Delete")).to_be_focused()
        alice.keyboard.press("Enter")
        expect(alice.get_by_role("button", name="Delete message")).to_be_focused()
        alice.keyboard.press("Enter")
        expect(texts).to_have_text(["one", "three", "four"])
        expect(actions_of(alice, "three")).to_be_focused()

        # Deleted by someone else while its button has the focus: the last, so the one before.
        actions_of(alice, "four").focus()
        bob.send(type="DeleteMessage", id=ids["four"])
        expect(texts).to_have_text(["one", "three"])
        expect(actions_of(alice, "three")).to_be_focused()

        # ... or while its menu is open.
        actions_of(alice, "one").focus()
        alice.keyboard.press("Enter")
        expect(alice.get_by_role("menuitem", name="Reply")).to_be_focused()
        bob.send(type="DeleteMessage", id=ids["one"])
        expect(texts).to_have_text(["three"])
        expect(alice.locator("#message-menu")).to_be_hidden()
        expect(actions_of(alice, "three")).to_be_focused()
    assert alice.console_errors == []


def test_a_lobby_button_keeps_the_focus_while_its_request_waits(server, new_page):
    alice = new_page(server.http)
    link = create_room(alice, "Locked", "Alice", password="secret")
    bob = new_page(link)
    form = bob.locator("#join-form")
    form.get_by_label("Password").fill("wrong")
    form.get_by_label("Your name").fill("Bob")
    button = form.get_by_role("button", name="Join room")
    button.focus()
    bob.keyboard.press("Enter")
    expect(bob.locator("#join-password-error")).to_have_text("Wrong password for this room.")
    expect(button).to_be_focused()
    expect(button).to_be_enabled()


def test_load_older_keeps_the_focus_and_hands_it_to_the_start_of_the_room(server_with, new_page):
    server = server_with(CHAT_HISTORY_LIMIT="3", CHAT_RATE_BURST="200")
    alice = new_page(server.http)
    link = create_room(alice, "Older", "Alice")
    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        bob.said(*(f"m{i}" for i in range(1, 57)))
    carol = new_page(link)
    join_room(carol, "Carol")
    shown = carol.locator("#messages li.message")
    expect(shown).to_have_count(3)
    older = carol.get_by_role("button", name="Load older messages")
    older.focus()
    carol.keyboard.press("Enter")  # a page of 50: more remain, the button stays
    expect(shown).to_have_count(53)
    expect(older).to_be_focused()
    expect(older).to_be_enabled()
    carol.keyboard.press("Enter")  # the rest: the button goes, the start of the room shows
    expect(shown).to_have_count(56)
    expect(older).to_be_hidden()
    expect(carol.locator("#history-start")).to_be_focused()


def test_file_buttons_keep_the_focus_or_hand_it_on(server, new_page):
    alice = new_page(server.http)
    create_room(alice, "Files", "Alice", sealed=True)
    png = tiny_png()
    alice.get_by_label("File", exact=True).set_input_files(
        files=[{"name": "red.png", "mimeType": "image/png", "buffer": png}]
    )
    send = alice.get_by_role("button", name="Send file")
    send.focus()
    alice.keyboard.press("Enter")
    expect(alice.locator("#status")).to_have_text(f"Shared red.png ({len(png)} bytes).")
    expect(send).to_be_focused()

    # A sealed file's name is a button: fetched, decrypted and saved, it keeps the focus.
    item = file_items(alice)
    name = item.get_by_role("button", name="red.png", exact=True)
    name.focus()
    with alice.expect_download() as download:
        alice.keyboard.press("Enter")
    assert download.value.suggested_filename == "red.png"
    expect(name).to_be_focused()

    # Its Delete button goes with the file: the message's actions button takes the focus.
    delete = item.get_by_role("button", name="Delete red.png")
    delete.focus()
    alice.keyboard.press("Enter")
    expect(item.locator(".text")).to_have_text("File deleted: red.png")
    expect(item.get_by_role("button", name="Message actions")).to_be_focused()
    assert alice.console_errors == []


def test_tab_out_of_the_menu_or_the_picker_goes_back_to_the_message(server, new_page):
    alice = new_page(server.http)
    create_room(alice, "Popups", "Alice")
    say(alice, "hello")
    actions = actions_of(alice, "hello")
    menu = alice.locator("#message-menu")
    picker = alice.locator("#emoji-picker")
    for key in ("Tab", "Shift+Tab"):
        actions.focus()
        alice.keyboard.press("Enter")
        expect(menu).to_be_visible()
        alice.keyboard.press(key)
        expect(menu).to_be_hidden()
        expect(actions).to_be_focused()
    for key, presses in (("Shift+Tab", 0), ("Tab", 9)):  # 8 emoji, the field, Add
        actions.focus()
        alice.keyboard.press("Enter")
        alice.keyboard.press("End")
        expect(alice.get_by_role("menuitem", name="React")).to_be_focused()
        alice.keyboard.press("Enter")
        expect(picker.get_by_role("button", name="👍")).to_be_focused()
        for _ in range(presses):
            alice.keyboard.press("Tab")
        expect(picker).to_be_visible()
        alice.keyboard.press(key)
        expect(picker).to_be_hidden()
        expect(actions).to_be_focused()


def test_the_menu_closed_by_new_messages_gives_the_focus_back_to_its_message(server_with, new_page):
    server = server_with(CHAT_RATE_BURST="200")
    alice = new_page(server.http)
    link = create_room(alice, "Busy", "Alice")
    say(alice, "first")
    actions = actions_of(alice, "first")
    actions.focus()
    alice.keyboard.press("Enter")
    expect(alice.get_by_role("menuitem", name="Reply")).to_be_focused()
    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        bob.said(*(f"news {i}" for i in range(30)))  # the list follows them: "first" scrolls out of sight
    expect(alice.locator("#messages li.message .text").last).to_have_text("news 29")
    expect(alice.locator("#message-menu")).to_be_hidden()
    expect(actions).to_be_focused()
    expect(message_item(alice, "news 29")).to_be_in_viewport()  # the list stays where it went


def test_a_fields_error_marks_it_invalid_and_describes_it(server, new_page):
    alice = new_page(server.http)
    form = alice.locator("#create-form")
    name, owner = form.get_by_label("Room name"), form.get_by_label("Your name")
    form.get_by_role("button", name="Create room").click()
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_have_accessible_description("Enter a room name.")
    expect(name).to_be_focused()
    name.fill("Checked")
    form.get_by_role("button", name="Create room").click()
    expect(owner).to_have_attribute("aria-invalid", "true")
    expect(owner).to_have_accessible_description("Enter your name.")
    expect(name).not_to_have_attribute("aria-invalid", "true")
    expect(name).to_have_accessible_description("")
    link = create_room(alice, "Checked", "Alice", password="secret")

    bob = new_page(link)
    password = bob.locator("#join-form").get_by_label("Password")
    join_room(bob, "Bob", password="wrong")
    expect(password).to_have_attribute("aria-invalid", "true")
    expect(password).to_have_accessible_description("Wrong password for this room. Only if the room has one.")
    join_room(bob, "Bob", password="secret")
    expect(bob.locator("#room")).to_be_visible()
    expect(password).not_to_have_attribute("aria-invalid", "true")
    expect(password).to_have_accessible_description("Only if the room has one.")


def test_a_sealed_room_joined_without_its_whole_link_asks_for_it_with_the_focus(server, new_page):
    alice = new_page(server.http)
    link = create_room(alice, "Sealed", "Alice", sealed=True)
    bob = new_page(link.split("#")[0])
    expect(bob.get_by_role("alert").filter(has_text="This link is incomplete")).to_be_visible()
    join_room(bob, "Bob")
    expect(bob.locator("#room")).to_be_visible()
    expect(bob.get_by_label("Whole link")).to_be_focused()


def contrast(*colours: str) -> float:
    """WCAG's contrast ratio of two CSS rgb() colours."""

    def luminance(colour: str) -> float:
        channels = [int(part) / 255 for part in re.findall(r"\d+", colour)[:3]]
        r, g, b = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    light, dark = sorted(map(luminance, colours), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_focus_ring_and_grey_notes_are_readable(server, new_page):
    alice = new_page(server.http)
    link = create_room(alice, "Sealed", "Alice", sealed=True)
    say(alice, "hi")
    bob = new_page(link.split("#")[0])
    join_room(bob, "Bob")
    note = bob.locator("#messages li.locked .text")
    expect(note).to_have_text("Sealed message: open the room's whole link to read it.")
    assert contrast(note.evaluate("(node) => getComputedStyle(node).color"), "rgb(255, 255, 255)") >= 4.5
    field = bob.get_by_label("Whole link")
    expect(field).to_be_focused()
    ring = field.evaluate("(node) => getComputedStyle(node).outlineColor")
    for background in ("rgb(255, 255, 255)", "rgb(246, 246, 248)"):  # a card, the page
        assert contrast(ring, background) >= 3, (ring, background)


def test_the_log_the_menu_button_and_the_delete_dialog_are_named(server, new_page):
    alice = new_page(server.http)
    create_room(alice, "Named", "Alice")
    say(alice, "bye")
    expect(alice.get_by_role("log", name="Messages")).to_be_visible()
    actions = actions_of(alice, "bye")
    expect(actions).to_have_attribute("aria-expanded", "false")
    act_on(alice, "bye", "Delete")
    dialog = alice.get_by_role("dialog", name="Delete this message for everyone?")
    expect(dialog).to_have_accessible_description("Alice: bye")
    dialog.get_by_role("button", name="Cancel").click()
    expect(actions).to_be_focused()


# Every text the page shows, against what is behind it: [{text, ratio, colour,
# background}] of those under `least`. Text is an element's own text node, or a field's
# value or placeholder; the background is the element's and its ancestors' background
# colours laid over each other up to an opaque one. Hidden and disabled (faded) parts,
# and those only screen readers get, are left out.
CONTRAST_AUDIT = """
(least) => {
  const rgba = (css) => {
    const [r, g, b, a = 1] = css.match(/[\\d.]+/g).map(Number);
    return [r, g, b, a];
  };
  const over = (top, under) => [0, 1, 2].map((i) => top[i] * top[3] + under[i] * (1 - top[3])).concat(1);
  const luminance = ([r, g, b]) => {
    const lin = (c) => ((c /= 255) <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  };
  const ratio = (a, b) => {
    const [light, dark] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (light + 0.05) / (dark + 0.05);
  };
  const background = (element) => {
    const layers = [];
    for (let node = element; node; node = node.parentElement) {
      const colour = rgba(getComputedStyle(node).backgroundColor);
      if (colour[3] > 0) layers.push(colour);
      if (colour[3] === 1) break;
    }
    let result = [255, 255, 255, 1];
    for (const layer of layers.reverse()) result = over(layer, result);
    return result;
  };
  const faded = (element) => {
    for (let node = element; node; node = node.parentElement) {
      if (Number(getComputedStyle(node).opacity) < 1) return true;
    }
    return false;
  };
  const shown = (element) =>
    element.checkVisibility({ visibilityProperty: true }) &&
    !element.closest(".visually-hidden, [aria-hidden=true]") &&
    !faded(element);
  const failures = [];
  const check = (element, text, colourOf = (style) => style.color) => {
    const style = getComputedStyle(element);
    const back = background(element);
    const colour = over(rgba(colourOf(style)), back);
    const value = ratio(colour, back);
    if (value < least) {
      const css = (c) => c.slice(0, 3).map(Math.round).join(",");
      const rounded = Math.round(value * 100) / 100;
      failures.push({ text: text.slice(0, 40), ratio: rounded, colour: css(colour), background: css(back) });
    }
  };
  for (const element of document.querySelectorAll("body *")) {
    if (!shown(element)) continue;
    const texts = [...element.childNodes].filter((node) => node.nodeType === Node.TEXT_NODE);
    const own = texts.map((node) => node.textContent).join("").trim();
    if (own) check(element, own);
    if (element.matches("input:not([type=file], [type=checkbox]), textarea")) {
      if (element.value) check(element, element.value);
      else if (element.placeholder) {
        check(element, element.placeholder, () => getComputedStyle(element, "::placeholder").color);
      }
    }
  }
  return failures;
}
"""


def unreadable(page: Page, least: float = 4.5) -> list[dict]:
    return page.evaluate(CONTRAST_AUDIT, least)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_text_is_readable_in_the_light_and_the_dark(server, new_page, scheme):
    """WCAG AA's 4.5:1 for every text the page shows, in the system's light and dark
    colour schemes: the forms, a room with its messages (others', one's own, a reply's
    quote, a mention, a reaction, a sealed one it cannot read), its menu and the delete
    dialog."""
    alice = new_page(server.http, color_scheme=scheme)
    # The page follows the system: dark text on a light page, or light on a dark one.
    page_colour = alice.evaluate("() => getComputedStyle(document.documentElement).backgroundColor")
    text_colour = alice.evaluate("() => getComputedStyle(document.body).color")
    dark_page = contrast(page_colour, "rgb(0, 0, 0)") < contrast(page_colour, "rgb(255, 255, 255)")
    assert dark_page == (scheme == "dark"), page_colour
    assert contrast(page_colour, text_colour) >= 7, (page_colour, text_colour)
    assert unreadable(alice) == []  # the forms before a room
    link = create_room(alice, "Readable", "Alice")
    bob = new_page(link, color_scheme=scheme)
    join_room(bob, "Bob")
    say(alice, "hello @Bob")
    say(bob, "hi Alice")
    act_on(alice, "hi Alice", "Reply")
    say(alice, "a reply")
    act_on(bob, "hello @Bob", "React")
    bob.locator(".picker").get_by_role("button", name="👍").click()
    expect(alice.locator(".reaction")).to_have_count(1)
    for page in (alice, bob):
        expect(message_item(page, "a reply").locator(".quote")).to_have_text("Bob: hi Alice")
        assert unreadable(page) == [], page
    open_message_menu(alice, message_item(alice, "a reply"))
    assert unreadable(alice) == []
    alice.keyboard.press("Escape")
    act_on(alice, "a reply", "Delete")
    expect(alice.get_by_role("dialog")).to_be_visible()
    assert unreadable(alice) == []
    sealed = create_room(new_page(server.http, color_scheme=scheme), "Sealed", "Sam", sealed=True)
    carol = new_page(sealed.split("#")[0], color_scheme=scheme)
    join_room(carol, "Carol")
    expect(carol.get_by_label("Whole link")).to_be_focused()
    assert unreadable(carol) == []
