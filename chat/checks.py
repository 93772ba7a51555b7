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
