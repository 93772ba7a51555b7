"""Files of FILES_MAX_SIZE through real server processes, over WebSocket and HTTP."""

import asyncio
import base64
import os

import pytest

from tests.e2e.wsclient import Client, download, session_cookie

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

MAX = 10 * 1024 * 1024


def zip_of(size: int) -> bytes:
    return b"PK\x03\x04" + os.urandom(size - 4)


@pytest.mark.parametrize("command", ["serve", "runserver"])
async def test_a_file_of_files_max_size_round_trips(sqlite_env, servers, command):
    env = dict(sqlite_env)
    if command == "runserver":
        env["DJANGO_DEBUG"] = "1"
    (server,) = servers(env, 1, command)
    cookie = await asyncio.to_thread(session_cookie, server.http)
    owner = await Client.open(server.url, additional_headers={"Cookie": cookie})
    await owner.create()
    data = zip_of(MAX)

    await owner.send(
        type="UploadFile",
        name="big.zip",
        mime_type="application/zip",
        content=base64.b64encode(data).decode(),
    )
    metadata = (await owner.expect("FileUploaded", within=30))["metadata"]
    assert metadata["size"] == MAX
    link = await owner.expect("ChatMessage")
    assert link["content"] == f"[File: big.zip](/files/{metadata['id']})"

    await owner.send(type="GetFile", file_id=metadata["id"])
    content = await owner.expect("FileContent", within=30)
    assert base64.b64decode(content["content"]) == data

    status, body, headers = await asyncio.to_thread(download, server.http, f"/files/{metadata['id']}", cookie)
    assert status == 200 and body == data
    assert headers["Content-Disposition"] == 'attachment; filename="big.zip"'
    assert headers["X-Content-Type-Options"] == "nosniff"
    status, body, _ = await asyncio.to_thread(download, server.http, f"/files/{metadata['id']}", None)
    assert status == 404 and body != data

    # One byte more is an ordinary Error under the transport limit, and the socket stays.
    await owner.send(
        type="UploadFile",
        name="big.zip",
        mime_type="application/zip",
        content=base64.b64encode(zip_of(MAX + 1)).decode(),
    )
    error = await owner.recv(within=30)
    assert error["type"] == "Error" and error["code"] == "file_too_large", error
    assert await owner.members() == ["Owner"]
    await owner.close()
