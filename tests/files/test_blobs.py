"""The blob key: from the environment, or generated once (0600) for a laptop; its
rotation (FILES_ENCRYPTION_KEY_PREVIOUS, `manage.py reseal_files`)."""

import base64
import os
import stat
import uuid
from io import StringIO
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError

from files import blobs, store
from tests.helpers import seat_in_new_room, stored_file


def test_a_generated_key_is_private_and_stays_the_same(settings, tmp_path):
    settings.FILES_ENCRYPTION_KEY = ""
    file_id = uuid.uuid4()
    sealed = blobs.seal(file_id, b"hello")
    key_file = tmp_path / "files.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(base64.b64decode(key_file.read_bytes())) == 32
    blobs._key.cache_clear()
    assert blobs.open_sealed(file_id, sealed) == b"hello"


def test_a_configured_key_is_used_and_a_bad_one_refused(settings, tmp_path):
    settings.FILES_ENCRYPTION_KEY = base64.b64encode(bytes(range(32))).decode()
    file_id = uuid.uuid4()
    sealed = blobs.seal(file_id, b"hello")
    assert not (tmp_path / "files.key").exists()
    settings.FILES_ENCRYPTION_KEY = base64.b64encode(bytes(32)).decode()
    with pytest.raises(Exception):  # noqa: B017 (InvalidTag: another key)
        blobs.open_sealed(file_id, sealed)
    for bad in ("not base64!", base64.b64encode(bytes(16)).decode()):
        settings.FILES_ENCRYPTION_KEY = bad
        with pytest.raises(ImproperlyConfigured):
            blobs.seal(file_id, b"hello")


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_during_a_rotation_blobs_open_under_the_previous_key_too(settings):
    settings.FILES_ENCRYPTION_KEY = old = key()
    file_id = uuid.uuid4()
    sealed = blobs.seal(file_id, b"hello")
    settings.FILES_ENCRYPTION_KEY = key()
    with pytest.raises(InvalidTag):
        blobs.open_sealed(file_id, sealed)
    settings.FILES_ENCRYPTION_KEY_PREVIOUS = old
    assert blobs.open_sealed(file_id, sealed) == b"hello"
    with pytest.raises(InvalidTag):  # still this file's alone
        blobs.open_sealed(uuid.uuid4(), sealed)


@pytest.mark.django_db
def test_reseal_moves_every_blob_to_the_new_key_in_place_and_is_idempotent(settings, tmp_path):
    settings.FILES_ENCRYPTION_KEY = old = key()
    seat = seat_in_new_room()
    files = [stored_file(seat) for _ in range(3)] + [stored_file(seat, deleted=True)]
    contents = {file.id: blobs.read(file.id, file.blob) for file in files}
    settings.FILES_ENCRYPTION_KEY = key()
    old_file = tmp_path / "old.key"
    old_file.write_text(old + "\n")
    out = StringIO()
    call_command("reseal_files", "--old-key-file", str(old_file), stdout=out)
    assert out.getvalue().startswith("reseal_files: 4 re-encrypted, 0 already")
    for file in files:  # the same names, the same bytes, the new key alone
        assert blobs.read(file.id, file.blob) == contents[file.id]
    on_disk = [name for name, entry, _ in store.entries(Path(settings.FILES_ROOT)) if entry.is_file()]
    assert sorted(on_disk) == sorted(file.blob for file in files)  # nothing left beside them
    out = StringIO()
    call_command("reseal_files", stdout=out)  # no old key needed: nothing left under it
    assert out.getvalue().startswith("reseal_files: 0 re-encrypted, 4 already")


@pytest.mark.django_db
def test_reseal_names_the_blobs_it_cannot_open_and_keeps_them(settings):
    settings.FILES_ENCRYPTION_KEY = key()
    seat = seat_in_new_room()
    lost, garbled = stored_file(seat), stored_file(seat)
    with open(blobs.storage().path(garbled.blob), "r+b") as handle:
        handle.write(b"\x07")  # a version no blob has
    settings.FILES_ENCRYPTION_KEY = key()
    settings.FILES_ENCRYPTION_KEY_PREVIOUS = key()  # not the one it is under
    path = blobs.storage().path(lost.blob)
    before = open(path, "rb").read()
    with pytest.raises(CommandError, match="2 open under neither key") as failed:
        call_command("reseal_files", stdout=StringIO())
    assert str(lost.id) in str(failed.value) and str(garbled.id) in str(failed.value)
    assert open(path, "rb").read() == before
