"""Hand-written SQL for the hot paths (every join, leave and chat message).

Django's ORM spends ~0.3-0.5 ms building each query on this hardware, ten times what
SQLite takes to run it; these helpers keep the SQL short and backend-neutral by
preparing values through the model fields, as the ORM would.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Model


def prep(model: type[Model], field: str, value: Any) -> Any:
    """A value as the database backend wants it (UUIDs are text on SQLite)."""
    # The connection itself, not the `connection` proxy, whose every attribute read
    # looks the connection up again.
    return model._meta.get_field(field).get_db_prep_value(value, connections[DEFAULT_DB_ALIAS])


def table(model: type[Model]) -> str:
    return connections[DEFAULT_DB_ALIAS].ops.quote_name(model._meta.db_table)


def rows(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def execute(sql: str, params: list) -> int:
    """Run a write; returns the number of rows it touched."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def insert_into_open_room(
    model: type[Model],
    room_id: UUID,
    *,
    unless: tuple[str, list[Any]] | None = None,
    **values: Any,
) -> int | None:
    """INSERT one row of `model` (which has a `room`) only if the room is open, in one
    statement; returns its id, or None when the room is closed or gone.

    `unless` is an SQL condition (with its parameters) that, when true, stores nothing
    either. (Messages use `insert_message`, which also orders them in their room.)
    """
    from chat.models import Room

    columns = ", ".join(model._meta.get_field(name).column for name in ("room", *values))
    marks = ", ".join(["%s"] * len(values))
    params = [prep(model, name, value) for name, value in values.items()]
    condition, condition_params = (f" AND NOT ({unless[0]})", unless[1]) if unless else ("", [])
    found = rows(
        f"INSERT INTO {table(model)} ({columns}) SELECT id, {marks} FROM {table(Room)} "
        f"WHERE id = %s AND closed_at IS NULL{condition} RETURNING id",
        [*params, prep(Room, "id", room_id), *condition_params],
    )
    return found[0][0] if found else None


def aware(value: datetime | str) -> datetime:
    """SQLite hands datetimes back naive (in UTC), PostgreSQL aware."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _seat_present(participant_id: int | None) -> tuple[str, list]:
    """SQL that is true when the sender's seat is present (not removed, not closed out):
    checked in the same statement that stores its message (issue 14, item 4), and held
    (`seat_held`) until it commits."""
    from chat.models import Participant

    if participant_id is None:
        return "", []
    return (
        f" AND EXISTS (SELECT 1 FROM {table(Participant)} WHERE id = %s AND left_at IS NULL{seat_held()})",
        [participant_id],
    )


def seat_held() -> str:
    """On PostgreSQL, what keeps a seat read as present so until the write that read it
    commits: a kick (`services.participant_remove` locks the seat's row) then waits for
    it, or the write, finding the kick committed, reads the seat as gone. Without it a
    message, an edit or a delete (`room_step`) waiting for its room's lock was stored
    after its seat's kick had committed (the statement's snapshot predates the kick).
    The lightest lock the kick's takes account of; the seat is read before its room is
    locked, as the kick's ban locks the room (its foreign key) after the seat, so the two
    never wait on each other."""
    return " FOR KEY SHARE" if connection.vendor == "postgresql" else ""


def hold_seat(participant_id: int) -> None:
    """Hold seat `participant_id` as `seat_held` does, before a transaction locks its room
    (an upload's): a kick, which locks the seat and then, through its ban, the room, then
    waits at the seat, not at the room while this waits at the seat."""
    from chat.models import Participant

    if connection.vendor == "postgresql":
        rows(f"SELECT 1 FROM {table(Participant)} WHERE id = %s{seat_held()}", [participant_id])


def _reply_found(reply_to: int | None, room_key: Any) -> tuple[str, list]:
    """SQL that is true when the message answered is one of the room's (`reply_to`)."""
    from chat.models import Message

    if reply_to is None:
        return "", []
    return f" AND EXISTS (SELECT 1 FROM {table(Message)} WHERE id = %s AND room_id = %s)", [
        reply_to,
        room_key,
    ]


def insert_message(
    room_id: UUID,
    *,
    sender: str,
    content: str,
    sent_at: datetime,
    participant_id: int | None = None,
    reply_to: int | None = None,
) -> tuple[int, int] | None:
    """Store a message in an open room under its next sequence number; returns (id,
    seq), or None when the room is closed or gone, the seat `participant_id` (when
    given) is no longer present, or the message it answers (`reply_to`) is not the
    room's.

    Bumping `Room.message_seq` locks the room row until commit, so a room's messages
    get consecutive sequence numbers (and growing ids) in commit order, across
    processes. One statement on PostgreSQL; on SQLite, whose writers are serialised
    anyway, two in one transaction.
    """
    from chat.models import Message, Room

    room, message = table(Room), table(Message)
    values = [
        prep(Message, "sender", sender),
        content,
        prep(Message, "sent_at", sent_at),
        reply_to,
        participant_id,
    ]
    key = prep(Room, "id", room_id)
    seated, seated_params = _seat_present(participant_id)
    answers, answers_params = _reply_found(reply_to, key)
    if connection.vendor == "postgresql":
        found = rows(
            f"WITH r AS (UPDATE {room} SET message_seq = message_seq + 1 WHERE id = %s AND closed_at IS NULL"
            f"{seated}{answers} RETURNING id, message_seq) "
            f"INSERT INTO {message} (room_id, seq, sender, content, sent_at, reply_to, author) "
            "SELECT id, message_seq, %s, %s, %s, %s, %s FROM r RETURNING id, seq",
            [key, *seated_params, *answers_params, *values],
        )
        return found[0] if found else None
    with transaction.atomic():
        bumped = rows(
            f"UPDATE {room} SET message_seq = message_seq + 1 WHERE id = %s AND closed_at IS NULL"
            f"{seated}{answers} RETURNING message_seq",
            [key, *seated_params, *answers_params],
        )
        if not bumped:
            return None
        found = rows(
            f"INSERT INTO {message} (room_id, seq, sender, content, sent_at, reply_to, author) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            [key, bumped[0][0], *values],
        )
        return found[0][0], bumped[0][0]


def room_step(room_id: UUID, participant_id: int | None) -> int | None:
    """Take an open room's next sequence number for a change by a present seat, or by
    an admin (no seat); the room row stays locked until the transaction commits, and
    the seat held (`seat_held`), so its kick comes after the change. None when the room
    is closed or gone, or the seat no longer present."""
    from chat.models import Room

    seated, seated_params = _seat_present(participant_id)
    found = rows(
        f"UPDATE {table(Room)} SET message_seq = message_seq + 1 WHERE id = %s AND closed_at IS NULL{seated} "
        "RETURNING message_seq",
        [prep(Room, "id", room_id), *seated_params],
    )
    return found[0][0] if found else None


@dataclass(frozen=True)
class ReactionsRead:
    """What a batch of reactions is checked against, read in its transaction."""

    seqs: dict[Any, int]  # each open room's key -> its message_seq (locked on PostgreSQL)
    present: set[int]  # the batch's seats still present
    rooms_of: dict[int, Any]  # each message of the batch that exists -> its room's key
    rows: list[tuple[int, int, int, str, str]]  # their reactions: id, message, seat, name, emoji


def reactions_read(room_keys: list, participant_ids: list[int], message_ids: list[int]) -> ReactionsRead:
    """Four statements for a whole batch. On PostgreSQL the rooms are locked first, in
    key order (as `insert_messages` locks them), so that what is read holds until the
    commit: every change to a message's reactions takes its room's lock.

    The seats are read after, without a lock, and held all the same: a kick commits only
    once its ban has locked the room FOR KEY SHARE (its foreign key), which waits for
    these FOR UPDATE locks, so a kick committed before the rooms were locked is read,
    and none commits before the batch. A seat lock here, after the rooms, would deadlock
    with a kick between its seat and its ban; and a reaction names its seat without a
    foreign key, whose check would lock the seat's row (tests/chat/test_services.py,
    `..._never_deadlocks`)."""
    from chat.models import Message, Participant, Reaction, Room

    lock = " ORDER BY id FOR UPDATE" if connection.vendor == "postgresql" else ""
    rooms = rows(
        f"SELECT id, message_seq FROM {table(Room)} "
        f"WHERE id IN ({marks(len(room_keys))}) AND closed_at IS NULL{lock}",
        room_keys,
    )
    present = rows(
        f"SELECT id FROM {table(Participant)} "
        f"WHERE id IN ({marks(len(participant_ids))}) AND left_at IS NULL",
        participant_ids,
    )
    messages = rows(
        f"SELECT id, room_id FROM {table(Message)} WHERE id IN ({marks(len(message_ids))})", message_ids
    )
    found = rows(
        f"SELECT id, message_id, participant_id, name, emoji FROM {table(Reaction)} "
        f"WHERE message_id IN ({marks(len(message_ids))}) ORDER BY id",
        message_ids,
    )
    return ReactionsRead(
        seqs=dict(rooms),
        present={participant_id for (participant_id,) in present},
        rooms_of=dict(messages),
        rows=found,
    )


def reactions_write(
    steps: dict[Any, int], added: list[tuple[int, int, str, str]], removed: list[int]
) -> None:
    """Bump each room's sequence by its count of changes, delete the `removed` reaction
    ids, insert the `added` ones (message, seat, name, emoji) in order: three statements."""
    from chat.models import Reaction, Room

    if steps:
        cases = " ".join(["WHEN %s THEN %s"] * len(steps))
        execute(
            f"UPDATE {table(Room)} SET message_seq = message_seq + CASE id {cases} END "
            f"WHERE id IN ({marks(len(steps))})",
            [*(value for key, count in steps.items() for value in (key, count)), *steps],
        )
    if removed:
        execute(f"DELETE FROM {table(Reaction)} WHERE id IN ({marks(len(removed))})", removed)
    if added:
        values = ", ".join(["(%s, %s, %s, %s)"] * len(added))
        execute(
            f"INSERT INTO {table(Reaction)} (message_id, participant_id, name, emoji) VALUES {values}",
            [value for row in added for value in row],
        )


def changes_write(changes: list[tuple[Any, int, int, str]]) -> None:
    """Record which message each edit, delete or reaction changed, (room key, seq,
    message id, kind), each in its room's place `seq` modulo CHANGES_KEPT_STEPS, over
    the change that many steps before: one statement. A batch that comes round to a
    place twice keeps its later change there."""
    from chat.models import Change

    places: dict[tuple[Any, int], tuple[int, int, str]] = {}
    kept = max(1, settings.CHANGES_KEPT_STEPS)
    for key, seq, message_id, kind in changes:
        place = (key, seq % kept)
        if place not in places or places[place][0] < seq:
            places[place] = (seq, message_id, kind)
    if not places:
        return
    values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(places))
    execute(
        f"INSERT INTO {table(Change)} (room_id, slot, seq, message_id, kind) VALUES {values} "
        "ON CONFLICT (room_id, slot) DO UPDATE "
        "SET seq = excluded.seq, message_id = excluded.message_id, kind = excluded.kind",
        [value for place, change in places.items() for value in (*place, *change)],
    )


# Messages one INSERT of a batch stores (7 parameters each).
INSERT_ROWS = 1000


@dataclass(frozen=True)
class NewMessage:
    room_id: UUID
    sender: str
    content: str
    sent_at: datetime
    # The sender's seat: its message is stored only while the seat is present.
    participant_id: int | None = None
    # The message of the same room it answers: stored only if that one is there.
    reply_to: int | None = None


def _present_seats(messages: Sequence[NewMessage], run: Callable[[str, list], list[tuple]]) -> set[int]:
    """Which of the messages' senders' seats are present, read with `run`."""
    from chat.models import Participant

    seats = sorted({m.participant_id for m in messages if m.participant_id is not None})
    if not seats:
        return set()
    present = f"SELECT id FROM {table(Participant)} WHERE id IN ({marks(len(seats))}) AND left_at IS NULL"
    found = run(present + seat_held(), seats)
    return {participant_id for (participant_id,) in found}


def _replies_found(
    messages: Sequence[NewMessage], run: Callable[[str, list], list[tuple]]
) -> set[tuple[Any, int]]:
    """(room key, id) of the messages the batch answers that are there, read with `run`."""
    from chat.models import Message

    wanted = sorted({m.reply_to for m in messages if m.reply_to is not None})
    if not wanted:
        return set()
    found = run(f"SELECT room_id, id FROM {table(Message)} WHERE id IN ({marks(len(wanted))})", wanted)
    return {(room_key, message_id) for room_key, message_id in found}


def insert_messages(messages: Sequence[NewMessage]) -> list[tuple[int, int] | None]:
    """Store many messages in one transaction (one commit, one database crossing):
    `insert_message` for each, in order; a message for a closed room, or from a seat no
    longer present (read in the same transaction), gets None.

    Each room's sequence number is bumped once by the batch's count of its messages,
    and the rows go in with one INSERT, in sequence order within each room, so ids
    still grow with sequence numbers.
    """
    if connection.vendor == "sqlite":
        return _insert_messages_sqlite(messages)
    if len(messages) == 1:  # one statement, no transaction around it
        one = messages[0]
        return [
            insert_message(
                one.room_id,
                sender=one.sender,
                content=one.content,
                sent_at=one.sent_at,
                participant_id=one.participant_id,
                reply_to=one.reply_to,
            )
        ]
    from chat.models import Room

    with transaction.atomic():
        by_room = _by_room(messages, _present_seats(messages, rows), _replies_found(messages, rows))
        # Rooms are bumped one at a time in key order, so that two processes writing
        # batches that share rooms lock them in the same order and never deadlock.
        bumped = []
        for key in sorted(by_room):
            bumped += rows(
                f"UPDATE {table(Room)} SET message_seq = message_seq + %s "
                "WHERE id = %s AND closed_at IS NULL RETURNING id, message_seq",
                [len(by_room[key]), key],
            )
        return _insert_rows(messages, by_room, bumped, rows)


def _insert_messages_sqlite(messages: Sequence[NewMessage]) -> list[tuple[int, int] | None]:
    """`insert_messages` on SQLite, whose writers take turns anyway: three statements
    (the seats, every room's bump at once, the rows) on the driver's own cursor, whose
    cost is a fraction of Django's cursor wrappers' on this path (bench/README.md,
    issue 17). Its errors still become Django's (`wrap_database_errors`)."""
    from chat.models import Room

    with driver_transaction() as cursor:

        def driver_rows(sql: str, params: list) -> list[tuple]:
            return cursor.execute(sql.replace("%s", "?"), params).fetchall()

        by_room = _by_room(
            messages, _present_seats(messages, driver_rows), _replies_found(messages, driver_rows)
        )
        if not by_room:
            return [None] * len(messages)
        counts = [value for key, indices in by_room.items() for value in (key, len(indices))]
        cases = " ".join(["WHEN %s THEN %s"] * len(by_room))
        bumped = driver_rows(
            f"UPDATE {table(Room)} SET message_seq = message_seq + CASE id {cases} END "
            f"WHERE id IN ({marks(len(by_room))}) AND closed_at IS NULL RETURNING id, message_seq",
            [*counts, *by_room],
        )
        return _insert_rows(messages, by_room, bumped, driver_rows)


@contextmanager
def driver_transaction() -> Iterator[Any]:
    """A write transaction on SQLite's own driver connection, and a cursor of it: BEGIN
    IMMEDIATE, then COMMIT, or ROLLBACK if the block raises. `transaction.atomic` costs
    about ten times as much around a one-message batch (bench/README.md, issue 17).
    Inside a caller's atomic block it is that block's savepoint, through
    `transaction.atomic`. Errors still become Django's (`wrap_database_errors`)."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.in_atomic_block:
        with transaction.atomic(), db.wrap_database_errors:
            yield db.connection.cursor()
        return
    db.ensure_connection()
    driver = db.connection
    with db.wrap_database_errors:
        cursor = driver.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
            driver.commit()
        except BaseException:
            driver.rollback()
            raise


def marks(count: int) -> str:
    return ", ".join(["%s"] * count)


def _by_room(
    messages: Sequence[NewMessage], present: set[int], replies: set[tuple[Any, int]]
) -> dict[Any, list[int]]:
    """The indices of the messages that may be stored (no seat, or one present; no
    reply, or one to a message of their room that is there), by their room's key as the
    database stores it, in order."""
    from chat.models import Room

    by_room: dict[Any, list[int]] = {}
    for index, message in enumerate(messages):
        key = prep(Room, "id", message.room_id)
        if message.participant_id is not None and message.participant_id not in present:
            continue
        if message.reply_to is not None and (key, message.reply_to) not in replies:
            continue
        by_room.setdefault(key, []).append(index)
    return by_room


def _insert_rows(
    messages: Sequence[NewMessage],
    by_room: dict[Any, list[int]],
    bumped: list[tuple],
    run: Callable[[str, list], list[tuple]],
) -> list[tuple[int, int] | None]:
    """INSERT the messages of the rooms that were bumped (`bumped`: each open room's key
    and its new last sequence number), numbered on from where each room stood; each
    message's (id, seq), or None when its room was not bumped or it was not stored."""
    from chat.models import Message

    stored: list[tuple[int, int] | None] = [None] * len(messages)
    if not bumped:
        return stored
    rows_: list[list[Any]] = []
    numbered: list[tuple[int, Any, int]] = []  # (index, room key, seq)
    for key, last in sorted(bumped, key=lambda row: str(row[0])):
        indices = by_room[key]
        for offset, index in enumerate(indices):
            message, seq = messages[index], last - len(indices) + 1 + offset
            numbered.append((index, key, seq))
            rows_.append(
                [
                    key,
                    seq,
                    prep(Message, "sender", message.sender),
                    message.content,
                    prep(Message, "sent_at", message.sent_at),
                    message.reply_to,
                    message.participant_id,
                ]
            )
    found: list[tuple] = []
    # At most INSERT_ROWS rows a statement: SQLite takes at most 32,766 parameters in one.
    for start in range(0, len(rows_), INSERT_ROWS):
        chunk = rows_[start : start + INSERT_ROWS]
        found += run(
            f"INSERT INTO {table(Message)} (room_id, seq, sender, content, sent_at, reply_to, author) VALUES "
            f"{', '.join(['(%s, %s, %s, %s, %s, %s, %s)'] * len(chunk))} RETURNING id, room_id, seq",
            [value for row in chunk for value in row],
        )
    # (RETURNING promises no row order on SQLite: match rows by their room and sequence.)
    ids = {(key, seq): message_id for message_id, key, seq in found}
    for index, key, seq in numbered:
        stored[index] = (ids[key, seq], seq)
    return stored
