"""docs/production.md, "Backups and restore", on SQLite, run as written: the backup
taken while a server writes, the site wiped but for `chat.env`, the restore, and a
server on what was restored. The old share link joins, the history reads with the key
the join hands out, and the shared file downloads with its bytes. (The deploy proof
runs the PostgreSQL blocks: tests/deploy/test_production_docs.py.)"""

import asyncio
import base64
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatclient import ChatClient
from chatclient.crypto import decrypt
from tests.deploy.test_production_docs import blocks
from tests.e2e.servers import ROOT, manage, production_env
from tests.e2e.wsclient import Client, download, session_cookie

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

FILE = b"%PDF-1.4 kept across a restore\n" + os.urandom(2048).hex().encode()


def step(name: str) -> str:
    (text,) = [text for kind, target, text in blocks() if kind == "step" and target == name]
    return text


class Site:
    """The page's paths moved into a scratch folder standing for `/`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.var = root / "var/lib/chat"
        self.swaps = {
            "/var/lib/chat": str(self.var),
            "/var/backups/chat": str(root / "var/backups/chat"),
            "install -o chat -g chat ": "install ",  # this test's user is `chat`
        }
        self.used: set[str] = set()
        (root / "etc/chat").mkdir(parents=True)
        self.var.mkdir(parents=True)
        key = lambda: base64.b64encode(os.urandom(32)).decode()  # noqa: E731
        # What is kept apart from the backups (step 4's file).
        (root / "etc/chat/chat.env").write_text(
            f"DJANGO_SECRET_KEY={base64.b64encode(os.urandom(40)).decode()}\n"
            f"FILES_ENCRYPTION_KEY={key()}\nROOM_KEY_ENCRYPTION_KEY={key()}\n"
        )
        self.env = production_env(
            CHAT_ENV_FILE=str(root / "etc/chat/chat.env"),
            CHAT_VAR_DIR=str(self.var),
            FILES_ROOT=str(self.var / "files"),
            DATABASE_URL=f"sqlite:///{self.var}/db.sqlite3",
            # Those seated when the backup was taken are gone this long after it (a real
            # restore takes longer than the default 45 s).
            PRESENCE_HEARTBEAT="0.5",
            PRESENCE_TIMEOUT="2",
        )
        for name in ("FILES_ENCRYPTION_KEY", "ROOM_KEY_ENCRYPTION_KEY", "DJANGO_SECRET_KEY"):
            self.env.pop(name, None)  # the file's, as on the machine

    def run(self, text: str) -> str:
        for old, new in self.swaps.items():
            if old in text:
                self.used.add(old)
                text = text.replace(old, new)
        manage_fn = f'manage() {{ "{sys.executable}" "{ROOT}/manage.py" "$@"; }}\n'
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", manage_fn + text],
            capture_output=True, text=True, env=self.env, cwd=self.root, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, f"this step failed:\n{text}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def wipe(self) -> None:
        """A new machine: no database, no blobs, nothing in CHAT_VAR_DIR; the backup and
        `chat.env` (kept apart) are what is left."""
        shutil.rmtree(self.var)
        self.var.mkdir(mode=0o711)


async def test_a_backup_taken_while_serving_restores_rooms_history_and_files(tmp_path, servers):
    site = Site(tmp_path / "machine")
    manage(site.env, "migrate", "--noinput")
    (server,) = servers(site.env)

    alice = await ChatClient.connect(server.url)
    room = await alice.create_room("Kept", owner_name="Ann")
    bob = await ChatClient.connect(server.url)
    await bob.join_room(room.share_link, "Bob")
    said = [(await alice.send("before the backup")).text, (await bob.send("me too")).text]
    shared = await alice.upload_file(FILE, name="notes.pdf", mime_type="application/pdf")
    said.append((await alice.send("after the file")).text)

    # The backup runs while Alice keeps writing (and Bob stays seated).
    backing_up = asyncio.create_task(asyncio.to_thread(site.run, step("backup-sqlite")))
    before = len(said)
    during = asyncio.create_task(alice.upload_file(b"sent during the backup\n", name="during.txt"))
    while not backing_up.done() or len(said) < before + 3:
        said.append((await alice.send(f"during {len(said)}")).text)
        await asyncio.sleep(0.1)
    await backing_up
    await during
    backed_up = time.monotonic()
    await alice.close()
    await bob.close()
    server.stop()

    site.wipe()
    site.run(step("restore-sqlite"))
    manage(site.env, "migrate", "--noinput")  # step 5
    assert set(site.swaps) == site.used, set(site.swaps) - site.used
    # Under other keys (step 4 run again) the server does not start: it names the keys.
    kept = (site.root / "etc/chat/chat.env").read_text().splitlines()
    new_keys = [line.partition("=")[0] + "=" + base64.b64encode(os.urandom(32)).decode() for line in kept]
    (tmp_path / "other.env").write_text("\n".join(kept[:1] + new_keys[1:]) + "\n")  # the secret key kept
    other_keys = {**site.env, "CHAT_ENV_FILE": str(tmp_path / "other.env")}
    serve = [sys.executable, "manage.py", "serve", "--port", "0"]
    refused = await asyncio.to_thread(
        subprocess.run, serve, cwd=ROOT, env=other_keys, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0 and "chat.E002" in refused.stderr and "files.E003" in refused.stderr
    (restored,) = servers(site.env)
    await asyncio.sleep(max(0.0, backed_up + 2.5 - time.monotonic()))  # PRESENCE_TIMEOUT

    # The old share link joins; the history reads with the key the join hands out.
    cookie = await asyncio.to_thread(session_cookie, restored.http)
    carol = await Client.open(restored.url, additional_headers={"Cookie": cookie})
    join_key = room.share_link.partition("/rooms/")[2].partition("/")[0]
    joined = await carol.join(join_key, "Carol")
    history = (await carol.expect("History"))["messages"]
    assert await carol.members() == ["Carol"]  # nobody seated at the backup is present
    link = f"[File: notes.pdf](/files/{shared.id})"
    assert link in [m["content"] for m in history], history  # the server's own, in clear
    files = [m["content"] for m in history if m["content"].startswith("[File: ")]
    texts = [decrypt(joined["encryption_key"], m["content"]) for m in history if m["content"] not in files]
    # Everything stored before the backup began, then what it caught of the rest, in order.
    assert texts[:before] == said[:before], texts
    assert texts == said[: len(texts)], (texts, said)
    # The file, over the socket and at /files/<id>.
    await carol.send(type="GetFile", file_id=str(shared.id))
    assert base64.b64decode((await carol.expect("FileContent", within=30))["content"]) == FILE
    status, body, _ = await asyncio.to_thread(download, restored.http, f"/files/{shared.id}", cookie)
    assert (status, body) == (200, FILE)
    # The file uploaded during the backup: if the copy of the database has its row, the
    # copy of the blobs, taken after it, has its blob.
    for file in files:
        if file.startswith("[File: during.txt]("):
            file_id = file.partition("/files/")[2].rstrip(")")
            await carol.send(type="GetFile", file_id=file_id)
            content = (await carol.expect("FileContent", within=30))["content"]
            assert base64.b64decode(content) == b"sent during the backup\n"
    await carol.close()
    # Bob, seated when the backup was taken, comes back under his name.
    again = await ChatClient.connect(restored.url)
    await again.join_room(room.share_link, "Bob")
    assert (await again.send("back")).text == "back"
    await again.close()
