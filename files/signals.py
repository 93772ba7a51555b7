"""A room deleted takes its files' blobs with it: its SharedFile rows cascade with the
room, and the blobs go once that deletion commits (chat/moderation.py deletes rooms
without knowing of files)."""

from django.db.models.signals import pre_delete
from django.dispatch import receiver

from chat.models import Room
from files import services


@receiver(pre_delete, sender=Room)
def room_blobs_go_with_it(sender: type[Room], instance: Room, **kwargs: object) -> None:
    services.room_files_drop(room_id=instance.pk)
