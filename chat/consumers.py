"""The WebSocket endpoint: decode -> parse -> one service call -> send/broadcast -> map errors."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from chat import batching, passwords, presence, protocol, selectors, services, sql
from chat.address_limits import room_creations
from chat.errors import ErrorCode, ProtocolError
from chat.events import error_event, event
from chat.hub import Outbox, add_backlog, address_backlog, hub, publish
from chat.ratelimit import (
    SlidingWindow,
    TokenBucket,
    checked_password,
    join_failures,
    take_slot,
    uploads_in_flight,
)
from chat.security import client_address, session_key_of
from chat.workers import Busy, database, heavy, work_owner
from files import services as files
from files import validation

logger = logging.getLogger(__name__)

CLOSE_ABUSE = 1008


class ChatConsumer(AsyncWebsocketConsumer):
    # No channel per socket: rooms reach sockets through this process's hub (chat/hub.py).
    channel_layer_alias = None
    seat: services.Seat | None = None
    outbox: Outbox | None = None
    # The place the frame being handled took in a per-connection window (see `give_back`).
    slot: SlidingWindow | None = None

    async def connect(self) -> None:
        """Called when the handshake has passed the origin check."""
        self.seat = None
        self.chat_bucket = TokenBucket(settings.CHAT_RATE_BURST, settings.CHAT_RATE_SUSTAINED)
        self.refusals = SlidingWindow(settings.ABUSE_WINDOW)
        self.uploads = SlidingWindow(60)
        self.joins = SlidingWindow(60)  # JOINS_PER_MINUTE
        self.reads = SlidingWindow(60)  # READS_PER_MINUTE
        self.outbox = Outbox(self.send_text, self.close_with, owner=client_address(self.scope) or "unknown")
        await self.accept()
        presence.connection_opened()
        event("connect", client=client_address(self.scope))

    async def disconnect(self, code: int) -> None:
        """Called when the socket closes, however it closes: leave the room."""
        seat = self.seat
        event("disconnect", code=code, room=seat and seat.room_id, participant=seat and seat.participant_id)
        try:
            if self.seat is not None:
                await self.leave()
        except Exception:
            # The database or the layer is down: the seat ages out like a ghost.
            logger.exception("leaving the room on disconnect failed")
        finally:
            if self.outbox is not None:
                self.outbox.stop()
            presence.connection_closed()

    async def dispatch(self, message: dict) -> None:
        # Channels' dispatch hops to the database thread to close stale connections
        # before every handler; database_sync_to_async already does that check.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_receive(self, message: dict) -> None:
        # Channels' dispatch loop keeps the last message until the next one arrives: the
        # frame is taken out of it, so that an idle socket does not hold its last upload.
        await self.receive(text_data=message.pop("text", None), bytes_data=message.pop("bytes", None))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Called with each client frame: errors become `Error`, never a closed socket."""
        if self.outbox.closing is not None:
            return  # closing (kicked, room closed, abuse): nothing more is done for it
        work_owner.set(client_address(self.scope))  # its share of the work queues
        held = 0  # this frame's share of UPLOADS_IN_FLIGHT_BYTES
        self.slot = None
        self.reserved = 0  # what this frame's large reply holds of its address's backlog
        try:
            if text_data is None:
                raise ProtocolError(ErrorCode.INVALID_JSON, "Binary frames are not accepted.")
            if len(text_data) > protocol.LARGE_STRING:
                held = hold_large_frame(text_data)
                command = await heavy.run(protocol.parse_large_frame, text_data)
            else:
                command = protocol.parse_client_message(text_data)
            await HANDLERS[type(command)](self, command)
        except services.SeatGone as exc:
            await self.seat_gone(exc)
        except ProtocolError as exc:
            self.give_back(exc)
            await self.refuse(exc)
        except Exception:
            logger.exception("unexpected error handling a client frame")
            await self.refuse(ProtocolError(ErrorCode.SERVER_ERROR))
        finally:
            uploads_in_flight.give(held)
            add_backlog(self.outbox.owner, -self.reserved)

    def give_back(self, exc: ProtocolError) -> None:
        """PROTOCOL.md: only frames that reach the rate check count toward a limit, and
        one answered `rate_limited` counts only toward the 1008 rule. A frame that took
        its place in JOINS_PER_MINUTE, READS_PER_MINUTE or FILES_UPLOADS_PER_MINUTE and is
        then refused by another limit (ROOMS_PER_HOUR, JOIN_FAILURES_PER_MINUTE, a busy
        queue) or by a field rule judged after the cheap checks (an upload's base64)
        gives it back."""
        if self.slot is not None and exc.code in GIVEN_BACK:
            self.slot.give_back()

    async def refuse(self, exc: ProtocolError) -> None:
        self.send_json(protocol.error_message(exc.code, exc.message))
        error_event(self, code=exc.code.value, client=client_address(self.scope))  # rate-limited
        if exc.code == ErrorCode.RATE_LIMITED:
            if self.refusals.add() > settings.ABUSE_RATE_LIMITED_FRAMES:
                event("abuse_close", close=CLOSE_ABUSE, client=client_address(self.scope))
                self.outbox.put_close(CLOSE_ABUSE)

    def send_json(self, message: dict) -> None:
        """Queue a reply behind everything queued for this socket before it."""
        self.outbox.put(protocol.encode(message))

    async def send_text(self, text: str) -> None:
        # Straight to the server: this runs once per frame per socket.
        await self.base_send({"type": "websocket.send", "text": text})

    async def close_with(self, code: int) -> None:
        await self.close(code=code)

    def where(self) -> services.Where:
        session_key = session_key_of(self.scope)
        return services.Where(
            hub.address(self.outbox),
            presence.PROCESS_ID,
            client_address(self.scope),
            services.token_hash(session_key) if session_key else "",
        )

    # --- Client messages -------------------------------------------------------

    async def create_room(self, command: protocol.CreateRoom) -> None:
        self.require_no_room()
        self.take_join()
        if command.password and passwords.busy():  # refused before any Redis round trip
            raise Busy()
        # ROOMS_PER_HOUR per address: a place taken first, given back if no room was made.
        rooms, address = room_creations(), client_address(self.scope) or "unknown"
        claim = await rooms.claim(address, settings.ROOMS_PER_HOUR)
        if claim is None:
            raise ProtocolError(ErrorCode.RATE_LIMITED, "Too many rooms from this address; wait a while.")
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
                where=self.where(),
                now=timezone.now(),
            )
        except BaseException:
            await rooms.release(address, claim)
            raise
        self.outbox.stale = None
        await hub.join(seat.group, self.outbox)
        self.take_seat(seat)
        # Before the reply: a page that fetches /files/<id> right after must be let in.
        await self.remember_room(seat)
        self.send_json(
            protocol.room_created_message(selectors.room_info(room), room.encryption_key, owner_token)
        )
        event("create", room=room.pk, participant=seat.participant_id)

    async def join_room(self, command: protocol.JoinRoom) -> None:
        self.require_no_room()
        self.take_join()
        await self.ready_for_large_reply(history_estimate())
        address = client_address(self.scope) or "unknown"
        failures = join_failures()
        if await failures.blocked(address):
            raise ProtocolError(ErrorCode.RATE_LIMITED, "Too many wrong passwords; wait a minute.")
        door = selectors.door_cache.get(command.join_key)
        if door is None:
            door = await database(selectors.room_door)(join_key=command.join_key)
            selectors.door_cache.put(command.join_key, door)
        if door.password_hash:
            # Argon2 runs in low-priority threads, beside the loop and the database thread;
            # the guess holds its place in the address's limit before it is checked.
            def check() -> Awaitable[bool]:
                return passwords.off_loop(passwords.password_matches, command.password, door.password_hash)

            if not await checked_password(failures, address, check):
                raise ProtocolError(ErrorCode.WRONG_PASSWORD)
        # Join the group before reading the history: a message committed meanwhile then
        # arrives live instead of being lost; it is held until RoomJoined and History
        # are queued, and dropped if History already holds it.
        self.outbox.hold()
        await hub.join(door.group, self.outbox)
        try:
            joined = await database(services.room_join)(
                room=door.room,
                name=command.name,
                where=self.where(),
                owner_token=command.owner_token,
                since=command.since,
                now=timezone.now(),
            )
        except BaseException:
            self.outbox.held = self.outbox.stale = None
            await hub.leave(door.group, self.outbox)
            raise
        seat = self.take_seat(joined.seat)
        await self.remember_room(seat)  # before the reply, as in create_room
        event("join", room=seat.room_id, participant=seat.participant_id, owner=seat.is_owner)
        names = [name for _, name in joined.present]
        self.send_json(
            protocol.room_joined_message(selectors.room_info(joined.room), joined.room.encryption_key, names)
        )
        if joined.history:
            self.outbox.put(await history_frame(joined.history))
        self.outbox.release(stale=joined.snapshot(command.since).shows)
        await presence.announce_left(joined.swept)
        await publish(
            seat.group,
            protocol.participant_joined_message(seat.name),
            exclude=self.outbox.id,
            participant_id=seat.participant_id,
            joined=True,
        )

    async def chat_message(self, command: protocol.ChatMessage) -> None:
        seat = self.require_room()
        if not self.chat_bucket.take():
            raise ProtocolError(ErrorCode.RATE_LIMITED)
        if len(command.content) > settings.CHAT_MAX_CONTENT:
            raise ProtocolError(ErrorCode.MESSAGE_TOO_LARGE)
        now = timezone.now()
        message_id, seq = await batching.message_writer.get().submit(
            sql.NewMessage(seat.room_id, seat.name, command.content, now, seat.participant_id)
        )
        await publish(
            seat.group,
            protocol.chat_message(message_id, seat.name, command.content, now),
            message_id=message_id,
            seq=seq,
        )

    async def get_members(self, command: protocol.GetMembers) -> None:
        seat = self.require_room()
        self.take_read()
        await self.ready_for_large_reply(0)
        # The seat is checked in the same query (SeatGone): a kick whose event was lost lists no one.
        names = await database(services.seat_members)(seat=seat, now=timezone.now())
        self.send_json(protocol.members_message(names))

    async def leave_room(self, command: protocol.LeaveRoom) -> None:
        self.require_room()
        await self.leave()

    async def upload_file(self, command: protocol.UploadFile) -> None:
        # The cheap checks first: room, upload rate, size from the base64's length. The
        # content is decoded only when they pass; when one fails, the content is still
        # checked (without keeping the bytes), since strict base64 is a field rule and
        # comes first (PROTOCOL.md). A rate-limited upload takes no place in the window.
        seat = self.seat
        if seat is None:
            await self.upload_bytes(command, keep=False)
            raise ProtocolError(ErrorCode.NOT_IN_ROOM)
        if not take_slot(self.uploads, settings.FILES_UPLOADS_PER_MINUTE):
            await self.upload_bytes(command, keep=False)
            raise ProtocolError(ErrorCode.RATE_LIMITED, "Too many uploads; wait a minute.")
        self.slot = self.uploads
        if validation.decoded_size(command.content) > settings.FILES_MAX_SIZE:
            await self.upload_bytes(command, keep=False)
            raise ProtocolError(ErrorCode.FILE_TOO_LARGE)
        data = await self.upload_bytes(command)
        now = timezone.now()
        shared = await files.share(
            seat=seat, name=command.name, mime_type=command.mime_type, data=data, now=now
        )
        self.send_json(protocol.file_uploaded_message(files.metadata(shared)))
        event("file_uploaded", room=seat.room_id, file=shared.id, size=shared.size)
        link = protocol.chat_message(shared.message_id, seat.name, shared.link_message, now)
        await publish(seat.group, link, message_id=shared.message_id, seq=shared.message_seq)

    async def get_file(self, command: protocol.GetFile) -> None:
        seat = self.require_room()
        self.take_read()
        # One file frame in flight per socket: a client that does not read its
        # downloads holds at most one of them in server memory.
        await self.ready_for_large_reply(4 * ((settings.FILES_MAX_SIZE + 2) // 3))
        self.outbox.put(await files.fetch(seat=seat, file_id=command.file_id, now=timezone.now()))

    async def delete_file(self, command: protocol.DeleteFile) -> None:
        seat = self.require_room()
        deleted = await files.delete(seat=seat, file_id=command.file_id, now=timezone.now())
        await publish(seat.group, protocol.file_deleted_message(str(deleted.id)))

    # --- Helpers ------------------------------------------------------------------

    async def ready_for_large_reply(self, most: int) -> None:
        """A large reply (History, Members, FileContent) is built only once the socket
        has written what it was sent (a client that does not read holds at most one),
        and while its address's sockets have room for `most` more bytes under
        WS_SEND_QUEUE_BYTES (else `rate_limited`); `most` is held for the address until
        the frame is answered, so simultaneous requests cannot all pass the check
        (docs/protocol-notes.md, "Large replies wait for the reader")."""
        await self.outbox.drained()
        backlog = address_backlog(self.outbox.owner)
        if backlog and backlog + most > settings.WS_SEND_QUEUE_BYTES:
            raise ProtocolError(ErrorCode.RATE_LIMITED, "Your connections have much unread; read it first.")
        add_backlog(self.outbox.owner, most)
        self.reserved += most

    def take_join(self) -> None:
        if not take_slot(self.joins, settings.JOINS_PER_MINUTE):
            raise ProtocolError(ErrorCode.RATE_LIMITED, "Too many joins; wait a minute.")
        self.slot = self.joins

    def take_read(self) -> None:
        if not take_slot(self.reads, settings.READS_PER_MINUTE):
            raise ProtocolError(ErrorCode.RATE_LIMITED, "Too many requests; wait a minute.")
        self.slot = self.reads

    async def upload_bytes(self, command: protocol.UploadFile, *, keep: bool = True) -> bytes | None:
        """The upload's bytes (strict base64, decoded beside the loop), or with
        `keep=False` only the check that it is strict base64."""
        try:
            if keep:
                return await files.decode(command.content)
            await heavy.run(validation.check_base64, command.content)
            return None
        except ProtocolError:
            if command.large:  # was the frame even JSON? (see protocol.parse_large_frame)
                await heavy.run(protocol.check_large_string, command.content)
            raise

    def require_room(self) -> services.Seat:
        if self.seat is None:
            raise ProtocolError(ErrorCode.NOT_IN_ROOM)
        return self.seat

    def require_no_room(self) -> None:
        if self.seat is not None:
            raise ProtocolError(ErrorCode.ALREADY_IN_ROOM)

    def take_seat(self, seat: services.Seat) -> services.Seat:
        self.seat = seat
        presence.live_seats.add(seat.participant_id)
        return seat

    async def seat_gone(self, exc: "services.SeatGone") -> None:
        """The database found the seat gone (a kick or close whose layer event did not
        reach this process, or not yet): answer as the event would have, `kicked` or
        `room_closed` then its close, or `not_in_room` with the seat dropped."""
        await self.refuse(exc)
        if exc.close is not None:
            self.outbox.put_close(exc.close)
        elif self.seat is not None:
            await self.leave()

    async def leave(self) -> None:
        seat, self.seat = self.seat, None
        presence.live_seats.discard(seat.participant_id)
        try:
            left = await database_sync_to_async(services.participant_leave)(
                participant_id=seat.participant_id, now=timezone.now()
            )
        finally:
            await hub.leave(seat.group, self.outbox)
        if left:
            await publish(
                seat.group,
                protocol.participant_left_message(seat.name),
                participant_id=seat.participant_id,
                joined=False,
            )

    async def remember_room(self, seat: services.Seat) -> None:
        """Let the browser session behind this socket download the room's files."""
        session_key = session_key_of(self.scope)
        if session_key:
            await database_sync_to_async(services.session_room_add)(
                session_key=session_key, room_id=seat.room_id
            )


# Answers after which a frame gives back its place in a per-connection window (`give_back`).
GIVEN_BACK = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.INVALID_FIELD, ErrorCode.INVALID_JSON})

# Client commands and their handlers: an explicit table, never getattr(self, type).
HANDLERS: dict[type, Callable[[ChatConsumer, Any], Awaitable[None]]] = {
    protocol.CreateRoom: ChatConsumer.create_room,
    protocol.JoinRoom: ChatConsumer.join_room,
    protocol.ChatMessage: ChatConsumer.chat_message,
    protocol.GetMembers: ChatConsumer.get_members,
    protocol.LeaveRoom: ChatConsumer.leave_room,
    protocol.UploadFile: ChatConsumer.upload_file,
    protocol.GetFile: ChatConsumer.get_file,
    protocol.DeleteFile: ChatConsumer.delete_file,
}


def history_estimate() -> int:
    """The most a History frame can be: CHAT_HISTORY_LIMIT messages of the longest
    content (4 bytes a character at worst is not assumed: content is base64)."""
    return settings.CHAT_HISTORY_LIMIT * (settings.CHAT_MAX_CONTENT + 512)


async def history_frame(messages: list[dict]) -> str:
    """The History frame, encoded a message at a time with the loop free in between."""
    parts = []
    for part in protocol.history_parts(messages):
        parts.append(part)
        await asyncio.sleep(0)
    return "".join(parts)


def hold_large_frame(text: str) -> int:
    """Take a large frame's (an upload's) bytes from this process's
    UPLOADS_IN_FLIGHT_BYTES before it is parsed; past it the frame is `rate_limited`
    unread. The caller gives them back once the frame is answered."""
    if not uploads_in_flight.take(len(text)):
        raise ProtocolError(ErrorCode.RATE_LIMITED, "The server is busy with uploads; try again shortly.")
    return len(text)
