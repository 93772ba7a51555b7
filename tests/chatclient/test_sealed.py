"""Sealed rooms through the client library against a real server: the share link carries
the secret, chat and files are encrypted transparently with the same events as a
standard room, and a wrong, truncated or missing fragment, a re-attributed message and a
tampered file are each refused in plain words (PROTOCOL.md, "Sealed rooms")."""

import asyncio
import base64
import sqlite3

import pytest

from chatclient import ChatError, FileShared, History, Message
from chatclient.crypto import LinkError, SealedKeys, link_fragment, new_room_secret, secret_from_link
from tests.chatclient.conftest import next_of
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
