"""The WebSocket endpoint: decode -> parse -> one service call -> send/broadcast -> map errors."""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from chat import batching, passwords, presence, protocol, selectors, services, sql
from chat.errors import ErrorCode, ProtocolError
from chat.events import event
from chat.hub import Outbox, hub, publish
from chat.ratelimit import SlidingWindow, TokenBucket, join_failures
from chat.security import client_address, session_key_of
from chat.workers import heavy
from files import services as files

logger = logging.getLogger(__name__)

CLOSE_ABUSE = 1008


class ChatConsumer(AsyncWebsocketConsumer):
    # No channel per socket: rooms reach sockets through this process's hub (chat/hub.py).
    channel_layer_alias = None
    seat: services.Seat | None = None
    outbox: Outbox | None = None

    async def connect(self) -> None:
        """Called when the handshake has passed the origin check."""
        self.seat = None
        self.chat_bucket = TokenBucket(settings.CHAT_RATE_BURST, settings.CHAT_RATE_SUSTAINED)
        self.refusals = SlidingWindow(settings.ABUSE_WINDOW)
        self.uploads = SlidingWindow(60)
        self.outbox = Outbox(self.send_text, self.close_with)
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

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Called with each client frame: errors become `Error`, never a closed socket."""
        if self.outbox.closing is not None:
            return  # closing (kicked, room closed, abuse): nothing more is done for it
        try:
            if text_data is None:
                raise ProtocolError(ErrorCode.INVALID_JSON, "Binary frames are not accepted.")
            if len(text_data) > protocol.LARGE_STRING:
                command = await heavy.run(protocol.parse_large_frame, text_data)
            else:
                command = protocol.parse_client_message(text_data)
            await HANDLERS[type(command)](self, command)
        except ProtocolError as exc:
            await self.refuse(exc)
        except Exception:
            logger.exception("unexpected error handling a client frame")
            await self.refuse(ProtocolError(ErrorCode.SERVER_ERROR))

    async def refuse(self, exc: ProtocolError) -> None:
        self.send_json(protocol.error_message(exc.code, exc.message))
        event("error", code=exc.code.value, client=client_address(self.scope))
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
        password_hash = ""
        if command.password:
            password_hash = await passwords.off_loop(passwords.password_hash, command.password)
        await hub.start()
        room, seat, owner_token = await database_sync_to_async(services.room_create)(
            name=command.name,
            description=command.description,
            password_hash=password_hash,
            owner_name=command.owner_name,
            where=self.where(),
            now=timezone.now(),
        )
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
        address = client_address(self.scope) or "unknown"
        failures = join_failures()
        if await failures.blocked(address):
            raise ProtocolError(ErrorCode.RATE_LIMITED, "Too many wrong passwords; wait a minute.")
        door = selectors.door_cache.get(command.join_key)
        if door is None:
            door = await database_sync_to_async(selectors.room_door)(join_key=command.join_key)
            selectors.door_cache.put(command.join_key, door)
        if door.password_hash:
            # Argon2 runs in low-priority threads, beside the loop and the database thread.
            if not await passwords.off_loop(passwords.password_matches, command.password, door.password_hash):
                await failures.record(address)
                raise ProtocolError(ErrorCode.WRONG_PASSWORD)
        # Join the group before reading the history: a message committed meanwhile then
        # arrives live instead of being lost; it is held until RoomJoined and History
        # are queued, and dropped if History already holds it.
        self.outbox.hold()
        await hub.join(door.group, self.outbox)
        try:
            joined = await database_sync_to_async(services.room_join)(
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
            self.send_json(protocol.history_message(joined.history))
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
            sql.NewMessage(seat.room_id, seat.name, command.content, now)
        )
        await publish(
            seat.group,
            protocol.chat_message(message_id, seat.name, command.content, now),
            message_id=message_id,
            seq=seq,
        )

    async def get_members(self, command: protocol.GetMembers) -> None:
        seat = self.require_room()
        names = await database_sync_to_async(selectors.members_present)(
            room_id=seat.room_id, now=timezone.now()
        )
        self.send_json(protocol.members_message(names))

    async def leave_room(self, command: protocol.LeaveRoom) -> None:
        self.require_room()
        await self.leave()

    async def upload_file(self, command: protocol.UploadFile) -> None:
        # Strict base64 is a field rule, so it is checked before the room (PROTOCOL.md).
        try:
            data = await files.decode(command.content)
        except ProtocolError:
            if command.large:  # was the frame even JSON? (see protocol.parse_large_frame)
                await heavy.run(protocol.check_large_string, command.content)
            raise
        seat = self.require_room()
        if self.uploads.add() > settings.FILES_UPLOADS_PER_MINUTE:
            raise ProtocolError(ErrorCode.RATE_LIMITED, "Too many uploads; wait a minute.")
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
        # One file frame in flight per socket: a client that does not read its
        # downloads holds at most one of them in server memory.
        await self.outbox.drained()
        self.outbox.put(await files.fetch(seat=seat, file_id=command.file_id, now=timezone.now()))

    async def delete_file(self, command: protocol.DeleteFile) -> None:
        seat = self.require_room()
        deleted = await files.delete(seat=seat, file_id=command.file_id, now=timezone.now())
        await publish(seat.group, protocol.file_deleted_message(str(deleted.id)))

    # --- Helpers ------------------------------------------------------------------

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
