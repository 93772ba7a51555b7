"""System checks for dangerous combinations of settings."""

from collections.abc import Iterable
from pathlib import Path

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, DatabaseError

from chat import keys
from chat.keys import parse_kek

# What to do when a check finds the data under other keys (chat.E002, files.E003).
OTHER_KEYS_HINT = (
    "Start the servers with the keys the data was written under: after a restore, the "
    "chat.env (or the generated key files) kept apart from the backup (docs/production.md, "
    "step 10). If those keys are lost for good, the old rooms and files cannot be read again: "
    "add this check's id to SILENCED_SYSTEM_CHECKS to serve new ones."
)


@register(deploy=True)
def static_files_without_hashed_names(app_configs, **kwargs) -> list[Warning]:
    """With DEBUG off, pages should name every static file by its hash (chat/staticfiles.py)."""
    from django.apps import apps
    from django.contrib.staticfiles import finders
    from django.contrib.staticfiles.storage import staticfiles_storage

    hashed = getattr(staticfiles_storage, "hashed_files", None)
    if settings.DEBUG or hashed is None:
        return []
    ignore = apps.get_app_config("staticfiles").ignore_patterns
    found = {
        Path(getattr(storage, "prefix", None) or "", path).as_posix()
        for finder in finders.get_finders()
        for path, storage in finder.list(ignore)
    }
    missing = sorted(found - hashed.keys())
    if not missing:
        return []
    manifest = Path(settings.STATIC_ROOT, staticfiles_storage.manifest_name)
    examples = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
    return [
        Warning(
            f"Static files without a hashed copy in {manifest}: {len(missing)} ({examples}). Pages "
            "name them by their plain names, which nginx and browsers may cache across releases.",
            hint="Run `manage.py collectstatic --noinput` with every release, before the processes start.",
            id="chat.W004",
        )
    ]


@register()
def in_memory_layer_in_production(app_configs, **kwargs) -> list[Warning]:
    """Warn when the in-memory channel layer is used with DEBUG off."""
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    if not settings.DEBUG and backend.endswith("InMemoryChannelLayer"):
        return [
            Warning(
                "The in-memory channel layer only reaches sockets of this one process.",
                hint="Set REDIS_URL to use channels_redis when you run several processes.",
                id="chat.W001",
            )
        ]
    return []


def key_errors(names: Iterable[str], check_id: str) -> list[Error]:
    """An error for each of these settings that holds a key other than base64 of 32
    bytes (chat/keys.py): the server stops at start, not at the first room or file."""
    errors = []
    for name in names:
        try:
            if value := getattr(settings, name):
                parse_kek(value, name)
        except ImproperlyConfigured as exc:
            errors.append(
                Error(
                    str(exc),
                    hint="Make one with python3 -c 'import base64, os; "
                    "print(base64.b64encode(os.urandom(32)).decode())' (docs/production.md).",
                    id=check_id,
                )
            )
    return errors


@register()
def malformed_room_key_encryption_keys(app_configs, **kwargs) -> list[Error]:
    return key_errors(("ROOM_KEY_ENCRYPTION_KEY", "ROOM_KEY_ENCRYPTION_KEY_PREVIOUS"), "chat.E001")


@register(Tags.database)
def room_keys_under_other_keys(app_configs, databases=None, **kwargs) -> list[Error]:
    """chat.E002: the key-encryption keys do not open the newest standard room's key. A
    site restored or moved under other keys started and answered /healthz, and then
    every join of an old room was server_error (`KeyUnavailable` in the log only). A
    database check: `serve` and `migrate` run it, and `check --database default`. Not
    migrated yet, or the database unreachable: nothing to say here."""
    from chat.models import Room

    if DEFAULT_DB_ALIAS not in (databases or ()):
        return []
    try:
        newest = Room.objects.exclude(wrapped_key="").order_by("-created_at").values_list("pk", "wrapped_key")
        found = newest.first()
    except DatabaseError:
        return []
    if found is None or malformed_room_key_encryption_keys(None):  # chat.E001 says what is wrong
        return []
    try:
        keys.unwrap(*found)
    except keys.KeyUnavailable:
        return [
            Error(
                "ROOM_KEY_ENCRYPTION_KEY (or ROOM_KEY_ENCRYPTION_KEY_PREVIOUS) does not open the "
                "room keys in this database: no standard room could be joined.",
                hint=OTHER_KEYS_HINT,
                id="chat.E002",
            )
        ]
    return []


@register(deploy=True)
def generated_room_key_encryption_key_in_production(app_configs, **kwargs) -> list[Warning]:
    """Room keys wrapped under a key generated on this machine: fine on a laptop only."""
    if not settings.ROOM_KEY_ENCRYPTION_KEY:
        return [
            Warning(
                "ROOM_KEY_ENCRYPTION_KEY is not set: room keys are wrapped under a key generated "
                "into ROOM_KEY_ENCRYPTION_KEY_FILE on this machine.",
                hint="Set ROOM_KEY_ENCRYPTION_KEY (base64 of 32 random bytes) on every server process, "
                "keep it out of the database's backups, and move existing rooms onto it with "
                "`manage.py rewrap_room_keys --old-key-file` (docs/production.md).",
                id="chat.W005",
            )
        ]
    return []


@register()
def history_larger_than_the_send_queue(app_configs, **kwargs) -> list[Warning]:
    """A full History that cannot fit in WS_SEND_QUEUE_BYTES makes every join wait for
    all other sockets of its address to have read everything (docs/protocol-notes.md,
    "Large replies wait for the reader")."""
    from chat.actions import history_estimate

    most = history_estimate(settings.CHAT_HISTORY_LIMIT)
    if most > settings.WS_SEND_QUEUE_BYTES:
        return [
            Warning(
                f"CHAT_HISTORY_LIMIT x CHAT_MAX_CONTENT (about {most} bytes of History) "
                f"is more than WS_SEND_QUEUE_BYTES ({settings.WS_SEND_QUEUE_BYTES}): a join is refused "
                "`rate_limited` whenever another socket of its address has anything unread.",
                hint="Raise WS_SEND_QUEUE_BYTES or lower CHAT_HISTORY_LIMIT or CHAT_MAX_CONTENT.",
                id="chat.W006",
            )
        ]
    return []
