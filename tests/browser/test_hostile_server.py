"""A server that answers what the page did not ask for (PROTOCOL.md, "Sealed rooms": the
sealed room is the one the server can never read). The server here is the real one; the
tampering sits on the page's socket (Playwright's route_web_socket), where a hostile
server's answers would come from: a sealed room answered as a standard one, a name the
page did not ask for, a rejoin into another name, and a file's bytes sent unasked."""

import base64
import json
import re

import pytest
from playwright.sync_api import expect

from tests.browser.pages import PythonClient, create_room, expect_members, join_room, say, wait_until
from tests.browser.test_files import file_items, pick, tiny_png

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(150)]

SOCKET = re.compile(r"/ws/(\?room=[0-9a-f]{8})?$")
UNSEALED = (
    "The server answered as if this sealed room were not sealed, which would let it read the room. "
    "Nothing was sent."
)
KEY_CHECK_CHANGED = (
    "The server answered with another key check than this page sent, so the room's link would not open it. "
    "Nothing was sent."
)
REJOIN_CHANGED = (
    "On reconnecting, the server put you in another room or under another name. Nothing more was sent."
)


def tamper(page, rewrite) -> list:
    """Pass the page's sockets through to the server, each frame the server sends through
    `rewrite(frame, socket)` (0 for the page's first socket from here, 1 for the next...;
    it returns the frames to send instead). Returns the page's side of each socket."""
    sockets: list = []

    def route(page_side) -> None:
        number = len(sockets)
        sockets.append(page_side)
        server_side = page_side.connect_to_server()
        page_side.on_message(server_side.send)

        def to_page(message) -> None:
            for frame in rewrite(json.loads(message), number):
                page_side.send(json.dumps(frame))

        server_side.on_message(to_page)

    page.route_web_socket(SOCKET, route)
    return sockets


def as_standard_room(frame: dict, socket: int) -> list[dict]:
    if frame["type"] in ("RoomCreated", "RoomJoined"):
        info = {**frame["room_info"], "sealed": False, "key_check": None}
        frame = {**frame, "room_info": info, "encryption_key": base64.b64encode(bytes(32)).decode()}
    return [frame]


def test_a_sealed_room_joined_through_a_server_that_answers_a_standard_one_sends_nothing(server, new_page):
    alice = new_page(server.http)
    link = create_room(alice, "Sealed", "Alice", sealed=True)
    bob = new_page(link)
    tamper(bob, as_standard_room)
    bob.reload()
    join_room(bob, "Bob")
    expect(bob.locator("#lobby-error")).to_have_text(UNSEALED)
    expect(bob.locator("#room")).to_be_hidden()
    # The seat the server gave is given back: the page left (a new socket).
    expect_members(alice, "Alice (you)")
    assert not [frame for frame in bob.frames_sent if frame["type"] in ("ChatMessage", "UploadFile")]
    assert bob.console_errors == []


def test_a_sealed_room_created_through_a_server_that_answers_a_standard_one_is_not_entered(server, new_page):
    carol = new_page(server.http)
    tamper(carol, as_standard_room)
    carol.reload()
    create_room_form(carol, "Mine", "Carol")
    expect(carol.locator("#lobby-error")).to_have_text(UNSEALED)
    expect(carol.locator("#room")).to_be_hidden()
    assert carol.get_by_label("Share link").input_value() == ""
    assert carol.console_errors == []


def test_a_sealed_room_created_with_another_key_check_than_sent_is_not_entered(server, new_page):
    """The creator's own secret: a key check the server changed is the server's doing, not
    a link cut short, and the room is left, with nothing sent."""
    carol = new_page(server.http)
    other = base64.b64encode(bytes(16)).decode()
    tamper(
        carol,
        lambda frame, socket: [
            {**frame, "room_info": {**frame["room_info"], "key_check": other}}
            if frame["type"] == "RoomCreated"
            else frame
        ],
    )
    carol.reload()
    create_room_form(carol, "Mine", "Carol")
    expect(carol.locator("#lobby-error")).to_have_text(KEY_CHECK_CHANGED)
    expect(carol.locator("#room")).to_be_hidden()
    assert carol.get_by_label("Share link").input_value() == ""
    assert [frame["type"] for frame in carol.frames_sent] == ["CreateRoom"]
    assert carol.console_errors == []


def create_room_form(page, name: str, owner: str) -> None:
    """Fill in and send the page's Create room form for a sealed room."""
    form = page.locator("#create-form")
    form.get_by_label("Room name").fill(name)
    form.get_by_label("Your name").fill(owner)
    form.get_by_label("Sealed room (the server never sees the key)").set_checked(True)
    form.get_by_role("button", name="Create room").click()


def test_a_name_the_page_did_not_ask_for_is_refused(server, new_page):
    """A sealed room's messages are bound to their sender's name: a server that answered
    Bob's join with Alice's name would have Bob's words verified as hers."""
    alice = new_page(server.http)
    link = create_room(alice, "Sealed", "Alice", sealed=True)
    bob = new_page(link)
    tamper(
        bob, lambda frame, socket: [{**frame, "name": "Alice"} if frame["type"] == "RoomJoined" else frame]
    )
    bob.reload()
    join_room(bob, "Bob")
    expect(bob.locator("#lobby-error")).to_have_text(
        "The server gave you another name than Bob. Nothing was sent."
    )
    expect(bob.locator("#room")).to_be_hidden()
    assert bob.console_errors == []


def test_a_rejoin_under_another_name_leaves_the_room_and_sends_nothing(server, new_page):
    alice = new_page(server.http)
    link = create_room(alice, "Sealed", "Alice", sealed=True)
    bob = new_page(link)

    def renamed_on_rejoin(frame: dict, socket: int) -> list[dict]:
        return [{**frame, "name": "Alice"} if frame["type"] == "RoomJoined" and socket > 0 else frame]

    sockets = tamper(bob, renamed_on_rejoin)
    bob.reload()
    join_room(bob, "Bob")
    expect_members(bob, "Alice", "Bob (you)")
    say(bob, "as Bob")
    expect(alice.locator("#messages li .sender")).to_have_text(["Bob"])
    sockets[0].close()
    box = bob.get_by_label("Message", exact=True)
    box.fill("typed while the page rejoins")
    wait_until(bob, lambda: len(sockets) > 1, "the page's second socket")
    expect(bob.locator("#lobby-error")).to_have_text(REJOIN_CHANGED)
    expect(bob.locator("#room")).to_be_hidden()
    rejoined = max(i for i, frame in enumerate(bob.frames_sent) if frame["type"] == "JoinRoom")
    assert not [frame for frame in bob.frames_sent[rejoined:] if frame["type"] == "ChatMessage"]
    expect(alice.locator("#messages li .sender")).to_have_text(["Bob"])
    assert bob.console_errors == []


def uploaded_file_id(page) -> str | None:
    uploads = (got["metadata"]["id"] for got in page.frames_received if got["type"] == "FileUploaded")
    return next(uploads, None)


def test_a_sealed_images_preview_is_never_bytes_the_server_sent_unasked(server, new_page):
    """A FileContent no GetFile asked for (a sealed room's page never asks: it fetches the
    blob and checks it against the card) is ignored: the preview is the card's file."""
    alice = new_page(server.http)
    link = create_room(alice, "Sealed", "Alice", sealed=True)
    bob = new_page(link)
    forged = tiny_png(width=7)
    held: list[dict] = []  # the card and what follows it, until the forgery goes first

    def hold_the_card(frame: dict, socket: int) -> list[dict]:
        if held or (frame["type"] == "ChatMessage" and frame["sender"] == "Alice"):
            held.append(frame)
            return []
        return [frame]

    sockets = tamper(bob, hold_the_card)
    bob.reload()
    join_room(bob, "Bob")
    expect_members(bob, "Alice", "Bob (you)")
    pick(alice, "red dot.png", "image/png", tiny_png())
    # The card is sealed, but the server knows its file: it stored the upload. Alice's page
    # may hear of its FileUploaded (the browser's event) after Bob's route sees the card.
    wait_until(bob, lambda: held and uploaded_file_id(alice), "the card and the upload's id")
    metadata = {"id": uploaded_file_id(alice), "name": "x.png", "mime_type": "image/png"}
    metadata |= {"size": len(forged), "expires_at": "2099-01-01T00:00:00Z"}
    forgery = {"type": "FileContent", "metadata": metadata, "content": base64.b64encode(forged).decode()}
    for frame in [forgery, *held]:
        sockets[-1].send(json.dumps(frame))
    held.clear()
    preview = file_items(bob).get_by_role("img", name="Preview of red dot.png")
    expect(preview).to_have_attribute("src", re.compile(r"^blob:"))
    expect(preview).to_have_js_property("naturalWidth", 3)  # the card's file, not the 7-pixel one
    assert bob.console_errors == []


def test_a_sealed_room_still_rejoins_through_an_honest_server(server, new_page):
    """The checks take nothing from the honest case: a reconnect comes back in the room."""
    alice = new_page(server.http)
    link = create_room(alice, "Sealed", "Alice", sealed=True)
    bob = new_page(link)
    sockets = tamper(bob, lambda frame, socket: [frame])
    bob.reload()
    join_room(bob, "  Bob ")
    expect_members(bob, "Alice", "Bob (you)")
    sockets[0].close()
    wait_until(bob, lambda: len(sockets) > 1, "the page's second socket")
    wait_until(
        bob, lambda: sum(frame["type"] == "RoomJoined" for frame in bob.frames_received) == 2, "the rejoin"
    )
    say(bob, "still here")
    expect(alice.locator("#messages li .text")).to_have_text(["still here"])
    with PythonClient(server.url) as carol:
        carol.join_sealed(link, "Carol")
        expect_members(bob, "Alice", "Bob (you)", "Carol")


def test_a_resumed_name_the_server_gives_back_in_its_first_case_is_accepted(server, new_page):
    """A participant token comes back under the name it was first given, compared by
    casefold on the server: "ẞob" typed after a reload resumes "ßob" (Python's casefold
    makes both "ssob"; upper case alone in the page left them apart, and it refused)."""
    alice = new_page(server.http)
    link = create_room(alice, "Cases", "Alice")
    bob = new_page(link)
    join_room(bob, "ßob")
    expect_members(bob, "Alice", "ßob (you)")
    bob.reload()
    join_room(bob, "ẞob")
    expect_members(bob, "Alice", "ßob (you)")
    resumed = [frame for frame in bob.frames_sent if frame["type"] == "JoinRoom"][-1]
    assert resumed["participant_token"], "the token went with the join"
    expect(bob.locator("#lobby-error")).to_have_text("")
