"""Hostile input against a live `serve` process: 10,000 generated frames over many
connections. Every frame is answered (an invalid one with exactly the code the parser
gives it), no connection is dropped, a chat elsewhere keeps flowing, and a normal
session works afterwards."""

import asyncio
import json
import random
import time

import pytest
from websockets.exceptions import ConnectionClosed

from chat import protocol
from chat.errors import ProtocolError
from chatclient.crypto import decrypt
from tests.e2e.wsclient import Client, room_of_two

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CONNECTIONS = 20
FRAMES_PER_CONNECTION = 500

VALID = [
    {"type": "CreateRoom", "name": "Fuzz room", "description": "d", "password": None},
    {"type": "JoinRoom", "join_key": "KEY", "name": "Fuzzer", "password": None},
    {"type": "ChatMessage", "content": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw=="},
    {"type": "GetMembers"},
    {"type": "LeaveRoom"},
    {"type": "UploadFile", "name": "a.txt", "mime_type": "text/plain", "content": "aGVsbG8="},
    {"type": "GetFile", "file_id": "00000000-0000-0000-0000-000000000000"},
    {"type": "DeleteFile", "file_id": "x"},
]
ODD_VALUES = [None, True, 0, -1, 2**70, 1.5, "", "x" * 300, [], {}, [1, [2, [3]]], {"a": {"b": None}},
              "\u202e\u0000\x7f", "🙂" * 60, "\ud800"]  # fmt: skip


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def mutate(rng: random.Random, join_key: str) -> str | bytes:
    """One hostile frame: text (str) or binary (bytes)."""
    frame = json.loads(json.dumps(rng.choice(VALID)).replace("KEY", join_key))
    kind = rng.randrange(12)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 200))  # random binary
    if kind == 1:
        return "\udcff\xff".encode("utf-8", "surrogatepass") + rng.randbytes(10)  # invalid UTF-8, binary
    if kind == 2:
        frame.pop(rng.choice(list(frame)), None)
    elif kind == 3:
        frame[rng.choice(list(frame))] = rng.choice(ODD_VALUES)
    elif kind == 4:
        frame[rng.choice(["name", "content", "description", "file_id"])] = "A" * rng.choice(
            [10**4, 10**5, 70_000]
        )
    elif kind == 5:
        return '{"type": "ChatMessage", "content": ' + nested(rng.randrange(20, 200)) + "}"
    elif kind == 6:
        text = json.dumps(frame)
        return text[: rng.randrange(len(text))]  # truncated
    elif kind == 7:
        return rng.choice(["NaN", "[]", "1e999", "\ufeff{}", '{"type": 1e400}', "null", '"x"', "{" * 50])
    elif kind == 8:
        frame["type"] = rng.choice(["", "getmembers", "Chat Message", "__class__", "ChatMessage\x00"])
    elif kind == 9:
        text = json.dumps(frame)
        return text[:-1] + ', "type": "' + rng.choice(["Nope", "GetMembers"]) + '"}'  # duplicate key
    elif kind == 10:
        frame["since"] = rng.choice([10**25, -(10**21), 10**19, "1", 1.0])
    text = json.dumps(frame, ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate goes as a JSON escape
        text = json.dumps(frame)
    return text


def parsed(frame: str | bytes) -> protocol.Command | str:
    """The command the server must act on, or the error code it must answer."""
    if isinstance(frame, bytes):
        return "invalid_json"
    try:
        return protocol.parse_client_message(frame)
    except ProtocolError as exc:
        return exc.code.value


def busy(frame: str | bytes, answer: dict) -> bool:
    """A frame the server sets aside for a worker (over LARGE_STRING) may be refused
    before it is parsed while the bounded work queue is full (issue 14, item 3)."""
    return len(frame) > protocol.LARGE_STRING and answer.get("code") == "rate_limited"


async def fuzz_connection(url: str, join_key: str, seed: int, tally: dict) -> None:
    """Send frames one at a time; each gets exactly one answer (a valid upload two).
    Odd seeds sit in a room of their own, even ones stay in the lobby. A lobby
    connection never sends a valid CreateRoom or JoinRoom, a seated one never a valid
    LeaveRoom: the only commands that would change its state or go unanswered."""
    rng = random.Random(seed)
    in_room = seed % 2 == 1
    client = await Client.open(url)
    if in_room:
        await client.create(name=f"Fuzz {seed}")
    skip = (protocol.LeaveRoom,) if in_room else (protocol.CreateRoom, protocol.JoinRoom)
    sent = 0
    while sent < FRAMES_PER_CONNECTION:
        frame = mutate(rng, join_key)
        meaning = parsed(frame)
        if isinstance(meaning, skip):
            continue
        await client.connection.send(frame)
        tally["distinct"].add(frame)
        answer = await client.recv(within=20)
        if answer["type"] == "FileUploaded":
            assert (await client.recv(within=20))["type"] == "ChatMessage"
        if busy(frame, answer):
            tally["busy"] += 1
        elif isinstance(meaning, str):
            assert answer["type"] == "Error" and answer["code"] == meaning, (frame[:200], answer)
            tally["errors"] += 1
        sent += 1
        tally["frames"] += 1
    await client.close()


async def probe_chat(url: str, stop: asyncio.Event, latencies: list[float]) -> None:
    """Two people chatting in their own room, a message every 20 ms, until `stop`."""
    alice, bob, _ = await room_of_two(url, name="Probe")
    count = 0
    while not stop.is_set():
        text = f"probe {count}"
        sent = time.perf_counter()
        await alice.say(text)
        received = await bob.expect("ChatMessage", within=10)
        latencies.append(time.perf_counter() - sent)
        assert decrypt(bob.key, received["content"]) == text
        await alice.expect("ChatMessage")
        count += 1
        await asyncio.sleep(0.02)
    await alice.close()
    await bob.close()


async def test_ten_thousand_hostile_frames(sqlite_env, servers):
    env = {**sqlite_env, "CHAT_RATE_BURST": "100000", "CHAT_RATE_SUSTAINED": "100000",
           "CHAT_BYTES_PER_ADDRESS_BURST": "1000000000",
           "JOIN_FAILURES_PER_MINUTE": "100000", "FILES_UPLOADS_PER_MINUTE": "100000"}  # fmt: skip
    (server,) = servers(env)
    host = await Client.open(server.url)
    join_key = (await host.create(name="Target"))["room_info"]["join_key"]
    stop, latencies = asyncio.Event(), []
    probe = asyncio.create_task(probe_chat(server.url, stop, latencies))
    tally = {"frames": 0, "errors": 0, "busy": 0, "distinct": set()}
    try:
        await asyncio.gather(
            *(fuzz_connection(server.url, join_key, seed, tally) for seed in range(CONNECTIONS))
        )
    finally:
        stop.set()
    await probe
    assert tally["frames"] == CONNECTIONS * FRAMES_PER_CONNECTION >= 10_000
    assert tally["errors"] > tally["frames"] // 2  # mostly hostile, as meant
    # Every connection sends frames of its own: they once all sent the same 500 (the
    # lobby one apart), at most 1,000 distinct frames; now 2,726 (many hostile frames
    # are short and recur, such as a truncated '{"type": ').
    distinct = len(tally.pop("distinct"))
    print(f"fuzz: {distinct} distinct frames")
    assert distinct > 2 * FRAMES_PER_CONNECTION
    # Chat in another room kept flowing: every probe message arrived, none took seconds.
    ordered = sorted(latencies)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    worst = ordered[-1] * 1000
    print(f"fuzz: {tally}, probe: {len(latencies)} messages, p99 {p99 * 1000:.1f} ms, max {worst:.1f} ms")
    assert len(latencies) > 20 and ordered[-1] < 2.0

    # The server is fine: the first socket still works, and a fresh session too.
    assert await host.members() == ["Owner"]
    newcomer = await Client.open(server.url)
    await newcomer.join(join_key, "Newcomer")
    await newcomer.say("after the storm")
    assert decrypt(host.key, (await host.expect("ChatMessage"))["content"]) == "after the storm"
    await newcomer.close()
    await host.close()


async def test_invalid_utf8_in_a_text_frame_closes_only_that_socket(sqlite_env, servers):
    """Not JSON's business: RFC 6455 makes the WebSocket layer close it (1007)."""
    (server,) = servers(sqlite_env)
    bystander = await Client.open(server.url)
    await bystander.create()
    rogue = await Client.open(server.url)
    await rogue.connection.send(b'{"type": "GetMembers", "x": "\xff\xfe"}', text=True)
    with pytest.raises(ConnectionClosed) as closed:
        await rogue.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
    assert await bystander.members() == ["Owner"]
    await bystander.close()
