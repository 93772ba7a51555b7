"""What a `ChatClient` hands out: room and file descriptions, and typed, decrypted events."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

# The server's file message (PROTOCOL.md, "After a successful UploadFile"): plaintext,
# and the only content that can start with "[" (ciphertext is base64).
FILE_LINK = re.compile(r"\[File: (?P<shown>[^\]]*)\]\(/files/(?P<file_id>[^)]+)\)\Z")

# The extensions a file of each type is shown and saved under, the first appended to a
# name that ends in none of them. A copy of the server's table and rule
# (files/validation.py, EXTENSIONS and shown_name): this package imports nothing from it.
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "text/plain": (".txt",),
    "image/png": (".png",),
    "image/jpeg": (".jpg", ".jpeg"),
    "image/gif": (".gif",),
    "image/webp": (".webp",),
    "application/pdf": (".pdf",),
    "application/zip": (".zip",),
    "application/gzip": (".gz",),
    "image/bmp": (".bmp",),
    "audio/mpeg": (".mp3",),
    "audio/ogg": (".ogg", ".oga"),
    "application/octet-stream": (".bin",),
}
# Link syntax, and every control, format (bidirectional, zero-width...) or line/paragraph
# separator character, which could disguise a name.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def safe_name(name: str, mime_type: str) -> str:
    """The name PROTOCOL.md shows a file under and the server serves it as ("After a
    successful UploadFile"): without `[`, `]`, `(`, `)` or hidden characters, and ending
    in an extension of its type (`notes.html` as text/plain is `notes.html.txt`)."""
    shown = "".join(c for c in name if c not in "[]()" and unicodedata.category(c) not in _HIDDEN_CATEGORIES)
    extensions = EXTENSIONS.get(mime_type.split(";")[0].strip().lower(), (".bin",))
    if shown.rstrip().lower().endswith(extensions):
        return shown
    return (shown.rstrip() or "file") + extensions[0]


@dataclass(frozen=True, slots=True)
class RoomInfo:
    id: str
    name: str
    description: str
    # Who has it joins (with the password, if the room has one) and, in a standard room,
    # reads: a repr never shows it, as nginx's access log never does (docs/production.md).
    join_key: str = field(repr=False)
    has_password: bool
    owner: str
    created_at: str
    # A sealed room: its key lives only in the share link's fragment (PROTOCOL.md).
    sealed: bool = False
    key_check: str | None = None
    # The page's address for this room; in a sealed room with `#k=` and the secret, the
    # only way the key travels: share all of it, and only with the people you invite.
    # It depends on the address used (not compared), and a repr (a log line, a traceback)
    # never shows it.
    share_link: str = field(default="", compare=False, repr=False)

    @classmethod
    def from_wire(cls, info: dict[str, Any], share_link: str = "") -> RoomInfo:
        required = ("id", "name", "description", "join_key", "has_password", "owner", "created_at")
        return cls(
            **{name: info[name] for name in required},
            sealed=info.get("sealed") is True,
            key_check=info.get("key_check"),
            share_link=share_link,
        )


@dataclass(frozen=True, slots=True)
class FileMetadata:
    id: str
    name: str
    mime_type: str
    size: int
    expires_at: str
    # From `upload_file`: the id of the room's message that shares the file (the
    # server's "[File: ...]" message, or a sealed room's card), to reply to, react to
    # or delete; None elsewhere. Not the file's own description: left out of `==`.
    message_id: int | None = field(default=None, compare=False)

    @classmethod
    def from_wire(cls, metadata: dict[str, Any]) -> FileMetadata:
        """Raises KeyError or TypeError for metadata that is not the protocol's."""
        fields = {name: metadata[name] for name in ("id", "name", "mime_type", "size", "expires_at")}
        for name, value in fields.items():
            wanted = int if name == "size" else str
            if type(value) is not wanted:
                raise TypeError(
                    f"file {name} is not a{'n' if wanted is int else ''} {wanted.__name__}: {value!r}"
                )
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class Message:
    """A chat message. `text` is None when the content does not open with the room key,
    or in a sealed room does not verify as sent by `sender` (show it as "could not be
    verified", never under that name). `unsupported` is True for a sealed room's message
    that verifies but is of no kind this client knows (a later protocol's, a card of a
    type it never opens): its `text` is only the placeholder "(unsupported message)",
    which a member could also have written."""

    id: int
    sender: str
    text: str | None
    sent_at: str
    reply_to: int | None = None  # the id of the message this one answers
    edited_at: str | None = None  # when its author last edited it (History says)
    # Its reactions when History brought it, as `Reactions.reactions` (later: `Reactions` events).
    reactions: tuple[tuple[str, tuple[str, ...]], ...] = ()
    unsupported: bool = False  # `text` is the placeholder, not what anyone wrote


@dataclass(frozen=True, slots=True)
class FileShared:
    """A file shared in the room: the server's plaintext file message in a standard room
    (`name` as the link shows it), or the uploader's encrypted card in a sealed room
    (`name`, `mime_type`, `size` and `sha256` as the uploader gave them; the client keeps
    the file's key to download it)."""

    id: int
    sender: str
    name: str
    file_id: str
    sent_at: str
    mime_type: str | None = None
    size: int | None = None
    sha256: str | None = None


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
    """The message with this id was deleted: by its author, an owner or an admin."""

    id: int


@dataclass(frozen=True, slots=True)
class MessageEdited:
    """Its author edited the message `id`: `text` is its new text, None when it does not
    open (or, in a sealed room, when this client never had the message, whose sender
    the new content is bound to)."""

    id: int
    sender: str | None
    text: str | None
    edited_at: str


@dataclass(frozen=True, slots=True)
class Reactions:
    """A message's whole reaction state: (emoji, names of those who gave it), the first
    given first. Apply it as it is: the same state twice changes nothing."""

    id: int
    reactions: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class Typing:
    """Someone in the room is typing (show it for about 6 s)."""

    name: str


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
    """Back in the room; missed messages follow as `History` (after `MissedMessages`
    if there were more than the client reads back)."""

    room: RoomInfo | None


@dataclass(frozen=True, slots=True)
class MissedMessages:
    """A rejoin, or a join with `since`, missed more messages than it reads back: those
    with `after` < id < `before` never come as events. `after` is the newest message this
    client had before the drop (or the join's `since`), `before` the oldest of those it
    then delivered (in the `History` that follows). Read them with
    `history(before=before, limit=100)`, calls in a row passing the oldest id of the last
    page, and keep those whose id is over `after`."""

    after: int
    before: int


@dataclass(frozen=True, slots=True)
class EventsDropped:
    """The `count` oldest waiting events were dropped: `max_events` were waiting unread
    (`ChatClient(max_events=...)`). Read events as they come (a client that only sends
    still gets everyone's), or page back with `history()` for the messages among them."""

    count: int


Event = (
    Message
    | FileShared
    | History
    | Joined
    | Left
    | FileDeleted
    | MessageDeleted
    | MessageEdited
    | Reactions
    | Typing
    | ErrorEvent
    | Reconnecting
    | Reconnected
    | MissedMessages
    | EventsDropped
)
