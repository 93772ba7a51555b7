"""HTTP: the app page (gives the browser its session cookie) and the health check."""

import asyncio
import logging

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from chat.services import SESSION_ROOMS_KEY

logger = logging.getLogger(__name__)

HEALTH_TIMEOUT = 2.0
# PROTOCOL.md, Limits: never allowed, whatever FILES_ALLOWED_MIME_TYPES says.
NEVER_ALLOWED_MIME_TYPES = {"text/html", "image/svg+xml"}
DEFAULT_ALLOWED_MIME_TYPES = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
    "application/zip",
]


def app_config(join_key: str) -> dict:
    """What the page's script needs from the server, handed over through json_script."""
    allowed = getattr(settings, "FILES_ALLOWED_MIME_TYPES", DEFAULT_ALLOWED_MIME_TYPES)
    return {
        "join_key": join_key,
        "files_max_size": getattr(settings, "FILES_MAX_SIZE", 10485760),
        "files_allowed_mime_types": [t.lower() for t in allowed if t.lower() not in NEVER_ALLOWED_MIME_TYPES],
    }


def index(request: HttpRequest, join_key: str = "") -> HttpResponse:
    """Called for `/` and the share link `/rooms/<join_key>/`."""
    # A WebSocket opened with this session cookie ties its joins to the session.
    request.session.setdefault(SESSION_ROOMS_KEY, [])
    return render(request, "chat/index.html", {"join_key": join_key, "config": app_config(join_key)})


def _database_answers() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _layer_answers() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel("healthz.")
    await layer.send(channel, {"type": "healthz.ping"})
    await layer.receive(channel)


async def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database and the channel layer answer, 503 otherwise."""
    status = {"database": "ok", "channel_layer": "ok"}
    checks = {
        "database": database_sync_to_async(_database_answers)(),
        "channel_layer": _layer_answers(),
    }
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check, HEALTH_TIMEOUT)
        except Exception:
            logger.warning("healthz: %s does not answer", name, exc_info=True)
            status[name] = "down"
    healthy = all(value == "ok" for value in status.values())
    return JsonResponse({"status": "ok" if healthy else "down", **status}, status=200 if healthy else 503)
