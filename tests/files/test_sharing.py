"""UploadFile, GetFile and DeleteFile through the consumer, over the in-memory and Redis layers."""

import asyncio
import base64
import hashlib
import os
import stat
import time
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from chat.models import Message
from files import blobs, services
from files.models import SharedFile
from tests.helpers import (
    assert_open,
    close_all,
    connect,
    create_room,
    encrypt,
    expect_error,
    join_room,
    make_room,
    rejoin_as_owner,
    upload_frame,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]

PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(2000)


async def upload(communicator, data: bytes = PNG, **kw) -> dict:
    """Upload and return FileUploaded's metadata (the uploader's link broadcast follows)."""
    await communicator.send_json_to(upload_frame(data, **kw))
    uploaded = await communicator.receive_json_from()
    assert uploaded["type"] == "FileUploaded", uploaded
    return uploaded["metadata"]


async def test_upload_shares_a_link_and_get_file_gives_the_exact_bytes(room_of_two):
    owner, bob = room_of_two.owner, room_of_two.member
    metadata = await upload(bob, name="holiday (1).png", mime_type="Image/PNG")
    assert metadata["name"] == "holiday (1).png" and metadata["mime_type"] == "image/png"
    assert metadata["size"] == len(PNG) and metadata["expires_at"].endswith("Z")
    link = f"[File: holiday 1.png](/files/{metadata['id']})"
    for communicator in (owner, bob):
        message = await communicator.receive_json_from()
        assert message["type"] == "ChatMessage" and message["sender"] == "Bob", message
        assert message["content"] == link and isinstance(message["id"], int)

    await owner.send_json_to({"type": "GetFile", "file_id": metadata["id"]})
    content = await owner.receive_json_from()
    assert content["type"] == "FileContent" and content["metadata"] == metadata
    assert base64.b64decode(content["content"]) == PNG

    # The link is history like any message; the row records the plaintext's sha256.
    stored = await Message.objects.aget(room_id=room_of_two.id)
    assert stored.content == link
    shared = await SharedFile.objects.aget(pk=metadata["id"])
    assert shared.sha256 == hashlib.sha256(PNG).hexdigest() and shared.uploader_name == "Bob"


async def test_blobs_are_encrypted_private_and_randomly_named(room, files_root):
    secret = b"the launch code is 0000\n" * 40
    metadata = await upload(room.owner, secret, name="launch-codes.txt", mime_type="text/plain")
    shared = await SharedFile.objects.aget(pk=metadata["id"])
    path = files_root / shared.blob
    raw = path.read_bytes()
    assert b"launch code" not in raw and secret[:32] not in raw
    assert "launch" not in shared.blob and len(shared.blob) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert blobs.read(shared.id, shared.blob) == secret
    # Sealed to its own id: another file's id cannot open it.
    with pytest.raises(Exception):  # noqa: B017 (cryptography's InvalidTag)
        blobs.open_sealed(uuid.uuid4(), raw)


async def test_files_of_another_room_unknown_and_malformed_ids_are_not_found(room):
    metadata = await upload(room.owner)
    await room.owner.receive_json_from()  # the link
    other, _ = await create_room(name="Other")
    for file_id in (metadata["id"], "00000000-0000-0000-0000-000000000000", "../../etc/passwd"):
        for kind in ("GetFile", "DeleteFile"):
            await other.send_json_to({"type": kind, "file_id": file_id})
            error = await expect_error(other, "file_not_found")
            assert error["message"] == "File not found or expired"
    await assert_open(other)
    await close_all(other)


async def test_an_expired_file_is_unreachable_before_any_purge(room):
    owner = room.owner
    metadata = await upload(owner)
    await owner.receive_json_from()
    await SharedFile.objects.filter(pk=metadata["id"]).aupdate(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    await owner.send_json_to({"type": "GetFile", "file_id": metadata["id"]})
    await expect_error(owner, "file_not_found")
    await owner.send_json_to({"type": "DeleteFile", "file_id": metadata["id"]})
    await expect_error(owner, "file_not_found")


async def test_delete_by_uploader_tells_the_room_and_removes_the_blob(room_of_two, files_root):
    owner, bob = room_of_two.owner, room_of_two.member
    metadata = await upload(bob)
    for communicator in (owner, bob):
        await communicator.receive_json_from()
    shared = await SharedFile.objects.aget(pk=metadata["id"])
    await bob.send_json_to({"type": "DeleteFile", "file_id": metadata["id"]})
    for communicator in (owner, bob):
        assert await communicator.receive_json_from() == {"type": "FileDeleted", "file_id": metadata["id"]}
    assert not (files_root / shared.blob).exists()
    await owner.send_json_to({"type": "GetFile", "file_id": metadata["id"]})
    await expect_error(owner, "file_not_found")


async def test_only_the_uploader_or_the_owner_may_delete(room_of_two):
    owner, bob = room_of_two.owner, room_of_two.member
    metadata = await upload(owner)
    for communicator in (owner, bob):
        await communicator.receive_json_from()
    await bob.send_json_to({"type": "DeleteFile", "file_id": metadata["id"]})
    await expect_error(bob, "forbidden")
    await assert_open(bob)

    bobs = await upload(bob)
    for communicator in (owner, bob):
        await communicator.receive_json_from()
    await owner.send_json_to({"type": "DeleteFile", "file_id": bobs["id"]})
    for communicator in (owner, bob):
        assert await communicator.receive_json_from() == {"type": "FileDeleted", "file_id": bobs["id"]}


async def test_the_right_to_delete_ends_when_the_uploading_connection_leaves(room_of_two):
    owner, bob = room_of_two.owner, room_of_two.member
    metadata = await upload(bob)
    for communicator in (owner, bob):
        await communicator.receive_json_from()
    await bob.disconnect()
    assert (await owner.receive_json_from())["type"] == "ParticipantLeft"
    again, _ = await join_room(room_of_two.join_key, "Bob")
    assert (await again.receive_json_from())["type"] == "History"
    await again.send_json_to({"type": "DeleteFile", "file_id": metadata["id"]})
    await expect_error(again, "forbidden")
    # The owner, back with the token on a new connection, regains the right.
    await owner.disconnect()
    back, _ = await rejoin_as_owner(room_of_two.created, "Owner")
    assert (await back.receive_json_from())["type"] == "History"
    await back.send_json_to({"type": "DeleteFile", "file_id": metadata["id"]})
    assert await back.receive_json_from() == {"type": "FileDeleted", "file_id": metadata["id"]}
    await close_all(again, back)


async def test_invalid_content_is_a_field_error_even_outside_a_room(layer):
    """Field rules come before the connection's state (PROTOCOL.md, check order)."""
    lonely = await connect()
    for content in ("not base64!", "", "QUJDRB=="):
        await lonely.send_json_to(
            {"type": "UploadFile", "name": "a.txt", "mime_type": "text/plain", "content": content}
        )
        await expect_error(lonely, "invalid_field")
    await lonely.send_json_to(upload_frame(b"hello", mime_type="text/plain"))
    await expect_error(lonely, "not_in_room")
    await close_all(lonely)


@pytest.mark.parametrize(
    ("data", "mime_type", "code"),
    [
        (b"x" * 1025, "text/plain", "file_too_large"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml", "mime_not_allowed"),
        (b"<html><script>alert(1)</script>", "text/html", "mime_not_allowed"),
        (b"MZ\x90\x00 an executable", "application/x-msdownload", "mime_not_allowed"),
        (b"<html>not a png</html>", "image/png", "mime_not_allowed"),
        (b"\x00\x01binary", "text/plain", "mime_not_allowed"),
        (b"%PDF-1.4 but declared zip", "application/zip", "mime_not_allowed"),
    ],
)
async def test_refused_uploads_store_nothing_and_the_socket_stays(
    room, settings, files_root, data, mime_type, code
):
    settings.FILES_MAX_SIZE = 1024  # read for each upload
    owner = room.owner
    await owner.send_json_to(upload_frame(data, name="f", mime_type=mime_type))
    await expect_error(owner, code)
    assert await SharedFile.objects.acount() == 0 and not list(files_root.glob("*/*"))
    await owner.send_json_to(
        {"type": "ChatMessage", "content": encrypt(base64.b64encode(os.urandom(32)).decode(), "hi")}
    )
    assert (await owner.receive_json_from())["type"] == "ChatMessage"


async def test_room_quota_counts_live_files_only(room, settings):
    settings.FILES_ROOM_QUOTA = 5000  # read for each upload
    owner = room.owner
    first = await upload(owner, PNG)  # 2008 bytes
    await owner.receive_json_from()
    await upload(owner, PNG)
    await owner.receive_json_from()
    await owner.send_json_to(upload_frame(PNG))
    await expect_error(owner, "quota_exceeded")
    assert await SharedFile.objects.acount() == 2
    # Deleting one frees its share of the quota.
    await owner.send_json_to({"type": "DeleteFile", "file_id": first["id"]})
    assert (await owner.receive_json_from())["type"] == "FileDeleted"
    await upload(owner, PNG)


async def test_delete_file_counts_toward_the_chat_rate_as_delete_message_does(room, settings):
    """Each DeleteFile costs a database transaction: without a rate, one socket could
    keep the database thread busy for everyone (docs/protocol-notes.md)."""
    settings.CHAT_RATE_BURST = 3
    settings.CHAT_RATE_SUSTAINED = 0.001
    bob, _ = await join_room(room.join_key, "Bob")
    for _ in range(3):
        await bob.send_json_to({"type": "DeleteFile", "file_id": str(uuid.uuid4())})
        await expect_error(bob, "file_not_found")
    await bob.send_json_to({"type": "DeleteFile", "file_id": str(uuid.uuid4())})
    await expect_error(bob, "rate_limited")
    await close_all(bob)


async def test_uploads_per_minute_are_rate_limited_per_connection(room, settings):
    settings.FILES_UPLOADS_PER_MINUTE = 2  # read for each upload
    owner = room.owner
    for _ in range(2):
        await upload(owner, b"hello", name="a.txt", mime_type="text/plain")
        await owner.receive_json_from()
    # Attempts count, refused or not; the next one is rate limited before its type is checked.
    await owner.send_json_to(upload_frame(b"<html>", mime_type="text/html"))
    await expect_error(owner, "rate_limited")
    # Another connection has its own allowance.
    bob, _ = await join_room(room.join_key, "Bob")
    assert (await bob.receive_json_from())["type"] == "History"
    await upload(bob, b"hello", name="b.txt", mime_type="text/plain")
    await close_all(bob)


async def test_get_file_and_delete_file_need_a_room(layer):
    lonely = await connect()
    for kind in ("GetFile", "DeleteFile"):
        await lonely.send_json_to({"type": kind, "file_id": "00000000-0000-0000-0000-000000000000"})
        await expect_error(lonely, "not_in_room")
    await close_all(lonely)


async def test_large_frames_take_the_shortcut_with_the_same_answers(room):
    """Over protocol.LARGE_STRING the content skips the JSON decoder (chat/protocol.py)."""
    owner = room.owner
    big = b"\x89PNG\r\n\x1a\n" + os.urandom(200_000)
    metadata = await upload(owner, big)
    await owner.receive_json_from()
    await owner.send_json_to({"type": "GetFile", "file_id": metadata["id"]})
    assert base64.b64decode((await owner.receive_json_from())["content"]) == big

    content = base64.b64encode(big).decode()
    for broken, code in (
        (content[:-4] + "\x01AAA", "invalid_json"),
        (content[:-4] + "A=AA", "invalid_field"),
    ):
        await owner.send_to(
            text_data='{"type":"UploadFile","name":"a.png","mime_type":"image/png","content":"'
            + broken
            + '"}'
        )
        await expect_error(owner, code)
    await assert_open(owner)


async def test_file_requests_wait_in_the_bounded_database_queue(room, settings):
    """GetFile, DeleteFile and an upload's quota check go through the database queue
    (DATABASE_QUEUE): past it they are `rate_limited` at once, and work again after."""
    owner = room.owner
    metadata = await upload(owner, b"hello", name="a.txt", mime_type="text/plain")
    await owner.receive_json_from()  # the link
    settings.DATABASE_QUEUE = 0  # full
    for frame in (
        {"type": "GetFile", "file_id": metadata["id"]},
        {"type": "DeleteFile", "file_id": metadata["id"]},
        upload_frame(b"again", name="b.txt", mime_type="text/plain"),
    ):
        await owner.send_json_to(frame)
        await expect_error(owner, "rate_limited")
    settings.DATABASE_QUEUE = 200
    await owner.send_json_to({"type": "GetFile", "file_id": metadata["id"]})
    assert (await owner.receive_json_from())["type"] == "FileContent"


async def test_an_upload_cancelled_while_its_row_is_written_keeps_that_rows_blob(monkeypatch, files_root):
    """The database thread goes on writing the row (and the file's message) after the
    socket's task is cancelled (its connection went away): the blob stays with the row,
    or, when the row is not written, is an orphan for `purge_files`, never a dead link."""
    room, seat, _ = await sync_to_async(make_room)()
    written = services.file_record

    def slow_record(**fields):
        time.sleep(0.5)
        return written(**fields)

    monkeypatch.setattr(services, "file_record", slow_record)
    upload = asyncio.create_task(
        services.share(seat=seat, name="a.txt", mime_type="text/plain", data=b"hello", now=timezone.now())
    )
    await asyncio.sleep(0.2)
    upload.cancel()
    for _ in range(50):
        shared = await SharedFile.objects.filter(room_id=room.pk).afirst()
        if shared is not None:
            break
        await asyncio.sleep(0.05)
    assert shared is not None
    await asyncio.sleep(0.1)
    assert (files_root / shared.blob).exists()
    assert blobs.read(shared.id, shared.blob) == b"hello"


async def test_one_address_cannot_fill_room_after_room_past_its_own_quota(layer, settings):
    """Each room has FILES_ROOM_QUOTA, and an address can make rooms and join others':
    its live files in all of them are held to FILES_ADDRESS_QUOTA; another address still
    uploads, and a deleted file gives its bytes back."""
    settings.FILES_ROOM_QUOTA = 4000
    settings.FILES_ADDRESS_QUOTA = 10000
    rooms = [await create_room(name=f"R{n}", client=("10.9.9.9", 5000 + n)) for n in range(3)]
    uploaded = []
    for owner, _ in rooms[:2]:
        for _ in range(2):
            uploaded.append(await upload(owner, b"a" * 2000, name="a.txt", mime_type="text/plain"))
            await owner.receive_json_from()
    third = rooms[2][0]
    uploaded.append(await upload(third, b"a" * 2000, name="a.txt", mime_type="text/plain"))
    await third.receive_json_from()
    await third.send_json_to(upload_frame(b"a" * 2000, name="a.txt", mime_type="text/plain"))
    assert "all rooms" in (await expect_error(third, "quota_exceeded"))["message"]
    other, _ = await join_room(rooms[2][1]["room_info"]["join_key"], "Bob", client=("10.8.8.8", 5000))
    assert (await other.receive_json_from())["type"] == "History"
    assert (await third.receive_json_from())["type"] == "ParticipantJoined"
    await upload(other, b"b" * 1000, name="b.txt", mime_type="text/plain")
    for communicator in (other, third):
        assert (await communicator.receive_json_from())["type"] == "ChatMessage"
    owner = rooms[0][0]
    await owner.send_json_to({"type": "DeleteFile", "file_id": uploaded[0]["id"]})
    assert (await owner.receive_json_from())["type"] == "FileDeleted"
    assert (await upload(third, b"a" * 1000, name="a.txt", mime_type="text/plain"))["size"] == 1000
    await close_all(other, *(owner for owner, _ in rooms))


async def test_all_rooms_files_are_held_to_the_servers_total(layer, settings):
    settings.FILES_TOTAL_QUOTA = 3000
    first, _ = await create_room(name="A", client=("10.7.7.1", 5000))
    second, _ = await create_room(name="B", client=("10.7.7.2", 5000))
    await upload(first, b"a" * 2000, name="a.txt", mime_type="text/plain")
    await second.send_json_to(upload_frame(b"b" * 2000, name="b.txt", mime_type="text/plain"))
    assert "storage is full" in (await expect_error(second, "quota_exceeded"))["message"]
    await upload(second, b"b" * 1000, name="b.txt", mime_type="text/plain")
    await close_all(first, second)
