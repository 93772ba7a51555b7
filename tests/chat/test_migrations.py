"""Migrations on rows that exist: 0004 wraps the plain room keys under
ROOM_KEY_ENCRYPTION_KEY (and reversed, they come back plain); 0005 keeps each
participant's outbox id; 0010 drops the foreign keys' own indexes; 0013 keeps only the
join keys' hashes. Runs on the suite's
database (SQLite, or PostgreSQL with DATABASE_URL)."""

import base64
import os
from importlib import import_module
from uuid import UUID, uuid4

import pytest
from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from chat import keys, selectors

# Transactional: migrations cannot run inside the test's transaction on SQLite.
pytestmark = pytest.mark.django_db(transaction=True)

PLAIN = [("chat", "0003_message_sequence")]
WRAPPED = [("chat", "0004_room_key_wrapped")]


def migrate(targets: list[tuple[str, str]]) -> Apps:
    """Migrate the test database to `targets`; the historical models there."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def latest() -> list[tuple[str, str]]:
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def old_rooms(apps: Apps, count: int) -> dict[UUID, str]:
    """Rooms as 0003 stored them (each with a message): room id -> its plain key."""
    Room, Message = apps.get_model("chat", "Room"), apps.get_model("chat", "Message")
    plain = {uuid4(): keys.new_room_key() for _ in range(count)}
    for room_id, room_key in plain.items():
        room = Room.objects.create(
            id=room_id,
            name="r",
            join_key=room_id.hex,
            encryption_key=room_key,
            owner_token_hash="x",
            owner_name="o",
            created_at=timezone.now(),
        )
        Message.objects.create(room=room, sender="o", content="c", sent_at=timezone.now(), seq=1)
    return plain


def test_0004_wraps_the_plain_room_keys_and_reversing_it_unwraps_them(settings):
    settings.ROOM_KEY_ENCRYPTION_KEY = base64.b64encode(os.urandom(32)).decode()
    try:
        plain = old_rooms(migrate(PLAIN), 3)

        Room = migrate(WRAPPED).get_model("chat", "Room")
        columns = {field.name for field in Room._meta.fields}
        assert "wrapped_key" in columns and "encryption_key" not in columns
        stored = dict(Room.objects.values_list("id", "wrapped_key"))
        assert stored.keys() == plain.keys()
        for room_id, room_key in plain.items():
            wrapped = stored[room_id]
            assert len(wrapped) == keys.WRAPPED_LENGTH and room_key not in wrapped
            assert keys.unwrap(room_id, wrapped) == room_key

        back = migrate(PLAIN)
        assert dict(back.get_model("chat", "Room").objects.values_list("id", "encryption_key")) == plain
        assert back.get_model("chat", "Message").objects.count() == len(plain)  # the rows stay
    finally:
        migrate(latest())  # the schema the rest of the suite expects


def test_0005_keeps_only_the_outbox_id_of_each_participant():
    """channel_name was "HUB_CHANNEL#OUTBOX_ID"; the row keeps the outbox id alone."""
    try:
        apps = migrate(WRAPPED)
        room = apps.get_model("chat", "Room").objects.create(
            name="r", join_key="k0005", wrapped_key="w", owner_token_hash="x", owner_name="o",
            created_at=timezone.now(),
        )  # fmt: skip
        now = timezone.now()
        outbox = uuid4().hex
        row = apps.get_model("chat", "Participant").objects.create(
            room=room, name="A", name_key="a", channel_name=f"hub.x1!{uuid4().hex}#{outbox}",
            process_id="p", joined_at=now, last_seen=now,
        )  # fmt: skip
        Participant = migrate([("chat", "0005_participant_outbox_id")]).get_model("chat", "Participant")
        assert Participant.objects.get(pk=row.pk).outbox_id == outbox
    finally:
        migrate(latest())


def test_0006_lets_the_previous_release_create_rooms_during_a_rolling_restart():
    """A process of the release before 0006 inserts rooms without `sealed` and
    `key_check`: the database's defaults make them standard rooms, not an error."""
    try:
        migrate([("chat", "0012_change_slots")])  # the last schema with join keys in clear
        room_id = uuid4()
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO chat_room (id, name, description, join_key, password_hash, wrapped_key,"
                " owner_token_hash, owner_name, created_at, message_seq)"
                " VALUES (%s, 'r', '', %s, '', 'w', 'x', 'o', %s, 0)",
                [room_id.hex if connection.vendor == "sqlite" else room_id, room_id.hex, timezone.now()],
            )
        Room = migrate(latest()).get_model("chat", "Room")
        room = Room.objects.get(pk=room_id)
        assert room.sealed is False and room.key_check == ""
    finally:
        migrate(latest())


def test_0013_keeps_only_each_join_keys_hash_and_the_links_held_still_open_their_rooms(monkeypatch):
    monkeypatch.setattr(import_module("chat.migrations.0013_room_join_key_hash"), "BATCH", 2)
    try:
        Room = migrate([("chat", "0012_change_slots")]).get_model("chat", "Room")
        held = {}
        for n in range(5):  # three batches of two
            room_id, join_key = uuid4(), keys.new_join_key()
            wrapped = keys.wrap(room_id, keys.new_room_key())
            Room.objects.create(
                id=room_id, name=f"r{n}", join_key=join_key, wrapped_key=wrapped,
                owner_token_hash="x", owner_name="o", created_at=timezone.now(),
            )  # fmt: skip
            held[join_key] = room_id
        Room = migrate(latest()).get_model("chat", "Room")
        assert "join_key" not in {field.name for field in Room._meta.fields}
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM chat_room")
            stored = str(cursor.fetchall())
        assert [join_key for join_key in held if join_key in stored] == []
        assert {join_key: selectors.room_door(join_key=join_key).room.pk for join_key in held} == held
    finally:
        migrate(latest())


# Each foreign key that 0010 leaves without an index of its own, and the index that
# begins with its column instead.
COVERED = [("chat_message", "room_id"), ("chat_participant", "room_id"), ("chat_reaction", "message_id")]


def indexes_beginning_with(table: str, column: str) -> list[list[str]]:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, table).values()
    return [
        entry["columns"]
        for entry in found
        if (entry["index"] or entry["unique"]) and entry["columns"][:1] == [column]
    ]


def test_0010_drops_the_foreign_keys_own_indexes_and_reversing_it_makes_them_again():
    try:
        migrate([("chat", "0009_participant_token")])
        for table, column in COVERED:
            assert [column] in indexes_beginning_with(table, column)
        migrate([("chat", "0010_drop_room_indexes_covered")])
        for table, column in COVERED:
            left = indexes_beginning_with(table, column)
            assert [column] not in left and left  # a longer one still serves the lookups
    finally:
        migrate(latest())
