"""chat/selectors.py against the database: who is present (and whether a seat still
is), History, the room's message sequence, the door a join goes through and its
per-process cache, and `room_info`."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from chat import protocol, selectors, services
from chat.errors import ErrorCode, ProtocolError
from chat.models import Change, Participant, Room
from tests.helpers import HISTORY_ENTRY, join_seat, make_room

pytestmark = pytest.mark.django_db(transaction=True)


def post(seat: services.Seat, content: str) -> tuple[int, int]:
    return services.message_post(seat=seat, content=content, now=timezone.now())


def test_presence_is_cut_off_at_presence_timeout(settings):
    settings.PRESENCE_TIMEOUT = 45
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert selectors.presence_cutoff(now) == datetime(2026, 1, 1, 11, 59, 15, tzinfo=UTC)


def test_members_are_the_present_in_join_order_as_seen_by_a_present_seat(settings):
    room, owner, _ = make_room()
    bob = join_seat(room, "Bob").seat
    carol = join_seat(room, "Carol").seat
    _, elsewhere, _ = make_room()
    now = timezone.now()

    def members(seat, room_id=room.pk):
        return selectors.members_present(room_id=room_id, participant_id=seat.participant_id, now=now)

    assert members(bob) == ["Owner", "Bob", "Carol"]  # not the other room's Owner
    stale = now - timedelta(seconds=settings.PRESENCE_TIMEOUT + 1)
    Participant.objects.filter(pk=carol.participant_id).update(last_seen=stale)
    assert members(bob) == ["Owner", "Bob"]  # Carol's process stopped beating
    Participant.objects.filter(room=room).update(last_seen=stale)
    assert members(bob) == []  # nobody seen lately, Bob included: still a seat
    assert members(bob, room_id=elsewhere.room_id) is None  # not a seat of that room
    services.participant_leave(participant_id=bob.participant_id, now=now)
    assert members(bob) is None  # left
    Room.objects.filter(pk=room.pk).update(closed_at=now)  # the seats not (yet) marked left
    assert members(owner) is None  # its room closed


def test_a_presence_snapshot_lists_ids_and_names_of_the_present_in_join_order(settings):
    room, owner, _ = make_room()
    bob = join_seat(room, "Bob").seat
    carol = join_seat(room, "Carol").seat
    make_room()
    now = timezone.now()
    assert selectors.presence_snapshot(room_id=room.pk, now=now) == [
        (owner.participant_id, "Owner"),
        (bob.participant_id, "Bob"),
        (carol.participant_id, "Carol"),
    ]
    services.participant_leave(participant_id=bob.participant_id, now=now)
    stale = now - timedelta(seconds=settings.PRESENCE_TIMEOUT + 1)
    Participant.objects.filter(pk=owner.participant_id).update(last_seen=stale)
    assert selectors.presence_snapshot(room_id=room.pk, now=now) == [(carol.participant_id, "Carol")]


def test_history_is_the_newest_after_since_oldest_first():
    room, seat, _ = make_room()
    _, other, _ = make_room()
    post(other, "elsewhere")
    ids = [post(seat, f"c{n}")[0] for n in range(5)]
    history = selectors.history_since(room_id=room.pk, since=None, limit=3)
    assert [entry["id"] for entry in history] == ids[2:]
    assert [entry["content"] for entry in history] == ["c2", "c3", "c4"]
    assert set(history[0]) == HISTORY_ENTRY
    assert history[0]["sender"] == "Owner" and history[0]["sent_at"].endswith("Z")
    assert [e["id"] for e in selectors.history_since(room_id=room.pk, since=ids[0], limit=10)] == ids[1:]
    assert selectors.history_since(room_id=room.pk, since=ids[-1], limit=10) == []


def test_the_message_sequence_and_messages_between_two_numbers():
    room, seat, _ = make_room()
    assert selectors.room_message_seq(room_id=room.pk) == 0
    posted = [post(seat, f"c{n}") for n in range(4)]  # seq 1 to 4
    _, other, _ = make_room()
    post(other, "elsewhere")
    assert selectors.room_message_seq(room_id=room.pk) == 4
    assert selectors.room_message_seq(room_id=uuid.uuid4()) == 0
    between = selectors.messages_by_seq(room_id=room.pk, after=1, before=4)
    assert [(message_id, seq, sender, content) for message_id, seq, sender, content, _, _ in between] == [
        (posted[1][0], 2, "Owner", "c1"),
        (posted[2][0], 3, "Owner", "c2"),
    ]
    assert all(sent_at.tzinfo is not None and reply_to is None for *_, sent_at, reply_to in between)


def test_a_rooms_changes_are_read_back_by_step_as_their_messages_state_now():
    """What a hub that missed an edit, a delete or a reaction on the bus reads back
    (chat/hub.py, `stored_events`): each step's message as it is now."""
    room, seat, _ = make_room()
    first, second, third = (post(seat, f"c{n}")[0] for n in range(3))  # seq 1 to 3
    now = timezone.now()
    services.message_edit(seat=seat, message_id=first, content="c0!", now=now)  # 4
    services.message_react(seat=seat, message_id=second, emoji="\U0001f44d", on=True)  # 5
    services.message_delete(seat=seat, message_id=third, now=now)  # 6
    _, other, _ = make_room()
    services.message_edit(seat=other, message_id=post(other, "elsewhere")[0], content="x", now=now)
    changes = selectors.changes_by_seq(room_id=room.pk, after=3, before=7)
    edited = {"type": "MessageEdited", "id": first, "content": "c0!", "edited_at": protocol.iso(now)}
    thumb = [{"emoji": "\U0001f44d", "names": ["Owner"]}]
    assert changes == [
        (4, first, edited),
        (5, second, {"type": "Reactions", "id": second, "reactions": thumb}),
        (6, third, {"type": "MessageDeleted", "id": third}),
    ]
    assert selectors.changes_by_seq(room_id=room.pk, after=4, before=6) == changes[1:2]
    services.message_delete(seat=seat, message_id=first, now=now)  # 7: the edit at 4 now reads as gone
    assert selectors.changes_by_seq(room_id=room.pk, after=3, before=5) == [
        (4, first, {"type": "MessageDeleted", "id": first})
    ]
    (deleted,) = services.messages_delete(message_ids=[second], now=now)  # an admin's: 8
    assert selectors.changes_by_seq(room_id=room.pk, after=7, before=9) == [
        (8, second, {"type": "MessageDeleted", "id": second})
    ]
    assert deleted[2] == 8


def test_a_rooms_change_records_are_bounded_however_many_changes_it_takes(settings):
    """Toggling a reaction without end keeps at most CHANGES_KEPT_STEPS rows a room,
    those of its last steps; another room's are its own."""
    settings.CHANGES_KEPT_STEPS = 5
    room, seat, _ = make_room()
    _, other, _ = make_room()
    message_id, _ = post(seat, "c")
    services.message_edit(seat=other, message_id=post(other, "elsewhere")[0], content="x", now=timezone.now())
    for turn in range(40):
        services.message_react(seat=seat, message_id=message_id, emoji="\U0001f44d", on=turn % 2 == 0)
    assert sorted(Change.objects.filter(room=room).values_list("seq", flat=True)) == [37, 38, 39, 40, 41]
    assert Change.objects.filter(room_id=other.room_id).count() == 1


def test_the_door_is_the_open_room_with_exactly_that_key():
    room, _, _ = make_room()
    door = selectors.room_door(join_key=room.join_key)
    assert door.room.pk == room.pk and door.password_hash == ""
    assert door.room.encryption_key == room.encryption_key  # unwrapped once, for the cache
    Room.objects.filter(pk=room.pk).update(password_hash="argon2$x")
    assert selectors.room_door(join_key=room.join_key).password_hash == "argon2$x"
    for key in (room.join_key.swapcase(), room.join_key + "x", ""):
        with pytest.raises(ProtocolError) as refused:
            selectors.room_door(join_key=key)
        assert refused.value.code == ErrorCode.ROOM_NOT_FOUND
    services.room_close(room_id=room.pk, now=timezone.now())
    with pytest.raises(ProtocolError) as refused:
        selectors.room_door(join_key=room.join_key)
    assert refused.value.code == ErrorCode.ROOM_NOT_FOUND


def test_the_door_cache_forgets_the_oldest_past_its_size():
    cache = selectors.DoorCache(size=2)
    doors = {key: selectors.Door(Room(name=key)) for key in ("a", "b", "c")}
    for key in ("a", "b"):
        cache.put(key, doors[key])
    assert cache.get("a") is doors["a"] and cache.get("x") is None
    cache.put("c", doors["c"])
    assert cache.get("a") is None and cache.get("b") is doors["b"] and cache.get("c") is doors["c"]
    cache.put("b", doors["a"])  # a key it has is replaced, and nothing else goes
    assert cache.get("b") is doors["a"] and cache.get("c") is doors["c"]
    cache.forget("b")
    cache.forget("x")
    assert cache.get("b") is None and cache.get("c") is doors["c"]


def test_room_info_is_what_room_created_and_room_joined_carry():
    room, _, _ = make_room()
    assert selectors.room_info(room) == {
        "id": str(room.pk),
        "name": "Room",
        "description": "",
        "join_key": room.join_key,
        "has_password": False,
        "owner": "Owner",
        "created_at": room.created_at.isoformat().replace("+00:00", "Z"),
        "sealed": False,
        "key_check": None,
    }
    room.password_hash = "argon2$x"
    assert selectors.room_info(room)["has_password"] is True
    room.sealed, room.key_check = True, "AAECAwQFBgcICQoLDA0ODw=="
    sealed = selectors.room_info(room)
    assert sealed["sealed"] is True and sealed["key_check"] == "AAECAwQFBgcICQoLDA0ODw=="
