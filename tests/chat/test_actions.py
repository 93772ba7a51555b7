"""chat/actions.py without a socket: each command's refusals in PROTOCOL.md's order (the
connection's state, then rate limits, then the rest), what a refusal puts on the
outbox and gives back, large frames' share of upload bytes, a seat the database found
gone, and a socket's opening and closing. Through sockets: tests/chat/test_consumer.py."""

import logging
import time
import types
import uuid

import pytest
from redis.exceptions import RedisError

from chat import actions, outbox, passwords, presence, protocol, ratelimit, services
from chat.address_limits import address_joins, room_creations
from chat.errors import CloseCode, ErrorCode, ProtocolError
from chat.hub import hub
from chat.ratelimit import TokenBucket
from tests.helpers import Socketless, in_loop, join_seat, make_room, refusal

ADDRESS = "203.0.113.5"  # the `connection` fixture's


def a_seat() -> services.Seat:
    return services.Seat(participant_id=10**9, room_id=uuid.uuid4(), name="Ann", is_owner=False)


CREATE = protocol.CreateRoom(name="R", description="", password=None, owner_name="Owner")
JOIN = protocol.JoinRoom(join_key="no-such-key", password=None, name="Ann", since=None, owner_token=None)


@pytest.fixture
def backlog_full(settings) -> int:
    """The connection's address has more than WS_SEND_QUEUE_BYTES unread in its sockets."""
    unread = settings.WS_SEND_QUEUE_BYTES + 1
    outbox.add_backlog(ADDRESS, unread)
    yield unread
    outbox.add_backlog(ADDRESS, -unread)


# --- Refusal order -----------------------------------------------------------------------


async def state_then_joins(conn, action, command, settings) -> None:
    """With no join left this minute: `already_in_room` in a room (the state first),
    `rate_limited` outside one."""
    settings.JOINS_PER_MINUTE = 0
    conn.seat = a_seat()
    assert (await refusal(conn, action, command)).code == ErrorCode.ALREADY_IN_ROOM
    conn.seat = None
    refused = await refusal(conn, action, command)
    assert refused.code == ErrorCode.RATE_LIMITED and "joins" in refused.message
    settings.JOINS_PER_MINUTE = 20


async def test_create_room_checks_the_room_then_joins_then_the_hash_queue_then_rooms_per_hour(
    connection, settings, monkeypatch
):
    conn = connection.conn
    await state_then_joins(conn, actions.create_room, CREATE, settings)
    settings.ROOMS_PER_HOUR = 0
    monkeypatch.setattr(passwords, "busy", lambda: True)
    with_password = protocol.CreateRoom(name="R", description="", password="pw", owner_name="Owner")
    refused = await refusal(conn, actions.create_room, with_password)
    assert refused.code == ErrorCode.RATE_LIMITED and "busy" in refused.message  # before the quota
    refused = await refusal(conn, actions.create_room, CREATE)  # no password: no hashing
    assert refused.code == ErrorCode.RATE_LIMITED and "rooms" in refused.message
    assert conn.joins.count() == 0  # a `rate_limited` frame gives its join place back
    assert [frame["code"] for frame in await connection.frames()] == [
        "already_in_room",
        "rate_limited",
        "rate_limited",
        "rate_limited",
    ]


async def test_past_rooms_per_hour_the_client_hears_the_limit_and_the_wait_and_the_log_names_it(
    connection, settings, caplog
):
    """Before: "Too many rooms from this address; wait a while.", and a log line
    (`event=error code=rate_limited`) that named no limit."""
    settings.ROOMS_PER_HOUR = 2
    rooms, now = room_creations(), time.monotonic()
    await rooms.claim(ADDRESS, 2, now=now - 46 * 60)  # leaves the hour in 14 minutes
    await rooms.claim(ADDRESS, 2, now=now - 60)
    caplog.set_level(logging.INFO, logger="chat.events")
    refused = await refusal(connection.conn, actions.create_room, CREATE)
    message = "Too many rooms from this address (at most 2 an hour); wait 14 minutes."
    assert await connection.frames() == [{"type": "Error", "code": "rate_limited", "message": message}]
    assert refused.message == message
    lines = [record.getMessage() for record in caplog.records if record.name == "chat.events"]
    assert lines == [f"event=error code=rate_limited client={ADDRESS} limit=ROOMS_PER_HOUR"]


@pytest.mark.parametrize(
    ("limit", "free_in", "said"),
    [
        (20, 0.5, "at most 20 an hour); wait a minute."),
        (20, 61, "at most 20 an hour); wait 2 minutes."),
        (1, 3599.9, "at most 1 an hour); wait an hour."),
    ],
)
def test_the_rooms_refusal_rounds_its_wait_up(limit, free_in, said):
    assert actions.rooms_refusal(limit, free_in) == f"Too many rooms from this address ({said}"


def test_with_rooms_per_hour_at_0_the_refusal_promises_no_wait():
    assert actions.rooms_refusal(0, 0) == "This server creates no rooms for this address."


async def test_other_limits_name_their_setting_in_the_log(connection, settings, caplog):
    settings.JOINS_PER_MINUTE = 0
    caplog.set_level(logging.INFO, logger="chat.events")
    refused = await refusal(connection.conn, actions.join_room, JOIN)
    assert refused.message == "Too many joins; wait a minute."
    lines = [record.getMessage() for record in caplog.records if record.name == "chat.events"]
    assert lines == [f"event=error code=rate_limited client={ADDRESS} limit=JOINS_PER_MINUTE"]


async def test_every_rate_limited_refusal_names_its_setting_in_the_log(
    connection, settings, caplog, monkeypatch
):
    """Before, only the room, join and read limits did (`event=error code=rate_limited`
    alone): an operator whose users were refused for their chat rate, their address's
    stored, read or unread bytes, or the uploads in flight could not tell which
    setting to raise."""
    conn = connection.conn
    conn.seat = a_seat()
    caplog.set_level(logging.INFO, logger="chat.events")
    message = protocol.ChatMessage(content="hello")
    conn.chat_bucket = TokenBucket(burst=1, rate=0)
    with monkeypatch.context() as patched:
        patched.setattr(ratelimit.chat_bytes, "take", lambda address, amount: False)
        await refusal(conn, actions.chat_message, message)  # gives its token back
    assert conn.chat_bucket.take()
    await refusal(conn, actions.chat_message, message)  # the bucket is empty now
    with monkeypatch.context() as patched:
        patched.setattr(ratelimit.read_bytes, "left", lambda address: False)
        await refusal(conn, actions.get_members, protocol.GetMembers())
    unread = settings.WS_SEND_QUEUE_BYTES + 1
    outbox.add_backlog(ADDRESS, unread)
    try:
        await refusal(conn, actions.get_members, protocol.GetMembers())
    finally:
        outbox.add_backlog(ADDRESS, -unread)
    settings.UPLOADS_IN_FLIGHT_BYTES = 3 * protocol.LARGE_STRING
    held = actions.hold_frame("x" * 2 * protocol.LARGE_STRING)
    try:
        with pytest.raises(ProtocolError) as uploads:
            actions.hold_frame("x" * 2 * protocol.LARGE_STRING)
        await actions.refuse(conn, uploads.value)
    finally:
        actions.frame_done(conn, held)
    lines = [record.getMessage() for record in caplog.records if record.name == "chat.events"]
    assert [line.rpartition(" limit=")[2] for line in lines] == [
        "CHAT_BYTES_PER_ADDRESS_*",
        "CHAT_RATE_*",
        "READ_BYTES_PER_ADDRESS_*",
        "WS_SEND_QUEUE_BYTES",
        "UPLOADS_IN_FLIGHT_BYTES",
    ], lines


@pytest.mark.django_db(transaction=True)
async def test_join_room_checks_the_room_then_joins_then_unread_then_failures_then_the_key(
    connection, settings, backlog_full
):
    conn = connection.conn
    settings.JOIN_FAILURES_PER_MINUTE = 2
    await state_then_joins(conn, actions.join_room, JOIN, settings)
    for _ in range(2):  # this address's wrong passwords of the minute
        await ratelimit.join_failures().claim(ADDRESS)
    refused = await refusal(conn, actions.join_room, JOIN)
    assert refused.code == ErrorCode.RATE_LIMITED and "unread" in refused.message
    outbox.add_backlog(ADDRESS, -backlog_full)  # read at last
    refused = await refusal(conn, actions.join_room, JOIN)
    assert refused.code == ErrorCode.RATE_LIMITED and "wrong passwords" in refused.message
    ratelimit.join_failures().windows.clear()
    assert (await refusal(conn, actions.join_room, JOIN)).code == ErrorCode.ROOM_NOT_FOUND
    outbox.add_backlog(ADDRESS, backlog_full)  # as the fixture left it
    assert conn.joins.count() == 1  # only the frame that got past the rate limits kept its place
    # What each join held for its History was given back once it was answered; the
    # address keeps only the last Error frame written (it may sit in the server's buffer).
    await connection.frames()
    assert conn.reserved == 0
    assert outbox.address_backlog(ADDRESS) == backlog_full + conn.outbox.unconfirmed


@pytest.mark.django_db(transaction=True)
async def test_a_join_the_hub_cannot_take_holds_no_room_events(connection, monkeypatch):
    """The hub's join failed (Redis down): the socket's outbox stops holding room events,
    or a room it creates or joins later would never be released to it."""
    conn = connection.conn
    room, _, _ = await actions.database(make_room)()

    async def down(room_id, outbox):
        raise ConnectionError("the layer is down")

    monkeypatch.setattr(actions.hub, "join", down)
    command = protocol.JoinRoom(
        join_key=room.join_key, password=None, name="Ann", since=None, owner_token=None
    )
    with pytest.raises(ConnectionError):
        await actions.join_room(conn, command)
    assert conn.outbox.held is None and conn.seat is None


async def test_chat_checks_the_room_then_the_bucket_then_the_size(connection, settings):
    conn = connection.conn
    settings.CHAT_MAX_CONTENT = 10
    conn.chat_bucket = TokenBucket(burst=1, rate=0)
    too_large = protocol.ChatMessage(content="x" * 11)
    assert (await refusal(conn, actions.chat_message, too_large)).code == ErrorCode.NOT_IN_ROOM
    conn.seat = a_seat()
    # The bucket's one token was not taken by the frame refused `not_in_room`:
    assert (await refusal(conn, actions.chat_message, too_large)).code == ErrorCode.MESSAGE_TOO_LARGE
    # ... and the size is judged after the bucket, so that frame took it.
    assert (await refusal(conn, actions.chat_message, too_large)).code == ErrorCode.RATE_LIMITED


async def test_a_message_its_address_may_not_store_gives_the_connections_token_back(connection, monkeypatch):
    """PROTOCOL.md: a frame answered `rate_limited` counts only toward the 1008 rule. A
    message refused for its address's stored bytes (other sockets of the address spent
    them) leaves the connection's own chat rate as it was."""
    conn = connection.conn
    conn.seat = a_seat()
    conn.chat_bucket = TokenBucket(burst=2, rate=0)
    monkeypatch.setattr(ratelimit.chat_bytes, "take", lambda address, amount: False)
    for _ in range(5):
        refused = await refusal(conn, actions.chat_message, protocol.ChatMessage(content="x" * 40))
        assert refused.code == ErrorCode.RATE_LIMITED and "stored" in refused.message
    assert conn.chat_bucket.tokens == 2
    assert conn.refusals.count() == 5  # each still counts toward the 1008 rule


@pytest.fixture
def deliveries(settings, monkeypatch):
    """DELIVERIES_PER_ADDRESS_* at a burst of 10 that never refills, in fresh buckets (and
    fresh DELIVERIES_PER_ROOM_* ones), and the room's sockets in every process as the test
    sets `.sockets` (4 to start with)."""
    settings.DELIVERIES_PER_ADDRESS_BURST, settings.DELIVERIES_PER_ADDRESS_SUSTAINED = 10, 0
    monkeypatch.setattr(actions, "room_deliveries", ratelimit.AddressBuckets(*DELIVERY_SETTINGS))
    monkeypatch.setattr(actions, "room_fan_out", ratelimit.AddressBuckets(*ROOM_DELIVERY_SETTINGS))
    monkeypatch.setattr(ratelimit.chat_bytes, "take", lambda address, amount: True)
    room = types.SimpleNamespace(sockets=4)
    monkeypatch.setattr(hub, "members_in", lambda room_id: room.sockets)
    return room


DELIVERY_SETTINGS = ("DELIVERIES_PER_ADDRESS_BURST", "DELIVERIES_PER_ADDRESS_SUSTAINED")
ROOM_DELIVERY_SETTINGS = ("DELIVERIES_PER_ROOM_BURST", "DELIVERIES_PER_ROOM_SUSTAINED")


async def taken(conn, content: str | None = "x") -> None:
    """A chat frame's limits passed and its frame answered (what follows is not run)."""
    await actions.take_chat(conn, content)
    actions.frame_done(conn, 0)


async def test_a_message_costs_its_address_a_delivery_for_each_socket_of_its_room(
    connection, deliveries, caplog
):
    """The crowd attack (bench/hostile.py): an address chatting within every other limit
    had a room of a thousand handed 4,700 messages in 30 s, and every room of the process
    waited. What it says now costs it the room's sockets in this process."""
    conn = connection.conn
    conn.seat = a_seat()
    conn.chat_bucket = TokenBucket(burst=100, rate=0)
    caplog.set_level(logging.INFO, logger="chat.events")
    await taken(conn)
    await taken(conn)  # 8 of the 10
    refused = await refusal(conn, actions.chat_message, protocol.ChatMessage(content="x"))
    assert refused.code == ErrorCode.RATE_LIMITED and "room this size" in refused.message
    assert caplog.records[-1].getMessage().endswith("limit=DELIVERIES_PER_ADDRESS_*")
    assert conn.chat_bucket.tokens == 98  # the refused frame gave its own token back
    # A smaller room: the 2 left are two messages.
    deliveries.sockets = 1
    await taken(conn)
    await taken(conn, None)  # an edit, a delete or a reaction costs the same
    with pytest.raises(ProtocolError):
        await taken(conn)
    # Another address has its own.
    conn.address = "198.51.100.7"
    await taken(conn)


async def test_a_frame_refused_after_its_deliveries_gives_them_back_and_the_rate_comes_first(
    connection, deliveries, settings, monkeypatch
):
    """PROTOCOL.md: rate limits, then the rest (`message_too_large` after them). A frame
    refused after its deliveries were taken (too large, its address's stored bytes, a
    message not found) hands nothing out, so it gives them back."""
    conn = connection.conn
    conn.seat = a_seat()
    conn.chat_bucket = TokenBucket(burst=100, rate=0)
    settings.CHAT_MAX_CONTENT = 5
    too_large = protocol.ChatMessage(content="x" * 6)
    for _ in range(3):
        assert (await refusal(conn, actions.chat_message, too_large)).code == ErrorCode.MESSAGE_TOO_LARGE
    monkeypatch.setattr(ratelimit.chat_bytes, "take", lambda address, amount: False)
    refused = await refusal(conn, actions.chat_message, protocol.ChatMessage(content="x"))
    assert "stored" in refused.message
    assert actions.room_deliveries.take(ADDRESS, 10)  # all ten still there
    assert (await refusal(conn, actions.chat_message, too_large)).code == ErrorCode.RATE_LIMITED


async def test_many_addresses_together_are_held_to_their_room_s_deliveries(
    connection, deliveries, settings, caplog
):
    """Each address within its own DELIVERIES_PER_ADDRESS_*, twenty of them still kept a
    process busy in one large room (bench/README.md, "Many addresses in one room"): the
    room's DELIVERIES_PER_ROOM_* bounds them together, and gives back what it refuses."""
    conn = connection.conn
    room = a_seat()
    conn.seat, conn.chat_bucket = room, TokenBucket(burst=100, rate=0)
    settings.DELIVERIES_PER_ROOM_BURST, settings.DELIVERIES_PER_ROOM_SUSTAINED = 10, 0
    caplog.set_level(logging.INFO, logger="chat.events")
    for address in ("198.51.100.1", "198.51.100.2"):  # 4 each: 2 left of the room's 10
        conn.address = address
        await taken(conn)
    conn.address = "198.51.100.3"
    refused = await refusal(conn, actions.chat_message, protocol.ChatMessage(content="x"))
    assert refused.code == ErrorCode.RATE_LIMITED and "in this room" in refused.message
    assert caplog.records[-1].getMessage().endswith("limit=DELIVERIES_PER_ROOM_*")
    # The refused address's own deliveries were given back: elsewhere it speaks.
    conn.seat = a_seat()
    await taken(conn)
    await taken(conn)
    # A frame refused after both takes gives both back.
    conn.seat, settings.CHAT_MAX_CONTENT = room, 1
    deliveries.sockets = 2
    too_large = protocol.ChatMessage(content="xx")
    assert (await refusal(conn, actions.chat_message, too_large)).code == ErrorCode.MESSAGE_TOO_LARGE
    assert actions.room_fan_out.take(str(room.room_id), 2)  # the room's last 2 were still there


async def test_a_room_larger_than_the_burst_still_takes_a_message_from_a_full_bucket(connection, deliveries):
    conn = connection.conn
    conn.seat = a_seat()
    deliveries.sockets = 50
    await taken(conn)
    with pytest.raises(ProtocolError):
        await taken(conn)


async def test_typing_past_the_address_s_deliveries_is_dropped_without_an_answer(
    connection, deliveries, monkeypatch
):
    conn = connection.conn
    conn.seat = a_seat()
    told = []

    async def publish(room_id, message, **marks):
        told.append(message)

    monkeypatch.setattr(actions, "publish", publish)
    deliveries.sockets = 3
    await actions.typing(conn, protocol.Typing())
    conn.typed_at = 0.0  # as if TYPING_INTERVAL had passed
    await actions.typing(conn, protocol.Typing())  # 7 left, of which 5 are kept: dropped
    assert len(told) == 1
    assert await connection.frames() == []
    assert conn.refusals.count() == 0  # not a flood of Typing frames


async def test_an_address_typing_in_a_large_room_leaves_half_its_deliveries_to_its_messages(
    connection, deliveries, monkeypatch
):
    """Fifteen people behind one NAT typing in a room of a thousand are told to it at the
    address's whole sustained rate: their Typing took every delivery, and what they then
    said was refused `rate_limited`. Typing now takes only from the bucket's upper half."""
    conn = connection.conn
    conn.seat = a_seat()
    conn.chat_bucket = TokenBucket(burst=100, rate=0)
    told = []

    async def publish(room_id, message, **marks):
        told.append(message)

    monkeypatch.setattr(actions, "publish", publish)
    deliveries.sockets = 2
    for _ in range(5):  # one person after another, each past TYPING_INTERVAL
        conn.typed_at = 0.0
        await actions.typing(conn, protocol.Typing())
    assert len(told) == 2  # 10 -> 8 -> 6; a third would leave 4 of the 5 kept
    await taken(conn)
    await taken(conn)  # the messages have the kept half: 6 -> 4 -> 2


def join_of(room, name: str, token: str | None = None) -> protocol.JoinRoom:
    return protocol.JoinRoom(
        join_key=room.join_key,
        password=None,
        name=name,
        since=None,
        owner_token=None,
        participant_token=token,
    )


@pytest.mark.django_db(transaction=True)
async def test_comings_and_goings_cost_their_address_and_their_room_what_telling_them_costs(
    connection, deliveries, settings, caplog
):
    """Twenty addresses, each within its join limits, joining and leaving a room of a
    thousand made it hand out tens of thousands of presence frames a second, uncharged
    (bench/README.md, "Comings and goings"): a join now costs its address and its room
    two deliveries for each socket of the room (its ParticipantJoined, and its
    ParticipantLeft to come), taken before it as a message's are."""
    conn = connection.conn
    room, _, _ = await actions.database(make_room)()
    settings.DELIVERIES_PER_ROOM_BURST, settings.DELIVERIES_PER_ROOM_SUSTAINED = 17, 0
    caplog.set_level(logging.INFO, logger="chat.events")
    await actions.join_room(conn, join_of(room, "Ann"))  # 4 sockets: 8 of the address's 10
    actions.frame_done(conn, 0)
    await actions.leave(conn)  # paid for by the join
    refused = await refusal(conn, actions.join_room, join_of(room, "Ann"))
    assert refused.code == ErrorCode.RATE_LIMITED and "joins from this address" in refused.message
    assert caplog.records[-1].getMessage().endswith("limit=DELIVERIES_PER_ADDRESS_*")
    assert conn.joins.count() == 1  # the refused join gave its place back
    # Another address has a bucket of its own; the room's 17 - 8 = 9 let one more in.
    bob = Socketless.open(address="198.51.100.9")
    await actions.join_room(bob.conn, join_of(room, "Bob"))
    cy = Socketless.open(address="198.51.100.10")
    refused = await refusal(cy.conn, actions.join_room, join_of(room, "Cy"))
    assert refused.code == ErrorCode.RATE_LIMITED and "joining this room" in refused.message
    assert caplog.records[-1].getMessage().endswith("limit=DELIVERIES_PER_ROOM_*")
    assert actions.room_deliveries.take("198.51.100.10", 10)  # Cy's address was given its 8 back
    for opened in (bob, cy):
        opened.conn.seat = None
        await actions.close_connection(opened.conn, 1000)


@pytest.mark.django_db(transaction=True)
async def test_a_join_refused_or_told_to_nobody_gives_its_deliveries_back(connection, deliveries, settings):
    """A server's restart has its sockets all rejoin at once, most of them resuming seats
    still present, which nobody is told of: those give back what they took. So does a
    join refused after its take (a wrong password, a name taken)."""
    settings.DELIVERIES_PER_ADDRESS_BURST = 20
    room, _, _ = await actions.database(make_room)()
    await actions.join_room(connection.conn, join_of(room, "Ann"))  # 8 of 20
    again = Socketless.open()
    await actions.join_room(again.conn, join_of(room, "Ann", connection.conn.seat.token))
    assert again.conn.seat.name == "Ann"
    taken_name = Socketless.open()
    assert (
        await refusal(taken_name.conn, actions.join_room, join_of(room, "ann"))
    ).code == ErrorCode.NAME_TAKEN
    assert actions.room_deliveries.bucket(ADDRESS, time.monotonic()).tokens == 12
    for opened in (again, taken_name):
        opened.conn.seat = None
        await actions.close_connection(opened.conn, 1000)


@pytest.mark.django_db(transaction=True)
async def test_a_rooms_members_on_other_processes_cost_what_is_said_and_joined_here(
    connection, settings, monkeypatch
):
    """Charged for this process's sockets alone, a sender on a process where the room has
    none but its own (an affinity hint not its room's) had the room's process hand out
    what its chat rate and bytes let through. A join pays for the participants it finds
    present in every process, and a message for those its room's hub knows of."""
    settings.DELIVERIES_PER_ADDRESS_BURST, settings.DELIVERIES_PER_ADDRESS_SUSTAINED = 20, 0
    monkeypatch.setattr(actions, "room_deliveries", ratelimit.AddressBuckets(*DELIVERY_SETTINGS))
    monkeypatch.setattr(actions, "room_fan_out", ratelimit.AddressBuckets(*ROOM_DELIVERY_SETTINGS))
    monkeypatch.setattr(ratelimit.chat_bytes, "take", lambda address, amount: True)
    room, _, _ = await actions.database(make_room)()
    for k in range(8):  # the owner and eight more, their sockets on other processes
        await actions.database(join_seat)(room, f"Elsewhere {k}")
    conn = connection.conn
    conn.chat_bucket = TokenBucket(burst=100, rate=0)
    await actions.join_room(conn, join_of(room, "Ann"))
    actions.frame_done(conn, 0)
    assert hub.sockets_in(room.pk) == 1 and hub.members_in(room.pk) == 10
    assert actions.room_deliveries.bucket(ADDRESS, time.monotonic()).tokens == 2  # 20 - 2 * 9
    refused = await refusal(conn, actions.chat_message, protocol.ChatMessage(content="x", reply_to=None))
    assert refused.code == ErrorCode.RATE_LIMITED and "room this size" in refused.message


@pytest.mark.django_db(transaction=True)
async def test_a_rooms_creator_is_among_the_members_its_process_counts(connection):
    """No join read the room for its creator: it is counted from the start, beside those
    its hub hears join on other processes."""
    conn = connection.conn
    await actions.create_room(conn, CREATE)
    room_id = conn.seat.room_id
    assert hub.members_in(room_id) == 1
    elsewhere = conn.seat.participant_id + 1
    hub.deliver(
        {
            "room": room_id.hex,
            "text": "{}",
            "participant_id": elsewhere,
            "joined": True,
            "exclude": conn.outbox.id,
        }
    )
    assert hub.members_in(room_id) == 2


async def test_members_checks_the_room_then_reads_then_unread(connection, settings, backlog_full):
    conn = connection.conn
    settings.READS_PER_MINUTE = 0
    members = protocol.GetMembers()
    assert (await refusal(conn, actions.get_members, members)).code == ErrorCode.NOT_IN_ROOM
    conn.seat = a_seat()
    refused = await refusal(conn, actions.get_members, members)
    assert refused.code == ErrorCode.RATE_LIMITED and "requests" in refused.message
    settings.READS_PER_MINUTE = 60
    refused = await refusal(conn, actions.get_members, members)
    assert refused.code == ErrorCode.RATE_LIMITED and "unread" in refused.message
    assert conn.reads.count() == 0 and conn.reserved == 0  # the read place given back


async def test_leave_without_a_room_is_not_in_room(connection):
    conn = connection.conn
    assert (await refusal(conn, actions.leave_room, protocol.LeaveRoom())).code == ErrorCode.NOT_IN_ROOM
    assert await connection.frames() == [
        {"type": "Error", "message": "Join a room first.", "code": "not_in_room"}
    ]


def test_the_chat_table_runs_each_chat_command():
    assert actions.ACTIONS == {
        protocol.CreateRoom: actions.create_room,
        protocol.JoinRoom: actions.join_room,
        protocol.ChatMessage: actions.chat_message,
        protocol.EditMessage: actions.edit_message,
        protocol.DeleteMessage: actions.delete_message,
        protocol.React: actions.react,
        protocol.Typing: actions.typing,
        protocol.GetHistory: actions.get_history,
        protocol.GetMembers: actions.get_members,
        protocol.LeaveRoom: actions.leave_room,
    }


# --- Answers on the outbox ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_members_are_answered_on_the_outbox(connection):
    conn = connection.conn
    _, conn.seat, _ = await actions.database(make_room)()
    await actions.run(conn, actions.get_members, protocol.GetMembers())
    actions.frame_done(conn, 0)
    assert await connection.frames() == [{"type": "Members", "participants": ["Owner"]}]
    assert conn.reads.count() == 1 and conn.reserved == 0


async def test_refusals_are_error_frames_and_too_many_rate_limited_close_1008(connection, settings):
    settings.ABUSE_RATE_LIMITED_FRAMES = 3
    conn = connection.conn
    await actions.refuse(conn, ProtocolError(ErrorCode.NOT_IN_ROOM))  # not counted toward 1008
    for _ in range(3):
        await actions.refuse(conn, ProtocolError(ErrorCode.RATE_LIMITED))
    assert connection.socket.closed is None and conn.outbox.closing is None
    await actions.refuse(conn, ProtocolError(ErrorCode.RATE_LIMITED))
    frames = await connection.frames()
    assert [frame["code"] for frame in frames] == ["not_in_room"] + ["rate_limited"] * 4
    assert frames[1] == {"type": "Error", "message": "Too many requests; slow down.", "code": "rate_limited"}
    assert connection.socket.closed == CloseCode.ABUSE  # after the fourth answer


@pytest.mark.parametrize(
    ("code", "given_back"),
    [
        (ErrorCode.RATE_LIMITED, True),
        (ErrorCode.INVALID_FIELD, True),
        (ErrorCode.INVALID_JSON, True),
        (ErrorCode.ROOM_NOT_FOUND, False),
        (ErrorCode.WRONG_PASSWORD, False),
        (ErrorCode.FILE_TOO_LARGE, False),
    ],
)
async def test_a_refused_frame_gives_its_window_place_back_only_for_some_codes(connection, code, given_back):
    conn = connection.conn
    await actions.take_join(conn)
    assert conn.slot is conn.joins and conn.joins.count() == 1
    claims = address_joins().claims[conn.address]
    assert conn.join_claim is not None and len(claims) == 1
    await actions.refuse(conn, ProtocolError(code))
    assert conn.joins.count() == len(claims) == (0 if given_back else 1)
    actions.frame_done(conn, 0)
    assert conn.slot is None and conn.join_claim is None


async def test_a_join_place_redis_cannot_take_back_still_lets_the_refusal_answer(connection, monkeypatch):
    class Unreachable:
        async def claim(self, address, limit):
            return "token"

        async def release(self, address, token):
            raise RedisError("Redis went away")

    monkeypatch.setattr(actions, "address_joins", Unreachable)
    await actions.take_join(connection.conn)
    await actions.refuse(connection.conn, ProtocolError(ErrorCode.RATE_LIMITED))
    assert (await connection.frames())[-1]["code"] == "rate_limited"
    assert connection.conn.join_claim is None


async def test_a_large_frame_holds_its_bytes_until_it_is_answered(connection, settings):
    settings.UPLOADS_IN_FLIGHT_BYTES = 3 * protocol.LARGE_STRING
    before = ratelimit.uploads_in_flight.held
    large = "x" * (2 * protocol.LARGE_STRING)
    held = actions.hold_frame(large)
    assert held == len(large) and ratelimit.uploads_in_flight.held == before + held
    try:
        with pytest.raises(ProtocolError) as refused:
            actions.hold_frame(large)  # two would pass UPLOADS_IN_FLIGHT_BYTES
        assert refused.value.code == ErrorCode.RATE_LIMITED
    finally:
        actions.frame_done(connection.conn, held)
    assert ratelimit.uploads_in_flight.held == before


# --- A seat gone, and the socket's life --------------------------------------------------


async def test_a_seat_the_database_found_gone_is_answered_as_its_event_would_be(connection):
    conn = connection.conn
    conn.seat = a_seat()

    async def kicked(conn, command):
        raise services.SeatGone(ErrorCode.KICKED, close=CloseCode.KICKED)

    await actions.run(conn, kicked, protocol.ChatMessage(content="x"))
    assert [frame["code"] for frame in await connection.frames()] == ["kicked"]
    assert connection.socket.closed == CloseCode.KICKED


async def test_a_seat_swept_meanwhile_is_dropped_and_the_socket_stays(connection, monkeypatch):
    conn, seat = connection.conn, a_seat()
    actions.take_seat(conn, seat)
    assert seat.participant_id in presence.live_seats
    left = []

    def participant_leave(*, participant_id, now, outbox_id):
        assert outbox_id == conn.outbox.id  # only the seat this socket holds
        left.append(participant_id)
        return False  # the sweep marked it left already: nobody is told again

    monkeypatch.setattr(services, "participant_leave", participant_leave)
    monkeypatch.setattr(actions, "on_database_thread", in_loop)
    hub_left = []

    async def leave_hub(room_id, outbox):
        hub_left.append((room_id, outbox))

    monkeypatch.setattr(actions.hub, "leave", leave_hub)

    async def swept(conn, command):
        raise services.SeatGone(ErrorCode.NOT_IN_ROOM)

    await actions.run(conn, swept, protocol.GetMembers())
    assert [frame["code"] for frame in await connection.frames()] == ["not_in_room"]
    assert conn.seat is None and left == [seat.participant_id]
    assert hub_left == [(seat.room_id, conn.outbox)]  # its room's events stop coming
    assert seat.participant_id not in presence.live_seats
    assert connection.socket.closed is None and conn.outbox.closing is None


async def test_a_socket_counts_toward_presence_while_open_and_leaves_its_room_on_close(monkeypatch, caplog):
    opened_before = presence._connections
    opened = Socketless.open(address=None, session_key="s" * 32)
    conn = opened.conn
    assert (conn.address, conn.session_key, conn.seat) == (None, "s" * 32, None)
    assert conn.outbox.owner == "unknown" and presence._connections == opened_before + 1
    conn.seat = a_seat()

    def database_down(**kwargs):
        raise RuntimeError("database down")

    async def leave_hub(room_id, outbox):
        pass

    monkeypatch.setattr(services, "participant_leave", database_down)
    monkeypatch.setattr(actions, "on_database_thread", in_loop)
    monkeypatch.setattr(actions.hub, "leave", leave_hub)
    await actions.close_connection(conn, 1006)  # the leave fails: logged, the socket still closes
    assert "leaving the room on disconnect failed" in caplog.text
    assert conn.seat is None and presence._connections == opened_before
    await opened.frames()
    assert conn.outbox.ended and conn.outbox.task is None


def test_a_full_disk_is_told_apart_from_other_failures():
    """ENOSPC and EDQUOT from a write, SQLite's SQLITE_FULL and PostgreSQL's disk_full,
    raised themselves or wrapped by Django (`__cause__`); nothing else."""
    import errno
    import sqlite3

    from django.db.utils import OperationalError

    from chat.errors import storage_full

    sqlite_full = sqlite3.OperationalError("database or disk is full")
    sqlite_full.sqlite_errorcode = sqlite3.SQLITE_FULL
    sqlite_busy = sqlite3.OperationalError("database is locked")
    sqlite_busy.sqlite_errorcode = sqlite3.SQLITE_BUSY
    wrapped = OperationalError("database or disk is full")
    wrapped.__cause__ = sqlite_full
    disk_full = type("DiskFull", (Exception,), {"sqlstate": "53100"})()
    full = [OSError(errno.ENOSPC, "full"), OSError(errno.EDQUOT, "quota"), sqlite_full, wrapped, disk_full]
    others = [OSError(errno.EIO, "io"), sqlite_busy, ValueError("x")]
    assert [storage_full(exc) for exc in full] == [True] * 5
    assert [storage_full(exc) for exc in others] == [False] * 3
