"""Room keys at rest (chat/keys.py), their rotation (rewrap_room_keys) and chat.W005."""

import base64
import multiprocessing
import os
from io import StringIO
from uuid import uuid4

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from chat import checks, keys
from chat.models import Room
from tests.chat import key_reader
from tests.helpers import close_all, create_room, join_room

pytestmark = pytest.mark.django_db


def kek() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def make_room(room_key: str) -> Room:
    room_id = uuid4()
    return Room.objects.create(
        id=room_id,
        name="r",
        join_key_hash=keys.join_key_hash(uuid4().hex),
        wrapped_key=keys.wrap(room_id, room_key),
        owner_token_hash="x",
        owner_name="o",
        created_at=timezone.now(),
    )


def test_a_wrapped_key_opens_only_for_its_room_under_the_key_encryption_key(settings):
    settings.ROOM_KEY_ENCRYPTION_KEY = kek()
    room_id, room_key = uuid4(), keys.new_room_key()
    wrapped = keys.wrap(room_id, room_key)
    assert len(wrapped) == keys.WRAPPED_LENGTH and room_key not in wrapped
    assert keys.unwrap(room_id, wrapped) == room_key
    with pytest.raises(keys.KeyUnavailable):
        keys.unwrap(uuid4(), wrapped)
    settings.ROOM_KEY_ENCRYPTION_KEY = kek()
    with pytest.raises(keys.KeyUnavailable):
        keys.unwrap(room_id, wrapped)


def test_rewrap_moves_every_room_to_the_new_key_and_is_idempotent(settings, tmp_path):
    old = kek()
    settings.ROOM_KEY_ENCRYPTION_KEY = old
    room_keys = [keys.new_room_key() for _ in range(7)]
    rooms = [make_room(room_key) for room_key in room_keys]
    sealed = make_room(keys.new_room_key())
    Room.objects.filter(pk=sealed.pk).update(sealed=True, wrapped_key="", key_check="A" * 22 + "==")
    settings.ROOM_KEY_ENCRYPTION_KEY = kek()
    old_file = tmp_path / "old.key"
    old_file.write_text(old + "\n")
    out = StringIO()
    call_command("rewrap_room_keys", "--old-key-file", str(old_file), "--batch", "3", stdout=out)
    assert out.getvalue().strip().endswith("re-wrapped 7 room keys; 0 already under the current key")
    for room, room_key in zip(rooms, room_keys, strict=True):
        room.refresh_from_db()
        assert keys.unwrap(room.pk, room.wrapped_key) == room_key
    out = StringIO()
    call_command("rewrap_room_keys", stdout=out)  # no old key needed: nothing left under it
    assert out.getvalue().strip().endswith("re-wrapped 0 room keys; 7 already under the current key")
    sealed.refresh_from_db()
    assert sealed.wrapped_key == ""  # a sealed room has no key to re-wrap, and is passed over


def test_rewrap_with_the_previous_key_from_the_environment_and_a_wrong_old_key(settings):
    old = kek()
    settings.ROOM_KEY_ENCRYPTION_KEY = old
    room = make_room(keys.new_room_key())
    settings.ROOM_KEY_ENCRYPTION_KEY = kek()
    with pytest.raises(CommandError, match="no old key was given"):
        call_command("rewrap_room_keys", stdout=StringIO())
    settings.ROOM_KEY_ENCRYPTION_KEY_PREVIOUS = kek()
    with pytest.raises(CommandError, match="neither the current nor the old key"):
        call_command("rewrap_room_keys", stdout=StringIO())
    settings.ROOM_KEY_ENCRYPTION_KEY_PREVIOUS = old
    # During the rotation a server reads rooms under either key.
    assert keys.unwrap(room.pk, room.wrapped_key)
    call_command("rewrap_room_keys", stdout=StringIO())
    room.refresh_from_db()
    settings.ROOM_KEY_ENCRYPTION_KEY_PREVIOUS = ""
    assert keys.unwrap(room.pk, room.wrapped_key)


def test_check_deploy_warns_when_the_key_encryption_key_is_generated(settings):
    settings.ROOM_KEY_ENCRYPTION_KEY = ""
    assert [w.id for w in checks.generated_room_key_encryption_key_in_production(None)] == ["chat.W005"]
    settings.ROOM_KEY_ENCRYPTION_KEY = kek()
    assert checks.generated_room_key_encryption_key_in_production(None) == []


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"16 bytes, short.").decode(), "QUJD\n"])
@pytest.mark.parametrize("name", ["ROOM_KEY_ENCRYPTION_KEY", "ROOM_KEY_ENCRYPTION_KEY_PREVIOUS"])
def test_a_malformed_key_encryption_key_stops_the_server_at_start(settings, name, value):
    """chat.E001: an error of `manage.py check` (and so of serve's start), not a failure
    at the first room."""
    setattr(settings, name, value)
    (error,) = checks.malformed_room_key_encryption_keys(None)
    assert (error.id, error.msg) == ("chat.E001", f"{name} must be base64 of 32 bytes.")
    setattr(settings, name, kek() + "\n")  # as read from a file: the line's end is allowed
    assert checks.malformed_room_key_encryption_keys(None) == []


def test_processes_starting_together_read_one_whole_development_key(tmp_path):
    # Two server processes on one fresh CHAT_VAR_DIR: the one that does not create the
    # key file must never read it before it is written (an empty read failed a room create).
    # Forked from a fresh forkserver, not from this process: forking a process with
    # threads (the test run's) can leave a child stuck on a lock another thread held.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.chat.key_reader"])
    for attempt in range(20):
        path = str(tmp_path / f"key-{attempt}")
        start, results = context.Barrier(6), context.Queue()
        readers = [context.Process(target=key_reader.read_key, args=(path, start, results)) for _ in range(6)]
        for reader in readers:
            reader.start()
        read = [results.get(timeout=10) for _ in readers]
        for reader in readers:
            reader.join()
        assert len(read[0]) == 32, read
        assert read == [read[0]] * 6
        assert os.stat(path).st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path)) == sorted(f"key-{attempt}" for attempt in range(20))  # no temporaries


@pytest.mark.parametrize("content", [None, "not a key\n"], ids=["missing", "malformed"])
def test_an_old_key_file_that_holds_no_key_is_a_command_error(tmp_path, content):
    old_file = tmp_path / "old.key"
    if content is not None:
        old_file.write_text(content)
    for command in ("rewrap_room_keys", "reseal_files"):
        with pytest.raises(CommandError, match=f"{command}: .*old.key"):
            call_command(command, "--old-key-file", str(old_file), stdout=StringIO())


@pytest.mark.django_db(transaction=True)
async def test_a_copy_of_the_database_holds_neither_join_keys_nor_room_keys(layer):
    """A join key opens its room through the live server, which hands out the room key:
    the database keeps only its hash (README, "What a leak gives")."""
    owner, created = await create_room(password=None)
    info = created["room_info"]
    bob, joined = await join_room(info["join_key"], "Bob")  # the key still opens the room
    assert joined["room_info"]["join_key"] == info["join_key"]

    @database_sync_to_async
    def every_row() -> str:
        with connection.cursor() as cursor:
            rows = []
            for table in connection.introspection.table_names(cursor):
                cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
                rows.extend(cursor.fetchall())
        return str(rows)

    copy = await every_row()
    assert info["name"] in copy  # what is kept in clear is there
    assert info["join_key"] not in copy and created["encryption_key"] not in copy
    await close_all(owner, bob)


def test_a_database_under_other_key_encryption_keys_stops_the_server_at_start(settings):
    """chat.E002, a database check (`serve`, `migrate`, `check --database default`): a
    site restored under other keys started, answered /healthz, and then answered every
    join of an old room server_error. A rotation's previous key still opens them."""
    from django.core.checks import run_checks

    def errors() -> list[str]:
        return [m.id for m in run_checks(databases=["default"]) if m.id.startswith("chat.E")]

    old = settings.ROOM_KEY_ENCRYPTION_KEY = kek()
    assert errors() == []  # no room yet
    make_room(keys.new_room_key())
    assert errors() == []
    settings.ROOM_KEY_ENCRYPTION_KEY = kek()
    assert errors() == ["chat.E002"]
    assert "chat.E002" not in [m.id for m in run_checks()]  # only where the database is asked for
    settings.ROOM_KEY_ENCRYPTION_KEY_PREVIOUS = old
    assert errors() == []
