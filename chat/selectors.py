"""Sync reads. Called through the database queue from chat/actions.py."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings

from chat import keys, protocol, sql
from chat.errors import ErrorCode, ProtocolError
from chat.models import Change, Message, Participant, Reaction, Room


def presence_cutoff(now: datetime) -> datetime:
    """Participants not seen since this moment belong to a dead process."""
    return now - timedelta(seconds=settings.PRESENCE_TIMEOUT)


# The reads below run for every join or GetMembers: SQL, not the ORM (see chat/sql.py).


def members_present(*, room_id: UUID, participant_id: int, now: datetime) -> list[str] | None:
    """Names of the participants connected now, in join order, as seen by the seat
    `participant_id`; None when that seat is no longer present in its open room
    (removed, closed out, swept), checked in the same query (issue 14)."""
    participant, room = sql.table(Participant), sql.table(Room)
    found = sql.rows(
        f"SELECT p.name FROM {participant} s JOIN {room} r ON r.id = s.room_id AND r.closed_at IS NULL "
        f"LEFT JOIN {participant} p ON p.room_id = s.room_id AND p.left_at IS NULL AND p.last_seen >= %s "
        "WHERE s.id = %s AND s.room_id = %s AND s.left_at IS NULL ORDER BY p.joined_at, p.id",
        [
            sql.prep(Participant, "last_seen", presence_cutoff(now)),
            participant_id,
            sql.prep(Participant, "room", room_id),
        ],
    )
    # The seat's row comes back once, with a NULL name, when nobody is connected now.
    return [name for (name,) in found if name is not None] if found else None


def presence_snapshot(*, room_id: UUID, now: datetime) -> list[tuple[int, str]]:
    """(participant id, name) of everyone connected now, in join order."""
    return sql.rows(
        f"SELECT id, name FROM {sql.table(Participant)} "
        "WHERE room_id = %s AND left_at IS NULL AND last_seen >= %s ORDER BY joined_at, id",
        [sql.prep(Participant, "room", room_id), sql.prep(Participant, "last_seen", presence_cutoff(now))],
    )


HISTORY_COLUMNS = "id, sender, content, sent_at, reply_to, edited_at"


def _entries(found: list[tuple]) -> list[dict]:
    """History entries of rows of HISTORY_COLUMNS, in the order given, with their reactions."""
    reactions = reactions_of([row[0] for row in found])
    return [
        protocol.message_entry(
            mid,
            sender,
            content,
            sql.aware(sent_at),
            reply_to,
            edited and sql.aware(edited),
            reactions.get(mid),
        )
        for mid, sender, content, sent_at, reply_to, edited in found
    ]


def reactions_of(message_ids: list[int]) -> dict[int, list[dict]]:
    """Each message's reactions as `Reactions` and History list them: [{emoji, names}],
    each emoji where it was first given, its names in the order they reacted."""
    if not message_ids:
        return {}
    found = sql.rows(
        f"SELECT message_id, emoji, name FROM {sql.table(Reaction)} "
        f"WHERE message_id IN ({sql.marks(len(message_ids))}) ORDER BY id",
        list(message_ids),
    )
    given: dict[int, list[tuple[str, str]]] = {}
    for message_id, emoji, name in found:
        given.setdefault(message_id, []).append((emoji, name))
    return {message_id: reaction_state(pairs) for message_id, pairs in given.items()}


def reaction_state(given: Iterable[tuple[str, str]]) -> list[dict]:
    """A message's reactions, (emoji, name) in the order given, as `Reactions` lists
    them: each emoji where it was first given, its names in that order."""
    state: dict[str, list[str]] = {}
    for emoji, name in given:
        state.setdefault(emoji, []).append(name)
    return [{"emoji": emoji, "names": names} for emoji, names in state.items()]


def history_since(*, room_id: UUID, since: int | None, limit: int) -> list[dict]:
    """The newest `limit` messages after `since`, oldest first."""
    newest = sql.rows(
        f"SELECT {HISTORY_COLUMNS} FROM {sql.table(Message)} "
        "WHERE room_id = %s AND id > %s ORDER BY id DESC LIMIT %s",
        [sql.prep(Message, "room", room_id), -1 if since is None else since, limit],
    )
    return _entries(newest[::-1])


def newest_message_id(*, room_id: UUID) -> int | None:
    """The id of the room's newest message, or None when it has none."""
    row = sql.rows(
        f"SELECT MAX(id) FROM {sql.table(Message)} WHERE room_id = %s", [sql.prep(Message, "room", room_id)]
    )
    return row[0][0]


def history_before(*, room_id: UUID, before: int, limit: int) -> list[dict]:
    """The newest `limit` messages older than `before`, oldest first: GetHistory's page
    (an empty one: the start of the room)."""
    older = sql.rows(
        f"SELECT {HISTORY_COLUMNS} FROM {sql.table(Message)} "
        "WHERE room_id = %s AND id < %s ORDER BY id DESC LIMIT %s",
        [sql.prep(Message, "room", room_id), before, limit],
    )
    return _entries(older[::-1])


def message_in_room(message_id: int, room_id: UUID) -> bool:
    return Message.objects.filter(pk=message_id, room_id=room_id).exists()


@dataclass(frozen=True)
class Door:
    """What a join needs of a room before it takes a seat: its row as it was created.
    Only `closed_at` changes later, and the seat INSERT checks that in the database."""

    room: Room

    @property
    def password_hash(self) -> str:
        return self.room.password_hash


class DoorCache:
    """join_key -> Door, remembered per process so that a join needs one database
    crossing, not two. A room closed since is found by the seat INSERT, or by a fresh
    read after a wrong password (chat/actions.py), and then forgotten."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self.doors: dict[str, Door] = {}

    def get(self, join_key: str) -> Door | None:
        return self.doors.get(join_key)

    def put(self, join_key: str, door: Door) -> None:
        if join_key not in self.doors and len(self.doors) >= self.size:
            self.doors.pop(next(iter(self.doors)))
        self.doors[join_key] = door

    def forget(self, join_key: str) -> None:
        self.doors.pop(join_key, None)


door_cache = DoorCache()


def room_door(*, join_key: str) -> Door:
    """The open room with this key (compared exactly, by its hash), else room_not_found."""
    room = Room.objects.filter(join_key_hash=keys.join_key_hash(join_key), closed_at__isnull=True).first()
    if room is None:
        raise ProtocolError(ErrorCode.ROOM_NOT_FOUND)
    room.join_key = join_key
    # Unwrapped here, once per room per process: the door is cached (door_cache). A
    # sealed room has no key on the server.
    room.encryption_key = None if room.sealed else keys.unwrap(room.pk, room.wrapped_key)
    return Door(room)


def room_info(room: Room) -> dict:
    return protocol.room_info(
        room_id=room.id,
        name=room.name,
        description=room.description,
        join_key=room.join_key,
        has_password=room.has_password,
        owner=room.owner_name,
        created_at=room.created_at,
        sealed=room.sealed,
        key_check=room.key_check or None,
    )


def room_message_seq(*, room_id: UUID) -> int:
    """The sequence number of the room's last message (0 before the first)."""
    found = sql.rows(
        f"SELECT message_seq FROM {sql.table(Room)} WHERE id = %s", [sql.prep(Room, "id", room_id)]
    )
    return found[0][0] if found else 0


def messages_by_seq(
    *, room_id: UUID, after: int, before: int
) -> list[tuple[int, int, str, str, datetime, int | None]]:
    """(id, seq, sender, content, sent_at, reply_to) of the room's messages with
    after < seq < before."""
    return [
        (message_id, seq, sender, content, sql.aware(sent_at), reply_to)
        for message_id, seq, sender, content, sent_at, reply_to in sql.rows(
            f"SELECT id, seq, sender, content, sent_at, reply_to FROM {sql.table(Message)} "
            "WHERE room_id = %s AND seq > %s AND seq < %s ORDER BY seq",
            [sql.prep(Message, "room", room_id), after, before],
        )
    ]


def changes_by_seq(*, room_id: UUID, after: int, before: int) -> list[tuple[int, int, dict]]:
    """(seq, message id, frame) of the room's edits, deletes and reactions with after <
    seq < before (those of its last CHANGES_KEPT_STEPS steps), each frame the state its
    message is in now: `MessageDeleted` once it is gone, else `MessageEdited` or
    `Reactions`, which a client may apply more than once (PROTOCOL.md, Conversations)."""
    found = sql.rows(
        f"SELECT c.seq, c.message_id, c.kind, m.content, m.edited_at FROM {sql.table(Change)} c "
        f"LEFT JOIN {sql.table(Message)} m ON m.id = c.message_id "
        "WHERE c.room_id = %s AND c.seq > %s AND c.seq < %s ORDER BY c.seq",
        [sql.prep(Change, "room", room_id), after, before],
    )
    alive = [(message_id, kind) for _, message_id, kind, content, _ in found if content is not None]
    reacted = reactions_of([message_id for message_id, kind in alive if kind == Change.Kind.REACT])
    changes = []
    for seq, message_id, kind, content, edited_at in found:
        if content is None or kind == Change.Kind.DELETE:
            frame = protocol.message_deleted_message(message_id)
        elif kind == Change.Kind.EDIT:
            frame = protocol.message_edited_message(message_id, content, sql.aware(edited_at))
        else:
            frame = protocol.reactions_message(message_id, reacted.get(message_id, []))
        changes.append((seq, message_id, frame))
    return changes
