"""The room groups hold the processes that run, not those that ran (issue 13).

Every process's hub is in the layer group of each room it has sockets in
(`chat.hub.room_group`) and is sent that room's events. A `manage.py serve` that stops
(SIGTERM, SIGINT) takes its channel out of its groups; one that is killed drops out at
the first send to the room after CHANNEL_GROUP_EXPIRY (channels-redis's default is a
day). The groups are read straight from Redis."""

import asyncio
import re
import signal
import subprocess
import sys
import time

import pytest
from redis.asyncio import Redis

from chatclient.crypto import decrypt
from tests.e2e.servers import ROOT, manage, production_env
from tests.e2e.wsclient import Client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def bus_members(env: dict[str, str]) -> set[str]:
    """The channels in any room group: channels-redis's sorted sets `<prefix>:group:<group>`."""
    client = Redis.from_url(env["REDIS_URL"])
    try:
        members = set()
        for key in await client.keys(f"{env['CHANNEL_LAYER_PREFIX']}:group:*"):
            members.update(await client.zrange(key, 0, -1))
    finally:
        await client.aclose()
    return {member.decode() for member in members}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_process_that_stops_leaves_the_bus(redis_env, servers, signum):
    (server,) = servers(redis_env)
    alice = await Client.open(server.url)
    await alice.create()  # the first join starts the process's hub
    assert len(await bus_members(redis_env)) == 1
    await alice.say("one room event")
    await alice.expect("ChatMessage")
    began = time.monotonic()
    server.process.send_signal(signum)  # a socket is still open: the server closes it first
    await asyncio.to_thread(server.process.wait, 20)
    assert time.monotonic() - began < 10
    assert await bus_members(redis_env) == set()
    # What it published and received over the layer, for bench/processes.sh: her message,
    # and her departure as the server closed her socket (which may have come too late).
    totals = re.search(r"event=hub_totals published=(\d+) received=(\d+)", server.log_path.read_text())
    assert totals and totals[1] == "2" and totals[2] in ("1", "2"), totals
    await alice.close()


async def test_a_process_stops_promptly_when_redis_hangs(own_redis, redis_env, servers):
    """A process whose sockets all left stops at once with Redis hung: it left their
    rooms' groups as they went, and has nothing to ask Redis at the end. (A stop that
    must leave groups waits for a hung Redis LEAVE_TIMEOUT at most: tests/chat/test_hub.py.)"""
    env = {**redis_env, "REDIS_URL": own_redis.url}
    (server,) = servers(env)
    alice = await Client.open(server.url)
    await alice.create()
    await alice.close()
    await asyncio.sleep(0.5)  # its leave is published, and its room left, while Redis answers
    own_redis.freeze()
    try:
        began = time.monotonic()
        server.process.terminate()
        await asyncio.to_thread(server.process.wait, 30)
        took = time.monotonic() - began
    finally:
        own_redis.thaw()
    assert took < 6, took
    log = server.log_path.read_text()
    assert "event=hub_totals" in log and "could not leave" not in log


async def test_a_killed_process_drops_out_within_the_group_expiry(redis_env, servers, tmp_path):
    """SIGKILL: nothing leaves the group for the process. With CHANNEL_GROUP_EXPIRY=3 the
    next room event after 3 s is no longer sent to it, and the process that lives on,
    idle but for one socket, keeps its own place (its hub renews it; the presence
    heartbeat, 15 s, is far longer than the expiry here)."""
    env = {**redis_env, "CHANNEL_GROUP_EXPIRY": "3", "HUB_WATCHDOG_INTERVAL": "0.5"}
    # The survivor shares the bus (same Redis prefix), not the database: its own SQLite.
    survivor_env = {**env, "CHAT_VAR_DIR": str(tmp_path / "survivor")}
    manage(survivor_env, "migrate", "--noinput")
    (killed,) = servers(env)
    alice = await Client.open(killed.url)
    await alice.create()
    (killed_channel,) = await bus_members(env)
    (survivor,) = servers(survivor_env)
    bob = await Client.open(survivor.url)
    await bob.create()
    (survivor_channel,) = await bus_members(env) - {killed_channel}

    killed.kill()
    await asyncio.sleep(1)
    assert await bus_members(env) == {killed_channel, survivor_channel}  # nobody took it out
    await asyncio.sleep(3.5)  # past the expiry (channels-redis compares whole seconds)
    await bob.say("anyone?")  # a room event: the layer's group send drops expired members
    assert decrypt(bob.key, (await bob.expect("ChatMessage"))["content"]) == "anyone?"
    assert await bus_members(env) == {survivor_channel}
    await bob.close()


def test_a_group_expiry_shorter_than_three_renewals_is_refused():
    """The hub renews its place every HUB_WATCHDOG_INTERVAL: an expiry under three of
    those would drop live processes now and then."""
    env = production_env(CHANNEL_GROUP_EXPIRY="5", HUB_WATCHDOG_INTERVAL="2")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "CHANNEL_GROUP_EXPIRY" in result.stderr and "HUB_WATCHDOG_INTERVAL" in result.stderr
