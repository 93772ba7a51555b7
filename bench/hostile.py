"""Attackers for `bench/run.sh hostile`: one person per attack of issue 14, each from a
loopback address of its own (127.0.2.K), for --duration seconds, while bench/loadgen.py
keeps 50 rooms chatting. Prints one JSON object: per attack, what the attacker got.

    .venv/bin/python bench/hostile.py --port 8540 --duration 60 [--attack joinleave ...]

The attacks: `joinleave` (sockets that never read loop JoinRoom/LeaveRoom on a room with
a large history), `guess` (200 simultaneous wrong passwords), `connections` (300 sockets
from one address), `uploads` (maximum-size uploads back to back), `rooms` (CreateRoom in
a loop), `badframes` (a flood of frames the server refuses), `sessions` (cookieless
GET /, counting the session cookies handed out), `storage` (20 sockets, each alone in a
room of its own, storing chat messages of 60,000 characters as fast as each one's rate
lets, backing off a second after each `rate_limited`: the bytes stored), `joinloop` (20
sockets at a time, each opened to join a room once and closed: the joins let in),
`crowd` (a room of --crowd members from many addresses, who read everything, and 50
sockets of one address in it saying the least a message can be, as fast as they are
let: what one address makes the server deliver; with --speakers-from N the 50 sockets
come from N addresses, 127.0.5.1 to 127.0.5.N, each with its own per-address buckets;
with --churn the --speakers sockets say nothing and instead join the room and leave it
again as fast as their join limits let them: what comings and goings make it deliver;
--speak-at: when the speakers start, the crowd joining until then, its joins refused
for the room's deliveries sent again a second later).
"""

import argparse
import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import sys
import time
import urllib.request
from collections import Counter

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

ATTACKS = (
    "joinleave", "guess", "connections", "uploads", "rooms", "badframes", "sessions", "storage", "joinloop",
    "crowd",
)  # fmt: skip
CROWD = 300  # --crowd
SPEAKERS_FROM = 1  # --speakers-from
SPEAKERS = 50  # --speakers
CHURN = False  # --churn
SPEAK_AT: float | None = None  # --speak-at


def content(size: int) -> str:
    """Chat content the server takes: base64 of nonce, ciphertext and tag (random bytes)."""
    return base64.b64encode(os.urandom(size)).decode()


class Raw:
    """A WebSocket that writes and never reads: its server-side queue only grows."""

    def __init__(self, sock: socket.socket, status: int) -> None:
        self.sock, self.status = sock, status

    @classmethod
    async def open(cls, port: int, source: str) -> "Raw":
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind((source, 0))
        await loop.sock_connect(sock, ("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ws/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await loop.sock_recv(sock, 4096)
            if not chunk:
                break
            head += chunk
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
        return cls(sock, status)

    async def send(self, frame: dict) -> None:
        payload = json.dumps(frame).encode()
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x81, 0x80 | length)
        elif length < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        await asyncio.get_running_loop().sock_sendall(self.sock, header + mask + masked)

    def close(self) -> None:
        self.sock.close()


async def ws(port: int, source: str):
    return await connect(
        f"ws://127.0.0.1:{port}/ws/", max_size=None, compression=None, ping_interval=None,
        local_addr=(source, 0), open_timeout=30,
    )  # fmt: skip


async def reply(socket_, *types: str, within: float = 30) -> dict:
    while True:
        frame = json.loads(await asyncio.wait_for(socket_.recv(), within))
        if frame["type"] in types or frame["type"] == "Error":
            return frame


async def outcome(socket_, *types: str) -> str:
    try:
        frame = await reply(socket_, *types)
    except ConnectionClosed as exc:
        return f"closed {exc.rcvd.code if exc.rcvd else 'abruptly'}"
    except TimeoutError:
        return "no answer"
    return frame["code"] if frame["type"] == "Error" else frame["type"]


async def room(port: int, source: str, password: str | None = None, history: int = 0) -> str:
    """A room made by someone else (its join key), optionally with `history` large messages."""
    async with await ws(port, source) as owner:
        create = {"type": "CreateRoom", "name": "target", "description": "", "password": password}
        await owner.send(json.dumps(create))
        created = await reply(owner, "RoomCreated")
        for k in range(history):
            await owner.send(json.dumps({"type": "ChatMessage", "content": content(45_000)}))
            await reply(owner, "ChatMessage")
            if k % 15 == 14:
                await asyncio.sleep(1.6)  # under CHAT_RATE_SUSTAINED
        return created["room_info"]["join_key"]


async def joinleave(port: int, source: str, until: float, got: Counter) -> None:
    key = await room(port, "127.0.0.1", history=100)

    async def one() -> None:
        raw = await Raw.open(port, source)
        got[f"handshake {raw.status}"] += 1
        try:
            while time.monotonic() < until:
                await raw.send({"type": "JoinRoom", "join_key": key, "name": f"x{os.getpid()}"})
                await raw.send({"type": "LeaveRoom"})
                got["join+leave sent"] += 1
        except OSError:
            got["closed by the server"] += 1
        finally:
            raw.close()

    await asyncio.gather(*(one() for _ in range(20)))


async def guess(port: int, source: str, until: float, got: Counter) -> None:
    key = await room(port, "127.0.0.1", password="the right one")

    async def one(k: int) -> None:
        try:
            async with await ws(port, source) as attacker:
                await attacker.send(json.dumps({"type": "JoinRoom", "join_key": key, "name": f"g{k}",
                                                "password": f"guess {k}"}))  # fmt: skip
                got[await outcome(attacker, "RoomJoined")] += 1
        except OSError as exc:
            got[f"refused: {type(exc).__name__}"] += 1
        except Exception as exc:  # a refused handshake
            got[f"refused: {type(exc).__name__}"] += 1

    await asyncio.gather(*(one(k) for k in range(200)))


async def connections(port: int, source: str, until: float, got: Counter) -> None:
    sockets = await asyncio.gather(*(Raw.open(port, source) for _ in range(300)), return_exceptions=True)
    got.update(f"handshake {s.status}" if isinstance(s, Raw) else type(s).__name__ for s in sockets)
    await asyncio.sleep(max(0.0, until - time.monotonic()))
    for s in sockets:
        if isinstance(s, Raw):
            s.close()


async def uploads(port: int, source: str, until: float, got: Counter) -> None:
    data = base64.b64encode(b"PK\x03\x04" + os.urandom(10 * 1024 * 1024 - 1024)).decode()  # a zip's magic
    upload = {"type": "UploadFile", "name": "a.zip", "mime_type": "application/zip", "content": data}
    frame = json.dumps(upload)

    async def one() -> None:
        async with await ws(port, source) as attacker:
            await attacker.send(json.dumps({"type": "CreateRoom", "name": "mine", "description": ""}))
            await reply(attacker, "RoomCreated")
            while time.monotonic() < until:
                await attacker.send(frame)
                got[await outcome(attacker, "FileUploaded")] += 1

    await asyncio.gather(*(one() for _ in range(4)), return_exceptions=True)


async def rooms(port: int, source: str, until: float, got: Counter) -> None:
    async with await ws(port, source) as attacker:
        while time.monotonic() < until and sum(got.values()) < 2000:
            await attacker.send(json.dumps({"type": "CreateRoom", "name": "spam", "description": ""}))
            answer = await outcome(attacker, "RoomCreated")
            got[answer] += 1
            if answer.startswith("closed"):
                break
            await attacker.send(json.dumps({"type": "LeaveRoom"}))


async def badframes(port: int, source: str, until: float, got: Counter) -> None:
    async with await ws(port, source) as attacker:
        while time.monotonic() < until and sum(got.values()) < 20000:
            await attacker.send('{"type": "NoSuchThing"}')
            answer = await outcome(attacker)
            got[answer] += 1
            if answer.startswith("closed"):
                break


async def sessions(port: int, source: str, until: float, got: Counter) -> None:
    def one() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            cookie = response.headers.get("Set-Cookie") or ""
            return "session cookie" if "sessionid" in cookie else "no cookie"

    for _ in range(1000):
        if time.monotonic() > until:
            break
        got[await asyncio.to_thread(one)] += 1


async def storage(port: int, source: str, until: float, got: Counter) -> None:
    text = content(45_000)

    async def one(k: int) -> None:
        async with await ws(port, source) as attacker:
            await attacker.send(json.dumps({"type": "CreateRoom", "name": f"disk {k}", "description": ""}))
            if (answer := await outcome(attacker, "RoomCreated")) != "RoomCreated":
                got[f"CreateRoom: {answer}"] += 1
                return
            while time.monotonic() < until:
                started = time.monotonic()
                await attacker.send(json.dumps({"type": "ChatMessage", "content": text}))
                answer = await outcome(attacker, "ChatMessage")
                got[answer] += 1
                if answer == "ChatMessage":
                    got["bytes stored"] += len(text)
                elif answer.startswith("closed"):
                    return
                pause = 1.0 if answer == "rate_limited" else 1 / 9  # under CHAT_RATE_SUSTAINED
                await asyncio.sleep(max(0.0, pause - (time.monotonic() - started)))

    await asyncio.gather(*(one(k) for k in range(20)), return_exceptions=True)


async def joinloop(port: int, source: str, until: float, got: Counter) -> None:
    key = await room(port, "127.0.0.1")

    async def one(k: int) -> None:
        while time.monotonic() < until:
            async with await ws(port, source) as attacker:
                await attacker.send(json.dumps({"type": "JoinRoom", "join_key": key, "name": f"j{k}"}))
                answer = await outcome(attacker, "RoomJoined")
            got[answer] += 1
            if answer != "RoomJoined":
                await asyncio.sleep(1.0)  # under the 1008 rule, were it one socket

    await asyncio.gather(*(one(k) for k in range(20)), return_exceptions=True)


async def crowd(port: int, source: str, until: float, got: Counter) -> None:
    key = await room(port, "127.0.0.1")
    loop = asyncio.get_running_loop()

    crowd_in = asyncio.Event()  # every member of the crowd joined

    async def member(k: int) -> None:
        """Joins from an address of its own (5 an address) and reads every byte, unparsed.
        The joins are spread over CROWD / 100 seconds, as the database queue lets them in;
        one refused `rate_limited` (its first frame) is sent again a second later, as the
        page and chatclient do."""
        await asyncio.sleep(k / 100)
        raw = await Raw.open(port, f"127.0.3.{k // 5 + 1}")
        join, joined = {"type": "JoinRoom", "join_key": key, "name": f"m{k}"}, False
        try:
            await raw.send(join)
            while chunk := await loop.sock_recv(raw.sock, 1 << 16):
                if not joined and b'"rate_limited"' in chunk[:200] and b'"RoomJoined"' not in chunk[:200]:
                    got["crowd joins refused rate_limited"] += 1
                    await asyncio.sleep(1.0)
                    await raw.send(join)
                    continue
                if not joined:
                    joined = True
                    got["crowd joined"] += 1
                    if got["crowd joined"] == CROWD:
                        crowd_in.set()
                got["bytes delivered to the crowd"] += len(chunk)
            if time.monotonic() < until:
                got["crowd members closed by the server"] += 1
        except OSError:
            got["crowd members closed by the server"] += 1
        finally:
            raw.close()

    def speaker_address(k: int) -> str:
        return source if SPEAKERS_FROM == 1 else f"127.0.5.{k % SPEAKERS_FROM + 1}"

    async def churner(k: int) -> None:
        """Joins, leaves and joins again, as often as the join limits let it; a second's
        pause after each refusal."""
        async with await ws(port, speaker_address(k)) as attacker:
            while time.monotonic() < until:
                await attacker.send(json.dumps({"type": "JoinRoom", "join_key": key, "name": f"s{k}"}))
                answer = await outcome(attacker, "RoomJoined")
                got[f"JoinRoom: {answer}"] += 1
                if answer.startswith("closed"):
                    return
                if answer != "RoomJoined":
                    await asyncio.sleep(1.0)
                    continue
                await attacker.send(json.dumps({"type": "LeaveRoom"}))

    async def speaker(k: int) -> None:
        async with await ws(port, speaker_address(k)) as attacker:
            for _ in range(10):  # an address's joins at once are bounded: again, a moment later
                await attacker.send(json.dumps({"type": "JoinRoom", "join_key": key, "name": f"s{k}"}))
                if (answer := await outcome(attacker, "RoomJoined")) == "RoomJoined":
                    break
                got[f"JoinRoom: {answer}"] += 1
                await asyncio.sleep(1.0)
            else:
                return

            held_until = 0.0  # refused for its rate: a second's pause, as under the 1008 rule

            async def drain() -> None:
                nonlocal held_until
                async for raw in attacker:
                    frame = json.loads(raw)
                    if frame["type"] == "Error":
                        got[frame["code"]] += 1
                        held_until = time.monotonic() + 1.0
                    elif frame["type"] == "ChatMessage" and frame["sender"] == f"s{k}":
                        got["messages stored"] += 1

            draining = asyncio.create_task(drain())
            try:
                while time.monotonic() < until and not draining.done():
                    if time.monotonic() >= held_until:
                        await attacker.send(json.dumps({"type": "ChatMessage", "content": content(28)}))
                    await asyncio.sleep(0.1)  # CHAT_RATE_SUSTAINED
            finally:
                draining.cancel()

    crowd = [asyncio.create_task(member(k)) for k in range(CROWD)]
    if SPEAK_AT is None:
        await asyncio.sleep(CROWD / 100 + 2)  # the crowd joins
    else:  # the crowd joins (those refused for the room's deliveries, again) until then
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(crowd_in.wait(), SPEAK_AT - time.time())
        await asyncio.sleep(SPEAK_AT - time.time())
    got["crowd joined before the attack"] = got["crowd joined"]
    speak = churner if CHURN else speaker
    await asyncio.gather(*(speak(k) for k in range(SPEAKERS)), return_exceptions=True)
    for task in crowd:
        task.cancel()
    await asyncio.gather(*crowd, return_exceptions=True)


RUNNERS = {
    "joinleave": joinleave,
    "guess": guess,
    "connections": connections,
    "uploads": uploads,
    "rooms": rooms,
    "badframes": badframes,
    "sessions": sessions,
    "storage": storage,
    "joinloop": joinloop,
    "crowd": crowd,
}


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return round(kib / 1024, 1)


async def main(args: argparse.Namespace) -> dict:
    """Every chosen attack at once, each from its own address; the server's memory
    before and at its highest meanwhile."""
    until = time.monotonic() + args.duration
    before = rss_mib(args.server_pid) if args.server_pid else None
    peak = before
    chosen = [name for name in ATTACKS if name in (args.attack or ATTACKS)]
    got = {name: Counter() for name in chosen}
    runs = [
        # An attacker the server has stopped answering is given up 30 s after the end.
        asyncio.wait_for(RUNNERS[name](args.port, f"127.0.2.{k + 1}", until, got[name]), args.duration + 30)
        for k, name in enumerate(chosen)
    ]
    attacks = asyncio.gather(*runs, return_exceptions=True)
    while not attacks.done():
        if args.server_pid:
            peak = max(peak, rss_mib(args.server_pid))
        await asyncio.wait([attacks], timeout=1)
    figures: dict = {}
    for name, result in zip(chosen, attacks.result(), strict=True):
        figures[name] = dict(got[name])
        if isinstance(result, BaseException):
            figures[name]["ended by"] = "the 30 s grace" if isinstance(result, TimeoutError) else repr(result)
    return {"attacks": figures, "server_rss_mib": {"before": before, "peak": peak}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--attack", action="append", choices=ATTACKS)
    parser.add_argument("--server-pid", type=int, default=None, help="sample this PID's VmRSS")
    parser.add_argument("--crowd", type=int, default=CROWD, help="members of the crowd attack's room")
    parser.add_argument(
        "--speakers-from",
        type=int,
        default=SPEAKERS_FROM,
        help="addresses the speakers share",
    )
    parser.add_argument("--speakers", type=int, default=SPEAKERS, help="the crowd attack's speaking sockets")
    parser.add_argument("--churn", action="store_true", help="the speakers join and leave, saying nothing")
    parser.add_argument(
        "--speak-at",
        type=float,
        default=None,
        help="the unix time the speakers start (the crowd joins until then); default: once it had time to",
    )
    arguments = parser.parse_args()
    CROWD, SPEAKERS_FROM = arguments.crowd, arguments.speakers_from
    SPEAKERS, CHURN, SPEAK_AT = arguments.speakers, arguments.churn, arguments.speak_at
    figures = asyncio.run(main(arguments))
    print(json.dumps({"scenario": "hostile", **figures}))
    sys.exit(0)
