"""What each chat command does, step by step: the orchestration between one socket and
the domain (services, selectors, the hub), the mirror of chat/moderation.py for what an
admin does. chat/consumers.py decodes a frame, calls `run` and sends; the files'
commands (UploadFile, GetFile, DeleteFile) are in files/actions.py, built on the steps
here.

Each action checks in PROTOCOL.md's order (the connection's state, then rate limits,
then the rest), does its database work through the bounded queue (`workers.database`)
or the group commit (`batching`), and answers on the socket's `Outbox` before it
broadcasts through the hub (`hub.publish`).
"""

import asyncio
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from time import monotonic
from typing import Any

from django.conf import settings
from django.utils import timezone
from redis.exceptions import RedisError

from chat import batching, passwords, presence, protocol, selectors, services
from chat.address_limits import address_joins, room_creations
from chat.errors import STORAGE_FULL, CloseCode, ErrorCode, OverLimit, ProtocolError, storage_full
from chat.hub import deletion_events, hub, publish, publish_all
from chat.oplog import error_event, event
from chat.outbox import WRITABLE, WRITE_NOW, Outbox, add_backlog, large_reply_fits
from chat.ratelimit import (
    AddressBuckets,
    RedisAddressBuckets,
    SlidingWindow,
    TokenBucket,
    chat_bytes,
    checked_password,
    join_failures,
    read_bytes,
    room_deliveries,
    room_fan_out,
    shared_bytes,
    shared_deliveries,
    take_slot,
    uploads_in_flight,
)
from chat.workers import Busy, database, on_database_thread

logger = logging.getLogger(__name__)

# Answers after which a frame gives back the place it took in a per-connection window:
# PROTOCOL.md counts only frames that reach the rate check, and a `rate_limited` one
# only toward the 1008 rule (an upload's base64 is judged after its cheap checks).
GIVEN_BACK = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.INVALID_FIELD, ErrorCode.INVALID_JSON})


def _minute() -> SlidingWindow:
    return SlidingWindow(60)


@dataclass(eq=False)
class Connection:
    """One socket's state: who it is, its seat, its per-connection limits and its
    outbox. `slot` and `reserved` belong to the frame being handled."""

    outbox: Outbox
    address: str | None
    session_key: str | None
    seat: services.Seat | None = None
    chat_bucket: TokenBucket = field(
        default_factory=lambda: TokenBucket(settings.CHAT_RATE_BURST, settings.CHAT_RATE_SUSTAINED)
    )
    refusals: SlidingWindow = field(default_factory=lambda: SlidingWindow(settings.ABUSE_WINDOW))
    uploads: SlidingWindow = field(default_factory=_minute)  # FILES_UPLOADS_PER_MINUTE
    joins: SlidingWindow = field(default_factory=_minute)  # JOINS_PER_MINUTE
    reads: SlidingWindow = field(default_factory=_minute)  # READS_PER_MINUTE
    # Typing (PROTOCOL.md, Conversations): when one was last forwarded, and the bucket
    # that bounds the frames dropped meanwhile (made by the first Typing).
    typed_at: float = float("-inf")
    typing_bucket: TokenBucket | None = None
    slot: SlidingWindow | TokenBucket | None = None  # the window place (or token) this frame took
    join_claim: tuple[str, str] | None = None  # and its place in its address's joins
    reserved: int = 0  # what this frame's large reply holds of its address's backlog
    # The room, what this frame took of its address's DELIVERIES_PER_ADDRESS_* and of its
    # room's DELIVERIES_PER_ROOM_* (take_deliveries), and the two buckets it took it
    # from: given back if it is refused.
    deliveries: "Charged | None" = None

    def send(self, message: dict) -> None:
        """Queue a reply behind everything queued for this socket before it."""
        self.outbox.put(protocol.encode(message))


# What runs a client command: a coroutine of the connection and the parsed command.
type Action = Callable[[Connection, Any], Awaitable[None]]


# --- The socket's life ----------------------------------------------------------------


def open_connection(
    send: Callable[[str], Awaitable[None]],
    close: Callable[[int], Awaitable[None]],
    address: str | None,
    session_key: str | None,
    write_now: Callable[[str, bytes | None], bool] | None = None,
    writable: Callable[[], Awaitable[object]] | None = None,
) -> Connection:
    """`write_now`, `writable`: the server's immediate write and its wait for the socket's
    write buffer to drain, where it offers them (chat/outbox.py)."""
    outbox = Outbox(send, close, owner=address or "unknown", write_now=write_now, writable=writable)
    presence.connection_opened()
    event("connect", client=address)
    return Connection(outbox, address, session_key)


def immediate_writer(scope: Mapping[str, Any]) -> Callable[[str, bytes | None], bool] | None:
    """The immediate write `manage.py serve` offers in the socket's scope, if any."""
    return scope.get("extensions", {}).get(WRITE_NOW)


def writable_waiter(scope: Mapping[str, Any]) -> Callable[[], Awaitable[object]] | None:
    """The wait for a drained write buffer `manage.py serve` offers, if any."""
    return scope.get("extensions", {}).get(WRITABLE)


async def close_connection(conn: Connection, code: int) -> None:
    """However the socket closed: leave the room, unless its participant resumed on
    another connection (closed 4003), which holds the seat now."""
    seat = conn.seat
    event("disconnect", code=code, room=seat and seat.room_id, participant=seat and seat.participant_id)
    try:
        if seat is not None and conn.outbox.closing == CloseCode.REPLACED:
            conn.seat = None
            presence.live_seats.discard(seat.participant_id, conn.outbox.id)
            await hub.leave(seat.room_id, conn.outbox)
        elif seat is not None:
            await leave(conn)
    except Exception:
        # The database or the layer is down: the seat ages out like a ghost.
        logger.exception("leaving the room on disconnect failed")
    finally:
        conn.outbox.stop()
        presence.connection_closed()


def hold_frame(text: str) -> int:
    """A large frame (over protocol.LARGE_STRING: an upload) takes its bytes from this
    process's UPLOADS_IN_FLIGHT_BYTES before it is parsed; past it the frame is
    `rate_limited` unread. `frame_done` gives them back once the frame is answered."""
    if not uploads_in_flight.take(len(text)):
        raise OverLimit("UPLOADS_IN_FLIGHT_BYTES", "The server is busy with uploads; try again shortly.")
    return len(text)


def frame_done(conn: Connection, held: int) -> None:
    """The frame is answered: what it held goes back, and its window place is settled."""
    if held:
        uploads_in_flight.give(held)
    if conn.reserved:
        add_backlog(conn.outbox.owner, -conn.reserved)
        conn.reserved = 0
    conn.slot = None
    conn.join_claim = None
    conn.deliveries = None


async def run(conn: Connection, action: Action, command: Any) -> None:
    """Do what `command` asks; a seat the database found gone is answered as its
    event would have been."""
    try:
        await action(conn, command)
    except services.SeatGone as exc:
        await seat_gone(conn, exc)


async def refuse(conn: Connection, exc: ProtocolError) -> None:
    """Answer a refused frame with its `Error`; past ABUSE_RATE_LIMITED_FRAMES
    `rate_limited` answers in ABUSE_WINDOW, close the socket with 1008."""
    if conn.slot is not None and exc.code in GIVEN_BACK:
        conn.slot.give_back()
    give_back_deliveries(conn)  # a refused frame hands nothing out
    if conn.join_claim is not None and exc.code in GIVEN_BACK:
        claim, conn.join_claim = conn.join_claim, None
        try:
            await address_joins().release(*claim)
        except (RedisError, OSError):  # the answer still goes; the place leaves in a minute
            logger.warning("could not give back a join place of %s", claim[0])
    conn.send(protocol.error_message(exc.code, exc.message))
    limit = {"limit": exc.setting} if isinstance(exc, OverLimit) else {}
    error_event(conn, code=exc.code.value, client=conn.address, **limit)  # rate-limited
    if exc.code == ErrorCode.RATE_LIMITED:
        count_refusal(conn)


async def fail(conn: Connection, exc: Exception) -> None:
    """A frame whose handling failed unexpectedly: `server_error`, and the traceback in
    the log; a full disk in one line instead, since every frame fails the same way
    until space is back (and the log may be on that disk)."""
    if storage_full(exc):
        logger.warning("storage is full: a frame was refused (%s: %s)", type(exc).__name__, exc)
        await refuse(conn, ProtocolError(ErrorCode.SERVER_ERROR, STORAGE_FULL))
        return
    logger.exception("unexpected error handling a client frame", exc_info=exc)
    await refuse(conn, ProtocolError(ErrorCode.SERVER_ERROR))


def count_refusal(conn: Connection) -> None:
    """A frame refused for its rate: past ABUSE_RATE_LIMITED_FRAMES of them in
    ABUSE_WINDOW, the socket is closed with 1008."""
    if conn.refusals.add() > settings.ABUSE_RATE_LIMITED_FRAMES:
        event("abuse_close", close=CloseCode.ABUSE, client=conn.address)
        conn.outbox.put_close(CloseCode.ABUSE)


# --- Commands ----------------------------------------------------------------------


async def create_room(conn: Connection, command: protocol.CreateRoom) -> None:
    require_no_room(conn)
    await take_join(conn)
    if command.password and passwords.busy():  # refused before any Redis round trip
        raise Busy("PASSWORD_HASH_QUEUE")
    # ROOMS_PER_HOUR per address: a place taken first, given back if no room was made.
    rooms, address = room_creations(), conn.address or "unknown"
    claim = await rooms.claim(address, settings.ROOMS_PER_HOUR)
    if claim is None:
        message = rooms_refusal(settings.ROOMS_PER_HOUR, await rooms.free_in(address))
        raise OverLimit("ROOMS_PER_HOUR", message)
    try:
        password_hash = ""
        if command.password:
            password_hash = await passwords.off_loop(passwords.password_hash, command.password)
        await hub.start()
        room, seat, owner_token = await database(services.room_create)(
            name=command.name,
            description=command.description,
            password_hash=password_hash,
            owner_name=command.owner_name,
            where=where(conn),
            now=timezone.now(),
            key_check=command.key_check if command.sealed else None,
        )
    except BaseException:
        await rooms.release(address, claim)
        raise
    conn.outbox.keep_stale(None)
    await hub.join(seat.room_id, conn.outbox)
    hub.seated(seat.room_id, [seat.participant_id])  # whoever joins elsewhere, the hub hears of
    take_seat(conn, seat)
    # Before the reply: a page that fetches /files/<id> right after must be let in.
    await remember_room(conn, seat)
    info = selectors.room_info(room)
    conn.send(protocol.room_created_message(info, room.encryption_key, owner_token, seat.name, seat.token))
    event("create", room=room.pk, participant=seat.participant_id)


async def join_room(conn: Connection, command: protocol.JoinRoom) -> None:
    require_no_room(conn)
    await take_join(conn)
    await ready_for_large_reply(conn, history_estimate(settings.CHAT_HISTORY_LIMIT))
    address = conn.address or "unknown"
    failures = join_failures()
    if await failures.blocked(address):
        raise OverLimit("JOIN_FAILURES_PER_MINUTE", "Too many wrong passwords; wait a minute.")
    door = remembered = selectors.door_cache.get(command.join_key)
    if door is None:
        door = await open_door(command.join_key)
    if (refused := await charge_presence(conn, door.room.pk)) is not None:
        raise refused
    if door.password_hash:
        # Argon2 runs in low-priority threads, beside the loop and the database thread;
        # the guess holds its place in the address's limit before it is checked.
        async def check() -> bool:
            right = await passwords.off_loop(passwords.password_matches, command.password, door.password_hash)
            if not right and remembered is not None:
                # The room may have closed since this process remembered its door: then
                # the answer is room_not_found, and the guess is not counted.
                await open_door(command.join_key)
            return right

        if not await checked_password(failures, address, check):
            # Counted like any wrong_password answer (PROTOCOL.md), but said as it is.
            unasked = "This room needs a password." if not command.password else None
            raise ProtocolError(ErrorCode.WRONG_PASSWORD, unasked)
    # Join the room in the hub before reading the history: a message committed meanwhile then
    # arrives live instead of being lost; it is held until RoomJoined and History
    # are queued, and dropped if History already holds it.
    conn.outbox.hold()
    try:
        await hub.join(door.room.pk, conn.outbox)
    except BaseException:
        conn.outbox.held = None  # the hub dropped the socket: nothing would release them
        raise
    try:
        joined = await database(services.room_join)(
            room=door.room,
            name=command.name,
            where=where(conn),
            owner_token=command.owner_token,
            since=command.since,
            now=timezone.now(),
            participant_token=command.participant_token,
        )
    except BaseException as exc:
        conn.outbox.held = None
        conn.outbox.keep_stale(None)
        await hub.leave(door.room.pk, conn.outbox)
        if isinstance(exc, ProtocolError) and exc.code == ErrorCode.ROOM_NOT_FOUND:
            selectors.door_cache.forget(command.join_key)  # closed: no more password checks
        raise
    seat = take_seat(conn, joined.seat)
    hub.seated(seat.room_id, [participant_id for participant_id, _ in joined.present])
    charge_the_rest(conn, len(joined.present) - 1)
    await remember_room(conn, seat)  # before the reply, as in create_room
    event("join", room=seat.room_id, participant=seat.participant_id, owner=seat.is_owner)
    names = [name for _, name in joined.present]
    info = selectors.room_info(joined.room)
    conn.send(protocol.room_joined_message(info, joined.room.encryption_key, names, seat.name, seat.token))
    if joined.history:
        conn.outbox.put(await history_frame(joined.history))
    conn.outbox.release(stale=joined.snapshot(command.since).shows)
    await presence.announce_left(joined.swept)
    if joined.replaced is not None:
        # Resumed while present: its other connection is closed, and nobody else is told.
        await publish(seat.room_id, REPLACED, only=joined.replaced, close=CloseCode.REPLACED)
    if joined.returned:
        give_back_deliveries(conn)  # told to nobody
        return
    if joined.replaced is not None:
        # Resumed a ghost that joiners since were not shown: swept for the others, as the
        # heartbeat's sweep would have, and back (below), whoever sweeps first.
        await tell_others(conn, seat, arrived=False)
    await tell_others(conn, seat, arrived=True)


async def open_door(join_key: str) -> selectors.Door:
    """The open room's door, read from the database and remembered; a key no open room
    has is forgotten and answered room_not_found."""
    try:
        door = await database(selectors.room_door)(join_key=join_key)
    except ProtocolError as exc:
        if exc.code == ErrorCode.ROOM_NOT_FOUND:
            selectors.door_cache.forget(join_key)
        raise
    selectors.door_cache.put(join_key, door)
    return door


async def tell_others(conn: Connection, seat: services.Seat, *, arrived: bool) -> None:
    """`ParticipantJoined` (or `ParticipantLeft`) of this socket's seat to the others."""
    message = protocol.participant_joined_message if arrived else protocol.participant_left_message
    await publish(
        seat.room_id,
        message(seat.name),
        exclude=conn.outbox.id,
        participant_id=seat.participant_id,
        joined=arrived,
    )


async def chat_message(conn: Connection, command: protocol.ChatMessage) -> None:
    seat = require_room(conn)
    await take_chat(conn, command.content)
    now = timezone.now()
    message_id, seq = await batching.post_message(seat, command.content, now, command.reply_to)
    await publish(
        seat.room_id,
        protocol.chat_message(message_id, seat.name, command.content, now, command.reply_to),
        message_id=message_id,
        seq=seq,
    )


# What a stored chat frame costs beyond its content, in its address's bytes: its row,
# its index entries and the room's step, roughly.
ROW_BYTES = 512


async def take_chat(conn: Connection, content: str | None = None) -> None:
    """The chat rate limit, which edits, deletes and reactions count toward too, the
    content's size, then what the client's address may store in all
    (CHAT_BYTES_PER_ADDRESS_*: its content and ROW_BYTES), across processes with Redis."""
    if not conn.chat_bucket.take():
        raise OverLimit("CHAT_RATE_*")
    conn.slot = conn.chat_bucket  # given back if the frame is refused for its rate after all
    await take_deliveries(conn)
    size = 0 if content is None else len(content)
    if size > settings.CHAT_MAX_CONTENT:
        raise ProtocolError(ErrorCode.MESSAGE_TOO_LARGE)
    address, amount = conn.address or "unknown", size + ROW_BYTES
    shared = shared_bytes()
    if not (chat_bytes.take(address, amount) if shared is None else await shared.take(address, amount)):
        raise OverLimit("CHAT_BYTES_PER_ADDRESS_*", "Too much stored from this address; wait a moment.")


async def take_deliveries(conn: Connection) -> None:
    """What handing the frame's room event out costs: a delivery for each socket of the
    room, from its address's DELIVERIES_PER_ADDRESS_* and from its room's
    DELIVERIES_PER_ROOM_*. Every other limit counts frames or bytes, and
    one address within them all still had a room of a thousand handed 4,700 messages in
    30 s (bench/README.md, "A crowd in one room"); the address's bucket bounds what one
    address's chat costs the process, whatever the room's size, and the room's what many
    addresses together can make one room cost it. The room's sockets in every process
    count (`hub.members_in`): charged for its own process's alone, a sender on a process
    where the room has few (a wrong affinity hint) had the room's process hand out what
    it liked. With Redis the buckets are every process's (`shared_deliveries`), else
    this one's (docs/protocol-notes.md)."""
    if (refused := await charge_deliveries(conn)) is not None:
        raise refused


async def charge_deliveries(conn: Connection, keep: float = 0.0) -> OverLimit | None:
    """Take the frame's deliveries from both buckets (take_deliveries), each leaving `keep`
    of its burst (a Typing's TYPING_KEEPS; 0: a full bucket lends what a room larger than
    its burst asks); on a refusal, take nothing and return the refusal."""
    assert conn.seat is not None  # in a room: its caller's require_room
    room_id = conn.seat.room_id
    return await charge(conn, room_id, hub.members_in(room_id), keep, SAID)


async def charge_presence(conn: Connection, room_id: uuid.UUID) -> OverLimit | None:
    """What a join costs: its `ParticipantJoined`, and its `ParticipantLeft` to come, to
    each socket of the room, from its address's and its room's buckets. Comings and
    goings from many addresses, each within its join limits, had a room of a thousand
    cost a process as much as chat (bench/README.md, "Comings and goings in one room").
    Taken before the join as a message's are, so that many joins at once cannot pass one
    check together, for the room's members this process knows of (`hub.members_in`); what
    the join then finds present beyond them is spent after it (`charge_the_rest`). All of
    it is given back if the join is refused or told to nobody (a seat resumed while
    present)."""
    return await charge(conn, room_id, 2 * hub.members_in(room_id), 0.0, JOINED)


def charge_the_rest(conn: Connection, present: int) -> None:
    """A join found `present` participants in the room besides itself, more than this
    process knew of when it took its deliveries (the room's members are on other
    processes): what it owes them is spent whatever the buckets hold, as the join is in."""
    charged = conn.deliveries
    assert charged is not None  # the join's charge_presence
    owed = min(2 * present, settings.DELIVERIES_PER_ADDRESS_BURST, settings.DELIVERIES_PER_ROOM_BURST)
    owed -= charged.amount
    if owed > 0:
        charged.by_address.spend(conn.address or "unknown", owed)
        charged.by_room.spend(charged.room, owed)
        charged.amount += owed  # all given back if nobody is told


# What a refusal by the address's and by the room's deliveries says.
SAID = (
    "Too much said from this address to a room this size; wait a moment.",
    "Too much said in this room at once; wait a moment.",
)
JOINED = (
    "Too many joins from this address to a room this size; wait a moment.",
    "Too many joining this room at once; wait a moment.",
)


@dataclass(slots=True)
class Charged:
    """What a frame took of the deliveries (`charge`), and from which buckets."""

    room: str
    amount: int
    by_address: AddressBuckets | RedisAddressBuckets
    by_room: AddressBuckets | RedisAddressBuckets


async def charge(
    conn: Connection, room_id: uuid.UUID, amount: int, keep: float, said: tuple[str, str]
) -> OverLimit | None:
    """Take `amount` deliveries (at most a burst) from the address's bucket and the room's,
    with Redis those of every process (`shared_deliveries`); refused, take nothing and
    return the refusal, which says `said` (the address's words, the room's). With `keep`
    (a Typing's), only from this process's buckets, each leaving `keep` of its burst: a
    hint, which never asks Redis."""
    room, address = str(room_id), conn.address or "unknown"
    wanted = min(amount, settings.DELIVERIES_PER_ADDRESS_BURST, settings.DELIVERIES_PER_ROOM_BURST)
    by_address, by_room = (None if keep else shared_deliveries()) or (room_deliveries, room_fan_out)
    if not await take_from(by_address, address, wanted, keep * settings.DELIVERIES_PER_ADDRESS_BURST):
        return OverLimit("DELIVERIES_PER_ADDRESS_*", said[0])
    if not await take_from(by_room, room, wanted, keep * settings.DELIVERIES_PER_ROOM_BURST):
        by_address.give_back(address, wanted)
        return OverLimit("DELIVERIES_PER_ROOM_*", said[1])
    # Given back if the frame is refused after all (`refuse`).
    conn.deliveries = Charged(room, wanted, by_address, by_room)
    return None


async def take_from(
    buckets: AddressBuckets | RedisAddressBuckets, key: str, amount: int, keep: float
) -> bool:
    """A take from this process's buckets, leaving `keep`, or from those in Redis (never
    asked with a `keep`: `charge`)."""
    if isinstance(buckets, RedisAddressBuckets):
        return await buckets.take(key, amount)
    return buckets.take(key, amount, keep=keep)


def give_back_deliveries(conn: Connection) -> None:
    """What the frame took (`charge`) and will not hand out: it was refused, or its room
    is told nothing."""
    if (charged := conn.deliveries) is not None:
        conn.deliveries = None
        charged.by_address.give_back(conn.address or "unknown", charged.amount)
        charged.by_room.give_back(charged.room, charged.amount)


async def edit_message(conn: Connection, command: protocol.EditMessage) -> None:
    seat = require_room(conn)
    await take_chat(conn, command.content)
    now = timezone.now()
    step = await database(services.message_edit)(
        seat=seat, message_id=command.id, content=command.content, now=now
    )
    edited = protocol.message_edited_message(command.id, command.content, now)
    await publish(seat.room_id, edited, seq=step, changes=command.id)


async def delete_message(conn: Connection, command: protocol.DeleteMessage) -> None:
    seat = require_room(conn)
    await take_chat(conn)
    step, after = await database(services.message_delete)(
        seat=seat, message_id=command.id, now=timezone.now()
    )
    await publish_all(deletion_events(seat.room_id, command.id, step, after))


async def react(conn: Connection, command: protocol.React) -> None:
    seat = require_room(conn)
    await take_chat(conn)
    step, state = await batching.post_reaction(seat, command.id, command.emoji, command.on)
    await publish(seat.room_id, protocol.reactions_message(command.id, state), seq=step, changes=command.id)


# The room event that closes a resumed participant's other connection: no frame, a close.
REPLACED: dict = {}

# Seconds between two Typing frames a connection's room is told of (PROTOCOL.md).
TYPING_INTERVAL = 3.0

# The share of each deliveries burst (the address's, the room's) that Typing leaves to
# messages: people typing behind one NAT in a large room never crowd out what they say.
TYPING_KEEPS = 0.5


async def typing(conn: Connection, command: protocol.Typing) -> None:
    """Tell the others, at most once per TYPING_INTERVAL; the rest are dropped without
    an answer, and a flood of them (past TYPING_FRAMES_PER_SECOND) counts toward the
    1008 rule. Nothing is stored. Handing it out costs the room's sockets in this
    process, as a message does (`take_deliveries`), but only from the upper half of its
    address's and its room's buckets (TYPING_KEEPS): past that it is dropped too."""
    seat = require_room(conn)
    if conn.typing_bucket is None:
        rate = settings.TYPING_FRAMES_PER_SECOND
        conn.typing_bucket = TokenBucket(2 * rate, rate)
    if not conn.typing_bucket.take():
        count_refusal(conn)
        return
    now = monotonic()
    if now - conn.typed_at < TYPING_INTERVAL:
        return
    if await charge_deliveries(conn, keep=TYPING_KEEPS) is not None:
        return  # dropped as the others are: typing is a hint
    conn.typed_at = now
    await publish(seat.room_id, protocol.typing_message(seat.name), exclude=conn.outbox.id)


async def get_history(conn: Connection, command: protocol.GetHistory) -> None:
    """Older messages, a page at a time (PROTOCOL.md, Conversations)."""
    seat = require_room(conn)
    take_read(conn)
    await ready_for_large_reply(conn, history_estimate(command.limit))
    page = await database(selectors.history_before)(
        room_id=seat.room_id, before=command.before, limit=command.limit
    )
    conn.outbox.put(read_reply(conn, await history_frame(page, command.before)))


async def get_members(conn: Connection, command: protocol.GetMembers) -> None:
    seat = require_room(conn)
    take_read(conn)
    await ready_for_large_reply(conn, 0)
    # The seat is checked in the same query (SeatGone): a kick whose event was lost lists no one.
    names = await database(services.seat_members)(seat=seat, now=timezone.now())
    conn.outbox.put(read_reply(conn, protocol.encode(protocol.members_message(names))))


async def leave_room(conn: Connection, command: protocol.LeaveRoom) -> None:
    require_room(conn)
    await leave(conn)


# The chat's commands and their actions: an explicit table, never getattr(self, type).
# files/actions.py has the files' commands; config/routing.py gives the consumer both.
ACTIONS: dict[type, Action] = {
    protocol.CreateRoom: create_room,
    protocol.JoinRoom: join_room,
    protocol.ChatMessage: chat_message,
    protocol.EditMessage: edit_message,
    protocol.DeleteMessage: delete_message,
    protocol.React: react,
    protocol.Typing: typing,
    protocol.GetHistory: get_history,
    protocol.GetMembers: get_members,
    protocol.LeaveRoom: leave_room,
}


# --- Steps the commands share --------------------------------------------------------


def where(conn: Connection) -> services.Where:
    return services.Where(
        conn.outbox.id,
        presence.PROCESS_ID,
        conn.address,
        services.token_hash(conn.session_key) if conn.session_key else "",
    )


async def ready_for_large_reply(conn: Connection, most: int) -> None:
    """A large reply (History, Members, FileContent) is built only once the socket
    has written what it was sent (a client that does not read holds at most one),
    and while its address's sockets have room for `most` more bytes under
    WS_SEND_QUEUE_BYTES (else `rate_limited`); `most` is held for the address until
    the frame is answered, so simultaneous requests cannot all pass the check
    (docs/protocol-notes.md, "Large replies wait for the reader")."""
    await conn.outbox.drained()
    if not large_reply_fits(conn.outbox.owner, most):
        raise OverLimit("WS_SEND_QUEUE_BYTES", "Your connections have much unread; read it first.")
    add_backlog(conn.outbox.owner, most)
    conn.reserved += most


def rooms_refusal(limit: int, free_in: float) -> str:
    """ROOMS_PER_HOUR's refusal in the client's terms (the log line names the setting)."""
    if limit <= 0:
        return "This server creates no rooms for this address."
    return f"Too many rooms from this address (at most {limit} an hour); wait {waiting_time(free_in)}."


def waiting_time(seconds: float) -> str:
    """`a minute`, `14 minutes`, `an hour`: a wait in a refusal, rounded up."""
    minutes = max(1, math.ceil(seconds / 60))
    if minutes == 1:
        return "a minute"
    return "an hour" if minutes >= 60 else f"{minutes} minutes"


async def take_join(conn: Connection) -> None:
    """A place in the connection's JOINS_PER_MINUTE, then in its address's
    JOINS_PER_ADDRESS_PER_MINUTE (every join costs a handshake's worth of the server and,
    unless resumed, a participant's row; a client that reconnects gets a new connection's
    window). A frame refused later for its rate gives both back (`refuse`)."""
    if not take_slot(conn.joins, settings.JOINS_PER_MINUTE):
        raise OverLimit("JOINS_PER_MINUTE", "Too many joins; wait a minute.")
    conn.slot = conn.joins
    address = conn.address or "unknown"
    claim = await address_joins().claim(address, settings.JOINS_PER_ADDRESS_PER_MINUTE)
    if claim is None:
        raise OverLimit("JOINS_PER_ADDRESS_PER_MINUTE", "Too many joins from this address; wait a minute.")
    conn.join_claim = (address, claim)


def take_read(conn: Connection) -> None:
    """A place in the connection's READS_PER_MINUTE, while its address has read less
    than READ_BYTES_PER_ADDRESS_* (each reply is counted once built: `read_reply`)."""
    if not take_slot(conn.reads, settings.READS_PER_MINUTE):
        raise OverLimit("READS_PER_MINUTE", "Too many requests; wait a minute.")
    conn.slot = conn.reads
    if not read_bytes.left(conn.address or "unknown"):
        raise OverLimit("READ_BYTES_PER_ADDRESS_*", "Your connections have read much; wait a moment.")


def read_reply(conn: Connection, text: str) -> str:
    """A read's reply, its bytes counted toward its address's READ_BYTES_PER_ADDRESS_*."""
    read_bytes.spend(conn.address or "unknown", len(text))
    return text


def require_room(conn: Connection) -> services.Seat:
    if conn.seat is None:
        raise ProtocolError(ErrorCode.NOT_IN_ROOM)
    return conn.seat


def require_no_room(conn: Connection) -> None:
    if conn.seat is not None:
        raise ProtocolError(ErrorCode.ALREADY_IN_ROOM)


def take_seat(conn: Connection, seat: services.Seat) -> services.Seat:
    conn.seat = seat
    presence.live_seats.add(seat.participant_id, conn.outbox.id)
    return seat


async def seat_gone(conn: Connection, exc: services.SeatGone) -> None:
    """The database found the seat gone (a kick or close whose layer event did not
    reach this process, or not yet): answer as the event would have, `kicked` or
    `room_closed` then its close, or `not_in_room` with the seat dropped."""
    await refuse(conn, exc)
    if exc.close is not None:
        conn.outbox.put_close(exc.close)
    elif conn.seat is not None:
        await leave(conn)


async def leave(conn: Connection) -> None:
    seat, conn.seat = require_room(conn), None
    presence.live_seats.discard(seat.participant_id, conn.outbox.id)
    hub.depart(seat.room_id, conn.outbox)
    try:
        left = await on_database_thread(services.participant_leave)(
            participant_id=seat.participant_id, now=timezone.now(), outbox_id=conn.outbox.id
        )
        if left:
            # Published as soon as it is written, before anything that may wait (the hub's
            # lock, which a renewal holds through Redis and the database): a resume of the
            # seat, which reads the leave, publishes its arrival after this departure.
            await publish(
                seat.room_id,
                protocol.participant_left_message(seat.name),
                participant_id=seat.participant_id,
                joined=False,
            )
    finally:
        await hub.leave(seat.room_id, conn.outbox)


async def remember_room(conn: Connection, seat: services.Seat) -> None:
    """Let the browser session behind this socket download the room's files."""
    if conn.session_key:
        await on_database_thread(services.session_room_add)(
            session_key=conn.session_key, room_id=seat.room_id
        )


def history_estimate(count: int) -> int:
    """What a History frame of `count` messages is reserved as: each of the longest
    content (4 bytes a character at worst is not assumed: content is base64). Reactions
    are not counted: a message's are bounded (REACTIONS_PER_MESSAGE_IN_ALL names), and
    reserving for the most of them would hold every join behind a NAT back for a room
    nobody reacts in (docs/protocol-notes.md, "Reactions")."""
    return count * (settings.CHAT_MAX_CONTENT + 512)


async def history_frame(messages: list[dict], before: int | None = None) -> str:
    """The History frame, encoded a message at a time with the loop free in between."""
    parts = []
    for part in protocol.history_parts(messages, before):
        parts.append(part)
        await asyncio.sleep(0)
    return "".join(parts)
