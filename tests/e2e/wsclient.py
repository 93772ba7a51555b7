"""A bare protocol client for end-to-end tests (the real library comes with issue 5)."""

import asyncio
import json

from websockets.asyncio.client import ClientConnection, connect

from tests.chat.helpers import encrypt


class Client:
    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.key = ""

    @classmethod
    async def open(cls, url: str, **kwargs) -> "Client":
        return cls(await connect(url, max_size=None, compression=None, **kwargs))

    async def send(self, **frame) -> None:
        await self.connection.send(json.dumps(frame))

    async def recv(self, within: float = 5) -> dict:
        return json.loads(await asyncio.wait_for(self.connection.recv(), within))

    async def expect(self, kind: str, within: float = 5) -> dict:
        """The next frame of type `kind`, skipping presence chatter of other kinds."""
        while True:
            message = await self.recv(within)
            if message["type"] == kind:
                return message
            if message["type"] == "Error":
                raise AssertionError(f"expected {kind}, got {message}")

    async def create(self, name: str = "Room", password: str | None = None) -> dict:
        await self.send(type="CreateRoom", name=name, description="", password=password)
        created = await self.expect("RoomCreated")
        self.key = created["encryption_key"]
        return created

    async def join(self, join_key: str, name: str, password: str | None = None) -> dict:
        await self.send(type="JoinRoom", join_key=join_key, name=name, password=password)
        joined = await self.expect("RoomJoined")
        self.key = joined["encryption_key"]
        return joined

    async def say(self, text: str) -> None:
        await self.send(type="ChatMessage", content=encrypt(self.key, text))

    async def members(self) -> list[str]:
        await self.send(type="GetMembers")
        return (await self.expect("Members"))["participants"]

    async def close(self) -> None:
        await self.connection.close()
