"""What is pasted into the lobby's join field never carries a sealed room's secret to the
server (PROTOCOL.md, "Sealed rooms": the secret "is never put in a frame or an HTTP
request"): a share link is found however it was pasted, and text that holds a fragment
but no share link is refused in words, with nothing sent. And the file cards a sealed
room's members send are held to the server's type allow-list, and saved under a safe name.
"""

import pytest
from playwright.sync_api import expect

from tests.browser.pages import PythonClient, create_room, join_key_of, join_room, say
from tests.browser.test_files import file_items

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(150)]

NOT_A_LINK = "This is not a valid join key or invitation link: check what you pasted."


def leaks(page, server, secret: str, requests: list[str]) -> list[str]:
    """Every frame, request or server log line holding the secret or a fragment."""
    sent = [str(frame) for frame in page.frames_sent] + requests
    logged = server.log_path.read_text(errors="replace").splitlines()
    return [text for text in sent + logged if secret in text or "#k=" in text or "%23k" in text.lower()]


def test_a_share_link_pasted_in_any_shape_joins_and_never_sends_its_secret(server, new_page):
    alice = new_page(server.http)
    link = create_room(alice, "Sealed", "Alice", sealed=True)
    say(alice, "hello")
    bare, fragment = link.split("#")
    secret = fragment.removeprefix("k=")
    without_scheme = link.split("://", 1)[1]
    without_slash = f"{bare.rstrip('/')}#{fragment}"
    in_a_sentence = f"Join me: {link}. See you there!"
    for number, pasted in enumerate((without_scheme, without_slash, in_a_sentence)):
        bob = new_page(server.http)
        requests = []
        bob.on("request", lambda request, seen=requests: seen.append(request.url))
        join_room(bob, f"Bob{number}", join_key=pasted)
        expect(bob.locator("#messages li .text")).to_have_text(["hello"])
        joined = [frame for frame in bob.frames_sent if frame["type"] == "JoinRoom"]
        assert [frame["join_key"] for frame in joined] == [join_key_of(link)], pasted
        assert bob.url == link
        assert leaks(bob, server, secret, requests) == [], pasted
        assert bob.console_errors == []


def test_text_with_a_fragment_but_no_share_link_is_refused_and_nothing_is_sent(server, new_page):
    alice = new_page(server.http)
    link = create_room(alice, "Sealed", "Alice", sealed=True)
    key = join_key_of(link)
    bare, fragment = link.split("#")
    secret = fragment.removeprefix("k=")
    bob = new_page(server.http)
    requests = []
    bob.on("request", lambda request: requests.append(request.url))
    expect(bob.get_by_role("button", name="Join room")).to_be_enabled()
    for pasted in (
        f"{key}#{fragment}",  # the key and the fragment, no /rooms/
        f"{bare}extra/#{fragment}",  # another address
        f"{bare}?x=1#{fragment}",
        f"{link}%20",
        f"{key} {fragment}",
        fragment,
        secret,  # the secret alone, copied without its k=: it would pass for a join key
    ):
        join_room(bob, "Bob", join_key=pasted)
        expect(bob.locator("#join-key-error")).to_have_text(NOT_A_LINK)
        expect(bob.get_by_label("Join key")).to_be_focused()
        expect(bob.get_by_role("button", name="Join room")).to_be_enabled()
    assert [frame for frame in bob.frames_sent if frame["type"] == "JoinRoom"] == []
    assert leaks(bob, server, secret, requests) == []
    # A bare join key still goes as typed.
    join_room(bob, "Bob", join_key=key)
    expect(bob.locator("#room-name")).to_have_text("Sealed")
    assert [frame["join_key"] for frame in bob.frames_sent if frame["type"] == "JoinRoom"] == [key]


def test_cards_outside_the_allow_list_are_not_offered_and_names_are_saved_safely(server, new_page):
    """A member (a raw websocket client with the room's keys) sends cards: a type the
    server would never take is shown as unsupported, with nothing to save; a name whose
    extension is not its type's saves with the type's extension appended, without the
    characters that could disguise it."""
    alice = new_page(server.http)
    link = create_room(alice, "Sealed", "Alice", sealed=True)
    with PythonClient(server.url) as mallory:
        mallory.join_sealed(link, "Mallory")
        # Two files: a file's first card is its card, a later one for its id a copy.
        card, other = (mallory.upload_sealed(b"just words\n", "notes.txt", "text/plain") for _ in range(2))
        for sent in (
            card | {"name": "setup.exe", "mime_type": "application/x-msdownload"},
            card | {"name": "page.xhtml", "mime_type": "application/javascript"},
            card | {"name": "x.html", "mime_type": "Text/Plain; charset=utf-8"},
            other | {"name": "invoice\u202etxt.exe", "mime_type": "text/plain"},
        ):
            mallory.say_sealed(sent)
    texts = alice.locator("#messages li .text")
    expect(texts).to_have_text(
        ["(unsupported message)"] * 2 + ["File: x.html.txt", "File: invoicetxt.exe.txt"]
    )
    offered = file_items(alice)
    expect(offered).to_have_count(2)
    for index, saved in enumerate(("x.html.txt", "invoicetxt.exe.txt")):
        with alice.expect_download() as download:
            offered.nth(index).locator(".file-link").click()
        assert download.value.suggested_filename == saved
    assert alice.dialogs == [] and alice.console_errors == []
