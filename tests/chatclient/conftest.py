"""The client library against a real server process (`manage.py serve`) on a free port."""

import asyncio
import ssl

import pytest

from chatclient import ChatClient, Event
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
