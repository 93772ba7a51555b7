"""Removing expired and deleted files, and blobs no row refers to (`manage.py purge_files`)."""

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import transaction

from chat.hub import publish
from chat.protocol import file_deleted_message
from chat.retention import message_cutoff
from files import blobs, store
from files.models import SharedFile


class PurgeRunning(Exception):
    """Another purge holds the lock on this machine."""


@dataclass
class PurgeReport:
    dry_run: bool
    expired: int = 0
    deleted: int = 0
    size: int = 0
    orphans: list[str] = field(default_factory=list)
    rooms_told: int = 0

    @property
    def nothing(self) -> bool:
        return not (self.expired or self.deleted or self.orphans)

    def line(self, *, rows_went: bool = False) -> str:
        """The summary; with nothing to remove, `rows_went` says that the retention's line
        (rows other than files) came before it."""
        label = "purge_files (dry run)" if self.dry_run else "purge_files"
        if self.nothing:
            return f"{label}: no files or blobs to remove" if rows_went else f"{label}: nothing to do"
        remove, tell = ("would remove", "would tell") if self.dry_run else ("removed", "told")
        files = self.expired + self.deleted
        return (
            f"{label}: {remove} {files} file{'s' * (files != 1)} ({self.expired} expired, "
            f"{self.deleted} deleted, {self.size} bytes) and {len(self.orphans)} orphaned "
            f"blob{'s' * (len(self.orphans) != 1)}; {tell} {self.rooms_told} "
            f"room{'s' * (self.rooms_told != 1)} of files removed before their time"
        )


@contextmanager
def machine_lock() -> Iterator[None]:
    """One purge at a time per FILES_ROOT (on PostgreSQL rows are also locked, so
    purges on several machines never take the same file)."""
    root = Path(settings.FILES_ROOT)
    store.claim(root)
    with open(root / store.LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PurgeRunning from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def purge(*, now: datetime, dry_run: bool = False) -> PurgeReport:
    """Delete purgeable rows in one transaction (their blobs once it commits), then
    blobs without a row older than FILES_ORPHAN_GRACE, then tell connected rooms
    about files removed before their time (`removed_before_their_time`). store.UnsafeStore, before anything is
    deleted, if FILES_ROOT is not a folder of blobs the server marked as its own.

    With CHAT_RETENTION_DAYS, files shared before its cutoff go too, counted as expired:
    the retention (chat/retention.py, just before) deletes their file messages, and a
    file must not stay reachable by its id after its message (FILES_TTL may be longer).
    A standard room's file and its message carry the same time; a sealed room's file is
    announced by its uploader's own message, which the server cannot tell, and goes by
    the same rule."""
    report = PurgeReport(dry_run=dry_run)
    root = Path(settings.FILES_ROOT)
    if not root.exists() and not store.misplaced(root):
        # Made by the first upload. Without it a purge creates nothing: a FILES_ROOT
        # with a typo, or a volume not mounted, must not pass for an empty store.
        if SharedFile.objects.exists():
            raise store.UnsafeStore(f"FILES_ROOT ({root}) does not exist, but the database holds files")
        return report
    with machine_lock():
        on_disk = store.blob_times(Path(settings.FILES_ROOT))
        with transaction.atomic():
            doomed = list(
                SharedFile.objects.purgeable(now, shared_before=message_cutoff(now))
                .select_for_update(skip_locked=True)
                .only("id", "room_id", "blob", "size", "expires_at", "deleted_at")
            )
            for file in doomed:
                if file.deleted_at is None or file.expires_at <= now:
                    report.expired += 1
                else:
                    report.deleted += 1
                report.size += file.size
            if not dry_run and doomed:
                SharedFile.objects.filter(pk__in=[file.pk for file in doomed]).delete()
                blobs.remove_on_commit([file.blob for file in doomed])
        # The doomed files' blobs were listed before their rows went: not orphans.
        removed = {file.blob for file in doomed}
        on_disk = [(name, written) for name, written in on_disk if name not in removed]
        report.orphans = orphans(on_disk, older_than=time.time() - settings.FILES_ORPHAN_GRACE)
        if not dry_run:
            for name in report.orphans:
                blobs.remove(name)
    early = removed_before_their_time(doomed, now=now)
    report.rooms_told = len({file.room_id for file in early})
    if not dry_run and early:
        async_to_sync(announce)(early)
    return report


def removed_before_their_time(doomed: list[SharedFile], *, now: datetime) -> list[SharedFile]:
    """The files this purge takes from their rooms (CHAT_RETENTION_DAYS, before FILES_TTL):
    not the expired ones (clients know `expires_at`), nor the deleted ones, whose rows the
    purge only clears: their delete (a member's, an owner's, an admin's, their message's)
    told the room already."""
    return [file for file in doomed if file.deleted_at is None and file.expires_at > now]


def orphans(on_disk: list[tuple[str, float]], *, older_than: float) -> list[str]:
    """Blobs no row refers to, written before `older_than` (an upload writes its blob
    before its row)."""
    known = set(SharedFile.objects.values_list("blob", flat=True))
    return [name for name, written in on_disk if written < older_than and name not in known]


async def announce(files: list[SharedFile]) -> None:
    """FileDeleted through the channel layer, so every server process hears it."""
    for file in files:
        await publish(file.room_id, file_deleted_message(str(file.id)))
