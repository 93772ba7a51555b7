"""The helpers tests share, in one module.

Socket tests (through config.asgi.application): a communicator per client (`connect`,
`create_room`, `join_room`), the rooms the `room` and `room_of_two` fixtures hand out
(tests/conftest.py), frames (`upload_frame`) and what an answer must be
(`expect_error`, `expect_closed`, `assert_open`). Chat content is sealed and opened with
the Python client's own crypto (chatclient.crypto), never a copy of it.

Tests without sockets: a fake socket for outboxes and hubs (`FakeSocket`, `drain`), a
socket's `actions.Connection` over one (`Socketless`, the `connection` fixture) and what
an action refused (`refusal`), a stand-in for `workers.on_database_thread` that calls in
the loop (`in_loop`), and rooms, seats and files made through the services
(`make_room`, `join_seat`, `seat_in_new_room`, `stored_file`).

End-to-end tests keep their own helpers beside them (tests/e2e/servers.py, wsclient.py),
and browser tests their page objects (tests/browser/pages.py).
"""

import asyncio
import base64
import json
import os
import uuid
from dataclasses import dataclass
from datetime import timedelta

from channels.testing import WebsocketCommunicator
from django.test import AsyncClient
from django.utils import timezone

from chat import actions, services
from chat.errors import ProtocolError
from chatclient.crypto import decrypt, encrypt
from config.asgi import application
from files.models import SharedFile
from files.services import file_record, scan_and_store

__all__ = [
    "HISTORY_ENTRY",
    "decrypt",
    "encrypt",
    "connect",
    "create_room",
    "join_room",
    "rejoin_as_owner",
    "OpenRoom",
    "RoomOfTwo",
    "open_room",
    "open_room_of_two",
    "close_all",
    "expect_error",
    "expect_closed",
    "assert_open",
    "upload_frame",
    "browser_session",
    "FakeSocket",
    "drain",
    "Socketless",
    "refusal",
    "ROOM_X",
    "ROOM_Y",
    "X",
    "no_messages_yet",
    "WHERE",
    "make_room",
    "join_seat",
    "seat_in_new_room",
    "stored_file",
]


# The fields of a History entry (PROTOCOL.md, Conversations).
HISTORY_ENTRY = {"id", "sender", "content", "sent_at", "reply_to", "edited_at", "reactions"}


# --- Sockets --------------------------------------------------------------------------


async def connect(path: str = "/ws/", headers=None, client=("10.0.0.1", 5000)) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path, headers=headers or [])
    communicator.scope["client"] = client
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def create_room(password=None, name="Room", owner_name=None, **kw):
    """Connect and create a room; returns (communicator, RoomCreated)."""
    communicator = await connect(**kw)
    frame = {"type": "CreateRoom", "name": name, "description": "A room", "password": password}
    if owner_name is not None:
        frame["owner_name"] = owner_name
    await communicator.send_json_to(frame)
    created = await communicator.receive_json_from()
    assert created["type"] == "RoomCreated", created
    return communicator, created


async def join_room(join_key: str, name: str, password=None, **kw):
    """Connect and join; returns (communicator, RoomJoined)."""
    communicator = await connect(**kw)
    await communicator.send_json_to(
        {"type": "JoinRoom", "join_key": join_key, "name": name, "password": password}
    )
    joined = await communicator.receive_json_from()
    assert joined["type"] == "RoomJoined", joined
    return communicator, joined


async def rejoin_as_owner(created: dict, name: str, **kw):
    """Connect and join the room of `created` (RoomCreated) with its owner token;
    returns (communicator, RoomJoined)."""
    communicator = await connect(**kw)
    await communicator.send_json_to(
        {
            "type": "JoinRoom",
            "join_key": created["room_info"]["join_key"],
            "name": name,
            "owner_token": created["owner_token"],
        }
    )
    joined = await communicator.receive_json_from()
    assert joined["type"] == "RoomJoined", joined
    return communicator, joined


@dataclass
class OpenRoom:
    """A room just created: its owner's communicator and the RoomCreated frame."""

    owner: WebsocketCommunicator
    created: dict

    @property
    def key(self) -> str:
        return self.created["encryption_key"]

    @property
    def join_key(self) -> str:
        return self.created["room_info"]["join_key"]

    @property
    def id(self) -> str:
        return self.created["room_info"]["id"]


@dataclass
class RoomOfTwo(OpenRoom):
    """The owner and one member, Bob (from another address, 10.0.0.2), whose join the
    owner has been told of."""

    member: WebsocketCommunicator
    joined: dict


async def open_room() -> OpenRoom:
    owner, created = await create_room()
    return OpenRoom(owner, created)


async def open_room_of_two() -> RoomOfTwo:
    owner, created = await create_room()
    member, joined = await join_room(created["room_info"]["join_key"], "Bob", client=("10.0.0.2", 5000))
    assert (await owner.receive_json_from()) == {"type": "ParticipantJoined", "name": "Bob"}
    return RoomOfTwo(owner, created, member, joined)


async def close_all(*communicators: WebsocketCommunicator) -> None:
    """Disconnect every communicator, each even when one before it fails."""
    failures = []
    for communicator in communicators:
        try:
            await communicator.disconnect()
        except Exception as exc:  # the application failed: say so once all are closed
            failures.append(exc)
    if failures:
        raise failures[0]


async def expect_error(communicator: WebsocketCommunicator, code: str) -> dict:
    message = await communicator.receive_json_from()
    assert message["type"] == "Error" and message["code"] == code, message
    return message


async def expect_closed(communicator: WebsocketCommunicator, code: int) -> None:
    output = await communicator.receive_output(2)
    assert output == {"type": "websocket.close", "code": code}, output


async def assert_open(communicator: WebsocketCommunicator) -> None:
    """The socket still answers: GetMembers gets Members or not_in_room."""
    await communicator.send_json_to({"type": "GetMembers"})
    reply = await communicator.receive_json_from()
    assert reply["type"] == "Members" or reply.get("code") == "not_in_room", reply


def upload_frame(data: bytes, name: str = "pic.png", mime_type: str = "image/png") -> dict:
    return {
        "type": "UploadFile",
        "name": name,
        "mime_type": mime_type,
        "content": base64.b64encode(data).decode(),
    }


async def browser_session() -> tuple[AsyncClient, list]:
    """A client that loaded the app page, and the WebSocket headers carrying its cookie."""
    client = AsyncClient()
    response = await client.get("/")
    assert response.status_code == 200
    cookie = client.cookies["sessionid"].value
    return client, [(b"cookie", f"sessionid={cookie}".encode()), (b"origin", b"http://localhost")]


# --- Without sockets ------------------------------------------------------------------


class FakeSocket:
    """What an Outbox writes to: records frames and the close code; `stall` holds every
    send until `gate` is set."""

    def __init__(self, stall: bool = False) -> None:
        self.sent: list[str] = []
        self.closed: int | None = None
        self.gate = asyncio.Event()
        self.got = asyncio.Event()  # set once anything is sent
        if not stall:
            self.gate.set()

    async def send(self, text: str) -> None:
        await self.gate.wait()
        self.sent.append(text)
        self.got.set()

    async def close(self, code: int) -> None:
        self.closed = code


async def drain() -> None:
    """Let the tasks that are ready (an outbox's writer) run a few rounds."""
    for _ in range(5):
        await asyncio.sleep(0)


@dataclass
class Socketless:
    """A socket's `actions.Connection` (its state, limits and outbox) over a FakeSocket,
    as chat/consumers.py opens one, for driving actions without a socket."""

    conn: actions.Connection
    socket: FakeSocket

    @classmethod
    def open(cls, address: str | None = "203.0.113.5", session_key: str | None = None) -> "Socketless":
        socket = FakeSocket()
        return cls(actions.open_connection(socket.send, socket.close, address, session_key), socket)

    async def frames(self) -> list[dict]:
        """Every frame the outbox has written to the socket so far, decoded."""
        await drain()
        return [json.loads(text) for text in self.socket.sent]


async def refusal(conn: actions.Connection, action: actions.Action, command) -> ProtocolError:
    """Run `action` as the consumer does and return the ProtocolError it refused the
    command with, answered (`actions.refuse`) and the frame finished (`frame_done`)."""
    try:
        await actions.run(conn, action, command)
    except ProtocolError as exc:
        await actions.refuse(conn, exc)
        return exc
    finally:
        actions.frame_done(conn, 0)
    raise AssertionError(f"{command} was not refused")


# Two rooms, and how the hub and the bus name the first (its id in hex).
ROOM_X, ROOM_Y = uuid.UUID(int=1), uuid.UUID(int=2)
X = ROOM_X.hex


async def no_messages_yet(room: str) -> int:
    """A hub's `position`: no message stored in any room yet."""
    return 0


WHERE = services.Where("chan", "proc", "127.0.0.1")


def make_room(**fields):
    """A room made through the services (sync, in the test's database), with `fields`
    of room_create (password_hash, key_check for a sealed room...) over the defaults;
    returns (room, the owner's seat, the owner token)."""
    defaults = {"name": "Room", "description": "", "password_hash": "", "owner_name": "Owner"}
    room, seat, token = services.room_create(where=WHERE, now=timezone.now(), **(defaults | fields))
    return room, seat, token


def join_seat(room, name, **kwargs):
    """A seat in `room` through the services; returns services.Joined."""
    return services.room_join(
        room=room, name=name, where=WHERE, owner_token=None, since=None, now=timezone.now(), **kwargs
    )


def seat_in_new_room() -> services.Seat:
    """The owner's seat in a room made through the services."""
    return make_room()[1]


def stored_file(seat: services.Seat, *, age: timedelta = timedelta(0), deleted: bool = False) -> SharedFile:
    """A file uploaded `age` ago (FILES_TTL is a day), optionally deleted since."""
    created = timezone.now() - age
    blob = scan_and_store(uuid.uuid4(), os.urandom(100))
    file = file_record(seat=seat, name="note.txt", mime_type="text/plain", blob=blob, now=created)
    if deleted:
        SharedFile.objects.filter(pk=file.pk).update(deleted_at=timezone.now())
    return file


def in_loop(function):
    """`workers.on_database_thread` for tests that replace the database call itself: no
    database thread, no connection to check; keyword arguments, as the callers pass."""

    async def call(**kwargs):
        return function(**kwargs)

    return call
