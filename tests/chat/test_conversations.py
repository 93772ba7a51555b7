"""PROTOCOL.md, "Conversations", through config.asgi.application: older history a page
at a time (`GetHistory`), replies (`reply_to`), edits, deletes, reactions, typing and
resuming with a participant token."""

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from chat import moderation, presence
from chat.models import Message, Participant
from tests.helpers import (
    HISTORY_ENTRY,
    assert_open,
    close_all,
    connect,
    create_room,
    decrypt,
    encrypt,
    expect_error,
    join_room,
    upload_frame,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]

PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


async def say(sender, listeners, key: str, text: str, **fields) -> dict:
    """`sender` says `text`; every one of `listeners` (the sender among them) gets it."""
    await sender.send_json_to({"type": "ChatMessage", "content": encrypt(key, text), **fields})
    got = [await listener.receive_json_from() for listener in listeners]
    assert all(message == got[0] for message in got) and got[0]["type"] == "ChatMessage", got
    return got[0]


async def page(communicator, **fields) -> dict:
    await communicator.send_json_to({"type": "GetHistory", **fields})
    reply = await communicator.receive_json_from()
    assert reply["type"] == "History", reply
    return reply


async def test_older_history_comes_a_page_at_a_time(room):
    owner, key = room.owner, room.key
    ids = [(await say(owner, [owner], key, f"m{n}"))["id"] for n in range(7)]
    other, _ = await create_room()  # another room's messages never come back here
    await say(other, [other], key, "elsewhere")

    newest = await page(owner, before=ids[-1], limit=3)
    assert newest["before"] == ids[-1]
    assert [m["id"] for m in newest["messages"]] == ids[3:6]  # the newest three older ones, oldest first
    assert [decrypt(key, m["content"]) for m in newest["messages"]] == ["m3", "m4", "m5"]
    entry = newest["messages"][0]
    assert set(entry) == HISTORY_ENTRY
    assert entry["reply_to"] is None and entry["edited_at"] is None and entry["reactions"] == []

    older = await page(owner, before=newest["messages"][0]["id"])  # default limit: 50
    assert [m["id"] for m in older["messages"]] == ids[:3]
    start = await page(owner, before=ids[0])
    assert start == {"type": "History", "messages": [], "before": ids[0]}  # the start of the room
    assert [m["id"] for m in (await page(owner, before=2**63 - 1, limit=100))["messages"]] == ids
    await close_all(other)


async def test_get_history_needs_a_room_and_counts_as_a_read(room, settings):
    outsider, _ = await create_room()
    await outsider.send_json_to({"type": "LeaveRoom"})
    await outsider.send_json_to({"type": "GetHistory", "before": 10})
    await expect_error(outsider, "not_in_room")
    await outsider.send_json_to({"type": "GetHistory", "before": "10"})
    await expect_error(outsider, "invalid_field")  # fields come before the connection's state

    settings.READS_PER_MINUTE = 2
    await page(room.owner, before=10)
    await room.owner.send_json_to({"type": "GetMembers"})
    assert (await room.owner.receive_json_from())["type"] == "Members"
    await room.owner.send_json_to({"type": "GetHistory", "before": 10})
    await expect_error(room.owner, "rate_limited")  # READS_PER_MINUTE covers both
    await close_all(outsider)


async def test_a_reply_names_the_message_it_answers(room_of_two):
    owner, bob, key = room_of_two.owner, room_of_two.member, room_of_two.key
    first = await say(owner, [owner, bob], key, "question")
    assert first["reply_to"] is None  # every broadcast says, null when absent
    answer = await say(bob, [owner, bob], key, "answer", reply_to=first["id"])
    assert answer["reply_to"] == first["id"]
    stored = await Message.objects.aget(pk=answer["id"])
    assert stored.reply_to == first["id"]
    history = await page(owner, before=answer["id"] + 1)
    assert [(m["id"], m["reply_to"]) for m in history["messages"]] == [
        (first["id"], None),
        (answer["id"], first["id"]),
    ]


async def test_a_reply_to_a_message_not_in_the_room_is_message_not_found(room_of_two):
    owner, bob, key = room_of_two.owner, room_of_two.member, room_of_two.key
    other, created = await create_room()
    elsewhere = await say(other, [other], created["encryption_key"], "not yours")
    mine = await say(owner, [owner, bob], key, "here")
    before = await Message.objects.acount()
    for missing in (elsewhere["id"], mine["id"] + 1000, 0):
        await bob.send_json_to({"type": "ChatMessage", "content": encrypt(key, "re"), "reply_to": missing})
        await expect_error(bob, "message_not_found")
    assert await Message.objects.acount() == before  # nothing stored, nothing broadcast
    assert await owner.receive_nothing(timeout=0.1)
    await assert_open(bob)
    # The connection goes on: a good reply right after is stored and broadcast.
    assert (await say(bob, [owner, bob], key, "re", reply_to=mine["id"]))["reply_to"] == mine["id"]
    await close_all(other)


async def test_a_reply_to_a_deleted_message_is_message_not_found(room):
    owner, key = room.owner, room.key
    gone = await say(owner, [owner], key, "soon gone")
    await Message.objects.filter(pk=gone["id"]).adelete()
    await owner.send_json_to({"type": "ChatMessage", "content": encrypt(key, "re"), "reply_to": gone["id"]})
    await expect_error(owner, "message_not_found")


async def edit(communicator, message_id: int, content: str) -> None:
    await communicator.send_json_to({"type": "EditMessage", "id": message_id, "content": content})


async def test_an_author_edits_within_the_window_and_everyone_sees_it(room_of_two):
    owner, bob, key = room_of_two.owner, room_of_two.member, room_of_two.key
    said = await say(bob, [owner, bob], key, "tpyo")
    fixed = encrypt(key, "typo")
    await edit(bob, said["id"], fixed)
    for communicator in (owner, bob):
        edited = await communicator.receive_json_from()
        assert set(edited) == {"type", "id", "content", "edited_at"}
        assert (edited["type"], edited["id"], edited["content"]) == ("MessageEdited", said["id"], fixed)
    (entry,) = (await page(owner, before=said["id"] + 1))["messages"][-1:]
    assert (decrypt(key, entry["content"]), entry["edited_at"]) == ("typo", edited["edited_at"])
    assert entry["sent_at"] == said["sent_at"]  # only the latest content is kept, and when


async def test_edits_that_are_refused(room_of_two, settings):
    owner, bob, key = room_of_two.owner, room_of_two.member, room_of_two.key
    owners = await say(owner, [owner, bob], key, "mine")
    await edit(bob, owners["id"], encrypt(key, "hijacked"))  # an owner's message is still not Bob's
    assert "author" in (await expect_error(bob, "forbidden"))["message"]
    await edit(bob, owners["id"] + 1000, encrypt(key, "x"))
    await expect_error(bob, "message_not_found")
    await edit(bob, owners["id"], "not ciphertext")
    await expect_error(bob, "invalid_field")
    settings.CHAT_EDIT_WINDOW = 0
    await edit(owner, owners["id"], encrypt(key, "late"))
    assert "old" in (await expect_error(owner, "forbidden"))["message"]
    await owner.send_json_to(upload_frame(PNG))
    assert (await owner.receive_json_from())["type"] == "FileUploaded"
    link = await owner.receive_json_from()
    settings.CHAT_EDIT_WINDOW = 86400
    await edit(owner, link["id"], encrypt(key, "no longer a file"))
    assert "file" in (await expect_error(owner, "forbidden"))["message"]
    assert (await Message.objects.aget(pk=owners["id"])).edited_at is None  # nothing changed
    assert await bob.receive_json_from() == link  # and no edit of anything
    assert await bob.receive_nothing(timeout=0.1)
    await assert_open(bob)


async def test_edits_and_deletes_count_toward_the_chat_rate_limit(room, settings):
    settings.CHAT_RATE_BURST, settings.CHAT_RATE_SUSTAINED = 2, 0.001
    talker, joined = await join_room(room.join_key, "Talker")
    said = await say(talker, [talker], room.key, "one")
    await edit(talker, said["id"], encrypt(room.key, "two"))
    assert (await talker.receive_json_from())["type"] == "MessageEdited"
    await talker.send_json_to({"type": "DeleteMessage", "id": said["id"]})
    await expect_error(talker, "rate_limited")
    await close_all(talker)


async def test_deletes_by_the_author_or_an_owner(room_of_two):
    owner, bob, key = room_of_two.owner, room_of_two.member, room_of_two.key
    bobs = await say(bob, [owner, bob], key, "oops")
    owners = await say(owner, [owner, bob], key, "rules")
    await bob.send_json_to({"type": "DeleteMessage", "id": owners["id"]})
    await expect_error(bob, "forbidden")
    await bob.send_json_to({"type": "DeleteMessage", "id": bobs["id"]})
    for communicator in (owner, bob):
        assert await communicator.receive_json_from() == {"type": "MessageDeleted", "id": bobs["id"]}
    assert not await Message.objects.filter(pk=bobs["id"]).aexists()  # erased, not hidden
    await bob.send_json_to({"type": "DeleteMessage", "id": bobs["id"]})
    await expect_error(bob, "message_not_found")
    reply = await say(owner, [owner, bob], key, "re", reply_to=owners["id"])
    await owner.send_json_to({"type": "DeleteMessage", "id": owners["id"]})  # an owner may delete any
    for communicator in (owner, bob):
        assert await communicator.receive_json_from() == {"type": "MessageDeleted", "id": owners["id"]}
    assert [m["id"] for m in (await page(bob, before=reply["id"] + 1))["messages"]] == [reply["id"]]


async def test_deleting_a_files_message_deletes_the_file(room_of_two):
    owner, bob = room_of_two.owner, room_of_two.member
    await bob.send_json_to(upload_frame(PNG))
    metadata = (await bob.receive_json_from())["metadata"]
    link = await bob.receive_json_from()
    assert link["content"].startswith("[File: ") and await owner.receive_json_from() == link
    await bob.send_json_to({"type": "DeleteMessage", "id": link["id"]})
    for communicator in (owner, bob):
        assert await communicator.receive_json_from() == {"type": "MessageDeleted", "id": link["id"]}
        assert await communicator.receive_json_from() == {"type": "FileDeleted", "file_id": metadata["id"]}
    await owner.send_json_to({"type": "GetFile", "file_id": metadata["id"]})
    await expect_error(owner, "file_not_found")


async def react(communicator, message_id: int, emoji: str, on: bool = True) -> None:
    await communicator.send_json_to({"type": "React", "id": message_id, "emoji": emoji, "on": on})


async def test_reactions_carry_the_whole_state(room_of_two):
    owner, bob, key = room_of_two.owner, room_of_two.member, room_of_two.key
    said = await say(owner, [owner, bob], key, "lunch?")
    steps = [
        (bob, "👍", True, [{"emoji": "👍", "names": ["Bob"]}]),
        (owner, "👍", True, [{"emoji": "👍", "names": ["Bob", "Owner"]}]),
        (
            owner,
            "👨‍👩‍👧",
            True,
            [{"emoji": "👍", "names": ["Bob", "Owner"]}, {"emoji": "👨‍👩‍👧", "names": ["Owner"]}],
        ),
        (
            owner,
            "👨‍👩‍👧",
            True,
            [{"emoji": "👍", "names": ["Bob", "Owner"]}, {"emoji": "👨‍👩‍👧", "names": ["Owner"]}],
        ),
        (bob, "👍", False, [{"emoji": "👍", "names": ["Owner"]}, {"emoji": "👨‍👩‍👧", "names": ["Owner"]}]),
    ]
    for who, emoji, on, state in steps:
        await react(who, said["id"], emoji, on)
        for communicator in (owner, bob):  # everyone, the reactor included; twice changes nothing
            assert await communicator.receive_json_from() == {
                "type": "Reactions",
                "id": said["id"],
                "reactions": state,
            }
    (entry,) = (await page(bob, before=said["id"] + 1))["messages"]
    assert entry["reactions"] == steps[-1][3]


async def test_reactions_that_are_refused(room_of_two, settings):
    owner, bob, key = room_of_two.owner, room_of_two.member, room_of_two.key
    said = await say(owner, [owner, bob], key, "vote")
    for bad in ("a", "👍👍", "🏽", "❤", "", "x" * 40):  # not one RGI emoji (❤ lacks its VS16)
        await react(bob, said["id"], bad)
        await expect_error(bob, "invalid_field")
    await bob.send_json_to({"type": "React", "id": said["id"], "emoji": "👍"})  # `on` is required
    await expect_error(bob, "invalid_field")
    for on in (True, False):  # taking one back from a message not in the room says so too
        await react(bob, said["id"] + 1000, "👍", on)
        await expect_error(bob, "message_not_found")
    settings.REACTIONS_PER_MESSAGE = 2
    for emoji in ("👍", "❤️"):
        await react(bob, said["id"], emoji)
        for communicator in (owner, bob):
            assert (await communicator.receive_json_from())["type"] == "Reactions"
    await react(owner, said["id"], "🎉")
    await expect_error(owner, "quota_exceeded")
    settings.REACTIONS_PER_MESSAGE_IN_ALL = 3  # Bob's two, and Owner's first
    await react(owner, said["id"], "👍")  # an emoji already there is still welcome
    (state,) = {(await c.receive_json_from())["reactions"][0]["names"][-1] for c in (owner, bob)}
    assert state == "Owner"
    await react(owner, said["id"], "❤️")  # a fourth reaction in all: past the bound
    await expect_error(owner, "quota_exceeded")
    assert await bob.receive_nothing(timeout=0.1)


async def test_reactions_of_several_connections_go_in_one_batch(room_of_two, settings, monkeypatch):
    """Issue 18: React frames from several connections that arrive within
    CHAT_WRITE_INTERVAL of the last write are stored in one batch (one transaction:
    services.messages_react), each answered as it would be alone, the race for a
    message's last emoji included."""
    from chat import batching, services

    settings.CHAT_WRITE_INTERVAL = 1.0
    # A batcher of this test's own, made with the interval above.
    monkeypatch.setattr(batching, "reaction_writer", batching.PerLoopBatcher(batching.reaction_writer.make))
    batches: list[list[tuple[str, str, bool]]] = []
    messages_react = services.messages_react

    def spy(changes):
        batches.append([(change.seat.name, change.emoji, change.on) for change in changes])
        return messages_react(changes)

    monkeypatch.setattr(services, "messages_react", spy)
    owner, bob, key = room_of_two.owner, room_of_two.member, room_of_two.key
    carol, _ = await join_room(room_of_two.join_key, "Carol", client=("10.0.0.3", 5000))
    for communicator in (owner, bob):
        assert await communicator.receive_json_from() == {"type": "ParticipantJoined", "name": "Carol"}
    everyone = (owner, bob, carol)
    said = await say(owner, everyone, key, "vote")
    settings.REACTIONS_PER_MESSAGE = 2

    await react(bob, said["id"], "👍")  # the writer is idle: stored at once, alone
    first = [{"emoji": "👍", "names": ["Bob"]}]
    for communicator in everyone:
        assert await communicator.receive_json_from() == {
            "type": "Reactions",
            "id": said["id"],
            "reactions": first,
        }
    await react(owner, said["id"], "❤️")  # the last distinct emoji...
    await asyncio.sleep(0.05)
    await react(carol, said["id"], "🎉")  # ...which Carol's comes too late for
    await asyncio.sleep(0.05)
    await react(bob, said["id"], "👍", on=False)

    states = [
        [{"emoji": "👍", "names": ["Bob"]}, {"emoji": "❤️", "names": ["Owner"]}],
        [{"emoji": "❤️", "names": ["Owner"]}],
    ]
    broadcasts = [{"type": "Reactions", "id": said["id"], "reactions": state} for state in states]
    for communicator in (owner, bob):
        assert [await communicator.receive_json_from() for _ in states] == broadcasts
    got = [await carol.receive_json_from() for _ in range(3)]
    (refusal,) = [frame for frame in got if frame["type"] == "Error"]
    assert refusal["code"] == "quota_exceeded"
    assert [frame for frame in got if frame["type"] != "Error"] == broadcasts
    assert await owner.receive_nothing(timeout=0.1) and await bob.receive_nothing(timeout=0.1)
    assert batches == [
        [("Bob", "👍", True)],
        [("Owner", "❤️", True), ("Carol", "🎉", True), ("Bob", "👍", False)],
    ]
    await close_all(carol)


async def test_typing_is_forwarded_at_most_every_three_seconds(room_of_two, monkeypatch):
    owner, bob = room_of_two.owner, room_of_two.member
    clock = [1000.0]
    monkeypatch.setattr("chat.actions.monotonic", lambda: clock[0])
    await bob.send_json_to({"type": "Typing"})
    assert await owner.receive_json_from() == {"type": "Typing", "name": "Bob"}
    for _ in range(5):  # dropped, without an answer to anyone
        await bob.send_json_to({"type": "Typing"})
    assert await owner.receive_nothing(timeout=0.1) and await bob.receive_nothing(timeout=0.1)
    clock[0] += 3
    await bob.send_json_to({"type": "Typing"})
    assert await owner.receive_json_from() == {"type": "Typing", "name": "Bob"}
    assert not await Message.objects.aexists()  # nothing stored


async def test_a_flood_of_typing_is_closed_as_abuse(room_of_two, settings):
    settings.TYPING_FRAMES_PER_SECOND = 1
    settings.ABUSE_RATE_LIMITED_FRAMES = 5
    bob = room_of_two.member
    for _ in range(10):
        await bob.send_json_to({"type": "Typing"})
    await expect_closed_with_abuse(bob)


async def expect_closed_with_abuse(communicator) -> None:
    while (output := await communicator.receive_output(2))["type"] != "websocket.close":
        assert output["type"] == "websocket.send" and '"Typing"' not in output.get("text", "")
    assert output["code"] == 1008


async def resume(token: str, name: str, join_key: str, client=("10.0.0.2", 5001), **fields) -> tuple:
    """A new connection that joins with a participant token; (communicator, RoomJoined)."""
    communicator = await connect(client=client)
    await communicator.send_json_to(
        {"type": "JoinRoom", "join_key": join_key, "name": name, "participant_token": token, **fields}
    )
    return communicator, await communicator.receive_json_from()


async def test_a_present_participant_resumes_and_its_old_connection_closes_4003(room_of_two):
    owner, bob, key = room_of_two.owner, room_of_two.member, room_of_two.key
    token = room_of_two.joined["participant_token"]
    assert len(token) >= 43 and room_of_two.created["participant_token"] != token
    said = await say(bob, [owner, bob], key, "before")
    again, joined = await resume(token, "BOB", room_of_two.join_key)  # names compare as names do
    assert (joined["type"], joined["name"], joined["participant_token"]) == ("RoomJoined", "Bob", token)
    assert await bob.receive_output(2) == {"type": "websocket.close", "code": 4003}  # no frame first
    assert await owner.receive_nothing(timeout=0.2)  # no ParticipantLeft, no ParticipantJoined
    assert (await again.receive_json_from())["type"] == "History"
    await edit(again, said["id"], encrypt(key, "after"))  # still the author
    assert (await again.receive_json_from())["type"] == "MessageEdited"
    await again.send_json_to({"type": "GetMembers"})
    assert (await again.receive_json_from())["participants"] == ["Owner", "Bob"]
    await close_all(again)


async def test_a_ghost_past_its_timeout_resumes_and_every_member_list_gets_it_back(room_of_two):
    """After its process died (the row stale, not yet swept), a participant resumes: one who
    joined meanwhile was not shown it, so the room is told it left and joined again (as
    if the sweep had come first), and its own new connection is told neither."""
    owner, bob = room_of_two.owner, room_of_two.member
    token, join_key = room_of_two.joined["participant_token"], room_of_two.join_key
    await Participant.objects.filter(name="Bob").aupdate(last_seen=timezone.now() - timedelta(hours=1))
    carol, joined = await join_room(join_key, "Carol", client=("10.0.0.3", 5002))
    assert joined["participants"] == ["Owner", "Carol"]  # Bob is a ghost
    for member in (owner, bob):  # Bob's socket is still open here: its process "died"
        assert await member.receive_json_from() == {"type": "ParticipantJoined", "name": "Carol"}
    again, rejoined = await resume(token, "Bob", join_key)
    assert rejoined["participant_token"] == token and rejoined["participants"] == ["Owner", "Bob", "Carol"]
    assert await bob.receive_output(2) == {"type": "websocket.close", "code": 4003}
    assert await owner.receive_json_from() == {"type": "ParticipantLeft", "name": "Bob"}
    assert await owner.receive_json_from() == {"type": "ParticipantJoined", "name": "Bob"}
    # Carol's join snapshot drops the leave of someone it did not list (chat/services.py,
    # Snapshot): she just sees Bob join.
    assert await carol.receive_json_from() == {"type": "ParticipantJoined", "name": "Bob"}
    assert await again.receive_nothing(timeout=0.2)
    await presence.beat_once()  # the resumed row is fresh: the sweep leaves it alone
    assert await owner.receive_nothing(timeout=0.2)
    await close_all(carol, again)


async def test_a_participant_that_left_comes_back_as_itself(room_of_two):
    owner, bob, key = room_of_two.owner, room_of_two.member, room_of_two.key
    token = room_of_two.joined["participant_token"]
    said = await say(bob, [owner, bob], key, "mine")
    await bob.send_json_to({"type": "LeaveRoom"})
    assert await owner.receive_json_from() == {"type": "ParticipantLeft", "name": "Bob"}
    again, joined = await resume(token, "Bob", room_of_two.join_key)
    assert joined["participant_token"] == token
    assert await owner.receive_json_from() == {"type": "ParticipantJoined", "name": "Bob"}
    await again.receive_json_from()  # History
    await again.send_json_to({"type": "DeleteMessage", "id": said["id"]})  # its message still
    assert await again.receive_json_from() == {"type": "MessageDeleted", "id": said["id"]}
    await close_all(again)


async def test_tokens_that_do_not_resume(room_of_two):
    owner, bob, key = room_of_two.owner, room_of_two.member, room_of_two.key
    token = room_of_two.joined["participant_token"]
    said = await say(bob, [owner, bob], key, "bob's")
    other, refused = await resume(token, "Robert", room_of_two.join_key)
    assert (refused["type"], refused["code"]) == ("Error", "invalid_field")  # the token is Bob's
    stranger, joined = await resume("not-a-token", "Carol", room_of_two.join_key)  # a new one, no error
    assert joined["type"] == "RoomJoined" and joined["participant_token"] != "not-a-token"
    await stranger.receive_json_from()  # History
    await edit(stranger, said["id"], encrypt(key, "hijack"))
    await expect_error(stranger, "forbidden")
    await database_sync_to_async(moderation.remove_participant)(
        participant_id=(await Participant.objects.aget(name="Bob")).pk, now=timezone.now(), actor="test"
    )
    elsewhere, rejoined = await resume(token, "Bob", room_of_two.join_key, client=("10.0.0.9", 5000))
    assert rejoined["participant_token"] != token  # a removed participant's token is dead
    await close_all(other, stranger, elsewhere)


async def test_the_name_check_comes_after_the_password_and_before_name_taken():
    owner, created = await create_room(password="right")
    token, join_key = created["participant_token"], created["room_info"]["join_key"]
    wrong, refused = await resume(token, "Someone", join_key, password="wrong")
    assert refused["code"] == "wrong_password"
    other, refused = await resume("unknown", "Owner", join_key, password="right")
    assert refused["code"] == "name_taken"  # an unknown token: a new participant, whose name is taken
    await close_all(owner, wrong, other)


async def test_edits_deletes_and_reactions_name_their_message_on_the_bus(room_of_two, monkeypatch):
    """With its seq, each names the message it changes (`changes`), so that a hub hands
    out one that comes after the room's order passed it (chat/hub.py, RoomOrder.late)."""
    from chat.hub import hub

    owner, bob, key = room_of_two.owner, room_of_two.member, room_of_two.key
    first = await say(owner, [owner, bob], key, "one")
    second = await say(owner, [owner, bob], key, "two")
    marks = []
    deliver = hub.deliver

    def recording(event):
        if event.get("seq") is not None:
            marks.append((event["seq"], event.get("changes")))
        deliver(event)

    monkeypatch.setattr(hub, "deliver", recording)
    changes = (
        edit(owner, first["id"], encrypt(key, "uno")),
        react(bob, first["id"], "👍"),
        owner.send_json_to({"type": "DeleteMessage", "id": first["id"]}),
        database_sync_to_async(moderation.delete_messages)(message_ids=[second["id"]], actor="admin"),
    )
    for change, kind in zip(
        changes, ("MessageEdited", "Reactions", "MessageDeleted", "MessageDeleted"), strict=True
    ):
        await change
        for communicator in (owner, bob):
            assert (await communicator.receive_json_from())["type"] == kind
    assert marks == [(3, first["id"]), (4, first["id"]), (5, first["id"]), (6, second["id"])]
