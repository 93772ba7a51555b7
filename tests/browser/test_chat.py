"""The browser app against a real `serve`: create, share, join, chat, members, safety."""

import base64
import json
import re
import sqlite3
from pathlib import Path

import pytest
from playwright.sync_api import expect

from chatclient.client import affinity_hint
from chatclient.crypto import decrypt
from tests.browser.pages import (
    PythonClient,
    create_room,
    expect_members,
    join_key_of,
    join_room,
    say,
    stored_contents,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120)]

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "aes_gcm.json").read_text())
XSS = "<img src=x onerror=alert(1)>"


def test_create_share_join_chat_and_leave(server, sqlite_env, new_page):
    """Two people chat through the share link; members update live; only ciphertext is stored."""
    alice = new_page(server.http)
    link = create_room(alice, "Team room", "Alice", password="s3cret", description="Plans for Friday")
    expect(alice.locator("#room-description")).to_have_text("Plans for Friday")
    expect_members(alice, "Alice (you)")
    assert link.startswith(f"{server.http}/rooms/")

    bob = new_page(link)
    # The share link's page opens its socket with the room's affinity hint, never the key.
    hint = affinity_hint(join_key_of(link))
    expect(bob.get_by_label("Join key")).to_be_hidden()
    assert [url.partition("/ws/")[2] for url in bob.socket_urls] == [f"?room={hint}"]
    in_page = "async (key) => (await import('/static/chat/socket.js')).affinityHint(key)"
    assert bob.evaluate(in_page, "k-é") == affinity_hint("k-é")
    expect(bob.get_by_role("button", name="Create room")).to_be_hidden()
    expect(bob.get_by_label("Join key")).to_be_hidden()
    expect(bob.locator("#join-form").get_by_label("Your name")).to_be_focused()
    join_room(bob, "Bob", password="s3cret")
    expect(bob.locator("#room-name")).to_have_text("Team room")
    expect_members(bob, "Alice", "Bob (you)")
    expect_members(alice, "Alice (you)", "Bob")

    say(alice, "Hello Bob")
    expect(bob.locator("#messages li .text")).to_have_text(["Hello Bob"])
    expect(bob.locator("#messages li .sender")).to_have_text(["Alice"])
    expect(bob.locator("#messages li time")).to_have_text([re.compile(r"\d")])

    box = bob.get_by_label("Message", exact=True)
    box.fill("first line")
    box.press("Shift+Enter")
    box.type("second line")
    expect(box).to_have_value("first line\nsecond line")  # Shift+Enter did not send
    box.press("Enter")
    expect(box).to_have_value("")
    expect(alice.locator("#messages li .text")).to_have_text(["Hello Bob", "first line\nsecond line"])

    stored = stored_contents(sqlite_env)
    assert len(stored) == 2
    assert not any("Hello" in content or "line" in content for content in stored)
    sent = [frame for page in (alice, bob) for frame in page.frames_sent if frame["type"] == "ChatMessage"]
    assert sorted(frame["content"] for frame in sent) == sorted(stored)  # the wire held only ciphertext

    bob.get_by_role("button", name="Leave").click()
    expect(bob.get_by_role("button", name="Join room")).to_be_visible()
    expect_members(alice, "Alice (you)")
    assert alice.console_errors == [] and bob.console_errors == []


def test_user_text_is_rendered_as_text_never_as_html(server, new_page):
    """Names, room fields and messages like `<img onerror>` show literally and run nothing."""
    alice = new_page(server.http)
    link = create_room(alice, XSS, f"A {XSS}", description=f"<script>alert(2)</script>{XSS}")
    bob = new_page(link)
    join_room(bob, f"B {XSS}")
    say(alice, XSS)
    say(bob, f"<b>bold</b> {XSS}")
    for page in (alice, bob):
        expect(page.locator("#messages li .text")).to_have_text([XSS, f"<b>bold</b> {XSS}"])
        expect(page.locator("#messages li .sender")).to_have_text([f"A {XSS}", f"B {XSS}"])
        expect(page.locator("#room-name")).to_have_text(XSS)
        expect(page.locator("#room-description")).to_have_text(f"<script>alert(2)</script>{XSS}")
        assert page.locator("#room img, #room b, #room script").count() == 0
        assert page.dialogs == []
    expect_members(bob, f"A {XSS}", f"B {XSS} (you)")


def test_shared_vectors_decrypt_and_encrypt_in_the_page(server, new_page):
    """tests/vectors/aes_gcm.json: WebCrypto gives what Python's cryptography gives."""
    page = new_page(server.http)
    results = page.evaluate(
        """async (vectors) => {
            const c = await import("/static/chat/crypto.js");
            const key = await c.importKey(vectors.key);
            const out = [];
            for (const v of vectors.cases) {
                out.push({
                    plaintext: await c.decrypt(key, v.content),
                    content: await c.encrypt(key, v.plaintext, c.fromBase64(v.nonce)),
                });
            }
            return out;
        }""",
        VECTORS,
    )
    assert results == [{"plaintext": c["plaintext"], "content": c["content"]} for c in VECTORS["cases"]]


def test_python_client_and_page_read_each_other(server, new_page):
    """cryptography encrypts, the page decrypts, and the other way round; garbage is flagged."""
    alice = new_page(server.http)
    link = create_room(alice, "Cross", "Alice")
    with PythonClient(server.url) as python:
        python.join(join_key_of(link), "Py")
        expect_members(alice, "Alice (you)", "Py")

        python.say("from Python: Grüße 👋")
        expect(alice.locator("#messages li .text")).to_have_text(["from Python: Grüße 👋"])
        say(alice, "from the browser: ñ ✓")
        received = python.expect("ChatMessage", sender="Alice")
        assert "browser" not in received["content"]
        assert decrypt(python.key, received["content"]) == "from the browser: ñ ✓"

        # Valid base64 of 40 bytes, but not sealed with the room key.
        garbage = base64.b64encode(bytes(range(40))).decode()
        python.send(type="ChatMessage", content=garbage)
        undecryptable = alice.locator("#messages li.undecryptable .text")
        expect(undecryptable).to_have_text("This message could not be decrypted.")
        expect(alice.locator("#messages")).not_to_contain_text(garbage)
    expect_members(alice, "Alice (you)")


def test_a_presence_event_lost_on_the_way_is_mended_by_the_next_member_list(server_with, new_page):
    """A ParticipantJoined that never reaches the page (as when the site's Redis restarts
    between processes; here the page's socket drops it) leaves its member list short
    only until the page asks for the whole list again, every MEMBERS_REFRESH seconds."""
    server = server_with(MEMBERS_REFRESH="1", READS_PER_MINUTE="2")
    alice = new_page(server.http)
    dropped: list[str] = []

    def route(page_side):
        server_side = page_side.connect_to_server()
        page_side.on_message(server_side.send)

        def to_page(message):
            frame = json.loads(message)
            if frame["type"] == "ParticipantJoined":
                return dropped.append(frame["name"])
            page_side.send(message)

        server_side.on_message(to_page)

    alice.route_web_socket(re.compile(r"/ws/"), route)
    alice.reload()
    link = create_room(alice, "Drift", "Alice")
    with PythonClient(server.url) as bob:
        bob.join(join_key_of(link), "Bob")
        expect_members(alice, "Alice (you)", "Bob")
        assert dropped == ["Bob"]
        asks = [frame for frame in alice.frames_sent if frame["type"] == "GetMembers"]
        assert asks, "the page asked for the member list"
    # Bob's ParticipantLeft reaches the page (only joins are dropped).
    expect_members(alice, "Alice (you)")

    # Past READS_PER_MINUTE an ask is refused: the page says nothing and asks again later.
    def refused() -> int:
        return sum(frame.get("code") == "rate_limited" for frame in alice.frames_received)

    wait_until(alice, lambda: refused() >= 2, "two refused asks")
    assert {error.text_content() for error in alice.locator(".error").all()} == {""}
    assert alice.console_errors == []


def test_members_refresh_0_asks_for_no_member_list(server_with, new_page):
    server = server_with(MEMBERS_REFRESH="0")
    alice = new_page(server.http)
    create_room(alice, "Quiet", "Alice")
    alice.wait_for_timeout(2500)  # past the shortest wait the page would take (1 s)
    assert [frame for frame in alice.frames_sent if frame["type"] == "GetMembers"] == []


def test_a_message_from_another_day_shows_its_date(sqlite_env, server, new_page):
    """History reaches back days (messages are kept for ever by default): one sent on
    another day shows its date with its time (it showed "07:48 PM" alone, as if today)."""
    alice = new_page(server.http)
    link = create_room(alice, "Old news", "Alice", sealed=False)
    say(alice, "from last week")
    say(alice, "from today")
    # Stored (a message shows at once, pending, before the server has it): else the
    # UPDATE below could find no row yet, and it failed so once under load.
    stored = alice.locator("#messages li.message[data-id] .text")
    expect(stored).to_have_text(["from last week", "from today"])
    with sqlite3.connect(Path(sqlite_env["CHAT_VAR_DIR"]) / "db.sqlite3") as db:
        earliest = "(SELECT MIN(id) FROM chat_message)"
        db.execute(f"UPDATE chat_message SET sent_at = datetime(sent_at, '-6 days') WHERE id = {earliest}")
    bob = new_page(link)
    join_room(bob, "Bob")
    times = bob.locator("#messages li time")
    expect(times).to_have_count(2)
    old, today = times.all_inner_texts()
    assert re.fullmatch(r"\d\d:\d\d( [AP]M)?", today), today
    assert re.fullmatch(r"[A-Z][a-z]{2} \d{1,2}(, \d{4})?, \d\d:\d\d( [AP]M)?", old), old
