"""Files from the page: checks, progress, links, image previews, download, delete, drop."""

import io
import json
import re
import struct
import urllib.error
import urllib.request
import zipfile
import zlib

import pytest
from playwright.sync_api import expect

from tests.browser.pages import PythonClient, create_room, join_key_of, join_room, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120)]


def tiny_png(width: int = 3, height: int = 2) -> bytes:
    """A real (red) PNG, so the preview has pixels to show."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def pick(page, name: str, mime_type: str, data: bytes) -> None:
    page.get_by_label("File", exact=True).set_input_files(
        files=[{"name": name, "mimeType": mime_type, "buffer": data}]
    )
    page.get_by_role("button", name="Send file").click()


def record_progress(page) -> None:
    """Record every step the progress label shows (they pass faster than a test could
    look) in the page's `progressSteps`."""
    page.evaluate(
        """() => {
            const label = document.getElementById("upload-label");
            window.progressSteps = [];
            new MutationObserver(() => progressSteps.push(label.textContent))
                .observe(label, {childList: true, characterData: true, subtree: true});
        }"""
    )


def file_items(page):
    return page.locator("#messages li.file")


def test_image_upload_shows_link_and_preview_downloads_and_deletes(server, new_page, tmp_path):
    alice = new_page(server.http)
    link = create_room(alice, "Pictures", "Alice")
    bob = new_page(link)
    join_room(bob, "Bob")
    png = tiny_png()

    record_progress(alice)
    pick(alice, "red dot [1].png", "image/png", png)
    expect(alice.locator("#status")).to_have_text(re.compile(r"Shared red dot \[1\]\.png \(\d+ bytes\)"))
    expect(alice.locator("#upload")).to_be_hidden()
    steps = alice.evaluate("progressSteps")
    assert steps[0] == "Reading red dot [1].png" and "Sending red dot [1].png" in steps, steps
    for page in (alice, bob):
        item = file_items(page)
        expect(item.get_by_role("link")).to_have_text("red dot 1.png")  # brackets dropped by the server
        expect(item.get_by_role("link")).to_have_attribute("href", re.compile(r"^/files/[0-9a-f-]{36}$"))
        preview = item.get_by_role("img", name="Preview of red dot 1.png")
        expect(preview).to_have_attribute("src", re.compile(r"^blob:"))
        expect(preview).to_have_js_property("naturalWidth", 3)
    # Only the uploader (or the room's owner) is offered Delete.
    expect(file_items(bob).get_by_role("button", name=re.compile("^Delete"))).to_have_count(0)

    with bob.expect_download() as download_info:
        file_items(bob).get_by_role("link").click()
    saved = tmp_path / "download.png"
    download_info.value.save_as(saved)
    assert saved.read_bytes() == png
    href = file_items(bob).get_by_role("link").get_attribute("href")
    with pytest.raises(urllib.error.HTTPError) as no_session:
        urllib.request.urlopen(f"{server.http}{href}", timeout=10)
    assert no_session.value.code == 404  # a browser session that never joined gets nothing

    file_items(alice).get_by_role("button", name="Delete red dot 1.png").click()
    for page in (alice, bob):
        expect(file_items(page).locator(".text")).to_have_text("File deleted: red dot 1.png")
        expect(file_items(page).get_by_role("img")).to_have_count(0)
        expect(file_items(page).get_by_role("link")).to_have_count(0)
    assert alice.console_errors == [] and bob.console_errors == []


def test_owner_deletes_anyones_file_and_a_dropped_text_file_uploads(server, new_page):
    alice = new_page(server.http)
    link = create_room(alice, "Docs", "Alice")
    bob = new_page(link)
    join_room(bob, "Bob")

    drop = bob.evaluate_handle(
        """() => {
            const data = new DataTransfer();
            data.items.add(new File(["plain notes\\n"], "notes.txt", {type: "text/plain"}));
            return data;
        }"""
    )
    bob.dispatch_event("#drop-zone", "drop", {"dataTransfer": drop})
    for page in (alice, bob):
        expect(file_items(page).get_by_role("link")).to_have_text("notes.txt")
        expect(file_items(page).get_by_role("img")).to_have_count(0)  # no preview for text
    expect(file_items(bob).get_by_role("button", name="Delete notes.txt")).to_be_visible()

    file_items(alice).get_by_role("button", name="Delete notes.txt").click()
    expect(file_items(bob).locator(".text")).to_have_text("File deleted: notes.txt")


def test_file_from_python_client_is_a_link_in_history_not_ciphertext(server, new_page):
    """The one plaintext ChatMessage renders as a link, live and from History."""
    alice = new_page(server.http)
    link = create_room(alice, "Mixed", "Alice")
    with PythonClient(server.url) as python:
        python.join(join_key_of(link), "Py")
        python.send(
            type="UploadFile", name="report.pdf", mime_type="application/pdf", content="JVBERi0xLjQKJQ=="
        )
        python.expect("FileUploaded")
        python.say("see the report")
    expect(file_items(alice).get_by_role("link")).to_have_text("report.pdf")
    expect(alice.locator("#messages .undecryptable")).to_have_count(0)

    late = new_page(link)
    join_room(late, "Late")
    expect(late.locator("#messages li .text")).to_have_text(["File: report.pdf", "see the report"])
    expect(file_items(late).get_by_role("link")).to_have_attribute("href", re.compile(r"^/files/"))


def test_server_file_errors_show_by_the_file_picker(server_with, new_page):
    """Bytes that are not what the type says (refused by the page as the server would,
    before a byte is sent), and quota_exceeded."""
    server = server_with(FILES_ROOM_QUOTA="100")
    page = new_page(server.http)
    create_room(page, "Small", "Ann")
    pick(page, "fake.png", "image/png", b"this is not a png")
    refused = "The contents of fake.png are not image/png: it was not shared."
    expect(page.locator("#file-error")).to_have_text(refused)
    expect(page.locator("#upload")).to_be_hidden()
    assert not any(frame["type"] == "UploadFile" for frame in page.frames_sent)

    pick(page, "a.txt", "text/plain", b"a" * 80)
    expect(file_items(page).get_by_role("link")).to_have_text("a.txt")
    pick(page, "b.txt", "text/plain", b"b" * 80)
    expect(page.locator("#file-error")).to_have_text(re.compile("no space left for files"))
    expect(page.get_by_role("button", name="Send file")).to_be_enabled()


def test_an_expired_files_link_never_takes_the_tab_away_from_the_room(server_with, new_page):
    """A standard room's file link is a download: once the file has expired, its 404 does
    not replace the app (with the room, its messages and its socket) by a text page."""
    server = server_with(FILES_TTL="2")
    alice = new_page(server.http)
    create_room(alice, "Short-lived", "Alice")
    pick(alice, "notes.txt", "text/plain", b"hello")
    link = file_items(alice).get_by_role("link", name="notes.txt")
    expect(link).to_have_attribute("href", re.compile(r"^/files/[0-9a-f-]{36}$"))
    expect(link).to_have_attribute("download", "")
    with alice.expect_download() as fresh:
        link.click()
    assert fresh.value.suggested_filename == "notes.txt"
    alice.wait_for_timeout(3000)  # FILES_TTL is over
    address = alice.url
    link.click()
    alice.wait_for_timeout(1500)
    assert alice.url == address
    expect(alice.locator("#room-name")).to_have_text("Short-lived")
    expect(alice.get_by_label("Message", exact=True)).to_be_editable()


def test_types_named_otherwise_by_some_browsers_are_sent_under_their_usual_name(server, new_page):
    """Chrome and Edge on Windows call a zip file application/x-zip-compressed, and older
    browsers have image/pjpeg and image/x-png: the page takes them, and sends the type
    the server knows."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", "hello")
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
    alice = new_page(server.http)
    create_room(alice, "Aliases", "Alice")
    cases = [
        ("photos.zip", "application/x-zip-compressed", buffer.getvalue(), "application/zip"),
        ("old.jpg", "image/pjpeg", jpeg, "image/jpeg"),
        ("old.png", "image/x-png", tiny_png(), "image/png"),
    ]
    for name, declared, data, sent in cases:
        pick(alice, name, declared, data)
        expect(alice.locator("#status")).to_have_text(f"Shared {name} ({len(data)} bytes).")
        expect(alice.locator("#file-error")).to_have_text("")
        upload = [frame for frame in alice.frames_sent if frame["type"] == "UploadFile"][-1]
        assert (upload["name"], upload["mime_type"]) == (name, sent)


def test_a_file_picked_while_another_uploads_is_kept_for_its_turn(server, new_page):
    """Picking the next file while one is being shared: the end of the first upload leaves
    the second choice in the picker (it cleared it, and Send file then said "Choose a file
    first." of a file just chosen)."""
    alice = new_page(server.http)
    held: list[str] = []  # the first upload's answer, until the second file is picked
    sockets: list = []

    def route(page_side) -> None:
        sockets.append(page_side)
        server_side = page_side.connect_to_server()
        page_side.on_message(server_side.send)

        def to_page(message) -> None:
            if json.loads(message)["type"] == "FileUploaded" and not held:
                return held.append(message)
            page_side.send(message)

        server_side.on_message(to_page)

    alice.route_web_socket(re.compile(r"/ws/(\?room=[0-9a-f]{8})?$"), route)
    alice.reload()
    create_room(alice, "Two files", "Alice")
    pick(alice, "first.txt", "text/plain", b"the first")
    wait_until(alice, lambda: held, "the first upload's answer")
    picker = alice.get_by_label("File", exact=True)
    picker.set_input_files(files=[{"name": "second.txt", "mimeType": "text/plain", "buffer": b"the second"}])
    sockets[-1].send(held[0])
    expect(alice.locator("#status")).to_have_text("Shared first.txt (9 bytes).")
    expect(picker).to_have_value(re.compile(r"second\.txt$"))
    alice.get_by_role("button", name="Send file").click()
    expect(file_items(alice).get_by_role("link")).to_have_text(["first.txt", "second.txt"])
    expect(alice.locator("#file-error")).to_have_text("")
    expect(picker).to_have_value("")
