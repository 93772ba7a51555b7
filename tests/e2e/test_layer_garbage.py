"""Malformed messages written into the Redis channel layer's room groups reach the
server processes' hubs: each is logged and skipped, and chat, presence and cross-process
delivery carry on (issue 14, item 9). Before, the first one ended the hub's receive
loop, and events went missing until the watchdog replaced it."""

import pytest
from channels_redis.core import RedisChannelLayer

from chat.hub import EVENT_TYPE
from chatclient.crypto import decrypt
from tests.e2e.wsclient import Client, room_of_two

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

GARBAGE = [
    {"type": EVENT_TYPE},
    {"type": EVENT_TYPE, "events": "x"},
    {"type": EVENT_TYPE, "events": [1, None, {"room": 5}, {"room": "room.x", "text": 5}]},
    {"type": EVENT_TYPE, "events": [{"room": "g", "text": "t", "seq": "1", "participant_id": "p"}]},
    {"type": "no.such.type"},
]


async def inject_garbage(env: dict) -> None:
    """Send every garbage message to every room group there is."""
    layer = RedisChannelLayer(hosts=[env["REDIS_URL"]], prefix=env["CHANNEL_LAYER_PREFIX"])
    keys = await layer.connection(0).keys(f"{env['CHANNEL_LAYER_PREFIX']}:group:*")
    assert keys, "no room group to send to"
    for key in keys:
        for message in GARBAGE:
            await layer.group_send(key.decode().partition(":group:")[2], message)
    await layer.close_pools()


async def chat_survives_garbage(env: dict, alice_server, bob_server) -> None:
    alice, bob, join_key = await room_of_two(alice_server.url, bob_server.url, name="Garbage")
    await inject_garbage(env)
    # Right after it, within less than a watchdog round: presence and chat arrive.
    carol = await Client.open(bob_server.url)
    await carol.join(join_key, "Carol")
    assert (await alice.expect("ParticipantJoined", within=1.5))["name"] == "Carol"
    assert (await bob.expect("ParticipantJoined", within=1.5))["name"] == "Carol"
    await bob.say("still here")
    assert decrypt(alice.key, (await alice.expect("ChatMessage", within=1.5))["content"]) == "still here"
    for client in (alice, bob, carol):
        await client.close()
    for server in {alice_server, bob_server}:
        log = server.log_path.read_text()
        assert "hub: skipped a malformed" in log
        assert "its receive ended" not in log


async def test_garbage_on_the_bus_is_skipped_on_redis(redis_env, servers):
    env = {
        **redis_env,
        "HUB_WATCHDOG_INTERVAL": "30",
        "HUB_WATCHDOG_TIMEOUT": "90",
        "CHANNEL_GROUP_EXPIRY": "90",
    }
    (server,) = servers(env)
    await chat_survives_garbage(env, server, server)


async def test_garbage_on_the_bus_is_skipped_across_processes(shared_env, servers):
    env = {
        **shared_env,
        "HUB_WATCHDOG_INTERVAL": "30",
        "HUB_WATCHDOG_TIMEOUT": "90",
        "CHANNEL_GROUP_EXPIRY": "90",
    }
    first, second = servers(env, 2)
    await chat_survives_garbage(env, first, second)
