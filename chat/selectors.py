"""Sync reads. Called through database_sync_to_async from the consumer."""

from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings

from chat import protocol
from chat.errors import ErrorCode, ProtocolError
from chat.models import Message, Participant, Room


def presence_cutoff(now: datetime) -> datetime:
    """Participants not seen since this moment belong to a dead process."""
    return now - timedelta(seconds=settings.PRESENCE_TIMEOUT)


def members_present(*, room_id: UUID, now: datetime) -> list[str]:
    """Names of the participants connected now, in join order."""
    return [name for _, name in presence_snapshot(room_id=room_id, now=now)]


def presence_snapshot(*, room_id: UUID, now: datetime) -> list[tuple[int, str]]:
    """(participant id, name) of everyone connected now, in join order."""
    return list(
        Participant.objects.filter(room_id=room_id, left_at__isnull=True, last_seen__gte=presence_cutoff(now))
        .order_by("joined_at", "id")
        .values_list("id", "name")
    )


def history_since(*, room_id: UUID, since: int | None, limit: int) -> list[dict]:
    """The newest `limit` messages after `since`, oldest first."""
    messages = Message.objects.filter(room_id=room_id)
    if since is not None:
        messages = messages.filter(id__gt=since)
    newest = messages.order_by("-id").values_list("id", "sender", "content", "sent_at")[:limit]
    return [protocol.message_entry(*row) for row in reversed(newest)]


def room_open_by_join_key(*, join_key: str) -> Room:
    room = Room.objects.filter(join_key=join_key, closed_at__isnull=True).first()
    if room is None:
        raise ProtocolError(ErrorCode.ROOM_NOT_FOUND)
    return room


def room_info(room: Room) -> dict:
    return {
        "id": str(room.id),
        "name": room.name,
        "description": room.description,
        "join_key": room.join_key,
        "has_password": room.has_password,
        "owner": room.owner_name,
        "created_at": protocol.iso(room.created_at),
    }
