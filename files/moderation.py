"""What moderators do to shared files (from the admin): the files' side of
chat/moderation.py, told to the room the same way."""

import uuid
from datetime import datetime

from chat import protocol
from chat.moderation import tell
from chat.oplog import event
from files import services as files


def delete_file(*, file_id: uuid.UUID, now: datetime, actor: str) -> bool:
    """The room gets `FileDeleted`; the blob goes once the row's change commits."""
    file = files.file_remove(file_id=file_id, now=now)
    if file is None:
        return False
    tell(file.room_id, protocol.file_deleted_message(str(file.id)), stored=True)
    event("moderation", action="delete_file", file=file.id, room=file.room_id, actor=actor)
    return True
