"""Faults survived by two server processes: Redis stopped for 10 s and started again.

The test runs its own redis-server on a free port (so the machine's stays up): while it
is down clients get `server_error` or nothing, never a hang; every message anyone saw
is in the history; cross-process delivery comes back by itself."""

import asyncio
import shutil
import subprocess
import time

import pytest

from tests.chat.helpers import decrypt
from tests.e2e.servers import free_port
from tests.e2e.wsclient import Client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


class RedisServer:
    """A throwaway redis-server that keeps nothing on disk."""

    def __init__(self, workdir) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.process = subprocess.Popen([*args, "--dir", str(self.workdir)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while (
            subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).stdout
            != b"PONG\n"
        ):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def own_redis(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: the Redis fault test is not run")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


async def next_chat(client: Client, within: float = 10) -> dict:
    return await client.expect("ChatMessage", within=within)


async def test_redis_down_for_ten_seconds_then_back(shared_env, own_redis, servers):
    env = {**shared_env, "REDIS_URL": own_redis.url}
    one, two = servers(env, 2)
    alice = await Client.open(one.url)
    created = await alice.create()
    join_key = created["room_info"]["join_key"]
    bob = await Client.open(two.url)
    await bob.join(join_key, "Bob")
    await alice.expect("ParticipantJoined")
    seen: set[int] = set()

    await alice.say("before")
    for client in (alice, bob):
        seen.add((await next_chat(client))["id"])

    own_redis.stop()
    down_since = time.monotonic()
    outcomes = []
    while time.monotonic() - down_since < 10:
        began = time.monotonic()
        await alice.say("while redis is down")
        reply = await alice.recv(within=10)  # an answer, never a hang
        outcomes.append((reply["type"], reply.get("code"), time.monotonic() - began))
        if reply["type"] == "ChatMessage":
            seen.add(reply["id"])
        await asyncio.sleep(0.5)
    assert outcomes and all(kind == "Error" and code == "server_error" for kind, code, _ in outcomes), (
        outcomes
    )
    assert max(took for _, _, took in outcomes) < 5
    own_redis.start()

    # Delivery across the processes comes back by itself (hubs re-subscribe each beat).
    deadline = time.monotonic() + 30
    while True:
        await alice.say("after")
        try:
            got = await bob.expect("ChatMessage", within=1)
        except (TimeoutError, AssertionError):
            assert time.monotonic() < deadline, "cross-process delivery did not resume"
            continue
        if decrypt(bob.key, got["content"]) == "after":
            seen.add(got["id"])
            break
    for server in (one, two):
        assert server.process.poll() is None  # nobody crashed or needed a restart

    # Every message anyone was shown is in the history.
    late = await Client.open(one.url)
    await late.join(join_key, "Late")
    history = {message["id"] for message in (await late.expect("History"))["messages"]}
    assert seen <= history, seen - history
    for client in (alice, bob, late):
        await client.close()
