"""Group commit of chat messages: many messages in one transaction (chat/sql.py
`insert_messages`) and the batcher that gathers them (chat/batching.py)."""

import asyncio
import random
import threading

import pytest
from django.db import connections
from django.utils import timezone

from chat import selectors, services, sql
from chat.batching import Batcher
from chat.errors import ErrorCode, ProtocolError
from chat.models import Message, Room
from tests.helpers import join_seat, make_room


def in_two_threads(writer) -> None:
    """Run `writer(1)` and `writer(2)` at once, each in a thread with its own database
    connection, to the end; fail with what either raised."""
    errors = []

    def run(seed: int) -> None:
        try:
            writer(seed)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def in_thread(write):
    """A sync write run in a thread, as the database writes are."""

    async def run(items):
        return await asyncio.to_thread(write, items)

    return run


def new(seat, content):
    return sql.NewMessage(seat.room_id, seat.name, content, timezone.now())


@pytest.mark.django_db(transaction=True)
def test_a_batch_numbers_each_room_on_and_refuses_only_the_closed_room():
    room_a, seat_a, _ = make_room()
    room_b, seat_b, _ = make_room()
    closed, seat_closed, _ = make_room()
    Room.objects.filter(pk=closed.pk).update(closed_at=timezone.now())
    services.message_post(seat=seat_a, content="before", now=timezone.now())

    batch = [
        new(seat_a, "a1"),
        new(seat_b, "b1"),
        new(seat_closed, "x"),
        new(seat_a, "a2"),
        new(seat_b, "b2"),
    ]
    results = services.messages_post(batch)

    assert isinstance(results[2], ProtocolError) and results[2].code == ErrorCode.ROOM_CLOSED
    stored = [result for result in results if not isinstance(result, ProtocolError)]
    assert [seq for _, seq in stored] == [2, 1, 3, 2]  # a1, b1, a2, b2
    assert len({message_id for message_id, _ in stored}) == 4
    for message, result in zip(batch, results, strict=True):
        if isinstance(result, ProtocolError):
            continue
        row = Message.objects.get(pk=result[0])
        assert (row.room_id, row.seq, row.content) == (message.room_id, result[1], message.content)
    assert not Message.objects.filter(room=closed).exists()
    assert list(
        Room.objects.filter(pk__in=[room_a.pk, room_b.pk])
        .order_by("message_seq")
        .values_list("message_seq", flat=True)
    ) == [2, 3]


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_over_shared_rooms_neither_deadlock_nor_reorder():
    """Two writers (like two processes) store batches spanning the same rooms in
    different orders: every room's sequence ends up 1..n without gaps, and its ids grow
    with its sequence numbers (what the hubs deliver by)."""
    seats = [make_room()[1] for _ in range(4)]

    def writer(seed: int) -> None:
        shuffle = random.Random(seed)
        for round_ in range(30):
            batch = [new(shuffle.choice(seats), f"{seed}-{round_}-{n}") for n in range(shuffle.randint(2, 8))]
            assert all(not isinstance(result, ProtocolError) for result in services.messages_post(batch))

    in_two_threads(writer)
    for seat in seats:
        rows = list(Message.objects.filter(room_id=seat.room_id).order_by("seq").values_list("seq", "id"))
        assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1))
        ids = [message_id for _, message_id in rows]
        assert ids == sorted(ids)
        assert Room.objects.get(pk=seat.room_id).message_seq == len(rows)


async def test_items_submitted_during_a_write_go_together_in_the_next_one():
    batches: list[list[int]] = []
    release = threading.Event()

    def write(items):
        batches.append(items)
        if len(batches) == 1:
            release.wait(5)
        return [ProtocolError(ErrorCode.ROOM_CLOSED) if item == 13 else item * 10 for item in items]

    batcher = Batcher(in_thread(write), limit=4)
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0.05)  # the first write is under way, alone
    rest = [asyncio.ensure_future(batcher.submit(item)) for item in (1, 2, 13, 4, 5, 6)]
    await asyncio.sleep(0.05)
    release.set()
    assert await first == 0
    results = await asyncio.gather(*rest, return_exceptions=True)
    assert batches == [[0], [1, 2, 13, 4], [5, 6]]  # at most `limit` per write
    assert results[:3] == [10, 20, results[2]] and isinstance(results[2], ProtocolError)
    assert results[3:] == [40, 50, 60]
    assert batcher.task is None  # idle again: the next item is written at once


async def test_items_submitted_together_go_ahead_of_a_submitter_that_started_meanwhile():
    """`submit_all` queues every item before it first waits: a task woken at the same
    time (a join that read a sweep's result) cannot slip its item in between."""
    written: list[str] = []

    async def write(items):
        written.extend(items)
        return items

    batcher = Batcher(write, limit=1)
    ready = asyncio.get_running_loop().create_future()

    async def later():
        await ready
        return await batcher.submit("joined")

    other = asyncio.ensure_future(later())
    await asyncio.sleep(0)  # `later` waits on `ready`
    ready.set_result(None)  # it is woken next, as a join is after a sweep's result
    assert await batcher.submit_all(["left 1", "left 2"]) == ["left 1", "left 2"]
    assert await other == "joined"
    assert written == ["left 1", "left 2", "joined"]


async def test_writes_start_an_interval_apart_and_a_lone_item_goes_at_once():
    """CHAT_WRITE_INTERVAL: under load each write takes what came in the interval; an
    item that finds the last write started longer ago is not held."""
    loop = asyncio.get_running_loop()
    starts: list[float] = []
    batches: list[list[int]] = []

    async def write(items):
        starts.append(loop.time())
        batches.append(items)
        return items

    batcher = Batcher(write, limit=10, interval=0.3)
    before = loop.time()
    assert await batcher.submit(1) == 1
    assert starts[0] - before < 0.1  # the first write is not held
    assert await asyncio.gather(*(batcher.submit(item) for item in (2, 3, 4))) == [2, 3, 4]
    assert batches == [[1], [2, 3, 4]]  # what came in the interval, together
    assert starts[1] - starts[0] >= 0.29
    await asyncio.sleep(0.35)
    before = loop.time()
    assert await batcher.submit(5) == 5
    assert starts[2] - before < 0.1  # the interval has passed: at once again


@pytest.mark.django_db(transaction=True)
def test_a_failed_batch_stores_nothing_and_raises_djangos_error():
    """The SQLite path runs on the driver's cursor: its errors are still Django's, and
    the transaction leaves no room bumped."""
    from django.db import IntegrityError

    room, seat, _ = make_room()
    with pytest.raises(IntegrityError):
        sql.insert_messages([new(seat, "fine"), new(seat, None)])  # content may not be NULL
    assert Room.objects.get(pk=room.pk).message_seq == 0
    assert not Message.objects.filter(room=room).exists()
    assert [seq for _, seq in sql.insert_messages([new(seat, "after")])] == [1]


@pytest.mark.django_db(transaction=True)
def test_a_batch_that_fails_in_python_midway_is_rolled_back(monkeypatch):
    """The SQLite path's own transaction (BEGIN IMMEDIATE on the driver) rolls back on
    any exception, not only the database's: the room's bump, already run, is undone."""
    room, seat, _ = make_room()

    def broken(*args):
        raise RuntimeError("after the bump")

    monkeypatch.setattr(sql, "_insert_rows", broken)
    with pytest.raises(RuntimeError):
        sql.insert_messages([new(seat, "lost"), new(seat, "lost too")])
    monkeypatch.undo()
    assert Room.objects.get(pk=room.pk).message_seq == 0
    # Nothing was left open: a transaction still open would refuse the next BEGIN.
    assert [seq for _, seq in sql.insert_messages([new(seat, "after")])] == [1]


@pytest.mark.django_db(transaction=True)
def test_a_batch_inside_a_callers_transaction_is_part_of_it():
    """Within an atomic block the batch is a savepoint of the caller's transaction:
    it goes when the caller's block is rolled back, and a failed batch leaves the
    caller's own writes in place."""
    from django.db import IntegrityError, transaction

    room, seat, _ = make_room()
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        sql.insert_messages([new(seat, "rolled back with the caller")])
        1 / 0  # noqa: B018 - the caller's block fails after the batch
    assert not Message.objects.filter(room=room).exists()

    with transaction.atomic():
        Room.objects.filter(pk=room.pk).update(description="kept")
        with pytest.raises(IntegrityError):
            sql.insert_messages([new(seat, "fine"), new(seat, None)])
    assert Room.objects.get(pk=room.pk).description == "kept"
    assert not Message.objects.filter(room=room).exists()
    assert [seq for _, seq in sql.insert_messages([new(seat, "after")])] == [1]


async def test_a_failed_write_fails_its_batch_and_the_batcher_goes_on():
    calls = []

    def write(items):
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("database away")
        return items

    batcher = Batcher(in_thread(write), limit=10)
    results = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert [type(result) for result in results] == [RuntimeError, RuntimeError]
    assert await batcher.submit(3) == 3


async def test_a_cancelled_submitter_does_not_disturb_the_others():
    release = threading.Event()

    def write(items):
        release.wait(5)
        return items

    batcher = Batcher(in_thread(write), limit=10)
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0.05)
    gone = asyncio.ensure_future(batcher.submit(2))
    kept = asyncio.ensure_future(batcher.submit(3))
    await asyncio.sleep(0)
    gone.cancel()
    release.set()
    assert await first == 1 and await kept == 3
    assert gone.cancelled()


@pytest.mark.django_db(transaction=True)
def test_messages_of_a_removed_seat_are_refused_in_the_write_itself():
    """Issue 14, item 4: the seat is checked in the transaction that stores the message,
    alone or in a batch, so a kick whose layer event was lost still stops the chat."""
    from chat.models import Participant

    room, owner, _ = make_room()
    kicked = join_seat(room, "Kicked").seat
    left = join_seat(room, "Left").seat
    services.participant_remove(participant_id=kicked.participant_id, now=timezone.now())
    Participant.objects.filter(pk=left.participant_id).update(left_at=timezone.now())  # a ghost sweep

    def seated(seat, content):
        return sql.NewMessage(seat.room_id, seat.name, content, timezone.now(), seat.participant_id)

    (alone,) = services.messages_post([seated(kicked, "alone")])
    assert isinstance(alone, services.SeatGone) and alone.code == ErrorCode.KICKED and alone.close == 4001
    results = services.messages_post(
        [seated(owner, "o1"), seated(kicked, "k"), seated(left, "l"), seated(owner, "o2")]
    )
    assert results[1].code == ErrorCode.KICKED
    assert results[2].code == ErrorCode.NOT_IN_ROOM and results[2].close is None
    assert [seq for _, seq in (results[0], results[3])] == [1, 2]
    assert list(Message.objects.filter(room=room).values_list("content", flat=True).order_by("seq")) == [
        "o1",
        "o2",
    ]

    services.room_close(room_id=room.pk, now=timezone.now())
    (closed,) = services.messages_post([seated(owner, "late")])
    assert closed.code == ErrorCode.ROOM_CLOSED and closed.close == 4000


# --- Reactions (services.messages_react, batching.reaction_writer) --------------------


def reacting(seat, message_id, emoji, on=True):
    return services.Reacting(seat, message_id, emoji, on)


@pytest.mark.django_db(transaction=True)
def test_a_batch_of_reactions_from_several_seats_commits_once_each_in_its_room_order():
    """Issue 18: one transaction for the batch, each reaction still taking its room's
    next sequence number and answered as it would be alone; a refused one keeps nothing,
    its number included."""
    from unittest import mock

    from chat.models import Reaction

    room, owner, _ = make_room()
    bob, carol = join_seat(room, "Bob").seat, join_seat(room, "Carol").seat
    kicked = join_seat(room, "Kicked").seat
    other, elsewhere, _ = make_room(owner_name="Elsewhere")
    said, _ = services.message_post(seat=owner, content="lunch?", now=timezone.now())
    there, _ = services.message_post(seat=elsewhere, content="other room", now=timezone.now())
    services.participant_remove(participant_id=kicked.participant_id, now=timezone.now())

    batch = [
        reacting(bob, said, "👍"),
        reacting(elsewhere, there, "🎉"),
        reacting(carol, said, "👍"),
        reacting(bob, there, "👍"),  # a message of another room
        reacting(owner, said, "👍", on=False),  # nothing to take back: answered all the same
        reacting(kicked, said, "👍"),
        reacting(carol, said + there + 1000, "👍"),
    ]
    default = connections["default"]
    with mock.patch.object(default, "commit", wraps=default.commit) as commit:
        results = services.messages_react(batch)
    assert commit.call_count == 1

    both = [{"emoji": "👍", "names": ["Bob", "Carol"]}]
    assert results[0] == (2, [{"emoji": "👍", "names": ["Bob"]}])
    assert results[1] == (2, [{"emoji": "🎉", "names": ["Elsewhere"]}])
    assert results[2] == (3, both)
    assert results[4] == (4, both)
    assert results[3].code == ErrorCode.MESSAGE_NOT_FOUND
    assert isinstance(results[5], services.SeatGone) and results[5].code == ErrorCode.KICKED
    assert results[6].code == ErrorCode.MESSAGE_NOT_FOUND
    # One sequence number per reaction answered, none for a refused one.
    assert Room.objects.get(pk=room.pk).message_seq == 4
    assert Room.objects.get(pk=other.pk).message_seq == 2
    assert Reaction.objects.count() == 3
    # The same reactions one at a time, as before the batch: the same answers.
    assert services.message_react(seat=carol, message_id=said, emoji="👍", on=True) == (5, both)


@pytest.mark.django_db(transaction=True)
def test_a_batch_of_reactions_costs_the_statements_of_one():
    """The database thread's cost under load is per statement (bench/README.md): a batch
    of 40 reactions, on and off, on several messages and rooms, runs no more statements
    than one reaction does, and leaves exactly the rows its answers describe."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from chat.models import Reaction

    room, owner, _ = make_room()
    seats = [owner] + [join_seat(room, f"P{n}").seat for n in range(4)]
    said = [services.message_post(seat=owner, content=f"m{n}", now=timezone.now())[0] for n in range(4)]
    with CaptureQueriesContext(connection) as one:
        services.messages_react([reacting(seats[1], said[0], "👍")])
    batch = [
        reacting(seat, said[n % 4], emoji, on=(n // 20) % 2 == 0)
        for n in range(40)
        for seat, emoji in [(seats[n % 5], ("👍", "🎉")[n % 2])]
    ]
    with CaptureQueriesContext(connection) as many:
        results = services.messages_react(batch)
    assert len(many.captured_queries) <= len(one.captured_queries)
    assert all(not isinstance(result, ProtocolError) for result in results)
    # The last answer for each message is what is stored.
    last = {change.message_id: state for change, (_, state) in zip(batch, results, strict=True)}
    for message_id, state in last.items():
        stored = selectors.reactions_of([message_id]).get(message_id, [])
        assert stored == state
    assert Reaction.objects.count() == sum(len(e["names"]) for state in last.values() for e in state)


@pytest.mark.django_db(transaction=True)
def test_the_per_message_bounds_hold_inside_one_batch(settings):
    """Two reactions of one batch that race for a message's last place: the first
    takes it, the second is `quota_exceeded`, for distinct emoji and in all alike."""
    from chat.models import Reaction

    settings.REACTIONS_PER_MESSAGE = 2
    settings.REACTIONS_PER_MESSAGE_IN_ALL = 4
    room, owner, _ = make_room()
    bob, carol, dave = (join_seat(room, name).seat for name in ("Bob", "Carol", "Dave"))
    said, _ = services.message_post(seat=owner, content="vote", now=timezone.now())
    services.message_react(seat=bob, message_id=said, emoji="👍", on=True)

    results = services.messages_react(
        [
            reacting(carol, said, "❤️"),  # the last distinct emoji
            reacting(owner, said, "🎉"),  # a third: past REACTIONS_PER_MESSAGE
            reacting(owner, said, "👍"),  # an emoji already there: the third in all
            reacting(carol, said, "❤️"),  # already hers: nothing changes, still answered
            reacting(dave, said, "👍"),  # the fourth in all: the last place
            reacting(carol, said, "👍"),  # the fifth: past REACTIONS_PER_MESSAGE_IN_ALL
            reacting(bob, said, "👍", on=False),  # a place freed...
            reacting(carol, said, "👍"),  # ...and taken in the same batch
        ]
    )
    refused = [index for index, result in enumerate(results) if isinstance(result, ProtocolError)]
    assert refused == [1, 5]
    assert {results[index].code for index in refused} == {ErrorCode.QUOTA_EXCEEDED}
    assert [result[0] for result in results if not isinstance(result, ProtocolError)] == [3, 4, 5, 6, 7, 8]
    assert results[4][1] == [
        {"emoji": "👍", "names": ["Bob", "Owner", "Dave"]},
        {"emoji": "❤️", "names": ["Carol"]},
    ]
    # Bob's 👍 is gone: each emoji is listed where its first remaining reaction is.
    final = [{"emoji": "❤️", "names": ["Carol"]}, {"emoji": "👍", "names": ["Owner", "Dave", "Carol"]}]
    assert results[7][1] == final
    assert Reaction.objects.filter(message_id=said).count() == 4
    assert Room.objects.get(pk=room.pk).message_seq == 8


@pytest.mark.django_db(transaction=True)
def test_concurrent_reaction_and_message_batches_over_shared_rooms_do_not_deadlock():
    """Two writers (like two processes) apply batches of reactions spanning the same
    rooms in different orders, beside batches of messages: no deadlock (rooms are taken
    in key order, as `sql.insert_messages` takes them), and each room's sequence ends up
    counting every message and reaction once."""
    from chat.models import Reaction

    rooms = [make_room() for _ in range(4)]
    seats = [[owner, *(join_seat(room, f"M{n}").seat for n in range(3))] for room, owner, _ in rooms]
    said = [services.message_post(seat=owner, content="hi", now=timezone.now())[0] for _, owner, _ in rooms]
    emoji = ["👍", "❤️", "🎉"]
    applied = []

    def writer(seed: int) -> None:
        shuffle = random.Random(seed)
        for _ in range(20):
            picks = [shuffle.randrange(4) for _ in range(shuffle.randint(2, 8))]
            changes = [
                reacting(shuffle.choice(seats[at]), said[at], shuffle.choice(emoji), shuffle.random() < 0.7)
                for at in picks
            ]
            assert all(not isinstance(result, ProtocolError) for result in services.messages_react(changes))
            applied.append(len(changes))
            posted = services.messages_post([new(seats[at][0], "m") for at in picks[::-1]])
            assert all(not isinstance(result, ProtocolError) for result in posted)

    in_two_threads(writer)
    steps = sum(Room.objects.get(pk=room.pk).message_seq for room, _, _ in rooms)
    assert steps == Message.objects.count() + sum(applied)
    assert Reaction.objects.count() <= sum(applied)
