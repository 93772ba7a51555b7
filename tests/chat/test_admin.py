"""Moderation through the admin (Django's test client, as staff) while sockets are
connected, over the in-memory and Redis layers."""

import base64
import os

import pytest
from channels.db import database_sync_to_async
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.test import AsyncClient

from chat.models import Ban, Message, Participant, Room
from files.models import SharedFile
from tests.chat.helpers import connect, create_room, encrypt, expect_error, join_room

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]


async def staff_client(superuser: bool = True) -> AsyncClient:
    make = User.objects.create_superuser if superuser else User.objects.create_user
    user = await database_sync_to_async(make)(f"mod{os.urandom(4).hex()}", "m@example.org", "pw")
    client = AsyncClient()
    await client.aforce_login(user)
    return client


async def act(client: AsyncClient, model: str, action: str, *pks) -> None:
    response = await client.post(
        f"/admin/{model}/", {"action": action, "_selected_action": [str(pk) for pk in pks]}
    )
    assert response.status_code == 302, response.content[:500]


async def expect_closed(communicator, code: int) -> None:
    output = await communicator.receive_output(2)
    assert output == {"type": "websocket.close", "code": code}, output


async def room_of_two():
    owner, created = await create_room()
    bob, _ = await join_room(created["room_info"]["join_key"], "Bob", client=("10.0.0.2", 5000))
    assert (await owner.receive_json_from())["type"] == "ParticipantJoined"
    return owner, bob, created


async def test_close_room_disconnects_everyone_and_the_key_stops_working(layer):
    owner, bob, created = await room_of_two()
    await bob.send_json_to({"type": "ChatMessage", "content": encrypt(created["encryption_key"], "hi")})
    for communicator in (owner, bob):
        assert (await communicator.receive_json_from())["type"] == "ChatMessage"
    admin = await staff_client()

    await act(admin, "chat/room", "close_rooms", created["room_info"]["id"])
    for communicator in (owner, bob):
        error = await expect_error(communicator, "room_closed")
        assert "closed" in error["message"]
        await expect_closed(communicator, 4000)

    room = await Room.objects.aget(pk=created["room_info"]["id"])
    assert room.closed_at is not None
    assert await Participant.objects.filter(room=room, left_at__isnull=True).acount() == 0
    assert await Message.objects.filter(room=room).acount() == 1  # history stays
    late = await connect()
    await late.send_json_to({"type": "JoinRoom", "join_key": room.join_key, "name": "Late"})
    await expect_error(late, "room_not_found")
    assert await LogEntry.objects.filter(object_id=str(room.pk)).aexists()
    await late.disconnect()


async def test_remove_participant_kicks_it_tells_the_room_and_bans_the_name(layer, settings):
    owner, bob, created = await room_of_two()
    join_key = created["room_info"]["join_key"]
    admin = await staff_client()
    bob_row = await Participant.objects.aget(name="Bob", left_at__isnull=True)

    await act(admin, "chat/participant", "remove_from_room", bob_row.pk)
    await expect_error(bob, "kicked")
    await expect_closed(bob, 4001)
    assert await owner.receive_json_from() == {"type": "ParticipantLeft", "name": "Bob"}
    assert await owner.receive_nothing(0.2)  # told once, not again when its socket closed

    # Same address, same name: refused; another name, or another address: welcome.
    again = await connect(client=("10.0.0.2", 6000))
    await again.send_json_to({"type": "JoinRoom", "join_key": join_key, "name": "BOB"})
    error = await expect_error(again, "forbidden")
    assert "removed" in error["message"]
    await again.send_json_to({"type": "JoinRoom", "join_key": join_key, "name": "Robert"})
    assert (await again.receive_json_from())["type"] == "RoomJoined"
    elsewhere, _ = await join_room(join_key, "Bob", client=("10.0.0.3", 5000))
    ban = await Ban.objects.aget()
    assert ban.name_key == "bob" and ban.address == "10.0.0.2"
    for communicator in (owner, again, elsewhere):
        await communicator.disconnect()


async def test_delete_file_tells_the_room_and_the_blob_goes(layer, files_root):
    owner, bob, _ = await room_of_two()
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(100)
    frame = {
        "type": "UploadFile",
        "name": "a.png",
        "mime_type": "image/png",
        "content": base64.b64encode(png).decode(),
    }
    await bob.send_json_to(frame)
    file_id = (await bob.receive_json_from())["metadata"]["id"]
    for communicator in (owner, bob):
        assert (await communicator.receive_json_from())["type"] == "ChatMessage"
    blob = (await SharedFile.objects.aget(pk=file_id)).blob
    admin = await staff_client()

    await act(admin, "files/sharedfile", "delete_files", file_id)
    for communicator in (owner, bob):
        assert await communicator.receive_json_from() == {"type": "FileDeleted", "file_id": file_id}
    assert (await SharedFile.objects.aget(pk=file_id)).deleted_at is not None
    assert not (files_root / blob).exists()
    await owner.disconnect()
    await bob.disconnect()


async def test_delete_messages_tells_the_room(layer):
    owner, bob, created = await room_of_two()
    await owner.send_json_to({"type": "ChatMessage", "content": encrypt(created["encryption_key"], "oops")})
    message_id = (await owner.receive_json_from())["id"]
    await bob.receive_json_from()
    admin = await staff_client()
    page = await admin.get(f"/admin/chat/message/{message_id}/change/")
    content = (await Message.objects.aget(pk=message_id)).content
    assert page.status_code == 200 and content.encode() not in page.content

    await act(admin, "chat/message", "delete_messages", message_id)
    for communicator in (owner, bob):
        assert await communicator.receive_json_from() == {"type": "MessageDeleted", "id": message_id}
    assert not await Message.objects.filter(pk=message_id).aexists()
    await owner.disconnect()
    await bob.disconnect()


async def test_delete_room_removes_messages_files_and_blobs(layer, files_root):
    owner, created = await create_room()
    frame = {
        "type": "UploadFile",
        "name": "n.txt",
        "mime_type": "text/plain",
        "content": base64.b64encode(b"hi").decode(),
    }
    await owner.send_json_to(frame)
    file_id = (await owner.receive_json_from())["metadata"]["id"]
    await owner.receive_json_from()
    blob = (await SharedFile.objects.aget(pk=file_id)).blob
    admin = await staff_client()

    await act(admin, "chat/room", "delete_rooms", created["room_info"]["id"])
    await expect_error(owner, "room_closed")
    await expect_closed(owner, 4000)
    assert not await Room.objects.filter(pk=created["room_info"]["id"]).aexists()
    assert await Message.objects.acount() == 0 and await SharedFile.objects.acount() == 0
    assert not (files_root / blob).exists()


async def test_room_pages_never_show_the_password_hash_or_the_key(layer):
    owner, created = await create_room(password="hunter2")
    room = await Room.objects.aget(pk=created["room_info"]["id"])
    admin = await staff_client()
    for path in (
        f"/admin/chat/room/{room.pk}/change/",
        "/admin/chat/room/",
        f"/admin/chat/room/?q={room.join_key}",
    ):
        page = await admin.get(path)
        assert page.status_code == 200
        assert room.name.encode() in page.content
        for secret in (room.password_hash, room.encryption_key, room.owner_token_hash, "hunter2"):
            assert secret.encode() not in page.content, (path, secret)
    await owner.disconnect()


@pytest.mark.parametrize(
    "path",
    [
        "/admin/",
        "/admin/chat/room/",
        "/admin/chat/participant/",
        "/admin/chat/message/",
        "/admin/files/sharedfile/",
    ],
)
async def test_non_staff_cannot_reach_any_admin_page(path):
    for client in (AsyncClient(), await staff_client(superuser=False)):
        response = await client.get(path)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
        response = await client.post(path, {"action": "close_rooms", "_selected_action": ["x"]})
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


async def test_lists_search_and_filters_render_for_staff(layer):
    owner, bob, created = await room_of_two()
    admin = await staff_client()
    pages = [
        "/admin/chat/room/?state=open&password=no",
        "/admin/chat/room/?state=closed",
        f"/admin/chat/room/?q={created['room_info']['join_key']}",
        "/admin/chat/participant/?present=yes&q=Bob",
        "/admin/chat/message/",
        "/admin/files/sharedfile/?state=expired",
        "/admin/files/sharedfile/?state=deleted",
    ]
    for path in pages:
        response = await admin.get(path)
        assert response.status_code == 200, path
    listing = (await admin.get("/admin/chat/room/?state=open")).content.decode()
    assert "1 room" in listing and 'class="field-present">2<' in listing  # two present
    assert "0 rooms" in (await admin.get("/admin/chat/room/?state=closed")).content.decode()
    bob_row = await Participant.objects.aget(name="Bob", left_at__isnull=True)
    await act(admin, "chat/participant", "remove_from_room", bob_row.pk)
    assert await LogEntry.objects.filter(
        object_id=str(bob_row.pk), change_message__contains="Removed"
    ).aexists()
    await owner.disconnect()
    await bob.disconnect()
