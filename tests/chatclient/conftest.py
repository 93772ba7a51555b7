"""The client library against a real server process (`manage.py serve`) on a free port."""

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from chatclient import ChatClient, ConnectionLost, Event
from tests.e2e.conftest import servers, shared_env, sqlite_env  # noqa: F401 (fixtures)

# Fast presence, so that the ghost of a connection the server lost holds its name for
# seconds, not a minute, when a client rejoins under that name.
FAST_PRESENCE = {"PRESENCE_HEARTBEAT": "0.5", "PRESENCE_TIMEOUT": "2"}


@pytest.fixture
def env(sqlite_env):  # noqa: F811
    return {**sqlite_env, **FAST_PRESENCE}


@pytest.fixture
def server(env, servers):  # noqa: F811
    (server,) = servers(env, 1)
    return server


@pytest.fixture
async def clients(server):
    """Open clients with `await clients()`; all are closed at teardown."""
    opened: list[ChatClient] = []

    async def open_client(url: str | None = None, **options) -> ChatClient:
        client = await ChatClient.connect(url or server.url, **options)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        await client.close()


async def stream_end(client: ChatClient, within: float = 10) -> ConnectionLost:
    """The ConnectionLost the client's event stream ends with (its events before it skipped)."""
    while True:
        try:
            await asyncio.wait_for(client.next_event(), within)
        except ConnectionLost as ended:
            return ended


async def next_of(client: ChatClient, kind: type, within: float = 10) -> Event:
    """The next event of type `kind`, skipping others."""
    while True:
        event = await asyncio.wait_for(client.next_event(), within)
        if isinstance(event, kind):
            return event


class CuttableProxy:
    """A TCP proxy to the server that a test can cut off and bring back on the same port."""

    def __init__(self, target_port: int, tls: ssl.SSLContext | None = None) -> None:
        self.target_port = target_port
        self.tls = tls
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.connections = 0  # opened through the proxy so far

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}/ws/"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.pipe, "127.0.0.1", self.port, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
        self.writers.clear()

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_writer]
        await asyncio.gather(self.copy(reader, up_writer), self.copy(up_reader, writer))

    @staticmethod
    async def copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


class TamperingProxy:
    """A WebSocket proxy to the real server that passes every frame through, each of the
    server's through `rewrite(frame, connection)` (`connection`: 0 for the first socket
    opened through it, 1 for the next...): what a hostile server could answer instead."""

    def __init__(self, target: str, rewrite: Callable[[dict, int], dict]) -> None:
        self.target = target.removesuffix("/ws/")
        self.rewrite = rewrite
        self.url = ""
        self.sockets: list[ServerConnection] = []
        self.sent: list[dict] = []  # what the clients sent, in order

    async def relay(self, websocket: ServerConnection) -> None:
        connection = len(self.sockets)
        self.sockets.append(websocket)
        async with connect(self.target + websocket.request.path, compression=None) as upstream:

            async def up() -> None:
                async for raw in websocket:
                    self.sent.append(json.loads(raw))
                    await upstream.send(raw)

            async def down() -> None:
                async for raw in upstream:
                    await websocket.send(json.dumps(self.rewrite(json.loads(raw), connection)))

            # Either side closing ends both.
            ways = [asyncio.create_task(way()) for way in (up, down)]
            await asyncio.wait(ways, return_when=asyncio.FIRST_COMPLETED)
            for way in ways:
                way.cancel()
            await asyncio.gather(*ways, return_exceptions=True)
            await websocket.close()

    async def cut(self) -> None:
        """Drop every client socket open through the proxy (they reconnect through it)."""
        for websocket in self.sockets:
            await websocket.close(1012)


@asynccontextmanager
async def tampering_proxy(target: str, rewrite: Callable[[dict, int], dict]) -> AsyncIterator[TamperingProxy]:
    proxy = TamperingProxy(target, rewrite)
    async with serve(proxy.relay, "127.0.0.1", 0, compression=None) as server:
        proxy.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws/"
        try:
            yield proxy
        finally:
            await proxy.cut()  # the server's close waits for its connections


# A scripted stand-in for a server, for what a real one cannot be made to do on cue.
FAKE_ROOM = {
    "id": "r",
    "name": "Room",
    "description": "",
    "join_key": "k",
    "has_password": False,
    "owner": "Owner",
    "created_at": "2026-01-01T00:00:00Z",
}
FAKE_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
FAKE_CREATED = {"type": "RoomCreated", "room_info": FAKE_ROOM, "encryption_key": FAKE_KEY, "owner_token": "t"}


@asynccontextmanager
async def fake_server(handler: Callable[[ServerConnection], Awaitable[None]]) -> AsyncIterator[str]:
    """A WebSocket server on a free port that runs `handler` for each connection; yields its URL."""
    async with serve(handler, "127.0.0.1", 0) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws/"


class FakeRoom:
    """A fake server's handler: one standard room (FAKE_ROOM) that anyone joins, answering
    what a server answers; every handshake's path and frame it gets is kept in `paths` and
    `frames`. A test changes an answer by overriding `reply`."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.frames: list[dict] = []
        self.next_id = 1

    async def __call__(self, websocket: ServerConnection) -> None:
        self.paths.append(websocket.request.path if websocket.request else "")
        try:
            async for raw in websocket:
                frame = json.loads(raw)
                self.frames.append(frame)
                if (answer := await self.reply(websocket, frame)) is not None:
                    await websocket.send(json.dumps(answer))
        except ConnectionClosed:
            pass

    def sent(self, kind: str) -> list[dict]:
        return [frame for frame in self.frames if frame["type"] == kind]

    async def reply(self, websocket: ServerConnection, frame: dict) -> dict | None:
        match frame["type"]:
            case "JoinRoom":
                joined = {"type": "RoomJoined", "room_info": FAKE_ROOM, "encryption_key": FAKE_KEY}
                return {**joined, "participants": [frame["name"]], "name": frame["name"]}
            case "GetMembers":
                return {"type": "Members", "participants": ["Bob"]}
            case "ChatMessage":
                self.next_id += 1
                stored = {"id": self.next_id, "sender": "Bob", "sent_at": "2026-01-01T00:00:01Z"}
                return {"type": "ChatMessage", **stored, "content": frame["content"], "reply_to": None}
            case "React":
                reactions = [{"emoji": frame["emoji"], "names": ["Bob"]}]
                return {"type": "Reactions", "id": frame["id"], "reactions": reactions}
            case "UploadFile":  # FileUploaded, then the room's file message (PROTOCOL.md)
                metadata = {"id": "f", "name": frame["name"], "mime_type": frame["mime_type"]}
                size = len(base64.b64decode(frame["content"]))
                uploaded = {"type": "FileUploaded", "metadata": {**metadata, "size": size, "expires_at": "x"}}
                await websocket.send(json.dumps(uploaded))
                self.next_id += 1
                stored = {"id": self.next_id, "sender": "Bob", "sent_at": "2026-01-01T00:00:01Z"}
                return {"type": "ChatMessage", **stored, "content": f"[File: {frame['name']}](/files/f)"}
            case "DeleteFile" | "GetFile":
                return {"type": "Error", "code": "file_not_found", "message": "File not found or expired"}
        return {"type": "Error", "code": "message_not_found", "message": "No such message."}
