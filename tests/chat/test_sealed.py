"""Sealed rooms on the server (PROTOCOL.md, "Sealed rooms"): no key is made, stored or
sent; room_info says the room is sealed and carries the creator's key_check; uploads are
ciphertext named encrypted.bin, never announced by the server; every refusal has its
code. Over both layers, through the real consumer."""

import base64
import json

import pytest

from chat import protocol
from chat.errors import ProtocolError
from chat.models import Message, Room
from chatclient.crypto import SealedKeys, new_room_secret, open_file, open_message, seal_file, seal_message
from files import blobs
from files.models import SharedFile
from tests.helpers import close_all, connect, expect_error, join_room

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]

SECRET = new_room_secret()
KEYS = SealedKeys.from_secret(SECRET)


def create_frame(**fields) -> str:
    frame = {"type": "CreateRoom", "name": "R", "description": "", "password": None, **fields}
    return json.dumps(frame)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"sealed": "yes", "key_check": KEYS.key_check}, "sealed"),
        ({"sealed": 1, "key_check": KEYS.key_check}, "sealed"),
        ({"sealed": True}, "key_check"),
        ({"sealed": True, "key_check": None}, "key_check"),
        ({"sealed": True, "key_check": 16}, "key_check"),
        ({"sealed": True, "key_check": KEYS.key_check[:-2]}, "key_check"),  # 22 characters
        ({"sealed": True, "key_check": base64.b64encode(bytes(17)).decode()}, "key_check"),  # 17 bytes
        ({"sealed": True, "key_check": base64.b64encode(bytes(15)).decode() + "AAAA"}, "key_check"),
        ({"sealed": True, "key_check": KEYS.key_check[:20] + "-_=="}, "key_check"),  # urlsafe
        ({"sealed": True, "key_check": KEYS.key_check[:21] + "B=="}, "key_check"),  # stray bits
        ({"key_check": KEYS.key_check}, "key_check"),  # without sealed: true
        ({"sealed": False, "key_check": KEYS.key_check}, "key_check"),
    ],
)
def test_create_room_refuses_what_a_sealed_room_cannot_be(fields, field):
    with pytest.raises(ProtocolError) as refused:
        protocol.parse_client_message(create_frame(**fields))
    assert refused.value.code == "invalid_field" and refused.value.message.startswith(f"{field}: ")


def test_a_standard_room_may_say_sealed_false_or_key_check_null():
    for fields in ({"sealed": False}, {"key_check": None}, {"sealed": None}, {}):
        command = protocol.parse_client_message(create_frame(**fields))
        assert command.sealed is False and command.key_check is None
    command = protocol.parse_client_message(create_frame(sealed=True, key_check=KEYS.key_check))
    assert command.sealed is True and command.key_check == KEYS.key_check


async def create_sealed(password=None, owner_name="Ann"):
    owner = await connect()
    await owner.send_json_to(
        {
            "type": "CreateRoom",
            "name": "Sealed",
            "description": "d",
            "password": password,
            "owner_name": owner_name,
            "sealed": True,
            "key_check": KEYS.key_check,
        }
    )
    created = await owner.receive_json_from()
    assert created["type"] == "RoomCreated", created
    return owner, created


async def test_a_sealed_room_has_no_key_on_the_server_and_says_so(layer):
    owner, created = await create_sealed(password="pw", owner_name="  Ann ")
    info = created["room_info"]
    assert created["encryption_key"] is None and created["name"] == "Ann"
    assert info["sealed"] is True and info["key_check"] == KEYS.key_check and info["has_password"] is True
    room = await Room.objects.aget(pk=info["id"])
    assert room.sealed and room.wrapped_key == "" and room.key_check == KEYS.key_check

    bob, joined = await join_room(info["join_key"], "Bob", password="pw", client=("10.0.0.2", 5000))
    assert joined["encryption_key"] is None and joined["name"] == "Bob"
    assert joined["room_info"] == info

    # Chat is relayed as ciphertext bound to the sender's name; the server stores it as sent.
    content = seal_message(KEYS.message_key, info["id"], "Bob", {"t": "text", "body": "hi"})
    await bob.send_json_to({"type": "ChatMessage", "content": content})
    await owner.receive_json_from()  # ParticipantJoined
    message = await owner.receive_json_from()
    assert message["sender"] == "Bob" and message["content"] == content
    assert open_message(KEYS.message_key, info["id"], message["sender"], message["content"]) == {
        "t": "text",
        "body": "hi",
    }
    assert (await Message.objects.aget(pk=message["id"])).content == content
    await close_all(owner, bob)


async def test_a_sealed_upload_is_ciphertext_named_encrypted_bin_and_never_announced(layer, settings):
    settings.FILES_MAX_SIZE = 1000
    owner, created = await create_sealed()
    info = created["room_info"]
    bob, _ = await join_room(info["join_key"], "Bob", client=("10.0.0.2", 5000))
    assert (await owner.receive_json_from())["type"] == "ParticipantJoined"
    file_key, blob = seal_file(b"%PDF-1.7 the real file" + bytes(1000 - 22))  # 1000 bytes inside
    assert len(blob) == settings.FILES_MAX_SIZE + 28
    content = base64.b64encode(blob).decode()

    def upload(name="encrypted.bin", mime_type="application/octet-stream", data=content) -> dict:
        return {"type": "UploadFile", "name": name, "mime_type": mime_type, "content": data}

    for refused in (
        upload(name="report.pdf"),
        upload(mime_type="application/pdf"),
        upload(name="Encrypted.bin"),
    ):
        await owner.send_json_to(refused)
        await expect_error(owner, "mime_not_allowed")
    await owner.send_json_to(upload(data=base64.b64encode(blob + b"x").decode()))
    await expect_error(owner, "file_too_large")

    await owner.send_json_to(upload())
    uploaded = await owner.receive_json_from()
    assert uploaded["type"] == "FileUploaded", uploaded
    metadata = uploaded["metadata"]
    assert metadata["name"] == "encrypted.bin" and metadata["mime_type"] == "application/octet-stream"
    assert metadata["size"] == len(blob)
    shared = await SharedFile.objects.aget(pk=metadata["id"])
    assert shared.message_id is None  # no [File: ...] message: the uploader sends its card
    assert await Message.objects.filter(room_id=info["id"]).acount() == 0
    # Stored encrypted at rest like any file: the blob on disk is not the upload.
    on_disk = (settings.FILES_ROOT / shared.blob).read_bytes()
    assert blob not in on_disk and blobs.read(shared.id, shared.blob) == blob

    # Bob hears nothing of it until a card arrives; then he fetches and opens it.
    card = {"t": "file", "id": metadata["id"], "name": "report.pdf", "mime_type": "application/pdf"}
    card |= {"size": 1000, "key": base64.b64encode(file_key).decode()}
    await owner.send_json_to(
        {"type": "ChatMessage", "content": seal_message(KEYS.message_key, info["id"], "Ann", card)}
    )
    announced = await bob.receive_json_from()
    assert announced["type"] == "ChatMessage", announced  # the card, not a server message
    opened = open_message(KEYS.message_key, info["id"], announced["sender"], announced["content"])
    await bob.send_json_to({"type": "GetFile", "file_id": opened["id"]})
    fetched = await bob.receive_json_from()
    assert fetched["type"] == "FileContent"
    assert fetched["metadata"]["mime_type"] == "application/octet-stream"
    got = open_file(base64.b64decode(opened["key"]), base64.b64decode(fetched["content"]))
    assert got.startswith(b"%PDF-1.7 the real file") and len(got) == 1000
    await close_all(owner, bob)


async def test_a_standard_room_still_refuses_an_octet_stream_it_does_not_allow(layer):
    """Only a sealed room takes encrypted.bin: a standard room checks types as before."""
    owner = await connect()
    await owner.send_json_to(json.loads(create_frame()))
    assert (await owner.receive_json_from())["type"] == "RoomCreated"
    data = base64.b64encode(bytes(64)).decode()
    frame = {"type": "UploadFile", "name": "encrypted.bin", "mime_type": "application/octet-stream"}
    await owner.send_json_to({**frame, "content": data})
    await expect_error(owner, "mime_not_allowed")
    await close_all(owner)
