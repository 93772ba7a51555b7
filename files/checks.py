"""The files' system checks: `manage.py check` refuses a FILES_ROOT the purge could not
safely clean (files/store.py) and a FILES_ENCRYPTION_KEY that is not base64 of 32
bytes, and warns of a generated file key in production and of
allowed types that are never accepted. The warnings keep the `chat.` ids they had when
these checks lived in chat/checks.py, so that SILENCED_SYSTEM_CHECKS keeps working."""

from pathlib import Path

from django.conf import settings
from django.core.checks import Error, Warning, register

from chat.checks import key_errors
from files import store
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
