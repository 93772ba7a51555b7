"""A `serve` process whose CHAT_VAR_DIR (database, WAL, blobs, keys) is on a small
filesystem that fills up, and is freed again; and one on PostgreSQL whose database is
in a tablespace on such a filesystem.

Mounting needs root: without it these tests are skipped and say so, unless
DISK_TESTS_REQUIRED=1 (set by .ci/run), which makes them fail instead. The PostgreSQL
ones also need DATABASE_URL, naming a server on this machine (a tablespace is a folder
of the server's)."""

import json
import os
import pwd
import subprocess
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.e2e.servers import ServerProcess, drop_postgres, manage, production_env
from tests.e2e.wsclient import Client, room_of_two
from tests.helpers import upload_frame

SIZE = "8m"
# The PostgreSQL tablespace's: a fresh database and its migrations take about 9 MiB.
PG_SIZE = "24m"
SERVER_ERROR = "server_error"
STORAGE_FULL = "The server's storage is full; try again later."


def mount_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "not root: a small filesystem cannot be mounted, full-disk tests not run"
    return None


class SmallDisk:
    """A tmpfs of SIZE at `root`; `fill(leave=...)` takes all but `leave` bytes of it
    with a filler file, `free()` gives them back."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.filler = root / "filler"

    def available(self) -> int:
        found = os.statvfs(self.root)
        return found.f_bavail * found.f_frsize

    def fill(self, leave: int = 0) -> None:
        with open(self.filler, "ab") as handle:
            chunk = b"\0" * 65536
            try:
                while True:
                    handle.write(chunk)
                    handle.flush()
            except OSError:
                pass
        # Written up to the last page: the partial chunk is in the file or lost, either way
        # the filesystem is full now.
        if leave:
            os.truncate(self.filler, max(0, self.filler.stat().st_size - leave))

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


def not_run(reason: str) -> None:
    if os.environ.get("DISK_TESTS_REQUIRED") == "1":
        pytest.fail(f"DISK_TESTS_REQUIRED=1 but {reason}")
    pytest.skip(reason)


@contextmanager
def mounted(root: Path, size: str = SIZE) -> Iterator[SmallDisk]:
    """A tmpfs of `size` on `root` while the generator runs, unmounted after whatever
    happened (lazily if a process still holds a file on it)."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(root)], check=True)
    try:
        yield SmallDisk(root)
    finally:
        if subprocess.run(["umount", str(root)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(root)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A tmpfs mounted for the test."""
    if reason := mount_unavailable():
        not_run(reason)
    root = tmp_path / "disk"
    root.mkdir()
    with mounted(root) as disk:
        yield disk


@pytest.fixture
def full_disk_server(small_disk: SmallDisk, servers) -> tuple[ServerProcess, SmallDisk, Path]:
    """One `serve` process on SQLite whose CHAT_VAR_DIR is on the small disk (stopped at
    teardown before the disk is unmounted)."""
    var = small_disk.root / "var"
    env = production_env(
        CHAT_VAR_DIR=str(var), FILES_MAX_SIZE=str(4 * 1024 * 1024), HEALTHZ_MIN_FREE_BYTES=str(256 * 1024)
    )
    manage(env, "migrate", "--noinput")
    (server,) = servers(env)
    return server, small_disk, var


def blob_files(var: Path) -> set[str]:
    root = var / "files"
    return {str(path.relative_to(root)) for path in root.glob("??/*")}


async def upload(client: Client, data: bytes, name: str = "notes.txt") -> dict:
    """The uploader's answer: FileUploaded, or the Error."""
    await client.send(**upload_frame(data, name, "text/plain"))
    while True:
        frame = await client.recv(within=20)
        if frame["type"] in {"FileUploaded", "Error"}:
            return frame


async def uploads_once_freed(client: Client, disk: SmallDisk, var: Path, before: set[str]) -> None:
    """The disk freed, the same socket's upload is stored: one blob more than `before`."""
    disk.free()
    again = await upload(client, b"fits now\n" * 100_000)
    assert again["type"] == "FileUploaded"
    assert len(blob_files(var)) == len(before) + 1


def healthz(server: ServerProcess) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{server.http}/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def nothing_more(client: Client, within: float = 1.0) -> None:
    with pytest.raises(TimeoutError):
        frame = await client.recv(within=within)
        raise AssertionError(f"unexpected frame: {frame}")


async def test_a_failed_upload_leaves_no_part_of_its_blob(full_disk_server) -> None:
    """An upload the disk cannot hold is `server_error` and leaves nothing: no row, no
    half-written blob taking the last free bytes (which then refused every chat message
    too), and the room's quota as it was."""
    server, disk, var = full_disk_server
    alice, bob, _ = await room_of_two(server.url)
    try:
        first = await upload(alice, b"a first file\n" * 10)
        assert first["type"] == "FileUploaded"
        await bob.expect("ChatMessage")  # the file's message
        before = blob_files(var)
        disk.fill(leave=512 * 1024)

        refused = await upload(alice, b"too large for what is left\n" * 100_000)

        assert refused["type"] == "Error"
        assert (refused["code"], refused["message"]) == (SERVER_ERROR, STORAGE_FULL)
        assert blob_files(var) == before
        # The bytes that were left are still there for the database: a message is stored.
        await alice.say("after the failed upload")
        echoed = await alice.expect("ChatMessage")
        seen = await bob.expect("ChatMessage")
        assert seen["id"] == echoed["id"]
        await nothing_more(bob, within=0.5)

        await uploads_once_freed(alice, disk, var, before)
    finally:
        await alice.close()
        await bob.close()
        disk.free()


async def chat_through_a_filling_disk(server: ServerProcess, disk: SmallDisk) -> None:
    """A message stored; the disk filled: five messages `server_error` saying so, none
    shown to the other member, one warning line each in the log and no traceback, the
    process serving on; the disk freed: the same sockets chat again, and a newcomer's
    history holds exactly the stored messages."""
    alice, bob, join_key = await room_of_two(server.url)
    try:
        await alice.say("before")
        stored = [(await alice.expect("ChatMessage"))["id"]]
        await bob.expect("ChatMessage")
        disk.fill()

        logged = server.log_path.stat().st_size
        for index in range(5):
            await alice.say("x" * 4000 + str(index))
            refused = await alice.expect("Error", within=20)
            assert (refused["code"], refused["message"]) == (SERVER_ERROR, STORAGE_FULL)
        await nothing_more(bob)
        # One line a refused frame in the log, not a traceback each.
        lines = server.log_path.read_bytes()[logged:].decode().splitlines()
        assert len([line for line in lines if "storage is full: a frame was refused" in line]) == 5, lines
        assert not [line for line in lines if "Traceback" in line], lines
        assert server.process.poll() is None
        assert await bob.members() == ["Owner", "Bob"]

        disk.free()
        await alice.say("after")
        stored.append((await alice.expect("ChatMessage"))["id"])
        assert (await bob.expect("ChatMessage"))["id"] == stored[-1]
        carol = await Client.open(server.url)
        await carol.join(join_key, "Carol")
        history = await carol.expect("History")
        assert [message["id"] for message in history["messages"]] == stored
        await carol.close()
    finally:
        await alice.close()
        await bob.close()
        disk.free()


async def test_chat_on_a_full_disk_is_refused_never_shown_and_recovers(full_disk_server) -> None:
    """Messages the database cannot store are `server_error` to their sender and reach
    nobody; the process keeps serving, and once space is back the same connections chat
    again, and a newcomer's history holds exactly the stored messages."""
    await chat_through_a_filling_disk(*full_disk_server[:2])


def test_healthz_says_when_the_disk_is_full(full_disk_server) -> None:
    """The database answers a SELECT on a full disk but can store nothing: /healthz says
    the storage is full (503), and ok again once space is back, without a restart."""
    server, disk, _ = full_disk_server
    assert healthz(server) == (
        200,
        {"status": "ok", "database": "ok", "channel_layer": "ok", "storage": "ok"},
    )
    disk.fill()
    try:
        status, body = healthz(server)
        assert (status, body["status"], body["storage"]) == (503, "down", "full")
    finally:
        disk.free()
    assert healthz(server)[0] == 200


@pytest.fixture
def postgresql_on_a_small_disk(servers, tmp_path: Path) -> Iterator[tuple[ServerProcess, SmallDisk, Path]]:
    """One `serve` process on a fresh PostgreSQL database made in a tablespace on a small
    tmpfs, as on a site whose database volume fills up (the server's own WAL stays on its
    disk); the blobs and keys on the usual disk."""
    if reason := mount_unavailable():
        not_run(reason)
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith("postgres"):
        not_run("DATABASE_URL (PostgreSQL) is not set: a full PostgreSQL disk is not tested")
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        not_run("no postgres user on this machine: its PostgreSQL server cannot have a tablespace here")
    # A folder the server's user can reach: pytest's tmp_path is root's alone.
    root = Path(tempfile.mkdtemp(prefix="chat-pgdisk-"))
    root.chmod(0o755)
    name = f"chat_full_{uuid.uuid4().hex[:8]}"
    try:
        with mounted(root, PG_SIZE) as disk:
            folder = root / "tablespace"
            folder.mkdir()
            os.chown(folder, owner.pw_uid, owner.pw_gid)
            with psycopg.connect(database_url, autocommit=True) as connection:
                connection.execute(f"CREATE TABLESPACE {name} LOCATION '{folder}'")
                connection.execute(f'CREATE DATABASE "{name}" TABLESPACE {name}')
            try:
                url = urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
                var = tmp_path / "var"
                env = production_env(DATABASE_URL=url, CHAT_VAR_DIR=str(var))
                manage(env, "migrate", "--noinput")
                (server,) = servers(env)
                yield server, disk, var
                server.stop()
            finally:
                drop_postgres(database_url, name)
                with psycopg.connect(database_url, autocommit=True) as connection:
                    connection.execute(f"DROP TABLESPACE IF EXISTS {name}")
    finally:
        root.rmdir()  # empty once unmounted: the tablespace's folder was on the tmpfs


async def test_chat_on_a_full_postgresql_disk_is_refused_never_shown_and_recovers(
    postgresql_on_a_small_disk,
) -> None:
    """PostgreSQL's disk_full (53100), when a message needs a page the volume cannot give:
    `server_error` saying so to the sender, a warning line and no traceback in the log,
    nothing shown to anyone; the same connections chat again once space is back, and a
    newcomer's history holds exactly the stored messages. (/healthz cannot see a
    PostgreSQL server's disk: docs/production.md says to watch it there.)"""
    await chat_through_a_filling_disk(*postgresql_on_a_small_disk[:2])


async def test_an_upload_a_full_postgresql_disk_refuses_leaves_no_blob(postgresql_on_a_small_disk) -> None:
    """The blob is written first, on its own disk, which has room; its row then cannot
    be stored: `server_error` saying so, and the blob is removed, not left without a row
    for purge_files to find an hour later."""
    server, disk, var = postgresql_on_a_small_disk
    alice, bob, _ = await room_of_two(server.url)
    try:
        before = blob_files(var)
        disk.fill()

        refused = await upload(alice, b"a file for a full database\n" * 2000)

        assert refused["type"] == "Error"
        assert (refused["code"], refused["message"]) == (SERVER_ERROR, STORAGE_FULL)
        assert blob_files(var) == before
        await nothing_more(bob)

        await uploads_once_freed(alice, disk, var, before)
    finally:
        await alice.close()
        await bob.close()
        disk.free()
