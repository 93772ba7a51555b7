"""Edits, deletes and reactions across two processes on PostgreSQL and Redis (issue 18):
every socket of the room, on either process, sees each message and each change of it
once, in one order (the room's, as the database committed them), never a change before
the message it changes nor after its delete."""

import asyncio

import pytest

from chatclient.crypto import decrypt, encrypt
from tests.e2e.wsclient import Client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CHANGES = ("ChatMessage", "MessageEdited", "MessageDeleted", "Reactions")
MESSAGES = 20


async def listen(
    client: Client, seen: list[tuple[str, int]], heard: asyncio.Queue, until: asyncio.Event
) -> None:
    """Note every message, edit and delete the socket gets, in order, until told to stop."""
    while not until.is_set():
        try:
            frame = await client.recv(within=0.2)
        except TimeoutError:
            continue
        if frame["type"] in CHANGES:
            seen.append((frame["type"], frame["id"]))
            await heard.put(frame)


async def test_changes_reach_every_socket_once_after_their_message(shared_env, servers):
    one, two = servers({**shared_env, "CHAT_RATE_BURST": "1000", "CHAT_RATE_SUSTAINED": "1000"}, 2)
    alice, carol = await Client.open(one.url), await Client.open(one.url)
    bob, dave = await Client.open(two.url), await Client.open(two.url)
    join_key = (await alice.create())["room_info"]["join_key"]
    for client, name in ((carol, "Carol"), (bob, "Bob"), (dave, "Dave")):
        await client.join(join_key, name)
    await asyncio.sleep(0.5)  # the presence chatter settles
    everyone = {"alice": alice, "carol": carol, "bob": bob, "dave": dave}
    seen: dict[str, list[tuple[str, int]]] = {name: [] for name in everyone}
    heard = {name: asyncio.Queue() for name in everyone}
    stop = asyncio.Event()
    listeners = [asyncio.create_task(listen(everyone[n], seen[n], heard[n], stop)) for n in everyone]

    async def bob_writes() -> None:
        """Bob (process two) says each message and edits it as soon as it is back."""
        for number in range(MESSAGES):
            await bob.say(f"m{number}")
            while (frame := await heard["bob"].get())["type"] != "ChatMessage" or frame["sender"] != "Bob":
                pass
            await bob.send(type="EditMessage", id=frame["id"], content=encrypt(bob.key, f"m{number}!"))

    async def alice_deletes() -> None:
        """Alice, the owner (process one), deletes every other message as soon as she sees
        it: her delete and Bob's edit race, and either may be committed first."""
        deleted = 0
        while deleted < MESSAGES // 2:
            frame = await heard["alice"].get()
            if frame["type"] == "ChatMessage" and int(decrypt(alice.key, frame["content"])[1:]) % 2 == 0:
                await alice.send(type="DeleteMessage", id=frame["id"])
                deleted += 1

    async def carol_reacts() -> None:
        """Carol (process one) reacts to every third message as soon as she sees it."""
        reacted = 0
        while reacted < (MESSAGES + 2) // 3:
            frame = await heard["carol"].get()
            if frame["type"] == "ChatMessage" and int(decrypt(carol.key, frame["content"])[1:]) % 3 == 0:
                await carol.send(type="React", id=frame["id"], emoji="\U0001f44d", on=True)
                reacted += 1

    await asyncio.wait_for(asyncio.gather(bob_writes(), alice_deletes(), carol_reacts()), 60)
    await asyncio.sleep(2)  # the last events arrive everywhere
    stop.set()
    await asyncio.gather(*listeners)

    reference = seen["alice"]
    assert len([kind for kind, _ in reference if kind == "ChatMessage"]) == MESSAGES
    assert len([kind for kind, _ in reference if kind == "MessageDeleted"]) == MESSAGES // 2
    for name, events in seen.items():
        assert events == reference, name  # one order for every socket, on both processes
    assert len(set(reference)) == len(reference)  # each event once
    for kind, message_id in reference:
        at = reference.index((kind, message_id))
        assert ("ChatMessage", message_id) in reference[: at + 1]  # never before its message
        if ("MessageDeleted", message_id) in reference[:at]:
            raise AssertionError(f"{kind} of {message_id} after its delete")
    for client in everyone.values():
        await client.close()
