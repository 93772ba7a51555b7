"""The WebSocket endpoint: decode -> parse -> one service call -> send/broadcast -> map errors."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from chat import broadcast, passwords, presence, protocol, selectors, services
from chat.errors import ErrorCode, ProtocolError
from chat.ratelimit import SlidingWindow, TokenBucket, join_failures

logger = logging.getLogger(__name__)

CLOSE_ABUSE = 1008


class ChatConsumer(AsyncWebsocketConsumer):
    seat: services.Seat | None = None

    async def connect(self) -> None:
        """Called when the handshake has passed the origin check."""
        self.seat = None
        self.chat_bucket = TokenBucket(settings.CHAT_RATE_BURST, settings.CHAT_RATE_SUSTAINED)
        self.refusals = SlidingWindow(settings.ABUSE_WINDOW)
        client = self.scope.get("client") or (None, None)
        self.where = services.Where(self.channel_name, presence.PROCESS_ID, client[0])
        await self.accept()
        presence.connection_opened()

    async def disconnect(self, code: int) -> None:
        """Called when the socket closes, however it closes: leave the room."""
        try:
            if self.seat is not None:
                await self.leave()
        finally:
            presence.connection_closed()

    async def dispatch(self, message: dict) -> None:
        # Channels' dispatch hops to the database thread to close stale connections
        # before every handler, layer events included. Our layer handlers never touch
        # the database, and database_sync_to_async already does that check.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Called with each client frame: errors become `Error`, never a closed socket."""
        try:
            if text_data is None:
                raise ProtocolError(ErrorCode.INVALID_JSON, "Binary frames are not accepted.")
            command = protocol.parse_client_message(text_data)
            await HANDLERS[type(command)](self, command)
        except ProtocolError as exc:
            await self.refuse(exc)
        except Exception:
            logger.exception("unexpected error handling a client frame")
            await self.refuse(ProtocolError(ErrorCode.SERVER_ERROR))

    async def refuse(self, exc: ProtocolError) -> None:
        await self.send_json(protocol.error_message(exc.code, exc.message))
        if exc.code == ErrorCode.RATE_LIMITED:
            if self.refusals.add() > settings.ABUSE_RATE_LIMITED_FRAMES:
                await self.close(code=CLOSE_ABUSE)

    async def send_json(self, message: dict) -> None:
        await self.send(text_data=protocol.encode(message))

    # --- Client messages -------------------------------------------------------

    async def create_room(self, command: protocol.CreateRoom) -> None:
        self.require_no_room()
        password_hash = ""
        if command.password:
            password_hash = await asyncio.to_thread(passwords.password_hash, command.password)
        room, seat, owner_token = await database_sync_to_async(services.room_create)(
            name=command.name,
            description=command.description,
            password_hash=password_hash,
            owner_name=command.owner_name,
            where=self.where,
            now=timezone.now(),
        )
        await self.channel_layer.group_add(seat.group, self.channel_name)
        self.seat = seat
        await self.send_json(
            protocol.room_created_message(selectors.room_info(room), room.encryption_key, owner_token)
        )
        await self.remember_room(seat)

    async def join_room(self, command: protocol.JoinRoom) -> None:
        self.require_no_room()
        address = self.where.address or "unknown"
        if join_failures.blocked(address):
            raise ProtocolError(ErrorCode.RATE_LIMITED, "Too many wrong passwords; wait a minute.")
        room = await database_sync_to_async(selectors.room_open_by_join_key)(join_key=command.join_key)
        if room.password_hash:
            # Argon2 runs in a worker thread, beside the loop and the database thread.
            if not await asyncio.to_thread(passwords.password_matches, command.password, room.password_hash):
                join_failures.record(address)
                raise ProtocolError(ErrorCode.WRONG_PASSWORD)
        # Join the group before reading the history: a message committed meanwhile then
        # arrives live (clients drop ids they already have) instead of being lost.
        await self.channel_layer.group_add(room.group_name, self.channel_name)
        try:
            joined = await database_sync_to_async(services.room_join)(
                room_id=room.pk,
                name=command.name,
                where=self.where,
                owner_token=command.owner_token,
                since=command.since,
                now=timezone.now(),
            )
        except BaseException:
            await self.channel_layer.group_discard(room.group_name, self.channel_name)
            raise
        self.seat = joined.seat
        info = selectors.room_info(joined.room)
        await self.send_json(
            protocol.room_joined_message(info, joined.room.encryption_key, joined.participants)
        )
        if joined.history:
            await self.send_json(protocol.history_message(joined.history))
        await presence.announce_left(joined.swept)
        await self.to_room(protocol.participant_joined_message(joined.seat.name), exclude_self=True)
        await self.remember_room(joined.seat)

    async def chat_message(self, command: protocol.ChatMessage) -> None:
        seat = self.require_room()
        if not self.chat_bucket.take():
            raise ProtocolError(ErrorCode.RATE_LIMITED)
        if len(command.content) > settings.CHAT_MAX_CONTENT:
            raise ProtocolError(ErrorCode.MESSAGE_TOO_LARGE)
        message = await database_sync_to_async(services.message_post)(
            seat=seat, content=command.content, now=timezone.now()
        )
        await self.to_room(protocol.chat_message(message.id, seat.name, message.content, message.sent_at))

    async def get_members(self, command: protocol.GetMembers) -> None:
        seat = self.require_room()
        names = await database_sync_to_async(selectors.members_present)(
            room_id=seat.room_id, now=timezone.now()
        )
        await self.send_json(protocol.members_message(names))

    async def leave_room(self, command: protocol.LeaveRoom) -> None:
        self.require_room()
        await self.leave()

    async def file_operation(self, command: Any) -> None:
        self.require_room()
        raise ProtocolError(ErrorCode.SERVER_ERROR, "File sharing is not enabled on this server yet.")

    # --- Helpers ------------------------------------------------------------------

    def require_room(self) -> services.Seat:
        if self.seat is None:
            raise ProtocolError(ErrorCode.NOT_IN_ROOM)
        return self.seat

    def require_no_room(self) -> None:
        if self.seat is not None:
            raise ProtocolError(ErrorCode.ALREADY_IN_ROOM)

    async def leave(self) -> None:
        seat, self.seat = self.seat, None
        await self.channel_layer.group_discard(seat.group, self.channel_name)
        if await database_sync_to_async(services.participant_leave)(
            participant_id=seat.participant_id, now=timezone.now()
        ):
            await broadcast.to_room(
                self.channel_layer, seat.group, protocol.participant_left_message(seat.name)
            )

    async def remember_room(self, seat: services.Seat) -> None:
        """Let the browser session behind this socket download the room's files."""
        session = self.scope.get("session")
        if session is not None and session.session_key:
            await database_sync_to_async(services.session_room_add)(session=session, room_id=seat.room_id)

    async def to_room(self, message: dict, *, exclude_self: bool = False) -> None:
        await broadcast.to_room(
            self.channel_layer,
            self.seat.group,
            message,
            exclude=self.channel_name if exclude_self else None,
        )

    # --- Channel-layer events -------------------------------------------------------

    async def room_event(self, event: dict) -> None:
        """Called for every room broadcast: forward the pre-encoded text as it is."""
        seat = self.seat
        if seat is not None and event["group"] == seat.group and event["exclude"] != self.channel_name:
            await self.send(text_data=event["text"])


# Client commands and their handlers: an explicit table, never getattr(self, type).
HANDLERS: dict[type, Callable[[ChatConsumer, Any], Awaitable[None]]] = {
    protocol.CreateRoom: ChatConsumer.create_room,
    protocol.JoinRoom: ChatConsumer.join_room,
    protocol.ChatMessage: ChatConsumer.chat_message,
    protocol.GetMembers: ChatConsumer.get_members,
    protocol.LeaveRoom: ChatConsumer.leave_room,
    protocol.UploadFile: ChatConsumer.file_operation,
    protocol.GetFile: ChatConsumer.file_operation,
    protocol.DeleteFile: ChatConsumer.file_operation,
}
