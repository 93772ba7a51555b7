"""The client side of end-to-end tests: a bare protocol client (any frame, as written,
and the frames that come back, one by one; chatclient, the real library, answers
requests and hides the protocol, and tests/chatclient tests it), a room of two, and a
browser's HTTP: its session cookie, a download, a handshake's status. Chat content is
sealed with chatclient's crypto."""

import asyncio
import json
import urllib.error
import urllib.request
from email.message import Message
from http.cookies import SimpleCookie

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from chatclient.crypto import encrypt


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


async def room_of_two(
    alice_url: str, bob_url: str | None = None, name: str = "Room"
) -> tuple[Client, Client, str]:
    """Alice creates a room on `alice_url`, Bob joins it on `bob_url` (else the same
    server) and Alice has seen him arrive: (alice, bob, the join key)."""
    alice = await Client.open(alice_url)
    join_key = (await alice.create(name=name))["room_info"]["join_key"]
    bob = await Client.open(bob_url or alice_url)
    await bob.join(join_key, "Bob")
    await alice.expect("ParticipantJoined")
    return alice, bob, join_key


async def guesses_limited_across(one, two, join_key: str) -> list[Client]:
    """Four wrong guesses spread over two processes, then even the right password is
    rate_limited on both (JOIN_FAILURES_PER_MINUTE=4, counted in Redis); the attackers."""
    attackers = [await Client.open(one.url), await Client.open(two.url)]
    for guess in range(4):
        attacker = attackers[guess % 2]
        await attacker.send(type="JoinRoom", join_key=join_key, name="Mallory", password=f"guess{guess}")
        assert (await attacker.recv())["code"] == "wrong_password"
    for attacker in attackers:
        await attacker.send(type="JoinRoom", join_key=join_key, name="Mallory", password="right")
        assert (await attacker.recv())["code"] == "rate_limited"
    return attackers


async def handshake_status(url: str, origin: str) -> int:
    """Open a socket with `origin`; returns the handshake's HTTP status (101: accepted)."""
    try:
        async with connect(url, origin=origin, open_timeout=10):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def session_cookie(base_url: str) -> str:
    """A browser session as the page gets one: the cookie of the app page (`GET /`)."""
    with urllib.request.urlopen(f"{base_url}/") as response:
        cookie = SimpleCookie(response.headers.get("Set-Cookie") or "")
    # `sessionid`, or `__Host-sessionid` with secure cookies (config/settings.py).
    (name,) = (name for name in cookie if name.endswith("sessionid"))
    return f"{name}={cookie[name].value}"


def download(base_url: str, path: str, cookie: str | None) -> tuple[int, bytes, Message]:
    """GET `path` with the session `cookie`: (status, body, headers), errors included."""
    request = urllib.request.Request(f"{base_url}{path}", headers={"Cookie": cookie} if cookie else {})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers
