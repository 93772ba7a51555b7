"""Sealed rooms through the client library against a real server: the share link carries
the secret, chat and files are encrypted transparently with the same events as a
standard room, and a wrong, truncated or missing fragment, a re-attributed message and a
tampered file are each refused in plain words (PROTOCOL.md, "Sealed rooms")."""

import asyncio
import base64
import dataclasses
import json
import os
import sqlite3

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chatclient import (
    ChatClient,
    ChatError,
    FileDeleted,
    FileShared,
    History,
    Joined,
    Left,
    Message,
    MessageEdited,
    Reconnected,
    Reconnecting,
    RoomInfo,
)
from chatclient import client as client_module
from chatclient.client import _is_card, _Seat, affinity_hint
from chatclient.crypto import (
    LinkError,
    SealedKeys,
    link_fragment,
    message_associated_data,
    new_room_secret,
    secret_from_link,
)
from files import validation
from tests.chatclient.conftest import (
    CuttableProxy,
    FakeRoom,
    fake_server,
    next_of,
    stream_end,
    tampering_proxy,
)
from tests.e2e.servers import manage

pytestmark = pytest.mark.e2e


def test_share_links_carry_exactly_a_32_byte_secret():
    secret = new_room_secret()
    link = "https://chat.example/rooms/AbC/#" + link_fragment(secret)
    assert len(link_fragment(secret)) == 45 and secret_from_link(link) == secret
    for broken in (
        "https://chat.example/rooms/AbC/",  # no fragment
        link[:-1],  # truncated
        link + "A",  # too long
        link.replace("#k=", "#key="),
        link[:-1] + ("B" if link[-1] != "B" else "C"),  # stray bits in the last character
        link[:-3] + "é" + link[-2:],
    ):
        with pytest.raises(LinkError, match="incomplete"):
            secret_from_link(broken)
    # The browser derives the same key check from the same secret (tests/browser).
    assert len(base64.b64decode(SealedKeys.from_secret(secret).key_check)) == 16


def test_a_room_info_never_prints_its_share_link_or_join_key():
    """The share link holds a sealed room's secret, the join key lets anyone in (and a
    standard room's reader read): a repr (a log line, a traceback, a debugger, a bot
    that logs its `Reconnected(room)`) leaves them out; the fields themselves and
    asdict() still have them. Before, the join key was in the repr."""
    fragment = link_fragment(new_room_secret())
    link = "https://chat.example/rooms/AbC/#" + fragment
    room = RoomInfo(
        "r", "Sealed", "", "AbC", False, "Ann", "2026-01-01T00:00:00Z", True, "c" * 22 + "==", link
    )
    assert room.share_link == link and dataclasses.asdict(room)["share_link"] == link
    assert room.join_key == "AbC" and dataclasses.asdict(room)["join_key"] == "AbC"
    assert not [part for part in (fragment[2:], "AbC") if part in repr(room) or part in str(room)]
    assert "Sealed" in repr(room)


def test_the_secret_and_its_keys_never_print():
    """The seat a client rejoins with holds a sealed room's secret (and the password and
    owner token), the keys it derives hold the message key: their reprs (a log line, a
    traceback's locals, an error report) leave them out, as a room info's leaves out its
    share link."""
    secret = new_room_secret()
    keys = SealedKeys.from_secret(secret)
    seat = _Seat("AbC", "Ann", "pass word", secret, "owner-token-xyz")
    hidden = [repr(secret)[2:-1], repr(keys.message_key)[2:-1], "pass word", "owner-token-xyz"]
    for text in (repr(keys), str(keys), repr(seat), str(seat)):
        assert not [part for part in hidden if part in text], text
    assert keys.key_check in repr(keys) and "AbC" not in repr(seat) and "Ann" in repr(seat)
    assert seat.secret == secret and dataclasses.asdict(keys)["message_key"] == keys.message_key


async def test_a_sealed_room_reads_and_shares_files_with_its_whole_link(clients, server):
    alice = await clients()
    room = await alice.create_room("Sealed", owner_name="Alice", sealed=True)
    assert room.sealed and room.key_check and "#k=" in room.share_link
    assert room.share_link.startswith(server.http) and f"/rooms/{room.join_key}/#k=" in room.share_link
    bob = await clients()
    joined = await bob.join_room(room.share_link, "Bob")
    assert joined.id == room.id and bob.can_read

    sent = await alice.send("only for Bob 🔒")
    got = await next_of(bob, Message)
    assert (got.id, got.sender, got.text) == (sent.id, "Alice", "only for Bob 🔒")

    data = b"%PDF-1.7 " + bytes(range(256)) * 40
    uploaded = await bob.upload_file(data, name="report.pdf")
    assert (uploaded.name, uploaded.mime_type, uploaded.size) == ("report.pdf", "application/pdf", len(data))
    shared = await next_of(alice, FileShared)
    assert (shared.sender, shared.name, shared.file_id, shared.size) == (
        "Bob",
        "report.pdf",
        uploaded.id,
        len(data),
    )
    metadata, content = await alice.download_file(uploaded.id)
    assert content == data and (metadata.name, metadata.mime_type) == ("report.pdf", "application/pdf")
    with pytest.raises(ChatError) as refused:
        await bob.upload_file(b"<svg/>", name="x.svg")
    assert refused.value.code == "mime_not_allowed"

    # What the server holds of it: ciphertext named encrypted.bin, and no key.
    database = sqlite3.connect(server.env["CHAT_VAR_DIR"] + "/db.sqlite3")
    row = database.execute(
        "SELECT sealed, wrapped_key FROM chat_room WHERE id = ?", [room.id.replace("-", "")]
    )
    assert row.fetchone() == (1, "")
    names = database.execute("SELECT name, mime_type FROM files_sharedfile").fetchall()
    assert names == [("encrypted.bin", "application/octet-stream")]
    contents = [content for (content,) in database.execute("SELECT content FROM chat_message")]
    assert len(contents) == 2 and not any("report" in c or "only for Bob" in c for c in contents)
    database.close()


async def test_a_sealed_rooms_files_keep_to_the_type_allow_list_on_both_ends(clients, server):
    """PROTOCOL.md: in a sealed room the clients apply the allow-list (the server sees only
    application/octet-stream). A type off the list is never uploaded, and a card of one
    (from a client told to allow more) is never offered, nor its key kept."""
    alice = await clients()
    room = await alice.create_room("Sealed", owner_name="Alice", sealed=True)
    for name, mime_type in (
        ("setup.exe", None),
        ("data.bin", None),
        ("page.txt", "text/html; charset=utf-8"),
    ):
        with pytest.raises(ChatError) as refused:
            await alice.upload_file(b"MZ\x90\x00 not for sharing", name=name, mime_type=mime_type)
        assert (
            refused.value.code == "mime_not_allowed" and "Allowed: application/pdf" in refused.value.message
        )
    database = sqlite3.connect(server.env["CHAT_VAR_DIR"] + "/db.sqlite3")
    assert database.execute("SELECT COUNT(*) FROM files_sharedfile").fetchone() == (0,)
    database.close()
    notes = await alice.upload_file(b"plain words", name="notes", mime_type="Text/Plain; charset=utf-8")

    loose = await clients(allowed_mime_types={"application/x-msdownload", "text/html"})
    await loose.join_room(room.share_link, "Mallory")
    with pytest.raises(ChatError) as refused:
        await loose.upload_file(b"<p>hi</p>", name="page.html")  # never html, whatever it is told
    assert refused.value.code == "mime_not_allowed"
    sent = await loose.upload_file(b"MZ\x90\x00", name="setup.exe", mime_type="application/x-msdownload")
    seen = await next_of(alice, Message)
    assert (seen.sender, seen.text) == ("Mallory", "(unsupported message)")
    with pytest.raises(ChatError) as refused:
        await alice.download_file(sent.id)
    assert refused.value.code == "file_not_found"
    assert (await alice.download_file(notes.id))[1] == b"plain words"


async def test_a_sealed_upload_whose_bytes_are_not_its_type_is_refused_here(clients, server):
    """The server checks a standard room's files (magic bytes, UTF-8 for text) and sees
    only ciphertext in a sealed room: the client checks there, as the page does. Before,
    a "photo.png" holding HTML was shared, and every page showed it without a preview."""
    alice = await clients()
    await alice.create_room("Sealed", owner_name="Alice", sealed=True)
    for data, name in (
        (b"<html><script>alert(1)</script></html>", "photo.png"),
        (b"\x89PNG\r\n\x1a\n" + bytes(64), "report.pdf"),
        (b"caf\xe9 in Latin-1", "notes.txt"),
        (b"nul\x00inside", "notes.txt"),
        (b"RIFF\x00\x00\x00\x00WAVE", "clip.webp"),
    ):
        with pytest.raises(ChatError) as refused:
            await alice.upload_file(data, name=name)
        assert refused.value.code == "mime_not_allowed" and "contents are not" in refused.value.message, name
    database = sqlite3.connect(server.env["CHAT_VAR_DIR"] + "/db.sqlite3")
    assert database.execute("SELECT COUNT(*) FROM files_sharedfile").fetchone() == (0,)
    database.close()
    for data, name in (
        (b"\x89PNG\r\n\x1a\n" + bytes(64), "photo.png"),
        (b"RIFF\x00\x00\x00\x00WEBP", "clip.webp"),
        ("café ☕".encode(), "notes.txt"),
    ):
        assert (await alice.upload_file(data, name=name)).name == name


def test_the_client_checks_each_type_as_the_server_does():
    assert client_module.SIGNATURES == validation.SIGNATURES
    for mime_type in validation.VERIFIABLE:
        for data in (b"\x89PNG\r\n\x1a\n..", b"RIFF1234WEBPVP8 ", b"plain", b"\xff\xfe\x00", b"%PDF-1.7"):
            assert client_module.contents_are(mime_type, data) == validation.bytes_match(mime_type, data)


async def test_wrong_missing_and_truncated_fragments_are_told_in_plain_words(clients):
    alice = await clients()
    room = await alice.create_room("Sealed", owner_name="Alice", sealed=True)
    base = room.share_link.partition("#")[0]

    eve = await clients()
    with pytest.raises(ChatError) as refused:
        await eve.join_room(base + "#" + link_fragment(new_room_secret()), "Eve")
    assert refused.value.code == "link_wrong" and "whole link" in refused.value.message
    assert eve.room is None  # it left again and sent nothing in that room
    with pytest.raises(ChatError) as refused:
        await eve.join_room(room.share_link[:-5], "Eve")
    assert refused.value.code == "link_incomplete" and "whole link" in refused.value.message

    # Without a fragment: joined, members listed, nothing readable, nothing sendable.
    await eve.join_room(base, "Eve")
    assert not eve.can_read and await eve.members() == ["Alice", "Eve"]
    await alice.send("hidden")
    got = await next_of(eve, Message)
    assert got.sender == "Alice" and got.text is None
    with pytest.raises(ChatError) as refused:
        await eve.send("hello?")
    assert refused.value.code == "link_incomplete"


async def test_a_message_the_server_re_attributes_is_never_shown_under_the_other_name(clients, server):
    alice = await clients()
    room = await alice.create_room("Sealed", owner_name="Alice", sealed=True)
    await alice.send("I, Alice, said this")
    # The server (its database) swaps the sender of the stored message.
    database = sqlite3.connect(server.env["CHAT_VAR_DIR"] + "/db.sqlite3")
    database.execute("UPDATE chat_message SET sender = 'Mallory'")
    database.commit()
    database.close()
    bob = await clients()
    await bob.join_room(room.share_link, "Bob")
    history = await next_of(bob, History)
    (message,) = history.messages
    assert message.sender == "Mallory" and message.text is None  # unverifiable, not Alice's words


# Plaintexts a member can seal that are not strict JSON: nested past any parser's stack,
# a constant JSON has not, a lone surrogate no terminal can print.
NOT_STRICT_JSON = (
    b'{"t":"text","body":"deep","x":' + b"[" * 3000 + b"]" * 3000 + b"}",
    b'{"t":"text","body":"not a number","x":NaN}',
    b'{"t":"text","body":"half a pair \\ud800"}',
)


async def test_a_member_who_seals_what_is_not_strict_json_ends_no_ones_client(clients, server):
    """Any member holds the key, so anything can come out of a sealed message. What is not
    PROTOCOL.md's strict JSON reads as a message that could not be verified, live and in a
    late joiner's History, and the clients go on (a nesting 3,000 deep used to end them
    with a RecursionError)."""
    alice = await clients()
    room = await alice.create_room("Sealed", owner_name="Alice", sealed=True)
    mallory = await clients()
    await mallory.join_room(room.share_link, "Mallory")
    await next_of(alice, Joined)
    key = SealedKeys.from_secret(secret_from_link(room.share_link)).message_key
    for plaintext in NOT_STRICT_JSON:
        nonce = os.urandom(12)
        sealed = AESGCM(key).encrypt(nonce, plaintext, message_associated_data(room.id, "Mallory"))
        content = base64.b64encode(nonce + sealed).decode()
        await mallory._websocket().send(json.dumps({"type": "ChatMessage", "content": content}))
    await mallory.send("still here")
    for reader in (alice, await clients()):
        if reader is not alice:
            await reader.join_room(room.share_link, "Carol")
            got = list((await next_of(reader, History)).messages)
        else:
            got = [await next_of(alice, Message) for _ in range(len(NOT_STRICT_JSON) + 1)]
        assert [(m.sender, m.text) for m in got] == [("Mallory", None)] * len(NOT_STRICT_JSON) + [
            ("Mallory", "still here")
        ]


async def test_a_message_of_no_known_kind_is_told_apart_from_one_saying_so(clients, server):
    """A sealed payload of a kind the client does not know (a later protocol's, a text
    whose body is no string, a card of a type never opened) reads as the placeholder
    "(unsupported message)", which a member may also write: `unsupported` tells which is
    which, so that a bot does not answer the placeholder as if someone had said it."""
    alice = await clients()
    room = await alice.create_room("Sealed", owner_name="Alice", sealed=True)
    mallory = await clients()
    await mallory.join_room(room.share_link, "Mallory")
    for payload in ({"t": "poll", "q": "?"}, {"t": "text", "body": 5}):
        frame = {"type": "ChatMessage", "content": mallory._seal(payload)}
        await mallory._websocket().send(json.dumps(frame))
    await mallory.send("(unsupported message)")
    got = [await next_of(alice, Message) for _ in range(3)]
    assert [(m.text, m.unsupported) for m in got] == [
        ("(unsupported message)", True),
        ("(unsupported message)", True),
        ("(unsupported message)", False),
    ]
    late = await clients()
    await late.join_room(room.share_link, "Carol")
    history = (await next_of(late, History)).messages
    assert [m.unsupported for m in history if isinstance(m, Message)] == [True, True, False]


async def test_a_members_copy_of_anothers_card_neither_renames_nor_breaks_the_file(clients, server):
    """A file's id is learnt from its card, so its first card is its uploader's. A member
    who posts the card again under another name and type, or with another key, or edits
    an earlier message into it, gets a message that could not be verified: downloads of
    the id still open the uploader's file under its name (the copy used to win, as the
    last card seen)."""
    alice = await clients()
    room = await alice.create_room("Sealed", owner_name="Alice", sealed=True)
    mallory, bob = await clients(), await clients()
    await mallory.join_room(room.share_link, "Mallory")
    await bob.join_room(room.share_link, "Bob")
    early = await mallory.send("before the file")
    data = b"\x89PNG\r\n\x1a\n" + bytes(300)
    uploaded = await alice.upload_file(data, name="holiday.png")
    card = dict(mallory._cards[(await next_of(mallory, FileShared)).file_id.lower()][1])
    renamed = {**card, "name": "signed-contract.pdf", "mime_type": "application/pdf"}
    rekeyed = {**card, "key": base64.b64encode(os.urandom(32)).decode()}
    for copy in (renamed, rekeyed):
        await mallory._websocket().send(json.dumps({"type": "ChatMessage", "content": mallory._seal(copy)}))
    await mallory.send("look at my contract")
    live = [await next_of(bob, FileShared), *[await next_of(bob, Message) for _ in range(3)]]
    edit = {"type": "EditMessage", "id": early.id, "content": mallory._seal(renamed)}
    await mallory._websocket().send(json.dumps(edit))
    assert (await next_of(bob, MessageEdited)).text is None
    carol = await clients()
    await carol.join_room(room.share_link, "Carol")
    history = (await next_of(carol, History)).messages
    for reader, seen in ((bob, live), (carol, history)):
        shown = [(type(m).__name__, m.sender, m.name if isinstance(m, FileShared) else m.text) for m in seen]
        assert shown[-4:] == [
            ("FileShared", "Alice", "holiday.png"),
            ("Message", "Mallory", None),
            ("Message", "Mallory", None),
            ("Message", "Mallory", "look at my contract"),
        ]
        metadata, content = await reader.download_file(uploaded.id)
        assert (metadata.name, metadata.mime_type, content) == ("holiday.png", "image/png", data)
    assert shown[0] == ("Message", "Mallory", None)  # Carol's: the edited one, never a card


def test_a_cards_size_is_a_whole_number_however_json_writes_it():
    """The browser reads 1000, 1000.0 and 1e3 as one number (Number.isSafeInteger), so
    the client takes a card whose size is written so as the same card."""
    card = {"t": "file", "id": "8c5e5c8e-2f59-4a8e-9d52-0a4f7b1c3d2e", "name": "a.pdf"}
    card |= {"mime_type": "application/pdf", "sha256": "0" * 64, "key": base64.b64encode(bytes(32)).decode()}
    allowed = frozenset({"application/pdf"})
    for size, whole in ((1000, True), (1000.0, True), (1e3, True), (0, True), (2**53, False), (1.5, False)):
        assert _is_card({**card, "size": size}, allowed) is whole, size
    for size in (-1, True, "1000", float("inf"), float("nan"), None):
        assert not _is_card({**card, "size": size}, allowed), size


async def test_a_tampered_file_is_refused_and_nothing_returned(clients, server):
    alice = await clients()
    room = await alice.create_room("Sealed", owner_name="Alice", sealed=True)
    bob = await clients()
    await bob.join_room(room.share_link, "Bob")
    uploaded = await alice.upload_file(b"the real bytes" * 100, name="notes.txt")
    await next_of(bob, FileShared)
    # The server's store rewritten (under its own at-rest key, so that it serves it): one
    # byte of the ciphertext flipped. The client must refuse what it is served.
    tamper = (
        "import uuid\nfrom files import blobs\nfrom files.models import SharedFile\n"
        f"f = SharedFile.objects.get(pk='{uploaded.id}')\n"
        "data = bytearray(blobs.read(f.id, f.blob)); data[40] ^= 1\n"
        "name = blobs.write(f.id, bytes(data)); blobs.remove(f.blob)\n"
        "SharedFile.objects.filter(pk=f.pk).update(blob=name)\n"
    )
    await asyncio.to_thread(manage, server.env, "shell", "-c", tamper)
    with pytest.raises(ChatError) as refused:
        await bob.download_file(uploaded.id)
    assert refused.value.code == "file_tampered" and "refused" in refused.value.message


async def test_a_file_message_the_server_makes_up_in_a_sealed_room_is_unverifiable(clients, server):
    """A sealed room has no server file messages: a plaintext "[File: ...]" there is the
    server's own invention, shown as unverifiable, never as a file its `sender` shared."""
    alice = await clients()
    room = await alice.create_room("Sealed", owner_name="Alice", sealed=True)
    await alice.send("an honest message")
    forged = "[File: invoice.pdf](/files/8c5e5c8e-2f59-4a8e-9d52-0a4f7b1c3d2e)"
    database = sqlite3.connect(server.env["CHAT_VAR_DIR"] + "/db.sqlite3")
    database.execute("UPDATE chat_message SET content = ?", [forged])
    database.commit()
    database.close()
    for link in (room.share_link, room.share_link.partition("#")[0]):  # with and without the key
        reader = await clients()
        await reader.join_room(link, "Bob")
        (message,) = (await next_of(reader, History)).messages
        assert isinstance(message, Message) and (message.sender, message.text) == ("Alice", None)
        await reader.leave()


async def test_text_with_a_fragment_that_is_no_share_link_is_refused_and_nothing_sent():
    """PROTOCOL.md: a sealed room's secret "is never put in a frame or an HTTP request".
    Text holding `#` is read as a share link (/rooms/KEY/) or refused here, before any
    frame; the socket's affinity hint is made only from a join key read from it."""
    secret = link_fragment(new_room_secret())
    room = FakeRoom()
    async with fake_server(room) as url:
        for text in (
            f"AbCdEf#{secret}",
            f"https://host/r/AbCdEf/#{secret}",
            f"https://host/rooms/AbCdEf/extra/#{secret}",
            f"rooms/#{secret}",
            secret.removeprefix("k="),  # the secret alone, which would pass for a join key
        ):
            client = await ChatClient.connect(url, room=text)
            with pytest.raises(ChatError) as refused:
                await client.join_room(text, "Bob")
            assert refused.value.code == "link_invalid" and "nothing was sent" in refused.value.message
            await client.close()
        assert room.frames == [] and room.paths == ["/ws/"] * 5
        for link in (f"https://host/rooms/AbCdEf/#{secret}", f"host/rooms/AbCdEf#{secret}"):
            client = await ChatClient.connect(url, room=link)
            # The fake server's room is a standard one, which a sealed room's link refuses.
            with pytest.raises(ChatError) as answered:
                await client.join_room(link, "Bob")
            assert answered.value.code == "server_tampered"
            await client.close()
    assert [frame["join_key"] for frame in room.sent("JoinRoom")] == ["AbCdEf", "AbCdEf"]
    assert room.paths[5:] == [f"/ws/?room={affinity_hint('AbCdEf')}"] * 2
    assert not any(secret[2:] in json.dumps(frame) for frame in room.frames)


async def test_a_refused_join_keeps_the_sealed_room_the_client_is_in(clients, server):
    """A join_room the server refuses (already_in_room) leaves the room's secret alone:
    after the next reconnect the client still reads and writes its own sealed room."""
    proxy = CuttableProxy(server.port)
    await proxy.start()
    ann = await clients(proxy.url)
    mine = await ann.create_room("Mine", owner_name="Ann", sealed=True)
    other = await (await clients()).create_room("Other", owner_name="Bo", sealed=True)
    bob = await clients()
    await bob.join_room(mine.share_link, "Bob")
    with pytest.raises(ChatError) as refused:
        await ann.join_room(other.share_link, "Ann")
    assert refused.value.code == "already_in_room"

    await proxy.cut()
    await proxy.start()
    await next_of(ann, Reconnected)
    assert ann.can_read and ann.room.share_link == mine.share_link
    sent = await ann.send("still mine")
    got = await next_of(bob, Message)
    assert (got.id, got.sender, got.text) == (sent.id, "Ann", "still mine")


# --- A hostile server: what it answers, not what it stores ------------------------------


async def until(condition, within: float = 5) -> None:
    for _ in range(int(within / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not within time")


def as_standard_room(frame: dict, connection: int) -> dict:
    """A sealed room's answer turned into a standard room's, with a key the server holds."""
    if frame["type"] in ("RoomCreated", "RoomJoined"):
        info = {**frame["room_info"], "sealed": False, "key_check": None}
        return {**frame, "room_info": info, "encryption_key": base64.b64encode(bytes(32)).decode()}
    return frame


@pytest.mark.parametrize("how", ["create", "join"])
async def test_a_sealed_room_the_server_answers_as_a_standard_one_is_refused(clients, server, how):
    """Answered as a standard room, a sealed room's messages would go out under the
    server's key: the join fails `server_tampered`, the client is in no room, nothing
    is sent under that key, and its seat is given back."""
    alice = await clients()
    room = await alice.create_room("Sealed", owner_name="Alice", sealed=True)
    async with tampering_proxy(server.url, as_standard_room) as proxy:
        bob = await clients(proxy.url)
        with pytest.raises(ChatError) as refused:
            if how == "create":
                await bob.create_room("Mine", owner_name="Bob", sealed=True)
            else:
                await bob.join_room(room.share_link, "Bob")
        assert refused.value.code == "server_tampered" and "not sealed" in refused.value.message
        assert bob.room is None and not bob.can_read
        with pytest.raises(ChatError) as nothing:
            await bob.send("for the server's eyes")
        assert nothing.value.code == "not_in_room"
        await until(lambda: len(proxy.sent) > 1)
        assert [frame["type"] for frame in proxy.sent][1:] == ["LeaveRoom"]
        if how == "join":
            assert await next_of(alice, Joined) == Joined("Bob")
            assert await next_of(alice, Left) == Left("Bob")


async def test_a_sealed_room_created_with_another_key_check_than_sent_is_refused(clients, server):
    """The creator's own secret: a key check the server changed is the server's doing (not
    a link cut short), and the room is left with nothing sent."""

    def other_check(frame: dict, connection: int) -> dict:
        if frame["type"] != "RoomCreated":
            return frame
        return {
            **frame,
            "room_info": {**frame["room_info"], "key_check": base64.b64encode(bytes(16)).decode()},
        }

    async with tampering_proxy(server.url, other_check) as proxy:
        bob = await clients(proxy.url)
        with pytest.raises(ChatError) as refused:
            await bob.create_room("Mine", owner_name="Bob", sealed=True)
        assert refused.value.code == "server_tampered" and "key check" in refused.value.message
        assert bob.room is None and not bob.can_read
        await until(lambda: len(proxy.sent) > 1)
        assert [frame["type"] for frame in proxy.sent] == ["CreateRoom", "LeaveRoom"]


async def test_a_name_the_client_did_not_ask_for_is_refused(clients, server):
    """A sealed room's messages are bound to the sender's name: a server that answers Bob's
    join with Alice's name would have Bob's words verified as hers."""
    alice = await clients()
    room = await alice.create_room("Sealed", owner_name="Alice", sealed=True)

    def renamed(frame: dict, connection: int) -> dict:
        return {**frame, "name": "Alice"} if frame["type"] == "RoomJoined" else frame

    async with tampering_proxy(server.url, renamed) as proxy:
        bob = await clients(proxy.url)
        with pytest.raises(ChatError) as refused:
            await bob.join_room(room.share_link, "  Bob ")
        assert refused.value.code == "server_tampered" and "'Alice'" in refused.value.message
        assert bob.room is None and bob.name is None
    # An honest server's name is the one asked for, as the server stores it (trimmed), and
    # a participant token's comes back as it was first given, compared by case.
    carol = await clients()
    await carol.join_room(room.share_link, "  Carol ")
    assert carol.name == "Carol"
    token = carol.participant_token
    await carol.close()
    again = await clients()
    await again.join_room(room.share_link, "CAROL", participant_token=token)
    assert again.name == "Carol" and again.participant_token == token


async def test_a_rejoin_into_another_name_or_room_ends_the_stream(clients, server):
    """After a drop, the server could put the client back under another name (or in
    another room): the stream ends `server_tampered`, and nothing more is sent."""
    alice = await clients()
    room = await alice.create_room("Sealed", owner_name="Alice", sealed=True)

    def renamed_on_rejoin(frame: dict, connection: int) -> dict:
        if frame["type"] == "RoomJoined" and connection > 0:
            return {**frame, "name": "Alice"}
        return frame

    async with tampering_proxy(server.url, renamed_on_rejoin) as proxy:
        bob = await clients(proxy.url)
        await bob.join_room(room.share_link, "Bob")
        await proxy.cut()
        assert await next_of(bob, Reconnecting) == Reconnecting(1012)
        assert (await stream_end(bob)).code == "server_tampered"
        rejoined = max(i for i, frame in enumerate(proxy.sent) if frame["type"] == "JoinRoom")
        assert proxy.sent[rejoined + 1 :] == [], "nothing sent after the rejoin's answer"
        with pytest.raises(ChatError):
            await bob.send("under Alice's name")


async def test_deleting_a_sealed_files_card_deletes_the_file(server, clients):
    """PROTOCOL.md: the server cannot tell a card from a message, so the client that
    deletes a card deletes its file too (the page did; the Python client left the file
    for anyone holding the card to download). Another message's delete leaves it."""
    alice = await clients()
    room = await alice.create_room("Sealed", owner_name="Alice", sealed=True)
    bob = await clients()
    await bob.join_room(room.share_link, "Bob")
    kept = await alice.upload_file(b"kept\n", name="kept.txt")
    card = await next_of(bob, FileShared)
    assert (card.id, card.file_id) == (kept.message_id, kept.id)  # the card's message, returned
    answer = await bob.send("got it", reply_to=kept.message_id)
    assert (await next_of(alice, Message)).reply_to == card.id == answer.reply_to
    other = await alice.send("not a card")
    await alice.delete_message(other.id)
    assert (await bob.download_file(kept.id))[1] == b"kept\n"
    await alice.delete_message(kept.message_id)  # the uploader deletes its own card
    assert await next_of(bob, FileDeleted) == FileDeleted(kept.id)
    with pytest.raises(ChatError) as gone:
        await bob.download_file(kept.id)
    assert gone.value.code == "file_not_found"


async def test_the_file_cards_a_client_keeps_are_bounded_by_max_cards(clients):
    """A bot in a sealed room for weeks does not keep every card ever shared there: past
    `max_cards` the card of the oldest message goes (its file is then as one whose card
    was never seen); the uploader's own cards too, the newest kept."""
    alice = await clients(max_cards=1)
    room = await alice.create_room("Sealed", owner_name="Alice", sealed=True)
    bot = await clients(max_cards=2)
    await bot.join_room(room.share_link, "Bot")
    uploads = [await alice.upload_file(f"file {n}\n".encode(), name=f"{n}.txt") for n in range(3)]
    assert [(await next_of(bot, FileShared)).file_id for _ in uploads] == [file.id for file in uploads]

    assert len(bot._cards) == 2 and len(alice._cards) == 1
    with pytest.raises(ChatError) as forgotten:
        await bot.download_file(uploads[0].id)
    assert forgotten.value.code == "file_not_found"
    assert [(await bot.download_file(file.id))[1] for file in uploads[1:]] == [b"file 1\n", b"file 2\n"]
    await alice.delete_message(uploads[2].message_id)  # its own newest card: kept, so the file goes too
    assert await next_of(bot, FileDeleted) == FileDeleted(uploads[2].id)


async def test_a_card_read_from_an_older_page_is_kept_past_max_cards(clients):
    """With `max_cards` reached, a card `history()` brings from further back was dropped
    as soon as it was kept (it had the oldest message): its file could not be
    downloaded right after reading it. The oldest other card goes instead."""
    alice = await clients()
    room = await alice.create_room("Sealed", owner_name="Alice", sealed=True)
    uploads = [await alice.upload_file(f"file {n}\n".encode(), name=f"{n}.txt") for n in range(2)]
    bot = await clients(max_cards=1)
    await bot.join_room(room.share_link, "Bot")
    await next_of(bot, History)  # both cards: the newer one kept
    page = await bot.history(before=uploads[1].message_id, limit=10)
    assert [item.file_id for item in page if isinstance(item, FileShared)] == [uploads[0].id]
    assert (await bot.download_file(uploads[0].id))[1] == b"file 0\n"
