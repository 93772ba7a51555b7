"""Files through the client library: upload, the shared link, download, delete, owner rights."""

import asyncio
import json
import os

import pytest

from chatclient import (
    ChatClient,
    ChatError,
    ConnectionLost,
    FileDeleted,
    FileShared,
    Message,
    MessageDeleted,
    Reconnected,
    Typing,
    safe_name,
)
from chatclient import client as client_module
from chatclient.events import EXTENSIONS
from files.validation import EXTENSIONS as SERVER_EXTENSIONS
from files.validation import shown_name
from tests.chatclient.conftest import CuttableProxy, FakeRoom, fake_server, next_of

pytestmark = pytest.mark.e2e


async def test_a_file_round_trips_and_is_deleted(clients, tmp_path):
    alice = await clients()
    room = await alice.create_room("Room", owner_name="Alice")
    bob = await clients()
    await bob.join_room(room.join_key, "Bob")

    data = "Grüße [v1]\n".encode()
    uploaded = await bob.upload_file(data, name="notes [v1].txt")
    assert (uploaded.name, uploaded.mime_type, uploaded.size) == ("notes [v1].txt", "text/plain", len(data))
    shared = await next_of(alice, FileShared)
    assert (shared.sender, shared.name, shared.file_id) == ("Bob", "notes v1.txt", uploaded.id)
    assert await alice.download_file(uploaded.id) == (uploaded, data)

    path = tmp_path / "report.txt"
    path.write_bytes(b"from a path")
    from_path = await alice.upload_file(path)
    assert (from_path.name, from_path.size) == ("report.txt", 11)
    assert (await bob.download_file(from_path.id))[1] == b"from a path"

    with pytest.raises(ChatError) as refused:
        await bob.delete_file(from_path.id)
    assert refused.value.code == "forbidden"
    await bob.delete_file(uploaded.id)
    assert await next_of(alice, FileDeleted) == FileDeleted(uploaded.id)
    with pytest.raises(ChatError) as refused:
        await alice.download_file(uploaded.id)
    assert refused.value.code == "file_not_found"
    with pytest.raises(ChatError) as refused:
        await bob.upload_file(b"<html></html>", name="page.html")
    assert refused.value.code == "mime_not_allowed"


async def test_an_upload_returns_the_id_of_the_message_that_shares_it(clients):
    """`upload_file` returns the id of the room's "[File: ...]" message (`message_id`):
    the uploader replies to it, reacts to it and deletes it (and so the file) without
    looking for it among the events."""
    alice = await clients()
    room = await alice.create_room("Room", owner_name="Alice")
    bot = await clients()
    await bot.join_room(room.join_key, "Bot")

    uploaded = await bot.upload_file(b"the report\n", name="report.txt")
    shared = await next_of(alice, FileShared)
    assert (shared.id, shared.file_id, shared.sender) == (uploaded.message_id, uploaded.id, "Bot")
    assert await next_of(bot, FileShared) == shared
    answer = await bot.send("here it is", reply_to=uploaded.message_id)
    assert await next_of(alice, Message) == answer and answer.reply_to == shared.id
    assert (await bot.react(uploaded.message_id, "📎")).id == shared.id
    await bot.delete_message(uploaded.message_id)
    assert await next_of(alice, MessageDeleted) == MessageDeleted(shared.id)
    assert await next_of(alice, FileDeleted) == FileDeleted(uploaded.id)


async def test_an_uploads_file_message_that_comes_before_its_file_uploaded_is_its_message_id():
    """The server stores the file message before it answers FileUploaded, and a room's
    message may reach a socket ahead of its broadcast (the hub fills a gap from the
    database): the upload's message id is the file message's whichever comes first,
    not another file message of the room's."""

    class MessageFirst(FakeRoom):
        async def reply(self, websocket, frame):
            if frame["type"] != "UploadFile":
                return await super().reply(websocket, frame)
            other = {"type": "ChatMessage", "id": 40, "sender": "Ann", "sent_at": "2026-01-01T00:00:01Z"}
            await websocket.send(json.dumps({**other, "content": "[File: a.txt](/files/ann-file)"}))
            link = {**other, "id": 41, "sender": "Bob", "content": "[File: b.txt](/files/F)"}
            await websocket.send(json.dumps(link))  # the id compared in any case
            metadata = {"id": "f", "name": "b.txt", "mime_type": "text/plain", "size": 2, "expires_at": "x"}
            return {"type": "FileUploaded", "metadata": metadata}

    async with fake_server(MessageFirst()) as url:
        client = await ChatClient.connect(url)
        await client.join_room("k", "Bob")
        uploaded = await asyncio.wait_for(client.upload_file(b"hi", name="b.txt"), 5)
        assert (uploaded.id, uploaded.message_id) == ("f", 41)
        assert [await client.next_event() for _ in range(2)] == [
            FileShared(40, "Ann", "a.txt", "ann-file", "2026-01-01T00:00:01Z"),
            FileShared(41, "Bob", "b.txt", "F", "2026-01-01T00:00:01Z"),
        ]
        await client.close()


async def test_an_upload_given_up_on_after_its_file_uploaded_takes_no_error_of_the_next_request(monkeypatch):
    """An upload cancelled between its FileUploaded and the room's file message (a
    broadcast, which may come after the answer to the next frame): what is left of its
    answer is that message, never an `Error`. Its orphan took the next request's
    `rate_limited` (an error an upload may get, but not once its FileUploaded came), and
    that request waited for ever. (This server holds the file message until the next
    frame, which the client sends once it has waited ORPHAN_WAIT for it.)"""
    monkeypatch.setattr(client_module, "ORPHAN_WAIT", 0.2)

    class LateFileMessage(FakeRoom):
        held: dict | None = None

        async def reply(self, websocket, frame):
            answer = await super().reply(websocket, frame)
            if frame["type"] == "UploadFile":
                self.held = answer  # the file message, after the next frame's answer
                return {"type": "Typing", "name": "Ann"}  # the FileUploaded before it is read
            if self.held is not None:
                busy = {"type": "Error", "code": "rate_limited", "message": "Too many; wait."}
                await websocket.send(json.dumps(busy))
                answer, self.held = self.held, None
            return answer

    async with fake_server(LateFileMessage()) as url:
        client = await ChatClient.connect(url)
        await client.join_room("k", "Bob")
        uploading = asyncio.create_task(client.upload_file(b"hi", name="a.txt"))
        assert await client.wait_for(Typing, timeout=5) == Typing("Ann")
        uploading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await uploading
        with pytest.raises(ChatError) as refused:
            await asyncio.wait_for(client.react(5, "👍"), 5)
        assert refused.value.code == "rate_limited"
        assert (await next_of(client, FileShared, within=5)).file_id == "f"
        assert await asyncio.wait_for(client.members(), 5) == ["Bob"]
        await client.close()


async def test_an_upload_given_up_on_takes_its_file_uploaded_from_the_next_upload(monkeypatch):
    """An upload cancelled before its FileUploaded came, answered only once the next
    upload was sent (past ORPHAN_WAIT): its FileUploaded passed for the next upload's,
    which then waited for ever for that file's message (taken by the one given up on)."""
    monkeypatch.setattr(client_module, "ORPHAN_WAIT", 0.2)

    class HeldUploads(FakeRoom):
        held: list[dict] = []  # the answers to the uploads not answered yet
        got_upload = asyncio.Event()

        async def reply(self, websocket, frame):
            if frame["type"] != "UploadFile":
                return await super().reply(websocket, frame)
            file_id, name = frame["name"].removesuffix(".txt"), frame["name"]
            metadata = {"id": file_id, "name": name, "mime_type": "text/plain", "size": 2, "expires_at": "x"}
            self.next_id += 1
            stored = {"id": self.next_id, "sender": "Bob", "sent_at": "2026-01-01T00:00:01Z"}
            file_message = {"type": "ChatMessage", **stored, "content": f"[File: {name}](/files/{file_id})"}
            self.held += [{"type": "FileUploaded", "metadata": metadata}, file_message]
            self.got_upload.set()
            if len(self.held) > 2:  # the first upload's answer, held until the next upload
                for answer in self.held:
                    await websocket.send(json.dumps(answer))
                self.held.clear()
            return None

    room = HeldUploads()
    async with fake_server(room) as url:
        client = await ChatClient.connect(url)
        await client.join_room("k", "Bob")
        uploading = asyncio.create_task(client.upload_file(b"hi", name="first.txt"))
        await asyncio.wait_for(room.got_upload.wait(), 5)
        uploading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await uploading
        uploaded = await asyncio.wait_for(client.upload_file(b"hi", name="second.txt"), 5)
        assert (uploaded.id, uploaded.message_id) == ("second", 3)
        assert [(await next_of(client, FileShared, within=5)).file_id for _ in range(2)] == [
            "first",
            "second",
        ]
        await client.close()


async def test_the_owner_stays_owner_after_reconnecting(server, clients):
    """The creator rejoins with its owner token, so it may still delete anyone's file."""
    proxy = CuttableProxy(server.port)
    await proxy.start()
    alice = await clients(proxy.url)
    room = await alice.create_room("Room", owner_name="Alice")
    bob = await clients()
    await bob.join_room(room.join_key, "Bob")
    uploaded = await bob.upload_file(b"Bob's", name="bob.txt")

    await proxy.cut()
    await proxy.start()
    assert await next_of(alice, Reconnected) == Reconnected(room)
    await alice.delete_file(uploaded.id)
    assert await next_of(bob, FileDeleted) == FileDeleted(uploaded.id)


async def test_a_file_of_files_max_size_fits_the_clients_frame_limit(clients):
    """FileContent of a 10 MiB file is a ~14 MB frame, far over websockets' default 1 MiB."""
    alice = await clients()
    await alice.create_room("Room")
    data = b"0123456789abcdef\n" * (10 * 1024 * 1024 // 17)
    uploaded = await alice.upload_file(data, name="big.txt")
    assert uploaded.size == len(data)
    assert (await alice.download_file(uploaded.id))[1] == data


async def test_a_file_over_the_servers_limit_is_refused_here_and_the_session_goes_on(clients):
    """A file a little over FILES_MAX_SIZE makes a frame over the transport limit, which
    the server would answer by closing the connection (1009) for good: it is refused
    before it is sent."""
    alice = await clients()
    await alice.create_room("Room", owner_name="Alice")
    with pytest.raises(ChatError) as refused:
        await alice.upload_file(os.urandom(10 * 1024 * 1024 + 200_000), name="x.zip")
    assert refused.value.code == "file_too_large" and not isinstance(refused.value, ConnectionLost)
    assert (await alice.send("still here")).text == "still here"


async def test_a_file_over_max_file_size_is_neither_read_whole_nor_sent(tmp_path):
    """`max_file_size` (the server's FILES_MAX_SIZE, 10 MiB unless told): a file, a device
    that never ends (no size to look at) or bytes over it are refused, nothing sent."""
    room = FakeRoom()
    big, fits = tmp_path / "big.txt", tmp_path / "fits.txt"
    big.write_bytes(b"x" * 1001)
    fits.write_bytes(b"x" * 1000)
    async with fake_server(room) as url:
        client = await ChatClient.connect(url, max_file_size=1000)
        assert ChatClient(url).max_file_size == 10 * 1024 * 1024
        await client.join_room("k", "Bob")
        for too_large in (big, "/dev/zero", b"x" * 1001):
            with pytest.raises(ChatError) as refused:
                await asyncio.wait_for(client.upload_file(too_large, name="x.txt"), 10)
            assert refused.value.code == "file_too_large"
        assert room.sent("UploadFile") == []
        assert (await client.upload_file(fits)).size == 1000
        await client.close()
    assert len(room.sent("UploadFile")) == 1


def test_files_are_saved_under_the_name_the_server_shows():
    """`safe_name` is the server's rule (files/validation.py, shown_name), table and all."""
    assert EXTENSIONS == SERVER_EXTENSIONS
    names = ["notes.html", "notes.txt", "NOTES.TXT  ", "a[1](2).txt", "x\u202egpj.exe", "a\nb", "", " ", "."]
    for mime_type in [*SERVER_EXTENSIONS, "application/x-unknown"]:
        for name in names:
            assert safe_name(name, mime_type) == shown_name(name, mime_type)
    assert safe_name("notes.html", "Text/Plain; charset=utf-8") == "notes.html.txt"


METADATA = {"id": "f", "name": "a.txt", "mime_type": "text/plain", "size": 2, "expires_at": "x"}


async def test_replies_the_client_cannot_read_fail_their_request_and_leave_it_usable():
    """A reply of the right type with missing or mistyped fields is `invalid_frame` for the
    request that waits for it (not a KeyError, not a wait for ever), and the next
    request goes through."""

    class Garbled(FakeRoom):
        garble = None  # the next reply, made from the frame it answers

        async def reply(self, websocket, frame):
            garble, self.garble = self.garble, None
            return garble(frame) if garble else await super().reply(websocket, frame)

    cases = [
        ("members", (), lambda _: {"type": "Members", "participants": 5}),
        ("members", (), lambda _: {"type": "Members", "participants": ["Bob", 7]}),
        ("download_file", ("f",), lambda _: {"type": "FileContent"}),
        ("download_file", ("f",), lambda _: {"type": "FileContent", "metadata": {"id": "f"}, "content": ""}),
        ("download_file", ("f",), lambda _: {"type": "FileContent", "metadata": METADATA, "content": "no!"}),
        ("download_file", ("f",), lambda _: {"type": "FileContent", "metadata": {**METADATA, "size": "2"}}),
        ("upload_file", (b"hi", "a.txt"), lambda _: {"type": "FileUploaded", "metadata": {"id": "f"}}),
        ("send", ("hi",), lambda frame: {"type": "ChatMessage", "content": frame["content"], "sender": "B"}),
        ("react", (1, "+1"), lambda _: {"type": "Reactions", "id": 1, "reactions": "many"}),
    ]
    room = Garbled()
    async with fake_server(room) as url:
        client = await ChatClient.connect(url)
        await client.join_room("k", "Bob")
        for method, args, garble in cases:
            room.garble = garble
            with pytest.raises(ChatError) as refused:
                await asyncio.wait_for(getattr(client, method)(*args), 5)
            assert refused.value.code == "invalid_frame", (method, refused.value)
            assert await asyncio.wait_for(client.members(), 5) == ["Bob"]
        room.garble = lambda _: {"type": "Error", "code": "message_not_found"}  # no message
        with pytest.raises(ChatError) as refused:
            await asyncio.wait_for(client.delete_message(1), 5)
        assert refused.value.code == "message_not_found"
        await client.close()
