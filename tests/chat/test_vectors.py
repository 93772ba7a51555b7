"""The shared AES-GCM vectors decrypt (and re-encrypt) with `cryptography`, as in the browser."""

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.chat.helpers import decrypt

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "aes_gcm.json").read_text())


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda case: repr(case["plaintext"][:12]))
def test_vector_decrypts_and_encrypts(case):
    assert decrypt(VECTORS["key"], case["content"]) == case["plaintext"]
    nonce = base64.b64decode(case["nonce"])
    sealed = AESGCM(base64.b64decode(VECTORS["key"])).encrypt(nonce, case["plaintext"].encode(), None)
    assert base64.b64encode(nonce + sealed).decode() == case["content"]
