"""`python manage.py purge_files [--dry-run]`: run it from cron (README, "Files")."""

from django.core.management.base import BaseCommand, CommandError
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from chat.retention import apply_retention
from files.purge import PurgeRunning, purge
from files.store import UnsafeStore


class Command(BaseCommand):
    help = (
        "Delete expired and deleted files, orphaned blobs, expired sessions and bans, participants "
        "gone longer than PARTICIPANTS_RETENTION_DAYS, rooms unused for UNUSED_ROOMS_RETENTION_DAYS, "
        "admin log entries older than ADMIN_LOG_RETENTION_DAYS, messages older than CHAT_RETENTION_DAYS "
        "and the rooms that leaves empty; "
        "prints a one-line summary (and one more when rows other than files went)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")

    def handle(self, *args, dry_run: bool = False, **options) -> None:
        try:
            self.purge(dry_run=dry_run)
        except (OperationalError, InterfaceError) as exc:
            # One line for cron's mail, not a traceback (unreachable, locked, timed out).
            raise CommandError(f"purge_files: stopped by a database error: {exc}".strip()) from exc

    def purge(self, *, dry_run: bool) -> None:
        now = timezone.now()
        # Old rows first (chat/retention.py): safe beside another run.
        retention = apply_retention(now=now, dry_run=dry_run).line()
        if retention:
            self.stdout.write(retention)
        try:
            report = purge(now=now, dry_run=dry_run)
        except PurgeRunning:
            self.stdout.write("purge_files: another purge is running; nothing done")
            return
        except UnsafeStore as exc:
            raise CommandError(
                f"purge_files: refusing to run, nothing deleted: {exc}. FILES_ROOT must be a folder "
                "of its own, outside the project, holding only this server's blobs (docs/production.md)."
            ) from exc
        self.stdout.write(report.line(rows_went=retention is not None))
