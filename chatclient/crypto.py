"""Chat content as PROTOCOL.md has it: base64(nonce(12) || ciphertext || tag(16)), AES-256-GCM."""

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class DecryptError(ValueError):
    """The content is not base64, too short, or does not open with the room key."""


def encrypt(key_b64: str, text: str, *, nonce: bytes | None = None) -> str:
    """Seal `text` under the room key; a fresh random nonce unless one is given (tests)."""
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    sealed = AESGCM(base64.b64decode(key_b64)).encrypt(nonce, text.encode(), None)
    return base64.b64encode(nonce + sealed).decode()


def decrypt(key_b64: str, content: str) -> str:
    try:
        raw = base64.b64decode(content, validate=True)
        opened = AESGCM(base64.b64decode(key_b64)).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], None)
        return opened.decode()
    except (binascii.Error, InvalidTag, ValueError) as exc:
        raise DecryptError(str(exc) or type(exc).__name__) from exc
