"""Sealed rooms' cryptography in the page (chat/static/chat/sealed.js, WebCrypto) against
the Python client's (chatclient/crypto.py, `cryptography`), both ways: the same keys from
the same secret, messages and files sealed by one open in the other, a re-attributed
message and a tampered file are refused, and share-link fragments parse exactly."""

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chatclient.crypto import (
    DecryptError,
    LinkError,
    SealedKeys,
    link_fragment,
    message_associated_data,
    new_room_secret,
    open_file,
    open_message,
    seal_file,
    seal_message,
    secret_from_link,
)

pytestmark = pytest.mark.browser

ROOM = "3f0e8c1a-5b7d-4e2f-9a6c-1d2e3f4a5b6c"


def in_page(page, script: str, arg):
    """Run `script` in the page with `s` (sealed.js), `c` (crypto.js) and `arg` in scope
    (composed here: the page's CSP rightly forbids eval)."""
    prelude = (
        'const s = await import("/static/chat/sealed.js"); const c = await import("/static/chat/crypto.js");'
    )
    return page.evaluate(f"async (arg) => {{ {prelude} {script} }}", arg)


def test_the_page_derives_the_keys_and_opens_what_python_seals(server, new_page):
    page = new_page(server.http)
    secret = new_room_secret()
    keys = SealedKeys.from_secret(secret)
    from_python = seal_message(keys.message_key, ROOM, "Ann", {"t": "text", "body": "Grüße 🔒"})
    file_key, blob = seal_file(b"%PDF-1.7 bytes")
    card = {
        "key": base64.b64encode(file_key).decode(),
        "size": 14,
        "sha256": hashlib.sha256(b"%PDF-1.7 bytes").hexdigest(),
    }
    result = in_page(
        page,
        """
        const secret = s.secretFromFragment("#" + arg.fragment);
        const keys = await s.deriveKeys(secret);
        const opened = await s.openMessage(keys.messageKey, arg.room, "Ann", arg.content);
        let reattributed = "opened";
        try { await s.openMessage(keys.messageKey, arg.room, "Mallory", arg.content); }
        catch { reattributed = "refused"; }
        const file = await s.openFile(arg.card, c.fromBase64(arg.blob));
        const tampered = c.fromBase64(arg.blob); tampered[20] ^= 1;
        let tamperedFile = "opened";
        try { await s.openFile(arg.card, tampered); } catch { tamperedFile = "refused"; }
        let wrongSize = "opened";
        try { await s.openFile({...arg.card, size: 15}, c.fromBase64(arg.blob)); }
        catch { wrongSize = "refused"; }
        return {keyCheck: keys.keyCheck, opened, reattributed, file: new TextDecoder().decode(file),
                tamperedFile, wrongSize};
        """,
        {
            "fragment": link_fragment(secret),
            "room": ROOM,
            "content": from_python,
            "card": card,
            "blob": base64.b64encode(blob).decode(),
        },
    )
    assert result == {
        "keyCheck": keys.key_check,
        "opened": {"t": "text", "body": "Grüße 🔒"},
        "reattributed": "refused",
        "file": "%PDF-1.7 bytes",
        "tamperedFile": "refused",
        "wrongSize": "refused",
    }


def test_python_opens_what_the_page_seals(server, new_page):
    page = new_page(server.http)
    result = in_page(
        page,
        """
        const secret = s.newSecret();
        const keys = await s.deriveKeys(secret);
        const payload = {t: "text", body: "from the page ✓"};
        const content = await s.sealMessage(keys.messageKey, arg.room, "Bob", payload);
        const sealed = await s.sealFile(new TextEncoder().encode("file from the page"));
        return {fragment: s.fragmentOf(secret), keyCheck: keys.keyCheck, content,
                fileKey: sealed.key, blob: c.toBase64(sealed.blob)};
        """,
        {"room": ROOM},
    )
    assert result["fragment"].startswith("k=") and len(result["fragment"]) == 45
    secret = base64.urlsafe_b64decode(result["fragment"][2:] + "=")
    keys = SealedKeys.from_secret(secret)
    assert keys.key_check == result["keyCheck"]
    assert open_message(keys.message_key, ROOM, "Bob", result["content"]) == {
        "t": "text",
        "body": "from the page ✓",
    }
    with pytest.raises(DecryptError):
        open_message(keys.message_key, ROOM, "Ann", result["content"])
    assert (
        open_file(base64.b64decode(result["fileKey"]), base64.b64decode(result["blob"]))
        == b"file from the page"
    )


# Plaintexts any member can seal, and whether both clients open them: only PROTOCOL.md's
# strict JSON opens (no byte order mark, NaN, lone surrogate, nesting past 32 levels).
PLAINTEXTS = [
    (b'{"t":"text","body":"plain"}', True),
    (b"\xef\xbb\xbf" + b'{"t":"text","body":"after a byte order mark"}', False),
    (b'{"t":"text","body":"x","n":NaN}', False),
    (b'{"t":"text","body":"half a pair \\ud800"}', False),
    (b'{"t":"text","body":"a whole pair \\ud83d\\ude00"}', True),
    (b'{"t":"text","body":"x","n":' + b"[" * 31 + b"]" * 31 + b"}", True),
    (b'{"t":"text","body":"x","n":' + b"[" * 32 + b"]" * 32 + b"}", False),
    (b'{"t":"text","body":"x","n":' + b"[" * 3000 + b"]" * 3000 + b"}", False),
]


def test_the_page_and_python_open_the_same_plaintexts_and_refuse_the_same(server, new_page):
    page = new_page(server.http)
    secret = new_room_secret()
    keys = SealedKeys.from_secret(secret)
    contents = []
    for plaintext, _ in PLAINTEXTS:
        nonce = os.urandom(12)
        sealed = AESGCM(keys.message_key).encrypt(nonce, plaintext, message_associated_data(ROOM, "Ann"))
        contents.append(base64.b64encode(nonce + sealed).decode())
    in_browser = in_page(
        page,
        """
        const keys = await s.deriveKeys(s.secretFromFragment("#" + arg.fragment));
        const opened = [];
        for (const content of arg.contents) {
          try { await s.openMessage(keys.messageKey, arg.room, "Ann", content); opened.push(true); }
          catch { opened.push(false); }
        }
        return opened;
        """,
        {"room": ROOM, "contents": contents, "fragment": link_fragment(secret)},
    )

    def in_python(content: str) -> bool:
        try:
            open_message(keys.message_key, ROOM, "Ann", content)
        except DecryptError:
            return False
        return True

    expected = [opens for _, opens in PLAINTEXTS]
    assert in_browser == expected and [in_python(content) for content in contents] == expected


def test_fragments_parse_exactly_as_the_python_client_parses_them(server, new_page):
    page = new_page(server.http)
    secret = new_room_secret()
    fragment = link_fragment(secret)
    last = fragment[-1]
    cases = {
        "whole": "#" + fragment,
        "truncated": "#" + fragment[:-1],
        "too long": "#" + fragment + "A",
        "missing": "",
        "other name": "#key=" + fragment[2:],
        "stray bits": "#" + fragment[:-1] + ("B" if last != "B" else "C"),
        "with another parameter": "#x=1&" + fragment,
        # Percent-encoding and a cut-short k before the whole one: the page took the first
        # (decoded), the Python client the first whole one (undecoded), so one link could
        # open as two different secrets.
        "percent-encoded": "#k=%" + fragment[2:].encode().hex()[:2].upper() + fragment[3:],
        "a cut-short k first": "#k=" + fragment[2:-1] + "&" + fragment,
        "another whole k after": "#" + fragment + "&" + link_fragment(new_room_secret()),
    }
    parsed = in_page(
        page,
        """
        const out = {};
        for (const [name, fragment] of Object.entries(arg)) {
            const secret = s.secretFromFragment(fragment);
            out[name] = secret && c.toBase64(secret);
        }
        return out;
        """,
        cases,
    )
    whole = base64.b64encode(secret).decode()
    assert parsed == {
        "whole": whole,
        "truncated": None,
        "too long": None,
        "missing": None,
        "other name": None,
        "stray bits": None,
        "with another parameter": whole,
        "percent-encoded": None,
        "a cut-short k first": whole,
        "another whole k after": whole,
    }
    assert parsed == {name: python_parse(fragment) for name, fragment in cases.items()}


def python_parse(fragment: str) -> str | None:
    try:
        return base64.b64encode(secret_from_link("https://host/rooms/KEY/" + fragment)).decode()
    except LinkError:
        return None


def test_base64_is_the_same_with_and_without_the_browsers_own(server, new_page):
    """crypto.js uses Uint8Array's toBase64/fromBase64 where the browser has them and its
    own chunked btoa/atob elsewhere: both give Python's base64, both ways, at every length
    around a chunk's edge, and refuse the same broken text."""
    page = new_page(server.http)
    data = bytes(range(256)) * 130  # 33,280 bytes: past the fallback's 32,768-byte chunk
    lengths = [0, 1, 2, 3, 4, 32767, 32768, 32769, len(data)]
    results = in_page(
        page,
        """
        const data = c.fromBase64(arg.data);
        const run = () => ({
          encoded: arg.lengths.map((n) => c.toBase64(data.subarray(0, n))),
          decoded: arg.encoded.map((text) => Array.from(c.fromBase64(text)).length),
          broken: arg.broken.map((text) => {
            try { c.fromBase64(text); return "read"; } catch { return "refused"; }
          }),
        });
        const own = run();
        const toBase64 = Uint8Array.prototype.toBase64, fromBase64 = Uint8Array.fromBase64;
        delete Uint8Array.prototype.toBase64; delete Uint8Array.fromBase64;
        try { return { native: typeof toBase64 === "function", own, fallback: run() }; }
        finally { Uint8Array.prototype.toBase64 = toBase64; Uint8Array.fromBase64 = fromBase64; }
        """,
        {
            "data": base64.b64encode(data).decode(),
            "lengths": lengths,
            "encoded": [base64.b64encode(data[:n]).decode() for n in lengths],
            "broken": ["abc$", "a", "ab=c"],
        },
    )
    assert results["native"], "this Chromium has Uint8Array.prototype.toBase64: the fast path is tested"
    for path in ("own", "fallback"):
        assert results[path]["encoded"] == [base64.b64encode(data[:n]).decode() for n in lengths], path
        assert results[path]["decoded"] == lengths, path
        assert results[path]["broken"] == ["refused"] * 3, path


SEALED = json.loads((Path(__file__).parents[1] / "vectors" / "sealed.json").read_text())


def test_the_page_reads_the_sealed_vectors(server, new_page):
    """tests/vectors/sealed.json (the Python client's tests read it too): from the vector's
    fragment the page derives its key check, opens each message as its sender and
    refuses it as another, and opens the file to its card's bytes."""
    page = new_page(server.http)
    result = in_page(
        page,
        """
        const keys = await s.deriveKeys(s.secretFromFragment("#" + arg.fragment));
        const opened = [], reattributed = [];
        for (const m of arg.messages) {
          opened.push(await s.openMessage(keys.messageKey, arg.room_id, m.sender, m.content));
          const other = m.sender + "x";
          const asOther = s.openMessage(keys.messageKey, arg.room_id, other, m.content);
          reattributed.push(await asOther.then(() => "opened", () => "refused"));
        }
        const bytes = await s.openFile(arg.file.card, c.fromBase64(arg.file.blob));
        return { keyCheck: keys.keyCheck, opened, reattributed, file: new TextDecoder().decode(bytes) };
        """,
        SEALED,
    )
    assert result == {
        "keyCheck": SEALED["key_check"],
        "opened": [message["payload"] for message in SEALED["messages"]],
        "reattributed": ["refused"] * len(SEALED["messages"]),
        "file": SEALED["file"]["data_utf8"],
    }
