"""`/files/<id>` downloads against a real `manage.py serve`, from clients that do not
read what they asked for (chat/http_guard.py, HTTP_WRITE_TIMEOUT) or read it at a trickle
(files/views.py, DOWNLOAD_MIN_BYTES_PER_SECOND)."""

import asyncio
import base64
import socket
import threading
import time

import pytest

from tests.e2e.wsclient import Client, download, session_cookie

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 36_000  # 9 MiB: more than the kernel buffers of a socket


def get_file(file_id: str, cookie: str) -> bytes:
    return f"GET /files/{file_id} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n".encode()


def unread_download(port: int, file_id: str, cookie: str) -> socket.socket:
    """A download asked for and never read, its receive buffer as small as the kernel allows."""
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", port))
    client.sendall(get_file(file_id, cookie))
    return client


async def test_a_download_left_unread_is_cut_off_and_gives_its_bytes_back(sqlite_env, servers):
    """A download holds its file in memory until it is read: without a deadline, unread
    ones held the process's DOWNLOADS_IN_FLIGHT_BYTES for as long as their clients liked,
    and every other download was 503. Now a client that reads nothing for
    HTTP_WRITE_TIMEOUT is cut off and the bytes come back."""
    env = {**sqlite_env, "HTTP_WRITE_TIMEOUT": "2", "DOWNLOADS_IN_FLIGHT_BYTES": str(len(PDF))}
    (server,) = servers(env, command="serve")
    cookie = await asyncio.to_thread(session_cookie, server.http)
    owner = await Client.open(server.url, additional_headers={"Cookie": cookie})
    await owner.create()
    content = base64.b64encode(PDF).decode()
    await owner.send(type="UploadFile", name="report.pdf", mime_type="application/pdf", content=content)
    file_id = (await owner.expect("FileUploaded"))["metadata"]["id"]

    hog = await asyncio.to_thread(unread_download, server.port, file_id, cookie)
    await asyncio.sleep(0.5)  # its response started: the process's bytes are all held
    status, _, _ = await asyncio.to_thread(download, server.http, f"/files/{file_id}", cookie)
    assert status == 503
    started = time.monotonic()
    while status != 200 and time.monotonic() - started < 10:
        await asyncio.sleep(0.5)
        status, body, _ = await asyncio.to_thread(download, server.http, f"/files/{file_id}", cookie)
    assert status == 200 and body == PDF, status
    assert 1.5 <= time.monotonic() - started + 0.5 <= 6
    hog.setblocking(False)
    received = b""
    try:
        while chunk := hog.recv(1 << 16):
            received += chunk
    except (ConnectionResetError, BlockingIOError):
        pass
    assert len(received) < len(PDF)  # cut off, not served
    hog.close()
    await owner.close()


class Trickler(threading.Thread):
    """A download read at a trickle (4 KiB every 0.25 s: 16 KiB/s) from its own
    address, its receive buffer small: it reads, so HTTP_WRITE_TIMEOUT never comes."""

    def __init__(self, port: int, file_id: str, cookie: str, source: str):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.bind((source, 0))
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(get_file(file_id, cookie))
        self.step, self.pause = 4096, 0.25
        self.received = b""
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and (chunk := self.sock.recv(self.step)):
            self.received += chunk
            time.sleep(self.pause)

    def status(self) -> int:
        return int(self.received.split(b" ", 2)[1]) if b" " in self.received else 0

    def read_on(self) -> bool:
        """Whether its body still comes whole once read at full speed: the connection
        was not cut off (one aborted ends with what the kernel's buffers held)."""
        self.stop.set()
        self.join()
        self.sock.settimeout(10)
        try:
            while len(self.body()) < len(PDF) and (chunk := self.sock.recv(1 << 20)):
                self.received += chunk
        except OSError:
            pass
        self.sock.close()
        return self.body() == PDF

    def body(self) -> bytes:
        return self.received.partition(b"\r\n\r\n")[2]


def held_download(port: int, file_id: str, cookie: str, source: str) -> tuple[int, socket.socket, bytes]:
    """A download asked for and its head read, its body left waiting (its room held)."""
    sock = socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
    sock.sendall(get_file(file_id, cookie))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        head += chunk
    head, _, body = head.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), sock, body


def read_body(sock: socket.socket, body: bytes, size: int) -> bytes:
    while len(body) < size and (chunk := sock.recv(1 << 20)):
        body += chunk
    sock.close()
    return body


async def shared_file(server) -> tuple[Client, str, str]:
    cookie = await asyncio.to_thread(session_cookie, server.http)
    owner = await Client.open(server.url, additional_headers={"Cookie": cookie})
    await owner.create()
    content = base64.b64encode(PDF).decode()
    await owner.send(type="UploadFile", name="report.pdf", mime_type="application/pdf", content=content)
    return owner, (await owner.expect("FileUploaded"))["metadata"]["id"], cookie


def room_for_two(env: dict[str, str], *, grace: float) -> dict[str, str]:
    """A process with room for two downloads of PDF, which cuts off slow ones after
    `grace` s at a floor above what the kernel's buffers make a trickle seem."""
    return env | {
        "DOWNLOADS_IN_FLIGHT_BYTES": str(2 * len(PDF)),
        "DOWNLOAD_MIN_BYTES_PER_SECOND": str(8 * 2**20),
        "DOWNLOAD_GRACE_SECONDS": str(grace),
    }


async def test_downloads_read_at_a_trickle_are_cut_off_when_others_find_no_room(sqlite_env, servers):
    """Two addresses read a 9 MiB download each at 16 KiB/s, filling the process's
    DOWNLOADS_IN_FLIGHT_BYTES: they read, so HTTP_WRITE_TIMEOUT never cuts them, and
    before, every other download was 503 for the ten minutes they took. Now each download
    that finds no room cuts off the slowest one read under DOWNLOAD_MIN_BYTES_PER_SECOND
    for DOWNLOAD_GRACE_SECONDS, and gets its room: both honest downloads are served
    whole, both tricklers are aborted, and their bytes are given back."""
    (server,) = servers(room_for_two(sqlite_env, grace=3), command="serve")
    owner, file_id, cookie = await shared_file(server)
    tricklers = [Trickler(server.port, file_id, cookie, source) for source in ("127.0.0.2", "127.0.0.3")]
    for trickler in tricklers:
        trickler.start()
    await asyncio.sleep(1)
    assert [trickler.status() for trickler in tricklers] == [200, 200]
    # Within the grace, nobody is judged: the room is theirs.
    status, sock, _ = await asyncio.to_thread(held_download, server.port, file_id, cookie, "127.0.0.4")
    sock.close()
    assert status == 503
    await asyncio.sleep(3)

    first = await asyncio.to_thread(held_download, server.port, file_id, cookie, "127.0.0.4")
    second = await asyncio.to_thread(held_download, server.port, file_id, cookie, "127.0.0.5")
    assert (first[0], second[0]) == (200, 200)  # each in the room of a trickler cut off
    for _, sock, body in (first, second):
        assert await asyncio.to_thread(read_body, sock, body, len(PDF)) == PDF
    assert [await asyncio.to_thread(trickler.read_on) for trickler in tricklers] == [False, False]

    # Their bytes came back: two downloads left unread fit at once, and a third does not.
    held = [
        await asyncio.to_thread(held_download, server.port, file_id, cookie, f"127.0.0.{n}")
        for n in (6, 7, 8)
    ]
    assert [status for status, _, _ in held] == [200, 200, 503]
    for _, sock, _ in held:
        sock.close()
    await owner.close()


async def test_a_download_read_at_a_trickle_keeps_its_room_while_others_find_room(sqlite_env, servers):
    """A slow link is cut off only for a download that finds no room: with room to spare,
    it reads on at its pace, past the grace and below the rate, while others are served."""
    (server,) = servers(room_for_two(sqlite_env, grace=1), command="serve")
    owner, file_id, cookie = await shared_file(server)
    trickler = Trickler(server.port, file_id, cookie, "127.0.0.2")
    trickler.start()
    await asyncio.sleep(2)
    for source in ("127.0.0.3", "127.0.0.4"):
        status, sock, body = await asyncio.to_thread(held_download, server.port, file_id, cookie, source)
        assert status == 200
        assert await asyncio.to_thread(read_body, sock, body, len(PDF)) == PDF
    assert await asyncio.to_thread(trickler.read_on)  # served whole
    await owner.close()
