"""Data made by older releases survives an upgrade to this one (docs/upgrading.md).

Each folder of tests/fixtures/upgrade/ holds what an old release left on disk (its
database: a SQLite file, or a PostgreSQL dump in the folders named `-postgresql`; the
blobs; the key files it generated) and the manifest of what its own client made there:
rooms with and without a password (and a sealed one, once the release had them),
messages, a reply, an edit, a reaction, files, each share link, join key, password and
owner token. Restored into a scratch folder (and a scratch PostgreSQL database), migrated
by this release's `migrate` and served by its `manage.py serve`, the old links must still
join, the history decrypt to the same plaintexts, the files download with their bytes,
the password still be asked for and the owner token still give owner rights.
(README.md there says how a fixture is made again.)"""

import asyncio
import base64
import gzip
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from chatclient import ChatClient, ChatError
from chatclient.events import FileShared, History, Message, Reactions
from tests.e2e.conftest import DATABASE_URL
from tests.e2e.servers import drop_postgres, manage, production_env, scratch_postgres
from tests.e2e.wsclient import Client, download, session_cookie

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "upgrade"
RELEASES = sorted(path.parent.name for path in FIXTURES.glob("*/manifest.json"))


@pytest.fixture
def old_database(release, tmp_path):
    """The old release's database: its SQLite file in the scratch `var`, or its dump
    restored into a scratch PostgreSQL database (dropped afterwards). Returns the
    environment's DATABASE_URL part ({} for SQLite)."""
    source, var = FIXTURES / release, tmp_path / "var"
    var.mkdir(mode=0o700)
    if (source / "db.sqlite3.gz").exists():
        with gzip.open(source / "db.sqlite3.gz") as packed, open(var / "db.sqlite3", "wb") as raw:
            shutil.copyfileobj(packed, raw)
        yield {}
        return
    if not DATABASE_URL.startswith("postgres"):
        pytest.skip("DATABASE_URL (PostgreSQL) is not set: the upgrade on PostgreSQL is not run")
    name = f"chat_upgrade_{uuid.uuid4().hex[:8]}"
    url = scratch_postgres(DATABASE_URL, name)
    with gzip.open(source / "db.postgresql.sql.gz") as packed:
        restore = ["psql", "-q", "-v", "ON_ERROR_STOP=1", "-d", url]
        subprocess.run(restore, input=packed.read(), check=True, capture_output=True)
    yield {"DATABASE_URL": url}
    drop_postgres(DATABASE_URL, name)


def upgraded_site(release: str, var: Path, database: dict[str, str]) -> tuple[dict[str, str], dict]:
    """The old release's blobs copied into `var` beside its database, and the environment
    this release runs on them with: the same files key; the room-key encryption key it
    generated, or for a release from before wrapped room keys a new one, set before
    `migrate` as docs/upgrading.md asks (chat.0004). Migrated; returns (env, manifest)."""
    source = FIXTURES / release
    shutil.copytree(source / "files", var / "files")
    for folder in [var / "files", *(p for p in (var / "files").iterdir() if p.is_dir())]:
        folder.chmod(0o700)
    wrapped = source / "room-keys.key"
    env = production_env(
        CHAT_VAR_DIR=str(var),
        FILES_ENCRYPTION_KEY=(source / "files.key").read_text().strip(),
        ROOM_KEY_ENCRYPTION_KEY=(
            wrapped.read_text().strip() if wrapped.exists() else base64.b64encode(os.urandom(32)).decode()
        ),
        **database,
    )
    manage(env, "migrate", "--noinput")
    return env, json.loads((source / "manifest.json").read_text())


def stored_bytes(env: dict[str, str]) -> bytes:
    """Everything the database holds, as whoever copies its file or dumps it sees it."""
    if "DATABASE_URL" in env:
        dump = ["pg_dump", "--data-only", env["DATABASE_URL"]]
        return subprocess.run(dump, check=True, capture_output=True).stdout
    return b"".join(path.read_bytes() for path in Path(env["CHAT_VAR_DIR"]).glob("db.sqlite3*"))


async def joined_with_history(url: str, link: str, name: str, password: str | None) -> tuple:
    client = await ChatClient.connect(url)
    room = await client.join_room(link, name, password)
    while not isinstance(event := await asyncio.wait_for(client.next_event(), 10), History):
        pass
    return client, room, event.messages


async def refused(url: str, link: str, password: str | None) -> str:
    client = await ChatClient.connect(url)
    try:
        await client.join_room(link, "Fay", password)
    except ChatError as exc:
        return exc.code
    finally:
        await client.close()
    return "joined"


@pytest.mark.parametrize("release", RELEASES)
async def test_an_old_release_s_rooms_history_and_files_survive_the_upgrade(
    release, old_database, tmp_path, servers
):
    env, manifest = await asyncio.to_thread(upgraded_site, release, tmp_path / "var", old_database)
    # Neither a join key nor a room key is left in the clear in the database
    # (chat.0004 wraps the room keys, chat.0013 keeps only the join keys' sha256).
    stored = await asyncio.to_thread(stored_bytes, env)
    for room in manifest["rooms"]:
        assert room["join_key"].encode() not in stored, room["name"]
        assert not room["room_key"] or room["room_key"].encode() not in stored, room["name"]
    (server,) = servers(env)

    for room in manifest["rooms"]:
        title, password, link = room["name"], room["password"], room["share_link"]
        # The old share link joins the same room, and its history reads as it was written.
        dora, info, history = await joined_with_history(server.url, link, "Dora", password)
        assert (info.id, info.name, info.owner) == (room["room_id"], title, "Ann")
        assert (info.has_password, info.sealed) == (password is not None, room["sealed"])
        messages = {m.id: m for m in history if isinstance(m, Message)}
        for old in room["messages"]:
            got = messages.get(old["id"])
            assert got is not None, (title, old, history)
            assert (got.sender, got.text) == (old["sender"], old["text"]), (title, got)
            assert got.reply_to == old.get("reply_to"), (title, got)
            assert (got.edited_at is not None) == old.get("edited", False), (title, got)
            assert {emoji: list(names) for emoji, names in got.reactions} == old.get("reactions", {}), got
        shared = {f.file_id.lower(): f.name for f in history if isinstance(f, FileShared)}
        for file in room["files"]:
            assert shared.get(file["id"].lower()) == file["name"], (title, file["name"], history)
            _, data = await dora.download_file(file["id"])
            assert data == base64.b64decode(file["content"]), (title, file["name"])
        # The old room takes new messages and reactions.
        said = await dora.send(f"after the upgrade in {title}")
        assert said.text == f"after the upgrade in {title}"
        await dora.react(room["messages"][0]["id"], "\U0001f389")
        while not isinstance(event := await asyncio.wait_for(dora.next_event(), 10), Reactions):
            pass
        assert ("\U0001f389", ("Dora",)) in event.reactions
        await dora.close()

        # The bare join key joins too; the password is still asked for.
        plain = await ChatClient.connect(server.url)
        await plain.join_room(room["join_key"], "Eve", password)
        await plain.close()
        if password is not None:
            assert await refused(server.url, link, None) == "wrong_password"
            assert await refused(server.url, link, password + "x") == "wrong_password"

        # Owner rights: Bob's file is not Gus's to delete; the old owner token gives them.
        bobs = next(file["id"] for file in room["files"] if file["uploader"] == "Bob")
        gus = await ChatClient.connect(server.url)
        await gus.join_room(link, "Gus", password)
        with pytest.raises(ChatError) as not_owner:
            await gus.delete_file(bobs)
        assert not_owner.value.code == "forbidden"
        await gus.close()
        ann = await ChatClient.connect(server.url)
        await ann.join_room(link, "Ann", password, owner_token=room["owner_token"])
        await ann.delete_file(bobs)
        await ann.close()

    # A browser session that joined a standard room downloads its other file at /files/<id>.
    room = manifest["rooms"][0]
    anns = next(file for file in room["files"] if file["uploader"] == "Ann")
    cookie = await asyncio.to_thread(session_cookie, server.http)
    page = await Client.open(server.url, additional_headers={"Cookie": cookie})
    await page.join(room["join_key"], "Hal", room["password"])
    status, body, _ = await asyncio.to_thread(download, server.http, f"/files/{anns['id']}", cookie)
    assert (status, body) == (200, base64.b64decode(anns["content"]))
    await page.close()
