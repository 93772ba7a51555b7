"""chatclient/crypto.py against known answers: the shared AES-GCM vectors
(tests/vectors/aes_gcm.json, which the browser's tests read too), and content that
does not open. The vectors themselves are checked with `cryptography` directly, never
with the client."""

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chatclient import DecryptError, decrypt, encrypt  # the package's names: chatclient.crypto's

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
