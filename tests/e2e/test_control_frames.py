"""Pings a client sends (chat/frame_budget.py, `BudgetedWebSocket.handle_ping`): a socket
that pings and never reads gets no more pongs than its write buffer takes, and pings
alone hold no large frame's slot, so they cannot keep a process's uploads waiting; nor
can a large frame sent slowly while another waits for its slot."""

import asyncio
import base64
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.e2e.servers import ServerProcess, rss_mib
from tests.e2e.wsclient import Client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PING = bytes([0x89, 0x80 | 125]) + bytes(4) + b"p" * 125  # masked with a zero key: as it is


def pinger(server: ServerProcess, source: str) -> socket.socket:
    """A WebSocket opened by hand from `source`, with a small receive buffer that the
    test never reads from once the handshake is in."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(
        b"GET /ws/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def announcing(size: int) -> bytes:
    """The head of a text frame of `size` bytes, masked with a zero key (sent as it is)."""
    return bytes([0x81, 0x80 | 127]) + struct.pack("!Q", size) + bytes(4)


def ping_for(sock: socket.socket, seconds: float, most: int | None = None) -> int:
    """Send pings as fast as the server takes them, for `seconds` or `most` bytes."""
    sock.setblocking(False)
    burst, sent = PING * 500, 0
    until = time.monotonic() + seconds
    while time.monotonic() < until and (most is None or sent < most):
        try:
            sent += sock.send(burst[sent % len(burst) :])  # whole frames, however the sends cut them
        except BlockingIOError:
            time.sleep(0.005)
    return sent


async def uploads(server: ServerProcess, source: str, within: float) -> None:
    """A room created from `source` gets a 400 KiB upload (a large frame) in `within` s."""
    uploader = await Client.open(server.url, local_addr=(source, 0))
    await uploader.create()
    content = base64.b64encode(b"PK\x03\x04" + os.urandom(400 * 1024)).decode()
    await uploader.send(type="UploadFile", name="a.zip", mime_type="application/zip", content=content)
    assert (await uploader.expect("FileUploaded", within=within))["type"] == "FileUploaded"
    await uploader.close()


async def test_pings_from_a_socket_that_never_reads_take_no_memory(sqlite_env, servers):
    """The reviewer's attack: one socket pinging without reading grew the server by 72
    MiB in 22 s, a pong for every ping waiting in its write buffer."""
    (server,) = servers(sqlite_env)
    sock = pinger(server, "127.0.80.1")
    before = rss_mib(server.process.pid)
    sent = await asyncio.to_thread(ping_for, sock, 30, 12 * 2**20)  # within the pace's burst
    await asyncio.sleep(0.5)  # taken in by the server
    grown = rss_mib(server.process.pid) - before
    print(f"\n{sent / 2**20:.0f} MiB of pings sent; RSS grew {grown:.1f} MiB")
    assert sent >= 12 * 2**20  # else the attack did not happen
    assert grown < 6, grown
    sock.close()


async def test_pings_hold_no_large_frames_slot_so_uploads_go_on(sqlite_env, servers):
    """Sockets whose pings alone passed LARGE_FRAME took a slot each and kept it: the
    reviewer's sixteen sockets of eight addresses left no slot for anyone's upload. Here
    the process has two; two sockets of two addresses ping past LARGE_FRAME and idle."""
    env = {**sqlite_env, "LARGE_FRAMES_PER_PROCESS": "2", "LARGE_FRAMES_PER_ADDRESS": "1"}
    (server,) = servers(env)
    socks = [pinger(server, f"127.0.81.{n}") for n in (1, 2)]
    for sock in socks:
        assert await asyncio.to_thread(ping_for, sock, 5, 400 * 1024) >= 400 * 1024
    await asyncio.sleep(0.5)  # taken in by the server
    await uploads(server, "127.0.81.3", within=10)
    for sock in socks:
        sock.close()


async def test_a_ping_sent_while_a_large_reply_waits_unread_is_answered_once_it_is_read(sqlite_env, servers):
    """A pong owed while the socket's write buffer is full is written once it drains: the
    first version dropped it, and a client with a keepalive (websockets' own, here every
    second with 3 s to answer) that was slow to read a large reply was closed 1011."""
    (server,) = servers(sqlite_env)
    client = await Client.open(server.url, ping_interval=1, ping_timeout=3)
    await client.create()
    content = base64.b64encode(b"PK\x03\x04" + os.urandom(8 * 2**20)).decode()
    await client.send(type="UploadFile", name="a.zip", mime_type="application/zip", content=content)
    file_id = (await client.expect("FileUploaded", within=30))["metadata"]["id"]
    client.connection.transport.pause_reading()  # a slow link: the server's buffer stays full
    await client.send(type="GetFile", file_id=file_id)
    await asyncio.sleep(1.6)  # the client's keepalive ping goes out meanwhile
    client.connection.transport.resume_reading()
    assert (await client.expect("FileContent", within=30))["metadata"]["id"] == file_id
    await asyncio.sleep(4)  # past the ping's 3 s: the pong came
    await client.send(type="GetMembers")
    assert (await client.expect("Members"))["participants"]
    await client.close()


async def test_frames_trickled_into_every_slot_give_way_to_an_upload_that_waits(sqlite_env, servers):
    """The review's attack: sockets of a few addresses announce large frames and send
    them a little at a time, holding every large frame's slot of the process for as long
    as they like; the next upload waited as long. Now the slowest holder read for the
    grace at under LARGE_FRAME_MIN_BYTES_PER_SECOND gives way, closed with 1013."""
    env = {
        **sqlite_env,
        "LARGE_FRAMES_PER_PROCESS": "2",
        "LARGE_FRAMES_PER_ADDRESS": "1",
        "LARGE_FRAME_GRACE_SECONDS": "2",
    }
    (server,) = servers(env)
    socks = [pinger(server, f"127.0.82.{n}") for n in (1, 2)]
    announce = announcing(10 * 2**20)
    for sock in socks:
        sock.sendall(announce + b"x" * 300 * 1024)  # past LARGE_FRAME: each holds a slot
    with trickling(socks):
        await uploads(server, "127.0.82.3", within=20)
    closes = [await asyncio.to_thread(close_code, sock) for sock in socks]
    assert 1013 in closes, closes
    for sock in socks:
        sock.close()


@contextmanager
def trickling(socks: list[socket.socket]) -> Iterator[None]:
    """Each of `socks` sends 1 KiB a second of its frame meanwhile, closed or not."""
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.5):
            for sock in socks:
                try:
                    sock.send(b"x" * 512)
                except OSError:
                    pass  # closed by the server

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        yield
    finally:
        stop.set()
        trickler.join()


async def test_pings_that_waited_for_a_slot_leave_the_line_instead_of_taking_it(sqlite_env, servers):
    """The review's second attack: pings that pass LARGE_FRAME while every slot is held
    put their socket in line for one; once handled they gave back a slot they did not
    have and stayed in line, so the slot they were given later held nothing, never
    judged slow, until the keepalive dropped them (the upload after them waited 35 s)."""
    env = {**sqlite_env, "LARGE_FRAMES_PER_PROCESS": "2", "LARGE_FRAME_GRACE_SECONDS": "2"}
    (server,) = servers(env)
    announce = announcing(10 * 2**20)
    tricklers = [pinger(server, f"127.0.86.{n}") for n in (1, 2)]
    for sock in tricklers:
        sock.sendall(announce + b"x" * 300 * 1024)  # both slots
    pingers = [pinger(server, f"127.0.87.{n}") for n in (1, 2)]
    with trickling(tricklers):
        for sock in pingers:
            sock.sendall(PING * 1600)  # 205 KiB of pings: under LARGE_FRAME
        await asyncio.sleep(0.3)
        for sock in pingers:
            sock.sendall(PING * 600)  # 77 KiB more, past it, every slot held: in line
        await asyncio.sleep(4)  # past the tricklers' grace: they give way to whoever waits
        await uploads(server, "127.0.86.3", within=10)
    for sock in tricklers + pingers:
        sock.close()


def close_code(sock: socket.socket) -> int | None:
    """The code of the close frame the server sent (the first frame it sends here), or
    None if it sent none within a few seconds."""
    sock.setblocking(True)
    sock.settimeout(5)
    try:
        head = sock.recv(4, socket.MSG_WAITALL)
    except TimeoutError:
        return None
    return struct.unpack("!H", head[2:4])[0] if len(head) == 4 and head[0] == 0x88 else None


async def test_slow_holders_closed_while_they_read_nothing_leave_nothing_behind(sqlite_env, servers):
    """The review's run: a holder closed for its slowness that reads nothing (pongs fill
    its side) cannot be sent its close frame, and the server kept what it had sent of
    its frame until its close handshake ended, which it never did: 9 MiB more each round
    (+78 MiB after eight), the slot meanwhile given to the next. It is failed now (its
    bytes dropped at once) and aborted after the close timeout."""
    env = {
        **sqlite_env,
        "LARGE_FRAMES_PER_PROCESS": "1",
        "LARGE_FRAME_GRACE_SECONDS": "1",
        "LARGE_FRAME_MIN_BYTES_PER_SECOND": str(8 * 2**20),
    }
    (server,) = servers(env)
    announce = announcing(12 * 2**20)
    before = rss_mib(server.process.pid)
    tricklers = []
    for n in range(5):
        trickler = pinger(server, f"127.0.83.{n + 1}")
        sent = await asyncio.to_thread(ping_for, trickler, 10, 6 * 2**20)  # pongs fill its side, unread
        trickler.setblocking(True)
        trickler.sendall(PING[sent % len(PING) :] if sent % len(PING) else b"")  # the last ping whole
        trickler.sendall(announce + b"x" * 9 * 2**20)  # the slot, then nothing
        waiting = pinger(server, f"127.0.84.{n + 1}")
        waiting.sendall(announce + b"y" * 300 * 1024)  # waits for the slot: the trickler gives way
        await asyncio.sleep(2.5)
        waiting.close()  # the slot back, for the next round
        tricklers.append(trickler)
    await asyncio.sleep(0.5)
    grown = rss_mib(server.process.pid) - before
    print(f"\nRSS grew {grown:.0f} MiB after five closed holders of 9 MiB each")
    assert server.log_path.read_text().count("large_frame_too_slow") == 5
    assert grown < 20, grown
    for sock in tricklers:
        sock.close()


async def test_a_socket_that_reads_nothing_does_not_hold_up_a_stop(sqlite_env, servers):
    """SIGTERM closes every socket, and uvicorn waited for each close to be written: a
    peer that reads nothing (pongs fill its side) kept the process from ever exiting,
    until systemd's SIGKILL, which skips leaving the room bus. It waits at most
    SHUTDOWN_TIMEOUT (here 3 s) now."""
    (server,) = servers({**sqlite_env, "SHUTDOWN_TIMEOUT": "3"})
    sock = pinger(server, "127.0.88.1")
    await asyncio.to_thread(ping_for, sock, 10, 6 * 2**20)  # pongs fill its side, unread
    server.process.terminate()
    began = time.monotonic()
    exited = await asyncio.to_thread(wait_exit, server.process, 20)
    print(f"\nexited {exited} after {time.monotonic() - began:.1f} s")
    assert exited and time.monotonic() - began < 10
    assert "event=hub_totals" in server.log_path.read_text()  # the hub left the room bus first
    sock.close()


def wait_exit(process, seconds: float) -> bool:
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        return False
    return True
