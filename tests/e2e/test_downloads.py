"""`/files/<id>` downloads against a real `manage.py serve`, from clients that do not
read what they asked for (chat/http_guard.py, HTTP_WRITE_TIMEOUT)."""

import asyncio
import base64
import socket
import time

import pytest

from tests.e2e.wsclient import Client, download, session_cookie

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 36_000  # 9 MiB: more than the kernel buffers of a socket


def unread_download(port: int, file_id: str, cookie: str) -> socket.socket:
    """A download asked for and never read, its receive buffer as small as the kernel allows."""
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", port))
    client.sendall(f"GET /files/{file_id} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n".encode())
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
