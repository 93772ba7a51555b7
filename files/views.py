"""`/files/<id>`: a download for a browser session that has joined the file's room."""

import io
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from importlib import import_module
from typing import ClassVar

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseNotFound
from django.utils import timezone
from django.views.decorators.http import require_GET

from chat import oplog
from chat.http_guard import ABORT
from chat.outbox import add_backlog, large_reply_fits
from chat.ratelimit import downloads_in_flight, read_bytes
from chat.security import client_address
from chat.services import SESSION_ROOMS_KEY, session_may_download
from chat.workers import Busy, database, file_work, work_owner
from files import blobs
from files.models import SharedFile
from files.services import file_id_of

# The bytes are the user's: never rendered, never run, never cached.
DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, no-store",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Referrer-Policy": "no-referrer",
    # nginx in front (docs/production.md) passes the plaintext on as it comes, instead of
    # buffering a large one into a temporary file on its disk.
    "X-Accel-Buffering": "no",
}


CHUNK = 256 * 1024


def _busy() -> HttpResponse:
    return HttpResponse(
        "Busy; try again.", status=503, content_type="text/plain", headers={"Retry-After": "1"}
    )


def _read_much() -> HttpResponse:
    return HttpResponse(
        "Your connections have read much; wait a moment.",
        status=429,
        content_type="text/plain",
        headers={"Retry-After": "1"},
    )


def _not_found() -> HttpResponse:
    # One answer for unknown, expired, deleted and other rooms' files alike.
    return HttpResponseNotFound("Not found", content_type="text/plain")


class Reservation:
    """The bytes of a download's plaintext, held in memory until the client has read
    them: counted for its client address with its sockets' unread bytes (the address's
    backlog, under WS_SEND_QUEUE_BYTES, as a socket's large replies are) and in this
    process's DOWNLOADS_IN_FLIGHT_BYTES. One that passes either is 503: a client that
    opens downloads and never reads them holds about that much, not a file each.

    HTTP_WRITE_TIMEOUT cuts off only a client that reads nothing: one that reads 8 KiB/s
    kept a 10 MiB download, and its room in the process, for 20 minutes, and a few
    addresses of them refused every other download. So while a download finds no room,
    those whose clients have read under DOWNLOAD_MIN_BYTES_PER_SECOND since their body
    started, DOWNLOAD_GRACE_SECONDS ago at least, are cut off, the slowest first, until
    it fits (`make_room`). With room to spare, a slow link takes the time it needs."""

    # Downloads whose body is being sent and can be cut off (`serve`: chat/http_guard.py).
    sending: ClassVar[dict["Reservation", None]] = {}

    def __init__(self, address: str | None, size: int) -> None:
        self.address, self.size = address, size
        self.started = 0.0  # time.monotonic() when its body started
        self.sent = 0  # bytes of its body the connection has taken
        self.abort: Callable[[], None] | None = None

    @classmethod
    def take(cls, address: str | None, size: int) -> "Reservation | None":
        if not large_reply_fits(address, size):
            return None
        if not downloads_in_flight.take(size) and not cls.make_room(size):
            return None
        add_backlog(address, size)
        return cls(address, size)

    @classmethod
    def make_room(cls, size: int) -> bool:
        """Cut off slow downloads, the slowest first, until `size` fits in the process:
        whether it was taken. None is cut when all of them would not make the room."""
        floor, grace = settings.DOWNLOAD_MIN_BYTES_PER_SECOND, settings.DOWNLOAD_GRACE_SECONDS
        now = time.monotonic()
        slow = [held for held in list(cls.sending) if now - held.started >= grace and held.rate(now) < floor]
        lacking = downloads_in_flight.held + size - settings.DOWNLOADS_IN_FLIGHT_BYTES
        if sum(held.size for held in slow) < lacking:
            return False
        for held in sorted(slow, key=lambda held: held.rate(now)):
            held.cut()
            if downloads_in_flight.take(size):
                return True
        return False

    def body_started(self, abort: Callable[[], None] | None) -> None:
        """From now its client's reading is judged; without `abort` (`runserver`) never."""
        self.started = time.monotonic()
        if abort is not None and self.size:
            self.abort = abort
            Reservation.sending[self] = None

    def rate(self, now: float) -> float:
        """Bytes a second its client has read since its body started (those still in the
        kernel's buffers counted as read: a trickle's first few megabytes)."""
        seconds = now - self.started
        return self.sent / seconds if seconds > 0 else float("inf")

    def cut(self) -> None:
        """Its connection aborted (the response's app sees the client gone) and its room
        given back at once: the plaintext goes with the response, in a moment."""
        oplog.event("download_too_slow", client=self.address or "", sent=self.sent, size=self.size)
        if self.abort is not None:
            self.abort()
        self.release()

    def release(self) -> None:
        Reservation.sending.pop(self, None)
        if self.size:
            add_backlog(self.address, -self.size)
            downloads_in_flight.give(self.size)
            self.size = 0


async def _chunks(data: bytes, held: Reservation, abort: Callable[[], None] | None) -> AsyncIterator[bytes]:
    try:
        held.body_started(abort)
        view = memoryview(data)
        for start in range(0, len(view), CHUNK):
            held.sent = start  # asked for the next chunk: the connection took those before
            yield bytes(view[start : start + CHUNK])
    finally:
        held.release()


def _joined_file(file_id: uuid.UUID, session_key: str) -> SharedFile | None:
    """A live file of a room the session joined, while the session still holds a seat
    there that no admin's removal or close has ended (services.session_may_download).

    The session is read from its store, not through `request.session`: Django's
    middleware drops the cookie of a session it read and found empty, and a page's
    cookie has no row until its first join (chat/browser_sessions.py)."""
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    rooms = store.load().get(SESSION_ROOMS_KEY, [])
    if not rooms:
        return None
    now = timezone.now()
    file = SharedFile.objects.live(now).filter(pk=file_id, room_id__in=rooms).first()
    if file is None or not session_may_download(session_key=session_key, room_id=file.room_id, now=now):
        return None
    return file


@require_GET
async def download(request: HttpRequest, file_id: str) -> HttpResponse:
    """Async, so decryption runs in the file workers, not in the database thread."""
    key = file_id_of(file_id)
    session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME, "")
    if key is None or not session_key:
        return _not_found()
    # Its share of the file threads is its address's, as a socket's frames' is: one
    # client's downloads cannot hold them all (WORK_QUEUE_PER_ADDRESS).
    address = client_address(request.scope)
    work_owner.set(address)
    try:
        file = await database(_joined_file)(key, session_key)
        if file is None:
            return _not_found()
        # What an address reads is one budget, over the WebSocket (GetFile, History) and here.
        if not read_bytes.left(address or "unknown"):
            return _read_much()
        held = Reservation.take(address, file.size)
        if held is None:
            return _busy()
        try:
            data = await file_work.run(blobs.read, file.id, file.blob)
        except BaseException:
            held.release()
            raise
        read_bytes.spend(address or "unknown", file.size)  # read: it goes to the client
    except FileNotFoundError:
        return _not_found()
    except Busy:  # a bounded queue is full: the database's or the file threads'
        return _busy()
    # FileResponse writes the attachment headers (name encoded per RFC 6266, length);
    # the body is then served from an async iterator, so no thread copies it out.
    response = FileResponse(
        io.BytesIO(data), as_attachment=True, filename=file.shown_name, content_type=file.mime_type
    )
    response.streaming_content = _chunks(data, held, request.scope.get("extensions", {}).get(ABORT))
    # Given back when the body is sent, when Django closes the response, or when the
    # response goes (a client gone before its body started: the iterator never runs).
    response._resource_closers.append(held.release)
    weakref.finalize(response, held.release)
    for name, value in DOWNLOAD_HEADERS.items():
        response[name] = value
    return response
