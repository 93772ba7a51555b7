#!/usr/bin/env python3
"""Load generator for the chat server: a real WebSocket client speaking PROTOCOL.md.

Scenarios (each has --help):
  fanout  --members M --senders S --rate R --duration D [--server-pid PID]
          one room of M connections; S of them send R AES-GCM messages/s each for D s;
          every member times every delivery against the sender's send time; with
          --server-pid, the server's CPU from the first send to the last delivery.
  flood   --members M --duration D --window W
          one sender, as fast as the server takes it, at most W messages in flight.
  joins   --count N --concurrency C [--password PW] [--chat-probe] [--no-join]
          N JoinRoom operations, each on a fresh connection; with --chat-probe a second
          room chats at 20 messages/s meanwhile and reports its latency; with --no-join
          each connection opens and closes without joining (what a join cycle costs
          before the join).
  idle    --count N --rooms R [--server-pid PID]
          N idle connections joined in R rooms; server RSS per connection from /proc.

The server's per-connection chat rate limit (default 20 burst, 10/s) refuses senders
above 10 messages/s, and the probe too once a server stall releases its queued frames
in one burst; start the server with the limits raised:
  PORT=8100 CHAT_RATE_BURST=100000 CHAT_RATE_SUSTAINED=100000 \
      CHAT_BYTES_PER_ADDRESS_BURST=1000000000 CHAT_BYTES_PER_ADDRESS_SUSTAINED=1000000000 \
      bash bench/start_server.sh &
  .venv/bin/python bench/loadgen.py --url ws://127.0.0.1:8100/ws/ fanout
Use a fresh server per scenario (or wait a minute between runs): the in-memory channel
layer keeps queues of just-closed connections for 60 s and scans them on every send.

Connections that only listen (all but the senders in fanout and flood, all of them in
idle) use a lean built-in ws:// receiver (LeanClient) that costs a fraction of the CPU per
delivered frame of a `websockets` connection, so that one load generator can take 20,000+
deliveries/s next to the server on a small machine; `--receiver websockets` puts them back
on `websockets` (to compare, or where there is no epoll). Both count the same way (Member).

Every scenario also reports machine_steal_percent: the share of the machine's CPU time
its host gave to other guests over the run (/proc/stat). On a virtual machine the same
build's figures move with it, so a run with much steal compares only with its neighbours.

The human summary goes to stdout, or to stderr with --json (stdout then holds one JSON
object). Exit status: 0 all delivered in order, 1 anything lost, duplicated, out of
order, refused with Error or closed by the server, 2 the scenario could not run.
Imports only the standard library, `websockets` and `cryptography`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import hashlib
import ipaddress
import itertools
import json
import json.scanner
import math
import os
import resource
import select
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

REPLY_TIMEOUT = 30.0  # seconds to wait for RoomCreated / RoomJoined
OPEN_TIMEOUT = 60.0  # seconds to connect and finish the WebSocket handshake
# --sources N: connections spread over the loopback addresses 127.0.1.1-127.0.1.N, so that
# the server's per-address limits (CONNECTIONS_PER_ADDRESS, ROOMS_PER_HOUR) see the load
# as N people, as a real crowd would be. 0: the system's choice (127.0.0.1).
SOURCES = 0
_connections = itertools.count()


def next_source() -> tuple[str, int] | None:
    if not SOURCES:
        return None
    return (f"127.0.1.{next(_connections) % SOURCES + 1}", 0)


CLOSE_TIMEOUT = 10.0  # seconds to wait for the server to end a closing connection
STRAGGLER_TIMEOUT = 5.0  # seconds to wait for deliveries after the last send
SETUP_CONCURRENCY = 50  # connections opened at once while setting up rooms
MAX_PRINTED_ERRORS = 10

# json.loads without its Python wrappers (a third of the cost of a small frame): the C
# scanner, with json.loads itself deciding whenever the scan does not cover the whole text.
scan_json = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[attr-defined]


class ProtocolFailure(Exception):
    """The server refused a request with Error, or did not answer it."""


class Run:
    """What one room's clients share in-process: send times and failures."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.sent: dict[str, float] = {}  # content -> perf_counter() just before sending
        self.errors: list[str] = []
        self.hinted = False
        self.delivered = 0  # matched deliveries, all members together
        self.target: int | None = None  # deliveries expected, once sending has ended
        self.all_delivered = asyncio.Event()

    def fail(self, what: str) -> None:
        self.errors.append(what)
        if len(self.errors) <= MAX_PRINTED_ERRORS:
            print(f"[{self.label}] {what}", file=sys.stderr)
        elif len(self.errors) == MAX_PRINTED_ERRORS + 1:
            print(f"[{self.label}] (further errors counted, not printed)", file=sys.stderr)
        if "rate_limited" in what and not self.hinted:
            self.hinted = True
            hint = "hint: start the server with CHAT_RATE_* and CHAT_BYTES_PER_ADDRESS_* raised"
            print(hint, file=sys.stderr)


class Member:
    """One connection's accounting, whichever WebSocket client carries it.

    `_dispatch` takes each text message with the time it was read; both clients feed it,
    so they count deliveries, duplicates, order and latency the same way.
    """

    reader: asyncio.Future[None]  # done once the connection is gone

    def __init__(self, name: str, run: Run) -> None:
        self.name, self.run = name, run
        self.aead: AESGCM | None = None
        self.reply: asyncio.Future[dict[str, Any]] | None = None
        self.latencies: list[float] = []  # seconds, one per matched delivery
        self.slow: list[tuple[float, float]] = []  # (sent at, latency) of those over SLOW
        self.seen_ids: set[int] = set()
        self.seen_contents: set[str] = set()
        self.last_id: int | None = None
        self.last_receive = 0.0
        self.duplicates = self.order_violations = self.unknown = 0
        self.own: set[str] = set()  # flood: own messages not yet echoed
        self.window: asyncio.Semaphore | None = None
        self.closing = False
        # Frames other than chat: sent (Typing, React) and received (Typing, Reactions...).
        self.sent_kinds: Counter[str] = Counter()
        self.received_kinds: Counter[str] = Counter()

    def _dispatch(self, raw: str, now: float) -> None:
        try:
            try:
                message, end = scan_json(raw, 0)
            except StopIteration:
                end = -1
            if end != len(raw):
                message = json.loads(raw)  # whitespace around it, or not JSON: json.loads decides
            kind = message["type"]
            if kind == "ChatMessage":
                message_id, content = message["id"], message["content"]
                if type(message_id) is not int or type(content) is not str:
                    raise TypeError("a ChatMessage needs an integer id and a string content")
        except (ValueError, KeyError, TypeError):
            self.run.fail(f"{self.name}: not a protocol frame: {raw[:100]!r}")
            return
        if kind == "ChatMessage":
            self._delivered(message_id, content, now)
        elif kind in ("RoomCreated", "RoomJoined"):
            self._answer(message)
        elif kind == "Error":
            self._refused(message)
        else:
            self.received_kinds[kind] += 1

    def _delivered(self, message_id: int, content: str, now: float) -> None:
        seen_ids, seen_contents = self.seen_ids, self.seen_contents
        if message_id in seen_ids or content in seen_contents:
            self.duplicates += 1
            return
        seen_ids.add(message_id)
        seen_contents.add(content)
        last_id = self.last_id
        if last_id is None or message_id > last_id:
            self.last_id = message_id
        else:
            self.order_violations += 1
        run = self.run
        sent_at = run.sent.get(content)
        if sent_at is None:
            self.unknown += 1
            return
        latency = now - sent_at
        self.latencies.append(latency)
        if latency > SLOW:
            self.slow.append((sent_at, latency))
        self.last_receive = now
        run.delivered += 1
        if run.target is not None and run.delivered >= run.target:
            run.all_delivered.set()
        if self.own and content in self.own and self.window is not None:
            self.own.discard(content)
            self.window.release()

    def _answer(self, message: dict[str, Any]) -> None:
        if self.reply is not None and not self.reply.done():
            self.reply.set_result(message)
        else:
            self.run.fail(f"{self.name}: unexpected {message['type']}")

    def _refused(self, message: dict[str, Any]) -> None:
        text = f"{self.name}: Error {message.get('code')}: {message.get('message')}"
        if self.reply is not None and not self.reply.done():
            self.reply.set_exception(ProtocolFailure(text))
        else:
            self.run.fail(text)

    def _lost(self, close_code: int | None) -> None:
        """The connection is gone: a failure unless we closed it."""
        if not self.closing:
            self.run.fail(f"{self.name}: closed by the server (code {close_code})")
        if self.reply is not None and not self.reply.done():
            self.reply.set_exception(ProtocolFailure(f"{self.name}: connection closed"))

    async def _send_text(self, text: str) -> None:
        raise NotImplementedError

    async def _request(self, frame: dict[str, Any]) -> dict[str, Any]:
        self.reply = asyncio.get_running_loop().create_future()
        try:
            await self._send_text(json.dumps(frame))
            answer = await asyncio.wait_for(self.reply, REPLY_TIMEOUT)
        finally:
            self.reply = None
        self.aead = AESGCM(base64.b64decode(answer["encryption_key"]))
        return answer

    async def create_room(self, room_name: str, password: str | None = None) -> dict[str, Any]:
        frame = {"type": "CreateRoom", "name": room_name, "description": "loadgen", "owner_name": self.name}
        return await self._request({**frame, "password": password})

    async def join(self, join_key: str, password: str | None = None) -> dict[str, Any]:
        frame = {"type": "JoinRoom", "join_key": join_key, "name": self.name, "password": password}
        return await self._request(frame)

    def encrypt(self, plaintext: str) -> str:
        """PROTOCOL.md Encryption: base64(nonce(12) || ciphertext || tag(16))."""
        assert self.aead is not None, "not in a room"
        nonce = os.urandom(12)
        return base64.b64encode(nonce + self.aead.encrypt(nonce, plaintext.encode(), None)).decode()

    async def close(self) -> None:
        raise NotImplementedError


class Client(Member):
    """A `websockets` connection: a reader task records every ChatMessage delivery.

    Used by every connection that sends chat, and by all of them with --receiver websockets.
    """

    def __init__(self, ws: ClientConnection, name: str, run: Run) -> None:
        super().__init__(name, run)
        self.ws = ws
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, name: str, run: Run) -> Client:
        # No client pings: the server pings, and a busy load generator must not time out.
        ws = await connect(
            url,
            max_size=None,
            compression=None,
            ping_interval=None,
            open_timeout=OPEN_TIMEOUT,
            local_addr=next_source(),
        )
        return cls(ws, name, run)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                now = time.perf_counter()
                if isinstance(raw, bytes):  # a binary frame: read as UTF-8 JSON all the same
                    try:
                        raw = raw.decode()
                    except UnicodeDecodeError:
                        self.run.fail(f"{self.name}: binary frame is not UTF-8: {raw[:100]!r}")
                        continue
                self._dispatch(raw, now)
        except ConnectionClosed:
            pass
        self._lost(self.ws.close_code)

    async def _send_text(self, text: str) -> None:
        await self.ws.send(text)

    async def send_chat(self, content: str) -> None:
        self.run.sent[content] = time.perf_counter()
        await self.ws.send(json.dumps({"type": "ChatMessage", "content": content}))

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def close(self) -> None:
        self.closing = True
        await self.ws.close()
        await self.reader


# --- Lean receiver ------------------------------------------------------------------

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
MAX_RESPONSE_HEAD = 65536  # bytes of the HTTP 101 response, headers included
# Every lean receiver reads into this one buffer and is done with it before the read returns:
# no allocation per read (a fresh 256 KiB bytes object per recv() is an mmap, a page fault
# and an munmap, which cost more than the frames in it), and no memory per connection.
READ_BUFFER = bytearray(256 * 1024)
READ_VIEW = memoryview(READ_BUFFER)


def apply_mask(payload: bytes, mask: bytes) -> bytes:
    """RFC 6455 section 5.3: XOR payload with the 4-byte mask, repeated."""
    length = len(payload)
    repeated = (mask * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(length, "big")


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame (RFC 6455 section 5.2)."""
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, 0x80 | length))
    elif length < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
    mask = os.urandom(4)
    return header + mask + apply_mask(payload, mask)


class LeanPool:
    """The lean receivers' sockets in one epoll, which the event loop watches as one reader.

    One loop callback reads every ready socket in turn: a third of the cost per read of
    an asyncio transport, which runs a loop callback and a few layers for every read.
    """

    pools: dict[asyncio.AbstractEventLoop, LeanPool] = {}

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.epoll = select.epoll()
        self.readers: dict[int, Callable[[], None]] = {}
        loop.add_reader(self.epoll.fileno(), self._ready)

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> LeanPool:
        if loop not in cls.pools:
            cls.pools[loop] = cls(loop)
        return cls.pools[loop]

    def add(self, fd: int, reader: Callable[[], None]) -> None:
        self.epoll.register(fd, select.EPOLLIN)
        self.readers[fd] = reader

    def remove(self, fd: int) -> None:
        self.epoll.unregister(fd)
        del self.readers[fd]
        if not self.readers:  # the last one: leave nothing behind on the loop
            self.loop.remove_reader(self.epoll.fileno())
            self.epoll.close()
            del self.pools[self.loop]

    def _ready(self) -> None:
        readers = self.readers
        for fd, _ in self.epoll.poll(0):
            reader = readers.get(fd)  # None if an earlier reader of this batch closed it
            if reader is not None:
                reader()


class LeanClient(Member):
    """A minimal ws:// client for connections that only listen, built for a low cost per frame.

    Its non-blocking socket sits in the LeanPool's epoll; each read goes into one shared
    buffer, where the server's frames are parsed in place and each text message is handed
    to `_dispatch` synchronously, with one clock reading per read: no per-frame queues,
    tasks or wake-ups. It joins, answers pings and closes; it never sends chat. RFC 6455
    without extensions or subprotocols; a protocol violation by the server is a failure of
    the run.
    """

    def __init__(self, name: str, run: Run, url: str) -> None:
        Member.__init__(self, name, run)
        parts = urlsplit(url)
        if parts.scheme != "ws" or not parts.hostname:
            raise ValueError(f"the lean receiver speaks ws:// only, not {url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.host_header = parts.netloc.rpartition("@")[2]
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.loop = asyncio.get_running_loop()
        self.sock: socket.socket | None = None
        self.pool: LeanPool | None = None
        self.key = base64.b64encode(os.urandom(16)).decode()
        self.handshake: asyncio.Future[None] = self.loop.create_future()
        self.reader = self.loop.create_future()
        self.buffer = bytearray()  # the response head, then a frame not yet complete
        self.out = bytearray()  # what the socket would not take yet
        self.fragments: list[bytes] | None = None  # a fragmented message in progress
        self.close_code: int | None = None  # from the server's close frame
        self.close_sent = False
        self.upgraded = False  # the 101 response has come and passed the checks

    @classmethod
    async def open(cls, url: str, name: str, run: Run) -> LeanClient:
        client = cls(name, run, url)
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                await client._connect()
                await client.handshake
        except BaseException:
            client.closing = True
            client.handshake.cancel()  # if still pending: the exception that ends open() says why
            client._connection_lost()
            raise
        return client

    async def _connect(self) -> None:
        try:  # an IP address needs no resolver thread (nor does it with asyncio's transports)
            family = socket.AF_INET6 if ipaddress.ip_address(self.host).version == 6 else socket.AF_INET
            infos = [(family, socket.SOCK_STREAM, 0, "", (self.host, self.port))]
        except ValueError:
            infos = await self.loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        error: OSError = OSError(f"no address for {self.host}")
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                if (source := next_source()) is not None and family == socket.AF_INET:
                    sock.bind(source)
                await self.loop.sock_connect(sock, address)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            except BaseException:
                sock.close()
                raise
            break
        else:
            raise error
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.recv_into = sock, sock.recv_into
        self.pool = LeanPool.of(self.loop)
        self.pool.add(sock.fileno(), self._readable)
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host_header}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {self.key}\r\nSec-WebSocket-Version: 13\r\n"
            "User-Agent: loadgen-lean\r\n\r\n"
        )
        self._write(request.encode())

    # the socket

    def _readable(self) -> None:
        try:
            nbytes = self.recv_into(READ_VIEW)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            nbytes = 0
        if nbytes:
            self._received(nbytes)
        else:
            self._connection_lost()  # end of stream, or reset

    def _write(self, data: bytes) -> None:
        if self.sock is None:
            return
        if self.out:
            self.out += data
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return self._connection_lost()
        if sent < len(data):
            self.out += data[sent:]
            self.loop.add_writer(self.sock, self._flush)

    def _flush(self) -> None:
        assert self.sock is not None
        try:
            sent = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return self._connection_lost()
        del self.out[:sent]
        if not self.out:
            self.loop.remove_writer(self.sock)

    def _connection_lost(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            if self.pool is not None:
                self.pool.remove(sock.fileno())
            if self.out:
                self.loop.remove_writer(sock)
            sock.close()
        if not self.handshake.done():
            self.closing = True  # open() raises; nothing to count
            self.handshake.set_exception(ProtocolFailure(f"{self.name}: connection lost in the handshake"))
        if not self.reader.done():
            self._lost(1006 if self.close_code is None else self.close_code)
            self.reader.set_result(None)

    def _received(self, nbytes: int) -> None:
        """Handle every complete frame now in READ_BUFFER[:nbytes] (after any kept bytes)."""
        now = time.perf_counter()  # one clock reading for every frame of this read
        buffer = self.buffer
        if buffer or not self.upgraded:
            # The response head, or a frame split across reads: go on in our own buffer.
            buffer += READ_VIEW[:nbytes]
            if not self.upgraded and not self._handshake_response():
                return
            data, end = buffer, len(buffer)
        else:
            data, end = READ_BUFFER, nbytes  # the shared buffer: used up before this returns
        if self.close_code is not None:
            return  # nothing follows a close frame
        pos = 0
        dispatch = self._dispatch
        while end - pos >= 2:
            first, second = data[pos], data[pos + 1]
            if second < 126:
                length, start = second, pos + 2
            elif second == 126:
                if end - pos < 4:
                    break
                length, start = (data[pos + 2] << 8) | data[pos + 3], pos + 4
            elif second == 127:
                if end - pos < 10:
                    break
                length, start = int.from_bytes(data[pos + 2 : pos + 10], "big"), pos + 10
            else:
                self._protocol_error("masked frame")
                return
            stop = start + length
            if stop > end:
                break
            payload, pos = data[start:stop], stop
            if first == 0x81 and self.fragments is None:  # FIN, no RSV bits, text: a message
                try:
                    text = payload.decode()
                except UnicodeDecodeError:
                    self.run.fail(f"{self.name}: text frame is not UTF-8: {bytes(payload[:100])!r}")
                    continue
                dispatch(text, now)
            elif first & 0x70:
                self._protocol_error("RSV bits set")
                return
            elif not self._other_frame(first & 0x0F, bool(first & 0x80), bytes(payload), now):
                return
        if data is buffer:
            del buffer[:pos]
        elif pos < end:
            buffer += READ_VIEW[pos:end]

    # frames off the hot path

    def _other_frame(self, opcode: int, fin: bool, payload: bytes, now: float) -> bool:
        """Fragments and control frames; False once the connection is closing."""
        if opcode >= 8:
            if not fin or len(payload) > 125:
                return self._protocol_error("fragmented or oversized control frame")
            if opcode == 9:  # ping
                self._send_frame(0xA, payload)
            elif opcode == 8:
                return self._close_frame(payload)
            elif opcode != 10:
                return self._protocol_error(f"unknown opcode {opcode}")
            return True
        if opcode in (1, 2):
            if self.fragments is not None:
                return self._protocol_error("new message inside a fragmented one")
            self.fragments = [payload]
        elif opcode == 0:
            if self.fragments is None:
                return self._protocol_error("continuation frame outside a message")
            self.fragments.append(payload)
        else:
            return self._protocol_error(f"unknown opcode {opcode}")
        if fin:
            whole, self.fragments = b"".join(self.fragments), None
            try:
                text = whole.decode()
            except UnicodeDecodeError:
                self.run.fail(f"{self.name}: text message is not UTF-8: {whole[:100]!r}")
                return True
            self._dispatch(text, now)
        return True

    def _close_frame(self, payload: bytes) -> bool:
        if len(payload) == 1:
            return self._protocol_error("close frame of one byte")
        self.close_code = int.from_bytes(payload[:2], "big") if payload else 1005
        if not self.close_sent:  # echo it; the server then closes the TCP connection
            self._send_frame(0x8, payload[:2])
            self.close_sent = True
        return False

    def _protocol_error(self, what: str) -> bool:
        if not self.closing:
            self.run.fail(f"{self.name}: protocol error from the server: {what}")
        self.closing = True  # counted once, here
        self._send_frame(0x8, (1002).to_bytes(2, "big"))
        self.close_sent = True
        self._connection_lost()
        return False

    def _handshake_response(self) -> bool:
        """Check the 101 once its head is in self.buffer and drop the head; True if good."""
        head, found, _ = self.buffer.partition(b"\r\n\r\n")
        if not found:
            if len(self.buffer) > MAX_RESPONSE_HEAD:
                self._handshake_failed("response head too long")
            return False
        del self.buffer[: len(head) + 4]
        status, *lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        accept = base64.b64encode(hashlib.sha1((self.key + WS_GUID).encode()).digest()).decode()
        if status.split(" ", 2)[:2] != ["HTTP/1.1", "101"]:
            self._handshake_failed(f"server answered {status!r}")
        elif headers.get("upgrade", "").lower() != "websocket":
            self._handshake_failed("no Upgrade: websocket")
        elif "upgrade" not in [token.strip().lower() for token in headers.get("connection", "").split(",")]:
            self._handshake_failed("no Connection: Upgrade")
        elif headers.get("sec-websocket-accept") != accept:
            self._handshake_failed("wrong Sec-WebSocket-Accept")
        elif "sec-websocket-extensions" in headers or "sec-websocket-protocol" in headers:
            self._handshake_failed("an extension or subprotocol nobody asked for")
        else:
            self.upgraded = True
            self.handshake.set_result(None)
            return True
        return False

    def _handshake_failed(self, what: str) -> None:
        self.closing = True
        if not self.handshake.done():
            self.handshake.set_exception(ProtocolFailure(f"{self.name}: WebSocket handshake: {what}"))
        self._connection_lost()

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        self._write(encode_frame(opcode, payload))

    async def _send_text(self, text: str) -> None:
        if self.close_sent or self.sock is None:
            raise ProtocolFailure(f"{self.name}: connection closed")
        self._send_frame(0x1, text.encode())

    async def close(self) -> None:
        self.closing = True
        if not self.close_sent and self.close_code is None:
            self._send_frame(0x8, (1000).to_bytes(2, "big"))
            self.close_sent = True
        try:
            await asyncio.wait_for(asyncio.shield(self.reader), CLOSE_TIMEOUT)
        except TimeoutError:
            self._connection_lost()


def hinted(url: str, join_key: str) -> str:
    """`url` with the room's affinity hint (`?room=`), as chatclient.client.affinity_hint
    makes it: 8 hex digits of SHA-256 over the join key."""
    hint = hashlib.sha256(f"chat-room-affinity:{join_key}".encode()).hexdigest()[:8]
    return f"{url}{'&' if '?' in url else '?'}room={hint}"


async def open_client(url: str, name: str, run: Run, lean: bool) -> Member:
    """The lean receiver for a listening connection when asked for, the URL is ws:// and
    the system has epoll (Linux); else `websockets`."""
    if lean and url.startswith("ws://") and hasattr(select, "epoll"):
        return await LeanClient.open(url, name, run)
    return await Client.open(url, name, run)


# --- Helpers ----------------------------------------------------------------------


# Deliveries slower than this (seconds) are kept with the time they were sent, so that
# a soak's tail can be laid beside the server's log (`slow_by_second`).
SLOW = 0.05


# The generator's own collector passes of 20 ms or more (perf_counter at start, seconds,
# generation): a pause here delays reading, and would pass for the server's.
GC_PAUSES: list[tuple[float, float, int]] = []
_gc_began = [0.0]


def _time_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_began[0] = time.perf_counter()
    elif (took := time.perf_counter() - _gc_began[0]) >= 0.02:
        GC_PAUSES.append((_gc_began[0], took, info["generation"]))


gc.callbacks.append(_time_gc)


def slow_by_second(clients: list[Any], began: float) -> dict[str, Any]:
    """The soak's slow deliveries: how many, and the seconds (since the first send)
    when the slowest were sent, with their worst latency in ms, worst first."""
    slow = [(sent_at, latency) for client in clients for sent_at, latency in client.slow]
    worst: dict[int, float] = {}
    for sent_at, latency in slow:
        second = int(sent_at - began)
        worst[second] = max(worst.get(second, 0.0), latency)
    seconds = sorted(worst.items(), key=lambda item: -item[1])[:20]
    return {"count": len(slow), "worst_seconds": [[second, round(ms * 1000, 1)] for second, ms in seconds]}


async def watch_loop(stop: asyncio.Event, stalls: dict[int, float], began: float, tick: float = 5e-3) -> None:
    """The generator's own stalls: how late its loop wakes from a `tick` sleep, the worst
    per second (since `began`). A delivery read during a stall looks that much slower,
    though the server sent it in time: the soak's slow seconds are checked against these."""
    while not stop.is_set():
        due = time.perf_counter() + tick
        await asyncio.sleep(tick)
        now = time.perf_counter()
        second = int(now - began)
        stalls[second] = max(stalls.get(second, 0.0), now - due)


def worst_seconds(by_second: dict[int, float], over: float) -> list[list[float]]:
    """[second, ms] of the seconds whose worst is over `over` seconds, worst first (20 at most)."""
    seconds = sorted(((s, v) for s, v in by_second.items() if v > over), key=lambda item: -item[1])[:20]
    return [[second, round(value * 1000, 1)] for second, value in seconds]


def percentiles_ms(samples: list[float], points: tuple[float, ...] = (50, 90, 99)) -> dict[str, float]:
    """Nearest-rank percentiles of samples in seconds, in milliseconds."""
    if not samples:
        return {}
    ordered = sorted(samples)
    figures = {f"p{p}": ordered[max(0, math.ceil(len(ordered) * p / 100) - 1)] for p in points}
    figures["max"] = ordered[-1]
    return {key: round(value * 1000, 2) for key, value in figures.items()}


async def bounded(concurrency: int, jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run coroutine factories with at most `concurrency` at once; results in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(job: Callable[[], Any]) -> Any:
        async with gate:
            return await job()

    return await asyncio.gather(*(one(job) for job in jobs))


def pick(urls: list[str], index: int) -> str:
    """Connections go round-robin over the servers given with --url."""
    return urls[index % len(urls)]


async def open_room(
    urls: list[str],
    run: Run,
    members: int,
    prefix: str,
    password: str | None = None,
    senders: int = 1,
    lean: bool = False,
    affinity: bool = False,
) -> tuple[list[Client], list[Member]]:
    """One creator plus members - 1 joiners in a new room: the first `senders` of them
    (the creator first) are `websockets` clients, the rest listen on the lean receiver
    if `lean`. Returns the senders and all members, senders first.

    With `affinity`, every member's socket carries the room's affinity hint (a proxy
    hashing it puts them on one server process): the room is created on a socket of its
    own, which leaves once the first member, in the creator's place, has joined."""
    if affinity:
        setup = await Client.open(pick(urls, 0), f"{prefix}-setup", run)
        join_key = (await setup.create_room(f"{prefix} room", password))["room_info"]["join_key"]
        owner = await Client.open(hinted(pick(urls, 0), join_key), f"{prefix}-0", run)
        await owner.join(join_key, password)
        await setup.close()
    else:
        owner = await Client.open(pick(urls, 0), f"{prefix}-0", run)
        join_key = (await owner.create_room(f"{prefix} room", password))["room_info"]["join_key"]

    async def join(index: int) -> Member:
        url = hinted(pick(urls, index), join_key) if affinity else pick(urls, index)
        client = await open_client(url, f"{prefix}-{index}", run, lean and index >= senders)
        await client.join(join_key, password)
        return client

    others = await bounded(SETUP_CONCURRENCY, [lambda i=i: join(i) for i in range(1, members)])
    clients: list[Member] = [owner, *others]
    talkers = [client for client in clients[:senders] if isinstance(client, Client)]
    assert len(talkers) == min(senders, members)
    return talkers, clients


async def close_all(clients: list[Member]) -> None:
    await bounded(SETUP_CONCURRENCY, [client.close for client in clients])


# What a --typing-share / --react-share frame sends, by turn (issue 18's mixed load).
EMOJI = ("\U0001f44d", "\U0001f389", "\u2764\ufe0f", "\U0001f602")


async def paced_sender(
    client: Client,
    rate: float,
    offset: float,
    count: int | None,
    stop: asyncio.Event | None = None,
    typing: float = 0.0,
    react: float = 0.0,
) -> float:
    """Send on a fixed schedule (start + i / rate), not sleep after send; returns max lag (s).
    `typing` and `react`: the shares of all frames that are `Typing` and `React` (on the
    last message the sender saw, an emoji by turn, on and off), sent between the chat
    messages, which keep `rate`: the frames go at rate / (1 - typing - react)."""
    chat_share = 1.0 - typing - react
    frame_rate = rate / chat_share
    start, lag, index, chats, owed = time.perf_counter() + offset, 0.0, 0, 0, [0.0, 0.0]
    while (count is None or chats < count) and not (stop is not None and stop.is_set()):
        due = start + index / frame_rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lag = max(lag, time.perf_counter() - due)
        index += 1
        owed[0] += typing
        owed[1] += react
        if owed[1] >= 1 and client.last_id is not None:
            owed[1] -= 1
            turn = index % (2 * len(EMOJI))
            frame = {
                "type": "React",
                "id": client.last_id,
                "emoji": EMOJI[turn % len(EMOJI)],
                "on": turn < len(EMOJI),
            }
            await client.send_frame(frame)
            client.sent_kinds["React"] += 1
        elif owed[0] >= 1:
            owed[0] -= 1
            await client.send_frame({"type": "Typing"})
            client.sent_kinds["Typing"] += 1
        else:
            await client.send_chat(client.encrypt(f"{client.name} says hello #{chats}"))
            chats += 1
    return lag


async def wait_for_stragglers(run: Run, clients: list[Member]) -> None:
    """After the last send: until every member has every message, or STRAGGLER_TIMEOUT."""
    run.target = len(run.sent) * len(clients)
    if run.delivered < run.target:
        try:
            await asyncio.wait_for(run.all_delivered.wait(), STRAGGLER_TIMEOUT)
        except TimeoutError:
            pass


def delivery_figures(run: Run, clients: list[Member]) -> dict[str, Any]:
    """Sent, expected, received, lost, duplicates, order, rate and latency of one room."""
    latencies = [value for client in clients for value in client.latencies]
    expected = len(run.sent) * len(clients)
    first_send = min(run.sent.values(), default=0.0)
    last_receive = max((client.last_receive for client in clients), default=0.0)
    elapsed = max(last_receive - first_send, 1e-9)
    return {
        "members": len(clients),
        "messages_sent": len(run.sent),
        "deliveries_expected": expected,
        "deliveries_received": len(latencies),
        "lost": expected - len(latencies),
        "duplicates": sum(client.duplicates for client in clients),
        "order_violations": sum(client.order_violations for client in clients),
        "unknown_messages": sum(client.unknown for client in clients),
        "deliveries_per_s": round(len(latencies) / elapsed, 1),
        "latency_ms": percentiles_ms(latencies, (50, 90, 99)),
        "errors": len(run.errors),
    }


# --- Scenarios --------------------------------------------------------------------


async def fanout(args: argparse.Namespace) -> dict[str, Any]:
    run = Run("fanout")
    lean = args.receiver == "lean"
    senders, clients = await open_room(
        args.urls, run, args.members, "member", senders=args.senders, lean=lean
    )
    count = int(args.rate * args.duration)
    # Stagger the senders evenly within one interval so their schedules interleave.
    step = 1 / (args.rate * len(senders))
    cpu_before = cpu_seconds(args.server_pid) if args.server_pid else None
    lags = await asyncio.gather(*(paced_sender(c, args.rate, k * step, count) for k, c in enumerate(senders)))
    await wait_for_stragglers(run, clients)
    figures = {"scenario": "fanout", "senders": len(senders), "rate_per_sender": args.rate}
    figures |= delivery_figures(run, clients)
    figures["max_send_lag_ms"] = round(max(lags, default=0.0) * 1000, 2)
    if cpu_before is not None:
        # From the first send until every delivery is in, as soak's: the room's joins
        # and leaves are not in it (--cpu-pid counts them too).
        server_cpu = cpu_seconds(args.server_pid) - cpu_before
        figures["server_cpu_seconds"] = round(server_cpu, 2)
        figures["deliveries_per_server_cpu_second"] = round(
            figures["deliveries_received"] / max(server_cpu, 1e-9), 1
        )
    await close_all(clients)
    return figures


async def flood(args: argparse.Namespace) -> dict[str, Any]:
    run = Run("flood")
    senders, clients = await open_room(args.urls, run, args.members, "member", lean=args.receiver == "lean")
    sender = senders[0]
    sender.window = asyncio.Semaphore(args.window)
    start = time.perf_counter()
    deadline = start + args.duration
    index = 0
    while not run.errors and (remaining := deadline - time.perf_counter()) > 0:
        try:
            await asyncio.wait_for(sender.window.acquire(), remaining)
        except TimeoutError:
            break
        content = sender.encrypt(f"flood #{index}")
        sender.own.add(content)
        await sender.send_chat(content)
        index += 1
    send_seconds = time.perf_counter() - start
    await wait_for_stragglers(run, clients)
    figures = {"scenario": "flood", "window": args.window}
    figures |= delivery_figures(run, clients)
    figures["messages_per_s"] = round(len(run.sent) / send_seconds, 1)
    await close_all(clients)
    return figures


async def chat_probe(url: str, stop: asyncio.Event) -> dict[str, Any]:
    """Two members of their own room, 10 messages/s each, until `stop` is set."""
    run = Run("probe")
    senders, clients = await open_room([url], run, 2, "probe", senders=2)
    await asyncio.gather(*(paced_sender(c, 10, k / 20, None, stop) for k, c in enumerate(senders)))
    await wait_for_stragglers(run, clients)
    figures = delivery_figures(run, clients)
    figures["latency_ms"] = percentiles_ms([x for c in clients for x in c.latencies], (50, 99))
    await close_all(clients)
    return figures


async def joins(args: argparse.Namespace) -> dict[str, Any]:
    run = Run("joins")
    owner = await Client.open(args.url, "joins-owner", run)
    join_key = (await owner.create_room("joins room", args.password))["room_info"]["join_key"]
    stop = asyncio.Event()
    probe = asyncio.create_task(chat_probe(args.url, stop)) if args.chat_probe else None
    if probe is not None:
        await asyncio.sleep(1.0)  # let the probe room settle before the joins start
    join_times: list[float] = []
    connect_times: list[float] = []

    async def one(index: int) -> None:
        began = time.perf_counter()
        client = await Client.open(pick(args.urls, index), f"joiner-{index}", run)
        opened = time.perf_counter()
        try:
            if not args.no_join:
                await client.join(join_key, args.password)
            join_times.append(time.perf_counter() - opened)
            connect_times.append(opened - began)
        except ProtocolFailure as exc:
            run.fail(str(exc))
        finally:
            await client.close()

    start = time.perf_counter()
    await bounded(args.concurrency, [lambda i=i: one(i) for i in range(args.count)])
    elapsed = time.perf_counter() - start
    stop.set()
    figures: dict[str, Any] = {"scenario": "joins", "password": bool(args.password)}
    figures["joined"] = not args.no_join
    figures |= {"joins": len(join_times), "failed": args.count - len(join_times)}
    figures |= {"concurrency": args.concurrency, "joins_per_s": round(len(join_times) / elapsed, 1)}
    figures["join_latency_ms"] = percentiles_ms(join_times, (50, 99))
    figures["connect_latency_ms"] = percentiles_ms(connect_times, (50, 99))
    if probe is not None:
        figures["probe"] = await probe
    await owner.close()
    figures["errors"] = len(run.errors)
    return figures


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    """--rooms rooms of --members, --senders of them sending --rate msg/s in all per room,
    for --duration s; deliveries, latency, the server's memory every --sample-every s and
    its CPU time over the sending (with --server-pid)."""
    lean = args.receiver == "lean"
    rooms: list[tuple[Run, list[Client], list[Member]]] = []
    for k in range(args.rooms):
        run = Run(f"soak-{k}")
        senders, clients = await open_room(
            args.urls, run, args.members, f"s{k}", senders=args.senders, lean=lean, affinity=args.affinity
        )
        rooms.append((run, senders, clients))
    if args.start_at:  # set up before a load that would hold the set-up back (bench/run.sh crowd)
        await asyncio.sleep(max(0.0, args.start_at - time.time()))
    memory: list[tuple[float, int]] = []
    stop = asyncio.Event()

    async def sample() -> None:
        began = time.perf_counter()
        while not stop.is_set():
            if args.server_pid:
                memory.append((round(time.perf_counter() - began, 1), rss_kib(args.server_pid)))
            try:
                await asyncio.wait_for(stop.wait(), args.sample_every)
            except TimeoutError:
                pass

    sampler = asyncio.create_task(sample())
    talkers = [sender for _, senders, _ in rooms for sender in senders]
    rate = args.rate * len(rooms) / len(talkers)  # per sender
    count = int(rate * args.duration)
    step = 1 / (rate * len(talkers))  # spread the senders' schedules over one interval
    cpu_before = cpu_seconds(args.server_pid) if args.server_pid else None
    # The generator is the instrument: its own collector passes (477 ms over what it
    # tracks after ten minutes) would read as the server's latency. Off while it measures.
    gc.collect()
    gc.disable()
    began = time.perf_counter()
    began_unix = time.time()  # the same moment on the clock of the server's log
    generator_cpu = time.process_time()  # this process's own CPU, all its threads
    stalls: dict[int, float] = {}
    watcher = asyncio.create_task(watch_loop(stop, stalls, began))
    try:
        mix = {"typing": args.typing_share, "react": args.react_share}
        lags = await asyncio.gather(
            *(paced_sender(sender, rate, k * step, count, **mix) for k, sender in enumerate(talkers))
        )
        stop.set()
        await sampler
        await watcher
        # Every room's last deliveries are in before any figure is worked out: that work
        # holds the loop, and would make deliveries still on their way look late.
        for run, _, clients in rooms:
            await wait_for_stragglers(run, clients)
    finally:
        gc.enable()
    elapsed = time.perf_counter() - began
    generator_cpu = time.process_time() - generator_cpu
    per_room = [delivery_figures(run, clients) for run, _, clients in rooms]
    server_cpu = cpu_seconds(args.server_pid) - cpu_before if cpu_before is not None else None
    latencies = [value for _, _, clients in rooms for client in clients for value in client.latencies]
    figures: dict[str, Any] = {
        "scenario": "soak",
        "rooms": len(rooms),
        "connections": sum(len(c) for *_, c in rooms),
        "senders": len(talkers),
    }
    for key in ("messages_sent", "deliveries_expected", "deliveries_received", "lost", "duplicates",
                "order_violations", "unknown_messages", "errors"):  # fmt: skip
        figures[key] = sum(room[key] for room in per_room)
    figures["latency_ms"] = percentiles_ms(latencies, (50, 90, 99, 99.9))
    members = [client for _, _, clients in rooms for client in clients]
    if args.typing_share or args.react_share:
        figures["other_frames_sent"] = dict(sum((client.sent_kinds for client in members), Counter()))
        figures["other_frames_received"] = dict(sum((client.received_kinds for client in members), Counter()))
    figures["first_send_unix"] = round(began_unix, 3)
    figures[f"slower_than_{SLOW * 1000:g}_ms"] = slow_by_second(members, began)
    figures["generator_loop_stalls_over_20_ms"] = worst_seconds(stalls, 0.020)
    figures["generator_gc_pauses"] = [
        [round(at - began, 1), round(took * 1000, 1), generation]
        for at, took, generation in GC_PAUSES
        if at >= began
    ]
    figures["max_send_lag_ms"] = round(max(lags, default=0.0) * 1000, 2)
    figures["messages_per_s"] = round(figures["messages_sent"] / elapsed, 1)
    # Whether the machine let the generator make this load: the generator beside the server.
    figures["generator_cpu_percent_of_one_core"] = round(100 * generator_cpu / elapsed, 1)
    if server_cpu is not None:
        # From the first send until every delivery is in (or the stragglers' timeout).
        figures["server_cpu_seconds"] = round(server_cpu, 2)
        figures["server_cpu_percent_of_one_core"] = round(100 * server_cpu / elapsed, 1)
        figures["messages_per_server_cpu_second"] = round(figures["messages_sent"] / max(server_cpu, 1e-9), 1)
    if memory:
        after_first_minute = [kib for at, kib in memory if at >= 60] or [memory[-1][1]]
        figures["server_rss_kib"] = {
            "start": memory[0][1],
            "at_60s": after_first_minute[0],
            "end": memory[-1][1],
            "max_after_60s": max(after_first_minute),
        }
        figures["growth_after_first_minute_pct"] = round(
            100 * (max(after_first_minute) - after_first_minute[0]) / after_first_minute[0], 1
        )
        figures["rss_samples"] = memory
    await close_all([client for _, _, clients in rooms for client in clients])
    return figures


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> list[int] | None:
    """The machine's CPU time so far by kind, in clock ticks (/proc/stat's first line:
    user, nice, system, idle, iowait, irq, softirq, steal, ...); None where there is none."""
    try:
        with open("/proc/stat") as stat:
            return [int(field) for field in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None


def steal_figures(before: list[int] | None, after: list[int] | None) -> dict[str, Any]:
    """The share of the machine's CPU time that its host gave to others over the run
    (steal): on a virtual machine the same build's figures move with it."""
    if before is None or after is None or len(before) < 8 or len(after) < 8:
        return {}
    spent = [later - earlier for earlier, later in zip(before, after, strict=True)]
    return {"machine_steal_percent": round(100 * spent[7] / max(sum(spent), 1), 1)}


def cpu_figures(figures: dict[str, Any], used: float) -> dict[str, Any]:
    """The server's CPU over a whole scenario, and its work per CPU-second."""
    out: dict[str, Any] = {"scenario_server_cpu_seconds": round(used, 2)}
    for done in ("deliveries_received", "joins"):
        if isinstance(figures.get(done), int):
            out[f"{done}_per_server_cpu_second"] = round(figures[done] / max(used, 1e-9), 1)
    return out


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def idle(args: argparse.Namespace) -> dict[str, Any]:
    run = Run("idle")
    before = rss_kib(args.server_pid) if args.server_pid else None
    start = time.perf_counter()
    lean = args.receiver == "lean"
    owners: list[Member] = []
    keys: list[str] = []
    for room in range(args.rooms):
        owner = await open_client(pick(args.urls, room), f"idle-{room}", run, lean)
        keys.append((await owner.create_room(f"idle room {room}"))["room_info"]["join_key"])
        owners.append(owner)

    async def join(index: int) -> Member:
        client = await open_client(pick(args.urls, index), f"idle-{index}", run, lean)
        await client.join(keys[index % args.rooms])
        return client

    joiners = await bounded(SETUP_CONCURRENCY, [lambda i=i: join(i) for i in range(args.rooms, args.count)])
    clients = owners + joiners
    setup_seconds = time.perf_counter() - start
    await asyncio.sleep(3.0)  # let the server settle (broadcasts, garbage)
    figures: dict[str, Any] = {"scenario": "idle", "connections": len(clients), "rooms": args.rooms}
    figures["setup_s"] = round(setup_seconds, 2)
    figures["connections_per_s"] = round(len(clients) / setup_seconds, 1)
    if args.server_pid:
        after = rss_kib(args.server_pid)
        figures |= {"server_rss_before_kib": before, "server_rss_after_kib": after}
        figures["kib_per_connection"] = round((after - before) / len(clients), 1)
    if args.hold:
        # Idle: what the heartbeats (every PRESENCE_HEARTBEAT s) and pings cost.
        cpu_before = cpu_seconds(args.server_pid) if args.server_pid else None
        await asyncio.sleep(args.hold)
        if cpu_before is not None:
            used = cpu_seconds(args.server_pid) - cpu_before
            figures["idle_cpu_percent_of_one_core"] = round(100 * used / args.hold, 2)
    figures["still_open"] = sum(1 for client in clients if not client.reader.done())
    await close_all(clients)
    figures["errors"] = len(run.errors)
    return figures


# --- Files ------------------------------------------------------------------------

MIB = 1024 * 1024


def session_cookie(ws_url: str) -> tuple[str, str]:
    """Load the app page like a browser: (http base URL, its session cookie)."""
    import urllib.request
    from http.cookies import SimpleCookie

    parts = urlsplit(ws_url)
    base = f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"
    with urllib.request.urlopen(f"{base}/") as response:
        cookie = SimpleCookie(response.headers["Set-Cookie"])
    (name,) = (name for name in cookie if name.endswith("sessionid"))  # or __Host-sessionid
    return base, f"{name}={cookie[name].value}"


def http_get(url: str, cookie: str) -> int:
    import urllib.request

    request = urllib.request.Request(url, headers={"Cookie": cookie})
    with urllib.request.urlopen(request) as response:
        return len(response.read())


class FileClient:
    """A plain `websockets` connection for the files scenario: request, await a reply type."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, url: str, cookie: str | None = None) -> FileClient:
        headers = {"Cookie": cookie} if cookie else None
        ws = await connect(
            url,
            max_size=None,
            compression=None,
            ping_interval=None,
            additional_headers=headers,
            local_addr=next_source(),
        )
        return cls(ws)

    async def until(self, prefix: str) -> str:
        """Raw frames until one starts with `{"type":"<prefix>`; an Error fails."""
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), REPLY_TIMEOUT)
            head = raw[:200]
            if head.startswith(f'{{"type":"{prefix}'):
                return raw
            if head.startswith('{"type":"Error"'):
                raise ProtocolFailure(f"files: {raw[:300]}")

    async def request(self, frame: dict[str, Any] | str, reply: str) -> str:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))
        return await self.until(reply)


def upload_frame(size: int, index: int) -> str:
    data = b"PK\x03\x04" + os.urandom(size - 4)
    content = base64.b64encode(data).decode()
    head = f'{{"type":"UploadFile","name":"bench-{index}.zip","mime_type":"application/zip"'
    return f'{head},"content":"{content}"}}'


async def files(args: argparse.Namespace) -> dict[str, Any]:
    """Upload and download throughput per size; optionally, uploads kept running for
    --load-seconds by --uploaders connections (time a chat elsewhere meanwhile)."""
    base, cookie = await asyncio.to_thread(session_cookie, args.url)
    owner = await FileClient.open(args.url, cookie)
    created = json.loads(
        await owner.request({"type": "CreateRoom", "name": "files", "description": ""}, "RoomCreated")
    )
    join_key = created["room_info"]["join_key"]
    figures: dict[str, Any] = {"scenario": "files", "repeat": args.repeat}
    for size_mib in args.sizes:
        size = int(size_mib * MIB)
        frames = [upload_frame(size, i) for i in range(args.repeat)]
        ids, up, ws_down, http_down = [], [], [], []
        for frame in frames:
            began = time.perf_counter()
            ids.append(json.loads(await owner.request(frame, "FileUploaded"))["metadata"]["id"])
            up.append(time.perf_counter() - began)
        for file_id in ids:
            began = time.perf_counter()
            raw = await owner.request({"type": "GetFile", "file_id": file_id}, "FileContent")
            ws_down.append(time.perf_counter() - began)
            assert len(raw) > size
        for file_id in ids:
            began = time.perf_counter()
            got = await asyncio.to_thread(http_get, f"{base}/files/{file_id}", cookie)
            http_down.append(time.perf_counter() - began)
            assert got == size, got
        for file_id in ids:
            await owner.request({"type": "DeleteFile", "file_id": file_id}, "FileDeleted")
        mib = size * len(ids) / MIB
        figures[f"{size_mib:g}MiB"] = {
            "upload_MiB_s": round(mib / sum(up), 1),
            "ws_download_MiB_s": round(mib / sum(ws_down), 1),
            "http_download_MiB_s": round(mib / sum(http_down), 1),
            "upload_p50_ms": percentiles_ms(up, (50,))["p50"],
            "ws_download_p50_ms": percentiles_ms(ws_down, (50,))["p50"],
        }
    if args.load_seconds:
        figures["load"] = await upload_load(args, join_key)
    await owner.ws.close()
    return figures


async def upload_load(args: argparse.Namespace, join_key: str) -> dict[str, Any]:
    """--uploaders connections upload --load-size MiB files, back to back or at
    --load-rate uploads/s in all, deleting each."""
    size = int(args.load_size * MIB)
    frame = upload_frame(size, 0)
    stop = time.perf_counter() + args.load_seconds
    counts: list[int] = []

    async def uploader(index: int) -> None:
        client = await FileClient.open(args.url)
        join = {"type": "JoinRoom", "join_key": join_key, "name": f"uploader-{index}"}
        await client.request(join, "RoomJoined")
        done = 0
        began = time.perf_counter() + index / (args.load_rate or 1e9)
        while time.perf_counter() < stop:
            if args.load_rate:  # each uploader keeps its share of --load-rate
                delay = began + done * args.uploaders / args.load_rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            file_id = json.loads(await client.request(frame, "FileUploaded"))["metadata"]["id"]
            await client.request({"type": "DeleteFile", "file_id": file_id}, "FileDeleted")
            done += 1
        counts.append(done)
        await client.ws.close()

    began = time.perf_counter()
    await asyncio.gather(*(uploader(i) for i in range(args.uploaders)))
    elapsed = time.perf_counter() - began
    return {
        "uploaders": args.uploaders,
        "paced_per_s": args.load_rate,
        "file_MiB": args.load_size,
        "uploads": sum(counts),
        "seconds": round(elapsed, 1),
        "upload_MiB_s": round(sum(counts) * size / MIB / elapsed, 1),
    }


# --- Command line -----------------------------------------------------------------


def failed(figures: dict[str, Any]) -> bool:
    rooms = [figures, figures.get("probe") or {}]
    keys = ("lost", "duplicates", "order_violations", "errors", "failed")
    return any(room.get(key) for room in rooms for key in keys)


def summary(figures: dict[str, Any], indent: str = "") -> str:
    lines = []
    for key, value in figures.items():
        if isinstance(value, dict):
            if key == "probe":
                lines.append(f"{indent}probe room:\n{summary(value, indent + '  ')}")
            else:
                lines.append(f"{indent}{key:<22} " + "  ".join(f"{k} {v}" for k, v in value.items()))
        else:
            lines.append(f"{indent}{key:<22} {value}")
    return "\n".join(lines)


def raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--url",
        action="append",
        help="a server's WebSocket URL (default ws://127.0.0.1:8000/ws/); repeat it to spread "
        "connections round-robin over several server processes",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--cpu-pid",
        type=int,
        default=None,
        help="the server's PID: report its CPU seconds over the whole scenario, set-up included, "
        "and the deliveries (or joins) per server CPU-second",
    )
    parser.add_argument(
        "--sources",
        type=int,
        default=0,
        help="spread connections over 127.0.1.1-127.0.1.N, as N client addresses (0: one)",
    )
    parser.add_argument(
        "--receiver",
        choices=("lean", "websockets"),
        default="lean",
        help="client of the connections that only listen (fanout, flood, idle): the lean\n"
        "built-in ws:// receiver (default; wss:// falls back to websockets) or websockets",
    )
    sub = parser.add_subparsers(dest="scenario", required=True)
    p = sub.add_parser("fanout", help="one room, paced senders, per-delivery latency")
    p.add_argument("--members", type=int, default=50)
    p.add_argument("--senders", type=int, default=4)
    p.add_argument("--rate", type=float, default=5.0, help="messages/s per sender")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of sending")
    p.add_argument("--server-pid", type=int, default=None, help="its CPU over the sending alone")
    p = sub.add_parser("flood", help="one sender as fast as the server takes it")
    p.add_argument("--members", type=int, default=50)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--window", type=int, default=32, help="own messages in flight at most")
    p = sub.add_parser("joins", help="JoinRoom throughput on fresh connections")
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--password", default=None, help="the room's password (Argon2 on every join)")
    p.add_argument("--chat-probe", action="store_true", help="time a 20 msg/s chat in another room")
    p.add_argument("--no-join", action="store_true", help="open and close each connection only")
    p = sub.add_parser("idle", help="many idle joined connections, server RSS per connection")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--rooms", type=int, default=10)
    p.add_argument("--server-pid", type=int, default=None, help="read this PID's VmRSS")
    p.add_argument("--hold", type=float, default=0.0, help="seconds to stay connected after measuring")
    p = sub.add_parser("files", help="file upload/download throughput, and uploads under way")
    p.add_argument("--sizes", type=float, nargs="+", default=[1, 10], help="file sizes in MiB")
    p.add_argument("--repeat", type=int, default=10, help="uploads (and downloads) per size")
    p.add_argument("--load-seconds", type=float, default=0, help="then upload back to back this long")
    p.add_argument("--load-size", type=float, default=10, help="MiB per file during the load")
    p.add_argument("--uploaders", type=int, default=2, help="connections uploading during the load")
    p.add_argument("--load-rate", type=float, default=0, help="uploads/s in all (0: back to back)")
    p = sub.add_parser("soak", help="many rooms chatting at a steady rate for a long time")
    p.add_argument("--rooms", type=int, default=200)
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--rate", type=float, default=5.0, help="messages/s per room")
    p.add_argument("--senders", type=int, default=1, help="members of each room that send (sharing its rate)")
    p.add_argument("--duration", type=float, default=600.0)
    p.add_argument("--server-pid", type=int, default=None, help="sample this PID's VmRSS")
    p.add_argument("--sample-every", type=float, default=10.0)
    p.add_argument("--affinity", action="store_true", help="every member's socket carries the room hint")
    p.add_argument("--typing-share", type=float, default=0.0, help="share of all frames that are Typing")
    p.add_argument("--react-share", type=float, default=0.0, help="share of all frames that are React")
    p.add_argument("--start-at", type=float, default=0.0, help="once set up, send from this Unix time")
    args = parser.parse_args(argv)
    args.urls = args.url or ["ws://127.0.0.1:8000/ws/"]
    args.url = args.urls[0]
    if args.scenario == "fanout" and not 1 <= args.senders <= args.members:
        parser.error("--senders must be between 1 and --members")
    if args.scenario == "idle" and not 1 <= args.rooms <= args.count:
        parser.error("--rooms must be between 1 and --count")
    return args


SCENARIOS = {"fanout": fanout, "flood": flood, "joins": joins, "idle": idle, "files": files, "soak": soak}


def main(argv: list[str] | None = None) -> int:
    global SOURCES
    args = parse_args(argv)
    SOURCES = args.sources
    raise_open_files_limit()
    try:
        cpu_before = cpu_seconds(args.cpu_pid) if args.cpu_pid else None
        machine_before = machine_ticks()
        figures = asyncio.run(SCENARIOS[args.scenario](args))
        if cpu_before is not None:
            figures |= cpu_figures(figures, cpu_seconds(args.cpu_pid) - cpu_before)
        figures |= steal_figures(machine_before, machine_ticks())
    except (ProtocolFailure, OSError, TimeoutError, ConnectionClosed) as exc:
        print(f"{args.scenario}: could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(summary(figures), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(figures))
    return 1 if failed(figures) else 0


if __name__ == "__main__":
    sys.exit(main())
