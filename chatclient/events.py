"""What a `ChatClient` hands out: room and file descriptions, and typed, decrypted events."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# The server's file message (PROTOCOL.md, "After a successful UploadFile"): plaintext,
# and the only content that can start with "[" (ciphertext is base64).
FILE_LINK = re.compile(r"\[File: (?P<shown>[^\]]*)\]\(/files/(?P<file_id>[^)]+)\)\Z")


@dataclass(frozen=True, slots=True)
class RoomInfo:
    id: str
    name: str
    description: str
    join_key: str
    has_password: bool
    owner: str
    created_at: str

    @classmethod
    def from_wire(cls, info: dict[str, Any]) -> RoomInfo:
        return cls(**{name: info[name] for name in cls.__slots__})


@dataclass(frozen=True, slots=True)
class FileMetadata:
    id: str
    name: str
    mime_type: str
    size: int
    expires_at: str

    @classmethod
    def from_wire(cls, metadata: dict[str, Any]) -> FileMetadata:
        return cls(**{name: metadata[name] for name in cls.__slots__})


@dataclass(frozen=True, slots=True)
class Message:
    """A chat message. `text` is None when the content does not open with the room key."""

    id: int
    sender: str
    text: str | None
    sent_at: str


@dataclass(frozen=True, slots=True)
class FileShared:
    """The server's plaintext file message: `name` is the file name as shown in the link."""

    id: int
    sender: str
    name: str
    file_id: str
    sent_at: str


@dataclass(frozen=True, slots=True)
class History:
    """Messages from before this connection joined, oldest first, none already seen."""

    messages: list[Message | FileShared]


@dataclass(frozen=True, slots=True)
class Joined:
    name: str


@dataclass(frozen=True, slots=True)
class Left:
    name: str


@dataclass(frozen=True, slots=True)
class FileDeleted:
    file_id: str


@dataclass(frozen=True, slots=True)
class MessageDeleted:
    """An admin deleted the message with this id (this server's addition to PROTOCOL.md)."""

    id: int


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """An `Error` that answers none of this client's requests (e.g. `room_closed`)."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """The connection dropped; the client is reconnecting (and will rejoin the room)."""

    close_code: int | None


@dataclass(frozen=True, slots=True)
class Reconnected:
    """Back in the room; missed messages follow as `History`."""

    room: RoomInfo | None


Event = (
    Message
    | FileShared
    | History
    | Joined
    | Left
    | FileDeleted
    | MessageDeleted
    | ErrorEvent
    | Reconnecting
    | Reconnected
)
