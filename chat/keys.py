"""Room keys at rest: wrapped under a key-encryption key that never enters the database.

A wrapped key is base64 of `version (1 byte) || nonce (12) || ciphertext (32) || tag (16)`,
AES-256-GCM under ROOM_KEY_ENCRYPTION_KEY with the room's id as associated data, so a
wrapped key copied onto another room's row does not unwrap. Without the variable a key is
generated once into ROOM_KEY_ENCRYPTION_KEY_FILE (mode 0600), which suits a laptop and is
flagged by `check --deploy` (chat.W005). Unwrapping happens once per room per process
(selectors.Door), never per message.
"""

import base64
import binascii
import contextlib
import hashlib
import os
import secrets
import tempfile
from functools import cache
from pathlib import Path
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

VERSION = b"\x01"
NONCE_BYTES = 12
ROOM_KEY_BYTES = 32
# base64 of 1 + 12 + 32 + 16 bytes.
WRAPPED_LENGTH = 84


def development_key(key_file: str) -> bytes:
    """Read a key generated on this machine, or create it once (mode 0600): the room keys'
    key-encryption key here, and the files' key (files/blobs.py).

    The key is written whole into a temporary file and then linked into place, so
    processes starting together on one fresh directory never read a half-written file
    and all end up with the one key that won the link.
    """
    if not os.path.exists(key_file):
        directory, name = os.path.split(key_file)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{name}.", dir=directory or ".")  # mode 0600
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(base64.b64encode(os.urandom(32)) + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(temporary, key_file)
        finally:
            os.unlink(temporary)
    with open(key_file, "rb") as handle:
        return base64.b64decode(handle.read().strip())


class KeyUnavailable(Exception):
    """No configured key-encryption key unwraps this room's key."""


def parse_kek(value: str, name: str = "ROOM_KEY_ENCRYPTION_KEY") -> bytes:
    """The 32 raw bytes of a base64 key-encryption key, else ImproperlyConfigured."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImproperlyConfigured(f"{name} must be base64 of 32 bytes.") from exc
    if len(raw) != 32:
        raise ImproperlyConfigured(f"{name} must be base64 of 32 bytes.")
    return raw


def read_key_file(path: Path) -> AESGCM:
    """The key in a file (base64 of 32 bytes, as a generated key file holds it): a
    rotation command's `--old-key-file`. ImproperlyConfigured if it is unreadable or not one."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ImproperlyConfigured(f"cannot read {path}: {exc}") from exc
    return AESGCM(parse_kek(text, str(path)))


@cache
def _cipher(configured: str, key_file: str) -> AESGCM:
    if configured:
        return AESGCM(parse_kek(configured))
    return AESGCM(parse_kek(base64.b64encode(development_key(key_file)).decode()))


def current() -> AESGCM:
    """The key-encryption key new rooms are wrapped under."""
    os.makedirs(os.path.dirname(settings.ROOM_KEY_ENCRYPTION_KEY_FILE), exist_ok=True)
    return _cipher(settings.ROOM_KEY_ENCRYPTION_KEY, str(settings.ROOM_KEY_ENCRYPTION_KEY_FILE))


def previous() -> AESGCM | None:
    """The key being rotated away from (ROOM_KEY_ENCRYPTION_KEY_PREVIOUS), if any."""
    value = settings.ROOM_KEY_ENCRYPTION_KEY_PREVIOUS
    return _cipher(value, "") if value else None


def new_join_key() -> str:
    return secrets.token_urlsafe(16)  # 128 bits


def join_key_hash(join_key: str) -> str:
    """What the database keeps of a join key: its sha256 (hex). A key holds 128 random
    bits, so its hash needs no salt or stretching to keep the key from a database copy."""
    return hashlib.sha256(join_key.encode("utf-8", "surrogatepass")).hexdigest()


def new_room_key() -> str:
    """A fresh room key: 32 bytes from a CSPRNG, standard base64 (PROTOCOL.md, Encryption)."""
    return base64.b64encode(secrets.token_bytes(ROOM_KEY_BYTES)).decode()


def wrap(room_id: UUID, room_key: str, kek: AESGCM | None = None) -> str:
    """Seal a room key (base64) for its row."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = (kek or current()).encrypt(nonce, base64.b64decode(room_key), room_id.bytes)
    return base64.b64encode(VERSION + nonce + sealed).decode()


def unwrap_with(room_id: UUID, wrapped: str, kek: AESGCM) -> str:
    """The room key (base64) under this key-encryption key; InvalidTag if not under it."""
    raw = base64.b64decode(wrapped)
    if raw[:1] != VERSION:
        raise KeyUnavailable(f"room {room_id}: unknown wrapped key version")
    nonce, sealed = raw[1 : 1 + NONCE_BYTES], raw[1 + NONCE_BYTES :]
    return base64.b64encode(kek.decrypt(nonce, sealed, room_id.bytes)).decode()


def unwrap(room_id: UUID, wrapped: str) -> str:
    """The room key, under the current key-encryption key or, during a rotation, the previous one."""
    for kek in (current(), previous()):
        if kek is None:
            continue
        try:
            return unwrap_with(room_id, wrapped, kek)
        except InvalidTag:
            continue
    raise KeyUnavailable(
        f"room {room_id}: its key is wrapped under a key-encryption key this process does not have "
        "(ROOM_KEY_ENCRYPTION_KEY, ROOM_KEY_ENCRYPTION_KEY_PREVIOUS)"
    )
