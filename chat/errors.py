"""One base error with a `code`; every refusal the protocol knows is one of these."""

import errno
import sqlite3
from enum import IntEnum, StrEnum


class ErrorCode(StrEnum):
    INVALID_JSON = "invalid_json"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_FIELD = "invalid_field"
    NOT_IN_ROOM = "not_in_room"
    ALREADY_IN_ROOM = "already_in_room"
    ROOM_NOT_FOUND = "room_not_found"
    WRONG_PASSWORD = "wrong_password"
    NAME_TAKEN = "name_taken"
    RATE_LIMITED = "rate_limited"
    MESSAGE_TOO_LARGE = "message_too_large"
    FILE_TOO_LARGE = "file_too_large"
    MIME_NOT_ALLOWED = "mime_not_allowed"
    QUOTA_EXCEEDED = "quota_exceeded"
    FILE_NOT_FOUND = "file_not_found"
    MESSAGE_NOT_FOUND = "message_not_found"
    FORBIDDEN = "forbidden"
    ROOM_CLOSED = "room_closed"
    KICKED = "kicked"
    SERVER_ERROR = "server_error"


DEFAULT_MESSAGES = {
    ErrorCode.INVALID_JSON: "The frame is not a JSON object.",
    ErrorCode.UNKNOWN_TYPE: "Unknown or missing message type.",
    ErrorCode.INVALID_FIELD: "A field is missing or invalid.",
    ErrorCode.NOT_IN_ROOM: "Join a room first.",
    ErrorCode.ALREADY_IN_ROOM: "Leave this room first.",
    ErrorCode.ROOM_NOT_FOUND: "No open room has that join key.",
    ErrorCode.WRONG_PASSWORD: "Wrong password.",
    ErrorCode.NAME_TAKEN: "That name is already taken in this room.",
    ErrorCode.RATE_LIMITED: "Too many requests; slow down.",
    ErrorCode.MESSAGE_TOO_LARGE: "The message is too large.",
    ErrorCode.FILE_TOO_LARGE: "The file is too large.",
    ErrorCode.MIME_NOT_ALLOWED: "That file type is not allowed.",
    ErrorCode.QUOTA_EXCEEDED: "The room's file quota is used up.",
    ErrorCode.FILE_NOT_FOUND: "File not found or expired",
    ErrorCode.MESSAGE_NOT_FOUND: "No such message in this room.",
    ErrorCode.FORBIDDEN: "You are not allowed to do that.",
    ErrorCode.ROOM_CLOSED: "The room was closed.",
    ErrorCode.KICKED: "You were removed from the room.",
    ErrorCode.SERVER_ERROR: "Something went wrong on the server; try again.",
}


class ProtocolError(Exception):
    """A refusal the client is told about as `Error {code, message}`."""

    def __init__(self, code: ErrorCode, message: str | None = None) -> None:
        self.code = code
        self.message = message or DEFAULT_MESSAGES[code]
        super().__init__(f"{code.value}: {self.message}")


class OverLimit(ProtocolError):
    """`rate_limited` by a limit the operator sets, as every `rate_limited` is: `setting`
    names it in the log line (`event=error code=rate_limited limit=ROOMS_PER_HOUR`; a
    pair of settings as `CHAT_RATE_*`), never to the client, whose `message` says the
    limit in its own terms."""

    def __init__(self, setting: str, message: str | None = None) -> None:
        super().__init__(ErrorCode.RATE_LIMITED, message)
        self.setting = setting


class CloseCode(IntEnum):
    """The close codes the server sends (PROTOCOL.md), besides the transport's own."""

    ABUSE = 1008  # right after the 51st `rate_limited` frame within 10 s
    TRY_AGAIN_LATER = 1013  # past CONNECTIONS_PER_ADDRESS on a server without ASGI's denial response
    ROOM_CLOSED = 4000  # an admin closed the room
    KICKED = 4001  # an admin removed the participant
    TOO_SLOW = 4002  # past WS_SEND_QUEUE_LIMIT or WS_SEND_QUEUE_BYTES unread
    REPLACED = 4003  # the participant resumed on another connection
    SEAT_LOST = 1012  # swept as a ghost while this socket lived: reconnect and resume the seat


# The message of a `server_error` whose cause is a full disk (`storage_full`).
STORAGE_FULL = "The server's storage is full; try again later."


def storage_full(exc: BaseException) -> bool:
    """Whether `exc`, or the database error it wraps, says the disk is full: ENOSPC or
    EDQUOT from a file's write, SQLite's SQLITE_FULL, PostgreSQL's disk_full (53100)."""
    for error in (exc, exc.__cause__):
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return True
        if getattr(error, "sqlstate", None) == "53100":  # psycopg's DiskFull
            return True
    return False
