"""What a person does on the page, as Playwright steps (by visible labels and roles)."""

import asyncio
import base64
import hashlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect
from websockets.sync.client import connect

# The Python client's own crypto (cryptography's AESGCM): what the page must interoperate with.
from chatclient import ChatClient, FileShared, History, Message
from chatclient.crypto import SealedKeys, encrypt, seal_file, seal_message, secret_from_link

# The two screens the page is tested on: new_page(..., **WIDTHS[width]).
WIDTHS = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 375, "height": 740}, "is_mobile": True, "has_touch": True},
}


def create_room(
    page: Page, name: str, owner: str, password: str = "", description: str = "", sealed: bool = False
) -> str:
    """Create a room from `/`; returns the share link the page shows. The page offers a
    sealed room by default: `sealed=False` unticks it."""
    form = page.locator("#create-form")
    form.get_by_label("Room name").fill(name)
    form.get_by_label("Description").fill(description)
    form.get_by_label("Password").fill(password)
    form.get_by_label("Your name").fill(owner)
    form.get_by_label("Sealed room (the server never sees the key)").set_checked(sealed)
    form.get_by_role("button", name="Create room").click()
    expect(page.locator("#room-name")).to_have_text(name)
    link = page.get_by_label("Share link")
    fragment = "#k=[A-Za-z0-9_-]{43}" if sealed else ""
    expect(link).to_have_value(re.compile(rf"^https?://[^/]+/rooms/[^/#]+/{fragment}$"))
    return link.input_value()


def join_room(page: Page, name: str, password: str = "", join_key: str | None = None) -> None:
    """Fill the join form (the key is already there on a share link) and submit it."""
    form = page.locator("#join-form")
    if join_key is not None:
        form.get_by_label("Join key").fill(join_key)
    if password or form.get_by_label("Password").is_visible():  # hidden for a room without one
        form.get_by_label("Password").fill(password)
    form.get_by_label("Your name").fill(name)
    form.get_by_role("button", name="Join room").click()


def say(page: Page, text: str) -> None:
    """Type into the message box and press Enter."""
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def message_texts(page: Page) -> list[str]:
    return page.locator("#messages li .text").all_inner_texts()


def expect_members(page: Page, *shown: str) -> None:
    """The member list shows exactly these entries, in order ("Ann (you)" for oneself)."""
    expect(page.locator("#members li")).to_have_text(list(shown))


def stored_contents(env: dict[str, str]) -> list[str]:
    """Every chat content the server stored (the SQLite file of `sqlite_env`)."""
    with sqlite3.connect(Path(env["CHAT_VAR_DIR"]) / "db.sqlite3") as db:
        return [row[0] for row in db.execute("SELECT content FROM chat_message ORDER BY id")]


class PythonClient:
    """A plain, synchronous websocket client (no browser, no Origin) with the Python client's
    crypto, for frames the real client would never send; the real one (asyncio) runs
    through ClientThread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.key = ""

    def __enter__(self) -> "PythonClient":
        self.socket = connect(self.url, max_size=None, compression=None).__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self.socket.__exit__(*exc_info)

    def send(self, **frame) -> None:
        self.socket.send(json.dumps(frame))

    def expect(self, kind: str, within: float = 10, **fields) -> dict:
        """The next frame of type `kind` (with these field values), skipping other frames."""
        while True:
            frame = json.loads(self.socket.recv(timeout=within))
            if frame["type"] == kind and all(frame.get(k) == v for k, v in fields.items()):
                return frame
            assert frame["type"] != "Error", f"expected {kind}, got {frame}"

    def join(self, join_key: str, name: str, password: str | None = None) -> dict:
        self.send(type="JoinRoom", join_key=join_key, name=name, password=password)
        joined = self.expect("RoomJoined")
        self.key = joined["encryption_key"]
        return joined

    def say(self, text: str) -> None:
        self.send(type="ChatMessage", content=encrypt(self.key, text))

    def said(self, *texts: str) -> dict[str, int]:
        """Say each text in turn, each once the last was stored: their message ids."""
        ids = {}
        for text in texts:
            self.say(text)
            ids[text] = self.expect("ChatMessage")["id"]
        return ids

    def answered_then_deleted(self, ids: dict[str, int], *quoted: str) -> None:
        """Reply to each of the `quoted` messages ("re: m0"), then delete them: replies
        whose quotes are of deleted messages."""
        for text in quoted:
            self.send(type="ChatMessage", content=encrypt(self.key, f"re: {text}"), reply_to=ids[text])
            self.expect("ChatMessage")
        for text in quoted:
            self.send(type="DeleteMessage", id=ids[text])
            self.expect("MessageDeleted")

    def join_sealed(self, link: str, name: str) -> None:
        """Join the sealed room of `link`, holding its keys: `say_sealed` then sends as
        a member whose client would send anything."""
        self.sealed_keys = SealedKeys.from_secret(secret_from_link(link))
        joined = self.join(join_key_of(link), name)
        self.room_id, self.name = joined["room_info"]["id"], joined["name"]

    def send_sealed(self, payload: dict) -> None:
        """Send `payload` sealed as this member's, without waiting for it to come back."""
        self.send(
            type="ChatMessage",
            content=seal_message(self.sealed_keys.message_key, self.room_id, self.name, payload),
        )

    def say_sealed(self, payload: dict) -> dict:
        """Send `payload` sealed as this member's; returns the ChatMessage the room got."""
        self.send_sealed(payload)
        return self.expect("ChatMessage")

    def upload_sealed(self, data: bytes, name: str, mime_type: str) -> dict:
        """Upload `data` sealed, as a sealed room's client does; its card (not sent)."""
        file_key, blob = seal_file(data)
        self.send(
            type="UploadFile",
            name="encrypted.bin",
            mime_type="application/octet-stream",
            content=base64.b64encode(blob).decode(),
        )
        file_id = self.expect("FileUploaded")["metadata"]["id"]
        return {
            "t": "file", "id": file_id, "name": name, "mime_type": mime_type, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "key": base64.b64encode(file_key).decode(),
        }  # fmt: skip


def join_key_of(link: str) -> str:
    return link.split("#")[0].rstrip("/").rsplit("/", 1)[1]


WITHIN = 20  # seconds: a bound for a loaded CI machine, not a wait


class ClientThread:
    """An asyncio loop in a daemon thread, to drive a ChatClient from sync test code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.clients: list[ChatClient] = []

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = WITHIN) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def connect(self, url: str) -> ChatClient:
        client = self.run(ChatClient.connect(url))
        self.clients.append(client)
        return client

    def stop(self) -> None:
        for client in self.clients:
            self.run(client.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WITHIN)
        self.loop.close()


async def next_from(client: ChatClient, kind: type, sender: str) -> Message | FileShared:
    """The next `kind` event sent by `sender` (live or in a History), skipping the rest,
    such as the client's own messages coming back."""
    while True:
        event = await asyncio.wait_for(client.next_event(), WITHIN)
        events = event.messages if isinstance(event, History) else [event]
        for item in events:
            if isinstance(item, kind) and item.sender == sender:
                return item


def expect_texts(page, texts: list[str], senders: list[str]) -> None:
    expect(page.locator("#messages li .text")).to_have_text(texts)
    expect(page.locator("#messages li .sender")).to_have_text(senders)


# --- Conversations (PROTOCOL.md): the message menu and the page's visibility -----------


def activate(page: Page, target) -> None:
    """Tap `target` on a touch screen (a phone's context), else click it."""
    if page.evaluate("() => navigator.maxTouchPoints > 0"):
        target.tap()
    else:
        target.click()


def message_item(page: Page, text: str):
    """The message `li` whose own `.text` is exactly `text` (not a reply quoting it)."""
    own_text = page.locator(".text").filter(has_text=re.compile(rf"^{re.escape(text)}$"))
    return page.locator("#messages li.message").filter(has=own_text)


def open_message_menu(page: Page, item):
    """Click (on a touch screen: tap) the message's "Message actions" button; returns the
    open `#message-menu`."""
    activate(page, item.get_by_role("button", name="Message actions"))
    menu = page.locator("#message-menu")
    expect(menu).to_be_visible()
    return menu


def act_on(page: Page, text: str, action: str) -> None:
    """Choose Reply, Edit, Delete or React in the menu of the message saying `text`."""
    menu = open_message_menu(page, message_item(page, text))
    activate(page, menu.get_by_role("menuitem", name=action, exact=True))


# An init script: document.visibilityState and document.hidden read window.__visibility,
# so a test can "hide" the tab (then dispatch a visibilitychange event, as set_visibility does).
VISIBILITY_SCRIPT = """
window.__visibility = "visible";
Object.defineProperty(Document.prototype, "visibilityState", {
  configurable: true, get() { return window.__visibility; },
});
Object.defineProperty(Document.prototype, "hidden", {
  configurable: true, get() { return window.__visibility === "hidden"; },
});
"""


def set_visibility(page: Page, state: str) -> None:
    page.evaluate(
        "(state) => { window.__visibility = state; document.dispatchEvent(new Event('visibilitychange')); }",
        state,
    )


# An init script: every frame the page's sockets receive reaches the page 300 ms late, in
# order (a slow network), so that the page sends more before the answers come back.
LATENCY_SCRIPT = """
const addListener = EventTarget.prototype.addEventListener;
EventTarget.prototype.addEventListener = function (type, listener, options) {
  if (this instanceof WebSocket && type === "message") {
    return addListener.call(this, type, (event) => setTimeout(() => listener(event), 300), options);
  }
  return addListener.call(this, type, listener, options);
};
"""


def wait_until(page: Page, condition, what: str, within: float = 10) -> None:
    """Poll `condition` while Playwright keeps handling events (a route's callbacks too)."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(50)


def sent_types(page: Page) -> list[str]:
    """The type of every frame the page sent, in order."""
    return [frame["type"] for frame in page.frames_sent]
