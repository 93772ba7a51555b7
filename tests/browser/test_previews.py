"""Image previews and older pages keep within the socket's READS_PER_MINUTE: previews
are asked for only for images in view, a couple at a time, and one refused for its rate
is asked again later; a refused older page is not asked again by scrolling at once; a
preview comes at its height, so a list that showed its end still does."""

import base64
import json
import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.browser.pages import PythonClient, create_room, join_key_of, join_room, wait_until
from tests.browser.test_files import tiny_png

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120)]

SOCKET = re.compile(r"/ws/(\?room=[0-9a-f]{8})?$")


def refuse(page: Page, refused) -> list[dict]:
    """Route the page's sockets so that a frame for which `refused(frame)` is true is
    answered `rate_limited`; returns the frames so refused. The server still answers it,
    in its turn (the page takes each Error for the oldest frame not answered): the route
    sends it on as an invalid frame of its type and makes the server's `invalid_field`
    (never the answer to what the page sends) a `rate_limited`."""
    caught: list[dict] = []
    invalid = {"GetFile": {"file_id": None}, "GetHistory": {"limit": 0}}

    def route(page_side):
        server_side = page_side.connect_to_server()

        def from_page(message):
            frame = json.loads(message)
            if refused(frame):
                caught.append({**frame, "at": time.monotonic()})
                message = json.dumps({**frame, **invalid[frame["type"]]})
            server_side.send(message)

        def to_page(message):
            frame = json.loads(message)
            if frame["type"] == "Error" and frame["code"] == "invalid_field":
                message = json.dumps({"type": "Error", "code": "rate_limited", "message": "Slow down."})
            page_side.send(message)

        page_side.on_message(from_page)
        server_side.on_message(to_page)

    page.route_web_socket(SOCKET, route)
    page.reload()
    return caught


def sent(page: Page, kind: str) -> list[dict]:
    return [frame for frame in page.frames_sent if frame["type"] == kind]


def test_previews_come_for_images_in_view_a_few_at_a_time_and_a_refused_one_again(server_with, new_page):
    server = server_with(FILES_UPLOADS_PER_MINUTE="100")
    owner = new_page(server.http)
    link = create_room(owner, "Gallery", "Owner")
    png = base64.b64encode(tiny_png()).decode()
    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        for i in range(40):
            bob.send(type="UploadFile", name=f"p{i}.png", mime_type="image/png", content=png)
            newest_id = bob.expect("FileUploaded")["metadata"]["id"]

    carol = new_page(link)
    # The newest image's first GetFile is refused for its rate.
    refused = refuse(carol, lambda frame: frame.get("file_id") == newest_id and not refused)
    join_room(carol, "Carol")
    items = carol.locator("#messages li.file")
    expect(items).to_have_count(40)
    # The list opens at its newest image, whose refused preview is asked for again.
    expect(items.nth(39).locator("img.preview")).to_be_visible(timeout=20_000)
    # (The page's socket as Playwright sees it is the route's: the refused one has no id.)
    asked = [frame["file_id"] for frame in sent(carol, "GetFile")]
    assert len(refused) == 1 and asked.count(None) == 1 and asked.count(newest_id) == 1
    expect(items.nth(38).locator("img.preview")).to_be_visible()
    # Only what is in view (and just around it) was asked for, never all forty.
    carol.wait_for_timeout(1000)
    assert len(set(asked)) < 30 and items.first.locator("img.preview").count() == 0, len(set(asked))
    # Scrolled to the top, the first images are previewed in turn.
    carol.locator("#messages").evaluate("list => { list.scrollTop = 0; }")
    expect(items.first.locator("img.preview")).to_be_visible()
    assert carol.console_errors == []


def test_a_refused_older_page_is_not_asked_again_by_scrolling_at_once(server_with, new_page):
    # A History of the whole limit, so that older pages may be asked for.
    server = server_with(CHAT_RATE_BURST="100", CHAT_HISTORY_LIMIT="60")
    alice = new_page(server.http)
    link = create_room(alice, "Long", "Alice")
    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        bob.said(*(f"line {i}" for i in range(60)))

    carol = new_page(link)
    refused = refuse(carol, lambda frame: frame["type"] == "GetHistory")
    join_room(carol, "Carol")
    expect(carol.locator("#messages li.message")).to_have_count(60)
    # Someone scrolls about near the top of the list: the first older page is refused, and
    # none is asked for again within the next 2 s (the old page asked at each scroll).
    for _ in range(15):
        carol.locator("#messages").evaluate("list => { list.scrollTop = 30; }")
        carol.wait_for_timeout(50)
        carol.locator("#messages").evaluate("list => { list.scrollTop = 0; }")
        carol.wait_for_timeout(50)
    wait_until(carol, lambda: refused, "the first older page")
    times = [frame["at"] for frame in refused]
    assert all(later - earlier > 1.9 for earlier, later in zip(times, times[1:], strict=False)), times
    expect(carol.locator("#message-error")).to_have_text(re.compile("."))
    # Once the delay is over, the button asks again.
    older = carol.get_by_role("button", name="Load older messages")
    expect(older).to_be_enabled(timeout=10_000)
    asked = len(refused)
    older.click()
    wait_until(carol, lambda: len(refused) == asked + 1, "the next ask")
    assert carol.console_errors == []


def test_a_sealed_rooms_images_are_previewed_through_the_same_queue(server, new_page):
    alice = new_page(server.http)
    link = create_room(alice, "Sealed pictures", "Alice", sealed=True)
    with PythonClient(server.url) as bob:
        bob.join_sealed(link, "Bob")
        for i in range(5):
            card = bob.upload_sealed(tiny_png(i + 1, 2), f"dot {i}.png", "image/png")
            bob.say_sealed(card)
    previews = alice.locator("#messages li.file img.preview")
    expect(previews).to_have_count(5)
    for i in range(5):
        expect(previews.nth(i)).to_have_js_property("naturalWidth", i + 1)
    assert alice.console_errors == []


def test_a_list_showing_its_end_still_shows_it_once_an_image_preview_is_in(server_with, new_page):
    server = server_with(CHAT_RATE_BURST="100")
    alice = new_page(server.http)
    link = create_room(alice, "Tall pictures", "Alice")
    messages = alice.locator("#messages")
    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        bob.said(*(f"line {i}" for i in range(30)))
        expect(alice.locator("#messages li.message")).to_have_count(30)
        # A tall image: its preview is 10rem high, far more than the list's end may move.
        png = base64.b64encode(tiny_png(20, 400)).decode()
        bob.send(type="UploadFile", name="tall.png", mime_type="image/png", content=png)
        bob.expect("FileUploaded")
        expect(alice.locator("#messages li.file img.preview")).to_be_visible()
        # Let the image take its height (the old page put it in at none and let it grow).
        alice.wait_for_timeout(300)
        below = messages.evaluate("list => list.scrollHeight - list.scrollTop - list.clientHeight")
        assert below < 40, below  # unread.js's NEAR_BOTTOM_PX
        # So the next message still shows at once, the list following it down.
        bob.say("after the picture")
        expect(alice.locator("#messages li.message").last).to_contain_text("after the picture")
        expect(alice.locator("#messages li.message").last).to_be_in_viewport()
    assert alice.console_errors == []


# Image decoding waits until the test lets it go (window.letDecode()).
HELD_DECODE = """
(() => {
  const decode = HTMLImageElement.prototype.decode;
  let release;
  const held = new Promise((resolve) => { release = resolve; });
  window.letDecode = () => release();
  window.decodesAsked = 0;
  HTMLImageElement.prototype.decode = function () {
    window.decodesAsked += 1;
    return held.then(() => decode.call(this));
  };
})();
"""


def test_a_file_deleted_while_its_preview_decodes_gets_no_preview(server, new_page):
    alice = new_page(server.http, init_script=HELD_DECODE)
    link = create_room(alice, "Deleted pictures", "Alice")
    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        png = base64.b64encode(tiny_png(20, 20)).decode()
        bob.send(type="UploadFile", name="gone.png", mime_type="image/png", content=png)
        file_id = bob.expect("FileUploaded")["metadata"]["id"]
        wait_until(alice, lambda: alice.evaluate("window.decodesAsked") > 0, "the preview's decode")
        bob.send(type="DeleteFile", file_id=file_id)
        item = alice.locator("#messages li.file")
        expect(item).to_contain_text("File deleted: gone.png")
        alice.evaluate("window.letDecode()")
        alice.wait_for_timeout(300)
        assert item.locator("img.preview").count() == 0
    assert alice.console_errors == []
