"""An asyncio client for the chat protocol (PROTOCOL.md), on `websockets` and `cryptography`.

The protocol has no request ids. The server handles one connection's frames in order,
so the client keeps one request in flight at a time and takes the first `Error`, or the
first frame that answers it, as its reply; everything else is an event. A dropped
connection is reopened and the room rejoined with `since` (and the owner token), and
messages are deduplicated by id, which only grows within a room.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import mimetypes
import os
import random
import re
import ssl
import unicodedata
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypedDict, Unpack
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.frames import Frame, Opcode

from chatclient import wire
from chatclient.crypto import (
    DecryptError,
    LinkError,
    SealedKeys,
    decrypt,
    encrypt,
    link_fragment,
    new_room_secret,
    open_file,
    open_message,
    seal_file,
    seal_message,
    secret_from_link,
)
from chatclient.events import (
    FILE_LINK,
    ErrorEvent,
    Event,
    EventsDropped,
    FileDeleted,
    FileMetadata,
    FileShared,
    History,
    Joined,
    Left,
    Message,
    MessageDeleted,
    MessageEdited,
    MissedMessages,
    Reactions,
    Reconnected,
    Reconnecting,
    RoomInfo,
    Typing,
)

# Room history (100 messages of up to 64 Ki characters) and a FileContent of a 10 MiB
# file (base64) are far above websockets' default 1 MiB frame limit.
DEFAULT_MAX_FRAME = 64 * 1024 * 1024
# Message ids remembered to drop repeats (History and live can both hold one).
SEEN_IDS = 10_000
# Frames every socket in the room gets, the asker's included: an event also when they
# answer this client's own request.
EVERYONES = ("ChatMessage", "FileDeleted", "History", "MessageEdited", "MessageDeleted", "Reactions")
# What makes two cards of one file id the same card (chatclient.client._first_card).
CARD_FIELDS = ("name", "mime_type", "size", "sha256", "key")
# Above every message id (the server's are 64-bit): `history()` from the newest.
MESSAGE_ID_MAX = 2**63 - 1
# The text of a sealed room's message of a kind this client does not know (Message.unsupported).
UNSUPPORTED = "(unsupported message)"
# Errors the server sends unasked, then closing the socket: no request's answer.
UNASKED_ERRORS = ("kicked", "room_closed")
# The errors that may answer a request (PROTOCOL.md): any command's (the frame, its
# fields, the connection's state, the rate limits, the unexpected), and each command's own
# (`_may_refuse`). A command not listed may be answered with any.
ANY_COMMANDS_ERRORS = frozenset(
    {"invalid_json", "unknown_type", "invalid_field", "not_in_room", "rate_limited", "server_error"}
)
COMMAND_ERRORS: dict[str, frozenset[str]] = {
    "CreateRoom": frozenset({"already_in_room"}),
    "JoinRoom": frozenset({"already_in_room", "room_not_found", "wrong_password", "name_taken", "forbidden"}),
    "ChatMessage": frozenset({"message_too_large", "message_not_found"}),
    "EditMessage": frozenset({"message_too_large", "message_not_found", "forbidden"}),
    "DeleteMessage": frozenset({"message_not_found", "forbidden"}),
    "React": frozenset({"message_not_found", "quota_exceeded"}),
    "GetHistory": frozenset(),
    "GetMembers": frozenset(),
    "LeaveRoom": frozenset(),
    "UploadFile": frozenset({"file_too_large", "mime_not_allowed", "quota_exceeded", "forbidden"}),
    "GetFile": frozenset({"file_not_found"}),
    "DeleteFile": frozenset({"file_not_found", "forbidden"}),
}
# Close codes after which reconnecting cannot help (PROTOCOL.md, Transport).
FINAL_CLOSE_CODES = {
    4000: "room_closed",
    4001: "kicked",
    4003: "replaced",  # the same participant resumed on another connection: let it have the room
    1008: "abuse",
    1009: "frame_too_large",
}
# Types a client never shares or opens from a sealed room, whatever it is told
# (PROTOCOL.md: the clients apply the never-html-or-svg rule there).
NEVER_SHARED = frozenset({"text/html", "application/xhtml+xml", "image/svg+xml", "text/xml"})
# Types a sealed room's files may have (PROTOCOL.md: the clients apply the allow-list
# there). The server's FILES_ALLOWED_MIME_TYPES is not told over the WebSocket: this is its
# default (config/settings.py); a client of a server that allows others passes its list.
ALLOWED_MIME_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain", "application/zip"}
)
# How each type's bytes begin, as the server checks a standard room's files
# (files/validation.py SIGNATURES; tests/chatclient/test_sealed.py keeps the two equal):
# in a sealed room the server sees ciphertext, so this client checks its own uploads, as
# the page does. image/webp and text/plain are checked in `contents_are`.
SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "application/pdf": (b"%PDF-",),
    "application/zip": (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"),
    "application/gzip": (b"\x1f\x8b",),
    "image/bmp": (b"BM",),
    "audio/mpeg": (b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"),
    "audio/ogg": (b"OggS",),
}


def contents_are(mime_type: str, data: bytes) -> bool:
    """Whether `data` is what `mime_type` says, where this client knows how to tell
    (magic bytes, or UTF-8 without NUL for text); a type it cannot check, which its user
    allowed (`allowed_mime_types`), passes."""
    mime_type = _base_type(mime_type)
    if mime_type == "text/plain":
        if b"\x00" in data:
            return False
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True
    if mime_type == "image/webp":
        return data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    signatures = SIGNATURES.get(mime_type)
    return signatures is None or data.startswith(signatures)


# The server's default limits (PROTOCOL.md, Limits), checked here before anything is sent:
# a frame over the transport limit would end the connection (1009) instead of being
# answered. The server does not tell its own over the WebSocket: a client of a server
# configured otherwise passes `max_file_size=` (FILES_MAX_SIZE) and `max_content=`
# (CHAT_MAX_CONTENT).
FILES_MAX_SIZE = 10 * 1024 * 1024
CHAT_MAX_CONTENT = 65536
# Rejoin refusals worth retrying (until `reconnect_timeout`): name_taken, since the one
# who took the name may be a ghost (its process died) until the presence sweep.
RETRY_CODES = {"connection_failed", "connection_lost", "name_taken", "rate_limited", "server_error"}
# A rejoin reads back the messages it missed past the server's CHAT_HISTORY_LIMIT in at
# most this many GetHistory pages of CATCH_UP_PAGE (the page does the same).
CATCH_UP_PAGES = 3
CATCH_UP_PAGE = 100
# Errors that answer a request without ending anything: the server was busy, or failed once.
BUSY_CODES = ("rate_limited", "server_error")
# A request refused `rate_limited` is sent again (`ChatClient(retry_rate_limited=N)`, N
# times at most) after a wait that starts at RATE_RETRY_FIRST seconds and doubles up to
# RATE_RETRY_MOST; the CLI's client asks for it (chatclient/cli.py, RATE_RETRIES).
RATE_RETRY_FIRST = 0.5
RATE_RETRY_MOST = 4.0
# Seconds a request waits for the answer of one given up on before it (`_orphans`), from
# when that one was given up on: the server answers frames in order, but a message's echo
# or an upload's file message is a broadcast that may come after the next frame's answer,
# and both may be `rate_limited`. Sent only once that answer is in, the next request's is
# not taken for it. Past the wait the next is sent anyway, and an Error is the orphan's
# only if its command may get it.
ORPHAN_WAIT = 10.0
# Requests given up on and not answered yet that are remembered; past it the oldest is
# forgotten (its answer, if it ever comes, may pass for a later request's). A request is
# sent only once the orphans before it are answered or past their wait, so this many
# takes a server that left requests unanswered for minutes. A drop forgets them all.
ORPHANS_KEPT = 16


class ChatError(Exception):
    """The server refused a request (`code` is the protocol's error code), or the client did."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ConnectionLost(ChatError):
    """The connection could not be opened, is gone for good, or dropped under a request
    that is not sent again (the client may be mending that drop meanwhile: the next
    request then waits for the rejoin); `close_code` says how it closed, and `code` may be
    a refusal's (a rejoin's `room_closed`, `forbidden`, ...) once the client gives up."""

    def __init__(self, code: str, message: str, close_code: int | None = None) -> None:
        super().__init__(code, message)
        self.close_code = close_code


@dataclass(slots=True)
class _Seat:
    """What it takes to rejoin the room after a reconnect. Its join key, password, secret
    and owner token stay out of its repr (a log line, a traceback's locals, an error
    report)."""

    join_key: str = field(repr=False)
    name: str
    password: str | None = field(repr=False)
    # A sealed room's secret and the room's owner token: taken up only once the server
    # has let this seat in, so a refused join changes nothing of the room the client is in.
    secret: bytes | None = field(default=None, repr=False)
    owner_token: str | None = field(default=None, repr=False)
    resuming: bool = False  # joined with a participant token: its name comes back by casefold
    since: int = 0  # the join's `since`: messages up to it were handled before this client


@dataclass(slots=True)
class _Pending:
    frames: list[dict[str, Any]] = field(repr=False)  # a JoinRoom's password, say
    answers: Callable[[dict[str, Any]], bool]
    retry: bool  # sent again after a reconnect if the drop left it unanswered
    future: asyncio.Future[dict[str, Any]]


@dataclass(slots=True)
class _Upload:
    """What answers a standard room's UploadFile: its FileUploaded and the server's file
    message for it ("[File: ...](/files/ID)" from this client's name), whichever comes
    second. The server sends FileUploaded first, then broadcasts the message, but it
    stores the message before either (files/actions.py), and a room's message may reach
    a socket ahead of its broadcast (the server's hub fills a gap in a room's order
    from the database): so the file messages that come first are kept too."""

    sender: str
    uploaded: dict[str, Any] | None = None  # its FileUploaded
    metadata: FileMetadata | None = None
    shared: dict[str, int] = field(default_factory=dict)  # file id (lower case) -> its message's id

    def __call__(self, frame: dict[str, Any]) -> bool:
        """Whether `frame` completes the answer (`_Pending.answers`)."""
        if frame["type"] == "FileUploaded" and self.uploaded is None:
            self.metadata = FileMetadata.from_wire(frame["metadata"])  # unreadable: invalid_frame
            self.uploaded = frame
        elif frame["type"] == "ChatMessage" and frame.get("sender") == self.sender:
            content = frame.get("content")
            link = FILE_LINK.match(content) if isinstance(content, str) else None
            if link is not None and type(frame.get("id")) is int:
                self.shared[link["file_id"].lower()] = frame["id"]
        return self.metadata is not None and self.metadata.id.lower() in self.shared

    def read(self, frame: dict[str, Any]) -> FileMetadata:
        assert self.metadata is not None  # `answers` said so
        return replace(self.metadata, message_id=self.shared[self.metadata.id.lower()])


_END = object()


class _NoDataFrames(logging.Filter):
    """Drops websockets' DEBUG line of each data frame (text, binary, or a fragment of
    one): this client's frames carry the room password (a JoinRoom's last field, which
    websockets' elided frame still shows), the owner and participant tokens and, from
    the server, the room key. Its other lines (the connection's state, pings, the
    close) stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(isinstance(arg, Frame) and arg.opcode in DATA_OPCODES for arg in args)


DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
# The logger of this client's sockets (websockets logs to `websockets.client` by default).
SOCKET_LOG = logging.getLogger("chatclient.websocket")
SOCKET_LOG.addFilter(_NoDataFrames())


def affinity_hint(join_key: str) -> str:
    """What a socket's address carries (`/ws/?room=HINT`) so that a proxy hashing it
    sends a room's members to one server process (docs/production.md, "Room
    affinity"): 8 hex digits of SHA-256 over the join key, never the key itself.
    The browser app computes the same (chat/static/chat/socket.js)."""
    return hashlib.sha256(f"chat-room-affinity:{join_key}".encode()).hexdigest()[:8]


# A share link's path (`/rooms/KEY/`, with or without scheme and host, or the last slash).
_LINK_PATH = re.compile(r"(?:.*/)?rooms/(?P<key>[A-Za-z0-9_-]+)/?")


def _is_secret(text: str) -> bool:
    try:
        secret_from_link(f"#k={text}")
    except LinkError:
        return False
    return True


def join_key_of(key_or_link: str) -> str:
    """The join key itself, or the one in a share link (`https://host/rooms/KEY/#k=...`).
    Text that holds `#` or `/rooms/` and is no share link raises `ChatError` `link_invalid`:
    a fragment may be a sealed room's secret, which must never reach a server. So does a
    sealed room's secret alone (the link's `k=` value, 43 characters; join keys are 22),
    which would otherwise go as a join key."""
    if "#" not in key_or_link and "/rooms/" not in key_or_link:
        if _is_secret(key_or_link.strip()):
            raise ChatError("link_invalid", "This is a room's secret, not a join key: nothing was sent.")
        return key_or_link
    try:
        match = _LINK_PATH.fullmatch(urlsplit(key_or_link.strip()).path)
    except ValueError:
        match = None
    if match is None:
        raise ChatError(
            "link_invalid",
            "This is not a valid join key or share link (/rooms/KEY/#k=...): nothing was sent.",
        )
    return match["key"]


def socket_url(address: str) -> str:
    """The server's WebSocket address from an address as people give it, which the CLI
    and `ChatClient.connect` both take: `ws://` and `wss://` as they are; `http://` and
    `https://` as `ws://` and `wss://`; a share link (`https://host/rooms/KEY/#k=...`) as
    its server's socket, `wss://host/ws/`; a bare `host:port` as `ws://host:port/` (the
    server answers at `/ws/` and at `/`, PROTOCOL.md, Transport). A fragment is never
    kept: a share link's may be a sealed room's secret, which must never reach a server.
    A share link without its `https://host` raises ValueError."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "ws", address if "/" in address else f"{address}/"
    parts = urlsplit(f"{_SOCKET_SCHEMES.get(scheme.lower(), scheme)}://{rest}")
    if "/rooms/" in address:
        if scheme.lower() not in ("http", "https") or not parts.netloc:
            raise ValueError("the server address is a share link without its https://host")
        return f"{parts.scheme}://{parts.netloc}/ws/"
    return urlunsplit(parts._replace(fragment=""))


# What a page's address becomes as the address of its server's socket.
_SOCKET_SCHEMES = {"http": "ws", "https": "wss"}


def read_link(key_or_link: str) -> tuple[str, bytes | None]:
    """The join key of a join key or share link, and the sealed room's secret in the
    link's fragment (None without one). Raises `ChatError` `link_invalid` (no share link,
    `join_key_of`) or `link_incomplete` (a fragment without a whole secret): what the
    text is can be known before anything is sent."""
    join_key = join_key_of(key_or_link)
    if "#" not in key_or_link:
        return join_key, None
    try:
        return join_key, secret_from_link(key_or_link)
    except LinkError as exc:
        raise ChatError("link_incomplete", str(exc)) from None


# Events that may wait unread (`ChatClient(max_events=)`): a client that only sends
# still receives everyone's messages, up to 64 Ki characters each.
MAX_EVENTS = 10_000
# A sealed room's file cards kept (`ChatClient(max_cards=)`, `ChatClient._keep_card`):
# about a KiB each.
MAX_CARDS = 10_000


class _Events:
    """The events for `next_event`, in order; past `limit` waiting, the oldest is dropped
    and counted, and the next read is an `EventsDropped` with the count. A `claim`
    (`wait_for`) takes the first event it matches out of the line. Each event keeps its
    arrival number, so that one a claim gives back goes back to its place."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.items: deque[tuple[int, Any]] = deque()  # (arrival number, event), oldest first
        self.arrivals = 0
        self.dropped = 0
        self.arrived = asyncio.Event()
        # The claims waiting for an event to come: what each matches, and its future.
        self.claims: list[tuple[Callable[[Any], bool], asyncio.Future[tuple[int, Any]]]] = []

    def claim(self, match: Callable[[Any], bool]) -> asyncio.Future[tuple[int, Any]]:
        """The first event `match` accepts, with its arrival number: one waiting (taken out
        of the line), else the next to come that it accepts, which then never enters the
        line. `_END` when the stream ends first; `match`'s exception, if it raises (the
        event stays in line)."""
        future: asyncio.Future[tuple[int, Any]] = asyncio.get_running_loop().create_future()
        for at, entry in enumerate(self.items):
            if entry[1] is _END:
                future.set_result(entry)
            elif _offer(entry, match, future):
                del self.items[at]
            if future.done():
                return future
        self.claims.append((match, future))
        return future

    def release(self, future: asyncio.Future[tuple[int, Any]]) -> None:
        """A claim given up on (a timeout, its task cancelled). An event it took meanwhile
        goes back to its place in the line, behind the older events and ahead of the
        later ones: given up on, it is neither lost nor read out of order."""
        if not future.done():
            future.cancel()
        elif not future.cancelled() and future.exception() is None and future.result()[1] is not _END:
            entry = future.result()
            at = next((at for at, (number, _) in enumerate(self.items) if number > entry[0]), len(self.items))
            self.items.insert(at, entry)
            self.arrived.set()

    def _taken(self, entry: tuple[int, Any]) -> bool:
        """Whether a waiting claim takes `entry` (the oldest claim first)."""
        self.claims = [(match, future) for match, future in self.claims if not future.done()]
        return any(_offer(entry, match, future) for match, future in self.claims)

    def put_nowait(self, item: Any) -> None:
        self.arrivals += 1
        entry = (self.arrivals, item)
        if item is _END:
            for _, future in self.claims:
                if not future.done():
                    future.set_result(entry)
        elif self._taken(entry):
            return
        self.items.append(entry)
        if len(self.items) > self.limit and self.items[0][1] is not _END:
            self.items.popleft()
            self.dropped += 1
        self.arrived.set()

    async def get(self) -> Any:
        while not self.items:
            self.arrived.clear()
            await self.arrived.wait()
        if self.dropped and self.items[0][1] is not _END:
            count, self.dropped = self.dropped, 0
            return EventsDropped(count)
        return self.items.popleft()[1]


def _offer(
    entry: tuple[int, Any], match: Callable[[Any], bool], future: asyncio.Future[tuple[int, Any]]
) -> bool:
    """Whether `match` takes the event of `entry`, which `future` then holds; if `match`
    raises (a caller's `where`), `future` holds its exception and nothing is taken."""
    try:
        if not match(entry[1]):
            return False
    except Exception as exc:
        future.set_exception(exc)
        return False
    future.set_result(entry)
    return True


# Seconds before the first reconnect at most, and before the first retry after it (then
# doubling up to RECONNECT_MAX_DELAY).
RECONNECT_SPREAD = 0.25
RECONNECT_FIRST_DELAY = 0.1
RECONNECT_MAX_DELAY = 5.0


def reconnect_waits(jitter: Callable[[], float]) -> Iterator[float]:
    """The seconds to wait before each attempt to reconnect: the first within
    RECONNECT_SPREAD, then backing off by doubles, each drawn from half to one and a half
    times its step (`jitter` gives a number in [0, 1)). So the clients a server dropped
    together (a restart, a process that closed many seats with 1012) come back spread
    out, and do not retry in step either."""
    yield jitter() * RECONNECT_SPREAD
    step = RECONNECT_FIRST_DELAY
    while True:
        yield step * (0.5 + jitter())
        step = min(step * 2, RECONNECT_MAX_DELAY)


class ClientOptions(TypedDict, total=False):
    """What `ChatClient.connect(url, ...)` takes besides `url`: `ChatClient`'s options,
    named here so that a type checker catches a misspelt one."""

    reconnect: bool
    reconnect_timeout: float
    max_frame: int
    ssl_context: ssl.SSLContext | None
    room: str | None
    allowed_mime_types: Iterable[str]
    max_file_size: int
    max_content: int
    max_events: int
    keepalive: float
    max_cards: int
    retry_rate_limited: int


class ChatClient:
    """One connection to a chat server, in at most one room at a time."""

    def __init__(
        self,
        url: str,
        *,
        reconnect: bool = True,
        reconnect_timeout: float = 120.0,
        max_frame: int = DEFAULT_MAX_FRAME,
        ssl_context: ssl.SSLContext | None = None,
        room: str | None = None,
        allowed_mime_types: Iterable[str] = ALLOWED_MIME_TYPES,
        max_file_size: int = FILES_MAX_SIZE,
        max_content: int = CHAT_MAX_CONTENT,
        max_events: int = MAX_EVENTS,
        keepalive: float = 20.0,
        max_cards: int = MAX_CARDS,
        retry_rate_limited: int = 0,
    ) -> None:
        self.url = socket_url(url)
        # Seconds between pings, for each pong, and (at most 10) for a close's answer: a
        # server that stopped answering (frozen, or a network path gone) is taken for a
        # drop after two or three times this.
        self.keepalive = keepalive
        # What a sealed room's files may be, shared or opened; never html or svg.
        self.allowed_mime_types = frozenset(map(_base_type, allowed_mime_types)) - NEVER_SHARED
        # The largest file (bytes) and chat content (characters) the server takes: see
        # FILES_MAX_SIZE and CHAT_MAX_CONTENT above.
        self.max_file_size = max_file_size
        self.max_content = max_content
        # The join key of the room about to be joined (`room`: the key or share link): the
        # first socket carries its affinity hint (none for text that is neither, whose
        # fragment is never used); later ones carry the hint of the room it is in.
        self.about_to_join: str | None = None
        room = room or (url if "/rooms/" in url else None)  # a share link for an address
        if room:
            try:
                self.about_to_join = join_key_of(room)
            except ChatError:
                pass
        self.ssl_context = ssl_context  # for wss:// with a private CA; by default the system's trust store
        self.reconnect = reconnect
        self.reconnect_timeout = reconnect_timeout
        # How many times a request refused `rate_limited` is sent again (`_request`); 0:
        # the refusal is raised at once.
        self.retry_rate_limited = max(0, retry_rate_limited)
        self.max_frame = max_frame
        self.room: RoomInfo | None = None
        self.name: str | None = None
        self.owner_token: str | None = None
        # This client's participant in its room (PROTOCOL.md, Conversations): a reconnect
        # comes back as it, with its messages and uploads still its own.
        self.participant_token: str | None = None
        self._key: str | None = None
        # A sealed room (its secret is the seat's): the keys derived from the secret (None
        # until they match the room's key_check).
        self._sealed: SealedKeys | None = None
        # A sealed room's file cards by file id: the first card's message id, and the card;
        # at most `max_cards` of them (`_keep_card`).
        self._cards: dict[str, tuple[int, dict[str, Any]]] = {}
        self.max_cards = max(1, max_cards)
        self._seat: _Seat | None = None
        self._joining: _Seat | None = None
        self._last_id = 0
        # A join with `since` has just been answered: the reader catches it up (`_read`).
        self._joined_since = False
        self._oldest_id: int | None = None  # where `history()` pages back from
        # Who sent each message seen: a sealed room's edit is bound to its sender's name.
        self._senders: dict[int, str] = {}
        self._seen: set[int] = set()
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        # Events waiting for `next_event`: past `max_events` the oldest go (EventsDropped).
        self._queue = _Events(max_events)
        self._pending: _Pending | None = None
        # Requests whose callers gave up before their answers came, oldest first, each
        # with the loop time until which the next request waits for it: the answers are
        # their own.
        self._orphans: deque[tuple[_Pending, float]] = deque(maxlen=ORPHANS_KEPT)
        self._orphan_answered = asyncio.Event()  # set when one is answered
        # The room this client last left (`leave`): joined again, ids go on.
        self._left_room: str | None = None
        self._lock = asyncio.Lock()
        self._ready = asyncio.Event()
        self._failure: ChatError | None = None
        self._closing = False

    @classmethod
    async def connect(cls, url: str, **options: Unpack[ClientOptions]) -> ChatClient:
        """Open the connection; raises `ConnectionLost` (`connection_failed`) if it cannot.
        `url` is the server's WebSocket address (`wss://host/ws/`), or any address the
        CLI takes (`socket_url`): `https://host/` (`http` for `ws`), a room's share link
        (`https://host/rooms/KEY/#k=...`: its server, never its fragment), `host:port`.
        Pass `room=` the join key or share link you are about to join, so that a proxy
        with room affinity (docs/production.md) sends you where its members are (a share
        link given as `url` does that too)."""
        client = cls(url, **options)
        client._ws = await client._open()
        client._ready.set()
        client._reader = asyncio.create_task(client._run())
        return client

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- Requests ----------------------------------------------------------------

    async def create_room(
        self,
        name: str,
        description: str = "",
        password: str | None = None,
        owner_name: str | None = None,
        *,
        sealed: bool = False,
    ) -> RoomInfo:
        """Create a room and enter it as its owner. `sealed=True` makes a room the server
        can never read: its secret is drawn here and travels only in the returned
        `RoomInfo.share_link` (`.../rooms/KEY/#k=...`)."""
        frame: dict[str, Any] = {
            "type": "CreateRoom",
            "name": name,
            "description": description,
            "password": password,
        }
        if owner_name is not None:
            frame["owner_name"] = owner_name
        secret = new_room_secret() if sealed else None
        if secret is not None:
            frame |= {"sealed": True, "key_check": SealedKeys.from_secret(secret).key_check}
        seat = _Seat("", owner_name if owner_name is not None else "Owner", password, secret)
        return await self._enter_room(seat, frame, "RoomCreated")

    async def join_room(
        self,
        join_key: str,
        name: str,
        password: str | None = None,
        *,
        secret: bytes | None = None,
        participant_token: str | None = None,
        owner_token: str | None = None,
        since: int | None = None,
    ) -> RoomInfo:
        """Join with a join key, or with a whole share link (`https://host/rooms/KEY/#k=...`),
        whose fragment holds a sealed room's secret (or pass `secret`). A sealed room
        joined without its secret shows nothing readable; with a secret that is not the
        room's, the client leaves again and raises `ChatError` `link_wrong`.
        `participant_token` (a client's `participant_token` from before, with its name):
        come back as that participant, whose messages and uploads stay its own; its other
        connection, if any, is closed (`ConnectionLost` `replaced` there). `owner_token`
        (the room's, from `RoomCreated`): come back with owner rights, also after reconnects.
        `since` (the id of the last message a process before this one handled): the join's
        `History` holds only later messages, those it missed past CHAT_HISTORY_LIMIT read
        back into it and the rest told (`MissedMessages` before it), as after a reconnect;
        reconnects go on from there.
        Text with `#` that is no share link is refused (`link_invalid`), nothing sent."""
        if secret is None:
            join_key, secret = read_link(join_key)
        else:
            join_key = join_key_of(join_key)
        if secret is not None:
            try:
                SealedKeys.from_secret(secret)
            except (LinkError, TypeError) as exc:
                message = f"secret: the room's 32 bytes (or pass the whole link), not {type(secret).__name__}"
                raise ChatError("link_invalid", f"{message}: nothing was sent.") from exc
        frame: dict[str, Any] = {"type": "JoinRoom", "join_key": join_key, "name": name, "password": password}
        if participant_token:
            frame["participant_token"] = participant_token
        if owner_token:
            frame["owner_token"] = owner_token
        if since is not None:
            frame["since"] = since
        seat = _Seat(
            join_key, name, password, secret, owner_token or None, bool(participant_token), since or 0
        )
        room = await self._enter_room(seat, frame, "RoomJoined")
        if room.sealed and secret is not None and self._sealed is None:
            await self.leave()
            raise ChatError("link_wrong", "This link is incomplete or wrong: ask for the whole link.")
        return room

    @property
    def ended(self) -> bool:
        """Whether the connection has ended for good (closed, refused, kicked, gave up
        reconnecting): no request can succeed any more. A `ConnectionLost` while this is
        false was one drop, which the client is already mending."""
        return self._failure is not None or self._closing

    @property
    def can_read(self) -> bool:
        """Whether this client holds the room's key (a sealed room needs its whole link)."""
        return self._sealed is not None or self._key is not None

    async def _enter_room(self, seat: _Seat, frame: dict[str, Any], reply_type: str) -> RoomInfo:
        self._joining = seat  # the reader takes it up with the reply, before any History
        # A create is refused for its rate by limits counted per hour and minute
        # (ROOMS_PER_HOUR, JOINS_PER_MINUTE), which `retry_rate_limited`'s minute of waits
        # does not outlast: it is not sent again. A join is (a busy room's deliveries).
        patient = reply_type != "RoomCreated"
        try:
            await self._request([frame], lambda reply: reply["type"] == reply_type, _nothing, patient=patient)
        except ChatError as exc:
            if exc.code == "server_tampered":
                await self._send([{"type": "LeaveRoom"}])  # seated there, but not here
            raise
        finally:
            self._joining = None
        return self._current_room()

    async def send(self, text: str, reply_to: int | None = None) -> Message:
        """Encrypt and send `text`, as an answer to the message `reply_to` (an id of this
        room's) if given; returns it as stored (with its id) once the server echoes it.
        Text whose content would be over `max_content` is refused here (`ChatError`
        `message_too_large`), nothing sent."""
        content = self._text_content(text)
        frame: dict[str, Any] = {"type": "ChatMessage", "content": content}
        if reply_to is not None:
            frame["reply_to"] = reply_to
        # Retried after a reconnect unless the rejoin's History shows it was stored.
        return await self._request(
            [frame],
            lambda reply: reply["type"] == "ChatMessage" and reply.get("content") == content,
            lambda reply: Message(
                _message_id(reply),
                _text(reply, "sender"),
                text,
                _text(reply, "sent_at"),
                reply.get("reply_to"),
            ),
            retry=True,
        )

    async def edit(self, message_id: int, text: str) -> MessageEdited:
        """Replace the text of one's own message (within the server's edit window)."""
        # Only its author may edit it: in a sealed room the new text is bound to this
        # client's name, as the message was.
        content = self._text_content(text)
        return await self._request(
            [{"type": "EditMessage", "id": message_id, "content": content}],
            lambda reply: reply["type"] == "MessageEdited" and reply.get("content") == content,
            lambda reply: MessageEdited(message_id, self.name, text, _text(reply, "edited_at")),
        )

    def _text_content(self, text: str) -> str:
        """`text` as chat content, refused when over the server's CHAT_MAX_CONTENT (a frame
        past the transport limit would end the connection instead of being answered)."""
        # The content is base64 of more bytes than the text has characters: a longer
        # text is over without being encrypted.
        if len(text) <= self.max_content:
            sealed = self._in_sealed()
            content = self._seal({"t": "text", "body": text}) if sealed else encrypt(self._room_key(), text)
            if len(content) <= self.max_content:
                return content
        raise ChatError(
            "message_too_large", f"The message is over {self.max_content} characters once encrypted."
        )

    async def delete_message(self, message_id: int) -> None:
        """Delete a message: one's own, or any in a room one owns. In a sealed room the
        file a message is the first card of goes with it (PROTOCOL.md: the server cannot
        tell a card from a message); a copy's message leaves the file."""
        files = [file_id for file_id, (first, _) in self._cards.items() if first == message_id]
        await self._request(
            [{"type": "DeleteMessage", "id": message_id}],
            lambda reply: reply["type"] == "MessageDeleted" and reply.get("id") == message_id,
            _nothing,
        )
        for file_id in files:
            try:
                await self.delete_file(file_id)
            except ChatError as exc:
                if exc.code != "file_not_found" or isinstance(exc, ConnectionLost):
                    raise  # gone already (expired, or deleted by another) is what was asked

    async def react(self, message_id: int, emoji: str, on: bool = True) -> Reactions:
        """Add one emoji to a message (`on=False`: take it back); returns the message's
        whole reaction state."""
        return await self._request(
            [{"type": "React", "id": message_id, "emoji": emoji, "on": on}],
            lambda reply: reply["type"] == "Reactions" and reply.get("id") == message_id,
            _reactions,
        )

    async def typing(self) -> None:
        """Tell the room this client is typing; nothing comes back. The server forwards
        one every 3 s at most: send it again while typing goes on. Outside a room,
        `ChatError` `not_in_room`, nothing sent."""
        async with self._lock:  # never between a request and its answer
            await self._ready.wait()
            if self._failure is not None:
                raise self._failure
            if self._closing:
                raise ConnectionLost("closed", "The client was closed.")
            self._current_room()
            await self._send([{"type": "Typing"}])

    async def history(self, before: int | None = None, limit: int = 50) -> list[Message | FileShared]:
        """Up to `limit` (1-100) of the room's messages older than the id `before`,
        oldest first; by default older than the oldest this client has had, so that
        calls in a row page back. An empty list: the start of the room."""
        if before is None:
            before = self._oldest_id if self._oldest_id is not None else MESSAGE_ID_MAX
        page = await self._request(
            [{"type": "GetHistory", "before": before, "limit": limit}],
            lambda reply: reply["type"] == "History" and reply.get("before") == before,
            lambda reply: [self._message(message) for message in reply["messages"]],
            retry=True,
        )
        if page:
            self._oldest_id = min(page[0].id, self._oldest_id or page[0].id)
        return page

    async def members(self) -> list[str]:
        return await self._request(
            [{"type": "GetMembers"}], lambda reply: reply["type"] == "Members", _participants, retry=True
        )

    async def upload_file(
        self, path_or_bytes: str | Path | bytes, name: str | None = None, mime_type: str | None = None
    ) -> FileMetadata:
        """Upload a file (a path, `~` allowed, or bytes with a `name`); the room sees
        `FileShared`, whose message id the returned metadata's `message_id` is (reply to
        it, react to it, `delete_message` it).
        A file over `max_file_size` is refused here, before it is read (`ChatError`
        `file_too_large`), nothing sent. In a sealed room this client applies the
        allow-list (`allowed_mime_types`, never html or svg) and checks that the bytes are
        of their type, as the server does in a standard room: another type, or a
        "photo.png" that is no PNG, is refused here (`ChatError` `mime_not_allowed`)."""
        if isinstance(path_or_bytes, bytes | bytearray | memoryview):
            if name is None:
                raise ValueError("name is required when uploading bytes")
            data = bytes(path_or_bytes)
        else:
            path = Path(path_or_bytes)
            data = await asyncio.to_thread(self._read_file, path)
            name = name or path.name
        if len(data) > self.max_file_size:
            raise ChatError("file_too_large", f"The file is over {self.max_file_size} bytes.")
        mime_type = mime_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        if self._in_sealed():
            return await self._upload_sealed(data, name, mime_type)
        frame = {
            "type": "UploadFile",
            "name": name,
            "mime_type": mime_type,
            "content": base64.b64encode(data).decode(),
        }
        assert self.name is not None  # in a room (`_in_sealed`)
        upload = _Upload(self.name)
        return await self._request([frame], upload, upload.read)

    def _read_file(self, path: Path) -> bytes:
        """The file's bytes, at most one past `max_file_size` (a device such as
        /dev/urandom has no size and no end); its size is looked at first."""
        with path.expanduser().open("rb") as file:
            if os.fstat(file.fileno()).st_size > self.max_file_size:
                raise ChatError("file_too_large", f"The file is over {self.max_file_size} bytes.")
            return file.read(self.max_file_size + 1)

    async def _upload_sealed(self, data: bytes, name: str, mime_type: str) -> FileMetadata:
        """Encrypt the file under a key of its own, upload the ciphertext as
        encrypted.bin, then announce it with an encrypted card (PROTOCOL.md)."""
        if _base_type(mime_type) not in self.allowed_mime_types:
            allowed = ", ".join(sorted(self.allowed_mime_types))
            raise ChatError(
                "mime_not_allowed", f"Files of type {mime_type} are not shared here. Allowed: {allowed}."
            )
        if not contents_are(mime_type, data):  # the server's answer in a standard room
            raise ChatError("mime_not_allowed", f"The file's contents are not {_base_type(mime_type)}.")
        file_key, blob = await asyncio.to_thread(seal_file, data)
        frame = {
            "type": "UploadFile",
            "name": "encrypted.bin",
            "mime_type": "application/octet-stream",
            "content": base64.b64encode(blob).decode(),
        }
        stored = await self._request(
            [frame],
            lambda reply: reply["type"] == "FileUploaded",
            lambda reply: FileMetadata.from_wire(reply["metadata"]),
        )
        card = {
            "t": "file",
            "id": stored.id,
            "name": name,
            "mime_type": mime_type,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "key": base64.b64encode(file_key).decode(),
        }
        self._keep_card(stored.id.lower(), 0, card)  # before any message: its own card is the file's
        content = self._seal(card)
        message_id = await self._request(
            [{"type": "ChatMessage", "content": content}],
            lambda reply: reply["type"] == "ChatMessage" and reply.get("content") == content,
            _message_id,
            retry=True,
        )
        return FileMetadata(stored.id, name, mime_type, len(data), stored.expires_at, message_id)

    async def download_file(self, file_id: str) -> tuple[FileMetadata, bytes]:
        """The file's metadata and bytes. In a sealed room the bytes are decrypted with the
        key from its card and checked against the card's size and sha256: a file that
        does not match is refused (`ChatError` `file_tampered`), nothing returned."""
        sealed = self._in_sealed()
        card = self._cards.get(file_id.lower(), (0, None))[1] if sealed else None
        if sealed and card is None:
            raise ChatError("file_not_found", "No card for this file has been seen in this room.")
        metadata, data = await self._request(
            [{"type": "GetFile", "file_id": file_id}],
            lambda reply: reply["type"] == "FileContent" and _same_id(reply["metadata"]["id"], file_id),
            lambda reply: (
                FileMetadata.from_wire(reply["metadata"]),
                base64.b64decode(reply["content"], validate=True),
            ),
            retry=True,
        )
        if card is None:
            return metadata, data
        try:
            data = await asyncio.to_thread(open_file, base64.b64decode(card["key"]), data)
        except (DecryptError, ValueError) as exc:
            raise ChatError("file_tampered", "The file does not open with its key: refused.") from exc
        if len(data) != card["size"] or hashlib.sha256(data).hexdigest() != card["sha256"]:
            raise ChatError("file_tampered", "The file does not match its size and sha256: refused.")
        return replace(metadata, name=card["name"], mime_type=card["mime_type"], size=card["size"]), data

    async def delete_file(self, file_id: str) -> None:
        await self._request(
            [{"type": "DeleteFile", "file_id": file_id}],
            lambda reply: reply["type"] == "FileDeleted" and _same_id(reply["file_id"], file_id),
            _nothing,
        )

    async def leave(self) -> None:
        """Leave the room and keep the connection open."""
        if self._seat is None:
            raise ChatError("not_in_room", "Not in a room.")
        # LeaveRoom has no reply; the GetMembers behind it answers not_in_room once it is done.
        try:
            # Never sent again: the LeaveRoom before a refused GetMembers was done.
            await self._request(
                [{"type": "LeaveRoom"}, {"type": "GetMembers"}], lambda reply: False, _nothing, patient=False
            )
        except ChatError as exc:
            if exc.code != "not_in_room" or isinstance(exc, ConnectionLost):
                raise
        # Joined again, this room's messages already yielded are not yielded again.
        self._left_room = self.room.id if self.room is not None else None
        self._seat = self.room = self._key = self.name = self.owner_token = self.participant_token = None
        self._sealed = None

    async def close(self) -> None:
        """Close the connection; `events()` then ends without an error."""
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        self._finish(None)

    # --- Events ------------------------------------------------------------------

    async def next_event(self) -> Event:
        """The next event; raises `ConnectionLost` when the connection has ended for good."""
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # every later call ends too
            raise self._failure or ConnectionLost("closed", "The client was closed.")
        return item

    async def wait_for[E: Event](
        self,
        kind: type[E],
        where: Callable[[E], bool] | None = None,
        # As asyncio.wait_for's, which bots know; `asyncio.timeout()` around it works as well.
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> E:
        """The first event of type `kind` that `where` (if given) accepts: the oldest one
        waiting unread, else the next to come. It is taken out of the event stream: every
        other event stays there, in order, for `next_event()` and `events()` (in this task
        or in another, reading concurrently), which never see the one returned. Messages
        that come in a `History` (a join's, a rejoin's) are not `Message` events.
        Raises `TimeoutError` after `timeout` seconds (what came meanwhile is all still
        in the stream, in order), `ConnectionLost` when the connection has ended for good (as
        `next_event`), and what `where` raises (that event stays in the stream)."""

        def matches(event: Any) -> bool:
            return isinstance(event, kind) and (where is None or where(event))

        claim = self._queue.claim(matches)
        try:
            done, _ = await asyncio.wait([claim], timeout=timeout)
        except asyncio.CancelledError:
            self._queue.release(claim)
            raise
        if not done:
            self._queue.release(claim)
            raise TimeoutError(f"no {kind.__name__} event within {timeout} s")
        _, event = claim.result()
        if event is _END:
            raise self._failure or ConnectionLost("closed", "The client was closed.")
        return event

    async def events(self) -> AsyncIterator[Event]:
        """Every event, in order; ends after `close()`, raises `ConnectionLost` when the server ends it."""
        while True:
            try:
                event = await self.next_event()
            except ConnectionLost:
                if self._failure is None:
                    return
                raise
            yield event

    # --- Internals ---------------------------------------------------------------

    def _in_sealed(self) -> bool:
        room = self._current_room()
        if room.sealed and self._sealed is None:
            raise ChatError("link_incomplete", "This link is incomplete: ask for the whole link.")
        return room.sealed

    def _seal(self, payload: dict[str, Any]) -> str:
        assert self._sealed is not None and self.room is not None and self.name is not None
        return seal_message(self._sealed.message_key, self.room.id, self.name, payload)

    def _share_link(self, join_key: str, secret: bytes | None) -> str:
        """The page's address of a room on this server, with the secret's fragment."""
        parts = urlsplit(self.url)
        scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
        link = f"{scheme}://{parts.netloc}/rooms/{join_key}/"
        return link + "#" + link_fragment(secret) if secret is not None else link

    def _room_key(self) -> str:
        if self._key is None:
            raise ChatError("not_in_room", "Join a room first.")
        return self._key

    def _current_room(self) -> RoomInfo:
        if self.room is None:
            raise ChatError("not_in_room", "Not in a room.")
        return self.room

    def _websocket(self) -> ClientConnection:
        """The open connection; `connect()` sets it before any request is sent or frame read."""
        if self._ws is None:
            raise RuntimeError("not connected: open the client with ChatClient.connect()")
        return self._ws

    def _socket_url(self) -> str:
        """The server's address with the affinity hint of the room this client is in,
        or about to join (`/ws/?room=HINT`)."""
        join_key = self.room.join_key if self.room is not None else self.about_to_join
        if not join_key:
            return self.url
        parts = urlsplit(self.url)
        query = "&".join(filter(None, [parts.query, urlencode({"room": affinity_hint(join_key)})]))
        return urlunsplit(parts._replace(query=query))

    async def _open(self) -> ClientConnection:
        try:
            options: dict[str, Any] = {"ssl": self.ssl_context} if self.ssl_context else {}
            return await connect(
                self._socket_url(),
                max_size=self.max_frame,
                compression=None,
                ping_interval=self.keepalive,
                ping_timeout=self.keepalive,
                close_timeout=min(self.keepalive, 10.0),
                logger=SOCKET_LOG,
                **options,
            )
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise ConnectionLost("connection_failed", f"cannot connect to {self.url}: {exc}") from exc

    async def _request[T](
        self,
        frames: list[dict[str, Any]],
        answers: Callable[[dict], bool],
        read: Callable[[dict], T],
        *,
        retry: bool = False,
        patient: bool = True,
    ) -> T:
        """Send `frames`, wait for the frame that `answers` them, or an `Error`, and return
        what `read` makes of it. A reply that `answers` or `read` cannot read (a field
        missing or of the wrong type) is `ChatError` `invalid_frame`.

        If the connection drops first, a `retry` request is sent again once the room is
        rejoined; any other fails with `ConnectionLost`. A `patient` request refused
        `rate_limited` is sent again, up to `retry_rate_limited` times, after waits
        doubling from RATE_RETRY_FIRST to RATE_RETRY_MOST seconds: the server drops such
        a frame (PROTOCOL.md), so nothing is done twice. The lock is held meanwhile, so
        this client's requests keep their order.
        """
        if self._ws is None and not self._closing:
            raise RuntimeError("not connected: open the client with ChatClient.connect()")
        async with self._lock:
            reply = await self._exchange(frames, answers, retry)
            retries, wait = (self.retry_rate_limited if patient else 0), RATE_RETRY_FIRST
            while retries and reply["type"] == "Error" and reply.get("code") == "rate_limited":
                await asyncio.sleep(wait)
                retries, wait = retries - 1, min(wait * 2, RATE_RETRY_MOST)
                reply = await self._exchange(frames, answers, retry)
        if reply["type"] == "Error":
            raise ChatError(str(reply.get("code")), str(reply.get("message", "")))
        try:
            return read(reply)
        except UNREADABLE as exc:
            raise ChatError("invalid_frame", f"Unreadable {reply['type']} from the server: {exc!r}") from exc

    async def _exchange(
        self, frames: list[dict[str, Any]], answers: Callable[[dict], bool], retry: bool
    ) -> dict[str, Any]:
        """Send `frames` and return the frame that answers them, or an `Error` (`_request`,
        which holds the lock), once the requests given up on before them are answered
        (`_wait_for_orphans`)."""
        await self._wait_for_orphans()
        await self._ready.wait()
        if self._failure is not None:
            raise self._failure
        if self._closing:
            raise ConnectionLost("closed", "The client was closed.")
        future = asyncio.get_running_loop().create_future()
        self._pending = _Pending(frames, answers, retry, future)
        sending = asyncio.ensure_future(self._send(frames))
        try:
            await asyncio.shield(sending)  # a frame half sent would leave no answer to wait for
            return await future
        except asyncio.CancelledError:
            # The caller gave up (asyncio.wait_for, a task cancelled), but the server
            # answers all the same: that answer must not pass for the next request's.
            if future.cancelled() or not future.done():  # its waiter's cancel cancels it too
                given_up = asyncio.get_running_loop().time()
                self._orphans.append((self._pending, given_up + ORPHAN_WAIT))
            raise
        finally:
            self._pending = None

    async def _wait_for_orphans(self) -> None:
        """Wait until every request given up on is answered, each at most until
        ORPHAN_WAIT after it was given up on. Those still unanswered stay, and take only
        the Errors their commands may get (`_orphans_answer`)."""
        loop = asyncio.get_running_loop()
        while self._orphans and (last := max(until for _, until in self._orphans)) > loop.time():
            self._orphan_answered.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(last):
                    await self._orphan_answered.wait()

    async def _send(self, frames: list[dict[str, Any]]) -> None:
        try:
            for frame in frames:
                await self._websocket().send(json.dumps(frame))
        except ConnectionClosed:
            pass  # the reader sees the drop too, and fails or resends the request

    async def _run(self) -> None:
        try:
            await self._serve()
        except Exception as exc:  # a bug here must end the stream, not leave it hanging
            self._finish(ConnectionLost("client_error", f"The client failed: {exc!r}"))
            raise

    async def _serve(self) -> None:
        """Read frames until the connection ends for good, reconnecting when it drops."""
        while True:
            close_code = await self._read()
            self._ready.clear()
            self._orphans.clear()  # their answers will not come now
            self._orphan_answered.set()
            if not (self._pending and self._pending.retry):
                code = FINAL_CLOSE_CODES.get(close_code, "connection_lost")
                self._fail_pending(ConnectionLost(code, "The connection dropped.", close_code))
            if self._closing:
                return
            if close_code in FINAL_CLOSE_CODES or not self.reconnect:
                code = FINAL_CLOSE_CODES.get(close_code, "connection_lost")
                message = f"The connection ended (close code {close_code})."
                self._finish(ConnectionLost(code, message, close_code))
                return
            self._queue.put_nowait(Reconnecting(close_code))
            try:
                await self._reconnect()
            except ConnectionLost as exc:
                self._finish(exc)
                return
            except ChatError as exc:  # e.g. room_not_found: the room was deleted meanwhile
                self._finish(ConnectionLost(exc.code, exc.message))
                return
            if self._pending and not self._pending.future.done():
                await self._send(self._pending.frames)
            self._ready.set()

    async def _read(self) -> int:
        """Handle frames until the connection closes; returns the close code."""
        ws = self._websocket()  # replaced only by _reconnect, after this returns
        try:
            while True:
                self._handle(await ws.recv())
                if self._joined_since:
                    await self._catch_up_join(ws)
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else 1006

    async def _catch_up_join(self, ws: ClientConnection) -> None:
        """A join with `since` (a bot started again) has missed what a rejoin misses: it
        is read back and told as after a rejoin (`_read_missed`), before any request is
        sent (they wait for `_ready`, cleared before the join's caller runs again)."""
        self._joined_since = False
        self._ready.clear()
        frames, hole = await self._read_missed(ws, self._last_id)
        if hole is not None:
            self._queue.put_nowait(hole)
        for raw in frames:
            self._handle(raw)
        self._ready.set()

    def _handle(self, raw: str | bytes) -> None:
        try:
            frame = wire.loads(raw)
            kind = frame["type"]
            if kind in ("RoomCreated", "RoomJoined"):
                try:
                    self._enter(frame)
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    if self._joining is None:
                        raise
                    # The join that asked for it must not wait for ever for a reply it has had.
                    self._fail_pending(
                        ChatError("invalid_frame", f"Unreadable {kind} from the server: {exc!r}")
                    )
                    return
                except ChatError as exc:  # server_tampered: the join that asked fails with it
                    if self._joining is None:
                        return  # nobody asked: the frame is ignored
                    self._fail_pending(exc)
                    return
            if kind == "History" and "before" in frame:
                self._answer(frame)  # a page `history()` asked for: its caller's, not an event
                return
            if self._answer(frame) and kind not in EVERYONES:
                return
            event = self._event(frame)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            event = ErrorEvent("invalid_frame", f"Unreadable frame from the server: {exc!r}")
        if event is not None:
            self._queue.put_nowait(event)

    def _answer(self, frame: dict[str, Any]) -> bool:
        """Resolve the request in flight if `frame` answers it (a History may hold a sent message)."""
        if frame["type"] == "Error" and frame.get("code") in UNASKED_ERRORS:
            return False  # told unasked, before the close that ends the connection
        if self._orphans_answer(frame):
            return True
        pending = self._pending
        if pending is None or pending.future.done():
            return False
        if frame["type"] == "History" and "before" not in frame:
            stored = [{"type": "ChatMessage", **message} for message in frame["messages"]]
            replies = [message for message in stored if pending.answers(message)]
        else:
            try:
                replies = [frame] if frame["type"] == "Error" or pending.answers(frame) else []
            except UNREADABLE as exc:
                # Of the type asked for, but it cannot be matched: the reply, unreadable.
                message = f"Unreadable {frame['type']} from the server: {exc!r}"
                pending.future.set_exception(ChatError("invalid_frame", message))
                return True
        if replies:
            pending.future.set_result(replies[0])
        return bool(replies)

    def _orphans_answer(self, frame: dict[str, Any]) -> bool:
        """Whether `frame` answers a request given up on, the oldest it may answer, which
        is then forgotten. The server answers in order: an abandoned request's answer
        comes before the next one's, unless it is a broadcast (a message's echo, an
        upload's file message), which may come after the next frame's answer: so an
        Error is an orphan's only if it may answer it, and an echo is its own message's."""
        for at, (orphan, _) in enumerate(self._orphans):
            if _is_answer_of(orphan, frame):
                del self._orphans[at]
                self._orphan_answered.set()
                return True
        return False

    def _enter(self, frame: dict[str, Any]) -> None:
        """Called with RoomCreated or RoomJoined, before the History that may follow it.
        Raises (and changes nothing) when the frame cannot be read."""
        seat = self._joining or self._seat
        if seat is None:
            return  # nobody asked to be in a room
        info = frame["room_info"]
        room = RoomInfo.from_wire(info, self._share_link(info["join_key"], seat.secret))
        key = frame["encryption_key"]
        name = self._check_answer(frame, seat, room)
        sealed = None
        if room.sealed and seat.secret is not None:
            keys = SealedKeys.from_secret(seat.secret)
            # A secret that is not this room's is never used: nothing is sent under it.
            sealed = keys if keys.key_check == room.key_check else None
            if sealed is None and frame["type"] == "RoomCreated":
                # This client's own secret: another key check is the server's doing, and
                # the room's share link would not open the room.
                raise ChatError(
                    "server_tampered", "The server answered with another key check than this client sent."
                )
        if frame["type"] == "RoomCreated":
            seat = _Seat(room.join_key, room.owner, seat.password, seat.secret, frame["owner_token"])
        self.room, self._key, self._sealed, self.name = room, key, sealed, name
        self.owner_token = seat.owner_token
        self.participant_token = frame.get("participant_token")
        if self._joining is not None and room.id != self._left_room:  # a new room: ids start over
            self._last_id = 0
            self._oldest_id = None
            self._seen = set()
            self._senders = {}
            self._cards = {}
        if self._joining is not None:  # a rejoin asks from here even if no History follows
            self._last_id = max(self._last_id, seat.since)
            self._joined_since = bool(seat.since)  # and what it missed is read back (`_read`)
        self._seat, self._joining = seat, None

    def _check_answer(self, frame: dict[str, Any], seat: _Seat, room: RoomInfo) -> str:
        """The name this client's messages go out under (the `sender` a sealed room's
        messages are bound to), once the server's answer to a join is found to be what
        was asked for. A server that could read a sealed room only by answering it as a
        standard one, or make this client speak under another name, is refused
        (`ChatError` `server_tampered`): nothing is sent under what it answered."""
        if seat.secret is not None and not (room.sealed and frame["encryption_key"] is None):
            raise ChatError("server_tampered", "The server answered as if this sealed room were not sealed.")
        name = frame.get("name")
        before = self.room
        if self._joining is None and before is not None:  # a rejoin: the same room, the same name
            same = (room.id, room.sealed, room.key_check) == (before.id, before.sealed, before.key_check)
            if not same or self.name is None or name not in (None, self.name):
                raise ChatError("server_tampered", "The server rejoined this client to another room or name.")
            return self.name
        asked = _clean_name(seat.name)
        if name is None:
            return asked
        # A participant token comes back under the name it was given, compared by casefold.
        fold = str.casefold if seat.resuming else str
        if not isinstance(name, str) or fold(name) != fold(asked):
            raise ChatError("server_tampered", f"The server gave this client another name ({name!r}).")
        return name

    def _event(self, frame: dict[str, Any]) -> Event | None:
        kind = frame["type"]
        if kind == "ChatMessage":
            return self._message(frame) if self._is_new(_message_id(frame)) else None
        if kind == "History":
            messages = [self._message(m) for m in frame["messages"] if self._is_new(_message_id(m))]
            return History(messages) if messages else None
        if kind == "ParticipantJoined":
            return Joined(frame["name"])
        if kind == "ParticipantLeft":
            return Left(frame["name"])
        if kind == "FileDeleted":
            return FileDeleted(frame["file_id"])
        if kind == "MessageDeleted":
            return MessageDeleted(_message_id(frame))
        if kind == "MessageEdited":
            return self._edited(frame)
        if kind == "Reactions":
            return _reactions(frame)
        if kind == "Typing":
            return Typing(frame["name"])
        if kind == "Error":
            return ErrorEvent(frame["code"], frame["message"])
        return None  # replies nobody waits for any more, and types this client does not know

    def _is_new(self, message_id: int) -> bool:
        # Remember the ids seen, not only the last: a server that delivered out of order
        # (PROTOCOL.md forbids it, but not every server is this one) loses nothing.
        if message_id in self._seen:
            return False
        self._seen.add(message_id)
        if len(self._seen) > SEEN_IDS:
            self._seen = set(sorted(self._seen)[-SEEN_IDS // 2 :])
        self._last_id = max(self._last_id, message_id)
        self._oldest_id = min(self._oldest_id or message_id, message_id)
        return True

    def _edited(self, frame: dict[str, Any]) -> MessageEdited:
        sender = self._senders.get(_message_id(frame))
        text: str | None = None
        try:
            if self.room is not None and self.room.sealed:
                if self._sealed is not None and sender is not None:
                    payload = open_message(self._sealed.message_key, self.room.id, sender, frame["content"])
                    text = payload.get("body") if payload.get("t") == "text" else None
            elif self._key is not None:
                text = decrypt(self._key, frame["content"])
        except DecryptError:
            text = None
        return MessageEdited(frame["id"], sender, text if isinstance(text, str) else None, frame["edited_at"])

    def _message(self, frame: dict[str, Any]) -> Message | FileShared:
        content, sender = frame["content"], frame["sender"]
        self._senders[_message_id(frame)] = sender
        if len(self._senders) > SEEN_IDS:
            for old in sorted(self._senders)[: SEEN_IDS // 2]:
                del self._senders[old]
        # A sealed room has no server file messages (PROTOCOL.md): there a "[File: ...]"
        # is whatever the server made up, and is shown as unverifiable like any other.
        if self.room is not None and self.room.sealed:
            return self._sealed_message(frame)
        link = FILE_LINK.match(content) if content.startswith("[File: ") else None
        if link:
            return FileShared(frame["id"], sender, link["shown"], link["file_id"], frame["sent_at"])
        if self._key is None:  # no room key: an unreadable frame, reported as an ErrorEvent by _handle
            raise ValueError("a chat message arrived outside a room")
        try:
            text = decrypt(self._key, content)
        except DecryptError:
            text = None
        return Message(frame["id"], sender, text, frame["sent_at"], *_later_state(frame))

    def _sealed_message(self, frame: dict[str, Any]) -> Message | FileShared:
        """A sealed room's message: verified as `sender`'s (or text None), a text or a
        file card; a file's first card is kept for `download_file`, and a later one that
        differs from it reads as a message that could not be verified (`_first_card`)."""
        assert self.room is not None
        sender, unreadable = frame["sender"], Message(frame["id"], frame["sender"], None, frame["sent_at"])
        if self._sealed is None:
            return unreadable
        try:
            payload = open_message(self._sealed.message_key, self.room.id, sender, frame["content"])
        except DecryptError:
            return unreadable
        if payload["t"] == "text" and isinstance(payload.get("body"), str):
            return Message(frame["id"], sender, payload["body"], frame["sent_at"], *_later_state(frame))
        if payload["t"] == "file" and _is_card(payload, self.allowed_mime_types):
            payload["size"] = int(payload["size"])
            # No client edits a card: an edit into one would take an earlier message's place.
            if frame.get("edited_at") or not self._first_card(frame["id"], payload):
                return unreadable
            return FileShared(
                frame["id"], sender, payload["name"], payload["id"], frame["sent_at"],
                payload["mime_type"], payload["size"], payload["sha256"],
            )  # fmt: skip
        return Message(frame["id"], sender, UNSUPPORTED, frame["sent_at"], unsupported=True)

    def _first_card(self, message_id: int, card: dict[str, Any]) -> bool:
        """Keep `card` as its file's unless an earlier message carried another card for
        it; False then. A file's id is known only from its card, so the first card of an
        id is its uploader's: a later one that differs (another name, type or key) is a
        member's copy made to pass the file off as something else, or to break it."""
        file_id = card["id"].lower()
        known = self._cards.get(file_id)
        if known is None or message_id < known[0]:
            self._keep_card(file_id, message_id, card)
            return True
        same = all(known[1][field] == card[field] for field in CARD_FIELDS)
        if same and known[0] == 0:  # this client's own upload: its card's message now known
            self._cards[file_id] = (message_id, known[1])
        return same

    def _keep_card(self, file_id: str, message_id: int, card: dict[str, Any]) -> None:
        """Keep `card` as its file's. Past `max_cards`, the card of the oldest message
        goes (this client's own upload, whose message id is 0 until its card comes back,
        counts as the newest), so that a bot in a sealed room for weeks does not keep
        every card ever shared there. A card is of use while its file lives (FILES_TTL,
        a day by default), and files expire in the order of their messages: the oldest
        message's card is the first of no use. One that is gone is as one never seen:
        `download_file` says file_not_found, `delete_message` of its message leaves the
        file, and a later copy of it would pass for the first (`_first_card`); hence a
        default far above the files a room shares in a day."""
        self._cards[file_id] = (message_id, card)
        if len(self._cards) > self.max_cards:
            # Never the card just kept: one read from an older page is what its reader wants.
            others = (known for known in self._cards if known != file_id)
            del self._cards[min(others, key=lambda known: self._cards[known][0] or MESSAGE_ID_MAX)]

    async def _reconnect(self) -> None:
        """Reopen the connection and rejoin the room, backing off while that fails."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reconnect_timeout
        waits = reconnect_waits(random.random)
        await asyncio.sleep(next(waits))
        while True:
            try:
                self._ws = await self._open()
                if self._seat is None:
                    self._queue.put_nowait(Reconnected(None))
                else:
                    await self._rejoin_readably(self._seat)
                return
            except ChatError as exc:
                wait = next(waits)
                if exc.code not in RETRY_CODES or loop.time() + wait > deadline:
                    raise
            await asyncio.sleep(wait)

    async def _rejoin_readably(self, seat: _Seat) -> None:
        """`_rejoin`, whose answers the server may have made unreadable (not strict JSON,
        a field missing or of the wrong type): `ChatError` `invalid_frame` then, as for
        an answer of the wrong type, not a failure of the client."""
        try:
            await self._rejoin(seat)
        except UNREADABLE as exc:
            await self._websocket().close()
            raise ChatError("invalid_frame", f"Unreadable answer to the rejoin: {exc!r}") from exc

    async def _rejoin(self, seat: _Seat) -> None:
        ws = self._websocket()
        since = self._last_id
        frame = {
            "type": "JoinRoom",
            "join_key": seat.join_key,
            "name": self.name or seat.name,  # as the server has it: the check below wants it back
            "password": seat.password,
            "since": self._last_id or None,
            "owner_token": seat.owner_token,
        }
        if self.participant_token:
            frame["participant_token"] = self.participant_token
        try:
            await ws.send(json.dumps(frame))
            reply = wire.loads(await ws.recv())
        except ConnectionClosed as exc:
            raise ConnectionLost("connection_lost", "The connection dropped while rejoining.") from exc
        if reply["type"] != "RoomJoined":
            await ws.close()
            raise ChatError(reply.get("code", "invalid_frame"), reply.get("message", "Rejoining failed."))
        try:
            self._enter(reply)
        except ChatError:  # server_tampered: nothing more is sent on this connection
            await ws.close()
            raise
        try:
            frames, hole = await self._read_missed(ws, since)
        except ConnectionClosed as exc:
            raise ConnectionLost("connection_lost", "The connection dropped while rejoining.") from exc
        self._queue.put_nowait(Reconnected(self.room))
        if hole is not None:
            self._queue.put_nowait(hole)
        for raw in frames:
            self._handle(raw)

    async def _read_missed(
        self, ws: ClientConnection, since: int
    ) -> tuple[list[str | bytes], MissedMessages | None]:
        """Right after a join that asked from `since` (a rejoin, or a join with `since`):
        read up to the reply to a GetMembers, so that the History (if any), with what was
        missed before it read back into it (`_catch_up`), is in hand before a request is
        sent. Returns the frames read, to be handled in order, and the hole left. The list
        itself is not needed: an Error in its place (a busy server's rate_limited, a
        server_error) answers it just as well, since the server answers frames in order.
        A frame that cannot be read is one of the frames (`_handle` reports it)."""
        frames: list[str | bytes] = []
        await ws.send(json.dumps({"type": "GetMembers"}))
        while (answer := _frame(raw := await ws.recv())).get("type") not in ("Members", "Error"):
            frames.append(raw)
        if answer.get("code") not in (None, *BUSY_CODES):
            frames.append(raw)  # not the GetMembers' answer (e.g. room_closed): an event
            return frames, None
        return frames, await self._catch_up(ws, frames, since) if since else None

    async def _catch_up(
        self, ws: ClientConnection, frames: list[str | bytes], since: int
    ) -> MissedMessages | None:
        """The rejoin's History holds only the newest CHAT_HISTORY_LIMIT messages after
        `since`: read the older ones missed back with GetHistory (a page of one to find
        out whether any were, then at most CATCH_UP_PAGES pages, as the page does) into
        it. Events that come meanwhile stay after it. Returns the hole that is left when
        the pages did not reach back to `since` (more were missed, or an Error or a frame
        it cannot read ended the reading), so that the bot is told and can page back;
        never one known to hold no message: when every page was full of missed ones, a
        page of one (not delivered) tells whether any is left."""
        missed: list[dict[str, Any]] = []
        before: int | None = None  # the oldest message id delivered
        reached = False
        try:
            found = [(at, loaded) for at, raw in enumerate(frames) if _is_history(loaded := wire.loads(raw))]
            if not found or not found[0][1]["messages"]:
                return None
            at, history = found[0]
            before = _message_id(history["messages"][0])
            for limit in (1, *[CATCH_UP_PAGE] * CATCH_UP_PAGES):
                if before <= since + 1:  # no id between
                    reached = True
                    break
                page = await self._history_page(ws, frames, before, limit)
                if page is None:
                    break
                newer = [message for message in page if _message_id(message) > since]
                missed[:0] = newer
                if len(newer) < len(page) or len(page) < limit:
                    reached = True  # a message it had, or fewer than asked: the start of the room
                    break
                before = _message_id(newer[0])
            else:  # the pages ran out, each full of missed messages: any left below?
                left = [] if before <= since + 1 else await self._history_page(ws, frames, before, 1)
                reached = left is not None and all(_message_id(message) <= since for message in left)
        except UNREADABLE:
            pass
        if missed:
            frames[at] = json.dumps({**history, "messages": missed + history["messages"]})
        return None if reached or before is None else MissedMessages(since, before)

    async def _history_page(
        self, ws: ClientConnection, frames: list[str | bytes], before: int, limit: int
    ) -> list[dict[str, Any]] | None:
        """A GetHistory page read while catching up (`_read_missed`); the events that
        come before it are added to `frames`, and an Error is one of them (kicked,
        room_closed) or, for a busy server, dropped: either way there is no page (None)."""
        await ws.send(json.dumps({"type": "GetHistory", "before": before, "limit": limit}))
        while not _is_history(page := wire.loads(raw := await ws.recv()), page=True):
            if page.get("type") == "Error":
                if page.get("code") not in BUSY_CODES:
                    frames.append(raw)
                return None
            frames.append(raw)
        return page["messages"]

    def _fail_pending(self, exc: ChatError) -> None:
        if self._pending is not None and not self._pending.future.done():
            self._pending.future.set_exception(exc)

    def _finish(self, failure: ChatError | None) -> None:
        """The connection has ended for good: end the event stream and wake waiting requests."""
        if self._failure is None and failure is not None:
            self._failure = failure
        self._fail_pending(failure or ConnectionLost("closed", "The client was closed."))
        self._ready.set()
        self._queue.put_nowait(_END)


def _may_refuse(request: _Pending, code: Any) -> bool:
    """Whether an `Error` with `code` may be the answer to `request`: one of its command's
    errors (COMMAND_ERRORS), and only while no part of its answer has come (after an
    upload's FileUploaded, what is left is the room's file message)."""
    if isinstance(request.answers, _Upload) and request.answers.uploaded is not None:
        return False
    errors = COMMAND_ERRORS.get(request.frames[0].get("type", ""))
    return errors is None or code in ANY_COMMANDS_ERRORS or code in errors


def _is_answer_of(orphan: _Pending, frame: dict[str, Any]) -> bool:
    """Whether `frame` may be (part of) the answer of `orphan`, a request given up on."""
    try:
        if frame["type"] == "Error":
            return _may_refuse(orphan, frame.get("code"))
        # Its FileUploaded too (kept by `answers`), which must not pass for the next
        # upload's: what is left, the file message, is never an Error.
        done = orphan.answers(frame)
        return done or isinstance(orphan.answers, _Upload) and orphan.answers.uploaded is frame
    except UNREADABLE:
        return True


def _frame(raw: str | bytes) -> dict[str, Any]:
    """`raw` as a frame; one it cannot read as a frame is {} (no type)."""
    try:
        frame = wire.loads(raw)
    except ValueError:
        return {}
    return frame if isinstance(frame, dict) else {}


def _is_history(frame: Any, page: bool = False) -> bool:
    """A join's History, or with `page` a GetHistory page (which carries `before`)."""
    return isinstance(frame, dict) and frame.get("type") == "History" and ("before" in frame) == page


# What reading a frame of the wrong shape raises.
UNREADABLE = (ValueError, KeyError, TypeError, AttributeError)


def _nothing(reply: dict[str, Any]) -> None:
    """A request whose reply carries nothing the caller needs."""


def _text(frame: dict[str, Any], field: str) -> str:
    if not isinstance(frame[field], str):
        raise TypeError(f"{field} is not a string: {frame[field]!r}")
    return frame[field]


def _participants(frame: dict[str, Any]) -> list[str]:
    names = frame["participants"]
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise TypeError(f"participants is not a list of names: {names!r}")
    return names


def _reactions(frame: dict[str, Any]) -> Reactions:
    return Reactions(_message_id(frame), _reaction_state(frame.get("reactions") or []))


def _message_id(frame: dict[str, Any], field: str = "id") -> int:
    """A frame's message `id` (`reply_to`); anything but an integer is an unreadable frame."""
    if type(frame[field]) is not int:
        raise ValueError(f"a message {field} that is not an integer: {frame[field]!r}")
    return frame[field]


def _reaction_state(reactions: list[dict[str, Any]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((reaction["emoji"], tuple(reaction["names"])) for reaction in reactions)


def _later_state(frame: dict[str, Any]) -> tuple[Any, ...]:
    """A message frame's `reply_to`, `edited_at` and reactions (History's entries have
    all three, a live ChatMessage the first), as `Message` takes them."""
    reply_to = None if frame.get("reply_to") is None else _message_id(frame, "reply_to")
    return reply_to, frame.get("edited_at"), _reaction_state(frame.get("reactions") or [])


def _base_type(mime_type: str) -> str:
    """`Text/Plain; charset=x` -> `text/plain` (PROTOCOL.md: types compare without parameters)."""
    return mime_type.split(";")[0].strip().lower()


# A card's file id (it goes into a URL) and its key, standard base64 of AES-256's 32 bytes.
CARD_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
CARD_KEY = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")


def _is_card(payload: dict[str, Any], allowed: frozenset[str]) -> bool:
    """A file card as PROTOCOL.md has it, with a type the client would ever open."""
    strings = ("id", "name", "mime_type", "sha256", "key")
    return (
        all(isinstance(payload.get(field), str) for field in strings)
        and _whole(payload.get("size"))
        and CARD_ID.fullmatch(payload["id"]) is not None
        and CARD_KEY.fullmatch(payload["key"]) is not None
        and _base_type(payload["mime_type"]) in allowed
    )


def _whole(value: Any) -> bool:
    """A size as the browser takes it (`Number.isSafeInteger`, value >= 0): JavaScript
    reads 1000, 1000.0 and 1e3 as one number, so all three are whole here too."""
    return type(value) in (int, float) and float(value).is_integer() and 0 <= value <= 2**53 - 1


# Unicode's White_Space property: what the server trims names of (PROTOCOL.md).
WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


def _clean_name(name: str) -> str:
    """A name as the server stores it: NFC, trimmed of white space (PROTOCOL.md)."""
    return unicodedata.normalize("NFC", name).strip(WHITE_SPACE)


def _same_id(one: str, other: str) -> bool:
    return one.lower() == other.lower()
