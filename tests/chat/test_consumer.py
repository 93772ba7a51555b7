"""The consumer through config.asgi.application, over the in-memory and Redis layers."""

import base64
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from chat import keys, presence, selectors, services
from chat.errors import CloseCode
from chat.models import Message, Participant, Room
from tests.helpers import (
    HISTORY_ENTRY,
    assert_open,
    close_all,
    connect,
    create_room,
    decrypt,
    encrypt,
    expect_closed,
    expect_error,
    join_room,
    rejoin_as_owner,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]


async def test_create_room_answers_room_created(layer):
    """The creator gets room_info, a 32-byte key and an owner token, and is its owner."""
    owner, created = await create_room(password="s3cret", owner_name="Alice")
    info = created["room_info"]
    assert set(info) == {
        "id", "name", "description", "join_key", "has_password", "owner", "created_at", "sealed", "key_check",
    }  # fmt: skip
    assert info["has_password"] is True and info["owner"] == "Alice" and info["name"] == "Room"
    assert info["sealed"] is False and info["key_check"] is None and created["name"] == "Alice"
    assert info["created_at"].endswith("Z")
    assert len(base64.b64decode(created["encryption_key"], validate=True)) == 32
    assert len(info["join_key"]) >= 16 and created["owner_token"]
    room = await Room.objects.aget(pk=info["id"])
    assert room.password_hash.startswith("argon2$argon2id$") and "s3cret" not in room.password_hash
    await owner.send_json_to({"type": "GetMembers"})
    assert await owner.receive_json_from() == {"type": "Members", "participants": ["Alice"]}
    await close_all(owner)


async def test_join_chat_and_presence(room):
    """A joiner sees the members, the room hears of them, and chat reaches everyone."""
    owner, key = room.owner, room.key
    bob, joined = await join_room(room.join_key, "Bob", path="/")
    assert joined["participants"] == ["Owner", "Bob"] and joined["name"] == "Bob"
    assert joined["encryption_key"] == key and joined["room_info"] == room.created["room_info"]
    assert await owner.receive_json_from() == {"type": "ParticipantJoined", "name": "Bob"}

    await bob.send_json_to({"type": "ChatMessage", "content": encrypt(key, "héllo 👋")})
    for communicator in (owner, bob):
        message = await communicator.receive_json_from()
        assert message["type"] == "ChatMessage" and message["sender"] == "Bob"
        assert isinstance(message["id"], int) and message["sent_at"].endswith("Z")
        assert decrypt(key, message["content"]) == "héllo 👋"
    stored = await Message.objects.aget(pk=message["id"])
    assert "héllo" not in stored.content and stored.content == message["content"]

    await bob.send_json_to({"type": "LeaveRoom"})
    assert await owner.receive_json_from() == {"type": "ParticipantLeft", "name": "Bob"}
    assert await bob.receive_nothing(timeout=0.2)
    await owner.send_json_to({"type": "GetMembers"})
    assert await owner.receive_json_from() == {"type": "Members", "participants": ["Owner"]}
    await assert_open(bob)
    await close_all(bob)


async def test_closing_the_socket_leaves_the_room(room_of_two):
    owner, bob = room_of_two.owner, room_of_two.member
    await bob.disconnect()
    assert await owner.receive_json_from() == {"type": "ParticipantLeft", "name": "Bob"}
    assert not await Participant.objects.filter(name="Bob", left_at__isnull=True).aexists()


async def test_history_for_late_joiners_and_since(room):
    """A late joiner gets History oldest first; `since` gives only later messages."""
    owner, key = room.owner, room.key
    ids, live = [], []
    for n in range(3):
        await owner.send_json_to({"type": "ChatMessage", "content": encrypt(key, f"m{n}")})
        live.append(await owner.receive_json_from())
        ids.append(live[-1]["id"])
    assert ids == sorted(ids) and len(set(ids)) == 3
    join_key = room.join_key

    late, _ = await join_room(join_key, "Late")
    history = await late.receive_json_from()
    assert history["type"] == "History"
    assert [m["id"] for m in history["messages"]] == ids
    assert [decrypt(key, m["content"]) for m in history["messages"]] == ["m0", "m1", "m2"]
    assert set(history["messages"][0]) == HISTORY_ENTRY
    # A History entry is the broadcast plus what can change later (edits, reactions).
    later_state = ("edited_at", "reactions")
    assert [{"type": "ChatMessage", **without(m, later_state)} for m in history["messages"]] == live

    later = await connect()
    await later.send_json_to({"type": "JoinRoom", "join_key": join_key, "name": "Later", "since": ids[0]})
    assert (await later.receive_json_from())["type"] == "RoomJoined"
    assert [m["id"] for m in (await later.receive_json_from())["messages"]] == ids[1:]

    latest = await connect()
    await latest.send_json_to(
        {"type": "JoinRoom", "join_key": join_key, "name": "Latest", "since": ids[-1] + 10**6}
    )
    assert (await latest.receive_json_from())["type"] == "RoomJoined"
    assert await latest.receive_nothing(timeout=0.2)

    # Past the database's 64-bit ids, still above every id: no History, never an error.
    beyond = await connect()
    await beyond.send_json_to({"type": "JoinRoom", "join_key": join_key, "name": "Beyond", "since": 10**19})
    assert (await beyond.receive_json_from())["type"] == "RoomJoined"
    assert await beyond.receive_nothing(timeout=0.2)
    await close_all(late, later, latest, beyond)


@pytest.mark.parametrize("since", [10**6, 2**63 - 1])
async def test_a_since_above_every_id_still_gets_the_messages_that_come_next(room, since):
    """A client that rejoins with a `since` above the room's ids (the server's database was
    restored from a backup, say) is shown nothing old, and then every message as it comes,
    its own included: `since` is not taken for messages it was shown."""
    owner, key = room.owner, room.key
    await owner.send_json_to({"type": "ChatMessage", "content": encrypt(key, "before")})
    newest = (await owner.receive_json_from())["id"]
    assert newest < since
    ahead = await connect(client=("10.0.0.2", 5000))
    await ahead.send_json_to({"type": "JoinRoom", "join_key": room.join_key, "name": "Ahead", "since": since})
    assert (await ahead.receive_json_from())["type"] == "RoomJoined"
    assert (await owner.receive_json_from())["type"] == "ParticipantJoined"
    await owner.send_json_to({"type": "ChatMessage", "content": encrypt(key, "after")})
    after = await ahead.receive_json_from()
    assert after["type"] == "ChatMessage" and decrypt(key, after["content"]) == "after"
    await ahead.send_json_to({"type": "ChatMessage", "content": encrypt(key, "mine")})
    mine = await ahead.receive_json_from()
    assert mine["type"] == "ChatMessage" and mine["sender"] == "Ahead" and mine["id"] > after["id"]
    await close_all(ahead)


async def test_what_one_address_reads_across_its_sockets_is_bounded(room, settings):
    """READS_PER_MINUTE is per connection: a reviewer's 50 sockets of one address read
    History in a loop at 109 MB/s (80 % of a core). The address's sockets together read
    READ_BYTES_PER_ADDRESS_BURST, then what it refills; another address reads on."""
    owner, key = room.owner, room.key
    for n in range(20):
        await owner.send_json_to({"type": "ChatMessage", "content": encrypt(key, "x" * 1000 + str(n))})
        await owner.receive_json_from()
    settings.READ_BYTES_PER_ADDRESS_BURST, settings.READ_BYTES_PER_ADDRESS_SUSTAINED = 100_000, 1
    readers = []
    for n in range(5):  # one address's sockets, each well within its READS_PER_MINUTE
        reader, _ = await join_room(room.join_key, f"R{n}", client=("10.0.9.9", 6000 + n))
        await reader.receive_json_from()  # the join's History
        readers.append(reader)
    pages, refused = 0, 0
    for _ in range(6):
        for reader in readers:
            await reader.send_json_to({"type": "GetHistory", "before": 10**12, "limit": 20})
            answer = await reader.receive_json_from()
            while answer["type"] == "ParticipantJoined":  # of the readers joined after it
                answer = await reader.receive_json_from()
            if answer["type"] == "History":
                pages += 1
            else:
                assert answer["code"] == "rate_limited" and "read much" in answer["message"]
                refused += 1
    # A page is about 30 KB: the bucket's 100,000 bytes pay for four, and the one that
    # empties it is still sent.
    assert 3 <= pages <= 5 and refused == 30 - pages
    other, _ = await join_room(room.join_key, "Other", client=("10.0.8.8", 1))
    await other.receive_json_from()
    await other.send_json_to({"type": "GetHistory", "before": 10**12, "limit": 20})
    assert (await other.receive_json_from())["type"] == "History"
    await close_all(other, *readers)


async def test_history_is_capped(room, settings):
    settings.CHAT_HISTORY_LIMIT = 2  # read when a joiner's History is made
    for n in range(4):
        await room.owner.send_json_to({"type": "ChatMessage", "content": encrypt(room.key, str(n))})
        await room.owner.receive_json_from()
    late, _ = await join_room(room.join_key, "Late")
    messages = (await late.receive_json_from())["messages"]
    assert [decrypt(room.key, m["content"]) for m in messages] == ["2", "3"]
    await close_all(late)


async def test_non_members_receive_nothing(room):
    other, _ = await create_room(name="Other room")
    await room.owner.send_json_to({"type": "ChatMessage", "content": encrypt(room.key, "x")})
    await room.owner.receive_json_from()
    assert await other.receive_nothing(timeout=0.2)
    await close_all(other)


async def test_join_errors_keep_the_socket_open(layer):
    """Unknown key, wrong or missing password and a taken name are refused in place."""
    owner, created = await create_room(password="pw")
    join_key = created["room_info"]["join_key"]
    guest = await connect(client=("10.9.9.9", 1))
    attempts = [
        ({"join_key": "nope", "name": "G", "password": "pw"}, "room_not_found"),
        ({"join_key": "no\x00pe", "name": "G", "password": "pw"}, "room_not_found"),  # also on PostgreSQL
        ({"join_key": join_key, "name": "G", "password": "PW"}, "wrong_password"),
        ({"join_key": join_key, "name": "G"}, "wrong_password"),
        ({"join_key": join_key, "name": "oWnEr", "password": "pw"}, "name_taken"),
    ]
    for fields, code in attempts:
        await guest.send_json_to({"type": "JoinRoom", **fields})
        await expect_error(guest, code)
    await guest.send_json_to({"type": "JoinRoom", "join_key": join_key, "name": "G", "password": "pw"})
    assert (await guest.receive_json_from())["type"] == "RoomJoined"
    await guest.send_json_to({"type": "JoinRoom", "join_key": join_key, "name": "G2", "password": "pw"})
    await expect_error(guest, "already_in_room")
    await guest.send_json_to({"type": "CreateRoom", "name": "R", "description": ""})
    await expect_error(guest, "already_in_room")
    await assert_open(guest)
    await close_all(owner, guest)


async def test_name_is_free_again_after_leaving(room_of_two):
    bob = room_of_two.member
    await bob.send_json_to({"type": "LeaveRoom"})
    await bob.send_json_to({"type": "JoinRoom", "join_key": room_of_two.join_key, "name": "BOB"})
    assert (await bob.receive_json_from())["type"] == "RoomJoined"


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "ChatMessage", "content": "QUFB" * 10},
        {"type": "GetMembers"},
        {"type": "LeaveRoom"},
        {"type": "UploadFile", "name": "a.txt", "mime_type": "text/plain", "content": "YQ=="},
        {"type": "GetFile", "file_id": "x"},
        {"type": "DeleteFile", "file_id": "x"},
    ],
)
async def test_room_messages_without_a_room_are_not_in_room(layer, frame):
    communicator = await connect()
    await communicator.send_json_to(frame)
    await expect_error(communicator, "not_in_room")
    await assert_open(communicator)
    await close_all(communicator)


async def test_malformed_frames_get_errors_and_the_socket_stays(room):
    owner = room.owner
    bad = [
        ("text", "{not json"),
        ("text", "[1, 2]"),
        ("bytes", b'{"type": "GetMembers"}'),
        ("text", '{"type": "Bogus"}'),
        ("text", '{"type": "ChatMessage", "content": "plain text"}'),
        ("text", '{"type": "JoinRoom", "join_key": "k", "name": "\\u0000"}'),
    ]
    codes = ["invalid_json", "invalid_json", "invalid_json", "unknown_type", "invalid_field", "invalid_field"]
    for (kind, payload), code in zip(bad, codes, strict=True):
        if kind == "bytes":
            await owner.send_to(bytes_data=payload)
        else:
            await owner.send_to(text_data=payload)
        await expect_error(owner, code)
    await assert_open(owner)


async def test_content_over_the_limit_is_message_too_large(room, settings):
    settings.CHAT_MAX_CONTENT = 100  # read for each ChatMessage
    await room.owner.send_json_to({"type": "ChatMessage", "content": encrypt(room.key, "x" * 200)})
    await expect_error(room.owner, "message_too_large")
    await room.owner.send_json_to({"type": "ChatMessage", "content": encrypt(room.key, "short")})
    assert (await room.owner.receive_json_from())["type"] == "ChatMessage"


async def test_chat_rate_limit_then_1008_for_sustained_abuse(layer, settings):
    """The bucket allows a burst, then rate_limited; the 51st refusal in 10 s closes 1008."""
    settings.CHAT_RATE_BURST = 3
    settings.CHAT_RATE_SUSTAINED = 0.001
    owner, created = await create_room()
    content = encrypt(created["encryption_key"], "spam")
    for _ in range(3):
        await owner.send_json_to({"type": "ChatMessage", "content": content})
        assert (await owner.receive_json_from())["type"] == "ChatMessage"
    for _ in range(50):
        await owner.send_json_to({"type": "ChatMessage", "content": content})
        await expect_error(owner, "rate_limited")
    await assert_open(owner)
    await owner.send_json_to({"type": "ChatMessage", "content": content})
    await expect_error(owner, "rate_limited")
    assert await owner.receive_output() == {"type": "websocket.close", "code": 1008}
    assert await Message.objects.filter(room_id=created["room_info"]["id"]).acount() == 3


async def test_one_address_stores_at_most_its_bytes_through_all_its_sockets(layer, settings):
    """CHAT_BYTES_PER_ADDRESS_*: six sockets of one address, each well inside its own chat
    rate, together store no more than the address's bucket; another address is not
    touched, and the refused sockets stay open."""
    owner, created = await create_room()
    key, join_key = created["encryption_key"], created["room_info"]["join_key"]
    content = encrypt(key, "x" * 2900)
    settings.CHAT_BYTES_PER_ADDRESS_BURST = 10 * (len(content) + 512)
    settings.CHAT_BYTES_PER_ADDRESS_SUSTAINED = 0.001
    sockets = [(await join_room(join_key, f"S{n}", client=("10.0.0.9", 6000 + n)))[0] for n in range(6)]

    async def answer(communicator, name: str) -> str:
        while True:  # skip the others' joins and messages
            frame = await communicator.receive_json_from()
            if frame["type"] in ("Error", "Members") or frame.get("sender") == name:
                return frame.get("code", frame["type"])

    answers = []
    for _ in range(4):
        for n, communicator in enumerate(sockets):
            await communicator.send_json_to({"type": "ChatMessage", "content": content})
            answers.append(await answer(communicator, f"S{n}"))
    assert answers.count("ChatMessage") == 10 and answers.count("rate_limited") == 14, answers
    bob, _ = await join_room(join_key, "Bob", client=("10.0.0.2", 5000))
    await bob.send_json_to({"type": "ChatMessage", "content": content})
    assert await answer(bob, "Bob") == "ChatMessage"
    for communicator in sockets:  # still open
        await communicator.send_json_to({"type": "GetMembers"})
        assert await answer(communicator, "") == "Members"
    room_id = created["room_info"]["id"]
    assert await Message.objects.filter(room_id=room_id, sender__startswith="S").acount() == 10
    await close_all(owner, bob, *sockets)


async def test_one_address_joins_at_most_its_limit_a_minute_however_many_sockets_it_opens(layer, settings):
    """JOINS_PER_ADDRESS_PER_MINUTE: fresh sockets (each with its own JOINS_PER_MINUTE)
    from one address are refused past it; a join refused for its rate after it took its
    place gives it back, one answered wrong_password keeps it; another address is not
    touched."""
    settings.JOINS_PER_ADDRESS_PER_MINUTE = 4
    settings.JOIN_FAILURES_PER_MINUTE = 1
    owner, created = await create_room(password="pw", client=("10.0.0.7", 5000))  # one
    join_key = created["room_info"]["join_key"]
    guesser = await connect(client=("10.0.0.7", 5001))
    frame = {"type": "JoinRoom", "join_key": join_key, "name": "G", "password": "guess"}
    await guesser.send_json_to(frame)
    await expect_error(guesser, "wrong_password")  # two
    for _ in range(3):  # blocked by JOIN_FAILURES_PER_MINUTE: each gives its place back
        await guesser.send_json_to(frame)
        await expect_error(guesser, "rate_limited")
    settings.JOIN_FAILURES_PER_MINUTE = 100  # no longer blocked
    sockets = []
    for n in range(2):  # three and four
        sockets.append((await join_room(join_key, f"J{n}", password="pw", client=("10.0.0.7", 5100 + n)))[0])
    late = await connect(client=("10.0.0.7", 5200))
    await late.send_json_to({"type": "JoinRoom", "join_key": join_key, "name": "Late", "password": "pw"})
    error = await expect_error(late, "rate_limited")
    assert "address" in error["message"]
    bob, _ = await join_room(join_key, "Bob", password="pw", client=("10.0.0.2", 5000))
    await close_all(owner, guesser, late, bob, *sockets)


async def test_the_connections_state_is_checked_before_its_rate_limits(layer, settings):
    """PROTOCOL.md: state (`already_in_room`, `not_in_room`) answers before rate limits."""
    settings.JOINS_PER_MINUTE = 1
    settings.READS_PER_MINUTE = 0
    owner, created = await create_room()  # the one join of the minute
    await owner.send_json_to({"type": "CreateRoom", "name": "Again", "description": ""})
    await expect_error(owner, "already_in_room")
    await owner.send_json_to({"type": "JoinRoom", "join_key": created["room_info"]["join_key"], "name": "X"})
    await expect_error(owner, "already_in_room")
    await owner.send_json_to({"type": "GetMembers"})
    await expect_error(owner, "rate_limited")
    await owner.send_json_to({"type": "LeaveRoom"})
    no_file = "00000000-0000-0000-0000-000000000000"
    for frame in ({"type": "GetMembers"}, {"type": "GetFile", "file_id": no_file}):
        await owner.send_json_to(frame)
        await expect_error(owner, "not_in_room")
    await owner.send_json_to({"type": "CreateRoom", "name": "Third", "description": ""})
    await expect_error(owner, "rate_limited")
    await owner.disconnect()


async def test_wrong_passwords_rate_limit_the_address(layer, settings):
    """Past JOIN_FAILURES_PER_MINUTE wrong passwords, even the right one is rate_limited."""
    settings.JOIN_FAILURES_PER_MINUTE = 2
    owner, created = await create_room(password="pw")
    join_key = created["room_info"]["join_key"]
    attacker = await connect(client=("10.6.6.6", 1))
    for _ in range(2):
        await attacker.send_json_to({"type": "JoinRoom", "join_key": join_key, "name": "A", "password": "x"})
        await expect_error(attacker, "wrong_password")
    await attacker.send_json_to({"type": "JoinRoom", "join_key": join_key, "name": "A", "password": "pw"})
    await expect_error(attacker, "rate_limited")
    friend, _ = await join_room(join_key, "Friend", password="pw", client=("10.7.7.7", 1))
    await close_all(owner, attacker, friend)


async def test_a_join_without_the_rooms_password_is_told_the_room_needs_one(layer, settings):
    """Someone who did not know the room has a password hears that it has one, not that
    theirs was wrong. It is a `wrong_password` answer all the same, which PROTOCOL.md
    counts toward JOIN_FAILURES_PER_MINUTE."""
    settings.JOIN_FAILURES_PER_MINUTE = 2
    owner, created = await create_room(password="pw")
    join_key = created["room_info"]["join_key"]
    newcomer = await connect(client=("10.6.6.8", 1))
    for password in (None, ""):
        frame = {"type": "JoinRoom", "join_key": join_key, "name": "N", "password": password}
        await newcomer.send_json_to(frame)
        assert (await expect_error(newcomer, "wrong_password"))["message"] == "This room needs a password."
    await newcomer.send_json_to({"type": "JoinRoom", "join_key": join_key, "name": "N", "password": "pw"})
    await expect_error(newcomer, "rate_limited")
    await close_all(owner, newcomer)


async def test_a_closed_room_is_not_found_whatever_the_password_once_its_door_was_seen(layer, settings):
    """PROTOCOL.md: room_not_found when no open room has the key. The process remembers
    the room's door from an earlier join; a wrong password makes it read the room again,
    finds it closed, forgets it, and does not count the guess."""
    settings.JOIN_FAILURES_PER_MINUTE = 1
    owner, created = await create_room(password="pw")
    join_key = created["room_info"]["join_key"]
    friend, _ = await join_room(join_key, "Friend", password="pw")
    door = selectors.door_cache.get(join_key)
    assert door is not None
    await Room.objects.filter(join_key_hash=keys.join_key_hash(join_key)).aupdate(closed_at=timezone.now())
    guesser = await connect(client=("10.6.6.7", 1))
    # No password at all: not "This room needs a password" for a room that is gone.
    await guesser.send_json_to({"type": "JoinRoom", "join_key": join_key, "name": "G"})
    await expect_error(guesser, "room_not_found")
    assert selectors.door_cache.get(join_key) is None
    selectors.door_cache.put(join_key, door)  # remembered again, as another join would
    await guesser.send_json_to({"type": "JoinRoom", "join_key": join_key, "name": "G", "password": "x"})
    await expect_error(guesser, "room_not_found")
    assert selectors.door_cache.get(join_key) is None
    # The guess took no place in the address's one: a wrong password elsewhere is still
    # answered as such, not rate_limited.
    other_owner, other = await create_room(password="pw2")
    await guesser.send_json_to(
        {"type": "JoinRoom", "join_key": other["room_info"]["join_key"], "name": "G", "password": "x"}
    )
    await expect_error(guesser, "wrong_password")
    await close_all(owner, friend, guesser, other_owner)


async def test_the_right_password_on_a_closed_room_forgets_its_door(layer):
    owner, created = await create_room(password="pw")
    join_key = created["room_info"]["join_key"]
    friend, _ = await join_room(join_key, "Friend", password="pw")
    await Room.objects.filter(join_key_hash=keys.join_key_hash(join_key)).aupdate(closed_at=timezone.now())
    late = await connect()
    await late.send_json_to({"type": "JoinRoom", "join_key": join_key, "name": "Late", "password": "pw"})
    await expect_error(late, "room_not_found")
    assert selectors.door_cache.get(join_key) is None
    await close_all(owner, friend, late)


async def test_owner_token_rejoins_as_owner(room):
    await room.owner.disconnect()
    again, joined = await rejoin_as_owner(room.created, "Boss")
    assert joined["room_info"]["owner"] == "Owner"
    assert await Participant.objects.filter(name="Boss", role="owner").aexists()
    stranger, _ = await join_room(room.join_key, "Eve")
    assert await Participant.objects.filter(name="Eve", role="member").aexists()
    await close_all(again, stranger)


async def test_unexpected_failure_is_server_error_and_socket_stays(room, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(services, "messages_post", broken)
    await room.owner.send_json_to({"type": "ChatMessage", "content": encrypt(room.key, "x")})
    await expect_error(room.owner, "server_error")
    await assert_open(room.owner)


async def test_a_ghost_does_not_hold_its_name(room):
    presence.live_seats.discard((await Participant.objects.aget(name="Owner")).pk)
    await Participant.objects.filter(name="Owner").aupdate(
        last_seen=timezone.now() - timedelta(hours=1), process_id="dead"
    )
    back, joined = await join_room(room.join_key, "owner")
    assert joined["participants"] == ["owner"]
    await close_all(back)


async def test_a_browser_session_records_the_rooms_it_joined(layer, async_client):
    """The page gives a session cookie and stores nothing; a socket opened with it ties its
    joins to it, the first one making the session row under the cookie's key."""
    from importlib import import_module

    from django.conf import settings

    response = await async_client.get("/")
    session_key = response.cookies[settings.SESSION_COOKIE_NAME].value
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    assert not await database_sync_to_async(store_class().exists)(session_key)
    cookie = [(b"cookie", f"{settings.SESSION_COOKIE_NAME}={session_key}".encode())]
    owner, created = await create_room(headers=cookie)
    rooms = (await database_sync_to_async(store_class(session_key).load)())["chat_rooms"]
    assert rooms == [created["room_info"]["id"]]

    forged = [(b"cookie", f"{settings.SESSION_COOKIE_NAME}=forgedsessionkey123456".encode())]
    other, _ = await join_room(created["room_info"]["join_key"], "Forger", headers=forged)
    assert not await database_sync_to_async(store_class().exists)("forgedsessionkey123456")
    await close_all(owner, other)


async def test_events_held_during_a_join_are_not_shown_twice(room):
    """A joiner never gets ParticipantJoined for someone its RoomJoined already lists."""
    first, _ = await join_room(room.join_key, "First")
    second, joined = await join_room(room.join_key, "Second")
    assert joined["participants"] == ["Owner", "First", "Second"]
    assert await second.receive_nothing(timeout=0.3)
    await close_all(first, second)


async def test_a_closed_room_refuses_joins_even_when_its_key_was_seen(room_of_two):
    """The process remembers join keys, but the seat INSERT checks the room is open."""
    bob = room_of_two.member
    await Room.objects.filter(pk=room_of_two.id).aupdate(closed_at=timezone.now())
    carol = await connect()
    await carol.send_json_to({"type": "JoinRoom", "join_key": room_of_two.join_key, "name": "Carol"})
    await expect_error(carol, "room_not_found")
    await bob.send_json_to({"type": "ChatMessage", "content": encrypt(room_of_two.key, "x")})
    await expect_error(bob, "room_closed")
    await close_all(carol)


def end_seat(how: str, participant_id: int, room_id: str) -> None:
    """End a seat in the database alone, as a kick or close whose layer event was lost."""
    now = timezone.now()
    if how == "kicked":
        services.participant_remove(participant_id=participant_id, now=now)
    elif how == "closed":
        services.room_close(room_id=room_id, now=now)
    else:  # swept as a ghost meanwhile
        Participant.objects.filter(pk=participant_id).update(left_at=now)


@pytest.mark.parametrize(
    "how, code, close",
    [("kicked", "kicked", 4001), ("closed", "room_closed", 4000), ("swept", "not_in_room", None)],
)
async def test_get_members_after_the_seat_ended_without_its_event(room_of_two, how, code, close):
    """Issue 14: GetMembers checks the seat in the database as chat and files do, so a
    removed seat lists no one: `kicked` (4001), `room_closed` (4000), or `not_in_room`
    with the seat dropped and the socket open."""
    owner, bob = room_of_two.owner, room_of_two.member
    bob_id = (await Participant.objects.aget(name="Bob")).pk
    await database_sync_to_async(end_seat)(how, bob_id, room_of_two.id)

    await bob.send_json_to({"type": "GetMembers"})
    await expect_error(bob, code)
    if close is not None:
        await expect_closed(bob, close)
    else:
        await bob.send_json_to({"type": "GetMembers"})
        await expect_error(bob, "not_in_room")
    assert await owner.receive_nothing(0.2)  # nothing was announced: the event was lost


@pytest.mark.parametrize("how, code, close", [("kicked", "kicked", 4001), ("closed", "room_closed", 4000)])
async def test_a_socket_whose_kick_or_close_was_lost_is_told_at_the_next_heartbeat(
    room_of_two, how, code, close
):
    """Issue 14: a kick or close ends every right of the seat at once, receiving the
    room's messages included. Its event lost, a socket that sends nothing is told by
    its process's next heartbeat, as the event would have told it."""
    owner, bob = room_of_two.owner, room_of_two.member
    bob_id = (await Participant.objects.aget(name="Bob")).pk
    await database_sync_to_async(end_seat)(how, bob_id, room_of_two.id)
    assert await bob.receive_nothing(0.2)  # the event was lost
    await presence.beat_once()
    await expect_error(bob, code)
    await expect_closed(bob, close)
    if how == "kicked":  # the owner's seat holds: the owner is told nothing
        assert await owner.receive_nothing(0.2)
    else:
        await expect_error(owner, "room_closed")
        await expect_closed(owner, 4000)


async def test_a_socket_whose_seat_was_swept_while_it_lived_is_closed_to_come_back(room_of_two):
    """Its process stalled past PRESENCE_TIMEOUT and another swept the seat, telling the
    room it left, while the socket still showed the room. The next heartbeat closes it
    with 1012 and nothing else; the client reconnects and resumes the seat with its
    participant token, and the room is told it is back."""
    owner, bob = room_of_two.owner, room_of_two.member
    bob_id = (await Participant.objects.aget(name="Bob")).pk
    await database_sync_to_async(end_seat)("swept", bob_id, room_of_two.id)
    await presence.beat_once()
    await expect_closed(bob, CloseCode.SEAT_LOST)
    assert await owner.receive_nothing(0.2)  # the sweep told the room; nothing more
    back = await connect(client=("10.0.0.2", 5001))
    await back.send_json_to(
        {
            "type": "JoinRoom",
            "join_key": room_of_two.join_key,
            "name": "Bob",
            "participant_token": room_of_two.joined["participant_token"],
        }
    )
    assert (await back.receive_json_from())["participants"] == ["Owner", "Bob"]
    assert await owner.receive_json_from() == {"type": "ParticipantJoined", "name": "Bob"}
    assert await Participant.objects.filter(pk=bob_id, left_at__isnull=True).aexists()  # the same seat
    await close_all(back)


async def test_a_socket_that_left_its_seat_while_the_heartbeat_asked_is_not_closed(room_of_two, monkeypatch):
    """LeaveRoom while the heartbeat's question is on the database thread: the seat it
    finds left was left by its socket (no longer among the seats the process holds),
    which stays open and is told nothing."""
    bob = room_of_two.member
    bob_id = (await Participant.objects.aget(name="Bob")).pk
    asked = services.seats_ended

    def left_meanwhile(*, held):
        presence.live_seats.discard(bob_id)  # what `actions.leave` does first
        Participant.objects.filter(pk=bob_id).update(left_at=timezone.now())
        return asked(held=held)

    monkeypatch.setattr(services, "seats_ended", left_meanwhile)
    await presence.beat_once()
    assert await bob.receive_nothing(0.3)


async def test_a_kick_that_lands_before_the_joiners_arrival_is_told_leaves_no_ghost(room, monkeypatch):
    """An admin removes Carol between her seat's commit and her ParticipantJoined: the
    room is told she left (with the kick), and then her arrival. That arrival, of a seat
    an admin just removed, is dropped, so nobody lists her as present."""
    from chat import actions, moderation

    told = actions.tell_others

    async def kicked_first(conn, seat, *, arrived):
        if arrived and seat.name == "Carol":
            now = timezone.now()
            await database_sync_to_async(moderation.remove_participant)(
                participant_id=seat.participant_id, now=now, actor="test"
            )
        await told(conn, seat, arrived=arrived)

    monkeypatch.setattr(actions, "tell_others", kicked_first)
    carol, _ = await join_room(room.join_key, "Carol", client=("10.0.0.3", 5000))
    await expect_error(carol, "kicked")
    await expect_closed(carol, CloseCode.KICKED)
    seen = []
    while not await room.owner.receive_nothing(timeout=0.3):
        seen.append(await room.owner.receive_json_from())
    assert seen == [{"type": "ParticipantLeft", "name": "Carol"}]
    await room.owner.send_json_to({"type": "GetMembers"})
    assert (await room.owner.receive_json_from())["participants"] == ["Owner"]


def without(entry: dict, keys: tuple[str, ...]) -> dict:
    return {key: value for key, value in entry.items() if key not in keys}
