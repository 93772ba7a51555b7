"""`/files/<id>`: a download for a browser session that has joined the file's room."""

import io
import uuid
from collections.abc import AsyncIterator
from importlib import import_module

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseNotFound
from django.utils import timezone
from django.views.decorators.http import require_GET

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


def _not_found() -> HttpResponse:
    # One answer for unknown, expired, deleted and other rooms' files alike.
    return HttpResponseNotFound("Not found", content_type="text/plain")


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(view), CHUNK):
        yield bytes(view[start : start + CHUNK])


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
    work_owner.set(client_address(request.scope))
    try:
        file = await database(_joined_file)(key, session_key)
        if file is None:
            return _not_found()
        data = await file_work.run(blobs.read, file.id, file.blob)
    except FileNotFoundError:
        return _not_found()
    except Busy:  # a bounded queue is full: the database's or the file threads'
        return HttpResponse(
            "Busy; try again.", status=503, content_type="text/plain", headers={"Retry-After": "1"}
        )
    # FileResponse writes the attachment headers (name encoded per RFC 6266, length);
    # the body is then served from an async iterator, so no thread copies it out.
    response = FileResponse(
        io.BytesIO(data), as_attachment=True, filename=file.shown_name, content_type=file.mime_type
    )
    response.streaming_content = _chunks(data)
    for name, value in DOWNLOAD_HEADERS.items():
        response[name] = value
    return response
