"""Sharing, fetching and deleting files: what files/actions.py, the HTTP view and the
admin call.

Database work is plain sync functions, run through the bounded database queue
(`chat.workers.database`: past DATABASE_QUEUE, `rate_limited`) except an upload's final
write, whose work is done by then (`chat.workers.on_database_thread`); the CPU-heavy steps
(base64, sha256, AES-GCM, clamd) run in the low-priority `file_work` worker threads, never
on the event loop. `share`, `fetch` and `delete` put the two together.
"""

import base64
import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Sum

from chat import protocol
from chat.errors import ErrorCode, ProtocolError
from chat.models import Participant, Room
from chat.protocol import file_content_frame, file_metadata
from chat.services import Seat, message_post, seat_check, seat_hold
from chat.workers import database, file_work, let_loop_run, on_database_thread
from files import blobs, scan, validation
from files.models import SharedFile

logger = logging.getLogger(__name__)
audit = logging.getLogger("files.audit")


# Encode in slices, letting the event loop run between them (chat/workers.py).
_ENCODE_SLICE = 96 * 1024  # a multiple of 3


def not_found() -> ProtocolError:
    return ProtocolError(ErrorCode.FILE_NOT_FOUND)


def file_id_of(value: str) -> uuid.UUID | None:
    """The id a `file_id` names, compared exactly as sent (PROTOCOL.md): only the
    canonical form (lower case, hyphens) names a file, not `uuid.UUID`'s other spellings."""
    try:
        key = uuid.UUID(value)
    except ValueError:
        return None
    return key if str(key) == value else None


def parse_file_id(value: str) -> uuid.UUID:
    """An id that is not a valid id is `file_not_found` (PROTOCOL.md)."""
    key = file_id_of(value)
    if key is None:
        raise not_found()
    return key


def metadata(file: SharedFile) -> dict:
    return file_metadata(
        file_id=file.id, name=file.name, mime_type=file.mime_type, size=file.size, expires_at=file.expires_at
    )


# --- Database steps (sync) ----------------------------------------------------------


def live_file(*, room_id: uuid.UUID, file_id: uuid.UUID, now: datetime) -> SharedFile:
    """A live file of this room, or `file_not_found` for anything else."""
    file = SharedFile.objects.live(now).filter(room_id=room_id, pk=file_id).first()
    if file is None:
        raise not_found()
    return file


def seat_file(*, seat: Seat, file_id: uuid.UUID, now: datetime) -> SharedFile:
    """`live_file` for a seat that is still present in its open room (else SeatGone)."""
    seat_check(seat=seat)
    return live_file(room_id=seat.room_id, file_id=file_id, now=now)


def _bytes(files: models.QuerySet) -> int:
    return files.aggregate(total=Sum("size"))["total"] or 0


def quota_used(*, room_id: uuid.UUID, now: datetime) -> int:
    return _bytes(SharedFile.objects.live(now).filter(room_id=room_id))


def check_quota(*, room_id: uuid.UUID, size: int, now: datetime, participant_id: int | None = None) -> None:
    """The live files' bytes with this upload's, under the room's FILES_ROOM_QUOTA, its
    uploader's client address's FILES_ADDRESS_QUOTA (over every room: an address makes
    rooms and joins others') and the server's FILES_TOTAL_QUOTA (the disk is shared)."""
    live = SharedFile.objects.live(now)
    if _bytes(live.filter(room_id=room_id)) + size > settings.FILES_ROOM_QUOTA:
        raise ProtocolError(ErrorCode.QUOTA_EXCEEDED)
    address = (
        Participant.objects.filter(pk=participant_id).values_list("address", flat=True).first()
        if participant_id is not None
        else None
    )
    if address and _bytes(live.filter(uploader__address=address)) + size > settings.FILES_ADDRESS_QUOTA:
        message = "Your files in all rooms use up your quota; delete some or wait for them to expire."
        raise ProtocolError(ErrorCode.QUOTA_EXCEEDED, message)
    if _bytes(live) + size > settings.FILES_TOTAL_QUOTA:
        raise ProtocolError(ErrorCode.QUOTA_EXCEEDED, "The server's file storage is full; try again later.")


@dataclass(frozen=True)
class Blob:
    file_id: uuid.UUID
    name: str
    size: int
    sha256: str


# The PostgreSQL advisory lock that one upload's quota check and row hold at a time.
QUOTA_LOCK = int.from_bytes(b"quotas")


def take_quota_turn() -> None:
    """Wait for this transaction's turn at the quotas: until it ends, no other upload
    checks them, in any process. Uploads to different rooms share the address's and the
    server's quotas, which a room's row lock does not cover; on PostgreSQL they would
    each see the bytes of the others not yet committed, and pass together. SQLite's
    transactions take turns already (IMMEDIATE)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [QUOTA_LOCK])


def file_record(*, seat: Seat, name: str, mime_type: str, blob: Blob, now: datetime) -> SharedFile:
    """Record an uploaded file and its file message in one transaction.

    Uploads take turns at the quotas (`take_quota_turn`), so that concurrent ones cannot
    pass them together; a closed room stores nothing."""
    with transaction.atomic():
        take_quota_turn()
        seat_hold(seat=seat)  # before the room: its file message holds the seat
        room = Room.objects.select_for_update().filter(pk=seat.room_id, closed_at__isnull=True).first()
        seat_check(seat=seat)  # removed or closed out: nothing is stored (SeatGone)
        if room is None:
            raise ProtocolError(ErrorCode.ROOM_CLOSED)
        check_quota(room_id=seat.room_id, size=blob.size, now=now, participant_id=seat.participant_id)
        # A sealed room's file is announced by its uploader's own (encrypted) message.
        content = None if seat.sealed else validation.file_message(name, mime_type, str(blob.file_id))
        message_id, seq = message_post(seat=seat, content=content, now=now) if content else (None, None)
        shared = SharedFile.objects.create(
            id=blob.file_id,
            room_id=seat.room_id,
            uploader_id=seat.participant_id,
            uploader_name=seat.name,
            name=name,
            mime_type=mime_type,
            size=blob.size,
            sha256=blob.sha256,
            blob=blob.name,
            message_id=message_id,
            created_at=now,
            expires_at=now + timedelta(seconds=settings.FILES_TTL),
        )
    shared.message_seq, shared.message_content = seq, content
    return shared


def file_delete(*, seat: Seat, file_id: uuid.UUID, now: datetime) -> SharedFile:
    """Mark a file deleted (its uploader's seat or an owner); the blob goes on commit."""
    with transaction.atomic():
        seat_check(seat=seat)
        file = (
            SharedFile.objects.select_for_update().live(now).filter(room_id=seat.room_id, pk=file_id).first()
        )
        if file is None:
            raise not_found()
        if not (seat.is_owner or file.uploader_id == seat.participant_id):
            raise ProtocolError(ErrorCode.FORBIDDEN, "Only the uploader or the room owner can delete a file.")
        _mark_deleted(file, now)
    return file


def _mark_deleted(file: SharedFile, now: datetime) -> None:
    file.deleted_at = now
    file.save(update_fields=["deleted_at"])
    blobs.remove_on_commit([file.blob])


# --- CPU steps (run in the file-work threads) ---------------------------------------------


def check_bytes(mime_type: str, data: bytes) -> None:
    validation.check_upload(
        mime_type, data, max_size=settings.FILES_MAX_SIZE, allowed=settings.FILES_ALLOWED_MIME_TYPES
    )


def scan_and_store(file_id: uuid.UUID, data: bytes, seat: Seat | None = None) -> Blob:
    """Scan (not a sealed room's ciphertext: nothing could be found in it) and store."""
    if scan.enabled() and not (seat is not None and seat.sealed):
        try:
            signature = scan.scan(data)
        except scan.ScannerUnavailable as exc:
            logger.exception("upload refused: the malware scanner is unavailable")
            message = "The malware scanner is unavailable; try again later."
            raise ProtocolError(ErrorCode.SERVER_ERROR, message) from exc
        if signature is not None:
            audit.warning(
                "upload refused: malware signature=%s room=%s participant=%s size=%d sha256=%s",
                signature,
                seat and seat.room_id,
                seat and seat.participant_id,
                len(data),
                hashlib.sha256(data).hexdigest(),
            )
            raise ProtocolError(ErrorCode.FORBIDDEN, "The file was refused by the malware scanner.")
    digest = hashlib.sha256(data).hexdigest()
    return Blob(file_id=file_id, name=blobs.write(file_id, data), size=len(data), sha256=digest)


def encode_content(data: bytes) -> str:
    parts = []
    for start in range(0, len(data), _ENCODE_SLICE):
        parts.append(base64.b64encode(data[start : start + _ENCODE_SLICE]).decode("ascii"))
        let_loop_run()
    return "".join(parts)


def file_content(file: SharedFile) -> str:
    """The whole `FileContent` frame, built around the base64 without re-scanning it."""
    return file_content_frame(metadata(file), encode_content(blobs.read(file.id, file.blob)))


# --- What chat/actions.py calls (async) ----------------------------------------------


async def decode(content: str) -> bytes:
    """Strict base64 of an upload, decoded beside the loop; `invalid_field` if not."""
    return await file_work.run(validation.decode_base64, content)


async def share(*, seat: Seat, name: str, mime_type: str, data: bytes, now: datetime) -> SharedFile:
    """Validate and store an upload, in PROTOCOL.md's order: size, type, quota. A sealed
    room's upload is ciphertext: its name and type must say so, and neither its bytes'
    type nor malware can be checked (PROTOCOL.md, "Sealed rooms")."""
    mime_type = validation.normalise_mime(mime_type)
    if seat.sealed:
        if name != protocol.SEALED_FILE_NAME or mime_type != protocol.SEALED_FILE_TYPE:
            raise ProtocolError(
                ErrorCode.MIME_NOT_ALLOWED,
                f"A sealed room takes only {protocol.SEALED_FILE_TYPE} named {protocol.SEALED_FILE_NAME}.",
            )
    else:
        await file_work.run(check_bytes, mime_type, data)
    await database(check_quota)(
        room_id=seat.room_id, size=len(data), now=now, participant_id=seat.participant_id
    )
    blob = await file_work.run(scan_and_store, uuid.uuid4(), data, seat)
    try:
        return await on_database_thread(file_record)(
            seat=seat, name=name, mime_type=mime_type, blob=blob, now=now
        )
    except Exception:
        # Not on a cancel: the database thread may still commit the row, which needs
        # its blob; one whose row never comes is an orphan for purge_files.
        blobs.remove(blob.name)
        raise


async def fetch(*, seat: Seat, file_id: str, now: datetime) -> str:
    """The `FileContent` frame for a live file of the seat's room."""
    key = parse_file_id(file_id)
    file = await database(seat_file)(seat=seat, file_id=key, now=now)
    try:
        return await file_work.run(file_content, file)
    except FileNotFoundError:
        # Purged between the row read and the blob read.
        raise not_found() from None


async def delete(*, seat: Seat, file_id: str, now: datetime) -> SharedFile:
    return await database(file_delete)(seat=seat, file_id=parse_file_id(file_id), now=now)


def file_remove(*, file_id: uuid.UUID, now: datetime, room_id: uuid.UUID | None = None) -> SharedFile | None:
    """An admin's delete, or its message's (`room_id`: only a file of that room): like
    `file_delete` without the rights check. None if the file was not live (expired or
    deleted already)."""
    with transaction.atomic():
        live = SharedFile.objects.select_for_update().live(now).filter(pk=file_id)
        file = (live.filter(room_id=room_id) if room_id is not None else live).first()
        if file is None:
            return None
        _mark_deleted(file, now)
    return file


def room_files_drop(*, room_id: uuid.UUID) -> None:
    """Before a room is deleted (its rows cascade, files/signals.py): its blobs go once
    that commits."""
    blobs.remove_on_commit(list(SharedFile.objects.filter(room_id=room_id).values_list("blob", flat=True)))
