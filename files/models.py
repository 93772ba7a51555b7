"""Files shared in rooms: metadata here, the bytes encrypted in FILES_ROOT (files/blobs.py)."""

import uuid

from django.db import models
from django.db.models import Q

from chat.models import Participant, Room
from files.validation import shown_name


class SharedFileQuerySet(models.QuerySet):
    def live(self, now):
        """Reachable files: not deleted and not expired, whether or not purged yet."""
        return self.filter(deleted_at__isnull=True, expires_at__gt=now)

    def purgeable(self, now, shared_before=None):
        """Deleted and expired files and, with `shared_before` (CHAT_RETENTION_DAYS: the
        file messages of that time are deleted), every file shared before it."""
        gone = Q(deleted_at__isnull=False) | Q(expires_at__lte=now)
        return self.filter(gone | Q(created_at__lt=shared_before) if shared_before else gone)


class SharedFile(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="files")
    # The uploading connection's seat: its right to delete ends when that seat leaves.
    uploader = models.ForeignKey(Participant, on_delete=models.SET_NULL, null=True, related_name="files")
    uploader_name = models.CharField(max_length=50)
    # As uploaded, after NFC; never used to build a path.
    name = models.CharField(max_length=255)
    mime_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    # sha256 of the plaintext, hex.
    sha256 = models.CharField(max_length=64)
    # Random name of the encrypted blob in FILES_ROOT.
    blob = models.CharField(max_length=100, unique=True)
    # The file message broadcast for it (the `[File: ...]` ChatMessage).
    message_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = SharedFileQuerySet.as_manager()

    # Not columns: the file message's sequence number in its room and its content (the
    # `[File: ...]` link), set by `files.services.file_record` for the broadcast after it.
    message_seq: int | None = None
    message_content: str | None = None

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["room", "expires_at"], name="file_room_expiry"),
            models.Index(fields=["expires_at"], name="file_expiry"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def shown_name(self) -> str:
        """The name it is announced and served under (files.validation.shown_name)."""
        return shown_name(self.name, self.mime_type)
