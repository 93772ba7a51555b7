"""chat/migrations/0004_room_key_wrapped.py on rows that exist: the plain room keys are
wrapped under ROOM_KEY_ENCRYPTION_KEY, and come back plain when it is reversed. Runs on
the suite's database (SQLite, or PostgreSQL with DATABASE_URL)."""

import base64
import os
from uuid import UUID, uuid4

import pytest
from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from chat import keys

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
