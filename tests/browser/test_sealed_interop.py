"""Issue 16, "Interop both ways": in one sealed room, the page and the real Python client
(chatclient.ChatClient) read each other's messages and files, whichever of them created
the room. The Python client runs on its own event loop in a thread, because Playwright's
sync API owns the main thread's loop."""

import pytest
from playwright.sync_api import expect

from chatclient import FileShared, Message
from tests.browser.pages import (
    ClientThread,
    create_room,
    expect_members,
    expect_texts,
    join_room,
    next_from,
    say,
)
from tests.browser.test_files import file_items, pick, tiny_png

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(150)]

SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 375, "height": 740}}


@pytest.fixture
def python_client(server):
    """A real ChatClient connected to the server, closed (and its loop stopped) at teardown."""
    runner = ClientThread()
    yield runner, runner.connect(server.url)
    runner.stop()


@pytest.mark.parametrize("size", SIZES)
def test_the_page_and_the_python_client_read_each_others_messages_and_files(
    size, server, new_page, python_client, tmp_path
):
    runner, py = python_client
    alice = new_page(server.http, viewport=SIZES[size])
    link = create_room(alice, "Interop", "Alice", sealed=True)
    room = runner.run(py.join_room(link, "Py"))
    assert room.sealed and py.can_read
    expect_members(alice, "Alice (you)", "Py")

    # Page -> Python: a message, a picture and a text file, with their names and types.
    say(alice, "from the page 🔒")
    got = runner.run(next_from(py, Message, "Alice"))
    assert got.text == "from the page 🔒"
    png, notes = tiny_png(), "first line\nsecond, ünïcode ✓\n".encode() * 20
    for name, mime_type, data in (("red dot.png", "image/png", png), ("notes.txt", "text/plain", notes)):
        pick(alice, name, mime_type, data)
        expect(alice.locator("#status")).to_have_text(f"Shared {name} ({len(data)} bytes).")
        shared = runner.run(next_from(py, FileShared, "Alice"))
        assert (shared.name, shared.mime_type, shared.size) == (name, mime_type, len(data))
        metadata, content = runner.run(py.download_file(shared.file_id))
        assert content == data
        assert (metadata.name, metadata.mime_type, metadata.size) == (name, mime_type, len(data))

    # Python -> page: a message and a picture, previewed and saved under its real name.
    runner.run(py.send("from Python 🐍"))
    picture = tiny_png(5, 4)
    uploaded = runner.run(py.upload_file(picture, name="py dot.png", mime_type="image/png"))
    assert (uploaded.name, uploaded.mime_type) == ("py dot.png", "image/png")
    expect_texts(
        alice,
        ["from the page 🔒", "File: red dot.png", "File: notes.txt", "from Python 🐍", "File: py dot.png"],
        ["Alice", "Alice", "Alice", "Py", "Py"],
    )
    item = file_items(alice).nth(2)
    preview = item.get_by_role("img", name="Preview of py dot.png")
    expect(preview).to_have_js_property("naturalWidth", 5)
    with alice.expect_download() as download:
        item.get_by_role("button", name="py dot.png", exact=True).click()
    assert download.value.suggested_filename == "py dot.png"
    download.value.save_as(tmp_path / "saved.png")
    assert (tmp_path / "saved.png").read_bytes() == picture
    assert alice.console_errors == []


def test_a_room_the_python_client_sealed_opens_in_the_page_from_its_share_link(
    server, new_page, python_client
):
    runner, py = python_client
    room = runner.run(py.create_room("From Python", owner_name="Py", sealed=True))
    assert room.sealed and room.share_link.startswith(f"{server.http}/rooms/{room.join_key}/#k=")
    runner.run(py.send("written before anyone came"))

    bob = new_page(room.share_link)
    expect(bob.locator("#link-form")).to_be_hidden()
    join_room(bob, "Bob")
    expect_members(bob, "Py", "Bob (you)")
    expect_texts(bob, ["written before anyone came"], ["Py"])
    runner.run(py.send("and now, live"))
    expect_texts(bob, ["written before anyone came", "and now, live"], ["Py", "Py"])

    say(bob, "Bob read you both")
    got = runner.run(next_from(py, Message, "Bob"))
    assert got.text == "Bob read you both"
    expect_texts(
        bob, ["written before anyone came", "and now, live", "Bob read you both"], ["Py", "Py", "Bob"]
    )
    assert bob.url == room.share_link
    assert bob.console_errors == []
