"""A room deleted takes its files' blobs with it: its SharedFile rows cascade with the
room, and the blobs go once that deletion commits (chat/moderation.py deletes rooms
without knowing of files). A file's message deleted by its author or an owner takes the
file with it (PROTOCOL.md, Conversations; chat/services.py sends `message_deleted`)."""

import uuid
from datetime import datetime

from django.db.models.signals import pre_delete
from django.dispatch import receiver

from chat import protocol
from chat.models import Room
from chat.services import message_deleted
from files import services


@receiver(pre_delete, sender=Room)
def room_blobs_go_with_it(sender: type[Room], instance: Room, **kwargs: object) -> None:
    services.room_files_drop(room_id=instance.pk)


@receiver(message_deleted)
def file_goes_with_its_message(
    sender: object, room_id: uuid.UUID, content: str, now: datetime, **kwargs: object
) -> dict | None:
    """The file a standard room's file message links to (`[File: NAME](/files/ID)`, only
    ever written by the server) is deleted with it; its FileDeleted is published after."""
    if not content.startswith(protocol.FILE_MESSAGE_PREFIX):
        return None
    try:
        file_id = uuid.UUID(content.rpartition("(/files/")[2].removesuffix(")"))
    except ValueError:
        return None
    removed = services.file_remove(file_id=file_id, now=now, room_id=room_id)
    return protocol.file_deleted_message(str(removed.id)) if removed is not None else None
