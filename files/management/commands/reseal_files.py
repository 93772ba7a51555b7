"""`python manage.py reseal_files`: move every stored blob onto FILES_ENCRYPTION_KEY.

The old key comes from FILES_ENCRYPTION_KEY_PREVIOUS (the servers read it too, so
downloads go on during the rotation), or from `--old-key-file` (such as the development
key generated into FILES_KEY_FILE). Idempotent and resumable: blobs already under the
current key are left alone, and each is replaced on its own. docs/production.md, "Keys
of the files".
"""

from pathlib import Path

from cryptography.exceptions import InvalidTag
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from chat.keys import read_key_file
from files import blobs
from files.models import SharedFile


class Command(BaseCommand):
    help = "Re-encrypt every stored file under FILES_ENCRYPTION_KEY; prints a one-line summary."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--old-key-file",
            type=Path,
            help="file of the old key (base64 of 32 bytes, as FILES_KEY_FILE holds it); "
            "default: FILES_ENCRYPTION_KEY_PREVIOUS",
        )

    def handle(self, *args, old_key_file: Path | None = None, **options) -> None:
        old = blobs.previous_cipher()
        if old_key_file is not None:
            try:
                old = read_key_file(old_key_file)
            except ImproperlyConfigured as exc:
                raise CommandError(f"reseal_files: {exc}") from exc
        resealed = current = gone = 0
        unreadable: list[str] = []
        rows = SharedFile.objects.exclude(blob="").values_list("id", "blob").order_by("created_at")
        for file_id, name in rows.iterator(chunk_size=500):
            try:
                if blobs.reseal(file_id, name, old):
                    resealed += 1
                else:
                    current += 1
            except FileNotFoundError:
                gone += 1  # purged since it was listed
            except (InvalidTag, ValueError):  # under neither key, or not a blob of ours
                unreadable.append(str(file_id))
        line = (
            f"reseal_files: {resealed} re-encrypted, {current} already under FILES_ENCRYPTION_KEY, "
            f"{gone} gone meanwhile"
        )
        if unreadable:
            shown = ", ".join(unreadable[:5]) + (" ..." if len(unreadable) > 5 else "")
            raise CommandError(
                f"{line}; {len(unreadable)} open under neither key "
                f"(FILES_ENCRYPTION_KEY, and the old one given): {shown}"
            )
        self.stdout.write(line)
