"""The per-socket outbox and the hub's fan-out, without sockets."""

import asyncio
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis
from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.uri import parse_uri

from chat import outbox as outbox_module
from chat.errors import CloseCode
from chat.hub import EVENT_TYPE, Hub, RoomOrder, room_group, send_events
from chat.outbox import WRITE_NOW_MAX, Outbox, address_backlog
from chat.protocol import chat_message, encode
from config.settings import redis_layer_host
from tests.conftest import REDIS_URL
from tests.helpers import ROOM_X, ROOM_Y, FakeSocket, X, drain, no_messages_yet


async def test_outbox_sends_in_order_and_closes_after_what_was_queued():
    socket = FakeSocket()
    outbox = Outbox(socket.send, socket.close)
    for text in ("a", "b", "c"):
        outbox.put(text)
    outbox.put_close(1008)
    outbox.put("after close")
    await drain()
    assert socket.sent == ["a", "b", "c"] and socket.closed == 1008


async def test_an_outbox_holds_a_writer_and_a_queue_only_while_frames_wait():
    """Idle sockets are most sockets: theirs hold no task and no queue of their own."""
    socket = FakeSocket(stall=True)
    outbox = Outbox(socket.send, socket.close)
    assert outbox.task is None and not outbox.backed_up()
    outbox.put("a")
    outbox.put("b")
    assert outbox.backed_up() and list(outbox.frames) == ["a", "b"]
    drained = asyncio.ensure_future(outbox.drained())
    await drain()
    assert not drained.done()  # "a" is being written
    socket.gate.set()
    await drained
    assert socket.sent == ["a", "b"] and outbox.task is None and not outbox.frames
    outbox.put("c")  # a new writer for the next frame
    await outbox.drained()
    assert socket.sent == ["a", "b", "c"] and outbox.task is None


async def test_an_outbox_stopped_before_its_writer_ran_lets_drained_go_on():
    socket = FakeSocket()
    outbox = Outbox(socket.send, socket.close)
    outbox.put("never")
    outbox.stop()  # before the writer's first step: its own cleanup never runs
    await asyncio.wait_for(outbox.drained(), 1)
    outbox.put("after stop")
    await drain()
    assert socket.sent == [] and outbox.task is None and outbox.ended and outbox.bytes == 0


class Immediate:
    """A server's immediate write (chat/outbox.py, WRITE_NOW) that takes frames while
    `taking`, recording them in the same list as the socket's queued sends."""

    def __init__(self, socket: FakeSocket) -> None:
        self.socket, self.taking = socket, True
        self.frames: list[bytes | None] = []  # the serialized frames it was handed

    def __call__(self, text: str, frame: bytes | None = None) -> bool:
        if self.taking:
            self.socket.sent.append(text)
            self.frames.append(frame)
        return self.taking


async def test_frames_are_written_at_once_while_the_socket_takes_them_and_keep_their_order():
    socket = FakeSocket(stall=True)  # a queued send would wait for the gate
    immediate = Immediate(socket)
    outbox = Outbox(socket.send, socket.close, write_now=immediate)
    outbox.put("a")
    outbox.put("b")
    assert socket.sent == ["a", "b"] and not outbox.backed_up()  # no task woken, nothing queued
    immediate.taking = False  # the socket's write buffer is past its high-water mark
    outbox.put("c")
    immediate.taking = True
    outbox.put("d")  # "c" is queued: "d" waits behind it, though the socket would take it
    outbox.put("x" * (WRITE_NOW_MAX + 1))  # large frames always queue
    assert socket.sent == ["a", "b"] and list(outbox.frames) == ["c", "d", "x" * (WRITE_NOW_MAX + 1)]
    socket.gate.set()
    await drain()
    assert socket.sent == ["a", "b", "c", "d", "x" * (WRITE_NOW_MAX + 1)]
    outbox.put("e")
    assert socket.sent[-1] == "e" and not outbox.backed_up()  # drained: at once again
    outbox.put_close(1008)
    outbox.put("after close")
    await drain()
    assert socket.sent[-1] == "e" and socket.closed == 1008


async def test_a_socket_that_stops_reading_is_closed_at_the_cap(settings):
    """A stuck client's backlog never grows past WS_SEND_QUEUE_LIMIT frames."""
    settings.WS_SEND_QUEUE_LIMIT = 10
    socket = FakeSocket(stall=True)
    outbox = Outbox(socket.send, socket.close)
    for n in range(50):
        outbox.put(str(n))
    assert len(outbox.frames) <= 11
    socket.gate.set()
    await drain()
    assert socket.closed == CloseCode.TOO_SLOW and len(socket.sent) <= 1


async def test_held_events_are_filtered_by_the_snapshot():
    socket = FakeSocket()
    outbox = Outbox(socket.send, socket.close)
    outbox.hold()
    outbox.put_broadcast({"text": "old", "message_id": 1})
    outbox.put_broadcast({"text": "new", "message_id": 2})
    outbox.put("RoomJoined")
    outbox.release(stale=lambda event: event["message_id"] == 1)
    await drain()
    assert socket.sent == ["RoomJoined", "new"]


async def test_the_snapshot_filters_only_for_its_window(monkeypatch):
    monkeypatch.setattr("chat.outbox.STALE_WINDOW", 0.05)
    socket = FakeSocket()
    outbox = Outbox(socket.send, socket.close)
    outbox.hold()
    outbox.release(stale=lambda event: event["message_id"] == 1)
    outbox.put_broadcast({"text": "raced the join", "message_id": 1})
    assert outbox.stale is not None
    await asyncio.sleep(0.1)
    # Past the window the snapshot (every member present at the join) is let go.
    outbox.put_broadcast({"text": "later", "message_id": 1})
    assert outbox.stale is None
    await drain()
    assert socket.sent == ["later"]


def test_a_stopped_outbox_keeps_no_snapshot():
    outbox = Outbox(FakeSocket().send, FakeSocket().close)
    outbox.hold()
    outbox.release(stale=lambda event: False)
    outbox.stop()
    assert outbox.stale is None


FORK_IDS = """
import os
from chat.outbox import ids
mine = ids.next()
reader, writer = os.pipe()
if os.fork() == 0:
    os.write(writer, ids.next().encode())
    os._exit(0)
os.wait()
print(mine, os.read(reader, 200).decode())
"""


def test_outbox_ids_differ_across_sockets_and_forks():
    first, second = (
        Outbox(FakeSocket().send, FakeSocket().close),
        Outbox(FakeSocket().send, FakeSocket().close),
    )
    assert first.id != second.id
    # A forked child (a pre-forking server) numbers its sockets under a prefix of its own;
    # forked from a single-threaded process, not from this one.
    parent, child = subprocess.run(
        [sys.executable, "-c", FORK_IDS], capture_output=True, text=True, check=True
    ).stdout.split()
    # The same count, under another prefix: without the new prefix the two would be equal.
    assert parent.endswith(".0") and child.endswith(".0")
    assert parent.partition(".")[0] != child.partition(".")[0]


async def test_hub_delivers_to_local_members_but_the_excluded_one(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "chat.layers.InMemoryChannelLayer"}}
    hub = Hub()
    hub.position = no_messages_yet
    sockets = [FakeSocket() for _ in range(3)]
    outboxes = [Outbox(s.send, s.close) for s in sockets]
    for outbox in outboxes:
        await hub.join(ROOM_X, outbox)
    hub.deliver({"room": X, "text": "hi", "exclude": outboxes[0].id})
    hub.deliver({"room": ROOM_Y.hex, "text": "elsewhere"})
    hub.deliver({"room": X, "text": "just you", "only": outboxes[2].id})
    await drain()
    assert [s.sent for s in sockets] == [[], ["hi"], ["hi", "just you"]]
    for outbox in outboxes:
        await hub.leave(ROOM_X, outbox)
    assert hub.rooms == {} and hub.order == {}
    hub.task.cancel()


def client_reads(frame: bytes) -> str:
    """What a WebSocket client reads from `frame` (websockets' own parser)."""
    client = ClientProtocol(parse_uri("ws://x/"), state=State.OPEN)
    client.receive_data(frame)
    (event,) = client.events_received()
    return event.data.decode()


async def test_a_room_event_is_serialized_once_for_every_socket_it_is_written_to(settings):
    """Under `serve` the hub hands every socket of a room the same serialized frame,
    which each client reads as the event's text; a large event is left to the queue."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "chat.layers.InMemoryChannelLayer"}}
    hub = Hub()
    hub.position = no_messages_yet
    sockets = [FakeSocket() for _ in range(3)]
    writers = [Immediate(socket) for socket in sockets]
    for socket, writer in zip(sockets, writers, strict=True):
        await hub.join(ROOM_X, Outbox(socket.send, socket.close, write_now=writer))
    text = '{"type": "ChatMessage", "content": "' + "é" * 100 + '"}'
    hub.deliver({"room": X, "text": text})
    frames = [writer.frames[0] for writer in writers]
    assert frames[0] is frames[1] is frames[2]  # one serialization for the room
    assert client_reads(frames[0]) == text
    large = "x" * (WRITE_NOW_MAX + 1)
    hub.deliver({"room": X, "text": large})
    await drain()
    assert all(socket.sent == [text, large] for socket in sockets)
    assert all(len(writer.frames) == 1 for writer in writers)  # the large one was queued
    hub.task.cancel()


async def test_sockets_starting_the_hub_at_once_share_one_channel(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "chat.layers.InMemoryChannelLayer"}}
    hub = Hub()
    await asyncio.gather(*(hub.start() for _ in range(5)))
    channel, task = hub.channel, hub.task
    await hub.start()
    assert (hub.channel, hub.task) == (channel, task) and not task.done()
    task.cancel()


async def test_events_the_snapshot_showed_are_dropped_even_when_they_arrive_late():
    """With Redis an event published just before a join can arrive after its release."""
    socket = FakeSocket()
    outbox = Outbox(socket.send, socket.close)
    outbox.hold()
    outbox.release(stale=lambda event: event.get("participant_id") == 7)
    outbox.put_broadcast({"text": "ParticipantJoined 7", "participant_id": 7, "joined": True})
    outbox.put_broadcast({"text": "ParticipantJoined 9", "participant_id": 9, "joined": True})
    await drain()
    assert socket.sent == ["ParticipantJoined 9"]


async def ordered_hub(settings, stored=None):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "chat.layers.InMemoryChannelLayer"}}
    hub = Hub()
    hub.position = no_messages_yet
    if stored is not None:
        hub.stored = stored
    socket = FakeSocket()
    outbox = Outbox(socket.send, socket.close)
    await hub.join(ROOM_X, outbox)
    return hub, socket


def message(seq: int) -> dict:
    return {"room": X, "text": f"m{seq}", "message_id": 100 + seq, "seq": seq}


def standing_at(seq: int):
    """A hub's `position`: the room's last step is `seq`."""

    async def position(room: str) -> int:
        return seq

    return position


async def nothing(room: str, after: int, before: int) -> list[dict]:
    """A hub's `stored`: nothing in that range (changes older than CHANGES_KEPT_STEPS)."""
    return []


async def test_messages_that_overtook_an_earlier_one_wait_for_it(settings):
    """Two processes publish after their own commits: the hub restores the room order."""
    hub, socket = await ordered_hub(settings)
    for seq in (1, 3, 4):
        hub.deliver(message(seq))
    hub.deliver({"room": X, "text": "ParticipantJoined"})  # not a message: not held
    await drain()
    assert socket.sent == ["m1", "ParticipantJoined"]
    hub.deliver(message(2))
    hub.deliver(message(2))  # a repeat is dropped
    await drain()
    assert socket.sent == ["m1", "ParticipantJoined", "m2", "m3", "m4"]
    assert hub.order[X].repair is None
    hub.task.cancel()


async def test_an_edit_or_delete_waits_for_the_message_it_changes(settings):
    """Edits and deletes take the room's next sequence number (chat/services.py): one
    published by another process that overtakes its message is held until it."""
    hub, socket = await ordered_hub(settings)
    hub.deliver(message(1))
    hub.deliver({"room": X, "text": "MessageDeleted 102", "seq": 4})
    hub.deliver({"room": X, "text": "MessageEdited 102", "seq": 3})
    await drain()
    assert socket.sent == ["m1"]
    hub.deliver(message(2))
    await drain()
    assert socket.sent == ["m1", "m2", "MessageEdited 102", "MessageDeleted 102"]
    hub.task.cancel()


async def test_a_deleted_file_messages_file_goes_out_in_the_deletes_place(settings):
    """A file's message deleted: its FileDeleted rides on the delete (`then`), so a
    process where the delete waits for an earlier message does not tell of the file
    first (it went out at once, with no place in the order, before)."""
    hub, socket = await ordered_hub(settings)
    hub.deliver(message(1))
    hub.deliver({"room": X, "text": "MessageDeleted 102", "seq": 3, "changes": 102, "then": "FileDeleted f"})
    await drain()
    assert socket.sent == ["m1"]
    hub.deliver(message(2))
    await drain()
    assert socket.sent == ["m1", "m2", "MessageDeleted 102", "FileDeleted f"]
    hub.task.cancel()


async def test_a_message_that_never_arrives_is_read_from_the_database(settings, monkeypatch):
    """Its publisher died after the commit, or Redis lost it: after GAP_WAIT the hub
    reads it; a number the database does not have either is skipped."""
    monkeypatch.setattr("chat.hub.GAP_WAIT", 0.01)
    asked = []

    async def stored(room, after, before):
        asked.append((after, before))
        text = encode(chat_message(102, "Bob", "c2", datetime(2026, 1, 1, tzinfo=UTC), 101))
        return [{"room": X, "text": text, "message_id": 102, "seq": 2}]

    hub, socket = await ordered_hub(settings, stored)
    hub.position = standing_at(3)
    for seq in (1, 3):
        hub.deliver(message(seq))
    await asyncio.sleep(0.05)
    assert asked == [(1, 3)]
    assert socket.sent[0] == "m1" and socket.sent[2] == "m3"
    assert '"id":102' in socket.sent[1] and '"reply_to":101' in socket.sent[1]  # as it was broadcast

    hub.stored, hub.position = nothing, standing_at(5)
    hub.deliver(message(5))
    await asyncio.sleep(0.05)
    assert socket.sent[-1] == "m5" and hub.order[X].last == 5
    hub.task.cancel()


async def test_an_event_numbered_past_where_the_room_stands_is_dropped(settings, monkeypatch, caplog):
    """A well-typed event with a far seq (a bug, or anyone who can write to Redis) is
    published by no commit: the gap repair drops it instead of moving the room's order
    past it, which would drop every later message here as shown already. One that
    arrives while the position is read may be newer than it: it is kept."""
    monkeypatch.setattr("chat.hub.GAP_WAIT", 0.01)
    hub, socket = await ordered_hub(settings, nothing)
    hub.handle({"type": EVENT_TYPE, "events": [{"room": X, "text": "far", "seq": 2**62}]})
    await asyncio.sleep(0.05)
    assert (hub.order[X].last, hub.order[X].waiting) == (0, {})
    assert "numbered past its last step 0" in caplog.text

    async def read_while_3_arrives(room: str) -> int:
        hub.deliver(message(3))  # committed after the read began
        return 2

    hub.position = read_while_3_arrives
    hub.deliver(message(2))  # 1 is a change that never arrives
    await asyncio.sleep(0.05)
    assert socket.sent == ["m2", "m3"] and hub.order[X].last == 3
    hub.position = standing_at(3)
    hub.deliver(message(4))
    await drain()
    assert socket.sent == ["m2", "m3", "m4"]
    hub.task.cancel()


async def test_a_gap_the_database_cannot_be_asked_about_waits_for_it(settings, monkeypatch):
    """The database is down when a gap is repaired: nothing is skipped, the next try is
    GAP_WAIT later."""
    monkeypatch.setattr("chat.hub.GAP_WAIT", 0.01)
    hub, socket = await ordered_hub(settings, nothing)

    async def database_down(room: str) -> int:
        raise RuntimeError("database down")

    hub.position = database_down
    hub.deliver(message(2))
    await asyncio.sleep(0.05)
    assert socket.sent == [] and hub.order[X].last == 0
    hub.deliver(message(1))
    await drain()
    assert socket.sent == ["m1", "m2"]
    hub.task.cancel()


def change(seq: int, message_id: int, text: str) -> dict:
    """An edit, a delete or a reaction of message `message_id`, as published."""
    return {"room": X, "text": text, "seq": seq, "changes": message_id}


async def test_a_change_that_never_arrives_is_read_back_and_the_original_coming_late_is_dropped(
    settings, monkeypatch
):
    """An edit lost on the bus is read back after GAP_WAIT as its message's state now
    (`stored_events`), in its place; the lost one, if it turns up after all, is not
    handed out again."""
    monkeypatch.setattr("chat.hub.GAP_WAIT", 0.01)

    async def stored(room, after, before):
        return [change(2, 101, "MessageEdited 101 (read back)")] if after < 2 < before else []

    hub, socket = await ordered_hub(settings, stored)
    hub.position = standing_at(3)
    hub.deliver(message(1))
    hub.deliver(message(3))
    await asyncio.sleep(0.05)
    assert socket.sent == ["m1", "MessageEdited 101 (read back)", "m3"]
    hub.deliver(change(2, 101, "MessageEdited 101"))
    await drain()
    assert socket.sent == ["m1", "MessageEdited 101 (read back)", "m3"]
    hub.task.cancel()


async def test_a_change_that_comes_after_its_place_is_handed_out_unless_a_later_one_went_out(
    settings, monkeypatch
):
    """The database holds no edit, delete or reaction by its number, so the order passes
    one that is late (its publisher was slow, GAP_WAIT); when it comes it is handed out
    all the same, unless a later change of its message went out already."""
    monkeypatch.setattr("chat.hub.GAP_WAIT", 0.01)
    hub, socket = await ordered_hub(settings, nothing)
    hub.position = standing_at(6)
    hub.deliver(message(1))
    hub.deliver(message(3))  # 2 is the delete of 101, late
    hub.deliver(change(5, 103, "Reactions 103 b"))  # 4 is an earlier reaction to 103, late
    hub.deliver(message(6))
    await asyncio.sleep(0.05)
    assert socket.sent == ["m1", "m3", "Reactions 103 b", "m6"] and hub.order[X].last == 6
    hub.deliver(change(2, 101, "MessageDeleted 101"))
    hub.deliver(change(4, 103, "Reactions 103 a"))  # older than what went out: dropped
    hub.deliver(change(2, 101, "MessageDeleted 101"))  # a repeat: dropped
    hub.deliver(message(3))  # a late message was read from the database: dropped
    await drain()
    assert socket.sent == ["m1", "m3", "Reactions 103 b", "m6", "MessageDeleted 101"]
    hub.task.cancel()


async def test_a_late_change_that_may_be_stale_is_dropped_and_the_changes_kept_are_bounded(
    settings, monkeypatch
):
    """A late change is dropped when the joiner's History showed it, or when a later
    change of its message may have gone out and been forgotten: the order keeps the last
    change of at most CHANGES_KEPT messages."""
    monkeypatch.setattr("chat.hub.GAP_WAIT", 0.01)
    monkeypatch.setattr("chat.hub.CHANGES_KEPT", 2)
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "chat.layers.InMemoryChannelLayer"}}
    hub = Hub()
    hub.position, hub.stored = standing_at(1), nothing
    socket = FakeSocket()
    await hub.join(ROOM_X, Outbox(socket.send, socket.close))
    hub.deliver(change(1, 100, "MessageEdited 100"))  # in the joiner's History
    hub.position = standing_at(5)
    hub.deliver(change(3, 101, "MessageEdited 101 b"))  # 2 is an earlier edit of 101, late
    await asyncio.sleep(0.05)
    hub.deliver(change(4, 102, "Reactions 102"))
    hub.deliver(change(5, 103, "Reactions 103"))  # 101's change is forgotten
    assert list(hub.order[X].changed) == [102, 103]
    hub.deliver(change(2, 101, "MessageEdited 101 a"))
    await drain()
    assert socket.sent == ["MessageEdited 101 b", "Reactions 102", "Reactions 103"]
    hub.task.cancel()


def test_an_arrival_of_a_seat_an_admin_just_removed_is_dropped_and_the_removals_kept_are_bounded(
    monkeypatch, settings
):
    """`RoomOrder.news`: after the departure an admin's removal made, that seat's arrival
    (published by the join the removal interrupted) is dropped for REMOVED_WINDOW, or
    KICK_BAN_SECONDS if shorter (the seat may come back then); its other events and
    other seats' go out; at most REMOVED_KEPT removals are kept."""
    monkeypatch.setattr("chat.hub.REMOVED_KEPT", 2)
    order = RoomOrder()

    def presence(participant_id: int, joined: bool, **marks) -> dict:
        return {"room": X, "text": "t", "participant_id": participant_id, "joined": joined, **marks}

    assert order.news(presence(7, False, removed=True))
    assert not order.news(presence(7, True))
    assert order.news(presence(8, True)) and order.news(presence(7, False))
    assert order.news({"room": X, "text": "a message", "message_id": 1, "seq": 1})
    assert order.news(presence(8, False, removed=True)) and order.news(presence(9, False, removed=True))
    assert list(order.removed) == [8, 9]  # 7, the oldest, forgotten past REMOVED_KEPT
    assert order.news(presence(7, True)) and not order.news(presence(9, True))
    settings.KICK_BAN_SECONDS = -1.0  # the ban, and so the window, is over for every removal
    assert order.news(presence(9, True))


async def test_a_hub_counts_its_rooms_members_in_every_process_from_a_join_and_the_presence_since(settings):
    """`Hub.members_in`: what a room's events cost to hand out in every process (the
    deliveries a sender's process charges, chat/actions.py), from the participants a local
    join read (`seated`) and the arrivals and departures handed out since, or the local
    sockets if more; nothing before a local socket is in the room, nor after the last left."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "chat.layers.InMemoryChannelLayer"}}
    hub = Hub()
    hub.position, hub.stored = standing_at(0), nothing
    room_id = uuid.UUID(hex=X)
    assert hub.members_in(room_id) == 0
    hub.seated(room_id, [1, 2, 3])  # no local socket: nothing to count for
    assert hub.members_in(room_id) == 0
    socket = FakeSocket()
    outbox = Outbox(socket.send, socket.close)
    await hub.join(room_id, outbox)
    assert hub.members_in(room_id) == 1  # its own socket, before its join read the room
    hub.seated(room_id, [1, 2, 3, 4])  # three of them on other processes

    def presence(participant_id: int, joined: bool, **marks) -> dict:
        return {"room": X, "text": "t", "participant_id": participant_id, "joined": joined, **marks}

    for event in (presence(5, True), presence(5, True), presence(2, False), presence(9, False)):
        hub.deliver(event)  # told twice, or a departure of one it never counted: no drift
    assert hub.members_in(room_id) == 4  # 1, 3, 4, 5
    hub.deliver(presence(3, False, removed=True))
    hub.deliver(presence(3, True))  # the arrival an admin's removal interrupted: dropped
    assert hub.members_in(room_id) == 3
    await hub.leave(room_id, outbox)
    assert hub.members_in(room_id) == 0
    hub.task.cancel()


async def test_a_new_subscriber_starts_after_what_is_stored(settings):
    """Messages stored before the hub joined are in the joiner's History: not sent again."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "chat.layers.InMemoryChannelLayer"}}
    hub = Hub()

    async def seven(room):
        return 7

    hub.position = seven
    socket = FakeSocket()
    await hub.join(ROOM_X, Outbox(socket.send, socket.close))
    for seq in (6, 7, 8):
        hub.deliver(message(seq))
    await drain()
    assert socket.sent == ["m8"]
    hub.task.cancel()


async def test_a_subscription_whose_position_cannot_be_read_is_undone(settings):
    """The database is down when a process gets its first member of a room: the join
    fails, and the next one subscribes afresh instead of holding messages forever."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "chat.layers.InMemoryChannelLayer"}}
    hub = Hub()

    async def database_down(room):
        raise RuntimeError("database down")

    hub.position = database_down
    socket = FakeSocket()
    outbox = Outbox(socket.send, socket.close)
    try:
        await hub.join(ROOM_X, outbox)
    except RuntimeError:
        pass
    assert X not in hub.order and X not in hub.rooms
    hub.position = no_messages_yet
    await hub.join(ROOM_X, outbox)
    hub.deliver(message(1))
    await drain()
    assert socket.sent == ["m1"]
    hub.task.cancel()


async def test_events_published_meanwhile_reach_only_the_hubs_of_their_rooms(layer, monkeypatch):
    """The room bus: what is published in one loop tick is one layer message per hub,
    carrying its rooms' events in order and no other room's."""
    import chat.hub as hub_module

    here, there = Hub(), Hub()  # two processes' hubs: one has room X, the other room Y
    monkeypatch.setattr(hub_module, "hub", here)
    x_socket, y_socket = FakeSocket(), FakeSocket()
    for hub, room, socket in ((here, ROOM_X, x_socket), (there, ROOM_Y, y_socket)):
        hub.position = no_messages_yet
        await hub.join(room, Outbox(socket.send, socket.close))
    sends = []
    send_many = here.layer.send_many

    async def recording(messages):
        sends.append({channel: len(message["events"]) for channel, message in messages.items()})
        await send_many(messages)

    monkeypatch.setattr(here.layer, "send_many", recording)
    rooms = [ROOM_X, ROOM_Y] * 3
    await asyncio.gather(*(hub_module.publish(r, {"type": "Note", "n": n}) for n, r in enumerate(rooms)))
    assert sends == [{here.channel: 3, there.channel: 3}]  # one tick: one message per hub
    await hub_module.publish(ROOM_X, {"type": "Note", "n": 6})
    assert sends[1:] == [{here.channel: 1}]  # the hub without a socket in X gets nothing
    for _ in range(50):
        if len(x_socket.sent) == 4 and len(y_socket.sent) == 3:
            break
        await asyncio.sleep(0.02)
    assert x_socket.sent == [f'{{"type":"Note","n":{n}}}' for n in (0, 2, 4, 6)]
    assert y_socket.sent == [f'{{"type":"Note","n":{n}}}' for n in (1, 3, 5)]
    assert (here.received, there.received) == (4, 3)
    for hub in (here, there):
        await hub.stop()


async def test_a_hub_is_in_its_rooms_groups_once_joined_and_after_each_refresh(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "chat.layers.InMemoryChannelLayer"}}
    hub = Hub()
    hub.position = no_messages_yet
    socket = FakeSocket()
    await hub.join(ROOM_X, Outbox(socket.send, socket.close))
    group = hub.layer.groups[room_group(X)]
    assert hub.channel in group
    group.pop(hub.channel)  # as if Redis restarted empty
    await hub.refresh()
    assert hub.channel in hub.layer.groups[room_group(X)]
    hub.task.cancel()


class StoredRoom:
    """Room X's messages 1..`count` as the database holds them, the first `written` of
    them stored so far: the hub's position and read of stored messages, no database."""

    def __init__(self, hub: Hub, count: int) -> None:
        self.written = 0
        sent_at = datetime(2026, 1, 1, tzinfo=UTC)
        self.stored = {
            seq: {"room": X, "text": encode(chat_message(100 + seq, "Bob", f"c{seq}", sent_at)), "seq": seq}
            for seq in range(1, count + 1)
        }
        hub.position, hub.stored = self.position, self.read

    async def position(self, room: object) -> int:
        return self.written

    async def read(self, room: object, after: int, before: int) -> list[dict]:
        return [self.stored[seq] for seq in range(after + 1, min(before, self.written + 1))]


async def test_a_renewal_that_finds_the_hubs_place_lost_reads_what_was_stored_meanwhile(layer, caplog):
    """Redis restarted empty: what was published meanwhile reached no hub. The next
    renewal (the watchdog's, or the heartbeat's) puts the hub back in the room's group
    and reads the room's messages stored since from the database."""
    hub = Hub()
    room = StoredRoom(hub, 2)
    socket = FakeSocket()
    await hub.join(ROOM_X, Outbox(socket.send, socket.close))
    await hub.layer.group_discard(room_group(X), hub.channel)  # Redis forgot the group
    room.written = 2  # two messages stored, and published to nobody
    await hub.renew()
    await drain()
    assert len(socket.sent) == 2 and '"id":101' in socket.sent[0] and '"id":102' in socket.sent[1]
    assert "lost its place in 1 room group" in caplog.text
    assert await group_members(layer, hub, X) == {hub.channel}
    await hub.renew()  # its place kept: nothing is read again
    await drain()
    assert len(socket.sent) == 2
    await hub.stop()


async def test_a_publish_that_finds_its_own_hub_missing_hands_out_at_once_and_rejoins(layer, monkeypatch):
    """Redis restarted empty: a publish finds no place of this process's hub in a room
    it has sockets in. Its own sockets get the event all the same (a sender its echo, a
    delete or a close its local targets), and the hub renews its places at once instead
    of at the next watchdog round."""
    import chat.hub as hub_module

    here = Hub()
    monkeypatch.setattr(hub_module, "hub", here)
    here.position = no_messages_yet
    socket = FakeSocket()
    await here.join(ROOM_X, Outbox(socket.send, socket.close))
    await here.layer.group_discard(room_group(X), here.channel)
    await hub_module.publish(ROOM_X, {"type": "Note", "n": 1})
    await drain()
    assert socket.sent == ['{"type":"Note","n":1}']
    await here.renewing
    assert await group_members(layer, here, X) == {here.channel}
    await hub_module.publish(ROOM_X, {"type": "Note", "n": 2})  # over the bus again, once
    for _ in range(50):
        if len(socket.sent) == 2:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)
    assert socket.sent == ['{"type":"Note","n":1}', '{"type":"Note","n":2}']
    await here.stop()


async def test_a_room_without_local_sockets_is_left_at_once_and_a_failed_leave_next_round(layer, monkeypatch):
    """The last socket of a room leaves: the hub leaves the room's group, so nothing of
    the room reaches this process any more; a member back later joins it again and
    misses nothing. A leave the layer does not take (Redis down) is done by the next
    watchdog round."""
    hub = Hub()
    written = 0

    async def position(room):
        return written

    async def publish(seq):
        nonlocal written
        written = seq
        await hub.layer.group_send(room_group(X), {"type": EVENT_TYPE, "events": [message(seq)]})

    hub.position = position
    first, again = FakeSocket(), FakeSocket()
    outbox = Outbox(first.send, first.close)
    await hub.join(ROOM_X, outbox)
    assert await group_members(layer, hub, X) == {hub.channel}
    await hub.leave(ROOM_X, outbox)
    await hub.pruning
    assert await group_members(layer, hub, X) == set() and hub.groups == set()
    await publish(1)  # stored before the next join: that joiner's History has it
    back = Outbox(again.send, again.close)
    await hub.join(ROOM_X, back)
    await publish(2)
    for _ in range(50):
        if again.sent:
            break
        await asyncio.sleep(0.02)
    assert again.sent == ["m2"] and first.sent == [] and hub.received == 1

    async def layer_down(groups, channel):
        raise ConnectionError("Redis down")

    discard = hub.layer.group_discard_many
    monkeypatch.setattr(hub.layer, "group_discard_many", layer_down)
    await hub.leave(ROOM_X, back)
    await hub.pruning
    assert hub.groups == {X} and await group_members(layer, hub, X) == {hub.channel}
    monkeypatch.setattr(hub.layer, "group_discard_many", discard)
    await hub.renew()
    assert hub.groups == set() and await group_members(layer, hub, X) == set()
    await hub.stop()


@pytest.mark.redis
async def test_an_idle_hub_on_redis_keeps_receiving_without_errors(settings, caplog):
    """The layer's receive waits in Redis 5 s at a time while nothing happens; the Redis
    read timeout is longer (REDIS_SOCKET_TIMEOUT), so an idle hub neither fails nor
    pauses, and the first event after a quiet spell arrives at once."""
    import chat.hub as hub_module

    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chat.layers.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_layer_host(REDIS_URL)], "prefix": f"test-{uuid.uuid4().hex[:8]}"},
        }
    }
    hub = Hub()
    hub.position = no_messages_yet
    socket = FakeSocket()
    await hub.join(ROOM_X, Outbox(socket.send, socket.close))
    await asyncio.sleep(hub_module.get_channel_layer().brpop_timeout + 1.5)  # one idle receive and more
    sent = time.perf_counter()
    await hub.layer.group_send(room_group(X), {"type": hub_module.EVENT_TYPE, "events": [message(1)]})
    await asyncio.wait_for(socket.got.wait(), 2)
    assert socket.sent == ["m1"] and time.perf_counter() - sent < 0.5
    assert "receive failed" not in caplog.text
    hub.task.cancel()


def freeze_receives(hub: Hub) -> tuple[asyncio.Event, set]:
    """From now on a receive on the hub's present channel never returns, and swallows
    its cancellation, as a receive did on Python 3.11 when asyncio.wait_for lost a
    cancel (CPython gh-86296). Returns the event that lets frozen receives end, and
    the channels frozen."""
    real_receive = hub.layer.receive
    frozen = {hub.channel}
    thaw = asyncio.Event()

    async def receive(channel):
        if channel in frozen:
            while not thaw.is_set():
                try:
                    await thaw.wait()
                except asyncio.CancelledError:
                    pass  # lost
            raise asyncio.CancelledError
        return await real_receive(channel)

    hub.layer.receive = receive
    return thaw, frozen


async def test_a_stored_step_the_bus_will_not_take_is_handed_out_here_and_not_refused(
    layer, monkeypatch, caplog
):
    """Redis down after a message was written: its sender is not told `server_error`
    (the page would put the text back, and sending it again stores a second copy). The
    sockets of this process get it; a later step over the bus follows it in order."""
    import chat.hub as hub_module

    here = Hub()
    monkeypatch.setattr(hub_module, "hub", here)
    room = StoredRoom(here, 2)
    socket = FakeSocket()
    await here.join(ROOM_X, Outbox(socket.send, socket.close))
    send_many = here.layer.send_many

    async def redis_down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(here.layer, "send_many", redis_down)
    room.written = 1
    await hub_module.publish(ROOM_X, {"type": "Note", "n": 1}, seq=1)
    await drain()
    assert socket.sent == ['{"type":"Note","n":1}'] and "did not take 1 stored step(s)" in caplog.text
    with pytest.raises(ConnectionError):  # presence and typing are not stored: the caller is told
        await hub_module.publish(ROOM_X, {"type": "Note", "n": "typing"})
    monkeypatch.setattr(here.layer, "send_many", send_many)
    room.written = 2
    await hub_module.publish(ROOM_X, {"type": "Note", "n": 2}, seq=2)
    for _ in range(50):
        if len(socket.sent) == 2:
            break
        await asyncio.sleep(0.02)
    assert socket.sent == ['{"type":"Note","n":1}', '{"type":"Note","n":2}']
    await here.stop()


async def test_a_delete_the_bus_will_not_take_is_handed_out_here_with_its_file(layer, monkeypatch):
    """Redis down after a delete was written (a member's or an admin's, `publish_all`):
    the deleter is not told `server_error` (sending it again would be answered
    `message_not_found`); this process's sockets get `MessageDeleted` and the file's
    `FileDeleted` it carries. A closed room's delete (no step) is still refused."""
    import chat.hub as hub_module

    here = Hub()
    monkeypatch.setattr(hub_module, "hub", here)
    room = StoredRoom(here, 2)
    socket = FakeSocket()
    await here.join(ROOM_X, Outbox(socket.send, socket.close))

    async def redis_down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(here.layer, "send_many", redis_down)
    room.written = 1
    await hub_module.publish_all(
        hub_module.deletion_events(ROOM_X, 7, 1, [{"type": "FileDeleted", "file_id": "f"}])
    )
    await drain()
    assert [json.loads(frame) for frame in socket.sent] == [
        {"type": "MessageDeleted", "id": 7},
        {"type": "FileDeleted", "file_id": "f"},
    ]
    assert here.unpublished
    with pytest.raises(ConnectionError):
        await hub_module.publish_all(hub_module.deletion_events(ROOM_X, 8, None, []))
    await here.stop()


async def test_a_file_delete_the_bus_will_not_take_is_handed_out_here(layer, monkeypatch):
    """Redis down after a member's `DeleteFile` was written: the deleter is not told
    `server_error` (sending it again would be answered `file_not_found`); this process's
    sockets get `FileDeleted`, kept to publish again. Presence is still refused."""
    import chat.hub as hub_module

    here = Hub()
    monkeypatch.setattr(hub_module, "hub", here)
    StoredRoom(here, 0)
    socket = FakeSocket()
    await here.join(ROOM_X, Outbox(socket.send, socket.close))

    async def redis_down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(here.layer, "send_many", redis_down)
    await hub_module.publish(ROOM_X, {"type": "FileDeleted", "file_id": "f"}, stored=True)
    await drain()
    assert [json.loads(frame) for frame in socket.sent] == [{"type": "FileDeleted", "file_id": "f"}]
    assert [event["text"] for event in here.unpublished] == ['{"type":"FileDeleted","file_id":"f"}']
    with pytest.raises(ConnectionError):
        await hub_module.publish(ROOM_X, {"type": "ParticipantLeft", "name": "x"})
    await here.stop()


async def test_a_stored_step_the_bus_would_not_take_reaches_the_other_processes_once_it_does(
    layer, monkeypatch, caplog
):
    """Redis down for a moment, and back with its groups (persistence on, a network blip):
    no catch-up comes, and in a quiet room no later step shows the gap. The step is
    published again once the bus takes it; this process's socket is not told twice."""
    import chat.hub as hub_module

    here, there = Hub(), Hub()  # two processes' hubs on one bus
    monkeypatch.setattr(hub_module, "hub", here)
    rooms = StoredRoom(here, 1), StoredRoom(there, 1)
    mine, theirs = FakeSocket(), FakeSocket()
    await here.join(ROOM_X, Outbox(mine.send, mine.close))
    await there.join(ROOM_X, Outbox(theirs.send, theirs.close))
    for room in rooms:
        room.written = 1
    send_many = here.layer.send_many
    down = [True]

    async def flaky(*args, **kwargs):
        if down[0]:
            raise ConnectionError("Redis is down")
        return await send_many(*args, **kwargs)

    monkeypatch.setattr(here.layer, "send_many", flaky)
    await hub_module.publish(ROOM_X, {"type": "Note", "n": 1}, seq=1)
    await drain()
    assert mine.sent == ['{"type":"Note","n":1}'] and theirs.sent == []
    await asyncio.sleep(1)  # tries while it is down
    assert theirs.sent == [] and here.unpublished
    down[0] = False
    for _ in range(200):
        if theirs.sent:
            break
        await asyncio.sleep(0.02)
    assert theirs.sent == ['{"type":"Note","n":1}'] and mine.sent == ['{"type":"Note","n":1}']
    assert here.unpublished == [] and "took 1 stored step(s)" in caplog.text
    await here.stop()
    await there.stop()


@pytest.mark.parametrize("join_comes", ["after the renewal", "during the renewal's leave"])
async def test_a_join_while_the_rooms_last_socket_leaves_and_a_renewal_runs_is_in_the_group(
    layer, monkeypatch, join_comes
):
    """The last local socket of a room departs (its leave's database call under way), a
    renewal takes the hub out of the room's group, and a new socket of that room joins
    before the leave ends (after the renewal, or while its call to leave the group is
    under way, waiting for the lock): the new socket is in the group again and gets the
    room's events (it got nothing from any process while it stayed)."""
    import chat.hub as hub_module

    here = Hub()
    monkeypatch.setattr(hub_module, "hub", here)
    room = StoredRoom(here, 6)
    room.written = 5
    first, second = FakeSocket(), FakeSocket()
    leaving, coming = Outbox(first.send, first.close), Outbox(second.send, second.close)
    await here.join(ROOM_X, leaving)
    here.depart(ROOM_X, leaving)
    if join_comes == "after the renewal":
        await here.renew()  # the watchdog's round: the room has no local socket now
        await here.join(ROOM_X, coming)
    else:
        discard, joined = here.layer.group_discard_many, asyncio.Event()

        async def slow_discard(*args, **kwargs):
            await joined.wait()  # the join below has come meanwhile
            return await discard(*args, **kwargs)

        monkeypatch.setattr(here.layer, "group_discard_many", slow_discard)
        renewal = asyncio.create_task(here.renew())
        await drain()
        joining = asyncio.create_task(here.join(ROOM_X, coming))
        await drain()
        joined.set()
        await renewal
        await joining
    await here.leave(ROOM_X, leaving)  # the leave's database call is over
    assert await group_members(layer, here, X) == {here.channel}
    room.written = 6
    await hub_module.publish(ROOM_X, {"type": "Note", "n": 6}, seq=6)
    for _ in range(50):
        if second.sent:
            break
        await asyncio.sleep(0.02)
    assert second.sent == ['{"type":"Note","n":6}'] and first.sent == []
    await here.stop()


async def test_a_frozen_receive_is_replaced_and_delivery_resumes(layer, settings, caplog):
    """The watchdog's probe does not come back: the hub receives on a new channel, the
    room's messages stored meanwhile are read from the database, and later events
    arrive over the bus again."""
    settings.HUB_WATCHDOG_INTERVAL = 0.05
    settings.HUB_WATCHDOG_TIMEOUT = 0.3
    hub = Hub()
    room = StoredRoom(hub, 3)
    socket = FakeSocket()
    await hub.join(ROOM_X, Outbox(socket.send, socket.close))

    async def publish(seq):
        room.written = seq
        await hub.layer.group_send(room_group(X), {"type": EVENT_TYPE, "events": [message(seq)]})

    async def sent(count, within):
        for _ in range(int(within / 0.02)):
            if len(socket.sent) >= count:
                return socket.sent
            await asyncio.sleep(0.02)
        return socket.sent

    await publish(1)
    assert await sent(1, 2) == ["m1"]
    old_channel = hub.channel
    thaw, frozen = freeze_receives(hub)
    await publish(2)  # taken by the receive that was already waiting; the next one freezes
    assert await sent(2, 2) == ["m1", "m2"]
    await publish(3)  # lands in the frozen channel
    await asyncio.sleep(0.05)
    assert socket.sent == ["m1", "m2"]

    # Within the watchdog's timeout (and a round), m3 comes from the database.
    got = await sent(3, 3)
    assert got[:2] == ["m1", "m2"] and '"id":103' in got[2], got
    assert hub.channel != old_channel and hub.channel not in frozen
    assert "receive made no progress" in caplog.text and old_channel in caplog.text
    # The bus reaches the new channel, and no longer the old one.
    live = {"room": X, "text": "live"}
    await hub.layer.group_send(room_group(X), {"type": EVENT_TYPE, "events": [live]})
    assert (await sent(4, 2))[3] == "live"
    if layer == "memory":
        assert list(hub.layer.groups[room_group(X)]) == [hub.channel]
    thaw.set()
    hub.task.cancel()


async def test_a_probe_received_before_its_send_returns_is_back(layer, settings, caplog):
    """Over Redis the receive that waits on the hub's channel can take the probe before
    the send's reply is read: that probe is back, and an idle hub is never replaced (it
    was, every HUB_WATCHDOG_TIMEOUT, with an ERROR the docs tell operators to alert on)."""
    settings.HUB_WATCHDOG_INTERVAL = 0.05
    settings.HUB_WATCHDOG_TIMEOUT = 0.3
    hub = Hub()
    await hub.start()
    channel, send = hub.channel, hub.layer.send

    async def slow_reply(to: str, message: dict) -> None:
        await send(to, message)
        await asyncio.sleep(0.02)  # the reply on its way back; the receive runs meanwhile

    hub.layer.send = slow_reply
    await asyncio.sleep(1.5)  # 30 watchdog rounds
    assert "made no progress" not in caplog.text and hub.channel == channel
    hub.task.cancel()


async def test_a_receive_that_keeps_moving_is_left_alone(settings):
    """A probe stuck behind a backlog is no stall while events keep arriving."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "chat.layers.InMemoryChannelLayer"}}
    settings.HUB_WATCHDOG_TIMEOUT = 10
    hub = Hub()
    await hub.start()
    channel = hub.channel
    hub.probe_sent = time.monotonic() - 60
    hub.progress = time.monotonic() - 1
    await hub.watch()
    assert hub.channel == channel
    hub.progress = time.monotonic() - 11
    await hub.watch()
    assert hub.channel != channel
    hub.task.cancel()


async def group_members(layer: str, hub: Hub, room: str) -> set[str]:
    """The channels in the room's group, as the layer stores them (Redis: its sorted set)."""
    if layer == "memory":
        return set(hub.layer.groups.get(room_group(room), {}))
    client = Redis.from_url(REDIS_URL)
    try:
        members = await client.zrange(f"{hub.layer.prefix}:group:{room_group(room)}", 0, -1)
    finally:
        await client.aclose()
    return {member.decode() for member in members}


async def joined(hub: Hub, room: uuid.UUID = ROOM_X) -> Hub:
    hub.position = no_messages_yet
    socket = FakeSocket()
    await hub.join(room, Outbox(socket.send, socket.close))
    return hub


async def test_a_hub_that_stops_leaves_its_rooms(layer):
    """A process that stops takes its channel out of its rooms' groups, so nobody keeps
    sending it their events (channels-redis keeps a member a day by default)."""
    leaving, staying = await joined(Hub()), await joined(Hub())
    await joined(leaving, ROOM_Y)
    assert await group_members(layer, leaving, X) == {leaving.channel, staying.channel}
    await leaving.stop()
    assert leaving.task.done()
    assert await group_members(layer, leaving, X) == {staying.channel}
    assert await group_members(layer, leaving, ROOM_Y.hex) == set()
    await leaving.refresh()  # a heartbeat after the stop does not put it back
    assert await group_members(layer, leaving, X) == {staying.channel}
    await staying.stop()
    assert await group_members(layer, staying, X) == set()


async def test_stopping_never_waits_long_for_a_layer_that_hangs(settings, monkeypatch, caplog):
    """Redis hung or unreachable: the process stops anyway, after LEAVE_TIMEOUT."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "chat.layers.InMemoryChannelLayer"}}
    monkeypatch.setattr("chat.hub.LEAVE_TIMEOUT", 0.2)
    hub = await joined(Hub())

    async def hangs(groups, channel: str) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(hub.layer, "group_discard_many", hangs)
    began = time.monotonic()
    await hub.stop()
    assert time.monotonic() - began < 1
    assert hub.task.done() and "could not leave the bus" in caplog.text


@pytest.mark.redis
async def test_a_hub_that_vanishes_drops_out_and_a_live_one_stays(settings):
    """A killed process never leaves: the layer drops its channel at the first group
    send after the group expiry. A live hub renews its place itself (its watchdog),
    with no socket and so no presence heartbeat, and stays."""
    settings.HUB_WATCHDOG_INTERVAL = 0.2
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chat.layers.RedisChannelLayer",
            "CONFIG": {
                "hosts": [redis_layer_host(REDIS_URL)],
                "prefix": f"test-{uuid.uuid4().hex[:8]}",
                "group_expiry": 2,
            },
        }
    }
    live, killed = await joined(Hub()), await joined(Hub())
    killed.task.cancel()  # SIGKILL: its tasks end, and nothing takes it off the bus
    killed.receiver.cancel()
    await asyncio.sleep(0.5)
    assert await group_members("redis", live, X) == {live.channel, killed.channel}
    await asyncio.sleep(3.2)  # past the expiry (channels-redis compares whole seconds)
    await send_events([message(1)])
    assert await group_members("redis", live, X) == {live.channel}
    await live.stop()
    await live.layer.flush()


async def test_a_large_frame_counts_for_its_address_until_the_client_has_read_it():
    """Only until then: an address whose sockets had read everything was refused large
    replies (`ready_for_large_reply`) while its last big frame stayed counted, until a
    next frame that may never come."""
    socket = FakeSocket()
    drained = asyncio.Event()
    outbox = Outbox(socket.send, socket.close, owner="10.4.4.4", writable=drained.wait)
    big = "x" * (WRITE_NOW_MAX + 1)
    outbox.put(big)
    await drain()
    assert socket.sent == [big] and address_backlog("10.4.4.4") == len(big)  # not read yet
    drained.set()  # the client read it: the write buffer drained
    await drain()
    assert address_backlog("10.4.4.4") == 0 and outbox.task is None
    outbox.put("after")
    await drain()
    assert socket.sent == [big, "after"]


async def test_sockets_that_do_not_read_are_bounded_per_address_and_per_process(settings):
    """A socket's own WS_SEND_QUEUE_BYTES let one address hold that much in every room it
    joined: the socket that takes its address's sockets, or the process's, past their
    total is closed 4002 as one past its own limit is; others go on."""
    settings.WS_SEND_QUEUE_BYTES_PER_ADDRESS = 250
    settings.WS_SEND_QUEUE_BYTES_PER_PROCESS = outbox_module.backlog_total + 450  # other tests' own
    stalled = [FakeSocket(stall=True) for _ in range(4)]
    owners = ["10.3.3.3", "10.3.3.3", "10.3.3.4", "10.3.3.5"]
    outboxes = [Outbox(s.send, s.close, owner=o) for s, o in zip(stalled, owners, strict=True)]
    for outbox in outboxes[:2]:
        for _ in range(2):
            outbox.put("x" * 50)
    assert outboxes[0].closing is None and outboxes[1].closing is None  # 200 bytes for 10.3.3.3
    outboxes[1].put("x" * 100)  # 300: past its address's total
    assert outboxes[1].closing == CloseCode.TOO_SLOW and outboxes[0].closing is None
    for _ in range(4):
        outboxes[2].put("y" * 50)  # 200 for 10.3.3.4: 300 in all (the closed socket's went)
    assert outboxes[2].closing is None
    outboxes[3].put("z" * 50)  # one frame alone always passes
    outboxes[3].put("z" * 150)  # 500: past the process's total
    assert outboxes[3].closing == CloseCode.TOO_SLOW and outboxes[2].closing is None
    for outbox in outboxes:
        outbox.stop()
