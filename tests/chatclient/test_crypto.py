"""chatclient/crypto.py against known answers: the shared AES-GCM vectors
(tests/vectors/aes_gcm.json, which the browser's tests read too), sealed rooms' fixed
values (tests/vectors/sealed.json, the same), and content that does not open. The
vectors themselves are checked with `cryptography` directly, never with the client."""

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chatclient import DecryptError, decrypt, encrypt  # the package's names: chatclient.crypto's
from chatclient.crypto import SealedKeys, link_fragment, open_file, open_message, secret_from_link

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "aes_gcm.json").read_text())
KEY = VECTORS["key"]


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda case: repr(case["plaintext"][:12]))
def test_vector_is_aes_256_gcm_as_the_protocol_says(case):
    """content = base64(nonce || ciphertext || tag), AES-256-GCM without associated data."""
    nonce = base64.b64decode(case["nonce"])
    sealed = AESGCM(base64.b64decode(KEY)).encrypt(nonce, case["plaintext"].encode(), None)
    assert base64.b64encode(nonce + sealed).decode() == case["content"]


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda case: repr(case["plaintext"][:12]))
def test_shared_vector_decrypts_and_encrypts_with_the_client(case):
    """The vectors every client shares (the browser's tests read them too)."""
    assert decrypt(KEY, case["content"]) == case["plaintext"]
    nonce = base64.b64decode(case["nonce"])
    assert encrypt(KEY, case["plaintext"], nonce=nonce) == case["content"]


def test_each_message_gets_a_fresh_nonce():
    first, second = encrypt(KEY, "same text"), encrypt(KEY, "same text")
    assert first != second and base64.b64decode(first)[:12] != base64.b64decode(second)[:12]
    assert decrypt(KEY, first) == decrypt(KEY, second) == "same text"


def flip_last_bit(content: str) -> str:
    raw = bytearray(base64.b64decode(content))
    raw[-1] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    ("key", "content"),
    [
        (KEY, flip_last_bit(VECTORS["cases"][0]["content"])),  # tampered with
        (base64.b64encode(bytes(32)).decode(), VECTORS["cases"][0]["content"]),  # another room's key
        (KEY, "not base64!"),
        (KEY, VECTORS["cases"][0]["content"][:8] + "\n" + VECTORS["cases"][0]["content"][8:]),  # not strict
        (KEY, base64.b64encode(bytes(20)).decode()),  # shorter than nonce and tag
    ],
    ids=["tampered", "wrong-key", "not-base64", "not-strict-base64", "too-short"],
)
def test_what_does_not_open_is_a_decrypt_error(key, content):
    with pytest.raises(DecryptError):
        decrypt(key, content)


# Sealed rooms' fixed values (tests/vectors/sealed.json), for client authors; the page's
# tests read them too (tests/browser/test_sealed_crypto.py).
SEALED = json.loads((Path(__file__).parents[1] / "vectors" / "sealed.json").read_text())


def test_sealed_vectors_derive_as_the_protocol_says():
    """HKDF-SHA256 with an empty salt, by `cryptography` directly; then the client's own
    derivation and the share link's fragment."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    secret = base64.b64decode(SEALED["room_secret"])

    def derive(info: bytes, length: int) -> str:
        return base64.b64encode(HKDF(hashes.SHA256(), length, None, info).derive(secret)).decode()

    assert derive(b"roomchat/v1/message-key", 32) == SEALED["message_key"]
    assert derive(b"roomchat/v1/key-check", 16) == SEALED["key_check"]
    keys = SealedKeys.from_secret(secret)
    assert (base64.b64encode(keys.message_key).decode(), keys.key_check) == (
        SEALED["message_key"],
        SEALED["key_check"],
    )
    assert link_fragment(secret) == SEALED["fragment"]
    assert secret_from_link(f"https://chat.example.org/rooms/KEY/#{SEALED['fragment']}") == secret


@pytest.mark.parametrize(
    "case", SEALED["messages"], ids=lambda case: case["payload"]["t"] + ":" + case["sender"]
)
def test_sealed_vector_messages_open_with_the_client_and_seal_with_their_nonce(case):
    key = base64.b64decode(SEALED["message_key"])
    room = SEALED["room_id"]
    assert open_message(key, room, case["sender"], case["content"]) == case["payload"]
    assert json.loads(case["plaintext_utf8"]) == case["payload"]
    nonce = base64.b64decode(case["nonce"])
    sealed = AESGCM(key).encrypt(
        nonce, case["plaintext_utf8"].encode(), f"roomchat/v1|{room}|{case['sender']}".encode()
    )
    assert base64.b64encode(nonce + sealed).decode() == case["content"]
    with pytest.raises(DecryptError):
        open_message(key, room, case["sender"] + "x", case["content"])  # re-attributed


def test_the_sealed_vector_file_opens_to_what_its_card_says():
    card, blob = SEALED["file"]["card"], base64.b64decode(SEALED["file"]["blob"])
    data = open_file(base64.b64decode(card["key"]), blob)
    assert data.decode() == SEALED["file"]["data_utf8"]
    assert (len(data), hashlib.sha256(data).hexdigest()) == (card["size"], card["sha256"])
    assert SEALED["messages"][-1]["payload"] == card  # the card travels as a message
