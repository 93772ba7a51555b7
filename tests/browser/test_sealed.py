"""Sealed rooms in the page (issue 16): offered by default, the secret only in the share
link's fragment, a cut-short or missing link told in plain words with a field for the
whole one, re-attributed messages never shown under a name, files encrypted before they
leave the page and checked after they come back. Desktop and phone widths."""

import base64
import os
import re
import sqlite3
from pathlib import Path

import pytest
from playwright.sync_api import expect

from chatclient.crypto import open_message, seal_message
from tests.browser.pages import (
    PythonClient,
    activate,
    create_room,
    expect_members,
    join_room,
    open_message_menu,
    say,
    stored_contents,
)
from tests.browser.test_catch_up import SOCKETS_SCRIPT
from tests.browser.test_conversations import menu_actions
from tests.browser.test_files import file_items, pick, record_progress, tiny_png
from tests.e2e.servers import manage

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(150)]

INCOMPLETE = "This link is incomplete: ask for the whole link."
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 375, "height": 740}}


@pytest.mark.parametrize("size", SIZES)
def test_a_sealed_room_is_the_default_and_its_link_reads_in_another_browser(
    size, server, sqlite_env, new_page
):
    alice = new_page(server.http, viewport=SIZES[size])
    expect(alice.get_by_label("Sealed room (the server never sees the key)")).to_be_checked()
    link = create_room(alice, "Sealed", "Alice", password="pw", sealed=True)
    # The creator's address is the whole link: a reload finds the secret again.
    assert alice.url == link
    created = next(frame for frame in alice.frames_sent if frame["type"] == "CreateRoom")
    assert created["sealed"] is True and re.fullmatch(r"[A-Za-z0-9+/]{22}==", created["key_check"])
    secret = link.split("#k=")[1]
    assert all(secret not in str(frame) for frame in alice.frames_sent)

    bob = new_page(link, viewport=SIZES[size])
    # Every request Bob's page makes from here on (scripts, styles, the socket, files).
    requests = []
    bob.on("request", lambda request: requests.append((request.url, request.all_headers())))
    bob.reload()
    expect(bob.locator("#link-form")).to_be_hidden()
    join_room(bob, "Bob", password="pw")
    expect_members(bob, "Alice", "Bob (you)")
    say(alice, "only for Bob 🔒")
    say(bob, "and back")
    for page in (alice, bob):
        expect(page.locator("#messages li .text")).to_have_text(["only for Bob 🔒", "and back"])
        expect(page.locator("#messages li .sender")).to_have_text(["Alice", "Bob"])
    assert bob.url == link  # the page keeps the fragment: the link can be shared again
    stored = stored_contents(sqlite_env)
    assert len(stored) == 2 and not any("only for Bob" in content for content in stored)
    assert all(secret not in str(frame) for page in (alice, bob) for frame in page.frames_sent)
    # No request carries the fragment: not in its address, not as a Referer.
    assert len(requests) >= 5, requests
    assert not [request for request in requests if secret in str(request) or "#k=" in str(request)]
    # A Referer is blank, or a script's own address (a module importing another): never the page's.
    referers = {headers.get("referer", "") for _, headers in requests}
    assert referers and all(referer == "" or "/static/" in referer for referer in referers), referers
    assert alice.console_errors == [] and bob.console_errors == []


def test_a_missing_or_cut_short_link_is_told_and_the_whole_link_opens_the_room(server, new_page):
    alice = new_page(server.http)
    link = create_room(alice, "Sealed", "Alice", sealed=True)
    say(alice, "written before Bob came")
    bare, secret = link.split("#")

    cut = new_page(link[:-3])
    expect(cut.locator("#link-problem")).to_have_text(INCOMPLETE)
    missing = new_page(bare)
    expect(missing.locator("#link-problem")).to_have_text(INCOMPLETE)
    expect(missing.get_by_label("Whole link")).to_be_visible()

    # Joining without the secret shows who is there, and nothing readable.
    join_room(missing, "Bob")
    expect_members(missing, "Alice", "Bob (you)")
    expect(missing.locator("#messages li.locked .text")).to_have_text(
        ["Sealed message: open the room's whole link to read it."]
    )
    expect(missing.locator("#messages li .sender")).to_have_count(0)
    expect(missing.get_by_label("Message", exact=True)).to_be_disabled()
    expect(missing.get_by_role("button", name="Send file")).to_be_disabled()

    # Another room's secret (a wrong link) is refused; the whole link opens the room.
    wrong = link[:-43] + ("A" if link[-43] != "A" else "B") + link[-42:]
    for pasted in (wrong, bare, link[:-1]):
        missing.get_by_label("Whole link").fill(pasted)
        missing.get_by_role("button", name="Use this link").click()
        expect(missing.locator("#whole-link-error")).to_have_text(INCOMPLETE)
    missing.get_by_label("Whole link").fill(link)
    missing.get_by_role("button", name="Use this link").click()
    expect(missing.locator("#link-form")).to_be_hidden()
    expect(missing.locator("#messages li .text")).to_have_text(["written before Bob came"])
    assert missing.url.endswith("#" + secret)
    say(missing, "now I can read")
    expect(alice.locator("#messages li .text")).to_have_text(["written before Bob came", "now I can read"])

    # On the lobby of a cut-short link, the whole link goes into the address before joining.
    cut.get_by_label("Whole link").fill(link)
    cut.get_by_role("button", name="Use this link").click()
    expect(cut.locator("#link-form")).to_be_hidden()
    join_room(cut, "Carol")
    expect(cut.locator("#messages li .text")).to_have_text(["written before Bob came", "now I can read"])
    assert not any("#k=" in str(frame) for page in (missing, cut) for frame in page.frames_sent)


def test_a_whole_link_pasted_as_join_key_opens_the_room(server, new_page):
    alice = new_page(server.http)
    link = create_room(alice, "Sealed", "Alice", sealed=True)
    say(alice, "hello")
    bob = new_page(server.http)
    join_room(bob, "Bob", join_key=link)
    expect(bob.locator("#messages li .text")).to_have_text(["hello"])
    assert bob.url == link


def test_a_message_whose_sender_the_server_swapped_is_never_shown_under_a_name(server, sqlite_env, new_page):
    alice = new_page(server.http)
    link = create_room(alice, "Sealed", "Alice", sealed=True)
    bob = new_page(link)
    join_room(bob, "Bob")
    say(alice, "I, Alice, wrote this")
    expect(bob.locator("#messages li .text")).to_have_text(["I, Alice, wrote this"])
    alice.locator("#messages li.message").get_by_role("button", name="Message actions").click()
    alice.get_by_role("menuitem", name="Reply").click()
    say(alice, "and this answers it")
    expect(bob.locator("#messages li .quote")).to_have_text(["Alice: I, Alice, wrote this"])
    # The server (its database) says Bob wrote the first.
    with sqlite3.connect(Path(sqlite_env["CHAT_VAR_DIR"]) / "db.sqlite3") as db:
        db.execute("UPDATE chat_message SET sender = 'Bob' WHERE id = (SELECT MIN(id) FROM chat_message)")
    carol = new_page(link)
    join_room(carol, "Carol")
    item = carol.locator("#messages li.message").first
    expect(item.locator(".text")).to_have_text("This message could not be verified.")
    expect(item).to_have_class(re.compile("unverified"))
    expect(item.locator(".sender")).to_have_count(0)
    expect(carol.locator("#messages")).not_to_contain_text("Alice, wrote")
    # Nor does a reply's quote name the sender the server claims.
    expect(carol.locator("#messages li .quote")).to_have_text(["This message could not be verified."])


def test_sealed_files_are_encrypted_in_the_page_previewed_saved_and_a_tampered_one_refused(
    server, sqlite_env, new_page, tmp_path
):
    alice = new_page(server.http)
    link = create_room(alice, "Sealed", "Alice", sealed=True)
    bob = new_page(link)
    join_room(bob, "Bob")
    record_progress(alice)
    png = tiny_png()
    pick(alice, "red dot.png", "image/png", png)
    expect(alice.locator("#status")).to_have_text(f"Shared red dot.png ({len(png)} bytes).")
    assert "Encrypting red dot.png" in alice.evaluate("progressSteps")
    upload = next(frame for frame in alice.frames_sent if frame["type"] == "UploadFile")
    assert (upload["name"], upload["mime_type"]) == ("encrypted.bin", "application/octet-stream")
    assert len(base64.b64decode(upload["content"])) == len(png) + 28
    assert base64.b64encode(png).decode() not in str(alice.frames_sent)
    for page in (alice, bob):
        item = file_items(page)
        expect(item.get_by_role("button", name="red dot.png", exact=True)).to_be_visible()
        preview = item.get_by_role("img", name="Preview of red dot.png")
        expect(preview).to_have_attribute("src", re.compile(r"^blob:"))
        expect(preview).to_have_js_property("naturalWidth", 3)
    # No "[File: ...]" message: the card is ciphertext like any message.
    assert not any(content.startswith("[File:") for content in stored_contents(sqlite_env))

    with bob.expect_download() as download:
        file_items(bob).get_by_role("button", name="red dot.png", exact=True).click()
    assert download.value.suggested_filename == "red dot.png"
    download.value.save_as(tmp_path / "saved.png")
    assert (tmp_path / "saved.png").read_bytes() == png

    # One byte of the stored ciphertext flipped (under the store's own at-rest key, so
    # the server serves it): refused in words, nothing saved.
    pick(alice, "notes.txt", "text/plain", b"the real words\n" * 50)
    expect(file_items(bob)).to_have_count(2)
    manage(
        sqlite_env,
        "shell",
        "-c",
        "from files import blobs\nfrom files.models import SharedFile\n"
        "f = SharedFile.objects.order_by('-created_at').first()\n"
        "data = bytearray(blobs.read(f.id, f.blob)); data[40] ^= 1\n"
        "name = blobs.write(f.id, bytes(data)); blobs.remove(f.blob)\n"
        "SharedFile.objects.filter(pk=f.pk).update(blob=name)\n",
    )
    downloads = []
    bob.on("download", lambda download: downloads.append(download))
    file_items(bob).nth(1).get_by_role("button", name="notes.txt", exact=True).click()
    expect(file_items(bob).nth(1).locator(".file-note")).to_have_text(
        "notes.txt does not match what was shared: it was refused and nothing was saved."
    )
    assert downloads == []
    assert alice.console_errors == [] and bob.console_errors == []


def test_a_members_copies_of_anothers_card_neither_rename_break_nor_delete_the_file(
    server, new_page, tmp_path
):
    """A file's id is learnt from its card, so its first card is its uploader's. A member
    who posts it again under another name and type, or with another key, or edits an
    earlier message into it, gets a message that could not be verified, and the
    uploader's file keeps its name and preview. An identical copy is the same file; the
    owner deleting that message leaves the file."""
    alice = new_page(server.http)
    link = create_room(alice, "Sealed", "Alice", sealed=True)
    bob = new_page(link)
    join_room(bob, "Bob")
    png = tiny_png()
    with PythonClient(server.url) as mallory:
        mallory.join_sealed(link, "Mallory")
        early = mallory.say_sealed({"t": "text", "body": "before the file"})
        pick(alice, "red dot.png", "image/png", png)
        shared = mallory.expect("ChatMessage", sender="Alice")
        card = open_message(mallory.sealed_keys.message_key, mallory.room_id, "Alice", shared["content"])
        for copy in (
            card | {"name": "contract.pdf", "mime_type": "application/pdf"},
            card | {"key": base64.b64encode(os.urandom(32)).decode()},
            card,
        ):
            mallory.say_sealed(copy)
        unverified = "This message could not be verified."
        texts = ["File: red dot.png", unverified, unverified, "File: red dot.png"]
        expect(bob.locator("#messages li .text")).to_have_text(["before the file", *texts])
        renamed = card | {"name": "contract.pdf", "mime_type": "application/pdf"}
        content = seal_message(mallory.sealed_keys.message_key, mallory.room_id, "Mallory", renamed)
        mallory.send(type="EditMessage", id=early["id"], content=content)
        mallory.expect("MessageEdited")
    expect(bob.locator("#messages li .text").first).to_have_text("This edit could not be read.")
    carol = new_page(link)
    join_room(carol, "Carol")
    expect(carol.locator("#messages li .text")).to_have_text([unverified, *texts])
    for page, i in ((bob, 0), (bob, 1), (carol, 0)):
        preview = file_items(page).nth(i).get_by_role("img", name="Preview of red dot.png")
        expect(preview).to_have_js_property("naturalWidth", 3)

    menu = open_message_menu(alice, file_items(alice).nth(1))
    activate(alice, menu.get_by_role("menuitem", name="Delete", exact=True))
    activate(alice, alice.locator("#confirm-delete").get_by_role("button", name="Delete message"))
    expect(file_items(bob)).to_have_count(1)
    assert "DeleteFile" not in [frame["type"] for frame in alice.frames_sent]
    with bob.expect_download() as download:
        file_items(bob).get_by_role("button", name="red dot.png", exact=True).click()
    download.value.save_as(tmp_path / "saved.png")
    assert (tmp_path / "saved.png").read_bytes() == png
    assert alice.console_errors == [] and bob.console_errors == []


def test_hostile_cards_are_never_opened(server, new_page):
    """A member (here a raw websocket client with the room's keys) sends cards the page
    must not act on: an svg or html file, an id that is a path, a card that lies about
    the size. None is rendered or fetched; the lie is refused when saved."""
    alice = new_page(server.http)
    link = create_room(alice, "Sealed", "Alice", sealed=True)
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'
    with PythonClient(server.url) as mallory:
        mallory.join_sealed(link, "Mallory")
        card = mallory.upload_sealed(svg, "x.svg", "image/svg+xml")
        for lie in (
            card,
            card | {"name": "x.html", "mime_type": "text/html; charset=utf-8"},
            card | {"name": "x.png", "mime_type": "image/png", "id": "../../admin/"},
            # AES-128's key: WebCrypto would take it; PROTOCOL.md's file_key is 32 bytes.
            card
            | {"name": "short.png", "mime_type": "image/png", "key": base64.b64encode(bytes(16)).decode()},
            card | {"name": "small.png", "mime_type": "image/png", "size": 3},
            {"t": "poll", "question": "?"},
        ):
            mallory.say_sealed(lie)
    texts = alice.locator("#messages li .text")
    expect(texts).to_have_text(["(unsupported message)"] * 4 + ["File: small.png", "(unsupported message)"])
    lying = file_items(alice)
    expect(lying.locator(".file-note")).to_have_text(
        "small.png does not match what was shared: it was refused and nothing was saved."
    )
    expect(alice.locator("#messages img")).to_have_count(0)
    assert alice.dialogs == [] and alice.console_errors == []


def test_a_file_that_is_not_the_image_it_says_is_neither_shared_nor_previewed(server, new_page):
    """The server checks a standard room's upload against its type; it cannot look into a
    sealed room's. The page checks the same there: it refuses to share text named
    fake.png, and previews no card whose bytes are not its image (from a client that
    did not check), though the file may still be saved."""
    alice = new_page(server.http)
    link = create_room(alice, "Sealed", "Alice", sealed=True)
    pick(alice, "fake.png", "image/png", b"just some words, not a picture\n")
    expect(alice.locator("#file-error")).to_have_text(
        "The contents of fake.png are not image/png: it was not shared."
    )
    assert not any(frame["type"] == "UploadFile" for frame in alice.frames_sent)
    with PythonClient(server.url) as mallory:
        mallory.join_sealed(link, "Mallory")
        mallory.say_sealed(mallory.upload_sealed(b"just some words\n", "fake.png", "image/png"))
    item = file_items(alice)
    expect(item.locator(".file-note")).to_have_text("No preview: the contents of fake.png are not image/png.")
    expect(alice.locator("#messages img")).to_have_count(0)
    expect(item.get_by_role("button", name="fake.png", exact=True)).to_be_visible()


def a_copy_after_the_minutes(server_with, new_page) -> tuple[str, PythonClient, dict]:
    """Alice's sealed room, where Mallory shares the minutes, then a renamed copy of their
    card, then two messages: a History of 3 (CHAT_HISTORY_LIMIT) starts at the copy.
    Returns the room's link, Mallory's client (gone) and the card."""
    server = server_with(CHAT_HISTORY_LIMIT="3")
    alice = new_page(server.http)
    link = create_room(alice, "Sealed", "Alice", sealed=True)
    with PythonClient(server.url) as mallory:
        mallory.join_sealed(link, "Mallory")
        card = mallory.upload_sealed(b"the minutes\n", "minutes.txt", "text/plain")
        mallory.say_sealed(card)
        mallory.say_sealed(card | {"name": "agenda.txt"})
        mallory.say_sealed({"t": "text", "body": "one"})
        mallory.say_sealed({"t": "text", "body": "two"})
    return link, mallory, card


def test_a_copy_taken_for_the_file_before_its_first_card_came_is_shown_for_what_it_is(server_with, new_page):
    """Carol joins after the file's first card (her History of 3 starts at a renamed copy
    of it), so the copy is all she knows of the file, and is shown as it. Once an older
    page brings the first card, the copy is a message that could not be verified (it
    stayed the file, under the copier's name for it, beside the real one)."""
    link, mallory, card = a_copy_after_the_minutes(server_with, new_page)
    carol = new_page(link)
    join_room(carol, "Carol")
    texts = carol.locator("#messages li.message .text")
    expect(texts).to_have_text(["File: agenda.txt", "one", "two"])
    carol.get_by_role("button", name="Load older messages").click()
    unverified = "This message could not be verified."
    expect(texts).to_have_text(["File: minutes.txt", unverified, "one", "two"])
    expect(carol.locator("#messages li.message.unverified .sender")).to_have_count(0)
    assert carol.console_errors == []


# A frame sent on the page's socket (SOCKETS_SCRIPT), as if the page sent it.
SEND_ON_ITS_SOCKET = "(frame) => window.__sockets.at(-1).send(JSON.stringify(frame))"


def test_ones_own_copy_taken_for_the_file_is_shown_as_any_copy_of_ones_own_is(server_with, new_page):
    """Carol's case, where the copy is the page's own: Mallory's page (her name again, her
    client gone) shows it as hers, the file, with Delete. Once an older page brings the
    first card, it is a message that could not be verified, as a copy of hers read after
    the first card is: like any message that does not verify, neither is attributed (no
    sender, not "mine", no Delete), one's own or not."""
    link, mallory, card = a_copy_after_the_minutes(server_with, new_page)
    page = new_page(link, init_script=SOCKETS_SCRIPT)
    join_room(page, "Mallory")
    texts = page.locator("#messages li.message .text")
    expect(texts).to_have_text(["File: agenda.txt", "one", "two"])
    items = page.locator("#messages li.message")
    expect(items.first).to_have_class("message mine file")
    assert menu_actions(page, items.first) == ["Reply", "Delete", "React"]
    page.get_by_role("button", name="Load older messages").click()
    unverified = "This message could not be verified."
    expect(texts).to_have_text(["File: minutes.txt", unverified, "one", "two"])
    # Another copy of hers, renamed, sent on her page's socket: read after the first card.
    renamed = seal_message(mallory.sealed_keys.message_key, mallory.room_id, "Mallory", card | {"name": "x"})
    page.evaluate(SEND_ON_ITS_SOCKET, {"type": "ChatMessage", "content": renamed})
    expect(texts).to_have_text(["File: minutes.txt", unverified, "one", "two", unverified])
    for copy in (items.nth(1), items.nth(4)):
        expect(copy).to_have_class("message unverified")
        assert copy.get_attribute("data-sender") is None and copy.locator(".sender").count() == 0
        assert menu_actions(page, copy) == ["Reply", "React"]
    assert page.console_errors == []
