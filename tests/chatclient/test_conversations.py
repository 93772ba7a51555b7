"""Replies and older history (PROTOCOL.md, "Conversations") through the client library
and the terminal chat's commands, against a real server."""

import pytest

from chatclient import (
    ChatError,
    ConnectionLost,
    History,
    Message,
    MessageDeleted,
    MessageEdited,
    Reactions,
    Reconnected,
    Typing,
)
from chatclient.cli import QUOTE_LENGTH, Output, command
from tests.chatclient.conftest import CuttableProxy, next_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


async def message_with_id(client, message_id: int) -> Message:
    while (message := await next_of(client, Message)).id != message_id:
        pass
    return message


@pytest.fixture
def env(env):
    """The server's History on joining holds the newest three: older ones are paged."""
    return {**env, "CHAT_HISTORY_LIMIT": "3"}


async def test_replies_and_pages_of_older_messages(clients):
    alice = await clients()
    room = await alice.create_room("Threads", owner_name="Alice")
    said = [await alice.send(f"m{n}") for n in range(5)]
    bob = await clients()
    await bob.join_room(room.join_key, "Bob")
    assert (await next_of(bob, History)).messages == said[2:]

    answer = await bob.send("re m1", reply_to=said[1].id)
    assert answer.reply_to == said[1].id
    assert await message_with_id(alice, answer.id) == answer  # the broadcast says what it answers
    with pytest.raises(ChatError) as refused:
        await bob.send("re nothing", reply_to=answer.id + 1000)
    assert refused.value.code == "message_not_found"

    assert await bob.history(limit=1) == [said[1]]  # older than the oldest it has
    assert await bob.history() == [said[0]]  # and on from there
    assert await bob.history() == []  # the start of the room
    assert await bob.history(before=said[4].id, limit=2) == said[2:4]
    carol = await clients()
    await carol.join_room(room.join_key, "Carol")
    assert [m.reply_to for m in (await next_of(carol, History)).messages][-1] == said[1].id
    assert await carol.history(before=answer.id + 1, limit=1) == [answer]


async def test_the_terminal_chat_replies_and_pages_back(clients, capsys):
    alice = await clients()
    room = await alice.create_room("Terminal", owner_name="Alice")
    await alice.send("the oldest")
    first = await alice.send("the question, which is long enough to be cut in the quote above a reply")
    second = await alice.send("second")
    await alice.send("third")
    bob = await clients()
    await bob.join_room(room.join_key, "Bob")
    out = Output(as_json=False)
    for message in (await next_of(bob, History)).messages:  # the newest three of the four
        out.event(message, history=True)

    assert await command(bob, f'/reply #{first.id} yes, and "quoted"', out)
    reply = await next_of(bob, Message)  # Bob's queue held History only
    assert (reply.text, reply.reply_to) == ('yes, and "quoted"', first.id)
    out.event(reply)
    shown = capsys.readouterr().out.splitlines()
    assert shown[-2] == f"  \u21aa #{first.id} Alice: {first.text[: QUOTE_LENGTH - 1]}\u2026"
    assert shown[-1].endswith(f'#{reply.id}] Bob: yes, and "quoted"')

    assert await command(bob, "/older 5", out)
    assert capsys.readouterr().out.endswith("] Alice: the oldest\n")
    assert await command(bob, "/older", out)
    assert capsys.readouterr().out == "* that is the start of the room\n"
    assert await command(bob, "/reply nonsense", out)
    assert "/reply ID TEXT" in capsys.readouterr().out
    assert second.id > first.id


@pytest.mark.parametrize("sealed", [False, True])
async def test_edits_and_deletes_reach_the_others(clients, sealed):
    alice = await clients()
    room = await alice.create_room("Edits", owner_name="Alice", sealed=sealed)
    bob = await clients()
    await bob.join_room(room.share_link if sealed else room.join_key, "Bob")
    said = await bob.send("tpyo")
    assert await message_with_id(alice, said.id) == said

    edited = await bob.edit(said.id, "typo")
    assert (edited.id, edited.sender, edited.text) == (said.id, "Bob", "typo")
    assert await next_of(alice, MessageEdited) == edited  # verified as Bob's in a sealed room too
    with pytest.raises(ChatError) as refused:
        await alice.edit(said.id, "not mine")
    assert refused.value.code == "forbidden"
    (again,) = await alice.history(before=said.id + 1, limit=1)
    assert (again.text, again.edited_at) == ("typo", edited.edited_at)

    await alice.delete_message(said.id)  # the owner may delete anyone's
    assert await next_of(bob, MessageDeleted) == MessageDeleted(said.id)
    with pytest.raises(ChatError) as refused:
        await bob.delete_message(said.id)
    assert refused.value.code == "message_not_found"
    assert await bob.history(before=said.id + 1) == []


async def test_reactions_and_typing(clients, capsys):
    alice = await clients()
    room = await alice.create_room("Reacts", owner_name="Alice")
    bob = await clients()
    await bob.join_room(room.join_key, "Bob")
    said = await alice.send("pizza?")
    state = await bob.react(said.id, "🍕")
    assert state == Reactions(said.id, (("🍕", ("Bob",)),))
    assert await next_of(alice, Reactions) == state
    with pytest.raises(ChatError) as refused:
        await bob.react(said.id, "pizza")
    assert refused.value.code == "invalid_field"

    await bob.typing()
    assert await next_of(alice, Typing) == Typing("Bob")
    await bob.typing()  # within 3 s: dropped by the server, and nothing comes back
    assert (await bob.members()) == ["Alice", "Bob"]

    out = Output(as_json=False)
    (entry,) = await alice.history(before=said.id + 1, limit=1)  # History carries reactions
    assert entry.reactions == state.reactions
    out.event(entry)
    assert await command(alice, f"/react {said.id} 🍕", out)  # Alice adds hers
    out.event(await reactions_of(alice, ("Bob", "Alice")))
    assert await command(bob, f"/react #{said.id} 🍕", out)  # Bob's is there: taken back
    out.event(await reactions_of(bob, ("Alice",)))
    shown = capsys.readouterr().out.splitlines()
    assert shown[-4:] == [
        shown[-4],
        "    🍕 1 (Bob)",
        f"* #{said.id} reactions: 🍕 2 (Bob, Alice)",
        f"* #{said.id} reactions: 🍕 1 (Alice)",
    ]
    assert shown[-4].endswith("] Alice: pizza?")


async def reactions_of(client, names: tuple[str, ...]) -> Reactions:
    """The client's next Reactions event whose one emoji's names are `names`."""
    while (state := await next_of(client, Reactions)).reactions[0][1] != names:
        pass
    return state


async def test_a_reconnect_comes_back_as_the_same_participant(server, clients):
    proxy = CuttableProxy(server.port)
    await proxy.start()
    alice = await clients()
    room = await alice.create_room("Resume", owner_name="Alice")
    bob = await clients(proxy.url)
    await bob.join_room(room.join_key, "Bob")
    token = bob.participant_token
    said = await bob.send("before the cut")
    await proxy.cut()
    await proxy.start()
    assert isinstance(await next_of(bob, Reconnected), Reconnected)
    assert bob.participant_token == token
    edited = await bob.edit(said.id, "after the cut")  # still its author
    assert edited.text == "after the cut"
    assert await bob.members() == ["Alice", "Bob"]


async def test_a_second_client_takes_the_participant_over(clients):
    alice = await clients()
    room = await alice.create_room("Tabs", owner_name="Alice")
    first = await clients()
    await first.join_room(room.join_key, "Bob")
    said = await first.send("from the first")
    second = await clients()
    await second.join_room(room.join_key, "Bob", participant_token=first.participant_token)
    with pytest.raises(ConnectionLost) as ended:
        async for _ in first.events():
            pass
    assert (ended.value.code, ended.value.close_code) == ("replaced", 4003)  # and no reconnect
    assert (await second.edit(said.id, "from the second")).text == "from the second"
    assert await alice.members() == ["Alice", "Bob"]
