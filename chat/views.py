"""HTTP: the app page (gives the browser its session cookie) and the health check."""

import asyncio
import logging
import os
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as redis
from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers, patch_cache_control

from chat import browser_sessions, redis_clients, selectors
from chat.errors import ProtocolError
from chat.workers import on_database_thread

logger = logging.getLogger(__name__)

HEALTH_TIMEOUT = 2.0


def share_link_room(join_key: str) -> dict:
    """What a share link's page tells before joining: whether the room has a password
    (None when no open room has this key) and whether it is sealed."""
    try:
        room = selectors.room_door(join_key=join_key).room
    except ProtocolError:
        return {"has_password": None, "sealed": False}
    return {"has_password": room.password_hash != "", "sealed": room.sealed}


def app_config(join_key: str) -> dict:
    """What the page's script needs from the server, handed over through json_script
    (the files' part comes from files/context_processors.py)."""
    # A share link asks for a password only when the room has one, and for the whole
    # link when a sealed room's secret is missing from the address.
    room = share_link_room(join_key) if join_key else {"has_password": None, "sealed": False}
    return {
        "join_key": join_key,
        # How long one's own messages stay editable (the page offers Edit only within it).
        "edit_window": settings.CHAT_EDIT_WINDOW,
        # How long a participant whose process died may hold its name (the presence
        # sweep's worst case): a rejoin refused name_taken is retried that long.
        "ghost_seconds": settings.PRESENCE_TIMEOUT + settings.PRESENCE_HEARTBEAT,
        # The most messages a join's History holds: fewer, and nothing is older.
        "history_limit": settings.CHAT_HISTORY_LIMIT,
        # How often the page asks for the whole member list again (0: never).
        "members_refresh": settings.MEMBERS_REFRESH,
        **room,
    }


def index(request: HttpRequest, join_key: str = "") -> HttpResponse:
    """Called for `/` and the share link `/rooms/<join_key>/`: the page, with a session
    cookie and no session row (chat/browser_sessions.py)."""
    response = render(request, "chat/index.html", {"join_key": join_key, "config": app_config(join_key)})
    browser_sessions.give_cookie(request, response)
    # A sealed room's key is in this page's address (its #fragment): no request the page
    # makes may carry the address on. Only here: the admin's forms need same-origin (CSRF).
    response["Referrer-Policy"] = "no-referrer"
    # Its cookie is this browser's (its download rights): no shared cache may keep the page
    # and hand the cookie to others.
    add_never_cache_headers(response)
    patch_cache_control(response, private=True)
    return response


def _database_answers() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


# Per event loop (redis.asyncio clients belong to theirs): a client per Redis host.
_redis_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, redis.Redis]] = (
    weakref.WeakKeyDictionary()
)


async def _layer_answers() -> None:
    """Each Redis host of the channel layer answers a PING on a connection of the
    check's own. Never a receive: the hub is the only receiver in a process (chat/hub.py).
    The in-memory layer lives in this process: nothing to ask."""
    clients = _redis_clients.setdefault(asyncio.get_running_loop(), {})
    for host in redis_clients.layer_hosts():
        place = repr(host)
        if place not in clients:
            clients[place] = redis_clients.client(host, timeout=HEALTH_TIMEOUT)
        await clients[place].ping()


class StorageFull(Exception):
    """A folder the server writes has less than HEALTHZ_MIN_FREE_BYTES free."""


def written_folders() -> list[Path]:
    """The local folders the server writes to: the SQLite database's (its WAL beside it)
    and FILES_ROOT (made by the first upload: until then the folder it will be made in)."""
    database = connection.settings_dict
    folders = [Path(database["NAME"]).parent] if database["ENGINE"].endswith("sqlite3") else []
    root = Path(settings.FILES_ROOT)
    while not root.exists() and root != root.parent:
        root = root.parent
    return [*folders, root]


def _storage_has_room() -> None:
    for folder in written_folders():
        found = os.statvfs(folder)
        free = found.f_bavail * found.f_frsize
        if free < settings.HEALTHZ_MIN_FREE_BYTES:
            raise StorageFull(
                f"{folder} has {free} bytes free (HEALTHZ_MIN_FREE_BYTES {settings.HEALTHZ_MIN_FREE_BYTES})"
            )


async def _storage_answers() -> None:
    """Room left on disk: a full disk fails every write while a SELECT still answers.
    Beside the loop, as a stat on a hung network filesystem would block it."""
    await asyncio.to_thread(_storage_has_room)


CHECKS: dict[str, Callable[[], Awaitable[None]]] = {
    "database": on_database_thread(_database_answers),
    "channel_layer": _layer_answers,
    "storage": _storage_answers,
}
# The check of each kind in flight, per event loop: requests that come meanwhile share it.
_in_flight: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Task]] = (
    weakref.WeakKeyDictionary()
)


def _log_failure(name: str) -> Callable[[asyncio.Task], None]:
    def done(task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is None:
            return
        if isinstance(task.exception(), StorageFull):
            logger.warning("healthz: storage is full: %s", task.exception())
        else:
            logger.warning("healthz: %s does not answer", name, exc_info=task.exception())

    return done


def _check(name: str) -> asyncio.Task:
    loop = asyncio.get_running_loop()
    running = _in_flight.setdefault(loop, {})
    task = running.get(name)
    if task is None or task.done():
        task = running[name] = loop.create_task(CHECKS[name]())
        task.add_done_callback(_log_failure(name))
    return task


async def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database and the channel layer answer within HEALTH_TIMEOUT and the
    folders the server writes have HEALTHZ_MIN_FREE_BYTES free, 503 otherwise (`down`,
    or `full` for the storage). A flood of requests costs one check of each kind at a
    time, and nothing is cancelled: a check that is late is bounded by its own timeouts (the database
    pool's, HEALTH_TIMEOUT for Redis) and the next request after it starts a new one."""
    tasks = {name: _check(name) for name in CHECKS}
    await asyncio.wait(tasks.values(), timeout=HEALTH_TIMEOUT)
    status = {}
    for name, task in tasks.items():
        answered = task.done() and not task.cancelled() and task.exception() is None
        if not task.done():
            logger.warning("healthz: %s did not answer within %s s", name, HEALTH_TIMEOUT)
        full = task.done() and not task.cancelled() and isinstance(task.exception(), StorageFull)
        status[name] = "ok" if answered else "full" if full else "down"
    healthy = all(value == "ok" for value in status.values())
    return JsonResponse({"status": "ok" if healthy else "down", **status}, status=200 if healthy else 503)


class HealthzFirst:
    """Answers `/healthz` before the middleware that checks the host. Health checks ask
    each process on its own address (`http://127.0.0.1:8001/healthz`), which is no
    allowed host: CommonMiddleware would answer 400 (and SECURE_REDIRECT_EXEMPT keeps
    the HTTPS redirect off it)."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponse]]) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == "/healthz":
            return await healthz(request)
        return await self.get_response(request)
