"""Real server processes: two sharing PostgreSQL and Redis, and the transport limit."""

import time

import pytest
from websockets.exceptions import ConnectionClosed

from chatclient.crypto import decrypt
from tests.e2e.wsclient import Client, guesses_limited_across

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def test_two_processes_share_rooms_and_ghosts_vanish_after_sigkill(shared_env, servers):
    """Chat crosses processes, Members agree, and a SIGKILLed process's people leave."""
    one, two = servers(shared_env, 2)
    alice = await Client.open(one.url)
    created = await alice.create()
    join_key = created["room_info"]["join_key"]
    bob = await Client.open(two.url)
    carol = await Client.open(two.url)
    assert (await bob.join(join_key, "Bob"))["participants"] == ["Owner", "Bob"]
    await carol.join(join_key, "Carol")
    assert await alice.expect("ParticipantJoined") == {"type": "ParticipantJoined", "name": "Bob"}
    assert await alice.expect("ParticipantJoined") == {"type": "ParticipantJoined", "name": "Carol"}

    await bob.say("across processes")
    received = await alice.expect("ChatMessage")
    assert received["sender"] == "Bob" and decrypt(alice.key, received["content"]) == "across processes"
    assert (await bob.expect("ChatMessage"))["id"] == received["id"]
    await alice.say("and back")
    assert decrypt(bob.key, (await bob.expect("ChatMessage"))["content"]) == "and back"
    assert await alice.members() == await bob.members() == ["Owner", "Bob", "Carol"]

    killed_at = time.monotonic()
    two.kill()
    left = {(await alice.expect("ParticipantLeft", within=10))["name"] for _ in range(2)}
    gone_after = time.monotonic() - killed_at
    assert left == {"Bob", "Carol"}
    # PRESENCE_TIMEOUT 2 s + PRESENCE_HEARTBEAT 0.5 s, with slack for a loaded machine.
    assert gone_after < 6, gone_after
    assert await alice.members() == ["Owner"]
    await alice.close()


async def test_message_sent_through_one_process_is_in_history_on_the_other(shared_env, servers):
    one, two = servers(shared_env, 2)
    alice = await Client.open(one.url)
    created = await alice.create()
    await alice.say("stored first")
    sent = await alice.expect("ChatMessage")
    late = await Client.open(two.url)
    await late.join(created["room_info"]["join_key"], "Late")
    history = await late.expect("History")
    assert [m["id"] for m in history["messages"]] == [sent["id"]]
    await alice.close()
    await late.close()


@pytest.mark.parametrize("command", ["serve", "runserver"])
async def test_transport_limit_follows_files_max_size(sqlite_env, servers, command):
    """WS_MAX_FRAME follows FILES_MAX_SIZE under both ways of starting the server."""
    env = {**sqlite_env, "FILES_MAX_SIZE": "3000"}
    if command == "runserver":
        env["DJANGO_DEBUG"] = "1"
    (server,) = servers(env, 1, command)
    limit = 4 * ((3000 + 2) // 3) + 64 * 1024
    bystander = await Client.open(server.url)
    await bystander.create()
    client = await Client.open(server.url)
    # Just under the limit: an ordinary protocol error, and the socket stays.
    await client.connection.send('{"type":"Nope","pad":"' + "x" * (limit - 100) + '"}')
    assert (await client.recv())["code"] == "unknown_type"
    await client.send(type="GetMembers")
    assert (await client.recv())["code"] == "not_in_room"
    # Over the limit: uvicorn closes with 1009; daphne (autobahn) drops that one TCP
    # connection, which PROTOCOL.md allows. Nobody else is harmed.
    await client.connection.send('{"type":"Nope","pad":"' + "x" * (limit + 100) + '"}')
    with pytest.raises(ConnectionClosed) as closed:
        await client.recv()
    if command == "serve":
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    else:
        assert closed.value.rcvd is None or closed.value.rcvd.code == 1009
    await bystander.say("still here")
    assert (await bystander.expect("ChatMessage"))["sender"] == "Owner"
    await bystander.close()


async def test_wrong_password_limit_holds_across_processes(shared_env, servers):
    """The per-address counter lives in Redis: spreading guesses over processes gains nothing."""
    one, two = servers({**shared_env, "JOIN_FAILURES_PER_MINUTE": "4"}, 2)
    owner = await Client.open(one.url)
    join_key = (await owner.create(password="right"))["room_info"]["join_key"]
    attackers = await guesses_limited_across(one, two, join_key)
    for client in (owner, *attackers):
        await client.close()
