"""Small helpers for consumer tests: a communicator per client, and AES-GCM content."""

import base64
import os

from channels.testing import WebsocketCommunicator
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from config.asgi import application


def encrypt(key_b64: str, text: str) -> str:
    """Encrypt exactly as PROTOCOL.md says: base64(nonce || ciphertext || tag)."""
    nonce = os.urandom(12)
    sealed = AESGCM(base64.b64decode(key_b64)).encrypt(nonce, text.encode(), None)
    return base64.b64encode(nonce + sealed).decode()


def decrypt(key_b64: str, content: str) -> str:
    raw = base64.b64decode(content)
    return AESGCM(base64.b64decode(key_b64)).decrypt(raw[:12], raw[12:], None).decode()


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


async def expect_error(communicator: WebsocketCommunicator, code: str) -> dict:
    message = await communicator.receive_json_from()
    assert message["type"] == "Error" and message["code"] == code, message
    return message


async def assert_open(communicator: WebsocketCommunicator) -> None:
    """The socket still answers: GetMembers gets Members or not_in_room."""
    await communicator.send_json_to({"type": "GetMembers"})
    reply = await communicator.receive_json_from()
    assert reply["type"] == "Members" or reply.get("code") == "not_in_room", reply
