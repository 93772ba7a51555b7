"""Faults survived by two server processes: Redis, then PostgreSQL, stopped for 10 s
and started again.

Each test runs its own redis-server or PostgreSQL cluster on a free port (so the
machine's stay up): while it is down clients get their message stored or
`server_error` (then not stored), never a hang; no process crashes; every message
anyone saw is in the history; delivery comes back by itself."""

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
import time

import pytest

from chatclient.crypto import decrypt
from tests.e2e.servers import free_port, manage, production_env
from tests.e2e.wsclient import Client, room_of_two

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


PG_BIN = "/usr/lib/postgresql/15/bin"


class PostgresServer:
    """A throwaway PostgreSQL cluster (Debian's binaries), run as the postgres user."""

    def __init__(self) -> None:
        self.port = free_port()
        self.home = tempfile.mkdtemp(prefix="chat-pg-")
        user = pwd.getpwnam("postgres")
        os.chown(self.home, user.pw_uid, user.pw_gid)
        self.data = os.path.join(self.home, "data")
        self.as_postgres("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")

    def as_postgres(self, tool: str, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", f"{PG_BIN}/{tool}", *args], check=True, capture_output=True
        )

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.as_postgres("pg_ctl", "-D", self.data, "-o", options, "-l", f"{self.home}/log", "-w", "start")

    def stop(self) -> None:
        self.as_postgres("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        pg_ctl = ["runuser", "-u", "postgres", "--", f"{PG_BIN}/pg_ctl"]
        subprocess.run([*pg_ctl, "-D", self.data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture
def own_postgres():
    if os.geteuid() != 0 or not os.path.exists(f"{PG_BIN}/initdb") or shutil.which("runuser") is None:
        pytest.skip("needs root and Debian's PostgreSQL 15 binaries: the PostgreSQL fault test is not run")
    server = PostgresServer()
    server.start()
    yield server
    server.remove()


async def room_across(one, two) -> tuple[Client, Client, str, set[int]]:
    """Alice on one process, Bob on the other, and a first message both saw."""
    alice, bob, join_key = await room_of_two(one.url, two.url)
    await alice.say("before")
    seen = {(await next_chat(client))["id"] for client in (alice, bob)}
    return alice, bob, join_key, seen


async def talk_through_outage(client: Client, seen: set[int], within: float) -> list[tuple]:
    """Send a message every half second for 10 s; each must be answered within
    `within` s (never a hang). Returns (type, code, seconds) of each answer."""
    outcomes = []
    down_since = time.monotonic()
    while time.monotonic() - down_since < 10:
        began = time.monotonic()
        await client.say("while a service is down")
        reply = await client.recv(within=within)
        outcomes.append((reply["type"], reply.get("code"), time.monotonic() - began))
        if reply["type"] == "ChatMessage":
            seen.add(reply["id"])
        await asyncio.sleep(0.5)
    return outcomes


async def next_chat(client: Client, within: float = 10) -> dict:
    return await client.expect("ChatMessage", within=within)


async def test_redis_down_for_ten_seconds_then_back(shared_env, own_redis, servers):
    env = {**shared_env, "REDIS_URL": own_redis.url}
    one, two = servers(env, 2)
    alice, bob, join_key, seen = await room_across(one, two)

    own_redis.stop()
    before = set(seen)
    outcomes = await talk_through_outage(alice, seen, within=10)
    during = seen - before  # stored: Alice had her echo
    # Each is answered: stored (the sender's echo, from its own process) or refused.
    answers = {(kind, code) for kind, code, _ in outcomes}
    assert outcomes and answers <= {("ChatMessage", None), ("Error", "server_error")}, outcomes
    assert max(took for _, _, took in outcomes) < 5
    stored = sum(kind == "ChatMessage" for kind, _, _ in outcomes)
    own_redis.start()

    # Delivery across the processes comes back by itself (hubs re-subscribe each beat).
    deadline = time.monotonic() + 30
    bob_saw = set()
    while True:
        await alice.say("after")
        try:
            got = await bob.expect("ChatMessage", within=1)
        except (TimeoutError, AssertionError):
            assert time.monotonic() < deadline, "cross-process delivery did not resume"
            continue
        bob_saw.add(got["id"])
        if decrypt(bob.key, got["content"]) == "after":
            seen.add(got["id"])
            break
    # What was stored during the outage reached Bob's process too, ahead of "after".
    assert during <= bob_saw, (during, bob_saw)
    for server in (one, two):
        assert server.process.poll() is None  # nobody crashed or needed a restart

    # Every message anyone was shown is in the history.
    late = await Client.open(one.url)
    await late.join(join_key, "Late")
    messages = (await late.expect("History"))["messages"]
    history = {message["id"] for message in messages}
    assert seen <= history, seen - history
    # And only those: none refused was stored (its sender would send it again).
    during = [m for m in messages if decrypt(late.key, m["content"]) == "while a service is down"]
    assert len(during) == stored, (len(during), outcomes)
    for client in (alice, bob, late):
        await client.close()


async def test_postgres_down_for_ten_seconds_then_back(own_postgres, servers, tmp_path):
    redis_url = os.environ.get("REDIS_URL", "")
    if not redis_url:
        pytest.skip("REDIS_URL is not set: the PostgreSQL fault test needs two processes on Redis")
    env = production_env(
        DATABASE_URL=own_postgres.url,
        REDIS_URL=redis_url,
        CHANNEL_LAYER_PREFIX=f"pgfault-{own_postgres.port}",
        CHAT_VAR_DIR=str(tmp_path),
        # Fast presence, but with room for a process whose database thread has a backlog
        # of requests that waited out DATABASE_POOL_TIMEOUT to beat again after recovery.
        PRESENCE_HEARTBEAT="0.5",
        PRESENCE_TIMEOUT="6",
        DATABASE_POOL_TIMEOUT="2",
    )
    manage(env, "migrate", "--noinput")
    one, two = servers(env, 2)
    alice, bob, join_key, seen = await room_across(one, two)

    own_postgres.stop()
    outcomes = await talk_through_outage(alice, seen, within=15)
    assert outcomes and all(kind == "Error" and code == "server_error" for kind, code, _ in outcomes), (
        outcomes
    )
    assert max(took for _, _, took in outcomes) < 10
    own_postgres.start()

    deadline = time.monotonic() + 30
    while True:
        await alice.say("after")
        reply = await alice.recv(within=15)
        if reply["type"] == "ChatMessage":
            break
        assert time.monotonic() < deadline, "the server did not recover"
        await asyncio.sleep(0.5)
    seen.add(reply["id"])
    assert decrypt(bob.key, (await bob.expect("ChatMessage", within=10))["content"]) == "after"
    for server in (one, two):
        assert server.process.poll() is None
    # Nobody was taken for a ghost because the database was away.
    await asyncio.sleep(7)
    assert await alice.members() == ["Owner", "Bob"]

    late = await Client.open(two.url)
    await late.join(join_key, "Late")
    history = {message["id"] for message in (await late.expect("History"))["messages"]}
    assert seen <= history, seen - history
    for client in (alice, bob, late):
        await client.close()
