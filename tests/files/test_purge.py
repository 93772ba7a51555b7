"""`manage.py purge_files`: backdated files (no sleeping), dry runs, idempotence, orphans."""

import io
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command

from chat import services
from chat.models import Message, Participant
from files import blobs, purge
from files.models import SharedFile
from tests.helpers import make_room, seat_in_new_room, stored_file

pytestmark = pytest.mark.django_db(transaction=True)

PROJECT = Path(__file__).resolve().parents[2]


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("purge_files", *args, stdout=out)
    return out.getvalue().strip()


def test_nothing_to_do_says_so():
    assert run() == "purge_files: nothing to do"


def test_a_database_that_cannot_be_reached_is_one_line_for_crons_mail(tmp_path):
    environment = {
        "PATH": os.environ["PATH"],
        "CHAT_VAR_DIR": str(tmp_path),
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": "postgres://chat:s3cr3t@127.0.0.1:1/chat",  # nothing listens on port 1
    }
    done = subprocess.run(
        [sys.executable, str(PROJECT / "manage.py"), "purge_files"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert "purge_files: stopped by a database error" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "s3cr3t" not in done.stderr


def test_expired_and_deleted_files_go_rows_and_blobs_and_live_ones_stay(files_root):
    seat = seat_in_new_room()
    live = stored_file(seat, age=timedelta(hours=23))
    expired = stored_file(seat, age=timedelta(days=1, seconds=1))
    deleted = stored_file(seat, deleted=True)

    dry = run("--dry-run")
    assert dry.startswith("purge_files (dry run): would remove 2 files (1 expired, 1 deleted, 200 bytes)")
    assert SharedFile.objects.count() == 3 and (files_root / expired.blob).exists()

    line = run()
    assert line.startswith("purge_files: removed 2 files (1 expired, 1 deleted, 200 bytes) and 0 orphaned")
    assert list(SharedFile.objects.values_list("pk", flat=True)) == [live.pk]
    assert not (files_root / expired.blob).exists() and not (files_root / deleted.blob).exists()
    assert (files_root / live.blob).exists()
    # Twice in a row: the second run has nothing left to do.
    assert run() == "purge_files: nothing to do"


def test_under_chat_retention_a_file_goes_with_its_message_before_files_ttl(files_root, settings):
    """CHAT_RETENTION_DAYS deletes a file's message: the file, which FILES_TTL would keep
    longer, goes in the same run (its id would still fetch it), a sealed room's too."""
    settings.CHAT_RETENTION_DAYS = 1
    settings.FILES_TTL = 7 * 86400
    seat = seat_in_new_room()
    sealed = make_room(key_check="A" * 22 + "==")[1]
    old, old_sealed = stored_file(seat, age=timedelta(days=2)), stored_file(sealed, age=timedelta(days=2))
    young = stored_file(seat, age=timedelta(hours=23))
    assert Message.objects.filter(room_id=seat.room_id).count() == 2  # the file messages

    lines = run().splitlines()
    assert lines == [
        "purge_files: removed 1 message older than CHAT_RETENTION_DAYS (1)",
        "purge_files: removed 2 files (2 expired, 0 deleted, 200 bytes) and 0 orphaned blobs; "
        "told 2 rooms of files removed before their time",
    ]
    assert list(SharedFile.objects.values_list("pk", flat=True)) == [young.pk]
    assert not (files_root / old.blob).exists() and not (files_root / old_sealed.blob).exists()
    assert (files_root / young.blob).exists()
    left = Message.objects.filter(room_id=seat.room_id).values_list("pk", flat=True)
    assert list(left) == [young.message_id]
    assert run() == "purge_files: nothing to do"


def test_orphaned_blobs_go_after_the_grace_period_only(files_root, settings):
    seat = seat_in_new_room()
    kept = stored_file(seat)
    old_orphan = blobs.write(uuid.uuid4(), b"left behind by a crash")
    fresh_orphan = blobs.write(uuid.uuid4(), b"an upload about to record its row")
    an_hour_ago = time.time() - settings.FILES_ORPHAN_GRACE - 1
    os.utime(files_root / old_orphan, (an_hour_ago, an_hour_ago))
    os.utime(files_root / kept.blob, (an_hour_ago, an_hour_ago))

    assert "and 1 orphaned blob;" in run()
    assert not (files_root / old_orphan).exists()
    assert (files_root / fresh_orphan).exists() and (files_root / kept.blob).exists()


def test_a_purged_files_old_blob_is_not_counted_again_as_an_orphan(files_root, settings):
    """The store is listed before the rows go: a file removed in the same run, whose blob
    is older than the grace (as any expired file's is), is a file, not an orphan."""
    expired = stored_file(seat_in_new_room(), age=timedelta(days=2))
    two_days_ago = time.time() - 2 * 86400
    os.utime(files_root / expired.blob, (two_days_ago, two_days_ago))
    assert run().startswith(
        "purge_files: removed 1 file (1 expired, 0 deleted, 100 bytes) and 0 orphaned blobs"
    )
    assert not (files_root / expired.blob).exists()


def test_a_second_purge_at_the_same_time_does_nothing():
    seat = seat_in_new_room()
    stored_file(seat, deleted=True)
    holding, release = threading.Event(), threading.Event()

    def hold_the_lock():
        with purge.machine_lock():
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    holding.wait(5)
    try:
        assert run() == "purge_files: another purge is running; nothing done"
        assert SharedFile.objects.count() == 1
    finally:
        release.set()
        holder.join()
    assert run().startswith("purge_files: removed 1 file ")


@pytest.mark.timeout(30)
async def test_rooms_hear_once_of_files_removed_before_their_time(room, settings):
    """A connected room gets FileDeleted, through the channel layer, for a file the purge
    removes before it expired (CHAT_RETENTION_DAYS); expired files are not announced, nor
    files deleted earlier, whose delete told the room already: the purge only clears
    their rows."""
    settings.CHAT_RETENTION_DAYS = 1
    settings.FILES_TTL = 7 * 86400
    owner = room.owner
    files = await database_sync_to_async(_files_in)(room.id)
    for file in (files["deleted"], files["deleted_long_ago"]):
        await owner.send_json_to({"type": "DeleteFile", "file_id": str(file.pk)})
        assert await owner.receive_json_from() == {"type": "FileDeleted", "file_id": str(file.pk)}

    line = (await database_sync_to_async(run)()).splitlines()[-1]
    assert line.startswith("purge_files: removed 4 files (2 expired, 2 deleted, 400 bytes)")
    assert line.endswith("told 1 room of files removed before their time")
    assert await owner.receive_json_from() == {"type": "FileDeleted", "file_id": str(files["retained"].pk)}
    assert await owner.receive_nothing(0.2)
    assert [pk async for pk in SharedFile.objects.values_list("pk", flat=True)] == [files["live"].pk]


def _files_in(room_id: str) -> dict[str, SharedFile]:
    """Shared two days ago (past CHAT_RETENTION_DAYS, within FILES_TTL) or just now, and
    eight days ago (expired)."""
    owner = Participant.objects.get(room_id=room_id)
    seat = services.Seat(owner.pk, owner.room_id, owner.name, True)
    two_days = timedelta(days=2)
    return {
        "retained": stored_file(seat, age=two_days),
        "deleted_long_ago": stored_file(seat, age=two_days),
        "deleted": stored_file(seat),
        "expired": stored_file(seat, age=timedelta(days=8)),
        "live": stored_file(seat),
    }


def test_on_postgresql_a_purge_skips_rows_another_purge_holds(files_root):
    """Purges on two machines (each with its own lock) never take the same file."""
    from django.db import connection, connections, transaction

    if connection.vendor != "postgresql":
        pytest.skip("row locking is PostgreSQL's (DATABASE_URL unset): the machine lock covers SQLite")
    seat = seat_in_new_room()
    held, free = stored_file(seat, deleted=True), stored_file(seat, deleted=True)
    locked, release = threading.Event(), threading.Event()

    def other_machine():
        try:
            with transaction.atomic():
                list(SharedFile.objects.select_for_update().filter(pk=held.pk))
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    worker = threading.Thread(target=other_machine)
    worker.start()
    locked.wait(10)
    try:
        assert run().startswith("purge_files: removed 1 file (0 expired, 1 deleted")
        assert list(SharedFile.objects.values_list("pk", flat=True)) == [held.pk]
        assert (files_root / held.blob).exists() and not (files_root / free.blob).exists()
    finally:
        release.set()
        worker.join()
