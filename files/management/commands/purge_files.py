"""`python manage.py purge_files [--dry-run]`: run it from cron (README, "Files")."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from files.purge import PurgeRunning, purge
from files.store import UnsafeStore


class Command(BaseCommand):
    help = "Delete expired and deleted files and orphaned blobs; prints a one-line summary."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")

    def handle(self, *args, dry_run: bool = False, **options) -> None:
        try:
            report = purge(now=timezone.now(), dry_run=dry_run)
        except PurgeRunning:
            self.stdout.write("purge_files: another purge is running; nothing done")
            return
        except UnsafeStore as exc:
            raise CommandError(
                f"purge_files: refusing to run, nothing deleted: {exc}. FILES_ROOT must be a folder "
                "of its own, outside the project, holding only this server's blobs (docs/production.md)."
            ) from exc
        self.stdout.write(report.line())
