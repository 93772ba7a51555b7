"""Moderation through the admin (Django's test client, as staff) while sockets are
connected, over the in-memory and Redis layers."""

import html
import os
import re

import pytest
from channels.db import database_sync_to_async
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import AsyncClient, Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import admin as admin_module
from chat import services, sql
from chat.models import Ban, Message, Participant, Room
from files.models import SharedFile
from tests.helpers import (
    browser_session,
    close_all,
    connect,
    create_room,
    encrypt,
    expect_closed,
    expect_error,
    join_room,
    join_seat,
    make_room,
    upload_frame,
)

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


async def admin_messages(client: AsyncClient, model: str) -> list[tuple[str, str]]:
    """The (level, text) of each message the admin shows on its next page."""
    page = (await client.get(f"/admin/{model}/")).content.decode()
    listing = re.search(r'<ul class="messagelist">(.*?)</ul>', page, re.S)
    found = re.findall(r'<li class="(\w+)">(.*?)</li>', listing.group(1), re.S) if listing else []
    return [(level, html.unescape(text)) for level, text in found]


def row_order(page: str, *rows: Participant) -> list[int]:
    """Where each participant's row (its checkbox) is on a change list page."""
    return [page.index(f'name="_selected_action" value="{row.pk}"') for row in rows]


@pytest.fixture
async def bob_reconnected(layer):
    """Bob joins "Lobby", drops, joins again: a left row and a present row named Bob.
    Yields (owner, bob, RoomCreated, the left row, the present row); the sockets are
    closed at teardown."""
    owner, created = await create_room(name="Lobby")
    join_key = created["room_info"]["join_key"]
    first, _ = await join_room(join_key, "Bob", client=("10.0.0.2", 5000))
    assert (await owner.receive_json_from())["type"] == "ParticipantJoined"
    await first.disconnect()
    assert await owner.receive_json_from() == {"type": "ParticipantLeft", "name": "Bob"}
    bob, _ = await join_room(join_key, "Bob", client=("10.0.0.2", 5001))
    assert (await owner.receive_json_from())["type"] == "ParticipantJoined"
    stale = await Participant.objects.aget(name="Bob", left_at__isnull=False)
    present = await Participant.objects.aget(name="Bob", left_at__isnull=True)
    assert stale.pk < present.pk
    yield owner, bob, created, stale, present
    await close_all(owner, bob)


async def test_close_room_disconnects_everyone_and_the_key_stops_working(room_of_two):
    owner, bob, created = room_of_two.owner, room_of_two.member, room_of_two.created
    await bob.send_json_to({"type": "ChatMessage", "content": encrypt(room_of_two.key, "hi")})
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


async def test_remove_participant_kicks_it_tells_the_room_and_bans_the_name(room_of_two, settings):
    owner, bob, join_key = room_of_two.owner, room_of_two.member, room_of_two.join_key
    admin = await staff_client()
    bob_row = await Participant.objects.aget(name="Bob", left_at__isnull=True)

    await act(admin, "chat/participant", "remove_from_room", bob_row.pk)
    await expect_error(bob, "kicked")
    await expect_closed(bob, 4001)
    assert await owner.receive_json_from() == {"type": "ParticipantLeft", "name": "Bob"}
    assert await owner.receive_nothing(0.2)  # told once, not again when its socket closed

    # Same address, under any name: refused (issue 14); another address: welcome.
    again = await connect(client=("10.0.0.2", 6000))
    for name in ("BOB", "Robert"):
        await again.send_json_to({"type": "JoinRoom", "join_key": join_key, "name": name})
        error = await expect_error(again, "forbidden")
        assert "removed" in error["message"]
    elsewhere, _ = await join_room(join_key, "Bob", client=("10.0.0.3", 5000))
    ban = await Ban.objects.aget()
    assert ban.name_key == "bob" and ban.address == "10.0.0.2"
    await close_all(again, elsewhere)


async def test_a_removal_keeps_its_session_out_of_other_seats_but_not_its_neighbours(room_of_two):
    """The ban holds for the removed browser session under any seat, one it held before
    included; its address keeps out new seats only. Bob, behind the same address (an
    office, a household) and removed by nobody, resumes his seat after a reconnect."""
    join_key, bob_token = room_of_two.join_key, room_of_two.joined["participant_token"]
    _, session = await browser_session()
    mallory, _ = await join_room(join_key, "Mallory", client=("10.0.0.2", 5001), headers=session)
    alt, joined = await join_room(join_key, "Alt", client=("10.0.0.5", 5000), headers=session)
    alt_token = joined["participant_token"]
    await close_all(alt, room_of_two.member)  # both gone a while, their tokens kept
    admin = await staff_client()
    row = await Participant.objects.aget(name="Mallory", left_at__isnull=True)
    await act(admin, "chat/participant", "remove_from_room", row.pk)
    while (frame := await mallory.receive_json_from())["type"] != "Error":
        assert frame["type"] in ("ParticipantJoined", "ParticipantLeft"), frame  # Alt's, Bob's
    assert frame["code"] == "kicked"
    await expect_closed(mallory, 4001)

    def resume(name: str, token: str) -> dict:
        return {"type": "JoinRoom", "join_key": join_key, "name": name, "participant_token": token}

    alt = await connect(client=("10.0.0.5", 5001), headers=session)
    await alt.send_json_to(resume("Alt", alt_token))
    assert "removed" in (await expect_error(alt, "forbidden"))["message"]
    newcomer = await connect(client=("10.0.0.2", 5002))
    await newcomer.send_json_to({"type": "JoinRoom", "join_key": join_key, "name": "Newcomer"})
    await expect_error(newcomer, "forbidden")
    bob = await connect(client=("10.0.0.2", 5003))
    await bob.send_json_to(resume("Bob", bob_token))
    assert (await bob.receive_json_from())["type"] == "RoomJoined"
    present = Participant.objects.filter(left_at__isnull=True).values_list("name", flat=True)
    assert sorted([name async for name in present]) == ["Bob", "Owner"]
    await close_all(alt, newcomer, bob)


async def test_delete_file_tells_the_room_and_the_blob_goes(room_of_two, files_root):
    owner, bob = room_of_two.owner, room_of_two.member
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(100)
    await bob.send_json_to(upload_frame(png, name="a.png", mime_type="image/png"))
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


async def test_delete_messages_tells_the_room(room_of_two):
    owner, bob = room_of_two.owner, room_of_two.member
    await owner.send_json_to({"type": "ChatMessage", "content": encrypt(room_of_two.key, "oops")})
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


async def test_an_admins_delete_of_a_file_message_takes_the_file_with_it(room_of_two, files_root):
    """As a member's delete does (PROTOCOL.md, Conversations): the room is told
    MessageDeleted then FileDeleted, the file can no longer be fetched, its blob goes."""
    owner, bob = room_of_two.owner, room_of_two.member
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(100)
    await bob.send_json_to(upload_frame(png, name="a.png", mime_type="image/png"))
    file_id = (await bob.receive_json_from())["metadata"]["id"]
    message_id = [(await communicator.receive_json_from())["id"] for communicator in (owner, bob)][0]
    blob = (await SharedFile.objects.aget(pk=file_id)).blob
    admin = await staff_client()

    await act(admin, "chat/message", "delete_messages", message_id)
    for communicator in (owner, bob):
        assert await communicator.receive_json_from() == {"type": "MessageDeleted", "id": message_id}
        assert await communicator.receive_json_from() == {"type": "FileDeleted", "file_id": file_id}
    assert (await SharedFile.objects.aget(pk=file_id)).deleted_at is not None
    assert not (files_root / blob).exists()
    await owner.send_json_to({"type": "GetFile", "file_id": file_id})
    await expect_error(owner, "file_not_found")


async def test_delete_room_removes_messages_files_and_blobs(room, files_root):
    owner = room.owner
    await owner.send_json_to(upload_frame(b"hi", name="n.txt", mime_type="text/plain"))
    file_id = (await owner.receive_json_from())["metadata"]["id"]
    await owner.receive_json_from()
    blob = (await SharedFile.objects.aget(pk=file_id)).blob
    admin = await staff_client()

    await act(admin, "chat/room", "delete_rooms", room.id)
    await expect_error(owner, "room_closed")
    await expect_closed(owner, 4000)
    assert not await Room.objects.filter(pk=room.id).aexists()
    assert await Message.objects.acount() == 0 and await SharedFile.objects.acount() == 0
    assert not (files_root / blob).exists()


async def test_room_pages_never_show_the_password_hash_or_the_key(layer):
    owner, created = await create_room(password="hunter2")
    room = await Room.objects.aget(pk=created["room_info"]["id"])
    admin = await staff_client()
    for path in (
        f"/admin/chat/room/{room.pk}/change/",
        "/admin/chat/room/",
        f"/admin/chat/room/?q={created['room_info']['join_key']}",
    ):
        page = await admin.get(path)
        assert page.status_code == 200
        assert room.name.encode() in page.content
        for secret in (
            room.password_hash,
            room.wrapped_key,
            created["encryption_key"],
            room.owner_token_hash,
            "hunter2",
        ):
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


async def test_a_room_is_found_by_its_join_key_or_share_link_though_only_its_hash_is_kept(room_of_two):
    admin = await staff_client()
    key = room_of_two.join_key
    link = f"https://chat.example.org/rooms/{key}/"
    for term in (key, link, f" {link}#k=x "):
        assert "1 room" in (await admin.get("/admin/chat/room/", {"q": term})).content.decode(), term
        assert "2 participants" in (await admin.get("/admin/chat/participant/", {"q": term})).content.decode()
    for term in (key[:-1], key.swapcase(), f"{key} {key}"):
        assert "0 rooms" in (await admin.get("/admin/chat/room/", {"q": term})).content.decode(), term


def test_a_rooms_pages_read_as_much_however_big_the_room():
    """A room's page shows its first rows of each kind, read once (not once a row), and
    its delete page counts what goes with it instead of listing every row: a room of a
    million messages must open as fast as one of three."""
    client = Client()
    client.force_login(User.objects.create_superuser("big", "m@example.org", "pw"))
    room, seat, _ = make_room()

    def read(path: str) -> tuple[int, bytes]:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path)
        assert response.status_code == 200, path
        return len(captured), response.content

    pages = [
        f"/admin/chat/room/{room.pk}/change/",
        f"/admin/chat/room/{room.pk}/delete/",
        "/admin/chat/room/",
    ]

    def grow(count: int) -> None:
        now = timezone.now()
        joined = [join_seat(room, f"P{count}-{n}").seat for n in range(count)]
        services.messages_post(
            [sql.NewMessage(room.pk, s.name, "ciphertext", now, s.participant_id) for s in [seat, *joined]]
        )

    grow(2)
    small = [read(path)[0] for path in pages]
    grow(60)
    big = [read(path)[0] for path in pages]
    assert all(after <= before for before, after in zip(small, big, strict=True)), (small, big)
    _, change = read(pages[0])
    assert change.count(b'class="field-length"') == admin_module.ROOM_PAGE_ROWS  # the newest messages
    _, delete = read(pages[1])
    assert b"<li>Messages: 64</li>" in delete and b"<li>Participants: 63</li>" in delete
    assert b" by P" not in delete  # no message listed one by one


async def test_lists_search_and_filters_render_for_staff(room_of_two):
    admin = await staff_client()
    pages = [
        "/admin/chat/room/?state=open&password=no",
        "/admin/chat/room/?state=closed",
        f"/admin/chat/room/?q={room_of_two.join_key}",
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
    # Whether a room is sealed is shown and filtered on; this one is not.
    assert 'class="field-sealed"><img' in listing and 'alt="False"' in listing
    assert "0 rooms" in (await admin.get("/admin/chat/room/?sealed__exact=1")).content.decode()
    assert "1 room" in (await admin.get("/admin/chat/room/?sealed__exact=0")).content.decode()
    bob_row = await Participant.objects.aget(name="Bob", left_at__isnull=True)
    await act(admin, "chat/participant", "remove_from_room", bob_row.pk)
    assert await LogEntry.objects.filter(
        object_id=str(bob_row.pk), change_message__contains="Removed"
    ).aexists()


async def test_participant_list_shows_the_present_before_those_who_left(bob_reconnected):
    owner, bob, created, stale, present = bob_reconnected
    owner_row = await Participant.objects.aget(role=Participant.Role.OWNER)
    admin = await staff_client()

    page = (await admin.get("/admin/chat/participant/")).content.decode()
    at_owner, at_present, at_stale = row_order(page, owner_row, present, stale)
    assert max(at_owner, at_present) < at_stale  # both present rows before the row that left
    assert at_present < at_owner  # among the present, the newest join first
    assert "field-is_present" in page and "presence" in page  # the column and the filter
    # The room page's participant list too.
    page = (await admin.get(f"/admin/chat/room/{created['room_info']['id']}/change/")).content.decode()
    assert page.index(f'value="{present.pk}"') < page.index(f'value="{stale.pk}"')
    # Sorting by the "present" column, either way, and the filter still answer.
    for query in ("?o=4", "?o=-4", "?present=no", "?present=yes"):
        assert (await admin.get(f"/admin/chat/participant/{query}")).status_code == 200, query
    listing = (await admin.get("/admin/chat/participant/?present=no")).content.decode()
    assert f'value="{stale.pk}"' in listing and f'value="{present.pk}"' not in listing


async def test_removing_someone_who_already_left_says_so_and_touches_nobody(bob_reconnected):
    owner, bob, _, stale, present = bob_reconnected
    admin = await staff_client()

    await act(admin, "chat/participant", "remove_from_room", stale.pk)
    shown = await admin_messages(admin, "chat/participant")
    assert [level for level, _ in shown] == ["warning"], shown
    text = shown[0][1]
    assert text.startswith("Bob had already left Lobby; nothing to remove."), text
    assert "Bob is in Lobby again" in text, text  # points at the present row
    assert "Removed" not in text
    # Nobody was kicked, banned or logged; the present Bob is still there.
    assert await bob.receive_nothing(0.2) and await owner.receive_nothing(0.1)
    assert (await Participant.objects.aget(pk=present.pk)).left_at is None
    assert not await Ban.objects.aexists()
    assert not await LogEntry.objects.filter(object_id=str(stale.pk)).aexists()


async def test_removing_a_mix_counts_the_removed_and_names_those_already_gone(bob_reconnected):
    owner, bob, created, stale, present = bob_reconnected
    join_key = created["room_info"]["join_key"]
    dave, _ = await join_room(join_key, "Dave", client=("10.0.0.4", 5000))
    await dave.disconnect()
    carol, _ = await join_room(join_key, "Carol", client=("10.0.0.3", 5000))
    for communicator in (owner, bob):
        for _ in range(3):  # Dave joined, Dave left, Carol joined
            await communicator.receive_json_from()
    dave_row = await Participant.objects.aget(name="Dave")
    carol_row = await Participant.objects.aget(name="Carol")
    assert dave_row.left_at is not None
    admin = await staff_client()

    await act(admin, "chat/participant", "remove_from_room", stale.pk, dave_row.pk, carol_row.pk)
    await expect_error(carol, "kicked")
    await expect_closed(carol, 4001)
    assert await owner.receive_json_from() == {"type": "ParticipantLeft", "name": "Carol"}
    shown = await admin_messages(admin, "chat/participant")
    assert [level for level, _ in shown] == ["success", "warning"], shown
    assert shown[0][1] == "Removed 1 participant(s)."
    warning = shown[1][1]
    named = warning.removeprefix("2 had already left; nothing to remove: ").partition(".")[0]
    assert sorted(named.split(", ")) == ["Bob (Lobby)", "Dave (Lobby)"], warning
    assert "Bob is in Lobby again" in warning and "Dave is in" not in warning
    assert (await Participant.objects.aget(pk=present.pk)).left_at is None
    # The present Bob hears that Carol left, and nothing else: he was not kicked.
    assert await bob.receive_json_from() == {"type": "ParticipantLeft", "name": "Carol"}
    assert await bob.receive_nothing(0.2)


# --- The room's own page (issue 18) ---------------------------------------------------


async def room_page(client: AsyncClient, room_id: str) -> str:
    response = await client.get(f"/admin/chat/room/{room_id}/change/")
    assert response.status_code == 200
    return response.content.decode()


async def press(client: AsyncClient, url: str) -> None:
    """A moderation button: its form posted to its formaction (with the page's CSRF token)."""
    response = await client.post(url, {})
    assert response.status_code == 302, response.content[:300]


async def test_the_room_page_carries_the_moderation(room_of_two):
    owner, bob, key = room_of_two.owner, room_of_two.member, room_of_two.key
    await bob.send_json_to({"type": "ChatMessage", "content": encrypt(key, "spam")})
    spam = (await owner.receive_json_from())["id"]
    await bob.receive_json_from()
    client = await staff_client()
    room_id = room_of_two.id
    bob_row = await Participant.objects.aget(name="Bob")
    page = await room_page(client, room_id)
    assert "Back to the list of rooms" in page and ">Close</a>" not in page
    close_url, remove_url, delete_url = (
        f"/admin/chat/room/{room_id}/close/",
        f"/admin/chat/room/{room_id}/remove/{bob_row.pk}/",
        f"/admin/chat/room/{room_id}/delete-message/{spam}/",
    )
    for url in (close_url, remove_url, delete_url):
        assert f'formaction="{url}"' in page
    assert (await client.get(delete_url)).status_code == 405  # only a POST moderates

    await press(client, delete_url)
    for communicator in (owner, bob):
        assert await communicator.receive_json_from() == {"type": "MessageDeleted", "id": spam}
    assert not await Message.objects.filter(pk=spam).aexists()

    await press(client, remove_url)
    await expect_error(bob, "kicked")
    await expect_closed(bob, 4001)
    assert await owner.receive_json_from() == {"type": "ParticipantLeft", "name": "Bob"}
    assert f"/remove/{bob_row.pk}/" not in await room_page(client, room_id)  # gone: no button

    await press(client, close_url)
    await expect_error(owner, "room_closed")
    await expect_closed(owner, 4000)
    assert (await Room.objects.aget(pk=room_id)).closed_at is not None
    assert "Close room" not in await room_page(client, room_id)
    assert (
        await LogEntry.objects.filter(
            change_message__in=["Removed from the room.", "Closed the room."]
        ).acount()
        == 2
    )


async def test_the_room_pages_delete_deletes_the_room_with_everything_in_it(room_of_two):
    """Django's Delete on the room's page: participants and messages cannot be deleted
    on their own here, which must not refuse the room's delete that takes them along."""
    admin = await staff_client()
    confirm = await admin.get(f"/admin/chat/room/{room_of_two.id}/delete/")
    assert confirm.status_code == 200 and b"Cannot delete" not in confirm.content
    response = await admin.post(f"/admin/chat/room/{room_of_two.id}/delete/", {"post": "yes"})
    assert response.status_code == 302
    for communicator in (room_of_two.owner, room_of_two.member):
        await expect_error(communicator, "room_closed")
        await expect_closed(communicator, 4000)
    assert not await Room.objects.filter(pk=room_of_two.id).aexists()
    assert not await Participant.objects.filter(room_id=room_of_two.id).aexists()


async def test_the_room_pages_buttons_take_the_permission_of_what_they_act_on(room_of_two):
    """Staff who may close rooms (delete_room) but not remove participants or delete
    messages see neither button, and a post to either is refused."""

    def closer() -> User:
        user = User.objects.create_user(f"closer{os.urandom(4).hex()}", "c@example.org", "pw", is_staff=True)
        for codename in ("view_room", "delete_room"):
            user.user_permissions.add(Permission.objects.get(codename=codename))
        return user

    await room_of_two.owner.send_json_to({"type": "ChatMessage", "content": encrypt(room_of_two.key, "x")})
    message_id = (await room_of_two.owner.receive_json_from())["id"]
    client = AsyncClient()
    await client.aforce_login(await database_sync_to_async(closer)())
    page = await room_page(client, room_of_two.id)
    assert "Close room" in page and ">Remove<" not in page and ">Delete</button>" not in page
    bob = await Participant.objects.aget(name="Bob", left_at__isnull=True)
    for url in (f"remove/{bob.pk}/", f"delete-message/{message_id}/"):
        response = await client.post(f"/admin/chat/room/{room_of_two.id}/{url}", {})
        assert response.status_code == 403, url
    assert await Participant.objects.filter(pk=bob.pk, left_at__isnull=True).aexists()
    assert await Message.objects.filter(pk=message_id).aexists()


async def test_the_room_page_moderates_only_for_moderators(room_of_two):
    """Staff who may only view rooms see no buttons, and a post is refused."""

    def viewer() -> User:
        user = User.objects.create_user(f"viewer{os.urandom(4).hex()}", "v@example.org", "pw", is_staff=True)
        user.user_permissions.add(Permission.objects.get(codename="view_room"))
        return user

    client = AsyncClient()
    await client.aforce_login(await database_sync_to_async(viewer)())
    page = await room_page(client, room_of_two.id)
    assert "Close room" not in page and "formaction" not in page
    response = await client.post(f"/admin/chat/room/{room_of_two.id}/close/", {})
    assert response.status_code == 403
    assert (await Room.objects.aget(pk=room_of_two.id)).closed_at is None


async def test_a_moderator_with_the_delete_permissions_alone_finds_and_moderates(room_of_two, files_root):
    """production.md, Moderation: "Moderators are staff users with Django's delete
    permission on the model they moderate". With those four alone every list and the
    room's page were 403, and the admin's index listed the models without a link."""

    def moderator() -> User:
        user = User.objects.create_user(f"mod{os.urandom(4).hex()}", "m@example.org", "pw", is_staff=True)
        for codename in ("delete_room", "delete_participant", "delete_message", "delete_sharedfile"):
            user.user_permissions.add(Permission.objects.get(codename=codename))
        return user

    owner, bob, created = room_of_two.owner, room_of_two.member, room_of_two.created
    client = AsyncClient()
    await client.aforce_login(await database_sync_to_async(moderator)())
    index = (await client.get("/admin/")).content.decode()
    for path in ("chat/room", "chat/participant", "chat/message", "files/sharedfile"):
        assert f'href="/admin/{path}/"' in index, path
        response = await client.get(f"/admin/{path}/", {"q": room_of_two.join_key})
        assert response.status_code == 200, path
    page = await room_page(client, created["room_info"]["id"])
    assert ">Remove<" in page and "Close room" in page
    bob_row = await Participant.objects.aget(name="Bob", left_at__isnull=True)
    await press(client, f"/admin/chat/room/{created['room_info']['id']}/remove/{bob_row.pk}/")
    await expect_error(bob, "kicked")
    await expect_closed(bob, 4001)
    assert await owner.receive_json_from() == {"type": "ParticipantLeft", "name": "Bob"}
