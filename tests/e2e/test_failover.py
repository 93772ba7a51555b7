"""Redis failover made real: a primary, a replica and a Sentinel on loopback (the test's
own redis-server processes), the channel layer configured through Sentinel. Killing the
primary, the replica is promoted and cross-process delivery resumes by itself."""

import asyncio
import shutil
import subprocess
import time

import pytest

from chat import redis_clients
from chatclient.crypto import decrypt
from tests.e2e.servers import free_port
from tests.e2e.wsclient import Client, room_of_two

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def redis_cli(port: int, *args: str) -> str:
    return subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True
    ).stdout.strip()


def wait_for(check, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


async def drain(client: Client) -> None:
    """Drop the answers nobody waited for (echoes, server_error while Redis fails over)."""
    try:
        while True:
            await client.recv(within=0.01)
    except TimeoutError:
        pass


@pytest.fixture
def sentinel_trio(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: the failover test is not run")
    primary, replica, sentinel = free_port(), free_port(), free_port()
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    processes = {
        "primary": subprocess.Popen(
            ["redis-server", "--port", str(primary), *common], stdout=subprocess.DEVNULL
        ),
        "replica": subprocess.Popen(
            ["redis-server", "--port", str(replica), "--replicaof", "127.0.0.1", str(primary), *common],
            stdout=subprocess.DEVNULL,
        ),
    }
    wait_for(
        lambda: "master_link_status:up" in redis_cli(replica, "info", "replication"),
        15,
        "replica not in sync",
    )
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {sentinel}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor chat 127.0.0.1 {primary} 1\n"
        "sentinel down-after-milliseconds chat 1000\nsentinel failover-timeout chat 5000\n"
    )
    processes["sentinel"] = subprocess.Popen(
        ["redis-server", str(config), "--sentinel"], stdout=subprocess.DEVNULL
    )
    wait_for(lambda: redis_cli(sentinel, "ping") == "PONG", 10, "sentinel did not start")
    yield {"primary": primary, "replica": replica, "sentinel": sentinel, "processes": processes}
    for process in processes.values():
        process.kill()
        process.wait()


async def test_delivery_resumes_after_the_primary_dies(shared_env, sentinel_trio, servers):
    env = {k: v for k, v in shared_env.items() if k != "REDIS_URL"}
    env |= {"REDIS_SENTINELS": f"127.0.0.1:{sentinel_trio['sentinel']}", "REDIS_SENTINEL_MASTER": "chat"}
    one, two = servers(env, 2)
    alice, bob, join_key = await room_of_two(one.url, two.url)
    await alice.say("through the primary")
    assert decrypt(bob.key, (await bob.expect("ChatMessage"))["content"]) == "through the primary"

    sentinel_trio["processes"]["primary"].kill()
    killed = time.monotonic()
    while True:  # keep talking; answers may be server_error until the promotion
        await alice.say("after failover")
        try:
            got = await bob.expect("ChatMessage", within=1)
        except (TimeoutError, AssertionError):
            assert time.monotonic() - killed < 60, "delivery did not resume after the failover"
            await drain(alice)
            continue
        if decrypt(bob.key, got["content"]) == "after failover":
            break
    resumed_after = time.monotonic() - killed
    promoted = redis_cli(sentinel_trio["sentinel"], "sentinel", "get-master-addr-by-name", "chat").split()
    assert promoted[-1] == str(sentinel_trio["replica"])  # the replica is the primary now
    print(f"failover: delivery across processes resumed {resumed_after:.1f} s after the primary was killed")
    for server in (one, two):
        assert server.process.poll() is None
    await alice.close()
    await bob.close()


async def test_our_clients_through_sentinel_open_a_bounded_number_of_connections(sentinel_trio):
    """redis_clients.client behind Sentinel: 200 calls at once share at most
    MAX_CONNECTIONS connections, waiting their turn, and every call is answered
    (redis-py's own Sentinel pool failed them past 100: "Too many connections")."""
    host = {"sentinels": [("127.0.0.1", sentinel_trio["sentinel"])], "master_name": "chat"}
    client = redis_clients.client(host, timeout=10)
    try:
        assert all(await asyncio.gather(*(client.ping() for _ in range(200))))
        pool = client.connection_pool
        opened = len(pool._available_connections) + len(pool._in_use_connections)
        assert opened <= redis_clients.MAX_CONNECTIONS, opened
    finally:
        await client.aclose()
