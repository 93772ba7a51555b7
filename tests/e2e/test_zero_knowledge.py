"""Zero knowledge, tested (issue 16): after a session of chat and files in a sealed room,
from the Python client and from the browser app (each reading the other's messages and
files), and in a standard room, everything the server held or saw is dumped (every table
of the database, the file store, the session's Redis traffic through MONITOR, the
server's log output with its HTTP access lines) and every 32-byte value found in it (raw,
base64, base64url, hex) is tried as the sealed room's secret, its message key and each
file's key: none opens anything. The same search on the standard room finds its key once
the key-encryption key is added, and finds the sealed room's secret when it is planted:
the search can fail."""

import base64
import binascii
import os
import re
import threading
import uuid
from pathlib import Path

import psycopg
import pytest
import redis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from playwright.sync_api import expect

from chatclient import FileShared, Message
from chatclient.crypto import (
    DecryptError,
    SealedKeys,
    open_file,
    open_message,
    secret_from_link,
)
from tests.browser.conftest import browser, browser_unavailable, new_page  # noqa: F401 (fixtures)
from tests.browser.pages import ClientThread, expect_texts, join_room, next_from, say
from tests.browser.test_files import file_items, pick, tiny_png
from tests.conftest import REDIS_URL

# tests/browser/conftest.py skips (or with BROWSER_TESTS_REQUIRED=1 fails) browser tests
# without chromium; that hook only runs when tests/browser is collected, so this module
# says the same for itself.
NO_BROWSER = browser_unavailable()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        NO_BROWSER is not None and os.environ.get("BROWSER_TESTS_REQUIRED") != "1", reason=str(NO_BROWSER)
    ),
]

BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{43,}={0,2}")
HEX_RUN = re.compile(r"[0-9a-fA-F]{64,}")
# uvicorn's access line, as the server's log output has it (CHAT_ACCESS_LOG).
ACCESS_LINE = re.compile(
    r'uvicorn\.access .* - "(?P<method>[A-Z]+) (?P<path>\S+) HTTP/1\.1" (?P<status>\d{3})'
)


class Monitor:
    """Redis's MONITOR for the length of the session: every command any client sent."""

    def __init__(self, url: str) -> None:
        self.lines: list[str] = []
        self.client = redis.Redis.from_url(url)
        self.monitor = self.client.monitor()
        self.monitor.__enter__()
        self.thread = threading.Thread(target=self.listen, daemon=True)
        self.thread.start()

    def listen(self) -> None:
        try:
            for command in self.monitor.listen():
                self.lines.append(command["command"])
        except Exception:  # noqa: BLE001 - the connection is closed at stop
            pass

    def stop(self) -> list[str]:
        self.monitor.connection.disconnect()
        self.thread.join(5)
        return self.lines


def decodings(text: str) -> list[bytes]:
    """`text` read as standard base64, base64url and hex, each way that decodes."""
    out = []
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        for body in (text, text[: len(text) // 4 * 4]):
            padded = body.rstrip("=") + "=" * (-len(body.rstrip("=")) % 4)
            try:
                out.append(decode(padded))
            except (binascii.Error, ValueError):
                pass
    return out


def windows(data: bytes) -> set[bytes]:
    return {data[start : start + 32] for start in range(len(data) - 31)}


def candidates(texts: list[str], blobs: list[bytes]) -> set[bytes]:
    """Every 32-byte value in the dump: each window of raw bytes, and of every run of
    base64, base64url or hex text once decoded."""
    found: set[bytes] = set()
    for blob in blobs:
        found |= windows(blob)
        texts.append(blob.decode("latin-1"))
    for text in texts:
        for run in BASE64_RUN.findall(text):
            for decoded in decodings(run):
                found |= windows(decoded)
        for run in HEX_RUN.findall(text):
            found |= windows(bytes.fromhex(run[: len(run) // 2 * 2]))
    return found


def database_dump(url: str) -> tuple[list[str], list[bytes], dict[str, list[dict]]]:
    """Every row of every table, as text and bytes; and the rows (column -> value) by table."""
    texts, blobs, tables = [], [], {}
    with psycopg.connect(url) as connection:
        names = [
            name
            for (name,) in connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        ]
        for name in names:
            cursor = connection.execute(f'SELECT * FROM "{name}"')
            columns = [column.name for column in cursor.description]
            tables[name] = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
            for row in tables[name]:
                for value in row.values():
                    if isinstance(value, bytes | memoryview):
                        blobs.append(bytes(value))
                    elif value is not None:
                        texts.append(str(value))
    return texts, blobs, tables


PDF = b"%PDF-1.7 sealed file " + bytes(range(256)) * 8
PNG = tiny_png(4, 3)


def sealed_and_standard_session(url: str, http: str, open_page) -> dict:
    """Chat and files in a sealed room from two Python clients and a browser, each reading
    the others; then chat in a standard room from the two Python clients. The clients'
    coroutines run on a loop of their own (Playwright's sync API owns this thread), one
    step at a time, between the browser's steps."""
    runner = ClientThread()
    try:
        alice, bob = runner.connect(url), runner.connect(url)
        sealed = runner.run(alice.create_room("Sealed", "zk", owner_name="Alice", sealed=True))
        assert sealed.share_link.startswith(f"{http}/rooms/{sealed.join_key}/#k=")
        runner.run(bob.join_room(sealed.share_link, "Bob"))
        runner.run(alice.send("sealed words from Alice"))
        runner.run(bob.send("sealed words from Bob"))
        bob_file = runner.run(bob.upload_file(PDF, name="secret.pdf"))

        carol = browser_part(open_page, sealed.share_link)
        said = runner.run(next_from(alice, Message, "Carol"))
        assert said.text == "sealed words from Carol"
        card = runner.run(next_from(alice, FileShared, "Carol"))
        assert (card.name, card.mime_type, card.size) == ("carol dot.png", "image/png", len(PNG))
        assert runner.run(alice.download_file(card.file_id))[1] == PNG
        runner.run(alice.send("Alice read Carol"))
        texts = [
            "sealed words from Alice",
            "sealed words from Bob",
            "File: secret.pdf",
            "sealed words from Carol",
            "File: carol dot.png",
            "Alice read Carol",
        ]
        expect_texts(carol, texts, ["Alice", "Bob", "Bob", "Carol", "Carol", "Alice"])
        with carol.expect_download() as download:
            file_items(carol).first.get_by_role("button", name="secret.pdf", exact=True).click()
        assert Path(download.value.path()).read_bytes() == PDF
        assert carol.console_errors == []

        runner.run(alice.leave())
        runner.run(bob.leave())
        standard = runner.run(alice.create_room("Standard", "control", owner_name="Alice"))
        runner.run(bob.join_room(standard.join_key, "Bob"))
        runner.run(alice.send("standard words"))
        return {"sealed": sealed, "bob_file": bob_file.id, "standard": standard, "standard_key": alice._key}
    finally:
        runner.stop()


def browser_part(open_page, share_link: str):
    """Carol, in the browser, opens the share link, reads what the Python clients wrote
    before she came, says something and shares a picture (previewed after decryption)."""
    carol = open_page(share_link)
    join_room(carol, "Carol")
    expect_texts(
        carol,
        ["sealed words from Alice", "sealed words from Bob", "File: secret.pdf"],
        ["Alice", "Bob", "Bob"],
    )
    say(carol, "sealed words from Carol")
    pick(carol, "carol dot.png", "image/png", PNG)
    expect(carol.locator("#status")).to_have_text(f"Shared carol dot.png ({len(PNG)} bytes).")
    preview = file_items(carol).nth(1).get_by_role("img", name="Preview of carol dot.png")
    expect(preview).to_have_js_property("naturalWidth", 4)
    return carol


def access_lines(log: str) -> list[tuple[str, str, str]]:
    """(method, path, status) of every HTTP access line in the server's log output."""
    return [match.group("method", "path", "status") for match in ACCESS_LINE.finditer(log)]


def opens_sealed(candidate: bytes, room_id: str, key_check: str, messages: list, files: list) -> bool:
    """Whether `candidate` opens anything of the sealed room, as its secret, its message
    key or a file's key."""
    try:
        keys = SealedKeys.from_secret(candidate)
    except ValueError:
        return False
    if keys.key_check == key_check:
        return True
    for key in (keys.message_key, candidate):
        for sender, content in messages:
            try:
                open_message(key, room_id, sender, content)
                return True
            except DecryptError:
                pass
    for blob in files:
        try:
            open_file(candidate, blob)
            return True
        except DecryptError:
            pass
    return False


def opens_standard(candidate: bytes, wrapped: list[tuple[uuid.UUID, str]], contents: list[str]) -> bool:
    """Whether `candidate`, as a room key or as the key-encryption key unwrapping one,
    opens a standard room's message."""
    room_keys = [candidate]
    for room_id, wrapped_key in wrapped:
        raw = base64.b64decode(wrapped_key)
        try:
            room_keys.append(AESGCM(candidate).decrypt(raw[1:13], raw[13:], room_id.bytes))
        except (InvalidTag, ValueError):
            pass
    for key in room_keys:
        for content in contents:
            raw = base64.b64decode(content)
            try:
                AESGCM(key).decrypt(raw[:12], raw[12:], None)
                return True
            except (InvalidTag, ValueError):
                pass
    return False


def test_nothing_the_server_holds_or_saw_opens_a_sealed_room(shared_env, servers, new_page):  # noqa: F811
    monitor = Monitor(REDIS_URL)
    (server,) = servers({**shared_env, "CHAT_ACCESS_LOG": "1"}, 1)
    try:
        session = sealed_and_standard_session(server.url, server.http, new_page)
    finally:
        redis_lines = monitor.stop()
    server.stop()
    var = Path(shared_env["CHAT_VAR_DIR"])
    texts, blobs, tables = database_dump(shared_env["DATABASE_URL"])
    log = server.log_path.read_text(errors="replace")
    texts += redis_lines + [log]
    store = [path for path in (var / "files").rglob("*") if path.is_file()]
    blobs += [path.read_bytes() for path in store]
    found = candidates(texts, blobs)
    assert len(found) > 1000  # the dump is not empty: ciphertexts, blobs, Redis traffic
    assert len(redis_lines) > 10

    sealed, secret = session["sealed"], secret_from_link(session["sealed"].share_link)
    sealed_id = uuid.UUID(sealed.id)
    messages = [
        (row["sender"], row["content"]) for row in tables["chat_message"] if row["room_id"] == sealed_id
    ]
    # Texts from Alice (two), Bob and Carol, and the cards of Bob's and Carol's files:
    # all ciphertext.
    assert len(messages) == 6
    # The sealed file as its uploader sent it: the operator can open the store's
    # encryption at rest (its key is the server's), and gets the client's ciphertext.
    files_key = AESGCM(base64.b64decode((var / "files.key").read_bytes().strip()))
    sealed_files = []
    for row in tables["files_sharedfile"]:
        raw = (var / "files" / row["blob"]).read_bytes()
        sealed_files.append(files_key.decrypt(raw[1:13], raw[13:], row["id"].bytes))
    assert len(sealed_files) == 2  # Bob's (the Python client's) and Carol's (the page's)

    # The HTTP access lines are in the dump: Carol's page, its scripts, the file her page
    # fetched; the share link's fragment never reached the server.
    requests = access_lines(log)
    assert ("GET", f"/rooms/{sealed.join_key}/", "200") in requests
    assert ("GET", f"/files/{session['bob_file']}", "200") in requests
    assert any(path.startswith("/static/") for _, path, _ in requests)
    secret_text = sealed.share_link.partition("#k=")[2]
    assert len(secret_text) == 43
    assert not [line for line in log.splitlines() if "#k=" in line or secret_text in line]

    def leaks(values: set[bytes]) -> list[bytes]:
        return [
            value
            for value in values
            if opens_sealed(value, sealed.id, sealed.key_check, messages, sealed_files)
        ]

    assert leaks(found) == []
    assert secret not in found
    # The search finds the secret where it is: planted in the dump, it opens the room.
    assert leaks(found | {secret}) == [secret]

    # The control: the standard room's key is nowhere in the dump either, but with the
    # key-encryption key (the server's settings) the same search reads the room.
    standard_id = uuid.UUID(session["standard"].id)
    wrapped = [(row["id"], row["wrapped_key"]) for row in tables["chat_room"] if row["id"] == standard_id]
    contents = [row["content"] for row in tables["chat_message"] if row["room_id"] == standard_id]
    assert wrapped and contents
    assert not any(opens_standard(value, wrapped, contents) for value in found)
    kek = base64.b64decode((var / "room-keys.key").read_bytes().strip())
    assert opens_standard(kek, wrapped, contents)
