"""An Error carries no id: the page takes each one for the frame it answers (the server
answers a socket's frames one at a time, in order), never for whatever it sent last. On a
slow network (LATENCY_SCRIPT) the page has sent more by the time an answer comes back."""

import json
import re

import pytest
from playwright.sync_api import expect

from tests.browser.pages import (
    LATENCY_SCRIPT,
    act_on,
    create_room,
    join_room,
    say,
    sent_types,
    stored_contents,
    wait_until,
)
from tests.browser.test_files import pick, tiny_png

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120)]

# An init script: the page's sockets, in `window.sockets`, so that a test can drop one.
SOCKETS_SCRIPT = """
const NativeSocket = WebSocket;
window.sockets = [];
window.WebSocket = class extends NativeSocket {
  constructor(...args) {
    super(...args);
    window.sockets.push(this);
  }
};
"""


def stored_texts(page) -> list[str]:
    return page.locator("#messages li.message[data-id] .text").all_inner_texts()


def test_an_upload_refused_while_a_message_is_sent_is_the_uploads_error(server_with, new_page):
    """The second upload is over FILES_UPLOADS_PER_MINUTE; a message typed while it is on
    its way is stored. The rate_limited is the upload's: the file form says so and takes
    another file; the message is not given back as if it were refused."""
    server = server_with(FILES_UPLOADS_PER_MINUTE="1")
    page = new_page(server.http, init_script=LATENCY_SCRIPT)
    create_room(page, "Uploads", "Ann")
    png = tiny_png()
    pick(page, "a.png", "image/png", png)
    expect(page.locator("#status")).to_have_text(f"Shared a.png ({len(png)} bytes).")

    pick(page, "b.png", "image/png", png)
    wait_until(page, lambda: sent_types(page).count("UploadFile") == 2, "the second upload to be sent")
    say(page, "hello while uploading")
    expect(page.locator("#file-error")).to_have_text(re.compile("Too many attempts"))
    expect(page.locator("#upload")).to_be_hidden()
    expect(page.get_by_role("button", name="Send file")).to_be_enabled()
    expect(page.locator("#messages li.message.pending")).to_have_count(0)
    assert stored_texts(page)[-1] == "hello while uploading"
    expect(page.get_by_label("Message", exact=True)).to_have_value("")
    expect(page.locator("#message-error")).to_be_empty()
    assert page.console_errors == []


def test_messages_refused_for_their_rate_are_sent_again_in_order(server_with, sqlite_env, new_page):
    """Three messages at once past a burst of one: the first is stored; the rate_limited
    answers are the second's, which waits and goes again ahead of the third, so all three
    are stored once, in the order typed, and none is handed back or lost."""
    server = server_with(CHAT_RATE_BURST="1", CHAT_RATE_SUSTAINED="0.5")
    page = new_page(server.http, init_script=LATENCY_SCRIPT)
    create_room(page, "Three", "Ann")
    for text in ("first", "second", "third"):
        say(page, text)
    pending = page.locator("#messages li.message.pending")
    expect(pending.locator(".note").first).to_have_text(re.compile("too many messages at once"))
    expect(page.get_by_label("Message", exact=True)).to_have_value("")
    expect(page.locator("#messages li.message[data-id] .text")).to_have_text(
        ["first", "second", "third"], timeout=20_000
    )
    expect(pending).to_have_count(0)
    assert len(stored_contents(sqlite_env)) == 3
    assert page.console_errors == []


def test_a_refused_edit_goes_back_into_the_box(server_with, new_page):
    """An edit over CHAT_MAX_CONTENT: the edit stays in the box, still an edit, to shorten
    and save again; nothing typed is lost."""
    server = server_with(CHAT_MAX_CONTENT="200")
    page = new_page(server.http, init_script=LATENCY_SCRIPT)
    create_room(page, "Edits", "Ann")
    say(page, "short")
    expect(page.locator("#messages li.message[data-id] .text")).to_have_text(["short"])
    page.get_by_label("Message", exact=True).press("ArrowUp")
    expect(page.locator("#composer-context-text")).to_have_text("Editing your message")
    box = page.get_by_label("Message", exact=True)
    longer = "a much longer version of the message " * 5
    box.fill(longer)
    box.press("Enter")
    expect(page.locator("#message-error")).to_have_text(re.compile("too long to send"))
    expect(box).to_have_value(longer)
    expect(box).to_be_editable()
    expect(page.locator("#composer-context-text")).to_have_text("Editing your message")

    box.fill("short, edited")
    box.press("Enter")
    expect(page.locator("#messages li.message[data-id] .text")).to_have_text(["short, edited"])
    expect(page.locator("#messages .edited")).to_have_count(1)
    expect(box).to_have_value("")
    expect(page.locator("#composer-context")).to_be_hidden()
    assert page.console_errors == []


def test_a_reaction_past_the_limit_is_told_as_a_reaction(server_with, new_page):
    """quota_exceeded answers the React: told by the messages in a reaction's words, not
    as the room's file space, and the upload on its way meanwhile is not ended."""
    server = server_with(REACTIONS_PER_MESSAGE="1")
    page = new_page(server.http, init_script=LATENCY_SCRIPT)
    create_room(page, "React", "Ann")
    say(page, "hi")
    item = page.locator("#messages li.message[data-id]")
    expect(item.locator(".text")).to_have_text(["hi"])
    act_on(page, "hi", "React")
    page.locator("#emoji-common [data-emoji='👍']").click()
    expect(item.locator(".reaction")).to_have_count(1)
    act_on(page, "hi", "React")
    page.locator("#emoji-common [data-emoji='🎉']").click()
    png = tiny_png()
    pick(page, "a.png", "image/png", png)
    expect(page.locator("#message-error")).to_have_text(re.compile("as many different reactions"))
    expect(page.locator("#status")).to_have_text(f"Shared a.png ({len(png)} bytes).")
    expect(page.locator("#file-error")).to_be_empty()
    expect(item.first.locator(".reaction")).to_have_count(1)
    assert page.console_errors == []


def test_leave_while_rejoining_stays_left(server, new_page):
    """Leave clicked while the page rejoins after a drop: the page is in the lobby, the
    others see it leave, and no late answer to that rejoin brings it back."""
    owner = new_page(server.http)
    link = create_room(owner, "Leaving", "Owner")
    bob = new_page(link, init_script=SOCKETS_SCRIPT + LATENCY_SCRIPT)
    join_room(bob, "Bob")
    expect(owner.locator("#members li")).to_have_count(2)
    bob.context.set_offline(True)
    bob.evaluate("() => window.sockets.at(-1).close()")
    expect(bob.locator("#status")).to_have_text(re.compile("Connection lost"), timeout=20_000)
    # Leave, 50 ms after the page says it is catching up: the rejoin is on its way.
    bob.evaluate(
        """() => {
          const status = document.getElementById("status");
          new MutationObserver((_, observer) => {
            if (status.textContent !== "Reconnected. Catching up…") return;
            observer.disconnect();
            setTimeout(() => document.getElementById("leave").click(), 50);
          }).observe(status, {childList: true, characterData: true, subtree: true});
        }"""
    )
    bob.context.set_offline(False)
    expect(bob.get_by_role("button", name="Join room")).to_be_visible(timeout=20_000)
    bob.wait_for_timeout(1500)  # the rejoin's answer would have come by now
    expect(bob.locator("#room")).to_be_hidden()
    expect(owner.locator("#members li")).to_have_text(["Owner (you)"])
    join_room(bob, "Bob")
    expect(bob.locator("#room-name")).to_have_text("Leaving")
    say(bob, "back")
    expect(owner.locator("#messages li.message[data-id] .text")).to_have_text(["back"])
    assert bob.console_errors == []


def test_a_file_card_refused_for_its_rate_is_sent_again(server_with, new_page):
    """A sealed room's file is shared by its card, a chat message: one refused for its
    rate waits and goes again, and the page says "Shared" only once it is stored."""
    server = server_with(CHAT_RATE_BURST="1", CHAT_RATE_SUSTAINED="0.25")
    alice = new_page(server.http, init_script=LATENCY_SCRIPT)
    link = create_room(alice, "Cards", "Alice", sealed=True)
    bob = new_page(link)
    join_room(bob, "Bob")
    say(alice, "one")
    expect(alice.locator("#messages li.message[data-id] .text")).to_have_text(["one"])
    png = tiny_png()
    pick(alice, "pic.png", "image/png", png)
    expect(alice.locator("#messages li.pending .note")).to_have_text(re.compile("too many messages at once"))
    expect(alice.locator("#status")).to_have_text("Sharing pic.png…")
    for page in (alice, bob):
        card = page.locator("#messages li.file[data-id]")
        expect(card.get_by_role("button", name="pic.png", exact=True)).to_be_visible(timeout=20_000)
    expect(alice.locator("#status")).to_have_text(f"Shared pic.png ({len(png)} bytes).")
    expect(alice.locator("#messages li.pending")).to_have_count(0)
    expect(alice.locator("#file-error")).to_be_empty()
    assert alice.console_errors == []


def test_a_file_card_the_server_refuses_is_told_by_the_file_form(server_with, new_page):
    """A card over CHAT_MAX_CONTENT: the file form says the file was not shared."""
    server = server_with(CHAT_MAX_CONTENT="200")
    page = new_page(server.http, init_script=LATENCY_SCRIPT)
    create_room(page, "Cards", "Alice", sealed=True)
    pick(page, "pic.png", "image/png", tiny_png())
    expect(page.locator("#file-error")).to_have_text(re.compile(r"^pic\.png was not shared: .*too long"))
    expect(page.locator("#status")).not_to_have_text(re.compile("Shared"))
    expect(page.locator("#messages li.message")).to_have_count(0)
    expect(page.get_by_role("button", name="Send file")).to_be_enabled()


def test_a_page_the_server_has_no_room_for_rejoins_and_sends_again(server, sqlite_env, new_page):
    """The server answers not_in_room while the page shows the room (its seat was found
    gone; forced here by a LeaveRoom slipped in ahead of a message): the page rejoins and
    the message is stored once."""
    owner = new_page(server.http)
    link = create_room(owner, "Seat", "Owner")
    bob = new_page(server.http)
    drop_seat = []

    def route(page_side):
        server_side = page_side.connect_to_server()

        def to_server(message):
            if drop_seat and json.loads(message)["type"] == "ChatMessage":
                drop_seat.clear()
                server_side.send(json.dumps({"type": "LeaveRoom"}))
            server_side.send(message)

        page_side.on_message(to_server)
        server_side.on_message(page_side.send)

    bob.route_web_socket(re.compile(r"/ws/(\?room=[0-9a-f]{8})?$"), route)
    bob.goto(link)
    join_room(bob, "Bob")
    expect(owner.locator("#members li")).to_have_count(2)
    drop_seat.append(True)
    say(bob, "still here?")
    for page in (owner, bob):
        expect(page.locator("#messages li.message[data-id] .text")).to_have_text(["still here?"])
    expect(bob.locator("#status")).to_have_text("Reconnected to Seat.")
    expect(bob.locator("#message-error")).to_be_empty()
    expect(bob.get_by_label("Message", exact=True)).to_have_value("")
    expect(owner.locator("#members li")).to_have_count(2)
    assert len(stored_contents(sqlite_env)) == 1
    assert bob.console_errors == []


def test_a_typed_reaction_that_is_not_one_emoji_stays_in_the_picker_and_says_why(server, new_page):
    """The server takes one RGI emoji: anything else is not sent, and the picker stays
    open with what was typed, the field marked and described. A bare "❤" (no emoji
    presentation selector, as many keyboards type it) is sent as the emoji it shows."""
    page = new_page(server.http)
    create_room(page, "Picky", "Ann")
    say(page, "hi")
    item = page.locator("#messages li.message[data-id]")
    expect(item.locator(".text")).to_have_text(["hi"])
    act_on(page, "hi", "React")
    field = page.locator("#emoji-any")
    field.fill("yes!")
    field.press("Enter")
    expect(page.locator("#emoji-any-error")).to_have_text(re.compile("one emoji"))
    expect(page.locator("#emoji-picker")).to_be_visible()
    expect(field).to_have_value("yes!")
    expect(field).to_be_focused()
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_attribute("aria-describedby", re.compile("emoji-any-error"))
    assert "React" not in sent_types(page)

    field.fill("❤")
    expect(page.locator("#emoji-any-error")).to_be_empty()
    page.locator("#emoji-form button[type=submit]").click()
    expect(page.locator("#emoji-picker")).to_be_hidden()
    expect(item.locator(".reaction")).to_have_count(1)
    expect(item.locator(".reaction").first).to_contain_text("❤️")
    assert [frame["emoji"] for frame in page.frames_sent if frame["type"] == "React"] == ["❤️"]
    assert page.console_errors == []
