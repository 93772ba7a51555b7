"""What each file command does (UploadFile, GetFile, DeleteFile): the files' side of
chat/actions.py, built on its steps (the connection, its limits, large replies) and
answered the same way. config/routing.py gives the consumer this table beside the chat's.
"""

from django.conf import settings
from django.utils import timezone

from chat import protocol
from chat.actions import (
    Action,
    Connection,
    read_reply,
    ready_for_large_reply,
    require_room,
    take_chat,
    take_deliveries,
    take_read,
)
from chat.errors import ErrorCode, OverLimit, ProtocolError
from chat.hub import publish
from chat.oplog import event
from chat.ratelimit import take_slot
from chat.workers import file_work
from files import services as files
from files import validation


async def upload_file(conn: Connection, command: protocol.UploadFile) -> None:
    # The cheap checks first: room, upload rate, what its file message costs its address
    # to hand out, size from the base64's length. The content is decoded only when they
    # pass; when one fails, the content is still checked (without keeping the bytes),
    # since strict base64 is a field rule and comes first (PROTOCOL.md). A rate-limited
    # upload takes no place in the window.
    seat = conn.seat
    if seat is None:
        await check_content(command)
        raise ProtocolError(ErrorCode.NOT_IN_ROOM)
    if not take_slot(conn.uploads, settings.FILES_UPLOADS_PER_MINUTE):
        await check_content(command)
        raise OverLimit("FILES_UPLOADS_PER_MINUTE", "Too many uploads; wait a minute.")
    conn.slot = conn.uploads
    if not seat.sealed:  # the room's file message; a sealed room's card pays as chat
        try:
            await take_deliveries(conn)
        except OverLimit:
            await check_content(command)
            raise
    # A sealed room's file arrives encrypted: its nonce and tag come on top of the limit.
    overhead = protocol.MIN_CIPHERTEXT_BYTES if seat.sealed else 0
    if protocol.decoded_size(command.content) > settings.FILES_MAX_SIZE + overhead:
        await check_content(command)
        raise ProtocolError(ErrorCode.FILE_TOO_LARGE)
    data = await content_bytes(command)
    now = timezone.now()
    shared = await files.share(seat=seat, name=command.name, mime_type=command.mime_type, data=data, now=now)
    conn.send(protocol.file_uploaded_message(files.metadata(shared)))
    event("file_uploaded", room=seat.room_id, file=shared.id, size=shared.size)
    if seat.sealed:
        return  # its uploader announces it with an encrypted card (PROTOCOL.md)
    # Both set by the write that stored the file's message (services.file_record).
    assert shared.message_seq is not None and shared.message_content is not None
    link = protocol.chat_message(shared.message_id, seat.name, shared.message_content, now)
    await publish(seat.room_id, link, message_id=shared.message_id, seq=shared.message_seq)


async def get_file(conn: Connection, command: protocol.GetFile) -> None:
    seat = require_room(conn)
    take_read(conn)
    # One file frame in flight per socket: a client that does not read its
    # downloads holds at most one of them in server memory.
    await ready_for_large_reply(conn, 4 * ((settings.FILES_MAX_SIZE + 2) // 3))
    conn.outbox.put(
        read_reply(conn, await files.fetch(seat=seat, file_id=command.file_id, now=timezone.now()))
    )


async def delete_file(conn: Connection, command: protocol.DeleteFile) -> None:
    seat = require_room(conn)
    await take_chat(conn)  # a database transaction each, as DeleteMessage
    deleted = await files.delete(seat=seat, file_id=command.file_id, now=timezone.now())
    await publish(seat.room_id, protocol.file_deleted_message(str(deleted.id)), stored=True)


ACTIONS: dict[type, Action] = {
    protocol.UploadFile: upload_file,
    protocol.GetFile: get_file,
    protocol.DeleteFile: delete_file,
}


# --- An upload's content -------------------------------------------------------------


async def content_bytes(command: protocol.UploadFile) -> bytes:
    """The upload's bytes: strict base64, decoded beside the loop."""
    try:
        return await files.decode(command.content)
    except ProtocolError:
        await judge_large_frame(command)
        raise


async def check_content(command: protocol.UploadFile) -> None:
    """Only the check that the upload's content is strict base64, keeping nothing."""
    try:
        await file_work.run(validation.check_base64, command.content)
    except ProtocolError:
        await judge_large_frame(command)
        raise


async def judge_large_frame(command: protocol.UploadFile) -> None:
    """A large frame's content refused as base64: was the frame even JSON?
    (`invalid_json` comes first; see protocol.parse_large_frame)."""
    if command.large:
        await file_work.run(protocol.check_large_string, command.content)
