"""HTTP: the app page (gives the browser its session cookie) and the health check."""

import asyncio
import logging

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from chat import selectors
from chat.errors import ProtocolError
from chat.services import SESSION_ROOMS_KEY
from files import validation

logger = logging.getLogger(__name__)

HEALTH_TIMEOUT = 2.0


def room_has_password(join_key: str) -> bool | None:
    """Whether the open room behind a share link has a password; None when there is none."""
    try:
        return selectors.room_door(join_key=join_key).password_hash != ""
    except ProtocolError:
        return None


def app_config(join_key: str) -> dict:
    """What the page's script needs from the server, handed over through json_script.

    The page offers exactly the types the server accepts (never html or svg, only
    types whose bytes it can verify), so it can refuse the others before sending."""
    allowed = [validation.normalise_mime(t) for t in settings.FILES_ALLOWED_MIME_TYPES]
    return {
        "join_key": join_key,
        # A share link asks for a password only when the room has one.
        "has_password": room_has_password(join_key) if join_key else None,
        "files_max_size": settings.FILES_MAX_SIZE,
        "files_allowed_mime_types": [t for t in allowed if validation.mime_allowed(t, allowed)],
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
