"""Redis restarts empty (a crash without persistence) under two server processes that
share a SQLite file: it forgets every hub's place in its rooms' groups, and each
process finds out by itself (chat/hub.py, `Hub.renew`, `send_events`).

Each test runs its own redis-server on a free port, so the machine's stays up."""

import asyncio
import time

import pytest
from websockets.exceptions import ConnectionClosed

from chatclient.crypto import decrypt, encrypt
from tests.e2e.servers import manage, production_env
from tests.e2e.wsclient import Client, room_of_two

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def restarting(tmp_path, own_redis):
    """Two processes' environment on one SQLite file and the test's own Redis."""
    env = production_env(
        CHAT_VAR_DIR=str(tmp_path),
        REDIS_URL=own_redis.url,
        CHANNEL_LAYER_PREFIX="restart",
        PRESENCE_HEARTBEAT="1",
        PRESENCE_TIMEOUT="5",
    )
    manage(env, "migrate", "--noinput")
    return env


async def restart(redis) -> None:
    redis.stop()
    redis.start()
    await asyncio.sleep(0.6)  # the processes' receives are back on the new Redis


async def frames(client: Client, within: float) -> list[dict]:
    """Every frame the client gets within `within` seconds."""
    got = []
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        try:
            got.append(await client.recv(within=left))
        except TimeoutError:
            break
    return got


async def test_after_a_redis_restart_nothing_waits_for_a_later_message(restarting, own_redis, servers):
    """A message sent right after the restart reaches its sender at once and the other
    process within a watchdog round (HUB_WATCHDOG_INTERVAL, 2 s), without a later
    message to set off the gap repair; the sender's own delete reaches the sender."""
    one, two = servers(restarting, 2)
    alice, bob, _ = await room_of_two(one.url, two.url)
    await alice.say("first")
    first = await alice.expect("ChatMessage")
    assert (await bob.expect("ChatMessage"))["id"] == first["id"]
    await restart(own_redis)

    await alice.say("right after the restart")
    echo = await alice.expect("ChatMessage", within=2)
    assert decrypt(alice.key, echo["content"]) == "right after the restart"
    await alice.send(type="DeleteMessage", id=first["id"])
    assert await alice.expect("MessageDeleted", within=2) == {"type": "MessageDeleted", "id": first["id"]}
    got = [frame for frame in await frames(bob, 6) if frame["type"] == "ChatMessage"]
    assert [frame["id"] for frame in got] == [echo["id"]], got
    for server in (one, two):
        assert server.process.poll() is None
        assert "lost its place" in server.log_path.read_text()


async def test_edits_deletes_and_reactions_lost_in_a_restart_reach_the_other_process(
    restarting, own_redis, servers
):
    """The changes published while the other process was off the bus are read back
    from the database when its hub finds its place lost (chat/models.py `Change`), as
    the state of each message now: nobody keeps seeing a message its author deleted."""
    one, two = servers(restarting, 2)
    alice, bob, _ = await room_of_two(one.url, two.url)
    sent = []
    for text in ("first", "second", "third"):
        await alice.say(text)
        sent.append((await alice.expect("ChatMessage"))["id"])
        assert (await bob.expect("ChatMessage"))["id"] == sent[-1]
    await restart(own_redis)

    await alice.send(type="EditMessage", id=sent[0], content=encrypt(alice.key, "first, edited"))
    await alice.expect("MessageEdited", within=2)
    await alice.send(type="React", id=sent[1], emoji="\U0001f44d", on=True)
    await alice.expect("Reactions", within=2)
    await alice.send(type="DeleteMessage", id=sent[2])
    await alice.expect("MessageDeleted", within=2)
    got = {frame["type"]: frame for frame in await frames(bob, 6) if frame["type"] != "ParticipantJoined"}
    assert set(got) == {"MessageEdited", "Reactions", "MessageDeleted"}, got
    edited, reactions = got["MessageEdited"], got["Reactions"]
    assert edited["id"] == sent[0] and decrypt(bob.key, edited["content"]) == "first, edited"
    assert reactions["id"] == sent[1] and [r["emoji"] for r in reactions["reactions"]] == ["\U0001f44d"]
    assert got["MessageDeleted"] == {"type": "MessageDeleted", "id": sent[2]}


async def test_a_socket_whose_4003_was_lost_is_closed_by_its_heartbeat(restarting, own_redis, servers):
    """Bob resumes on the other process right after the restart: the 4003 event to his
    old socket finds no hub of that process in the room's group. Its heartbeat
    (PRESENCE_HEARTBEAT, 1 s here) sees the seat's row name another socket and closes
    the old one with 4003, without a frame, so it no longer acts as Bob."""
    one, two = servers(restarting, 2)
    alice = await Client.open(one.url)
    join_key = (await alice.create())["room_info"]["join_key"]
    bob = await Client.open(two.url)
    joined = await bob.join(join_key, "Bob")
    await alice.expect("ParticipantJoined")
    await restart(own_redis)
    again = await Client.open(one.url)
    await again.send(
        type="JoinRoom", join_key=join_key, name="Bob", participant_token=joined["participant_token"]
    )
    await again.expect("RoomJoined")
    with pytest.raises(ConnectionClosed):
        frame = await bob.recv(within=4)
        pytest.fail(f"the old socket got {frame}")
    assert bob.connection.close_code == 4003
