"""What moderators do to live rooms (from the admin): the same services the consumer
uses, then the rooms are told through the channel layer, so every server process
hears it, and one `chat.events` log line per action.

Called from sync code (admin views run in a worker thread under ASGI).
"""

import uuid
from datetime import datetime
from typing import Unpack

from asgiref.sync import async_to_sync
from django.utils import timezone

from chat import protocol, services
from chat.errors import CloseCode, ErrorCode
from chat.hub import Marks, deletion_events, publish, publish_all
from chat.models import Room
from chat.oplog import event


def tell(room_id: uuid.UUID, message: dict, *, stored: bool = False, **marks: Unpack[Marks]) -> None:
    async_to_sync(publish)(room_id, message, stored=stored, **marks)


def close_room(*, room_id: uuid.UUID, now: datetime, actor: str) -> bool:
    """Close the room: everyone in it gets `room_closed` and close 4000; the join key
    stops working. False if it was closed already."""
    closed = services.room_close(room_id=room_id, now=now)
    if closed:
        message = protocol.error_message(ErrorCode.ROOM_CLOSED, "An admin closed this room.")
        tell(room_id, message, close=CloseCode.ROOM_CLOSED)
        event("moderation", action="close_room", room=room_id, actor=actor)
    return closed


def delete_room(*, room_id: uuid.UUID, now: datetime, actor: str) -> None:
    """Close it (telling whoever is in it), then delete it with its participants,
    messages and files (the files' blobs go once that commits: files/signals.py)."""
    close_room(room_id=room_id, now=now, actor=actor)
    Room.objects.filter(pk=room_id).delete()
    event("moderation", action="delete_room", room=room_id, actor=actor)


def remove_participant(*, participant_id: int, now: datetime, actor: str) -> bool:
    """Its socket gets `kicked` and close 4001, the room `ParticipantLeft`; its browser
    session and address are banned from the room, under any name, for KICK_BAN_SECONDS.
    The database alone ends the seat's rights (services.seat_gone): the event may be lost."""
    removed = services.participant_remove(participant_id=participant_id, now=now)
    if removed is None:
        return False
    kicked = protocol.error_message(ErrorCode.KICKED, "An admin removed you from this room.")
    tell(removed.room_id, kicked, only=removed.outbox_id, close=CloseCode.KICKED)
    tell(
        removed.room_id,
        protocol.participant_left_message(removed.name),
        exclude=removed.outbox_id,
        participant_id=removed.participant_id,
        joined=False,
        removed=True,
    )
    event("moderation", action="remove_participant", participant=participant_id, actor=actor)
    return True


def delete_messages(*, message_ids: list[int], actor: str) -> int:
    """Delete messages; each room is told `MessageDeleted {id}` (docs/protocol-notes.md),
    and a file's message takes its file with it (`FileDeleted`), as a member's delete does."""
    deleted = services.messages_delete(message_ids=message_ids, now=timezone.now())
    for room_id, message_id, seq, after in deleted:
        async_to_sync(publish_all)(deletion_events(room_id, message_id, seq, after))
        event("moderation", action="delete_message", message=message_id, actor=actor)
    return len(deleted)
