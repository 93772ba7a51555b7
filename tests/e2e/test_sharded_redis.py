"""The channel layer over two Redis servers (issue 17, part 4): REDIS_URL lists both,
and channels-redis's consistent hashing spreads room groups and process channels over
them. Two processes on one PostgreSQL, rooms whose members are split over the two:
every message reaches every other member once, in order and at once (a process's
channel lives on one server, which its receive waits on; see chat/layers.py
`ByChannel`), and both servers hold room groups."""

import asyncio
import time

import pytest
from channels_redis.utils import _consistent_hash
from redis.asyncio import Redis

from chatclient.crypto import decrypt
from tests.e2e.servers import RedisServer
from tests.e2e.wsclient import Client, room_of_two

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ROOMS = 16  # all on one server by chance: one run in 32,768
MESSAGES = 5


@pytest.fixture
def two_redis(tmp_path, own_redis):
    second = RedisServer(tmp_path)
    second.start()
    yield own_redis, second
    second.stop()


async def groups_on(url: str, prefix: str) -> list[str]:
    client = Redis.from_url(url)
    try:
        return [key.decode().partition(":group:")[2] for key in await client.keys(f"{prefix}:group:*")]
    finally:
        await client.aclose()


async def test_rooms_over_two_redis_servers_reach_every_member_in_order(shared_env, two_redis, servers):
    env = {**shared_env, "REDIS_URL": ",".join(server.url for server in two_redis)}
    first, second = servers(env, 2)
    pairs = [await room_of_two(first.url, second.url, name=f"Shard {n}") for n in range(ROOMS)]
    began = time.monotonic()
    for n in range(MESSAGES):
        for alice, bob, _ in pairs:
            await alice.say(f"a{n}")
            await bob.say(f"b{n}")

    async def texts(client: Client) -> list[str]:
        """The room's messages as `client` gets them (its own echoed): in the room's order."""
        frames = [await client.expect("ChatMessage", within=3) for _ in range(2 * MESSAGES)]
        assert [frame["id"] for frame in frames] == sorted({frame["id"] for frame in frames})
        return [decrypt(client.key, frame["content"]) for frame in frames]

    for alice, bob, _ in pairs:
        seen = await texts(alice)
        assert await texts(bob) == seen  # the same order on both processes
        for who in "ab":
            assert [text for text in seen if text[0] == who] == [f"{who}{n}" for n in range(MESSAGES)]
    # A receive waiting on the wrong server would hold a message for up to 5 s.
    assert time.monotonic() - began < 3
    placed = [await groups_on(server.url, env["CHANNEL_LAYER_PREFIX"]) for server in two_redis]
    assert sum(map(len, placed)) == ROOMS and all(placed), placed
    for index, groups in enumerate(placed):  # each where channels-redis's hash puts it
        assert all(_consistent_hash(group, 2) == index for group in groups)
    await asyncio.gather(*(client.close() for alice, bob, _ in pairs for client in (alice, bob)))
