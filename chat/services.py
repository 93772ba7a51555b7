"""Sync writes, each one crossing from an action into the database: a transaction,
or a single statement where one is enough (chat/sql.py)."""

import hashlib
import hmac
import secrets
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import import_module
from typing import Any
from uuid import UUID, uuid4

from django.conf import settings
from django.contrib.sessions.backends.base import CreateError
from django.db import IntegrityError, transaction
from django.db.models import Exists, Q
from django.dispatch import Signal

from chat import browser_sessions, keys, selectors, sql
from chat.errors import CloseCode, ErrorCode, ProtocolError
from chat.models import Ban, Change, Message, Participant, Room
from chat.protocol import FILE_MESSAGE_PREFIX, name_key

SESSION_ROOMS_KEY = "chat_rooms"
HEARTBEAT_BATCH = 500


@dataclass(frozen=True)
class Seat:
    """A connection's place in a room: what its `actions.Connection` keeps between frames."""

    participant_id: int
    room_id: UUID
    name: str
    is_owner: bool
    sealed: bool = False  # its room is sealed (PROTOCOL.md): uploads follow its rules
    # The participant token RoomCreated or RoomJoined hands out (only the join's seat has it).
    token: str = field(default="", repr=False, compare=False)


@dataclass(frozen=True)
class Joined:
    seat: Seat
    room: Room
    # (participant id, name) present after this join, the joiner included.
    present: list[tuple[int, str]]
    history: list[dict]
    # Ghosts of dead processes swept to make room for this join.
    swept: list["Swept"]
    # A resumed participant (its token): the outbox of the connection it was present on,
    # which is closed with 4003, and whether it was present and seen within
    # PRESENCE_TIMEOUT (the room is not told). A ghost past that timeout is absent from
    # the lists of those who joined since: the room is told it left and joined again.
    replaced: str | None = None
    returned: bool = False
    # The room's newest message id, read before its History when the join had `since`.
    newest_id: int | None = None

    def snapshot(self, since: int | None) -> "Snapshot":
        # `since` counts only as far as the room's messages went: a client whose `since`
        # is above every id (its server's database was restored, say) has not been shown
        # the messages that come next, whatever their ids.
        claimed = [] if since is None or self.newest_id is None else [min(since, self.newest_id)]
        shown = [message["id"] for message in self.history] + claimed
        return Snapshot(
            own_id=self.seat.participant_id,
            present=array("q", sorted(participant_id for participant_id, _ in self.present)),
            shown_up_to=max(shown, default=None),
        )


@dataclass(slots=True)
class Snapshot:
    """What a joiner was shown (RoomJoined, History), kept to drop room events that
    reach its socket later but happened before: with Redis, an event published just
    before the join can be delivered just after it."""

    own_id: int
    # Ids of those present, sorted: 8 bytes each (a frozenset of ints took about 60).
    # One that leaves is taken out, one that joins (or resumes) since is put in.
    present: array
    # The newest message id the joiner has (History's last, or its `since`): ids are
    # committed in order within a room, so every message up to it was already shown.
    shown_up_to: int | None

    def shows(self, event: dict) -> bool:
        participant_id = event.get("participant_id")
        if participant_id is not None:
            at = bisect_left(self.present, participant_id)
            listed = at < len(self.present) and self.present[at] == participant_id
            if event["joined"]:
                if not listed:
                    self.present.insert(at, participant_id)  # news: its next leave is news too
                return listed
            if participant_id == self.own_id:
                return True  # older than our join: the sweep of the ghost we resumed
            if listed:
                del self.present[at]  # leaves now; if it resumes, that join is news
                return False
            # Someone not listed who joined before us had left before the snapshot.
            return participant_id < self.own_id
        message_id = event.get("message_id")
        return message_id is not None and self.shown_up_to is not None and message_id <= self.shown_up_to


@dataclass(frozen=True)
class Swept:
    """A participant of a dead process, marked as left: its room must be told."""

    room_id: UUID
    name: str
    participant_id: int


@dataclass(frozen=True)
class Where:
    """Where a connection is: the columns every new participant row records."""

    outbox_id: str
    process_id: str
    address: str | None
    # sha256 of the browser session key the socket carried, or "".
    session_hash: str = ""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def owner_token_matches(room: Room, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(token_hash(token), room.owner_token_hash)


def _ban_condition(*, room: Room, where: Where, now: datetime, by_address: bool = True) -> tuple[str, list]:
    """SQL that is true when an admin's ban keeps this browser session (or, with
    `by_address`, this address) out of the room, under any name (`participant_remove`)."""
    ban = sql.table(Ban)
    clauses, params = ["session_hash = %s"], [where.session_hash or "-"]
    if where.address and by_address:
        clauses.append("address = %s")
        params.append(where.address)
    return (
        f"EXISTS (SELECT 1 FROM {ban} WHERE room_id = %s AND until > %s AND ({' OR '.join(clauses)}))",
        [sql.prep(Ban, "room", room.pk), sql.prep(Ban, "until", now), *params],
    )


def _participant_add(*, room: Room, name: str, where: Where, owner: bool, now: datetime) -> Seat:
    """One INSERT, into an open room only, and not for a name banned from there; the
    partial unique index refuses a name that is present in the room. The seat carries
    the new participant's token."""
    key = name_key(name)
    token = secrets.token_urlsafe(32)
    participant_id = sql.insert_into_open_room(
        Participant,
        room.pk,
        unless=_ban_condition(room=room, where=where, now=now),
        name=name,
        name_key=key,
        outbox_id=where.outbox_id,
        process_id=where.process_id,
        role=Participant.Role.OWNER if owner else Participant.Role.MEMBER,
        address=where.address,
        session_hash=where.session_hash,
        token_hash=token_hash(token),
        joined_at=now,
        last_seen=now,
    )
    if participant_id is None:
        raise _seat_refused(room)
    return Seat(participant_id, room.pk, name, owner, room.sealed, token)


def _seat_refused(room: Room) -> ProtocolError:
    """Why a seat was not taken in `room`: an admin's removal bans this browser session
    or address (forbidden), or the room is closed or gone."""
    if Room.objects.filter(pk=room.pk, closed_at__isnull=True).exists():
        return ProtocolError(ErrorCode.FORBIDDEN, "You were removed from this room; try again later.")
    return ProtocolError(ErrorCode.ROOM_NOT_FOUND)


@transaction.atomic
def _participant_resume(
    *, room: Room, name: str, token: str, where: Where, owner: bool, now: datetime
) -> tuple[Seat, str | None, bool] | None:
    """Seat again the participant whose token this is (PROTOCOL.md, Conversations), on
    this connection: its row, so its messages and uploads are still its own. Returns the
    seat, the outbox it was present on (else None) and whether it was present and seen
    within PRESENCE_TIMEOUT (not yet a ghost every snapshot leaves out); None for a
    wrong, unknown, dead or purged token (a new participant joins instead). `name` must
    be its name, compared as names are (else `invalid_field`). If it had left, the unique
    index refuses it while its name is present (IntegrityError, as for a new
    participant). An admin's ban of this browser session refuses it too (`forbidden`); a
    ban of its address does not: the seat is someone's behind the same address (an office,
    a household) whom nobody removed (docs/protocol-notes.md says what that costs).

    The row is locked from its read to its move (PostgreSQL), so that what it was is
    what the move replaced: the old socket's leave, or another resume of the token,
    comes wholly before it (this one sees it gone, or on that other socket, and tells
    of it) or wholly after (that one finds the row moved and ends nothing)."""
    found = (
        Participant.objects.filter(room=room, token_hash=token_hash(token))
        .exclude(token_hash="")
        .select_for_update()
        .values("id", "name", "name_key", "outbox_id", "left_at", "last_seen", "role")
        .first()
    )
    if found is None:
        return None
    if name_key(name) != found["name_key"]:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "name: is not the name of this participant token.")
    participant, room_table = sql.table(Participant), sql.table(Room)
    # The removed session stays out under any seat, the ones it held before included.
    banned, ban_params = _ban_condition(room=room, where=where, now=now, by_address=False)
    moved = sql.execute(
        f"UPDATE {participant} SET left_at = NULL, outbox_id = %s, process_id = %s, address = %s, "
        "session_hash = %s, last_seen = %s WHERE id = %s AND token_hash <> '' "
        f"AND EXISTS (SELECT 1 FROM {room_table} WHERE id = %s AND closed_at IS NULL) AND NOT ({banned})",
        [
            where.outbox_id,
            where.process_id,
            sql.prep(Participant, "address", where.address),
            where.session_hash,
            sql.prep(Participant, "last_seen", now),
            found["id"],
            sql.prep(Room, "id", room.pk),
            *ban_params,
        ],
    )
    if not moved:
        if not Participant.objects.filter(pk=found["id"]).exists():
            return None  # purged meanwhile (chat/retention.py): a new participant joins
        raise _seat_refused(room)
    present = found["left_at"] is None
    seen = present and found["last_seen"] >= selectors.presence_cutoff(now)
    is_owner = owner or found["role"] == Participant.Role.OWNER
    seat = Seat(found["id"], room.pk, found["name"], is_owner, room.sealed, token)
    return seat, found["outbox_id"] if present else None, seen


@transaction.atomic
def room_create(
    *,
    name: str,
    description: str,
    password_hash: str,
    owner_name: str,
    where: Where,
    now: datetime,
    key_check: str | None = None,
) -> tuple[Room, Seat, str]:
    """Create a room and seat its creator as owner; returns the owner token too. With a
    `key_check` the room is sealed: no key is made or stored (PROTOCOL.md)."""
    owner_token = secrets.token_urlsafe(32)
    room_id = uuid4()
    room_key = None if key_check is not None else keys.new_room_key()
    join_key = keys.new_join_key()
    room = Room.objects.create(
        id=room_id,
        name=name,
        description=description,
        join_key_hash=keys.join_key_hash(join_key),
        password_hash=password_hash,
        wrapped_key="" if room_key is None else keys.wrap(room_id, room_key),
        sealed=key_check is not None,
        key_check=key_check or "",
        owner_token_hash=token_hash(owner_token),
        owner_name=owner_name,
        created_at=now,
    )
    room.encryption_key, room.join_key = room_key, join_key
    seat = _participant_add(room=room, name=owner_name, where=where, owner=True, now=now)
    return room, seat, owner_token


def room_join(
    *,
    room: Room,
    name: str,
    where: Where,
    owner_token: str | None,
    since: int | None,
    now: datetime,
    participant_token: str | None = None,
) -> Joined:
    """Seat a participant in `room` (password already checked), a new one or the one
    `participant_token` names, and read what they need to see.

    No transaction around it: the INSERT (or the resumed row's UPDATE) commits on its
    own (the room must be open, the unique index decides name races), and the reads
    after it see at least everything before it.
    """
    owner = owner_token_matches(room, owner_token)

    def seated() -> tuple[Seat, str | None, bool]:
        if participant_token:
            resumed = _participant_resume(
                room=room, name=name, token=participant_token, where=where, owner=owner, now=now
            )
            if resumed is not None:
                return resumed
        return _participant_add(room=room, name=name, where=where, owner=owner, now=now), None, False

    swept: list[Swept] = []
    try:
        seat, replaced, returned = seated()
    except IntegrityError:
        # The name may be held by a ghost of a dead process: sweep the room, try once more.
        swept = _ghosts_sweep(Participant.objects.filter(room=room), now=now)
        try:
            seat, replaced, returned = seated()
        except IntegrityError as exc:
            raise ProtocolError(ErrorCode.NAME_TAKEN) from exc
    try:
        # Read before the History: a message committed between the two reads is then
        # either in the History or above `newest_id`, never taken for one already shown.
        newest_id = None if since is None else selectors.newest_message_id(room_id=room.pk)
        return Joined(
            seat=seat,
            room=room,
            present=selectors.presence_snapshot(room_id=room.pk, now=now),
            history=selectors.history_since(room_id=room.pk, since=since, limit=settings.CHAT_HISTORY_LIMIT),
            swept=swept,
            replaced=replaced,
            returned=returned,
            newest_id=newest_id,
        )
    except BaseException:
        # A join that fails after its seat was taken must not leave the seat holding the name.
        participant_leave(participant_id=seat.participant_id, now=now, outbox_id=where.outbox_id)
        raise


def message_post(*, seat: Seat, content: str, now: datetime, reply_to: int | None = None) -> tuple[int, int]:
    """Store a message if its room is open and its seat present; returns its id and its
    sequence number in the room (chat/sql.py: the room row lock orders them across
    processes)."""
    stored = messages_post(
        [sql.NewMessage(seat.room_id, seat.name, content, now, seat.participant_id, reply_to)]
    )[0]
    if isinstance(stored, ProtocolError):
        raise stored
    return stored


def messages_post(messages: list[sql.NewMessage]) -> list[tuple[int, int] | ProtocolError]:
    """Store many messages in one transaction (chat/batching.py); for each, its (id, seq)
    as `message_post` returns it, or the error it would raise: `room_closed`, or the
    `SeatGone` of a seat an admin removed (checked in the same write, chat/sql.py), or
    `message_not_found` for a reply to a message that is not the room's."""
    return [
        stored if stored is not None else _refused(message)
        for message, stored in zip(messages, sql.insert_messages(messages), strict=True)
    ]


def _refused(message: sql.NewMessage) -> ProtocolError:
    gone = seat_gone(message.participant_id) if message.participant_id is not None else None
    if gone is not None:
        return gone
    if message.reply_to is not None and not selectors.message_in_room(message.reply_to, message.room_id):
        return ProtocolError(ErrorCode.MESSAGE_NOT_FOUND, "The message answered is not in this room.")
    return ProtocolError(ErrorCode.ROOM_CLOSED)


# --- A seat's rights end with it (issue 14, item 4) --------------------------------


class SeatGone(ProtocolError):
    """A connection's seat no longer holds: an admin closed its room (`room_closed`,
    close 4000) or removed it (`kicked`, close 4001), or it was marked gone meanwhile
    (`not_in_room`: a ghost sweep; the connection may join again). Raised by the
    database steps of chat, uploads, GetFile and DeleteFile, so a kick or a close whose
    layer event never reached the socket's process still ends the seat's rights."""

    def __init__(self, code: ErrorCode, message: str | None = None, *, close: int | None = None) -> None:
        super().__init__(code, message)
        self.close = close


def seat_gone(participant_id: int) -> SeatGone | None:
    """Why a seat no longer holds, or None while it is present in an open room."""
    found = (
        Participant.objects.filter(pk=participant_id)
        .values("left_at", "room_id", "name_key", "session_hash", "address", "room__closed_at")
        .first()
    )
    if found is None or found["room__closed_at"] is not None:  # a deleted room takes its seats
        return SeatGone(ErrorCode.ROOM_CLOSED, "An admin closed this room.", close=CloseCode.ROOM_CLOSED)
    if found["left_at"] is None:
        return None
    # `participant_remove` bans the removed seat's session and address from its room.
    removed = Ban.objects.filter(
        room_id=found["room_id"],
        name_key=found["name_key"],
        session_hash=found["session_hash"],
        address=found["address"],
        until__gt=found["left_at"],
    ).exists()
    if removed:
        return SeatGone(ErrorCode.KICKED, "An admin removed you from this room.", close=CloseCode.KICKED)
    return SeatGone(ErrorCode.NOT_IN_ROOM, "You are no longer in the room; join it again.")


def seat_hold(*, seat: Seat) -> None:
    """In a transaction that will lock the seat's room and then store a message of the
    seat (an upload), hold the seat first (`sql.hold_seat`), in the order kicks take."""
    sql.hold_seat(seat.participant_id)


def seat_check(*, seat: Seat) -> None:
    """Raise `SeatGone` unless the seat is still present in its open room (one query)."""
    gone = seat_gone(seat.participant_id)
    if gone is not None:
        raise gone


def seat_members(*, seat: Seat, now: datetime) -> list[str]:
    """The names `Members` lists, for a seat still present in its open room, else its
    `SeatGone` (the seat is checked in the query that reads the names)."""
    names = selectors.members_present(room_id=seat.room_id, participant_id=seat.participant_id, now=now)
    if names is None:
        raise seat_gone(seat.participant_id) or SeatGone(ErrorCode.NOT_IN_ROOM)
    return names


def session_may_download(*, session_key: str, room_id: UUID, now: datetime) -> bool:
    """`/files/<id>` (docs/protocol-notes.md): the browser session has a present seat in
    the open room, and no admin's removal of a seat of this session there still holds."""
    session_hash = token_hash(session_key)
    banned = Ban.objects.filter(room_id=room_id, session_hash=session_hash, until__gt=now)
    return (
        Participant.objects.filter(
            room_id=room_id, session_hash=session_hash, left_at__isnull=True, room__closed_at__isnull=True
        )
        .exclude(Exists(banned))
        .exists()
    )


def session_room_add(*, session_key: str, room_id: UUID) -> bool:
    """Record in the browser session that it joined a room (PROTOCOL.md, HTTP). The
    first join makes the session row, under the key the page's cookie holds, if this
    server minted it (chat/browser_sessions.py): a forged or expired cookie records
    nothing."""
    engine = import_module(settings.SESSION_ENGINE)
    store = engine.SessionStore(session_key)
    with transaction.atomic():
        # Two tabs joining two rooms at once (on two processes) would each read the
        # list without the other's room, and the later save would drop it: the row is
        # locked from the read to the save (a database-backed store).
        if (model := getattr(store, "model", None)) is not None:
            model.objects.select_for_update().filter(session_key=session_key).values_list("pk").first()
        if store.exists(session_key):
            rooms = store.get(SESSION_ROOMS_KEY, [])
            if rooms[-1:] != [str(room_id)]:
                # The SESSION_ROOMS_MAX joined most recently, the latest last (a rejoin
                # moves its room there): the list grew without end, rewritten at each join.
                rooms = [room for room in rooms if room != str(room_id)]
                store[SESSION_ROOMS_KEY] = [*rooms, str(room_id)][-settings.SESSION_ROOMS_MAX :]
                store.save()
            return True
        if not browser_sessions.minted(session_key):
            return False
        store._session_cache = {SESSION_ROOMS_KEY: [str(room_id)]}  # new: nothing to load
        try:
            store.save(must_create=True)
        except CreateError:  # another socket of this browser made it meanwhile
            return session_room_add(session_key=session_key, room_id=room_id)
        return True


def participant_leave(*, participant_id: int, now: datetime, outbox_id: str | None = None) -> bool:
    """Mark a participant gone; False when it was already gone (swept or removed), or,
    with `outbox_id` (the socket leaving), when another socket holds it now: it resumed
    there, and the old socket's close must not end it (PROTOCOL.md, Conversations)."""
    held, params = (" AND outbox_id = %s", [outbox_id]) if outbox_id is not None else ("", [])
    return bool(
        sql.execute(
            f"UPDATE {sql.table(Participant)} SET left_at = %s WHERE id = %s AND left_at IS NULL{held}",
            [sql.prep(Participant, "left_at", now), participant_id, *params],
        )
    )


def presence_heartbeat(*, participant_ids: list[int], now: datetime) -> int:
    """Called every PRESENCE_HEARTBEAT seconds by each process for the sockets it holds."""
    refreshed = 0
    for start in range(0, len(participant_ids), HEARTBEAT_BATCH):
        batch = participant_ids[start : start + HEARTBEAT_BATCH]
        refreshed += Participant.objects.filter(pk__in=batch, left_at__isnull=True).update(last_seen=now)
    return refreshed


def seats_ended(*, held: Mapping[int, Collection[str]]) -> list[tuple[UUID, str, SeatGone | None]]:
    """Of the seats a process's sockets hold (each with those sockets' outbox ids), the
    ones an admin removed, whose room was closed or that were swept as ghosts while
    their sockets lived: each with its room, the socket its row names and why
    (`seat_gone`); and each socket of a seat that resumed on another socket since (its
    row names that one), with None. One query per HEARTBEAT_BATCH seats. The heartbeat
    tells those sockets what the lost event would have, or for a swept seat closes its
    socket to come back (chat/presence.py)."""
    ended: list[tuple[UUID, str, SeatGone | None]] = []
    ids = list(held)
    for start in range(0, len(ids), HEARTBEAT_BATCH):
        batch = ids[start : start + HEARTBEAT_BATCH]
        outboxes = [outbox_id for participant_id in batch for outbox_id in held[participant_id]]
        twice = [participant_id for participant_id in batch if len(held[participant_id]) > 1]
        for participant_id, room_id, outbox_id, left_at, closed_at in (
            Participant.objects.filter(pk__in=batch)
            .filter(
                Q(left_at__isnull=False)
                | Q(room__closed_at__isnull=False)
                | ~Q(outbox_id__in=outboxes)
                | Q(pk__in=twice)
            )
            .values_list("pk", "room_id", "outbox_id", "left_at", "room__closed_at")
        ):
            if left_at is None and closed_at is None:
                ended += [(room_id, old, None) for old in held[participant_id] if old != outbox_id]
            elif (gone := seat_gone(participant_id)) is not None:
                ended.append((room_id, outbox_id, gone))
    return ended


def presence_sweep(*, now: datetime) -> list[Swept]:
    """Mark participants of dead processes as left; returns whom to announce."""
    return _ghosts_sweep(Participant.objects.all(), now=now)


def _ghosts_sweep(participants, *, now: datetime) -> list[Swept]:
    stale = {"left_at__isnull": True, "last_seen__lt": selectors.presence_cutoff(now)}
    swept = []
    for pk, room_id, name in list(participants.filter(**stale).values_list("pk", "room_id", "name")):
        # Several processes may sweep at once: whoever updates the row announces it. A
        # participant that resumed on the row meanwhile is fresh again: not swept.
        if Participant.objects.filter(pk=pk, **stale).update(left_at=now):
            swept.append(Swept(room_id, name, pk))
    return swept


# --- Moderation (the admin calls these through chat/moderation.py) -------------------


@dataclass(frozen=True)
class Removed:
    """A participant an admin removed: its room, and its socket's outbox."""

    room_id: UUID
    name: str
    participant_id: int
    outbox_id: str


@transaction.atomic
def room_close(*, room_id: UUID, now: datetime) -> bool:
    """Close an open room: its join key stops working and everyone present is marked
    gone (they are told `room_closed` and disconnected, not `ParticipantLeft`).
    History and files stay until the room is deleted. False if it was closed already."""
    closed = Room.objects.filter(pk=room_id, closed_at__isnull=True).update(closed_at=now)
    Participant.objects.filter(room_id=room_id, left_at__isnull=True).update(left_at=now)
    return bool(closed)


def participant_remove(*, participant_id: int, now: datetime) -> Removed | None:
    """Mark a present participant gone and ban its browser session and its address from
    the room, under any name, for KICK_BAN_SECONDS. None if it had left already."""
    with transaction.atomic():
        participant = (
            Participant.objects.select_for_update().filter(pk=participant_id, left_at__isnull=True).first()
        )
        if participant is None:
            return None
        participant.left_at = now
        participant.token_hash = ""  # its participant token is dead
        participant.save(update_fields=["left_at", "token_hash"])
        Ban.objects.create(
            room_id=participant.room_id,
            name_key=participant.name_key,
            session_hash=participant.session_hash,
            address=participant.address,
            until=now + timedelta(seconds=settings.KICK_BAN_SECONDS),
        )
    return Removed(participant.room_id, participant.name, participant.pk, participant.outbox_id)


def messages_delete(
    *, message_ids: list[int], now: datetime
) -> list[tuple[UUID, int, int | None, list[dict]]]:
    """Delete messages (an admin's action); returns (room id, id, seq, after) of each, to
    tell the rooms. Each delete takes its open room's next sequence number, as a member's
    does (`_room_step`), so that every process hands it out after the message it
    removes; a closed room has nobody to tell in order (None). The rooms are locked
    first, in key order, as message batches lock them (chat/sql.py) and before any
    message row, as a member's edit, delete or reaction locks its room before its
    message, so that none of them deadlock with it; a message a member deleted while
    the lock was awaited is not deleted again.
    `after`: the room messages the `message_deleted` receivers ask to publish after it,
    as for a member's delete (a file's message takes its file: its FileDeleted)."""
    messages = Message.objects.filter(pk__in=message_ids)
    with transaction.atomic():
        rooms = set(messages.values_list("room_id", flat=True))
        list(Room.objects.select_for_update().filter(pk__in=rooms).order_by("pk").values_list("pk"))
        found = list(messages.order_by("room_id", "pk").values_list("room_id", "pk", "content"))
        Message.objects.filter(pk__in=[pk for _, pk, _ in found]).delete()
        deleted = []
        for room_id, pk, content in found:
            step = sql.room_step(room_id, None)
            if step is not None:
                _changed(room_id, step, pk, Change.Kind.DELETE)
            replies = message_deleted.send(Message, room_id=room_id, content=content, now=now)
            deleted.append((room_id, pk, step, [reply for _, reply in replies if reply]))
        return deleted


# --- A participant's own messages (PROTOCOL.md, Conversations) -------------------------

# Sent inside the transaction that deletes a participant's message, with its `room_id`
# and `content`. A receiver may return a room message to publish once it commits:
# files/signals.py deletes the file of a file's message and returns its FileDeleted.
message_deleted = Signal()


def _room_step(seat: Seat) -> int:
    """Take the room's next sequence number for an edit, a delete or a reaction, so that
    every process hands it out after the message it changes (chat/hub.py orders a
    room's events by it); the room row stays locked until the transaction ends. A seat
    no longer present is its `SeatGone`, a closed room `room_closed`."""
    stepped = sql.room_step(seat.room_id, seat.participant_id)
    if stepped is None:
        raise seat_gone(seat.participant_id) or ProtocolError(ErrorCode.ROOM_CLOSED)
    return stepped


def _changed(room_id: UUID, step: int, message_id: int, kind: str) -> None:
    """Record the change a room step was (`Change`), in its transaction."""
    sql.changes_write([(sql.prep(Room, "id", room_id), step, message_id, kind)])


def _own_message(seat: Seat, message_id: int, *, owner_may: bool) -> dict:
    """The message's author and content, if it is in the seat's room and the seat may
    change it: its author, or (`owner_may`) an owner of the room."""
    found = (
        Message.objects.filter(pk=message_id, room_id=seat.room_id)
        .values("author", "content", "sent_at")
        .first()
    )
    if found is None:
        raise ProtocolError(ErrorCode.MESSAGE_NOT_FOUND)
    if found["author"] != seat.participant_id and not (owner_may and seat.is_owner):
        raise ProtocolError(ErrorCode.FORBIDDEN, "Only its author may change this message.")
    return found


def message_edit(*, seat: Seat, message_id: int, content: str, now: datetime) -> int:
    """Replace the content of the seat's own message, within CHAT_EDIT_WINDOW of its
    sending and never a file's message; returns the edit's room sequence number."""
    with transaction.atomic():
        step = _room_step(seat)
        found = _own_message(seat, message_id, owner_may=False)
        if found["content"].startswith(FILE_MESSAGE_PREFIX):
            raise ProtocolError(ErrorCode.FORBIDDEN, "A file's message cannot be edited.")
        if now - found["sent_at"] > timedelta(seconds=settings.CHAT_EDIT_WINDOW):
            raise ProtocolError(ErrorCode.FORBIDDEN, "This message is too old to edit.")
        Message.objects.filter(pk=message_id).update(content=content, edited_at=now)
        _changed(seat.room_id, step, message_id, Change.Kind.EDIT)
    return step


def message_delete(*, seat: Seat, message_id: int, now: datetime) -> tuple[int, list[dict]]:
    """Delete a message of the seat's (or any, for an owner): its row is gone at once
    (SQLite zeroes it in the database file, `secure_delete`; the WAL and backups keep
    their copies until overwritten, PostgreSQL its dead rows until a vacuum). Returns
    the delete's room sequence number and the room messages the `message_deleted`
    receivers ask to publish after it."""
    with transaction.atomic():
        step = _room_step(seat)
        found = _own_message(seat, message_id, owner_may=True)
        Message.objects.filter(pk=message_id).delete()
        _changed(seat.room_id, step, message_id, Change.Kind.DELETE)
        replies = message_deleted.send(Message, room_id=seat.room_id, content=found["content"], now=now)
    return step, [reply for _, reply in replies if reply]


@dataclass(frozen=True)
class Reacting:
    """A seat's `React`, as a batch of reactions takes it (chat/batching.py)."""

    seat: Seat
    message_id: int
    emoji: str
    on: bool


def messages_react(changes: list[Reacting]) -> list[tuple[int, list[dict]] | ProtocolError]:
    """Apply many reactions in one transaction (chat/batching.py), in order, each as it
    would be alone: for each, its room sequence number and its message's whole reaction
    state just after it, or why it changed nothing (`SeatGone`, `room_closed`,
    `message_not_found`, `quota_exceeded`: a new emoji past REACTIONS_PER_MESSAGE
    distinct ones, or a reaction past REACTIONS_PER_MESSAGE_IN_ALL). A later reaction
    sees the earlier ones, so two that race for a message's last place get one each way.

    Seven statements for the whole batch (`sql.reactions_read`, `sql.reactions_write`),
    not several for each reaction: under load every statement of the database thread
    waits its turn for the interpreter (bench/README.md, "Chat beside Typing and React")."""
    if not changes:
        return []
    keys = [sql.prep(Room, "id", change.seat.room_id) for change in changes]
    with transaction.atomic():
        read = sql.reactions_read(
            sorted(set(keys)),
            sorted({change.seat.participant_id for change in changes}),
            sorted({change.message_id for change in changes}),
        )
        # Each message's reactions in order, as [id (None: added by this batch), seat, name, emoji].
        on_message: dict[int, list[list]] = {}
        for reaction_id, message_id, participant_id, name, emoji in read.rows:
            on_message.setdefault(message_id, []).append([reaction_id, participant_id, name, emoji])
        steps: Counter = Counter()
        removed: list[int] = []
        changed: list[tuple[Any, int, int, str]] = []
        results: list[tuple[int, list[dict]] | ProtocolError] = []
        for change, key in zip(changes, keys, strict=True):
            seat = change.seat
            if key not in read.seqs or seat.participant_id not in read.present:
                results.append(seat_gone(seat.participant_id) or ProtocolError(ErrorCode.ROOM_CLOSED))
                continue
            if read.rooms_of.get(change.message_id) != key:
                results.append(ProtocolError(ErrorCode.MESSAGE_NOT_FOUND))
                continue
            entries = on_message.setdefault(change.message_id, [])
            mine = next((e for e in entries if e[1] == seat.participant_id and e[3] == change.emoji), None)
            if change.on and mine is None:
                if _reactions_full(entries, change.emoji):
                    full = "This message has as many reactions as it may."
                    results.append(ProtocolError(ErrorCode.QUOTA_EXCEEDED, full))
                    continue
                entries.append([None, seat.participant_id, seat.name, change.emoji])
            elif not change.on and mine is not None:
                entries.remove(mine)
                if mine[0] is not None:
                    removed.append(mine[0])
            steps[key] += 1
            state = selectors.reaction_state((emoji, name) for _, _, name, emoji in entries)
            results.append((read.seqs[key] + steps[key], state))
            changed.append((key, read.seqs[key] + steps[key], change.message_id, Change.Kind.REACT))
        added = [
            (message_id, seat_id, name, emoji)
            for message_id, entries in on_message.items()
            for reaction_id, seat_id, name, emoji in entries
            if reaction_id is None
        ]
        sql.reactions_write(dict(steps), added, removed)
        sql.changes_write(changed)
    return results


def _reactions_full(entries: list[list], emoji: str) -> bool:
    """Whether a message with these reactions takes no more of `emoji`."""
    kinds = {entry[3] for entry in entries}
    new_kind = emoji not in kinds and len(kinds) >= settings.REACTIONS_PER_MESSAGE
    return new_kind or len(entries) >= settings.REACTIONS_PER_MESSAGE_IN_ALL


def message_react(*, seat: Seat, message_id: int, emoji: str, on: bool) -> tuple[int, list[dict]]:
    """Add (`on`) or take back the seat's `emoji` on a message of its room, alone (see
    `messages_react`): its room sequence number and the message's whole reaction state."""
    (result,) = messages_react([Reacting(seat, message_id, emoji, on)])
    if isinstance(result, ProtocolError):
        raise result
    return result
