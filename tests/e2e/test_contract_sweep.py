"""PROTOCOL.md's "Precise rules", "Limits" and transport rules, every one, as a client
written from PROTOCOL.md alone would try them, against both ways the server starts
(`manage.py serve` and `runserver`); issue 14, "The contract, re-read line by line".

Each test starts one server and walks through numbered rules, the rule quoted above
its check. Limits that would take long to reach are made small through the server's
environment. Rules about sealed rooms and conversations (not built yet), and rules
that need two processes, are left out. Tested elsewhere under both commands, and so
not repeated here: the 1008 close, information separators in names, exact file ids and
`since` out of range (test_contract.py), WS_MAX_FRAME following FILES_MAX_SIZE
(test_servers.py), CONNECTIONS_PER_ADDRESS (test_hostile_reader.py) and a 10 MiB file
round trip (test_files.py)."""

import asyncio
import base64
import http.cookiejar
import json
import os
import re
import socket
import sqlite3
import time
import unicodedata
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from chat.keys import join_key_hash
from tests.e2e.servers import manage
from tests.e2e.wsclient import Client, handshake_status
from tests.helpers import HISTORY_ENTRY

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

BOTH = pytest.mark.parametrize("command", ["serve", "runserver"])

PRESENCE = {"ParticipantJoined", "ParticipantLeft"}
SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")


def cipher(size: int = 28) -> str:
    """Chat content as PROTOCOL.md has it: base64 of nonce, ciphertext and tag (the
    server never decrypts, so random bytes of that shape are as good)."""
    return base64.b64encode(os.urandom(size)).decode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def checked(raw: str | bytes) -> dict:
    """Transport: "Every frame is a UTF-8 text frame holding one JSON object with a
    string field `type`. Field names are `snake_case`." -- for every server frame."""
    assert isinstance(raw, str), f"the server sent a binary frame: {raw[:60]!r}"
    frame = json.loads(raw)
    assert isinstance(frame, dict) and isinstance(frame.get("type"), str), raw[:200]

    def snake(value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                assert SNAKE_CASE.fullmatch(key), f"field {key!r} is not snake_case: {raw[:200]}"
                snake(item)
        elif isinstance(value, list):
            for item in value:
                snake(item)

    snake({k: v for k, v in frame.items() if k != "type"})
    if frame["type"] == "Error":  # `message` (for people), `code` (for programs)
        assert isinstance(frame.get("code"), str) and isinstance(frame.get("message"), str), frame
        assert frame["message"], frame
    return frame


class Peer(Client):
    """The e2e client, checking every frame it receives against the transport rules."""

    async def recv(self, within: float = 5) -> dict:
        return checked(await asyncio.wait_for(self.connection.recv(), within))

    async def reply(self, within: float = 5) -> dict:
        """The next frame that is not presence chatter (someone else joining or leaving)."""
        while True:
            frame = await self.recv(within)
            if frame["type"] not in PRESENCE:
                return frame

    async def ask(self, **frame) -> dict:
        await self.send(**frame)
        return await self.reply()

    async def ask_raw(self, data: str | bytes) -> dict:
        await self.connection.send(data)
        return await self.reply()

    async def refused(self, code: str, **frame) -> dict:
        answer = await self.ask(**frame)
        assert answer["type"] == "Error" and answer["code"] == code, (code, frame, answer)
        return answer

    async def refused_raw(self, code: str, data: str | bytes) -> dict:
        answer = await self.ask_raw(data)
        assert answer["type"] == "Error" and answer["code"] == code, (code, str(data)[:200], answer)
        return answer

    async def quiet(self, within: float = 0.3) -> None:
        """Nothing (but presence chatter) arrives within `within` seconds."""
        try:
            frame = await self.reply(within)
        except TimeoutError:
            return
        raise AssertionError(f"expected no frame, got {frame}")

    async def enter(self, join_key: str, name: str, *, history: bool = False, **fields) -> tuple[dict, dict]:
        """JoinRoom: RoomJoined, and the History that must (or must not) follow it."""
        joined = await self.ask(type="JoinRoom", join_key=join_key, name=name, **fields)
        assert joined["type"] == "RoomJoined", (name, fields, joined)
        self.key = joined["encryption_key"]
        past = {}
        if history:
            past = await self.recv()
            assert past["type"] == "History", past
        return joined, past

    async def chat(self) -> dict:
        """Send a chat message and return its broadcast (the sender gets it too)."""
        await self.send(type="ChatMessage", content=cipher())
        message = await self.reply()
        assert message["type"] == "ChatMessage", message
        return message


async def opened(server, address: str | None = None, path: str = "/ws/", **kwargs) -> Peer:
    """A connection, from the loopback `address` when given (the per-address limits).
    It takes in every frame however many wait unread (websockets' own backpressure
    would otherwise keep a test's idle connection from seeing the server's close)."""
    if address is not None:
        kwargs["local_addr"] = (address, 0)
    kwargs.setdefault("max_queue", None)
    return await Peer.open(f"ws://127.0.0.1:{server.port}{path}", **kwargs)


async def closed_code(peer: Peer, within: float = 10) -> int | None:
    """Read until the server closes; the close code it sent (None: no close frame)."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await peer.recv(within)
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


def utc(stamp: str) -> datetime:
    assert stamp.endswith("Z") or stamp.endswith("+00:00"), stamp
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


async def drain(peer: Peer) -> None:
    """Read whatever has arrived, until nothing more comes for a moment."""
    try:
        while True:
            await peer.recv(0.3)
    except TimeoutError:
        pass


async def close_all(*peers: Client) -> None:
    for peer in peers:
        await peer.close()


# --- 1. Transport and strict JSON ----------------------------------------------------

WS_MAX = 200_000  # WS_MAX_FRAME set through the environment (bytes)
PAD = "A" * 70_000  # over 64 KiB: such frames take the server's large-frame path
NOT_JSON = [
    "",
    " ",
    "{",
    '{"type":"GetMembers",}',
    "{'type':'GetMembers'}",
    '{"type":"GetMembers"} {}',
    '{"type":"GetMembers"}x',
    '{type:"GetMembers"}',
    '{"type":"GetMembers","x":01}',
    '{"type":"GetMembers","x":"a\x01b"}',  # a raw control character in a string
    '{"type":"GetMembers","x":.5}',
    '{"type":"GetMembers","x":undefined}',
]
NOT_AN_OBJECT = ["[]", '[{"type":"GetMembers"}]', '"GetMembers"', "1", "null", "true", "1.5"]


def nested(levels: int, kind: str = "[") -> str:
    """`levels` containers, one inside the other."""
    if kind == "[":
        return "[" * levels + "]" * levels
    return '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)


@BOTH
async def test_transport_and_strict_json(sqlite_env, servers, command):
    env = {**sqlite_env, "WS_MAX_FRAME": str(WS_MAX)}
    (server,) = servers(env, command=command)
    url = server.url

    # 1.1 "WebSocket at `/ws/`. The same endpoint also answers at `/`."
    for path in ("/ws/", "/"):
        peer = await opened(server, path=path)
        created = await peer.ask(type="CreateRoom", name=f"At {path}", description="")
        assert created["type"] == "RoomCreated" and created["room_info"]["name"] == f"At {path}"
        assert await peer.members() == ["Owner"]
        await peer.close()

    # 1.2 "A handshake without `Origin` (a non-browser client) is accepted." (the
    # websockets client sends none unless told to)
    client = await opened(server)
    await client.refused("not_in_room", type="GetMembers")

    # 1.3 "a handshake that carries an `Origin` header must come from an allowed host
    # (the Origin's host, without its port, matches Django `ALLOWED_HOSTS`)"
    # (the server's ALLOWED_HOSTS: 127.0.0.1,localhost)
    for origin in (
        f"http://127.0.0.1:{server.port}",
        "http://localhost",
        "https://localhost:8443",
        "http://LOCALHOST:1",
    ):
        peer = await Peer.open(url, origin=origin)
        await peer.refused("not_in_room", type="GetMembers")
        await peer.close()
    # "... else it is refused with HTTP 403; `Origin: null` is refused."
    for origin in (
        "null",
        "http://evil.example",
        "http://127.0.0.1.evil.example",
        f"http://localhost.evil.example:{server.port}",
        "http://127.0.0.2",
        "file://",
    ):
        assert await handshake_status(url, origin) == 403, origin

    # 1.4 "A binary frame, a frame that is not a JSON object, and JSON outside the
    # strict rules below are all `invalid_json`."
    await client.refused_raw("invalid_json", b'{"type":"GetMembers"}')
    await client.refused_raw("invalid_json", os.urandom(64))
    for text in NOT_JSON + NOT_AN_OBJECT:
        await client.refused_raw("invalid_json", text)
    # RFC 8259 allows white space around the value.
    await client.refused_raw("not_in_room", ' \t\r\n{"type":"GetMembers"}\n ')

    # 1.5 "JSON is strict RFC 8259: `NaN`, `Infinity`, a leading BOM, lone surrogates
    # [...] are `invalid_json`"
    for value in ("NaN", "Infinity", "-Infinity", "-NaN"):
        await client.refused_raw("invalid_json", f'{{"type":"GetMembers","x":{value}}}')
    await client.refused_raw("invalid_json", '\ufeff{"type":"GetMembers"}')
    for text in (
        '{"type":"GetMembers","x":"\\ud800"}',
        '{"type":"GetMembers","x":"\\udfff"}',
        '{"type":"GetMembers","x":"a\\ud83db"}',
        '{"type":"GetMembers","\\udc00":1}',
        '{"type":"GetMembers","x":["\\ude00\\ud83d"]}',  # a pair in the wrong order
    ):
        await client.refused_raw("invalid_json", text)
    await client.refused_raw("not_in_room", '{"type":"GetMembers","x":"\\ud83d\\ude00"}')  # a real pair

    # "... nesting deeper than 32 levels (the frame's own object is level 1)"
    for kind in ("[", "{"):
        await client.refused_raw("not_in_room", f'{{"type":"GetMembers","x":{nested(31, kind)}}}')
        await client.refused_raw("invalid_json", f'{{"type":"GetMembers","x":{nested(32, kind)}}}')

    # "... an integer literal (no fraction, no exponent) of more than 20 digits and a
    # number that overflows a double are `invalid_json`"
    twenty, twenty_one = "9" * 20, "1" + "0" * 20
    for ok in (twenty, f"-{twenty}", f"{twenty_one}.5", f"{twenty_one}e0", "1e308", "-1.797e308"):
        await client.refused_raw("not_in_room", f'{{"type":"GetMembers","x":{ok}}}')
    for bad in (twenty_one, f"-{twenty_one}", "1e309", "-1e309", "1.8e308", "1" + "0" * 400 + ".0"):
        await client.refused_raw("invalid_json", f'{{"type":"GetMembers","x":{bad}}}')

    # "... with duplicate keys the last one counts."
    await client.refused_raw("not_in_room", '{"type":"Nope","type":"GetMembers"}')
    await client.refused_raw("unknown_type", '{"type":"GetMembers","type":"Nope"}')
    await client.refused_raw("not_in_room", '{"type":"ChatMessage","content":5,"content":"' + cipher() + '"}')
    await client.refused_raw(
        "invalid_field", '{"type":"ChatMessage","content":"' + cipher() + '","content":5}'
    )

    # 1.6 "A `type` that is missing, not a string or not listed is `unknown_type`."
    for text in (
        "{}",
        '{"x":1}',
        '{"Type":"GetMembers"}',
        '{"type":null}',
        '{"type":5}',
        '{"type":true}',
        '{"type":["GetMembers"]}',
        '{"type":{"GetMembers":1}}',
        '{"type":"getmembers"}',
        '{"type":"GetMembers "}',
        '{"type":""}',
        '{"type":"Error"}',
        '{"type":"RoomCreated"}',
        '{"type":"Members"}',
    ):
        await client.refused_raw("unknown_type", text)
    # "Checks run in this order [...]: the frame (`invalid_json`, `unknown_type`), the
    # fields (`invalid_field`) [...]"
    await client.refused_raw("invalid_json", '{"type":5,"x":NaN}')
    await client.refused_raw("unknown_type", '{"type":"Nope","content":5,"name":""}')

    # 1.7 The same rules hold for frames over 64 KiB (the server reads those apart).
    upload = '{"type":"UploadFile","name":"a.txt","mime_type":"text/plain","content":"%s"%s}'
    await client.refused_raw("not_in_room", upload % (PAD, ""))
    await client.refused_raw("invalid_json", upload % (PAD, ',"x":NaN'))
    await client.refused_raw("invalid_json", "\ufeff" + upload % (PAD, ""))
    await client.refused_raw("invalid_json", upload % (PAD, ',"x":"\\udc00"'))
    await client.refused_raw("invalid_json", upload % (PAD, f',"x":{twenty_one}'))
    await client.refused_raw("invalid_json", upload % (PAD, ',"x":1e309'))
    await client.refused_raw("not_in_room", upload % (PAD, f',"x":{nested(31)}'))
    await client.refused_raw("invalid_json", upload % (PAD, f',"x":{nested(32)}'))
    await client.refused_raw("invalid_json", upload % (PAD[:100] + "\x01" + PAD[101:], ""))
    await client.refused_raw("invalid_json", upload % (PAD, "") + " x")
    await client.refused_raw("invalid_json", (upload % (PAD, "")).encode())  # binary
    await client.refused_raw("invalid_field", upload % (PAD[:-1] + "!", ""))  # not base64
    await client.refused_raw("invalid_field", upload % (PAD, ',"content":"!!!!"'))  # the last counts
    await client.refused_raw(
        "not_in_room", upload.replace('"content":"%s"', '"content":"!!!!","content":"%s"') % (PAD, "")
    )
    await client.refused_raw("unknown_type", '{"type":"Nope","pad":"' + PAD + '"}')
    await client.refused_raw("not_in_room", '{"type":"Nope","type":"GetMembers","pad":"' + PAD + '"}')
    await client.refused_raw("invalid_json", '["' + PAD + '"]')

    # 1.8 "the server ignores unknown extra fields on known message types"
    created = await client.ask(
        type="CreateRoom", name="Extras", description="", colour="red", nested={"a": [1, {"b": None}]}
    )
    assert created["type"] == "RoomCreated", created
    await client.send(type="ChatMessage", content=cipher(), id=10**12, sender="Mallory", sent_at="1970")
    message = await client.reply()
    assert message["type"] == "ChatMessage" and message["sender"] == "Owner", message
    assert message["id"] != 10**12 and message["sent_at"] != "1970"
    members = await client.ask(type="GetMembers", participants=["Mallory"])
    assert members == {"type": "Members", "participants": ["Owner"]}

    # 1.9 "The server never closes a connection because of one bad message: it answers
    # `Error` and carries on." -- `client` got every frame above answered, one answer
    # each, and still works.
    assert await client.members() == ["Owner"]
    await client.send(type="LeaveRoom")
    await client.quiet()

    # 1.10 "It closes only for: a frame over the transport limit (1009 where the server
    # can still say so; a server that must drop the TCP connection instead does so
    # without harming anyone else)" -- WS_MAX_FRAME, set here through the environment
    # ("Each is a setting read from the environment variable of the same name").
    bystander = await opened(server)
    join_key = (await bystander.create())["room_info"]["join_key"]
    big = await opened(server)
    await big.enter(join_key, "Big")
    assert await bystander.recv() == {"type": "ParticipantJoined", "name": "Big"}
    await big.refused_raw("unknown_type", '{"type":"Nope","pad":"' + "x" * (WS_MAX - 1000) + '"}')
    await big.connection.send('{"type":"Nope","pad":"' + "x" * (WS_MAX + 1000) + '"}')
    code = await closed_code(big)
    if command == "serve":
        assert code == 1009
    else:  # daphne drops the TCP connection (docs/protocol-notes.md)
        assert code in (None, 1009)
    # Nobody else is harmed; the closed socket left the room.
    assert (await bystander.recv()) == {"type": "ParticipantLeft", "name": "Big"}
    assert (await bystander.chat())["sender"] == "Owner"
    await close_all(bystander, client)


# --- 2. Fields and names -------------------------------------------------------------

BIDI = ["\u061c", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e"]
BIDI += ["\u2066", "\u2067", "\u2068", "\u2069"]
INVISIBLE = ["\u00ad", "\u200b", "\u2060", "\ufeff"]
CONTROLS = ["\x00", "\x07", "\x1b", "\x7f", "\x80", "\x85", "\x9f"]


def invalid_fields(kind: str, required: dict, wrong: dict) -> list[dict]:
    """Frames of `kind` with each required field missing, and each field of a wrong
    JSON type (`wrong`: field -> values)."""
    frames = []
    for field in required:
        frames.append({"type": kind, **{k: v for k, v in required.items() if k != field}})
    for field, values in wrong.items():
        for value in values:
            frames.append({"type": kind, **required, field: value})
    return frames


@BOTH
async def test_fields_names_and_secrets(sqlite_env, servers, command):
    env = {
        **sqlite_env,
        "JOINS_PER_MINUTE": "10000",
        "JOINS_PER_ADDRESS_PER_MINUTE": "10000",
        "ROOMS_PER_HOUR": "10000",
        "JOIN_FAILURES_PER_MINUTE": "100",
        # Each join reserves room for the largest History it could get, per address
        # (docs/protocol-notes.md, "Large replies wait for the reader"): small, so that
        # eight simultaneous joins are judged by their names alone.
        "CHAT_MAX_CONTENT": "1000",
    }
    (server,) = servers(env, command=command)
    outside = await opened(server)  # never in a room
    inside = await opened(server)  # in a room throughout
    host_created = await inside.create("Fields")
    join_key, owner_token = host_created["room_info"]["join_key"], host_created["owner_token"]

    # 2.1 "A field not marked optional is required; a missing one, or one of the wrong
    # JSON type, is `invalid_field`." With "Checks run in this order [...] the fields
    # (`invalid_field`), the connection's state (`not_in_room`, `already_in_room`)":
    # the frames that need a room are sent outside one, the joins from inside one.
    not_str = [None, 5, 1.5, True, [], ["x"], {}, {"a": "b"}]
    room_frames = (
        invalid_fields("ChatMessage", {"content": cipher()}, {"content": not_str})
        + invalid_fields(
            "UploadFile",
            {"name": "a.txt", "mime_type": "text/plain", "content": b64(b"hi")},
            {"name": not_str, "mime_type": not_str, "content": not_str},
        )
        + invalid_fields("GetFile", {"file_id": "x"}, {"file_id": not_str})
        + invalid_fields("DeleteFile", {"file_id": "x"}, {"file_id": not_str})
    )
    for frame in room_frames:
        await outside.refused("invalid_field", **frame)
    join_frames = invalid_fields(
        "CreateRoom",
        {"name": "Room", "description": ""},
        {
            "name": not_str,
            "description": not_str,
            "password": not_str[1:],
            "owner_name": not_str[1:],
        },
    ) + invalid_fields(
        "JoinRoom",
        {"join_key": join_key, "name": "Bob"},
        {
            "join_key": not_str,
            "name": not_str,
            "password": not_str[1:],
            "owner_token": not_str[1:],
            "since": ["1", "", True, False, 1.5, [], {}],
        },
    )
    for frame in join_frames:
        await inside.refused("invalid_field", **frame)
    # Chat content is refused unless it is base64 of at least 28 bytes (Encryption).
    for content in ("", "not base64!", "AAAA AAAA", cipher(27), cipher(28)[:-1], "=" + cipher(28)[1:]):
        await outside.refused("invalid_field", type="ChatMessage", content=content)
    await outside.refused("not_in_room", type="ChatMessage", content=cipher(28))
    # Fields, then state, then the rest:
    await outside.refused("not_in_room", type="GetFile", file_id="not-an-id")
    await outside.refused("not_in_room", type="DeleteFile", file_id="not-an-id")
    await outside.refused(
        "not_in_room", type="UploadFile", name="a.txt", mime_type="image/gif", content=b64(b"x")
    )
    await inside.refused("already_in_room", type="JoinRoom", join_key="no-such-room", name="Bob")
    await inside.refused("already_in_room", type="CreateRoom", name="Room", description="")

    # 2.2 "An optional field may be omitted or `null`; both mean it is absent."
    # "`password` omitted, `null` or `""` all mean no password."
    for extra in ({}, {"password": None}, {"password": ""}, {"owner_name": None}):
        peer = await opened(server)
        created = await peer.ask(type="CreateRoom", name="Optional", description="", **extra)
        assert created["type"] == "RoomCreated", (extra, created)
        assert created["room_info"]["has_password"] is False and created["room_info"]["owner"] == "Owner"
        guest = await opened(server)
        for password in ({}, {"password": None}, {"password": ""}):
            # Joining a room without a password: with none given, three ways.
            await guest.enter(
                created["room_info"]["join_key"], "Guest", **password, since=None, owner_token=None
            )
            await guest.send(type="LeaveRoom")
        await close_all(peer, guest)
    locked = await opened(server)
    locked_key = (await locked.create("Locked", password="pässword"))["room_info"]["join_key"]
    guest = await opened(server)
    for password in ({}, {"password": None}, {"password": ""}):
        # "`wrong_password`: the room has a password and it does not match (or none was given)"
        await guest.refused("wrong_password", type="JoinRoom", join_key=locked_key, name="Guest", **password)

    # 2.3 "Secrets and ids (`password`, `join_key`, `owner_token`, `file_id`) are
    # compared exactly as sent."
    for wrong in ("Pässword", "pässword ", " pässword", unicodedata.normalize("NFD", "pässword")):
        await guest.refused(
            "wrong_password", type="JoinRoom", join_key=locked_key, name="Guest", password=wrong
        )
    await guest.enter(locked_key, "Guest", password="pässword")
    await guest.send(type="LeaveRoom")
    for wrong in (join_key.swapcase(), f"{join_key} ", f" {join_key}", join_key[:-1], f"{join_key}=", ""):
        await guest.refused("room_not_found", type="JoinRoom", join_key=wrong, name="Guest")
    # A wrong owner_token "joins normally, without owner rights and without an error"
    # (what the rights are is checked in test_files_and_rights).
    joined, _ = await guest.enter(join_key, "Guest", owner_token=owner_token.swapcase())
    assert joined["room_info"]["owner"] == "Owner"
    assert await inside.recv() == {"type": "ParticipantJoined", "name": "Guest"}
    await guest.send(type="LeaveRoom")
    assert await inside.recv() == {"type": "ParticipantLeft", "name": "Guest"}

    # 2.4 "Names (participant, owner, room), descriptions and file names are
    # NFC-normalised first; names are then trimmed of Unicode whitespace."
    zoe = "Zoe\u0301"  # decomposed
    joined, _ = await guest.enter(join_key, f"\u3000 {zoe}\t\u2003")
    assert joined["participants"] == ["Owner", "Zo\u00e9"]
    assert await inside.recv() == {"type": "ParticipantJoined", "name": "Zo\u00e9"}
    await guest.send(type="LeaveRoom")
    assert await inside.recv() == {"type": "ParticipantLeft", "name": "Zo\u00e9"}
    peer = await opened(server)
    created = await peer.ask(
        type="CreateRoom",
        name=f"\u2002 Caf{'e'}\u0301 \u3000",
        description=f"  Caf{'e'}\u0301\n\tline  ",
        owner_name=f"\u00a0{zoe}\u2029",
    )
    info = created["room_info"]
    assert info["name"] == "Caf\u00e9" and info["owner"] == "Zo\u00e9", info
    # Descriptions are NFC-normalised, not trimmed.
    assert info["description"] == "  Caf\u00e9\n\tline  ", info
    assert await peer.members() == ["Zo\u00e9"]
    await peer.close()

    # 2.5 "A name is refused if it is then empty, or holds a `Cc` character
    # (U+0000-U+001F, U+007F-U+009F), a bidirectional control (U+061C, U+200E, U+200F,
    # U+202A-U+202E, U+2066-U+2069) or an invisible one (U+00AD, U+200B, U+2060,
    # U+FEFF), or holds no letter, digit, punctuation or symbol character."
    refused_names = ["", " ", "\t\u3000\u2028", "\u0301", "\u200d", "\u200c\u200d", "\u2061"]
    refused_names += [f"A{char}B" for char in CONTROLS + BIDI + INVISIBLE]
    refused_names += [f"{char}Ann" for char in BIDI + INVISIBLE] + [f"Ann{char}" for char in BIDI + INVISIBLE]
    refused_names += ["\x00Ann", "Ann\x7f"]
    for name in refused_names:
        await guest.refused("invalid_field", type="JoinRoom", join_key=join_key, name=name)
        await guest.refused("invalid_field", type="CreateRoom", name=name, description="")
        await guest.refused("invalid_field", type="CreateRoom", name="Room", description="", owner_name=name)
    # "Other format characters, such as the zero-width joiners that emoji and many
    # scripts need, are allowed." U+0085 is Unicode white space: trimmed at the ends.
    for name, stored in (
        ("\U0001f469\u200d\U0001f4bb", "\U0001f469\u200d\U0001f4bb"),
        ("\u0915\u094d\u200d\u0937", "\u0915\u094d\u200d\u0937"),
        ("a\u200cb", "a\u200cb"),
        ("f\u2061x", "f\u2061x"),
        ("\x85Ann\x85", "Ann"),
        ("\u2603", "\u2603"),
        ("!", "!"),
        ("7", "7"),
    ):
        joined, _ = await guest.enter(join_key, name)
        assert joined["participants"] == ["Owner", stored], (name, joined)
        assert await inside.recv() == {"type": "ParticipantJoined", "name": stored}
        await guest.send(type="LeaveRoom")
        assert await inside.recv() == {"type": "ParticipantLeft", "name": stored}
        created = await guest.ask(type="CreateRoom", name=name, description="", owner_name=name)
        assert created["room_info"]["name"] == stored and created["room_info"]["owner"] == stored
        await guest.send(type="LeaveRoom")

    # 2.6 "Every length counts code points after this." JoinRoom `name` 1-50,
    # CreateRoom `name` 1-100, `owner_name` as a participant name, `description` 0-1000.
    for name, ok in (
        ("\U0001f600" * 50, True),  # 50 code points, 100 UTF-16 units, 200 bytes
        ("\U0001f600" * 51, False),
        ("e\u0301" * 50, True),  # 100 code points before NFC, 50 after
        ("e\u0301" * 51, False),
        ("\u3000" + "a" * 50 + " ", True),  # trimmed first
        ("a" * 51, False),
    ):
        if ok:
            joined, _ = await guest.enter(join_key, name)
            stored = unicodedata.normalize("NFC", name).strip()
            assert joined["participants"][-1] == stored and len(stored) == 50
            await inside.recv()
            await guest.send(type="LeaveRoom")
            await inside.recv()
            created = await guest.ask(type="CreateRoom", name="Room", description="", owner_name=name)
            assert created["room_info"]["owner"] == stored
            await guest.send(type="LeaveRoom")
        else:
            await guest.refused("invalid_field", type="JoinRoom", join_key=join_key, name=name)
            await guest.refused(
                "invalid_field", type="CreateRoom", name="Room", description="", owner_name=name
            )
    for room_name, ok in (
        ("r" * 100, True),
        ("\U0001f600" * 100, True),
        ("e\u0301" * 100, True),
        ("r" * 101, False),
    ):
        answer = await guest.ask(type="CreateRoom", name=room_name, description="")
        if ok:
            assert answer["type"] == "RoomCreated" and len(answer["room_info"]["name"]) == 100, answer
            await guest.send(type="LeaveRoom")
        else:
            assert answer["code"] == "invalid_field", answer
    descriptions = [("", True), ("d" * 1000, True), ("e\u0301" * 1000, True), ("\U0001f600" * 1000, True)]
    for description, ok in [*descriptions, ("d" * 1001, False), (" " * 1001, False)]:
        answer = await guest.ask(type="CreateRoom", name="Room", description=description)
        if ok:
            assert answer["type"] == "RoomCreated", answer
            assert answer["room_info"]["description"] == unicodedata.normalize("NFC", description)
            await guest.send(type="LeaveRoom")
        else:
            assert answer["code"] == "invalid_field", answer

    # 2.7 "A participant name is unique, case-insensitively, among the participants
    # present in the room at that moment" -- "Uniqueness compares Python's
    # `str.casefold()` of the NFC form."
    first = await opened(server)
    await first.enter(join_key, "Stra\u00dfe")
    await inside.recv()
    for same in ("STRASSE", "strasse", " Stra\u00dfe ", "owner", "OWNER", "\u017fTRASSE"):
        await guest.refused("name_taken", type="JoinRoom", join_key=join_key, name=same)
    await guest.enter(join_key, zoe)
    await inside.recv()
    second = await opened(server)
    for same in ("ZO\u00c9", "zoe\u0301", "ZOE\u0301"):
        await second.refused("name_taken", type="JoinRoom", join_key=join_key, name=same)
    # ... "present [...] at that moment": a name that left is free again.
    await first.close()
    assert await inside.recv() == {"type": "ParticipantLeft", "name": "Stra\u00dfe"}
    joined, _ = await second.enter(join_key, "STRASSE")
    assert joined["participants"] == ["Owner", "Zo\u00e9", "STRASSE"]
    # "... at most one of many simultaneous joins with one name wins."
    racers = [await opened(server) for _ in range(8)]
    names = ["Same", "same", "SAME", " Same ", "Same\u3000", "\u017fame", "SAMe", "sAME"]
    await asyncio.gather(
        *(r.send(type="JoinRoom", join_key=join_key, name=n) for r, n in zip(racers, names, strict=True))
    )
    answers = [await r.reply() for r in racers]
    assert (
        sorted(a["type"] if a["type"] != "Error" else a["code"] for a in answers)
        == ["RoomJoined"] + ["name_taken"] * 7
    ), answers
    await close_all(*racers, second, guest, outside, inside, locked)


# --- 3. Rate limits and where they are checked ---------------------------------------

RATE_ENV = {
    "CHAT_RATE_BURST": "3",
    "CHAT_RATE_SUSTAINED": "0.5",
    "CHAT_MAX_CONTENT": "100",
    "JOINS_PER_MINUTE": "4",
    "READS_PER_MINUTE": "3",
    "FILES_UPLOADS_PER_MINUTE": "3",
    "FILES_MAX_SIZE": "3000",
    "FILES_TTL": "2",
    "ROOMS_PER_HOUR": "2",
    "JOIN_FAILURES_PER_MINUTE": "2",
}


def limited(answer: dict) -> bool:
    return answer["type"] == "Error" and answer["code"] == "rate_limited"


@BOTH
async def test_rate_limits_and_where_they_are_checked(sqlite_env, servers, command):
    (server,) = servers({**sqlite_env, **RATE_ENV}, command=command)
    text = b64(b"plain text\n")

    # 3.1 FILES_UPLOADS_PER_MINUTE (3): "`UploadFile` attempts per connection".
    # "`message_too_large`, `file_too_large`, `mime_not_allowed` and `quota_exceeded`
    # come after the rate-limit check; only frames that reach the rate check count
    # toward a limit".
    host = await opened(server)  # 127.0.0.1: its first room of ROOMS_PER_HOUR
    join_key = (await host.create("Rates"))["room_info"]["join_key"]
    uploader = await opened(server)
    await uploader.refused(
        "not_in_room", type="UploadFile", name="a.txt", mime_type="text/plain", content=text
    )
    await uploader.enter(join_key, "Uploader")
    for bad in ("", "!!!!", "aGk", "aGk=aGk=", " aGk="):  # empty or not strict base64: field rules
        await uploader.refused(
            "invalid_field", type="UploadFile", name="a.txt", mime_type="text/plain", content=bad
        )
    await uploader.refused(
        "file_too_large", type="UploadFile", name="a.txt", mime_type="text/plain", content=b64(b"x" * 3001)
    )  # attempt 1
    await uploader.refused(
        "mime_not_allowed", type="UploadFile", name="a.png", mime_type="image/png", content=text
    )  # attempt 2
    uploaded = await uploader.ask(type="UploadFile", name="a.txt", mime_type="text/plain", content=text)
    uploaded_at = datetime.now(UTC)
    assert uploaded["type"] == "FileUploaded", uploaded  # attempt 3
    assert (await uploader.reply())["content"].startswith("[File: a.txt](/files/")
    for frame in (
        {"content": text},
        {"content": b64(b"x" * 3001)},  # over FILES_MAX_SIZE, but the rate comes first
        {"content": text, "mime_type": "image/png"},
    ):
        assert limited(
            await uploader.ask(**{"type": "UploadFile", "name": "b.txt", "mime_type": "text/plain", **frame})
        )
    # ... the field rules still come first.
    await uploader.refused(
        "invalid_field", type="UploadFile", name="b.txt", mime_type="text/plain", content="!!!!"
    )
    # "per connection": another connection has its own.
    other = await opened(server)
    await other.enter(join_key, "Other", history=True)
    answer = await other.ask(type="UploadFile", name="c.txt", mime_type="text/plain", content=text)
    assert answer["type"] == "FileUploaded", answer
    await other.close()

    # 3.2 FILES_TTL (2 s): "a file's life from upload".
    file_id, expires = uploaded["metadata"]["id"], utc(uploaded["metadata"]["expires_at"])
    assert abs((expires - uploaded_at).total_seconds() - 2) < 1, (uploaded_at, expires)

    # 3.3 READS_PER_MINUTE (3): "`GetMembers`, `GetFile` [...] frames per connection".
    reader = await opened(server)
    await reader.refused("not_in_room", type="GetMembers")  # state before rate: not counted
    await reader.refused("not_in_room", type="GetFile", file_id=file_id)
    await reader.enter(join_key, "Reader", history=True)  # the file messages
    assert (await reader.ask(type="GetMembers"))["type"] == "Members"  # 1
    # 2: a GetFile answered file_not_found reached the rate check.
    await reader.refused("file_not_found", type="GetFile", file_id="no-such-file")
    assert (await reader.ask(type="GetFile", file_id=file_id))["type"] == "FileContent"  # 3
    assert limited(await reader.ask(type="GetMembers"))
    assert limited(await reader.ask(type="GetFile", file_id=file_id))
    # "Checks run in this order [...] the connection's state (`not_in_room`,
    # `already_in_room`), rate limits, then the rest."
    await reader.refused("invalid_field", type="GetFile")
    await reader.send(type="LeaveRoom")
    await reader.refused("not_in_room", type="GetMembers")
    await reader.refused("not_in_room", type="GetFile", file_id=file_id)

    # 3.4 JOINS_PER_MINUTE (4): "`CreateRoom` and `JoinRoom` frames per connection".
    # `reader` has used one (its JoinRoom above).
    await reader.refused("room_not_found", type="JoinRoom", join_key="no-such-room", name="Reader")  # 2
    await reader.enter(join_key, "Reader", history=True)  # 3
    for _ in range(6):  # the connection's state comes before the rate: these do not count
        await reader.refused("already_in_room", type="JoinRoom", join_key=join_key, name="Reader")
        await reader.refused("already_in_room", type="CreateRoom", name="Room", description="")
    await reader.send(type="LeaveRoom")
    await reader.enter(join_key, "Reader", history=True)  # 4
    await reader.send(type="LeaveRoom")
    assert limited(await reader.ask(type="JoinRoom", join_key=join_key, name="Reader"))
    assert limited(await reader.ask(type="CreateRoom", name="Room", description=""))
    await reader.refused("invalid_field", type="JoinRoom", join_key=join_key)  # fields come first
    fresh = await opened(server)  # per connection
    await fresh.enter(join_key, "Fresh", history=True)

    # 3.5 CHAT_MAX_CONTENT (100): "characters of one chat `content`"; CHAT_RATE_BURST,
    # CHAT_RATE_SUSTAINED (3, 0.5/s): "token bucket per connection over `ChatMessage`
    # frames". Frames refused by a field rule do not reach the rate check.
    for _ in range(5):
        await fresh.refused("invalid_field", type="ChatMessage", content="!")
    exact = cipher(75)  # 100 characters
    sent = await fresh.ask(type="ChatMessage", content=exact)  # token 1
    assert sent["type"] == "ChatMessage" and sent["content"] == exact, sent
    await fresh.refused("message_too_large", type="ChatMessage", content=cipher(78))  # 104: token 2
    assert (await fresh.ask(type="ChatMessage", content=cipher()))["type"] == "ChatMessage"  # token 3
    emptied = time.monotonic()
    for content in (cipher(), cipher(78), cipher(), cipher(), cipher()):
        # "message_too_large [...] come after the rate-limit check"
        assert limited(await fresh.ask(type="ChatMessage", content=content))
    await fresh.refused("invalid_field", type="ChatMessage", content="!")
    assert time.monotonic() - emptied < 1.5, "too slow to tell the bucket from its refill"
    # "a frame answered `rate_limited` counts only toward the 1008 rule": the bucket
    # refills at 0.5/s as if those five had not been sent.
    await asyncio.sleep(max(0.0, emptied + 2.2 - time.monotonic()))
    assert (await fresh.ask(type="ChatMessage", content=cipher()))["type"] == "ChatMessage"
    assert limited(await fresh.ask(type="ChatMessage", content=cipher()))

    # 3.6 FILES_TTL: the file is gone once its life is over (file_not_found), whoever asks.
    await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds() + 0.2))
    checker = await opened(server)
    await checker.enter(join_key, "Checker", history=True)
    await checker.refused("file_not_found", type="GetFile", file_id=file_id)
    await checker.refused("file_not_found", type="DeleteFile", file_id=file_id)
    await checker.close()

    # 3.7 JOIN_FAILURES_PER_MINUTE (2): "`wrong_password` answers per client address;
    # past it every `JoinRoom` from that address is `rate_limited` until the minute has
    # passed, right password or not". Each case below comes from its own loopback
    # address (the server counts by client address).
    owner = await opened(server, "127.0.0.3")
    locked_key = (await owner.create("Locked", password="right"))["room_info"]["join_key"]
    # "takes its place [...] before the check and gives it back if the password is right"
    right = await opened(server, "127.0.0.4")
    for _ in range(3):
        await right.enter(locked_key, "Right", password="right")
        await right.send(type="LeaveRoom")
    wrong = await opened(server, "127.0.0.4")
    await wrong.refused("wrong_password", type="JoinRoom", join_key=locked_key, name="W", password="nope")
    await wrong.refused("wrong_password", type="JoinRoom", join_key=locked_key, name="W", password="")
    for frame in (
        {"join_key": locked_key, "password": "right"},
        {"join_key": locked_key, "password": "nope"},
        {"join_key": join_key},  # another room, without a password
        {"join_key": "no-such-room"},
    ):
        late = await opened(server, "127.0.0.4")  # a fresh connection: not its JOINS_PER_MINUTE
        assert limited(await late.ask(type="JoinRoom", name="Late", **frame)), frame
        await late.close()
    # Another address is not affected.
    elsewhere = await opened(server, "127.0.0.5")
    await elsewhere.enter(locked_key, "Elsewhere", password="right")
    # "simultaneous wrong guesses from one address, on any number of connections [...]
    # get at most that many `wrong_password` answers a minute"
    guessers = [await opened(server, "127.0.0.6") for _ in range(8)]
    await asyncio.gather(
        *(
            g.send(type="JoinRoom", join_key=locked_key, name=f"G{n}", password=f"guess{n}")
            for n, g in enumerate(guessers)
        )
    )
    codes = [(await g.reply())["code"] for g in guessers]
    assert codes.count("wrong_password") <= 2, codes
    assert codes.count("wrong_password") + codes.count("rate_limited") == 8, codes

    # 3.8 ROOMS_PER_HOUR (2): "rooms created per client address".
    maker = await opened(server, "127.0.0.7")
    for _ in range(2):
        assert (await maker.ask(type="CreateRoom", name="Mine", description=""))["type"] == "RoomCreated"
        await maker.send(type="LeaveRoom")
    assert limited(await maker.ask(type="CreateRoom", name="Mine", description=""))
    again = await opened(server, "127.0.0.7")  # per address, not per connection
    assert limited(await again.ask(type="CreateRoom", name="Mine", description=""))
    assert (await (await opened(server, "127.0.0.8")).ask(type="CreateRoom", name="Other", description=""))[
        "type"
    ] == "RoomCreated"

    # 3.9 "a frame answered `rate_limited` counts only toward the 1008 rule": a
    # CreateRoom refused by ROOMS_PER_HOUR, or a JoinRoom refused by
    # JOIN_FAILURES_PER_MINUTE, takes no place in JOINS_PER_MINUTE (4).
    # `maker` has used 2 of its 4 joins and had 1 CreateRoom rate_limited.
    assert limited(await maker.ask(type="CreateRoom", name="Mine", description=""))
    assert limited(await maker.ask(type="CreateRoom", name="Mine", description=""))
    await maker.enter(join_key, "Maker", history=True)  # its third
    blocked = await opened(server, "127.0.0.9")
    for _ in range(2):
        await blocked.refused("wrong_password", type="JoinRoom", join_key=locked_key, name="B", password="x")
    for _ in range(3):
        assert limited(await blocked.ask(type="JoinRoom", join_key=locked_key, name="B", password="right"))
    # Its third and fourth place in JOINS_PER_MINUTE are still free.
    assert (await blocked.ask(type="CreateRoom", name="Blocked", description=""))["type"] == "RoomCreated"
    await close_all(host, uploader, reader, fresh, owner, right, wrong, elsewhere, *guessers)
    await close_all(maker, again, blocked)


# --- 4. Files and rights -------------------------------------------------------------

FILES_ENV = {
    "FILES_MAX_SIZE": "3000",
    "FILES_ROOM_QUOTA": "4000",
    "FILES_ALLOWED_MIME_TYPES": "text/plain,image/png,text/html,image/svg+xml,application/xhtml+xml",
    "FILES_UPLOADS_PER_MINUTE": "1000",
    "READS_PER_MINUTE": "1000",
}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8


async def upload(peer: Peer, data: bytes, name: str = "f.txt", mime_type: str = "text/plain") -> dict:
    """A successful upload: FileUploaded (returned), then the file message."""
    answer = await peer.ask(type="UploadFile", name=name, mime_type=mime_type, content=b64(data))
    assert answer["type"] == "FileUploaded", (name, mime_type, answer)
    link = await peer.reply()
    assert link["type"] == "ChatMessage" and link["content"].startswith("[File: "), link
    assert link["content"].endswith(f"](/files/{answer['metadata']['id']})"), link
    return answer["metadata"]


async def upload_refused(peer: Peer, code: str, data: bytes, name="f.txt", mime_type="text/plain") -> None:
    await peer.refused(code, type="UploadFile", name=name, mime_type=mime_type, content=b64(data))


@BOTH
async def test_files_and_rights(sqlite_env, servers, command):
    (server,) = servers({**sqlite_env, **FILES_ENV}, command=command)
    owner = await opened(server)
    created = await owner.ask(type="CreateRoom", name="Files", description="", owner_name="Boss")
    join_key, token = created["room_info"]["join_key"], created["owner_token"]
    live = {}  # file id -> size: the room's live files

    # 4.1 File names "are NFC-normalised", "are not trimmed, may hold any character but
    # NUL, and must hold at least one letter, digit, punctuation or symbol character";
    # `name` 1-255 characters, counted in code points after NFC. "`metadata.name` keeps
    # the name as uploaded, after NFC".
    for name in (
        "  spaced.txt  ",
        "r\u00e9sum\u00e9\u202etxt.exe",
        "line\nbreak\r.txt",
        "\x01\x7f\u200bx",
        "[a](b).txt",
        "\U0001f600" * 255,
        "e\u0301" * 255,
        "x" * 255,
        ".",
    ):
        metadata = await upload(owner, b"n", name=name)
        assert metadata["name"] == unicodedata.normalize("NFC", name), metadata
        live[metadata["id"]] = 1
    too_long = ["x" * 256, "\U0001f600" * 256, "e\u0301" * 256]
    for name in ["", "a\x00b.txt", "\x00", " ", "\u200b", "\t\n", "\u200d\u200c", *too_long]:
        await upload_refused(owner, "invalid_field", b"n", name=name)

    # 4.2 "An empty file (0 bytes) is `invalid_field`."
    await upload_refused(owner, "invalid_field", b"")

    # 4.3 FILES_MAX_SIZE (3000): "decoded bytes of one file"; over it `file_too_large`
    # ("Content limits below it [...] are answered with `Error`, not by closing").
    metadata = await upload(owner, b"m" * 3000, name="max.txt")
    assert metadata["size"] == 3000
    live[metadata["id"]] = 3000
    await upload_refused(owner, "file_too_large", b"m" * 3001)
    await upload_refused(owner, "file_too_large", PNG + b"\x00" * 3000, mime_type="image/png")

    # 4.4 "`mime_type` is compared case-insensitively and without parameters;
    # `text/plain` means valid UTF-8 without NUL." "`metadata.mime_type` is lower
    # case, without parameters."
    for mime_type in ("Text/Plain; charset=utf-8", "TEXT/PLAIN", "text/plain;format=flowed"):
        metadata = await upload(owner, "h\u00e9".encode(), mime_type=mime_type)
        assert metadata["mime_type"] == "text/plain", metadata
        live[metadata["id"]] = 3
    metadata = await upload(owner, PNG, name="p.png", mime_type="IMAGE/PNG; x=y")
    assert metadata["mime_type"] == "image/png" and metadata["size"] == len(PNG)
    live[metadata["id"]] = len(PNG)
    for data in (b"\xff\xfe", b"a\x00b", "h\u00e9".encode("latin-1"), b"\xed\xa0\x80"):
        await upload_refused(owner, "mime_not_allowed", data)
    await upload_refused(owner, "mime_not_allowed", b"not a png", mime_type="image/png")

    # 4.5 FILES_ALLOWED_MIME_TYPES: "comma-separated; html and svg are never allowed,
    # whatever this says". (The list here names text/html, image/svg+xml and
    # application/xhtml+xml.)
    for mime_type, data in (
        ("text/html", b"<p>hi</p>"),
        ("TEXT/HTML; charset=utf-8", b"<p>hi</p>"),
        ("image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
        ("application/xhtml+xml", b"<html/>"),
        ("image/gif", b"GIF89a" + b"\x00" * 10),  # not in the list
        ("application/pdf", b"%PDF-1.4\n"),  # not in the list
    ):
        await upload_refused(owner, "mime_not_allowed", data, name="x.html", mime_type=mime_type)

    # 4.6 FILES_ROOM_QUOTA (4000): "live files of one room"; `quota_exceeded` when the
    # room's live files "would pass" it.
    room_left = 4000 - sum(live.values())
    metadata = await upload(owner, b"q" * room_left, name="fill.txt")
    live[metadata["id"]] = room_left
    await upload_refused(owner, "quota_exceeded", b"q")
    biggest = max(live, key=live.get)
    assert await owner.ask(type="DeleteFile", file_id=biggest) == {"type": "FileDeleted", "file_id": biggest}
    del live[biggest]
    metadata = await upload(owner, b"q" * 3000, name="again.txt")  # deleted files are not live
    live[metadata["id"]] = 3000
    await upload_refused(owner, "quota_exceeded", b"q")
    for file_id in list(live)[:-1]:
        assert (await owner.ask(type="DeleteFile", file_id=file_id))["type"] == "FileDeleted"
        del live[file_id]

    # 4.7 "`GetFile` [...] must be in the file's room"; "A `file_id` that is not a valid
    # id is `file_not_found`"; deleted files are `file_not_found` with the message
    # "File not found or expired".
    elsewhere = await opened(server)
    await elsewhere.create("Elsewhere")
    kept = next(iter(live))
    for file_id in (kept, biggest, "", "not-an-id", "../../etc/passwd", "0" * 36, kept + " "):
        answer = await elsewhere.refused("file_not_found", type="GetFile", file_id=file_id)
        assert answer["message"] == "File not found or expired", answer
        await elsewhere.refused("file_not_found", type="DeleteFile", file_id=file_id)
    await owner.refused("file_not_found", type="GetFile", file_id=biggest)
    await owner.refused("file_not_found", type="DeleteFile", file_id=biggest)
    content = await owner.ask(type="GetFile", file_id=kept)
    assert content["type"] == "FileContent" and content["metadata"]["id"] == kept
    assert base64.b64decode(content["content"]) == b"q" * 3000

    # 4.8 "`DeleteFile` [...] uploader or room owner only" (`forbidden`: "deleting
    # someone else's file").
    guest = await opened(server)
    await guest.enter(join_key, "Guest", history=True)
    other = await opened(server)
    await other.enter(join_key, "Other", history=True)
    mine = (await upload(guest, b"guest's"))["id"]
    await other.reply()  # the file message
    await owner.reply()
    await other.refused("forbidden", type="DeleteFile", file_id=mine)
    # A wrong owner_token "joins normally, without owner rights and without an error".
    pretender = await opened(server)
    joined, _ = await pretender.enter(join_key, "Pretender", history=True, owner_token=token.upper())
    assert joined["room_info"]["owner"] == "Boss"
    await pretender.refused("forbidden", type="DeleteFile", file_id=mine)
    await pretender.close()

    # 4.9 "Rights belong to the connection: the right to delete one's own upload ends
    # when that connection leaves the room".
    await guest.send(type="LeaveRoom")
    await guest.enter(join_key, "Guest", history=True)
    await guest.refused("forbidden", type="DeleteFile", file_id=mine)

    # 4.10 "A room stays open until an admin closes or deletes it; it does not close
    # when its owner [...] leaves. Owner rights belong to the owner's connection, and to
    # a later connection that joins with the `owner_token`." "`owner_token` never
    # changes." "`room_info.owner` stays the name the room was created with."
    await owner.send(type="LeaveRoom")
    await owner.enter(join_key, "Boss", history=True)  # without the token: no rights
    await owner.refused("forbidden", type="DeleteFile", file_id=mine)
    await owner.send(type="LeaveRoom")
    joined, _ = await owner.enter(join_key, "Boss", history=True, owner_token=token)
    assert joined["room_info"]["owner"] == "Boss"
    # "Every connection that joined with the right one is an owner".
    deputy = await opened(server)
    joined, _ = await deputy.enter(join_key, "Deputy", history=True, owner_token=token)
    assert joined["room_info"]["owner"] == "Boss"
    present = [owner, guest, other, deputy]

    async def deleted_by(peer: Peer, file_id: str) -> None:
        """DeleteFile answered with FileDeleted, which everyone present gets."""
        assert await peer.ask(type="DeleteFile", file_id=file_id) == {
            "type": "FileDeleted",
            "file_id": file_id,
        }
        for someone in present:
            if someone is not peer:
                assert await someone.reply() == {"type": "FileDeleted", "file_id": file_id}

    async def uploaded_by_guest(data: bytes) -> str:
        file_id = (await upload(guest, data))["id"]
        for someone in (owner, other, deputy):
            assert (await someone.reply())["content"].endswith(f"(/files/{file_id})")
        return file_id

    second = await uploaded_by_guest(b"guest's second")
    await deleted_by(deputy, second)
    await deleted_by(owner, mine)
    # The uploader's own connection may delete its upload.
    await deleted_by(guest, await uploaded_by_guest(b"guest's third"))
    # "... it does not close when [...] everyone leaves."
    for peer in (owner, guest, other, deputy, elsewhere):
        await peer.close()
    last = await opened(server)
    joined, history = await last.enter(join_key, "Last", history=True)
    assert joined["participants"] == ["Last"] and joined["room_info"]["owner"] == "Boss"
    assert history["messages"][-1]["content"].startswith("[File: ")
    await last.close()


# --- 5. Rooms, order and history -----------------------------------------------------

ROOMS_ENV = {
    "CHAT_HISTORY_LIMIT": "5",
    "CHAT_RATE_BURST": "100000",
    "CHAT_RATE_SUSTAINED": "100000",
    "JOINS_PER_MINUTE": "10000",
    "ROOMS_PER_HOUR": "10000",
}
ADMIN_PASSWORD = "a-long-moderator-password"


class Admin:
    """A moderator in the server's /admin/, over plain HTTP (one process: the
    in-memory layer reaches the sockets)."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=10) as response:
            return response.read().decode()

    def post(self, path: str, data: dict) -> str:
        token = next(cookie.value for cookie in self.jar if cookie.name == "csrftoken")
        body = urlencode({**data, "csrfmiddlewaretoken": token}).encode()
        request = urllib.request.Request(self.base + path, data=body, headers={"Referer": self.base + path})
        with self.opener.open(request, timeout=10) as response:
            return response.read().decode()

    def login(self) -> None:
        self.get("/admin/login/")
        page = self.post("/admin/login/?next=/admin/", {"username": "mod", "password": ADMIN_PASSWORD})
        assert "/admin/logout/" in page, page[:500]

    def act(self, model: str, action: str, pk: str | int) -> None:
        page = self.post(
            f"/admin/chat/{model}/", {"action": action, "_selected_action": str(pk), "index": "0"}
        )
        assert "success" in page, page[:2000]


def participant_id(env: dict[str, str], join_key: str, name: str) -> int:
    with sqlite3.connect(Path(env["CHAT_VAR_DIR"]) / "db.sqlite3") as db:
        ((pk,),) = db.execute(
            "SELECT p.id FROM chat_participant p JOIN chat_room r ON r.id = p.room_id "
            "WHERE r.join_key_hash = ? AND p.name = ? AND p.left_at IS NULL",
            (join_key_hash(join_key), name),
        ).fetchall()
    return pk


@BOTH
async def test_rooms_order_and_history(sqlite_env, servers, command):
    env = {**sqlite_env, **ROOMS_ENV}
    manage(
        {**env, "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD},
        *("createsuperuser", "--noinput", "--username", "mod", "--email", "mod@example.org"),
    )
    (server,) = servers(env, command=command)

    # 5.1 "The server handles one connection's frames one at a time, in order.
    # `LeaveRoom` in a room has no reply." "`LeaveRoom` without a room is `not_in_room`."
    piper = await opened(server)
    for frame in (
        '{"type":',
        '{"type":"GetMembers"}',
        '{"type":"Nope"}',
        '{"type":"CreateRoom","name":"Pipe","description":""}',
        '{"type":"GetMembers"}',
        '{"type":"LeaveRoom"}',
        '{"type":"LeaveRoom"}',
        '{"type":"ChatMessage","content":"' + cipher() + '"}',
        '{"type":"GetMembers"}',
    ):
        await piper.connection.send(frame)
    answers = [await piper.recv() for _ in range(8)]
    assert [a.get("code", a["type"]) for a in answers] == [
        "invalid_json",
        "not_in_room",
        "unknown_type",
        "RoomCreated",
        "Members",
        "not_in_room",
        "not_in_room",
        "not_in_room",
    ], answers
    await piper.quiet()

    # 5.2 "A connection is in at most one room at a time." (`already_in_room`:
    # "`CreateRoom` or `JoinRoom` while in a room")
    alice = await opened(server)
    main = (await alice.create("Main"))["room_info"]
    join_key, room_id = main["join_key"], main["id"]
    spare_key = (await piper.ask(type="CreateRoom", name="Spare", description=""))["room_info"]["join_key"]
    await alice.refused("already_in_room", type="CreateRoom", name="Another", description="")
    await alice.refused("already_in_room", type="JoinRoom", join_key=spare_key, name="Alice")
    await alice.refused("already_in_room", type="JoinRoom", join_key=join_key, name="Alice")
    bob = await opened(server)
    await bob.enter(join_key, "Bob")
    assert await alice.recv() == {"type": "ParticipantJoined", "name": "Bob"}
    # LeaveRoom "leaves without closing the socket"; the connection may then join another.
    await bob.send(type="LeaveRoom")
    assert await alice.recv() == {"type": "ParticipantLeft", "name": "Bob"}
    joined, _ = await bob.enter(spare_key, "Bob")
    assert joined["participants"] == ["Owner", "Bob"]
    await piper.recv()  # ParticipantJoined
    await bob.send(type="LeaveRoom")
    await piper.recv()  # ParticipantLeft
    await bob.enter(join_key, "Bob")
    await alice.recv()
    # "Closing the socket leaves the room."
    await bob.close()
    assert await alice.recv() == {"type": "ParticipantLeft", "name": "Bob"}
    assert await alice.members() == ["Owner"]

    # 5.3 "Message ids are strictly increasing within a room, not necessarily by 1, and
    # each connection receives a room's messages in id order." Three senders at once.
    senders = [alice] + [await opened(server) for _ in range(2)]
    for n, peer in enumerate(senders[1:]):
        await peer.enter(join_key, f"Sender{n}")
    count = 40

    async def send_all(peer: Peer) -> None:
        for _ in range(count):
            await peer.send(type="ChatMessage", content=cipher())

    async def receive_all(peer: Peer) -> list[int]:
        ids = []
        while len(ids) < count * len(senders):
            frame = await peer.reply()
            if frame["type"] == "ChatMessage":
                ids.append(frame["id"])
        return ids

    receivers = [asyncio.create_task(receive_all(peer)) for peer in senders]
    await asyncio.gather(*(send_all(peer) for peer in senders))
    seen = await asyncio.gather(*receivers)
    for ids in seen:
        assert all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
        assert ids == sorted(set(ids)), "not in strictly increasing id order"
        assert ids == seen[0], "connections saw different messages"
    all_ids = seen[0]
    for peer in senders[1:]:
        await peer.close()

    # 5.4 `History`: "the newest `CHAT_HISTORY_LIMIT` (5)", "oldest first". With
    # `since`: "`since` gives the messages with a larger id, at most the newest
    # `CHAT_HISTORY_LIMIT` of them"; "a `since` above every id gives no `History` and
    # is never an error".
    late = await opened(server)
    for since, expected in (
        ({}, all_ids[-5:]),
        ({"since": None}, all_ids[-5:]),
        ({"since": 0}, all_ids[-5:]),
        ({"since": -5}, all_ids[-5:]),
        ({"since": all_ids[10]}, all_ids[-5:]),
        ({"since": all_ids[-4]}, all_ids[-3:]),
        ({"since": all_ids[-2]}, all_ids[-1:]),
        ({"since": all_ids[-1] - 1}, all_ids[-1:]),
        ({"since": all_ids[-1]}, []),
        ({"since": all_ids[-1] + 1}, []),
        ({"since": 2**63 - 1}, []),
    ):
        _, history = await late.enter(join_key, "Late", history=bool(expected), **since)
        if expected:
            assert [m["id"] for m in history["messages"]] == expected, (since, history)
            for message in history["messages"]:
                assert set(message) == HISTORY_ENTRY, message
                utc(message["sent_at"])
        # "omitted when empty": the next frame answers the next request.
        assert (await late.ask(type="GetMembers"))["type"] == "Members"
        await late.send(type="LeaveRoom")

    # 5.5 "A message sent while a client joins may reach it both in `History` and live:
    # clients drop an id they have" -- and then it "misses nothing within
    # `CHAT_HISTORY_LIMIT` and shows nothing twice".
    burst = 300
    sent_ids: list[int] = []

    async def flood() -> None:
        for _ in range(burst):
            await alice.send(type="ChatMessage", content=cipher())

    thirty = asyncio.Event()  # the joiner comes in once 30 of them are out

    async def own_echoes() -> None:
        while len(sent_ids) < burst:
            frame = await alice.reply(10)
            if frame["type"] == "ChatMessage":
                sent_ids.append(frame["id"])
                if len(sent_ids) == 30:
                    thirty.set()

    flooding, echoing = asyncio.create_task(flood()), asyncio.create_task(own_echoes())
    await asyncio.wait_for(thirty.wait(), 10)
    joiner = await opened(server)
    _, history = await joiner.enter(join_key, "Joiner", history=True)
    have = [m["id"] for m in history["messages"]]
    assert len(have) == 5 and have == sorted(have)
    await asyncio.gather(flooding, echoing)
    while have[-1] != sent_ids[-1]:
        frame = await joiner.reply(10)
        if frame["type"] == "ChatMessage" and frame["id"] not in have:
            assert frame["id"] > have[-1], "live messages out of id order"
            have.append(frame["id"])
    everything = all_ids + sent_ids
    start = everything.index(have[0])
    assert have == everything[start:], "a message was missed"
    await joiner.close()

    # 5.6 Moderation closes: "an admin closing the room (4000), an admin removing the
    # participant (4001)" -- `room_closed`: "an admin closed or deleted the room; the
    # socket is then closed with 4000"; `kicked`: "an admin removed this participant;
    # the socket is then closed with 4001".
    admin = Admin(server.http)
    await asyncio.to_thread(admin.login)
    victim = await opened(server, "127.0.0.2")  # the kick keeps its address out of the room
    await victim.enter(join_key, "Victim", history=True)
    carol = await opened(server)
    await carol.enter(join_key, "Carol", history=True)
    await drain(alice)
    pk = participant_id(env, join_key, "Victim")
    await asyncio.to_thread(admin.act, "participant", "remove_from_room", pk)
    kicked = await victim.recv()
    while kicked["type"] != "Error":
        kicked = await victim.recv()
    assert kicked["code"] == "kicked", kicked
    assert await closed_code(victim) == 4001
    for peer in (alice, carol):
        assert await peer.recv() == {"type": "ParticipantLeft", "name": "Victim"}
    await asyncio.to_thread(admin.act, "room", "close_rooms", room_id)
    for peer in (alice, carol):
        frame = await peer.recv()
        while frame["type"] != "Error":
            frame = await peer.recv()
        assert frame["code"] == "room_closed", frame
        assert await closed_code(peer) == 4000
    # "afterwards its join key answers `room_not_found`" (Error codes: "no open room
    # has that join key").
    await piper.refused("already_in_room", type="JoinRoom", join_key=join_key, name="Piper")
    await piper.send(type="LeaveRoom")
    await piper.refused("room_not_found", type="JoinRoom", join_key=join_key, name="Piper")
    await piper.close()


# --- 6. A client that does not read --------------------------------------------------

SLOW_ENV = {
    "WS_SEND_QUEUE_LIMIT": "50",
    "WS_SEND_QUEUE_BYTES": str(16 * 1024 * 1024),
    "CHAT_MAX_CONTENT": "1100000",
    # A join reserves CHAT_HISTORY_LIMIT x CHAT_MAX_CONTENT of its address's
    # WS_SEND_QUEUE_BYTES (docs/protocol-notes.md): kept under it.
    "CHAT_HISTORY_LIMIT": "5",
    "CHAT_RATE_BURST": "100000",
    "CHAT_RATE_SUSTAINED": "100000",
    "CHAT_BYTES_PER_ADDRESS_BURST": "1000000000",
}
MEGABYTE = 1024 * 1024


async def stuck_reader(server):
    """A connection whose client stops reading: a small receive buffer, and websockets
    stops taking frames from the socket past one queued frame."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.connect(("127.0.0.1", server.port))
    return await connect(server.url, sock=sock, max_size=None, max_queue=1, compression=None)


async def flood_past(server, sizes: list[int]) -> tuple[int, int | None]:
    """A room with a sender and a stuck reader; the sender sends messages of `sizes`
    (bytes of "ciphertext") and reads its own echoes. Then the stuck one reads: how
    many chat messages it got, and how it was closed (None: it was not)."""
    sender = await opened(server)
    join_key = (await sender.create())["room_info"]["join_key"]
    stuck = await stuck_reader(server)
    await stuck.send(json.dumps({"type": "JoinRoom", "join_key": join_key, "name": "Stuck"}))
    assert await sender.recv() == {"type": "ParticipantJoined", "name": "Stuck"}
    assert checked(await stuck.recv())["type"] == "RoomJoined"

    async def echoes() -> None:
        got = 0
        while got < len(sizes):
            if (await sender.recv(30))["type"] == "ChatMessage":
                got += 1

    reading = asyncio.create_task(echoes())
    for size in sizes:
        await sender.send(type="ChatMessage", content=cipher(size))
    await reading
    await asyncio.sleep(0.5)
    got, code = 0, None
    try:
        while True:
            frame = checked(await asyncio.wait_for(stuck.recv(), 5))
            got += frame["type"] == "ChatMessage"
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd is not None else -1
    except TimeoutError:
        code = None
    if code is not None:
        assert await sender.recv() == {"type": "ParticipantLeft", "name": "Stuck"}
    await sender.close()
    await stuck.close()
    return got, code


RUNSERVER_4002 = pytest.mark.xfail(
    strict=True,
    reason="runserver (daphne) writes every frame into Twisted's buffer at once: nothing "
    "ever waits for a client that does not read, so 4002 never comes (and its memory grows)",
)


@pytest.mark.parametrize("command", ["serve", pytest.param("runserver", marks=RUNSERVER_4002)])
async def test_a_client_that_does_not_read_is_closed_with_4002(sqlite_env, servers, command):
    (server,) = servers({**sqlite_env, **SLOW_ENV}, command=command)
    # 6.1 WS_SEND_QUEUE_BYTES (16 MiB here): "frames and bytes that may wait unread for
    # one socket; past either it is closed with 4002". 30 messages of 1 MiB: fewer
    # frames than WS_SEND_QUEUE_LIMIT (50) can ever wait, so only the bytes can close it.
    got, code = await flood_past(server, [786_432] * 30)  # 1 MiB of base64 each
    assert code == 4002 and got < 30, (got, code)
    # 6.2 WS_SEND_QUEUE_LIMIT (50): 8 MiB to fill what the sockets buffer, then 80 small
    # frames: far fewer bytes than 16 MiB can wait, so only the frame count can close it.
    got, code = await flood_past(server, [786_432] * 8 + [28] * 80)
    assert code == 4002 and got < 88, (got, code)


RUNSERVER_ORIGIN = pytest.mark.xfail(
    strict=True,
    reason="runserver (daphne): autobahn parses the Origin itself and answers one it cannot "
    "parse (no host, a bad port) with HTTP 400 before the application sees it",
)


@pytest.mark.parametrize("command", ["serve", pytest.param("runserver", marks=RUNSERVER_ORIGIN)])
async def test_an_origin_is_judged_by_its_host_alone(sqlite_env, servers, command):
    """Transport: "a handshake that carries an `Origin` header must come from an allowed
    host (the Origin's host, without its port, matches Django `ALLOWED_HOSTS`), else it
    is refused with HTTP 403" -- also an Origin with no host, or with a port no URL has."""
    (server,) = servers(sqlite_env, command=command)
    for origin in ("garbage", "http://", "http://:80"):
        assert await handshake_status(server.url, origin) == 403, origin
    assert await handshake_status(server.url, "http://localhost:99999") == 101
    assert await handshake_status(server.url, "http://evil.example:99999") == 403
