"""Chat content as PROTOCOL.md has it: base64(nonce(12) || ciphertext || tag(16)),
AES-256-GCM; in a standard room under the room key, in a sealed room under keys derived
from the secret in the share link (below)."""

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from chatclient import wire

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


# --- Sealed rooms (PROTOCOL.md, "Sealed rooms") ---------------------------------------
# The room secret lives only in the share link's fragment; every key comes from it
# through HKDF-SHA256 (RFC 5869, empty salt), as the browser derives them with WebCrypto.

SECRET_BYTES = 32
_SECRET_TEXT = re.compile(r"[A-Za-z0-9_-]{43}")
MESSAGE_KEY_INFO = b"roomchat/v1/message-key"
KEY_CHECK_INFO = b"roomchat/v1/key-check"
FILE_ASSOCIATED_DATA = b"roomchat/v1/file"


class LinkError(ValueError):
    """A share link without a whole room secret in its fragment (`#k=` and 43 characters)."""


def new_room_secret() -> bytes:
    return os.urandom(SECRET_BYTES)


def _hkdf(secret: bytes, info: bytes, length: int = 32) -> bytes:
    # salt=None is RFC 5869's default: HashLen zero bytes, which HMAC treats as no salt.
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


@dataclass(frozen=True)
class SealedKeys:
    """What a client derives from a sealed room's secret. The message key stays out of
    its repr (a log line, a traceback's locals, an error report)."""

    message_key: bytes = field(repr=False)
    key_check: str  # base64 of 16 bytes: what CreateRoom sends and room_info carries

    @classmethod
    def from_secret(cls, secret: bytes) -> "SealedKeys":
        if len(secret) != SECRET_BYTES:
            raise LinkError("a room secret is 32 bytes")
        key_check = base64.b64encode(_hkdf(secret, KEY_CHECK_INFO, 16)).decode()
        return cls(message_key=_hkdf(secret, MESSAGE_KEY_INFO), key_check=key_check)


def link_fragment(secret: bytes) -> str:
    """`k=` and the secret as base64url without padding (43 characters)."""
    return "k=" + base64.urlsafe_b64encode(secret).rstrip(b"=").decode()


def secret_from_link(link: str) -> bytes:
    """The room secret in a share link's fragment (`.../rooms/KEY/#k=...`), or LinkError."""
    _, _, fragment = link.partition("#")
    for part in fragment.split("&"):
        name, _, value = part.partition("=")
        if name == "k" and _SECRET_TEXT.fullmatch(value):
            secret = base64.urlsafe_b64decode(value + "=")
            if link_fragment(secret) == "k=" + value:  # no stray bits in the last character
                return secret
    raise LinkError("This link is incomplete: ask for the whole link.")


def message_associated_data(room_id: str, sender: str) -> bytes:
    return f"roomchat/v1|{room_id}|{sender}".encode()


def seal_message(message_key: bytes, room_id: str, sender: str, payload: dict) -> str:
    """A sealed room's chat content: the JSON payload ({"t": "text", "body": ...} or a
    file card) under the message key, bound to the room and the sender's name."""
    nonce = os.urandom(NONCE_BYTES)
    plaintext = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    sealed = AESGCM(message_key).encrypt(nonce, plaintext, message_associated_data(room_id, sender))
    return base64.b64encode(nonce + sealed).decode()


def open_message(message_key: bytes, room_id: str, sender: str, content: str) -> dict:
    """The payload of a sealed room's message from `sender` as the server delivered it;
    DecryptError when it does not verify (another key, or another sender: a server that
    re-attributes a message cannot make it read as someone else's)."""
    try:
        raw = base64.b64decode(content, validate=True)
        opened = AESGCM(message_key).decrypt(
            raw[:NONCE_BYTES], raw[NONCE_BYTES:], message_associated_data(room_id, sender)
        )
        payload = wire.loads(opened)
    except (binascii.Error, InvalidTag, ValueError) as exc:
        raise DecryptError(str(exc) or type(exc).__name__) from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("t"), str):
        raise DecryptError("not a sealed message payload")
    return payload


def seal_file(data: bytes) -> tuple[bytes, bytes]:
    """A file for a sealed room: (its new file key, nonce || ciphertext || tag)."""
    file_key, nonce = AESGCM.generate_key(bit_length=256), os.urandom(NONCE_BYTES)
    return file_key, nonce + AESGCM(file_key).encrypt(nonce, data, FILE_ASSOCIATED_DATA)


def open_file(file_key: bytes, blob: bytes) -> bytes:
    try:
        return AESGCM(file_key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], FILE_ASSOCIATED_DATA)
    except (InvalidTag, ValueError) as exc:
        raise DecryptError("the file does not open with its key: refused") from exc
