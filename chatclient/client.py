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
import json
import mimetypes
import ssl
import unicodedata
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from chatclient.crypto import DecryptError, decrypt, encrypt
from chatclient.events import (
    FILE_LINK,
    ErrorEvent,
    Event,
    FileDeleted,
    FileMetadata,
    FileShared,
    History,
    Joined,
    Left,
    Message,
    MessageDeleted,
    Reconnected,
    Reconnecting,
    RoomInfo,
)

# Room history (100 messages of up to 64 Ki characters) and a FileContent of a 10 MiB
# file (base64) are far above websockets' default 1 MiB frame limit.
DEFAULT_MAX_FRAME = 64 * 1024 * 1024
# Message ids remembered to drop repeats (History and live can both hold one).
SEEN_IDS = 10_000
# Close codes after which reconnecting cannot help (PROTOCOL.md, Transport).
FINAL_CLOSE_CODES = {4000: "room_closed", 4001: "kicked", 1008: "abuse", 1009: "frame_too_large"}
# Rejoin refusals worth retrying: a ghost of the old connection may hold the name until
# the server's presence sweep removes it.
RETRY_CODES = {"connection_failed", "connection_lost", "name_taken", "rate_limited", "server_error"}


class ChatError(Exception):
    """The server refused a request (`code` is the protocol's error code), or the client did."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ConnectionLost(ChatError):
    """The connection is gone for good, or could not be opened; `close_code` says how it closed."""

    def __init__(self, code: str, message: str, close_code: int | None = None) -> None:
        super().__init__(code, message)
        self.close_code = close_code


@dataclass(slots=True)
class _Seat:
    """What it takes to rejoin the room after a reconnect."""

    join_key: str
    name: str
    password: str | None


@dataclass(slots=True)
class _Pending:
    frames: list[dict[str, Any]]
    answers: Callable[[dict[str, Any]], bool]
    retry: bool  # sent again after a reconnect if the drop left it unanswered
    future: asyncio.Future[dict[str, Any]]


_END = object()


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
    ) -> None:
        self.url = url
        self.ssl_context = ssl_context  # for wss:// with a private CA; by default the system's trust store
        self.reconnect = reconnect
        self.reconnect_timeout = reconnect_timeout
        self.max_frame = max_frame
        self.room: RoomInfo | None = None
        self.name: str | None = None
        self.owner_token: str | None = None
        self._key: str | None = None
        self._seat: _Seat | None = None
        self._joining: _Seat | None = None
        self._last_id = 0
        self._seen: set[int] = set()
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._pending: _Pending | None = None
        self._lock = asyncio.Lock()
        self._ready = asyncio.Event()
        self._failure: ChatError | None = None
        self._closing = False

    @classmethod
    async def connect(cls, url: str, **options: Any) -> ChatClient:
        """Open the connection; raises `ConnectionLost` (`connection_failed`) if it cannot."""
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
        self, name: str, description: str = "", password: str | None = None, owner_name: str | None = None
    ) -> RoomInfo:
        frame: dict[str, Any] = {
            "type": "CreateRoom",
            "name": name,
            "description": description,
            "password": password,
        }
        if owner_name is not None:
            frame["owner_name"] = owner_name
        return await self._enter_room(_Seat("", "", password), frame, "RoomCreated")

    async def join_room(self, join_key: str, name: str, password: str | None = None) -> RoomInfo:
        frame = {"type": "JoinRoom", "join_key": join_key, "name": name, "password": password}
        return await self._enter_room(_Seat(join_key, name, password), frame, "RoomJoined")

    async def _enter_room(self, seat: _Seat, frame: dict[str, Any], reply_type: str) -> RoomInfo:
        self._joining = seat  # the reader takes it up with the reply, before any History
        try:
            await self._request([frame], lambda reply: reply["type"] == reply_type)
        finally:
            self._joining = None
        return self._current_room()

    async def send(self, text: str) -> Message:
        """Encrypt and send `text`; returns it as stored (with its id) once the server echoes it."""
        content = encrypt(self._room_key(), text)
        # Retried after a reconnect unless the rejoin's History shows it was stored.
        reply = await self._request(
            [{"type": "ChatMessage", "content": content}],
            lambda reply: reply["type"] == "ChatMessage" and reply.get("content") == content,
            retry=True,
        )
        return Message(reply["id"], reply["sender"], text, reply["sent_at"])

    async def members(self) -> list[str]:
        reply = await self._request(
            [{"type": "GetMembers"}], lambda reply: reply["type"] == "Members", retry=True
        )
        return reply["participants"]

    async def upload_file(
        self, path_or_bytes: str | Path | bytes, name: str | None = None, mime_type: str | None = None
    ) -> FileMetadata:
        """Upload a file (a path, `~` allowed, or bytes with a `name`); the room sees `FileShared`."""
        if isinstance(path_or_bytes, bytes | bytearray | memoryview):
            if name is None:
                raise ValueError("name is required when uploading bytes")
            data = bytes(path_or_bytes)
        else:
            path = Path(path_or_bytes)
            data = await asyncio.to_thread(lambda: path.expanduser().read_bytes())
            name = name or path.name
        mime_type = mime_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        frame = {
            "type": "UploadFile",
            "name": name,
            "mime_type": mime_type,
            "content": base64.b64encode(data).decode(),
        }
        reply = await self._request([frame], lambda reply: reply["type"] == "FileUploaded")
        return FileMetadata.from_wire(reply["metadata"])

    async def download_file(self, file_id: str) -> tuple[FileMetadata, bytes]:
        reply = await self._request(
            [{"type": "GetFile", "file_id": file_id}],
            lambda reply: reply["type"] == "FileContent" and _same_id(reply["metadata"]["id"], file_id),
            retry=True,
        )
        return FileMetadata.from_wire(reply["metadata"]), base64.b64decode(reply["content"])

    async def delete_file(self, file_id: str) -> None:
        await self._request(
            [{"type": "DeleteFile", "file_id": file_id}],
            lambda reply: reply["type"] == "FileDeleted" and _same_id(reply["file_id"], file_id),
        )

    async def leave(self) -> None:
        """Leave the room and keep the connection open."""
        if self._seat is None:
            raise ChatError("not_in_room", "Not in a room.")
        # LeaveRoom has no reply; the GetMembers behind it answers not_in_room once it is done.
        try:
            await self._request([{"type": "LeaveRoom"}, {"type": "GetMembers"}], lambda reply: False)
        except ChatError as exc:
            if exc.code != "not_in_room" or isinstance(exc, ConnectionLost):
                raise
        self._seat = self.room = self._key = self.name = self.owner_token = None

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

    async def _open(self) -> ClientConnection:
        try:
            options: dict[str, Any] = {"ssl": self.ssl_context} if self.ssl_context else {}
            return await connect(self.url, max_size=self.max_frame, compression=None, **options)
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise ConnectionLost("connection_failed", f"cannot connect to {self.url}: {exc}") from exc

    async def _request(
        self, frames: list[dict[str, Any]], answers: Callable[[dict], bool], *, retry: bool = False
    ) -> dict:
        """Send `frames` and wait for the frame that `answers` them, or an `Error`.

        If the connection drops first, a `retry` request is sent again once the room is
        rejoined; any other fails with `ConnectionLost`.
        """
        async with self._lock:
            await self._ready.wait()
            if self._failure is not None:
                raise self._failure
            if self._closing:
                raise ConnectionLost("closed", "The client was closed.")
            future = asyncio.get_running_loop().create_future()
            self._pending = _Pending(frames, answers, retry, future)
            try:
                await self._send(frames)
                reply = await future
            finally:
                self._pending = None
        if reply["type"] == "Error":
            raise ChatError(reply["code"], reply["message"])
        return reply

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
            if not (self._pending and self._pending.retry):
                self._fail_pending(ConnectionLost("connection_lost", "The connection dropped.", close_code))
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
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else 1006

    def _handle(self, raw: str | bytes) -> None:
        try:
            frame = json.loads(raw)
            kind = frame["type"]
            if kind in ("RoomCreated", "RoomJoined"):
                self._enter(frame)
            if self._answer(frame) and kind not in ("ChatMessage", "FileDeleted", "History"):
                return
            event = self._event(frame)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            event = ErrorEvent("invalid_frame", f"Unreadable frame from the server: {exc!r}")
        if event is not None:
            self._queue.put_nowait(event)

    def _answer(self, frame: dict[str, Any]) -> bool:
        """Resolve the request in flight if `frame` answers it (a History may hold a sent message)."""
        pending = self._pending
        if pending is None or pending.future.done():
            return False
        if frame["type"] == "History":
            stored = [{"type": "ChatMessage", **message} for message in frame["messages"]]
            replies = [message for message in stored if pending.answers(message)]
        else:
            replies = [frame] if frame["type"] == "Error" or pending.answers(frame) else []
        if replies:
            pending.future.set_result(replies[0])
        return bool(replies)

    def _enter(self, frame: dict[str, Any]) -> None:
        """Called with RoomCreated or RoomJoined, before the History that may follow it."""
        seat = self._joining or self._seat
        if seat is None:
            return  # nobody asked to be in a room
        self.room = RoomInfo.from_wire(frame["room_info"])
        self._key = frame["encryption_key"]
        if frame["type"] == "RoomCreated":
            self.owner_token = frame["owner_token"]
            seat = _Seat(self.room.join_key, self.room.owner, seat.password)
        if self._joining is not None:  # a new room, not a rejoin: ids start over
            self._last_id = 0
            self._seen = set()
        self._seat, self._joining = seat, None
        self.name = unicodedata.normalize("NFC", seat.name).strip()

    def _event(self, frame: dict[str, Any]) -> Event | None:
        kind = frame["type"]
        if kind == "ChatMessage":
            return self._message(frame) if self._is_new(frame["id"]) else None
        if kind == "History":
            messages = [self._message(m) for m in frame["messages"] if self._is_new(m["id"])]
            return History(messages) if messages else None
        if kind == "ParticipantJoined":
            return Joined(frame["name"])
        if kind == "ParticipantLeft":
            return Left(frame["name"])
        if kind == "FileDeleted":
            return FileDeleted(frame["file_id"])
        if kind == "MessageDeleted":
            return MessageDeleted(frame["id"])
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
        return True

    def _message(self, frame: dict[str, Any]) -> Message | FileShared:
        content, sender = frame["content"], frame["sender"]
        link = FILE_LINK.match(content) if content.startswith("[File: ") else None
        if link:
            return FileShared(frame["id"], sender, link["shown"], link["file_id"], frame["sent_at"])
        if self._key is None:  # no room key: an unreadable frame, reported as an ErrorEvent by _handle
            raise ValueError("a chat message arrived outside a room")
        try:
            text = decrypt(self._key, content)
        except DecryptError:
            text = None
        return Message(frame["id"], sender, text, frame["sent_at"])

    async def _reconnect(self) -> None:
        """Reopen the connection and rejoin the room, backing off while that fails."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reconnect_timeout
        delay = 0.1
        while True:
            try:
                self._ws = await self._open()
                if self._seat is None:
                    self._queue.put_nowait(Reconnected(None))
                else:
                    await self._rejoin(self._seat)
                return
            except ChatError as exc:
                if exc.code not in RETRY_CODES or loop.time() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _rejoin(self, seat: _Seat) -> None:
        ws = self._websocket()
        frame = {
            "type": "JoinRoom",
            "join_key": seat.join_key,
            "name": seat.name,
            "password": seat.password,
            "since": self._last_id or None,
            "owner_token": self.owner_token,
        }
        try:
            await ws.send(json.dumps(frame))
            reply = json.loads(await ws.recv())
        except ConnectionClosed as exc:
            raise ConnectionLost("connection_lost", "The connection dropped while rejoining.") from exc
        if reply["type"] != "RoomJoined":
            await ws.close()
            raise ChatError(reply.get("code", "invalid_frame"), reply.get("message", "Rejoining failed."))
        self._enter(reply)
        # Read up to the reply to a GetMembers, so that the History (if any) is handled
        # before a request that the drop interrupted is sent again.
        frames: list[str | bytes] = []
        try:
            await ws.send(json.dumps({"type": "GetMembers"}))
            while json.loads(raw := await ws.recv()).get("type") != "Members":
                frames.append(raw)
        except ConnectionClosed as exc:
            raise ConnectionLost("connection_lost", "The connection dropped while rejoining.") from exc
        self._queue.put_nowait(Reconnected(self.room))
        for raw in frames:
            self._handle(raw)

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


def _same_id(one: str, other: str) -> bool:
    return one.lower() == other.lower()
