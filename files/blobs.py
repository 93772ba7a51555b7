"""File contents at rest: AES-256-GCM blobs with random names in FILES_ROOT.

A blob is `version (1 byte) || nonce (12) || ciphertext || tag (16)`, sealed with the
file's id as associated data, so a blob cannot be passed off as another file's. The
key comes from FILES_ENCRYPTION_KEY; without it a key is generated once into
FILES_KEY_FILE (mode 0600), which suits a laptop and is flagged by `check --deploy`.
During a rotation blobs open under FILES_ENCRYPTION_KEY_PREVIOUS too, and `manage.py
reseal_files` moves them onto the current key (`reseal`).
"""

import os
import secrets
from functools import cache
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import FileSystemStorage
from django.db import transaction

from chat.keys import development_key, parse_kek
from files import store

VERSION = b"\x01"
NONCE_BYTES = 12


def storage() -> FileSystemStorage:
    """Django's storage API over the private directory; files 0600, folders 0700."""
    return FileSystemStorage(
        location=settings.FILES_ROOT,
        base_url=None,
        file_permissions_mode=0o600,
        directory_permissions_mode=0o700,
    )


@cache
def _key(configured: str, key_file: str) -> AESGCM:
    raw = parse_kek(configured, "FILES_ENCRYPTION_KEY") if configured else development_key(key_file)
    if len(raw) != 32:
        raise ImproperlyConfigured(f"{key_file} must hold 32 bytes.")
    return AESGCM(raw)


def cipher() -> AESGCM:
    os.makedirs(os.path.dirname(settings.FILES_KEY_FILE), exist_ok=True)
    return _key(settings.FILES_ENCRYPTION_KEY, str(settings.FILES_KEY_FILE))


@cache
def _previous(configured: str) -> AESGCM:
    return AESGCM(parse_kek(configured, "FILES_ENCRYPTION_KEY_PREVIOUS"))


def previous_cipher() -> AESGCM | None:
    """The key being rotated away from (FILES_ENCRYPTION_KEY_PREVIOUS), if any."""
    value = settings.FILES_ENCRYPTION_KEY_PREVIOUS
    return _previous(value) if value else None


def seal(file_id: UUID, data: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return VERSION + nonce + cipher().encrypt(nonce, data, file_id.bytes)


def open_with(file_id: UUID, blob: bytes, key: AESGCM) -> bytes:
    """The file's bytes under this key; InvalidTag if the blob is not under it (or not this file's)."""
    if blob[:1] != VERSION:
        raise ValueError("unknown blob version")
    nonce = blob[1 : 1 + NONCE_BYTES]
    return key.decrypt(nonce, blob[1 + NONCE_BYTES :], file_id.bytes)


def open_sealed(file_id: UUID, blob: bytes) -> bytes:
    """The file's bytes, under the current key or, during a rotation, the previous one."""
    try:
        return open_with(file_id, blob, cipher())
    except InvalidTag:
        previous = previous_cipher()
        if previous is None:
            raise
    return open_with(file_id, blob, previous)


def reseal(file_id: UUID, name: str, old: AESGCM | None) -> bool:
    """Move one blob onto the current key: read, opened under `old`, sealed anew and
    renamed over itself, so a download reads the old blob or the new one, never half of
    one. False when it already is under the current key. InvalidTag when it opens under
    neither key; FileNotFoundError when it is gone (purged meanwhile)."""
    if not store.BLOB_NAME.fullmatch(name):
        raise ValueError(f"not a blob name: {name!r}")
    path = storage().path(name)
    with open(path, "rb") as handle:
        blob = handle.read()
    try:
        open_with(file_id, blob, cipher())
        return False
    except InvalidTag:
        if old is None:
            raise
    data = open_with(file_id, blob, old)
    # Named as a blob of the same folder: left behind by a crash, it is an orphan that
    # purge_files removes, never a stranger that makes the store unsafe (files/store.py).
    folder = name[:2]
    temporary = os.path.join(os.path.dirname(path), folder + secrets.token_hex(15))
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(seal(file_id, data))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return True


def new_name() -> str:
    """Random, never derived from the user's file name; two-level fan-out."""
    token = secrets.token_hex(16)
    return f"{token[:2]}/{token}"


def write(file_id: UUID, data: bytes) -> str:
    """Encrypt and store `data`; returns the blob's name. A write that fails (a full
    disk) leaves nothing behind: a half-written blob would hold the last free bytes
    until purge_files took it as an orphan, and the database needs them meanwhile."""
    root = store.ready()
    sealed = seal(file_id, data)
    name = new_name()
    path = root / name
    path.parent.mkdir(mode=0o700, exist_ok=True)
    # O_EXCL: the file removed on failure is the one this call created, never another.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(sealed)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return name


def read(file_id: UUID, name: str) -> bytes:
    with storage().open(name, "rb") as handle:
        return open_sealed(file_id, handle.read())


def remove(name: str) -> None:
    """Delete one blob; a name that is not a blob's (a bad row) is never a path to delete."""
    if not store.BLOB_NAME.fullmatch(name):
        raise ValueError(f"not a blob name: {name!r}")
    storage().delete(name)


def remove_on_commit(names: list[str]) -> None:
    """Delete blobs once the transaction that dropped their rows has committed."""

    def remove_all() -> None:
        for name in names:
            remove(name)

    transaction.on_commit(remove_all)
