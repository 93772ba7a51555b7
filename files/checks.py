"""The files' system checks: `manage.py check` refuses a FILES_ROOT the purge could not
safely clean (files/store.py) and a FILES_ENCRYPTION_KEY that is not base64 of 32
bytes, and warns of a generated file key in production and of
allowed types that are never accepted. The warnings keep the `chat.` ids they had when
these checks lived in chat/checks.py, so that SILENCED_SYSTEM_CHECKS keeps working."""

from pathlib import Path

from cryptography.exceptions import InvalidTag
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.db import DEFAULT_DB_ALIAS, DatabaseError

from chat.checks import OTHER_KEYS_HINT, key_errors
from files import blobs, store
from files.validation import NEVER_ALLOWED, VERIFIABLE


@register()
def files_root_is_a_store(app_configs, **kwargs) -> list[Error]:
    reason = store.problem(Path(settings.FILES_ROOT))
    if reason is None:
        return []
    return [
        Error(
            f"{reason}: uploads and manage.py purge_files refuse it.",
            hint="Give FILES_ROOT a folder of its own outside the project, holding only this "
            "server's blobs, e.g. /var/lib/chat/files (docs/production.md).",
            id="files.E001",
        )
    ]


@register()
def malformed_file_key(app_configs, **kwargs) -> list[Error]:
    return key_errors(("FILES_ENCRYPTION_KEY", "FILES_ENCRYPTION_KEY_PREVIOUS"), "files.E002")


# Newest files whose blobs are read for files.E003: the first one still on disk decides.
FILES_CHECKED = 5


@register(Tags.database)
def files_under_other_keys(app_configs, databases=None, **kwargs) -> list[Error]:
    """files.E003: FILES_ENCRYPTION_KEY (or its previous) does not open the newest file
    still on disk, as chat.E002 for rooms: every download would be server_error. A blob
    missing from FILES_ROOT (deleted between a backup's two copies, or purged) says
    nothing of the key; neither does a database not yet migrated or unreachable."""
    from files.models import SharedFile

    if DEFAULT_DB_ALIAS not in (databases or ()):
        return []
    try:
        newest = list(
            SharedFile.objects.filter(deleted_at__isnull=True)
            .order_by("-created_at")
            .values_list("pk", "blob")[:FILES_CHECKED]
        )
    except DatabaseError:
        return []
    if malformed_file_key(None) or store.problem(Path(settings.FILES_ROOT)):  # files.E001, E002 say it
        return []
    for file_id, blob in newest:
        try:
            blobs.read(file_id, blob)
        except InvalidTag:
            return [
                Error(
                    "FILES_ENCRYPTION_KEY (or FILES_ENCRYPTION_KEY_PREVIOUS) does not open the files "
                    "in FILES_ROOT: no shared file could be read.",
                    hint=OTHER_KEYS_HINT,
                    id="files.E003",
                )
            ]
        except (OSError, ValueError):
            continue
        return []
    return []


@register(deploy=True)
def generated_file_key_in_production(app_configs, **kwargs) -> list[Warning]:
    """A generated key lives in one machine's FILES_KEY_FILE: fine on a laptop only."""
    if not settings.FILES_ENCRYPTION_KEY:
        return [
            Warning(
                "FILES_ENCRYPTION_KEY is not set: files are encrypted with a key generated "
                "into FILES_KEY_FILE on this machine.",
                hint="Set FILES_ENCRYPTION_KEY (base64 of 32 random bytes) on every server process, "
                "and back it up apart from the files: without it they cannot be read.",
                id="chat.W002",
            )
        ]
    return []


@register()
def unverifiable_file_types(app_configs, **kwargs) -> list[Warning]:
    """Allowed types that are never served (html, svg) or whose bytes cannot be checked."""
    refused = [t for t in settings.FILES_ALLOWED_MIME_TYPES if t in NEVER_ALLOWED or t not in VERIFIABLE]
    if refused:
        return [
            Warning(
                f"FILES_ALLOWED_MIME_TYPES lists {', '.join(refused)}; uploads of these are always "
                "refused (html and svg are never allowed; other types need a signature the server knows).",
                hint=f"Types the server can verify: {', '.join(sorted(VERIFIABLE))}.",
                id="chat.W003",
            )
        ]
    return []
