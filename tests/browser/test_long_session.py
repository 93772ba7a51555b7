"""A tab left open in a busy room stays bounded: past MESSAGES_KEPT (app.js) the oldest
messages leave the page while it shows the newest, their image previews' blob URLs are
revoked, and scrolling up reads them back as older pages. bench/long_session.py measures
the same over thousands of messages."""

import base64

import pytest
from playwright.sync_api import expect

from tests.browser.pages import PythonClient, create_room, join_key_of
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


def flood(client: PythonClient, count: int, batch: int = 200) -> None:
    """`count` messages "m0", "m1"...: `batch` in flight at a time, each batch stored."""
    for start in range(0, count, batch):
        sent = range(start, min(start + batch, count))
        for i in sent:
            client.say(f"m{i}")
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
