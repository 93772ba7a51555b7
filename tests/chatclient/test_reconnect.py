"""Reconnecting: the event stream goes on across a server restart and a cut, nothing lost or repeated."""

import asyncio
import hashlib
import json
import random

import pytest
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from chatclient import (
    ChatClient,
    ChatError,
    ConnectionLost,
    ErrorEvent,
    History,
    Joined,
    Left,
    Message,
    MessageDeleted,
    MissedMessages,
    Reconnected,
    Reconnecting,
    RoomInfo,
)
from chatclient import client as client_module
from chatclient.client import affinity_hint, reconnect_waits
from chatclient.crypto import encrypt
from tests.chatclient.conftest import (
    FAKE_CREATED,
    FAKE_KEY,
    FAKE_ROOM,
    CuttableProxy,
    FakeRoom,
    fake_server,
    next_of,
    stream_end,
)
from tests.e2e.servers import manage

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def messages_until(client: ChatClient, last_id: int, within: float = 30) -> list[Message]:
    """Every message in `client`'s stream (History included) up to the one with `last_id`."""
    seen: list[Message] = []
    while not seen or seen[-1].id < last_id:
        event = await asyncio.wait_for(client.next_event(), within)
        if isinstance(event, History):
            seen.extend(event.messages)
        elif isinstance(event, Message):
            seen.append(event)
    return seen


async def test_server_restart_mid_session_loses_and_repeats_nothing(env, server, servers, clients):
    """Both clients reconnect to the restarted server on its database and rejoin with `since`."""
    alice = await clients()
    room = await alice.create_room("Room", owner_name="Alice")
    bob = await clients()
    await bob.join_room(room.join_key, "Bob")
    before = [await alice.send(f"before {n}") for n in range(3)]

    server.stop()
    servers(env, 1, port=server.port)
    # Each send waits until its client is back in the room.
    after = [await alice.send(f"after {n}") for n in range(3)]
    after.append(await bob.send("Bob is back"))

    assert await messages_until(bob, after[-1].id) == before + after
    assert await messages_until(alice, after[-1].id) == before + after
    assert sorted(await alice.members()) == ["Alice", "Bob"]
    assert alice.owner_token and alice.room.id == bob.room.id == room.id


async def test_messages_sent_while_a_client_is_away_arrive_once_as_history(server, clients):
    """Bob's connection is cut while Alice talks on: he rejoins with `since` and gets exactly those."""
    proxy = CuttableProxy(server.port)
    await proxy.start()
    alice = await clients()
    room = await alice.create_room("Room", owner_name="Alice")
    bob = await clients(proxy.url)
    await bob.join_room(room.join_key, "Bob")
    first = await alice.send("while Bob is here")
    assert await next_of(bob, Message) == first

    await proxy.cut()
    assert await next_of(alice, Left) == Left("Bob")
    missed = [await alice.send(f"while Bob is away {n}") for n in range(3)]
    assert await messages_until(alice, missed[-1].id) == missed
    await proxy.start()

    assert await next_of(bob, Reconnected) == Reconnected(room)
    assert await next_of(bob, History) == History(missed)
    assert await next_of(alice, Joined) == Joined("Bob")
    last = await bob.send("back")
    assert await next_of(bob, Message) == last
    assert await next_of(alice, Message) == last


async def test_a_restarted_bot_joins_with_since_and_gets_only_what_came_after(server, clients):
    """A process that starts again (a bot redeployed) passes the last message id it
    handled: the join's History holds only the later ones, and a drop after a join that
    brought none rejoins from there too, not from the start of the room."""
    alice = await clients()
    room = await alice.create_room("Room", owner_name="Alice")
    bot = await clients()
    await bot.join_room(room.join_key, "Bot")
    handled = [await alice.send(f"handled {n}") for n in range(2)]
    token = bot.participant_token
    await bot.close()
    missed = [await alice.send(f"missed {n}") for n in range(2)]

    again = await clients()
    await again.join_room(room.join_key, "Bot", participant_token=token, since=handled[-1].id)
    assert await next_of(again, History) == History(missed)
    await again.close()

    proxy = CuttableProxy(server.port)
    await proxy.start()
    third = await clients(proxy.url)
    await third.join_room(room.join_key, "Bot", participant_token=token, since=missed[-1].id)
    await proxy.cut()
    later = await alice.send("while the bot is away")
    await proxy.start()
    assert await next_of(third, Reconnected) == Reconnected(room)
    assert await next_of(third, History) == History([later])


async def a_bot_away(servers, env) -> tuple[CuttableProxy, ChatClient, ChatClient, RoomInfo, Message]:
    """On a server whose History holds 3: Alice's room, and a bot in it through a proxy
    that saw her first message, `seen`; then the proxy cut, so that the bot is away."""
    (server,) = servers({**env, "CHAT_HISTORY_LIMIT": "3"}, 1)
    proxy = CuttableProxy(server.port)
    await proxy.start()
    alice = await ChatClient.connect(server.url)
    room = await alice.create_room("Room", owner_name="Alice")
    bot = await ChatClient.connect(proxy.url)
    await bot.join_room(room.join_key, "Bot")
    seen = await alice.send("before")
    assert await next_of(bot, Message) == seen
    await proxy.cut()
    await next_of(alice, Left)
    return proxy, alice, bot, room, seen


async def test_more_messages_missed_than_a_history_holds_are_all_caught_up(env, servers):
    """The rejoin's History holds the newest CHAT_HISTORY_LIMIT messages after `since`:
    the client reads the older ones it missed back with GetHistory, as the page does, so
    that a bot away while the room talked on answers every one (it missed the first)."""
    proxy, alice, bot, room, seen = await a_bot_away(servers, env)
    missed = [await alice.send(f"while away {n}") for n in range(8)]
    await proxy.start()
    assert await next_of(bot, Reconnected) == Reconnected(room)
    assert await next_of(bot, History) == History(missed)
    said = await alice.send("after")
    assert await next_of(bot, Message) == said
    await bot.close()
    await alice.close()


async def test_more_messages_missed_than_are_read_back_are_told_and_can_be_paged_back(
    env, servers, monkeypatch
):
    """Past what a rejoin reads back (CATCH_UP_PAGES pages of CATCH_UP_PAGE, here of 2,
    behind a History of 3), the bot is told what it missed before the History that
    follows (`MissedMessages`), instead of never seeing those, and reads them with
    `history(before=...)`."""
    monkeypatch.setattr(client_module, "CATCH_UP_PAGE", 2)
    proxy, alice, bot, room, seen = await a_bot_away(servers, env)
    try:
        missed = [await alice.send(f"while away {n}") for n in range(14)]
        await proxy.start()
        assert await next_of(bot, Reconnected) == Reconnected(room)
        # 3 in the History, 1 + 3 * 2 read back: the 4 oldest missed are a hole.
        assert await asyncio.wait_for(bot.next_event(), 10) == MissedMessages(seen.id, missed[4].id)
        assert await asyncio.wait_for(bot.next_event(), 10) == History(missed[4:])
        page = await bot.history(before=missed[4].id, limit=100)
        assert [message for message in page if message.id > seen.id] == missed[:4]
        said = await alice.send("after")
        assert await next_of(bot, Message) == said
    finally:
        await bot.close()
        await alice.close()


async def test_a_bot_restarted_with_since_is_told_what_it_missed_as_after_a_reconnect(
    env, servers, monkeypatch
):
    """A process that starts again with the last id it handled (`join_room(since=)`)
    after more messages than the join's History holds: it reads the older ones back and
    is told of the rest (`MissedMessages` before the History), as a rejoin is. It got
    the History's 3 and nothing told it of the 11 before them."""
    monkeypatch.setattr(client_module, "CATCH_UP_PAGE", 2)
    proxy, alice, bot, room, seen = await a_bot_away(servers, env)
    await bot.close()
    missed = [await alice.send(f"while away {n}") for n in range(14)]
    await proxy.start()
    again = await ChatClient.connect(proxy.url)
    try:
        await again.join_room(room.join_key, "Bot", since=seen.id)
        # 3 in the History, 1 + 3 * 2 read back: the 4 oldest missed are a hole.
        assert await asyncio.wait_for(again.next_event(), 10) == MissedMessages(seen.id, missed[4].id)
        assert await asyncio.wait_for(again.next_event(), 10) == History(missed[4:])
        said = await alice.send("after")
        assert await next_of(again, Message) == said
    finally:
        await again.close()
        await alice.close()


async def test_a_join_with_since_sends_nothing_else_until_it_is_caught_up():
    """The reader reads a join's missed messages back on the socket: a request made
    meanwhile waits, so that no answer of its (a `rate_limited`) passes for a page's."""

    class Missed(FakeRoom):
        async def reply(self, websocket, frame):
            stored = {"sender": "Ann", "sent_at": "2026-01-01T00:00:01Z", "content": encrypt(FAKE_KEY, "hi")}
            if frame["type"] == "JoinRoom":
                await websocket.send(json.dumps(await super().reply(websocket, frame)))
                return {"type": "History", "messages": [{**stored, "id": 9}]}
            if frame["type"] == "GetHistory":  # one missed before the History, then `since`
                return {"type": "History", "before": frame["before"], "messages": [{**stored, "id": 5}]}
            return await super().reply(websocket, frame)

    room = Missed()
    async with fake_server(room) as url:
        client = await ChatClient.connect(url)
        await client.join_room("k", "Bob", since=5)
        await asyncio.wait_for(client.send("at once"), 5)
        kinds = [frame["type"] for frame in room.frames]
        assert kinds == ["JoinRoom", "GetMembers", "GetHistory", "ChatMessage"]
        assert [message.id for message in (await client.next_event()).messages] == [9]
        await client.close()


@pytest.mark.parametrize(
    ("missed_count", "seen_deleted", "limits"),
    [
        (10, False, {}),  # 3 in the History, 1 + 3 * 2 read back: exactly the missed ones
        (7, True, {"READS_PER_MINUTE": "4"}),  # a short page, then a page refused
    ],
    ids=["pages-read-exactly-every-missed-one", "start-of-the-room-then-refused"],
)
async def test_a_catch_up_that_read_every_missed_message_tells_of_no_hole(
    env, servers, monkeypatch, missed_count, seen_deleted, limits
):
    """`MissedMessages` only over a hole that holds messages. It was told over an empty
    one when the pages (CATCH_UP_PAGE 2 here) read back exactly the missed messages, and
    when `seen` had been deleted, so that a page shorter than asked reached the start of
    the room, and the page asked after it was refused (the rejoin's GetMembers and three
    pages are READS_PER_MINUTE 4). Ids are not consecutive here (a message deleted after
    `seen`), as in a server of many rooms."""
    monkeypatch.setattr(client_module, "CATCH_UP_PAGE", 2)
    proxy, alice, bot, room, seen = await a_bot_away(servers, {**env, **limits})
    try:
        gone = await alice.send("deleted while the bot is away")
        await alice.delete_message(gone.id)
        if seen_deleted:
            await alice.delete_message(seen.id)
        missed = [await alice.send(f"while away {n}") for n in range(missed_count)]
        await proxy.start()
        assert await next_of(bot, Reconnected) == Reconnected(room)
        assert await asyncio.wait_for(bot.next_event(), 10) == History(missed)
    finally:
        await bot.close()
        await alice.close()


async def test_a_rejoin_answered_with_what_is_not_json_ends_the_stream_as_invalid_frame():
    """README: what the client reads from the server is strict JSON, anything else an
    invalid_frame, never the end of the client. A rejoin answered with `NaN` ended it
    as a crash of its own (`client_error`, the reader task failed with ValueError)."""
    connections = []

    async def handler(websocket):
        connections.append(websocket)
        async for raw in websocket:
            if json.loads(raw)["type"] != "JoinRoom":
                continue
            if len(connections) > 1:
                await websocket.send("NaN")
                continue
            joined = {"type": "RoomJoined", "room_info": FAKE_ROOM, "encryption_key": FAKE_KEY}
            await websocket.send(json.dumps({**joined, "participants": ["Bob"], "name": "Bob"}))
            await websocket.close(1012)

    async with fake_server(handler) as url:
        client = await ChatClient.connect(url)
        await client.join_room("k", "Bob")
        ended = await stream_end(client)
        assert (ended.code, ended.close_code) == ("invalid_frame", None), ended
        await client.close()


async def test_a_seat_swept_while_its_socket_lived_comes_back_by_itself(env, clients):
    """The server's process stalled past PRESENCE_TIMEOUT and another process swept Bob's
    seat as a ghost (here: the row marked left, as the sweep does). The next heartbeat
    closes his socket with 1012; the client reconnects and resumes the same seat, and the
    room sees him back."""
    alice = await clients()
    room = await alice.create_room("Room", owner_name="Alice")
    bob = await clients()
    await bob.join_room(room.join_key, "Bob")
    assert await next_of(alice, Joined) == Joined("Bob")
    code = "from django.utils import timezone\nfrom chat.models import Participant\n"
    code += f"Participant.objects.filter(room_id='{room.id}', name='Bob').update(left_at=timezone.now())"
    await asyncio.to_thread(manage, env, "shell", "-c", code)

    assert await next_of(bob, Reconnecting) == Reconnecting(1012)
    assert await next_of(bob, Reconnected) == Reconnected(room)
    assert await next_of(alice, Joined) == Joined("Bob")
    said = await bob.send("still here")
    assert await next_of(alice, Message) == said
    # The same seat: two rows in the room, Alice's and Bob's (the shell fails otherwise).
    seats = "from chat.models import Participant\n"
    seats += f"assert Participant.objects.filter(room_id='{room.id}').count() == 2"
    await asyncio.to_thread(manage, env, "shell", "-c", seats)


async def test_a_name_taken_while_away_ends_the_stream_once_reconnecting_times_out(server):
    """Bob's connection dropped and Carol joined as "Bob" meanwhile: his rejoin is refused
    `name_taken`, tried again (a ghost might have held the name) until `reconnect_timeout`,
    and then the stream ends with that code instead of reconnecting for ever."""
    proxy = CuttableProxy(server.port)
    await proxy.start()
    alice = await ChatClient.connect(server.url)
    bob = await ChatClient.connect(proxy.url, reconnect_timeout=2)
    carol = await ChatClient.connect(server.url)
    try:
        room = await alice.create_room("Taken", owner_name="Alice")
        await bob.join_room(room.join_key, "Bob")
        await proxy.cut()
        assert await next_of(alice, Left) == Left("Bob")
        await carol.join_room(room.join_key, "Bob")
        await proxy.start()
        assert await next_of(bob, Reconnecting) == Reconnecting(1006)
        assert (await stream_end(bob)).code == "name_taken"
        assert proxy.connections >= 3, "the refusal was tried again before giving up"
    finally:
        for client in (alice, bob, carol):
            await client.close()


async def test_a_rejoin_whose_members_a_busy_server_refuses_is_back_all_the_same(env, servers):
    """A busy server answers GetMembers `rate_limited` (docs/protocol-notes.md; here every
    time, READS_PER_MINUTE=0). The rejoin's GetMembers only marks the end of its History:
    the client is back with what it missed, and its requests go through."""
    (server,) = servers({**env, "READS_PER_MINUTE": "0"}, 1)
    proxy = CuttableProxy(server.port)
    await proxy.start()
    alice = await ChatClient.connect(server.url)
    bob = await ChatClient.connect(proxy.url)
    try:
        room = await alice.create_room("Busy", owner_name="Alice")
        await bob.join_room(room.join_key, "Bob")
        with pytest.raises(ChatError) as refused:
            await bob.members()
        assert refused.value.code == "rate_limited"

        await proxy.cut()
        assert await next_of(alice, Left) == Left("Bob")
        missed = await alice.send("while Bob is away")
        await proxy.start()
        assert await next_of(bob, Reconnected) == Reconnected(room)
        assert await next_of(bob, History) == History([missed])
        back = await asyncio.wait_for(bob.send("back"), 10)
        assert await messages_until(alice, back.id) == [missed, back]
    finally:
        await bob.close()
        await alice.close()


@pytest.mark.parametrize(("close_code", "code"), [(4000, "room_closed"), (4001, "kicked")])
async def test_room_closed_or_kicked_ends_the_stream_without_reconnecting(close_code, code):
    """After 4000 or 4001 the client surfaces the error and does not come back."""
    connections = []

    async def handler(websocket):
        connections.append(websocket)
        await websocket.recv()  # CreateRoom
        await websocket.send(json.dumps(FAKE_CREATED))
        await websocket.send(json.dumps({"type": "MessageDeleted", "id": 3}))
        await websocket.send(json.dumps({"type": "Error", "code": code, "message": "By the admin."}))
        await websocket.close(close_code)

    async with serve(handler, "127.0.0.1", 0) as fake:
        port = fake.sockets[0].getsockname()[1]
        client = await ChatClient.connect(f"ws://127.0.0.1:{port}/")
        await client.create_room("Room")
        assert await client.next_event() == MessageDeleted(3)
        assert await client.next_event() == ErrorEvent(code, "By the admin.")
        with pytest.raises(ConnectionLost) as ended:
            await client.next_event()
        assert (ended.value.code, ended.value.close_code) == (code, close_code)
        with pytest.raises(ConnectionLost):
            await client.send("anyone?")
        await client.close()
    assert len(connections) == 1


async def test_a_rejoin_carries_since_and_the_owner_token():
    """The JoinRoom after a drop asks only for messages after the last one seen, as the owner."""
    received = []

    async def handler(websocket):
        received.append(json.loads(await websocket.recv()))
        if received[-1]["type"] == "CreateRoom":
            await websocket.send(json.dumps(FAKE_CREATED))
            sent = json.loads(await websocket.recv())
            echo = {"type": "ChatMessage", "id": 7, "sender": "Owner", "sent_at": "2026-01-01T00:00:01Z"}
            await websocket.send(json.dumps({**echo, "content": sent["content"]}))
            await websocket.close(1012)  # service restart
        else:
            joined = {"type": "RoomJoined", "room_info": FAKE_ROOM, "encryption_key": FAKE_KEY}
            await websocket.send(json.dumps({**joined, "participants": ["Owner"]}))
            received.append(json.loads(await websocket.recv()))
            await websocket.send(json.dumps({"type": "Members", "participants": ["Owner"]}))
            await websocket.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as fake:
        port = fake.sockets[0].getsockname()[1]
        client = await ChatClient.connect(f"ws://127.0.0.1:{port}/")
        room = await client.create_room("Room")
        sent = await client.send("hello")
        assert await client.next_event() == sent
        assert await client.next_event() == Reconnecting(1012)
        assert await client.next_event() == Reconnected(room)
        await client.close()
    rejoin = {"type": "JoinRoom", "join_key": "k", "name": "Owner", "password": None}
    assert received[1:] == [{**rejoin, "since": 7, "owner_token": "t"}, {"type": "GetMembers"}]


async def test_sockets_carry_the_affinity_hint_of_the_room_they_are_for():
    """The first socket carries the hint of the room about to be joined (`room=`), a
    reconnect the hint of the room the client is in; never the join key itself."""
    paths = []

    async def handler(websocket):
        paths.append(websocket.request.path)
        try:
            frame = json.loads(await websocket.recv())
        except ConnectionClosed:
            return  # the plain client
        reply = {"room_info": FAKE_ROOM, "encryption_key": FAKE_KEY, "participants": ["Owner"]}
        if frame["type"] == "CreateRoom":
            await websocket.send(json.dumps({"type": "RoomCreated", **reply, "owner_token": "t"}))
            await websocket.close(1012)
        else:
            await websocket.send(json.dumps({"type": "RoomJoined", **reply}))
            await websocket.recv()  # the rejoin's GetMembers
            await websocket.send(json.dumps({"type": "Members", "participants": ["Owner"]}))
            await websocket.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as fake:
        port = fake.sockets[0].getsockname()[1]
        plain = await ChatClient.connect(f"ws://127.0.0.1:{port}/ws/?v=1", reconnect=False)
        await plain.close()
        client = await ChatClient.connect(
            f"ws://127.0.0.1:{port}/ws/", room="https://h/rooms/secret-key/#k=x"
        )
        room = await client.create_room("Room")
        assert await client.next_event() == Reconnecting(1012)
        assert await client.next_event() == Reconnected(room)
        await client.close()
    assert paths == [
        "/ws/?v=1",
        f"/ws/?room={affinity_hint('secret-key')}",
        f"/ws/?room={affinity_hint(FAKE_ROOM['join_key'])}",
    ]
    assert affinity_hint("secret-key") == hashlib.sha256(b"chat-room-affinity:secret-key").hexdigest()[:8]
    assert "secret-key" not in paths[1]


@pytest.mark.parametrize("missing", ["created_at", "encryption_key"])
async def test_a_room_joined_the_client_cannot_read_fails_the_join_instead_of_hanging(missing):
    """A RoomJoined without a field the client needs answers the join all the same: with
    `invalid_frame`, and the client is in no room (not half in one)."""

    class Unreadable(FakeRoom):
        async def reply(self, websocket, frame):
            answer = await super().reply(websocket, frame)
            if frame["type"] == "JoinRoom":
                answer = {**answer, "room_info": dict(FAKE_ROOM)}
                answer.pop(missing, None)
                answer["room_info"].pop(missing, None)
            return answer

    async with fake_server(Unreadable()) as url:
        client = await ChatClient.connect(url)
        with pytest.raises(ChatError) as refused:
            await asyncio.wait_for(client.join_room("k", "Bob"), 5)
        assert refused.value.code == "invalid_frame" and missing in refused.value.message
        assert client.room is None and not client.can_read
        with pytest.raises(ChatError) as refused:
            await client.send("anyone?")
        assert refused.value.code == "not_in_room"
        await client.close()


def test_reconnects_are_spread_out_and_back_off_without_moving_in_step():
    """A server that drops many clients at once (a restart, a stalled process closing
    its swept seats with 1012) does not get them all back in one instant: the first try
    waits up to RECONNECT_SPREAD, and the retries double from RECONNECT_FIRST_DELAY up
    to RECONNECT_MAX_DELAY, each scaled by half to one and a half."""
    low, high = reconnect_waits(lambda: 0.0), reconnect_waits(lambda: 0.999)
    assert next(low) == 0.0 and 0.24 < next(high) < 0.25
    assert [round(next(low), 3) for _ in range(8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.5, 2.5]
    assert [round(next(high), 2) for _ in range(8)] == [0.15, 0.3, 0.6, 1.2, 2.4, 4.8, 7.5, 7.5]
    firsts = {next(reconnect_waits(random.Random(seed).random)) for seed in range(100)}
    assert len(firsts) == 100 and max(firsts) - min(firsts) > 0.2
