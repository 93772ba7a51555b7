"""`python manage.py rewrap_room_keys`: move every room key onto ROOM_KEY_ENCRYPTION_KEY.

The old key-encryption key comes from ROOM_KEY_ENCRYPTION_KEY_PREVIOUS (the servers read
it too, so they keep joining rooms during the rotation), or from `--old-key-file` (such as
the development key generated into ROOM_KEY_ENCRYPTION_KEY_FILE). Idempotent and
resumable: rooms already under the current key are left alone, and each batch commits on
its own. docs/production.md, "Room keys".
"""

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from chat import keys
from chat.rewrap import RewrapFailed, rewrap_all


class Command(BaseCommand):
    help = "Re-wrap every room key under ROOM_KEY_ENCRYPTION_KEY; prints a one-line summary."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--old-key-file",
            type=Path,
            help="file of the old key-encryption key (base64); default: ROOM_KEY_ENCRYPTION_KEY_PREVIOUS",
        )
        parser.add_argument("--batch", type=int, default=500, help="rooms per transaction")

    def handle(self, *args, old_key_file: Path | None = None, batch: int = 500, **options) -> None:
        old = keys.previous()
        if old_key_file is not None:
            try:
                old = keys.read_key_file(old_key_file)
            except ImproperlyConfigured as exc:
                raise CommandError(f"rewrap_room_keys: {exc}") from exc
        try:
            report = rewrap_all(old=old, batch=batch)
        except RewrapFailed as exc:
            raise CommandError(f"rewrap_room_keys: {exc}") from exc
        self.stdout.write(report.line())
