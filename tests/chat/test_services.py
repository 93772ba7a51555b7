"""Services against the database, without sockets."""

import sqlite3
import threading
from array import array
from datetime import timedelta
from uuid import uuid4

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from chat import services, sql
from chat.errors import CloseCode, ErrorCode, ProtocolError
from chat.models import Ban, Message, Participant, Reaction, Room
from files.services import file_record, scan_and_store
from tests.helpers import join_seat, make_room

pytestmark = pytest.mark.django_db(transaction=True)


def waiting_on_locks() -> int:
    """PostgreSQL: how many sessions of the test's database wait for a lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def on_another_connection(work, failures: list[Exception]) -> threading.Thread:
    """A thread (not started) that runs `work()` on a database connection of its own,
    as another process would; what it raises goes in `failures`."""

    def run() -> None:
        try:
            work()
        except Exception as exc:
            failures.append(exc)
        finally:
            connections.close_all()

    return threading.Thread(target=run)


def until_it_waits(worker: threading.Thread, *, besides: int = 0) -> None:
    """Give `worker` up to 2 s to wait on a lock (or to end), while `besides` other
    sessions wait on theirs."""
    for _ in range(200):
        if waiting_on_locks() > besides or not worker.is_alive():
            return
        worker.join(0.01)


def test_room_create_makes_unguessable_keys():
    room, seat, token = make_room()
    assert len(room.join_key) >= 22 and len(token) >= 43  # 128 and 256 bits, url-safe
    assert room.owner_token_hash != token and services.owner_token_matches(room, token)
    assert not services.owner_token_matches(room, token + "x")
    assert seat.is_owner and seat.name == "Owner"


def test_message_ids_grow_and_sequence_numbers_count_within_a_room():
    room, seat, _ = make_room()
    _, other_seat, _ = make_room()
    services.message_post(seat=other_seat, content="elsewhere", now=timezone.now())
    posted = [services.message_post(seat=seat, content=f"c{n}", now=timezone.now()) for n in range(5)]
    ids = [message_id for message_id, _ in posted]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert [seq for _, seq in posted] == [1, 2, 3, 4, 5]  # per room, without gaps
    room.refresh_from_db()
    assert room.message_seq == 5
    stored = Message.objects.get(pk=ids[0])
    assert (stored.room_id, stored.sender, stored.content) == (room.pk, "Owner", "c0")


def test_posting_to_a_closed_room_is_room_closed():
    room, seat, _ = make_room()
    room.closed_at = timezone.now()
    room.save()
    with pytest.raises(ProtocolError) as info:
        services.message_post(seat=seat, content="c", now=timezone.now())
    assert info.value.code == ErrorCode.ROOM_CLOSED
    assert not Message.objects.exists()


def test_heartbeat_refreshes_only_the_seats_it_holds():
    room, seat, _ = make_room()
    old = timezone.now() - timedelta(minutes=5)
    Participant.objects.update(last_seen=old)
    assert services.presence_heartbeat(participant_ids=[], now=timezone.now()) == 0
    assert services.presence_heartbeat(participant_ids=[seat.participant_id + 1], now=timezone.now()) == 0
    assert services.presence_heartbeat(participant_ids=[seat.participant_id], now=timezone.now()) == 1
    assert Participant.objects.get().last_seen > old


def test_sweep_announces_each_ghost_once():
    room, seat, _ = make_room()
    Participant.objects.update(last_seen=timezone.now() - timedelta(minutes=5))
    assert services.presence_sweep(now=timezone.now()) == [
        services.Swept(room.id, "Owner", seat.participant_id)
    ]
    assert services.presence_sweep(now=timezone.now()) == []


def test_members_are_listed_only_to_a_present_seat_in_one_query(django_assert_num_queries):
    room, owner, _ = make_room()
    bob = join_seat(room, "Bob").seat
    make_room()  # another room's people are not listed
    now = timezone.now()
    with django_assert_num_queries(1):  # the seat is checked in the query that lists
        assert services.seat_members(seat=bob, now=now) == ["Owner", "Bob"]
    Participant.objects.update(last_seen=now - timedelta(hours=1))
    assert services.seat_members(seat=bob, now=now) == []  # nobody seen lately: still present
    services.participant_remove(participant_id=bob.participant_id, now=now)
    with pytest.raises(services.SeatGone) as info:
        services.seat_members(seat=bob, now=now)
    assert info.value.code == ErrorCode.KICKED and info.value.close == 4001
    services.room_close(room_id=room.pk, now=now)
    with pytest.raises(services.SeatGone) as info:
        services.seat_members(seat=owner, now=now)
    assert info.value.code == ErrorCode.ROOM_CLOSED and info.value.close == 4000


def test_concurrent_joins_with_one_name_exactly_one_wins():
    """Twelve threads, each with its own database connection, join as the same name
    (in different cases) at the same instant: the database lets exactly one in.
    On PostgreSQL (CI) these are truly concurrent transactions."""
    room, _, _ = make_room()
    names = ["Sam", "SAM", "sam", "sAm"] * 3
    barrier = threading.Barrier(len(names))
    outcomes: list[str] = []

    def attempt(name):
        try:
            barrier.wait()
            join_seat(room, name)
            outcomes.append("joined")
        except ProtocolError as exc:
            outcomes.append(exc.code.value)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=attempt, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["joined"] + ["name_taken"] * (len(names) - 1), outcomes
    assert Participant.objects.filter(room=room, name_key="sam", left_at__isnull=True).count() == 1
    print(f"concurrent joins ran on {connection.vendor}")


def bob_joins(room: Room, socket: str, token: str | None = None) -> services.Joined:
    """Bob joins `room` on `socket` (resuming with his participant `token`)."""
    where = services.Where(socket, "proc", "10.0.0.2")
    return services.room_join(
        room=room, name="Bob", where=where, owner_token=None, since=None, now=timezone.now(),
        participant_token=token,
    )  # fmt: skip


def test_a_seat_resumed_on_another_socket_is_not_ended_by_the_old_sockets_leave():
    """The old socket's close may come after the resume (it dropped, or was closing for
    another reason when the 4003 came): its leave must not end the seat the new socket
    holds, nor be announced."""
    room, _, _ = make_room()

    seat = bob_joins(room, "old-socket").seat
    resumed = bob_joins(room, "new-socket", seat.token)
    assert resumed.seat.participant_id == seat.participant_id
    now = timezone.now()
    assert not services.participant_leave(participant_id=seat.participant_id, now=now, outbox_id="old-socket")
    assert Participant.objects.get(pk=seat.participant_id).left_at is None
    assert services.participant_leave(participant_id=seat.participant_id, now=now, outbox_id="new-socket")


@pytest.mark.parametrize("first", ["the old socket's leave", "another resume"])
def test_on_postgresql_a_resume_sees_what_came_before_it_on_another_process(first):
    """The old socket's leave (or a resume of the same token on another process) commits
    while this resume is under way: the resume is told of it (the seat had left, so the
    others are told it is back; or it was on that other socket, which is replaced),
    never of the state before it (a seat 'returned' that everyone was told had left)."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs one writer at a time (DATABASE_URL unset)")
    room, _, _ = make_room()

    seat = bob_joins(room, "old-socket").seat
    joined: list[services.Joined] = []

    def resume():
        try:
            joined.append(bob_joins(room, "new-socket", seat.token))
        finally:
            connections.close_all()

    worker = threading.Thread(target=resume)
    with transaction.atomic():
        if first == "another resume":
            Participant.objects.filter(pk=seat.participant_id).update(outbox_id="elsewhere")
        else:
            assert services.participant_leave(
                participant_id=seat.participant_id, now=timezone.now(), outbox_id="old-socket"
            )
        worker.start()
        until_it_waits(worker)  # for the row
    worker.join(10)
    (resumed,) = joined
    if first == "another resume":
        assert resumed.replaced == "elsewhere"
    else:
        assert (resumed.replaced, resumed.returned) == (None, False)


def test_an_admins_delete_takes_the_rooms_next_sequence_number():
    """So that every process's hub hands MessageDeleted out after the message it
    removes, as it does a member's delete; a closed room has nobody to order it for."""
    room, seat, _ = make_room()
    (message_id, seq), (later_id, _) = services.messages_post(
        [sql.NewMessage(room.pk, "Owner", text, timezone.now(), seat.participant_id) for text in "xy"]
    )
    deleted = services.messages_delete(message_ids=[message_id], now=timezone.now())
    assert deleted == [(room.pk, message_id, seq + 2, [])]
    services.room_close(room_id=room.pk, now=timezone.now())
    assert services.messages_delete(message_ids=[later_id], now=timezone.now()) == [
        (room.pk, later_id, None, [])
    ]


@pytest.mark.parametrize("change", ["edit", "react"])
def test_on_postgresql_an_admins_delete_waits_for_a_members_change_of_the_message(change):
    """A member's edit or reaction locks the room, then the message; an admin's delete of
    that message, arriving in between, waits for the room before it touches the message,
    so neither side is aborted as a deadlock (nor the admin's commit refused for a
    reaction that came in between)."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs one writer at a time (DATABASE_URL unset)")
    room, seat, _ = make_room()
    message_id, _ = services.message_post(seat=seat, content="x", now=timezone.now())
    failures: list[Exception] = []
    worker = on_another_connection(
        lambda: services.messages_delete(message_ids=[message_id], now=timezone.now()), failures
    )
    try:
        with transaction.atomic():
            assert sql.room_step(room.pk, seat.participant_id) is not None  # the member's change begins
            worker.start()
            until_it_waits(worker)  # the admin's delete
            assert waiting_on_locks() == 1
            if change == "edit":
                Message.objects.filter(pk=message_id).update(content="y")
            else:
                Reaction.objects.create(
                    message_id=message_id, participant_id=seat.participant_id, name="Owner", emoji="x"
                )
    except Exception as exc:
        failures.append(exc)
    worker.join(10)
    assert failures == [] and not Message.objects.filter(pk=message_id).exists()


@pytest.mark.parametrize("batch", [1, 2])
def test_on_postgresql_a_message_waiting_on_its_room_is_stored_before_its_seats_kick_or_not_at_all(batch):
    """A message (alone, or in a batch of two) waits for its room's lock, held by another
    writer; an admin kicks its sender meanwhile. The seat check holds the seat until the
    message commits, so the kick comes after it; never a message stored from a seat
    whose kick had already committed (shown after the room was told the sender left)."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs one writer at a time (DATABASE_URL unset)")
    room, owner, _ = make_room()
    bob = join_seat(room, "Bob").seat
    done: list[str] = []
    stored: list = []

    def post():
        try:
            messages = [
                sql.NewMessage(room.pk, "Bob", f"m{n}", timezone.now(), bob.participant_id)
                for n in range(batch)
            ]
            stored.extend(services.messages_post(messages))
            done.append("message")
        finally:
            connections.close_all()

    def kick():
        try:
            assert services.participant_remove(participant_id=bob.participant_id, now=timezone.now())
            done.append("kick")
        finally:
            connections.close_all()

    poster, kicker = threading.Thread(target=post), threading.Thread(target=kick)
    with transaction.atomic():
        assert sql.room_step(room.pk, owner.participant_id) is not None  # the room is locked
        poster.start()
        until_it_waits(poster)  # for the room
        kicker.start()
        kicker.join(0.5)  # the kick commits now, or waits for the message
    poster.join(10)
    kicker.join(10)
    assert done == ["message", "kick"]
    assert all(result is not None for result in stored) and len(stored) == batch


def test_on_postgresql_an_upload_and_a_kick_of_its_uploader_never_deadlock():
    """A kick locks the seat, then (its ban's foreign key) the room; an upload locks the
    room, and its file message holds the seat: the upload holds the seat first, so it
    waits behind the kick at the seat instead of holding the room the kick waits for."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs one writer at a time (DATABASE_URL unset)")
    room, _, _ = make_room()
    bob = join_seat(room, "Bob").seat
    blob = scan_and_store(uuid4(), b"a note")
    failures: list[Exception] = []
    uploader = on_another_connection(
        lambda: file_record(seat=bob, name="note.txt", mime_type="text/plain", blob=blob, now=timezone.now()),
        failures,
    )
    try:
        with transaction.atomic():  # the kick's two steps, with the upload between them
            Participant.objects.select_for_update().get(pk=bob.participant_id)
            uploader.start()
            until_it_waits(uploader)
            Ban.objects.create(room=room, name_key="bob", session_hash="", address=None, until=timezone.now())
    except Exception as exc:
        failures.append(exc)
    uploader.join(10)
    assert failures == []


def change_by(seat: services.Seat, change: str, message_id: int) -> str:
    """A member's `change` ("edit", "delete" or "react") of a message, through its
    service: "stored", or the code of the error that refused it."""
    try:
        if change == "edit":
            services.message_edit(seat=seat, message_id=message_id, content="edited", now=timezone.now())
        elif change == "delete":
            services.message_delete(seat=seat, message_id=message_id, now=timezone.now())
        else:
            services.message_react(seat=seat, message_id=message_id, emoji="+1", on=True)
    except ProtocolError as exc:
        return exc.code.value
    return "stored"


def change_stored(change: str, message_id: int) -> bool:
    """Whether the database holds `change_by`'s change of the message."""
    if change == "edit":
        return Message.objects.filter(pk=message_id, content="edited").exists()
    if change == "delete":
        return not Message.objects.filter(pk=message_id).exists()
    return Reaction.objects.filter(message_id=message_id, emoji="+1").exists()


def bobs_message_on_postgresql() -> tuple[Room, services.Seat, services.Seat, int]:
    """A room, its owner's seat, Bob's seat and a message of Bob's; on PostgreSQL only."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs one writer at a time (DATABASE_URL unset)")
    room, owner, _ = make_room()
    bob = join_seat(room, "Bob").seat
    message_id, _ = services.message_post(seat=bob, content="x", now=timezone.now())
    return room, owner, bob, message_id


@pytest.mark.parametrize("holder", ["a message", "a reaction"])
@pytest.mark.parametrize("change", ["edit", "delete", "react"])
def test_on_postgresql_a_change_waiting_on_its_room_is_stored_before_its_seats_kick_or_refused(
    change, holder
):
    """A member's edit, delete or reaction waits for its room's lock, held by another
    writer (a message's room step, or a batch of reactions, which locks the room FOR
    UPDATE); an admin kicks the member meanwhile. Never a change stored after the kick
    committed (the room was told the member left): an edit or a delete holds the seat
    from its room step (`sql.seat_held`), so the kick waits for it. A reaction locks its
    room FOR UPDATE before it reads the seat, and the kick's ban locks the room FOR KEY
    SHARE (its foreign key) before the kick commits: behind a message's room step the
    ban passes (no conflict), the kick commits and the reaction, let in after it, reads
    the seat gone; behind a batch of reactions the ban waits too, behind the reaction,
    which is stored first."""
    room, owner, bob, message_id = bobs_message_on_postgresql()
    done: list[str] = []
    seen_at_kick: list[bool] = []

    def work():
        try:
            done.append(f"{change} {change_by(bob, change, message_id)}")
        finally:
            connections.close_all()

    def kick():
        try:
            assert services.participant_remove(participant_id=bob.participant_id, now=timezone.now())
            seen_at_kick.append(change_stored(change, message_id))
            done.append("kick")
        finally:
            connections.close_all()

    worker, kicker = threading.Thread(target=work), threading.Thread(target=kick)
    with transaction.atomic():  # the room is locked
        if holder == "a message":
            assert sql.room_step(room.pk, owner.participant_id) is not None
        else:
            key = sql.prep(Room, "id", room.pk)
            assert sql.reactions_read([key], [owner.participant_id], [message_id]).seqs
        worker.start()
        until_it_waits(worker)  # for the room
        kicker.start()
        until_it_waits(kicker, besides=1)  # the kick commits now, or waits for the change
    worker.join(10)
    kicker.join(10)
    if change == "react" and holder == "a message":  # the kick's ban is not held up
        assert done == ["kick", "react kicked"] and not change_stored(change, message_id)
    else:
        assert done == [f"{change} stored", "kick"] and seen_at_kick == [True]


@pytest.mark.parametrize("change", ["edit", "delete", "react"])
def test_on_postgresql_a_change_between_the_two_steps_of_its_seats_kick_never_deadlocks(change):
    """A kick locks the seat and marks it left, then (its ban's foreign key) locks the
    room. An edit or a delete reads the seat, held, before its room step locks the room:
    it waits at the seat, then finds it gone (`kicked`). A reaction locks its room, then
    reads the seat without a lock (the kick, uncommitted, has not ended it yet) and
    takes no lock of the seat's row (a reaction names its seat without a foreign key):
    it is stored, and the kick's ban, then free to lock the room, comes after it."""
    room, _, bob, message_id = bobs_message_on_postgresql()
    outcome: list[str] = []
    failures: list[Exception] = []
    worker = on_another_connection(lambda: outcome.append(change_by(bob, change, message_id)), failures)
    try:
        with transaction.atomic():  # the kick's two steps, with the change between them
            seat = Participant.objects.select_for_update().get(pk=bob.participant_id)
            Participant.objects.filter(pk=seat.pk).update(left_at=timezone.now())
            worker.start()
            until_it_waits(worker)
            assert worker.is_alive() == (change != "react")  # it waits at the seat, or is done
            Ban.objects.create(
                room=room,
                name_key=seat.name_key,
                session_hash=seat.session_hash,
                address=seat.address,
                until=timezone.now() + timedelta(hours=1),
            )
    except Exception as exc:
        failures.append(exc)
    worker.join(10)
    assert failures == []
    assert outcome == ["stored" if change == "react" else "kicked"]


def test_on_postgresql_a_kick_after_a_reaction_read_its_seat_waits_for_the_reaction():
    """The kick comes between a reaction's read of its seat (present) and its write: the
    kick's ban waits for the reaction's room lock, so the kick commits after the
    reaction, which was stored while the seat was present."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs one writer at a time (DATABASE_URL unset)")
    room, _, _ = make_room()
    bob = join_seat(room, "Bob").seat
    message_id, _ = services.message_post(seat=bob, content="x", now=timezone.now())
    key = sql.prep(Room, "id", room.pk)
    failures: list[Exception] = []
    kicker = on_another_connection(
        lambda: services.participant_remove(participant_id=bob.participant_id, now=timezone.now()), failures
    )
    with transaction.atomic():  # `services.messages_react`, with the kick after its read
        read = sql.reactions_read([key], [bob.participant_id], [message_id])
        assert bob.participant_id in read.present
        kicker.start()
        until_it_waits(kicker)
        assert waiting_on_locks() == 1 and kicker.is_alive()
        sql.reactions_write({key: 1}, [(message_id, bob.participant_id, "Bob", "+1")], [])
    kicker.join(10)
    assert failures == [] and not kicker.is_alive()
    assert Reaction.objects.filter(message_id=message_id).exists()
    assert services.seat_gone(bob.participant_id).code == ErrorCode.KICKED


def test_a_join_snapshot_knows_which_room_events_it_already_showed():
    snapshot = services.Snapshot(own_id=10, present=array("q", [3, 10]), shown_up_to=41)
    assert snapshot.shows({"participant_id": 3, "joined": True})  # listed in RoomJoined
    assert not snapshot.shows({"participant_id": 12, "joined": True})  # joined after us
    assert snapshot.shows({"participant_id": 5, "joined": False})  # left before we joined
    assert not snapshot.shows({"participant_id": 3, "joined": False})  # leaves now
    assert not snapshot.shows({"participant_id": 12, "joined": False})  # came and went after us
    assert snapshot.shows({"participant_id": 10, "joined": False})  # our ghost's sweep, resumed
    assert not snapshot.shows({"participant_id": 3, "joined": True})  # 3 left above and resumed
    assert snapshot.shows({"message_id": 41}) and not snapshot.shows({"message_id": 42})
    since = services.Snapshot(own_id=10, present=array("q"), shown_up_to=50)
    assert since.shows({"message_id": 50}) and not since.shows({"message_id": 51})


def test_a_join_snapshot_shows_every_leave_of_one_that_comes_back_after_it():
    """One older than the joiner that resumes after the join and leaves again: each of
    its comings and goings is news, however often within the window (before, its second
    leave was taken for one older than the join, and it stayed listed for ever)."""
    snapshot = services.Snapshot(own_id=10, present=array("q", [3, 10]), shown_up_to=None)
    for _ in range(2):
        assert not snapshot.shows({"participant_id": 3, "joined": False})  # leaves
        assert not snapshot.shows({"participant_id": 3, "joined": True})  # resumes
    assert not snapshot.shows({"participant_id": 3, "joined": False})
    assert not snapshot.shows({"participant_id": 5, "joined": True})  # had left before us; resumes
    assert not snapshot.shows({"participant_id": 5, "joined": False})  # and leaves: news


def test_a_join_snapshot_lists_those_present_whatever_their_order():
    seat = services.Seat(participant_id=10, room_id=uuid4(), name="Ann", is_owner=False)
    present = [(10, "Ann"), (3, "Zoe"), (7, "Bob")]  # by name, not by id
    joined = services.Joined(seat=seat, room=Room(), present=present, history=[], swept=[])
    snapshot = joined.snapshot(since=None)
    for listed in (3, 7, 10):
        assert snapshot.shows({"participant_id": listed, "joined": True})
    for other in (1, 4, 8, 11):
        assert not snapshot.shows({"participant_id": other, "joined": True})


def test_a_batch_stores_its_replies_to_the_rooms_own_messages_only():
    room, seat, _ = make_room()
    _, other_seat, _ = make_room()
    now = timezone.now()
    (question, _), (elsewhere, _) = (
        services.message_post(seat=seat, content="q", now=now),
        services.message_post(seat=other_seat, content="x", now=now),
    )
    batch = [
        sql.NewMessage(room.pk, seat.name, "a1", now, seat.participant_id, reply_to=question),
        sql.NewMessage(room.pk, seat.name, "a2", now, seat.participant_id, reply_to=elsewhere),
        sql.NewMessage(room.pk, seat.name, "a3", now, seat.participant_id, reply_to=question + 10_000),
        sql.NewMessage(room.pk, seat.name, "a4", now, seat.participant_id),
    ]
    first, second, third, fourth = services.messages_post(batch)
    for refused in (second, third):
        assert isinstance(refused, ProtocolError) and refused.code == ErrorCode.MESSAGE_NOT_FOUND
    # The others are stored, numbered on without a gap where the refused ones were.
    assert (first[1], fourth[1]) == (2, 3)
    stored = Message.objects.filter(room=room).order_by("seq").values_list("content", "reply_to", "author")
    me = seat.participant_id  # each message remembers its author's seat, for edits and deletes
    assert list(stored) == [("q", None, me), ("a1", question, me), ("a4", None, me)]


def test_a_batch_larger_than_one_statement_takes_is_stored_whole():
    """SQLite's default build takes at most 32,766 parameters a statement (Debian's
    raises it; the test puts the default back): 5,000 messages (35,000) go in statements
    of INSERT_ROWS, in one transaction, numbered without a gap."""
    room, seat, _ = make_room()
    now = timezone.now()
    batch = [sql.NewMessage(room.pk, seat.name, f"m{n}", now, seat.participant_id) for n in range(5000)]
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        driver = connection.connection
        was = driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        driver.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32766)
        try:
            stored = services.messages_post(batch)
        finally:
            driver.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, was)
    else:
        stored = services.messages_post(batch)
    assert [seq for _, seq in stored] == list(range(1, 5001))
    assert list(Message.objects.filter(room=room).order_by("seq").values_list("content", flat=True)[:3]) == [
        "m0",
        "m1",
        "m2",
    ]
    assert Message.objects.filter(room=room).count() == 5000


def test_seats_ended_names_the_sockets_of_seats_resumed_elsewhere_and_those_removed():
    """What a process's heartbeat tells the sockets it holds when the event was lost: a
    seat that resumed on another socket (its row names that one) closes each other
    socket with 4003 and no frame (None); a removed seat is `kicked` on the socket its
    row names."""
    room, owner, _ = make_room()
    bob, carol, dave = (join_seat(room, name).seat for name in ("Bob", "Carol", "Dave"))
    held = {seat.participant_id: {"chan"} for seat in (owner, bob, carol, dave)}  # WHERE's outbox
    assert services.seats_ended(held=held) == []
    Participant.objects.filter(pk=bob.participant_id).update(outbox_id="elsewhere")  # resumed elsewhere
    held[carol.participant_id].add("old")  # resumed here, on "chan", from "old"
    services.participant_remove(participant_id=dave.participant_id, now=timezone.now())
    ended = services.seats_ended(held=held)
    assert sorted((room_id, outbox_id) for room_id, outbox_id, gone in ended if gone is None) == [
        (room.pk, "chan"),  # Bob's socket here
        (room.pk, "old"),  # Carol's older one
    ]
    kicked = [(outbox_id, gone.code, gone.close) for _, outbox_id, gone in ended if gone is not None]
    assert kicked == [("chan", ErrorCode.KICKED, CloseCode.KICKED)]


def test_a_browser_session_remembers_its_most_recent_rooms(settings):
    """A session joining room after room made its list grow without end, rewritten whole
    at each join: it keeps the SESSION_ROOMS_MAX most recent."""
    from importlib import import_module

    from chat import browser_sessions

    settings.SESSION_ROOMS_MAX = 3
    key = browser_sessions.mint()
    rooms = [make_room()[0] for _ in range(5)]
    for room in rooms:
        assert services.session_room_add(session_key=key, room_id=room.pk)
    recorded = import_module(settings.SESSION_ENGINE).SessionStore(key).load()[services.SESSION_ROOMS_KEY]
    assert recorded == [str(room.pk) for room in rooms[-3:]]
    assert services.session_room_add(session_key=key, room_id=rooms[0].pk)  # joined again: back in
    recorded = import_module(settings.SESSION_ENGINE).SessionStore(key).load()[services.SESSION_ROOMS_KEY]
    assert recorded == [str(room.pk) for room in (*rooms[-2:], rooms[0])]
    # A room joined again (a page's rejoin after each reconnect) is the most recent again.
    for room in (rooms[3], rooms[1]):
        assert services.session_room_add(session_key=key, room_id=room.pk)
    recorded = import_module(settings.SESSION_ENGINE).SessionStore(key).load()[services.SESSION_ROOMS_KEY]
    assert recorded == [str(room.pk) for room in (rooms[0], rooms[3], rooms[1])]


def test_two_rooms_joined_at_once_by_one_browser_session_are_both_recorded(monkeypatch):
    """Two tabs of one browser join two rooms at the same instant (two processes, so two
    database connections). Both reads of the session's rooms are held open side by side
    if they can be (they could: each saved its list without the other's room, and that
    room's downloads were 404): both rooms stay recorded."""
    from importlib import import_module

    from django.conf import settings

    from chat import browser_sessions

    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    key = browser_sessions.mint()
    first, second = make_room()[0], make_room()[0]
    assert services.session_room_add(session_key=key, room_id=first.pk)  # the row, with one room
    third = make_room()[0]
    side_by_side = threading.Barrier(2)
    read = store_class.load

    def load_then_wait(self):
        loaded = read(self)
        try:
            side_by_side.wait(timeout=1)  # the other tab's read, if it can run meanwhile
        except threading.BrokenBarrierError:
            pass
        return loaded

    monkeypatch.setattr(store_class, "load", load_then_wait)

    def join(room):
        try:
            services.session_room_add(session_key=key, room_id=room.pk)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=join, args=(room,)) for room in (second, third)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    monkeypatch.undo()
    recorded = store_class(key).load()[services.SESSION_ROOMS_KEY]
    assert sorted(recorded) == sorted(str(room.pk) for room in (first, second, third))
