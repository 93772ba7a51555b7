"""Issue 14, items 6 and 7, against real server processes: a copy of the database does not
hold room keys in plain, a page view stores nothing, and rooms per address are limited
(across processes with Redis)."""

import asyncio
import base64
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.e2e.servers import ROOT
from tests.e2e.wsclient import Client, room_of_two

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def rows(env: dict[str, str], query: str) -> list[tuple]:
    """Read the servers' database as someone holding a copy of it would."""
    if env.get("DATABASE_URL", "").startswith("postgres"):
        with psycopg.connect(env["DATABASE_URL"]) as connection:
            return connection.execute(query).fetchall()
    with sqlite3.connect(Path(env["CHAT_VAR_DIR"]) / "db.sqlite3") as connection:
        return connection.execute(query).fetchall()


def database_bytes(env: dict[str, str]) -> bytes:
    """Everything the database holds, as a thief with the files (or a dump) sees it."""
    if env.get("DATABASE_URL", "").startswith("postgres"):
        return repr(rows(env, "SELECT * FROM chat_room")).encode()
    var = Path(env["CHAT_VAR_DIR"])
    return b"".join(path.read_bytes() for path in var.glob("db.sqlite3*"))


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers.get("Set-Cookie") or ""


# --- 6. Room keys at rest -------------------------------------------------------------


async def room_key_is_not_in_the_database(env, server) -> None:
    client = await Client.open(server.url)
    created = await client.create("Secret plans")
    await client.close()
    room_id, key = UUID(created["room_info"]["id"]), created["encryption_key"]
    leaked = database_bytes(env)
    assert key.encode() not in leaked
    assert base64.b64decode(key) not in leaked
    # What the row holds opens with the key-encryption key, which is not in the database.
    stored_id = room_id if env.get("DATABASE_URL", "").startswith("postgres") else room_id.hex
    ((wrapped,),) = rows(env, f"SELECT wrapped_key FROM chat_room WHERE id = '{stored_id}'")
    raw = base64.b64decode(wrapped)
    kek = base64.b64decode((Path(env["CHAT_VAR_DIR"]) / "room-keys.key").read_text())
    assert kek not in leaked
    assert AESGCM(kek).decrypt(raw[1:13], raw[13:], room_id.bytes) == base64.b64decode(key)
    with pytest.raises(InvalidTag):  # bound to its room
        AESGCM(kek).decrypt(raw[1:13], raw[13:], UUID(int=room_id.int ^ 1).bytes)
    # Joining still hands out the same key (unwrapped by the server).
    joiner = await Client.open(server.url)
    joined = await joiner.join(created["room_info"]["join_key"], "Bob")
    assert joined["encryption_key"] == key
    await joiner.close()


async def test_a_copy_of_the_database_holds_no_room_key(sqlite_env, servers):
    (server,) = servers(sqlite_env)
    await room_key_is_not_in_the_database(sqlite_env, server)


async def test_a_copy_of_the_database_holds_no_room_key_on_postgresql(shared_env, servers):
    first, second = servers(shared_env, 2)
    await room_key_is_not_in_the_database(shared_env, first)
    # The other process unwraps it too (the same key-encryption key).
    client = await Client.open(first.url)
    created = await client.create("Another")
    other = await Client.open(second.url)
    assert (await other.join(created["room_info"]["join_key"], "Eve"))["encryption_key"] == created[
        "encryption_key"
    ]
    await client.close()
    await other.close()


# --- 7. Storage for free -------------------------------------------------------------


async def test_a_thousand_cookieless_page_views_store_no_session(sqlite_env, servers):
    (server,) = servers(sqlite_env)

    def views(count: int) -> list[tuple[int, str]]:
        return [get(f"{server.http}{path}") for path in ["/", "/rooms/nope/"] * (count // 2)]

    answers = await asyncio.gather(*(asyncio.to_thread(views, 100) for _ in range(10)))
    assert all(status == 200 for batch in answers for status, _ in batch)
    # Each view gives a cookie (PROTOCOL.md, HTTP), and none stores a session.
    assert all("sessionid=" in cookie for batch in answers for _, cookie in batch)
    assert rows(sqlite_env, "SELECT COUNT(*) FROM django_session") == [(0,)]
    # A socket opened with one of them makes its row when it enters a room.
    cookie = answers[0][0][1].split(";")[0]
    owner = await Client.open(server.url, additional_headers={"Cookie": cookie})
    await owner.create("With a session")
    assert rows(sqlite_env, "SELECT COUNT(*) FROM django_session") == [(1,)]
    await owner.close()


async def rooms_limited(servers_: list, limit: int = 20) -> None:
    """`limit` rooms from one address, spread over the processes, then rate_limited on each."""
    clients = [await Client.open(server.url) for server in servers_]
    for n in range(limit):
        client = clients[n % len(clients)]
        await client.create(f"Room {n}")
        await client.send(type="LeaveRoom")
    for client in clients:
        await client.send(type="CreateRoom", name="One too many", description="")
        refused = await client.recv()
        assert refused["type"] == "Error" and refused["code"] == "rate_limited", refused
        # The connection stays usable: joining an existing room still works.
        await client.send(type="GetMembers")
        assert (await client.recv())["code"] == "not_in_room"
    for client in clients:
        await client.close()


async def test_the_21st_room_in_an_hour_from_one_address_is_rate_limited(sqlite_env, servers):
    (server,) = servers(sqlite_env)
    await rooms_limited([server])
    assert rows(sqlite_env, "SELECT COUNT(*) FROM chat_room") == [(20,)]


async def test_the_rooms_limit_holds_across_two_processes(shared_env, servers):
    await rooms_limited(servers(shared_env, 2))
    assert rows(shared_env, "SELECT COUNT(*) FROM chat_room") == [(20,)]


async def test_simultaneous_creates_from_one_address_get_twenty_rooms(shared_env, servers):
    first, second = servers(shared_env, 2)
    clients = [await Client.open(server.url) for server in (first, second) * 15]
    for n, client in enumerate(clients):
        await client.send(type="CreateRoom", name=f"Race {n}", description="")
    answers = await asyncio.gather(*(client.recv(within=20) for client in clients))
    errors = [answer for answer in answers if answer["type"] == "Error"]
    assert [answer["code"] for answer in errors] == ["rate_limited"] * 10, errors
    assert [answer["type"] for answer in answers if answer not in errors] == ["RoomCreated"] * 20
    for client in clients:
        await client.close()


async def test_what_one_address_stores_is_one_bucket_across_two_processes(shared_env, servers):
    """CHAT_BYTES_PER_ADDRESS_*: an address whose sockets land on two processes stores
    what one bucket holds (in Redis), not one bucket in each process; the frames past it
    get `rate_limited` and their sockets stay usable."""
    limits = {"CHAT_BYTES_PER_ADDRESS_BURST": "20000", "CHAT_BYTES_PER_ADDRESS_SUSTAINED": "1"}
    rates = {"CHAT_RATE_BURST": "100", "CHAT_RATE_SUSTAINED": "100"}
    env = dict(shared_env, **limits, **rates, CHAT_BYTES_LEASE="2000")
    first, second = servers(env, 2)
    alice, bob, _ = await room_of_two(first.url, second.url)
    for _ in range(25):  # 1,084 bytes each (572 of ciphertext, 512 for the row)
        await alice.say("x" * 400)
        await bob.say("x" * 400)
    refused = 0
    for client in (alice, bob):
        while True:
            try:
                frame = await client.recv(within=2)
            except TimeoutError:
                break
            refused += frame["type"] == "Error" and frame["code"] == "rate_limited"
    ((stored,),) = rows(env, "SELECT COUNT(*) FROM chat_message WHERE author IS NOT NULL")
    assert 14 <= stored <= 18, stored  # 20,000 / 1,084; each process alone would take 18
    assert refused == 50 - stored
    assert len(await alice.members()) == 2
    await alice.close()
    await bob.close()


# --- 7. Retention and expired sessions, cleared by the cron command -----------------


async def two_purges_at_once_clear_old_chat_and_sessions(env, server) -> None:
    client = await Client.open(server.url)
    await client.create("Old chat")
    for n in range(15):
        await client.say(f"message {n}")
        await client.expect("ChatMessage")
    await client.close()
    postgres = env.get("DATABASE_URL", "").startswith("postgres")
    past = "NOW() - INTERVAL '3 days'" if postgres else "datetime('now', '-3 days')"
    future = "NOW() + INTERVAL '1 day'" if postgres else "datetime('now', '+1 day')"
    statements = [
        f"UPDATE chat_message SET sent_at = {past} "
        "WHERE id IN (SELECT id FROM chat_message ORDER BY id LIMIT 12)",
        *(
            "INSERT INTO django_session (session_key, session_data, expire_date) "
            f"VALUES ('expired{n:032d}', 'x', {past})"
            for n in range(40)
        ),
        "INSERT INTO django_session (session_key, session_data, expire_date) "
        f"VALUES ('alive0000000000000000000000000000000', 'x', {future})",
    ]
    if postgres:
        with psycopg.connect(env["DATABASE_URL"]) as connection:
            for statement in statements:
                connection.execute(statement)
    else:
        with sqlite3.connect(Path(env["CHAT_VAR_DIR"]) / "db.sqlite3") as connection:
            for statement in statements:
                connection.execute(statement)
    purge_env = {**env, "CHAT_RETENTION_DAYS": "1"}
    runs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "manage.py",
            "purge_files",
            cwd=ROOT,
            env=purge_env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = await asyncio.gather(*(run.communicate() for run in runs))
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert rows(env, "SELECT COUNT(*) FROM chat_message") == [(3,)]
    assert rows(env, "SELECT session_key FROM django_session") == [("alive0000000000000000000000000000000",)]
    # Run again: nothing more to do, the kept messages stay.
    again = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "manage.py", "purge_files"],
        cwd=ROOT,
        env=purge_env,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0 and again.stdout.strip() == "purge_files: nothing to do", again
    assert rows(env, "SELECT COUNT(*) FROM chat_message") == [(3,)]


async def test_two_purges_at_once_clear_old_messages_and_expired_sessions(sqlite_env, servers):
    (server,) = servers(sqlite_env)
    await two_purges_at_once_clear_old_chat_and_sessions(sqlite_env, server)


async def test_two_purges_at_once_on_postgresql(shared_env, servers):
    (server,) = servers(shared_env)
    await two_purges_at_once_clear_old_chat_and_sessions(shared_env, server)
