"""Redis with a password (`requirepass`), reached as `redis://:password@host:port/0`:
the channel layer, the join-failure counters and /healthz all authenticate, so chat
crosses processes, the limit holds across them and /healthz answers 200; the same
servers without the password cannot reach Redis, and /healthz says so (issue 14,
item 9). `rediss://` is the same URL over TLS (README, Configuration)."""

import asyncio
import json
import urllib.error
import urllib.request

import pytest

from chatclient.crypto import decrypt
from tests.e2e.conftest import DATABASE_URL
from tests.e2e.servers import (
    RedisServer,
    ServerProcess,
    drop_postgres,
    manage,
    production_env,
    scratch_postgres,
)
from tests.e2e.wsclient import Client, guesses_limited_across

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PASSWORD = "s3cret-redis-pw"


@pytest.fixture
def locked_redis(tmp_path):
    import shutil

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: the Redis password test is not run")
    server = RedisServer(tmp_path, password=PASSWORD)
    server.start()
    yield server
    server.stop()


def healthz(server) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{server.http}/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def check_password_redis(env: dict, servers, locked_redis) -> None:
    env = {**env, "REDIS_URL": locked_redis.url, "JOIN_FAILURES_PER_MINUTE": "4"}
    one, two = servers(env, 2)
    for server in (one, two):
        assert (await asyncio.to_thread(healthz, server))[0] == 200
    # Chat crosses processes.
    alice = await Client.open(one.url)
    join_key = (await alice.create(password="right"))["room_info"]["join_key"]
    bob = await Client.open(two.url)
    await bob.join(join_key, "Bob", password="right")
    await alice.expect("ParticipantJoined")
    await bob.say("through a locked Redis")
    assert decrypt(alice.key, (await alice.expect("ChatMessage"))["content"]) == "through a locked Redis"
    # The join-failure limit holds across the processes (its counters are in Redis).
    attackers = await guesses_limited_across(one, two, join_key)
    for client in (alice, bob, *attackers):
        await client.close()
    assert locked_redis.password not in one.log_path.read_text()
    # Without the password the layer cannot work: /healthz is 503 and says which.
    unlocked = ServerProcess(
        {**env, "REDIS_URL": f"redis://127.0.0.1:{locked_redis.port}/0"}, log_dir=one.log_path.parent
    )
    unlocked.wait_healthy = lambda timeout=0: None  # it never will be: look at its answer
    unlocked.start()
    try:
        answer = None
        for _ in range(100):
            try:
                answer = await asyncio.to_thread(healthz, unlocked)
                break
            except OSError:  # not listening yet
                await asyncio.sleep(0.2)
        assert answer is not None and answer[0] == 503 and answer[1].get("channel_layer") == "down", answer
    finally:
        unlocked.stop()


async def test_redis_with_a_password_on_sqlite(sqlite_env, servers, locked_redis):
    await check_password_redis(sqlite_env, servers, locked_redis)


async def test_redis_with_a_password_on_postgresql(tmp_path, servers, locked_redis):
    if not DATABASE_URL.startswith("postgres"):
        pytest.skip("DATABASE_URL (PostgreSQL) is not set")
    name = f"chat_e2e_auth_{tmp_path.name[-8:].replace('-', '_')}"
    env = production_env(DATABASE_URL=scratch_postgres(DATABASE_URL, name), CHAT_VAR_DIR=str(tmp_path))
    manage(env, "migrate", "--noinput")
    try:
        await check_password_redis(env, servers, locked_redis)
    finally:
        drop_postgres(DATABASE_URL, name)
