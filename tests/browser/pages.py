"""What a person does on the page, as Playwright steps (by visible labels and roles)."""

import re
import sqlite3
from pathlib import Path

from playwright.sync_api import Page, expect


def create_room(page: Page, name: str, owner: str, password: str = "", description: str = "") -> str:
    """Create a room from `/`; returns the share link the page shows."""
    form = page.locator("#create-form")
    form.get_by_label("Room name").fill(name)
    form.get_by_label("Description").fill(description)
    form.get_by_label("Password").fill(password)
    form.get_by_label("Your name").fill(owner)
    form.get_by_role("button", name="Create room").click()
    expect(page.locator("#room-name")).to_have_text(name)
    link = page.get_by_label("Share link")
    expect(link).to_have_value(re.compile(r"^http://[^/]+/rooms/[^/]+/$"))
    return link.input_value()


def join_room(page: Page, name: str, password: str = "", join_key: str | None = None) -> None:
    """Fill the join form (the key is already there on a share link) and submit it."""
    form = page.locator("#join-form")
    if join_key is not None:
        form.get_by_label("Join key").fill(join_key)
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
