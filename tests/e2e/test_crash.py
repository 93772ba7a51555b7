"""A server process SIGKILLed mid-chat and restarted, with Python clients on it: they
reconnect on their own and rejoin with `since`; across all clients no message is lost or
shown twice (by message id); the dead process's ghosts go within the stated time."""

import asyncio
import time

import pytest

from chatclient import ChatClient, History, Left, Message

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def collect(client: ChatClient, shown: list[int]) -> None:
    """Record every message id the client's stream shows, History included."""
    while True:
        event = await client.next_event()
        if isinstance(event, History):
            shown.extend(message.id for message in event.messages)
        elif isinstance(event, Message):
            shown.append(event.id)


async def test_sigkill_mid_chat_loses_and_repeats_nothing(shared_env, servers):
    one, two = servers(shared_env, 2)
    alice = await ChatClient.connect(one.url)
    room = await alice.create_room("Crash", owner_name="Alice")
    bob = await ChatClient.connect(two.url)
    await bob.join_room(room.join_key, "Bob")
    carol = await ChatClient.connect(two.url)
    await carol.join_room(room.join_key, "Carol")
    shown = {name: [] for name in ("alice", "bob", "carol")}
    readers = [
        asyncio.create_task(collect(client, shown[name]))
        for name, client in (("alice", alice), ("bob", bob), ("carol", carol))
    ]
    sent: list[int] = []

    async def chatter(client: ChatClient, label: str, count: int) -> None:
        for n in range(count):
            sent.append((await client.send(f"{label} {n}")).id)
            await asyncio.sleep(0.12)  # under CHAT_RATE_SUSTAINED (10/s)

    talk = asyncio.gather(chatter(alice, "alice", 40), chatter(bob, "bob", 20))
    await asyncio.sleep(1)
    two.kill()  # mid-chat: Bob's sends in flight are retried after his reconnect
    killed = time.monotonic()
    await asyncio.sleep(1)
    servers(shared_env, 1, port=two.port)
    await talk
    deadline = time.monotonic() + 60
    while any(not ids or ids[-1] < max(sent) for ids in shown.values()):
        assert time.monotonic() < deadline, {name: ids[-3:] for name, ids in shown.items()}
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # anything shown twice would have arrived by now
    for reader in readers:
        reader.cancel()

    for name, ids in shown.items():
        assert len(ids) == len(set(ids)), f"{name} was shown a message twice"
        assert ids == sorted(ids), f"{name} saw messages out of order"
        assert set(sent) <= set(ids), f"{name} missed {set(sent) - set(ids)}"
    # The ghosts of Bob's and Carol's first connections are gone: Members lists each once.
    assert sorted(await alice.members()) == ["Alice", "Bob", "Carol"]
    assert time.monotonic() - killed < 60
    for client in (alice, bob, carol):
        await client.close()


async def test_ghosts_of_a_killed_process_leave_within_the_stated_time(shared_env, servers):
    """Nobody reconnects: the room is told ParticipantLeft within PRESENCE_TIMEOUT +
    PRESENCE_HEARTBEAT (2.5 s in these tests; 60 s by default)."""
    one, two = servers(shared_env, 2)
    alice = await ChatClient.connect(one.url)
    room = await alice.create_room("Ghosts", owner_name="Alice")
    bob = await ChatClient.connect(two.url, reconnect=False)
    await bob.join_room(room.join_key, "Bob")
    two.kill()
    killed = time.monotonic()
    while True:
        event = await asyncio.wait_for(alice.next_event(), 10)
        if isinstance(event, Left) and event.name == "Bob":
            break
    assert time.monotonic() - killed < 2.5 + 2  # slack for a loaded machine
    assert await alice.members() == ["Alice"]
    await alice.close()
