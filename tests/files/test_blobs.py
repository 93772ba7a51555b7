"""The blob key: from the environment, or generated once (0600) for a laptop."""

import base64
import stat
import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured

from files import blobs


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
