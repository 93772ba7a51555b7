"""Hand-written SQL for the hot paths (every join, leave and chat message).

Django's ORM spends ~0.3-0.5 ms building each query on this hardware, ten times what
SQLite takes to run it; these helpers keep the SQL short and backend-neutral by
preparing values through the model fields, as the ORM would.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.db.models import Model


def prep(model: type[Model], field: str, value: Any) -> Any:
    """A value as the database backend wants it (UUIDs are text on SQLite)."""
    return model._meta.get_field(field).get_db_prep_value(value, connection)


def table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


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
    checked in the same statement that stores its message (issue 14, item 4)."""
    from chat.models import Participant

    if participant_id is None:
        return "", []
    return f" AND EXISTS (SELECT 1 FROM {table(Participant)} WHERE id = %s AND left_at IS NULL)", [
        participant_id
    ]


def insert_message(
    room_id: UUID, *, sender: str, content: str, sent_at: datetime, participant_id: int | None = None
) -> tuple[int, int] | None:
    """Store a message in an open room under its next sequence number; returns (id,
    seq), or None when the room is closed or gone, or the seat `participant_id` (when
    given) is no longer present.

    Bumping `Room.message_seq` locks the room row until commit, so a room's messages
    get consecutive sequence numbers (and growing ids) in commit order, across
    processes. One statement on PostgreSQL; on SQLite, whose writers are serialised
    anyway, two in one transaction.
    """
    from chat.models import Message, Room

    room, message = table(Room), table(Message)
    values = [prep(Message, "sender", sender), content, prep(Message, "sent_at", sent_at)]
    key = prep(Room, "id", room_id)
    seated, seated_params = _seat_present(participant_id)
    if connection.vendor == "postgresql":
        found = rows(
            f"WITH r AS (UPDATE {room} SET message_seq = message_seq + 1 WHERE id = %s AND closed_at IS NULL"
            f"{seated} RETURNING id, message_seq) "
            f"INSERT INTO {message} (room_id, seq, sender, content, sent_at) "
            "SELECT id, message_seq, %s, %s, %s FROM r RETURNING id, seq",
            [key, *seated_params, *values],
        )
        return found[0] if found else None
    with transaction.atomic():
        bumped = rows(
            f"UPDATE {room} SET message_seq = message_seq + 1 WHERE id = %s AND closed_at IS NULL{seated} "
            "RETURNING message_seq",
            [key, *seated_params],
        )
        if not bumped:
            return None
        found = rows(
            f"INSERT INTO {message} (room_id, seq, sender, content, sent_at) VALUES (%s, %s, %s, %s, %s) "
            "RETURNING id",
            [key, bumped[0][0], *values],
        )
        return found[0][0], bumped[0][0]


@dataclass(frozen=True)
class NewMessage:
    room_id: UUID
    sender: str
    content: str
    sent_at: datetime
    # The sender's seat: its message is stored only while the seat is present.
    participant_id: int | None = None


def _present_seats(participant_ids: list[int]) -> set[int]:
    from chat.models import Participant

    if not participant_ids:
        return set()
    unique = sorted(set(participant_ids))
    marks = ", ".join(["%s"] * len(unique))
    found = rows(f"SELECT id FROM {table(Participant)} WHERE id IN ({marks}) AND left_at IS NULL", unique)
    return {participant_id for (participant_id,) in found}


def insert_messages(messages: Sequence[NewMessage]) -> list[tuple[int, int] | None]:
    """Store many messages in one transaction (one commit, one database crossing):
    `insert_message` for each, in order; a message for a closed room, or from a seat no
    longer present (read in the same transaction), gets None.

    Rooms are bumped once each and in key order, so two processes writing batches that
    share rooms lock them in the same order and never deadlock; the rows go in with one
    INSERT, in sequence order within each room, so ids still grow with sequence numbers.
    """
    from chat.models import Message, Room

    if len(messages) == 1:  # one statement, no transaction around it
        one = messages[0]
        return [
            insert_message(
                one.room_id,
                sender=one.sender,
                content=one.content,
                sent_at=one.sent_at,
                participant_id=one.participant_id,
            )
        ]
    stored: list[tuple[int, int] | None] = [None] * len(messages)
    room, table_name = table(Room), table(Message)
    with transaction.atomic():
        present = _present_seats([m.participant_id for m in messages if m.participant_id is not None])
        by_room: dict[UUID, list[int]] = {}
        for index, message in enumerate(messages):
            if message.participant_id is None or message.participant_id in present:
                by_room.setdefault(message.room_id, []).append(index)
        seqs: dict[int, int] = {}
        for room_id in sorted(by_room, key=str):
            indices = by_room[room_id]
            bumped = rows(
                f"UPDATE {room} SET message_seq = message_seq + %s WHERE id = %s AND closed_at IS NULL "
                "RETURNING message_seq",
                [len(indices), prep(Room, "id", room_id)],
            )
            if bumped:
                first = bumped[0][0] - len(indices) + 1
                seqs.update({index: first + offset for offset, index in enumerate(indices)})
        if not seqs:
            return stored
        order = sorted(seqs, key=lambda index: (str(messages[index].room_id), seqs[index]))
        params: list[Any] = []
        for index in order:
            message = messages[index]
            params += [
                prep(Room, "id", message.room_id),
                seqs[index],
                prep(Message, "sender", message.sender),
                message.content,
                prep(Message, "sent_at", message.sent_at),
            ]
        marks = ", ".join(["(%s, %s, %s, %s, %s)"] * len(order))
        found = rows(
            f"INSERT INTO {table_name} (room_id, seq, sender, content, sent_at) VALUES {marks} "
            "RETURNING id, room_id, seq",
            params,
        )
    # (RETURNING promises no row order on SQLite: match rows by their room and sequence.)
    ids = {(room_id, seq): message_id for message_id, room_id, seq in found}
    for index in order:
        seq = seqs[index]
        stored[index] = (ids[prep(Room, "id", messages[index].room_id), seq], seq)
    return stored
