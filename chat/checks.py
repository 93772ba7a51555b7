"""System checks for dangerous combinations of settings."""

from django.conf import settings
from django.core.checks import Warning, register


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
    from files.validation import NEVER_ALLOWED, VERIFIABLE

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
